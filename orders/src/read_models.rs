//! The read models of `GET /orders/{id}` and `GET /orders` in Redis (`common::projection`), so
//! that a read is a Redis round trip or two, whatever the store holds and however it scans:
//! - `order:<orderId>`: the exact body `GET /orders/{orderId}` answers (view.rs `OrderJson`);
//! - `order-summary:<orderId>`: the order's entry of `GET /orders` (`OrderSummary`);
//! - `orders:<userId>`: the user's order ids, each with [`sort_key`] as its value.
//!
//! Both entries carry the order's owner and a version ([`version`]). They are written right
//! after every store write of the Order projection, so a read through any instance after a write
//! answered sees it; and after a store read that found Redis without them, so the next read hits.
//! Redis is never the truth: a failed write leaves an entry behind the store until
//! `common::projection` deletes its key or, at worst, it expires (`PROJECTION_TTL_SECS` after its
//! last write); with Redis down reads go to the store.

use std::collections::HashMap;

use bytes::Bytes;
use common::projection::{Entry, Projections};
use futures_util::future::join_all;
use serde::Serialize;

use crate::order::Order;
use crate::store::Store;
use crate::view::{OrderJson, OrderSummary};

/// Where a copy of an order comes from, which decides between two copies of one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A fold of the order's events, as every store write of the projection is.
    Events,
    /// The projection as a read found it in the store.
    Store,
}

/// The version of an entry: the newest position wins, and at one position a fold of the events
/// wins over a copy of the stored projection, so `GET /orders/{id}/update` also repairs a read
/// model copied from a projection that had drifted (changed by hand), and a late store read never
/// undoes a fold. Two folds of one position are the same order.
fn version(order: &Order, source: Source) -> i64 {
    let tiebreak = match source {
        Source::Events => 1,
        Source::Store => 0,
    };
    order.position.saturating_mul(2).saturating_add(tiebreak)
}

/// The value of an order in its owner's set: the creation time in milliseconds, zero-padded so
/// that it also sorts as text (see [`newest_first`]). It never changes over an order's life.
fn sort_key(order: &Order) -> String {
    format!("{:020}", order.created.timestamp_millis())
}

/// Sorts `(orderId, sort key)` members as `GET /orders` lists them, and as the store sorted them
/// before there were read models: newest `created` first, then by order id.
fn newest_first(members: &mut [(String, String)]) {
    members.sort_by(|(a_id, a_key), (b_id, b_key)| b_key.cmp(a_key).then(a_id.cmp(b_id)));
}

/// The member of its owner's set an order is.
fn member(order: &Order) -> (String, String) {
    (order.id.clone(), sort_key(order))
}

/// The JSON bytes of a view; the views hold only strings, numbers, booleans and arrays of them,
/// which always serialize.
fn json(view: &impl Serialize) -> Bytes {
    serde_json::to_vec(view)
        .expect("an order view always serializes")
        .into()
}

/// `GET /orders/{id}`'s body for `order`.
fn order_body(order: &Order) -> Bytes {
    json(&OrderJson::from(order))
}

/// The order's entry in `GET /orders`.
fn summary_body(order: &Order) -> Bytes {
    json(&OrderSummary::from(order))
}

/// The JSON array of these bodies, byte for byte what serializing the views as one array gives
/// (`serde_json` writes `[a,b]` with no spaces): no entry is parsed.
fn json_array<'a>(bodies: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut array = Vec::with_capacity(1024);
    array.push(b'[');
    for (n, body) in bodies.into_iter().enumerate() {
        if n > 0 {
            array.push(b',');
        }
        array.extend_from_slice(body);
    }
    array.push(b']');
    array.into()
}

fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

fn summary_key(order_id: &str) -> String {
    format!("order-summary:{order_id}")
}

fn list_key(user_id: &str) -> String {
    format!("orders:{user_id}")
}

pub struct ReadModels {
    projections: Projections,
}

impl ReadModels {
    pub fn new(projections: Projections) -> Self {
        Self { projections }
    }

    /// Stores the order's two entries, then lists it among its owner's orders (a set that
    /// exists; a missing one is filled by its next reader). Called once the store has the order,
    /// never before: a reader that finds the entry finds the store at least as new. A failure is
    /// logged and dropped by `Projections`: the store write stands.
    pub async fn put(&self, order: &Order, source: Source) {
        let version = version(order, source);
        let owner = order.user_id.as_str();
        let (order_key, summary_key) = (order_key(&order.id), summary_key(&order.id));
        let (detail, summary) = (order_body(order), summary_body(order));
        tokio::join!(
            self.projections.put(&order_key, version, owner, &detail),
            self.projections.put(&summary_key, version, owner, &summary),
        );
        let (id, key) = member(order);
        self.projections.add(&list_key(owner), &id, &key).await;
    }

    /// The body of `GET /orders/{orderId}` with its owner: Redis's bytes as they are, else the
    /// projection read from the store, which then goes to Redis for the next reader of any
    /// instance. `None` when the order has no projection.
    pub async fn order(
        &self,
        store: &Store,
        order_id: &str,
    ) -> mongodb::error::Result<Option<Entry>> {
        let key = order_key(order_id);
        if let Some(entry) = self.projections.get(&key).await {
            return Ok(Some(entry));
        }
        let _turn = self.projections.read_turn(&key).await;
        if let Some(entry) = self.projections.get(&key).await {
            return Ok(Some(entry));
        }
        let Some(order) = store.projection(order_id).await? else {
            return Ok(None);
        };
        self.put(&order, Source::Store).await;
        Ok(Some(Entry {
            owner: order.user_id.clone(),
            body: order_body(&order),
        }))
    }

    /// The body of `GET /orders` for `user_id`: the user's orders newest first, as the JSON
    /// array of their summaries. From Redis, two round trips, when it holds the user's set and
    /// every summary in it; else completed from the store (see [`Self::list_with_store`]).
    pub async fn list(&self, store: &Store, user_id: &str) -> mongodb::error::Result<Bytes> {
        if let Some(list) = self.cached_list(user_id).await {
            return Ok(list);
        }
        let _turn = self.projections.read_turn(&list_key(user_id)).await;
        self.list_with_store(store, user_id).await
    }

    /// The list when Redis has every part of it.
    async fn cached_list(&self, user_id: &str) -> Option<Bytes> {
        let mut members = self.projections.members(&list_key(user_id)).await?;
        newest_first(&mut members);
        let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        let bodies: Option<Vec<Bytes>> = self.summaries(user_id, &ids).await.into_iter().collect();
        Some(json_array(&bodies?))
    }

    /// The list with what Redis lacks read from the store and written to Redis for the next
    /// reader: the user's set by one query on `userId` (which also gives every summary), or the
    /// missing summaries by one query on their `orderId`s.
    async fn list_with_store(&self, store: &Store, user_id: &str) -> mongodb::error::Result<Bytes> {
        let key = list_key(user_id);
        let (mut members, read) = match self.projections.members(&key).await {
            Some(members) => (members, None),
            None => {
                let mut read = Vec::new();
                let fill = async {
                    read = store.orders_of(user_id).await?;
                    Ok::<_, mongodb::error::Error>(read.iter().map(member).collect())
                };
                let members = self.projections.fill(&key, fill).await?;
                (members, Some(read))
            }
        };
        newest_first(&mut members);
        let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        let mut bodies = match read {
            // Just read from the store: asking Redis would only find less.
            Some(_) => vec![None; ids.len()],
            None => self.summaries(user_id, &ids).await,
        };
        let missing: Vec<&str> = ids
            .iter()
            .zip(&bodies)
            .filter_map(|(id, body)| body.is_none().then_some(*id))
            .collect();
        if !missing.is_empty() {
            let orders = match read {
                Some(read) => read,
                None => store.newest_of(&missing).await?,
            };
            join_all(orders.iter().map(|order| self.put(order, Source::Store))).await;
            let mut found: HashMap<&str, Bytes> = orders
                .iter()
                .filter(|order| order.user_id == user_id)
                .map(|order| (order.id.as_str(), summary_body(order)))
                .collect();
            for (id, body) in ids.iter().zip(&mut bodies) {
                if body.is_none() {
                    *body = found.remove(id);
                }
            }
        }
        Ok(json_array(bodies.iter().flatten()))
    }

    /// The `GET /orders` entries of these orders of `user_id`, in order, in one round trip;
    /// `None` where Redis has none (or one of another owner, which a list never shows).
    async fn summaries(&self, user_id: &str, order_ids: &[&str]) -> Vec<Option<Bytes>> {
        if order_ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = order_ids.iter().map(|id| summary_key(id)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.projections
            .get_many(&keys)
            .await
            .into_iter()
            .map(|entry| entry.filter(|entry| entry.owner == user_id).map(|e| e.body))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::DateTime;

    use super::*;
    use crate::order::{Line, Status};

    fn order(id: &str, created_millis: i64, position: i64) -> Order {
        Order {
            id: id.into(),
            user_id: "u1".into(),
            cart_id: "c1".into(),
            status: Status::Validated,
            articles: vec![Line {
                article_id: "a".into(),
                quantity: 2,
                unitary_price: 1.25,
                valid: true,
                validated: true,
            }],
            payments: Vec::new(),
            position,
            created: DateTime::from_millis(created_millis),
            updated: DateTime::from_millis(created_millis + 5),
            correlation_id: String::new(),
        }
    }

    #[test]
    fn the_newest_position_wins_and_at_one_position_a_fold_wins_over_a_store_copy() {
        let at = |position| order("o1", 0, position);
        assert!(version(&at(2), Source::Events) > version(&at(2), Source::Store));
        assert!(version(&at(3), Source::Store) > version(&at(2), Source::Events));
    }

    #[test]
    fn members_sort_newest_first_then_by_order_id_as_the_store_did() {
        let orders = [
            order("b", 9_000, 0),
            order("c", 10_000, 0),
            order("a", 9_000, 0),
            order("d", 123, 0),
        ];
        let mut members: Vec<(String, String)> = orders.iter().map(member).collect();
        newest_first(&mut members);
        let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b", "d"]);
    }

    #[test]
    fn the_list_is_the_bytes_serde_writes_for_the_whole_array() {
        let orders = [order("o1", 1_000, 1), order("o2", 2_000, 3)];
        let bodies: Vec<Bytes> = orders.iter().map(summary_body).collect();
        let summaries: Vec<OrderSummary> = orders.iter().map(OrderSummary::from).collect();
        assert_eq!(json_array(&bodies), serde_json::to_vec(&summaries).unwrap());
        assert_eq!(json_array(&[]), serde_json::to_vec(&[0; 0]).unwrap());
    }
}
