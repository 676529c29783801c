//! Which image a GET names (CONTRACT section 5): ids are UUIDs, anything else is 404 and never
//! reaches a Redis key outside `image:`; `Size` is one of the listed widths or 400 with path `Size`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::json;
use support::{RedisServer, png, spawn_image, spawn_image_with};

/// Commands that name no key.
const KEYLESS: [&str; 8] = [
    "PING", "ECHO", "CLIENT", "HELLO", "SELECT", "INFO", "AUTH", "COMMAND",
];

#[tokio::test]
async fn an_unknown_id_is_404_on_both_endpoints() {
    let app = spawn_image().await;
    let id = uuid::Uuid::new_v4();

    for path in [
        format!("/images/{id}"),
        format!("/images/{id}/jpeg"),
        format!("/images/{id}?Size=320"),
        format!("/images/{id}/jpeg?Size=160"),
    ] {
        let reply = app.get(&path, &[]).await;
        reply.assert_is(404, json!({"error": "Not found"}));
    }
}

/// The arguments of a `MONITOR` line: `<time> [<db> <client>] "CMD" "key" ...`.
fn arguments(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

#[tokio::test]
async fn a_malformed_id_is_404_and_reads_no_key_outside_the_image_key_space() {
    let redis_server = RedisServer::start().await;
    let app = spawn_image_with(|config| config.redis_url = redis_server.url()).await;
    // What a service building keys from the raw path would find: a complete image hash, both
    // outside the image key space and under `image:` with a name that is no UUID.
    let mut redis = app.redis().await;
    let planted = png(8, 8);
    for key in ["secret", "image:secret", "image:../secret"] {
        let fields: [(&str, &[u8]); 3] = [
            ("mime", b"image/png"),
            ("width", b"8"),
            ("original", &planted),
        ];
        let () = redis.hset_multiple(key, &fields).await.unwrap();
    }
    // Every command the server runs from now on, the service's included.
    let client = redis::Client::open(redis_server.url()).unwrap();
    let mut monitor = client
        .get_async_monitor()
        .await
        .unwrap()
        .into_on_message::<String>();
    let commands = Arc::new(Mutex::new(Vec::new()));
    let sink = commands.clone();
    let monitoring = tokio::spawn(async move {
        while let Some(line) = monitor.next().await {
            sink.lock().unwrap().push(line);
        }
    });

    for path in [
        "/images/secret",
        "/images/secret/jpeg",
        "/images/secret?Size=320",
        "/images/image:secret",
        "/images/image%3Asecret/jpeg",
        "/images/..%2Fsecret",
        "/images/..%2F..%2Fsecret/jpeg",
        "/images/%2e%2e%2fsecret",
        "/images/*",
        "/images/not-a-uuid",
        "/images/00000000-0000-4000-8000-00000000000",
    ] {
        let reply = app.get(path, &[]).await;
        reply.assert_is(404, json!({"error": "Not found"}));
    }
    // A well-formed unknown id reaches Redis, so the monitor is seen to capture the service.
    let unknown = uuid::Uuid::new_v4();
    app.get(&format!("/images/{unknown}"), &[])
        .await
        .assert_is(404, json!({"error": "Not found"}));

    let marker = testkit::unique_name("end_of_test");
    let _: String = redis::cmd("ECHO")
        .arg(&marker)
        .query_async(&mut redis)
        .await
        .unwrap();
    let complete = testkit::eventually(Duration::from_secs(5), || async {
        commands
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(&marker))
    })
    .await;
    monitoring.abort();
    let commands = commands.lock().unwrap().clone();
    assert!(complete, "the monitor never saw the marker: {commands:#?}");
    assert!(
        commands
            .iter()
            .any(|line| line.contains(&format!("\"image:{unknown}\""))),
        "the service's lookup of {unknown} was monitored: {commands:#?}"
    );
    for line in &commands {
        assert!(!line.contains("secret"), "read a planted key: {line}");
        let arguments = arguments(line);
        let command = arguments.first().copied().unwrap_or_default();
        if !KEYLESS.contains(&command.to_ascii_uppercase().as_str()) {
            let key = arguments.get(1).copied().unwrap_or_default();
            assert!(key.starts_with("image:"), "a key outside image: {line}");
        }
    }
}

#[tokio::test]
async fn an_invalid_size_is_400_with_path_size() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(400, 300)).await;

    for size in [
        "333",
        "abc",
        "-1",
        "0",
        "320.0",
        "1201",
        "99999999999999999999",
        "",
    ] {
        for path in [format!("/images/{id}"), format!("/images/{id}/jpeg")] {
            let by_query = app.get(&format!("{path}?Size={size}"), &[]).await;
            assert_eq!(by_query.status, 400, "{path}?Size={size}: {by_query}");
            by_query.assert_field_errors(&["Size"]);
            let by_header = app.get(&path, &[("Size", size)]).await;
            assert_eq!(by_header.status, 400, "{path} Size: {size}: {by_header}");
            by_header.assert_field_errors(&["Size"]);
        }
    }
    assert_eq!(app.image.resizes(), 0);
}
