use std::time::Duration;

use common::config::{
    ConfigError, auth_service_url, http_limits, rabbit_url, token_cache_ttl, url, var,
};
use common::secrets::{Secret, refuse_public_secrets};
use common::server::HttpLimits;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// The HTTP server's timeouts and connection cap (`HTTP_*`, see `common::config::http_limits`).
    pub http: HttpLimits,
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
    /// Uploads that may wait for a worker (`IMAGE_UPLOAD_QUEUE`); more answer 503 before their
    /// body is read.
    pub upload_queue: usize,
    /// Memory for response bodies (`IMAGE_MEMORY_CACHE_MB`, in MiB), so hot images are served
    /// without Redis, encoding or copying; 0 keeps none.
    pub memory_cache_mb: u64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let workers = var("IMAGE_WORKERS", cores)?;
        if workers == 0 {
            return Err(ConfigError::new("IMAGE_WORKERS", "0", "must be at least 1"));
        }
        let config = Self {
            port: var("PORT", 3001)?,
            http: http_limits()?,
            redis_url: url("REDIS_URL", "redis://localhost:6379", &["redis", "rediss"])?,
            rabbit_url: rabbit_url("image")?,
            auth_service_url: auth_service_url()?,
            token_cache_ttl: token_cache_ttl()?,
            body_limit: var("IMAGE_BODY_LIMIT", 16 * 1024 * 1024)?,
            max_pixels: var("IMAGE_MAX_PIXELS", 40_000_000)?,
            workers,
            upload_queue: var("IMAGE_UPLOAD_QUEUE", 16)?,
            memory_cache_mb: var("IMAGE_MEMORY_CACHE_MB", 256)?,
        };
        refuse_public_secrets(&[
            Secret::RedisUrl(&config.redis_url),
            Secret::RabbitUrl(&config.rabbit_url),
        ])?;
        Ok(config)
    }
}
