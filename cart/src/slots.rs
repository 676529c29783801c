//! Slots for questions to catalog (`article-data` over direct reply-to, asked by `/cart/validate`
//! and checkout): the process's, and each user's share of them. Without the share, one user's
//! carts (a 100-line validate, or fifty validates at once) could take every slot, and everyone
//! else's validate would time out with 503 (review L3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use common::ApiError;
use rabbit::RabbitError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::messaging::Unanswered;

/// `article-data` requests in flight at once in this process. Each holds an AMQP channel (direct
/// reply-to, pooled), and RabbitMQ allows 2,047 per connection: parallel validations of big
/// carts must not exhaust them.
const CATALOG_QUESTIONS: usize = 64;
/// Of those, the most one user may hold: a sixteenth, so that sixteen users asking at once
/// still share the process evenly. A user's questions beyond it wait for the user's own slots.
const USER_QUESTIONS: usize = 4;
/// `/cart/validate` requests one user may have in flight at once in this process; more answer
/// 429 at once (a cart screen asks one at a time: more is a script, and each would wait behind
/// the user's own questions until it timed out).
const USER_VALIDATIONS: usize = 4;
/// Past this many users in a map, the entries nobody holds are swept on the next insert.
const SWEEP_ABOVE: usize = 1024;

pub struct CatalogSlots {
    process: Semaphore,
    questions: PerUser,
    validations: PerUser,
}

impl Default for CatalogSlots {
    fn default() -> Self {
        Self::new(CATALOG_QUESTIONS, USER_QUESTIONS, USER_VALIDATIONS)
    }
}

/// A validation's place among its user's (`CatalogSlots::admit_validation`), until dropped.
pub struct ValidationTicket {
    _place: OwnedSemaphorePermit,
}

impl CatalogSlots {
    fn new(process: usize, per_user: usize, validations_per_user: usize) -> Self {
        Self {
            process: Semaphore::new(process),
            questions: PerUser::new(per_user),
            validations: PerUser::new(validations_per_user),
        }
    }

    /// A place for one more validation of `user_id`; 429 when the user has as many in flight
    /// in this process as one user may.
    pub fn admit_validation(&self, user_id: &str) -> Result<ValidationTicket, ApiError> {
        self.validations
            .of(user_id)
            .try_acquire_owned()
            .map(|place| ValidationTicket { _place: place })
            .map_err(|_| ApiError::TooManyRequests("cart validations"))
    }

    /// Runs `question` for `user_id` once one of the user's slots, then one of the process's, is
    /// free (a user waiting for its own slots holds none of the process's); the wait counts
    /// against `timeout`.
    pub async fn ask<T>(
        &self,
        user_id: &str,
        timeout: Duration,
        question: impl Future<Output = Result<T, Unanswered>>,
    ) -> Result<T, Unanswered> {
        let user = self.questions.of(user_id);
        tokio::time::timeout(timeout, async {
            let _user_slot = user.acquire().await.map_err(|_| RabbitError::Unavailable)?;
            let _slot = self
                .process
                .acquire()
                .await
                .map_err(|_| RabbitError::Unavailable)?;
            question.await
        })
        .await
        .map_err(|_| RabbitError::Timeout)?
    }
}

/// One semaphore of `permits` per user, kept while someone holds it.
struct PerUser {
    permits: usize,
    users: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl PerUser {
    fn new(permits: usize) -> Self {
        Self {
            permits,
            users: Mutex::default(),
        }
    }

    /// The semaphore of `user_id`: the one its requests in flight hold, or a new one when none is
    /// (nobody holds a permit of a semaphore that is gone, so a new one starts where it would).
    fn of(&self, user_id: &str) -> Arc<Semaphore> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(semaphore) = users.get(user_id).and_then(Weak::upgrade) {
            return semaphore;
        }
        if users.len() > SWEEP_ABOVE {
            users.retain(|_, semaphore| semaphore.strong_count() > 0);
        }
        let semaphore = Arc::new(Semaphore::new(self.permits));
        users.insert(user_id.to_owned(), Arc::downgrade(&semaphore));
        semaphore
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(30);

    /// A question that takes a little while and records how many were in flight at most.
    async fn question(in_flight: &AtomicUsize, most: &AtomicUsize) -> Result<(), Unanswered> {
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    #[tokio::test]
    async fn questions_of_many_users_beyond_the_process_slots_wait_for_one() {
        let slots = CatalogSlots::new(2, 4, 4);
        let (in_flight, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let users: Vec<String> = (0..6).map(|user| format!("user{user}")).collect();
        let questions = users
            .iter()
            .map(|user| slots.ask(user, PATIENCE, question(&in_flight, &most)));
        futures_util::future::try_join_all(questions).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn one_users_questions_take_at_most_its_share() {
        let slots = CatalogSlots::new(64, 3, 4);
        let (in_flight, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let questions = (0..10).map(|_| slots.ask("greedy", PATIENCE, question(&in_flight, &most)));
        futures_util::future::try_join_all(questions).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn another_users_question_does_not_wait_behind_one_users_share() {
        let slots = CatalogSlots::new(4, 2, 4);
        let stuck = || async {
            tokio::time::sleep(PATIENCE).await;
            Ok(())
        };
        // The greedy user's questions hold its two slots, and the rest wait for them, holding
        // none of the process's.
        let greedy = futures_util::future::join_all(
            (0..20).map(|_| slots.ask("greedy", PATIENCE * 2, stuck())),
        );
        let other = slots.ask("other", Duration::from_secs(5), async { Ok(1) });
        tokio::select! {
            _ = greedy => panic!("the greedy questions ended first"),
            answer = other => assert_eq!(answer.unwrap(), 1),
        }
    }

    #[tokio::test]
    async fn waiting_for_a_slot_counts_against_the_timeout() {
        let slots = CatalogSlots::new(1, 4, 4);
        let held = slots.process.acquire().await.unwrap();
        let wait = Duration::from_millis(50);
        let answer = slots.ask("user", wait, async { Ok(1) }).await;
        assert!(matches!(
            answer,
            Err(Unanswered::Rabbit(RabbitError::Timeout))
        ));
        drop(held);
        assert_eq!(slots.ask("user", wait, async { Ok(1) }).await.unwrap(), 1);
    }

    #[test]
    fn a_users_validations_past_its_share_are_refused_until_one_ends() {
        let slots = CatalogSlots::new(64, 4, 2);
        let first = slots.admit_validation("user").unwrap();
        let _second = slots.admit_validation("user").unwrap();
        assert!(matches!(
            slots.admit_validation("user"),
            Err(ApiError::TooManyRequests(_))
        ));
        assert!(slots.admit_validation("other").is_ok());
        drop(first);
        assert!(slots.admit_validation("user").is_ok());
    }
}
