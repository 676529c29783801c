//! Odd path segments (review L1): an order id that is not a UUID (a NUL, bytes that are not
//! UTF-8, a very long one) is an order nobody has, 404 on every route before Redis or the store
//! is asked; so is an unknown batch name.

mod support;

use serde_json::json;
use support::spawn_orders;

#[tokio::test]
async fn odd_order_ids_are_not_found_on_every_route() {
    let app = spawn_orders().await;
    let (token, _) = app.user("buyer01").await;
    let payment = json!({"method": "CASH", "amount": 1});
    let not_found = json!({"error": "Not found"});

    for id in testkit::odd_path_segments() {
        app.get(&format!("/orders/{id}"), Some(&token))
            .await
            .assert_is(404, not_found.clone());
        app.get(&format!("/orders/{id}/update"), Some(&token))
            .await
            .assert_is(404, not_found.clone());
        app.pay(&id, &token, None, &payment)
            .await
            .assert_is(404, not_found.clone());
    }
}

#[tokio::test]
async fn odd_batch_names_are_not_found() {
    let app = spawn_orders().await;
    let admin = app.auth.admin("admin01").await;
    for name in testkit::odd_path_segments() {
        app.get(&format!("/orders_batch/{name}"), Some(&admin))
            .await
            .assert_is(404, json!({"error": "Not found"}));
    }
}
