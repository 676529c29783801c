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
    /// Where GET /cart's read model lives (`REDIS_URL`), under the namespace `mongo_db`.
    pub redis_url: String,
    /// How long an entry of the read model lives after its last write (`PROJECTION_TTL_SECS`):
    /// the bound on how stale GET /cart can be after a write to Redis was lost.
    pub projection_ttl: Duration,
    pub auth_service_url: String,
    pub token_cache_ttl: Duration,
    /// How often every line of every active cart is sent to catalog again
    /// (`CART_REVALIDATE_SECS`), so that a disabled article shows up as invalid.
    pub revalidate_every: Duration,
    /// Only carts changed within this age are revalidated (`CART_REVALIDATE_MAX_AGE_DAYS`):
    /// abandoned carts are not asked about forever.
    pub revalidate_max_age: Duration,
    /// How long `/cart/validate` waits for catalog's answers (`CART_VALIDATE_TIMEOUT_SECS`).
    pub validate_timeout: Duration,
    /// How long after the broker confirmed a `place_order` it is sent again while no
    /// `order_placed` came back (`CART_ORDER_RESEND_SECS`); doubled after each re-send, jittered.
    /// Only a safety net: a confirmed message is in a durable queue, and orders answers it however
    /// long its backlog. One the broker did not confirm is sent as soon as it is back.
    pub order_resend_first: Duration,
    /// The longest wait between two re-sends of one `place_order` (`CART_ORDER_RESEND_MAX_SECS`).
    pub order_resend_max: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Self {
            port: var("PORT", 3003)?,
            http: http_limits()?,
            mongo_url: mongo_url()?,
            mongo_db: text("MONGO_DB", "cart")?,
            rabbit_url: rabbit_url("cart")?,
            redis_url: redis_url()?,
            projection_ttl: projection_ttl()?,
            auth_service_url: auth_service_url()?,
            token_cache_ttl: token_cache_ttl()?,
            revalidate_every: seconds("CART_REVALIDATE_SECS", 60)?,
            revalidate_max_age: days("CART_REVALIDATE_MAX_AGE_DAYS", 7)?,
            validate_timeout: seconds("CART_VALIDATE_TIMEOUT_SECS", 3)?,
            order_resend_first: seconds("CART_ORDER_RESEND_SECS", 60)?,
            order_resend_max: seconds("CART_ORDER_RESEND_MAX_SECS", 600)?,
        };
        refuse_public_secrets(&[
            Secret::MongoUrl(&config.mongo_url),
            Secret::RedisUrl(&config.redis_url),
            Secret::RabbitUrl(&config.rabbit_url),
        ])?;
        Ok(config)
    }
}

/// A number of days of at least 1.
fn days(name: &str, default: u64) -> Result<Duration, ConfigError> {
    const DAY: u64 = 24 * 60 * 60;
    let value: u64 = var(name, default)?;
    if value == 0 {
        return Err(ConfigError::new(name, "0", "must be at least 1"));
    }
    value
        .checked_mul(DAY)
        .map(Duration::from_secs)
        .ok_or_else(|| ConfigError::new(name, &value.to_string(), "too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_interval_stops_the_service_naming_the_variable() {
        // The only test of this crate touching the environment.
        unsafe { std::env::set_var("CART_ORDER_RESEND_SECS", "soon") };
        let error = Config::from_env().unwrap_err();
        unsafe { std::env::set_var("CART_ORDER_RESEND_SECS", "0") };
        let zero = Config::from_env().unwrap_err();
        unsafe { std::env::remove_var("CART_ORDER_RESEND_SECS") };
        assert_eq!(error.name, "CART_ORDER_RESEND_SECS");
        assert_eq!(zero.name, "CART_ORDER_RESEND_SECS");
        assert_eq!(
            Config::from_env().unwrap().order_resend_first,
            Duration::from_secs(60)
        );
        unsafe { std::env::set_var("CART_REVALIDATE_MAX_AGE_DAYS", "0") };
        let no_age = Config::from_env().unwrap_err();
        unsafe { std::env::set_var("CART_REVALIDATE_MAX_AGE_DAYS", u64::MAX.to_string()) };
        let absurd = Config::from_env().unwrap_err();
        unsafe { std::env::remove_var("CART_REVALIDATE_MAX_AGE_DAYS") };
        assert_eq!(no_age.name, "CART_REVALIDATE_MAX_AGE_DAYS");
        assert_eq!(absurd.name, "CART_REVALIDATE_MAX_AGE_DAYS");
        assert_eq!(
            Config::from_env().unwrap().revalidate_max_age,
            Duration::from_secs(7 * 24 * 60 * 60)
        );
    }
}
