//! Odd path segments (review L1): an article id in a path that no line can have (a NUL or
//! another control character, bytes that are not UTF-8, longer than an id may be) is 404 on every
//! route before the store is asked, and such an id in a body is refused 400 with its path.

mod support;

use serde_json::json;
use support::spawn_cart;

#[tokio::test]
async fn odd_article_ids_in_paths_are_not_found_and_change_nothing() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let cart = app.add(&token, "lamp", 1).await;
    let not_found = json!({"error": "Not found"});

    // `%zz` stays as it is, an id a line may have (cart_lines.rs): not odd here.
    for id in testkit::odd_path_segments()
        .into_iter()
        .filter(|id| id != "%zz")
    {
        for action in ["increment", "decrement"] {
            app.post(Some(&token), &format!("/cart/article/{id}/{action}"), None)
                .await
                .assert_is(404, not_found.clone());
        }
        app.delete(Some(&token), &format!("/cart/article/{id}"))
            .await
            .assert_is(404, not_found.clone());
    }

    assert_eq!(app.cart(&token).await["articles"], cart["articles"]);
}

#[tokio::test]
async fn an_article_id_with_control_characters_is_refused_with_its_path() {
    let app = spawn_cart().await;
    let token = app.user().await;
    for id in ["a\u{0}b", "\u{0}", "a\nb", "\u{1b}[31m", "a\u{7f}"] {
        let body = json!({"articleId": id, "quantity": 1});
        let reply = app.post(Some(&token), "/cart/article", Some(body)).await;
        reply.assert_field_errors(&["articleId"]);
    }
}
