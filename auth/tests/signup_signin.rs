mod support;

use futures_util::future::join_all;
use serde_json::{Value, json};
use support::{PASSWORD, spawn_auth, token_of};

async fn signup(app: &support::TestAuth, body: Value) -> support::Reply {
    app.post("/users/signup", None, &body).await
}

#[tokio::test]
async fn signup_returns_a_token_of_an_enabled_user_with_the_user_permission() {
    let app = spawn_auth().await;
    let body = json!({"name": "Alice", "login": "alice01", "password": PASSWORD});

    let reply = signup(&app, body).await;

    let token = token_of(&reply);
    reply.assert_is(200, json!({"token": token}));
    let current = app.current(&token).await;
    let id = current.body["id"].as_str().expect("an id").to_owned();
    current.assert_is(
        200,
        json!({"id": id, "name": "Alice", "login": "alice01",
               "permissions": ["user"], "enabled": true}),
    );
}

#[tokio::test]
async fn signup_succeeds_as_soon_as_health_reports_up() {
    // Ten services started together make the window between "healthy" and "ready" show up.
    let signups = join_all((0..10).map(|_| async {
        let app = spawn_auth().await;
        let body = json!({"name": "Test User", "login": "alice01", "password": PASSWORD});
        signup(&app, body).await
    }))
    .await;

    for reply in &signups {
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

#[tokio::test]
async fn signup_refuses_each_invalid_field_with_its_path() {
    let app = spawn_auth().await;
    let (long_name, long_login) = ("n".repeat(101), "a".repeat(101));
    let long_password = "p".repeat(129);
    let cases = [
        (
            json!({"name": "Alice", "login": "ali", "password": PASSWORD}),
            "login",
        ),
        (
            json!({"name": "Alice", "login": "ali ce01", "password": PASSWORD}),
            "login",
        ),
        (
            json!({"name": "Alice", "login": long_login, "password": PASSWORD}),
            "login",
        ),
        (
            json!({"name": "Alice", "login": "alice01", "password": "short"}),
            "password",
        ),
        (
            json!({"name": "Alice", "login": "alice01", "password": long_password}),
            "password",
        ),
        (
            json!({"name": "   ", "login": "alice01", "password": PASSWORD}),
            "name",
        ),
        (
            json!({"name": "", "login": "alice01", "password": PASSWORD}),
            "name",
        ),
        (
            json!({"name": long_name, "login": "alice01", "password": PASSWORD}),
            "name",
        ),
    ];
    for (body, path) in cases {
        signup(&app, body).await.assert_field_errors(&[path]);
    }
}

#[tokio::test]
async fn signup_with_missing_fields_names_every_missing_field() {
    let app = spawn_auth().await;

    signup(&app, json!({}))
        .await
        .assert_field_errors(&["name", "login", "password"]);
}

#[tokio::test]
async fn signup_refuses_a_permissions_field_and_creates_no_user() {
    let app = spawn_auth().await;
    let body = json!({"name": "Mallory", "login": "mallory", "password": PASSWORD,
                      "permissions": ["admin"]});

    let reply = signup(&app, body).await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply
            .body
            .get("error")
            .or(reply.body.get("messages"))
            .is_some()
    );
    app.signin("mallory", PASSWORD)
        .await
        .assert_is(401, json!({"error": "Invalid login or password"}));
}

#[tokio::test]
async fn signup_with_a_taken_login_is_a_conflict_on_login() {
    let app = spawn_auth().await;
    app.signup("alice01").await;

    let body = json!({"name": "Other", "login": "alice01", "password": "another password"});
    signup(&app, body).await.assert_is(
        409,
        json!({"messages": [{"path": "login", "message": "already exists"}]}),
    );
}

#[tokio::test]
async fn concurrent_signups_with_one_login_create_exactly_one_user() {
    let app = spawn_auth().await;
    let body = json!({"name": "Twin", "login": "twin01", "password": PASSWORD});

    let replies = join_all((0..10).map(|_| signup(&app, body.clone()))).await;

    let created = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(created, 1, "{replies:?}");
    for reply in replies.iter().filter(|reply| reply.status != 200) {
        reply.assert_is(
            409,
            json!({"messages": [{"path": "login", "message": "already exists"}]}),
        );
    }
}

#[tokio::test]
async fn signin_gives_a_new_valid_token_each_time() {
    let app = spawn_auth().await;
    let first = app.signup("alice01").await;

    let second = app.new_token("alice01").await;
    let third = app.new_token("alice01").await;

    assert_ne!(first, second);
    assert_ne!(second, third);
    assert_ne!(first, third);
    for token in [&first, &second, &third] {
        assert_eq!(app.current(token).await.status, 200);
    }
}

#[tokio::test]
async fn signin_with_an_unknown_login_or_a_wrong_password_answers_identically() {
    let app = spawn_auth().await;
    app.signup("alice01").await;

    let unknown = app.signin("nobody01", PASSWORD).await;
    let wrong = app.signin("alice01", "wrong password").await;

    unknown.assert_is(401, json!({"error": "Invalid login or password"}));
    wrong.assert_is(401, json!({"error": "Invalid login or password"}));
}

#[tokio::test]
async fn control_characters_are_refused_at_signup_and_unknown_at_signin() {
    let app = spawn_auth().await;

    let refused = signup(
        &app,
        json!({"name": "Al\u{0}ice", "login": "alice\u{0}01", "password": PASSWORD}),
    )
    .await;
    refused.assert_field_errors(&["name", "login"]);

    for login in ["alice\u{0}01", "\u{90}\u{0}abcdef", "al ice01"] {
        app.signin(login, PASSWORD)
            .await
            .assert_is(401, json!({"error": "Invalid login or password"}));
    }
}

#[tokio::test]
async fn a_disabled_user_with_the_right_password_is_told_it_is_disabled() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let user = app.signup("alice01").await;
    let id = app.user_id(&user).await;
    let disabled = app.admin_action(&admin, &id, "disable", &json!({})).await;
    disabled.assert_is(200, json!({}));

    app.signin("alice01", PASSWORD)
        .await
        .assert_is(403, json!({"error": "User disabled"}));
    app.signin("alice01", "wrong password")
        .await
        .assert_is(401, json!({"error": "Invalid login or password"}));
}

#[tokio::test]
async fn public_endpoints_ignore_an_empty_or_revoked_authorization_header() {
    let app = spawn_auth().await;
    let revoked = app.signup("alice01").await;
    app.get("/users/signout", Some(&revoked)).await;
    let body = json!({"login": "alice01", "password": PASSWORD});

    for authorization in [String::new(), format!("bearer {revoked}")] {
        let request = app
            .http
            .post(app.url("/users/signin"))
            .header("authorization", authorization)
            .json(&body);
        let reply = app.send(request).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        token_of(&reply);
    }
}
