//! The orders use cases over the event store: every change reads the order's events (this
//! process's copy of them first, see `Orders::execute`), folds them, decides the next event and
//! appends it at the next position; a lost race for that position starts over from the store. After each change the Order projection is refreshed and the status
//! announced on `sell_flow`.
//!
//! Correct with any number of instances: what must happen once is an insert that a unique index
//! decides (an event at position n+1, an event `_id` per fact, one announcement and one
//! Order_Status record per status, one release record per order, one batch turn per interval,
//! one claim per re-drive attempt).
//! The per-order lock only spares this process's writers lost races; it is never why a result is
//! right.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use mongodb::bson::DateTime;
use rabbit::contract::{ArticleDataReply, PlaceOrder};
use rabbit::{Rabbit, RabbitError};
use tracing::{info, warn};
use uuid::Uuid;

use crate::messaging::{publish_placed, publish_status};
use crate::order::{
    Command, Event, Method, Order, Recorded, Rejection, Status, decide, fold, fold_through_payment,
    merge_lines,
};
use crate::read_models::{ReadModels, Source};
use crate::redrive::{Redrive, Schedule};
use crate::store::{Appended, Candidate, Store};
use common::jitter::{fraction, race_pause};
use common::locks::KeyedLocks;
use common::periodic::{Turns, every_turn};

/// Appends that lose the race for a position this often in a row give up (and are retried by the
/// consumer or answered 500): only a storm of changes to one order from several instances gets
/// there.
const MAX_APPEND_ATTEMPTS: usize = 20;

/// How many orders' events [`Orders::known_events`] holds, and how long it keeps those of an
/// order no writer of this process touched: an order is written within minutes of its placing
/// (catalog's replies, then its payments), rarely later.
const KNOWN_ORDERS: u64 = 10_000;
const KNOWN_FOR: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    Internal(String),
}

impl From<mongodb::error::Error> for OrdersError {
    fn from(error: mongodb::error::Error) -> Self {
        if common::mongo::is_unavailable(&error) {
            Self::Unavailable("mongodb")
        } else {
            Self::Internal(format!("MongoDB: {error}"))
        }
    }
}

impl From<RabbitError> for OrdersError {
    fn from(error: RabbitError) -> Self {
        match error {
            RabbitError::Unavailable
            | RabbitError::Timeout
            | RabbitError::Unroutable
            | RabbitError::Protocol(_) => Self::Unavailable("rabbitmq"),
            other => Self::Internal(format!("RabbitMQ: {other}")),
        }
    }
}

/// A payment as the owner asks for it.
pub struct PaymentRequest<'a> {
    pub method: Method,
    pub amount: f64,
    /// The client's `Idempotency-Key`: retries with the same key pay once.
    pub idempotency_key: Option<&'a str>,
}

/// Who asks to see an order: its owner, or an admin, may.
pub struct Viewer<'a> {
    pub user_id: &'a str,
    pub admin: bool,
}

impl Viewer<'_> {
    fn may_see(&self, order: &Order) -> bool {
        self.may_see_owned_by(&order.user_id)
    }

    fn may_see_owned_by(&self, owner: &str) -> bool {
        self.admin || owner == self.user_id
    }
}

pub struct Orders {
    store: Store,
    /// What `GET /orders` and `GET /orders/{id}` answer, in Redis; written after every store
    /// write of the Order projection ([`Orders::project`]).
    read_models: ReadModels,
    rabbit: Rabbit,
    /// When the `placed` batch re-drives an order stuck in PLACED (`redrive.rs`).
    redrives: Schedule,
    /// How far back the `payment_defined` batch looks for payments whose projection was never
    /// written (two of its intervals: a run missed by a crash is still covered).
    payment_lookback: Duration,
    /// Nothing is appended before the unique (orderId, position) index exists.
    ready: AtomicBool,
    /// One writer per order at a time inside this process: a throughput aid (catalog answers
    /// every line of an order at once, and writers racing for one position retry), not a guard;
    /// the unique `(orderId, position)` index decides between writers of every instance.
    writers: KeyedLocks,
    /// Each order's stored events as this process last stored or read them: the first read of
    /// [`Orders::execute`], which spares the store a find when no other instance wrote the order
    /// since. It only ever holds events that were stored (a prefix of the order's stream, maybe
    /// behind it), so a decision on it is at worst a decision on an older state: an event it
    /// decides is appended at a position the unique index gives only to the first writer, and
    /// what it would answer without an append is decided again on a fresh read. Written under
    /// the order's writer turn, except by `place` for an order no one else knows yet.
    known_events: Cache<String, Vec<Recorded>>,
}

impl Orders {
    pub fn new(
        store: Store,
        read_models: ReadModels,
        rabbit: Rabbit,
        redrives: Schedule,
        payment_defined_interval: Duration,
    ) -> Self {
        Self {
            store,
            read_models,
            rabbit,
            redrives,
            payment_lookback: payment_defined_interval * 2,
            ready: AtomicBool::new(false),
            writers: KeyedLocks::default(),
            known_events: Cache::builder()
                .max_capacity(KNOWN_ORDERS)
                .time_to_idle(KNOWN_FOR)
                .build(),
        }
    }

    /// Creates the indexes, retrying with backoff while MongoDB is down; false on shutdown.
    pub async fn prepare(&self, shutdown: &tokio_util::sync::CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(200);
        while let Err(error) = self.store.ensure_indexes().await {
            warn!(%error, retry_in = ?backoff, "cannot create indexes");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        self.ready.store(true, Ordering::Release);
        info!("indexes ready");
        true
    }

    pub async fn health(&self) -> Vec<(&'static str, bool)> {
        vec![
            (
                "mongodb",
                self.ready.load(Ordering::Acquire) && common::mongo::ping(self.store.db()).await,
            ),
            ("rabbitmq", self.rabbit.is_connected()),
        ]
    }

    fn ensure_ready(&self) -> Result<(), OrdersError> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(OrdersError::Unavailable("mongodb"))
        }
    }

    /// Turns a closed cart into its order, once per cart, and publishes `order_placed`. A repeated
    /// `place_order` for the cart (cart re-sending it, a redelivery, a copy on another instance)
    /// is answered from the store with two lookups and nothing written: the order's
    /// `order_placed` is published again only when it was never confirmed.
    pub async fn place(
        &self,
        request: PlaceOrder,
        correlation_id: &str,
    ) -> Result<(), OrdersError> {
        self.ensure_ready()?;
        let order_id = Uuid::new_v4().to_string();
        let event = Event::Placed {
            articles: merge_lines(&request.articles),
            cart_id: request.cart_id,
            user_id: request.user_id,
            correlation_id: correlation_id.to_owned(),
        };
        let event_id = event.id(&order_id);
        // Position 0 of a new random id is free: a duplicate key means the cart's placed event.
        if let Some(placed) = self
            .store
            .insert_event(&order_id, 0, &event_id, event)
            .await?
        {
            // The order is the one event just stored: no need to read it back.
            let events = vec![placed];
            let order = fold(&order_id, &events).ok_or(OrdersError::NotFound)?;
            self.known_events.insert(order_id, events).await;
            self.project(&order).await?;
            return self.announce_placed(&order, correlation_id).await;
        }
        let existing = self.store.order_of_event(&event_id).await?;
        let existing =
            existing.ok_or_else(|| OrdersError::Internal(format!("event {event_id} vanished")))?;
        if self.store.announced(&existing, Status::Placed).await? {
            info!(order_id = %existing, "order already placed and announced for this cart");
            return Ok(());
        }
        // The first handling stopped, or is still running, between its append and the confirm
        // of its order_placed: what it left undone is done here (a racing copy may publish too).
        info!(order_id = %existing, "order already placed for this cart, not yet announced; announcing it");
        let order = self
            .current(&existing)
            .await?
            .ok_or(OrdersError::NotFound)?;
        self.project(&order).await?;
        self.announce_placed(&order, correlation_id).await
    }

    /// Publishes the order's `order_placed`, then records that the broker confirmed it.
    async fn announce_placed(
        &self,
        order: &Order,
        correlation_id: &str,
    ) -> Result<(), OrdersError> {
        publish_placed(&self.rabbit, order, correlation_id).await?;
        self.store.mark_announced(&order.id, Status::Placed).await?;
        Ok(())
    }

    /// Records catalog's `article-data` reply for one line of an order, once, and announces the
    /// order's status when the reply settled it.
    pub async fn record_article(
        &self,
        reply: &ArticleDataReply,
        correlation_id: &str,
    ) -> Result<(), OrdersError> {
        let command = Command::ValidateArticle {
            article_id: reply.article_id.clone(),
            valid: reply.valid,
            price: reply.price,
            stock: reply.stock,
            correlation_id: correlation_id.to_owned(),
        };
        let executed = self.execute(&reply.reference_id, None, command).await?;
        if executed.appended {
            self.project(&executed.order).await?;
            return self
                .announce(&executed.order, executed.entered_status, correlation_id)
                .await;
        }
        // A reply recorded before: catalog answering a re-drive, or a redelivery. Once the order
        // is decided and announced, its projection was written too (before the announcement):
        // nothing to do, for the one lookup of the announcement.
        let decided = executed.order.status != Status::Placed;
        if decided
            && self
                .store
                .announced(&executed.order.id, executed.order.status)
                .await?
        {
            return Ok(());
        }
        // A writer may have stopped between its append and its projection or announcement: what
        // it left undone is done again, on the stored events (a decided order may have come from
        // this process's copy, which may be behind them).
        let order = if decided {
            self.current(&reply.reference_id)
                .await?
                .ok_or(OrdersError::NotFound)?
        } else {
            executed.order
        };
        self.project(&order).await?;
        self.announce(&order, false, correlation_id).await
    }

    /// Records catalog's `order_released`: the stock the order's `order_invalid` asked back is
    /// back, so that message is done and the `validated` batch sends it no more. Recorded once
    /// per order, by the insert of its `<orderId>:RELEASED` record; a repeat, or a release of an
    /// order that is not INVALID (an unknown one), changes nothing.
    pub async fn record_release(&self, order_id: &str) -> Result<(), OrdersError> {
        self.ensure_ready()?;
        // INVALID is final: this process's copy, a prefix of the stream, says so for good when
        // it says INVALID; anything else is asked of the store.
        let known = self.known_events.get(order_id).await;
        let invalid = match known.and_then(|events| fold(order_id, &events)) {
            Some(order) if order.status == Status::Invalid => true,
            _ => self
                .current(order_id)
                .await?
                .is_some_and(|order| order.status == Status::Invalid),
        };
        if !invalid {
            warn!(order_id, "order_released for no INVALID order; ignored");
            return Ok(());
        }
        if self.store.mark_released(order_id).await? {
            info!(order_id, "catalog released the stock of the INVALID order");
        } else {
            info!(order_id, "order_released again; already recorded");
        }
        Ok(())
    }

    /// Adds the owner's payment to a VALIDATED order and answers the order as it stood right
    /// after that payment. With an idempotency key the payment is paid once, whichever instance
    /// each retry reaches: its id, and so its event's `_id`, is derived from the owner and the
    /// key, and a retry answers what the first request did. The payment is stored even when
    /// RabbitMQ is down; then the `payment_defined` batch announces it later.
    pub async fn pay(
        &self,
        order_id: &str,
        owner: &str,
        payment: PaymentRequest<'_>,
        correlation_id: &str,
    ) -> Result<Order, OrdersError> {
        let payment_id = match payment.idempotency_key {
            Some(key) => format!("key:{owner}:{key}"),
            None => Uuid::new_v4().to_string(),
        };
        let command = Command::AddPayment {
            payment_id: payment_id.clone(),
            method: payment.method,
            amount: payment.amount,
        };
        let executed = self.execute(order_id, Some(owner), command).await?;
        self.project(&executed.order).await?;
        if let Err(error) = self
            .announce(&executed.order, executed.entered_status, correlation_id)
            .await
        {
            warn!(%error, order_id, "payment stored but not announced; the batch will");
        }
        fold_through_payment(order_id, &executed.events, &payment_id)
            .ok_or_else(|| OrdersError::Internal(format!("payment {payment_id} vanished")))
    }

    /// The body of `GET /orders/{id}`, for the order's owner or an admin (anyone else: not
    /// found), from Redis or else from the store (`read_models.rs`).
    pub async fn order_json(
        &self,
        order_id: &str,
        viewer: &Viewer<'_>,
    ) -> Result<Bytes, OrdersError> {
        let entry = self.read_models.order(&self.store, order_id).await?;
        entry
            .filter(|entry| viewer.may_see_owned_by(&entry.owner))
            .map(|entry| entry.body)
            .ok_or(OrdersError::NotFound)
    }

    /// The body of `GET /orders`: the user's orders, newest first, from Redis or else from the
    /// store (`read_models.rs`).
    pub async fn list_json(&self, user_id: &str) -> Result<Bytes, OrdersError> {
        Ok(self.read_models.list(&self.store, user_id).await?)
    }

    /// Stores the order's projection, then its read models: the one way a fold of the events
    /// reaches the readers, in this order, so that whoever reads Redis finds the store at least
    /// as new. Only the store write can fail the operation.
    async fn project(&self, order: &Order) -> Result<(), OrdersError> {
        self.store.save_projection(order).await?;
        self.read_models.put(order, Source::Events).await;
        Ok(())
    }

    /// Rebuilds the order's projection from its events.
    pub async fn rebuild(&self, order_id: &str, viewer: &Viewer<'_>) -> Result<Order, OrdersError> {
        let order = self
            .current(order_id)
            .await?
            .filter(|order| viewer.may_see(order))
            .ok_or(OrdersError::NotFound)?;
        self.project(&order).await?;
        Ok(order)
    }

    /// One run of the batch for `status`, over the orders that can still change: those whose
    /// projection is in a status [`checked_by`] the batch and not yet settled (every PLACED
    /// order; an INVALID one until catalog released its stock; a later status until its
    /// Order_Status record and announcement are both stored). An INVALID order whose
    /// `order_invalid` is not due again is left alone ([`Orders::awaits_release`]). Each other
    /// one is re-folded from its events; the projection is repaired and Order_Status recorded,
    /// what is wrong is logged, an order stuck in PLACED gets its `order_placed` again, an
    /// INVALID one not released its `order_invalid`, and a status never announced is
    /// announced; then the order is settled (PLACED never, INVALID once released) and later
    /// runs skip it. The `payment_defined` batch also takes the orders paid lately whose
    /// projection is behind their events: a payment whose instance stopped between its append
    /// and its projection, which no retry repaired. An order that cannot be checked is logged
    /// and skipped. Returns how many orders it examined.
    pub async fn run_batch(&self, status: Status) -> Result<usize, OrdersError> {
        self.ensure_ready()?;
        let mut candidates = self.store.unsettled(checked_by(status)).await?;
        if status == Status::PaymentDefined {
            let since = DateTime::from_millis(
                DateTime::now().timestamp_millis() - self.payment_lookback.as_millis() as i64,
            );
            for behind in self.store.paid_behind_projection(since).await? {
                if !candidates
                    .iter()
                    .any(|known| known.order_id == behind.order_id)
                {
                    candidates.push(behind);
                }
            }
        }
        // Where the re-drives of the orders waiting for catalog stand, in one query each.
        let ids: Vec<&str> = candidates.iter().map(|c| c.order_id.as_str()).collect();
        let redriven = match redriven_by(status) {
            Some(waiting) => self.store.latest_redrives(&ids, waiting).await?,
            None => HashMap::new(),
        };
        let released = if redriven_by(status) == Some(Status::Invalid) {
            self.store.released_among(&ids).await?
        } else {
            HashSet::new()
        };
        let now = DateTime::now();
        let mut examined = 0;
        for candidate in &candidates {
            let latest_redrive = redriven.get(&candidate.order_id);
            let released = released.contains(&candidate.order_id);
            if self.awaits_release(candidate, latest_redrive, released, now) {
                continue;
            }
            examined += 1;
            match self
                .check(status, candidate, latest_redrive, released)
                .await
            {
                Ok(()) => {}
                // Every other order would fail the same way: the batch stops, 503.
                Err(error @ OrdersError::Unavailable(_)) => return Err(error),
                // One broken order must not keep the others from being checked.
                Err(error) => warn!(
                    order_id = candidate.order_id,
                    %error,
                    "batch skipped an order it cannot check"
                ),
            }
        }
        Ok(examined)
    }

    /// Whether the candidate is an INVALID order waiting for catalog's `order_released` whose
    /// `order_invalid` is not due again yet: the batch leaves it alone, without reading
    /// anything. Its projection says when it became INVALID (no event follows INVALID); one
    /// that cannot be read is examined.
    fn awaits_release(
        &self,
        candidate: &Candidate,
        latest_redrive: Option<&Redrive>,
        released: bool,
        now: DateTime,
    ) -> bool {
        candidate.projection.as_ref().is_some_and(|projection| {
            projection.status == Status::Invalid
                && !released
                && self
                    .redrives
                    .due(projection.updated, latest_redrive, now)
                    .is_none()
        })
    }

    /// One order's turn in the `batch` for its status; `latest_redrive` is the order's latest
    /// re-drive in the status the batch re-drives ([`redriven_by`]), and `released` whether
    /// catalog released the stock of an INVALID order (always false outside the `validated`
    /// batch).
    async fn check(
        &self,
        batch: Status,
        candidate: &Candidate,
        latest_redrive: Option<&Redrive>,
        released: bool,
    ) -> Result<(), OrdersError> {
        let order_id = candidate.order_id.as_str();
        let Some(order) = self.current(order_id).await? else {
            warn!(
                order_id,
                "inconsistency: a projection names an order without events"
            );
            return Ok(());
        };
        if candidate.projection.as_ref() != Some(&order) {
            if self.is_left_behind(candidate, &order).await {
                info!(
                    order_id,
                    "deleted an older snapshot written after the newest one"
                );
                self.store.delete_older_snapshots(&order).await?;
            } else {
                let projected = candidate.projection.as_ref().map(|order| order.position);
                warn!(
                    order_id,
                    ?projected,
                    events = order.position,
                    "inconsistency: Order projection differs from the events; rebuilt"
                );
                self.project(&order).await?;
            }
        }
        let status = order.status.as_str();
        if self.store.record_status(&order).await? {
            info!(order_id, status, "status recorded in Order_Status");
        }
        let correlation_id = format!("batch-{}", Uuid::new_v4());
        if matches!(order.status, Status::Placed | Status::Invalid) {
            // Waiting for catalog's answer. Found by another batch (through a projection behind
            // its events, repaired above), it is left to the batch that re-drives it.
            if redriven_by(batch) != Some(order.status) {
                return Ok(());
            }
            // An order_invalid is done once catalog released the stock, not once the broker
            // confirmed it (catalog's consumer may have dead-lettered it): until then it is sent
            // again on the re-drive schedule, and the order is not settled.
            if released {
                info!(order_id, "stock released; the INVALID order is done");
                self.store.settle(&order).await?;
                return Ok(());
            }
            return self
                .redrive_if_due(&order, latest_redrive, &correlation_id)
                .await;
        }
        if !self.store.announced(order_id, order.status).await? {
            warn!(
                order_id,
                status, "inconsistency: status never announced; announcing it"
            );
            publish_status(&self.rabbit, &order, &correlation_id).await?;
            self.store.mark_announced(order_id, order.status).await?;
        }
        self.store.settle(&order).await?;
        Ok(())
    }

    /// Whether the candidate's snapshot is an older fold left beside the newest one (see
    /// [`Store::save_projection`]) rather than a projection behind its events: it is older than
    /// `order`, the fold of the events, and the order's newest snapshot is that fold. Asks the
    /// store only for a candidate older than its events; a newest snapshot that cannot be read
    /// counts as behind, so that the check rewrites it.
    async fn is_left_behind(&self, candidate: &Candidate, order: &Order) -> bool {
        let Some(projected) = &candidate.projection else {
            return false;
        };
        projected.position < order.position
            && self
                .store
                .projection(&order.id)
                .await
                .is_ok_and(|newest| newest.as_ref() == Some(order))
    }

    /// Publishes the message an order waits on an answer to again (PLACED: its `order_placed`,
    /// which makes catalog answer every line; INVALID: its `order_invalid`, which makes catalog
    /// give the stock back and answer `order_released`), when its schedule says a re-drive is
    /// due (`redrive.rs`) and this run claims that attempt in the store: each attempt is
    /// published by its one claimer, whichever instances and runs race for it. A publish that
    /// fails gives its claim back, for the next run. The broker's confirm is then recorded as
    /// the status's announcement, should the first one have gone unrecorded.
    async fn redrive_if_due(
        &self,
        order: &Order,
        latest: Option<&Redrive>,
        correlation_id: &str,
    ) -> Result<(), OrdersError> {
        let now = DateTime::now();
        let Some(attempt) = self.redrives.due(order.updated, latest, now) else {
            return Ok(());
        };
        let next_due = self.redrives.next_due(attempt, now, fraction());
        if !self
            .store
            .claim_redrive(&order.id, order.status, attempt, now, next_due)
            .await?
        {
            return Ok(());
        }
        let published = if order.status == Status::Placed {
            warn!(order_id = order.id, since = %order.updated, attempt, %next_due,
                  "inconsistency: stuck in PLACED; re-publishing order_placed");
            publish_placed(&self.rabbit, order, correlation_id).await
        } else {
            warn!(order_id = order.id, since = %order.updated, attempt, %next_due,
                  "INVALID and its stock not released; re-publishing order_invalid");
            publish_status(&self.rabbit, order, correlation_id).await
        };
        if let Err(error) = published {
            if let Err(release) = self
                .store
                .release_redrive(&order.id, order.status, attempt)
                .await
            {
                warn!(order_id = order.id, attempt, error = %release,
                      "cannot give back a re-drive that was not published; it waits its delay");
            }
            return Err(error.into());
        }
        self.store.mark_announced(&order.id, order.status).await?;
        Ok(())
    }

    /// The order folded from its events; `None` when it has none.
    async fn current(&self, order_id: &str) -> Result<Option<Order>, OrdersError> {
        let events = self.store.events(order_id).await?;
        Ok(fold(order_id, &events))
    }

    /// Read, decide, append at the next position; start over from a fresh read when another
    /// writer (of any instance) took it, after a few random milliseconds when that read was
    /// fresh too. Writers in this process take turns per order, which only makes such races
    /// rarer. The first read is this process's copy of the order's events when it has one
    /// ([`Orders::known_events`]): it may be behind another instance, so a decision on it that
    /// appends nothing (already done, refused, no such order) is made again on a fresh read
    /// before it is answered, and a lost append re-reads at once. `owner`, when given, must own
    /// the order (anyone else sees no order at all).
    async fn execute(
        &self,
        order_id: &str,
        owner: Option<&str>,
        command: Command,
    ) -> Result<Executed, OrdersError> {
        self.ensure_ready()?;
        let _turn = self.writers.lock(order_id).await;
        let mut known = self.known_events.get(order_id).await;
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let (mut events, fresh) = match known.take() {
                Some(events) => (events, false),
                None => (self.store.events(order_id).await?, true),
            };
            if fresh && !events.is_empty() {
                self.known_events
                    .insert(order_id.to_owned(), events.clone())
                    .await;
            }
            let Some(order) = fold(order_id, &events)
                .filter(|order| owner.is_none_or(|owner| order.user_id == owner))
            else {
                if fresh {
                    return Err(OrdersError::NotFound);
                }
                continue;
            };
            let event = match decide(&order, &command) {
                Ok(Some(event)) => event,
                // A reply for an order whose every line is answered in the copy: they are in the
                // stream too (the copy is a prefix of it), so the reply is a duplicate for good
                // and no store read can change that.
                Ok(None)
                    if order.status != Status::Placed
                        && matches!(command, Command::ValidateArticle { .. }) =>
                {
                    return Ok(Executed {
                        order,
                        events,
                        appended: false,
                        entered_status: false,
                    });
                }
                // Answered only from a fresh read: the copy may be behind another instance.
                _ if !fresh => continue,
                Ok(None) => {
                    return Ok(Executed {
                        order,
                        events,
                        appended: false,
                        entered_status: false,
                    });
                }
                Err(rejection) => {
                    // The fold is at hand: a projection left behind by a writer that stopped
                    // between its append and its projection write is repaired here.
                    self.project(&order).await?;
                    return Err(rejection.into());
                }
            };
            let event_id = event.id(order_id);
            let position = order.position + 1;
            let stored = if fresh {
                match self
                    .store
                    .append(order_id, position, event_id, event)
                    .await?
                {
                    Appended::Stored(recorded) => Some(recorded),
                    Appended::AlreadyThere => None,
                    Appended::PositionTaken => {
                        tokio::time::sleep(race_pause()).await;
                        None
                    }
                }
            } else {
                // Lost, the copy was behind or another writer was first: either way the next
                // attempt reads the store, so which duplicate it was is not asked.
                self.store
                    .insert_event(order_id, position, &event_id, event)
                    .await?
            };
            if let Some(recorded) = stored {
                events.push(recorded);
                self.known_events
                    .insert(order_id.to_owned(), events.clone())
                    .await;
                let after = fold(order_id, &events).ok_or(OrdersError::NotFound)?;
                return Ok(Executed {
                    entered_status: after.status != order.status,
                    order: after,
                    events,
                    appended: true,
                });
            }
        }
        Err(OrdersError::Internal(format!(
            "order {order_id}: {MAX_APPEND_ATTEMPTS} appends lost the race for a position"
        )))
    }

    /// Publishes the message of the order's status unless the broker already confirmed it, then
    /// remembers that it did. Two instances may both publish it (at least once, like every
    /// message here); both carry the same content, the fold of the same events. The store is
    /// not asked when this command's own event entered the status: an announcement needs a
    /// fold that has the event, so one made before this is at best a racing instance's.
    async fn announce(
        &self,
        order: &Order,
        entered_status: bool,
        correlation_id: &str,
    ) -> Result<(), OrdersError> {
        if order.status == Status::Placed {
            return Ok(());
        }
        if !entered_status && self.store.announced(&order.id, order.status).await? {
            return Ok(());
        }
        publish_status(&self.rabbit, order, correlation_id).await?;
        self.store.mark_announced(&order.id, order.status).await?;
        Ok(())
    }
}

/// What a command did to an order.
struct Executed {
    /// The order after the command.
    order: Order,
    /// The events it folds.
    events: Vec<Recorded>,
    /// Whether the command stored an event (else it was done before, or the copy says so).
    appended: bool,
    /// Whether the command's event moved the order into its status.
    entered_status: bool,
}

/// The statuses a batch looks at. The validated batch also takes the INVALID orders, whose
/// `order_invalid` is what makes catalog give their stock back: until catalog's `order_released`
/// is recorded it is published again on the re-drive schedule, whether the broker confirmed it
/// or not (catalog's consumer may have dead-lettered a confirmed one).
fn checked_by(batch: Status) -> &'static [Status] {
    match batch {
        Status::Placed => &[Status::Placed],
        Status::Validated => &[Status::Validated, Status::Invalid],
        Status::Invalid => &[Status::Invalid],
        Status::PaymentDefined => &[Status::PaymentDefined],
    }
}

/// The status whose orders a batch re-drives (their message sent again until catalog answers):
/// PLACED for the `placed` batch, INVALID for the `validated` one.
fn redriven_by(batch: Status) -> Option<Status> {
    match batch {
        Status::Placed => Some(Status::Placed),
        Status::Validated | Status::Invalid => Some(Status::Invalid),
        Status::PaymentDefined => None,
    }
}

/// A batch that runs by itself: its name (the job in `turns`, as in `/orders_batch/{name}`), the
/// status it checks and how often.
pub struct Batch {
    pub name: &'static str,
    pub status: Status,
    pub interval: Duration,
}

/// How the batches run by themselves: each once per interval for the whole system, on the one
/// instance that claims the interval's turn (`common::periodic`).
pub fn spawn_batches(
    orders: Arc<Orders>,
    batches: [Batch; 3],
    shutdown: tokio_util::sync::CancellationToken,
) {
    let turns = Turns::new(orders.store.db());
    for Batch {
        name,
        status,
        interval,
    } in batches
    {
        let orders = orders.clone();
        every_turn(turns.clone(), name, interval, shutdown.clone(), move || {
            let orders = orders.clone();
            async move {
                match orders.run_batch(status).await {
                    Ok(processed) => info!(batch = name, processed, "batch done"),
                    Err(error) => warn!(batch = name, %error, "batch failed"),
                }
            }
        });
    }
}
