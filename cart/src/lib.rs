//! The cart service: under construction.
