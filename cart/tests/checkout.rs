//! Checkout: refusals, the closed cart, and the `place_order` that is kept and re-sent until
//! orders answers with `order_placed`, whatever RabbitMQ or orders were doing at checkout.

mod support;

use std::time::Duration;

use mongodb::bson::{Document, doc};
use rabbit::contract::{exchange, kind, service};
use serde_json::json;
use support::{PATIENCE, id_of, spawn_cart, spawn_cart_with};
use testkit::Vhost;
use testkit_auth::TestAuth;

#[tokio::test]
async fn checking_out_an_empty_cart_is_refused() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.post(Some(&token), "/cart/checkout", None)
        .await
        .assert_is(400, json!({"error": "Cart is empty"}));
}

#[tokio::test]
async fn checking_out_a_cart_with_an_invalid_article_is_refused_with_the_errors() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("fine", true, 3);
    let token = app.user().await;
    app.add(&token, "fine", 1).await;
    let cart = app.add(&token, "withdrawn", 1).await;
    let answered = testkit::eventually(PATIENCE, || async {
        let lines = app.cart(&token).await["articles"].clone();
        lines.as_array().unwrap().len() == 2
            && lines
                .as_array()
                .unwrap()
                .iter()
                .all(|line| line["validated"] == true)
    })
    .await;
    assert!(answered);
    app.post(Some(&token), "/cart/checkout", None)
        .await
        .assert_is(
            400,
            json!({"error": "Cart has invalid articles", "errors": [
                {"articleId": "withdrawn", "message": "The article is not available"}
            ]}),
        );
    let still = app.cart(&token).await;
    assert_eq!(
        (id_of(&still), &still["enabled"]),
        (id_of(&cart), &json!(true))
    );
}

#[tokio::test]
async fn checkout_asks_catalog_about_a_line_it_has_not_answered_about_yet() {
    let app = spawn_cart().await;
    let _catalog = app.catalog_answering_data_only();
    let token = app.user().await;
    let cart = app.add(&token, "made-up", 1).await;
    app.post(Some(&token), "/cart/checkout", None)
        .await
        .assert_is(
            400,
            json!({"error": "Cart has invalid articles", "errors": [
                {"articleId": "made-up", "message": "The article is not available"}
            ]}),
        );
    let still = app.cart(&token).await;
    assert_eq!(id_of(&still), id_of(&cart));
    let line = &still["articles"][0];
    assert_eq!(
        (&line["validated"], &line["valid"]),
        (&json!(true), &json!(false))
    );
}

#[tokio::test]
async fn an_article_enabled_again_in_catalog_no_longer_blocks_checkout() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("back", false, 5);
    let token = app.user().await;
    app.add(&token, "back", 1).await;
    let answered = testkit::eventually(PATIENCE, || async {
        app.cart(&token).await["articles"][0]["validated"] == true
    })
    .await;
    assert!(answered);
    catalog.set("back", true, 5);
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    assert_eq!(closed.status, 200, "{closed}");
    assert_eq!(closed.json()["enabled"], false);
}

#[tokio::test]
async fn checkout_closes_the_cart_and_its_order_is_recorded_when_orders_confirms() {
    let app = spawn_cart().await;
    let orders = app.orders();
    let token = app.user().await;
    let user_id = app.auth.user_id(&token).await;
    app.add(&token, "a", 2).await;
    let reply = app
        .http
        .post(app.url("/cart/checkout"))
        .bearer_auth(&token)
        .header("correlation_id", "checkout-42")
        .send()
        .await
        .unwrap();
    let closed = testkit::Reply::read(reply).await;
    assert_eq!(closed.status, 200, "{closed}");
    let closed = closed.json();
    let cart_id = id_of(&closed);
    assert_eq!(closed["enabled"], false);
    assert_eq!(closed["orderId"], "");
    assert_eq!(closed["articles"][0]["quantity"], 2);

    let ordered = app
        .eventually_ordered(&cart_id, &format!("order-of-{cart_id}"))
        .await;
    assert!(ordered);
    let received = orders.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (correlation_id, order) = &received[0];
    assert_eq!(correlation_id, "checkout-42");
    assert_eq!(
        serde_json::to_value(order).unwrap(),
        json!({"cartId": cart_id, "userId": user_id,
               "articles": [{"articleId": "a", "quantity": 2}]})
    );

    let next = app.cart(&token).await;
    assert_ne!(id_of(&next), cart_id);
    assert_eq!(
        (&next["articles"], &next["enabled"]),
        (&json!([]), &json!(true))
    );
}

/// Both clicks race for the position after the cart: one `CheckedOut` event wins, and the click
/// that lost (it started before that close) answers 200 with the cart the winner closed, never
/// 400 "Cart is empty" from the next cart. One cart is closed and one order sent.
#[tokio::test]
async fn a_double_click_on_checkout_closes_one_cart_and_both_answer_it() {
    let app = spawn_cart().await;
    let orders = app.orders();
    let token = app.user().await;
    let user_id = app.auth.user_id(&token).await;
    let cart_id = id_of(&app.add(&token, "a", 1).await);
    let (first, second) = tokio::join!(
        app.post(Some(&token), "/cart/checkout", None),
        app.post(Some(&token), "/cart/checkout", None),
    );
    for reply in [&first, &second] {
        assert_eq!(reply.status, 200, "{first} / {second}");
        let closed = reply.json();
        assert_eq!(id_of(&closed), cart_id, "{reply}");
        assert_eq!(closed["enabled"], false, "{reply}");
        assert_eq!(closed["articles"][0]["quantity"], 1, "{reply}");
    }

    assert!(
        app.eventually_ordered(&cart_id, &format!("order-of-{cart_id}"))
            .await
    );
    assert_eq!(orders.received.lock().unwrap().len(), 1);
    assert_eq!(app.events_of_user(&user_id, "checkedOut").await.len(), 1);
}

/// A checkout that starts once the close is recorded is no loser of a race: it finds the next,
/// empty cart.
#[tokio::test]
async fn a_checkout_after_a_completed_one_finds_the_next_empty_cart() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a", 1).await;
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    assert_eq!(closed.status, 200, "{closed}");
    app.post(Some(&token), "/cart/checkout", None)
        .await
        .assert_is(400, json!({"error": "Cart is empty"}));
}

/// The checkout holds none of the user's other writes on this instance while it waits for
/// catalog: an add made meanwhile lands in the cart being checked out (catalog holds its replies
/// until the add has answered), and the checkout, finding it in its copy, closes the cart with
/// it after asking catalog about the changed lines.
#[tokio::test]
async fn an_add_during_the_checkouts_catalog_question_is_not_held_and_is_closed_with_the_cart() {
    let app = spawn_cart().await;
    let catalog = app.catalog_answering_data_only();
    let orders = app.orders();
    catalog.set("a", true, 5);
    catalog.set("late", true, 5);
    let token = app.user().await;
    let cart_id = id_of(&app.add(&token, "a", 1).await);
    catalog.answer_data(false);
    let late_add = async {
        let asked = testkit::eventually(PATIENCE, || async {
            catalog.data_requests_for(&cart_id) == 1
        })
        .await;
        assert!(asked, "the checkout asks catalog");
        let added = app.add(&token, "late", 2).await;
        catalog.answer_data(true);
        added
    };
    let (checkout, added) = tokio::join!(app.post(Some(&token), "/cart/checkout", None), late_add);
    assert_eq!(id_of(&added), cart_id, "{added}");
    assert_eq!(checkout.status, 200, "{checkout}");
    let closed = checkout.json();
    assert_eq!(id_of(&closed), cart_id);
    let lines: Vec<_> = closed["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| (line["articleId"].clone(), line["quantity"].clone()))
        .collect();
    assert_eq!(lines, [(json!("a"), json!(1)), (json!("late"), json!(2))]);
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&cart_id) == 1 }).await);
    assert_eq!(orders.received.lock().unwrap()[0].1.articles.len(), 2);
}

#[tokio::test]
async fn a_lost_order_placed_leads_to_a_resend_and_the_cart_ends_with_its_order() {
    let app = spawn_cart_with(|config| {
        config.order_resend_first = Duration::from_millis(300);
        config.order_resend_max = Duration::from_secs(1);
    })
    .await;
    let orders = app.orders();
    orders.answer(false);
    let token = app.user().await;
    app.add(&token, "a", 1).await;
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    assert_eq!(closed.status, 200, "{closed}");
    let cart_id = id_of(&closed.json());
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&cart_id) >= 2 }).await);
    orders.answer(true);
    let ordered = app
        .eventually_ordered(&cart_id, &format!("order-of-{cart_id}"))
        .await;
    assert!(ordered);
    let received = orders.received.lock().unwrap().clone();
    assert!(received.iter().all(|(correlation_id, order)| {
        order.cart_id == cart_id && correlation_id == &received[0].0
    }));
}

/// The broker refuses cart's connection (no write permission on the vhost, so declaring the
/// topology fails) during the checkout, then lets it in: the order is delivered once, as soon as
/// the broker is back, not after the first re-send's delay (an hour here).
#[tokio::test]
async fn a_checkout_while_rabbitmq_is_unreachable_delivers_exactly_one_place_order_later() {
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    vhost.set_write_permission(service::CART, Some("^$")).await;
    let mut config = support::test_config(&vhost, &auth.url);
    config.order_resend_first = Duration::from_secs(3600);
    let app = support::start(vhost, auth, config).await;
    let mongodb_up = testkit::eventually(PATIENCE, || async {
        app.get(None, "/health").await.body["dependencies"]["mongodb"] == "up"
    })
    .await;
    assert!(mongodb_up);

    let token = app.user().await;
    app.add(&token, "a", 3).await;
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    assert_eq!(closed.status, 200, "{closed}");
    let cart_id = id_of(&closed.json());
    let health = app.get(None, "/health").await;
    assert_eq!(health.body["dependencies"]["rabbitmq"], "down", "{health}");

    app.vhost.set_write_permission(service::CART, None).await;
    let orders = support::Orders::start(&app.connect());
    let ordered = app
        .eventually_ordered(&cart_id, &format!("order-of-{cart_id}"))
        .await;
    assert!(ordered);
    assert_eq!(orders.received_for(&cart_id), 1);
    assert_eq!(orders.received.lock().unwrap()[0].1.articles[0].quantity, 3);
}

/// What a crash between closing the cart and publishing leaves behind: a closed cart whose
/// `place_order` was never sent. The re-sender delivers it.
#[tokio::test]
async fn a_checkout_interrupted_before_its_place_order_was_sent_is_delivered_by_the_resender() {
    let app =
        spawn_cart_with(|config| config.order_resend_first = Duration::from_millis(200)).await;
    let orders = app.orders();
    let now = mongodb::bson::DateTime::now();
    let events = [
        doc! {"type": "opened", "userId": "u-1", "number": 0_i64},
        doc! {"type": "lineChanged", "articleId": "a", "quantity": 4_i64},
        doc! {"type": "checkedOut", "correlationId": "checkout-7"},
    ];
    for (position, event) in events.into_iter().enumerate() {
        let position = position as i64;
        let stored = doc! {
            "_id": format!("u-1:0:{position}"), "cart": "u-1:0", "position": position,
            "at": now, "event": event,
        };
        app.db
            .collection::<Document>("cart_events")
            .insert_one(stored)
            .await
            .unwrap();
    }
    let waiting = doc! {"_id": "u-1:0", "attempts": 0_i64, "nextAttempt": now};
    app.db
        .collection::<Document>("waiting_orders")
        .insert_one(waiting)
        .await
        .unwrap();
    assert!(app.eventually_ordered("u-1:0", "order-of-u-1:0").await);
    let received = orders.received.lock().unwrap().clone();
    assert_eq!(received[0].0, "checkout-7");
    assert_eq!(received[0].1.articles[0].quantity, 4);
}

#[tokio::test]
async fn a_second_order_placed_for_a_cart_changes_nothing() {
    let app = spawn_cart().await;
    let orders = app.orders();
    let token = app.user().await;
    let user_id = app.auth.user_id(&token).await;
    app.add(&token, "a", 1).await;
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    let cart_id = id_of(&closed.json());
    let first = format!("order-of-{cart_id}");
    assert!(app.eventually_ordered(&cart_id, &first).await);
    assert_eq!(orders.received_for(&cart_id), 1);

    let again = rabbit::contract::OrderPlaced {
        order_id: "another-order".into(),
        cart_id: cart_id.clone(),
        user_id,
        articles: vec![],
    };
    let envelope = rabbit::Envelope::new(kind::ORDER_PLACED, "test", again);
    app.rabbit
        .speaking_as(service::ORDERS)
        .publish(exchange::SELL_FLOW, kind::ORDER_PLACED, &envelope)
        .await
        .unwrap();
    // Both order_placed messages handled (acked) by cart's consumer.
    let url = format!(
        "http://127.0.0.1:15672/api/queues/{}/cart.order_placed",
        app.vhost.name
    );
    let handled = testkit::eventually(PATIENCE, || async {
        let queue: serde_json::Value = app
            .http
            .get(&url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        queue["message_stats"]["ack"].as_u64() >= Some(2)
    })
    .await;
    assert!(handled);
    assert_eq!(app.order_of(&cart_id).await, Some(first));
    assert_eq!(app.events(&cart_id, "orderRecorded").await.len(), 1);
}
