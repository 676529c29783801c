//! The system as a shop that outgrew one process runs it: two instances of every service, sharing
//! one vhost and one database per service, with HAProxy in front on one port per service, as
//! `INSTANCES=2 scripts/run.sh` does on 3000-3004. Tests reach each instance directly (to race
//! them on purpose) and the balancer (as clients do).

use std::process::{Child, Command, Stdio};

use reqwest::Client;
use serde_json::Value;
use testkit::{Reply, Vhost, with_token};
use testkit_auth::TestAuth;

use crate::{Service, Stores, Wiring, client, init_logs, start_orders};

/// How many instances of each service a cluster runs.
pub const INSTANCES: usize = 2;

/// Two instances of every service behind a balancer, stopped when dropped.
pub struct Cluster {
    /// Auth's instances; the first also makes users the way clients and operators do.
    pub auth: Vec<TestAuth>,
    pub image: Vec<Service>,
    pub catalog: Vec<Service>,
    pub cart: Vec<Service>,
    pub orders: Vec<Service>,
    /// The balancer's address for each service, what clients use.
    pub front: Front,
    /// Orders' database, to look at the event store.
    pub orders_db: mongodb::Database,
    pub http: Client,
    _balancer: Balancer,
    /// Deleted, with every queue in it, when the test ends.
    pub vhost: Vhost,
}

/// `http://127.0.0.1:<port>` of the balancer, per service.
pub struct Front {
    pub auth: String,
    pub image: String,
    pub catalog: String,
    pub cart: String,
    pub orders: String,
}

impl Cluster {
    pub async fn start() -> Self {
        init_logs();
        let vhost = Vhost::create().await;
        let http = client();
        let first_auth = TestAuth::start(&vhost).await;
        let second_auth = first_auth.another_instance().await;
        let stores = Stores::new();
        let wiring = Wiring {
            vhost: &vhost,
            auth_url: &first_auth.url,
            stores: &stores,
        };
        let (mut image, mut catalog, mut cart, mut orders) = (vec![], vec![], vec![], vec![]);
        for _ in 0..INSTANCES {
            image.push(wiring.start_image(&http).await);
            catalog.push(wiring.start_catalog(&http).await);
            cart.push(wiring.start_cart(&http).await);
            orders.push(start_orders(&http, wiring.orders_config()).await);
        }
        // Every instance of the five services (auth too) listens for logouts on a queue of its own.
        vhost.wait_for_fanout_queues("auth", 5 * INSTANCES).await;
        let auth = vec![first_auth, second_auth];
        let urls = |services: &[Service]| services.iter().map(|s| s.url.clone()).collect();
        let auth_urls: Vec<String> = auth.iter().map(|a| a.url.clone()).collect();
        let balancer = Balancer::start(&[
            ("auth", auth_urls),
            ("image", urls(&image)),
            ("catalog", urls(&catalog)),
            ("cart", urls(&cart)),
            ("orders", urls(&orders)),
        ]);
        let front = Front {
            auth: balancer.front("auth"),
            image: balancer.front("image"),
            catalog: balancer.front("catalog"),
            cart: balancer.front("cart"),
            orders: balancer.front("orders"),
        };
        for (name, url) in [("catalog", &front.catalog), ("orders", &front.orders)] {
            testkit::wait_healthy(&http, url, name).await;
        }
        let orders_db = mongodb::Client::with_uri_str(testkit::mongo_url())
            .await
            .expect("a valid MongoDB URL")
            .database(&stores.orders);
        Self {
            auth,
            image,
            catalog,
            cart,
            orders,
            front,
            orders_db,
            http,
            _balancer: balancer,
            vhost,
        }
    }

    pub async fn get(&self, url: String, token: Option<&str>) -> Reply {
        let request = with_token(self.http.get(url), token);
        Reply::read(request.send().await.expect("the service answers")).await
    }

    pub async fn post(&self, url: String, token: Option<&str>, body: &Value) -> Reply {
        let request = with_token(self.http.post(url), token).json(body);
        Reply::read(request.send().await.expect("the service answers")).await
    }
}

/// `scripts/balancer.sh`, the balancer `INSTANCES=2 scripts/run.sh` puts on 3000-3004: HAProxy in
/// the foreground, round robin over the healthy instances of each service; killed when dropped.
struct Balancer {
    process: Child,
    fronts: Vec<(&'static str, String)>,
}

impl Balancer {
    fn start(services: &[(&'static str, Vec<String>)]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/balancer.sh");
        let mut command = Command::new("bash");
        command.arg(script);
        let mut fronts = Vec::new();
        for (name, backends) in services {
            let port = testkit::free_port();
            let backends: Vec<&str> = backends
                .iter()
                .map(|url| url.trim_start_matches("http://"))
                .collect();
            command.arg(format!("{name}:{port}={}", backends.join(",")));
            fronts.push((*name, format!("http://127.0.0.1:{port}")));
        }
        let process = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("scripts/balancer.sh runs");
        Self { process, fronts }
    }

    fn front(&self, service: &str) -> String {
        let (_, url) = self
            .fronts
            .iter()
            .find(|(name, _)| *name == service)
            .expect("a front for every service");
        url.clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
