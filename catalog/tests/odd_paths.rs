//! Odd path segments (review L1): a search text holding a NUL or another control character is
//! refused 400 with path `text` before the store is asked, with or without the snapshot (MongoDB
//! would answer a `$regex` holding a NUL with an error, FerretDB takes it), and an article id no
//! article has (a NUL, bytes that are not UTF-8, a very long one) is 404 on every route.

mod support;

use serde_json::json;
use support::{both_ways, spawn_catalog};

#[tokio::test]
async fn search_text_with_control_characters_is_refused_with_its_path_either_way() {
    for app in both_ways().await {
        app.create("a b", "", 1.0, 1).await;
        for text in ["a%00b", "%00", "a%01b", "a%0Ab", "%1B", "%7F", "a%C2%85b"] {
            let reply = app.get(&format!("/articles/search/{text}")).await;
            reply.assert_field_errors(&["text"]);
            assert_eq!(
                reply.body["messages"][0]["message"], "must not contain control characters",
                "{text}: {reply}"
            );
        }
    }
}

#[tokio::test]
async fn every_odd_search_segment_is_refused_400_with_path_text() {
    let app = spawn_catalog().await;
    for text in testkit::odd_path_segments() {
        let reply = app.get(&format!("/articles/search/{text}")).await;
        reply.assert_field_errors(&["text"]);
    }
}

#[tokio::test]
async fn odd_article_ids_are_not_found_on_every_route() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let body = json!({"name": "Lamp", "description": "", "image": "", "price": 1.0, "stock": 1});
    let not_found = json!({"error": "Not found"});

    for id in testkit::odd_path_segments() {
        let path = format!("/articles/{id}");
        app.get(&path).await.assert_is(404, not_found.clone());
        app.put(&path, Some(&admin), &body)
            .await
            .assert_is(404, not_found.clone());
        app.post(&path, Some(&admin), &body)
            .await
            .assert_is(404, not_found.clone());
        app.delete(&path, Some(&admin))
            .await
            .assert_is(404, not_found.clone());
    }
}
