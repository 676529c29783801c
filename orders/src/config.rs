use std::time::Duration;

use common::config::{
    ConfigError, auth_service_url, http_limits, mongo_url, projection_ttl, rabbit_url, redis_url,
    seconds, text, token_cache_ttl, var,
};
use common::secrets::{Secret, refuse_public_secrets};
use common::server::HttpLimits;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// The HTTP server's timeouts and connection cap (`HTTP_*`, see `common::config::http_limits`).
    pub http: HttpLimits,
    pub mongo_url: String,
    pub mongo_db: String,
    pub rabbit_url: String,
    /// Where the read models of `GET /orders` and `GET /orders/{id}` live (`REDIS_URL`).
    pub redis_url: String,
    /// How long a read model lives after its last write (`PROJECTION_TTL_SECS`): the bound on
    /// how stale a read can be after a write to Redis was lost.
    pub projection_ttl: Duration,
    pub auth_service_url: String,
    pub token_cache_ttl: Duration,
    /// How often the `placed` batch runs (`ORDERS_BATCH_PLACED_SECS`).
    pub placed_batch_interval: Duration,
    /// How often the `validated` batch runs (`ORDERS_BATCH_VALIDATED_SECS`).
    pub validated_batch_interval: Duration,
    /// How often the `payment_defined` batch runs (`ORDERS_BATCH_PAYMENT_DEFINED_SECS`).
    pub payment_defined_batch_interval: Duration,
    /// How long an order may wait in PLACED without news before the `placed` batch re-publishes
    /// its `order_placed`, and in INVALID without catalog's `order_released` before the
    /// `validated` batch re-publishes its `order_invalid` (`ORDERS_STUCK_PLACED_SECS`).
    pub stuck_placed_after: Duration,
    /// The longest wait between two re-drives of one order (`ORDERS_REDRIVE_MAX_SECS`): the
    /// waits double from `stuck_placed_after` up to this (see `redrive.rs`).
    pub redrive_max: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Self {
            port: var("PORT", 3004)?,
            http: http_limits()?,
            mongo_url: mongo_url()?,
            mongo_db: text("MONGO_DB", "orders")?,
            rabbit_url: rabbit_url("orders")?,
            redis_url: redis_url()?,
            projection_ttl: projection_ttl()?,
            auth_service_url: auth_service_url()?,
            token_cache_ttl: token_cache_ttl()?,
            placed_batch_interval: seconds("ORDERS_BATCH_PLACED_SECS", 60)?,
            validated_batch_interval: seconds("ORDERS_BATCH_VALIDATED_SECS", 300)?,
            payment_defined_batch_interval: seconds("ORDERS_BATCH_PAYMENT_DEFINED_SECS", 300)?,
            stuck_placed_after: seconds("ORDERS_STUCK_PLACED_SECS", 120)?,
            redrive_max: seconds("ORDERS_REDRIVE_MAX_SECS", 600)?,
        };
        refuse_public_secrets(&[
            Secret::MongoUrl(&config.mongo_url),
            Secret::RedisUrl(&config.redis_url),
            Secret::RabbitUrl(&config.rabbit_url),
        ])?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test of this binary that touches the environment, which its threads share.
    #[test]
    fn defaults_apply_and_a_bad_batch_interval_names_its_variable() {
        let config = Config::from_env().expect("the defaults are valid");
        assert_eq!(config.stuck_placed_after, Duration::from_secs(120));
        assert_eq!(config.redrive_max, Duration::from_secs(600));
        assert_eq!(config.projection_ttl, Duration::from_secs(60));

        unsafe { std::env::set_var("ORDERS_BATCH_PLACED_SECS", "often") };
        let error = Config::from_env().unwrap_err();
        unsafe { std::env::remove_var("ORDERS_BATCH_PLACED_SECS") };

        assert_eq!(error.name, "ORDERS_BATCH_PLACED_SECS");
    }
}
