//! Configuration from environment variables. A variable that is set but does not parse stops the
//! service with a message naming it; only an unset variable takes the default.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::server::HttpLimits;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid value for {name}: {value:?} ({reason})")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(name: &str, value: &str, reason: impl Display) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            reason: reason.to_string(),
        }
    }
}

/// The variable `name` parsed as `T`, or `default` when it is unset.
pub fn var<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|error| ConfigError::new(name, &value, error)),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(value)) => Err(ConfigError::new(
            name,
            &value.to_string_lossy(),
            "not valid UTF-8",
        )),
    }
}

/// A text variable that must not be empty when set.
pub fn text(name: &str, default: &str) -> Result<String, ConfigError> {
    let value: String = var(name, default.to_owned())?;
    if value.is_empty() {
        return Err(ConfigError::new(name, &value, "must not be empty"));
    }
    Ok(value)
}

/// A URL variable whose scheme must be one of `schemes`.
pub fn url(name: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let value = text(name, default)?;
    checked_url(name, &value, &value, schemes)
}

/// A variable holding one URL or a comma-separated list of them (the nodes of a cluster), each
/// with one of `schemes`; returned as the same list without blanks around its URLs.
pub fn url_list(name: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let value = text(name, default)?;
    let urls = value
        .split(',')
        .map(|url| checked_url(name, &value, url.trim(), schemes))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(urls.join(","))
}

/// `url` (part of the variable's `value`) without a trailing `/`, if its scheme is one of
/// `schemes`.
fn checked_url(
    name: &str,
    value: &str,
    url: &str,
    schemes: &[&str],
) -> Result<String, ConfigError> {
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty());
    if !scheme_ok {
        let expected = schemes.join(", ");
        return Err(ConfigError::new(
            name,
            &crate::secrets::redacted(value),
            format!("expected a URL with scheme {expected}"),
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A duration in whole seconds, at least one.
pub fn seconds(name: &str, default: u64) -> Result<Duration, ConfigError> {
    let value: u64 = var(name, default)?;
    if value == 0 {
        return Err(ConfigError::new(name, "0", "must be at least 1"));
    }
    Ok(Duration::from_secs(value))
}

/// `MONGO_URL`, the MongoDB server of the services that keep their data there.
pub fn mongo_url() -> Result<String, ConfigError> {
    url(
        "MONGO_URL",
        "mongodb://localhost:27017",
        &["mongodb", "mongodb+srv"],
    )
}

/// `RABBIT_URL`, the broker every service connects to: one AMQP URL, or the nodes of a cluster as
/// a comma-separated list of them (`rabbit::Rabbit::start` connects to the first live one), as
/// `service`'s own RabbitMQ user (CONTRACT section 9: the broker checks that every message names
/// its publisher). A URL without credentials gets user `service` and password `RABBIT_PASSWORD`,
/// or when that is unset the development password `<service>-dev-password` that
/// `scripts/deps.sh` gives the local broker. Also checks `RABBIT_QUEUE_TYPE`, which
/// `Rabbit::start` reads, so that every service refuses an invalid one at start.
pub fn rabbit_url(service: &str) -> Result<String, ConfigError> {
    rabbit_queue_type()?;
    let urls = url_list(
        "RABBIT_URL",
        "amqp://localhost:5672/%2f",
        &["amqp", "amqps"],
    )?;
    let password = text("RABBIT_PASSWORD", &format!("{service}-dev-password"))?;
    let urls: Vec<String> = urls
        .split(',')
        .map(|url| with_credentials(url, service, &password))
        .collect();
    Ok(urls.join(","))
}

/// `url` (a checked one, with a scheme) with `user` and `password`, unless it names a user.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if authority.contains('@') {
        return url.to_owned();
    }
    let (user, password) = (percent_encode(user), percent_encode(password));
    format!("{scheme}://{user}:{password}@{rest}")
}

/// Every byte but the unreserved ones of RFC 3986 as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `RABBIT_QUEUE_TYPE`: `quorum` (the default) or `classic`, the type of the queues services
/// declare.
pub fn rabbit_queue_type() -> Result<rabbit::QueueType, ConfigError> {
    var(rabbit::QueueType::VARIABLE, rabbit::QueueType::default())
}

/// `REDIS_URL`: image's store, and where cart and orders keep their read models.
pub fn redis_url() -> Result<String, ConfigError> {
    url("REDIS_URL", "redis://localhost:6379", &["redis", "rediss"])
}

/// `PROJECTION_TTL_SECS`, how long a read model in Redis lives after its last write: the bound
/// on how stale a read can be when a write to Redis was lost (see `projection`).
pub fn projection_ttl() -> Result<Duration, ConfigError> {
    seconds("PROJECTION_TTL_SECS", 60)
}

/// `AUTH_SERVICE_URL`, where every service but auth checks bearer tokens.
pub fn auth_service_url() -> Result<String, ConfigError> {
    url(
        "AUTH_SERVICE_URL",
        "http://localhost:3000",
        &["http", "https"],
    )
}

/// `TOKEN_CACHE_TTL_SECS`, how long a service trusts auth's answer about a token.
pub fn token_cache_ttl() -> Result<Duration, ConfigError> {
    seconds("TOKEN_CACHE_TTL_SECS", 600)
}

/// The HTTP server's bounds (`common::server::HttpLimits`): `HTTP_HEADER_TIMEOUT_SECS` (10),
/// `HTTP_BODY_TIMEOUT_SECS` (30) and `HTTP_MAX_CONNECTIONS` (10,000).
pub fn http_limits() -> Result<HttpLimits, ConfigError> {
    let defaults = HttpLimits::default();
    let max_connections = var("HTTP_MAX_CONNECTIONS", defaults.max_connections)?;
    if max_connections == 0 {
        return Err(ConfigError::new(
            "HTTP_MAX_CONNECTIONS",
            "0",
            "must be at least 1",
        ));
    }
    Ok(HttpLimits {
        header_timeout: seconds(
            "HTTP_HEADER_TIMEOUT_SECS",
            defaults.header_timeout.as_secs(),
        )?,
        body_timeout: seconds("HTTP_BODY_TIMEOUT_SECS", defaults.body_timeout.as_secs())?,
        max_connections,
    })
}

/// Prints the error and exits: for `main`, where a bad configuration must stop the service.
pub fn or_exit<T>(result: Result<T, ConfigError>) -> T {
    result.unwrap_or_else(|error| {
        eprintln!("configuration error: {error}");
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_url_without_credentials_gets_the_services() {
        assert_eq!(
            with_credentials("amqp://rabbit:5672/%2f", "cart", "p@ss:w/rd"),
            "amqp://cart:p%40ss%3Aw%2Frd@rabbit:5672/%2f"
        );
        assert_eq!(
            with_credentials("amqps://orders:secret@rabbit/%2f", "cart", "other"),
            "amqps://orders:secret@rabbit/%2f"
        );
    }

    // Each test uses its own variable: the environment is shared by the test threads.
    #[test]
    fn unset_variable_takes_the_default() {
        assert_eq!(var("COMMON_TEST_UNSET", 3000_u16), Ok(3000));
    }

    #[test]
    fn bad_value_names_the_variable() {
        unsafe { std::env::set_var("COMMON_TEST_PORT", "abc") };
        let error = var("COMMON_TEST_PORT", 3000_u16).unwrap_err();
        assert_eq!(error.name, "COMMON_TEST_PORT");
        assert!(
            error
                .to_string()
                .starts_with("invalid value for COMMON_TEST_PORT: \"abc\"")
        );
    }

    #[test]
    fn url_must_have_an_expected_scheme() {
        unsafe { std::env::set_var("COMMON_TEST_URL", "localhost:5672") };
        assert!(url("COMMON_TEST_URL", "", &["amqp", "amqps"]).is_err());
        unsafe { std::env::set_var("COMMON_TEST_URL2", "http://auth:3000/") };
        assert_eq!(
            url("COMMON_TEST_URL2", "", &["http", "https"]).unwrap(),
            "http://auth:3000"
        );
    }

    #[test]
    fn a_url_list_checks_every_url() {
        unsafe { std::env::set_var("COMMON_TEST_URLS", " amqp://a:5672/, amqp://b:5672/%2f ") };
        assert_eq!(
            url_list("COMMON_TEST_URLS", "", &["amqp"]).unwrap(),
            "amqp://a:5672,amqp://b:5672/%2f"
        );
        unsafe { std::env::set_var("COMMON_TEST_URLS2", "amqp://a:5672,b:5672") };
        assert!(url_list("COMMON_TEST_URLS2", "", &["amqp"]).is_err());
        unsafe { std::env::set_var("COMMON_TEST_URLS3", "amqp://a:5672,") };
        assert!(url_list("COMMON_TEST_URLS3", "", &["amqp"]).is_err());
    }

    #[test]
    fn a_refused_url_is_shown_without_its_password() {
        unsafe {
            std::env::set_var(
                "COMMON_TEST_SECRET_URLS",
                "amqp://cart:s3cret@a:5672,b:5672",
            )
        };
        let error = url_list("COMMON_TEST_SECRET_URLS", "", &["amqp"]).unwrap_err();
        assert_eq!(error.value, "amqp://cart:***@a:5672,b:5672");
    }

    #[test]
    fn queue_type_is_quorum_or_classic() {
        assert_eq!(
            var("COMMON_TEST_QUEUE_TYPE_UNSET", rabbit::QueueType::default()),
            Ok(rabbit::QueueType::Quorum)
        );
        unsafe { std::env::set_var("COMMON_TEST_QUEUE_TYPE", "mirrored") };
        let error = var("COMMON_TEST_QUEUE_TYPE", rabbit::QueueType::Quorum).unwrap_err();
        assert_eq!(error.reason, "expected quorum or classic");
    }

    // The only test of this binary that sets the `HTTP_*` variables.
    #[test]
    fn http_limits_refuse_a_zero_cap_and_name_a_bad_variable() {
        unsafe { std::env::set_var("HTTP_MAX_CONNECTIONS", "0") };
        let error = http_limits().unwrap_err();
        unsafe { std::env::remove_var("HTTP_MAX_CONNECTIONS") };
        assert_eq!(error.name, "HTTP_MAX_CONNECTIONS");
        unsafe { std::env::set_var("HTTP_BODY_TIMEOUT_SECS", "soon") };
        let error = http_limits().unwrap_err();
        unsafe { std::env::remove_var("HTTP_BODY_TIMEOUT_SECS") };
        assert_eq!(error.name, "HTTP_BODY_TIMEOUT_SECS");
    }

    #[test]
    fn zero_seconds_is_refused() {
        unsafe { std::env::set_var("COMMON_TEST_TTL", "0") };
        assert!(seconds("COMMON_TEST_TTL", 600).is_err());
    }
}
