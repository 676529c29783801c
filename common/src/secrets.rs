//! Secrets anyone knows (issue 14, "Trust no one by default"): the development defaults published
//! in this repository, RabbitMQ's `guest:guest`, and a remote MongoDB or Redis reached without a
//! password. Every service checks the secrets it was configured with at start and refuses these,
//! unless `ALLOW_DEV_SECRETS=1` says that it runs on a development machine that nobody else
//! reaches (docs/security.md). A local server without a password is fine: that is the no-Docker
//! run, whose servers listen on this machine only.

use std::net::IpAddr;

use crate::config::ConfigError;

/// The variable that lets a service start with a secret anyone knows: `1` (or unset, `0`).
pub const ALLOW_DEV_SECRETS: &str = "ALLOW_DEV_SECRETS";

/// Auth's `JWT_SECRET` when the variable is unset; refused without `ALLOW_DEV_SECRETS=1`.
pub const DEVELOPMENT_JWT_SECRET: &str = "development-secret-change-me";

/// JWT secrets published in this repository or its history: anyone can sign tokens with them.
const PUBLIC_JWT_SECRETS: [&str; 2] = [
    DEVELOPMENT_JWT_SECRET,
    // docker-compose.yml's default before issue 14.
    "compose-development-secret-change-me-please",
];

/// What every refusal tells the user to do.
const REMEDY: &str = "generate secrets with `bash scripts/secrets.sh` (see README.md), or set \
                      ALLOW_DEV_SECRETS=1 on a development machine that nobody else can reach";

/// A secret a service is configured with, as the value of its variable.
#[derive(Debug, Clone, Copy)]
pub enum Secret<'a> {
    /// `JWT_SECRET`, which signs auth's tokens.
    Jwt(&'a str),
    /// `RABBIT_URL`: one AMQP URL or a comma-separated list of them.
    RabbitUrl(&'a str),
    /// `MONGO_URL`.
    MongoUrl(&'a str),
    /// `REDIS_URL`.
    RedisUrl(&'a str),
}

impl Secret<'_> {
    fn variable(self) -> &'static str {
        match self {
            Secret::Jwt(_) => "JWT_SECRET",
            Secret::RabbitUrl(_) => "RABBIT_URL",
            Secret::MongoUrl(_) => "MONGO_URL",
            Secret::RedisUrl(_) => "REDIS_URL",
        }
    }

    /// The value as an error message may show it: never a JWT secret, URLs without passwords.
    fn shown(self) -> String {
        match self {
            Secret::Jwt(_) => "<hidden>".into(),
            Secret::RabbitUrl(url) | Secret::MongoUrl(url) | Secret::RedisUrl(url) => redacted(url),
        }
    }

    /// Why anyone knows this secret, if they do.
    fn why_public(self) -> Option<&'static str> {
        match self {
            Secret::Jwt(secret) => PUBLIC_JWT_SECRETS.contains(&secret).then_some(
                "a development secret published in this repository (auth's default when JWT_SECRET \
                 is unset is one); anyone could sign tokens with it",
            ),
            Secret::RabbitUrl(urls) => urls.split(',').any(is_remote_guest).then_some(
                "RabbitMQ's guest:guest or a development password (what a URL without \
                 credentials gets when RABBIT_PASSWORD is unset) for a broker that is not on this \
                 machine",
            ),
            Secret::MongoUrl(url) => {
                (!has_password(url) && !url.contains("authMechanism=") && !is_local(url))
                    .then_some("no password for a MongoDB server that is not on this machine")
            }
            Secret::RedisUrl(url) => (!has_password(url) && !is_local(url))
                .then_some("no password for a Redis server that is not on this machine"),
        }
    }
}

/// Refuses to start with a secret anyone knows unless `ALLOW_DEV_SECRETS=1` (then each is logged
/// as a warning). Every service's `Config::from_env` calls it with the secrets it uses.
pub fn refuse_public_secrets(secrets: &[Secret]) -> Result<(), ConfigError> {
    let allowed = dev_secrets_allowed(std::env::var(ALLOW_DEV_SECRETS).ok().as_deref())?;
    check(secrets, allowed)
}

/// `ALLOW_DEV_SECRETS` read: `1` allows, unset, empty or `0` does not, anything else is a
/// configuration error (a typo must not silently change what the service accepts).
fn dev_secrets_allowed(value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::trim) {
        None | Some("" | "0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(ConfigError::new(
            ALLOW_DEV_SECRETS,
            other,
            "expected 1 or 0",
        )),
    }
}

/// The first secret anyone knows, as an error, unless `allowed`.
fn check(secrets: &[Secret], allowed: bool) -> Result<(), ConfigError> {
    for &secret in secrets {
        let Some(why) = secret.why_public() else {
            continue;
        };
        if !allowed {
            return Err(ConfigError::new(
                secret.variable(),
                &secret.shown(),
                format!("{why}: {REMEDY}"),
            ));
        }
        tracing::warn!(
            variable = secret.variable(),
            "ALLOW_DEV_SECRETS=1 accepts {why}: never let other machines reach this service"
        );
    }
    Ok(())
}

/// What a URL says about who connects where:
/// `scheme://[user[:password]@]host[:port][,host[:port]...][/path][?query]`.
struct Authority<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    /// Host names or addresses, without ports or IPv6 brackets.
    hosts: Vec<&'a str>,
}

fn authority(url: &str) -> Authority<'_> {
    let rest = url.trim().split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (userinfo, hosts) = match rest[..end].rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, &rest[..end]),
    };
    let (user, password) = match userinfo.map(|info| info.split_once(':')) {
        Some(Some((user, password))) => (Some(user), Some(password)),
        Some(None) => (userinfo, None),
        None => (None, None),
    };
    let hosts = hosts
        .split(',')
        .map(|host| match host.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => host.split(':').next().unwrap_or_default(),
        })
        .collect();
    Authority {
        user,
        password,
        hosts,
    }
}

/// True when every host of `url` is this machine.
fn is_local(url: &str) -> bool {
    authority(url).hosts.iter().all(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

fn has_password(url: &str) -> bool {
    authority(url)
        .password
        .is_some_and(|password| !password.is_empty())
}

/// True for an AMQP URL that logs in as guest:guest (as one without credentials does) to a broker
/// that is not on this machine, which a stock broker refuses and a Docker one accepts.
/// A login anyone knows, for a broker that is not on this machine: `guest:guest` (also what a
/// URL without credentials means to lapin), or a service's development password
/// `<service>-dev-password`, which `common::config::rabbit_url` gives a URL without credentials
/// when `RABBIT_PASSWORD` is unset and `scripts/deps.sh` gives the local broker.
fn is_remote_guest(url: &str) -> bool {
    let authority = authority(url);
    let user = authority.user.unwrap_or("guest");
    let password = authority.password.unwrap_or("guest");
    let public =
        (user == "guest" && password == "guest") || password == format!("{user}-dev-password");
    public && !is_local(url)
}

/// `urls` (one URL or a comma-separated list) with every password replaced by `***`, for error
/// messages and logs.
pub fn redacted(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let authority = authority(url);
            match authority.password {
                Some(password) if !password.is_empty() => {
                    let user = authority.user.unwrap_or_default();
                    url.replacen(&format!("{user}:{password}@"), &format!("{user}:***@"), 1)
                }
                _ => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(secret: Secret) -> bool {
        check(&[secret], false).is_err()
    }

    #[test]
    fn the_published_jwt_secrets_are_refused_and_others_accepted() {
        assert!(refused(Secret::Jwt(DEVELOPMENT_JWT_SECRET)));
        assert!(refused(Secret::Jwt(
            "compose-development-secret-change-me-please"
        )));
        assert!(!refused(Secret::Jwt(
            "9f1c3b8e2d7a4f6051e9c0b3a8d2f7e4c1b6a9d0e3f8c2b7a4d1e6f9c0b3a8d2"
        )));
    }

    #[test]
    fn guest_is_refused_for_a_remote_broker_only() {
        assert!(refused(Secret::RabbitUrl(
            "amqp://guest:guest@rabbitmq:5672/%2f"
        )));
        // No credentials means guest:guest to the AMQP client.
        assert!(refused(Secret::RabbitUrl("amqp://rabbitmq:5672/%2f")));
        // A service's development password, which a URL without credentials gets.
        assert!(refused(Secret::RabbitUrl(
            "amqp://cart:cart-dev-password@rabbitmq:5672/%2f"
        )));
        assert!(!refused(Secret::RabbitUrl(
            "amqp://cart:cart-dev-password@127.0.0.1:5672/%2f"
        )));
        // One node of a cluster is enough.
        assert!(refused(Secret::RabbitUrl(
            "amqp://cart:s3cret@rabbitmq:5672/%2f,amqp://guest:guest@rabbitmq-2:5672/%2f"
        )));
        assert!(!refused(Secret::RabbitUrl(
            "amqp://guest:guest@localhost:5672/%2f"
        )));
        assert!(!refused(Secret::RabbitUrl(
            "amqp://guest:guest@127.0.0.1:5673/%2f,amqp://guest:guest@[::1]:5674/%2f"
        )));
        assert!(!refused(Secret::RabbitUrl(
            "amqp://cart:s3cret@rabbitmq:5672/%2f,amqp://cart:s3cret@rabbitmq-2:5672/%2f"
        )));
        assert!(!refused(Secret::RabbitUrl(
            "amqp://guest:other@rabbitmq:5672"
        )));
    }

    #[test]
    fn mongo_and_redis_need_a_password_when_remote_only() {
        assert!(refused(Secret::MongoUrl("mongodb://mongo:27017")));
        assert!(refused(Secret::MongoUrl("mongodb://root:@mongo:27017")));
        assert!(refused(Secret::MongoUrl(
            "mongodb://127.0.0.1:27017,db2:27017"
        )));
        assert!(!refused(Secret::MongoUrl("mongodb://localhost:27017")));
        assert!(!refused(Secret::MongoUrl(
            "mongodb://root:s3cret@mongo:27017/?authSource=admin"
        )));
        assert!(!refused(Secret::MongoUrl(
            "mongodb://db:27017/?authMechanism=MONGODB-X509&tls=true"
        )));
        assert!(refused(Secret::RedisUrl("redis://redis:6379")));
        assert!(!refused(Secret::RedisUrl("redis://127.0.0.1:6379")));
        assert!(!refused(Secret::RedisUrl("redis://:s3cret@redis:6379")));
        assert!(!refused(Secret::RedisUrl(
            "rediss://default:s3cret@redis:6379/0"
        )));
    }

    #[test]
    fn the_flag_allows_them_all() {
        let public = [
            Secret::Jwt(DEVELOPMENT_JWT_SECRET),
            Secret::RabbitUrl("amqp://guest:guest@rabbitmq:5672"),
            Secret::MongoUrl("mongodb://mongo:27017"),
            Secret::RedisUrl("redis://redis:6379"),
        ];
        assert!(check(&public, true).is_ok());
        assert!(check(&public, false).is_err());
    }

    #[test]
    fn the_flag_is_1_or_0_and_a_typo_is_an_error() {
        assert_eq!(dev_secrets_allowed(None), Ok(false));
        assert_eq!(dev_secrets_allowed(Some("")), Ok(false));
        assert_eq!(dev_secrets_allowed(Some("0")), Ok(false));
        assert_eq!(dev_secrets_allowed(Some("1")), Ok(true));
        let error = dev_secrets_allowed(Some("yes")).unwrap_err();
        assert_eq!(error.name, ALLOW_DEV_SECRETS);
    }

    #[test]
    fn a_refusal_names_the_variable_and_the_command_and_hides_the_secret() {
        let error = check(&[Secret::Jwt(DEVELOPMENT_JWT_SECRET)], false).unwrap_err();
        assert_eq!(error.name, "JWT_SECRET");
        let message = error.to_string();
        assert!(message.contains("bash scripts/secrets.sh"), "{message}");
        assert!(message.contains("ALLOW_DEV_SECRETS=1"), "{message}");
        assert!(!message.contains(DEVELOPMENT_JWT_SECRET), "{message}");

        let error = check(&[Secret::MongoUrl("mongodb://root:@mongo:27017")], false).unwrap_err();
        assert_eq!(error.name, "MONGO_URL");
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_passwords() {
        assert_eq!(
            redacted(
                "amqp://cart:s3cr:et@rabbitmq:5672/%2f,amqp://cart:s3cr:et@rabbitmq-2:5672/%2f"
            ),
            "amqp://cart:***@rabbitmq:5672/%2f,amqp://cart:***@rabbitmq-2:5672/%2f"
        );
        assert_eq!(
            redacted("mongodb://root:pw@mongo:27017/?authSource=admin"),
            "mongodb://root:***@mongo:27017/?authSource=admin"
        );
        assert_eq!(
            redacted("redis://:pw@redis:6379"),
            "redis://:***@redis:6379"
        );
        assert_eq!(redacted("redis://localhost:6379"), "redis://localhost:6379");
    }
}
