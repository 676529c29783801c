use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::connection::Link;
use crate::envelope::DIRECT_REPLY_TO;
use crate::{Envelope, Rabbit, ReplyTo, topology};

/// Where a consumer reads from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A durable queue of the topology.
    Queue(String),
    /// A server-named, exclusive, auto-delete queue of this instance bound to a fanout exchange,
    /// declared anew on every connection: every instance gets every message (the logout broadcast).
    Broadcast { exchange: String },
}

impl Source {
    /// The `queue` label of this source's metrics: the queue's name, or `broadcast:<exchange>`
    /// (server-named queues would make a label per connection).
    pub fn label(&self) -> String {
        match self {
            Self::Queue(name) => name.clone(),
            Self::Broadcast { exchange } => format!("broadcast:{exchange}"),
        }
    }
}

/// A consumer's settings.
#[derive(Clone)]
pub struct Consumer {
    pub source: Source,
    /// Unacked messages in flight, handled concurrently.
    pub prefetch: u16,
    /// Attempts for a handler that keeps answering [`HandlerError::Failed`] before the message is
    /// dead-lettered.
    pub max_attempts: u32,
    /// Called each time consuming (re)starts. For a [`Source::Broadcast`] queue, whatever was
    /// broadcast while it did not exist is lost; this is where a cache learns to forget.
    pub on_subscribed: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The RabbitMQ users whose messages are taken (their AMQP `user_id`, which the broker
    /// checked); a message from anyone else, or naming no one, is dead-lettered unread.
    pub senders: Vec<String>,
}

impl Consumer {
    /// A consumer of the durable queue `name` that takes messages only from `senders`.
    pub fn queue(name: &str, senders: &[&str]) -> Self {
        Self {
            source: Source::Queue(name.into()),
            prefetch: 16,
            max_attempts: 5,
            on_subscribed: None,
            senders: senders.iter().map(|&sender| sender.to_owned()).collect(),
        }
    }

    /// A consumer of a queue of this instance's own bound to the fanout `exchange`, that takes
    /// messages only from `senders`.
    pub fn broadcast(exchange: &str, senders: &[&str]) -> Self {
        Self {
            source: Source::Broadcast {
                exchange: exchange.into(),
            },
            ..Self::queue("", senders)
        }
    }

    fn accepts(&self, sender: Option<&str>) -> bool {
        sender.is_some_and(|sender| self.senders.iter().any(|accepted| accepted == sender))
    }

    fn name(&self) -> &str {
        match &self.source {
            Source::Queue(name) => name,
            Source::Broadcast { exchange } => exchange,
        }
    }
}

/// Why a handler could not finish a message. The message is acked only after `Ok(())`.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message can never succeed (bad payload, unknown reference): dead-letter it now.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// A dependency is down: keep the message and retry with backoff until it is back, however long.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// Anything else: retried a few times, then dead-lettered so it cannot block the queue.
    #[error("handler failed: {0}")]
    Failed(String),
}

/// A delivered message with its envelope.
#[derive(Debug)]
pub struct Message<T> {
    pub envelope: Envelope<T>,
    /// The AMQP `message_id`, for de-duplication.
    pub message_id: Option<String>,
    pub redelivered: bool,
    reply_to_property: Option<String>,
}

impl<T> Message<T> {
    /// Whether the request asks for its reply over RabbitMQ direct reply-to: to its asker alone.
    pub fn asks_direct_reply(&self) -> bool {
        self.envelope.exchange.is_empty() && self.envelope.routing_key.starts_with(DIRECT_REPLY_TO)
    }

    /// Where a reply must go, or `None` when the envelope asks for none. For RabbitMQ direct
    /// reply-to the envelope names the pseudo-queue and the broker has put the requester's private
    /// name in the AMQP `reply_to` property, which is the one that routes.
    pub fn reply_to(&self) -> Option<ReplyTo> {
        let Envelope {
            exchange,
            routing_key,
            ..
        } = &self.envelope;
        if exchange.is_empty() && routing_key.is_empty() {
            return None;
        }
        let routing_key = match &self.reply_to_property {
            Some(property) if self.asks_direct_reply() => property.clone(),
            _ => routing_key.clone(),
        };
        Some(ReplyTo {
            exchange: exchange.clone(),
            routing_key,
        })
    }
}

impl Rabbit {
    /// Consumes from `consumer.source` until shutdown, across reconnects. Each message is parsed as
    /// an [`Envelope<T>`]: one that does not parse is dead-lettered at once; the others go to
    /// `handler`, are acked only after it succeeded, and are retried or dead-lettered as its
    /// [`HandlerError`] says. Deliveries received before a reconnect cannot be acked after it and
    /// come back, so handlers must be idempotent.
    pub fn consume<T, H, Fut>(&self, consumer: Consumer, handler: H) -> JoinHandle<()>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        H: Fn(Arc<Message<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        let rabbit = self.clone();
        let span = info_span!("consumer", source = consumer.name());
        tokio::spawn(
            async move {
                let handler = Arc::new(handler);
                let mut previous: Option<Link> = None;
                loop {
                    // The broker can end a consumer and leave the connection up (consumer
                    // timeout, cancel, channel error): then resume on the same connection.
                    let link = match previous.take() {
                        Some(link) if link.consuming.status().connected() => link,
                        previous => match rabbit.next_link(previous.as_ref()).await {
                            Some(link) => link,
                            None => return,
                        },
                    };
                    match rabbit.consume_on(&link, &consumer, &handler).await {
                        Ok(()) => info!("consumer stopped"),
                        Err(error) => warn!(%error, "consumer interrupted"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = rabbit.shutdown.cancelled() => return,
                    }
                    previous = Some(link);
                }
            }
            .instrument(span),
        )
    }

    async fn consume_on<T, H, Fut>(
        &self,
        link: &Link,
        consumer: &Consumer,
        handler: &Arc<H>,
    ) -> lapin::Result<()>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        H: Fn(Arc<Message<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        let channel = link.consuming.create_channel().await?;
        channel
            .basic_qos(consumer.prefetch, BasicQosOptions::default())
            .await?;
        let queue = match &consumer.source {
            Source::Queue(name) => name.clone(),
            Source::Broadcast { exchange } => {
                let options = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                };
                let queue = channel
                    .queue_declare("".into(), options, FieldTable::default())
                    .await?;
                let name = queue.name().to_string();
                topology::bind(&channel, &name, exchange, "").await?;
                name
            }
        };
        let deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        info!(queue, "consuming");
        if let Some(on_subscribed) = &consumer.on_subscribed {
            on_subscribed();
        }
        let shutdown = self.shutdown.clone();
        deliveries
            .take_until(shutdown.cancelled())
            .for_each_concurrent(usize::from(consumer.prefetch), |delivery| async {
                match delivery {
                    Ok(delivery) => handle(delivery, consumer, handler.as_ref(), &shutdown).await,
                    Err(error) => warn!(%error, "delivery failed"),
                }
            })
            .await;
        // Closing the channel hands unacked messages back to the broker at once.
        if channel.status().connected() {
            let _ = channel.close(200, "consumer stopped".into()).await;
        }
        Ok(())
    }
}

async fn handle<T, H, Fut>(
    delivery: Delivery,
    consumer: &Consumer,
    handler: &H,
    shutdown: &tokio_util::sync::CancellationToken,
) where
    T: DeserializeOwned,
    H: Fn(Arc<Message<T>>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let properties = &delivery.properties;
    let sender = properties.user_id().as_ref().map(|user| user.as_str());
    if !consumer.accepts(sender) {
        warn!(
            sender = sender.unwrap_or("nobody"),
            accepted = ?consumer.senders,
            "message from a sender the contract does not name; dead-lettering it"
        );
        return dead_letter_unread(&delivery, consumer).await;
    }
    let envelope = match serde_json::from_slice::<Envelope<T>>(&delivery.data) {
        Ok(envelope) => envelope,
        Err(error) => {
            warn!(%error, "unparseable message; dead-lettering it");
            return dead_letter_unread(&delivery, consumer).await;
        }
    };
    let message = Arc::new(Message {
        envelope,
        message_id: properties.message_id().as_ref().map(|id| id.to_string()),
        redelivered: delivery.redelivered,
        reply_to_property: properties.reply_to().as_ref().map(|to| to.to_string()),
    });
    let span = info_span!("message", kind = %message.envelope.kind,
                          correlation_id = %message.envelope.correlation_id);
    let started = std::time::Instant::now();
    let count = |outcome: &'static str| {
        metrics::counter!("messages_consumed_total", "queue" => consumer.source.label(),
                          "type" => message.envelope.kind.clone(), "outcome" => outcome)
        .increment(1);
    };
    if delivery.redelivered {
        count("redelivered");
    }
    async {
        let mut attempt = 1;
        let mut backoff = Duration::from_millis(250);
        loop {
            // A panicking handler is a failing one: it must not take the consumer down.
            let outcome = AssertUnwindSafe(async { handler(message.clone()).await })
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(HandlerError::Failed("handler panicked".into())));
            match outcome {
                Ok(()) => {
                    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                        warn!(%error, "ack failed; the broker will redeliver");
                    }
                    count("handled");
                    metrics::histogram!("message_handling_seconds",
                                        "queue" => consumer.source.label(),
                                        "type" => message.envelope.kind.clone())
                    .record(started.elapsed().as_secs_f64());
                    // What bench/stages.py follows a checkout by (RUST_LOG=rabbit=debug).
                    debug!(
                        micros = started.elapsed().as_micros() as u64,
                        attempt, "message handled"
                    );
                    return;
                }
                Err(error @ HandlerError::Invalid(_)) => {
                    warn!(%error, "dead-lettering message");
                    count("dead_lettered");
                    return dead_letter(&delivery).await;
                }
                Err(error @ HandlerError::Failed(_)) if attempt >= consumer.max_attempts => {
                    error!(%error, attempt, "message keeps failing; dead-lettering it");
                    count("dead_lettered");
                    return dead_letter(&delivery).await;
                }
                Err(error) => {
                    warn!(%error, attempt, retry_in = ?backoff, "retrying message");
                    count("retried");
                }
            }
            if !delivery.acker.usable() {
                // Its channel is gone: the broker has already handed the message back.
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                // Left unacked: the broker redelivers it once the channel closes.
                _ = shutdown.cancelled() => return,
            }
            attempt += 1;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
    .instrument(span)
    .await
}

/// [`dead_letter`] for a message whose type was never read (a stranger's, or unparseable).
async fn dead_letter_unread(delivery: &Delivery, consumer: &Consumer) {
    metrics::counter!("messages_consumed_total", "queue" => consumer.source.label(),
                      "type" => "unread", "outcome" => "dead_lettered")
    .increment(1);
    dead_letter(delivery).await
}

/// Rejects without requeue; the queue's dead-letter exchange routes it to `<queue>.dlq`.
async fn dead_letter(delivery: &Delivery) {
    let options = BasicRejectOptions { requeue: false };
    if let Err(error) = delivery.acker.reject(options).await {
        warn!(%error, "reject failed; the broker will redeliver");
    }
}
