//! Odd path segments (review L1): a user id that is not an ObjectId (a NUL, bytes that are not
//! UTF-8, a very long one) is 404 on every admin action before the store is asked.

mod support;

use serde_json::json;
use support::spawn_auth;

#[tokio::test]
async fn odd_user_ids_are_not_found_on_every_admin_action() {
    let app = spawn_auth().await;
    let admin = app.admin().await;
    let permissions = json!({"permissions": ["user"]});

    for id in testkit::odd_path_segments() {
        for action in ["enable", "disable", "grant", "revoke"] {
            app.admin_action(&admin, &id, action, &permissions)
                .await
                .assert_is(404, json!({"error": "Not found"}));
        }
    }
}
