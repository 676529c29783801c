//! What every service shares: configuration from the environment, the error type and its JSON
//! replies, the HTTP conventions of CONTRACT section 2 (CORS, correlation ids, body limits, JSON
//! 404/405), the server bootstrap with graceful shutdown, tracing, MongoDB helpers and the token
//! guard that checks bearer tokens through auth (CONTRACT section 3), and the refusal of secrets
//! anyone knows.

pub mod config;
pub mod error;
pub mod guard;
pub mod http;
pub mod jitter;
pub mod locks;
pub mod metrics;
pub mod mongo;
pub mod openapi;
pub mod periodic;
pub mod projection;
pub mod secrets;
pub mod server;
pub mod telemetry;

pub use error::{ApiError, FieldError};
pub use guard::{Caller, TokenGuard, User};
