//! GET /cart served from its read model in the real Redis: the stored copy is what is served,
//! every change shows on every instance as soon as its writer is done (requests, catalog's
//! answers, checkout), and with Redis down the store answers.

mod support;

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use serde_json::json;
use support::{Instance, PATIENCE, TestCart, id_of, line, spawn_cart, spawn_cart_with};
use testkit::Reply;

/// `GET /cart` on `instance`, asserting success.
async fn get_cart(app: &TestCart, instance: &Instance, token: &str) -> Reply {
    let reply = app.get_at(instance, Some(token), "/cart").await;
    assert_eq!(reply.status, 200, "{reply}");
    reply
}

/// Stores an event in the cart's stream directly, behind the service's back: the change any
/// writer could have made, except that nobody writes the read model after it.
async fn append_behind_the_service(app: &TestCart, cart_id: &str, event: Document) {
    let events = app.db.collection::<Document>("cart_events");
    let stored: Vec<Document> = events
        .find(doc! {"cart": cart_id})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let position = stored.len() as i64;
    let event = doc! {
        "_id": format!("{cart_id}:{position}"), "cart": cart_id, "position": position,
        "at": DateTime::now(), "event": event,
    };
    events.insert_one(event).await.unwrap();
}

#[tokio::test]
async fn get_cart_serves_the_copy_in_redis_and_reads_the_store_once_it_is_gone() {
    let app = spawn_cart().await;
    let here = app.first_instance();
    let token = app.user().await;
    let user_id = app.auth.user_id(&token).await;
    let cart_id = id_of(&app.add(&token, "a", 1).await);

    app.forget_view(&user_id).await;
    let from_store = get_cart(&app, &here, &token).await;
    let from_redis = get_cart(&app, &here, &token).await;
    assert_eq!(from_redis.bytes, from_store.bytes, "{from_redis}");
    for header in ["content-type", "access-control-allow-origin"] {
        assert_eq!(
            from_redis.header(header),
            from_store.header(header),
            "{header}"
        );
    }
    assert_eq!(from_redis.header("content-type"), Some("application/json"));
    assert!(
        from_redis.header("correlation_id").is_some(),
        "{from_redis}"
    );

    append_behind_the_service(
        &app,
        &cart_id,
        doc! {"type": "lineChanged", "articleId": "b", "quantity": 5_i64},
    )
    .await;
    let still = get_cart(&app, &here, &token).await;
    assert_eq!(still.bytes, from_redis.bytes, "{still}");

    app.forget_view(&user_id).await;
    let caught_up = get_cart(&app, &here, &token).await.json();
    assert_eq!(line(&caught_up, "b").unwrap()["quantity"], 5, "{caught_up}");
    assert_eq!(id_of(&caught_up), cart_id);
}

#[tokio::test]
async fn a_change_through_one_instance_shows_at_once_on_the_other() {
    let app = spawn_cart().await;
    let [a, b] = [app.first_instance(), app.another_instance().await];
    let token = app.user().await;
    // Both copies read before the changes, so that a stale one would show.
    get_cart(&app, &a, &token).await;
    get_cart(&app, &b, &token).await;
    for round in 0..6_i64 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let added = app.add_at(writer, &token, "a", 1).await;
        assert_eq!(get_cart(&app, reader, &token).await.json(), added);
        let path = "/cart/article/a/increment";
        let incremented = app.post_at(writer, Some(&token), path, None).await.json();
        assert_eq!(get_cart(&app, reader, &token).await.json(), incremented);
        assert_eq!(line(&incremented, "a").unwrap()["quantity"], 2 * round + 2);
    }
    let removed = app.delete(Some(&token), "/cart/article/a").await.json();
    assert_eq!(get_cart(&app, &b, &token).await.json(), removed);
    assert_eq!(removed["articles"], json!([]));
}

#[tokio::test]
async fn catalogs_answer_shows_on_both_instances_once_it_is_recorded() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("sold", true, 5);
    let [a, b] = [app.first_instance(), app.another_instance().await];
    let token = app.user().await;
    let added = app.add_at(&a, &token, "sold", 1).await;
    assert_eq!(line(&added, "sold").unwrap()["validated"], false);
    let cart_id = id_of(&added);
    let recorded = testkit::eventually(PATIENCE, || async {
        !app.events(&cart_id, "answered").await.is_empty()
    })
    .await;
    assert!(recorded);
    // The consumer writes the copy right after the event: seen on one instance, then on both.
    let validated = testkit::eventually(PATIENCE, || async {
        let cart = get_cart(&app, &a, &token).await.json();
        line(&cart, "sold").unwrap()["validated"] == true
    })
    .await;
    assert!(validated);
    let on_b = get_cart(&app, &b, &token).await.json();
    assert_eq!(line(&on_b, "sold").unwrap()["validated"], true, "{on_b}");
    assert_eq!(line(&on_b, "sold").unwrap()["valid"], true, "{on_b}");
    assert_eq!(on_b, get_cart(&app, &a, &token).await.json());
}

#[tokio::test]
async fn after_a_checkout_both_instances_answer_the_next_empty_cart() {
    let app = spawn_cart().await;
    // No answer in the background changes the cart between two reads of it.
    let catalog = app.catalog_answering_data_only();
    let orders = app.orders();
    catalog.set("a", true, 5);
    let [a, b] = [app.first_instance(), app.another_instance().await];
    let token = app.user().await;
    for round in 0..3 {
        app.add_at(&a, &token, "a", 2).await;
        // Both copies hold the cart before it is closed.
        let open = get_cart(&app, &a, &token).await.json();
        assert_eq!(get_cart(&app, &b, &token).await.json(), open);
        let checkout = app.post_at(&b, Some(&token), "/cart/checkout", None).await;
        assert_eq!(checkout.status, 200, "round {round}: {checkout}");
        let closed = id_of(&checkout.json());
        for instance in [&a, &b, &a] {
            let next = get_cart(&app, instance, &token).await.json();
            assert_ne!(id_of(&next), closed, "round {round}: {next}");
            assert_eq!(next["articles"], json!([]), "round {round}");
            assert_eq!(next["enabled"], true, "round {round}");
        }
        // Recording the order on the closed cart does not bring it back.
        let order = format!("order-of-{closed}");
        assert!(app.eventually_ordered(&closed, &order).await);
        let next = get_cart(&app, &b, &token).await.json();
        assert_ne!(id_of(&next), closed, "round {round}: {next}");
        assert_eq!(next, get_cart(&app, &a, &token).await.json());
    }
    assert_eq!(orders.received.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn with_redis_down_get_cart_reads_the_store() {
    let nowhere = format!("redis://127.0.0.1:{}", testkit::free_port());
    let app = spawn_cart_with(|config| config.redis_url = nowhere).await;
    let orders = app.orders();
    let token = app.user().await;
    let empty = app.cart(&token).await;
    assert_eq!(empty["articles"], json!([]));
    let added = app.add(&token, "a", 1).await;
    assert_eq!(app.cart(&token).await, added);
    app.add(&token, "b", 3).await;
    let cart = app.cart(&token).await;
    assert_eq!(line(&cart, "b").unwrap()["quantity"], 3, "{cart}");
    assert_eq!(id_of(&cart), id_of(&empty));

    let checkout = app.post(Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    let next = app.cart(&token).await;
    assert_ne!(id_of(&next), id_of(&cart));
    assert_eq!(next["articles"], json!([]));
    assert!(
        app.eventually_ordered(&id_of(&cart), &format!("order-of-{}", id_of(&cart)))
            .await
    );
    assert_eq!(orders.received_for(&id_of(&cart)), 1);
    // Redis is an aid, not a dependency: the instance stays in the balancer's rotation.
    let health = app.get(None, "/health").await;
    assert_eq!(health.status, 200, "{health}");
}
