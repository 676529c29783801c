//! Starts the real image service for one test, zero-to-production style: the real auth service
//! beside it (a fresh MongoDB database), both on port 0 and on a fresh RabbitMQ vhost, so tests run
//! in parallel without seeing each other. Images live in Redis under random UUIDs, so tests share
//! the local Redis unless they start a private `redis-server` ([`RedisServer`]).
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Cursor;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use testkit::{Vhost, with_token};
use testkit_auth::TestAuth;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// How long a service may take to report healthy before a test gives up.
const STARTUP: Duration = Duration::from_secs(60);
/// A bound for giving up on a request that never completes: a hang fails the test instead of
/// stalling the suite. Never a speed asserted.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The widths a client may ask for (CONTRACT section 5).
pub const SIZES: [u32; 6] = [160, 320, 640, 800, 1024, 1200];
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// An image service and the auth service it asks about tokens, stopped when dropped.
pub struct TestImage {
    /// The image service every helper talks to.
    pub image: ImageInstance,
    /// The real auth service the image service asks about tokens.
    pub auth: TestAuth,
    pub http: reqwest::Client,
    /// The configuration `image` was started with (`config.redis_url` is where the images are
    /// stored), to start further instances like it.
    pub config: image_service::Config,
    /// Deleted, with everything in it, when the test ends.
    pub vhost: Vhost,
    uploader: OnceCell<String>,
    /// Ids of the images this test created, deleted from Redis when it ends: the local Redis is
    /// shared by every test and every run.
    created: Mutex<Vec<uuid::Uuid>>,
}

impl Drop for TestImage {
    /// Blocking on purpose: the test's runtime may be gone by now, and Redis is local.
    fn drop(&mut self) {
        let created = std::mem::take(self.created.get_mut().unwrap_or_else(|e| e.into_inner()));
        if created.is_empty() {
            return;
        }
        let keys: Vec<String> = created.iter().map(|id| format!("image:{id}")).collect();
        if let Ok(client) = redis::Client::open(self.config.redis_url.as_str())
            && let Ok(mut redis) = client.get_connection_with_timeout(Duration::from_secs(1))
        {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut redis);
        }
    }
}

/// One running image service, stopped when dropped.
pub struct ImageInstance {
    pub base_url: String,
    pub running: image_service::Running,
    shutdown: CancellationToken,
}

impl Drop for ImageInstance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl ImageInstance {
    /// Starts the graceful shutdown; `running.server` ends once it is done.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// How many variants this instance has computed.
    pub fn resizes(&self) -> u64 {
        self.running.resizes()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The image service with the default limits, on the shared local Redis.
pub async fn spawn_image() -> TestImage {
    spawn_image_with(|_| {}).await
}

/// The image service with the configuration `configure` adjusts (limits, Redis URL, token TTL).
pub async fn spawn_image_with(configure: impl FnOnce(&mut image_service::Config)) -> TestImage {
    let vhost = Vhost::create().await;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client");

    let auth = TestAuth::start(&vhost).await;
    let auth_url = auth.url.clone();

    let mut config = image_service::Config {
        port: 0,
        http: common::server::HttpLimits::default(),
        redis_url: "redis://127.0.0.1:6379".into(),
        rabbit_url: vhost.amqp_url_as("image"),
        auth_service_url: auth_url.clone(),
        token_cache_ttl: Duration::from_secs(600),
        body_limit: 16 * 1024 * 1024,
        max_pixels: 40_000_000,
        workers: 2,
        upload_queue: 16,
        memory_cache_mb: 256,
    };
    configure(&mut config);
    let image = start_instance(&http, config.clone()).await;
    // Auth's own logout queue and image's.
    vhost.wait_for_fanout_queues("auth", 2).await;
    TestImage {
        image,
        auth,
        http,
        config,
        vhost,
        uploader: OnceCell::new(),
        created: Mutex::new(Vec::new()),
    }
}

async fn start_instance(http: &reqwest::Client, config: image_service::Config) -> ImageInstance {
    let shutdown = CancellationToken::new();
    let running = image_service::run(config, shutdown.clone())
        .await
        .expect("image starts");
    let base_url = format!("http://127.0.0.1:{}", running.addr.port());
    testkit::wait_healthy(http, &base_url, "image").await;
    ImageInstance {
        base_url,
        running,
        shutdown,
    }
}

pub use testkit::Reply;

impl TestImage {
    pub fn url(&self, path: &str) -> String {
        self.image.url(path)
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let reply = Reply::read(request.send().await.expect("the service answers")).await;
        if let Some(id) = created_image(&reply) {
            self.created.lock().unwrap().push(id);
        }
        reply
    }

    /// `GET path` on the image service with extra `headers`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.get_from(&self.image, path, headers).await
    }

    /// `GET path` on `instance` with extra `headers`.
    pub async fn get_from(
        &self,
        instance: &ImageInstance,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.get(instance.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// `POST path` with a JSON `body`.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(with_token(self.http.post(self.url(path)), token).json(body))
            .await
    }

    /// `POST /images/create` with `{"image": data_url}`.
    pub async fn upload(&self, token: Option<&str>, data_url: &str) -> Reply {
        self.post("/images/create", token, &json!({ "image": data_url }))
            .await
    }

    /// Uploads `bytes` declared as `mime` with the token of a plain user; returns the new id.
    pub async fn upload_image(&self, mime: &str, bytes: &[u8]) -> String {
        let token = self.uploader().await;
        self.upload(Some(&token), &data_url(mime, bytes)).await.id()
    }

    /// A token holding the `user` permission, the same for the whole test.
    pub async fn uploader(&self) -> String {
        self.uploader
            .get_or_init(|| self.signup("uploader01"))
            .await
            .clone()
    }

    /// Starts another image service with the same configuration (same Redis and auth).
    pub async fn start_instance(&self) -> ImageInstance {
        start_instance(&self.http, self.config.clone()).await
    }

    // --- auth -----------------------------------------------------------------------------------

    /// Signs up `login` at auth; the token holds the `user` permission.
    pub async fn signup(&self, login: &str) -> String {
        self.auth.signup(login).await
    }

    /// A token of a valid, enabled user who no longer holds `user`: an admin revoked it.
    pub async fn token_without_user_permission(&self) -> String {
        let admin = self.auth.admin("admin01").await;
        let token = self.auth.signup("visitor01").await;
        let id = self.auth.user_id(&token).await;
        self.auth.revoke(&admin, &id, &["user"]).await;
        token
    }

    /// Signs `token` out at auth, which revokes it and broadcasts the logout.
    pub async fn signout(&self, token: &str) {
        self.auth.signout(token).await
    }

    // --- Redis ----------------------------------------------------------------------------------

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.config.redis_url.as_str())
            .expect("a valid Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers")
    }

    /// Every field of the image's hash `image:<id>` (empty when there is none).
    pub async fn stored(&self, id: &str) -> HashMap<String, Vec<u8>> {
        let mut redis = self.redis().await;
        redis::cmd("HGETALL")
            .arg(format!("image:{id}"))
            .query_async(&mut redis)
            .await
            .expect("Redis answers")
    }
}

/// The id of the image a successful upload created: a 200 whose body is `{"id": <uuid>}`.
fn created_image(reply: &Reply) -> Option<uuid::Uuid> {
    if reply.status != StatusCode::OK {
        return None;
    }
    let body: Value = serde_json::from_slice(&reply.bytes).ok()?;
    let fields = body.as_object().filter(|fields| fields.len() == 1)?;
    uuid::Uuid::parse_str(fields.get("id")?.as_str()?).ok()
}

// --- data URLs and test images --------------------------------------------------------------------

pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", STANDARD.encode(bytes))
}

/// Splits a `data:<mime>;base64,<data>` URL into its mime type and decoded bytes.
pub fn parse_data_url(url: &str) -> (String, Vec<u8>) {
    let rest = url
        .strip_prefix("data:")
        .unwrap_or_else(|| panic!("a data URL: {url:.80}"));
    let (header, data) = rest.split_once(',').expect("a comma in the data URL");
    let mime = header.strip_suffix(";base64").expect("base64 data");
    let bytes = STANDARD.decode(data).expect("valid base64");
    (mime.to_owned(), bytes)
}

/// A colour that changes at every pixel, so that the files are not trivially small and every
/// truncation cuts into pixel data.
fn noise(x: u32, y: u32) -> [u8; 3] {
    let mut h = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    let [r, g, b, _] = h.to_le_bytes();
    [r, g, b]
}

/// A smooth gradient: photos compress like this, and it survives JPEG encoding recognisably.
fn gradient(x: u32, y: u32, width: u32, height: u32) -> Rgb<u8> {
    Rgb([
        (x * 255 / width.max(1)) as u8,
        (y * 255 / height.max(1)) as u8,
        128,
    ])
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("the image encodes");
    bytes
}

pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| gradient(x, y, width, height));
    encode(image.into(), ImageFormat::Jpeg)
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| gradient(x, y, width, height));
    encode(image.into(), ImageFormat::Png)
}

pub fn noisy_jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| Rgb(noise(x, y)));
    encode(image.into(), ImageFormat::Jpeg)
}

pub fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| Rgb(noise(x, y)));
    encode(image.into(), ImageFormat::Png)
}

/// An RGBA PNG whose pixels `pixel(x, y)` gives.
pub fn rgba_png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> Rgba<u8>) -> Vec<u8> {
    encode(
        RgbaImage::from_fn(width, height, pixel).into(),
        ImageFormat::Png,
    )
}

pub fn decode(bytes: &[u8], format: ImageFormat) -> DynamicImage {
    image::load_from_memory_with_format(bytes, format)
        .unwrap_or_else(|error| panic!("a valid {format:?} ({} bytes): {error}", bytes.len()))
}

/// `png` with its IHDR claiming `width` x `height` and a correct CRC: the header of a
/// decompression bomb, on a file that is otherwise small.
pub fn with_png_dimensions(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    // Signature (8), chunk length (4), "IHDR" (4), then width and height, 4 bytes each.
    assert_eq!(&png[12..16], b"IHDR", "IHDR comes first");
    let mut patched = png.to_vec();
    patched[16..20].copy_from_slice(&width.to_be_bytes());
    patched[20..24].copy_from_slice(&height.to_be_bytes());
    // The CRC covers the chunk type and its 13 data bytes.
    let crc = crc32(&patched[12..29]);
    patched[29..33].copy_from_slice(&crc.to_be_bytes());
    patched
}

/// The CRC-32 of PNG chunks (ISO 3309, reflected, polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

// --- a private Redis --------------------------------------------------------------------------------

/// A `redis-server` process of the test's own on a free port, killed when dropped: a test can stop
/// and restart it without disturbing the others.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("a valid Redis URL");
        let up = testkit::eventually(STARTUP, || async {
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok()
        })
        .await;
        assert!(up, "redis-server never answered on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
