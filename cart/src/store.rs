//! MongoDB access for carts: one collection, `carts`, holding each cart as `cart::Cart` stores it.
//!
//! Every change is a whole-document replace conditioned on the `version` that was read, so
//! concurrent changes never overwrite each other: the loser sees `false` and redoes its change on
//! a fresh read. This needs no positional operators and works the same on MongoDB and FerretDB.

use futures_util::{Stream, TryStreamExt};
use mongodb::bson::{DateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use crate::cart::Cart;

/// How many due `place_order`s one round of the re-sender takes.
const RESEND_BATCH: i64 = 100;

#[derive(Clone)]
pub struct Store {
    db: Database,
    carts: Collection<Cart>,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            carts: db.collection("carts"),
            db,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The unique `activeFor` index keeps one active cart per user under concurrent first
    /// requests and makes `GET /cart` one indexed lookup; the others serve the re-sender and the
    /// periodic revalidation.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        let indexes = [
            IndexModel::builder()
                .keys(doc! {"activeFor": 1})
                .options(unique)
                .build(),
            IndexModel::builder()
                .keys(doc! {"placeOrder.nextAttempt": 1})
                .build(),
            IndexModel::builder().keys(doc! {"enabled": 1}).build(),
        ];
        for index in indexes {
            self.carts.create_index(index).await?;
        }
        Ok(())
    }

    /// The user's active cart: one lookup on the unique index.
    pub async fn active(&self, user_id: &str) -> mongodb::error::Result<Option<Cart>> {
        self.carts.find_one(doc! {"activeFor": user_id}).await
    }

    pub async fn by_id(&self, id: &str) -> mongodb::error::Result<Option<Cart>> {
        self.carts.find_one(doc! {"_id": id}).await
    }

    /// Inserts a new cart; a duplicate key error means the user already has an active one.
    pub async fn insert(&self, cart: &Cart) -> mongodb::error::Result<()> {
        self.carts.insert_one(cart).await.map(drop)
    }

    /// Stores `changed` in place of the cart read at version `read_version`, with the next
    /// version. False when the cart changed since it was read.
    pub async fn replace(&self, read_version: i64, changed: &Cart) -> mongodb::error::Result<bool> {
        let mut next = changed.clone();
        next.version = read_version + 1;
        let result = self
            .carts
            .replace_one(doc! {"_id": &changed.id, "version": read_version}, &next)
            .await?;
        Ok(result.matched_count == 1)
    }

    /// Every active cart with at least one line changed since `since`, for the periodic
    /// revalidation.
    pub async fn active_with_lines(
        &self,
        since: DateTime,
    ) -> mongodb::error::Result<impl Stream<Item = mongodb::error::Result<Cart>> + use<>> {
        self.carts
            .find(doc! {
                "enabled": true,
                "articles.0": {"$exists": true},
                "updated": {"$gte": since},
            })
            .await
    }

    /// Closed carts whose `place_order` is due for a re-send.
    pub async fn due_orders(&self, now: DateTime) -> mongodb::error::Result<Vec<Cart>> {
        self.carts
            .find(doc! {"orderId": "", "placeOrder.nextAttempt": {"$lte": now}})
            .limit(RESEND_BATCH)
            .await?
            .try_collect()
            .await
    }

    /// Records a re-send of the cart's `place_order`: `resends` of them so far, the next one at
    /// `next_attempt`. Does nothing once the order is known.
    pub async fn resent(
        &self,
        cart_id: &str,
        resends: u32,
        next_attempt: DateTime,
    ) -> mongodb::error::Result<()> {
        let filter = doc! {"_id": cart_id, "orderId": "", "enabled": false};
        let update = doc! {"$set": {
            "placeOrder.resends": resends,
            "placeOrder.nextAttempt": next_attempt,
        }};
        self.carts.update_one(filter, update).await.map(drop)
    }

    /// Records the order made of the closed cart and ends the re-sending of its `place_order`.
    /// False when no closed cart of that user waits for an order: unknown, or already recorded.
    pub async fn record_order(
        &self,
        cart_id: &str,
        user_id: &str,
        order_id: &str,
    ) -> mongodb::error::Result<bool> {
        let filter = doc! {"_id": cart_id, "userId": user_id, "enabled": false, "orderId": ""};
        let update = doc! {
            "$set": {"orderId": order_id, "updated": DateTime::now()},
            "$unset": {"placeOrder.nextAttempt": ""},
            "$inc": {"version": 1},
        };
        let result = self.carts.update_one(filter, update).await?;
        Ok(result.modified_count == 1)
    }
}
