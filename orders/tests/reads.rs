//! Reading orders (CONTRACT section 8): a caller's list, newest first; one order for its owner or
//! an admin and 404 for anyone else; every route behind a valid token.

mod support;

use serde_json::json;
use support::spawn_orders;

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
