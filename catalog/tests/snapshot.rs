//! Reads by id, listings and searches use an in-memory snapshot of the catalog: this instance's
//! writes show in it at once, other instances' writes when announced (`instances.rs`), and writes
//! whose announcement was missed after the next reload; an article read by id that it lacks is
//! looked for in MongoDB.

mod support;

use std::time::Duration;

use mongodb::bson::{Document, doc};
use rabbit::contract::queue;
use support::{spawn_catalog, spawn_catalog_with};

#[tokio::test]
async fn a_reservation_shows_in_listings_and_search_at_once() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 5).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    app.place_order(&uuid::Uuid::new_v4().to_string(), &[(&lamp, 2)])
        .await;
    replies.next().await;

    for path in ["/articles", "/articles/search/lamp"] {
        let reply = app.get(path).await;
        assert_eq!(reply.json()[0]["stock"], 3, "{path}: {reply}");
    }
}

#[tokio::test]
async fn a_write_whose_announcement_was_missed_shows_after_the_reload() {
    let app =
        spawn_catalog_with(|config| config.snapshot_reload = Some(Duration::from_secs(1))).await;
    let lamp = app.article("Lamp", 5).await;

    // What another catalog instance's write does to the document, unannounced.
    app.db
        .collection::<Document>("articles")
        .update_one(
            doc! {"_id": &lamp},
            doc! {"$set": {"price": 42.0}, "$inc": {"version": 1}},
        )
        .await
        .expect("MongoDB answers");

    let seen = testkit::eventually(support::PATIENCE, || async {
        app.get("/articles").await.json()[0]["price"] == 42.0
    })
    .await;
    assert!(seen, "the listing never showed the other instance's write");
}

#[tokio::test]
async fn an_article_another_instance_created_is_found_by_id_before_the_reload() {
    let app = spawn_catalog().await;
    app.article("Lamp", 1).await;
    let id = uuid::Uuid::new_v4().to_string();

    // What another catalog instance's create stores.
    let now = mongodb::bson::DateTime::now();
    app.db
        .collection::<Document>("articles")
        .insert_one(
            doc! {"_id": &id, "name": "Chair", "description": "", "image": "",
            "price": 5.0, "stock": 2_i64, "enabled": true, "key": "chair",
            "search": "chair\n", "created": now, "updated": now, "version": 1_i64},
        )
        .await
        .expect("MongoDB answers");

    let reply = app.get(&format!("/articles/{id}")).await;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json()["name"], "Chair");
}
