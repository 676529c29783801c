//! Catalog answers every `order_invalid` with `order_released` once the order's stock is back
//! (CONTRACT section 9, extension): orders records that answer once per order, and until it has
//! it the `validated` batch sends the `order_invalid` again, on the re-drive schedule.

mod support;

use std::time::{Duration, Instant};

use rabbit::Envelope;
use rabbit::contract::{kind, queue};
use serde_json::{Value, json};
use support::{PATIENCE, TestOrders, dead_letters, line, spawn_orders, spawn_ready_orders_with};
use tokio::sync::mpsc::UnboundedReceiver;

/// The schedule of these tests: the first re-send 1 s after the order became INVALID, the waits
/// capped at 3 s, the `validated` batch running every 100 ms.
const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(3);

async fn spawn_with_fast_re_sends() -> TestOrders {
    spawn_ready_orders_with(|config| {
        config.stuck_placed_after = FIRST;
        config.redrive_max = MAX;
        config.validated_batch_interval = Duration::from_millis(100);
    })
    .await
}

/// The `order_invalid`s of `order_id` catalog has received by now, each checked to carry the
/// one line catalog reserved for it.
fn received_so_far(
    catalog: &mut UnboundedReceiver<Envelope<Value>>,
    order_id: &str,
) -> Vec<Envelope<Value>> {
    let mut received = Vec::new();
    while let Ok(invalid) = catalog.try_recv() {
        assert_eq!(
            invalid.message,
            json!({"orderId": order_id, "articles": [{"articleId": "b", "quantity": 2}]})
        );
        received.push(invalid);
    }
    received
}

/// How many of `received` the batch sent (batch messages carry a `batch-` correlation id).
fn re_sent(received: &[Envelope<Value>]) -> usize {
    received
        .iter()
        .filter(|invalid| invalid.correlation_id.starts_with("batch-"))
        .count()
}

#[tokio::test]
async fn an_order_invalid_catalog_never_answered_is_sent_again_on_the_schedule_until_released() {
    let app = spawn_with_fast_re_sends().await;
    let admin = app.auth.admin("admin01").await;
    // Catalog consumes every order_invalid and never answers (as if it had dead-lettered them).
    let mut catalog = app.catalog_order_invalid(false);
    let (token, user_id) = app.user("buyer01").await;
    let watching = Instant::now();
    let order_id = app.invalid_order(&token, &user_id).await;

    tokio::time::sleep(Duration::from_secs(8)).await;

    let received = received_so_far(&mut catalog, &order_id);
    let re_sent = re_sent(&received);
    assert_eq!(
        received.len(),
        re_sent + 1,
        "the first one, then the re-sends"
    );
    // Each re-send is an attempt of its own, claimed before it was published.
    app.assert_re_sent_on_schedule(&order_id, re_sent, watching, (FIRST, MAX))
        .await;

    app.release(&order_id).await;
    app.wait_for_release(&order_id).await;
    // A run that read the releases just before this one may still publish: let it finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    received_so_far(&mut catalog, &order_id);
    // Longer than the longest wait between two re-sends.
    tokio::time::sleep(MAX + Duration::from_secs(1)).await;

    let after_release = received_so_far(&mut catalog, &order_id);
    assert!(after_release.is_empty(), "re-sent: {after_release:?}");
    // Done: the order costs the batch's runs nothing any more.
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 0}));
}

#[tokio::test]
async fn an_order_invalid_catalog_answers_at_once_is_not_sent_again() {
    let app = spawn_with_fast_re_sends().await;
    let admin = app.auth.admin("admin01").await;
    let mut catalog = app.catalog_order_invalid(true);
    let (token, user_id) = app.user("buyer01").await;

    let order_id = app.invalid_order(&token, &user_id).await;
    app.wait_for_release(&order_id).await;
    // Long enough for the first re-send and the next one, were they due.
    tokio::time::sleep(FIRST + MAX + Duration::from_secs(1)).await;

    let received = received_so_far(&mut catalog, &order_id);
    assert_eq!(received.len(), 1, "sent again: {received:?}");
    assert_eq!(re_sent(&received), 0);
    assert!(app.re_drive_attempts(&order_id).await.is_empty());
    assert_eq!(app.release_records(&order_id).await.len(), 1);
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 0}));
}

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
