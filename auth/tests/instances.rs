//! Two auth instances on one database and one vhost, as behind a load balancer: what they decide
//! together rests on inserts the store decides, never on one process.

mod support;

use futures_util::future::join_all;
use serde_json::json;
use support::{PASSWORD, spawn_auth, token_of};
use tokio::sync::Notify;

/// Upper bound on the signins of one racer, so a disable that never lands fails the test.
const MAX_SIGNINS: usize = 100;

/// `POST /users/{id}/{action}` (enable, disable) by `admin` at the instance at `base_url`.
async fn admin_action_at(
    app: &support::TestAuth,
    base_url: &str,
    admin: &str,
    id: &str,
    action: &str,
) -> support::Reply {
    let path = format!("/users/{id}/{action}");
    app.post_at(base_url, &path, Some(admin), &json!({})).await
}

/// The store refuses every token on every instance at once (`Cache-Control: no-cache`), and so
/// does every instance's memory once the logout broadcast has reached it.
async fn assert_refused_everywhere(
    app: &support::TestAuth,
    instances: &[&str],
    tokens: &[&str],
    stage: &str,
) {
    for token in tokens {
        for instance in instances {
            let reply = app
                .current_with_cache_control(instance, token, "no-cache")
                .await;
            assert_eq!(reply.status, 401, "{stage}: {reply:?}");
            let evicted = app.eventually_current_at(instance, token, 401).await;
            assert!(evicted, "{stage}: still answered from memory on {instance}");
        }
    }
}

#[tokio::test]
async fn signups_of_one_login_racing_on_two_instances_create_exactly_one_user() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let body = json!({"name": "Twin", "login": "twin01", "password": PASSWORD});

    let replies = join_all((0..10).map(|i| {
        let base_url = if i % 2 == 0 {
            &app.base_url
        } else {
            &other.base_url
        };
        app.post_at(base_url, "/users/signup", None, &body)
    }))
    .await;

    let created = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(created, 1, "{replies:?}");
    for reply in replies.iter().filter(|reply| reply.status != 200) {
        reply.assert_is(
            409,
            json!({"messages": [{"path": "login", "message": "already exists"}]}),
        );
    }
    let users = app.db.collection::<mongodb::bson::Document>("users");
    let count = users
        .count_documents(mongodb::bson::doc! {"login": "twin01"})
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn signins_racing_a_disable_on_two_instances_leave_no_working_token() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let instances = [app.base_url.as_str(), other.base_url.as_str()];
    let logouts = app.listen_for_logouts().await;
    let admin = app.admin().await;
    let alice = app.signup("alice01").await;
    let id = app.user_id(&alice).await;
    let first_accepted = Notify::new();
    let signin = json!({"login": "alice01", "password": PASSWORD});

    // Four racers sign in again and again, two on each instance, and use each token at once on
    // the other instance (as another service would, caching the answer), until signin refuses.
    let racers = join_all((0..4).map(|racer| {
        let (here, there) = (instances[racer % 2], instances[(racer + 1) % 2]);
        let (app, signin, first_accepted) = (&app, &signin, &first_accepted);
        async move {
            let mut issued = Vec::new();
            for _ in 0..MAX_SIGNINS {
                let reply = app.post_at(here, "/users/signin", None, signin).await;
                if reply.status != 200 {
                    reply.assert_is(403, json!({"error": "User disabled"}));
                    return issued;
                }
                let token = token_of(&reply);
                let accepted = app.current_at(there, &token).await.status == 200;
                if accepted {
                    first_accepted.notify_one();
                }
                issued.push((token, accepted));
            }
            panic!("signin never refused after {MAX_SIGNINS} attempts");
        }
    }));
    let disable = async {
        first_accepted.notified().await;
        admin_action_at(&app, instances[1], &admin, &id, "disable").await
    };
    let (issued, disabled) = tokio::join!(racers, disable);

    disabled.assert_is(200, json!({}));
    let issued: Vec<(String, bool)> = issued.into_iter().flatten().collect();
    assert!(issued.iter().any(|(_, accepted)| *accepted));
    let mut tokens: Vec<&str> = issued.iter().map(|(token, _)| token.as_str()).collect();
    tokens.push(&alice);
    assert_refused_everywhere(&app, &instances, &tokens, "after the disable").await;
    // Every token another service may have cached is broadcast, so caches drop it.
    let accepted: Vec<&str> = issued
        .iter()
        .filter(|(_, accepted)| *accepted)
        .map(|(token, _)| token.as_str())
        .collect();
    assert!(
        logouts.eventually_contain(&accepted).await,
        "{:?}",
        logouts.received()
    );

    admin_action_at(&app, instances[0], &admin, &id, "enable")
        .await
        .assert_is(200, json!({}));

    assert_refused_everywhere(&app, &instances, &tokens, "after a later enable").await;
    let fresh = app.new_token("alice01").await;
    for instance in instances {
        assert_eq!(app.current_at(instance, &fresh).await.status, 200);
    }
}

#[tokio::test]
async fn a_disable_and_an_enable_racing_on_two_instances_both_land_in_one_order() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let admin = app.admin().await;
    let alice = app.signup("alice01").await;
    let id = app.user_id(&alice).await;

    let (disabled, enabled) = tokio::join!(
        admin_action_at(&app, &app.base_url, &admin, &id, "disable"),
        admin_action_at(&app, &other.base_url, &admin, &id, "enable"),
    );

    disabled.assert_is(200, json!({}));
    enabled.assert_is(200, json!({}));
    // Whatever the order, the disable ended alice's token for good, and whether alice may sign
    // in again is what the listing says.
    for instance in [&app.base_url, &other.base_url] {
        assert_eq!(app.current_at(instance, &alice).await.status, 401);
    }
    let listed = app.get("/users/all", Some(&admin)).await.body;
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["id"] == id);
    let enabled = listed.expect("alice listed")["enabled"].as_bool().unwrap();
    let signin = app.signin("alice01", PASSWORD).await;
    assert_eq!(signin.status == 200, enabled, "{signin:?}");
}

#[tokio::test]
async fn signins_with_the_old_password_racing_a_password_change_leave_no_working_token() {
    let app = spawn_auth().await;
    let other = app.another_instance().await;
    let instances = [app.base_url.as_str(), other.base_url.as_str()];
    let session = app.signup("alice01").await;
    let first_accepted = Notify::new();
    let old_password = json!({"login": "alice01", "password": PASSWORD});

    let racers = join_all((0..4).map(|racer| {
        let (here, there) = (instances[racer % 2], instances[(racer + 1) % 2]);
        let (app, old_password, first_accepted) = (&app, &old_password, &first_accepted);
        async move {
            let mut issued = Vec::new();
            for _ in 0..MAX_SIGNINS {
                let reply = app.post_at(here, "/users/signin", None, old_password).await;
                if reply.status != 200 {
                    reply.assert_is(401, json!({"error": "Invalid login or password"}));
                    return issued;
                }
                let token = token_of(&reply);
                if app.current_at(there, &token).await.status == 200 {
                    first_accepted.notify_one();
                }
                issued.push(token);
            }
            panic!("the old password still worked after {MAX_SIGNINS} signins");
        }
    }));
    let change = async {
        first_accepted.notified().await;
        let body = json!({"currentPassword": PASSWORD, "newPassword": "a brand new password"});
        app.post_at(instances[1], "/users/password", Some(&session), &body)
            .await
    };
    let (issued, changed) = tokio::join!(racers, change);

    changed.assert_is(200, json!({}));
    let issued: Vec<String> = issued.into_iter().flatten().collect();
    assert!(!issued.is_empty());
    let tokens: Vec<&str> = issued.iter().map(String::as_str).collect();
    assert_refused_everywhere(&app, &instances, &tokens, "after the password change").await;
    for instance in instances {
        assert_eq!(app.current_at(instance, &session).await.status, 200);
    }
}
