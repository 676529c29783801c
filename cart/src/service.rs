//! The cart operations: read, change under optimistic concurrency, validate, check out; and the
//! background jobs that keep lines validated and `place_order`s delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::ApiError;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::DateTime;
use rabbit::contract::{ArticleDataReply, ArticleValidReply, OrderPlaced};
use rabbit::{Rabbit, RabbitError};
use tokio::sync::{OwnedMutexGuard, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cart::{self, Cart, CartError, Issue, Validation};
use crate::messaging;
use common::locks::KeyedLocks;

/// A change that keeps losing the race against others on the same cart gives up eventually.
const MAX_CHANGE_ATTEMPTS: usize = 100;
/// Messages a background job has in flight at once.
const PUBLISH_CONCURRENCY: usize = 32;
/// The longest a request waits for its user's lock. A holder can wait out MongoDB's 3 s server
/// selection while it is down, and requests queued behind each other would wait that long each:
/// past this bound the request answers 503 instead.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// `article-data` requests in flight at once in this process. Each opens an AMQP channel of its
/// own (direct reply-to), and RabbitMQ allows 2,047 per connection: parallel validations of big
/// carts must not exhaust them.
const CATALOG_QUESTIONS: usize = 64;
/// How often the re-sender looks for due `place_order`s, at most.
const RESEND_POLL: Duration = Duration::from_secs(1);

/// Timings of the background work (from the configuration).
#[derive(Debug, Clone)]
pub struct Timings {
    pub revalidate_every: Duration,
    pub revalidate_max_age: Duration,
    pub validate_timeout: Duration,
    pub order_resend_first: Duration,
    pub order_resend_max: Duration,
}

/// Why a round of a background job stopped; the next round starts over.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("RabbitMQ: {0}")]
    Rabbit(#[from] rabbit::RabbitError),
}

/// Why a checkout did not close the cart.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the cart is empty")]
    Empty,
    #[error("the cart has invalid articles")]
    Invalid(Vec<Issue>),
    #[error(transparent)]
    Api(#[from] ApiError),
}

pub struct Carts {
    store: crate::store::Store,
    rabbit: Rabbit,
    timings: Timings,
    /// Set once the unique `activeFor` index exists: until then a new cart is not created, since
    /// nothing would stop concurrent first requests from making two.
    indexes_ready: AtomicBool,
    /// Every write to a user's carts holds that user's lock (see `locks.rs` for why).
    writers: KeyedLocks,
    /// Slots for `article-data` requests in flight (`CATALOG_QUESTIONS`).
    catalog_questions: Semaphore,
}

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        match error {
            CartError::NotInCart => ApiError::NotFound,
            CartError::TooMany => ApiError::field("quantity", error.to_string()),
            CartError::TooManyLines => ApiError::field("articleId", error.to_string()),
        }
    }
}

impl Carts {
    pub fn new(store: crate::store::Store, rabbit: Rabbit, timings: Timings) -> Self {
        Self {
            store,
            rabbit,
            timings,
            indexes_ready: AtomicBool::new(false),
            writers: KeyedLocks::default(),
            catalog_questions: Semaphore::new(CATALOG_QUESTIONS),
        }
    }

    pub async fn health(&self) -> Vec<(&'static str, bool)> {
        let mongodb = self.indexes_ready.load(Ordering::Acquire)
            && common::mongo::ping(self.store.db()).await;
        vec![
            ("mongodb", mongodb),
            ("rabbitmq", self.rabbit.is_connected()),
        ]
    }

    /// The user's active cart, created on first use. Concurrent first requests race on the
    /// unique `activeFor` index: one insert wins and the others read the winner's cart.
    pub async fn active(&self, user_id: &str) -> Result<Cart, ApiError> {
        if let Some(cart) = self.store.active(user_id).await? {
            return Ok(cart);
        }
        if !self.indexes_ready.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable("mongodb"));
        }
        let cart = Cart::new(uuid::Uuid::new_v4().to_string(), user_id, DateTime::now());
        match self.store.insert(&cart).await {
            Ok(()) => Ok(cart),
            Err(error) if common::mongo::is_duplicate_key(&error) => self
                .store
                .active(user_id)
                .await?
                .ok_or_else(|| ApiError::internal("active cart vanished after a duplicate key")),
            Err(error) => Err(error.into()),
        }
    }

    /// Applies `change` to the user's active cart and stores the result, redoing it on a fresh
    /// read whenever another write got there first. `change` answers whether it changed anything.
    async fn change<F>(&self, user_id: &str, change: F) -> Result<Cart, ApiError>
    where
        F: Fn(&mut Cart) -> Result<bool, CartError>,
    {
        let _writing = self.lock_for_request(user_id).await?;
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let read = self.active(user_id).await?;
            let mut changed = read.clone();
            if !change(&mut changed)? {
                return Ok(read);
            }
            changed.updated = DateTime::now();
            if self.store.replace(read.version, &changed).await? {
                changed.version += 1;
                return Ok(changed);
            }
            tokio::time::sleep(jitter()).await;
        }
        Err(ApiError::internal(
            "too many concurrent changes to one cart",
        ))
    }

    /// The user's write lock for a request, waited for at most `LOCK_WAIT`: 503 past it.
    async fn lock_for_request(&self, user_id: &str) -> Result<OwnedMutexGuard<()>, ApiError> {
        self.writers
            .lock_within(user_id, LOCK_WAIT)
            .await
            .ok_or_else(|| {
                warn!(
                    user_id,
                    "the cart's previous change is still waiting for MongoDB"
                );
                ApiError::Unavailable("mongodb")
            })
    }

    /// Adds `quantity` of the article and asks catalog about it.
    pub async fn add(
        &self,
        user_id: &str,
        article_id: &str,
        quantity: i64,
        correlation_id: &str,
    ) -> Result<Cart, ApiError> {
        let cart = self
            .change(user_id, |cart| {
                cart.add(article_id, quantity).map(|()| true)
            })
            .await?;
        self.revalidate_line(&cart, article_id, correlation_id);
        Ok(cart)
    }

    pub async fn increment(
        &self,
        user_id: &str,
        article_id: &str,
        correlation_id: &str,
    ) -> Result<Cart, ApiError> {
        let cart = self
            .change(user_id, |cart| cart.increment(article_id).map(|()| true))
            .await?;
        self.revalidate_line(&cart, article_id, correlation_id);
        Ok(cart)
    }

    pub async fn decrement(
        &self,
        user_id: &str,
        article_id: &str,
        correlation_id: &str,
    ) -> Result<Cart, ApiError> {
        let cart = self
            .change(user_id, |cart| cart.decrement(article_id).map(|()| true))
            .await?;
        self.revalidate_line(&cart, article_id, correlation_id);
        Ok(cart)
    }

    /// Removes the article's line; removing one that is not there changes nothing.
    pub async fn remove(&self, user_id: &str, article_id: &str) -> Result<Cart, ApiError> {
        self.change(user_id, |cart| Ok(cart.remove(article_id)))
            .await
    }

    /// Sends `article-valid` for a line that was just added or changed, in the background: the
    /// request answers at once, and a request lost while RabbitMQ is down is made up for by the
    /// periodic revalidation.
    fn revalidate_line(&self, cart: &Cart, article_id: &str, correlation_id: &str) {
        if !cart.has(article_id) || !self.rabbit.is_connected() {
            return;
        }
        let rabbit = self.rabbit.clone();
        let (cart_id, article_id, correlation_id) = (
            cart.id.clone(),
            article_id.to_owned(),
            correlation_id.to_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) =
                messaging::request_validation(&rabbit, &cart_id, &article_id, &correlation_id).await
            {
                warn!(%error, cart_id, article_id, "cannot ask catalog about a line");
            }
        });
    }

    /// Asks catalog about every line now, in parallel, and records the answers on the lines:
    /// 503 unless every answer arrives in time.
    pub async fn validate(
        &self,
        user_id: &str,
        correlation_id: &str,
    ) -> Result<Validation, ApiError> {
        let cart = self.active(user_id).await?;
        let answers = self
            .ask_catalog(&cart, correlation_id)
            .await
            .map_err(|error| {
                warn!(%error, "catalog did not answer article-data");
                ApiError::Unavailable("catalog")
            })?;
        self.record_answers(&cart.id, answers.iter().map(answer_of))
            .await?;
        Ok(cart::validation(&cart.articles, &answers))
    }

    /// Catalog's `article-data` answers about every line of `cart`, in line order, each asked
    /// now (as soon as a slot is free) and waited for at most the validate timeout.
    async fn ask_catalog(
        &self,
        cart: &Cart,
        correlation_id: &str,
    ) -> Result<Vec<ArticleDataReply>, RabbitError> {
        let timeout = self.timings.validate_timeout;
        let questions = cart.articles.iter().map(|line| {
            in_a_slot(
                &self.catalog_questions,
                timeout,
                messaging::article_data(
                    &self.rabbit,
                    &cart.id,
                    &line.article_id,
                    correlation_id,
                    timeout,
                ),
            )
        });
        futures_util::future::try_join_all(questions).await
    }

    /// Closes the user's active cart and sends its `place_order`. Catalog is asked about the lines
    /// first; only when it cannot answer in time do the lines' stored answers decide. The close
    /// and the pending message are one conditional write, so a crash right after still gets the
    /// order sent by the re-sender; and a second checkout (a double click) finds the next, empty
    /// cart.
    pub async fn checkout(
        &self,
        user_id: &str,
        correlation_id: &str,
    ) -> Result<Cart, CheckoutError> {
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let asked = self.active(user_id).await?;
            if asked.articles.is_empty() {
                return Err(CheckoutError::Empty);
            }
            let answers = self.checkout_answers(&asked, correlation_id).await;
            if let Some(closed) = self.close(&asked, answers, correlation_id).await? {
                info!(cart_id = closed.id, "cart checked out");
                self.send_place_order(&closed).await;
                return Ok(closed);
            }
            tokio::time::sleep(jitter()).await;
        }
        Err(ApiError::internal("too many concurrent changes to one cart").into())
    }

    /// Catalog's answers for a checkout, or none when RabbitMQ or catalog cannot give them in
    /// time: a checkout must not depend on them being up.
    async fn checkout_answers(
        &self,
        cart: &Cart,
        correlation_id: &str,
    ) -> Option<Vec<ArticleDataReply>> {
        if !self.rabbit.is_connected() {
            return None;
        }
        self.ask_catalog(cart, correlation_id)
            .await
            .inspect_err(|error| {
                warn!(%error, cart_id = cart.id, "checkout judged by the stored answers");
            })
            .ok()
    }

    /// Closes `asked` with catalog's `answers` recorded on it, unless they show an invalid line
    /// (then the answers are recorded on the active cart, for the cart screen). `None` when the cart changed since it was asked about: the checkout starts over, so no
    /// line added meanwhile escapes the question.
    async fn close(
        &self,
        asked: &Cart,
        answers: Option<Vec<ArticleDataReply>>,
        correlation_id: &str,
    ) -> Result<Option<Cart>, CheckoutError> {
        let mut cart = asked.clone();
        cart.apply_answers(answers.iter().flatten().map(answer_of));
        let errors = cart.checkout_errors();
        if !errors.is_empty() {
            if let Some(answers) = &answers {
                self.record_answers(&asked.id, answers.iter().map(answer_of))
                    .await
                    .map_err(ApiError::from)?;
            }
            return Err(CheckoutError::Invalid(errors));
        }
        let now = DateTime::now();
        cart.close(
            correlation_id,
            cart::later(now, self.timings.order_resend_first),
            now,
        );
        let _writing = self.lock_for_request(&asked.user_id).await?;
        if !self
            .store
            .replace(asked.version, &cart)
            .await
            .map_err(ApiError::from)?
        {
            return Ok(None);
        }
        cart.version += 1;
        Ok(Some(cart))
    }

    /// Sends a just closed cart's `place_order`, not waiting for a broker that is down: the
    /// re-sender delivers it once it is back.
    async fn send_place_order(&self, closed: &Cart) {
        if self.rabbit.is_connected()
            && let Err(error) = messaging::send_place_order(&self.rabbit, closed).await
        {
            warn!(%error, cart_id = closed.id, "place_order not sent; the re-sender will");
        }
    }

    /// Records catalog's `article-valid` answer on its cart's line.
    pub async fn apply_validation(&self, reply: &ArticleValidReply) -> mongodb::error::Result<()> {
        self.record_answers(
            &reply.reference_id,
            [(reply.article_id.as_str(), reply.valid)],
        )
        .await
    }

    /// Records catalog's answers on the lines of cart `cart_id`. Answers about a cart that does
    /// not exist (or no longer takes answers) are dropped: there is nothing to apply them to.
    async fn record_answers<'a, A>(&self, cart_id: &str, answers: A) -> mongodb::error::Result<()>
    where
        A: IntoIterator<Item = (&'a str, bool)> + Clone,
    {
        let unknown = || {
            info!(cart_id, "validation for an unknown cart ignored");
            Ok(())
        };
        let Some(cart) = self.store.by_id(cart_id).await? else {
            return unknown();
        };
        let _writing = self.writers.lock(&cart.user_id).await;
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let Some(read) = self.store.by_id(cart_id).await? else {
                return unknown();
            };
            let mut changed = read.clone();
            if !changed.apply_answers(answers.clone()) {
                return Ok(());
            }
            changed.updated = DateTime::now();
            if self.store.replace(read.version, &changed).await? {
                return Ok(());
            }
            tokio::time::sleep(jitter()).await;
        }
        warn!(cart_id, "validation not applied: cart kept changing");
        Ok(())
    }

    /// Records the order of a closed cart, which ends the re-sending of its `place_order`.
    /// Idempotent: a redelivered `order_placed` finds the order already recorded.
    pub async fn record_order(&self, placed: &OrderPlaced) -> mongodb::error::Result<()> {
        let _writing = self.writers.lock(&placed.user_id).await;
        let recorded = self
            .store
            .record_order(&placed.cart_id, &placed.user_id, &placed.order_id)
            .await?;
        if recorded {
            info!(
                cart_id = placed.cart_id,
                order_id = placed.order_id,
                "order recorded"
            );
        } else {
            info!(
                cart_id = placed.cart_id,
                "order_placed for no waiting cart ignored"
            );
        }
        Ok(())
    }

    /// Starts the background work: the indexes (retried while MongoDB is down), the periodic
    /// revalidation and the `place_order` re-sender, all ending at shutdown.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        let carts = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while let Err(error) = carts.store.ensure_indexes().await {
                warn!(%error, retry_in = ?backoff, "cannot create indexes");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            carts.indexes_ready.store(true, Ordering::Release);
            info!("indexes ready");
        });

        let carts = self.clone();
        every(self.timings.revalidate_every, shutdown.clone(), move || {
            let carts = carts.clone();
            async move { carts.revalidate_all().await }
        });
        let carts = self.clone();
        let poll = self.timings.order_resend_first.min(RESEND_POLL);
        every(poll, shutdown, move || {
            let carts = carts.clone();
            async move { carts.resend_due_orders().await }
        });
    }

    /// Sends `article-valid` for every line of every active cart changed within the maximum
    /// age: an abandoned cart is not asked about forever, and is asked again once it changes.
    async fn revalidate_all(&self) -> Result<(), JobError> {
        if !self.rabbit.is_connected() {
            return Ok(());
        }
        let since = cart::earlier(DateTime::now(), self.timings.revalidate_max_age);
        let carts = self.store.active_with_lines(since).await?;
        let correlation_id = format!("revalidation-{}", uuid::Uuid::new_v4());
        carts
            .map_err(JobError::from)
            .try_for_each_concurrent(PUBLISH_CONCURRENCY, |cart| {
                let correlation_id = correlation_id.clone();
                async move {
                    for line in &cart.articles {
                        messaging::request_validation(
                            &self.rabbit,
                            &cart.id,
                            &line.article_id,
                            &correlation_id,
                        )
                        .await?;
                    }
                    Ok(())
                }
            })
            .await
    }

    /// Sends again every `place_order` whose `order_placed` has not arrived in time, and sets
    /// when to try next (backing off).
    async fn resend_due_orders(&self) -> Result<(), JobError> {
        if !self.rabbit.is_connected() {
            return Ok(());
        }
        let due = self.store.due_orders(DateTime::now()).await?;
        let Timings {
            order_resend_first: first,
            order_resend_max: max,
            ..
        } = self.timings;
        futures_util::stream::iter(due)
            .map(Ok)
            .try_for_each_concurrent(PUBLISH_CONCURRENCY, |cart| async move {
                let resends = cart.place_order.as_ref().map_or(0, |p| p.resends);
                let (resends, sent) = match messaging::send_place_order(&self.rabbit, &cart).await {
                    Ok(()) => (resends.saturating_add(1), true),
                    Err(error) => {
                        warn!(%error, cart_id = cart.id, "place_order re-send failed");
                        (resends, false)
                    }
                };
                let next = cart::later(DateTime::now(), cart::resend_delay(first, max, resends));
                let _writing = self.writers.lock(&cart.user_id).await;
                self.store.resent(&cart.id, resends, next).await?;
                if sent {
                    info!(cart_id = cart.id, resends, "place_order re-sent");
                }
                Ok(())
            })
            .await
    }
}

/// Runs `job` every `period` until shutdown, logging its failures.
fn every<F, Fut>(period: Duration, shutdown: CancellationToken, job: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(error) = job().await {
                warn!(%error, "background job failed; next round retries");
            }
        }
    });
}

/// Runs `question` once one of `slots` is free; the wait for the slot counts against `timeout`.
async fn in_a_slot<T>(
    slots: &Semaphore,
    timeout: Duration,
    question: impl Future<Output = Result<T, RabbitError>>,
) -> Result<T, RabbitError> {
    tokio::time::timeout(timeout, async {
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| RabbitError::Unavailable)?;
        question.await
    })
    .await
    .map_err(|_| RabbitError::Timeout)?
}

/// An `article-data` answer as the (article id, valid) a line records.
fn answer_of(answer: &ArticleDataReply) -> (&str, bool) {
    (answer.article_id.as_str(), answer.valid)
}

/// A few random milliseconds, so writers that lost a race do not collide again in step.
fn jitter() -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % 8) as u64 + 1)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn questions_beyond_the_slots_wait_for_one() {
        let slots = Semaphore::new(2);
        let (in_flight, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let question = || async {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        };
        let questions = (0..6).map(|_| in_a_slot(&slots, Duration::from_secs(30), question()));
        futures_util::future::try_join_all(questions).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn waiting_for_a_slot_counts_against_the_timeout() {
        let slots = Semaphore::new(1);
        let held = slots.acquire().await.unwrap();
        let wait = Duration::from_millis(50);
        let answer = in_a_slot(&slots, wait, async { Ok(1) }).await;
        assert!(matches!(answer, Err(RabbitError::Timeout)));
        drop(held);
        assert_eq!(in_a_slot(&slots, wait, async { Ok(1) }).await.unwrap(), 1);
    }
}
