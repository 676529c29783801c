//! Cart's background work (the course's batch processes): the indexes, the periodic
//! revalidation of recent active carts, and the re-sender of `place_order`s still waiting for
//! their order. Each periodic job runs once per interval for the whole system, on the one
//! instance that claims the interval's turn (`common::periodic`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::jitter::fraction;
use common::periodic::{Turns, every_turn};
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::DateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cart;
use crate::messaging;
use crate::service::{Carts, Timings};
use crate::store::WaitingOrder;

/// Messages a background job has in flight at once.
const PUBLISH_CONCURRENCY: usize = 32;
/// How often the re-sender looks for due `place_order`s, at most.
const RESEND_POLL: Duration = Duration::from_secs(1);

/// Why a round of a background job stopped; the next round starts over.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("RabbitMQ: {0}")]
    Rabbit(#[from] rabbit::RabbitError),
}

impl Carts {
    /// Starts the background work: the indexes (retried while MongoDB is down), the periodic
    /// revalidation and the `place_order` re-sender. Each periodic job runs on the one instance
    /// that claims the interval's turn, all ending at shutdown.
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

        let turns = Turns::new(self.store.db());
        let carts = self.clone();
        every_turn(
            turns.clone(),
            "cart-revalidate",
            self.timings.revalidate_every,
            shutdown.clone(),
            move || {
                let carts = carts.clone();
                async move { log_failure(carts.revalidate_recent().await) }
            },
        );
        let carts = self.clone();
        let poll = self.timings.order_resend_first.min(RESEND_POLL);
        every_turn(turns, "cart-resend", poll, shutdown, move || {
            let carts = carts.clone();
            async move { log_failure(carts.resend_due_orders().await) }
        });
    }

    /// Sends `article-valid` for every line of every cached active cart changed within the
    /// maximum age: an abandoned cart is not asked about forever, and is asked again once it
    /// changes. A cache entry behind its events only delays a line's question to a later round
    /// (the change itself asked about it).
    async fn revalidate_recent(&self) -> Result<(), JobError> {
        if !self.rabbit.is_connected() {
            return Ok(());
        }
        let since = cart::earlier(DateTime::now(), self.timings.revalidate_max_age);
        let carts = self.store.recent_active(since).await?;
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
                            line.version,
                            &correlation_id,
                            self.timings.revalidate_every,
                        )
                        .await?;
                    }
                    Ok(())
                }
            })
            .await
    }

    /// Looks at every waiting order that is due: sends its `place_order` again if its cart's
    /// events say it is checked out with no order recorded, forgets it once the order is
    /// recorded, and backs off before the next look.
    async fn resend_due_orders(&self) -> Result<(), JobError> {
        if !self.rabbit.is_connected() {
            return Ok(());
        }
        let due = self.store.due_orders(DateTime::now()).await?;
        futures_util::stream::iter(due)
            .map(Ok)
            .try_for_each_concurrent(PUBLISH_CONCURRENCY, |waiting| self.resend(waiting))
            .await
    }

    async fn resend(&self, waiting: WaitingOrder) -> Result<(), JobError> {
        let cart_id = waiting.cart_id.as_str();
        let cart = match self.load(cart_id).await? {
            Some(cart) if cart.order_id.is_empty() => cart,
            _ => return Ok(self.store.done_waiting(cart_id).await?),
        };
        // A cart still active had a checkout that lost its race and did not close it (yet):
        // only look again later.
        if cart.waits_for_order() {
            match messaging::send_place_order(&self.rabbit, &cart).await {
                Ok(()) if waiting.unsent => info!(cart_id, "place_order sent late"),
                Ok(()) => info!(cart_id, attempts = waiting.attempts, "place_order re-sent"),
                Err(error) => warn!(%error, cart_id, "place_order re-send failed"),
            }
        }
        let Timings {
            order_resend_first: first,
            order_resend_max: max,
            ..
        } = self.timings;
        let attempts = waiting.attempts.saturating_add(1);
        // Jittered (3/4 to all of the delay), so re-sends due together do not stay together.
        let delay = cart::resend_delay(first, max, attempts).mul_f64(0.75 + fraction() / 4.0);
        let next = cart::later(DateTime::now(), delay);
        Ok(self.store.next_attempt(cart_id, attempts, next).await?)
    }
}

fn log_failure(result: Result<(), JobError>) {
    if let Err(error) = result {
        warn!(%error, "background job failed; next turn retries");
    }
}
