//! Read models in Redis: what a service answers to a GET, stored as the response body it serves,
//! so a read is one Redis round trip instead of a store query (CONTRACT section 10, "Reads").
//!
//! The store stays the truth; Redis holds copies, written after the store by whoever changed it.
//! With several instances those writes race, so every entry carries the version of what it
//! shows (a position in the event log) and a write of an older version is refused by a script
//! that Redis runs atomically: the newest version wins whatever order the writes arrive in.
//!
//! Redis is an aid, never a dependency: when it is down a read answers `None` and the service
//! reads its store; after a failure reads leave Redis alone for a second, so an outage costs
//! them no waiting. A write that fails leaves its entry behind the store: its key is deleted by
//! the next call that reaches Redis, and, should that be lost too (a restart), every entry
//! expires `ttl` after its last write, the bound on how stale a read can be (docs/contract.md
//! section 10).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use tokio::sync::OwnedMutexGuard;

use crate::config::ConfigError;
use crate::locks::KeyedLocks;

/// Writes `body` (field `b`) under version `v` and owner `o` unless the entry holds a newer or
/// equal version, and (re)starts its expiry.
const PUT_IF_NEWER: &str = r"
local stored = redis.call('HGET', KEYS[1], 'v')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'o', ARGV[2], 'b', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Opens a set for filling (a set already there is kept) and starts its expiry.
const OPEN_SET: &str = r"
redis.call('HSETNX', KEYS[1], '', 'filling')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// Completes a set opened by [`OPEN_SET`] with the members read from the store (pairs of member
/// and value); a set that vanished meanwhile (expired, deleted) stays missing, for the next
/// reader to fill, as the writers that found it missing expect.
const COMPLETE_SET: &str = r"
if redis.call('HEXISTS', KEYS[1], '') == 0 then return 0 end
for i = 1, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], '', 'complete')
return 1
";

/// Adds a member (with its value) to a set that exists (is being filled or is complete); a
/// missing set stays missing, and the next reader fills it from the store.
const ADD_IF_PRESENT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// How long a reader that missed Redis waits for its turn to read the store (see
/// [`Projections::read_turn`]). Bounded, so that a slow or unreachable store does not queue
/// every reader of a key behind each other's timeouts.
const READ_TURN: Duration = Duration::from_secs(2);

/// How long reads leave Redis alone after a failed call: meanwhile they go straight to the store
/// instead of each waiting for a connection attempt.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Keys whose write failed, remembered for deletion; past this many, expiry alone repairs them.
const MAX_UNSYNCED: usize = 10_000;

/// The field of a set's hash that says whether it holds every member.
const STATE: &str = "";
const COMPLETE: &str = "complete";

/// An entry's fields as HMGET answers them: absent when the entry is.
type OwnerAndBody = (Option<String>, Option<Vec<u8>>);

/// One entry: who may read it and the body to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub owner: String,
    pub body: Bytes,
}

/// Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Projections {
    redis: ConnectionManager,
    /// Keeps deployments (and tests) that share one Redis apart: the service's database name.
    namespace: String,
    ttl: Duration,
    put_if_newer: Script,
    add_if_present: Script,
    open_set: Script,
    complete_set: Script,
    /// Keys whose write failed: they may show less than the store until deleted.
    unsynced: Arc<Mutex<Vec<String>>>,
    /// Until when reads leave Redis alone after a failure.
    paused_until: Arc<Mutex<Option<Instant>>>,
    /// Whether the last call failed: an outage is logged once when it starts and once at its end.
    down: Arc<AtomicBool>,
    /// Readers in this process that missed one key, taking turns (see [`Self::read_turn`]).
    readers: Arc<KeyedLocks>,
}

impl Projections {
    /// Connects lazily and reconnects by itself; answers `None` while Redis is unreachable.
    pub fn new(url: &str, namespace: &str, ttl: Duration) -> Result<Self, ConfigError> {
        let invalid = |error: redis::RedisError| {
            ConfigError::new("REDIS_URL", &crate::secrets::redacted(url), error)
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        // Short: a read waiting on a dead Redis is better answered from the store.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)?;
        Ok(Self {
            redis,
            namespace: namespace.to_owned(),
            ttl,
            put_if_newer: Script::new(PUT_IF_NEWER),
            add_if_present: Script::new(ADD_IF_PRESENT),
            open_set: Script::new(OPEN_SET),
            complete_set: Script::new(COMPLETE_SET),
            unsynced: Arc::default(),
            paused_until: Arc::default(),
            down: Arc::default(),
            readers: Arc::default(),
        })
    }

    /// The connection for a read, or `None` while reads leave Redis alone after a failure.
    async fn for_reading(&self) -> Option<ConnectionManager> {
        let paused_until = *self.paused_until.lock().expect("not poisoned");
        if paused_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        self.for_writing().await
    }

    /// The connection, once the keys of failed writes are deleted; `None` when that fails.
    async fn for_writing(&self) -> Option<ConnectionManager> {
        let mut redis = self.redis.clone();
        let unsynced = std::mem::take(&mut *self.unsynced.lock().expect("not poisoned"));
        if !unsynced.is_empty() {
            let deleted = redis.del::<_, ()>(&unsynced).await;
            if self.outcome(deleted).is_none() {
                self.unsynced_again(unsynced);
                return None;
            }
        }
        Some(redis)
    }

    /// Remembers keys whose write failed, for deletion by the next call that reaches Redis.
    fn unsynced_again(&self, keys: impl IntoIterator<Item = String>) {
        let mut unsynced = self.unsynced.lock().expect("not poisoned");
        for key in keys {
            if unsynced.len() < MAX_UNSYNCED {
                unsynced.push(key);
            }
        }
    }

    /// The outcome of a write of `key`: a failed one leaves the key to delete.
    fn written<T>(&self, key: String, result: redis::RedisResult<T>) {
        if self.outcome(result).is_none() {
            self.unsynced_again([key]);
        }
    }

    /// The value of a Redis call; on failure `None`, and Redis is left alone for a while.
    fn outcome<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.down.swap(false, Ordering::AcqRel) {
                    tracing::info!("Redis is back: reads are served from it again");
                }
                Some(value)
            }
            Err(error) => {
                *self.paused_until.lock().expect("not poisoned") =
                    Some(Instant::now() + PAUSE_AFTER_FAILURE);
                if !self.down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(%error, "Redis unavailable: reading the store until it is back");
                }
                None
            }
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    pub async fn ping(&self) -> bool {
        let mut redis = self.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .is_ok()
    }

    /// A turn to read the store for `key` after a miss, held until dropped; `None` when waiting
    /// for it took too long. Readers that miss one key take turns and ask Redis again once the
    /// turn is theirs: when a hot entry expires under load, the store is read once per instance
    /// instead of once per waiting request, and the waiting requests are answered from the
    /// entry that read wrote. A throughput aid, never why an answer is right.
    pub async fn read_turn(&self, key: &str) -> Option<OwnedMutexGuard<()>> {
        self.readers.lock_within(key, READ_TURN).await
    }

    /// The entry under `key`, or `None` when there is none or Redis cannot say.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        self.get_many(&[key]).await.into_iter().next().flatten()
    }

    /// The entries under `keys`, in order, in one round trip.
    pub async fn get_many(&self, keys: &[&str]) -> Vec<Option<Entry>> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HMGET").arg(self.key(key)).arg(&["o", "b"]);
        }
        let Some(mut redis) = self.for_reading().await else {
            return vec![None; keys.len()];
        };
        let answers: Option<Vec<OwnerAndBody>> = self.outcome(pipe.query_async(&mut redis).await);
        let Some(answers) = answers else {
            return vec![None; keys.len()];
        };
        answers
            .into_iter()
            .map(|(owner, body)| {
                Some(Entry {
                    owner: owner?,
                    body: body?.into(),
                })
            })
            .collect()
    }

    /// Stores `body` as the entry at `version`, unless a newer or equal version is there.
    pub async fn put(&self, key: &str, version: i64, owner: &str, body: &[u8]) {
        let key = self.key(key);
        let Some(mut redis) = self.for_writing().await else {
            return self.unsynced_again([key]);
        };
        let written: redis::RedisResult<i64> = self
            .put_if_newer
            .key(&key)
            .arg(version)
            .arg(owner)
            .arg(body)
            .arg(self.ttl_secs())
            .invoke_async(&mut redis)
            .await;
        self.written(key, written);
    }

    /// The members of set `key` with their values when the set is complete; `None` when it must
    /// be filled from the store. A value is what the writer gave, e.g. a sort key.
    pub async fn members(&self, key: &str) -> Option<Vec<(String, String)>> {
        let mut redis = self.for_reading().await?;
        let fields: Vec<(String, String)> = self.outcome(redis.hgetall(self.key(key)).await)?;
        let complete = fields
            .iter()
            .any(|(field, value)| field == STATE && value == COMPLETE);
        complete.then(|| {
            fields
                .into_iter()
                .filter(|(field, _)| field != STATE)
                .collect()
        })
    }

    /// Adds `member` with `value` to set `key` if the set exists; a writer calls it after its
    /// store write.
    pub async fn add(&self, key: &str, member: &str, value: &str) {
        let key = self.key(key);
        let Some(mut redis) = self.for_writing().await else {
            return self.unsynced_again([key]);
        };
        let added: redis::RedisResult<i64> = self
            .add_if_present
            .key(&key)
            .arg(member)
            .arg(value)
            .invoke_async(&mut redis)
            .await;
        self.written(key, added);
    }

    /// Fills set `key` from the store: `read` runs after the set is opened, so a member a writer
    /// adds meanwhile is either in what `read` returns or added to the open set by the writer.
    pub async fn fill<E>(
        &self,
        key: &str,
        read: impl Future<Output = Result<Vec<(String, String)>, E>>,
    ) -> Result<Vec<(String, String)>, E> {
        let Some(mut redis) = self.for_reading().await else {
            return read.await;
        };
        let redis_key = self.key(key);
        let opened: redis::RedisResult<i64> = self
            .open_set
            .key(&redis_key)
            .arg(self.ttl_secs())
            .invoke_async(&mut redis)
            .await;
        let members = read.await?;
        if self.outcome(opened).is_none() {
            return Ok(members);
        }
        let mut complete = self.complete_set.key(&redis_key);
        for (member, value) in &members {
            complete.arg(member).arg(value);
        }
        let completed: redis::RedisResult<i64> = complete.invoke_async(&mut redis).await;
        self.outcome(completed);
        Ok(members)
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX)
    }
}
