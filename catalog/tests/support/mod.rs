//! Starts the real catalog service for one test, zero-to-production style: the real auth service
//! beside it, both on port 0, on a fresh RabbitMQ vhost and fresh MongoDB databases, so tests run
//! in parallel without seeing each other. A test client on the same vhost publishes messages as
//! cart and orders would and reads the replies from the queues they would read.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rabbit::contract::{exchange, kind, service, topology};
use rabbit::{Consumer, Envelope, Message, Rabbit, ReplyTo};
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use testkit::{Reply, Vhost, with_token};
use testkit_auth::TestAuth;
use tokio::sync::{Mutex, OnceCell, mpsc};
use tokio_util::sync::CancellationToken;

/// A bound for giving up on a request or a message that never comes: a hang fails the test
/// instead of stalling the suite. Never a speed asserted.
pub const PATIENCE: Duration = Duration::from_secs(20);
const MANAGEMENT: &str = "http://127.0.0.1:15672";

/// A catalog service, the auth service it asks about tokens and a messaging client, stopped when
/// dropped.
pub struct TestCatalog {
    pub base_url: String,
    pub http: reqwest::Client,
    /// Catalog's database, to look at what it stored.
    pub db: mongodb::Database,
    /// A client on the test's vhost, publishing as cart and orders do.
    pub rabbit: Rabbit,
    pub auth: TestAuth,
    admin: OnceCell<String>,
    /// How this instance was started: further instances share its database and vhost.
    config: catalog::Config,
    shutdown: CancellationToken,
    /// Deleted, with everything in it, when the test ends; dropped last.
    pub vhost: Vhost,
}

impl Drop for TestCatalog {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The catalog as it runs by default, on the local MongoDB, and the same without the in-memory
/// snapshot: what listings and searches answer must not depend on where they read.
pub async fn both_ways() -> [TestCatalog; 2] {
    [
        spawn_catalog().await,
        spawn_catalog_with(|config| config.snapshot_reload = None).await,
    ]
}

/// The catalog with its defaults, on the local MongoDB.
pub async fn spawn_catalog() -> TestCatalog {
    spawn_catalog_with(|_| {}).await
}

/// The catalog with the configuration `configure` adjusts (e.g. another MongoDB).
pub async fn spawn_catalog_with(configure: impl FnOnce(&mut catalog::Config)) -> TestCatalog {
    // Logs on demand: `RUST_LOG=catalog=debug cargo test -p catalog ...`.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = common::telemetry::init();
    }
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client");
    let mut config = catalog::Config {
        port: 0,
        http: common::server::HttpLimits::default(),
        mongo_url: testkit::mongo_url(),
        mongo_db: testkit::unique_name("catalog"),
        rabbit_url: vhost.amqp_url_as(service::CATALOG),
        auth_service_url: auth.url.clone(),
        token_cache_ttl: Duration::from_secs(600),
        snapshot_reload: Some(Duration::from_secs(60)),
    };
    configure(&mut config);
    let shutdown = CancellationToken::new();
    let base_url = start(&config, &shutdown, &http).await;
    // Auth's own logout queue and catalog's.
    vhost.wait_for_fanout_queues(exchange::AUTH, 2).await;
    vhost
        .wait_for_fanout_queues(exchange::CATALOG_CHANGES, 1)
        .await;
    let db = mongodb::Client::with_uri_str(&config.mongo_url)
        .await
        .expect("a valid MongoDB URL")
        .database(&config.mongo_db);
    // The test plays cart (requests) and orders: `guest` may name either as the sender.
    let rabbit =
        Rabbit::start(&vhost.amqp_url(), topology(), shutdown.clone()).speaking_as(service::CART);
    TestCatalog {
        base_url,
        http,
        db,
        rabbit,
        auth,
        admin: OnceCell::new(),
        config,
        shutdown,
        vhost,
    }
}

/// Starts a catalog with `config`; returns its base URL once it is healthy.
async fn start(
    config: &catalog::Config,
    shutdown: &CancellationToken,
    http: &reqwest::Client,
) -> String {
    let running = catalog::run(config.clone(), shutdown.clone())
        .await
        .expect("catalog starts");
    let base_url = format!("http://127.0.0.1:{}", running.addr.port());
    testkit::wait_healthy(http, &base_url, "catalog").await;
    base_url
}

/// Another catalog instance on the same database, vhost and auth, stopped when dropped.
pub struct Instance {
    pub base_url: String,
    shutdown: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestCatalog {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Starts a second instance beside this one, sharing its database and vhost (as a second
    /// process would), and waits until it consumes from every queue this one does.
    pub async fn another_instance(&self) -> Instance {
        let shutdown = self.shutdown.child_token();
        let base_url = start(&self.config, &shutdown, &self.http).await;
        // Auth's logout queue and each catalog's.
        self.vhost.wait_for_fanout_queues(exchange::AUTH, 3).await;
        self.vhost
            .wait_for_fanout_queues(exchange::CATALOG_CHANGES, 2)
            .await;
        for queue in [
            rabbit::contract::queue::CATALOG_ORDER_PLACED,
            rabbit::contract::queue::CATALOG_ORDER_INVALID,
        ] {
            let both = testkit::eventually(PATIENCE, || async {
                self.queue_info(queue).await["consumers"] == 2
            })
            .await;
            assert!(both, "the second instance never consumed from {queue}");
        }
        Instance { base_url, shutdown }
    }

    /// GET `path` on another instance.
    pub async fn get_on(&self, instance: &Instance, path: &str) -> Reply {
        let url = format!("{}{path}", instance.base_url);
        self.send(self.http.get(url)).await
    }

    /// PUT `body` on `path` of another instance, as the admin.
    pub async fn put_on(&self, instance: &Instance, path: &str, body: &Value) -> Reply {
        let url = format!("{}{path}", instance.base_url);
        let token = self.admin().await;
        self.send(with_token(self.http.put(url), Some(&token)).json(body))
            .await
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("catalog answers")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(with_token(self.http.post(self.url(path)), token).json(body))
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(with_token(self.http.put(self.url(path)), token).json(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(with_token(self.http.delete(self.url(path)), token))
            .await
    }

    /// A token holding `admin`, the same for the whole test.
    pub async fn admin(&self) -> String {
        self.admin
            .get_or_init(|| self.auth.admin("admin01"))
            .await
            .clone()
    }

    /// Creates an article as the admin; returns its JSON.
    pub async fn create(&self, name: &str, description: &str, price: f64, stock: i64) -> Value {
        let body = json!({"name": name, "description": description, "image": "",
                          "price": price, "stock": stock});
        let token = self.admin().await;
        let reply = self.post("/articles", Some(&token), &body).await;
        assert_eq!(reply.status, 200, "{reply}");
        reply.json()
    }

    /// Creates an article named `name` with `stock`; returns its id.
    pub async fn article(&self, name: &str, stock: i64) -> String {
        let article = self.create(name, "", 2.5, stock).await;
        article["_id"].as_str().expect("an _id").to_owned()
    }

    pub async fn stock(&self, id: &str) -> i64 {
        let reply = self.get(&format!("/articles/{id}")).await;
        assert_eq!(reply.status, 200, "{reply}");
        reply.json()["stock"].as_i64().expect("an integer stock")
    }

    /// Sets the article's stock as an admin form does: reads it (with its `stockVersion`) and
    /// sends the whole article back with the new stock.
    pub async fn set_stock(&self, id: &str, stock: i64) -> Reply {
        let path = format!("/articles/{id}");
        let mut article = self.get(&path).await.json();
        article["stock"] = json!(stock);
        for owned in ["_id", "enabled"] {
            article.as_object_mut().unwrap().remove(owned);
        }
        let token = self.admin().await;
        self.put(&path, Some(&token), &article).await
    }

    /// The movements of the article's stock ledger, in order of position.
    pub async fn movements(&self, id: &str) -> Vec<mongodb::bson::Document> {
        use futures_util::TryStreamExt;
        self.db
            .collection::<mongodb::bson::Document>("stock_movements")
            .find(mongodb::bson::doc! {"article": id})
            .sort(mongodb::bson::doc! {"position": 1})
            .await
            .expect("MongoDB answers")
            .try_collect()
            .await
            .expect("MongoDB answers")
    }

    /// Checks the ledger of the article: positions 1, 2, 3... without a gap, each balance the one
    /// before plus the movement's quantity, none below zero. Returns the last balance.
    pub async fn checked_ledger(&self, id: &str) -> i64 {
        let movements = self.movements(id).await;
        let mut balance = 0;
        for (index, movement) in movements.iter().enumerate() {
            assert_eq!(
                movement.get_i64("position").unwrap(),
                index as i64 + 1,
                "{movements:?}"
            );
            balance += movement.get_i64("quantity").unwrap();
            assert_eq!(movement.get_i64("balance").unwrap(), balance, "{movement}");
            assert!(balance >= 0, "{movement}");
        }
        balance
    }

    // --- messaging ------------------------------------------------------------------------------

    /// Publishes `message` of type `kind` on `exchange`, asking for the reply at `reply_to`.
    pub async fn publish(
        &self,
        exchange: &str,
        kind: &str,
        message: Value,
        reply_to: Option<(&str, &str)>,
    ) {
        let mut envelope = Envelope::new(kind, uuid::Uuid::new_v4().to_string(), message);
        if let Some((exchange, routing_key)) = reply_to {
            envelope = envelope.with_reply_to(ReplyTo {
                exchange: exchange.into(),
                routing_key: routing_key.into(),
            });
        }
        let sender = match kind {
            kind::ORDER_PLACED | kind::ORDER_INVALID => service::ORDERS,
            _ => service::CART,
        };
        self.rabbit
            .speaking_as(sender)
            .publish(exchange, kind, &envelope)
            .await
            .expect("the broker takes the message");
    }

    /// `order_placed` as orders publishes it, replies to `orders`/`article-data`.
    pub async fn place_order(&self, order_id: &str, lines: &[(&str, i64)]) {
        let articles: Vec<Value> = lines
            .iter()
            .map(|(article_id, quantity)| json!({"articleId": article_id, "quantity": quantity}))
            .collect();
        let message = json!({"orderId": order_id, "cartId": "cart-1", "userId": "user-1",
                             "articles": articles});
        let reply_to = (exchange::ORDERS, kind::ARTICLE_DATA);
        self.publish(
            exchange::SELL_FLOW,
            kind::ORDER_PLACED,
            message,
            Some(reply_to),
        )
        .await;
    }

    /// `order_invalid` as orders publishes it.
    pub async fn invalidate_order(&self, order_id: &str, lines: &[(&str, i64)]) {
        let articles: Vec<Value> = lines
            .iter()
            .map(|(article_id, quantity)| json!({"articleId": article_id, "quantity": quantity}))
            .collect();
        let message = json!({"orderId": order_id, "articles": articles});
        self.publish(exchange::SELL_FLOW, kind::ORDER_INVALID, message, None)
            .await;
    }

    /// The envelopes arriving on `queue` from now on, as JSON.
    pub fn messages(&self, queue: &str) -> Messages {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.rabbit.consume(
            Consumer::queue(queue, &testkit::ANYONE),
            move |message: Arc<Message<Value>>| {
                let sender = sender.clone();
                async move {
                    let _ = sender.send(serde_json::to_value(&message.envelope).unwrap());
                    Ok(())
                }
            },
        );
        Messages {
            queue: queue.into(),
            receiver: Mutex::new(receiver),
        }
    }

    /// How many messages consumers acknowledged on `queue` so far, per the management API. It
    /// counts up only, so "at least n" proves n messages were handled.
    pub async fn acked(&self, queue: &str) -> u64 {
        self.queue_info(queue).await["message_stats"]["ack"]
            .as_u64()
            .unwrap_or(0)
    }

    /// What the management API says about `queue` (its statistics lag by up to 500 ms).
    pub async fn queue_info(&self, queue: &str) -> Value {
        let url = format!("{MANAGEMENT}/api/queues/{}/{queue}", self.vhost.name);
        self.http
            .get(url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .expect("the management API answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits until consumers acknowledged at least `count` messages on `queue`.
    pub async fn wait_acked(&self, queue: &str, count: u64) {
        let done =
            testkit::eventually(PATIENCE, || async { self.acked(queue).await >= count }).await;
        assert!(done, "fewer than {count} messages acknowledged on {queue}");
    }
}

/// Envelopes received from one queue.
pub struct Messages {
    queue: String,
    receiver: Mutex<mpsc::UnboundedReceiver<Value>>,
}

impl Messages {
    /// The next envelope; panics when none comes within [`PATIENCE`].
    pub async fn next(&self) -> Value {
        let mut receiver = self.receiver.lock().await;
        tokio::time::timeout(PATIENCE, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("no message on {} within {PATIENCE:?}", self.queue))
            .expect("the consumer runs")
    }

    /// Whether nothing arrived that was not taken yet.
    pub async fn is_empty(&self) -> bool {
        self.receiver.lock().await.is_empty()
    }

    /// The payloads of the next `count` envelopes.
    pub async fn take(&self, count: usize) -> Vec<Value> {
        let mut payloads = Vec::with_capacity(count);
        for _ in 0..count {
            payloads.push(self.next().await["message"].clone());
        }
        payloads
    }
}
