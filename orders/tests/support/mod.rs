//! Starts the real orders service for one test, zero-to-production style: the real auth service
//! beside it, both on port 0, on a fresh RabbitMQ vhost and with fresh MongoDB databases, so tests
//! run in parallel without seeing each other. Catalog and cart are played by the test: it
//! publishes `place_order` and `article-data` replies as they would, and reads what orders
//! publishes on `sell_flow` from queues of its own.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use rabbit::contract::{ArticleDataReply, OrderLine, PlaceOrder, exchange, kind, queue, service};
use rabbit::{Consumer, Envelope, Message, Rabbit};
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use testkit::{Reply, Vhost, with_token};
use testkit_auth::TestAuth;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// A bound for giving up on a message or a state that never comes; never a speed asserted.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Every message type orders publishes on `sell_flow`.
const PUBLISHED: [&str; 4] = [
    kind::ORDER_PLACED,
    kind::ORDER_INVALID,
    kind::ORDER_VALIDATED,
    kind::ORDER_PAYMENT_DEFINED,
];

/// How many consumers one orders instance runs: `place_order`, `article-data`,
/// `order_released` and the logout broadcast.
const ORDERS_CONSUMERS: usize = 4;

/// An orders service, the auth service it asks about tokens, and the test's own RabbitMQ client.
pub struct TestOrders {
    pub url: String,
    pub http: reqwest::Client,
    pub auth: TestAuth,
    /// The orders service's database, to look at the events as they are stored.
    pub db: mongodb::Database,
    pub config: orders::Config,
    /// The test's client on the vhost: publishes as cart and catalog would.
    pub rabbit: Rabbit,
    /// What orders published, by message type, in order of arrival.
    received: HashMap<&'static str, Mutex<mpsc::UnboundedReceiver<Envelope<Value>>>>,
    shutdown: CancellationToken,
    /// Deleted, with everything in it, when the test ends.
    pub vhost: Vhost,
}

impl Drop for TestOrders {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A configuration for a test: batches that never run by themselves, orders never stuck.
pub fn test_config(vhost: &Vhost, auth: &TestAuth) -> orders::Config {
    let hour = Duration::from_secs(3600);
    orders::Config {
        port: 0,
        http: common::server::HttpLimits::default(),
        mongo_url: testkit::mongo_url(),
        mongo_db: testkit::unique_name("orders"),
        rabbit_url: vhost.amqp_url_as(service::ORDERS),
        redis_url: testkit::redis_url(),
        projection_ttl: Duration::from_secs(60),
        auth_service_url: auth.url.clone(),
        token_cache_ttl: Duration::from_secs(600),
        placed_batch_interval: hour,
        validated_batch_interval: hour,
        payment_defined_batch_interval: hour,
        stuck_placed_after: hour,
        redrive_max: hour,
    }
}

pub async fn spawn_orders() -> TestOrders {
    spawn_ready_orders_with(|_| {}).await
}

/// Starts orders with `adjust` applied to the test configuration, without waiting for it.
pub async fn spawn_orders_with(adjust: impl FnOnce(&mut orders::Config)) -> TestOrders {
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let mut config = test_config(&vhost, &auth);
    adjust(&mut config);
    let shutdown = CancellationToken::new();

    let mut topology = rabbit::contract::topology();
    for kind in PUBLISHED {
        topology = topology.queue(&format!("test.{kind}"), exchange::SELL_FLOW, kind);
    }
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology, shutdown.clone());
    assert!(
        rabbit.wait_connected(PATIENCE).await,
        "RabbitMQ unreachable"
    );
    let mut received = HashMap::new();
    for kind in PUBLISHED {
        received.insert(kind, Mutex::new(collect(&rabbit, &format!("test.{kind}"))));
    }

    let running = orders::run(config.clone(), shutdown.clone())
        .await
        .expect("orders starts");
    let url = format!("http://127.0.0.1:{}", running.addr.port());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let db = mongodb::Client::with_uri_str(&config.mongo_url)
        .await
        .expect("a valid MongoDB URL")
        .database(&config.mongo_db);
    TestOrders {
        url,
        http,
        auth,
        db,
        config,
        rabbit,
        received,
        shutdown,
        vhost,
    }
}

/// [`spawn_orders_with`], then waits until orders is healthy and consumes its queues.
pub async fn spawn_ready_orders_with(adjust: impl FnOnce(&mut orders::Config)) -> TestOrders {
    let app = spawn_orders_with(adjust).await;
    testkit::wait_healthy(&app.http, &app.url, "orders").await;
    app.wait_for_consumers().await;
    app
}

/// Every message arriving on `queue`, parsed as an envelope, in order of arrival.
fn collect(rabbit: &Rabbit, queue: &str) -> mpsc::UnboundedReceiver<Envelope<Value>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    rabbit.consume(
        Consumer::queue(queue, &testkit::ANYONE),
        move |message: Arc<Message<Value>>| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(message.envelope.clone());
                Ok(())
            }
        },
    );
    receiver
}

/// Every message dead-lettered from `queue`, in order of arrival.
pub fn dead_letters(rabbit: &Rabbit, queue: &str) -> mpsc::UnboundedReceiver<Envelope<Value>> {
    collect(rabbit, &format!("{queue}.dlq"))
}

/// The most re-drives of one order the `placed` batch's schedule allows within `window` of its
/// placing (README "Re-drives"): the first once it has waited `first`, each next one at least
/// 3/4 of twice the previous delay later, the delay capped at `max`.
pub fn most_re_drives_within(window: Duration, first: Duration, max: Duration) -> usize {
    let (mut at, mut delay, mut count) = (first, first, 0);
    while at <= window {
        count += 1;
        delay = (delay * 2).min(max);
        at += delay.mul_f64(0.75);
    }
    count
}

pub fn line(article_id: &str, quantity: i64) -> OrderLine {
    OrderLine {
        article_id: article_id.into(),
        quantity,
    }
}

impl TestOrders {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("orders answers")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.get_at(&self.url, path, token).await
    }

    /// `GET {base}{path}`: this instance's `path` when `base` is [`Self::url`], another's else.
    pub async fn get_at(&self, base: &str, path: &str, token: Option<&str>) -> Reply {
        let url = format!("{base}{path}");
        self.send(with_token(self.http.get(url), token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(with_token(self.http.post(self.url(path)), token).json(body))
            .await
    }

    /// `POST /orders/{order_id}/payment` on the instance at `base`, with an `Idempotency-Key`
    /// when one is given.
    pub async fn pay_at(
        &self,
        base: &str,
        order_id: &str,
        token: &str,
        key: Option<&str>,
        body: &Value,
    ) -> Reply {
        let url = format!("{base}/orders/{order_id}/payment");
        let mut request = with_token(self.http.post(url), Some(token)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// [`Self::pay_at`] this instance.
    pub async fn pay(&self, order_id: &str, token: &str, key: Option<&str>, body: &Value) -> Reply {
        self.pay_at(&self.url, order_id, token, key, body).await
    }

    /// A signed-up user: its token and id.
    pub async fn user(&self, login: &str) -> (String, String) {
        let token = self.auth.signup(login).await;
        let id = self.auth.user_id(&token).await;
        (token, id)
    }

    pub async fn health(&self) -> Reply {
        self.get("/health", None).await
    }

    /// Starts a second orders instance beside the first: the same configuration (database,
    /// vhost, auth), its own port. Returns its URL once it is healthy and both instances consume
    /// their queues.
    pub async fn second_instance(&self) -> String {
        let running = orders::run(self.config.clone(), self.shutdown.clone())
            .await
            .expect("a second orders starts");
        let url = format!("http://127.0.0.1:{}", running.addr.port());
        testkit::wait_healthy(&self.http, &url, "orders").await;
        // Each instance consumes `place_order`, `article-data`, `order_released` and the logout
        // broadcast, and so does auth consume its own logouts.
        let expected = PUBLISHED.len() + 1 + 2 * ORDERS_CONSUMERS;
        let consuming = testkit::eventually(PATIENCE, || async {
            self.vhost.consumer_count().await >= expected
        })
        .await;
        assert!(consuming, "the two instances never consumed their queues");
        url
    }

    /// The messages of type `kind` orders published that have arrived by now.
    pub async fn published_so_far(&self, kind: &str) -> Vec<Envelope<Value>> {
        let mut receiver = self.received[kind].lock().await;
        let mut arrived = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            arrived.push(message);
        }
        arrived
    }

    /// Waits until orders consumes its queues and the logout broadcast (the test's own
    /// consumers and auth's logout consumer count too).
    pub async fn wait_for_consumers(&self) {
        let others = PUBLISHED.len() + 1;
        let consuming = testkit::eventually(PATIENCE, || async {
            self.vhost.consumer_count().await >= others + ORDERS_CONSUMERS
        })
        .await;
        assert!(consuming, "orders never consumed its queues");
    }

    // --- playing cart and catalog ------------------------------------------------------------

    /// Publishes `place_order` as cart does at checkout.
    /// Returns the message's correlation id.
    pub async fn place_order(
        &self,
        cart_id: &str,
        user_id: &str,
        articles: Vec<OrderLine>,
    ) -> String {
        let message = PlaceOrder {
            cart_id: cart_id.into(),
            user_id: user_id.into(),
            articles,
        };
        self.publish_raw(kind::PLACE_ORDER, json!(message)).await
    }

    /// Publishes any payload to orders with `routing_key` as its type; returns the envelope's
    /// correlation id.
    pub async fn publish_raw(&self, routing_key: &str, message: Value) -> String {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let envelope = Envelope::new(routing_key, correlation_id.clone(), message);
        // `guest` may name the contract's sender: cart for `place_order`, else catalog.
        let sender = match routing_key {
            kind::PLACE_ORDER => service::CART,
            _ => service::CATALOG,
        };
        self.rabbit
            .speaking_as(sender)
            .publish(exchange::ORDERS, routing_key, &envelope)
            .await
            .expect("the broker takes the message");
        correlation_id
    }

    /// Publishes catalog's `article-data` reply for one line of `order_id`, answering its
    /// `order_placed` (with its correlation id); returns that correlation id.
    pub async fn reply_article(
        &self,
        order_id: &str,
        article_id: &str,
        valid: bool,
        price: f64,
    ) -> String {
        let correlation_id = self.placed_correlation(order_id).await;
        self.reply_article_as(order_id, article_id, valid, price, &correlation_id)
            .await;
        correlation_id
    }

    /// [`TestOrders::reply_article`] with any correlation id.
    pub async fn reply_article_as(
        &self,
        order_id: &str,
        article_id: &str,
        valid: bool,
        price: f64,
        correlation_id: &str,
    ) {
        let reply = ArticleDataReply {
            reference_id: order_id.into(),
            article_id: article_id.into(),
            valid,
            price: if valid { price } else { 0.0 },
            stock: if valid { 100 } else { 0 },
            quantity: None,
        };
        let envelope = Envelope::new(kind::ARTICLE_DATA, correlation_id, json!(reply));
        self.rabbit
            .speaking_as(service::CATALOG)
            .publish(exchange::ORDERS, kind::ARTICLE_DATA, &envelope)
            .await
            .expect("the broker takes the message");
    }

    /// The correlation id the order's `order_placed` carries: the one of the `place_order`
    /// that made it, as its placed event recorded it.
    pub async fn placed_correlation(&self, order_id: &str) -> String {
        let events = self.events(order_id).await;
        let placed = events.first().expect("the order's placed event");
        placed
            .get_document("data")
            .ok()
            .and_then(|event| event.get_str("correlationId").ok())
            .expect("a recorded correlation id")
            .to_owned()
    }

    /// Publishes catalog's `order_released` for `order_id`, as catalog answers an
    /// `order_invalid` once the stock is back.
    pub async fn release(&self, order_id: &str) -> String {
        self.publish_raw(kind::ORDER_RELEASED, json!({"orderId": order_id}))
            .await
    }

    /// Plays catalog's `order_invalid` consumer: every `order_invalid` arriving on
    /// `catalog.order_invalid`, in order of arrival; each answered at once with `order_released`
    /// when `answering`, left unanswered else.
    pub fn catalog_order_invalid(
        &self,
        answering: bool,
    ) -> mpsc::UnboundedReceiver<Envelope<Value>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let rabbit = self.rabbit.speaking_as(service::CATALOG);
        self.rabbit.consume(
            rabbit::contract::consumer(queue::CATALOG_ORDER_INVALID),
            move |message: Arc<Message<Value>>| {
                let (sender, rabbit) = (sender.clone(), rabbit.clone());
                async move {
                    let invalid = message.envelope.clone();
                    if answering {
                        let released = json!({"orderId": invalid.message["orderId"]});
                        let envelope =
                            Envelope::new(kind::ORDER_RELEASED, &invalid.correlation_id, released);
                        rabbit
                            .publish(exchange::ORDERS, kind::ORDER_RELEASED, &envelope)
                            .await
                            .expect("the broker takes the message");
                    }
                    let _ = sender.send(invalid);
                    Ok(())
                }
            },
        );
        receiver
    }

    /// The release records of `order_id` (`<orderId>:RELEASED`, beside its announcements).
    pub async fn release_records(&self, order_id: &str) -> Vec<Document> {
        use futures_util::TryStreamExt;
        self.db
            .collection::<Document>("announcements")
            .find(doc! {"orderId": order_id, "status": "RELEASED"})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// Waits until the release of `order_id` is recorded; returns its record.
    pub async fn wait_for_release(&self, order_id: &str) -> Document {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(record) = self.release_records(order_id).await.pop() {
                return record;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the release of {order_id} was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An INVALID order (line `a` refused, line `b` reserved) whose `order_invalid` orders
    /// published; returns its id.
    pub async fn invalid_order(&self, token: &str, user_id: &str) -> String {
        let order_id = self
            .placed_order(user_id, vec![line("a", 1), line("b", 2)])
            .await;
        self.reply_article(&order_id, "a", false, 0.0).await;
        self.reply_article(&order_id, "b", true, 1.0).await;
        self.wait_for_status(&order_id, token, "INVALID").await;
        self.wait_for_announcement(&order_id, "INVALID").await;
        order_id
    }

    /// The next message of type `kind` orders published; panics when none comes.
    pub async fn next_published(&self, kind: &str) -> Envelope<Value> {
        let mut receiver = self.received[kind].lock().await;
        tokio::time::timeout(PATIENCE, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} published"))
            .expect("the test consumer runs")
    }

    /// Places an order for a new cart and returns its id, taken from the `order_placed`.
    pub async fn placed_order(&self, user_id: &str, articles: Vec<OrderLine>) -> String {
        let cart_id = uuid::Uuid::new_v4().to_string();
        self.place_order(&cart_id, user_id, articles).await;
        loop {
            // Delivery is at least once: an earlier order's `order_placed` may come again first.
            let placed = self.next_published(kind::ORDER_PLACED).await;
            if placed.message["cartId"] == json!(cart_id) {
                return placed.message["orderId"].as_str().unwrap().to_owned();
            }
        }
    }

    /// An order of `lines` (article, quantity, price) whose every line catalog confirmed.
    pub async fn validated_order(
        &self,
        token: &str,
        user_id: &str,
        lines: &[(&str, i64, f64)],
    ) -> String {
        let articles = lines.iter().map(|(a, q, _)| line(a, *q)).collect();
        let order_id = self.placed_order(user_id, articles).await;
        for (article_id, _, price) in lines {
            self.reply_article(&order_id, article_id, true, *price)
                .await;
        }
        self.wait_for_status(&order_id, token, "VALIDATED").await;
        order_id
    }

    /// Waits until `GET /orders/{id}` shows `status`; returns that order JSON.
    pub async fn wait_for_status(&self, order_id: &str, token: &str, status: &str) -> Value {
        self.wait_for_order(order_id, token, |order| order["status"] == status)
            .await
    }

    /// Waits until `GET /orders/{id}` answers an order that satisfies `condition`.
    pub async fn wait_for_order(
        &self,
        order_id: &str,
        token: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/orders/{order_id}");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let reply = self.get(&path, Some(token)).await;
            if reply.status == 200 && condition(&reply.body) {
                return reply.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {order_id} never got there; last seen: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // --- the read models in Redis -----------------------------------------------------------

    /// Deletes a read model from Redis, e.g. `order:<orderId>`, as if it had expired.
    pub async fn forget_read_model(&self, key: &str) {
        let client = redis::Client::open(self.config.redis_url.as_str()).unwrap();
        let mut redis = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}:{key}", self.config.mongo_db);
        let _: i64 = redis::AsyncCommands::del(&mut redis, key).await.unwrap();
    }

    // --- the event store as stored ---------------------------------------------------------

    /// The stored events of `order_id`, in position order.
    pub async fn events(&self, order_id: &str) -> Vec<Document> {
        use futures_util::TryStreamExt;
        self.db
            .collection::<Document>("events")
            .find(doc! {"orderId": order_id})
            .sort(doc! {"position": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// Deletes the record of the order's `status` announcement once it exists, as if the broker
    /// had never confirmed it (the record is written just after the confirm, so wait for it).
    pub async fn forget_announcement(&self, order_id: &str, status: &str) {
        self.wait_for_announcement(order_id, status).await;
        let key = format!("{order_id}:{status}");
        self.db
            .collection::<Document>("announcements")
            .delete_one(doc! {"_id": &key})
            .await
            .unwrap();
    }

    /// Waits until the announcement of the order's `status` is recorded (the broker confirmed
    /// its message).
    pub async fn wait_for_announcement(&self, order_id: &str, status: &str) {
        let announcements = self.db.collection::<Document>("announcements");
        let key = format!("{order_id}:{status}");
        let recorded = testkit::eventually(PATIENCE, || async {
            let found = announcements.find_one(doc! {"_id": &key}).await;
            found.is_ok_and(|record| record.is_some())
        })
        .await;
        assert!(recorded, "no announcement recorded as {key}");
    }

    /// Marks every stored snapshot of the order's projection with a field orders never writes:
    /// [`Self::projection_untouched`] then tells whether orders wrote the projection since.
    pub async fn mark_projection(&self, order_id: &str) {
        self.db
            .collection::<Document>("orders")
            .update_many(doc! {"orderId": order_id}, doc! {"$set": {"probe": true}})
            .await
            .unwrap();
    }

    /// Whether the order's projection is still the one [`Self::mark_projection`] marked: every
    /// snapshot marked (a write of the projection replaces its snapshot, mark and all, or adds
    /// one).
    pub async fn projection_untouched(&self, order_id: &str) -> bool {
        use futures_util::TryStreamExt;
        let snapshots: Vec<Document> = self
            .db
            .collection::<Document>("orders")
            .find(doc! {"orderId": order_id})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        !snapshots.is_empty()
            && snapshots
                .iter()
                .all(|snapshot| snapshot.get_bool("probe") == Ok(true))
    }

    /// Waits until every message published to `queue` so far was handled (acked, or
    /// dead-lettered): the broker's statistics, refreshed every 500 ms, show the queue empty
    /// once they are newer than the last publish.
    pub async fn wait_until_handled(&self, queue: &str) {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let drained =
            testkit::eventually(PATIENCE, || async { self.vhost.queued(queue).await == 0 }).await;
        assert!(drained, "{queue} still holds messages");
    }

    /// How many `order_placed` of `order_id` the `placed` batch published (batch messages carry
    /// a `batch-` correlation id) that have arrived by now, among every `order_placed` not read
    /// before.
    pub async fn re_drives_so_far(&self, order_id: &str) -> usize {
        self.published_so_far(kind::ORDER_PLACED)
            .await
            .iter()
            // Every `order_placed` of an order carries its correlation id; the first, the
            // placement's, was taken by `placed_order`.
            .filter(|placed| placed.message["orderId"] == json!(order_id))
            .count()
    }

    /// Asserts that the order's `sent` re-sends since `since` kept to the schedule (`first`,
    /// doubling, at most `max`): at least two, no more than it allows, each an attempt claimed
    /// before it was published, numbered 1, 2, ... Returns the attempts.
    pub async fn assert_re_sent_on_schedule(
        &self,
        order_id: &str,
        sent: usize,
        since: std::time::Instant,
        (first, max): (Duration, Duration),
    ) -> Vec<i64> {
        let allowed = most_re_drives_within(since.elapsed(), first, max);
        assert!(
            (2..=allowed).contains(&sent),
            "{sent} re-sends in {:?}; the schedule allows 2 to {allowed}",
            since.elapsed()
        );
        let attempts = self.re_drive_attempts(order_id).await;
        assert!(sent <= attempts.len(), "{sent} for {attempts:?}");
        assert_eq!(attempts, (1..=attempts.len() as i64).collect::<Vec<_>>());
        attempts
    }

    /// The attempt numbers of the order's re-drives, as stored, in order.
    pub async fn re_drive_attempts(&self, order_id: &str) -> Vec<i64> {
        use futures_util::TryStreamExt;
        let records: Vec<Document> = self
            .db
            .collection::<Document>("redrives")
            .find(doc! {"orderId": order_id})
            .sort(doc! {"attempt": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        records
            .iter()
            .map(|record| record.get_i64("attempt").unwrap())
            .collect()
    }

    /// Asserts the order's events sit at positions 0, 1, 2, ... with none shared or skipped.
    pub async fn assert_positions_are_a_sequence(&self, order_id: &str) -> Vec<Document> {
        let events = self.events(order_id).await;
        let positions: Vec<i64> = events
            .iter()
            .map(|event| event.get_i64("position").unwrap())
            .collect();
        let expected: Vec<i64> = (0..events.len() as i64).collect();
        assert_eq!(positions, expected, "{events:?}");
        events
    }
}

// --- a private MongoDB-compatible server ------------------------------------------------------
