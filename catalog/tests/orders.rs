//! Catalog's part in the sell flow (CONTRACT section 9): `order_placed` reserves the stock of
//! every line that has it, atomically, and answers one `article-data` per line; `order_invalid`
//! gives the reservation back. Both are exactly once per order and article, however often the
//! message arrives, and stock never goes negative.

mod support;

use rabbit::contract::queue;
use serde_json::Value;
use support::spawn_catalog;

fn order_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `(articleId, valid, stock, quantity)` of an `article-data` reply.
fn summary(reply: &Value) -> (String, bool, i64, i64) {
    (
        reply["articleId"].as_str().unwrap().to_owned(),
        reply["valid"].as_bool().unwrap(),
        reply["stock"].as_i64().unwrap(),
        reply["quantity"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_placed_order_reserves_what_is_in_stock_and_answers_every_line() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let lamp = app.article("Lamp", 5).await;
    let chair = app.article("Chair", 1).await;
    let gone = app.article("Gone", 9).await;
    app.delete(&format!("/articles/{gone}"), Some(&admin)).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let order = order_id();

    app.place_order(
        &order,
        &[(&lamp, 2), (&chair, 3), (&gone, 1), ("unknown", 1)],
    )
    .await;

    let mut answers = replies.take(4).await;
    answers.sort_by_key(|reply| reply["articleId"].as_str().unwrap().to_owned());
    let mut expected = vec![
        (lamp.clone(), true, 3, 2),
        (chair.clone(), false, 1, 3),
        (gone.clone(), false, 9, 1),
        ("unknown".to_owned(), false, 0, 1),
    ];
    expected.sort();
    assert_eq!(answers.iter().map(summary).collect::<Vec<_>>(), expected);
    assert!(
        answers
            .iter()
            .all(|reply| reply["referenceId"] == order.as_str())
    );
    assert_eq!(answers[0]["price"], 2.5);
    assert_eq!(app.stock(&lamp).await, 3);
    assert_eq!(app.stock(&chair).await, 1);
}

#[tokio::test]
async fn concurrent_orders_for_the_last_units_reserve_exactly_the_stock() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    let orders: Vec<String> = (0..12).map(|_| order_id()).collect();
    futures_util::future::join_all(
        orders
            .iter()
            .map(|order| async { app.place_order(order, &[(&lamp, 1)]).await }),
    )
    .await;

    let answers = replies.take(orders.len()).await;
    let valid = answers
        .iter()
        .filter(|reply| reply["valid"] == true)
        .count();
    assert_eq!(valid, 5, "{answers:?}");
    assert_eq!(app.stock(&lamp).await, 0);
}

#[tokio::test]
async fn an_order_placed_twice_and_re_published_later_reserves_once_and_answers_the_same() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    let chair = app.article("Chair", 1).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let order = order_id();
    let lines = [(lamp.as_str(), 2), (chair.as_str(), 2)];

    app.place_order(&order, &lines).await;
    app.place_order(&order, &lines).await;
    let mut first = replies.take(4).await;
    first.sort_by_key(|reply| {
        (
            reply["articleId"].as_str().unwrap().to_owned(),
            reply.to_string(),
        )
    });
    // The chair is restocked in between: a refusal stays the order's answer all the same.
    let restocked = app.set_stock(&chair, 10).await;
    assert_eq!(restocked.status, 200, "{restocked}");
    app.place_order(&order, &lines).await;
    let mut again = replies.take(2).await;
    again.sort_by_key(|reply| reply["articleId"].as_str().unwrap().to_owned());

    assert_eq!(first[0], first[1], "both deliveries answered the same");
    assert_eq!(first[2], first[3], "both deliveries answered the same");
    let valid = |replies: &[Value], id: &str| {
        replies
            .iter()
            .find(|reply| reply["articleId"] == id)
            .unwrap()["valid"]
            .clone()
    };
    assert_eq!(valid(&first, &lamp), true);
    assert_eq!(valid(&first, &chair), false);
    assert_eq!(valid(&again, &lamp), true);
    assert_eq!(valid(&again, &chair), false);
    assert_eq!(app.stock(&lamp).await, 3);
    assert_eq!(app.stock(&chair).await, 10);
}

#[tokio::test]
async fn two_lines_of_one_article_are_reserved_together() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 4).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    app.place_order(&order_id(), &[(&lamp, 2), (&lamp, 1)])
        .await;

    let answers = replies.take(2).await;
    assert!(
        answers.iter().all(|reply| reply["valid"] == true),
        "{answers:?}"
    );
    assert_eq!(app.stock(&lamp).await, 1);
}

#[tokio::test]
async fn order_invalid_gives_back_the_reservation_once() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let order = order_id();
    app.place_order(&order, &[(&lamp, 3)]).await;
    replies.next().await;
    assert_eq!(app.stock(&lamp).await, 2);

    let released = app.messages(queue::ORDERS_ORDER_RELEASED);
    app.invalidate_order(&order, &[(&lamp, 3)]).await;
    app.invalidate_order(&order, &[(&lamp, 3)]).await;
    app.wait_acked(queue::CATALOG_ORDER_INVALID, 2).await;

    assert_eq!(app.stock(&lamp).await, 5);
    // Each order_invalid is answered, the repeated one too: orders may have missed the first.
    for _ in 0..2 {
        let answer = released.next().await;
        assert_eq!(answer["type"], "order_released");
        assert_eq!(answer["message"], serde_json::json!({ "orderId": order }));
    }
}

#[tokio::test]
async fn order_invalid_gives_back_nothing_that_was_not_reserved() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 1).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let order = order_id();
    app.place_order(&order, &[(&lamp, 2)]).await;
    assert_eq!(replies.next().await["message"]["valid"], false);

    let released = app.messages(queue::ORDERS_ORDER_RELEASED);
    app.invalidate_order(&order, &[(&lamp, 2)]).await;
    let never_placed = order_id();
    app.invalidate_order(&never_placed, &[(&lamp, 2)]).await;
    app.wait_acked(queue::CATALOG_ORDER_INVALID, 2).await;

    assert_eq!(app.stock(&lamp).await, 1);
    // Nothing to give back is released too: the order holds no stock.
    let mut answered: Vec<String> = released
        .take(2)
        .await
        .iter()
        .map(|answer| answer["orderId"].as_str().unwrap().to_owned())
        .collect();
    answered.sort();
    let mut expected = vec![order, never_placed];
    expected.sort();
    assert_eq!(answered, expected);
}

#[tokio::test]
async fn an_order_placed_again_after_order_invalid_reserves_nothing_and_answers_the_same() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let order = order_id();
    app.place_order(&order, &[(&lamp, 2)]).await;
    let first = replies.next().await;
    app.invalidate_order(&order, &[(&lamp, 2)]).await;
    app.wait_acked(queue::CATALOG_ORDER_INVALID, 1).await;

    app.place_order(&order, &[(&lamp, 2)]).await;

    let again = replies.next().await;
    assert_eq!(again["message"]["valid"], first["message"]["valid"]);
    assert_eq!(app.stock(&lamp).await, 5);
}
