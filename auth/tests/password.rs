mod support;

use serde_json::{Value, json};
use support::{PASSWORD, TestAuth, spawn_auth};

const NEW_PASSWORD: &str = "a brand new password";

async fn change_password(app: &TestAuth, token: &str, body: Value) -> support::Reply {
    app.post("/users/password", Some(token), &body).await
}

#[tokio::test]
async fn a_password_change_replaces_the_password() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    let body = json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD});
    change_password(&app, &token, body)
        .await
        .assert_is(200, json!({}));

    app.signin("alice01", PASSWORD)
        .await
        .assert_is(401, json!({"error": "Invalid login or password"}));
    assert_eq!(app.signin("alice01", NEW_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_password_change_revokes_the_other_tokens_but_keeps_the_one_used() {
    let app = spawn_auth().await;
    let used = app.signup("alice01").await;
    let others = [
        app.new_token("alice01").await,
        app.new_token("alice01").await,
    ];

    let body = json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD});
    change_password(&app, &used, body)
        .await
        .assert_is(200, json!({}));

    assert_eq!(app.current(&used).await.status, 200);
    for other in &others {
        app.current(other)
            .await
            .assert_is(401, json!({"error": "Unauthorized"}));
    }
}

#[tokio::test]
async fn a_wrong_current_password_is_refused_on_current_password() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    let body = json!({"currentPassword": "not my password", "newPassword": NEW_PASSWORD});
    change_password(&app, &token, body)
        .await
        .assert_field_errors(&["currentPassword"]);

    assert_eq!(app.signin("alice01", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn an_invalid_or_missing_new_password_is_refused_on_new_password() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    for body in [
        json!({"currentPassword": PASSWORD, "newPassword": "short"}),
        json!({"currentPassword": PASSWORD, "newPassword": "p".repeat(129)}),
        json!({"currentPassword": PASSWORD}),
    ] {
        change_password(&app, &token, body)
            .await
            .assert_field_errors(&["newPassword"]);
    }
    assert_eq!(app.signin("alice01", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_missing_current_password_is_refused_on_current_password() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    let body = json!({"newPassword": NEW_PASSWORD});
    change_password(&app, &token, body)
        .await
        .assert_field_errors(&["currentPassword"]);
}
