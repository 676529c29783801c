//! The messaging contract between the services (CONTRACT section 9): exchange, queue and routing
//! key names, the payload of every message type, the whole topology and each service's part of
//! it, who may send what ([`senders`]), and the RabbitMQ permissions that follow
//! ([`permissions`]). docs/contract.md section 9 says it in prose.

use lapin::ExchangeKind;
use serde::{Deserialize, Serialize};

use crate::{Consumer, Queue, Topology};

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

/// The services, which are also the RabbitMQ users they connect as. Every message carries its
/// publisher's user in the AMQP `user_id` property, which the broker checks against the
/// connection's user, so a consumer knows who sent it and takes a message only from the sender
/// the contract names ([`senders`]).
pub mod service {
    pub const AUTH: &str = "auth";
    pub const IMAGE: &str = "image";
    pub const CATALOG: &str = "catalog";
    pub const CART: &str = "cart";
    pub const ORDERS: &str = "orders";
    pub const ALL: [&str; 5] = [AUTH, IMAGE, CATALOG, CART, ORDERS];
}

/// Who may send the messages of a durable queue of [`topology`], or of a fanout exchange (to the
/// per-instance queues bound to it): the table's "from" column. Nobody for anything else.
pub fn senders(queue_or_fanout: &str) -> &'static [&'static str] {
    use queue::*;
    match queue_or_fanout {
        CATALOG_ARTICLE_VALID => &[service::CART],
        CATALOG_ARTICLE_DATA => &[service::CART, service::ORDERS],
        CATALOG_ORDER_PLACED | CATALOG_ORDER_INVALID | CART_ORDER_PLACED => &[service::ORDERS],
        CART_ARTICLE_VALID | ORDERS_ARTICLE_DATA | ORDERS_ORDER_RELEASED => &[service::CATALOG],
        ORDERS_PLACE_ORDER => &[service::CART],
        exchange::AUTH => &[service::AUTH],
        exchange::CATALOG_CHANGES => &[service::CATALOG],
        _ => &[],
    }
}

/// A consumer of the durable queue `queue` that takes messages only from its [`senders`].
pub fn consumer(queue: &str) -> Consumer {
    Consumer::queue(queue, senders(queue))
}

/// A consumer of the fanout `exchange` (a queue of this instance's own) that takes messages only
/// from its [`senders`].
pub fn listener(exchange: &str) -> Consumer {
    Consumer::broadcast(exchange, senders(exchange))
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

/// The exchanges `service` publishes on (the table's "from" column), and the fanouts it listens
/// to with a queue of each instance's own.
fn speaks(service: &str) -> (&'static [&'static str], &'static [&'static str]) {
    use exchange::*;
    match service {
        // Auth listens too: its instances keep `/users/current` answers in memory.
        service::AUTH => (&[AUTH], &[AUTH]),
        service::IMAGE => (&[], &[AUTH]),
        service::CATALOG => (&[CART, ORDERS, CATALOG_CHANGES], &[AUTH, CATALOG_CHANGES]),
        service::CART => (&[CATALOG, ORDERS], &[AUTH]),
        service::ORDERS => (&[SELL_FLOW], &[AUTH]),
        _ => (&[], &[]),
    }
}

/// What `service` declares: its own durable queues (`<service>.*`, which it consumes) with their
/// dead-letter queues, and the exchanges it publishes on or binds them to. A queue is declared
/// by its consumer alone, so a service can be given no right over another's queues; a message
/// published before the queue's service ever started is refused by the broker as unroutable
/// ([`RabbitError::Unroutable`](crate::RabbitError::Unroutable)) and sent again later by its
/// publisher. The fanouts it only listens to are declared by their publishers: until one exists,
/// the listener tries again every second.
pub fn topology_of(service: &str) -> Topology {
    let all = topology();
    let (publishes, _) = speaks(service);
    let prefix = format!("{service}.");
    let queues: Vec<Queue> = all
        .queues
        .into_iter()
        .filter(|queue| queue.name.starts_with(&prefix))
        .collect();
    let declared = |name: &str| {
        publishes.contains(&name)
            || queues
                .iter()
                .any(|queue| queue.bindings.iter().any(|(exchange, _)| exchange == name))
    };
    Topology {
        exchanges: all
            .exchanges
            .into_iter()
            .filter(|exchange| declared(&exchange.name))
            .collect(),
        queues,
        queue_type: None,
    }
}

/// What one RabbitMQ user may do on the vhost: regular expressions over exchange and queue names,
/// as `rabbitmqctl set_permissions` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Declare and delete.
    pub configure: String,
    /// Publish to an exchange; bind a queue (write on the queue, read on the exchange).
    pub write: String,
    /// Consume from or purge a queue.
    pub read: String,
}

/// The least `service` needs to do its part of the contract: declare what [`topology_of`] gives
/// it, publish only on the exchanges it sends on, consume only its own queues and the queues of
/// its instances bound to the fanouts it listens to. An exchange is declared by each service that
/// touches it, so each of them could delete it; no service can touch another's queue.
pub fn permissions(service: &str) -> Permissions {
    // Direct reply-to answers go through the default exchange.
    const DEFAULT_EXCHANGE: &str = "amq.default";
    // Server-named: the queues of each instance bound to a fanout.
    const INSTANCE_QUEUES: &str = r"amq\.gen-.*";
    let (publishes, listens) = speaks(service);
    let declared = topology_of(service);
    let exchanges = escaped(declared.exchanges.iter().map(|e| e.name.as_str()));
    let mut queues = Vec::new();
    for queue in &declared.queues {
        queues.push(escape(&queue.name));
        queues.push(escape(&format!("{}.dlq", queue.name)));
    }
    // Declaring a queue that dead-letters needs read on it and write on its exchange.
    let mut dead_letters = Vec::new();
    if !declared.queues.is_empty() {
        dead_letters.push(escape(crate::DEAD_LETTER_EXCHANGE));
    }
    let mut instance_queues = Vec::new();
    if !listens.is_empty() {
        instance_queues.push(INSTANCE_QUEUES.to_owned());
    }
    let mut publishes = escaped(publishes.iter().copied());
    if service == service::CATALOG {
        publishes.push(escape(DEFAULT_EXCHANGE));
    }
    let listens = escaped(listens.iter().copied());
    Permissions {
        configure: any_of([&exchanges, &dead_letters, &queues, &instance_queues]),
        write: any_of([&publishes, &dead_letters, &queues, &instance_queues]),
        read: any_of([
            &exchanges,
            &dead_letters,
            &queues,
            &instance_queues,
            &listens,
        ]),
    }
}

/// The permissions of every service as `deploy/rabbitmq-permissions.tsv` holds them (for the
/// scripts that create the users): user, configure, write, read, tab-separated, one per line.
pub fn permissions_table() -> String {
    let mut table = String::new();
    for service in service::ALL {
        let Permissions {
            configure,
            write,
            read,
        } = permissions(service);
        table.push_str(&format!("{service}\t{configure}\t{write}\t{read}\n"));
    }
    table
}

/// A regular expression matching exactly one of `names` (none when there are none).
fn any_of<const N: usize>(lists: [&Vec<String>; N]) -> String {
    let mut names: Vec<&str> = lists
        .iter()
        .flat_map(|list| list.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return "^$".into();
    }
    format!("^({})$", names.join("|"))
}

fn escaped<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names.map(escape).collect()
}

fn escape(name: &str) -> String {
    name.replace('.', r"\.")
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

    /// The scripts create the users from the file: it must say what the code says.
    #[test]
    fn the_permissions_file_is_the_contracts() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/rabbitmq-permissions.tsv"
        );
        if std::env::var_os("WRITE_PERMISSIONS").is_some() {
            std::fs::write(path, permissions_table()).unwrap();
        }
        let file = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            file,
            permissions_table(),
            "run WRITE_PERMISSIONS=1 cargo test -p rabbit --lib to rewrite it"
        );
    }

    #[test]
    fn a_service_publishes_only_where_the_contract_sends_it() {
        let writes = |service: &str| regex_names(&permissions(service).write);
        // Image only binds its own queue to `auth`: binding needs write on the queue.
        assert_eq!(writes(service::IMAGE), [r"amq\.gen-.*"]);
        assert!(writes(service::AUTH).contains(&"auth".to_owned()));
        assert!(writes(service::ORDERS).contains(&"sell_flow".to_owned()));
        assert!(!writes(service::CART).contains(&"sell_flow".to_owned()));
        assert!(!writes(service::ORDERS).contains(&"orders".to_owned()));
        for service in service::ALL {
            let Permissions {
                configure, read, ..
            } = permissions(service);
            for other in service::ALL.iter().filter(|other| **other != service) {
                let theirs = format!("{other}\\.");
                for names in [regex_names(&configure), regex_names(&read)] {
                    assert!(
                        !names.iter().any(|name| name.starts_with(&theirs)),
                        "{service} may touch a queue of {other}: {names:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_exchange_and_queue_is_declared_by_some_service() {
        let all = topology();
        let parts: Vec<Topology> = service::ALL.iter().map(|s| topology_of(s)).collect();
        for queue in &all.queues {
            let owners = parts
                .iter()
                .filter(|part| part.queues.iter().any(|q| q.name == queue.name))
                .count();
            assert_eq!(owners, 1, "{} is declared by one service", queue.name);
        }
        for exchange in &all.exchanges {
            assert!(
                parts
                    .iter()
                    .any(|part| part.exchanges.iter().any(|e| e.name == exchange.name)),
                "{} is declared",
                exchange.name
            );
        }
    }

    fn regex_names(regex: &str) -> Vec<String> {
        let inner = regex.trim_start_matches("^(").trim_end_matches(")$");
        if inner == "^$" {
            return Vec::new();
        }
        inner.split('|').map(str::to_owned).collect()
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
