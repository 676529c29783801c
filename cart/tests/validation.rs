//! Line validation against catalog over RabbitMQ: asynchronous `article-valid` answers, the
//! periodic revalidation, and the on-demand `/cart/validate` over direct reply-to.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use rabbit::Envelope;
use rabbit::contract::{ArticleValidReply, exchange, kind, service};
use serde_json::json;
use support::{PATIENCE, TestCart, id_of, line, spawn_cart, spawn_cart_with};

/// Waits until the line of `article_id` is validated with `valid`.
async fn line_becomes(app: &TestCart, token: &str, article_id: &str, valid: bool) -> bool {
    testkit::eventually(PATIENCE, || async {
        let cart = app.cart(token).await;
        line(&cart, article_id)
            .is_some_and(|line| line["validated"] == true && line["valid"] == valid)
    })
    .await
}

#[tokio::test]
async fn lines_become_validated_after_catalog_replies() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("sold", true, 5);
    let token = app.user().await;
    let cart = app.add(&token, "sold", 1).await;
    app.add(&token, "unknown", 1).await;
    assert!(line_becomes(&app, &token, "sold", true).await);
    assert!(line_becomes(&app, &token, "unknown", false).await);
    let requests = catalog.valid_requests.lock().unwrap().clone();
    assert!(
        requests.iter().all(|r| r.reference_id == id_of(&cart)),
        "{requests:?}"
    );
}

#[tokio::test]
async fn the_periodic_revalidation_notices_a_disabled_article() {
    let app = spawn_cart_with(|config| config.revalidate_every = Duration::from_millis(300)).await;
    let catalog = app.catalog();
    catalog.set("soon-gone", true, 5);
    let token = app.user().await;
    app.add(&token, "soon-gone", 2).await;
    assert!(line_becomes(&app, &token, "soon-gone", true).await);
    catalog.set("soon-gone", false, 5);
    assert!(line_becomes(&app, &token, "soon-gone", false).await);
}

#[tokio::test]
async fn the_periodic_revalidation_leaves_abandoned_carts_alone() {
    let app = spawn_cart_with(|config| config.revalidate_every = Duration::from_millis(300)).await;
    let catalog = app.catalog();
    let eight_days_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 8 * 86_400_000);
    let line = doc! {
        "articleId": "abandoned", "quantity": 1_i64, "valid": false, "validated": false,
        "version": 1_i64,
    };
    let abandoned = doc! {
        "_id": "gone:0", "userId": "gone", "number": 0_i64, "orderId": "", "articles": [line],
        "enabled": true, "created": eight_days_ago, "updated": eight_days_ago, "position": 1_i64,
    };
    app.db
        .collection::<Document>("current_carts")
        .insert_one(doc! {"_id": "gone", "cart": abandoned})
        .await
        .unwrap();
    let token = app.user().await;
    app.add(&token, "recent", 1).await;
    // The request of the add, then two revalidation rounds: the abandoned cart had its chances.
    let rounds = testkit::eventually(PATIENCE, || async {
        catalog.valid_requests_for("recent") >= 3
    })
    .await;
    assert!(rounds);
    assert_eq!(catalog.valid_requests_for("abandoned"), 0);
}

#[tokio::test]
async fn a_reply_for_an_unknown_cart_is_ignored_and_the_next_one_applies() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let cart = app.add(&token, "a", 1).await;
    for reference_id in ["no-such-cart".to_owned(), id_of(&cart)] {
        let reply = ArticleValidReply {
            reference_id,
            article_id: "a".into(),
            valid: true,
        };
        let envelope = Envelope::new(kind::ARTICLE_VALID, "test", reply);
        app.rabbit
            .speaking_as(service::CATALOG)
            .publish(exchange::CART, kind::ARTICLE_VALID, &envelope)
            .await
            .unwrap();
    }
    assert!(line_becomes(&app, &token, "a", true).await);
}

/// Only catalog answers `article-valid`: the same reply from anyone else (here orders, whose
/// user may publish to the exchange of the test's vhost through `guest`) is dead-lettered
/// unread, and the line stays unvalidated.
#[tokio::test]
async fn a_reply_from_another_sender_than_catalog_is_dead_lettered() {
    let app = spawn_cart().await;
    let token = app.user().await;
    let cart = app.add(&token, "a", 1).await;
    let reply = ArticleValidReply {
        reference_id: id_of(&cart),
        article_id: "a".into(),
        valid: false,
    };
    let envelope = Envelope::new(kind::ARTICLE_VALID, "forged", reply);
    for sender in [service::ORDERS, "guest"] {
        app.rabbit
            .speaking_as(sender)
            .publish(exchange::CART, kind::ARTICLE_VALID, &envelope)
            .await
            .unwrap();
    }
    let dead_lettered = testkit::eventually(PATIENCE, || async {
        app.vhost.queued("cart.article-valid.dlq").await == 2
    })
    .await;
    assert!(
        dead_lettered,
        "both forged replies reach the dead-letter queue"
    );
    let cart = app.cart(&token).await;
    let line = line(&cart, "a").expect("the line");
    assert_eq!(line["validated"], false, "{cart}");
}

#[tokio::test]
async fn a_malformed_reply_is_dead_lettered() {
    let app = spawn_cart().await;
    let envelope = Envelope::new(kind::ARTICLE_VALID, "test", json!({"valid": "maybe"}));
    app.rabbit
        .speaking_as(service::CATALOG)
        .publish(exchange::CART, kind::ARTICLE_VALID, &envelope)
        .await
        .unwrap();
    let url = format!(
        "http://127.0.0.1:15672/api/queues/{}/cart.article-valid.dlq",
        app.vhost.name
    );
    let dead_lettered = testkit::eventually(PATIENCE, || async {
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
        queue["messages"] == 1
    })
    .await;
    assert!(dead_lettered);
}

#[tokio::test]
async fn validate_reports_unavailable_articles_as_errors_and_low_stock_as_warnings() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("plenty", true, 10);
    catalog.set("scarce", true, 1);
    catalog.set("withdrawn", false, 50);
    let token = app.user().await;
    for (article, quantity) in [
        ("plenty", 2),
        ("scarce", 3),
        ("withdrawn", 1),
        ("unknown", 1),
    ] {
        app.add(&token, article, quantity).await;
    }
    let unavailable = "The article does not exist or is no longer sold";
    app.get(Some(&token), "/cart/validate").await.assert_is(
        200,
        json!({
            "errors": [
                {"articleId": "withdrawn", "message": unavailable},
                {"articleId": "unknown", "message": unavailable},
            ],
            "warnings": [{"articleId": "scarce", "message": "Only 1 in stock"}],
        }),
    );
}

#[tokio::test]
async fn validate_records_the_answers_on_the_lines() {
    let app = spawn_cart().await;
    let catalog = app.catalog();
    catalog.set("back", false, 5);
    let token = app.user().await;
    app.add(&token, "back", 1).await;
    assert!(line_becomes(&app, &token, "back", false).await);
    catalog.set("back", true, 5);
    app.get(Some(&token), "/cart/validate")
        .await
        .assert_is(200, json!({"errors": [], "warnings": []}));
    let cart = app.cart(&token).await;
    assert_eq!(line(&cart, "back").unwrap()["valid"], true, "{cart}");
}

#[tokio::test]
async fn validating_an_empty_cart_finds_nothing_wrong() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.get(Some(&token), "/cart/validate")
        .await
        .assert_is(200, json!({"errors": [], "warnings": []}));
}

/// One user keeping many validates of a big cart in flight, against a catalog that takes a while
/// over each answer, holds only its share of the slots for questions to catalog: its validates
/// past its share answer 429, and another user's validate is answered meanwhile (review L3).
/// The flood is kept up (each of its clients asks again as soon as it is answered): questions
/// that were all asked at once would all time out together, and free the slots in time for the
/// other user's.
#[tokio::test]
async fn one_users_flood_of_validates_does_not_fail_another_users_validate() {
    let app = spawn_cart().await;
    let catalog = app.catalog_answering_data_only();
    let (greedy, other) = (app.user().await, app.user().await);
    for line in 0..40 {
        let article = format!("article-{line}");
        catalog.set(&article, true, 10);
        app.add(&greedy, &article, 1).await;
    }
    catalog.set("wanted", true, 10);
    app.add(&other, "wanted", 1).await;
    catalog.answer_data_after(Duration::from_millis(300));
    let flooding = std::sync::atomic::AtomicBool::new(true);

    let flood = futures_util::future::join_all((0..40).map(|_| async {
        let mut replies = Vec::new();
        while flooding.load(std::sync::atomic::Ordering::Relaxed) {
            let reply = app.get(Some(&greedy), "/cart/validate").await;
            if reply.status == 429 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            replies.push(reply);
        }
        replies
    }));
    let others = async {
        // Once the flood's first validates timed out and its clients ask again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let reply = app.get(Some(&other), "/cart/validate").await;
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        reply
    };
    let (flood, others) = tokio::join!(flood, others);

    others.assert_is(200, json!({"errors": [], "warnings": []}));
    let flood: Vec<_> = flood.into_iter().flatten().collect();
    let refused: Vec<_> = flood.iter().filter(|reply| reply.status == 429).collect();
    assert!(!refused.is_empty(), "no validate of the flood was refused");
    for reply in refused {
        reply.assert_is(429, json!({"error": "Too many requests"}));
        assert_eq!(reply.headers["retry-after"], "2", "{reply}");
    }
    for reply in &flood {
        assert!([200, 429, 503].contains(&reply.status.as_u16()), "{reply}");
    }
}

#[tokio::test]
async fn validate_answers_503_when_catalog_is_silent() {
    let app = spawn_cart().await;
    let token = app.user().await;
    app.add(&token, "a", 1).await;
    app.get(Some(&token), "/cart/validate")
        .await
        .assert_is(503, json!({"error": "Service unavailable"}));
}

/// A reply that names another article, or another cart, does not answer the question about a
/// line, whatever it says: the validation is as if catalog were silent.
#[tokio::test]
async fn validate_takes_no_reply_about_another_article_or_another_cart() {
    let app = spawn_cart().await;
    let catalog = app.catalog_answering_data_as(|reply| {
        if reply.article_id == "renamed" {
            reply.article_id = "another".into();
        } else {
            reply.reference_id = format!("{}-another", reply.reference_id);
        }
    });
    for article in ["renamed", "elsewhere", "another"] {
        catalog.set(article, true, 5);
    }
    for article in ["renamed", "elsewhere"] {
        let token = app.user().await;
        app.add(&token, article, 1).await;
        app.get(Some(&token), "/cart/validate")
            .await
            .assert_is(503, json!({"error": "Service unavailable"}));
    }
}
