//! Catalog's `article-data` replies settle an order line by line: VALIDATED when every line is
//! valid, INVALID once every line answered and one is not, PLACED until then (CONTRACT sections 8
//! and 9).

mod support;

use rabbit::contract::{kind, queue};
use serde_json::json;
use support::{PATIENCE, dead_letters, line, spawn_orders};

#[tokio::test]
async fn an_order_whose_every_line_is_valid_is_validated_and_announced() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .placed_order(&user_id, vec![line("a", 2), line("b", 1)])
        .await;

    app.reply_article(&order_id, "a", true, 2.5).await;
    app.wait_for_order(&order_id, &token, |order| {
        order["articles"][0]["validated"] == true
    })
    .await;
    let last_reply = app.reply_article(&order_id, "b", true, 0.1).await;

    let validated = app.next_published(kind::ORDER_VALIDATED).await;
    assert_eq!(validated.correlation_id, last_reply);
    assert_eq!(
        validated.message,
        json!({"orderId": order_id, "userId": user_id, "status": "VALIDATED"})
    );
    let order = app.wait_for_status(&order_id, &token, "VALIDATED").await;
    assert_eq!(order["totalPrice"], json!(5.1));
    assert_eq!(
        order["articles"][0],
        json!({"id": "a", "articleId": "a", "quantity": 2, "unitaryPrice": 2.5,
               "valid": true, "validated": true})
    );
    app.assert_positions_are_a_sequence(&order_id).await;
}

/// An `article-data` that does not carry the correlation id of the order's `order_placed` is
/// not catalog's answer to it (an answer to a plain validation request reserves nothing): it
/// is dead-lettered and decides nothing. One from another sender than catalog never gets read.
#[tokio::test]
async fn only_catalogs_answer_to_the_order_placed_decides_a_line() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;
    let dead = dead_letters(&app.rabbit, queue::ORDERS_ARTICLE_DATA);

    app.reply_article_as(&order_id, "a", true, 0.0, "a plain request")
        .await;
    let placed = app.placed_correlation(&order_id).await;
    let forged = json!({"type": "article-data", "correlation_id": placed,
        "message": {"referenceId": order_id, "articleId": "a", "valid": true,
                    "price": 0.0, "stock": 0}});
    app.vhost
        .publish("cart", "orders", kind::ARTICLE_DATA, &forged)
        .await;
    let mut dead = dead;
    let mut dead_lettered = Vec::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(PATIENCE, dead.recv())
            .await
            .expect("dead-lettered in time")
            .expect("a dead letter");
        dead_lettered.push(letter.correlation_id);
    }
    dead_lettered.sort();
    let mut expected = vec!["a plain request".to_owned(), placed.clone()];
    expected.sort();
    assert_eq!(dead_lettered, expected);
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.body["status"], "PLACED", "{}", order.body);
    assert_eq!(
        order.body["articles"][0]["validated"], false,
        "{}",
        order.body
    );

    app.reply_article(&order_id, "a", true, 2.0).await;
    app.wait_for_status(&order_id, &token, "VALIDATED").await;
}

#[tokio::test]
async fn an_order_with_an_invalid_line_stays_placed_until_every_line_answered() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .placed_order(&user_id, vec![line("a", 1), line("b", 3), line("c", 1)])
        .await;

    app.reply_article(&order_id, "a", false, 0.0).await;
    let waiting = app
        .wait_for_order(&order_id, &token, |order| {
            order["articles"][0]["validated"] == true
        })
        .await;
    assert_eq!(waiting["status"], "PLACED");
    app.reply_article(&order_id, "b", true, 4.0).await;
    app.reply_article(&order_id, "c", true, 1.0).await;

    let invalid = app.next_published(kind::ORDER_INVALID).await;
    assert_eq!(invalid.message["orderId"], json!(order_id));
    // What catalog reserved, for it to give back: the valid lines, not the refused one.
    assert_eq!(
        invalid.message["articles"],
        json!([{"articleId": "b", "quantity": 3}, {"articleId": "c", "quantity": 1}])
    );
    let order = app.wait_for_status(&order_id, &token, "INVALID").await;
    assert_eq!(order["articles"][0]["valid"], false);
}

#[tokio::test]
async fn repeated_and_out_of_order_replies_record_each_line_once() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .placed_order(&user_id, vec![line("a", 1), line("b", 1), line("c", 1)])
        .await;

    for article_id in ["c", "a", "c", "b", "a", "c"] {
        app.reply_article(&order_id, article_id, true, 1.0).await;
    }

    app.wait_for_status(&order_id, &token, "VALIDATED").await;
    let events = app.assert_positions_are_a_sequence(&order_id).await;
    assert_eq!(events.len(), 4, "{events:?}");
    let validated = app.next_published(kind::ORDER_VALIDATED).await;
    assert_eq!(validated.message["orderId"], json!(order_id));
}

#[tokio::test]
async fn a_second_answer_for_a_line_changes_nothing() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .placed_order(&user_id, vec![line("a", 1), line("b", 1)])
        .await;

    app.reply_article(&order_id, "a", true, 3.0).await;
    app.wait_for_order(&order_id, &token, |order| {
        order["articles"][0]["validated"] == true
    })
    .await;
    app.reply_article(&order_id, "a", false, 0.0).await;
    app.reply_article(&order_id, "b", true, 1.0).await;

    let order = app.wait_for_status(&order_id, &token, "VALIDATED").await;
    assert_eq!(order["articles"][0]["unitaryPrice"], json!(3.0));
    assert_eq!(app.events(&order_id).await.len(), 3);
}

#[tokio::test]
async fn a_reply_for_an_order_already_decided_stores_and_publishes_nothing() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 2.0), ("b", 1, 3.0)])
        .await;
    app.next_published(kind::ORDER_VALIDATED).await;
    app.wait_until_handled(queue::ORDERS_ARTICLE_DATA).await;
    app.mark_projection(&order_id).await;

    // Catalog answering a re-drive of the order: the same answers, and a changed one.
    app.reply_article(&order_id, "a", true, 2.0).await;
    app.reply_article(&order_id, "b", false, 0.0).await;
    app.reply_article(&order_id, "a", true, 9.0).await;
    app.wait_until_handled(queue::ORDERS_ARTICLE_DATA).await;

    assert_eq!(app.events(&order_id).await.len(), 3);
    assert!(
        app.projection_untouched(&order_id).await,
        "the projection was written again"
    );
    let validated = app.published_so_far(kind::ORDER_VALIDATED).await;
    assert!(validated.is_empty(), "announced again: {validated:?}");
    let invalid = app.published_so_far(kind::ORDER_INVALID).await;
    assert!(invalid.is_empty(), "announced: {invalid:?}");
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["totalPrice"], json!(5.0), "{order}");
}

#[tokio::test]
async fn concurrent_replies_for_every_line_take_distinct_positions() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let articles: Vec<String> = (0..12).map(|n| format!("article-{n}")).collect();
    let order_id = app
        .placed_order(&user_id, articles.iter().map(|a| line(a, 1)).collect())
        .await;

    let replies = articles
        .iter()
        .map(|article_id| app.reply_article(&order_id, article_id, true, 1.0));
    futures_util::future::join_all(replies).await;

    let order = app.wait_for_status(&order_id, &token, "VALIDATED").await;
    assert_eq!(order["totalPrice"], json!(12.0));
    let events = app.assert_positions_are_a_sequence(&order_id).await;
    assert_eq!(events.len(), 13);
}

#[tokio::test]
async fn replies_for_unknown_orders_or_articles_are_dead_lettered() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;
    let mut dead = dead_letters(&app.rabbit, queue::ORDERS_ARTICLE_DATA);

    let correlation_id = app.placed_correlation(&order_id).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    app.reply_article_as(&unknown, "a", true, 1.0, &correlation_id)
        .await;
    app.reply_article_as("not-an-order", "a", true, 1.0, &correlation_id)
        .await;
    app.reply_article(&order_id, "not-in-the-order", true, 1.0)
        .await;

    for _ in 0..3 {
        let letter = tokio::time::timeout(PATIENCE, dead.recv()).await;
        assert!(
            matches!(letter, Ok(Some(_))),
            "every stray reply is dead-lettered"
        );
    }
    app.reply_article(&order_id, "a", true, 1.0).await;
    app.wait_for_status(&order_id, &token, "VALIDATED").await;
}

#[tokio::test]
async fn sixty_replies_arriving_at_once_validate_the_order_without_dead_letters() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let articles: Vec<String> = (0..60).map(|n| format!("article-{n}")).collect();
    let order_id = app
        .placed_order(&user_id, articles.iter().map(|a| line(a, 1)).collect())
        .await;
    let mut dead = dead_letters(&app.rabbit, queue::ORDERS_ARTICLE_DATA);

    let replies = articles
        .iter()
        .map(|article_id| app.reply_article(&order_id, article_id, true, 1.0));
    futures_util::future::join_all(replies).await;

    let order = app.wait_for_status(&order_id, &token, "VALIDATED").await;
    assert_eq!(order["totalPrice"], json!(60.0));
    assert_eq!(
        app.assert_positions_are_a_sequence(&order_id).await.len(),
        61
    );
    assert!(dead.try_recv().is_err(), "no reply was dead-lettered");
}
