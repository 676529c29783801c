mod support;

use serde_json::{Value, json};
use support::{PASSWORD, Reply, TestAuth, spawn_auth};

const ACTIONS: [&str; 4] = ["enable", "disable", "grant", "revoke"];

fn editor() -> Value {
    json!({"permissions": ["editor"]})
}

/// An admin's token, and the token and id of a plain user `alice01`.
async fn admin_and_user(app: &TestAuth) -> (String, String, String) {
    let admin = app.admin().await;
    let user = app.signup("alice01").await;
    let id = app.user_id(&user).await;
    (admin, user, id)
}

/// Every admin endpoint called on user `id` with `token` (`None`: without a token).
async fn call_every_admin_endpoint(app: &TestAuth, token: Option<&str>, id: &str) -> Vec<Reply> {
    let mut replies = vec![app.get("/users/all", token).await];
    for action in ACTIONS {
        let path = format!("/users/{id}/{action}");
        replies.push(app.post(&path, token, &editor()).await);
    }
    replies
}

async fn permissions(app: &TestAuth, token: &str) -> Value {
    app.current(token).await.body["permissions"].clone()
}

#[tokio::test]
async fn all_users_lists_every_user_without_passwords() {
    let app = spawn_auth().await;
    let (admin, _, id) = admin_and_user(&app).await;
    let admin_id = app.user_id(&admin).await;

    let reply = app.get("/users/all", Some(&admin)).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let mut users = reply.body.as_array().expect("an array").clone();
    users.sort_by_key(|user| user["login"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        users,
        [
            json!({"id": admin_id, "name": "Test User", "login": "admin01",
                   "permissions": ["user", "admin"], "enabled": true}),
            json!({"id": id, "name": "Test User", "login": "alice01",
                   "permissions": ["user"], "enabled": true}),
        ]
    );
}

#[tokio::test]
async fn disable_revokes_the_users_tokens_and_blocks_signin() {
    let app = spawn_auth().await;
    let (admin, user, id) = admin_and_user(&app).await;

    let reply = app.admin_action(&admin, &id, "disable", &json!({})).await;

    reply.assert_is(200, json!({}));
    app.current(&user)
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
    app.signin("alice01", PASSWORD)
        .await
        .assert_is(403, json!({"error": "User disabled"}));
    let listed = app.get("/users/all", Some(&admin)).await.body;
    let alice = listed.as_array().unwrap().iter().find(|u| u["id"] == id);
    assert_eq!(alice.expect("alice listed")["enabled"], false);
}

#[tokio::test]
async fn enable_lets_a_disabled_user_sign_in_again() {
    let app = spawn_auth().await;
    let (admin, _, id) = admin_and_user(&app).await;
    app.admin_action(&admin, &id, "disable", &json!({}))
        .await
        .assert_is(200, json!({}));

    let reply = app.admin_action(&admin, &id, "enable", &json!({})).await;

    reply.assert_is(200, json!({}));
    let token = app.new_token("alice01").await;
    assert_eq!(app.current(&token).await.body["enabled"], true);
}

#[tokio::test]
async fn an_admin_cannot_disable_itself() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let admin_id = app.user_id(&admin).await;

    let reply = app
        .admin_action(&admin, &admin_id, "disable", &json!({}))
        .await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body["error"].is_string(), "{reply:?}");
    assert_eq!(app.current(&admin).await.body["enabled"], true);
}

#[tokio::test]
async fn an_admin_cannot_revoke_its_own_admin_permission_but_another_admins() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let admin_id = app.user_id(&admin).await;
    let other = app.signup("alice01").await;
    let other_id = app.user_id(&other).await;
    app.admin_action(
        &admin,
        &other_id,
        "grant",
        &json!({"permissions": ["admin"]}),
    )
    .await
    .assert_is(200, json!({}));

    let own = json!({"permissions": ["editor", "admin"]});
    app.admin_action(&admin, &admin_id, "revoke", &own)
        .await
        .assert_is(
            400,
            json!({"error": "An admin cannot revoke its own admin permission"}),
        );
    assert_eq!(permissions(&app, &admin).await, json!(["user", "admin"]));

    let theirs = json!({"permissions": ["admin"]});
    app.admin_action(&admin, &other_id, "revoke", &theirs)
        .await
        .assert_is(200, json!({}));
    assert_eq!(permissions(&app, &other).await, json!(["user"]));
}

#[tokio::test]
async fn grant_trims_the_permissions_and_they_show_in_current() {
    let app = spawn_auth().await;
    let (admin, user, id) = admin_and_user(&app).await;

    let body = json!({"permissions": ["  editor ", "user"]});
    let reply = app.admin_action(&admin, &id, "grant", &body).await;

    reply.assert_is(200, json!({}));
    assert_eq!(permissions(&app, &user).await, json!(["user", "editor"]));
}

#[tokio::test]
async fn grant_takes_back_the_user_json_it_read_but_not_another_users() {
    let app = spawn_auth().await;
    let (admin, user, id) = admin_and_user(&app).await;
    let mut read = app.current(&user).await.body;
    assert_eq!(read["id"], json!(id));
    read["permissions"] = json!(["user", "editor"]);

    app.admin_action(&admin, &id, "grant", &read)
        .await
        .assert_is(200, json!({}));
    assert_eq!(permissions(&app, &user).await, json!(["user", "editor"]));

    let admin_id = app.current(&admin).await.body["id"].clone();
    read["id"] = admin_id;
    read["permissions"] = json!(["auditor"]);
    app.admin_action(&admin, &id, "grant", &read)
        .await
        .assert_field_errors(&["id"]);
    assert_eq!(permissions(&app, &user).await, json!(["user", "editor"]));
}

#[tokio::test]
async fn revoke_removes_a_granted_permission() {
    let app = spawn_auth().await;
    let (admin, user, id) = admin_and_user(&app).await;
    app.admin_action(&admin, &id, "grant", &editor())
        .await
        .assert_is(200, json!({}));

    let reply = app.admin_action(&admin, &id, "revoke", &editor()).await;

    reply.assert_is(200, json!({}));
    assert_eq!(permissions(&app, &user).await, json!(["user"]));
}

#[tokio::test]
async fn grant_and_revoke_refuse_empty_or_blank_permissions() {
    let app = spawn_auth().await;
    let (admin, user, id) = admin_and_user(&app).await;

    for action in ["grant", "revoke"] {
        for body in [
            json!({"permissions": [""]}),
            json!({"permissions": ["   "]}),
            json!({"permissions": ["editor", " "]}),
            json!({"permissions": []}),
            json!({}),
        ] {
            let reply = app.admin_action(&admin, &id, action, &body).await;
            reply.assert_field_errors(&["permissions"]);
        }
    }
    assert_eq!(permissions(&app, &user).await, json!(["user"]));
}

#[tokio::test]
async fn a_user_without_the_admin_permission_is_forbidden_every_admin_endpoint() {
    let app = spawn_auth().await;
    let (_, user, id) = admin_and_user(&app).await;

    for reply in call_every_admin_endpoint(&app, Some(&user), &id).await {
        reply.assert_is(403, json!({"error": "Forbidden"}));
    }
    assert_eq!(permissions(&app, &user).await, json!(["user"]));
}

#[tokio::test]
async fn every_admin_endpoint_needs_a_token() {
    let app = spawn_auth().await;
    let (_, _, id) = admin_and_user(&app).await;

    for reply in call_every_admin_endpoint(&app, None, &id).await {
        reply.assert_is(401, json!({"error": "Unauthorized"}));
    }
}

#[tokio::test]
async fn an_unknown_or_malformed_user_id_is_not_found() {
    let app = spawn_auth().await;
    let admin = app.admin().await;

    for id in ["0123456789abcdef01234567", "not-an-id"] {
        for action in ACTIONS {
            let reply = app.admin_action(&admin, id, action, &editor()).await;
            reply.assert_is(404, json!({"error": "Not found"}));
        }
    }
}
