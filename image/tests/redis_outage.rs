//! Redis going away and coming back (CONTRACT section 2): while it is down, requests that need it
//! answer 503 promptly instead of hanging; once it is back the service works again without a
//! restart.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{RedisServer, data_url, png, spawn_image_with};

/// How long the service may take to reconnect; a bound for giving up, never a speed asserted.
const RECOVERY: Duration = Duration::from_secs(20);

#[tokio::test]
async fn requests_are_503_while_redis_is_down_and_succeed_again_once_it_is_back() {
    let mut redis_server = RedisServer::start().await;
    let app = spawn_image_with(|config| config.redis_url = redis_server.url()).await;
    let token = app.uploader().await;
    let image = data_url("image/png", &png(400, 300));
    let id = app.upload(Some(&token), &image).await.id();
    assert_eq!(app.get(&format!("/images/{id}"), &[]).await.status, 200);

    redis_server.kill();

    // Every request completes (the client gives up after 30 s, failing the test) with a 503.
    app.upload(Some(&token), &image)
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    app.get(&format!("/images/{id}/jpeg?Size=160"), &[])
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    app.get(&format!("/images/{}", uuid::Uuid::new_v4()), &[])
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    let health = app.get("/health", &[]).await;
    assert_eq!(health.status, 503, "{health}");
    assert_eq!(health.json()["dependencies"]["redis"], "down", "{health}");

    redis_server.restart().await;

    let recovered = testkit::eventually(RECOVERY, || async {
        app.upload(Some(&token), &image).await.status == 200
    })
    .await;
    assert!(
        recovered,
        "uploads never succeeded again after Redis came back"
    );
    let id = app.upload(Some(&token), &image).await.id();
    let reply = app.get(&format!("/images/{id}/jpeg?Size=160"), &[]).await;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(app.get("/health", &[]).await.status, 200);
}
