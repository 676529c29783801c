//! The real auth service for the tests of the services that ask it about tokens: started on port 0
//! with a database of its own on the test's RabbitMQ vhost, stopped when dropped. Users are made
//! the way a client and an operator make them: signup over HTTP, admin through MongoDB directly.

use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use serde_json::json;
use testkit::{Reply, Vhost, with_token};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery";
const JWT_SECRET: &str = "integration-test-secret-of-at-least-32-bytes";

/// A running auth service, stopped when dropped.
pub struct TestAuth {
    /// `http://127.0.0.1:<port>`, what the services under test get as `AUTH_SERVICE_URL`.
    pub url: String,
    /// Auth's database, for what an operator does with Mongo tooling.
    pub db: mongodb::Database,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// To start further instances of the same auth.
    config: auth::Config,
}

impl Drop for TestAuth {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestAuth {
    /// Starts auth on `vhost` with a fresh database and waits until it is healthy.
    pub async fn start(vhost: &Vhost) -> Self {
        Self::start_with(auth::Config {
            port: 0,
            http: common::server::HttpLimits::default(),
            mongo_url: testkit::mongo_url(),
            mongo_db: testkit::unique_name("auth"),
            rabbit_url: vhost.amqp_url_as("auth"),
            jwt_secret: JWT_SECRET.into(),
            token_cache_ttl: std::time::Duration::from_secs(600),
        })
        .await
    }

    /// Another instance of this auth: the same database, vhost and secret, its own port.
    pub async fn another_instance(&self) -> Self {
        Self::start_with(self.config.clone()).await
    }

    async fn start_with(config: auth::Config) -> Self {
        let shutdown = CancellationToken::new();
        let running = auth::run(config.clone(), shutdown.clone())
            .await
            .expect("auth starts");
        let url = format!("http://127.0.0.1:{}", running.addr.port());
        let http = reqwest::Client::new();
        testkit::wait_healthy(&http, &url, "auth").await;
        let db = mongodb::Client::with_uri_str(&config.mongo_url)
            .await
            .expect("a valid MongoDB URL")
            .database(&config.mongo_db);
        Self {
            url,
            db,
            http,
            shutdown,
            config,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("auth answers")).await
    }

    /// Signs up `login` (at least 5 characters); the token holds the `user` permission.
    pub async fn signup(&self, login: &str) -> String {
        let body = json!({"name": "Test User", "login": login, "password": PASSWORD});
        let url = format!("{}/users/signup", self.url);
        let reply = self.send(self.http.post(url).json(&body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply}");
        reply.json()["token"].as_str().expect("a token").to_owned()
    }

    /// The id of the user `token` belongs to.
    pub async fn user_id(&self, token: &str) -> String {
        let url = format!("{}/users/current", self.url);
        let reply = self.send(with_token(self.http.get(url), Some(token))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply}");
        reply.json()["id"].as_str().expect("an id").to_owned()
    }

    /// What an operator does in mongosh:
    /// `users.updateOne({login}, {$addToSet: {permissions: "admin"}})`.
    pub async fn make_admin(&self, login: &str) {
        let result = self
            .db
            .collection::<Document>("users")
            .update_one(
                doc! {"login": login},
                doc! {"$addToSet": {"permissions": "admin"}},
            )
            .await
            .expect("MongoDB answers");
        assert_eq!(result.matched_count, 1, "no user {login}");
    }

    /// A token of a new user `login` holding `user` and `admin`.
    pub async fn admin(&self, login: &str) -> String {
        let token = self.signup(login).await;
        self.make_admin(login).await;
        token
    }

    /// Revokes `permissions` from user `id`, as admin `admin_token`.
    pub async fn revoke(&self, admin_token: &str, id: &str, permissions: &[&str]) {
        let url = format!("{}/users/{id}/revoke", self.url);
        let body = json!({ "permissions": permissions });
        let request = with_token(self.http.post(url), Some(admin_token)).json(&body);
        let reply = self.send(request).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply}");
    }

    /// Signs `token` out, which revokes it and broadcasts the logout.
    pub async fn signout(&self, token: &str) {
        let url = format!("{}/users/signout", self.url);
        let reply = self.send(with_token(self.http.get(url), Some(token))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply}");
    }
}
