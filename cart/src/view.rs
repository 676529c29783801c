//! The cart as clients see it: the cart JSON of the contract, and GET /cart's read model in Redis
//! (docs/contract.md section 10, "Reads").
//!
//! Per user, Redis holds the exact body GET /cart serves for the user's newest cart, written by
//! every writer of that cart after its event is stored, on whichever instance it runs. So
//! GET /cart is one Redis round trip on any instance (instead of the cached cart and the events
//! after it from the store), and shows every change whose writer has answered. The store stays
//! the truth: no decision is taken on what Redis holds, and a read it cannot answer goes to the
//! store.

use bytes::Bytes;
use common::projection::Projections;
use mongodb::bson::DateTime;
use serde::Serialize;
use tokio::sync::OwnedMutexGuard;
use utoipa::ToSchema;

use crate::cart::Cart;

/// The cart JSON of the contract.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartJson {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// The order a checkout placed; empty while the cart is active.
    pub order_id: String,
    pub articles: Vec<CartLine>,
    /// `false` once checked out.
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created: String,
    /// RFC 3339, UTC.
    pub updated: String,
}

/// One line of the cart JSON.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartLine {
    pub article_id: String,
    pub quantity: i64,
    /// What catalog said the last time it answered about the line.
    pub valid: bool,
    /// Whether catalog answered since the line was added.
    pub validated: bool,
}

/// The cart JSON of `cart`.
pub fn cart_json(cart: &Cart) -> CartJson {
    CartJson {
        id: cart.id.clone(),
        user_id: cart.user_id.clone(),
        order_id: cart.order_id.clone(),
        articles: cart
            .articles
            .iter()
            .map(|line| CartLine {
                article_id: line.article_id.clone(),
                quantity: line.quantity,
                valid: line.valid,
                validated: line.validated,
            })
            .collect(),
        enabled: cart.enabled,
        created: rfc3339(cart.created),
        updated: rfc3339(cart.updated),
    }
}

fn rfc3339(time: DateTime) -> String {
    time.try_to_rfc3339_string().unwrap_or_default()
}

/// The body GET /cart serves for `cart`: the bytes `warp::reply::json` makes of its JSON.
pub fn body(cart: &Cart) -> Bytes {
    // The cart JSON always serializes; an empty body would only be a miss.
    serde_json::to_vec(&cart_json(cart))
        .unwrap_or_default()
        .into()
}

/// GET /cart's read model: per user, the body of the user's newest cart.
#[derive(Clone)]
pub struct CartViews {
    projections: Projections,
}

impl CartViews {
    pub fn new(projections: Projections) -> Self {
        Self { projections }
    }

    /// The body to serve as the user's active cart; `None` when Redis has none for the user,
    /// holds a closed cart (the store opens the next), or cannot say.
    pub async fn active(&self, user_id: &str) -> Option<Bytes> {
        let entry = self.projections.get(&key(user_id)).await?;
        (entry.owner == user_id && !entry.body.is_empty()).then_some(entry.body)
    }

    /// A turn to read the user's cart from the store after a miss (`Projections::read_turn`).
    pub async fn read_turn(&self, user_id: &str) -> Option<OwnedMutexGuard<()>> {
        self.projections.read_turn(&key(user_id)).await
    }

    /// Stores `cart` as its user's entry, unless the entry shows a newer cart or a later
    /// position of this one: an enabled cart with `body` (its [`body`]), a closed cart as an
    /// empty body, which readers take for a miss.
    pub async fn put(&self, cart: &Cart, body: &[u8]) {
        let body = if cart.enabled { body } else { &[] };
        self.projections
            .put(&key(&cart.user_id), version(cart), &cart.user_id, body)
            .await;
    }
}

fn key(user_id: &str) -> String {
    format!("cart:{user_id}")
}

/// Where `cart` stands among all its user's carts, as one integer that grows with every event:
/// cart n + 1 is opened only once cart n is closed, so its carts come in the order of their
/// numbers and the events of one cart in the order of their positions. The number takes the
/// high bits, the position the low 32: a cart would need 2^32 events to reach the next number.
/// Redis compares versions as Lua numbers (doubles, exact below 2^53), which leaves 2^21 carts
/// per user, two million checkouts.
fn version(cart: &Cart) -> i64 {
    (cart.number << 32) | cart.position
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::test_cart as cart;

    #[test]
    fn versions_grow_with_positions_and_with_the_next_cart() {
        assert!(version(&cart(0, 1)) > version(&cart(0, 0)));
        assert!(version(&cart(1, 0)) > version(&cart(0, 1_000_000)));
        assert!(version(&cart(7, 3)) > version(&cart(7, 2)));
        assert_eq!(version(&cart(0, 5)), 5);
    }

    #[test]
    fn the_body_is_what_warp_serves_for_the_cart_json() {
        let cart = cart(2, 4);
        let served = serde_json::to_vec(&cart_json(&cart)).unwrap();
        assert_eq!(body(&cart), served);
        let parsed: serde_json::Value = serde_json::from_slice(&body(&cart)).unwrap();
        assert_eq!(parsed["_id"], "u1:2");
    }
}
