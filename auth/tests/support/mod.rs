//! Starts the real auth service for one test, zero-to-production style: port 0, a fresh MongoDB
//! database and a fresh RabbitMQ vhost, so tests run in parallel without seeing each other.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{Document, doc};
use rabbit::contract::service;
use rabbit::{
    AUTH_EXCHANGE, Consumer, Envelope, ExchangeKind, HandlerError, LOGOUT, Message, Rabbit,
    Topology, USER_CHANGED,
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use testkit::Vhost;
use tokio_util::sync::CancellationToken;

/// The service's signing secret, known to the tests so that they can forge tokens with it.
pub const SECRET: &str = "integration-test-secret-at-least-32-bytes-long";
pub const PASSWORD: &str = "correct horse battery";
/// How long the service or the test consumer may take to connect before a test gives up.
const STARTUP: Duration = Duration::from_secs(60);
/// How long a broadcast may take to arrive; a bound for giving up, never a speed asserted.
const DELIVERY: Duration = Duration::from_secs(5);
/// The service's default: in a test, only the logout broadcast and the instance's own changes
/// evict `/users/current` answers.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(600);

/// A running auth service, stopped when dropped.
pub struct TestAuth {
    /// Declared first so that the service stops before the vhost is deleted.
    instance: Instance,
    pub base_url: String,
    pub http: reqwest::Client,
    /// The service's database, for what an operator does with Mongo tooling.
    pub db: mongodb::Database,
    /// Deleted, with everything in it, when the test ends.
    pub vhost: Vhost,
    token_cache_ttl: Duration,
}

/// Another auth instance on the same database and vhost as a [`TestAuth`], stopped when dropped.
pub struct Instance {
    pub base_url: String,
    shutdown: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub use testkit::Reply;

/// A started auth service whose /health reports "up": the readiness a load balancer sees.
pub async fn spawn_auth() -> TestAuth {
    spawn_auth_with_ttl(TOKEN_CACHE_TTL).await
}

/// [`spawn_auth`] whose `/users/current` answers live `token_cache_ttl` in memory.
pub async fn spawn_auth_with_ttl(token_cache_ttl: Duration) -> TestAuth {
    let vhost = Vhost::create().await;
    let mongo_db = testkit::unique_name("auth");
    let http = reqwest::Client::new();
    let amqp_url = vhost.amqp_url_as(service::AUTH);
    let instance = start_instance(&http, &mongo_db, &amqp_url, token_cache_ttl).await;
    let db = mongodb::Client::with_uri_str(testkit::mongo_url())
        .await
        .expect("a valid MongoDB URL")
        .database(&mongo_db);
    TestAuth {
        base_url: instance.base_url.clone(),
        http,
        db,
        vhost,
        instance,
        token_cache_ttl,
    }
}

/// Starts auth on `mongo_db` and `amqp_url` and waits until its /health reports "up".
async fn start_instance(
    http: &reqwest::Client,
    mongo_db: &str,
    amqp_url: &str,
    token_cache_ttl: Duration,
) -> Instance {
    let config = auth::Config {
        port: 0,
        http: common::server::HttpLimits::default(),
        mongo_url: testkit::mongo_url(),
        mongo_db: mongo_db.into(),
        rabbit_url: amqp_url.into(),
        jwt_secret: SECRET.into(),
        token_cache_ttl,
    };
    let shutdown = CancellationToken::new();
    let running = auth::run(config, shutdown.clone())
        .await
        .expect("auth starts");
    let instance = Instance {
        base_url: format!("http://127.0.0.1:{}", running.addr.port()),
        shutdown,
    };
    let health = format!("{}/health", instance.base_url);
    let up = testkit::eventually(STARTUP, || async {
        let reply = http.get(&health).send().await;
        reply.is_ok_and(|reply| reply.status() == StatusCode::OK)
    })
    .await;
    assert!(up, "auth never reported healthy");
    instance
}

impl TestAuth {
    /// A second instance sharing this one's database and vhost, as behind a load balancer.
    pub async fn another_instance(&self) -> Instance {
        let amqp_url = self.vhost.amqp_url_as(service::AUTH);
        start_instance(&self.http, self.db.name(), &amqp_url, self.token_cache_ttl).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `POST path` with `body` to the instance at `base_url` (this one's or another's).
    pub async fn post_at(
        &self,
        base_url: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Reply {
        let request = self.http.post(format!("{base_url}{path}"));
        self.send(with_token(request, token).json(body)).await
    }

    /// `GET /users/current` with `token` at the instance at `base_url`.
    pub async fn current_at(&self, base_url: &str, token: &str) -> Reply {
        let request = self.http.get(format!("{base_url}/users/current"));
        self.send(with_token(request, Some(token))).await
    }

    /// [`TestAuth::current_at`] with a `Cache-Control` request header, e.g. `no-cache` to have
    /// the answer read from the store rather than from the instance's memory.
    pub async fn current_with_cache_control(
        &self,
        base_url: &str,
        token: &str,
        cache_control: &str,
    ) -> Reply {
        let request = self
            .http
            .get(format!("{base_url}/users/current"))
            .header("cache-control", cache_control);
        self.send(with_token(request, Some(token))).await
    }

    /// Waits until `/users/current` at `base_url` answers `status` for `token`, as it does once
    /// the logout broadcast reached that instance; false if it never does.
    pub async fn eventually_current_at(&self, base_url: &str, token: &str, status: u16) -> bool {
        testkit::eventually(DELIVERY, || async {
            self.current_at(base_url, token).await.status == status
        })
        .await
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("auth answers")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(with_token(self.http.get(self.url(path)), token))
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(with_token(self.http.post(self.url(path)), token).json(body))
            .await
    }

    pub async fn current(&self, token: &str) -> Reply {
        self.get("/users/current", Some(token)).await
    }

    /// Signs up `login` (name "Test User", password [`PASSWORD`]) and returns its token.
    pub async fn signup(&self, login: &str) -> String {
        let body = json!({"name": "Test User", "login": login, "password": PASSWORD});
        let reply = self.post("/users/signup", None, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        token_of(&reply)
    }

    pub async fn signin(&self, login: &str, password: &str) -> Reply {
        let body = json!({"login": login, "password": password});
        self.post("/users/signin", None, &body).await
    }

    /// Signs in `login` with [`PASSWORD`] and returns the new token.
    pub async fn new_token(&self, login: &str) -> String {
        let reply = self.signin(login, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        token_of(&reply)
    }

    pub async fn user_id(&self, token: &str) -> String {
        let reply = self.current(token).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body["id"].as_str().expect("an id").to_owned()
    }

    /// What an operator does in mongosh:
    /// `users.updateOne({login}, {$addToSet: {permissions: "admin"}})`.
    pub async fn make_admin(&self, login: &str) {
        self.update_user(login, doc! {"$addToSet": {"permissions": "admin"}})
            .await;
    }

    /// `users.updateOne({login}, update)`, straight in MongoDB as with mongosh.
    pub async fn update_user(&self, login: &str, update: Document) {
        let result = self
            .db
            .collection::<Document>("users")
            .update_one(doc! {"login": login}, update)
            .await
            .expect("MongoDB answers");
        assert_eq!(result.matched_count, 1, "no user {login}");
    }

    /// The token of a fresh admin, login `admin01`.
    pub async fn admin(&self) -> String {
        let token = self.signup("admin01").await;
        self.make_admin("admin01").await;
        token
    }

    /// `POST /users/{id}/{action}` (enable, disable, grant, revoke) with `body`.
    pub async fn admin_action(&self, token: &str, id: &str, action: &str, body: &Value) -> Reply {
        self.post(&format!("/users/{id}/{action}"), Some(token), body)
            .await
    }

    /// A consumer bound to the `auth` fanout of this test's vhost, ready when this returns.
    pub async fn listen_for_logouts(&self) -> Logouts {
        Logouts::start(&self.vhost.amqp_url()).await
    }
}

fn with_token(request: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(token) => request.header("authorization", format!("bearer {token}")),
        None => request,
    }
}

pub fn token_of(reply: &Reply) -> String {
    let token = reply.body["token"].as_str().expect("a token");
    assert!(!token.is_empty());
    token.to_owned()
}

/// What was broadcast on the `auth` fanout since the consumer started: (type, message) pairs.
pub struct Logouts {
    received: Arc<Mutex<Vec<(String, String)>>>,
    shutdown: CancellationToken,
}

impl Drop for Logouts {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Logouts {
    async fn start(amqp_url: &str) -> Self {
        let shutdown = CancellationToken::new();
        let topology = Topology::default().exchange(AUTH_EXCHANGE, ExchangeKind::Fanout);
        // Its probe passes for auth's broadcast: `guest` may name auth as the sender.
        let rabbit = Rabbit::start(amqp_url, topology, shutdown.clone()).speaking_as(service::AUTH);
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        rabbit.consume(
            Consumer::broadcast(AUTH_EXCHANGE, &[service::AUTH]),
            move |message: Arc<Message<String>>| {
                let sink = sink.clone();
                async move {
                    let envelope = &message.envelope;
                    let pair = (envelope.kind.clone(), envelope.message.clone());
                    sink.lock().unwrap().push(pair);
                    Ok::<_, HandlerError>(())
                }
            },
        );
        // The queue is server-named and bound asynchronously: it is ready once a probe of ours
        // on the same fanout comes back.
        let probe = testkit::unique_name("probe");
        let (rabbit, probe, sink) = (&rabbit, probe.as_str(), &received);
        let ready = testkit::eventually(STARTUP, || async move {
            let envelope = Envelope::new(LOGOUT, "test-probe", probe);
            let _ = rabbit.broadcast(AUTH_EXCHANGE, "", &envelope).await;
            sink.lock().unwrap().iter().any(|(_, token)| token == probe)
        })
        .await;
        assert!(ready, "the test consumer never received its probe");
        Self { received, shutdown }
    }

    /// Every message received, of any type.
    pub fn received(&self) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .map(|(_, message)| message.clone())
            .collect()
    }

    /// Waits until every one of `tokens` was broadcast as a `logout`; false if one never was.
    pub async fn eventually_contain(&self, tokens: &[&str]) -> bool {
        self.eventually_have(LOGOUT, tokens).await
    }

    /// Waits until a change of user `user_id` was broadcast; false if it never was.
    pub async fn eventually_announce(&self, user_id: &str) -> bool {
        self.eventually_have(USER_CHANGED, &[user_id]).await
    }

    async fn eventually_have(&self, kind: &str, messages: &[&str]) -> bool {
        testkit::eventually(DELIVERY, || async {
            let received = self.received.lock().unwrap().clone();
            messages.iter().all(|message| {
                received
                    .iter()
                    .any(|(got_kind, got)| got_kind == kind && got == message)
            })
        })
        .await
    }
}
