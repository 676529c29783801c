use std::time::Duration;

use common::config::{ConfigError, seconds, url, var};

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub redis_url: String,
    pub rabbit_url: String,
    pub auth_service_url: String,
    pub token_cache_ttl: Duration,
    /// Largest upload body, in bytes (`IMAGE_BODY_LIMIT`).
    pub body_limit: u64,
    /// Most pixels an image may have (`IMAGE_MAX_PIXELS`), checked before decoding.
    pub max_pixels: u64,
    /// Decodes and resizes running at once (`IMAGE_WORKERS`), each bounded by `max_pixels`.
    pub workers: usize,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let workers = var("IMAGE_WORKERS", cores)?;
        if workers == 0 {
            return Err(ConfigError::new("IMAGE_WORKERS", "0", "must be at least 1"));
        }
        Ok(Self {
            port: var("PORT", 3001)?,
            redis_url: url("REDIS_URL", "redis://localhost:6379", &["redis", "rediss"])?,
            rabbit_url: url(
                "RABBIT_URL",
                "amqp://guest:guest@localhost:5672/%2f",
                &["amqp", "amqps"],
            )?,
            auth_service_url: url(
                "AUTH_SERVICE_URL",
                "http://localhost:3000",
                &["http", "https"],
            )?,
            token_cache_ttl: seconds("TOKEN_CACHE_TTL_SECS", 600)?,
            body_limit: var("IMAGE_BODY_LIMIT", 16 * 1024 * 1024)?,
            max_pixels: var("IMAGE_MAX_PIXELS", 40_000_000)?,
            workers,
        })
    }
}
