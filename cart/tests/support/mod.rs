//! Starts the real cart service for one test, zero-to-production style: on port 0, with a fresh
//! MongoDB database and a fresh RabbitMQ vhost, beside the real auth service. Catalog and orders
//! are played by test consumers on that vhost that speak the contract ([`Catalog`], [`Orders`]),
//! so a test decides what they answer, or that they stay silent.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use rabbit::contract::{
    ArticleDataReply, ArticleDataRequest, ArticleValidReply, ArticleValidRequest, OrderPlaced,
    PlaceOrder, exchange, kind, queue, service,
};
use rabbit::{Envelope, Message, Rabbit};
use serde_json::Value;
use testkit::{Reply, Vhost, with_token};
use testkit_auth::TestAuth;
use tokio_util::sync::CancellationToken;

/// A bound for giving up on something that never happens: a hang fails the test instead of
/// stalling the suite. Never a speed asserted.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A cart service with the auth service it asks about tokens, stopped when dropped.
pub struct TestCart {
    pub base_url: String,
    pub http: reqwest::Client,
    pub auth: TestAuth,
    /// Cart's database, to look at what is stored.
    pub db: mongodb::Database,
    pub config: cart::Config,
    /// The test's own connection to the vhost, for the test consumers and publishers.
    pub rabbit: Rabbit,
    /// The cart service itself, to look at what it holds.
    pub running: cart::Running,
    /// Deleted, with everything in it, when the test ends (declared last: dropped last).
    shutdown: CancellationToken,
    pub vhost: Vhost,
}

impl Drop for TestCart {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Test timings: short enough for tests, long enough that nothing fires by accident.
pub fn test_config(vhost: &Vhost, auth_url: &str) -> cart::Config {
    cart::Config {
        port: 0,
        http: common::server::HttpLimits::default(),
        mongo_url: testkit::mongo_url(),
        mongo_db: testkit::unique_name("cart"),
        rabbit_url: vhost.amqp_url_as(service::CART),
        redis_url: testkit::redis_url(),
        projection_ttl: Duration::from_secs(60),
        auth_service_url: auth_url.into(),
        token_cache_ttl: Duration::from_secs(600),
        revalidate_every: Duration::from_secs(3600),
        revalidate_max_age: Duration::from_secs(7 * 24 * 3600),
        validate_timeout: Duration::from_secs(2),
        order_resend_first: Duration::from_secs(3600),
        order_resend_max: Duration::from_secs(3600),
    }
}

pub async fn spawn_cart() -> TestCart {
    spawn_cart_with(|_| {}).await
}

/// A cart service with the configuration `configure` adjusts, healthy before it returns.
pub async fn spawn_cart_with(configure: impl FnOnce(&mut cart::Config)) -> TestCart {
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let mut config = test_config(&vhost, &auth.url);
    configure(&mut config);
    let cart = start(vhost, auth, config).await;
    testkit::wait_healthy(&cart.http, &cart.base_url, "cart").await;
    // Auth's own logout queue and cart's.
    cart.vhost.wait_for_fanout_queues(exchange::AUTH, 2).await;
    cart
}

/// Starts cart without waiting for it to be healthy.
pub async fn start(vhost: Vhost, auth: TestAuth, config: cart::Config) -> TestCart {
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client");
    let shutdown = CancellationToken::new();
    let running = cart::run(config.clone(), shutdown.clone())
        .await
        .expect("cart starts");
    let base_url = format!("http://127.0.0.1:{}", running.addr.port());
    let db = mongodb::Client::with_uri_str(&config.mongo_url)
        .await
        .expect("a valid MongoDB URL")
        .database(&config.mongo_db);
    let rabbit = Rabbit::start(
        &vhost.amqp_url(),
        rabbit::contract::topology(),
        shutdown.clone(),
    );
    TestCart {
        base_url,
        http,
        auth,
        db,
        config,
        rabbit,
        running,
        shutdown,
        vhost,
    }
}

impl TestCart {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Starts another instance of cart on the same database, vhost and auth, as an operator
    /// scaling out would; stopped with this one. Healthy before it returns.
    pub async fn another_instance(&self) -> Instance {
        let running = cart::run(self.config.clone(), self.shutdown.child_token())
            .await
            .expect("another cart starts");
        let instance = Instance {
            base_url: format!("http://127.0.0.1:{}", running.addr.port()),
        };
        testkit::wait_healthy(&self.http, &instance.base_url, "cart").await;
        instance
    }

    /// This instance, to address it beside others.
    pub fn first_instance(&self) -> Instance {
        Instance {
            base_url: self.base_url.clone(),
        }
    }

    /// A token of a new user.
    pub async fn user(&self) -> String {
        let login = testkit::unique_name("user");
        self.auth.signup(&login).await
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Reply {
        self.get_at(&self.first_instance(), token, path).await
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Option<Value>) -> Reply {
        self.post_at(&self.first_instance(), token, path, body)
            .await
    }

    pub async fn delete(&self, token: Option<&str>, path: &str) -> Reply {
        let request = with_token(self.http.delete(self.url(path)), token);
        Reply::read(request.send().await.expect("cart answers")).await
    }

    /// `GET` on one instance of cart.
    pub async fn get_at(&self, instance: &Instance, token: Option<&str>, path: &str) -> Reply {
        let request = with_token(self.http.get(instance.url(path)), token);
        Reply::read(request.send().await.expect("cart answers")).await
    }

    /// `POST` on one instance of cart.
    pub async fn post_at(
        &self,
        instance: &Instance,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = with_token(self.http.post(instance.url(path)), token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.expect("cart answers")).await
    }

    /// `POST /cart/article`, asserting success; the cart it returns.
    pub async fn add(&self, token: &str, article_id: &str, quantity: i64) -> Value {
        self.add_at(&self.first_instance(), token, article_id, quantity)
            .await
    }

    /// `POST /cart/article` on one instance, asserting success; the cart it returns.
    pub async fn add_at(
        &self,
        instance: &Instance,
        token: &str,
        article_id: &str,
        quantity: i64,
    ) -> Value {
        let body = serde_json::json!({"articleId": article_id, "quantity": quantity});
        let reply = self
            .post_at(instance, Some(token), "/cart/article", Some(body))
            .await;
        assert_eq!(reply.status, 200, "{reply}");
        reply.json()
    }

    /// `GET /cart`, asserting success.
    pub async fn cart(&self, token: &str) -> Value {
        self.cart_at(&self.first_instance(), token).await
    }

    /// `GET /cart` on one instance, asserting success.
    pub async fn cart_at(&self, instance: &Instance, token: &str) -> Value {
        let reply = self.get_at(instance, Some(token), "/cart").await;
        assert_eq!(reply.status, 200, "{reply}");
        reply.json()
    }

    /// The stored events of cart `cart_id` of type `kind`, oldest first.
    pub async fn events(&self, cart_id: &str, kind: &str) -> Vec<Document> {
        let events = self
            .db
            .collection::<Document>("cart_events")
            .find(doc! {"cart": cart_id, "event.type": kind})
            .sort(doc! {"position": 1})
            .await
            .expect("MongoDB answers");
        events.try_collect().await.expect("MongoDB answers")
    }

    /// The stored events of type `kind` of every cart of user `user_id`.
    pub async fn events_of_user(&self, user_id: &str, kind: &str) -> Vec<Document> {
        let events = self
            .db
            .collection::<Document>("cart_events")
            .find(doc! {"event.type": kind})
            .await
            .expect("MongoDB answers");
        let events: Vec<Document> = events.try_collect().await.expect("MongoDB answers");
        let prefix = format!("{user_id}:");
        events
            .into_iter()
            .filter(|event| {
                event
                    .get_str("cart")
                    .is_ok_and(|cart| cart.starts_with(&prefix))
            })
            .collect()
    }

    /// Deletes the user's entry of GET /cart's read model from Redis, as an expiry would.
    pub async fn forget_view(&self, user_id: &str) {
        let client = redis::Client::open(self.config.redis_url.as_str()).expect("a Redis URL");
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers");
        let key = format!("{}:cart:{user_id}", self.config.mongo_db);
        let deleted: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("Redis answers");
        assert_eq!(deleted, 1, "no entry {key} to forget");
    }

    /// The order recorded for cart `cart_id`, if any: what `order_placed` left.
    pub async fn order_of(&self, cart_id: &str) -> Option<String> {
        let recorded = self.events(cart_id, "orderRecorded").await;
        recorded.first().map(|event| {
            let order = event.get_document("event").expect("an event");
            order.get_str("orderId").expect("an order id").to_owned()
        })
    }

    /// Waits until cart `cart_id` has `order_id` recorded.
    pub async fn eventually_ordered(&self, cart_id: &str, order_id: &str) -> bool {
        testkit::eventually(PATIENCE, || async {
            self.order_of(cart_id).await.as_deref() == Some(order_id)
        })
        .await
    }

    /// Starts a catalog that answers as its `articles` say.
    pub fn catalog(&self) -> Catalog {
        Catalog::start(&self.rabbit)
    }

    /// Starts a catalog that answers only `/cart/validate`'s and checkout's `article-data`.
    pub fn catalog_answering_data_only(&self) -> Catalog {
        Catalog::answering_data(&self.rabbit, |_| {})
    }

    /// Starts a catalog that answers only `article-data`, each reply altered by `relabel` (a
    /// catalog that mixes up its replies).
    pub fn catalog_answering_data_as(&self, relabel: fn(&mut ArticleDataReply)) -> Catalog {
        Catalog::answering_data(&self.rabbit, relabel)
    }

    /// Starts an orders service that records every `place_order` and answers as told.
    pub fn orders(&self) -> Orders {
        Orders::start(&self.rabbit)
    }

    /// A new connection of the test's own to the vhost, for a stand-in that must not wait for the
    /// backoff of a connection that was refused before.
    pub fn connect(&self) -> Rabbit {
        Rabbit::start(
            &self.vhost.amqp_url(),
            rabbit::contract::topology(),
            self.shutdown.clone(),
        )
    }
}

/// One instance of cart, by its address.
pub struct Instance {
    pub base_url: String,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// An article as the test catalog knows it.
#[derive(Debug, Clone, Copy)]
pub struct Article {
    pub enabled: bool,
    pub stock: i64,
}

/// A catalog stand-in: answers `article-valid` and `article-data` from its `articles` (an unknown
/// article is invalid, with price and stock 0), and keeps the questions it got.
#[derive(Clone)]
pub struct Catalog {
    pub articles: Arc<Mutex<HashMap<String, Article>>>,
    pub valid_requests: Arc<Mutex<Vec<ArticleValidRequest>>>,
    pub data_requests: Arc<Mutex<Vec<ArticleDataRequest>>>,
    /// Whether `article-data` is answered now; while false, the replies wait for it.
    answering_data: Arc<tokio::sync::watch::Sender<bool>>,
    /// How long each `article-data` answer takes, as a busy catalog's would.
    data_delay: Arc<Mutex<Duration>>,
}

impl Catalog {
    fn start(rabbit: &Rabbit) -> Self {
        let catalog = Self::answering_data(rabbit, |_| {});
        let (me, replier) = (catalog.clone(), rabbit.speaking_as(service::CATALOG));
        rabbit.consume(
            rabbit::contract::consumer(queue::CATALOG_ARTICLE_VALID),
            move |message: Arc<Message<ArticleValidRequest>>| {
                let (catalog, rabbit) = (me.clone(), replier.clone());
                async move {
                    let request = message.envelope.message.clone();
                    let valid = catalog
                        .article(&request.article_id)
                        .is_some_and(|a| a.enabled);
                    catalog.valid_requests.lock().unwrap().push(request.clone());
                    let reply = ArticleValidReply {
                        reference_id: request.reference_id,
                        article_id: request.article_id,
                        valid,
                    };
                    rabbit
                        .reply(&message, reply)
                        .await
                        .map_err(|e| rabbit::HandlerError::Failed(e.to_string()))
                }
            },
        );
        catalog
    }

    /// A catalog that answers `article-data` only (each reply altered by `relabel`): lines are
    /// never validated in the background.
    fn answering_data(rabbit: &Rabbit, relabel: fn(&mut ArticleDataReply)) -> Self {
        let catalog = Self {
            articles: Arc::default(),
            valid_requests: Arc::default(),
            data_requests: Arc::default(),
            answering_data: Arc::new(tokio::sync::watch::Sender::new(true)),
            data_delay: Arc::default(),
        };
        let (me, replier) = (catalog.clone(), rabbit.speaking_as(service::CATALOG));
        rabbit.consume(
            rabbit::contract::consumer(queue::CATALOG_ARTICLE_DATA),
            move |message: Arc<Message<ArticleDataRequest>>| {
                let (catalog, rabbit) = (me.clone(), replier.clone());
                async move {
                    let request = message.envelope.message.clone();
                    catalog.data_requests.lock().unwrap().push(request.clone());
                    let article = catalog.article(&request.article_id);
                    let mut reply = ArticleDataReply {
                        reference_id: request.reference_id,
                        article_id: request.article_id,
                        valid: article.is_some_and(|a| {
                            a.enabled && request.quantity.is_none_or(|q| a.stock >= q)
                        }),
                        price: if article.is_some() { 10.0 } else { 0.0 },
                        stock: article.map_or(0, |a| a.stock),
                        quantity: request.quantity,
                    };
                    relabel(&mut reply);
                    let delay = *catalog.data_delay.lock().unwrap();
                    tokio::time::sleep(delay).await;
                    let mut answering = catalog.answering_data.subscribe();
                    // Only fails once the catalog is gone, and then nobody waits for the reply.
                    let _ = answering.wait_for(|answering| *answering).await;
                    rabbit
                        .reply(&message, reply)
                        .await
                        .map_err(|e| rabbit::HandlerError::Failed(e.to_string()))
                }
            },
        );
        catalog
    }

    pub fn set(&self, article_id: &str, enabled: bool, stock: i64) {
        self.articles
            .lock()
            .unwrap()
            .insert(article_id.into(), Article { enabled, stock });
    }

    fn article(&self, article_id: &str) -> Option<Article> {
        self.articles.lock().unwrap().get(article_id).copied()
    }

    /// Holds the `article-data` replies (`false`) until told to answer them (`true`).
    pub fn answer_data(&self, answering: bool) {
        self.answering_data.send_replace(answering);
    }

    /// Takes `delay` over each `article-data` answer from now on.
    pub fn answer_data_after(&self, delay: Duration) {
        *self.data_delay.lock().unwrap() = delay;
    }

    /// The `article-data` questions about the lines of cart `cart_id` (its `referenceId`).
    pub fn data_requests_for(&self, cart_id: &str) -> usize {
        let requests = self.data_requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.reference_id == cart_id)
            .count()
    }

    pub fn valid_requests_for(&self, article_id: &str) -> usize {
        let requests = self.valid_requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.article_id == article_id)
            .count()
    }
}

/// An orders stand-in: records every `place_order` (payload and correlation id) and, once
/// `answering` is set, publishes its `order_placed` on `sell_flow`, as orders does.
#[derive(Clone)]
pub struct Orders {
    pub received: Arc<Mutex<Vec<(String, PlaceOrder)>>>,
    pub answering: Arc<Mutex<bool>>,
}

impl Orders {
    pub fn start(rabbit: &Rabbit) -> Self {
        let orders = Self {
            received: Arc::default(),
            answering: Arc::new(Mutex::new(true)),
        };
        let (me, publisher) = (orders.clone(), rabbit.speaking_as(service::ORDERS));
        rabbit.consume(
            rabbit::contract::consumer(queue::ORDERS_PLACE_ORDER),
            move |message: Arc<Message<PlaceOrder>>| {
                let (orders, rabbit) = (me.clone(), publisher.clone());
                async move {
                    let order = message.envelope.message.clone();
                    let correlation_id = message.envelope.correlation_id.clone();
                    orders
                        .received
                        .lock()
                        .unwrap()
                        .push((correlation_id.clone(), order.clone()));
                    if !*orders.answering.lock().unwrap() {
                        return Ok(());
                    }
                    let placed = OrderPlaced {
                        order_id: format!("order-of-{}", order.cart_id),
                        cart_id: order.cart_id,
                        user_id: order.user_id,
                        articles: order.articles,
                    };
                    let envelope = Envelope::new(kind::ORDER_PLACED, correlation_id, placed);
                    rabbit
                        .publish(exchange::SELL_FLOW, kind::ORDER_PLACED, &envelope)
                        .await
                        .map_err(|e| rabbit::HandlerError::Failed(e.to_string()))
                }
            },
        );
        orders
    }

    pub fn answer(&self, answering: bool) {
        *self.answering.lock().unwrap() = answering;
    }

    /// The `place_order`s received for cart `cart_id`.
    pub fn received_for(&self, cart_id: &str) -> usize {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|(_, o)| o.cart_id == cart_id)
            .count()
    }
}

/// The cart's `_id`.
pub fn id_of(cart: &Value) -> String {
    cart["_id"].as_str().expect("a cart id").to_owned()
}

/// The line of `article_id` in a cart JSON.
pub fn line<'a>(cart: &'a Value, article_id: &str) -> Option<&'a Value> {
    cart["articles"]
        .as_array()
        .expect("an articles array")
        .iter()
        .find(|line| line["articleId"] == article_id)
}
