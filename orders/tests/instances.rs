//! Two orders instances on one database and one vhost, as an operator scales the service: they
//! take the same queues' messages and the same users' requests at once, and still make one order
//! per cart, one event per fact at consecutive positions, no overpayment, one payment per
//! idempotency key and one batch run per interval (README "Several instances"); and what one
//! instance stored is what the other reads right after (README "Reads").

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use futures_util::future::join_all;
use mongodb::bson::{Document, doc};
use rabbit::Envelope;
use rabbit::contract::{kind, queue};
use serde_json::{Value, json};
use support::{TestOrders, line, spawn_orders, spawn_ready_orders_with};

/// The event types of an order's stream, checked to sit at positions 0, 1, 2, ...
async fn event_types(app: &TestOrders, order_id: &str) -> Vec<String> {
    app.assert_positions_are_a_sequence(order_id)
        .await
        .iter()
        .map(|event| event.get_str("type").unwrap().to_owned())
        .collect()
}

/// The ids `GET /orders` lists on the instance at `base`, in its order.
async fn listed_ids(app: &TestOrders, base: &str, token: &str) -> Vec<String> {
    let list = app.get_at(base, "/orders", Some(token)).await;
    let orders = list.json();
    let orders = orders
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"));
    orders
        .iter()
        .map(|order| order["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn copies_of_each_place_order_on_both_instances_make_one_order_per_cart() {
    let app = spawn_orders().await;
    app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let carts: Vec<String> = (0..10).map(|n| format!("cart-{n}")).collect();
    const COPIES: usize = 4;

    // Cart after cart, so that the broker's round robin gives each instance copies of each cart.
    let copies = carts.iter().flat_map(|cart| {
        (0..COPIES).map(|_| app.place_order(cart, &user_id, vec![line("a", 1), line("b", 2)]))
    });
    join_all(copies).await;

    let mut orders_of_carts: HashMap<String, HashSet<String>> = HashMap::new();
    let note = |orders_of_carts: &mut HashMap<_, HashSet<_>>, placed: Envelope<Value>| {
        let cart = placed.message["cartId"].as_str().unwrap().to_owned();
        let order = placed.message["orderId"].as_str().unwrap().to_owned();
        orders_of_carts.entry(cart).or_default().insert(order);
    };
    while orders_of_carts.len() < carts.len() {
        let placed = app.next_published(kind::ORDER_PLACED).await;
        note(&mut orders_of_carts, placed);
    }
    // Copies that found their cart's order before its order_placed was confirmed publish it too.
    app.wait_until_handled(queue::ORDERS_PLACE_ORDER).await;
    for placed in app.published_so_far(kind::ORDER_PLACED).await {
        note(&mut orders_of_carts, placed);
    }
    assert_eq!(orders_of_carts.len(), carts.len());
    for (cart, orders) in &orders_of_carts {
        assert_eq!(orders.len(), 1, "{cart} became {orders:?}");
        let order_id = orders.iter().next().unwrap();
        assert_eq!(event_types(&app, order_id).await, ["placed"]);
    }
    let events = app.db.collection::<Document>("events");
    assert_eq!(
        events.count_documents(doc! {}).await.unwrap(),
        carts.len() as u64
    );
    let list = app.get("/orders", Some(&token)).await;
    assert_eq!(list.json().as_array().unwrap().len(), carts.len(), "{list}");
}

#[tokio::test]
async fn replies_for_one_order_spread_over_both_instances_record_each_line_once() {
    let app = spawn_orders().await;
    app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let articles: Vec<String> = (0..12).map(|n| format!("article-{n}")).collect();
    let lines = || articles.iter().map(|article| line(article, 2)).collect();
    let valid = app.placed_order(&user_id, lines()).await;
    let invalid = app.placed_order(&user_id, lines()).await;

    // Every reply twice, both orders interleaved: each instance gets replies of both orders.
    let replies = articles.iter().flat_map(|article| {
        let refused = article == "article-0";
        [
            app.reply_article(&valid, article, true, 1.5),
            app.reply_article(&invalid, article, !refused, 1.5),
            app.reply_article(&valid, article, true, 1.5),
            app.reply_article(&invalid, article, !refused, 1.5),
        ]
    });
    join_all(replies).await;

    let validated = app.wait_for_status(&valid, &token, "VALIDATED").await;
    assert_eq!(validated["totalPrice"], json!(36.0));
    app.wait_for_status(&invalid, &token, "INVALID").await;
    for order_id in [&valid, &invalid] {
        let types = event_types(&app, order_id).await;
        assert_eq!(types.len(), 1 + articles.len(), "{types:?}");
        let answered: HashSet<String> = app
            .events(order_id)
            .await
            .iter()
            .skip(1)
            .map(|event| {
                event
                    .get_document("data")
                    .unwrap()
                    .get_str("articleId")
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(answered.len(), articles.len(), "one event per line");
    }
    let first_validated = app.next_published(kind::ORDER_VALIDATED).await;
    assert_eq!(
        first_validated.message,
        json!({"orderId": valid, "userId": user_id, "status": "VALIDATED"})
    );
    let first_invalid = app.next_published(kind::ORDER_INVALID).await;
    let reserved: Vec<Value> = articles[1..]
        .iter()
        .map(|article| json!({"articleId": article, "quantity": 2}))
        .collect();
    assert_eq!(
        first_invalid.message,
        json!({"orderId": invalid, "articles": reserved})
    );
    // Announced at least once, maybe by both instances, always with the same content.
    for again in app.published_so_far(kind::ORDER_VALIDATED).await {
        assert_eq!(again.message, first_validated.message);
    }
    for again in app.published_so_far(kind::ORDER_INVALID).await {
        assert_eq!(again.message, first_invalid.message);
    }
    let announcements = app.db.collection::<Document>("announcements");
    for (order_id, status) in [(&valid, "VALIDATED"), (&invalid, "INVALID")] {
        let records = || async {
            let filter = doc! {"orderId": order_id};
            announcements.count_documents(filter).await.unwrap()
        };
        // Recorded just after the broker's confirm, so maybe a moment after the message came.
        testkit::eventually(support::PATIENCE, || async { records().await > 1 }).await;
        let recorded = announcements
            .find(doc! {"orderId": order_id})
            .await
            .unwrap()
            .try_collect::<Vec<Document>>()
            .await
            .unwrap();
        let mut statuses: Vec<&str> = recorded
            .iter()
            .map(|r| r.get_str("status").unwrap())
            .collect();
        statuses.sort();
        let mut expected = ["PLACED", status];
        expected.sort();
        assert_eq!(statuses, expected, "{order_id}");
    }
}

#[tokio::test]
async fn concurrent_payments_on_both_instances_never_pay_more_than_the_total() {
    let app = spawn_orders().await;
    let second = app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let body = json!({"method": "CASH", "amount": 3});
    let instances = [app.url.clone(), second];

    let payments = (0..10).map(|n| app.pay_at(&instances[n % 2], &order_id, &token, None, &body));
    let replies = join_all(payments).await;

    let accepted = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(accepted, 3, "three payments of 3 fit in 10: {replies:?}");
    for reply in replies.iter().filter(|reply| reply.status != 200) {
        reply.assert_is(
            400,
            json!({"error": "The amount exceeds the unpaid balance of 1.00"}),
        );
    }
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["totalPayment"], json!(9.0), "{order}");
    let types = event_types(&app, &order_id).await;
    assert_eq!(
        types,
        [
            "placed",
            "article_validated",
            "payment_added",
            "payment_added",
            "payment_added"
        ]
    );
}

#[tokio::test]
async fn payments_taking_turns_between_the_instances_are_each_decided_on_the_order_as_stored() {
    let app = spawn_orders().await;
    let second = app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let four = json!({"method": "CASH", "amount": 4});
    let first = app.pay(&order_id, &token, None, &four).await;
    assert_eq!(first.status, 200, "{first}");

    // The first instance last saw the order before the second's payment: by what it saw, 4
    // more fit; by what is stored, they do not. Then a retry of the second's payment.
    let keyed = app
        .pay_at(&second, &order_id, &token, Some("k-1"), &four)
        .await;
    let over = app.pay(&order_id, &token, None, &four).await;
    let retried = app.pay(&order_id, &token, Some("k-1"), &four).await;
    let rest = app
        .pay(
            &order_id,
            &token,
            None,
            &json!({"method": "CASH", "amount": 2}),
        )
        .await;

    keyed.assert_is(200, retried.json());
    assert_eq!(keyed.json()["totalPayment"], json!(8.0), "{keyed}");
    over.assert_is(
        400,
        json!({"error": "The amount exceeds the unpaid balance of 2.00"}),
    );
    assert_eq!(rest.status, 200, "{rest}");
    assert_eq!(rest.json()["totalPayment"], json!(10.0), "{rest}");
    assert_eq!(rest.json()["status"], "PAYMENT_DEFINED", "{rest}");
    let types = event_types(&app, &order_id).await;
    assert_eq!(
        types,
        [
            "placed",
            "article_validated",
            "payment_added",
            "payment_added",
            "payment_added"
        ]
    );
}

#[tokio::test]
async fn one_idempotency_key_sent_to_both_instances_at_once_pays_once() {
    let app = spawn_orders().await;
    let second = app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let body = json!({"method": "DEBIT", "amount": 4});
    let instances = [app.url.clone(), second];

    let retries = (0..8).map(|n| {
        app.pay_at(
            &instances[n % 2],
            &order_id,
            &token,
            Some("checkout-7f3a"),
            &body,
        )
    });
    let replies = join_all(retries).await;

    assert_eq!(replies[0].status, 200, "{}", replies[0]);
    assert_eq!(replies[0].json()["totalPayment"], json!(4.0));
    for reply in &replies {
        reply.assert_is(200, replies[0].json());
    }
    let types = event_types(&app, &order_id).await;
    assert_eq!(types, ["placed", "article_validated", "payment_added"]);
}

#[tokio::test]
async fn the_timed_placed_batch_runs_once_per_interval_across_both_instances() {
    let app = spawn_ready_orders_with(|config| {
        config.stuck_placed_after = Duration::from_millis(1);
        config.placed_batch_interval = Duration::from_millis(300);
    })
    .await;
    app.second_instance().await;
    let (_, user_id) = app.user("buyer01").await;
    let stuck = app.placed_order(&user_id, vec![line("a", 1)]).await;

    // Each run re-drives the one stuck order once (`placed_order` took the placement's).
    let mut re_driven = 0;
    while re_driven < 6 {
        let placed = app.next_published(kind::ORDER_PLACED).await;
        assert_eq!(placed.message["orderId"], json!(stuck));
        re_driven += 1;
    }
    let turns = app.db.collection::<Document>("turns");
    let claimed = turns.count_documents(doc! {"job": "placed"}).await.unwrap();

    // Every run is a claimed turn, one per interval: two instances that each ran on their own
    // timer would re-drive about twice per turn.
    assert!(
        re_driven <= claimed,
        "{re_driven} re-drives in {claimed} turns"
    );
}

#[tokio::test]
async fn two_instances_re_drive_a_stuck_order_once_per_attempt_on_one_schedule() {
    let (first, max) = (Duration::from_secs(1), Duration::from_secs(3));
    let app = spawn_ready_orders_with(|config| {
        config.stuck_placed_after = first;
        config.redrive_max = max;
        config.placed_batch_interval = Duration::from_millis(100);
    })
    .await;
    let other = app.second_instance().await;
    let admin = app.auth.admin("admin01").await;
    let (_, user_id) = app.user("buyer01").await;
    let watching = Instant::now();
    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;

    // Besides both timers, an admin runs the batch on both instances at once, again and again.
    while watching.elapsed() < Duration::from_secs(10) {
        let runs =
            [&app.url, &other].map(|base| app.get_at(base, "/orders_batch/placed", Some(&admin)));
        for run in join_all(runs).await {
            assert_eq!(run.status, 200, "{run}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let re_driven = app.re_drives_so_far(&order_id).await;
    app.assert_re_sent_on_schedule(&order_id, re_driven, watching, (first, max))
        .await;
}

#[tokio::test]
async fn two_instances_send_an_unreleased_order_invalid_again_once_per_attempt_on_one_schedule() {
    let (first, max) = (Duration::from_secs(1), Duration::from_secs(3));
    let app = spawn_ready_orders_with(|config| {
        config.stuck_placed_after = first;
        config.redrive_max = max;
        config.validated_batch_interval = Duration::from_millis(100);
    })
    .await;
    let other = app.second_instance().await;
    let admin = app.auth.admin("admin01").await;
    let (token, user_id) = app.user("buyer01").await;
    let watching = Instant::now();
    // Catalog never answers it with order_released.
    let order_id = app.invalid_order(&token, &user_id).await;

    // Besides both timers, an admin runs the batch on both instances at once, again and again.
    while watching.elapsed() < Duration::from_secs(10) {
        let runs = [&app.url, &other]
            .map(|base| app.get_at(base, "/orders_batch/validated", Some(&admin)));
        for run in join_all(runs).await {
            assert_eq!(run.status, 200, "{run}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let re_sent = app
        .published_so_far(kind::ORDER_INVALID)
        .await
        .iter()
        .filter(|invalid| {
            invalid.message["orderId"] == json!(order_id)
                && invalid.correlation_id.starts_with("batch-")
        })
        .count();
    app.assert_re_sent_on_schedule(&order_id, re_sent, watching, (first, max))
        .await;
}

#[tokio::test]
async fn a_payment_through_one_instance_is_read_at_once_through_the_other() {
    let app = spawn_orders().await;
    let second = app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let path = format!("/orders/{order_id}");
    // The second instance has read the order and the list before the payments.
    let before = app.get_at(&second, &path, Some(&token)).await;
    assert_eq!(before.json()["totalPayment"], json!(0.0), "{before}");
    app.get_at(&second, "/orders", Some(&token)).await;

    for (amount, paid_so_far) in [(2, 2.0), (2, 4.0), (6, 10.0)] {
        let body = json!({"method": "CASH", "amount": amount});
        let paid = app.pay(&order_id, &token, None, &body).await;
        assert_eq!(paid.status, 200, "{paid}");

        let read = app.get_at(&second, &path, Some(&token)).await;
        let list = app.get_at(&second, "/orders", Some(&token)).await;

        assert_eq!(read.bytes, paid.bytes, "{read}");
        assert_eq!(list.json()[0]["totalPayment"], json!(paid_so_far), "{list}");
        assert_eq!(list.json()[0]["status"], paid.json()["status"], "{list}");
    }
    let settled = app.get_at(&second, &path, Some(&token)).await;
    assert_eq!(settled.json()["status"], "PAYMENT_DEFINED", "{settled}");
}

#[tokio::test]
async fn a_status_a_consumer_stored_is_read_through_both_instances_once_announced() {
    let app = spawn_orders().await;
    let second = app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;
    let path = format!("/orders/{order_id}");
    let instances = [app.url.clone(), second];
    for base in &instances {
        let read = app.get_at(base, &path, Some(&token)).await;
        assert_eq!(read.json()["status"], "PLACED", "{read}");
    }

    app.reply_article(&order_id, "a", true, 2.5).await;
    // Announced once the projection and its read models are stored, by whichever instance
    // consumed the reply.
    app.next_published(kind::ORDER_VALIDATED).await;

    for base in &instances {
        let read = app.get_at(base, &path, Some(&token)).await;
        assert_eq!(read.json()["status"], "VALIDATED", "{base}: {read}");
        let list = app.get_at(base, "/orders", Some(&token)).await;
        assert_eq!(list.json()[0]["status"], "VALIDATED", "{base}: {list}");
    }
}

#[tokio::test]
async fn a_new_order_is_in_the_list_of_both_instances_though_they_read_it_before() {
    let app = spawn_orders().await;
    let second = app.second_instance().await;
    let (token, user_id) = app.user("buyer01").await;
    let first = app.placed_order(&user_id, vec![line("a", 1)]).await;
    let instances = [app.url.clone(), second];
    for base in &instances {
        assert_eq!(
            listed_ids(&app, base, &token).await,
            [first.as_str()],
            "{base}"
        );
    }

    // Published once the order and its read models are stored.
    let newer = app.placed_order(&user_id, vec![line("b", 2)]).await;

    for base in &instances {
        assert_eq!(
            listed_ids(&app, base, &token).await,
            [newer.as_str(), first.as_str()],
            "{base}"
        );
    }
}
