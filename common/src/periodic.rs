//! Periodic work that runs once per interval for the whole system, however many instances of a
//! service are up (the course's batch processes, re-senders, revalidations).
//!
//! Each instance wakes every `interval`; the first to claim the interval's turn runs it, the others
//! skip it. A turn is claimed by inserting `{_id: "<job>:<slot>"}`, where `slot` is the number of
//! whole intervals since the Unix epoch, into the `turns` collection: `_id` is unique on every
//! MongoDB-compatible server, so exactly one insert per slot succeeds. This is an insert that a
//! unique index decides, the only write FerretDB keeps exact across processes (GUIDE.md); no
//! clock agreement beyond the interval's granularity is needed, and a crashed instance holds
//! nothing (the next slot is a new key).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Collection, Database};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::mongo::is_duplicate_key;

/// Claimed turns older than this are deleted by the winner of a later turn.
const KEEP_TURNS: Duration = Duration::from_secs(24 * 3600);

/// The turns of a service's periodic jobs, in its own database.
#[derive(Clone)]
pub struct Turns {
    turns: Collection<Document>,
}

impl Turns {
    pub fn new(db: &Database) -> Self {
        Self {
            turns: db.collection("turns"),
        }
    }

    /// True when this call won the current turn of `job` (one slot of `interval`); false when
    /// another instance, or an earlier call, did.
    pub async fn claim(&self, job: &str, interval: Duration) -> mongodb::error::Result<bool> {
        let slot = slot(SystemTime::now(), interval);
        let now = DateTime::now();
        let turn = doc! {"_id": format!("{job}:{slot}"), "job": job, "claimed": now};
        match self.turns.insert_one(turn).await {
            Ok(_) => {
                let old =
                    DateTime::from_millis(now.timestamp_millis() - KEEP_TURNS.as_millis() as i64);
                // Housekeeping only: a failure leaves a few small documents for the next turn.
                if let Err(error) = self
                    .turns
                    .delete_many(doc! {"job": job, "claimed": {"$lt": old}})
                    .await
                {
                    warn!(job, %error, "cannot delete old turns");
                }
                Ok(true)
            }
            Err(error) if is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// The number of whole `interval`s between the Unix epoch and `at`.
fn slot(at: SystemTime, interval: Duration) -> u128 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() / interval.as_millis().max(1)
}

/// Runs `work` every `interval` until `shutdown`, on the one instance that claims each turn of
/// `job`. A turn that cannot be claimed (MongoDB down) is skipped with a log line.
pub fn every_turn<F, Fut>(
    turns: Turns,
    job: &'static str,
    interval: Duration,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            match turns.claim(job, interval).await {
                Ok(true) => work().await,
                Ok(false) => {}
                Err(error) => warn!(job, %error, "cannot claim the turn; skipped"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_within_one_interval_share_a_slot() {
        let interval = Duration::from_secs(60);
        let start = UNIX_EPOCH + Duration::from_secs(600);
        assert_eq!(slot(start, interval), 10);
        assert_eq!(slot(start + Duration::from_secs(59), interval), 10);
        assert_eq!(slot(start + Duration::from_secs(60), interval), 11);
    }
}
