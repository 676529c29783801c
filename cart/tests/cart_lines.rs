//! The cart's lines through REST: one active cart per user, adding, incrementing, decrementing and
//! removing, field errors, concurrency, and isolation between users.

mod support;

use serde_json::json;
use support::{id_of, line, spawn_cart};

#[tokio::test]
async fn a_new_user_gets_an_empty_active_cart_that_stays_the_same() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let cart = app.cart(&token).await;
    assert_eq!(cart["userId"], app.auth.user_id(&token).await);
    assert_eq!(cart["orderId"], "");
    assert_eq!(cart["articles"], json!([]));
    assert_eq!(cart["enabled"], true);
    for field in ["created", "updated"] {
        let time = cart[field].as_str().expect("a timestamp");
        assert!(time.contains('T') && time.ends_with('Z'), "{field}: {time}");
    }
    assert_eq!(id_of(&app.cart(&token).await), id_of(&cart));
}

#[tokio::test]
async fn adding_an_article_twice_adds_to_its_line() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a", 2).await;
    app.add(&token, "b", 1).await;
    let cart = app.add(&token, "a", 3).await;
    assert_eq!(
        cart["articles"],
        json!([
            {"articleId": "a", "quantity": 5, "valid": false, "validated": false},
            {"articleId": "b", "quantity": 1, "valid": false, "validated": false},
        ])
    );
    assert_eq!(app.cart(&token).await["articles"], cart["articles"]);
}

#[tokio::test]
async fn increment_and_decrement_change_a_line_and_zero_removes_it() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a", 1).await;
    let reply = app
        .post(Some(&token), "/cart/article/a/increment", None)
        .await;
    assert_eq!(line(&reply.json(), "a").unwrap()["quantity"], 2);
    let reply = app
        .post(Some(&token), "/cart/article/a/decrement", None)
        .await;
    assert_eq!(line(&reply.json(), "a").unwrap()["quantity"], 1);
    let reply = app
        .post(Some(&token), "/cart/article/a/decrement", None)
        .await;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json()["articles"], json!([]));
}

#[tokio::test]
async fn changing_an_article_that_is_not_in_the_cart_is_not_found() {
    let app = spawn_cart().await;
    let token = app.user().await;
    for action in ["increment", "decrement"] {
        let path = format!("/cart/article/missing/{action}");
        app.post(Some(&token), &path, None)
            .await
            .assert_is(404, json!({"error": "Not found"}));
    }
}

#[tokio::test]
async fn deleting_a_line_removes_it_and_deleting_it_again_changes_nothing() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a", 1).await;
    app.add(&token, "b", 4).await;
    let reply = app.delete(Some(&token), "/cart/article/a").await;
    assert_eq!(reply.status, 200, "{reply}");
    assert!(line(&reply.json(), "a").is_none());
    assert!(line(&reply.json(), "b").is_some());
    let again = app.delete(Some(&token), "/cart/article/a").await;
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.json()["articles"], reply.json()["articles"]);
}

#[tokio::test]
async fn bad_lines_are_refused_with_the_path_of_the_field() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let long_id = "x".repeat(cart::MAX_ARTICLE_ID_LEN + 1);
    let cases = [
        (json!({"quantity": 1}), vec!["articleId"]),
        (json!({"articleId": "", "quantity": 1}), vec!["articleId"]),
        (json!({"articleId": "  ", "quantity": 1}), vec!["articleId"]),
        (json!({"articleId": 42, "quantity": 1}), vec!["articleId"]),
        (
            json!({"articleId": long_id, "quantity": 1}),
            vec!["articleId"],
        ),
        (json!({"articleId": "a"}), vec!["quantity"]),
        (json!({"articleId": "a", "quantity": 0}), vec!["quantity"]),
        (json!({"articleId": "a", "quantity": -3}), vec!["quantity"]),
        (json!({"articleId": "a", "quantity": 1.5}), vec!["quantity"]),
        (json!({"articleId": "a", "quantity": "2"}), vec!["quantity"]),
        (
            json!({"articleId": "a", "quantity": null}),
            vec!["quantity"],
        ),
        (
            json!({"articleId": "a", "quantity": cart::MAX_QUANTITY + 1}),
            vec!["quantity"],
        ),
        (json!({}), vec!["articleId", "quantity"]),
    ];
    for (body, paths) in cases {
        let reply = app.post(Some(&token), "/cart/article", Some(body)).await;
        reply.assert_field_errors(&paths);
    }
    assert_eq!(app.cart(&token).await["articles"], json!([]));
}

#[tokio::test]
async fn malformed_json_and_foreign_fields_are_refused() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let reply = app
        .http
        .post(app.url("/cart/article"))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let reply = testkit::Reply::read(reply).await;
    assert_eq!(reply.status, 400, "{reply}");
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON")
    );
    let body = json!({"articleId": "a", "quantity": 1, "userId": "someone-else"});
    let reply = app.post(Some(&token), "/cart/article", Some(body)).await;
    assert_eq!(reply.status, 400, "{reply}");
    assert!(reply.body["error"].as_str().unwrap().contains("userId"));
}

#[tokio::test]
async fn a_line_never_exceeds_the_maximum_quantity() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a", cart::MAX_QUANTITY).await;
    app.post(Some(&token), "/cart/article/a/increment", None)
        .await
        .assert_field_errors(&["quantity"]);
    let body = json!({"articleId": "a", "quantity": 1});
    app.post(Some(&token), "/cart/article", Some(body))
        .await
        .assert_field_errors(&["quantity"]);
}

#[tokio::test]
async fn every_cart_endpoint_needs_a_valid_token() {
    let app = spawn_cart().await;
    let body = Some(json!({"articleId": "a", "quantity": 1}));
    for token in [None, Some("not-a-token")] {
        let replies = [
            app.get(token, "/cart").await,
            app.post(token, "/cart/article", body.clone()).await,
            app.post(token, "/cart/article/a/increment", None).await,
            app.post(token, "/cart/article/a/decrement", None).await,
            app.delete(token, "/cart/article/a").await,
            app.get(token, "/cart/validate").await,
            app.post(token, "/cart/checkout", None).await,
        ];
        for reply in replies {
            reply.assert_is(401, json!({"error": "Unauthorized"}));
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json_errors() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.get(Some(&token), "/cart/nothing")
        .await
        .assert_is(404, json!({"error": "Not found"}));
    app.delete(Some(&token), "/cart")
        .await
        .assert_is(405, json!({"error": "Method not allowed"}));
}

#[tokio::test]
async fn health_reports_both_dependencies_up() {
    let app = spawn_cart().await;
    app.get(None, "/health").await.assert_is(
        200,
        json!({"status": "up", "dependencies": {"mongodb": "up", "rabbitmq": "up"}}),
    );
}

#[tokio::test]
async fn concurrent_first_requests_of_a_new_user_give_one_cart() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let user_id = app.auth.user_id(&token).await;
    let requests = (0..16).map(|_| app.cart(&token));
    let carts = futures_util::future::join_all(requests).await;
    let first = id_of(&carts[0]);
    assert!(carts.iter().all(|cart| id_of(cart) == first), "{carts:?}");
    let opened = app.events_of_user(&user_id, "opened").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
}

#[tokio::test]
async fn concurrent_adds_to_one_cart_keep_every_quantity() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let adds = (1..=12).flat_map(|n| {
        let distinct = format!("article-{n}");
        [("shared".to_owned(), n), (distinct, 1)]
    });
    let requests = adds.map(|(article, quantity)| {
        let token = token.clone();
        let app = &app;
        async move { app.add(&token, &article, quantity).await }
    });
    futures_util::future::join_all(requests).await;
    let cart = app.cart(&token).await;
    assert_eq!(
        line(&cart, "shared").unwrap()["quantity"],
        (1..=12).sum::<i64>()
    );
    assert_eq!(cart["articles"].as_array().unwrap().len(), 13);
}

#[tokio::test]
async fn one_user_never_sees_or_changes_another_users_cart() {
    let app = spawn_cart().await;
    let (alice, bob) = (app.user().await, app.user().await);
    let alices = app.add(&alice, "a", 2).await;
    let bobs = app.cart(&bob).await;
    assert_ne!(id_of(&bobs), id_of(&alices));
    assert_eq!(bobs["articles"], json!([]));
    app.post(Some(&bob), "/cart/article/a/increment", None)
        .await
        .assert_is(404, json!({"error": "Not found"}));
    app.post(Some(&bob), "/cart/article/a/decrement", None)
        .await
        .assert_is(404, json!({"error": "Not found"}));
    app.delete(Some(&bob), "/cart/article/a").await;
    app.post(Some(&bob), "/cart/checkout", None)
        .await
        .assert_is(400, json!({"error": "Cart is empty"}));
    let after = app.cart(&alice).await;
    assert_eq!(id_of(&after), id_of(&alices));
    assert_eq!(after["articles"], alices["articles"]);
    assert_eq!(after["enabled"], true);
}

#[tokio::test]
async fn article_ids_in_paths_are_percent_decoded() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a b/c", 1).await;
    let reply = app
        .post(Some(&token), "/cart/article/a%20b%2Fc/increment", None)
        .await;
    assert_eq!(line(&reply.json(), "a b/c").unwrap()["quantity"], 2);
    let reply = app.delete(Some(&token), "/cart/article/a%20b%2Fc").await;
    assert_eq!(reply.json()["articles"], json!([]));
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let body = json!({"articleId": "a", "quantity": 1, "padding": "x".repeat(70 * 1024)});
    app.post(Some(&token), "/cart/article", Some(body))
        .await
        .assert_is(413, json!({"error": "Payload too large"}));
}
