//! Catalog's consumers (CONTRACT section 9): `article-valid` and `article-data` requests answered
//! where each envelope asks (from the snapshot: advisory answers), `order_placed` deciding each
//! line in the stock ledger and answering one `article-data` per line from that decision,
//! `order_invalid` giving the reservations back and answering `order_released`; and the `catalog_changes` broadcast of other
//! instances' writes. Every handler stores its effect and publishes its replies (broker-confirmed)
//! before the message is acked, and is idempotent, so a redelivery after a crash or a reconnect,
//! or the same message taken by two instances, changes nothing twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::try_join_all;
use rabbit::contract::{
    self, ArticleDataReply, ArticleDataRequest, ArticleValidReply, ArticleValidRequest,
    OrderInvalid, OrderPlaced, OrderReleased, exchange, kind, queue,
};
use rabbit::{Consumer, Envelope, HandlerError, Message, Rabbit, RabbitError};
use tracing::info;

use crate::changes::ArticleChanged;
use crate::order::{demands, is_usable_order_id};
use crate::store::{Answer, Store};

/// Listens to the `catalog_changes` broadcast on a queue of this instance's own. Announcements
/// made while the queue did not exist (a reconnect) are lost, so each re-subscription calls
/// `missed`, which asks for a full reload.
pub fn listen_for_changes(
    rabbit: &Rabbit,
    store: Store,
    missed: impl Fn() + Send + Sync + 'static,
) {
    let subscribed_before = AtomicBool::new(false);
    let consumer = Consumer {
        on_subscribed: Some(Arc::new(move || {
            if subscribed_before.swap(true, Ordering::Relaxed) {
                missed();
            }
        })),
        ..contract::listener(exchange::CATALOG_CHANGES)
    };
    rabbit.consume(consumer, move |message: Arc<Message<ArticleChanged>>| {
        store.hear(message.envelope.message.clone());
        async { Ok(()) }
    });
}

/// Starts the four consumers; they run across reconnects until shutdown.
pub fn start(rabbit: &Rabbit, store: Store) {
    rabbit.consume(contract::consumer(queue::CATALOG_ARTICLE_VALID), {
        let (rabbit, store) = (rabbit.clone(), store.clone());
        move |message| article_valid(rabbit.clone(), store.clone(), message)
    });
    rabbit.consume(contract::consumer(queue::CATALOG_ARTICLE_DATA), {
        let (rabbit, store) = (rabbit.clone(), store.clone());
        move |message| article_data(rabbit.clone(), store.clone(), message)
    });
    rabbit.consume(contract::consumer(queue::CATALOG_ORDER_PLACED), {
        let (rabbit, store) = (rabbit.clone(), store.clone());
        move |message| order_placed(rabbit.clone(), store.clone(), message)
    });
    rabbit.consume(contract::consumer(queue::CATALOG_ORDER_INVALID), {
        let rabbit = rabbit.clone();
        move |message| order_invalid(rabbit.clone(), store.clone(), message)
    });
}

/// Valid: the article exists and is enabled.
async fn article_valid(
    rabbit: Rabbit,
    store: Store,
    message: Arc<Message<ArticleValidRequest>>,
) -> Result<(), HandlerError> {
    answerable(&message, Some((exchange::CART, kind::ARTICLE_VALID)))?;
    let request = &message.envelope.message;
    let article = store.get(&request.article_id).await.map_err(stored)?;
    let reply = ArticleValidReply {
        reference_id: request.reference_id.clone(),
        article_id: request.article_id.clone(),
        valid: article.is_some_and(|article| article.enabled),
    };
    rabbit.reply(&message, reply).await.map_err(published)
}

/// Valid: the article exists, is enabled and, when a quantity is asked, has that much stock.
async fn article_data(
    rabbit: Rabbit,
    store: Store,
    message: Arc<Message<ArticleDataRequest>>,
) -> Result<(), HandlerError> {
    answerable(&message, None)?;
    let request = &message.envelope.message;
    let article = store.get(&request.article_id).await.map_err(stored)?;
    let answer = match article {
        None => Answer::UNKNOWN,
        Some(article) => Answer {
            valid: article.enabled
                && request
                    .quantity
                    .is_none_or(|quantity| quantity >= 1 && article.stock >= quantity),
            price: article.price,
            stock: article.stock,
        },
    };
    let reply = data_reply(&request.reference_id, &request.article_id, answer);
    let reply = ArticleDataReply {
        quantity: request.quantity,
        ..reply
    };
    rabbit.reply(&message, reply).await.map_err(published)
}

/// Whether a plain question may be answered where it asks: over direct reply-to to its asker, or
/// on `reply_queue` (exchange and routing key) when the contract has one for it. Anything else is
/// refused, chiefly `orders`/`article-data`, where an answer would pass for the reservation
/// answer to an `order_placed` although nothing was reserved.
fn answerable<T>(
    message: &Message<T>,
    reply_queue: Option<(&str, &str)>,
) -> Result<(), HandlerError> {
    let Envelope {
        exchange,
        routing_key,
        ..
    } = &message.envelope;
    if message.asks_direct_reply()
        || message.reply_to().is_none()
        || reply_queue == Some((exchange.as_str(), routing_key.as_str()))
    {
        return Ok(());
    }
    Err(HandlerError::Invalid(format!(
        "a {} question may not be answered on {exchange:?}/{routing_key:?}",
        message.envelope.kind
    )))
}

/// Decides every line in the ledger (reserved or refused, once per order and article), then
/// answers one `article-data` per line from that decision, the order id as `referenceId`. The
/// replies go out together, confirmed, before the message is acked.
async fn order_placed(
    rabbit: Rabbit,
    store: Store,
    message: Arc<Message<OrderPlaced>>,
) -> Result<(), HandlerError> {
    let order = &message.envelope.message;
    usable(&order.order_id)?;
    let mut answers = Vec::new();
    for demand in demands(&order.articles) {
        let answer = match demand.quantity {
            Some(quantity) => store
                .reserve(&demand.article_id, &order.order_id, quantity)
                .await
                .map_err(stored)?,
            None => Answer::UNKNOWN,
        };
        answers.push((demand.article_id, answer));
    }
    let replies = order.articles.iter().map(|line| {
        let (_, answer) = answers
            .iter()
            .find(|(article_id, _)| *article_id == line.article_id)
            .expect("every line has a demand");
        let reply = ArticleDataReply {
            quantity: Some(line.quantity),
            ..data_reply(&order.order_id, &line.article_id, *answer)
        };
        rabbit.reply(&message, reply)
    });
    try_join_all(replies).await.map_err(published)?;
    info!(order_id = %order.order_id, lines = order.articles.len(), "order answered");
    Ok(())
}

/// Gives back what was reserved for the order, once per article, then tells orders with a
/// confirmed `order_released` (also for a repeated `order_invalid`: orders may have missed the
/// first one), before the message is acked. Orders sends the `order_invalid` again until it hears
/// it, so the stock of an invalid order is given back even past a dead-lettered message.
async fn order_invalid(
    rabbit: Rabbit,
    store: Store,
    message: Arc<Message<OrderInvalid>>,
) -> Result<(), HandlerError> {
    let order = &message.envelope.message;
    usable(&order.order_id)?;
    for demand in demands(&order.articles) {
        let released = store
            .release(&demand.article_id, &order.order_id)
            .await
            .map_err(stored)?;
        if released {
            info!(order_id = %order.order_id, article_id = %demand.article_id, "stock given back");
        }
    }
    let released = OrderReleased {
        order_id: order.order_id.clone(),
    };
    let envelope = Envelope::new(
        kind::ORDER_RELEASED,
        message.envelope.correlation_id.as_str(),
        released,
    );
    rabbit
        .publish(exchange::ORDERS, kind::ORDER_RELEASED, &envelope)
        .await
        .map_err(published)
}

fn data_reply(reference_id: &str, article_id: &str, answer: Answer) -> ArticleDataReply {
    ArticleDataReply {
        reference_id: reference_id.into(),
        article_id: article_id.into(),
        valid: answer.valid,
        price: answer.price,
        stock: answer.stock,
        quantity: None,
    }
}

fn usable(order_id: &str) -> Result<(), HandlerError> {
    if is_usable_order_id(order_id) {
        Ok(())
    } else {
        Err(HandlerError::Invalid(format!(
            "unusable order id {order_id:?}"
        )))
    }
}

/// MongoDB down: keep the message until it is back.
fn stored(error: mongodb::error::Error) -> HandlerError {
    if common::mongo::is_unavailable(&error) {
        HandlerError::Unavailable(format!("MongoDB: {error}"))
    } else {
        HandlerError::Failed(format!("MongoDB: {error}"))
    }
}

/// RabbitMQ down: the effect is stored, so the redelivered message only replies again.
fn published(error: RabbitError) -> HandlerError {
    match error {
        RabbitError::Unavailable
        | RabbitError::Timeout
        | RabbitError::Unroutable
        | RabbitError::Protocol(_) => HandlerError::Unavailable(format!("RabbitMQ: {error}")),
        error => HandlerError::Failed(format!("reply refused: {error}")),
    }
}
