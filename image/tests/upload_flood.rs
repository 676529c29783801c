//! A flood of uploads against the real image service binary, in a process of its own so that its
//! memory can be read alone: past its workers and their queue, uploads are answered 503 with
//! `Retry-After` before their bodies are read, nothing answers another 5xx, and the service's peak
//! memory stays within the bound the queue sets (image/README.md, "Bounded work").

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use support::{data_url, noisy_png, spawn_image};

/// Uploads sent at once: far more than the one worker and two places of the queue.
const FLOOD: usize = 40;
/// The service's peak memory may exceed its memory before the flood by this much. The queue
/// holds at most 3 uploads (each about 4 MiB of body, 4 MiB of parsed text, 3 MiB decoded from
/// base64, 3 MiB of pixels), and the refused ones leave at most hyper's read buffer each; without
/// the queue, the 40 bodies alone would take over 300 MiB.
const PEAK_GROWTH_BOUND_MB: u64 = 100;

/// The image binary, started with `env`, killed when dropped.
struct ImageProcess {
    child: Child,
    base_url: String,
}

impl ImageProcess {
    async fn start(env: &[(&str, String)]) -> Self {
        let port = testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_image"))
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the image binary starts");
        let base_url = format!("http://127.0.0.1:{port}");
        // A client of its own, so that no pooled connection outlives the check.
        testkit::wait_healthy(&reqwest::Client::new(), &base_url, "image").await;
        Self { child, base_url }
    }

    /// `VmRSS` or `VmHWM` (the peak) of the process, in MiB.
    fn memory_mb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process runs");
        let line = status
            .lines()
            .find(|line| line.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|kb| kb.parse().ok())
            .expect("a size in kB");
        kb / 1024
    }
}

impl Drop for ImageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one upload of the flood got: a status with its `Retry-After` and body, or no answer at
/// all (the connection closed under a refused upload still sending its body).
#[derive(Debug)]
enum Outcome {
    Answered(StatusCode, Option<String>, Value),
    Unanswered(String),
}

#[tokio::test]
async fn a_flood_of_uploads_past_the_queue_is_shed_with_503_and_bounded_memory() {
    let app = spawn_image().await;
    let token = app.uploader().await;
    let service = ImageProcess::start(&[
        ("REDIS_URL", app.config.redis_url.clone()),
        ("RABBIT_URL", app.config.rabbit_url.clone()),
        ("AUTH_SERVICE_URL", app.config.auth_service_url.clone()),
        (
            "RABBIT_QUEUE_TYPE",
            std::env::var("RABBIT_QUEUE_TYPE").unwrap_or_else(|_| "classic".into()),
        ),
        ("IMAGE_WORKERS", "1".into()),
        ("IMAGE_UPLOAD_QUEUE", "2".into()),
    ])
    .await;
    let url = format!("{}/images/create", service.base_url);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // One body shared by every request (a `Bytes` clone is not a copy), so the test's own memory
    // does not grow with the flood.
    let upload = serde_json::json!({"image": data_url("image/png", &noisy_png(1000, 1000))});
    let body = Bytes::from(upload.to_string());
    let send = || {
        http.post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    // A first upload: the token is cached and the service has done the work once.
    let first = send().await.expect("answered");
    assert_eq!(first.status(), StatusCode::OK);
    let mut stored = vec![first.json::<Value>().await.unwrap()["id"].clone()];
    let before = service.memory_mb("VmRSS:");

    let flood = (0..FLOOD).map(|_| async {
        match send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Outcome::Answered(status, retry_after, body)
            }
            Err(error) => Outcome::Unanswered(error.to_string()),
        }
    });
    let outcomes = futures_util::future::join_all(flood).await;
    let peak = service.memory_mb("VmHWM:");
    eprintln!(
        "image service memory: {before} MiB before the flood, peak {peak} MiB, {outcomes:?}",
        outcomes = outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Answered(status, ..) => status.as_u16().to_string(),
                Outcome::Unanswered(error) => format!("unanswered ({error})"),
            })
            .collect::<Vec<_>>()
    );

    let (mut accepted, mut shed) = (0, 0);
    for outcome in &outcomes {
        match outcome {
            Outcome::Answered(StatusCode::OK, _, body) => {
                accepted += 1;
                stored.push(body["id"].clone());
            }
            Outcome::Answered(StatusCode::SERVICE_UNAVAILABLE, retry_after, body) => {
                shed += 1;
                assert_eq!(retry_after.as_deref(), Some("2"), "{body}");
                assert_eq!(body, &serde_json::json!({"error": "Service unavailable"}));
            }
            Outcome::Answered(status, _, body) => panic!("{status}: {body}"),
            Outcome::Unanswered(_) => {}
        }
    }
    assert!(accepted >= 1, "{outcomes:?}");
    assert!(shed >= 1, "{outcomes:?}");
    assert!(
        peak.saturating_sub(before) < PEAK_GROWTH_BOUND_MB,
        "peak {peak} MiB after {before} MiB before the flood"
    );
    let after = send().await.expect("answered");
    assert_eq!(
        after.status(),
        StatusCode::OK,
        "the service still takes uploads"
    );
    stored.push(after.json::<Value>().await.unwrap()["id"].clone());

    let keys: Vec<String> = stored
        .iter()
        .filter_map(Value::as_str)
        .map(|id| format!("image:{id}"))
        .collect();
    let mut redis = app.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
}
