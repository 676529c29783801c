//! MongoDB helpers shared by the services: one client per process, errors sorted into
//! "unavailable" (503) and the duplicate-key case that unique indexes raise.

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database, bson::doc};

use crate::config::ConfigError;

/// How long an operation waits for a reachable server before the request answers 503.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
const DUPLICATE_KEY: i32 = 11000;

/// A handle on database `db`. Connecting is lazy: the service starts while MongoDB is down and its
/// requests answer 503 until it is back.
pub async fn connect(url: &str, db: &str, app_name: &str) -> Result<Database, ConfigError> {
    let mut options = ClientOptions::parse(url)
        .await
        .map_err(|error| ConfigError::new("MONGO_URL", url, error))?;
    options.app_name = Some(app_name.into());
    options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout = Some(Duration::from_secs(2));
    let client =
        Client::with_options(options).map_err(|error| ConfigError::new("MONGO_URL", url, error))?;
    Ok(client.database(db))
}

/// True when the server answers a ping.
pub async fn ping(db: &Database) -> bool {
    db.run_command(doc! { "ping": 1 }).await.is_ok()
}

/// True for the error a unique index raises on a duplicate.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(error)) => error.code == DUPLICATE_KEY,
        ErrorKind::Command(error) => error.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(error) => error
            .write_errors
            .iter()
            .flatten()
            .any(|error| error.code == DUPLICATE_KEY),
        _ => false,
    }
}

/// True when the error means the server could not be reached, rather than a refused operation.
pub fn is_unavailable(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::Shutdown
    )
}
