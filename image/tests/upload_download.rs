//! Uploads and downloads (CONTRACT section 5): the original comes back byte for byte as a data URL,
//! `/jpeg` always answers JPEG, transparency is flattened onto white, and the service is healthy.

mod support;

use image::{GenericImageView, ImageFormat, Rgba};
use serde_json::json;
use support::{data_url, decode, jpeg, parse_data_url, png, rgba_png, spawn_image};

#[tokio::test]
async fn a_jpeg_uploaded_to_images_create_downloads_byte_for_byte() {
    let app = spawn_image().await;
    let token = app.uploader().await;
    let original = jpeg(300, 200);

    let id = app
        .post(
            "/images/create",
            Some(&token),
            &json!({"image": data_url("image/jpeg", &original)}),
        )
        .await
        .id();
    let reply = app.get(&format!("/images/{id}"), &[]).await;

    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(
        body.as_object().map(|fields| fields.len()),
        Some(2),
        "{body}"
    );
    assert_eq!(body["id"], id.as_str());
    let (mime, bytes) = parse_data_url(body["image"].as_str().expect("an image"));
    assert_eq!(mime, "image/jpeg");
    assert!(bytes == original, "the original JPEG changed");
}

#[tokio::test]
async fn a_png_uploaded_to_images_downloads_byte_for_byte() {
    let app = spawn_image().await;
    let token = app.uploader().await;
    let original = png(120, 80);

    let id = app
        .post(
            "/images",
            Some(&token),
            &json!({"image": data_url("image/png", &original)}),
        )
        .await
        .id();
    let reply = app.get(&format!("/images/{id}"), &[]).await;

    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["id"], id.as_str());
    let (mime, bytes) = parse_data_url(body["image"].as_str().expect("an image"));
    assert_eq!(mime, "image/png");
    assert!(bytes == original, "the original PNG changed");
}

#[tokio::test]
async fn a_jpeg_uploaded_to_images_and_a_png_to_images_create_are_both_accepted() {
    let app = spawn_image().await;
    let token = app.uploader().await;

    for (path, mime, bytes) in [
        ("/images", "image/jpeg", jpeg(40, 30)),
        ("/images/create", "image/png", png(40, 30)),
    ] {
        let id = app
            .post(
                path,
                Some(&token),
                &json!({"image": data_url(mime, &bytes)}),
            )
            .await
            .id();
        let reply = app.get(&format!("/images/{id}"), &[]).await;
        let (served_mime, served) = parse_data_url(reply.json()["image"].as_str().unwrap());
        assert_eq!((path, served_mime.as_str()), (path, mime));
        assert!(served == bytes, "{path}: the original changed");
    }
}

#[tokio::test]
async fn an_upload_is_stored_as_one_redis_hash_under_image_id() {
    let app = spawn_image().await;
    let original = png(64, 48);

    let id = app.upload_image("image/png", &original).await;

    let stored = app.stored(&id).await;
    assert_eq!(
        stored.get("mime").map(Vec::as_slice),
        Some(&b"image/png"[..])
    );
    assert_eq!(stored.get("width").map(Vec::as_slice), Some(&b"64"[..]));
    assert!(
        stored.get("original") == Some(&original),
        "the original bytes are stored as uploaded"
    );
}

#[tokio::test]
async fn jpeg_download_of_a_jpeg_original_is_a_jpeg_of_the_same_size() {
    let app = spawn_image().await;
    let id = app.upload_image("image/jpeg", &jpeg(300, 200)).await;

    let reply = app.get(&format!("/images/{id}/jpeg"), &[]).await;

    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.header("content-type"), Some("image/jpeg"));
    let served = decode(&reply.bytes, ImageFormat::Jpeg);
    assert_eq!(served.dimensions(), (300, 200));
}

#[tokio::test]
async fn jpeg_download_of_a_png_original_converts_it_to_jpeg() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(120, 80)).await;

    let reply = app.get(&format!("/images/{id}/jpeg"), &[]).await;

    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        image::guess_format(&reply.bytes).ok(),
        Some(ImageFormat::Jpeg),
        "{reply}"
    );
    let served = decode(&reply.bytes, ImageFormat::Jpeg);
    assert_eq!(served.dimensions(), (120, 80));
}

#[tokio::test]
async fn png_transparency_is_flattened_onto_white_in_the_jpeg() {
    let app = spawn_image().await;
    // Left half opaque red, right half fully transparent (black underneath, which must not show).
    let original = rgba_png(64, 64, |x, _| {
        if x < 32 {
            Rgba([220, 20, 20, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let id = app.upload_image("image/png", &original).await;

    let reply = app.get(&format!("/images/{id}/jpeg"), &[]).await;

    assert_eq!(reply.status, 200, "{reply}");
    let flat = decode(&reply.bytes, ImageFormat::Jpeg).into_rgb8();
    let [r, g, b] = flat.get_pixel(48, 32).0;
    assert!(
        r > 245 && g > 245 && b > 245,
        "transparent is white: {r} {g} {b}"
    );
    let [r, g, b] = flat.get_pixel(16, 32).0;
    assert!(r > 190 && g < 60 && b < 60, "opaque stays red: {r} {g} {b}");
}

#[tokio::test]
async fn health_is_up_with_redis_and_rabbitmq_up() {
    let app = spawn_image().await;

    let reply = app.get("/health", &[]).await;

    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "up", "{body}");
    assert_eq!(body["dependencies"]["redis"], "up", "{body}");
    assert_eq!(body["dependencies"]["rabbitmq"], "up", "{body}");
}
