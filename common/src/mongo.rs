//! MongoDB helpers shared by the services: one client per process, errors sorted into
//! "unavailable" (503) and the duplicate-key case that unique indexes raise.

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database, bson::doc};

use crate::config::ConfigError;
use crate::secrets::redacted;

/// How long an operation waits for a reachable server before the request answers 503.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
const DUPLICATE_KEY: i32 = 11000;

/// A handle on database `db`. Connecting is lazy: the service starts while MongoDB is down and its
/// requests answer 503 until it is back.
pub async fn connect(url: &str, db: &str, app_name: &str) -> Result<Database, ConfigError> {
    let mut options = ClientOptions::parse(url)
        .await
        .map_err(|error| ConfigError::new("MONGO_URL", &redacted(url), error))?;
    options.app_name = Some(app_name.into());
    options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout = Some(Duration::from_secs(2));
    let client = Client::with_options(options)
        .map_err(|error| ConfigError::new("MONGO_URL", &redacted(url), error))?;
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

/// Server error codes that mean "not now" rather than "no": a primary stepping down or being
/// elected (10107, 13435, 10058, 189, 11602), a node shutting down or recovering (91, 11600,
/// 13436), an operation timed out or interrupted by a failover (50, 262, 89), a host unreachable
/// (6, 7, 9001), a majority read not yet possible (134), a write conflict (112). The driver
/// retries some of them once; a failover outlasts that.
const TRANSIENT_CODES: [i32; 16] = [
    6, 7, 50, 89, 91, 112, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436,
];
/// Labels the server or driver puts on errors that a retry may cure.
const TRANSIENT_LABELS: [&str; 4] = [
    mongodb::error::RETRYABLE_WRITE_ERROR,
    mongodb::error::TRANSIENT_TRANSACTION_ERROR,
    mongodb::error::RETRYABLE_ERROR,
    mongodb::error::SYSTEM_OVERLOADED_ERROR,
];

/// True when the error means "try again later" rather than a refused operation: the server could
/// not be reached, or could not do it now (a failover, a shutdown, a write concern not met in
/// time, a timeout). Callers answer 503 with `Retry-After` and consumers keep the message and
/// retry with backoff instead of dead-lettering it.
pub fn is_unavailable(error: &mongodb::error::Error) -> bool {
    if TRANSIENT_LABELS
        .iter()
        .any(|label| error.contains_label(label))
    {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::Shutdown
        // The write may or may not have happened: the caller's retry decides again.
        | ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        ErrorKind::Command(error) => TRANSIENT_CODES.contains(&error.code),
        ErrorKind::Write(WriteFailure::WriteError(error)) => TRANSIENT_CODES.contains(&error.code),
        ErrorKind::InsertMany(error) => {
            error.write_concern_error.is_some()
                || error
                    .write_errors
                    .iter()
                    .flatten()
                    .any(|error| TRANSIENT_CODES.contains(&error.code))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{self, Document};
    use mongodb::error::{CommandError, Error, WriteConcernError, WriteError};

    fn server_error<T: serde::de::DeserializeOwned>(code: i32) -> T {
        let document: Document = doc! { "code": code, "codeName": "Test", "errmsg": "test" };
        bson::from_document(document).expect("an error document")
    }

    fn command(code: i32) -> Error {
        Error::from(ErrorKind::Command(server_error::<CommandError>(code)))
    }

    #[test]
    fn failover_and_shutdown_codes_mean_try_again() {
        for code in [10107, 11602, 189, 91, 13435, 50, 262] {
            assert!(is_unavailable(&command(code)), "code {code}");
        }
        let write_error = WriteFailure::WriteError(server_error::<WriteError>(10107));
        assert!(is_unavailable(&Error::from(ErrorKind::Write(write_error))));
    }

    #[test]
    fn a_write_concern_not_met_means_try_again() {
        let failure = WriteFailure::WriteConcernError(server_error::<WriteConcernError>(64));
        assert!(is_unavailable(&Error::from(ErrorKind::Write(failure))));
    }

    #[test]
    fn refusals_are_not_transient() {
        assert!(!is_unavailable(&command(DUPLICATE_KEY)));
        assert!(!is_unavailable(&command(2)), "BadValue");
        let duplicate = WriteFailure::WriteError(server_error::<WriteError>(DUPLICATE_KEY));
        let error = Error::from(ErrorKind::Write(duplicate));
        assert!(is_duplicate_key(&error) && !is_unavailable(&error));
    }
}
