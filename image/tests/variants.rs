//! Resized variants (CONTRACT section 5): every `Size`, from the query or the header, on both
//! download endpoints; aspect ratio kept, never upscaled; computed once, stored in Redis and served
//! from there afterwards, even under concurrent first requests.

mod support;

use futures_util::future::join_all;
use image::{DynamicImage, GenericImageView, ImageFormat};
use support::{Reply, SIZES, TestImage, decode, jpeg, parse_data_url, png, spawn_image};

/// The image a download answered: the JPEG bytes of `/jpeg`, or the data URL of the JSON document
/// (a JPEG whenever a `Size` is asked for).
fn served_image(reply: &Reply, jpeg_endpoint: bool) -> DynamicImage {
    assert_eq!(reply.status, 200, "{reply}");
    if jpeg_endpoint {
        assert_eq!(reply.header("content-type"), Some("image/jpeg"), "{reply}");
        decode(&reply.bytes, ImageFormat::Jpeg)
    } else {
        let (mime, bytes) = parse_data_url(reply.json()["image"].as_str().expect("an image"));
        assert_eq!(mime, "image/jpeg", "a resized variant is a JPEG");
        decode(&bytes, ImageFormat::Jpeg)
    }
}

/// Every way to ask for `size`: query and header, on the JSON and the JPEG endpoint.
async fn every_way_to_ask(app: &TestImage, id: &str, size: u32) -> Vec<(String, DynamicImage)> {
    let size_text = size.to_string();
    let mut images = Vec::new();
    for jpeg_endpoint in [false, true] {
        let path = if jpeg_endpoint {
            format!("/images/{id}/jpeg")
        } else {
            format!("/images/{id}")
        };
        let by_query = app.get(&format!("{path}?Size={size}"), &[]).await;
        images.push((
            format!("{path}?Size={size}"),
            served_image(&by_query, jpeg_endpoint),
        ));
        let by_header = app.get(&path, &[("Size", &size_text)]).await;
        images.push((
            format!("{path} with Size: {size}"),
            served_image(&by_header, jpeg_endpoint),
        ));
    }
    images
}

/// `height` is `original_height * width / original_width`, give or take rounding.
fn assert_aspect_ratio_kept(what: &str, (width, height): (u32, u32), original: (u32, u32)) {
    let exact = f64::from(original.1) * f64::from(width) / f64::from(original.0);
    assert!(
        (f64::from(height) - exact).abs() <= 1.0,
        "{what}: {width}x{height} from {}x{}",
        original.0,
        original.1
    );
}

#[tokio::test]
async fn every_size_scales_a_jpeg_to_that_width_by_query_and_by_header_on_both_endpoints() {
    let app = spawn_image().await;
    let original = (1500, 1000);
    let id = app
        .upload_image("image/jpeg", &jpeg(original.0, original.1))
        .await;

    for size in SIZES {
        for (what, image) in every_way_to_ask(&app, &id, size).await {
            assert_eq!(image.width(), size, "{what}");
            assert_aspect_ratio_kept(&what, image.dimensions(), original);
        }
    }
}

#[tokio::test]
async fn every_size_scales_a_png_to_that_width_keeping_its_aspect_ratio() {
    let app = spawn_image().await;
    let original = (1250, 700);
    let id = app
        .upload_image("image/png", &png(original.0, original.1))
        .await;

    for size in SIZES {
        for (what, image) in every_way_to_ask(&app, &id, size).await {
            assert_eq!(image.width(), size, "{what}");
            assert_aspect_ratio_kept(&what, image.dimensions(), original);
        }
    }
}

#[tokio::test]
async fn a_size_wider_than_the_original_is_never_upscaled() {
    let app = spawn_image().await;
    let jpeg_id = app.upload_image("image/jpeg", &jpeg(300, 200)).await;
    let png_id = app.upload_image("image/png", &png(300, 200)).await;

    for id in [&jpeg_id, &png_id] {
        for size in SIZES.into_iter().filter(|&size| size > 300) {
            for (what, image) in every_way_to_ask(&app, id, size).await {
                assert_eq!(image.dimensions(), (300, 200), "{what}");
            }
        }
        for (what, image) in every_way_to_ask(&app, id, 160).await {
            assert_eq!(image.width(), 160, "{what}");
            assert_aspect_ratio_kept(&what, image.dimensions(), (300, 200));
        }
    }
}

#[tokio::test]
async fn sizes_not_narrower_than_a_png_share_its_one_full_size_conversion() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(300, 200)).await;

    let full_size = app.get(&format!("/images/{id}/jpeg"), &[]).await;
    for size in SIZES.into_iter().filter(|&size| size >= 300) {
        let reply = app
            .get(&format!("/images/{id}/jpeg?Size={size}"), &[])
            .await;
        assert!(reply.bytes == full_size.bytes, "Size={size}: {reply}");
    }

    assert_eq!(app.image.resizes(), 1, "converted once, at full size");
    assert!(app.stored(&id).await.get("jpeg") == Some(&full_size.bytes));
}

#[tokio::test]
async fn a_variant_is_computed_once_then_served_from_the_cache() {
    let app = spawn_image().await;
    let id = app.upload_image("image/jpeg", &jpeg(1000, 600)).await;
    assert!(!app.stored(&id).await.contains_key("w320"));

    let first = app.get(&format!("/images/{id}/jpeg?Size=320"), &[]).await;

    assert_eq!(first.status, 200, "{first}");
    assert_eq!(app.image.resizes(), 1);
    let stored = app.stored(&id).await;
    assert!(
        stored.get("w320") == Some(&first.bytes),
        "the variant is stored in the image's hash as w320"
    );

    for _ in 0..3 {
        let again = app.get(&format!("/images/{id}/jpeg?Size=320"), &[]).await;
        assert!(again.bytes == first.bytes, "the same bytes every time");
        app.get(&format!("/images/{id}/jpeg"), &[("Size", "320")])
            .await;
        let json = app.get(&format!("/images/{id}?Size=320"), &[]).await;
        let (_, bytes) = parse_data_url(json.json()["image"].as_str().unwrap());
        assert!(bytes == first.bytes, "JSON and JPEG serve one variant");
    }
    assert_eq!(app.image.resizes(), 1, "served from the cache afterwards");
}

#[tokio::test]
async fn a_stored_variant_is_served_from_redis_by_another_instance_without_resizing() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(900, 600)).await;
    let computed = app.get(&format!("/images/{id}/jpeg?Size=640"), &[]).await;
    assert_eq!(computed.status, 200, "{computed}");
    assert_eq!(app.image.resizes(), 1);

    let other = app.start_instance().await;
    let served = app
        .get_from(&other, &format!("/images/{id}/jpeg?Size=640"), &[])
        .await;

    assert_eq!(served.status, 200, "{served}");
    assert!(served.bytes == computed.bytes, "the stored variant");
    assert_eq!(other.resizes(), 0, "read from Redis, not computed again");
}

#[tokio::test]
async fn concurrent_first_requests_for_one_variant_resize_once() {
    let app = spawn_image().await;
    let id = app.upload_image("image/jpeg", &jpeg(1600, 1200)).await;
    let path = format!("/images/{id}/jpeg?Size=320");

    let replies = join_all((0..20).map(|_| app.get(&path, &[]))).await;

    for reply in &replies {
        assert_eq!(reply.status, 200, "{reply}");
        assert!(reply.bytes == replies[0].bytes, "one variant for all");
    }
    assert_eq!(app.image.resizes(), 1);
    assert!(app.stored(&id).await.get("w320") == Some(&replies[0].bytes));
}
