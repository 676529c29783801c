use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use serde::Serialize;
use tracing::warn;

use crate::connection::{Link, confirmed_channel, is_channel_error};
use crate::envelope::ReplyTo;
use crate::{Envelope, Message, Rabbit, RabbitError};

/// How long a publish may wait for a connection and for the broker's confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

impl Rabbit {
    /// Publishes a persistent message and returns once the broker has confirmed it, so a caller
    /// can ack its own input or report success only after the message is safe. A message no
    /// queue takes is [`RabbitError::Unroutable`]: its consumer's service has never declared its
    /// queue (each service declares only its own), so it must be sent again later.
    pub async fn publish<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<T>,
    ) -> Result<(), RabbitError> {
        let properties = properties(&envelope.correlation_id);
        self.publish_with(exchange, routing_key, envelope, properties, ROUTED)
            .await
    }

    /// [`Rabbit::publish`] for whoever listens now, maybe nobody: a fanout broadcast, an
    /// announcement for future subscribers. Confirmed, but taken by no queue is fine.
    pub async fn broadcast<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<T>,
    ) -> Result<(), RabbitError> {
        let properties = properties(&envelope.correlation_id);
        self.publish_with(exchange, routing_key, envelope, properties, ANYWHERE)
            .await
    }

    /// [`Rabbit::publish`] for a message only useful for `ttl`: it carries that AMQP
    /// `expiration`, so a message no consumer took in time leaves its queue instead of piling up
    /// behind a stopped consumer (e.g. periodic questions that the next round asks again).
    pub async fn publish_expiring<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<T>,
        ttl: Duration,
    ) -> Result<(), RabbitError> {
        let properties = properties(&envelope.correlation_id).with_expiration(expiration(ttl));
        self.publish_with(exchange, routing_key, envelope, properties, ROUTED)
            .await
    }

    /// Publishes and counts the outcome: `messages_published_total{exchange, type, result}`,
    /// `confirmed`, `unroutable` or `failed`.
    async fn publish_with<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<T>,
        properties: BasicProperties,
        options: BasicPublishOptions,
    ) -> Result<(), RabbitError> {
        let result = self
            .publish_confirmed(exchange, routing_key, envelope, properties, options)
            .await;
        let outcome = match &result {
            Ok(()) => "confirmed",
            Err(RabbitError::Unroutable) => "unroutable",
            Err(_) => "failed",
        };
        metrics::counter!("messages_published_total", "exchange" => exchange.to_owned(),
                          "type" => envelope.kind.clone(), "result" => outcome)
        .increment(1);
        result
    }

    async fn publish_confirmed<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope<T>,
        properties: BasicProperties,
        options: BasicPublishOptions,
    ) -> Result<(), RabbitError> {
        let body = serde_json::to_vec(envelope)?;
        tokio::time::timeout(PUBLISH_TIMEOUT, async {
            let mut link = self.current_link(PUBLISH_TIMEOUT).await?;
            loop {
                let properties = properties.clone().with_user_id(self.sender(&link));
                let publisher = link.publisher().await;
                let error = match confirmed_publish(
                    &publisher,
                    exchange,
                    routing_key,
                    &body,
                    properties.clone(),
                    options,
                )
                .await
                {
                    Err(RabbitError::Protocol(error)) => error,
                    result => return result,
                };
                if is_channel_error(&error) {
                    // The channel is shared: a refusal (unknown exchange, no permission) closes
                    // it under every publish in flight, so this one may be another's. Repair it
                    // for the others and retry alone, where a refusal is surely this publish's.
                    link.replace_publisher(&publisher).await?;
                    return publish_alone(&link, exchange, routing_key, &body, properties, options)
                        .await;
                }
                // The connection dropped under us: publish again on the next one. A message the
                // broker did take is then sent twice, which idempotent consumers absorb.
                warn!(%error, "publish failed; retrying on the next connection");
                link = self
                    .next_link(Some(&link))
                    .await
                    .ok_or(RabbitError::Unavailable)?;
            }
        })
        .await
        .map_err(|_| RabbitError::Timeout)?
    }

    /// Publishes the reply to `request` where its envelope asks for it, echoing its
    /// `correlation_id` and naming the request's AMQP `message_id` in an [`IN_REPLY_TO`] header.
    /// A request that expects no reply is left alone. A reply has no expiration, also to a
    /// [`Rabbit::request`] (which expires): direct reply-to delivers it at once or the broker
    /// drops it, as it does when its requester has stopped waiting and closed the channel.
    pub async fn reply<Req, Resp: Serialize>(
        &self,
        request: &Message<Req>,
        message: Resp,
    ) -> Result<(), RabbitError> {
        let Some(ReplyTo {
            exchange,
            routing_key,
        }) = request.reply_to()
        else {
            return Ok(());
        };
        let reply = Envelope::new(
            request.envelope.kind.clone(),
            request.envelope.correlation_id.clone(),
            message,
        );
        let mut properties = properties(&reply.correlation_id);
        if let Some(message_id) = &request.message_id {
            let mut headers = FieldTable::default();
            headers.insert(
                IN_REPLY_TO.into(),
                AMQPValue::LongString(message_id.as_str().into()),
            );
            properties = properties.with_headers(headers);
        }
        // To a direct reply-to asker that stopped waiting, a reply is dropped: that is fine.
        self.publish_with(&exchange, &routing_key, &reply, properties, ANYWHERE)
            .await
    }
}

/// The AMQP header of a reply that names the `message_id` of the request it answers, so that a
/// requester can tell a second reply to an earlier request (the request was redelivered after its
/// replier had answered but not yet acked) from the reply it waits for.
pub const IN_REPLY_TO: &str = "in_reply_to";

/// A publish that must reach a queue: the broker returns it otherwise.
pub(crate) const ROUTED: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};
/// A publish that may reach no queue.
const ANYWHERE: BasicPublishOptions = BasicPublishOptions {
    mandatory: false,
    immediate: false,
};

pub(crate) fn properties(correlation_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_correlation_id(correlation_id.into())
}

/// An AMQP `expiration`: whole milliseconds as a string, at least 1 (0 would mean "deliver now or
/// drop").
pub(crate) fn expiration(ttl: Duration) -> lapin::types::ShortString {
    ttl.as_millis().max(1).to_string().into()
}

/// Publishes on a confirmed channel of its own, closed afterwards.
async fn publish_alone(
    link: &Link,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    options: BasicPublishOptions,
) -> Result<(), RabbitError> {
    let channel = confirmed_channel(&link.connection).await?;
    let result =
        confirmed_publish(&channel, exchange, routing_key, body, properties, options).await;
    if channel.status().connected() {
        let _ = channel.close(200, "published".into()).await;
    }
    match result {
        Err(RabbitError::Protocol(error)) if is_channel_error(&error) => {
            Err(RabbitError::Refused(error))
        }
        result => result,
    }
}

pub(crate) async fn confirmed_publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    options: BasicPublishOptions,
) -> Result<(), RabbitError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            body,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(Some(_)) => Err(RabbitError::Unroutable),
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Nack(_) => Err(RabbitError::Nacked),
    }
}
