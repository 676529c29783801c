//! Uploads need a token with the `user` permission, checked at the real auth service (CONTRACT
//! sections 3 and 5); a signed-out token is refused at once through the logout broadcast, not
//! after the cache TTL. Downloads are public.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{data_url, png, spawn_image, spawn_image_with};

/// How long the logout broadcast may take to arrive; a bound for giving up, never a speed asserted.
const DELIVERY: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_upload_without_a_token_is_401() {
    let app = spawn_image().await;
    let image = json!({"image": data_url("image/png", &png(8, 8))});

    for path in ["/images/create", "/images"] {
        app.post(path, None, &image)
            .await
            .assert_is(401, json!({"error": "Unauthorized"}));
    }
}

#[tokio::test]
async fn an_upload_with_a_malformed_or_unknown_token_is_401() {
    let app = spawn_image().await;
    let image = json!({"image": data_url("image/png", &png(8, 8))});
    let token = app.uploader().await;

    for authorization in [
        format!("Basic {token}"),
        token.clone(),
        "bearer ".to_owned(),
        "bearer not-a-token".to_owned(),
        format!("bearer {token}x"),
    ] {
        let request = app
            .http
            .post(app.url("/images/create"))
            .header("authorization", &authorization)
            .json(&image);
        app.send(request)
            .await
            .assert_is(401, json!({"error": "Unauthorized"}));
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_image().await;
    let image = json!({"image": data_url("image/png", &png(8, 8))});
    let token = app.uploader().await;

    for scheme in ["bearer", "Bearer", "BEARER"] {
        let request = app
            .http
            .post(app.url("/images/create"))
            .header("authorization", format!("{scheme} {token}"))
            .json(&image);
        app.send(request).await.id();
    }
}

#[tokio::test]
async fn an_upload_with_a_token_without_the_user_permission_is_403() {
    let app = spawn_image().await;
    let token = app.token_without_user_permission().await;

    let reply = app
        .upload(Some(&token), &data_url("image/png", &png(8, 8)))
        .await;

    reply.assert_is(403, json!({"error": "Forbidden"}));
}

#[tokio::test]
async fn downloads_need_no_token_and_ignore_a_bad_one() {
    let app = spawn_image().await;
    let id = app.upload_image("image/png", &png(8, 8)).await;

    for authorization in [None, Some("bearer not-a-token"), Some("")] {
        for path in [format!("/images/{id}"), format!("/images/{id}/jpeg")] {
            let mut request = app.http.get(app.url(&path));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            let reply = app.send(request).await;
            assert_eq!(reply.status, 200, "{path} {authorization:?}: {reply}");
        }
    }
}

#[tokio::test]
async fn a_signed_out_token_is_refused_at_once_not_after_the_cache_ttl() {
    // A TTL far beyond the test: only the logout broadcast can make image forget the token.
    let app = spawn_image_with(|config| config.token_cache_ttl = Duration::from_secs(600)).await;
    let token = app.signup("alice01").await;
    let image = data_url("image/png", &png(8, 8));
    app.upload(Some(&token), &image).await.id();

    app.signout(&token).await;

    let refused = testkit::eventually(DELIVERY, || async {
        app.upload(Some(&token), &image).await.status == 401
    })
    .await;
    assert!(refused, "the signed-out token was still accepted");
    app.upload(Some(&token), &image)
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
}
