//! `GET /users/current` answers from memory: the instance that makes a change answers it at once,
//! the others once the logout broadcast reaches them, and a request with `Cache-Control: no-cache`
//! reads the store. Everything that writes or decides reads the store.

mod support;

use std::time::Duration;

use mongodb::bson::doc;
use rabbit::contract::service;
use serde_json::{Value, json};
use support::{PASSWORD, TestAuth, spawn_auth, spawn_auth_with_ttl};

/// How long a withheld broadcast may take once released: the sweeper re-sends every 5 s.
const SWEPT: Duration = Duration::from_secs(30);

async fn permissions_at(app: &TestAuth, base_url: &str, token: &str) -> Value {
    let reply = app.current_at(base_url, token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["permissions"].clone()
}

/// Caches `token`'s answer on every instance.
async fn cache_everywhere(app: &TestAuth, instances: &[&str], token: &str) {
    for instance in instances {
        assert_eq!(app.current_at(instance, token).await.status, 200);
    }
}

/// Refuses publishes to the `auth` fanout (only the server-named queues stay writable): a change
/// then reaches no other instance until [`release_broadcasts`], so what the instance that made
/// it answers comes from its own eviction alone.
async fn withhold_broadcasts(app: &TestAuth) {
    app.vhost
        .set_write_permission(service::AUTH, Some("^amq\\.gen.*"))
        .await;
}

/// Lets the sweeper (every 5 s) send what was withheld.
async fn release_broadcasts(app: &TestAuth) {
    app.vhost.set_write_permission(service::AUTH, None).await;
}

/// Whether `/users/current` at `base_url` comes to answer `status` for `token` once the sweeper
/// has sent a withheld broadcast; a bound for giving up, never a speed asserted.
async fn eventually_swept(app: &TestAuth, base_url: &str, token: &str, status: u16) -> bool {
    testkit::eventually(SWEPT, || async {
        app.current_at(base_url, token).await.status == status
    })
    .await
}

#[tokio::test]
async fn a_signed_out_token_is_refused_on_every_instance_once_the_broadcast_arrives() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let token = app.signup("alice01").await;
    cache_everywhere(
        &app,
        &[app.base_url.as_str(), other.base_url.as_str()],
        &token,
    )
    .await;

    app.get("/users/signout", Some(&token))
        .await
        .assert_is(200, json!({}));

    app.current(&token)
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
    assert!(
        app.eventually_current_at(&other.base_url, &token, 401)
            .await,
        "the other instance still answers from memory"
    );
}

#[tokio::test]
async fn a_signout_is_refused_at_once_where_it_happened_and_elsewhere_only_after_the_broadcast() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let token = app.signup("alice01").await;
    cache_everywhere(
        &app,
        &[app.base_url.as_str(), other.base_url.as_str()],
        &token,
    )
    .await;
    withhold_broadcasts(&app).await;

    app.get("/users/signout", Some(&token))
        .await
        .assert_is(200, json!({}));

    app.current(&token)
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
    let elsewhere = app.current_at(&other.base_url, &token).await;
    assert_eq!(elsewhere.status, 200, "answered from memory: {elsewhere:?}");
    release_broadcasts(&app).await;
    assert!(eventually_swept(&app, &other.base_url, &token, 401).await);
}

#[tokio::test]
async fn a_grant_shows_at_once_where_it_was_made_and_elsewhere_once_broadcast() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let admin = app.admin().await;
    let alice = app.signup("alice01").await;
    let id = app.user_id(&alice).await;
    cache_everywhere(
        &app,
        &[app.base_url.as_str(), other.base_url.as_str()],
        &alice,
    )
    .await;
    withhold_broadcasts(&app).await;

    let body = json!({"permissions": ["admin"]});
    app.admin_action(&admin, &id, "grant", &body)
        .await
        .assert_is(200, json!({}));

    let granted = json!(["user", "admin"]);
    assert_eq!(permissions_at(&app, &app.base_url, &alice).await, granted);
    assert_eq!(
        permissions_at(&app, &other.base_url, &alice).await,
        json!(["user"]),
        "answered from memory until the broadcast arrives"
    );
    release_broadcasts(&app).await;
    let shown = testkit::eventually(SWEPT, || async {
        permissions_at(&app, &other.base_url, &alice).await == granted
    })
    .await;
    assert!(shown, "the other instance still answers from memory");
}

#[tokio::test]
async fn a_disabled_users_token_is_refused_at_once_where_it_was_disabled_and_elsewhere_once_broadcast()
 {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let admin = app.admin().await;
    let alice = app.signup("alice01").await;
    let id = app.user_id(&alice).await;
    cache_everywhere(
        &app,
        &[app.base_url.as_str(), other.base_url.as_str()],
        &alice,
    )
    .await;
    withhold_broadcasts(&app).await;

    app.admin_action(&admin, &id, "disable", &json!({}))
        .await
        .assert_is(200, json!({}));

    app.current(&alice)
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
    let elsewhere = app.current_at(&other.base_url, &alice).await;
    assert_eq!(elsewhere.status, 200, "answered from memory: {elsewhere:?}");
    let signin = json!({"login": "alice01", "password": PASSWORD});
    for instance in [&app.base_url, &other.base_url] {
        app.post_at(instance, "/users/signin", None, &signin)
            .await
            .assert_is(403, json!({"error": "User disabled"}));
    }
    release_broadcasts(&app).await;
    assert!(eventually_swept(&app, &other.base_url, &alice, 401).await);
}

#[tokio::test]
async fn no_cache_reads_the_store_while_a_plain_request_is_answered_from_memory() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;
    let cached = app.current(&token).await;
    assert_eq!(cached.status, 200, "{cached:?}");
    // An operator's edit in mongosh: nothing is broadcast.
    app.update_user(
        "alice01",
        doc! {"$set": {"name": "Alice Renamed"}, "$addToSet": {"permissions": "editor"}},
    )
    .await;

    assert_eq!(app.current(&token).await.body, cached.body);
    for directive in ["no-cache", "no-store", "max-age=0"] {
        let fresh = app
            .current_with_cache_control(&app.base_url, &token, directive)
            .await;
        assert_eq!(fresh.status, 200, "{directive}: {fresh:?}");
        assert_eq!(fresh.body["name"], "Alice Renamed", "{directive}");
        assert_eq!(fresh.body["permissions"], json!(["user", "editor"]));
    }
    let after = app.current(&token).await;
    assert_eq!(
        after.body, cached.body,
        "a fresh read leaves memory as it is"
    );
}

#[tokio::test]
async fn no_cache_refuses_a_token_of_a_user_disabled_in_mongodb_that_memory_still_accepts() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;
    assert_eq!(app.current(&token).await.status, 200);

    app.update_user("alice01", doc! {"$set": {"enabled": false}})
        .await;

    assert_eq!(app.current(&token).await.status, 200);
    app.current_with_cache_control(&app.base_url, &token, "no-cache")
        .await
        .assert_is(401, json!({"error": "Unauthorized"}));
}

#[tokio::test]
async fn a_change_made_in_mongodb_shows_from_memory_after_the_ttl() {
    let app = spawn_auth_with_ttl(Duration::from_secs(1)).await;
    let token = app.signup("alice01").await;
    assert_eq!(app.current(&token).await.status, 200);

    app.update_user("alice01", doc! {"$set": {"name": "Alice Renamed"}})
        .await;

    let shown = testkit::eventually(Duration::from_secs(10), || async {
        app.current(&token).await.body["name"] == "Alice Renamed"
    })
    .await;
    assert!(shown, "still the answer cached before the change");
}

#[tokio::test]
async fn admin_endpoints_read_the_admins_permissions_from_the_store() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    assert_eq!(
        permissions_at(&app, &app.base_url, &admin).await,
        json!(["user", "admin"])
    );

    app.update_user("admin01", doc! {"$pull": {"permissions": "admin"}})
        .await;

    assert_eq!(
        permissions_at(&app, &app.base_url, &admin).await,
        json!(["user", "admin"]),
        "memory still has the old answer"
    );
    app.get("/users/all", Some(&admin))
        .await
        .assert_is(403, json!({"error": "Forbidden"}));
}
