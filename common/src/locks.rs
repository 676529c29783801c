//! One async lock per key (an article's stock ledger, a user's carts, an order's stream), held
//! only while someone uses it.
//!
//! A throughput aid, never the reason a result is right: correctness rests on inserts that a unique
//! index decides (an event or movement at position n+1), which hold across any number of
//! instances. Within one instance, writers to the same key would otherwise race for the same
//! position and all but one would retry; taking turns here spares those retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

/// Past this many entries, the ones nobody holds are swept on the next insert.
const SWEEP_ABOVE: usize = 1024;

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits at most `wait` for the lock of `key`; `None` when it is still held by then.
    pub async fn lock_within(&self, key: &str, wait: Duration) -> Option<OwnedMutexGuard<()>> {
        tokio::time::timeout(wait, self.lock(key)).await.ok()
    }

    /// Waits for the lock of `key`; released when the guard is dropped.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            match locks.get(key).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    if locks.len() > SWEEP_ABOVE {
                        locks.retain(|_, lock| lock.strong_count() > 0);
                    }
                    let mutex = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_owned(), Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_held_by_one_task_at_a_time() {
        let locks = KeyedLocks::default();
        let guard = locks.lock("u1").await;
        let second = tokio::time::timeout(Duration::from_millis(50), locks.lock("u1")).await;
        assert!(second.is_err(), "a second holder must wait");
        drop(guard);
        drop(locks.lock("u1").await);
    }

    #[tokio::test]
    async fn a_bounded_wait_gives_up_on_a_held_key() {
        let locks = KeyedLocks::default();
        let guard = locks.lock("u1").await;
        let wait = Duration::from_millis(50);
        assert!(locks.lock_within("u1", wait).await.is_none());
        drop(guard);
        assert!(locks.lock_within("u1", wait).await.is_some());
    }

    #[tokio::test]
    async fn other_keys_do_not_wait() {
        let locks = KeyedLocks::default();
        let _held = locks.lock("u1").await;
        let _other = locks.lock("u2").await;
    }
}
