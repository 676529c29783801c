use std::str::FromStr;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use tracing::warn;

/// Messages that cannot be parsed or keep failing go here, routed by their queue's name to
/// `<queue>.dlq`.
pub const DEAD_LETTER_EXCHANGE: &str = "dead_letter";

/// How long the dead-letter queue of a request queue keeps a message.
pub const REQUEST_DEAD_LETTERS_KEPT: Duration = Duration::from_secs(3600);
/// How many messages the dead-letter queue of a request queue keeps at most (the oldest go first).
pub const REQUEST_DEAD_LETTERS_MAX: u32 = 10_000;

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
    /// How long `<queue>.dlq` keeps a message; `None`: until someone takes it.
    pub dead_letters_kept: Option<Duration>,
}

/// What one service declares. Declaring is idempotent, so every service declares all it touches
/// and the order in which services start does not matter. Redeclared after every reconnect.
///
/// Every queue, dead-letter queues included, is of one [`QueueType`]: quorum queues unless the
/// topology or `RABBIT_QUEUE_TYPE` says otherwise. A queue that already exists with other
/// arguments (a classic queue an earlier version declared, say) is used as it is, with a warning:
/// RabbitMQ cannot change a queue's type, and deleting it would lose its messages.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub exchanges: Vec<Exchange>,
    pub queues: Vec<Queue>,
    /// `None`: as `RABBIT_QUEUE_TYPE` says ([`QueueType::configured`]) when [`Rabbit::start`]
    /// starts the connection.
    ///
    /// [`Rabbit::start`]: crate::Rabbit::start
    pub queue_type: Option<QueueType>,
}

/// The type of every queue of a topology (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated (Raft) over up to three nodes of a cluster: a message the broker confirmed
    /// survives the loss of any one of three. Always durable, never exclusive or auto-delete;
    /// per-message TTL and dead-lettering work as on classic queues. On a single node it holds its
    /// messages alone, as a classic queue would, but takes longer to declare and to delete.
    #[default]
    Quorum,
    /// Kept by one node (declared without `x-queue-type`, as before quorum queues): lost with it.
    Classic,
}

impl QueueType {
    /// The variable that chooses the queue type of a service's topology.
    pub const VARIABLE: &str = "RABBIT_QUEUE_TYPE";

    /// `RABBIT_QUEUE_TYPE` (`quorum` or `classic`), quorum when it is unset.
    pub fn configured() -> Result<Self, String> {
        match std::env::var(Self::VARIABLE) {
            Ok(value) => value.parse(),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(error) => Err(error.to_string()),
        }
    }
}

impl FromStr for QueueType {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            _ => Err("expected quorum or classic".into()),
        }
    }
}

impl Topology {
    pub fn exchange(mut self, name: &str, kind: ExchangeKind) -> Self {
        self.exchanges.push(Exchange {
            name: name.into(),
            kind,
        });
        self
    }

    /// Declares every queue as `queue_type`, whatever `RABBIT_QUEUE_TYPE` says.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = Some(queue_type);
        self
    }

    /// A durable queue bound to `exchange` with `routing_key` (the exchange must be declared too).
    pub fn queue(mut self, name: &str, exchange: &str, routing_key: &str) -> Self {
        self.queues.push(Queue {
            name: name.into(),
            bindings: vec![(exchange.into(), routing_key.into())],
            dead_letters_kept: None,
        });
        self
    }

    /// A durable queue of requests that are worth answering only for a while, and carry an AMQP
    /// `expiration` to say so (a direct reply-to request its timeout; a question asked again
    /// periodically, its period). One that expires unanswered is dead-lettered like any other
    /// message, but nobody waits for it any more: so `<queue>.dlq` keeps messages only
    /// [`REQUEST_DEAD_LETTERS_KEPT`], and [`REQUEST_DEAD_LETTERS_MAX`] at most, long enough to
    /// see why requests fail, never piling up.
    pub fn request_queue(self, name: &str, exchange: &str, routing_key: &str) -> Self {
        let mut topology = self.queue(name, exchange, routing_key);
        if let Some(queue) = topology.queues.last_mut() {
            queue.dead_letters_kept = Some(REQUEST_DEAD_LETTERS_KEPT);
        }
        topology
    }

    /// Declares everything on a channel of its own, which it closes. Errors other than a queue
    /// found with other arguments fail the declaration (and the connection attempt).
    pub(crate) async fn declare(&self, connection: &Connection) -> lapin::Result<()> {
        let mut declaring = Declaring {
            connection,
            channel: connection.create_channel().await?,
            queue_type: self.queue_type.unwrap_or_default(),
        };
        declaring.run(self).await?;
        let _ = declaring
            .channel
            .close(200, "topology declared".into())
            .await;
        Ok(())
    }
}

struct Declaring<'a> {
    connection: &'a Connection,
    /// Replaced when the broker closes it over a queue declared with other arguments.
    channel: Channel,
    queue_type: QueueType,
}

impl Declaring<'_> {
    async fn run(&mut self, topology: &Topology) -> lapin::Result<()> {
        if !topology.queues.is_empty() {
            self.exchange(DEAD_LETTER_EXCHANGE, ExchangeKind::Direct)
                .await?;
        }
        for exchange in &topology.exchanges {
            self.exchange(&exchange.name, exchange.kind.clone()).await?;
        }
        for queue in &topology.queues {
            let dlq = format!("{}.dlq", queue.name);
            let mut arguments = self.arguments();
            if let Some(kept) = queue.dead_letters_kept {
                let millis = u32::try_from(kept.as_millis()).unwrap_or(u32::MAX);
                arguments.insert("x-message-ttl".into(), AMQPValue::LongUInt(millis));
                arguments.insert(
                    "x-max-length".into(),
                    AMQPValue::LongUInt(REQUEST_DEAD_LETTERS_MAX),
                );
            }
            self.queue(&dlq, arguments).await?;
            self.bind(&dlq, DEAD_LETTER_EXCHANGE, &queue.name).await?;

            let mut arguments = self.arguments();
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(queue.name.as_str().into()),
            );
            self.queue(&queue.name, arguments).await?;
            for (exchange, routing_key) in &queue.bindings {
                self.bind(&queue.name, exchange, routing_key).await?;
            }
        }
        Ok(())
    }

    /// The arguments every queue starts from.
    fn arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        arguments
    }

    async fn exchange(&self, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        self.channel
            .exchange_declare(name.into(), kind, options, FieldTable::default())
            .await
    }

    async fn queue(&mut self, name: &str, arguments: FieldTable) -> lapin::Result<()> {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        match self
            .channel
            .queue_declare(name.into(), options, arguments)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_precondition_failed(&error) => {
                warn!(
                    queue = name,
                    %error,
                    "the queue exists with other arguments (another type, or from an earlier \
                     version): using it as it is; see the README on quorum queues to replace it"
                );
                self.channel = self.connection.create_channel().await?;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) -> lapin::Result<()> {
        bind(&self.channel, queue, exchange, routing_key).await
    }
}

/// The broker refused a declaration that contradicts what exists (406 PRECONDITION_FAILED); it
/// closes the channel.
fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(error)
        if error.kind() == &lapin::protocol::AMQPErrorKind::Soft(
            lapin::protocol::AMQPSoftError::PRECONDITIONFAILED))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_type_is_quorum_or_classic() {
        assert_eq!("quorum".parse(), Ok(QueueType::Quorum));
        assert_eq!(" classic\n".parse(), Ok(QueueType::Classic));
        assert!("stream".parse::<QueueType>().is_err());
        assert_eq!(QueueType::default(), QueueType::Quorum);
    }
}
