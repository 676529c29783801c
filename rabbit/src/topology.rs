use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// Messages that cannot be parsed or keep failing go here, routed by their queue's name to
/// `<queue>.dlq`.
pub const DEAD_LETTER_EXCHANGE: &str = "dead_letter";

/// A durable exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
}

/// A durable queue with its bindings and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    /// `(exchange, routing key)` pairs.
    pub bindings: Vec<(String, String)>,
}

/// What one service declares. Declaring is idempotent, so every service declares all it touches
/// and the order in which services start does not matter. Redeclared after every reconnect.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub exchanges: Vec<Exchange>,
    pub queues: Vec<Queue>,
}

impl Topology {
    pub fn exchange(mut self, name: &str, kind: ExchangeKind) -> Self {
        self.exchanges.push(Exchange {
            name: name.into(),
            kind,
        });
        self
    }

    /// A durable queue bound to `exchange` with `routing_key` (the exchange must be declared too).
    pub fn queue(mut self, name: &str, exchange: &str, routing_key: &str) -> Self {
        self.queues.push(Queue {
            name: name.into(),
            bindings: vec![(exchange.into(), routing_key.into())],
        });
        self
    }

    pub(crate) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        declare_exchange(channel, DEAD_LETTER_EXCHANGE, ExchangeKind::Direct).await?;
        for exchange in &self.exchanges {
            declare_exchange(channel, &exchange.name, exchange.kind.clone()).await?;
        }
        for queue in &self.queues {
            let dlq = format!("{}.dlq", queue.name);
            declare_queue(channel, &dlq, FieldTable::default()).await?;
            bind(channel, &dlq, DEAD_LETTER_EXCHANGE, &queue.name).await?;

            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(queue.name.as_str().into()),
            );
            declare_queue(channel, &queue.name, arguments).await?;
            for (exchange, routing_key) in &queue.bindings {
                bind(channel, &queue.name, exchange, routing_key).await?;
            }
        }
        Ok(())
    }
}

async fn declare_exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
}

async fn declare_queue(channel: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map(drop)
}

pub(crate) async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
