//! The article endpoints (CONTRACT section 6): public reads, admin-only writes checked at the real
//! auth service, field validation with JSON paths, soft delete and pagination.

mod support;

use serde_json::{Value, json};
use support::{both_ways, spawn_catalog};

fn lamp() -> Value {
    json!({"name": "Desk lamp", "description": "Warm light", "image": "img-1",
           "price": 19.99, "stock": 7})
}

#[tokio::test]
async fn an_admin_creates_an_article_and_anyone_reads_it() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;

    let created = app.post("/articles", Some(&admin), &lamp()).await;

    assert_eq!(created.status, 200, "{created}");
    let article = created.json();
    let id = article["_id"].as_str().expect("an _id");
    uuid::Uuid::parse_str(id).expect("a UUID _id");
    assert_eq!(
        article,
        json!({"_id": id, "name": "Desk lamp", "description": "Warm light", "image": "img-1",
               "price": 19.99, "stock": 7, "stockVersion": 1, "enabled": true})
    );
    app.get(&format!("/articles/{id}"))
        .await
        .assert_is(200, article.clone());
    let with_bad_token = app
        .http
        .get(app.url(&format!("/articles/{id}")))
        .header("authorization", "bearer revoked-or-forged");
    app.send(with_bad_token).await.assert_is(200, article);
}

#[tokio::test]
async fn writes_without_a_token_are_401_and_for_a_non_admin_403() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 1).await;
    let user = app.auth.signup("shopper01").await;

    for (token, status, error) in [
        (None, 401, "Unauthorized"),
        (Some("not-a-token"), 401, "Unauthorized"),
        (Some(user.as_str()), 403, "Forbidden"),
    ] {
        let expected = json!({ "error": error });
        app.post("/articles", token, &lamp())
            .await
            .assert_is(status, expected.clone());
        app.post(&format!("/articles/{id}"), token, &lamp())
            .await
            .assert_is(status, expected.clone());
        app.put(&format!("/articles/{id}"), token, &lamp())
            .await
            .assert_is(status, expected.clone());
        app.delete(&format!("/articles/{id}"), token)
            .await
            .assert_is(status, expected);
    }
    assert_eq!(app.stock(&id).await, 1, "nothing changed");
}

#[tokio::test]
async fn post_and_put_on_an_article_both_replace_what_an_admin_sets() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 1).await;

    let mut body = lamp();
    body["stockVersion"] = json!(1);
    let updated = app
        .post(&format!("/articles/{id}"), Some(&admin), &body)
        .await;
    let mut expected = lamp();
    expected["_id"] = json!(id);
    expected["enabled"] = json!(true);
    expected["stockVersion"] = json!(2);
    updated.assert_is(200, expected.clone());

    body["price"] = json!(5);
    body["stock"] = json!(0);
    body["stockVersion"] = json!(2);
    let replaced = app
        .put(&format!("/articles/{id}"), Some(&admin), &body)
        .await;
    expected["price"] = json!(5.0);
    expected["stock"] = json!(0);
    expected["stockVersion"] = json!(3);
    replaced.assert_is(200, expected.clone());
    app.get(&format!("/articles/{id}"))
        .await
        .assert_is(200, expected);
}

#[tokio::test]
async fn an_update_with_the_stock_it_read_changes_no_stock_and_needs_no_version() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 7).await;

    let renamed = app
        .put(&format!("/articles/{id}"), Some(&admin), &lamp())
        .await;

    assert_eq!(renamed.status, 200, "{renamed}");
    assert_eq!(renamed.json()["name"], "Desk lamp");
    assert_eq!(renamed.json()["stockVersion"], 1, "no movement: {renamed}");
    assert_eq!(app.movements(&id).await.len(), 1);
}

#[tokio::test]
async fn a_stock_change_without_its_version_or_after_another_movement_is_409() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 3).await;
    let path = format!("/articles/{id}");
    let mut body = lamp();

    let missing = app.put(&path, Some(&admin), &body).await;
    missing.assert_is(
        409,
        json!({"error": "Conflict: a stock change needs the stockVersion it was read at \
                         (now 3 at version 1)"}),
    );
    body["stockVersion"] = json!(1);
    assert_eq!(app.put(&path, Some(&admin), &body).await.status, 200);
    body["stock"] = json!(9);
    let stale = app.put(&path, Some(&admin), &body).await;
    stale.assert_is(
        409,
        json!({"error": "Conflict: stock changed (now 7 at version 2)"}),
    );
    assert_eq!(app.get(&path).await.json()["name"], "Desk lamp");

    // The version may come as If-Match instead.
    body.as_object_mut().unwrap().remove("stockVersion");
    let request = app
        .http
        .put(app.url(&path))
        .header("authorization", format!("bearer {admin}"))
        .header("if-match", "\"2\"")
        .json(&body);
    let matched = app.send(request).await;
    assert_eq!(matched.status, 200, "{matched}");
    assert_eq!(
        (
            matched.json()["stock"].clone(),
            matched.json()["stockVersion"].clone()
        ),
        (json!(9), json!(3))
    );
    assert_eq!(app.checked_ledger(&id).await, 9);
}

#[tokio::test]
async fn a_form_read_before_another_stock_change_is_409_even_when_it_asks_for_the_stock_of_now() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 10).await;
    let path = format!("/articles/{id}");
    // Two admins load the form at version 1 (stock 10); each means to add 10.
    let mut form = lamp();
    form["stock"] = json!(20);
    form["stockVersion"] = json!(1);

    assert_eq!(app.put(&path, Some(&admin), &form).await.status, 200);
    let second = app.put(&path, Some(&admin), &form).await;

    second.assert_is(
        409,
        json!({"error": "Conflict: stock changed (now 20 at version 2)"}),
    );
    // A stale form that leaves the stock as it read it changes the rest, not the stock.
    form["stock"] = json!(10);
    form["description"] = json!("Brighter");
    let described = app.put(&path, Some(&admin), &form).await;
    assert_eq!(described.status, 200, "{described}");
    assert_eq!(described.json()["description"], "Brighter");
    assert_eq!(described.json()["stock"], 20, "{described}");
    assert_eq!(app.checked_ledger(&id).await, 20);
}

#[tokio::test]
async fn every_field_error_comes_back_at_once_with_its_json_name() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 1).await;
    let body = json!({"name": "", "description": "x".repeat(2049), "image": "y".repeat(101),
                      "price": -0.01, "stock": 2.5});

    app.post("/articles", Some(&admin), &body)
        .await
        .assert_field_errors(&["name", "description", "image", "price", "stock"]);
    app.put(&format!("/articles/{id}"), Some(&admin), &body)
        .await
        .assert_field_errors(&["name", "description", "image", "price", "stock"]);
}

#[tokio::test]
async fn null_missing_or_textual_numbers_are_400_with_their_path() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;

    for (price, stock) in [
        (json!(null), json!(null)),
        (json!("1.5"), json!("3")),
        (json!(-1), json!(-1)),
    ] {
        let body = json!({"name": "Lamp", "price": price, "stock": stock});
        app.post("/articles", Some(&admin), &body)
            .await
            .assert_field_errors(&["price", "stock"]);
    }
    app.post("/articles", Some(&admin), &json!({"name": "Lamp"}))
        .await
        .assert_field_errors(&["price", "stock"]);
}

#[tokio::test]
async fn a_new_articles_id_or_enabled_flag_is_refused_and_other_fields_ignored() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let mut body = lamp();
    body["_id"] = json!("chosen-by-client");
    body["enabled"] = json!(false);

    app.post("/articles", Some(&admin), &body)
        .await
        .assert_field_errors(&["_id", "enabled"]);

    let mut body = lamp();
    body["colour"] = json!("red");
    let created = app.post("/articles", Some(&admin), &body).await;
    assert_eq!(created.status, 200, "{created}");
    assert!(created.json().get("colour").is_none(), "{created}");
}

#[tokio::test]
async fn a_client_that_sends_back_the_article_it_read_updates_it() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 4).await;
    let path = format!("/articles/{id}");

    let mut article = app.get(&path).await.json();
    article["price"] = json!(12.5);
    let updated = app.post(&path, Some(&admin), &article).await;
    updated.assert_is(200, article.clone());

    article["stock"] = json!(6);
    let restocked = app.put(&path, Some(&admin), &article).await;
    assert_eq!(restocked.status, 200, "{restocked}");
    assert_eq!(
        (
            &restocked.json()["stock"],
            &restocked.json()["stockVersion"]
        ),
        (&json!(6), &json!(2))
    );
}

#[tokio::test]
async fn an_update_naming_another_article_or_another_enabled_state_is_400() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 4).await;
    let other = app.article("Chair", 2).await;
    let path = format!("/articles/{id}");
    let article = app.get(&path).await.json();

    let mut moved = article.clone();
    moved["_id"] = json!(other);
    app.post(&path, Some(&admin), &moved)
        .await
        .assert_field_errors(&["_id"]);

    let mut disabled = article.clone();
    disabled["enabled"] = json!(false);
    app.post(&path, Some(&admin), &disabled).await.assert_is(
        400,
        json!({"messages": [{"path": "enabled",
            "message": "is read-only: the article is enabled; DELETE /articles/{id} disables it"}]}),
    );
    assert_eq!(app.get(&path).await.json(), article, "nothing changed");
    assert_eq!(
        app.get(&format!("/articles/{other}")).await.json()["name"],
        "Chair"
    );

    assert_eq!(app.delete(&path, Some(&admin)).await.status, 200);
    let mut gone = app.get(&path).await.json();
    assert_eq!(gone["enabled"], false);
    gone["name"] = json!("Old lamp");
    let renamed = app.post(&path, Some(&admin), &gone).await;
    renamed.assert_is(200, gone);
}

#[tokio::test]
async fn malformed_or_oversized_bodies_are_refused_as_json() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let post = |body: String| {
        app.http
            .post(app.url("/articles"))
            .header("authorization", format!("bearer {admin}"))
            .header("content-type", "application/json")
            .body(body)
    };

    let reply = app.send(post("{\"name\":".into())).await;
    assert_eq!(reply.status, 400, "{reply}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON")
    );
    let reply = app.send(post("[1, 2]".into())).await;
    assert_eq!(reply.status, 400, "{reply}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON")
    );
    let huge = json!({"name": "Lamp", "description": "x".repeat(70_000), "price": 1, "stock": 1});
    app.send(post(huge.to_string()))
        .await
        .assert_is(413, json!({"error": "Payload too large"}));
}

#[tokio::test]
async fn unknown_ids_are_404_for_reads_and_writes() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let not_found = json!({"error": "Not found"});

    for id in [
        uuid::Uuid::new_v4().to_string(),
        "not-an-id".into(),
        "%24where".into(),
    ] {
        let path = format!("/articles/{id}");
        app.get(&path).await.assert_is(404, not_found.clone());
        app.post(&path, Some(&admin), &lamp())
            .await
            .assert_is(404, not_found.clone());
        app.put(&path, Some(&admin), &lamp())
            .await
            .assert_is(404, not_found.clone());
        app.delete(&path, Some(&admin))
            .await
            .assert_is(404, not_found.clone());
    }
}

#[tokio::test]
async fn delete_is_a_soft_delete_that_hides_the_article_from_listings() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let id = app.article("Lamp", 3).await;

    let path = format!("/articles/{id}");
    app.delete(&path, Some(&admin))
        .await
        .assert_is(200, json!({}));
    app.delete(&path, Some(&admin))
        .await
        .assert_is(200, json!({}));

    let article = app.get(&path).await;
    assert_eq!(article.status, 200, "{article}");
    assert_eq!(article.json()["enabled"], false);
    app.get("/articles").await.assert_is(200, json!([]));
    // An update keeps it deleted: enabled is the catalog's, not the body's.
    let mut body = lamp();
    body["stock"] = json!(3);
    let updated = app.put(&path, Some(&admin), &body).await;
    assert_eq!(updated.json()["enabled"], false, "{updated}");
}

#[tokio::test]
async fn listings_are_sorted_by_name_and_paginated() {
    for app in both_ways().await {
        for name in ["cherry", "Banana", "apple", "Éclair", "date"] {
            app.article(name, 1).await;
        }
        let names = |reply: testkit::Reply| -> Vec<String> {
            assert_eq!(reply.status, 200, "{reply}");
            reply
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|article| article["name"].as_str().unwrap().to_owned())
                .collect()
        };

        assert_eq!(
            names(app.get("/articles").await),
            ["apple", "Banana", "cherry", "date", "Éclair"]
        );
        assert_eq!(
            names(app.get("/articles?skip=1&limit=2").await),
            ["Banana", "cherry"]
        );
        assert_eq!(
            names(app.get("/articles?skip=10").await),
            Vec::<String>::new()
        );
    }
}

#[tokio::test]
async fn a_limit_above_200_or_a_bad_skip_is_400_with_its_name() {
    let app = spawn_catalog().await;

    app.get("/articles?limit=201")
        .await
        .assert_field_errors(&["limit"]);
    app.get("/articles?limit=0")
        .await
        .assert_field_errors(&["limit"]);
    app.get("/articles?skip=-1&limit=x")
        .await
        .assert_field_errors(&["skip", "limit"]);
    assert_eq!(app.get("/articles?limit=200").await.status, 200);
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths_are_json_errors() {
    let app = spawn_catalog().await;

    let patch = app.http.patch(app.url("/articles"));
    app.send(patch)
        .await
        .assert_is(405, json!({"error": "Method not allowed"}));
    app.get("/articles/a/b/c")
        .await
        .assert_is(404, json!({"error": "Not found"}));
}

#[tokio::test]
async fn health_reports_mongodb_and_rabbitmq() {
    let app = spawn_catalog().await;

    app.get("/health").await.assert_is(
        200,
        json!({"status": "up", "dependencies": {"mongodb": "up", "rabbitmq": "up"}}),
    );
}
