//! Refused uploads (CONTRACT sections 2 and 5): anything but a complete JPEG or PNG of the declared
//! type within the limits is answered 400 with path `image` (413 past the body limit), never a
//! crash or a stall, and nothing is stored.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use redis::AsyncCommands;
use serde_json::json;
use support::{
    RedisServer, TestImage, data_url, jpeg, noisy_jpeg, noisy_png, png, spawn_image,
    spawn_image_with, with_png_dimensions,
};

/// Uploads `image` (as the `image` field) with a valid token and asserts 400 with path `image`.
async fn assert_refused(app: &TestImage, what: &str, image: &str) {
    let token = app.uploader().await;
    let reply = app.upload(Some(&token), image).await;
    assert_eq!(reply.status, 400, "{what}: {reply}");
    reply.assert_field_errors(&["image"]);
}

#[tokio::test]
async fn an_image_that_is_not_a_data_url_is_refused() {
    let app = spawn_image().await;
    let base64 = STANDARD.encode(png(8, 8));

    for (what, image) in [
        ("bare base64", base64.clone()),
        ("plain text", "hello".to_owned()),
        ("empty", String::new()),
        ("no base64 marker", format!("data:image/png,{base64}")),
        (
            "not an image type",
            format!("data:text/plain;base64,{base64}"),
        ),
        (
            "unsupported type",
            format!("data:image/gif;base64,{base64}"),
        ),
        ("no comma", format!("data:image/png;base64{base64}")),
    ] {
        assert_refused(&app, what, &image).await;
    }
}

#[tokio::test]
async fn an_image_that_is_not_base64_is_refused() {
    let app = spawn_image().await;

    for data in ["***", "not base64 at all!", "iVBORw0KGgo=extra"] {
        assert_refused(&app, data, &format!("data:image/png;base64,{data}")).await;
    }
}

#[tokio::test]
async fn png_bytes_declared_as_jpeg_are_refused() {
    let app = spawn_image().await;

    assert_refused(&app, "png as jpeg", &data_url("image/jpeg", &png(16, 16))).await;
    assert_refused(&app, "jpeg as png", &data_url("image/png", &jpeg(16, 16))).await;
}

#[tokio::test]
async fn random_bytes_are_refused() {
    let app = spawn_image().await;
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    assert_refused(&app, "random as jpeg", &data_url("image/jpeg", &random)).await;
    assert_refused(&app, "random as png", &data_url("image/png", &random)).await;
    assert_refused(&app, "no bytes", &data_url("image/png", &[])).await;
}

#[tokio::test]
async fn a_truncated_jpeg_is_refused() {
    let app = spawn_image().await;
    let whole = noisy_jpeg(128, 128);

    for cut in [whole.len() / 2, whole.len() * 9 / 10, whole.len() - 2] {
        let truncated = &whole[..cut];
        assert_refused(
            &app,
            &format!("{cut} of {} bytes", whole.len()),
            &data_url("image/jpeg", truncated),
        )
        .await;
    }
}

#[tokio::test]
async fn a_truncated_png_is_refused() {
    let app = spawn_image().await;
    let whole = noisy_png(128, 128);

    for cut in [40, whole.len() / 2, whole.len() * 9 / 10, whole.len() - 12] {
        let truncated = &whole[..cut];
        assert_refused(
            &app,
            &format!("{cut} of {} bytes", whole.len()),
            &data_url("image/png", truncated),
        )
        .await;
    }
}

#[tokio::test]
async fn a_png_cut_inside_its_final_chunk_is_refused() {
    let app = spawn_image().await;
    let whole = noisy_png(128, 128);

    // The last 12 bytes are the IEND chunk: length, type, CRC. Cutting into it leaves every pixel
    // but still a truncated file, as a JPEG without its end marker is.
    for cut in [1, 4, 8] {
        let truncated = &whole[..whole.len() - cut];
        assert_refused(
            &app,
            &format!("{} of {} bytes", truncated.len(), whole.len()),
            &data_url("image/png", truncated),
        )
        .await;
    }
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_from_its_header() {
    let app = spawn_image().await;
    // 50000 x 50000 = 2.5 gigapixels announced by a file of a few hundred bytes: decoding it would
    // take 10 GB. The request has the suite's 30 s timeout, so a stall fails the test.
    let bomb = with_png_dimensions(&png(16, 16), 50_000, 50_000);

    assert_refused(&app, "bomb", &data_url("image/png", &bomb)).await;

    // Still serving.
    app.upload_image("image/png", &png(16, 16)).await;
}

#[tokio::test]
async fn an_image_with_more_pixels_than_the_configured_limit_is_refused() {
    let app = spawn_image_with(|config| config.max_pixels = 10_000).await;

    app.upload_image("image/png", &png(100, 100)).await;
    app.upload_image("image/jpeg", &jpeg(100, 100)).await;
    assert_refused(&app, "png 101x100", &data_url("image/png", &png(101, 100))).await;
    assert_refused(
        &app,
        "jpeg 100x101",
        &data_url("image/jpeg", &jpeg(100, 101)),
    )
    .await;
}

#[tokio::test]
async fn a_body_larger_than_the_configured_limit_is_413() {
    let app = spawn_image_with(|config| config.body_limit = 4096).await;
    let token = app.uploader().await;
    let small = data_url("image/png", &png(8, 8));
    let large = data_url("image/png", &noisy_png(64, 64));
    assert!(small.len() < 4000 && large.len() > 8192);

    app.upload(Some(&token), &small).await.id();
    let reply = app.upload(Some(&token), &large).await;

    assert_eq!(reply.status, 413, "{reply}");
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{reply}"
    );
}

#[tokio::test]
async fn an_upload_without_the_image_field_is_refused_with_path_image() {
    let app = spawn_image().await;
    let token = app.uploader().await;

    for body in [json!({}), json!({"image": null}), json!({"picture": "x"})] {
        let reply = app.post("/images/create", Some(&token), &body).await;
        reply.assert_field_errors(&["image"]);
    }
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_image().await;
    let token = app.uploader().await;

    for body in ["{", "not json", "[1, 2", r#"{"image": 5}"#] {
        let request = app
            .http
            .post(app.url("/images/create"))
            .header("authorization", format!("bearer {token}"))
            .header("content-type", "application/json")
            .body(body);
        let reply = app.send(request).await;
        assert_eq!(reply.status, 400, "{body}: {reply}");
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.starts_with("Invalid JSON"), "{body}: {reply}");
    }
}

#[tokio::test]
async fn a_refused_upload_stores_nothing() {
    let redis_server = RedisServer::start().await;
    let app = spawn_image_with(|config| config.redis_url = redis_server.url()).await;
    let truncated = noisy_png(64, 64);

    assert_refused(
        &app,
        "truncated",
        &data_url("image/png", &truncated[..truncated.len() / 2]),
    )
    .await;
    assert_refused(&app, "png as jpeg", &data_url("image/jpeg", &png(8, 8))).await;

    let mut redis = app.redis().await;
    let keys: Vec<String> = redis.keys("*").await.unwrap();
    assert_eq!(keys, Vec::<String>::new());
    let id = app.upload_image("image/png", &png(8, 8)).await;
    let keys: Vec<String> = redis.keys("*").await.unwrap();
    assert_eq!(keys, [format!("image:{id}")]);
}
