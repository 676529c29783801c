//! Dependencies failing: MongoDB down, RabbitMQ closing the connection, and tokens revoked by
//! auth's logout broadcast. Redis down is in `reads.rs`.

mod support;

use rabbit::contract::{exchange, kind, service};
use serde_json::json;
use support::{PATIENCE, line, spawn_cart};
use testkit::Vhost;
use testkit_auth::TestAuth;

#[tokio::test]
async fn mongodb_down_answers_503_and_health_names_it() {
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let mut config = support::test_config(&vhost, &auth.url);
    // Nothing listens on port 9: every MongoDB operation fails to find a server.
    config.mongo_url = "mongodb://127.0.0.1:9/?connectTimeoutMS=500".into();
    let app = support::start(vhost, auth, config).await;
    let token = app.user().await;
    app.get(Some(&token), "/cart")
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    let body = json!({"articleId": "a", "quantity": 1});
    app.post(Some(&token), "/cart/article", Some(body))
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    let health = app.get(None, "/health").await;
    assert_eq!(health.status, 503, "{health}");
    assert_eq!(health.body["dependencies"]["mongodb"], "down", "{health}");
}

#[tokio::test]
async fn requests_of_one_user_queued_behind_a_mongodb_outage_answer_503_in_bounded_time() {
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let mut config = support::test_config(&vhost, &auth.url);
    config.mongo_url = "mongodb://127.0.0.1:9/?connectTimeoutMS=500".into();
    let app = support::start(vhost, auth, config).await;
    let token = app.user().await;
    // Each holder of the user's lock waits out a server selection: unbounded, the last of
    // these would wait longer than the client's PATIENCE and the request would fail.
    let adds = (0..12).map(|n| {
        let body = json!({"articleId": format!("a{n}"), "quantity": 1});
        app.post(Some(&token), "/cart/article", Some(body))
    });
    for reply in futures_util::future::join_all(adds).await {
        reply.assert_is(503, json!({"error": "Service unavailable"}));
    }
}

#[tokio::test]
async fn a_signed_out_token_is_refused_without_waiting_for_the_cache_to_expire() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.cart(&token).await;
    app.auth.signout(&token).await;
    let refused = testkit::eventually(PATIENCE, || async {
        app.get(Some(&token), "/cart").await.status == 401
    })
    .await;
    assert!(refused);
}

#[tokio::test]
async fn cart_keeps_validating_lines_after_the_broker_drops_its_connection() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("a", true, 1);
    let token = app.user().await;
    let closed = app.vhost.close_connections().await;
    assert!(app.vhost.wait_for_new_connection(&closed).await);
    let health_back = testkit::eventually(PATIENCE, || async {
        app.get(None, "/health").await.status == 200
    })
    .await;
    assert!(health_back);
    app.add(&token, "a", 1).await;
    let validated = testkit::eventually(PATIENCE, || async {
        let cart = app.cart(&token).await;
        line(&cart, "a").is_some_and(|line| line["validated"] == true && line["valid"] == true)
    })
    .await;
    assert!(validated);
}

#[tokio::test]
async fn cart_starts_while_mongodb_is_down_and_serves_once_it_is_back() {
    let mut mongo = testkit::PrivateMongo::start().await;
    mongo.kill();
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let mut config = support::test_config(&vhost, &auth.url);
    config.mongo_url = mongo.url();
    let app = support::start(vhost, auth, config).await;
    let token = app.user().await;
    app.get(Some(&token), "/cart")
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));

    mongo.restart().await;
    testkit::wait_healthy(&app.http, &app.base_url, "cart").await;
    let cart = app.add(&token, "a", 2).await;

    mongo.kill();
    // GET /cart is answered from its read model in Redis; a change needs the store.
    assert_eq!(app.cart(&token).await, cart);
    let body = json!({"articleId": "b", "quantity": 1});
    app.post(Some(&token), "/cart/article", Some(body))
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
    mongo.restart().await;
    testkit::wait_healthy(&app.http, &app.base_url, "cart").await;
    let cart = app.add(&token, "b", 1).await;
    assert_eq!(line(&cart, "a").unwrap()["quantity"], 2, "{cart}");
    assert_eq!(app.cart(&token).await, cart);
}

#[tokio::test]
async fn an_order_placed_received_while_mongodb_is_down_is_recorded_once_it_is_back() {
    let mut mongo = testkit::PrivateMongo::start().await;
    let vhost = Vhost::create().await;
    let auth = TestAuth::start(&vhost).await;
    let mut config = support::test_config(&vhost, &auth.url);
    config.mongo_url = mongo.url();
    let app = support::start(vhost, auth, config).await;
    testkit::wait_healthy(&app.http, &app.base_url, "cart").await;
    let orders = app.orders();
    orders.answer(false);
    let token = app.user().await;
    app.add(&token, "a", 1).await;
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    let cart_id = support::id_of(&closed.json());
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&cart_id) == 1 }).await);

    mongo.kill();
    let order = orders.received.lock().unwrap()[0].1.clone();
    let placed = rabbit::contract::OrderPlaced {
        order_id: "order-during-outage".into(),
        cart_id: order.cart_id,
        user_id: order.user_id,
        articles: order.articles,
    };
    let envelope = rabbit::Envelope::new(kind::ORDER_PLACED, "test", placed);
    app.rabbit
        .speaking_as(service::ORDERS)
        .publish(exchange::SELL_FLOW, kind::ORDER_PLACED, &envelope)
        .await
        .unwrap();
    mongo.restart().await;
    let recorded = app
        .eventually_ordered(&cart_id, "order-during-outage")
        .await;
    assert!(recorded);
}
