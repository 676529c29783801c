//! Images are immutable (CONTRACT section 5): every GET carries a strong `ETag` and a year-long
//! immutable `Cache-Control`, and `If-None-Match` answers 304.

mod support;

use std::collections::HashSet;

use serde_json::json;
use support::{CACHE_CONTROL, Reply, TestImage, jpeg, png, spawn_image};

/// Every representation and size of image `id` a client can ask for, with how it asks.
fn representations(id: &str) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    vec![
        (format!("/images/{id}"), vec![]),
        (format!("/images/{id}?Size=160"), vec![]),
        (format!("/images/{id}?Size=320"), vec![]),
        (format!("/images/{id}"), vec![("Size", "640")]),
        (format!("/images/{id}/jpeg"), vec![]),
        (format!("/images/{id}/jpeg?Size=160"), vec![]),
        (format!("/images/{id}/jpeg?Size=320"), vec![]),
        (format!("/images/{id}/jpeg"), vec![("Size", "640")]),
    ]
}

/// The strong ETag of a 200, after checking the caching headers.
fn strong_etag(what: &str, reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{what}: {reply}");
    assert_eq!(
        reply.header("cache-control"),
        Some(CACHE_CONTROL),
        "{what}: {reply}"
    );
    let etag = reply
        .header("etag")
        .unwrap_or_else(|| panic!("{what}: an ETag: {reply}"));
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{what}: a strong ETag is a quoted string: {etag}"
    );
    etag.to_owned()
}

async fn etags(app: &TestImage, id: &str) -> Vec<String> {
    let mut etags = Vec::new();
    for (path, headers) in representations(id) {
        let reply = app.get(&path, &headers).await;
        etags.push(strong_etag(&format!("{path} {headers:?}"), &reply));
    }
    etags
}

#[tokio::test]
async fn every_get_has_a_strong_etag_and_immutable_cache_control() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(700, 500)).await;

    let first = etags(&app, &id).await;
    let again = etags(&app, &id).await;

    assert_eq!(first, again, "an ETag names the same bytes every time");
}

#[tokio::test]
async fn different_sizes_representations_and_images_have_different_etags() {
    let app = spawn_image().await;
    let png_id = app.upload_image("image/png", &png(700, 500)).await;
    let jpeg_id = app.upload_image("image/jpeg", &jpeg(700, 500)).await;

    let mut all = etags(&app, &png_id).await;
    all.extend(etags(&app, &jpeg_id).await);

    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "{all:#?}");
}

#[tokio::test]
async fn if_none_match_with_the_etag_is_304_without_a_body() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(700, 500)).await;

    for (path, headers) in representations(&id) {
        let etag = strong_etag(&path, &app.get(&path, &headers).await);
        let mut conditional: Vec<(&str, &str)> = headers.clone();
        conditional.push(("If-None-Match", &etag));

        let reply = app.get(&path, &conditional).await;

        assert_eq!(reply.status, 304, "{path} {conditional:?}: {reply}");
        assert!(reply.bytes.is_empty(), "{reply}");
        assert_eq!(reply.header("etag"), Some(etag.as_str()), "{reply}");
        assert_eq!(reply.header("cache-control"), Some(CACHE_CONTROL));
    }
}

#[tokio::test]
async fn if_none_match_with_another_etag_is_200() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(300, 200)).await;
    let original = app.get(&format!("/images/{id}"), &[]).await;
    let jpeg_etag = strong_etag("jpeg", &app.get(&format!("/images/{id}/jpeg"), &[]).await);

    for stale in [jpeg_etag.as_str(), "\"something-else\""] {
        let reply = app
            .get(&format!("/images/{id}"), &[("If-None-Match", stale)])
            .await;
        assert_eq!(reply.status, 200, "{stale}: {reply}");
        assert!(reply.bytes == original.bytes);
    }
}

#[tokio::test]
async fn if_none_match_any_on_an_unknown_id_is_still_404() {
    let app = spawn_image().await;
    let id = uuid::Uuid::new_v4();

    // RFC 9110 13.1.2: `*` matches only a resource that has a current representation.
    for path in [format!("/images/{id}"), format!("/images/{id}/jpeg")] {
        let reply = app.get(&path, &[("If-None-Match", "*")]).await;
        reply.assert_is(404, json!({"error": "Not found"}));
    }
}
