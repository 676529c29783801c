//! MongoDB access for carts: an event store (`cart_events`), where correctness lives, and two
//! caches that only make reads and the re-sender cheap.
//!
//! - `cart_events`: one document per event, `_id` `"<cart>:<position>"`. Appending at a position
//!   is an insert that the unique `_id` decides, the one write that stays exact when several
//!   instances race on a store whose updates are not atomic (FerretDB 1.x): the loser gets a
//!   duplicate key and decides again on a fresh read.
//! - `current_carts`: per user, the user's newest cart folded up to some position. Written after
//!   the events, possibly out of order by racing instances, so readers catch up from the events
//!   after its position: a stale entry costs a read, never a wrong cart.
//! - `waiting_orders`: per checked-out cart, when to re-send its `place_order`. The events say
//!   whether it is still due; this only says when to look, so a lost update costs an extra send.
//!
//! The `carts` collection of earlier versions (one updated document per cart) is not read.

use futures_util::{Stream, TryStreamExt};
use mongodb::bson::{DateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::cart::{Cart, Event, Recorded};

/// How many due `place_order`s one round of the re-sender takes.
const RESEND_BATCH: i64 = 100;

/// One event as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEvent {
    #[serde(rename = "_id")]
    id: String,
    cart: String,
    position: i64,
    at: DateTime,
    event: Event,
}

/// The user's newest cart, as some writer folded it.
#[derive(Debug, Serialize, Deserialize)]
struct CurrentCart {
    #[serde(rename = "_id")]
    user_id: String,
    cart: Cart,
}

/// A checked-out cart's `place_order` and when to send it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingOrder {
    #[serde(rename = "_id")]
    pub cart_id: String,
    /// Times the re-sender looked at it so far; drives the backoff.
    pub attempts: u32,
    pub next_attempt: DateTime,
    /// The checkout could not send it (the broker was down): the re-sender's first send is
    /// not a re-send.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsent: bool,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    events: Collection<StoredEvent>,
    current: Collection<CurrentCart>,
    waiting: Collection<WaitingOrder>,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            events: db.collection("cart_events"),
            current: db.collection("current_carts"),
            waiting: db.collection("waiting_orders"),
            db,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The unique `_id` of an event already keeps two events off one position; these indexes
    /// serve the reads of a cart's events, of a user's newest cart, of the recent carts and of
    /// the due orders.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.events
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"cart": 1, "position": 1})
                    .options(unique)
                    .build(),
            )
            .await?;
        self.events
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"event.userId": 1, "event.number": -1})
                    .build(),
            )
            .await?;
        self.current
            .create_index(IndexModel::builder().keys(doc! {"cart.updated": 1}).build())
            .await?;
        self.waiting
            .create_index(IndexModel::builder().keys(doc! {"nextAttempt": 1}).build())
            .await?;
        Ok(())
    }

    /// The events of cart `cart_id` after `position`, in order (all of them for -1).
    pub async fn events_after(
        &self,
        cart_id: &str,
        position: i64,
    ) -> mongodb::error::Result<Vec<Recorded>> {
        self.events
            .find(doc! {"cart": cart_id, "position": {"$gt": position}})
            .sort(doc! {"position": 1})
            .await?
            .map_ok(|stored| Recorded {
                position: stored.position,
                at: stored.at,
                event: stored.event,
            })
            .try_collect()
            .await
    }

    /// Records `event` at `position` of cart `cart_id`. False when that position is taken:
    /// another writer got there first.
    pub async fn append(
        &self,
        cart_id: &str,
        position: i64,
        at: DateTime,
        event: &Event,
    ) -> mongodb::error::Result<bool> {
        let stored = StoredEvent {
            id: format!("{cart_id}:{position}"),
            cart: cart_id.into(),
            position,
            at,
            event: event.clone(),
        };
        match self.events.insert_one(stored).await {
            Ok(_) => Ok(true),
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The number of the newest cart opened for the user, from the events (when the cache
    /// has nothing for the user).
    pub async fn newest_number(&self, user_id: &str) -> mongodb::error::Result<Option<i64>> {
        let newest = self
            .events
            .find_one(doc! {"event.type": "opened", "event.userId": user_id})
            .sort(doc! {"event.number": -1})
            .await?;
        Ok(newest.and_then(|stored| match stored.event {
            Event::Opened { number, .. } => Some(number),
            _ => None,
        }))
    }

    /// The user's newest cart as last cached, maybe behind its events.
    pub async fn current(&self, user_id: &str) -> mongodb::error::Result<Option<Cart>> {
        let current = self.current.find_one(doc! {"_id": user_id}).await?;
        Ok(current.map(|current| current.cart))
    }

    /// Caches `cart` as its user's newest. Racing writers may leave an older fold here; readers
    /// catch up from the events.
    pub async fn remember(&self, cart: &Cart) -> mongodb::error::Result<()> {
        let current = CurrentCart {
            user_id: cart.user_id.clone(),
            cart: cart.clone(),
        };
        let result = self
            .current
            .replace_one(doc! {"_id": &cart.user_id}, current)
            .upsert(true)
            .await;
        match result {
            // Another writer inserted it first: its fold is as good a cache as this one.
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Cached active carts with at least one line, changed since `since` (for the periodic
    /// revalidation).
    pub async fn recent_active(
        &self,
        since: DateTime,
    ) -> mongodb::error::Result<impl Stream<Item = mongodb::error::Result<Cart>> + use<>> {
        let current = self
            .current
            .find(doc! {
                "cart.enabled": true,
                "cart.articles.0": {"$exists": true},
                "cart.updated": {"$gte": since},
            })
            .await?;
        Ok(current.map_ok(|current| current.cart))
    }

    /// Notes that cart `cart_id` is (about to be) checked out: its `place_order` is due again at
    /// `next_attempt` unless its order is recorded first.
    pub async fn wait_for_order(
        &self,
        cart_id: &str,
        next_attempt: DateTime,
    ) -> mongodb::error::Result<()> {
        let waiting = WaitingOrder {
            cart_id: cart_id.into(),
            attempts: 0,
            next_attempt,
            unsent: false,
        };
        let result = self
            .waiting
            .replace_one(doc! {"_id": cart_id}, waiting)
            .upsert(true)
            .await;
        match result {
            // A racing checkout of the same cart inserted it: the same note.
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The waiting orders whose next attempt is due.
    pub async fn due_orders(&self, now: DateTime) -> mongodb::error::Result<Vec<WaitingOrder>> {
        self.waiting
            .find(doc! {"nextAttempt": {"$lte": now}})
            .limit(RESEND_BATCH)
            .await?
            .try_collect()
            .await
    }

    /// Sets when to look at cart `cart_id` again, after `attempts` looks.
    pub async fn next_attempt(
        &self,
        cart_id: &str,
        attempts: u32,
        next_attempt: DateTime,
    ) -> mongodb::error::Result<()> {
        let update = doc! {
            "$set": {"attempts": attempts, "nextAttempt": next_attempt},
            "$unset": {"unsent": ""},
        };
        self.waiting
            .update_one(doc! {"_id": cart_id}, update)
            .await
            .map(drop)
    }

    /// Makes cart `cart_id`'s `place_order`, which its checkout could not send, due now.
    pub async fn send_soon(&self, cart_id: &str) -> mongodb::error::Result<()> {
        let update = doc! {"$set": {"nextAttempt": DateTime::now(), "unsent": true}};
        self.waiting
            .update_one(doc! {"_id": cart_id}, update)
            .await
            .map(drop)
    }

    /// Forgets cart `cart_id`'s waiting order: its order is recorded (or the cart is unknown).
    pub async fn done_waiting(&self, cart_id: &str) -> mongodb::error::Result<()> {
        self.waiting
            .delete_one(doc! {"_id": cart_id})
            .await
            .map(drop)
    }
}
