//! Payments over REST (CONTRACT section 8): the owner pays a VALIDATED order, never more than the
//! unpaid balance, even with payments racing; the order becomes PAYMENT_DEFINED when paid. A
//! payment sent with an `Idempotency-Key` is paid once however often it is retried (the README's
//! contract extension).

mod support;

use rabbit::contract::kind;
use serde_json::json;
use support::spawn_orders;

#[tokio::test]
async fn payments_covering_the_total_define_the_payment_and_announce_it() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 3, 0.1)])
        .await;
    let path = format!("/orders/{order_id}/payment");

    let partly = app
        .post(
            &path,
            Some(&token),
            &json!({"method": "CASH", "amount": 0.2}),
        )
        .await;
    assert_eq!(partly.status, 200, "{partly}");
    assert_eq!(partly.json()["status"], "VALIDATED");
    assert_eq!(partly.json()["totalPayment"], json!(0.2));
    let fully = app
        .send(
            testkit::with_token(app.http.post(app.url(&path)), Some(&token))
                .header("correlation_id", "pay-0001")
                .json(&json!({"method": "DEBIT", "amount": 0.1, "orderId": order_id})),
        )
        .await;

    assert_eq!(fully.status, 200, "{fully}");
    let order = fully.json();
    assert_eq!(order["status"], "PAYMENT_DEFINED");
    assert_eq!(order["id"], json!(order_id));
    assert_eq!(
        order["payments"],
        json!([{"method": "CASH", "amount": 0.2}, {"method": "DEBIT", "amount": 0.1}])
    );
    assert_eq!(fully.header("correlation_id"), Some("pay-0001"));
    let announced = app.next_published(kind::ORDER_PAYMENT_DEFINED).await;
    assert_eq!(announced.correlation_id, "pay-0001");
    assert_eq!(
        announced.message,
        json!({"orderId": order_id, "userId": user_id, "status": "PAYMENT_DEFINED"})
    );
}

#[tokio::test]
async fn a_payment_with_fields_beyond_method_amount_and_its_own_order_id_is_refused() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let path = format!("/orders/{order_id}/payment");

    for field in ["status", "userId", "id", "payments"] {
        let body = json!({"method": "CASH", "amount": 1, field: "x"});
        let refused = app.post(&path, Some(&token), &body).await;
        refused.assert_is(
            400,
            json!({"error": format!(
                "Invalid JSON: unknown field `{field}`, expected one of `method`, `amount`, `orderId`"
            )}),
        );
    }
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["payments"], json!([]), "{order}");

    let another_order = json!({"method": "CASH", "amount": 1, "orderId": "another"});
    app.post(&path, Some(&token), &another_order)
        .await
        .assert_field_errors(&["orderId"]);
    let this_order = json!({"method": "CASH", "amount": 1, "orderId": order_id});
    let paid = app.post(&path, Some(&token), &this_order).await;
    assert_eq!(paid.status, 200, "{paid}");
}

#[tokio::test]
async fn a_payment_with_a_bad_method_or_amount_is_a_field_error() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let path = format!("/orders/{order_id}/payment");

    for (body, paths) in [
        (json!({"method": "BITCOIN", "amount": 1}), vec!["method"]),
        (json!({"method": "cash", "amount": 1}), vec!["method"]),
        (json!({"amount": 1}), vec!["method"]),
        (json!({"method": "CASH", "amount": "1"}), vec!["amount"]),
        (json!({"method": "CASH", "amount": 0}), vec!["amount"]),
        (json!({"method": "CASH", "amount": -5}), vec!["amount"]),
        (json!({"method": "CASH", "amount": null}), vec!["amount"]),
        (json!({"method": "CASH", "amount": 0.001}), vec!["amount"]),
        (json!({}), vec!["method", "amount"]),
    ] {
        app.post(&path, Some(&token), &body)
            .await
            .assert_field_errors(&paths);
    }
    let malformed = app
        .send(
            testkit::with_token(app.http.post(app.url(&path)), Some(&token))
                .header("content-type", "application/json")
                .body("{\"method\":"),
        )
        .await;
    assert_eq!(malformed.status, 400, "{malformed}");
    assert!(
        malformed.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON")
    );
}

#[tokio::test]
async fn a_payment_beyond_the_balance_is_refused() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 2, 5.0)])
        .await;
    let path = format!("/orders/{order_id}/payment");
    let paid = app
        .post(
            &path,
            Some(&token),
            &json!({"method": "CREDIT", "amount": 4}),
        )
        .await;
    assert_eq!(paid.status, 200, "{paid}");

    let refused = app
        .post(
            &path,
            Some(&token),
            &json!({"method": "CREDIT", "amount": 6.01}),
        )
        .await;

    refused.assert_is(
        400,
        json!({"error": "The amount exceeds the unpaid balance of 6.00"}),
    );
}

#[tokio::test]
async fn only_validated_orders_take_payments() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let placed = app
        .placed_order(&user_id, vec![support::line("a", 1)])
        .await;
    let paid = app
        .validated_order(&token, &user_id, &[("a", 1, 1.0)])
        .await;
    let body = json!({"method": "CASH", "amount": 1});
    app.post(&format!("/orders/{paid}/payment"), Some(&token), &body)
        .await;

    for (order_id, status) in [(placed, "PLACED"), (paid, "PAYMENT_DEFINED")] {
        app.post(&format!("/orders/{order_id}/payment"), Some(&token), &body)
            .await
            .assert_is(
                400,
                json!({"error": format!("Only VALIDATED orders take payments; this one is {status}")}),
            );
    }
}

#[tokio::test]
async fn concurrent_payments_never_pay_more_than_the_total() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let path = format!("/orders/{order_id}/payment");
    let body = json!({"method": "CASH", "amount": 3});

    let payments = (0..10).map(|_| app.post(&path, Some(&token), &body));
    let replies = futures_util::future::join_all(payments).await;

    let accepted = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(accepted, 3, "three payments of 3 fit in 10");
    assert!(
        replies
            .iter()
            .all(|reply| reply.status == 200 || reply.status == 400)
    );
    let order = app
        .get(&format!("/orders/{order_id}"), Some(&token))
        .await
        .json();
    assert_eq!(order["totalPayment"], json!(9.0));
    assert_eq!(order["payments"].as_array().unwrap().len(), 3);
    let events = app.assert_positions_are_a_sequence(&order_id).await;
    assert_eq!(events.len(), 5);
}

#[tokio::test]
async fn a_payment_retried_with_its_idempotency_key_is_paid_once_and_answered_the_same() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let body = json!({"method": "CREDIT", "amount": 4});

    let first = app.pay(&order_id, &token, Some("retry-me/1"), &body).await;
    let retried = app.pay(&order_id, &token, Some("retry-me/1"), &body).await;
    let other = app.pay(&order_id, &token, Some("retry-me/2"), &body).await;
    let after_more = app.pay(&order_id, &token, Some("retry-me/1"), &body).await;

    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.json()["totalPayment"], json!(4.0));
    retried.assert_is(200, first.json());
    assert_eq!(other.json()["totalPayment"], json!(8.0), "{other}");
    // Still what the first request answered, not the order as it is now.
    after_more.assert_is(200, first.json());
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["totalPayment"], json!(8.0), "{order}");
    assert_eq!(
        app.assert_positions_are_a_sequence(&order_id).await.len(),
        4
    );
}

#[tokio::test]
async fn a_retry_of_the_payment_that_completed_the_order_answers_payment_defined() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let body = json!({"method": "CASH", "amount": 10});

    let first = app.pay(&order_id, &token, Some("all-of-it"), &body).await;
    let retried = app.pay(&order_id, &token, Some("all-of-it"), &body).await;

    assert_eq!(first.json()["status"], "PAYMENT_DEFINED", "{first}");
    retried.assert_is(200, first.json());
    let without_key = app.pay(&order_id, &token, None, &body).await;
    assert_eq!(without_key.status, 400, "a new payment: {without_key}");
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_method_or_amount_is_a_conflict() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let paid = app
        .pay(
            &order_id,
            &token,
            Some("k1"),
            &json!({"method": "CASH", "amount": 2}),
        )
        .await;
    assert_eq!(paid.status, 200, "{paid}");

    for body in [
        json!({"method": "DEBIT", "amount": 2}),
        json!({"method": "CASH", "amount": 3}),
    ] {
        app.pay(&order_id, &token, Some("k1"), &body)
            .await
            .assert_is(
                409,
                json!({"error": "Idempotency-Key reused with a different payment"}),
            );
    }
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["totalPayment"], json!(2.0), "{order}");
}

#[tokio::test]
async fn one_idempotency_key_on_two_orders_pays_each() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let body = json!({"method": "CASH", "amount": 1});
    for article in ["a", "b"] {
        let order_id = app
            .validated_order(&token, &user_id, &[(article, 1, 5.0)])
            .await;
        let paid = app.pay(&order_id, &token, Some("same-key"), &body).await;
        assert_eq!(paid.json()["totalPayment"], json!(1.0), "{paid}");
    }
}

#[tokio::test]
async fn an_idempotency_key_that_is_empty_too_long_or_not_visible_ascii_is_a_field_error() {
    let app = spawn_orders().await;
    let (token, user_id) = app.user("buyer01").await;
    let order_id = app
        .validated_order(&token, &user_id, &[("a", 1, 10.0)])
        .await;
    let path = app.url(&format!("/orders/{order_id}/payment"));
    let body = json!({"method": "CASH", "amount": 1});
    let too_long = "k".repeat(201);
    let bad_keys: [&[u8]; 4] = [b"", too_long.as_bytes(), b"two words", b"caf\xe9"];

    for key in bad_keys {
        let request = testkit::with_token(app.http.post(&path), Some(&token))
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&body);
        app.send(request)
            .await
            .assert_field_errors(&["Idempotency-Key"]);
    }
    let longest = "k".repeat(200);
    let both_wrong = app
        .pay(
            &order_id,
            &token,
            Some("two words"),
            &json!({"method": "X", "amount": 1}),
        )
        .await;
    both_wrong.assert_field_errors(&["method", "Idempotency-Key"]);
    let paid = app.pay(&order_id, &token, Some(&longest), &body).await;
    assert_eq!(paid.status, 200, "{paid}");
    let order = app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.json()["totalPayment"], json!(1.0), "{order}");
}
