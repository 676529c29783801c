//! The catalog service: under construction.
