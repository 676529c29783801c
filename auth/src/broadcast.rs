//! The logout broadcast: every entry of the logout outbox is published on the `auth` fanout (a
//! revoked token as `logout`, a changed user's id as `user_changed`), and deleted once the broker
//! confirmed it. Handlers flush their user's entries before answering; a
//! sweeper re-sends whatever a RabbitMQ outage or a crash left behind.
//!
//! The sweeper runs on every instance, with no lease: two instances may both send an entry before
//! either deletes it, and a token broadcast twice is harmless (a cache drops it, or it is not
//! there). That keeps an outage of one instance from delaying anybody's logout.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::oid::ObjectId;
use rabbit::{AUTH_EXCHANGE, Envelope, LOGOUT, Rabbit, USER_CHANGED};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::jwt::{Claims, Jwt};
use crate::store::{LogoutDoc, Store};

const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Broadcasts awaiting their confirm at once.
const PUBLISH_WINDOW: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
    #[error(transparent)]
    Rabbit(#[from] rabbit::RabbitError),
}

#[derive(Clone)]
pub struct Broadcaster {
    store: Store,
    jwt: Jwt,
    rabbit: Rabbit,
}

impl Broadcaster {
    pub fn new(store: Store, jwt: Jwt, rabbit: Rabbit) -> Self {
        Self { store, jwt, rabbit }
    }

    /// Publishes the pending evictions of `user` (of everybody with `None`); returns how many.
    pub async fn flush(
        &self,
        user: Option<ObjectId>,
        correlation_id: &str,
    ) -> Result<usize, BroadcastError> {
        let pending = self.store.pending_logouts(user).await?;
        // Confirms are awaited in a window rather than one round trip after another.
        let sends: Vec<_> = pending
            .iter()
            .map(|logout| self.send(logout, correlation_id))
            .collect();
        futures_util::stream::iter(sends)
            .buffer_unordered(PUBLISH_WINDOW)
            .try_collect::<()>()
            .await?;
        Ok(pending.len())
    }

    async fn send(&self, logout: &LogoutDoc, correlation_id: &str) -> Result<(), BroadcastError> {
        let envelope = match logout.token {
            // A revoked token is dead: its string may travel.
            Some(token) => {
                let raw = self.jwt.issue(&Claims {
                    token_id: token.id.to_hex(),
                    user_id: logout.user_id.to_hex(),
                    iat: token.iat,
                });
                Envelope::new(LOGOUT, correlation_id, raw)
            }
            None => Envelope::new(USER_CHANGED, correlation_id, logout.user_id.to_hex()),
        };
        self.rabbit.broadcast(AUTH_EXCHANGE, "", &envelope).await?;
        self.store.logout_sent(logout).await?;
        Ok(())
    }

    /// Flushes after a change; a failure is logged and left to the sweeper, since the change
    /// itself is already stored and the caller's request succeeded.
    pub async fn flush_user(&self, user: ObjectId, correlation_id: &str) {
        if !self.rabbit.is_connected() {
            warn!("RabbitMQ unavailable: logout broadcast left to the sweeper");
            return;
        }
        if let Err(error) = self.flush(Some(user), correlation_id).await {
            warn!(%error, "logout broadcast postponed; the sweeper will retry");
        }
    }

    pub fn spawn_sweeper(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                    _ = shutdown.cancelled() => return,
                }
                let correlation_id = uuid::Uuid::new_v4().to_string();
                if let Err(error) = self.flush(None, &correlation_id).await {
                    warn!(%error, "logout broadcast sweep failed; retrying later");
                }
            }
        })
    }
}
