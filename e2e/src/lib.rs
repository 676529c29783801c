//! The whole system for end-to-end tests: the five services started in-process on port 0, on one
//! fresh RabbitMQ vhost and fresh MongoDB databases, each with its production configuration but
//! for addresses, so a test drives it over HTTP exactly as the browser UI does.

use std::net::SocketAddr;
use std::time::Duration;

use common::server::StartError;

pub mod cluster;

use reqwest::{Client, RequestBuilder};
use serde_json::Value;
use testkit::{Reply, Vhost, with_token};
use testkit_auth::TestAuth;
use tokio_util::sync::CancellationToken;

/// A bound for giving up on a request that never completes: a hang fails the test instead of
/// stalling the suite. Never a speed asserted.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One running service, stopped when dropped.
pub struct Service {
    pub url: String,
    shutdown: CancellationToken,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The five services, stopped when dropped.
pub struct System {
    pub auth: TestAuth,
    pub image: Service,
    pub catalog: Service,
    pub cart: Service,
    pub orders: Service,
    /// To start orders again after [`System::stop_orders`].
    orders_config: orders::Config,
    /// Cart's database, to look at a closed cart, which no endpoint returns.
    pub cart_db: mongodb::Database,
    pub http: Client,
    /// Deleted, with every queue in it, when the test ends.
    pub vhost: Vhost,
}

/// Starts a service with `run`, which answers where it listens, and waits until its `/health`
/// answers 200.
async fn start<F, Fut>(http: &Client, name: &str, run: F) -> Service
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<SocketAddr, StartError>>,
{
    let shutdown = CancellationToken::new();
    let addr = run(shutdown.clone())
        .await
        .unwrap_or_else(|error| panic!("{name} starts: {error}"));
    let url = format!("http://127.0.0.1:{}", addr.port());
    testkit::wait_healthy(http, &url, name).await;
    Service { url, shutdown }
}

impl System {
    pub async fn start() -> Self {
        init_logs();
        let vhost = Vhost::create().await;
        let http = client();
        let auth = TestAuth::start(&vhost).await;
        let stores = Stores::new();
        let wiring = Wiring {
            vhost: &vhost,
            auth_url: &auth.url,
            stores: &stores,
        };
        let image = wiring.start_image(&http).await;
        let catalog = wiring.start_catalog(&http).await;
        let cart = wiring.start_cart(&http).await;
        let orders_config = wiring.orders_config();
        let orders = start_orders(&http, orders_config.clone()).await;

        // The five services (auth too) listen for logouts, each on a queue of its own.
        vhost.wait_for_fanout_queues("auth", 5).await;
        Self {
            auth,
            image,
            catalog,
            cart,
            orders,
            orders_config,
            cart_db: stores.cart_db().await,
            http,
            vhost,
        }
    }

    /// Stops orders, as a crash or a deployment would, and waits until its server is gone.
    pub async fn stop_orders(&mut self) {
        self.orders.shutdown.cancel();
        let health = format!("{}/health", self.orders.url);
        let gone = testkit::eventually(testkit::STARTUP, || async {
            self.http.get(&health).send().await.is_err()
        })
        .await;
        assert!(gone, "orders never stopped");
    }

    /// Starts orders again, on the same database and vhost (and a new port).
    pub async fn start_orders(&mut self) {
        self.orders = start_orders(&self.http, self.orders_config.clone()).await;
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("the service answers")).await
    }

    pub async fn get(&self, url: String, token: Option<&str>) -> Reply {
        self.send(with_token(self.http.get(url), token)).await
    }

    pub async fn post(&self, url: String, token: Option<&str>, body: &Value) -> Reply {
        self.send(with_token(self.http.post(url), token).json(body))
            .await
    }
}

/// The services' logs, when a failing run needs them: `RUST_LOG=info cargo test -p e2e`.
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = common::telemetry::init();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client")
}

/// One fresh database name per service that has one.
struct Stores {
    catalog: String,
    cart: String,
    orders: String,
}

impl Stores {
    fn new() -> Self {
        let name = |service: &str| testkit::unique_name(&format!("e2e_{service}"));
        Self {
            catalog: name("catalog"),
            cart: name("cart"),
            orders: name("orders"),
        }
    }

    async fn cart_db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(testkit::mongo_url())
            .await
            .expect("a valid MongoDB URL")
            .database(&self.cart)
    }
}

/// What every instance of a service shares with the other instances: the vhost, auth and its
/// database. Instances differ only in their port (0: any free one).
struct Wiring<'a> {
    vhost: &'a Vhost,
    auth_url: &'a str,
    stores: &'a Stores,
}

impl Wiring<'_> {
    async fn start_image(&self, http: &Client) -> Service {
        let mut image = config(image_service::Config::from_env());
        image.port = 0;
        image.rabbit_url = self.vhost.amqp_url_as("image");
        image.auth_service_url = self.auth_url.into();
        start(http, "image", |stop| async {
            image_service::run(image, stop)
                .await
                .map(|running| running.addr)
        })
        .await
    }

    async fn start_catalog(&self, http: &Client) -> Service {
        let mut catalog = config(catalog::Config::from_env());
        catalog.port = 0;
        catalog.mongo_url = testkit::mongo_url();
        catalog.mongo_db = self.stores.catalog.clone();
        catalog.rabbit_url = self.vhost.amqp_url_as("catalog");
        catalog.auth_service_url = self.auth_url.into();
        start(http, "catalog", |stop| async {
            catalog::run(catalog, stop)
                .await
                .map(|running| running.addr)
        })
        .await
    }

    async fn start_cart(&self, http: &Client) -> Service {
        let mut cart = config(cart::Config::from_env());
        cart.port = 0;
        cart.mongo_url = testkit::mongo_url();
        cart.mongo_db = self.stores.cart.clone();
        cart.rabbit_url = self.vhost.amqp_url_as("cart");
        cart.auth_service_url = self.auth_url.into();
        start(http, "cart", |stop| async {
            cart::run(cart, stop).await.map(|running| running.addr)
        })
        .await
    }

    fn orders_config(&self) -> orders::Config {
        let mut orders = config(orders::Config::from_env());
        orders.port = 0;
        orders.mongo_url = testkit::mongo_url();
        orders.mongo_db = self.stores.orders.clone();
        orders.rabbit_url = self.vhost.amqp_url_as("orders");
        orders.auth_service_url = self.auth_url.into();
        orders
    }
}

async fn start_orders(http: &Client, config: orders::Config) -> Service {
    start(http, "orders", |stop| async {
        orders::run(config, stop).await.map(|running| running.addr)
    })
    .await
}

/// A service's configuration from the (test process's) environment: the defaults production uses.
fn config<T>(result: Result<T, common::config::ConfigError>) -> T {
    result.expect("the default configuration is valid")
}
