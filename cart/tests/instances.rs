//! Two instances of cart on one database and one vhost, raced on the same users: one active cart
//! per user, no lost line, one order per cart, and periodic work once per interval for both.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mongodb::bson::{Document, doc};
use serde_json::Value;
use support::{Instance, PATIENCE, TestCart, id_of, line, spawn_cart, spawn_cart_with};

/// The cart and a second instance of it beside the first.
async fn two_instances(app: &TestCart) -> [Instance; 2] {
    [app.first_instance(), app.another_instance().await]
}

#[tokio::test]
async fn first_requests_of_new_users_on_both_instances_give_each_user_one_cart() {
    let app = spawn_cart().await;
    let instances = two_instances(&app).await;
    for _ in 0..8 {
        let token = app.user().await;
        let user_id = app.auth.user_id(&token).await;
        let requests = (0..6).map(|n| app.cart_at(&instances[n % 2], &token));
        let carts = join_all(requests).await;
        let first = id_of(&carts[0]);
        assert!(carts.iter().all(|cart| id_of(cart) == first), "{carts:?}");
        assert_eq!(app.events_of_user(&user_id, "opened").await.len(), 1);
    }
}

#[tokio::test]
async fn concurrent_adds_spread_over_both_instances_keep_every_line_and_quantity() {
    let app = spawn_cart().await;
    let instances = two_instances(&app).await;
    let token = app.user().await;
    let adds = (1..=12).flat_map(|n| {
        let distinct = format!("article-{n}");
        [("shared".to_owned(), n), (distinct, 1)]
    });
    let requests = adds.enumerate().map(|(n, (article, quantity))| {
        let (app, token, instance) = (&app, &token, &instances[n % 2]);
        async move { app.add_at(instance, token, &article, quantity).await }
    });
    join_all(requests).await;
    for instance in &instances {
        let cart = app.cart_at(instance, &token).await;
        assert_eq!(line(&cart, "shared").unwrap()["quantity"], 78, "{cart}");
        for n in 1..=12 {
            let distinct = format!("article-{n}");
            assert_eq!(line(&cart, &distinct).unwrap()["quantity"], 1, "{cart}");
        }
        assert_eq!(cart["articles"].as_array().unwrap().len(), 13);
    }
}

/// Whatever the order in which they land, the line added on one instance while the other checks
/// out is either in the closed cart's `place_order` or in the user's next cart, once.
#[tokio::test]
async fn a_line_added_on_one_instance_during_a_checkout_on_the_other_is_never_lost() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    let orders = app.orders();
    let [a, b] = two_instances(&app).await;
    for article in ["base", "late"] {
        catalog.set(article, true, 100);
    }
    for round in 0..12 {
        let token = app.user().await;
        app.add_at(&a, &token, "base", 1).await;
        // Started a little later each round, so that the add lands before, during and after the
        // checkout's steps.
        let late_add = async {
            tokio::time::sleep(Duration::from_millis(round * 10)).await;
            app.add_at(&a, &token, "late", 1).await
        };
        let (checkout, added) = tokio::join!(
            app.post_at(&b, Some(&token), "/cart/checkout", None),
            late_add,
        );
        assert_eq!(checkout.status, 200, "round {round}: {checkout}");
        let closed = checkout.json();
        let cart_id = id_of(&closed);
        assert!(
            testkit::eventually(PATIENCE, || async { orders.received_for(&cart_id) == 1 }).await
        );
        let ordered = orders_for(&orders, &cart_id);
        let in_order = ordered
            .iter()
            .filter(|(article, _)| article == "late")
            .count();
        assert_eq!(ordered_lines(&closed), ordered, "round {round}");
        let next = app.cart_at(&a, &token).await;
        assert_ne!(id_of(&next), cart_id);
        let in_next = line(&next, "late").map(|line| line["quantity"].clone());
        match (in_order, in_next) {
            (1, None) => {}
            (0, Some(quantity)) => {
                assert_eq!(quantity, 1, "round {round}");
                assert_ne!(id_of(&added), cart_id, "round {round}: {added}");
            }
            other => panic!("round {round}: the late line is {other:?}"),
        }
    }
}

/// Both checkouts race for the position after the cart; one `CheckedOut` wins, and the other,
/// which started before that close, answers 200 with the cart it closed. One `place_order`
/// content.
#[tokio::test]
async fn a_double_checkout_on_both_instances_closes_one_cart_and_both_answer_it() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    let orders = app.orders();
    let [a, b] = two_instances(&app).await;
    catalog.set("a", true, 100);
    for round in 0..6 {
        let token = app.user().await;
        let user_id = app.auth.user_id(&token).await;
        let cart_id = id_of(&app.add_at(&a, &token, "a", 2).await);
        // B reads the cart from the store too, so that both start from a copy of the cart and
        // at once (B knows the token).
        let validated = app.get_at(&b, Some(&token), "/cart/validate").await;
        assert_eq!(validated.status, 200, "{validated}");
        let (first, second) = tokio::join!(
            app.post_at(&a, Some(&token), "/cart/checkout", None),
            app.post_at(&b, Some(&token), "/cart/checkout", None),
        );
        for reply in [&first, &second] {
            assert_eq!(reply.status, 200, "round {round}: {first} / {second}");
            let cart = reply.json();
            assert_eq!(id_of(&cart), cart_id, "round {round}");
            assert_eq!(cart["enabled"], false, "round {round}");
            assert_eq!(ordered_lines(&cart), [("a".to_owned(), 2)], "round {round}");
        }
        assert!(
            app.eventually_ordered(&cart_id, &format!("order-of-{cart_id}"))
                .await
        );
        assert_eq!(orders.received_for(&cart_id), 1, "round {round}");
        assert_eq!(orders_for(&orders, &cart_id), [("a".to_owned(), 2)]);
        assert_eq!(app.events_of_user(&user_id, "checkedOut").await.len(), 1);
    }
}

/// Racing instances can leave an older fold in the cache of current carts, or none: reads catch
/// up from the events, so neither shows a wrong cart.
#[tokio::test]
async fn a_cache_entry_behind_the_events_or_missing_still_gives_the_active_cart() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let user_id = app.auth.user_id(&token).await;
    let current = app.db.collection::<Document>("current_carts");
    let first = id_of(&app.add(&token, "a", 1).await);
    let stale = current
        .find_one(doc! {"_id": &user_id})
        .await
        .unwrap()
        .expect("the cart is cached");
    let closed = app.post(Some(&token), "/cart/checkout", None).await;
    assert_eq!(closed.status, 200, "{closed}");
    let next = app.add(&token, "b", 2).await;
    assert_ne!(id_of(&next), first);

    current
        .replace_one(doc! {"_id": &user_id}, &stale)
        .await
        .unwrap();
    assert_eq!(app.cart(&token).await, next);
    current.delete_one(doc! {"_id": &user_id}).await.unwrap();
    assert_eq!(app.cart(&token).await, next);

    // Changes decided on the stale cached cart (the closed one, holding "a" and not "b") are
    // decided again on the active cart.
    let restore_stale = || async {
        current
            .replace_one(doc! {"_id": &user_id}, &stale)
            .await
            .unwrap();
    };
    restore_stale().await;
    let incremented = app
        .post(Some(&token), "/cart/article/b/increment", None)
        .await;
    assert_eq!(line(&incremented.json(), "b").unwrap()["quantity"], 3);
    restore_stale().await;
    let removed = app.delete(Some(&token), "/cart/article/a").await;
    assert_eq!(ordered_lines(&removed.json()), [("b".to_owned(), 3)]);
    restore_stale().await;
    let added = app.add(&token, "c", 1).await;
    assert_eq!(id_of(&added), id_of(&next));
    assert_eq!(
        ordered_lines(&added),
        [("b".to_owned(), 3), ("c".to_owned(), 1)]
    );
    assert_eq!(app.events_of_user(&user_id, "opened").await.len(), 2);
    assert_eq!(app.events(&first, "checkedOut").await.len(), 1);
    assert_eq!(app.events(&first, "lineChanged").await.len(), 1);
}

/// Each instance first decides on its own copy of the user's cart; a copy left behind by the
/// other instance's changes (a line, or a whole checkout and the next cart) decides nothing:
/// changes and checkouts go to the user's active cart as it is stored.
#[tokio::test]
async fn an_instance_whose_copy_of_the_cart_fell_behind_changes_and_checks_out_the_active_one() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    let orders = app.orders();
    let [a, b] = two_instances(&app).await;
    for article in ["a", "b", "c"] {
        catalog.set(article, true, 100);
    }
    let token = app.user().await;
    // B's copy misses A's line.
    let first = id_of(&app.add_at(&b, &token, "a", 1).await);
    app.add_at(&a, &token, "b", 1).await;
    let added = app.add_at(&b, &token, "c", 2).await;
    assert_eq!(id_of(&added), first);
    let all = [
        ("a".to_owned(), 1),
        ("b".to_owned(), 1),
        ("c".to_owned(), 2),
    ];
    assert_eq!(ordered_lines(&added), all);

    // B's copy is the first cart; A closes it and fills the next one; B checks out.
    let checkout = app.post_at(&a, Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    let next = id_of(&app.add_at(&a, &token, "b", 3).await);
    assert_ne!(next, first);
    let checkout = app.post_at(&b, Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    assert_eq!(id_of(&checkout.json()), next);
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&next) == 1 }).await);
    assert_eq!(orders_for(&orders, &next), [("b".to_owned(), 3)]);
    assert_eq!(orders.received_for(&first), 1);
    assert_eq!(orders_for(&orders, &first), all);

    // B's copy is now a closed cart; A opened and filled the one after it. B's add joins it.
    let third = id_of(&app.add_at(&a, &token, "a", 4).await);
    assert_ne!(third, next);
    let added = app.add_at(&b, &token, "c", 5).await;
    assert_eq!(id_of(&added), third);
    assert_eq!(
        ordered_lines(&added),
        [("a".to_owned(), 4), ("c".to_owned(), 5)]
    );
}

/// B's copy of the cart falls behind A's changes: first a line, then a whole checkout and the
/// next cart. B's checkouts close the active cart with its stored lines, and B learns that its
/// copy was behind from the store, while catalog is asked, before any step of a close: the note
/// A made for the cart it closed is left as it was. (Neither catalog's `article-valid` answers
/// nor `order_placed` come, so no consumer brings B's copy up to date meanwhile.)
#[tokio::test]
async fn a_checkout_on_a_copy_that_fell_behind_closes_the_active_cart_with_its_lines() {
    let app = spawn_cart().await;
    let catalog = app.catalog_answering_data_only();
    let orders = app.orders();
    orders.answer(false);
    let [a, b] = two_instances(&app).await;
    for article in ["a", "b", "c", "d"] {
        catalog.set(article, true, 100);
    }
    let token = app.user().await;

    // A line behind.
    let first = id_of(&app.add_at(&b, &token, "a", 1).await);
    app.add_at(&a, &token, "b", 2).await;
    let checkout = app.post_at(&b, Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    assert_eq!(id_of(&checkout.json()), first);
    let both = [("a".to_owned(), 1), ("b".to_owned(), 2)];
    assert_eq!(ordered_lines(&checkout.json()), both);
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&first) == 1 }).await);
    assert_eq!(orders_for(&orders, &first), both);

    // A checkout and the next cart behind: B's copy holds the second cart, open.
    let second = id_of(&app.add_at(&b, &token, "c", 3).await);
    assert_ne!(second, first);
    let checkout = app.post_at(&a, Some(&token), "/cart/checkout", None).await;
    assert_eq!(id_of(&checkout.json()), second, "{checkout}");
    let noted = waiting_note(&app, &second).await;
    assert!(noted.is_some());
    let third = id_of(&app.add_at(&a, &token, "d", 4).await);
    let checkout = app.post_at(&b, Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    assert_eq!(id_of(&checkout.json()), third);
    assert_eq!(ordered_lines(&checkout.json()), [("d".to_owned(), 4)]);
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&third) == 1 }).await);
    assert_eq!(orders_for(&orders, &third), [("d".to_owned(), 4)]);
    assert_eq!(orders.received_for(&second), 1);
    assert_eq!(waiting_note(&app, &second).await, noted);
}

/// Cart `cart_id`'s note in `waiting_orders`, if any.
async fn waiting_note(app: &TestCart, cart_id: &str) -> Option<Document> {
    let waiting = app.db.collection::<Document>("waiting_orders");
    let note = waiting.find_one(doc! {"_id": cart_id}).await;
    note.expect("MongoDB answers")
}

/// A checkout keeps catalog's answers between its attempts only for the cart they were asked
/// about. Here B's copy is the user's first cart, which A closed; the next cart holds the same
/// article at the same line version, and B's checkout asks about it again before closing it.
#[tokio::test]
async fn a_checkout_asks_catalog_about_the_cart_it_closes_not_one_with_the_same_line_versions() {
    let app = spawn_cart().await;
    let catalog = app.catalog_answering_data_only();
    let [a, b] = two_instances(&app).await;
    catalog.set("x", true, 100);
    let token = app.user().await;
    let first = app.add_at(&b, &token, "x", 1).await;
    let checkout = app.post_at(&a, Some(&token), "/cart/checkout", None).await;
    assert_eq!(id_of(&checkout.json()), id_of(&first), "{checkout}");
    let next = app.add_at(&a, &token, "x", 1).await;
    assert_ne!(id_of(&next), id_of(&first));
    assert_eq!(catalog.data_requests_for(&id_of(&next)), 0);

    let checkout = app.post_at(&b, Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    assert_eq!(id_of(&checkout.json()), id_of(&next));
    assert_eq!(ordered_lines(&checkout.json()), [("x".to_owned(), 1)]);
    assert_eq!(catalog.data_requests_for(&id_of(&next)), 1);
}

/// With orders silent, a waiting `place_order` is re-sent by one instance per turn: never more
/// re-sends than turns claimed, however many instances look.
#[tokio::test]
async fn a_waiting_place_order_is_resent_once_per_turn_with_two_instances() {
    let interval = Duration::from_millis(300);
    let app = spawn_cart_with(|config| {
        config.order_resend_first = interval;
        config.order_resend_max = interval;
    })
    .await;
    let orders = app.orders();
    orders.answer(false);
    let [a, _b] = two_instances(&app).await;
    let token = app.user().await;
    app.add_at(&a, &token, "a", 1).await;
    let started = Instant::now();
    let checkout = app.post_at(&a, Some(&token), "/cart/checkout", None).await;
    assert_eq!(checkout.status, 200, "{checkout}");
    let cart_id = id_of(&checkout.json());
    assert!(testkit::eventually(PATIENCE, || async { orders.received_for(&cart_id) >= 6 }).await);
    let resends = orders.received_for(&cart_id) as u64 - 1;
    let elapsed = started.elapsed();
    let turns = app
        .db
        .collection::<Document>("turns")
        .count_documents(doc! {"job": "cart-resend"})
        .await
        .unwrap();
    assert!(resends <= turns, "{resends} re-sends in {turns} turns");
    // The turns (slots of one interval) that the time since the checkout overlaps.
    let intervals = (elapsed.as_millis() / interval.as_millis()) as u64 + 2;
    assert!(
        resends <= intervals,
        "{resends} re-sends in {intervals} intervals"
    );
}

/// The `(articleId, quantity)` lines of a cart JSON.
fn ordered_lines(cart: &Value) -> Vec<(String, i64)> {
    let lines = cart["articles"].as_array().expect("an articles array");
    lines
        .iter()
        .map(|line| {
            let article = line["articleId"].as_str().unwrap().to_owned();
            (article, line["quantity"].as_i64().unwrap())
        })
        .collect()
}

/// The `(articleId, quantity)` lines of the `place_order` orders received for cart `cart_id`.
fn orders_for(orders: &support::Orders, cart_id: &str) -> Vec<(String, i64)> {
    let received = orders.received.lock().unwrap();
    let (_, order) = received
        .iter()
        .find(|(_, order)| order.cart_id == cart_id)
        .expect("a place_order for the cart");
    order
        .articles
        .iter()
        .map(|line| (line.article_id.clone(), line.quantity))
        .collect()
}
