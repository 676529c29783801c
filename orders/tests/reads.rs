//! Reading orders (CONTRACT section 8): a caller's list, newest first; one order for its owner or
//! an admin and 404 for anyone else; every route behind a valid token. Both reads are served from
//! the read models in Redis, and from the store when Redis lacks them or is down (README "Reads").

mod support;

use mongodb::bson::{Document, doc};
use serde_json::json;
use support::{spawn_orders, spawn_ready_orders_with};

#[tokio::test]
async fn another_user_sees_no_order_and_cannot_pay_it() {
    let app = spawn_orders().await;
    let (owner, owner_id) = app.user("buyer01").await;
    let (stranger, _) = app.user("stranger01").await;
    let order_id = app
        .validated_order(&owner, &owner_id, &[("a", 1, 5.0)])
        .await;
    let not_found = json!({"error": "Not found"});

    for path in [
        format!("/orders/{order_id}"),
        format!("/orders/{order_id}/update"),
    ] {
        app.get(&path, Some(&stranger))
            .await
            .assert_is(404, not_found.clone());
    }
    app.post(
        &format!("/orders/{order_id}/payment"),
        Some(&stranger),
        &json!({"method": "CASH", "amount": 5}),
    )
    .await
    .assert_is(404, not_found.clone());
    app.get("/orders", Some(&stranger))
        .await
        .assert_is(200, json!([]));
    let order = app.get(&format!("/orders/{order_id}"), Some(&owner)).await;
    assert_eq!(order.json()["payments"], json!([]));
}

#[tokio::test]
async fn an_admin_reads_any_order_but_only_its_owner_pays() {
    let app = spawn_orders().await;
    let (owner, owner_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&owner, &owner_id, &[("a", 1, 5.0)])
        .await;

    let read = app.get(&format!("/orders/{order_id}"), Some(&admin)).await;
    assert_eq!(read.status, 200, "{read}");
    let rebuilt = app
        .get(&format!("/orders/{order_id}/update"), Some(&admin))
        .await;
    assert_eq!(rebuilt.status, 200, "{rebuilt}");
    app.post(
        &format!("/orders/{order_id}/payment"),
        Some(&admin),
        &json!({"method": "CASH", "amount": 5}),
    )
    .await
    .assert_is(404, json!({"error": "Not found"}));
}

#[tokio::test]
async fn every_order_route_needs_a_valid_token() {
    let app = spawn_orders().await;
    let order_id = uuid::Uuid::new_v4();
    let unauthorized = json!({"error": "Unauthorized"});

    for path in [
        "/orders".to_owned(),
        format!("/orders/{order_id}"),
        format!("/orders/{order_id}/update"),
        "/orders_batch/placed".to_owned(),
    ] {
        for token in [None, Some("not-a-token")] {
            app.get(&path, token)
                .await
                .assert_is(401, unauthorized.clone());
        }
    }
    app.post(
        &format!("/orders/{order_id}/payment"),
        None,
        &json!({"method": "CASH", "amount": 1}),
    )
    .await
    .assert_is(401, unauthorized);
}

#[tokio::test]
async fn the_list_holds_the_callers_orders_newest_first() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let (_, other_id) = app.user("other001").await;
    let older = app
        .validated_order(&token, &user_id, &[("a", 2, 1.5)])
        .await;
    let newer = app
        .placed_order(&user_id, vec![support::line("a", 1), support::line("b", 1)])
        .await;
    app.placed_order(&other_id, vec![support::line("a", 1)])
        .await;

    let list = app.get("/orders", Some(&token)).await;

    assert_eq!(list.status, 200, "{list}");
    let list = list.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|order| order["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer.as_str(), older.as_str()]);
    let summary = &list[1];
    let mut keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "articles",
            "cartId",
            "created",
            "id",
            "status",
            "totalPayment",
            "totalPrice",
            "updated"
        ]
    );
    assert_eq!(summary["articles"], json!(1));
    assert_eq!(summary["totalPrice"], json!(3.0));
    assert_eq!(summary["status"], "VALIDATED");
    assert!(
        summary["created"].as_str().unwrap().ends_with('Z'),
        "{summary}"
    );
}

#[tokio::test]
async fn reads_are_served_from_redis_and_from_the_store_once_redis_lacks_them() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 2, 1.5)])
        .await;
    let path = format!("/orders/{order_id}");
    let live = app.get(&path, Some(&token)).await;
    let live_list = app.get("/orders", Some(&token)).await;
    assert_eq!(live.json()["status"], "VALIDATED", "{live}");
    assert_eq!(live.header("content-type"), Some("application/json"));
    assert_eq!(live.header("access-control-allow-origin"), Some("*"));
    assert_eq!(live_list.header("content-type"), Some("application/json"));
    // The stored projection changes behind the service's back.
    app.db
        .collection::<Document>("orders")
        .update_many(
            doc! {"orderId": &order_id},
            doc! {"$set": {"status": "INVALID"}},
        )
        .await
        .unwrap();

    let cached = app.get(&path, Some(&token)).await;
    let cached_list = app.get("/orders", Some(&token)).await;

    assert_eq!(cached.bytes, live.bytes, "{cached}");
    assert_eq!(cached_list.bytes, live_list.bytes, "{cached_list}");
    app.forget_read_model(&format!("order:{order_id}")).await;
    let stored = app.get(&path, Some(&token)).await;
    assert_eq!(stored.json()["status"], "INVALID", "{stored}");
    app.forget_read_model(&format!("order-summary:{order_id}"))
        .await;
    let stored_list = app.get("/orders", Some(&token)).await;
    assert_eq!(stored_list.json()[0]["status"], "INVALID", "{stored_list}");
    // Without the user's set, the list is read from the store by user.
    app.forget_read_model(&format!("orders:{user_id}")).await;
    app.forget_read_model(&format!("order-summary:{order_id}"))
        .await;
    let listed_again = app.get("/orders", Some(&token)).await;
    assert_eq!(listed_again.bytes, stored_list.bytes, "{listed_again}");
    // A rebuild folds the events again: the store and the read models are repaired, though
    // the copy in Redis is at the same position.
    let rebuilt = app.get(&format!("{path}/update"), Some(&token)).await;
    assert_eq!(rebuilt.bytes, live.bytes, "{rebuilt}");
    assert_eq!(app.get(&path, Some(&token)).await.bytes, live.bytes);
    assert_eq!(
        app.get("/orders", Some(&token)).await.bytes,
        live_list.bytes
    );
}

#[tokio::test]
async fn what_redis_serves_is_byte_for_byte_what_the_writes_answer() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 3, 0.1), ("b", 1, 0.2)])
        .await;
    let path = format!("/orders/{order_id}");

    let paid = app
        .pay(
            &order_id,
            &token,
            None,
            &json!({"method": "CASH", "amount": 0.2}),
        )
        .await;
    let read = app.get(&path, Some(&token)).await;

    assert_eq!(paid.status, 200, "{paid}");
    assert_eq!(read.bytes, paid.bytes, "{read}");
    let rebuilt = app.get(&format!("{path}/update"), Some(&token)).await;
    assert_eq!(rebuilt.bytes, read.bytes, "{rebuilt}");
}

#[tokio::test]
async fn another_users_order_is_not_found_whether_or_not_redis_has_it() {
    let app = spawn_orders().await;
    let (owner, owner_id) = app.user("buyer01").await;
    let (stranger, _) = app.user("stranger01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&owner, &owner_id, &[("a", 1, 5.0)])
        .await;
    let path = format!("/orders/{order_id}");
    let not_found = json!({"error": "Not found"});
    let owners = app.get(&path, Some(&owner)).await;

    // Not in Redis: the stranger's read goes to the store, and puts the order in Redis.
    app.forget_read_model(&format!("order:{order_id}")).await;
    app.get(&path, Some(&stranger))
        .await
        .assert_is(404, not_found.clone());
    // In Redis now, under its owner.
    app.get(&path, Some(&stranger))
        .await
        .assert_is(404, not_found.clone());
    let admins = app.get(&path, Some(&admin)).await;
    assert_eq!(admins.bytes, owners.bytes, "{admins}");
    app.forget_read_model(&format!("order:{order_id}")).await;
    let admins = app.get(&path, Some(&admin)).await;
    assert_eq!(admins.bytes, owners.bytes, "{admins}");
    app.get("/orders", Some(&stranger))
        .await
        .assert_is(200, json!([]));
}

#[tokio::test]
async fn with_redis_down_reads_and_writes_answer_from_the_store() {
    let nowhere = format!("redis://127.0.0.1:{}", testkit::free_port());
    let app = spawn_ready_orders_with(|config| config.redis_url = nowhere).await;
    let (token, user_id) = app.user("buyer01").await;
    let (stranger, _) = app.user("stranger01").await;
    let older = app
        .validated_order(&token, &user_id, &[("a", 2, 1.5)])
        .await;
    let newer = app
        .placed_order(&user_id, vec![support::line("b", 1)])
        .await;

    let paid = app
        .pay(
            &older,
            &token,
            None,
            &json!({"method": "DEBIT", "amount": 1}),
        )
        .await;
    let read = app.get(&format!("/orders/{older}"), Some(&token)).await;
    let list = app.get("/orders", Some(&token)).await;

    assert_eq!(paid.status, 200, "{paid}");
    assert_eq!(read.bytes, paid.bytes, "{read}");
    let list = list.json();
    assert_eq!(list[0]["id"], json!(newer), "{list}");
    assert_eq!(list[1]["id"], json!(older), "{list}");
    assert_eq!(list[1]["totalPayment"], json!(1.0), "{list}");
    app.get(&format!("/orders/{older}"), Some(&stranger))
        .await
        .assert_is(404, json!({"error": "Not found"}));
}
