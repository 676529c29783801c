use std::time::Duration;

use common::config::{ConfigError, http_limits, mongo_url, rabbit_url, text, token_cache_ttl, var};
use common::secrets::{DEVELOPMENT_JWT_SECRET, Secret, refuse_public_secrets};
use common::server::HttpLimits;

/// HS256 secrets shorter than this are brute-forceable.
const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// The HTTP server's timeouts and connection cap (`HTTP_*`, see `common::config::http_limits`).
    pub http: HttpLimits,
    pub mongo_url: String,
    pub mongo_db: String,
    pub rabbit_url: String,
    pub jwt_secret: String,
    /// How long `GET /users/current` may answer from memory without the logout broadcast's help
    /// (a change made directly in MongoDB shows after this).
    pub token_cache_ttl: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let jwt_secret = match std::env::var("JWT_SECRET") {
            Ok(secret) if secret.len() >= MIN_SECRET_LEN => secret,
            Ok(secret) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "<hidden>",
                    format!("{} bytes; at least {MIN_SECRET_LEN} needed", secret.len()),
                ));
            }
            // Refused below unless ALLOW_DEV_SECRETS=1, which logs a warning.
            Err(_) => DEVELOPMENT_JWT_SECRET.to_owned(),
        };
        let config = Self {
            port: var("PORT", 3000)?,
            http: http_limits()?,
            mongo_url: mongo_url()?,
            mongo_db: text("MONGO_DB", "auth")?,
            rabbit_url: rabbit_url("auth")?,
            jwt_secret,
            token_cache_ttl: token_cache_ttl()?,
        };
        refuse_public_secrets(&[
            Secret::Jwt(&config.jwt_secret),
            Secret::MongoUrl(&config.mongo_url),
            Secret::RabbitUrl(&config.rabbit_url),
        ])?;
        Ok(config)
    }
}
