//! The HTTP server's bounds (`common::server`), on the real image service, whose upload bodies are
//! the largest of the system: a client trickling its request head or its body is cut off, the
//! connections past the cap wait for a free one, normal requests are not disturbed, and graceful
//! shutdown ends while slow clients are still connected. Raw sockets play the slow clients.

mod support;

use std::time::Duration;

use common::server::HttpLimits;
use support::{png, spawn_image, spawn_image_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A bound for giving up on a connection the server should have closed: a failure instead of a
/// stalled suite. Never a speed asserted.
const PATIENCE: Duration = Duration::from_secs(30);

fn limits(header_timeout: Duration, body_timeout: Duration) -> HttpLimits {
    HttpLimits {
        header_timeout,
        body_timeout,
        ..HttpLimits::default()
    }
}

async fn connect(base_url: &str) -> (OwnedReadHalf, OwnedWriteHalf) {
    let addr = base_url.trim_start_matches("http://");
    TcpStream::connect(addr)
        .await
        .expect("the service accepts connections")
        .into_split()
}

/// Sends `start`, then one byte of `drip` every 200 ms until the server closes the connection:
/// a client that never completes what it sends.
fn trickle(mut write: OwnedWriteHalf, start: Vec<u8>, drip: u8) -> JoinHandle<()> {
    tokio::spawn(async move {
        if write.write_all(&start).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(&[drip]).await.is_err() {
                return;
            }
        }
    })
}

/// What the server sends until it closes the connection; `None` when it is still open after
/// `PATIENCE`.
async fn read_until_closed(read: &mut OwnedReadHalf) -> Option<String> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0u8; 4096];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(count) => received.extend_from_slice(&buffer[..count]),
            }
        }
    };
    let closed = tokio::time::timeout(PATIENCE, reading).await.is_ok();
    closed.then(|| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_client_trickling_its_request_line_is_cut_off() {
    let app = spawn_image_with(|config| {
        config.http = limits(Duration::from_secs(1), Duration::from_secs(30));
    })
    .await;
    let (mut read, write) = connect(&app.image.base_url).await;

    // The request line never ends: its path grows by a byte every 200 ms.
    let trickler = trickle(write, b"GET /images/".to_vec(), b'a');
    let closed = read_until_closed(&mut read).await;
    trickler.abort();

    assert!(closed.is_some(), "still connected after {PATIENCE:?}");
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_cut_off() {
    let app = spawn_image_with(|config| {
        config.http = limits(Duration::from_secs(1), Duration::from_secs(30));
    })
    .await;
    let (mut read, _write) = connect(&app.image.base_url).await;

    assert!(read_until_closed(&mut read).await.is_some());
}

#[tokio::test]
async fn a_body_trickled_past_the_body_timeout_is_answered_408_and_cut_off() {
    let app = spawn_image_with(|config| {
        config.http = limits(Duration::from_secs(10), Duration::from_secs(1));
    })
    .await;
    let token = app.uploader().await;
    let (mut read, write) = connect(&app.image.base_url).await;
    let head = format!(
        "POST /images/create HTTP/1.1\r\nHost: image\r\nAuthorization: bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n\
         {{\"image\":\"data:image/png;base64,"
    );

    let trickler = trickle(write, head.into_bytes(), b'A');
    let answer = read_until_closed(&mut read).await;
    trickler.abort();

    let answer = answer.expect("the connection is closed");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.ends_with(r#"{"error":"Request timeout"}"#),
        "{answer}"
    );
}

#[tokio::test]
async fn requests_within_the_timeouts_are_served_on_kept_alive_connections() {
    let app = spawn_image_with(|config| {
        config.http = limits(Duration::from_secs(2), Duration::from_secs(2));
    })
    .await;

    let id = app.upload_image("image/png", &png(64, 48)).await;
    for _ in 0..3 {
        let reply = app.get(&format!("/images/{id}/jpeg?Size=160"), &[]).await;
        assert_eq!(reply.status, 200, "{reply}");
    }
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = spawn_image().await;
    let mut config = app.config.clone();
    // Long enough that the held connections are not cut off while the test looks.
    config.http = HttpLimits {
        max_connections: 2,
        header_timeout: PATIENCE * 2,
        ..HttpLimits::default()
    };
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let running = image_service::run(config, shutdown).await.expect("starts");
    let base_url = format!("http://127.0.0.1:{}", running.addr.port());
    let first = connect(&base_url).await;
    let _second = connect(&base_url).await;

    let (mut read, mut write) = connect(&base_url).await;
    let request = "GET /health HTTP/1.1\r\nHost: image\r\nConnection: close\r\n\r\n";
    write.write_all(request.as_bytes()).await.unwrap();
    let early = tokio::time::timeout(Duration::from_secs(1), read.read(&mut [0u8; 1])).await;
    assert!(early.is_err(), "a third connection was served past the cap");
    drop(first);

    let answer = read_until_closed(&mut read)
        .await
        .expect("served, then closed");
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
}

#[tokio::test]
async fn graceful_shutdown_ends_while_slow_clients_are_connected() {
    let mut app = spawn_image_with(|config| {
        config.http = limits(Duration::from_secs(2), Duration::from_secs(2));
    })
    .await;
    let token = app.uploader().await;
    let (_silent_read, _silent_write) = connect(&app.image.base_url).await;
    let (_head_read, head_write) = connect(&app.image.base_url).await;
    let head_trickler = trickle(head_write, b"GET /images/".to_vec(), b'a');
    let (_body_read, body_write) = connect(&app.image.base_url).await;
    let upload = format!(
        "POST /images/create HTTP/1.1\r\nHost: image\r\nAuthorization: bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"image\":\""
    );
    let body_trickler = trickle(body_write, upload.into_bytes(), b'A');
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.image.stop();
    let ended = tokio::time::timeout(PATIENCE, &mut app.image.running.server).await;
    head_trickler.abort();
    body_trickler.abort();

    assert!(
        ended.is_ok(),
        "the server still runs {PATIENCE:?} after shutdown"
    );
    let addr = app.image.base_url.trim_start_matches("http://");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopped server no longer listens"
    );
}
