//! `article-valid` and `article-data` requests (CONTRACT section 9), answered where each envelope
//! asks: a queue of the requester's exchange, or RabbitMQ direct reply-to. Malformed messages go
//! to the dead-letter queue without stopping the consumer, and consumers resume by themselves
//! after the broker closed their connection.

mod support;

use std::time::Duration;

use rabbit::Envelope;
use rabbit::contract::{
    ArticleDataReply, ArticleDataRequest, ArticleValidReply, exchange, kind, queue,
};
use serde_json::json;
use support::spawn_catalog;

#[tokio::test]
async fn article_valid_answers_on_the_exchange_and_key_of_the_envelope() {
    let app = spawn_catalog().await;
    let admin = app.admin().await;
    let enabled = app.article("Lamp", 1).await;
    let disabled = app.article("Old lamp", 1).await;
    app.delete(&format!("/articles/{disabled}"), Some(&admin))
        .await;
    let replies = app.messages(queue::CART_ARTICLE_VALID);

    for article_id in [enabled.as_str(), disabled.as_str(), "unknown"] {
        let request = json!({"referenceId": "cart-7", "articleId": article_id});
        let reply_to = (exchange::CART, kind::ARTICLE_VALID);
        app.publish(
            exchange::CATALOG,
            kind::ARTICLE_VALID,
            request,
            Some(reply_to),
        )
        .await;
        let reply = replies.next().await;
        assert_eq!(reply["type"], "article-valid", "{reply}");
        let valid = article_id == enabled;
        assert_eq!(
            reply["message"],
            json!({"referenceId": "cart-7", "articleId": article_id, "valid": valid})
        );
    }
}

#[tokio::test]
async fn article_data_answers_price_stock_and_whether_the_quantity_is_in_stock() {
    let app = spawn_catalog().await;
    let article = app.create("Lamp", "", 19.5, 3).await;
    let id = article["_id"].as_str().unwrap();
    let cases = [
        (json!({"referenceId": "r", "articleId": id}), true, 19.5, 3),
        (
            json!({"referenceId": "r", "articleId": id, "quantity": 3}),
            true,
            19.5,
            3,
        ),
        (
            json!({"referenceId": "r", "articleId": id, "quantity": 4}),
            false,
            19.5,
            3,
        ),
        (
            json!({"referenceId": "r", "articleId": "nope", "quantity": 1}),
            false,
            0.0,
            0,
        ),
    ];
    for (request, valid, price, stock) in cases {
        let question = Envelope::new(kind::ARTICLE_DATA, "c", request.clone());
        let reply: Envelope<ArticleDataReply> = app
            .rabbit
            .request(
                exchange::CATALOG,
                kind::ARTICLE_DATA,
                question,
                support::PATIENCE,
            )
            .await
            .expect("catalog answers");
        let reply = reply.message;
        assert_eq!(
            (reply.valid, reply.price, reply.stock, reply.quantity),
            (valid, price, stock, request["quantity"].as_i64()),
            "{request}"
        );
        assert_eq!(reply.article_id, request["articleId"].as_str().unwrap());
        assert_eq!(reply.reference_id, "r");
    }
}

#[tokio::test]
async fn replies_echo_the_correlation_id() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 1).await;
    let replies = app.messages(queue::CART_ARTICLE_VALID);
    let request = Envelope::new(
        kind::ARTICLE_VALID,
        "correlation-42",
        json!({"referenceId": "cart-1", "articleId": id}),
    )
    .with_reply_to(rabbit::ReplyTo {
        exchange: exchange::CART.into(),
        routing_key: kind::ARTICLE_VALID.into(),
    });

    app.rabbit
        .publish(exchange::CATALOG, kind::ARTICLE_VALID, &request)
        .await
        .unwrap();

    assert_eq!(replies.next().await["correlation_id"], "correlation-42");
}

#[tokio::test]
async fn a_direct_reply_to_request_gets_its_answer() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 5).await;
    let request = ArticleDataRequest {
        reference_id: "cart-9".into(),
        article_id: id.clone(),
        quantity: Some(2),
    };

    let reply: Envelope<ArticleDataReply> = app
        .rabbit
        .request(
            exchange::CATALOG,
            kind::ARTICLE_DATA,
            Envelope::new(kind::ARTICLE_DATA, "correlation-7", request),
            support::PATIENCE,
        )
        .await
        .expect("catalog answers");

    assert_eq!(reply.correlation_id, "correlation-7");
    assert_eq!(
        reply.message,
        ArticleDataReply {
            reference_id: "cart-9".into(),
            article_id: id,
            valid: true,
            price: 2.5,
            stock: 5,
            quantity: Some(2),
        }
    );
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_and_the_consumer_keeps_going() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 1).await;
    let dead = app.messages("catalog.article-valid.dlq");
    let replies = app.messages(queue::CART_ARTICLE_VALID);
    let reply_to = Some((exchange::CART, kind::ARTICLE_VALID));

    app.publish(
        exchange::CATALOG,
        kind::ARTICLE_VALID,
        json!({"article": 1}),
        reply_to,
    )
    .await;
    app.publish(
        exchange::CATALOG,
        kind::ARTICLE_VALID,
        json!({"referenceId": "c", "articleId": id}),
        reply_to,
    )
    .await;

    assert_eq!(dead.next().await["message"], json!({"article": 1}));
    let reply: ArticleValidReply =
        serde_json::from_value(replies.next().await["message"].clone()).unwrap();
    assert!(reply.valid);
}

/// A plain question is answered only to its asker (direct reply-to) or on cart's reply queue:
/// asked to answer on orders' queue, where an answer would pass for a reservation, catalog
/// dead-letters it. And it takes questions only from cart and orders, order messages only from
/// orders.
#[tokio::test]
async fn catalog_answers_only_where_and_whom_the_contract_says() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 4).await;
    let data_dead = app.messages("catalog.article-data.dlq");
    let orders_replies = app.messages(queue::ORDERS_ARTICLE_DATA);
    let question = json!({"referenceId": "an-order", "articleId": id, "quantity": 1});
    let orders_queue = Some((exchange::ORDERS, kind::ARTICLE_DATA));

    app.publish(
        exchange::CATALOG,
        kind::ARTICLE_DATA,
        question,
        orders_queue,
    )
    .await;
    assert_eq!(data_dead.next().await["message"]["referenceId"], "an-order");

    let placed_dead = app.messages("catalog.order_placed.dlq");
    let order = json!({"orderId": "from-cart", "cartId": "c", "userId": "u",
                       "articles": [{"articleId": id, "quantity": 1}]});
    let envelope =
        rabbit::Envelope::new(kind::ORDER_PLACED, "forged", order).with_reply_to(rabbit::ReplyTo {
            exchange: exchange::ORDERS.into(),
            routing_key: kind::ARTICLE_DATA.into(),
        });
    app.rabbit
        .speaking_as("cart")
        .publish(exchange::SELL_FLOW, kind::ORDER_PLACED, &envelope)
        .await
        .unwrap();
    assert_eq!(placed_dead.next().await["message"]["orderId"], "from-cart");
    assert_eq!(app.stock(&id).await, 4, "nothing reserved");
    assert!(orders_replies.is_empty().await, "no answer reached orders");
}

#[tokio::test]
async fn an_order_with_an_unusable_order_id_is_dead_lettered() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 4).await;
    let dead = app.messages("catalog.order_placed.dlq");

    app.place_order("a.b", &[(&id, 1)]).await;

    assert_eq!(dead.next().await["message"]["orderId"], "a.b");
    assert_eq!(app.stock(&id).await, 4);
}

#[tokio::test]
async fn consumers_resume_after_the_broker_closes_the_connection() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 1).await;
    let replies = app.messages(queue::CART_ARTICLE_VALID);
    let request = json!({"referenceId": "cart-1", "articleId": id});
    let reply_to = Some((exchange::CART, kind::ARTICLE_VALID));
    app.publish(
        exchange::CATALOG,
        kind::ARTICLE_VALID,
        request.clone(),
        reply_to,
    )
    .await;
    replies.next().await;

    let closed = app.vhost.close_connections().await;
    assert!(
        app.vhost.wait_for_new_connection(&closed).await,
        "nobody reconnected"
    );

    app.publish(exchange::CATALOG, kind::ARTICLE_VALID, request, reply_to)
        .await;
    let reply = replies.next().await;
    assert_eq!(reply["message"]["valid"], true, "{reply}");
    let healthy = testkit::eventually(Duration::from_secs(20), || async {
        app.get("/health").await.status == 200
    })
    .await;
    assert!(healthy, "catalog never reported healthy again");
}
