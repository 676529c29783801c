//! MongoDB access: the append-only `events` collection (the truth), the `orders` projection that
//! serves the REST reads, the `order_status` projection kept by the batches, the
//! `announcements` that remember which status messages the broker confirmed (and which
//! `order_invalid`s catalog answered with `order_released`), and the `redrives` that remember
//! when each order stuck in PLACED, or INVALID without its release, was sent its message again.
//!
//! Nothing here relies on a read-modify-write of one document being atomic: FerretDB 1.x applies
//! an update as a read followed by a write of the whole document, so two concurrent updates of
//! one document can lose one. Events, Order_Status records, announcements and re-drives are only inserted
//! (a unique index decides which insert wins). The Order projection is a snapshot per position:
//! every write of one snapshot carries the same content (the fold of the same events), so a lost
//! write loses nothing. The one update is a snapshot's `settled` flag, a cache for the batches:
//! lost, it costs one more check of the order.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::order::{Event, Order, Recorded, Status};
use crate::redrive::Redrive;

/// One stored event: `{_id, orderId, position, type, data, created}`. The `_id` is deterministic
/// (see [`Event::id`]), so a repeated message finds its event already there.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDoc {
    #[serde(rename = "_id")]
    id: String,
    order_id: String,
    position: i64,
    #[serde(flatten)]
    event: Event,
    created: DateTime,
}

/// The Order projection at one position: `_id` is `<orderId>:<position>`. The newest snapshot of
/// an order is its projection; the write of a newer one deletes the older ones (one written late
/// is handled as [`Store::save_projection`] says).
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    #[serde(rename = "_id")]
    key: String,
    #[serde(flatten)]
    order: Order,
    /// Set by a batch once this status is recorded in Order_Status and announced: the batches
    /// skip the snapshot from then on. Written false with every snapshot.
    #[serde(default)]
    settled: bool,
}

/// An order a batch has to examine, with its projection as the batch found it (`None` when the
/// stored snapshot cannot be read).
pub struct Candidate {
    pub order_id: String,
    pub projection: Option<Order>,
}

/// How an append ended.
#[derive(Debug)]
pub enum Appended {
    Stored(Recorded),
    /// An event with this `_id` exists: the same fact was recorded before (a duplicate).
    AlreadyThere,
    /// Another event took the position first: re-read, decide again.
    PositionTaken,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    events: Collection<EventDoc>,
    orders: Collection<Snapshot>,
    raw_orders: Collection<Document>,
    order_status: Collection<Document>,
    announcements: Collection<Document>,
    redrives: Collection<Document>,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            events: db.collection("events"),
            orders: db.collection("orders"),
            raw_orders: db.collection("orders"),
            order_status: db.collection("order_status"),
            announcements: db.collection("announcements"),
            redrives: db.collection("redrives"),
            db,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The unique (orderId, position) index is what keeps two events off one position.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.events
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"orderId": 1, "position": 1})
                    .options(unique)
                    .build(),
            )
            .await?;
        self.raw_orders
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"orderId": 1, "position": -1})
                    .build(),
            )
            .await?;
        self.raw_orders
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"userId": 1, "created": -1})
                    .build(),
            )
            .await?;
        self.raw_orders
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"status": 1, "settled": 1})
                    .build(),
            )
            .await?;
        self.order_status
            .create_index(IndexModel::builder().keys(doc! {"orderId": 1}).build())
            .await?;
        self.redrives
            .create_index(IndexModel::builder().keys(doc! {"orderId": 1}).build())
            .await?;
        Ok(())
    }

    /// The order's events in position order.
    pub async fn events(&self, order_id: &str) -> mongodb::error::Result<Vec<Recorded>> {
        let docs: Vec<EventDoc> = self
            .events
            .find(doc! {"orderId": order_id})
            .sort(doc! {"position": 1})
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .into_iter()
            .map(|doc| Recorded {
                position: doc.position,
                created: doc.created,
                event: doc.event,
            })
            .collect())
    }

    /// The order an event belongs to, by the event's `_id`.
    pub async fn order_of_event(&self, event_id: &str) -> mongodb::error::Result<Option<String>> {
        let event = self.events.find_one(doc! {"_id": event_id}).await?;
        Ok(event.map(|event| event.order_id))
    }

    /// Appends `event` at `position` unless that position or that event id is taken. The two
    /// duplicates are told apart by re-reading the id, never by parsing the error's text.
    pub async fn append(
        &self,
        order_id: &str,
        position: i64,
        event_id: String,
        event: Event,
    ) -> mongodb::error::Result<Appended> {
        match self
            .insert_event(order_id, position, &event_id, event)
            .await?
        {
            Some(recorded) => Ok(Appended::Stored(recorded)),
            None if self
                .events
                .find_one(doc! {"_id": &event_id})
                .await?
                .is_some() =>
            {
                Ok(Appended::AlreadyThere)
            }
            None => Ok(Appended::PositionTaken),
        }
    }

    /// Inserts `event` at `position`: the event as stored, or `None` when that position or that
    /// event id is taken (which of the two is not asked, for a writer that re-reads either way).
    pub async fn insert_event(
        &self,
        order_id: &str,
        position: i64,
        event_id: &str,
        event: Event,
    ) -> mongodb::error::Result<Option<Recorded>> {
        let doc = EventDoc {
            id: event_id.to_owned(),
            order_id: order_id.to_owned(),
            position,
            event,
            created: DateTime::now(),
        };
        match self.events.insert_one(&doc).await {
            Ok(_) => Ok(Some(Recorded {
                position,
                created: doc.created,
                event: doc.event,
            })),
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Stores the fold of an order's events as its projection's snapshot at that position, then
    /// deletes the order's snapshots below it: two round trips (one for a new order), and no read. Writing a snapshot
    /// again (a rebuild, a redelivery) replaces it with the same fold, which also repairs a
    /// snapshot changed by hand.
    ///
    /// A fold of fewer events written late, once a newer one and its delete are done (two
    /// writers, of one instance or of two, finishing out of order), stays beside the newer one
    /// until something deletes it. It misleads no one: every read takes the highest position
    /// (`projection`, `orders_of`, `newest_of`, `paid_behind_projection`, and `unsettled`, which
    /// skips an order's lower snapshots among those it finds). The one place it shows is a batch
    /// whose statuses include the leftover's while the newest snapshot is settled or in another
    /// status: `unsettled` then offers the leftover, and the batch's check tells it apart from a
    /// projection behind its events by the newest snapshot and deletes it
    /// ([`Store::delete_older_snapshots`]), without calling it an inconsistency.
    pub async fn save_projection(&self, order: &Order) -> mongodb::error::Result<()> {
        let snapshot = Snapshot {
            key: snapshot_key(order),
            order: order.clone(),
            settled: false,
        };
        let written = self
            .orders
            .replace_one(doc! {"_id": &snapshot.key}, &snapshot)
            .upsert(true)
            .await;
        match written {
            // A concurrent upsert of the same snapshot won: it wrote the same fold.
            Err(error) if common::mongo::is_duplicate_key(&error) => {}
            other => drop(other?),
        }
        self.delete_older_snapshots(order).await
    }

    /// Deletes the order's snapshots below `order`'s position (none below its first event).
    pub async fn delete_older_snapshots(&self, order: &Order) -> mongodb::error::Result<()> {
        if order.position == 0 {
            return Ok(());
        }
        self.raw_orders
            .delete_many(doc! {"orderId": &order.id, "position": {"$lt": order.position}})
            .await?;
        Ok(())
    }

    /// The order's projection: its newest snapshot.
    pub async fn projection(&self, order_id: &str) -> mongodb::error::Result<Option<Order>> {
        let newest = self
            .orders
            .find_one(doc! {"orderId": order_id})
            .sort(doc! {"position": -1})
            .await?;
        Ok(newest.map(|snapshot| snapshot.order))
    }

    /// A user's orders, newest first (the newest snapshot of each).
    pub async fn orders_of(&self, user_id: &str) -> mongodb::error::Result<Vec<Order>> {
        let cursor = self
            .orders
            .find(doc! {"userId": user_id})
            .sort(doc! {"created": -1, "orderId": 1, "position": -1})
            .await?;
        newest_per_order(cursor).await
    }

    /// The projections of these orders (the newest snapshot of each), in one query by
    /// `orderId`; an order without a projection is left out.
    pub async fn newest_of(&self, order_ids: &[&str]) -> mongodb::error::Result<Vec<Order>> {
        let cursor = self
            .orders
            .find(doc! {"orderId": {"$in": order_ids}})
            .sort(doc! {"orderId": 1, "position": -1})
            .await?;
        newest_per_order(cursor).await
    }

    /// Whether the broker confirmed the message of the order's `status` (PLACED: its
    /// `order_placed`).
    pub async fn announced(&self, order_id: &str, status: Status) -> mongodb::error::Result<bool> {
        let key = status_key(order_id, status);
        Ok(self
            .announcements
            .find_one(doc! {"_id": key})
            .await?
            .is_some())
    }

    /// Records that the broker confirmed the message of the order's `status`. Insert-only, one
    /// record per status: a late announcement of an earlier status cannot overwrite a later one,
    /// and FerretDB's non-atomic updates are never involved.
    pub async fn mark_announced(
        &self,
        order_id: &str,
        status: Status,
    ) -> mongodb::error::Result<()> {
        let record = doc! {
            "_id": status_key(order_id, status),
            "orderId": order_id,
            "status": status.as_str(),
            "announced": DateTime::now(),
        };
        match self.announcements.insert_one(record).await {
            // Announced before (a redelivery, or a batch racing a consumer).
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Records that catalog gave back the stock of the order's `order_invalid` (its
    /// `order_released`): true when this call recorded it, false when it was recorded before.
    /// Insert-only, beside the order's announcements: `{_id: "<orderId>:RELEASED", orderId,
    /// status: "RELEASED", released}`.
    pub async fn mark_released(&self, order_id: &str) -> mongodb::error::Result<bool> {
        let record = doc! {
            "_id": released_key(order_id),
            "orderId": order_id,
            "status": RELEASED,
            "released": DateTime::now(),
        };
        match self.announcements.insert_one(record).await {
            Ok(_) => Ok(true),
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Which of these orders have their release recorded ([`Store::mark_released`]), in one
    /// query.
    pub async fn released_among(
        &self,
        order_ids: &[&str],
    ) -> mongodb::error::Result<HashSet<String>> {
        if order_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<String> = order_ids.iter().map(|id| released_key(id)).collect();
        let mut records = self
            .announcements
            .find(doc! {"_id": {"$in": keys}})
            .projection(doc! {"orderId": 1})
            .await?;
        let mut released = HashSet::new();
        while let Some(record) = records.try_next().await? {
            if let Ok(order_id) = record.get_str("orderId") {
                released.insert(order_id.to_owned());
            }
        }
        Ok(released)
    }

    /// The orders whose projection is in one of `statuses` and not settled: the ones a batch
    /// still has to examine. Settled snapshots (terminal or waiting orders already recorded and
    /// announced) are filtered out by the server, so a run never reads the history.
    pub async fn unsettled(&self, statuses: &[Status]) -> mongodb::error::Result<Vec<Candidate>> {
        let statuses: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
        let mut cursor = self
            .raw_orders
            .find(doc! {"status": {"$in": &statuses}, "settled": {"$ne": true}})
            .sort(doc! {"orderId": 1, "position": -1})
            .await?;
        let mut candidates = Vec::new();
        let mut seen = HashSet::new();
        while let Some(doc) = cursor.try_next().await? {
            let Ok(order_id) = doc.get_str("orderId").map(str::to_owned) else {
                continue;
            };
            // The newest snapshot comes first; an older one not yet deleted is skipped.
            if !seen.insert(order_id.clone()) {
                continue;
            }
            let projection = mongodb::bson::from_document::<Snapshot>(doc)
                .ok()
                .map(|snapshot| snapshot.order);
            candidates.push(Candidate {
                order_id,
                projection,
            });
        }
        Ok(candidates)
    }

    /// The orders with a payment event since `since` whose newest snapshot is older than their
    /// events (or missing). Two queries, however many orders were paid; bounded by the payments
    /// of the period, never the history.
    pub async fn paid_behind_projection(
        &self,
        since: DateTime,
    ) -> mongodb::error::Result<Vec<Candidate>> {
        let mut payments = self
            .events
            .clone_with_type::<Document>()
            .find(doc! {"type": "payment_added", "created": {"$gte": since}})
            .projection(doc! {"orderId": 1, "position": 1})
            .await?;
        let mut paid_up_to: HashMap<String, i64> = HashMap::new();
        while let Some(payment) = payments.try_next().await? {
            if let (Ok(order_id), Ok(position)) =
                (payment.get_str("orderId"), payment.get_i64("position"))
            {
                let newest = paid_up_to.entry(order_id.to_owned()).or_insert(position);
                *newest = position.max(*newest);
            }
        }
        if paid_up_to.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&String> = paid_up_to.keys().collect();
        let mut snapshots = self
            .raw_orders
            .find(doc! {"orderId": {"$in": ids}})
            .sort(doc! {"orderId": 1, "position": -1})
            .await?;
        let mut newest: HashMap<String, Order> = HashMap::new();
        while let Some(doc) = snapshots.try_next().await? {
            // One unreadable snapshot must not stop the batch: its order counts as behind.
            if let Ok(Snapshot { order, .. }) = mongodb::bson::from_document::<Snapshot>(doc) {
                newest.entry(order.id.clone()).or_insert(order);
            }
        }
        Ok(paid_up_to
            .into_iter()
            .filter_map(|(order_id, paid_at)| {
                let projection = newest.remove(&order_id);
                let behind = projection
                    .as_ref()
                    .is_none_or(|projection| projection.position < paid_at);
                behind.then_some(Candidate {
                    order_id,
                    projection,
                })
            })
            .collect())
    }

    /// Marks the order's snapshot at its position settled (see [`Snapshot::settled`]).
    pub async fn settle(&self, order: &Order) -> mongodb::error::Result<()> {
        self.raw_orders
            .update_one(
                doc! {"_id": snapshot_key(order)},
                doc! {"$set": {"settled": true}},
            )
            .await?;
        Ok(())
    }

    /// The latest re-drive in `status` of each of these orders that has one, in one query.
    pub async fn latest_redrives(
        &self,
        order_ids: &[&str],
        status: Status,
    ) -> mongodb::error::Result<HashMap<String, Redrive>> {
        let mut latest: HashMap<String, Redrive> = HashMap::new();
        if order_ids.is_empty() {
            return Ok(latest);
        }
        // Records of PLACED re-drives written before they carried a status count as PLACED.
        let of_status = match status {
            Status::Placed => doc! {"$ne": Status::Invalid.as_str()},
            other => doc! {"$eq": other.as_str()},
        };
        let mut records = self
            .redrives
            .find(doc! {"orderId": {"$in": order_ids}, "status": of_status})
            .await?;
        while let Some(record) = records.try_next().await? {
            let (Ok(order_id), Ok(attempt), Ok(next_due)) = (
                record.get_str("orderId"),
                record.get_i64("attempt"),
                record.get_datetime("nextDue"),
            ) else {
                continue;
            };
            let redrive = Redrive {
                attempt,
                next_due: *next_due,
            };
            latest
                .entry(order_id.to_owned())
                .and_modify(|known| {
                    if known.attempt < attempt {
                        *known = redrive.clone();
                    }
                })
                .or_insert(redrive);
        }
        Ok(latest)
    }

    /// Claims re-drive `attempt` of the order in `status` (PLACED: its `order_placed`, INVALID:
    /// its `order_invalid`), made `at`, the next one due at `next_due`: true when this call
    /// inserted `{_id, orderId, status, attempt, at, nextDue}` (`_id` as [`redrive_key`] says),
    /// false when another run (of any instance) claimed that attempt first. Only the claimer
    /// publishes, so each attempt is published once however many instances race for it.
    pub async fn claim_redrive(
        &self,
        order_id: &str,
        status: Status,
        attempt: i64,
        at: DateTime,
        next_due: DateTime,
    ) -> mongodb::error::Result<bool> {
        let record = doc! {
            "_id": redrive_key(order_id, status, attempt),
            "orderId": order_id,
            "status": status.as_str(),
            "attempt": attempt,
            "at": at,
            "nextDue": next_due,
        };
        match self.redrives.insert_one(record).await {
            Ok(_) => Ok(true),
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives back a claimed re-drive whose publish failed, so that the next run makes it rather
    /// than the order waiting out a delay for a message that never went out.
    pub async fn release_redrive(
        &self,
        order_id: &str,
        status: Status,
        attempt: i64,
    ) -> mongodb::error::Result<()> {
        self.redrives
            .delete_one(doc! {"_id": redrive_key(order_id, status, attempt)})
            .await?;
        Ok(())
    }

    /// Records in Order_Status that the order reached its current status; true when this call
    /// recorded it, false when it was recorded before. One insert-only record per status
    /// reached, `{_id: "<orderId>:<STATUS>", orderId, status, userId, position, updated,
    /// recorded}`: written once, when the status changes, and a batch that folded an older
    /// status cannot overwrite a newer one. An order's current status is its furthest record.
    pub async fn record_status(&self, order: &Order) -> mongodb::error::Result<bool> {
        let record = doc! {
            "_id": status_key(&order.id, order.status),
            "orderId": &order.id,
            "status": order.status.as_str(),
            "userId": &order.user_id,
            "position": order.position,
            "updated": order.updated,
            "recorded": DateTime::now(),
        };
        match self.order_status.insert_one(record).await {
            Ok(_) => Ok(true),
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

fn snapshot_key(order: &Order) -> String {
    format!("{}:{}", order.id, order.position)
}

/// `<orderId>:<STATUS>`: one Order_Status record, and one announcement record, per status an
/// order reached.
fn status_key(order_id: &str, status: Status) -> String {
    format!("{order_id}:{}", status.as_str())
}

/// A re-drive claim's `_id`: `<orderId>:<attempt>` for an `order_placed` (as before re-drives
/// of `order_invalid` existed), `<orderId>:INVALID:<attempt>` for an `order_invalid`.
fn redrive_key(order_id: &str, status: Status, attempt: i64) -> String {
    match status {
        Status::Placed => format!("{order_id}:{attempt}"),
        other => format!("{order_id}:{}:{attempt}", other.as_str()),
    }
}

/// The status of the record that says catalog released an INVALID order's stock.
const RELEASED: &str = "RELEASED";

/// `<orderId>:RELEASED`: the one record of an order's `order_released`.
fn released_key(order_id: &str) -> String {
    format!("{order_id}:{RELEASED}")
}

/// The newest snapshot of each order of a cursor sorted by order, then by position descending.
async fn newest_per_order(
    mut cursor: mongodb::Cursor<Snapshot>,
) -> mongodb::error::Result<Vec<Order>> {
    let mut orders: Vec<Order> = Vec::new();
    while let Some(Snapshot { order, .. }) = cursor.try_next().await? {
        // The first snapshot seen of an order is its newest.
        if orders.last().is_none_or(|last| last.id != order.id) {
            orders.push(order);
        }
    }
    Ok(orders)
}
