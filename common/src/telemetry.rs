//! Tracing set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT` picks pretty or JSON lines.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("expected pretty or json"),
        }
    }
}

/// Reads `LOG_FORMAT` and `RUST_LOG` and installs the global subscriber (once; later calls, as in
/// tests, keep the first).
pub fn init() -> Result<(), crate::config::ConfigError> {
    let format = crate::config::var("LOG_FORMAT", LogFormat::Pretty)?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(&directives)
            .map_err(|error| crate::config::ConfigError::new("RUST_LOG", &directives, error))?,
        Err(_) => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
