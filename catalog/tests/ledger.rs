//! The stock ledger against movements this instance never heard of, written straight into
//! MongoDB as another instance would have written them with its announcement lost: a stale or
//! missing head costs a catch-up read, never a wrong decision.

mod support;

use mongodb::bson::{DateTime, Document, doc};
use rabbit::contract::queue;
use support::spawn_catalog;

fn order_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_reservation_on_a_stale_head_catches_up_and_decides_on_the_true_stock() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    // Another instance reserved 4 of the 5 units: this one still believes 5 at position 1.
    let other_order = order_id();
    app.db
        .collection::<Document>("stock_movements")
        .insert_one(doc! {
            "_id": format!("{other_order}:{lamp}:reserve"), "article": &lamp, "position": 2_i64,
            "kind": "reserved", "quantity": -4_i64, "balance": 1_i64, "order": &other_order,
            "at": DateTime::now(),
        })
        .await
        .expect("MongoDB answers");
    assert_eq!(app.stock(&lamp).await, 5, "the instance's head is stale");
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    app.place_order(&order_id(), &[(&lamp, 2)]).await;
    let refused = replies.next().await["message"].clone();
    app.place_order(&order_id(), &[(&lamp, 1)]).await;
    let reserved = replies.next().await["message"].clone();

    assert_eq!(
        (refused["valid"].clone(), refused["stock"].clone()),
        (false.into(), 1.into())
    );
    assert_eq!(
        (reserved["valid"].clone(), reserved["stock"].clone()),
        (true.into(), 0.into())
    );
    assert_eq!(app.checked_ledger(&lamp).await, 0);
    assert_eq!(app.stock(&lamp).await, 0, "the instance caught up");
}

#[tokio::test]
async fn an_article_whose_head_nobody_saved_is_decided_on_its_latest_movement() {
    let app = spawn_catalog().await;
    app.article("Chair", 1).await;
    // Another instance's create whose announcement and saved head were both lost.
    let lamp = uuid::Uuid::new_v4().to_string();
    let now = DateTime::now();
    app.db
        .collection::<Document>("stock_movements")
        .insert_one(doc! {
            "_id": format!("{lamp}:1"), "article": &lamp, "position": 1_i64, "kind": "stock",
            "quantity": 3_i64, "balance": 3_i64, "at": now,
        })
        .await
        .expect("MongoDB answers");
    app.db
        .collection::<Document>("articles")
        .insert_one(
            doc! {"_id": &lamp, "name": "Lamp", "description": "", "image": "",
            "price": 5.0, "enabled": true, "key": "lamp", "search": "lamp\n", "created": now,
            "updated": now, "version": 1_i64},
        )
        .await
        .expect("MongoDB answers");
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    app.place_order(&order_id(), &[(&lamp, 2)]).await;

    let answer = replies.next().await["message"].clone();
    assert_eq!(
        (answer["valid"].clone(), answer["stock"].clone()),
        (true.into(), 1.into())
    );
    assert_eq!(app.checked_ledger(&lamp).await, 1);
}

#[tokio::test]
async fn an_admin_edit_on_a_stale_head_is_refused_with_the_true_stock() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    let order = order_id();
    app.db
        .collection::<Document>("stock_movements")
        .insert_one(doc! {
            "_id": format!("{order}:{lamp}:reserve"), "article": &lamp, "position": 2_i64,
            "kind": "reserved", "quantity": -2_i64, "balance": 3_i64, "order": &order,
            "at": DateTime::now(),
        })
        .await
        .expect("MongoDB answers");

    // The admin read 5 at version 1 (this instance still shows that) and sets 8.
    let reply = app.set_stock(&lamp, 8).await;

    reply.assert_is(
        409,
        serde_json::json!({"error": "Conflict: stock changed (now 3 at version 2)"}),
    );
    assert_eq!(app.checked_ledger(&lamp).await, 3);
    assert_eq!(app.set_stock(&lamp, 8).await.status, 200, "after a re-read");
    assert_eq!(app.checked_ledger(&lamp).await, 8);
}
