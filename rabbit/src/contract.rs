//! The messaging contract between the services (CONTRACT section 9): exchange, queue and routing
//! key names, the payload of every message type, and the whole topology.
//!
//! Every service declares the whole topology, not only its own part: declaring is idempotent, and
//! a message published before its consumer's service ever started must find its durable queue
//! already there, or the broker would drop it as unroutable.

use lapin::ExchangeKind;
use serde::{Deserialize, Serialize};

use crate::Topology;

/// Exchange names.
pub mod exchange {
    /// Fanout: revoked tokens, one exclusive queue per service instance.
    pub const AUTH: &str = "auth";
    /// Direct: requests to catalog.
    pub const CATALOG: &str = "catalog";
    /// Direct: replies to cart.
    pub const CART: &str = "cart";
    /// Direct: `place_order` and replies to orders.
    pub const ORDERS: &str = "orders";
    /// Topic: the order's life cycle, for any subscriber.
    pub const SELL_FLOW: &str = "sell_flow";
    /// Fanout: every write catalog makes to an article, so that each catalog instance (one
    /// exclusive queue per instance) updates its in-memory copy within a second.
    pub const CATALOG_CHANGES: &str = "catalog_changes";
}

/// Routing keys, which are also the message types (the envelope's `type`).
pub mod kind {
    pub const LOGOUT: &str = "logout";
    /// On `auth`: a user's permissions or access changed; the message is the user's id
    /// (extension: caches evict every token of that user, and no live token crosses the bus).
    pub const USER_CHANGED: &str = "user_changed";
    pub const ARTICLE_VALID: &str = "article-valid";
    pub const ARTICLE_DATA: &str = "article-data";
    pub const PLACE_ORDER: &str = "place_order";
    pub const ORDER_PLACED: &str = "order_placed";
    pub const ORDER_INVALID: &str = "order_invalid";
    /// On `orders`, catalog → orders: everything an `order_invalid` gave back is given back
    /// (extension; until it comes, orders sends the `order_invalid` again).
    pub const ORDER_RELEASED: &str = "order_released";
    pub const ORDER_VALIDATED: &str = "order_validated";
    pub const ORDER_PAYMENT_DEFINED: &str = "order_payment_defined";
    /// On `catalog_changes`: the article as stored after a write (catalog's own payload).
    pub const ARTICLE_CHANGED: &str = "article_changed";
}

/// Durable queue names: `<consuming service>.<routing key>`.
pub mod queue {
    pub const CATALOG_ARTICLE_VALID: &str = "catalog.article-valid";
    pub const CATALOG_ARTICLE_DATA: &str = "catalog.article-data";
    pub const CATALOG_ORDER_PLACED: &str = "catalog.order_placed";
    pub const CATALOG_ORDER_INVALID: &str = "catalog.order_invalid";
    pub const CART_ARTICLE_VALID: &str = "cart.article-valid";
    pub const CART_ORDER_PLACED: &str = "cart.order_placed";
    pub const ORDERS_PLACE_ORDER: &str = "orders.place_order";
    pub const ORDERS_ARTICLE_DATA: &str = "orders.article-data";
    pub const ORDERS_ORDER_RELEASED: &str = "orders.order_released";
}

/// Every exchange and durable queue of the system, with their bindings and dead-letter queues.
/// Catalog's two queues of questions are request queues: a question may expire once its asker
/// stopped waiting (direct reply-to) or will ask again, and its expired copies must not pile up in
/// the dead-letter queue ([`Topology::request_queue`]).
pub fn topology() -> Topology {
    use exchange::*;
    use kind::*;
    use queue::*;
    Topology::default()
        .exchange(AUTH, ExchangeKind::Fanout)
        .exchange(CATALOG, ExchangeKind::Direct)
        .exchange(CART, ExchangeKind::Direct)
        .exchange(ORDERS, ExchangeKind::Direct)
        .exchange(SELL_FLOW, ExchangeKind::Topic)
        .exchange(CATALOG_CHANGES, ExchangeKind::Fanout)
        .request_queue(CATALOG_ARTICLE_VALID, CATALOG, ARTICLE_VALID)
        .request_queue(CATALOG_ARTICLE_DATA, CATALOG, ARTICLE_DATA)
        .queue(CATALOG_ORDER_PLACED, SELL_FLOW, ORDER_PLACED)
        .queue(CATALOG_ORDER_INVALID, SELL_FLOW, ORDER_INVALID)
        .queue(CART_ARTICLE_VALID, CART, ARTICLE_VALID)
        .queue(CART_ORDER_PLACED, SELL_FLOW, ORDER_PLACED)
        .queue(ORDERS_PLACE_ORDER, ORDERS, PLACE_ORDER)
        .queue(ORDERS_ARTICLE_DATA, ORDERS, ARTICLE_DATA)
        .queue(ORDERS_ORDER_RELEASED, ORDERS, ORDER_RELEASED)
}

/// `article-valid` request, cart → catalog. `reference_id` is opaque to catalog and echoed back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArticleValidRequest {
    pub reference_id: String,
    pub article_id: String,
}

/// `article-valid` reply, catalog → cart: the article exists and is enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArticleValidReply {
    pub reference_id: String,
    pub article_id: String,
    pub valid: bool,
}

/// `article-data` request, cart or orders → catalog. With a `quantity`, valid also requires
/// that much stock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArticleDataRequest {
    pub reference_id: String,
    pub article_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

/// `article-data` reply, catalog → cart (direct reply-to) or orders. An unknown article is
/// `valid: false` with price and stock 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArticleDataReply {
    pub reference_id: String,
    pub article_id: String,
    pub valid: bool,
    pub price: f64,
    pub stock: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub article_id: String,
    pub quantity: i64,
}

/// `place_order`, cart → orders: a closed cart to turn into an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub cart_id: String,
    pub user_id: String,
    pub articles: Vec<OrderLine>,
}

/// `order_placed` on `sell_flow`, orders → cart and catalog; catalog replies `article-data` per
/// line to the envelope's reply-to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: String,
    pub cart_id: String,
    pub user_id: String,
    pub articles: Vec<OrderLine>,
}

/// `order_invalid` on `sell_flow`, orders → catalog: give back what was reserved for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInvalid {
    pub order_id: String,
    pub articles: Vec<OrderLine>,
}

/// `order_released` on `orders`, catalog → orders: the stock the order's `order_invalid` asked
/// back is back (or was never taken), so orders stops sending that `order_invalid`. Sent for
/// every `order_invalid` catalog handled, again for a repeated one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderReleased {
    pub order_id: String,
}

/// `order_validated` and `order_payment_defined` on `sell_flow`, for any future subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusChanged {
    pub order_id: String,
    pub user_id: String,
    pub status: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_use_the_contract_field_names() {
        let reply = ArticleDataReply {
            reference_id: "o".into(),
            article_id: "a".into(),
            valid: true,
            price: 9.5,
            stock: 3,
            quantity: Some(2),
        };
        assert_eq!(
            serde_json::to_value(reply).unwrap(),
            json!({"referenceId": "o", "articleId": "a", "valid": true, "price": 9.5,
                   "stock": 3, "quantity": 2})
        );
        let placed: OrderPlaced = serde_json::from_value(json!({"orderId": "o", "cartId": "c",
            "userId": "u", "articles": [{"articleId": "a", "quantity": 1}]}))
        .unwrap();
        assert_eq!(placed.articles[0].article_id, "a");
    }

    #[test]
    fn an_article_data_request_may_omit_the_quantity() {
        let request: ArticleDataRequest =
            serde_json::from_value(json!({"referenceId": "c", "articleId": "a"})).unwrap();
        assert_eq!(request.quantity, None);
    }

    #[test]
    fn catalog_changes_is_a_fanout_without_a_durable_queue() {
        let topology = topology();
        let changes = topology
            .exchanges
            .iter()
            .find(|e| e.name == exchange::CATALOG_CHANGES)
            .expect("declared");
        assert_eq!(changes.kind, ExchangeKind::Fanout);
        assert!(
            topology.queues.iter().all(|queue| queue
                .bindings
                .iter()
                .all(|(e, _)| e != exchange::CATALOG_CHANGES)),
            "each instance binds its own exclusive queue"
        );
    }

    #[test]
    fn only_the_dead_letters_of_catalogs_questions_expire() {
        let expiring: Vec<_> = topology()
            .queues
            .into_iter()
            .filter(|queue| queue.dead_letters_kept.is_some())
            .map(|queue| queue.name)
            .collect();
        assert_eq!(
            expiring,
            [queue::CATALOG_ARTICLE_VALID, queue::CATALOG_ARTICLE_DATA]
        );
    }

    #[test]
    fn every_queue_is_bound_to_a_declared_exchange() {
        let topology = topology();
        for queue in &topology.queues {
            for (exchange, _) in &queue.bindings {
                assert!(
                    topology.exchanges.iter().any(|e| &e.name == exchange),
                    "{} is bound to undeclared {exchange}",
                    queue.name
                );
            }
        }
    }
}
