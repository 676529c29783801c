mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mongodb::bson::doc;
use serde_json::{Value, json};
use support::{SECRET, TestAuth, spawn_auth};

fn assert_refused(reply: &support::Reply) {
    reply.assert_is(401, json!({"error": "Unauthorized"}));
}

/// The `[header, payload, signature]` parts of a JWT.
fn parts(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    parts.try_into().expect("three dot-separated parts")
}

fn claims(token: &str) -> Value {
    let payload = URL_SAFE_NO_PAD.decode(parts(token)[1]).expect("base64url");
    serde_json::from_slice(&payload).expect("JSON claims")
}

fn sign(algorithm: Algorithm, claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(algorithm), claims, &key).expect("encodable claims")
}

fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A signed-up user's token and its claims.
async fn user_token(app: &TestAuth) -> (String, Value) {
    let token = app.signup("alice01").await;
    let claims = claims(&token);
    (token, claims)
}

#[tokio::test]
async fn current_returns_the_user_each_token_belongs_to() {
    let app = spawn_auth().await;
    let alice = app.signup("alice01").await;
    let bob = app.signup("bob0001").await;

    for (token, login) in [(&alice, "alice01"), (&bob, "bob0001")] {
        let reply = app.current(token).await;
        let id = claims(token)["userID"].clone();
        reply.assert_is(
            200,
            json!({"id": id, "name": "Test User", "login": login,
                   "permissions": ["user"], "enabled": true}),
        );
    }
}

#[tokio::test]
async fn a_request_without_a_token_is_unauthorized() {
    let app = spawn_auth().await;

    assert_refused(&app.get("/users/current", None).await);
    assert_refused(&app.get("/users/signout", None).await);
    let body = json!({"currentPassword": "whatever1", "newPassword": "whatever2"});
    assert_refused(&app.post("/users/password", None, &body).await);
}

#[tokio::test]
async fn signout_by_get_revokes_the_token() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    app.get("/users/signout", Some(&token))
        .await
        .assert_is(200, json!({}));

    assert_refused(&app.current(&token).await);
}

#[tokio::test]
async fn signout_by_post_revokes_the_token_and_only_that_one() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;
    let other = app.new_token("alice01").await;

    app.post("/users/signout", Some(&token), &json!({}))
        .await
        .assert_is(200, json!({}));

    assert_refused(&app.current(&token).await);
    assert_refused(&app.get("/users/signout", Some(&token)).await);
    assert_eq!(app.current(&other).await.status, 200);
}

#[tokio::test]
async fn a_token_resigned_with_hs256_and_the_right_secret_is_accepted() {
    // The control for the forgeries below: the tests build tokens the way auth does.
    let app = spawn_auth().await;
    let (_, claims) = user_token(&app).await;

    let reply = app.current(&sign(Algorithm::HS256, &claims, SECRET)).await;

    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn a_token_with_alg_none_is_refused() {
    let app = spawn_auth().await;
    let (token, _) = user_token(&app).await;
    let header = encode_json(&json!({"alg": "none", "typ": "JWT"}));

    for signature in ["", parts(&token)[2]] {
        let forged = format!("{header}.{}.{signature}", parts(&token)[1]);
        assert_refused(&app.current(&forged).await);
    }
}

#[tokio::test]
async fn a_token_signed_with_hs512_or_hs384_and_the_right_secret_is_refused() {
    let app = spawn_auth().await;
    let (_, claims) = user_token(&app).await;

    for algorithm in [Algorithm::HS512, Algorithm::HS384] {
        assert_refused(&app.current(&sign(algorithm, &claims, SECRET)).await);
    }
}

#[tokio::test]
async fn a_token_signed_with_a_wrong_secret_is_refused() {
    let app = spawn_auth().await;
    let (_, claims) = user_token(&app).await;
    let wrong = "another-secret-that-is-also-32-bytes-long!";

    assert_refused(&app.current(&sign(Algorithm::HS256, &claims, wrong)).await);
}

#[tokio::test]
async fn a_token_with_edited_claims_and_the_original_signature_is_refused() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let (token, mut edited) = user_token(&app).await;
    edited["userID"] = claims(&admin)["userID"].clone();
    let [header, _, signature] = parts(&token);

    let forged = format!("{header}.{}.{signature}", encode_json(&edited));

    assert_refused(&app.current(&forged).await);
}

#[tokio::test]
async fn a_token_of_a_disabled_user_is_refused_even_if_the_token_was_not_revoked() {
    let app = spawn_auth().await;
    let (token, _) = user_token(&app).await;
    // Only the user's flag, as an operator would set it in mongosh: the token itself stays enabled.
    app.update_user("alice01", doc! {"$set": {"enabled": false}})
        .await;

    assert_refused(&app.current(&token).await);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    for scheme in ["bearer", "Bearer", "BEARER"] {
        let request = app
            .http
            .get(app.url("/users/current"))
            .header("authorization", format!("{scheme} {token}"));
        let reply = app.send(request).await;
        assert_eq!(reply.status, 200, "{scheme}: {reply:?}");
    }
}

#[tokio::test]
async fn a_malformed_authorization_header_is_unauthorized() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    for authorization in [
        token.clone(),
        format!("Basic {token}"),
        "bearer ".into(),
        "bearer not.a.jwt".into(),
    ] {
        let request = app
            .http
            .get(app.url("/users/current"))
            .header("authorization", authorization);
        assert_refused(&app.send(request).await);
    }
}
