//! Two catalog instances on one database and one vhost, as two processes would run: they consume
//! the same queues, so RabbitMQ spreads the messages of each race over both. The stock ledger
//! must keep every result exact (no unit sold twice, one decision per order line, a release once,
//! no admin edit overwriting a reservation), and each instance must show the other's writes
//! promptly, through the `catalog_changes` announcements rather than the periodic reload.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use mongodb::bson::{Document, doc};
use rabbit::contract::queue;
use serde_json::{Value, json};
use support::{Instance, TestCatalog, spawn_catalog};

fn order_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn two_instances() -> (TestCatalog, Instance) {
    let app = spawn_catalog().await;
    let other = app.another_instance().await;
    (app, other)
}

/// Publishes `order_placed` for each order at once, each for `quantity` of the article.
async fn place_all(app: &TestCatalog, orders: &[String], article: &str, quantity: i64) {
    join_all(
        orders
            .iter()
            .map(|order| async move { app.place_order(order, &[(article, quantity)]).await }),
    )
    .await;
}

/// The stock both instances show, once they agree on `expected` (a deadline, not a sleep).
async fn wait_both_show(app: &TestCatalog, other: &Instance, id: &str, expected: i64) {
    let path = format!("/articles/{id}");
    let agreed = testkit::eventually(support::PATIENCE, || async {
        app.get(&path).await.json()["stock"] == expected
            && app.get_on(other, &path).await.json()["stock"] == expected
    })
    .await;
    assert!(agreed, "the instances never both showed stock {expected}");
}

#[tokio::test]
async fn the_last_units_bought_through_both_instances_are_sold_exactly_once() {
    let (app, other) = two_instances().await;
    let lamp = app.article("Lamp", 10).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    let orders: Vec<String> = (0..24).map(|_| order_id()).collect();
    place_all(&app, &orders, &lamp, 3).await;

    let answers = replies.take(orders.len()).await;
    let valid = answers
        .iter()
        .filter(|reply| reply["valid"] == true)
        .count();
    assert_eq!(valid, 3, "floor(10 / 3) orders: {answers:?}");
    assert_eq!(app.checked_ledger(&lamp).await, 1);
    assert_eq!(app.movements(&lamp).await.len(), 1 + orders.len());
    wait_both_show(&app, &other, &lamp, 1).await;
}

#[tokio::test]
async fn an_order_delivered_to_both_instances_at_once_and_again_later_reserves_once() {
    let (app, other) = two_instances().await;
    let lamp = app.article("Lamp", 20).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let orders: Vec<String> = (0..6).map(|_| order_id()).collect();

    // Each order twice at once: with two consumers, the copies go to both instances.
    tokio::join!(
        place_all(&app, &orders, &lamp, 2),
        place_all(&app, &orders, &lamp, 2)
    );
    let first = replies.take(2 * orders.len()).await;
    place_all(&app, &orders, &lamp, 2).await;
    let again = replies.take(orders.len()).await;

    for order in &orders {
        let answers: Vec<&Value> = first
            .iter()
            .chain(&again)
            .filter(|reply| reply["referenceId"] == order.as_str())
            .collect();
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert!(
            answers.iter().all(|answer| *answer == answers[0]),
            "{answers:?}"
        );
        assert_eq!(answers[0]["valid"], true);
    }
    assert_eq!(app.checked_ledger(&lamp).await, 20 - 2 * 6);
    assert_eq!(
        app.movements(&lamp).await.len(),
        1 + orders.len(),
        "one decision per order"
    );
    wait_both_show(&app, &other, &lamp, 8).await;
}

#[tokio::test]
async fn order_invalid_racing_a_duplicate_order_placed_gives_stock_back_once_for_good() {
    let (app, other) = two_instances().await;
    let lamp = app.article("Lamp", 6).await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    // Half the orders are decided before the race, half are not decided yet when it starts.
    let decided: Vec<String> = (0..3).map(|_| order_id()).collect();
    let undecided: Vec<String> = (0..3).map(|_| order_id()).collect();
    place_all(&app, &decided, &lamp, 2).await;
    assert!(
        replies
            .take(decided.len())
            .await
            .iter()
            .all(|reply| reply["valid"] == true)
    );
    assert_eq!(app.checked_ledger(&lamp).await, 0);

    let all: Vec<String> = decided.iter().chain(&undecided).cloned().collect();
    let (app_ref, lamp_ref) = (&app, &lamp);
    join_all(all.iter().map(|order| async move {
        let (app, lamp) = (app_ref, lamp_ref);
        let lines = [(lamp.as_str(), 2)];
        tokio::join!(
            app.place_order(order, &lines),
            app.invalidate_order(order, &lines),
            app.place_order(order, &lines),
            app.invalidate_order(order, &lines),
        );
    }))
    .await;
    replies.take(2 * all.len()).await;
    app.wait_acked(queue::CATALOG_ORDER_INVALID, 2 * all.len() as u64)
        .await;
    // And once more, after everything: nothing is taken again.
    place_all(&app, &all, &lamp, 2).await;
    replies.take(all.len()).await;

    assert_eq!(app.checked_ledger(&lamp).await, 6, "every unit back, once");
    for order in &all {
        let movements: Vec<Document> = app
            .movements(&lamp)
            .await
            .into_iter()
            .filter(|movement| movement.get_str("order").ok() == Some(order.as_str()))
            .collect();
        let kinds: Vec<&str> = movements
            .iter()
            .map(|movement| movement.get_str("kind").unwrap())
            .collect();
        assert!(
            kinds == ["reserved", "released"] || kinds == ["refused"],
            "{order}: {kinds:?}"
        );
    }
    wait_both_show(&app, &other, &lamp, 6).await;
}

#[tokio::test]
async fn concurrent_admin_stock_edits_during_reservations_never_overwrite_one() {
    let (app, other) = two_instances().await;
    let lamp = app.article("Lamp", 100).await;
    let path = format!("/articles/{lamp}");
    let body = |stock: i64, version: i64| json!({"name": "Lamp", "price": 2.5, "stock": stock, "stockVersion": version});

    // Two admins who read version 1 at once, one on each instance: one wins, one gets 409.
    let admin = app.admin().await;
    let (to_150, to_200) = (body(150, 1), body(200, 1));
    let (on_app, on_other) = tokio::join!(
        app.put(&path, Some(&admin), &to_150),
        app.put_on(&other, &path, &to_200),
    );
    let mut statuses = [on_app.status.as_u16(), on_other.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{on_app} {on_other}");
    let after_first = if on_app.status == 200 { 150 } else { 200 };

    // Then each admin adds 10, re-reading on 409, while 30 orders take one unit each.
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let orders: Vec<String> = (0..30).map(|_| order_id()).collect();
    let add_ten = |on_other: bool| {
        let (app, other, path) = (&app, &other, &path);
        async move {
            let mut conflicts = 0;
            loop {
                let read = if on_other {
                    app.get_on(other, path).await
                } else {
                    app.get(path).await
                };
                let article = read.json();
                let stock = article["stock"].as_i64().unwrap();
                let version = article["stockVersion"].as_i64().unwrap();
                let written = if on_other {
                    app.put_on(other, path, &body(stock + 10, version)).await
                } else {
                    let token = app.admin().await;
                    app.put(path, Some(&token), &body(stock + 10, version))
                        .await
                };
                match written.status.as_u16() {
                    200 => return conflicts,
                    409 => conflicts += 1,
                    _ => panic!("{written}"),
                }
                assert!(conflicts < 200, "an admin never got its edit in");
            }
        }
    };
    let placing = place_all(&app, &orders, &lamp, 1);
    let (_, conflicts_here, conflicts_there) = tokio::join!(placing, add_ten(false), add_ten(true));
    let answers = replies.take(orders.len()).await;

    let reserved = answers
        .iter()
        .filter(|reply| reply["valid"] == true)
        .count() as i64;
    assert_eq!(reserved, 30, "stock always covered one unit: {answers:?}");
    let expected = after_first + 10 + 10 - reserved;
    assert_eq!(
        app.checked_ledger(&lamp).await,
        expected,
        "{conflicts_here} + {conflicts_there} conflicts"
    );
    let edits = app
        .movements(&lamp)
        .await
        .iter()
        .filter(|movement| movement.get_str("kind") == Ok("stock"))
        .count();
    assert_eq!(edits, 1 + 3, "the initial stock and three accepted edits");
    wait_both_show(&app, &other, &lamp, expected).await;
}

#[tokio::test]
async fn a_write_through_one_instance_shows_on_the_other_within_a_second_or_so() {
    // The reload is a minute away: only the announcement can make the other instance see it.
    let (app, other) = two_instances().await;
    let admin = app.admin().await;
    let lamp = app.article("Lamp", 5).await;
    let path = format!("/articles/{lamp}");
    let prompt = Duration::from_secs(3);

    let seen = |check: fn(&Value) -> bool| {
        let (app, other, path) = (&app, &other, &path);
        async move {
            testkit::eventually(prompt, || async {
                let reply = app.get_on(other, path).await;
                reply.status == 200 && check(&reply.json())
            })
            .await
        }
    };
    // Listings read only the snapshot: once the article is listed there, reads by id come from
    // the snapshot too, and only announcements change them.
    let listed = testkit::eventually(prompt, || async {
        app.get_on(&other, "/articles").await.json()[0]["_id"] == lamp.as_str()
    })
    .await;
    assert!(listed, "created");
    let body = json!({"name": "Desk lamp", "price": 7.5, "stock": 5});
    assert_eq!(app.put(&path, Some(&admin), &body).await.status, 200);
    assert!(
        seen(|article| article["price"] == 7.5 && article["name"] == "Desk lamp").await,
        "updated"
    );
    let listed = app.get_on(&other, "/articles/search/desk").await;
    assert_eq!(listed.json()[0]["_id"], lamp.as_str(), "{listed}");

    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    app.place_order(&order_id(), &[(&lamp, 2)]).await;
    replies.next().await;
    assert!(
        seen(|article| article["stock"] == 3 && article["stockVersion"] == 2).await,
        "reserved"
    );
    app.delete(&path, Some(&admin)).await;
    assert!(
        seen(|article| article["enabled"] == false).await,
        "disabled"
    );
}

#[tokio::test]
async fn the_article_document_does_not_grow_with_orders() {
    let app = spawn_catalog().await;
    let lamp = app.article("Lamp", 1).await;
    let size = || async {
        let document = app
            .db
            .collection::<Document>("articles")
            .find_one(doc! {"_id": &lamp})
            .await
            .expect("MongoDB answers")
            .expect("the article");
        mongodb::bson::to_vec(&document).unwrap().len()
    };
    let before = size().await;
    let replies = app.messages(queue::ORDERS_ARTICLE_DATA);

    let orders: Vec<String> = (0..50).map(|_| order_id()).collect();
    place_all(&app, &orders, &lamp, 2).await;
    let answers = replies.take(orders.len()).await;

    assert!(answers.iter().all(|reply| reply["valid"] == false));
    assert_eq!(size().await, before);
    assert_eq!(app.checked_ledger(&lamp).await, 1);
}
