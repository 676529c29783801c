//! The Order projection is derived from the events and can be rebuilt from them at any time; the
//! batches keep Order_Status, repair projections, re-drive orders stuck in PLACED and announce
//! what was never announced (CONTRACT section 8).

mod support;

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use rabbit::contract::kind;
use serde_json::json;
use support::{line, most_re_drives_within, spawn_orders, spawn_orders_with};

#[tokio::test]
async fn a_rebuilt_projection_equals_the_live_one() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 2, 1.25), ("b", 1, 7.0)])
        .await;
    let payment = json!({"method": "CREDIT", "amount": 2});
    let paid = app
        .post(
            &format!("/orders/{order_id}/payment"),
            Some(&token),
            &payment,
        )
        .await;
    assert_eq!(paid.status, 200, "{paid}");
    let live = app.get(&format!("/orders/{order_id}"), Some(&token)).await;

    let rebuilt = app
        .get(&format!("/orders/{order_id}/update"), Some(&token))
        .await;

    rebuilt.assert_is(200, live.json());
    let projections = app.db.collection::<Document>("orders");
    projections
        .delete_many(doc! {"orderId": &order_id})
        .await
        .unwrap();
    // Reads go to the store once the read model in Redis is gone too.
    app.forget_read_model(&format!("order:{order_id}")).await;
    app.get(&format!("/orders/{order_id}"), Some(&token))
        .await
        .assert_is(404, json!({"error": "Not found"}));
    app.get(&format!("/orders/{order_id}/update"), Some(&token))
        .await
        .assert_is(200, live.json());
    app.get(&format!("/orders/{order_id}"), Some(&token))
        .await
        .assert_is(200, live.json());
}

#[tokio::test]
async fn a_rebuild_repairs_a_projection_that_drifted_from_the_events() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 3.0)])
        .await;
    let live = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    app.db
        .collection::<Document>("orders")
        .update_many(
            doc! {"orderId": &order_id},
            doc! {"$set": {"status": "INVALID", "articles": []}},
        )
        .await
        .unwrap();

    let rebuilt = app
        .get(&format!("/orders/{order_id}/update"), Some(&token))
        .await;

    rebuilt.assert_is(200, live.json());
}

#[tokio::test]
async fn the_placed_batch_re_drives_an_order_stuck_in_placed() {
    let app =
        spawn_orders_with(|config| config.stuck_placed_after = Duration::from_millis(1)).await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    app.validated_order(&token, &user_id, &[("a", 1, 1.0)])
        .await;
    let stuck = app.placed_order(&user_id, vec![line("b", 2)]).await;

    let run = app.get("/orders_batch/placed", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 1}));
    let again = app.next_published(kind::ORDER_PLACED).await;
    assert_eq!(again.message["orderId"], json!(stuck));
    assert_eq!(
        again.message["articles"],
        json!([{"articleId": "b", "quantity": 2}])
    );
    assert_eq!(
        (again.exchange.as_str(), again.routing_key.as_str()),
        ("orders", "article-data")
    );
    let status = app
        .db
        .collection::<Document>("order_status")
        .find_one(doc! {"_id": format!("{stuck}:PLACED")})
        .await
        .unwrap()
        .expect("an Order_Status record");
    assert_eq!(status.get_str("status").unwrap(), "PLACED");
}

#[tokio::test]
async fn the_placed_batch_runs_by_itself_at_its_interval() {
    let app = spawn_orders_with(|config| {
        config.stuck_placed_after = Duration::from_millis(1);
        config.placed_batch_interval = Duration::from_millis(200);
    })
    .await;
    let (_, user_id) = app.user("buyer01").await;

    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;

    let again = app.next_published(kind::ORDER_PLACED).await;
    assert_eq!(again.message["orderId"], json!(order_id));
}

#[tokio::test]
async fn a_stuck_order_is_re_driven_on_a_doubling_schedule_not_on_every_run() {
    let (first, max) = (Duration::from_secs(1), Duration::from_secs(3));
    let app = spawn_orders_with(|config| {
        config.stuck_placed_after = first;
        config.redrive_max = max;
        config.placed_batch_interval = Duration::from_millis(100);
    })
    .await;
    let (_, user_id) = app.user("buyer01").await;
    let watching = Instant::now();
    // No catalog answers: the order stays PLACED.
    let order_id = app.placed_order(&user_id, vec![line("a", 1)]).await;

    tokio::time::sleep(Duration::from_secs(10)).await;

    let re_driven = app.re_drives_so_far(&order_id).await;
    let attempts = app
        .assert_re_sent_on_schedule(&order_id, re_driven, watching, (first, max))
        .await;
    let allowed = most_re_drives_within(watching.elapsed(), first, max);
    assert!(attempts.len() <= allowed, "{attempts:?}, {allowed} allowed");
}

#[tokio::test]
async fn the_payment_defined_batch_announces_a_status_never_announced() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 2.0)])
        .await;
    let payment = json!({"method": "CASH", "amount": 2});
    app.post(
        &format!("/orders/{order_id}/payment"),
        Some(&token),
        &payment,
    )
    .await;
    app.next_published(kind::ORDER_PAYMENT_DEFINED).await;
    // One record per status reached: a late VALIDATED cannot overwrite PAYMENT_DEFINED.
    app.forget_announcement(&order_id, "VALIDATED").await;
    // As if the service had stopped between the payment and its announcement.
    app.forget_announcement(&order_id, "PAYMENT_DEFINED").await;

    let run = app.get("/orders_batch/payment_defined", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 1}));
    let announced = app.next_published(kind::ORDER_PAYMENT_DEFINED).await;
    assert_eq!(announced.message["orderId"], json!(order_id));
}

#[tokio::test]
async fn the_validated_batch_publishes_order_invalid_again_while_catalog_has_not_released_it() {
    let app =
        spawn_orders_with(|config| config.stuck_placed_after = Duration::from_millis(1)).await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app.invalid_order(&token, &user_id).await;
    app.next_published(kind::ORDER_INVALID).await;
    // Never confirmed, or confirmed: either way catalog has not answered.
    app.forget_announcement(&order_id, "INVALID").await;

    let run = app.get("/orders_batch/validated", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 1}));
    let invalid = app.next_published(kind::ORDER_INVALID).await;
    assert_eq!(
        invalid.message,
        json!({"orderId": order_id, "articles": [{"articleId": "b", "quantity": 2}]})
    );
    // The broker's confirm of the re-send is recorded as the announcement.
    app.wait_for_announcement(&order_id, "INVALID").await;
}

#[tokio::test]
async fn a_batch_skips_an_order_it_cannot_check_and_goes_on_with_the_others() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 2.0)])
        .await;
    app.next_published(kind::ORDER_VALIDATED).await;
    // As if the service had stopped before announcing it.
    app.forget_announcement(&order_id, "VALIDATED").await;
    // An order whose only event no version of orders can read.
    app.db
        .collection::<Document>("events")
        .insert_one(
            doc! {"_id": "broken:0", "orderId": "broken", "position": 0_i64,
            "type": "unheard_of", "data": {}, "created": DateTime::now()},
        )
        .await
        .unwrap();
    app.db
        .collection::<Document>("orders")
        .insert_one(
            doc! {"_id": "broken:0", "orderId": "broken", "position": 0_i64,
            "status": "VALIDATED"},
        )
        .await
        .unwrap();

    let run = app.get("/orders_batch/validated", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 2}));
    let announced = app.next_published(kind::ORDER_VALIDATED).await;
    assert_eq!(announced.message["orderId"], json!(order_id));
}

#[tokio::test]
async fn a_batch_repairs_a_projection_behind_its_events_and_records_the_status() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 2.0)])
        .await;
    let live = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 1}));
    // As if the service had stopped between an append and its projection update: the snapshot
    // of position 0, never settled.
    app.db
        .collection::<Document>("orders")
        .update_many(
            doc! {"orderId": &order_id},
            doc! {"$set": {"status": "PLACED", "position": 0_i64, "settled": false}},
        )
        .await
        .unwrap();

    let run = app.get("/orders_batch/placed", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 1}));
    app.get(&format!("/orders/{order_id}"), Some(&token))
        .await
        .assert_is(200, live.json());
    let status = app
        .db
        .collection::<Document>("order_status")
        .find_one(doc! {"_id": format!("{order_id}:VALIDATED")})
        .await
        .unwrap()
        .expect("an Order_Status record");
    assert_eq!(status.get_str("status").unwrap(), "VALIDATED");
}

#[tokio::test]
async fn a_batch_examines_an_order_once_its_status_is_recorded_and_announced() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let mut paid = Vec::new();
    for n in 0..4 {
        let order_id = app
            .validated_order(&token, &user_id, &[(&format!("a{n}"), 1, 2.0)])
            .await;
        let payment = json!({"method": "CASH", "amount": 2});
        let reply = app
            .post(
                &format!("/orders/{order_id}/payment"),
                Some(&token),
                &payment,
            )
            .await;
        assert_eq!(reply.status, 200, "{reply}");
        paid.push(order_id);
    }
    for _ in &paid {
        app.next_published(kind::ORDER_PAYMENT_DEFINED).await;
    }
    let waiting = app
        .validated_order(&token, &user_id, &[("b", 1, 5.0)])
        .await;

    let first = app.get("/orders_batch/payment_defined", Some(&admin)).await;
    let second = app.get("/orders_batch/payment_defined", Some(&admin)).await;

    first.assert_is(200, json!({"processed": paid.len()}));
    second.assert_is(200, json!({"processed": 0}));
    let status = app.db.collection::<Document>("order_status");
    for order_id in &paid {
        let records = status
            .count_documents(doc! {"orderId": order_id})
            .await
            .unwrap();
        assert_eq!(records, 1, "one record, PAYMENT_DEFINED, for {order_id}");
    }
    // A VALIDATED order waiting for its payment is examined once too.
    app.forget_announcement(&waiting, "VALIDATED").await;
    let validated = app.get("/orders_batch/validated", Some(&admin)).await;
    validated.assert_is(200, json!({"processed": 1}));
    loop {
        let announced = app.next_published(kind::ORDER_VALIDATED).await;
        if announced.correlation_id.starts_with("batch-") {
            assert_eq!(announced.message["orderId"], json!(waiting));
            break;
        }
    }
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 0}));
    // A payment makes a new snapshot: the order can change again, so it is examined again.
    let payment = json!({"method": "CASH", "amount": 1});
    app.post(
        &format!("/orders/{waiting}/payment"),
        Some(&token),
        &payment,
    )
    .await;
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 1}));
}

#[tokio::test]
async fn batches_are_for_admins_only() {
    let app = spawn_orders().await;
    let (token, _) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;

    for batch in ["placed", "validated", "payment_defined"] {
        app.get(&format!("/orders_batch/{batch}"), Some(&token))
            .await
            .assert_is(403, json!({"error": "Forbidden"}));
        app.get(&format!("/orders_batch/{batch}"), Some(&admin))
            .await
            .assert_is(200, json!({"processed": 0}));
    }
    app.get("/orders_batch/invalid", Some(&admin))
        .await
        .assert_is(404, json!({"error": "Not found"}));
}

#[tokio::test]
async fn the_payment_defined_batch_catches_up_a_payment_whose_projection_was_never_written() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 4.0)])
        .await;
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 1}));
    // As if the instance had stopped right after appending a payment: no projection, no
    // announcement, and a client that never retried.
    app.db
        .collection::<Document>("events")
        .insert_one(doc! {
            "_id": format!("{order_id}:payment:lost-response"), "orderId": &order_id,
            "position": 2_i64, "type": "payment_added",
            "data": {"paymentId": "lost-response", "method": "CASH", "amount": 4.0},
            "created": DateTime::now(),
        })
        .await
        .unwrap();

    let run = app.get("/orders_batch/payment_defined", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 1}));
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["status"], "PAYMENT_DEFINED", "{order}");
    assert_eq!(order.json()["totalPayment"], json!(4.0));
    let announced = app.next_published(kind::ORDER_PAYMENT_DEFINED).await;
    assert_eq!(announced.message["orderId"], json!(order_id));
    app.get("/orders_batch/payment_defined", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 0}));
}

#[tokio::test]
async fn an_older_snapshot_written_late_hides_nothing_and_a_batch_deletes_it_quietly() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let admin = app.auth.admin("admin01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 2.0)])
        .await;
    let live = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 1}));
    // As a writer of the fold at position 0 leaves it when it finishes after the writer of
    // position 1 deleted what was below: beside the newest snapshot, which the batch settled.
    let projections = app.db.collection::<Document>("orders");
    let mut older = projections
        .find_one(doc! {"orderId": &order_id})
        .await
        .unwrap()
        .expect("the order's snapshot");
    older.insert("_id", format!("{order_id}:0"));
    older.insert("position", 0_i64);
    older.insert("status", "PLACED");
    older.insert("settled", false);
    projections.insert_one(older).await.unwrap();
    app.forget_read_model(&format!("order:{order_id}")).await;
    app.forget_read_model(&format!("order-summary:{order_id}"))
        .await;

    app.get(&format!("/orders/{order_id}"), Some(&token))
        .await
        .assert_is(200, live.json());
    let listed = app.get("/orders", Some(&token)).await;
    assert_eq!(listed.json()[0]["status"], "VALIDATED", "{listed}");
    let run = app.get("/orders_batch/placed", Some(&admin)).await;

    run.assert_is(200, json!({"processed": 1}));
    let positions: Vec<i64> = app
        .db
        .collection::<Document>("orders")
        .find(doc! {"orderId": &order_id})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|snapshot| snapshot.get_i64("position").unwrap())
        .collect();
    assert_eq!(positions, [1], "only the newest snapshot is left");
    // The newest snapshot is settled still: the validated batch has nothing to examine.
    app.get("/orders_batch/validated", Some(&admin))
        .await
        .assert_is(200, json!({"processed": 0}));
    app.get(&format!("/orders/{order_id}"), Some(&token))
        .await
        .assert_is(200, live.json());
}
