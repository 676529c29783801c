//! `place_order` becomes an order once per cart, stored as its placed event, and is announced
//! with `order_placed` (CONTRACT sections 8 and 9).

mod support;

use rabbit::contract::{kind, queue};
use serde_json::json;
use support::{PATIENCE, dead_letters, line, spawn_orders};

#[tokio::test]
async fn a_place_order_becomes_a_placed_order_announced_with_order_placed() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;

    let correlation_id = app
        .place_order("cart-1", &user_id, vec![line("a", 2), line("b", 1)])
        .await;

    let placed = app.next_published(kind::ORDER_PLACED).await;
    assert_eq!(placed.correlation_id, correlation_id);
    assert_eq!(
        (placed.exchange.as_str(), placed.routing_key.as_str()),
        ("orders", "article-data")
    );
    let order_id = placed.message["orderId"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&order_id).expect("a UUID order id");
    assert_eq!(
        placed.message,
        json!({"orderId": order_id, "cartId": "cart-1", "userId": user_id,
               "articles": [{"articleId": "a", "quantity": 2}, {"articleId": "b", "quantity": 1}]})
    );
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.status, 200, "{order}");
    let body = order.json();
    assert_eq!(body["status"], "PLACED");
    assert_eq!(body["id"], body["orderId"]);
    assert_eq!(body["cartId"], "cart-1");
    assert_eq!(body["totalPrice"], json!(0.0));
    assert_eq!(body["payments"], json!([]));
    assert_eq!(
        body["articles"][0],
        json!({"id": "a", "articleId": "a", "quantity": 2, "unitaryPrice": 0.0,
               "valid": false, "validated": false})
    );
    let events = app.assert_positions_are_a_sequence(&order_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].get_str("type").unwrap(), "placed");
}

#[tokio::test]
async fn a_repeated_place_order_for_an_announced_order_publishes_and_stores_nothing_new() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    app.place_order("cart-1", &user_id, vec![line("a", 1)])
        .await;
    let placed = app.next_published(kind::ORDER_PLACED).await;
    let order_id = placed.message["orderId"].as_str().unwrap();
    app.wait_until_handled(queue::ORDERS_PLACE_ORDER).await;
    app.mark_projection(order_id).await;

    // Cart sends it again, say because its order_placed was slow to come.
    for _ in 0..3 {
        app.place_order("cart-1", &user_id, vec![line("a", 1)])
            .await;
    }
    app.wait_until_handled(queue::ORDERS_PLACE_ORDER).await;

    let again = app.published_so_far(kind::ORDER_PLACED).await;
    assert!(again.is_empty(), "published again: {again:?}");
    assert_eq!(app.events(order_id).await.len(), 1);
    assert!(
        app.projection_untouched(order_id).await,
        "the projection was written again"
    );
    let list = app.get("/orders", Some(&token)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn a_repeated_place_order_publishes_order_placed_again_when_the_first_was_never_confirmed() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    app.place_order("cart-1", &user_id, vec![line("a", 1)])
        .await;
    let first = app.next_published(kind::ORDER_PLACED).await;
    let order_id = first.message["orderId"].as_str().unwrap();
    // As if orders had stopped between the publish and its record, or the broker never confirmed.
    app.forget_announcement(order_id, "PLACED").await;

    let repeat = app
        .place_order("cart-1", &user_id, vec![line("a", 1)])
        .await;

    let second = app.next_published(kind::ORDER_PLACED).await;
    assert_eq!(second.message, first.message);
    // Every `order_placed` of the order carries the first `place_order`'s correlation id, which
    // catalog's answers must echo.
    assert_ne!(repeat, first.correlation_id);
    assert_eq!(second.correlation_id, first.correlation_id);
    app.wait_for_announcement(order_id, "PLACED").await;
    assert_eq!(app.events(order_id).await.len(), 1);
    let list = app.get("/orders", Some(&token)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn concurrent_place_orders_for_one_cart_make_one_order() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;

    let sends = (0..8).map(|_| app.place_order("cart-1", &user_id, vec![line("a", 1)]));
    futures_util::future::join_all(sends).await;

    let first = app.next_published(kind::ORDER_PLACED).await;
    app.wait_until_handled(queue::ORDERS_PLACE_ORDER).await;
    // Copies that found the order before its order_placed was confirmed publish it too.
    for again in app.published_so_far(kind::ORDER_PLACED).await {
        assert_eq!(again.message, first.message);
    }
    let list = app.get("/orders", Some(&token)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn repeated_articles_of_a_cart_become_one_line() {
    let app = spawn_orders().await;
    let (_, user_id) = app.user("buyer01").await;

    app.place_order("cart-1", &user_id, vec![line("a", 1), line("a", 2)])
        .await;

    let placed = app.next_published(kind::ORDER_PLACED).await;
    assert_eq!(
        placed.message["articles"],
        json!([{"articleId": "a", "quantity": 3}])
    );
}

#[tokio::test]
async fn an_invalid_place_order_is_dead_lettered_and_makes_no_order() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let mut dead = dead_letters(&app.rabbit, queue::ORDERS_PLACE_ORDER);
    let invalid = [
        json!({"cartId": "", "userId": user_id, "articles": [{"articleId": "a", "quantity": 1}]}),
        json!({"cartId": "c2", "userId": "", "articles": [{"articleId": "a", "quantity": 1}]}),
        json!({"cartId": "c3", "userId": user_id, "articles": []}),
        json!({"cartId": "c4", "userId": user_id, "articles": [{"articleId": "a", "quantity": 0}]}),
        json!({"cartId": "c5", "userId": user_id}),
        json!("not an order"),
    ];

    for message in &invalid {
        app.publish_raw(kind::PLACE_ORDER, message.clone()).await;
    }

    for _ in &invalid {
        let letter = tokio::time::timeout(PATIENCE, dead.recv()).await;
        assert!(
            matches!(letter, Ok(Some(_))),
            "every invalid message is dead-lettered"
        );
    }
    let list = app.get("/orders", Some(&token)).await;
    list.assert_is(200, json!([]));
}
