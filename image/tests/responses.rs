//! What a 200 of a download is made of: the body, built once and then served from memory, with
//! `Content-Length`, `Content-Type`, a strong `ETag` and `Cache-Control` on every one.

mod support;

use support::{CACHE_CONTROL, Reply, TestImage, noisy_jpeg, png, spawn_image};

/// Every body of image `id` a client can ask for, with the content type it comes as.
fn downloads(id: &str) -> [(String, &'static str); 4] {
    [
        (format!("/images/{id}"), "application/json"),
        (format!("/images/{id}?Size=320"), "application/json"),
        (format!("/images/{id}/jpeg"), "image/jpeg"),
        (format!("/images/{id}/jpeg?Size=320"), "image/jpeg"),
    ]
}

/// A photo-sized JPEG (noise does not compress: about half a megabyte) and a small PNG.
async fn upload_both(app: &TestImage) -> [String; 2] {
    [
        app.upload_image("image/jpeg", &noisy_jpeg(800, 600)).await,
        app.upload_image("image/png", &png(400, 300)).await,
    ]
}

fn assert_complete_200(what: &str, reply: &Reply, content_type: &str) {
    assert_eq!(reply.status, 200, "{what}: {reply}");
    assert_eq!(
        reply.header("content-length"),
        Some(reply.bytes.len().to_string().as_str()),
        "{what}: Content-Length is the body's length"
    );
    assert_eq!(reply.header("content-type"), Some(content_type), "{what}");
    assert!(reply.header("etag").is_some(), "{what}: {reply}");
    assert_eq!(reply.header("cache-control"), Some(CACHE_CONTROL), "{what}");
}

#[tokio::test]
async fn every_download_declares_its_length_type_etag_and_cache_control() {
    let app = spawn_image().await;

    for id in upload_both(&app).await {
        for (path, content_type) in downloads(&id) {
            // The first answer is built, the second comes from memory: both are complete.
            for attempt in ["first", "second"] {
                let reply = app.get(&path, &[]).await;
                assert_complete_200(&format!("{attempt} GET {path}"), &reply, content_type);
            }
        }
    }
}

#[tokio::test]
async fn a_second_download_is_byte_for_byte_the_first() {
    let app = spawn_image().await;

    for id in upload_both(&app).await {
        for (path, _) in downloads(&id) {
            let first = app.get(&path, &[]).await;
            let second = app.get(&path, &[]).await;

            assert_eq!(first.status, 200, "{path}: {first}");
            assert!(second.bytes == first.bytes, "{path}: the same bytes");
            assert_eq!(second.header("etag"), first.header("etag"), "{path}");
        }
    }
}

#[tokio::test]
async fn the_json_document_is_id_then_image() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(40, 30)).await;

    for (path, mime) in [
        (format!("/images/{id}"), "image/png"),
        (format!("/images/{id}?Size=160"), "image/jpeg"),
    ] {
        let reply = app.get(&path, &[]).await;

        let prefix = format!(r#"{{"id":"{id}","image":"data:{mime};base64,"#);
        assert!(
            reply.bytes.starts_with(prefix.as_bytes()),
            "{path}: {reply}"
        );
        assert!(reply.bytes.ends_with(br#""}"#), "{path}: {reply}");
    }
}

#[tokio::test]
async fn a_body_once_built_is_served_from_memory_without_redis() {
    let app = spawn_image().await;
    let [jpeg_id, png_id] = upload_both(&app).await;
    let mut first = Vec::new();
    for id in [&jpeg_id, &png_id] {
        for (path, _) in downloads(id) {
            first.push((path.clone(), app.get(&path, &[]).await));
        }
    }

    // Images are never deleted; taking them out of Redis shows where the answers come from.
    let mut redis = app.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("image:{jpeg_id}"))
        .arg(format!("image:{png_id}"))
        .query_async(&mut redis)
        .await
        .expect("Redis answers");

    for (path, first) in first {
        let again = app.get(&path, &[]).await;
        assert_eq!(again.status, 200, "{path}: {again}");
        assert!(again.bytes == first.bytes, "{path}: the same bytes");
    }
}
