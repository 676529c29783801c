//! Everything the services share about RabbitMQ: the JSON envelope every message travels in, the
//! durable topology (quorum queues unless `RABBIT_QUEUE_TYPE=classic`) with its dead-letter
//! queues, and a supervised connection to one broker or to the live nodes of a cluster that
//! recovers by itself (backoff, the next node, topology redeclared, consumers resumed), publishing
//! and consuming on two connections so that a broker alarm that blocks publishers leaves acks
//! flowing. On top of it: a publisher that waits for broker confirms and stamps every message
//! with its sender (the AMQP `user_id`), a consumer loop that takes messages only from the
//! senders it names and acks only after its handler succeeded, and RabbitMQ direct reply-to
//! requests.

mod brokers;
mod connection;
mod consumer;
pub mod contract;
mod envelope;
mod publisher;
mod request;
mod topology;

pub use connection::{Rabbit, RabbitError};
pub use consumer::{Consumer, HandlerError, Message, Source};
pub use envelope::{Envelope, ReplyTo};
pub use lapin::ExchangeKind;
pub use publisher::IN_REPLY_TO;
pub use topology::{
    DEAD_LETTER_EXCHANGE, Exchange, Queue, QueueType, REQUEST_DEAD_LETTERS_KEPT,
    REQUEST_DEAD_LETTERS_MAX, Topology,
};

/// The fanout exchange auth broadcasts revoked tokens on (CONTRACT section 9).
pub const AUTH_EXCHANGE: &str = contract::exchange::AUTH;
/// Message type of the logout broadcast.
pub const LOGOUT: &str = contract::kind::LOGOUT;
/// Message type of a user's change on the `auth` fanout: its tokens are to be asked about again.
pub const USER_CHANGED: &str = contract::kind::USER_CHANGED;
