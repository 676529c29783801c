//! One async lock per order, held only while someone uses it.
//!
//! Catalog answers every line of an order at once, so the `article-data` consumer runs up to its
//! prefetch of handlers against one order. Serialising their read-decide-append inside the
//! process means they no longer race for positions; the unique (orderId, position) index still
//! guards against other instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// Past this many entries, the ones nobody holds are swept on the next insert.
const SWEEP_ABOVE: usize = 1024;

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
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
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_key_is_held_by_one_task_at_a_time() {
        let locks = KeyedLocks::default();
        let guard = locks.lock("o1").await;
        let second = tokio::time::timeout(Duration::from_millis(50), locks.lock("o1")).await;
        assert!(second.is_err(), "a second holder must wait");
        drop(guard);
        drop(locks.lock("o1").await);
    }

    #[tokio::test]
    async fn other_keys_do_not_wait() {
        let locks = KeyedLocks::default();
        let _held = locks.lock("o1").await;
        let _other = locks.lock("o2").await;
    }
}
