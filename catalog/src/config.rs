use std::time::Duration;

use common::config::{
    ConfigError, auth_service_url, http_limits, mongo_url, rabbit_url, text, token_cache_ttl, var,
};
use common::secrets::{Secret, refuse_public_secrets};
use common::server::HttpLimits;

/// The catalog's settings; [`Config::from_env`] reads them from the contract's variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// The HTTP server's timeouts and connection cap (`HTTP_*`, see `common::config::http_limits`).
    pub http: HttpLimits,
    pub mongo_url: String,
    pub mongo_db: String,
    pub rabbit_url: String,
    pub auth_service_url: String,
    pub token_cache_ttl: Duration,
    /// How often the in-memory snapshot that listings and searches read is reloaded whole, to
    /// pick up other instances' writes (`CATALOG_SNAPSHOT_RELOAD_SECS`); `None` (0) keeps no
    /// snapshot and reads MongoDB every time.
    pub snapshot_reload: Option<Duration>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Self {
            port: var("PORT", 3002)?,
            http: http_limits()?,
            mongo_url: mongo_url()?,
            mongo_db: text("MONGO_DB", "catalog")?,
            rabbit_url: rabbit_url("catalog")?,
            auth_service_url: auth_service_url()?,
            token_cache_ttl: token_cache_ttl()?,
            snapshot_reload: match var("CATALOG_SNAPSHOT_RELOAD_SECS", 300)? {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
        };
        refuse_public_secrets(&[
            Secret::MongoUrl(&config.mongo_url),
            Secret::RabbitUrl(&config.rabbit_url),
        ])?;
        Ok(config)
    }
}
