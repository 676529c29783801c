//! MongoDB going away and coming back: while it is down, REST requests that need it answer 503
//! promptly (listings and search do not: they read the in-memory snapshot) and messages wait (neither lost nor dead-lettered); once it is back, everything works
//! again without a restart.

mod support;

use std::time::Duration;

use rabbit::contract::queue;
use serde_json::json;
use support::{FerretServer, spawn_catalog_with};

#[tokio::test]
async fn requests_are_503_and_messages_wait_while_mongodb_is_down() {
    let mut mongo = FerretServer::start().await;
    let app = spawn_catalog_with(|config| config.mongo_url = mongo.url()).await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 3).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    mongo.kill();

    let unavailable = json!({"error": "Service unavailable"});
    app.get(&format!("/articles/{id}"))
        .await
        .assert_is(503, unavailable.clone());
    // Listings and search read the in-memory snapshot, which no write can have outdated.
    let found = app.get("/articles/search/lamp").await;
    assert_eq!(found.status, 200, "{found}");
    assert_eq!(found.json()[0]["_id"], id.as_str(), "{found}");
    app.put(
        &format!("/articles/{id}"),
        Some(&admin),
        &json!({"name": "Lamp", "price": 1, "stock": 1}),
    )
    .await
    .assert_is(503, unavailable);
    let health = app.get("/health").await;
    assert_eq!(health.status, 503, "{health}");
    assert_eq!(health.json()["dependencies"]["mongodb"], "down", "{health}");

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
