//! Test infrastructure for integration tests against the real servers that `scripts/deps.sh`
//! starts. Every test gets its own RabbitMQ vhost and its own MongoDB database, so tests run in
//! parallel without seeing each other's exchanges, queues or documents.

use std::future::Future;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rabbit::contract::{Permissions, permissions, service};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// `MONGO_URL`, or the local server the scripts start.
pub fn mongo_url() -> String {
    std::env::var("MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// `REDIS_URL`, or the local server the scripts start.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name no other test uses, e.g. for a database: `prefix_<16 hex digits>`.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..16])
}

const MANAGEMENT: &str = "127.0.0.1:15672";
const AUTHORIZATION: &str = "Basic Z3Vlc3Q6Z3Vlc3Q="; // guest:guest

/// A RabbitMQ vhost of one test, deleted (with everything in it) when dropped.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    /// A new vhost where `guest` may do anything and each service's user
    /// ([`Vhost::amqp_url_as`]) what the contract lets it do.
    pub async fn create() -> Self {
        let name = unique_name("test");
        let vhost = Self { name };
        management_put(&format!("vhosts/{}", vhost.name), serde_json::json!({})).await;
        let anything = Permissions {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        vhost.set_permissions("guest", &anything).await;
        service_users().await;
        for service in service::ALL {
            vhost.set_permissions(service, &permissions(service)).await;
        }
        vhost
    }

    async fn set_permissions(&self, user: &str, granted: &Permissions) {
        let Permissions {
            configure,
            write,
            read,
        } = granted;
        let body = serde_json::json!({"configure": configure, "write": write, "read": read});
        management_put(&format!("permissions/{}/{user}", self.name), body).await;
    }

    /// Lets `service` publish only to what `write` matches on this vhost (a regex; `.*` for
    /// all), to make the broker refuse its publishes as a misconfigured or failing broker would.
    /// `None` gives it back the contract's permissions.
    pub async fn set_write_permission(&self, service: &str, write: Option<&str>) {
        let mut granted = permissions(service);
        if let Some(write) = write {
            granted.write = write.to_owned();
        }
        self.set_permissions(service, &granted).await;
    }

    /// The vhost as `guest`, who may do anything: for tests of the rabbit crate itself.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// The vhost as `service`'s RabbitMQ user (see `scripts/deps.sh`): what the service itself
    /// connects as, and what a test connects as to play that service.
    pub fn amqp_url_as(&self, service: &str) -> String {
        format!(
            "amqp://{service}:{}@127.0.0.1:5672/{}",
            rabbit_password(service),
            self.name
        )
    }

    /// Names of the client connections open on this vhost.
    pub async fn connections(&self) -> Vec<String> {
        let list = management_list(&format!("vhosts/{}/connections", self.name)).await;
        list.iter()
            .filter_map(|connection| connection["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many consumers the broker lists on this vhost.
    pub async fn consumer_count(&self) -> usize {
        management_list(&format!("consumers/{}", self.name))
            .await
            .len()
    }

    /// How many channels the broker lists on this vhost.
    pub async fn channel_count(&self) -> usize {
        management_list(&format!("vhosts/{}/channels", self.name))
            .await
            .len()
    }

    /// How many messages wait in `queue`, as the broker's statistics (every 500 ms) last saw.
    pub async fn queued(&self, queue: &str) -> u64 {
        let path = format!("queues/{}/{}", self.name, encode(queue));
        let queue = management_get(&path).await;
        queue["messages"].as_u64().unwrap_or(0)
    }

    /// What the management API says about `queue`: its `type` (`classic`, `quorum`), its
    /// `arguments`, ...; an object with an `error` when there is no such queue.
    pub async fn queue(&self, queue: &str) -> Value {
        management_get(&format!("queues/{}/{}", self.name, encode(queue))).await
    }

    /// Publishes `body` (a JSON envelope) persistent on `exchange` with `routing_key` as sent by
    /// `sender` (its AMQP `user_id`), as an operator would from the management UI (`guest` may
    /// name another user: `scripts/deps.sh` tags it `impersonator`); panics unless the broker
    /// routed it to a queue.
    pub async fn publish(&self, sender: &str, exchange: &str, routing_key: &str, body: &Value) {
        let url = format!(
            "http://{MANAGEMENT}/api/exchanges/{}/{}/publish",
            self.name,
            encode(exchange)
        );
        let request = serde_json::json!({
            "properties": {"delivery_mode": 2, "content_type": "application/json",
                           "message_id": uuid::Uuid::new_v4().to_string(), "user_id": sender},
            "routing_key": routing_key,
            "payload": body.to_string(),
            "payload_encoding": "string",
        });
        let answer: Value = reqwest::Client::new()
            .post(url)
            .header("authorization", AUTHORIZATION)
            .json(&request)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["routed"], true, "{exchange}/{routing_key}: {answer}");
    }

    /// Closes every client connection of this vhost from the broker side, as a broker restart
    /// would, without disturbing the other tests. Panics when the broker lists none within a few
    /// seconds, so that a test meant to survive a dropped connection cannot pass without one.
    pub async fn close_connections(&self) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut names = self.connections().await;
        while names.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no connection on vhost {} to close",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            names = self.connections().await;
        }
        for name in &names {
            let url = format!("http://{MANAGEMENT}/api/connections/{}", encode(name));
            reqwest::Client::new()
                .delete(url)
                .header("authorization", AUTHORIZATION)
                .send()
                .await
                .unwrap();
        }
        names
    }

    /// Waits until the broker lists a connection other than `closed` on this vhost.
    pub async fn wait_for_new_connection(&self, closed: &[String]) -> bool {
        eventually(Duration::from_secs(20), || async {
            self.connections()
                .await
                .iter()
                .any(|name| !closed.contains(name))
        })
        .await
    }
}

impl Drop for Vhost {
    /// Blocking on purpose: the test's runtime may be gone by now, and the request is local.
    fn drop(&mut self) {
        let request = format!(
            "DELETE /api/vhosts/{} HTTP/1.1\r\nHost: {MANAGEMENT}\r\nAuthorization: {AUTHORIZATION}\r\nConnection: close\r\n\r\n",
            self.name
        );
        if let Ok(mut stream) = std::net::TcpStream::connect(MANAGEMENT) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read(&mut [0; 64]);
        }
    }
}

/// Every user a test's messages can come from, for a test consumer that takes them all: the
/// services and `guest`.
pub const ANYONE: [&str; 6] = ["guest", "auth", "image", "catalog", "cart", "orders"];

/// The password of `service`'s RabbitMQ user on the local broker of the tests and the no-Docker
/// run, which `scripts/deps.sh` creates too: a development secret, for a broker that listens on
/// 127.0.0.1 only.
pub fn rabbit_password(service: &str) -> String {
    format!("{service}-dev-password")
}

/// Creates (or resets) the user of every service, once per test process. Users belong to the
/// broker, not to a vhost: each test's vhost only grants them permissions.
async fn service_users() {
    static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CREATED
        .get_or_init(|| async {
            for service in service::ALL {
                let body = serde_json::json!({"password": rabbit_password(service), "tags": ""});
                management_put(&format!("users/{service}"), body).await;
            }
        })
        .await;
}

/// A `PUT` of `body` to the management API's `/api/<path>`; panics unless it succeeded.
async fn management_put(path: &str, body: Value) {
    let response = reqwest::Client::new()
        .put(format!("http://{MANAGEMENT}/api/{path}"))
        .header("authorization", AUTHORIZATION)
        .json(&body)
        .send()
        .await
        .expect("RabbitMQ management API reachable (run scripts/deps.sh)");
    assert!(response.status().is_success(), "PUT {path}: {response:?}");
}

/// A list the management API answers at `/api/<path>`.
async fn management_list(path: &str) -> Vec<serde_json::Value> {
    let list = management_get(path).await;
    list.as_array().cloned().unwrap_or_default()
}

/// What the management API answers at `/api/<path>`.
async fn management_get(path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("http://{MANAGEMENT}/api/{path}"))
        .header("authorization", AUTHORIZATION)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn encode(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP answer as tests look at it: status, headers, the raw bytes and the body as JSON
/// (`null` when empty, `{"not JSON": ...}` when it is something else).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a complete body").to_vec();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(
                |_| serde_json::json!({"not JSON": String::from_utf8_lossy(&bytes)}),
            )
        };
        Self {
            status,
            headers,
            bytes,
            body,
        }
    }

    /// The body as JSON; panics (showing the reply) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|_| panic!("a JSON body: {self}"))
    }

    /// Asserts the status and the whole body at once, so a failure shows both.
    pub fn assert_is(&self, status: u16, body: Value) {
        assert_eq!(
            (self.status.as_u16(), &self.body),
            (status, &body),
            "{self}"
        );
    }

    /// Asserts a 400 `{"messages": [...]}` whose paths are exactly `paths`, each with a message.
    pub fn assert_field_errors(&self, paths: &[&str]) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{self}");
        let messages = self.body["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("a messages array: {self}"));
        let mut sent: Vec<&str> = messages
            .iter()
            .map(|entry| entry["path"].as_str().expect("a path"))
            .collect();
        sent.sort_unstable();
        let mut expected = paths.to_vec();
        expected.sort_unstable();
        assert_eq!(sent, expected, "{self}");
        let described = messages.iter().all(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        });
        assert!(described, "{self}");
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("a visible ASCII header"))
    }

    /// The UUID `id` of a successful answer that created something.
    pub fn id(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "{self}");
        let id = self.body["id"].as_str().expect("an id").to_owned();
        uuid::Uuid::parse_str(&id).unwrap_or_else(|_| panic!("a UUID id: {self}"));
        id
    }
}

impl std::fmt::Display for Reply {
    /// Status, headers and the body, shortened: bodies are often whole images.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.bytes);
        let shown: String = text.chars().take(300).collect();
        let (status, headers, size) = (self.status, &self.headers, self.bytes.len());
        write!(f, "{status} {headers:?} {size} bytes: {shown}")
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// How long a service may take to report healthy before a test gives up.
pub const STARTUP: Duration = Duration::from_secs(60);

/// Waits until `GET {base_url}/health` answers 200; panics naming `service` otherwise.
pub async fn wait_healthy(http: &reqwest::Client, base_url: &str, service: &str) {
    let url = format!("{base_url}/health");
    let up = eventually(STARTUP, || async {
        http.get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status() == StatusCode::OK)
    })
    .await;
    assert!(up, "{service} never reported healthy");
}

/// Adds `authorization: bearer <token>` when there is a token.
pub fn with_token(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.header("authorization", format!("bearer {token}")),
        None => request,
    }
}

impl Vhost {
    /// Waits until at least `count` queues are bound to the fanout `exchange`: a service binds its
    /// server-named logout queue asynchronously, and a broadcast sent before reaches nobody.
    pub async fn wait_for_fanout_queues(&self, exchange: &str, count: usize) {
        let path = format!("exchanges/{}/{exchange}/bindings/source", self.name);
        let bound = eventually(STARTUP, || async {
            let bindings = management_list(&path).await;
            let queues = bindings
                .iter()
                .filter(|binding| binding["destination_type"] == "queue")
                .count();
            queues >= count
        })
        .await;
        assert!(bound, "fewer than {count} queues bound to {exchange}");
    }
}

/// A FerretDB process of the test's own on a free port, over an SQLite directory of its own,
/// killed when dropped: a test can stop and restart it without disturbing the others. The binary
/// is the one `scripts/deps.sh` builds (or `FERRETDB_BIN`).
pub struct PrivateMongo {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

/// Path segments no id of any service looks like, as a client may send them: a NUL and other
/// control characters, bytes that are not UTF-8 (whole or truncated), a `%` that starts no escape,
/// and an id far longer than any real one. Every service answers them 4xx before its store is
/// asked.
pub fn odd_path_segments() -> Vec<String> {
    let mut segments: Vec<String> = ["a%00b", "%00", "a%0Ab", "%1B", "%7F", "%FF", "%C3", "%zz"]
        .map(String::from)
        .into();
    segments.push("x".repeat(5000));
    segments
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl PrivateMongo {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_name("ferretdb"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and data, and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "ferretdb is already running");
        let binary = std::env::var("FERRETDB_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.deps/bin/ferretdb").into()
        });
        let child = Command::new(&binary)
            .arg("--handler=sqlite")
            .arg(format!(
                "--sqlite-url=file:{}/",
                self.dir.join("data").display()
            ))
            .arg(format!("--listen-addr=127.0.0.1:{}", self.port))
            .arg(format!("--debug-addr=127.0.0.1:{}", free_port()))
            .arg(format!("--state-dir={}", self.dir.display()))
            .args(["--telemetry=disable", "--log-level=error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{binary} runs (scripts/deps.sh builds it): {error}"));
        self.child = Some(child);
        let port = self.port;
        let up = eventually(STARTUP, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "ferretdb never listened on port {port}");
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
