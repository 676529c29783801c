//! RabbitMQ side of orders: the `place_order`, `article-data` and `order_released` consumers,
//! and the messages orders publishes on `sell_flow`. Every publish waits for the broker's confirm, and a consumer
//! acks only once its events are stored and its follow-up messages confirmed.

use std::sync::Arc;

use rabbit::contract::{
    self, ArticleDataReply, OrderInvalid, OrderPlaced, OrderReleased, OrderStatusChanged,
    PlaceOrder, exchange, kind, queue,
};
use rabbit::{Envelope, HandlerError, Message, Rabbit, RabbitError, ReplyTo};

use crate::order::{Order, Status};
use crate::service::{Orders, OrdersError};

/// Starts the consumers; they run until shutdown, across reconnects.
pub fn consume(rabbit: &Rabbit, orders: Arc<Orders>) {
    let placing = orders.clone();
    rabbit.consume(
        contract::consumer(queue::ORDERS_PLACE_ORDER),
        move |message: Arc<Message<PlaceOrder>>| {
            let orders = placing.clone();
            async move {
                let request = &message.envelope;
                validate(&request.message).map_err(HandlerError::Invalid)?;
                orders
                    .place(request.message.clone(), &request.correlation_id)
                    .await
                    .map_err(handler_error)
            }
        },
    );
    let releasing = orders.clone();
    rabbit.consume(
        contract::consumer(queue::ORDERS_ORDER_RELEASED),
        move |message: Arc<Message<OrderReleased>>| {
            let orders = releasing.clone();
            async move {
                let order_id = &message.envelope.message.order_id;
                if order_id.trim().is_empty() {
                    return Err(HandlerError::Invalid(
                        "order_released without an orderId".into(),
                    ));
                }
                orders.record_release(order_id).await.map_err(handler_error)
            }
        },
    );
    rabbit.consume(
        contract::consumer(queue::ORDERS_ARTICLE_DATA),
        move |message: Arc<Message<ArticleDataReply>>| {
            let orders = orders.clone();
            async move {
                let reply = &message.envelope;
                orders
                    .record_article(&reply.message, &reply.correlation_id)
                    .await
                    .map_err(handler_error)
            }
        },
    );
}

/// What a `place_order` must hold before it can become an order.
fn validate(request: &PlaceOrder) -> Result<(), String> {
    if request.cart_id.trim().is_empty() {
        return Err("place_order without a cartId".into());
    }
    if request.user_id.trim().is_empty() {
        return Err("place_order without a userId".into());
    }
    if request.articles.is_empty() {
        return Err("place_order without articles".into());
    }
    for line in &request.articles {
        if line.article_id.trim().is_empty() {
            return Err("place_order line without an articleId".into());
        }
        if line.quantity < 1 {
            return Err(format!(
                "place_order line {} with quantity {}",
                line.article_id, line.quantity
            ));
        }
    }
    Ok(())
}

fn handler_error(error: OrdersError) -> HandlerError {
    match error {
        OrdersError::Unavailable(dependency) => HandlerError::Unavailable(dependency.into()),
        OrdersError::NotFound => HandlerError::Invalid("no such order".into()),
        OrdersError::Rejected(rejection) => HandlerError::Invalid(rejection.to_string()),
        OrdersError::Internal(detail) => HandlerError::Failed(detail),
    }
}

/// `order_placed` on `sell_flow`, asking catalog to reply `article-data` to `orders`. It carries
/// the order's own correlation id, which the replies must echo, whoever publishes it again
/// (`correlation_id` only for an order placed before that was recorded).
pub async fn publish_placed(
    rabbit: &Rabbit,
    order: &Order,
    correlation_id: &str,
) -> Result<(), RabbitError> {
    let correlation_id = match order.correlation_id.as_str() {
        "" => correlation_id,
        own => own,
    };
    let message = OrderPlaced {
        order_id: order.id.clone(),
        cart_id: order.cart_id.clone(),
        user_id: order.user_id.clone(),
        articles: order.lines(),
    };
    let envelope =
        Envelope::new(kind::ORDER_PLACED, correlation_id, message).with_reply_to(ReplyTo {
            exchange: exchange::ORDERS.into(),
            routing_key: kind::ARTICLE_DATA.into(),
        });
    rabbit
        .publish(exchange::SELL_FLOW, kind::ORDER_PLACED, &envelope)
        .await
}

/// Announces the order's status on `sell_flow`: `order_invalid` with the lines catalog reserved
/// (for it to give them back), `order_validated`, `order_payment_defined`. PLACED is announced by
/// `order_placed` instead.
pub async fn publish_status(
    rabbit: &Rabbit,
    order: &Order,
    correlation_id: &str,
) -> Result<(), RabbitError> {
    let kind = match order.status {
        Status::Placed => return Ok(()),
        Status::Invalid => {
            let message = OrderInvalid {
                order_id: order.id.clone(),
                articles: order.reserved_lines(),
            };
            let envelope = Envelope::new(kind::ORDER_INVALID, correlation_id, message);
            return rabbit
                .publish(exchange::SELL_FLOW, kind::ORDER_INVALID, &envelope)
                .await;
        }
        Status::Validated => kind::ORDER_VALIDATED,
        Status::PaymentDefined => kind::ORDER_PAYMENT_DEFINED,
    };
    let message = OrderStatusChanged {
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        status: order.status.as_str().into(),
    };
    let envelope = Envelope::new(kind, correlation_id, message);
    // For future subscribers: no queue takes these yet.
    rabbit.broadcast(exchange::SELL_FLOW, kind, &envelope).await
}

#[cfg(test)]
mod tests {
    use rabbit::contract::OrderLine;

    use super::*;

    fn request(cart_id: &str, user_id: &str, lines: &[(&str, i64)]) -> PlaceOrder {
        PlaceOrder {
            cart_id: cart_id.into(),
            user_id: user_id.into(),
            articles: lines
                .iter()
                .map(|(article_id, quantity)| OrderLine {
                    article_id: (*article_id).into(),
                    quantity: *quantity,
                })
                .collect(),
        }
    }

    #[test]
    fn a_complete_place_order_is_valid() {
        assert_eq!(validate(&request("c", "u", &[("a", 1), ("b", 3)])), Ok(()));
    }

    #[test]
    fn a_place_order_without_ids_lines_or_quantities_is_invalid() {
        for bad in [
            request("", "u", &[("a", 1)]),
            request("c", " ", &[("a", 1)]),
            request("c", "u", &[]),
            request("c", "u", &[("a", 0)]),
            request("c", "u", &[("", 1)]),
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }
}
