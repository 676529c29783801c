//! Catalog answers every `order_invalid` with `order_released` once the order's stock is back
//! (CONTRACT section 9, extension): orders records that answer once per order.

mod support;

use std::time::Duration;

use rabbit::contract::{kind, queue};
use serde_json::json;
use support::{PATIENCE, dead_letters, line, spawn_orders};

#[tokio::test]
async fn a_repeated_order_released_is_recorded_once_and_changes_nothing() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app.invalid_order(&token, &user_id).await;
    let mut dead = dead_letters(&app.rabbit, queue::ORDERS_ORDER_RELEASED);
    app.release(&order_id).await;
    let first = app.wait_for_release(&order_id).await;

    // Catalog answering the same order_invalid again (a re-send, a redelivery), twice.
    app.release(&order_id).await;
    app.release(&order_id).await;
    app.wait_until_handled(queue::ORDERS_ORDER_RELEASED).await;

    assert_eq!(app.release_records(&order_id).await, [first]);
    assert!(dead.try_recv().is_err(), "a repeat was dead-lettered");
}

#[tokio::test]
async fn an_order_released_for_no_invalid_order_is_acked_and_a_malformed_one_dead_lettered() {
    let app = spawn_orders().await;
    let (_, user_id) = app.user("buyer01").await;
    let placed = app.placed_order(&user_id, vec![line("a", 1)]).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut dead = dead_letters(&app.rabbit, queue::ORDERS_ORDER_RELEASED);

    app.release(&unknown).await;
    app.release(&placed).await;
    app.publish_raw(kind::ORDER_RELEASED, json!({"orderId": ""}))
        .await;
    app.publish_raw(kind::ORDER_RELEASED, json!({"order": 7}))
        .await;
    app.wait_until_handled(queue::ORDERS_ORDER_RELEASED).await;

    for _ in 0..2 {
        let letter = tokio::time::timeout(PATIENCE, dead.recv()).await;
        assert!(
            matches!(letter, Ok(Some(_))),
            "every malformed order_released is dead-lettered"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        dead.try_recv().is_err(),
        "a well-formed one was dead-lettered"
    );
    assert!(app.release_records(&unknown).await.is_empty());
    assert!(app.release_records(&placed).await.is_empty());
}
