//! Orders rides out its dependencies going away: a broker restart (connections dropped from the
//! broker side) and MongoDB down, where REST answers 503 and the consumers keep their messages
//! until it is back (CONTRACT sections 2 and 9).

mod support;

use rabbit::contract::kind;
use serde_json::json;
use support::{PATIENCE, line, spawn_orders, spawn_orders_with, spawn_ready_orders_with};

#[tokio::test]
async fn orders_keep_flowing_after_the_broker_drops_every_connection() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    app.placed_order(&user_id, vec![line("a", 1)]).await;

    let closed = app.vhost.close_connections().await;
    assert!(app.vhost.wait_for_new_connection(&closed).await);
    app.wait_for_consumers().await;

    let order_id = app.placed_order(&user_id, vec![line("b", 1)]).await;
    app.reply_article(&order_id, "b", true, 2.0).await;
    app.wait_for_status(&order_id, &token, "VALIDATED").await;
}

#[tokio::test]
async fn with_mongodb_down_requests_get_503_and_messages_wait_until_it_is_back() {
    let mut mongo = testkit::PrivateMongo::start().await;
    let url = mongo.url();
    let app = spawn_ready_orders_with(|config| config.mongo_url = url).await;
    let (token, user_id) = app.user("buyer01").await;
    app.placed_order(&user_id, vec![line("a", 1)]).await;

    mongo.kill();
    let health = app.health().await;
    assert_eq!(health.status, 503, "{health}");
    assert_eq!(health.json()["dependencies"]["mongodb"], "down");
    app.get("/orders", Some(&token))
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    app.place_order("cart-2", &user_id, vec![line("b", 1)])
        .await;
    mongo.restart().await;

    // The first order's order_placed may come again first: its handling may have been cut
    // between the broker's confirm and the record of it, and is then done again.
    while app.next_published(kind::ORDER_PLACED).await.message["cartId"] != "cart-2" {}
    let list = app.get("/orders", Some(&token)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn orders_starts_while_mongodb_is_down_and_is_healthy_once_it_is_up() {
    let mut mongo = testkit::PrivateMongo::start().await;
    mongo.kill();
    let url = mongo.url();
    let app = spawn_orders_with(|config| config.mongo_url = url).await;

    let health = app.health().await;
    assert_eq!(health.status, 503, "{health}");
    assert_eq!(health.json()["dependencies"]["mongodb"], "down");
    mongo.restart().await;

    let healthy =
        testkit::eventually(PATIENCE, || async { app.health().await.status == 200 }).await;
    assert!(healthy, "orders never became healthy");
    app.wait_for_consumers().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.status, 200, "{order}");
}
