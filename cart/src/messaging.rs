//! What cart sends and receives over RabbitMQ (CONTRACT section 9): `article-valid` requests with
//! their replies, `article-data` requests over direct reply-to, `place_order`, and `order_placed`.

use std::sync::Arc;
use std::time::Duration;

use rabbit::contract::{
    self, ArticleDataReply, ArticleDataRequest, ArticleValidReply, ArticleValidRequest,
    OrderPlaced, exchange, kind, queue,
};
use rabbit::{Envelope, HandlerError, Message, Rabbit, RabbitError, ReplyTo};
use tracing::warn;

use crate::cart::{Answer, Cart};
use crate::service::Carts;

/// Asks catalog whether the article exists and is enabled; the answer comes back on
/// `cart.article-valid` with the cart id as `referenceId`, and with the line's `version` on the
/// correlation id (see `stamped`). The question expires after `ttl` (the revalidation interval):
/// one catalog did not take by then is asked again by the next round, so while catalog is slow
/// or down the questions never pile up in its queue, however many rounds pass.
pub async fn request_validation(
    rabbit: &Rabbit,
    cart_id: &str,
    article_id: &str,
    version: i64,
    correlation_id: &str,
    ttl: Duration,
) -> Result<(), RabbitError> {
    let request = ArticleValidRequest {
        reference_id: cart_id.into(),
        article_id: article_id.into(),
    };
    let correlation_id = stamped(correlation_id, version);
    let envelope =
        Envelope::new(kind::ARTICLE_VALID, correlation_id, request).with_reply_to(ReplyTo {
            exchange: exchange::CART.into(),
            routing_key: kind::ARTICLE_VALID.into(),
        });
    rabbit
        .publish_expiring(exchange::CATALOG, kind::ARTICLE_VALID, &envelope, ttl)
        .await
}

/// The correlation id of an `article-valid` question about a line at `version`. Catalog's reply
/// echoes only the cart id (`referenceId`, as the contract has it) and the correlation id, so
/// the version rides on the latter: `<correlation id>@v<version>`, still the request's id for
/// anyone searching the logs.
fn stamped(correlation_id: &str, version: i64) -> String {
    format!("{correlation_id}@v{version}")
}

/// The line version a reply answers, from its correlation id; `None` when it carries none.
fn stamp_of(correlation_id: &str) -> Option<i64> {
    let (_, version) = correlation_id.rsplit_once("@v")?;
    version.parse().ok()
}

/// Why an `article-data` question got no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error(transparent)]
    Rabbit(#[from] RabbitError),
    /// The reply names another article or another cart than the question: whatever it says, it
    /// does not answer this question.
    #[error("the reply is about article {article_id} of {reference_id}, not the one asked about")]
    Mismatched {
        reference_id: String,
        article_id: String,
    },
}

/// Asks catalog for the article's data now and waits up to `timeout` for the answer. No quantity
/// is sent, so `valid` means "exists and is enabled" and the stock is judged by the caller. A
/// reply about another article or cart than asked (`referenceId` is the cart id) is no answer.
pub async fn article_data(
    rabbit: &Rabbit,
    cart_id: &str,
    article_id: &str,
    correlation_id: &str,
    timeout: Duration,
) -> Result<ArticleDataReply, Unanswered> {
    let request = ArticleDataRequest {
        reference_id: cart_id.into(),
        article_id: article_id.into(),
        quantity: None,
    };
    let envelope = Envelope::new(kind::ARTICLE_DATA, correlation_id, request);
    let reply: Envelope<ArticleDataReply> = rabbit
        .request(exchange::CATALOG, kind::ARTICLE_DATA, envelope, timeout)
        .await?;
    let reply = reply.message;
    if !is_about(&reply, cart_id, article_id) {
        return Err(Unanswered::Mismatched {
            reference_id: reply.reference_id,
            article_id: reply.article_id,
        });
    }
    Ok(reply)
}

/// Whether `reply` is about article `article_id` of cart `cart_id`.
fn is_about(reply: &ArticleDataReply, cart_id: &str, article_id: &str) -> bool {
    reply.reference_id == cart_id && reply.article_id == article_id
}

/// Sends the closed cart's `place_order` to orders, with the checkout's correlation id.
pub async fn send_place_order(rabbit: &Rabbit, cart: &Cart) -> Result<(), RabbitError> {
    let correlation_id = cart.correlation_id.as_deref().unwrap_or(cart.id.as_str());
    let envelope = Envelope::new(
        kind::PLACE_ORDER,
        correlation_id,
        cart.place_order_message(),
    );
    rabbit
        .publish(exchange::ORDERS, kind::PLACE_ORDER, &envelope)
        .await
}

/// Consumes catalog's `article-valid` replies and `order_placed` until shutdown.
pub fn consume(rabbit: &Rabbit, carts: Arc<Carts>) {
    let replies = carts.clone();
    rabbit.consume(
        contract::consumer(queue::CART_ARTICLE_VALID),
        move |message: Arc<Message<ArticleValidReply>>| {
            let carts = replies.clone();
            async move {
                let reply = &message.envelope.message;
                if reply.reference_id.is_empty() || reply.article_id.is_empty() {
                    return Err(HandlerError::Invalid(
                        "empty referenceId or articleId".into(),
                    ));
                }
                let answer = Answer {
                    article_id: reply.article_id.clone(),
                    valid: reply.valid,
                    stamp: stamp_of(&message.envelope.correlation_id),
                };
                carts
                    .record_answers(&reply.reference_id, vec![answer])
                    .await
                    .map_err(handler_error)
            }
        },
    );
    rabbit.consume(
        contract::consumer(queue::CART_ORDER_PLACED),
        move |message: Arc<Message<OrderPlaced>>| {
            let carts = carts.clone();
            async move {
                let placed = &message.envelope.message;
                if placed.order_id.is_empty() || placed.cart_id.is_empty() {
                    return Err(HandlerError::Invalid("empty orderId or cartId".into()));
                }
                carts.record_order(placed).await.map_err(handler_error)
            }
        },
    );
}

fn handler_error(error: mongodb::error::Error) -> HandlerError {
    if common::mongo::is_unavailable(&error) {
        HandlerError::Unavailable(error.to_string())
    } else {
        warn!(%error, "MongoDB refused an operation");
        HandlerError::Failed(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_article_data_reply_is_about_the_article_and_cart_it_names() {
        let reply = ArticleDataReply {
            reference_id: "u1:0".into(),
            article_id: "a".into(),
            valid: true,
            price: 1.0,
            stock: 3,
            quantity: None,
        };
        assert!(is_about(&reply, "u1:0", "a"));
        assert!(!is_about(&reply, "u1:0", "b"));
        assert!(!is_about(&reply, "u1:1", "a"));
    }

    #[test]
    fn a_question_stamp_survives_the_round_trip_through_the_correlation_id() {
        assert_eq!(stamp_of(&stamped("req-1", 7)), Some(7));
        assert_eq!(stamp_of(&stamped("odd@v-id", 12)), Some(12));
        assert!(stamped("req-1", 7).starts_with("req-1"));
        assert_eq!(stamp_of("no stamp"), None);
        assert_eq!(stamp_of("bad@vstamp"), None);
    }
}
