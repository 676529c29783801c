//! MongoDB going away and coming back: while it is down, writes answer 503 promptly, reads answer
//! from the in-memory snapshot (503 without one), and messages that need MongoDB wait, neither
//! lost nor dead-lettered; once it is back, everything works again without a restart.

mod support;

use std::time::Duration;

use rabbit::contract::queue;
use serde_json::json;
use support::spawn_catalog_with;
use testkit::PrivateMongo;

fn unavailable() -> serde_json::Value {
    json!({"error": "Service unavailable"})
}

#[tokio::test]
async fn writes_are_503_and_orders_wait_while_mongodb_is_down_and_reads_go_on() {
    let mut mongo = PrivateMongo::start().await;
    let app = spawn_catalog_with(|config| config.mongo_url = mongo.url()).await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 3).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    mongo.kill();

    let body = json!({"name": "Lamp", "price": 1, "stock": 1});
    let path = format!("/articles/{id}");
    app.put(&path, Some(&admin), &body)
        .await
        .assert_is(503, unavailable());
    app.post("/articles", Some(&admin), &body)
        .await
        .assert_is(503, unavailable());
    app.delete(&path, Some(&admin))
        .await
        .assert_is(503, unavailable());
    let health = app.get("/health").await;
    assert_eq!(health.status, 503, "{health}");
    assert_eq!(health.json()["dependencies"]["mongodb"], "down", "{health}");
    // Reads answer from the snapshot, which no write can have outdated meanwhile.
    assert_eq!(app.stock(&id).await, 3);
    let found = app.get("/articles/search/lamp").await;
    assert_eq!(found.json()[0]["_id"], id.as_str(), "{found}");

    let order = uuid::Uuid::new_v4().to_string();
    app.place_order(&order, &[(&id, 2)]).await;
    // The handler met the outage at least once: the message is held, unacknowledged.
    let tried = testkit::eventually(Duration::from_secs(20), || async {
        app.queue_info(queue::CATALOG_ORDER_PLACED).await["messages_unacknowledged"] == 1
    })
    .await;
    assert!(tried, "the order was never delivered to catalog");

    mongo.restart().await;

    // Neither lost nor dead-lettered: answered once MongoDB is back.
    let reply = replies.next().await;
    assert_eq!(reply["message"]["valid"], true, "{reply}");
    assert_eq!(app.stock(&id).await, 1);
}

#[tokio::test]
async fn without_the_snapshot_reads_are_503_while_mongodb_is_down() {
    let mut mongo = PrivateMongo::start().await;
    let app = spawn_catalog_with(|config| {
        config.mongo_url = mongo.url();
        config.snapshot_reload = None;
    })
    .await;
    let id = app.article("Lamp", 3).await;

    mongo.kill();

    for path in [
        format!("/articles/{id}"),
        "/articles".into(),
        "/articles/search/lamp".into(),
    ] {
        app.get(&path).await.assert_is(503, unavailable());
    }

    mongo.restart().await;

    let back = testkit::eventually(support::PATIENCE, || async {
        app.get(&format!("/articles/{id}")).await.status == 200
    })
    .await;
    assert!(back, "reads never succeeded again after MongoDB came back");
}
