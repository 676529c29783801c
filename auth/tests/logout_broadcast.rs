//! The broadcast on the `auth` fanout (CONTRACT section 9): other services evict exactly these
//! token strings from their caches (`logout`, revoked tokens only), or every token of a user
//! (`user_changed`, whose message is the user's id: live tokens never cross the bus).

mod support;

use mongodb::bson::{Document, doc};
use rabbit::contract::service;
use serde_json::json;
use support::{PASSWORD, spawn_auth};

#[tokio::test]
async fn signout_broadcasts_the_token() {
    let app = spawn_auth().await;
    let logouts = app.listen_for_logouts().await;
    let token = app.signup("alice01").await;

    app.get("/users/signout", Some(&token))
        .await
        .assert_is(200, json!({}));

    assert!(
        logouts.eventually_contain(&[&token]).await,
        "{:?}",
        logouts.received()
    );
}

#[tokio::test]
async fn a_password_change_broadcasts_the_other_tokens() {
    let app = spawn_auth().await;
    let logouts = app.listen_for_logouts().await;
    let used = app.signup("alice01").await;
    let (second, third) = (
        app.new_token("alice01").await,
        app.new_token("alice01").await,
    );

    let body = json!({"currentPassword": PASSWORD, "newPassword": "a brand new password"});
    app.post("/users/password", Some(&used), &body)
        .await
        .assert_is(200, json!({}));

    assert!(
        logouts.eventually_contain(&[&second, &third]).await,
        "{:?}",
        logouts.received()
    );
    assert!(
        !logouts.received().contains(&used),
        "the token in use stays valid"
    );
}

#[tokio::test]
async fn disable_broadcasts_every_token_of_the_user() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let logouts = app.listen_for_logouts().await;
    let first = app.signup("alice01").await;
    let second = app.new_token("alice01").await;
    let id = app.user_id(&first).await;

    let reply = app.admin_action(&admin, &id, "disable", &json!({})).await;

    reply.assert_is(200, json!({}));
    assert!(
        logouts.eventually_contain(&[&first, &second]).await,
        "{:?}",
        logouts.received()
    );
}

#[tokio::test]
async fn a_grant_broadcasts_the_user_and_none_of_its_live_tokens() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let logouts = app.listen_for_logouts().await;
    let token = app.signup("alice01").await;
    let second = app.new_token("alice01").await;
    let id = app.user_id(&token).await;

    let body = json!({"permissions": ["editor"]});
    let reply = app.admin_action(&admin, &id, "grant", &body).await;

    reply.assert_is(200, json!({}));
    assert!(
        logouts.eventually_announce(&id).await,
        "{:?}",
        logouts.received()
    );
    let received = logouts.received();
    assert!(
        !received.iter().any(|got| got == &token || got == &second),
        "a live token was broadcast: {received:?}"
    );
}

#[tokio::test]
async fn an_enable_broadcasts_the_user() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let token = app.signup("alice01").await;
    let id = app.user_id(&token).await;
    app.admin_action(&admin, &id, "disable", &json!({}))
        .await
        .assert_is(200, json!({}));
    let logouts = app.listen_for_logouts().await;

    let reply = app.admin_action(&admin, &id, "enable", &json!({})).await;

    reply.assert_is(200, json!({}));
    assert!(
        logouts.eventually_announce(&id).await,
        "{:?}",
        logouts.received()
    );
}

#[tokio::test]
async fn a_revoke_broadcasts_the_user_and_none_of_its_live_tokens() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let token = app.signup("alice01").await;
    let id = app.user_id(&token).await;
    let body = json!({"permissions": ["editor"]});
    app.admin_action(&admin, &id, "grant", &body)
        .await
        .assert_is(200, json!({}));
    let logouts = app.listen_for_logouts().await;

    let reply = app.admin_action(&admin, &id, "revoke", &body).await;

    reply.assert_is(200, json!({}));
    assert!(
        logouts.eventually_announce(&id).await,
        "{:?}",
        logouts.received()
    );
    assert!(
        !logouts.received().contains(&token),
        "a live token was broadcast"
    );
}

#[tokio::test]
async fn a_signout_while_rabbitmq_refuses_the_broadcast_is_broadcast_once_it_accepts_it() {
    let app = spawn_auth().await;
    let logouts = app.listen_for_logouts().await;
    let token = app.signup("alice01").await;
    // Only the server-named queues stay writable: publishes to the auth fanout are refused.
    app.vhost
        .set_write_permission(service::AUTH, Some("^amq\\.gen.*"))
        .await;

    app.get("/users/signout", Some(&token))
        .await
        .assert_is(200, json!({}));
    app.get("/users/current", Some(&token))
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
    assert!(
        !logouts.received().contains(&token),
        "the broker refused it"
    );

    app.vhost.set_write_permission(service::AUTH, None).await;
    let delivered = testkit::eventually(std::time::Duration::from_secs(30), || async {
        logouts.received().contains(&token)
    })
    .await;
    assert!(delivered, "the sweeper sends it once the broker accepts it");
}

#[tokio::test]
async fn a_revoked_token_is_deleted_and_its_outbox_entry_once_the_broadcast_is_confirmed() {
    let app = spawn_auth().await;
    let logouts = app.listen_for_logouts().await;
    let token = app.signup("alice01").await;
    let kept = app.new_token("alice01").await;
    let tokens = app.db.collection::<Document>("tokens");
    let outbox = app.db.collection::<Document>("logouts");
    assert_eq!(tokens.count_documents(doc! {}).await.unwrap(), 2);

    app.get("/users/signout", Some(&token))
        .await
        .assert_is(200, json!({}));

    assert_eq!(tokens.count_documents(doc! {}).await.unwrap(), 1);
    assert!(logouts.eventually_contain(&[&token]).await);
    let sent = testkit::eventually(std::time::Duration::from_secs(10), || async {
        outbox.count_documents(doc! {}).await.unwrap() == 0
    })
    .await;
    assert!(sent, "the outbox keeps only what is still owed");
    app.get("/users/current", Some(&token))
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
    assert_eq!(app.get("/users/current", Some(&kept)).await.status, 200);
}
