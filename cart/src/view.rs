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
use serde_json::{Value, json};
use tokio::sync::OwnedMutexGuard;

use crate::cart::Cart;

/// The cart JSON of the contract.
pub fn cart_json(cart: &Cart) -> Value {
    let articles: Vec<Value> = cart
        .articles
        .iter()
        .map(|line| {
            json!({"articleId": line.article_id, "quantity": line.quantity,
                   "valid": line.valid, "validated": line.validated})
        })
        .collect();
    json!({
        "_id": cart.id,
        "userId": cart.user_id,
        "orderId": cart.order_id,
        "articles": articles,
        "enabled": cart.enabled,
        "created": rfc3339(cart.created),
        "updated": rfc3339(cart.updated),
    })
}

fn rfc3339(time: DateTime) -> String {
    time.try_to_rfc3339_string().unwrap_or_default()
}

/// The body GET /cart serves for `cart`: the bytes `warp::reply::json` makes of its JSON.
pub fn body(cart: &Cart) -> Bytes {
    // A `Value` always serializes (its keys are strings); an empty body would only be a miss.
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
        let parsed: Value = serde_json::from_slice(&body(&cart)).unwrap();
        assert_eq!(parsed["_id"], "u1:2");
    }
}
