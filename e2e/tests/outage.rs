//! A checkout made while orders is down is not lost: the `place_order` waits in its durable queue
//! (which orders declared when it first ran) and the order is placed and validated once orders is
//! back. (Had orders never run, the broker would refuse the unroutable `place_order` and cart
//! would send it again later, as after any failed publish.)

use std::time::Duration;

use e2e::System;
use serde_json::json;
use testkit::eventually;

const FLOW: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_checkout_made_while_orders_is_down_becomes_an_order_once_it_is_back() {
    let mut system = System::start().await;
    let admin = system.auth.admin("admin_outage").await;
    let shopper = system.auth.signup("shopper_outage").await;
    let article = system
        .post(
            format!("{}/articles", system.catalog.url),
            Some(&admin),
            &json!({"name": "Kettle", "description": "", "image": "", "price": 30.0, "stock": 2}),
        )
        .await
        .json()["_id"]
        .as_str()
        .expect("an article id")
        .to_owned();
    let line = json!({"articleId": article, "quantity": 1});
    let added = system
        .post(
            format!("{}/cart/article", system.cart.url),
            Some(&shopper),
            &line,
        )
        .await;
    assert_eq!(added.status, 200, "{added}");

    system.stop_orders().await;
    let checkout = system
        .post(
            format!("{}/cart/checkout", system.cart.url),
            Some(&shopper),
            &json!({}),
        )
        .await;
    assert_eq!(checkout.status, 200, "{checkout}");
    let cart_id = checkout.json()["_id"]
        .as_str()
        .expect("a cart id")
        .to_owned();
    let waiting = eventually(FLOW, || async {
        system.vhost.queued("orders.place_order").await >= 1
    })
    .await;
    assert!(waiting, "the place_order never reached its queue");

    system.start_orders().await;
    let orders_url = format!("{}/orders", system.orders.url);
    let validated = eventually(FLOW, || async {
        let orders = system.get(orders_url.clone(), Some(&shopper)).await.json();
        orders.as_array().is_some_and(|orders| {
            orders
                .iter()
                .any(|order| order["cartId"] == cart_id.as_str() && order["status"] == "VALIDATED")
        })
    })
    .await;
    assert!(
        validated,
        "the order of the checkout made during the outage never validated"
    );
    let orders = system.get(orders_url, Some(&shopper)).await.json();
    assert_eq!(
        orders.as_array().map(Vec::len),
        Some(1),
        "one order: {orders}"
    );
}
