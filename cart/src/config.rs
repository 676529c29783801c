use std::time::Duration;

use common::config::{
    ConfigError, auth_service_url, mongo_url, rabbit_url, seconds, text, token_cache_ttl, var,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub mongo_url: String,
    pub mongo_db: String,
    pub rabbit_url: String,
    pub auth_service_url: String,
    pub token_cache_ttl: Duration,
    /// How often every line of every active cart is sent to catalog again
    /// (`CART_REVALIDATE_SECS`), so that a disabled article shows up as invalid.
    pub revalidate_every: Duration,
    /// How long `/cart/validate` waits for catalog's answers (`CART_VALIDATE_TIMEOUT_SECS`).
    pub validate_timeout: Duration,
    /// How long after a `place_order` is sent it is sent again while no `order_placed` came back
    /// (`CART_ORDER_RESEND_SECS`); doubled after each re-send.
    pub order_resend_first: Duration,
    /// The longest wait between two re-sends of one `place_order` (`CART_ORDER_RESEND_MAX_SECS`).
    pub order_resend_max: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: var("PORT", 3003)?,
            mongo_url: mongo_url()?,
            mongo_db: text("MONGO_DB", "cart")?,
            rabbit_url: rabbit_url()?,
            auth_service_url: auth_service_url()?,
            token_cache_ttl: token_cache_ttl()?,
            revalidate_every: seconds("CART_REVALIDATE_SECS", 60)?,
            validate_timeout: seconds("CART_VALIDATE_TIMEOUT_SECS", 3)?,
            order_resend_first: seconds("CART_ORDER_RESEND_SECS", 10)?,
            order_resend_max: seconds("CART_ORDER_RESEND_MAX_SECS", 600)?,
        })
    }
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
            Duration::from_secs(10)
        );
    }
}
