use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::envelope::DIRECT_REPLY_TO;
use crate::publisher::{IN_REPLY_TO, ROUTED, confirmed_publish, expiration, properties};
use crate::{Envelope, Rabbit, RabbitError};

/// How many idle request channels a connection keeps; a channel given back beyond this is closed.
/// Enough for every line of the largest checkout in flight at once, few enough that a burst does
/// not leave the broker holding hundreds of idle channels.
const MAX_IDLE: usize = 32;

impl Rabbit {
    /// Sends a request with RabbitMQ direct reply-to and waits up to `timeout` for its reply.
    ///
    /// A request has a channel to itself while it waits: direct reply-to delivers replies on the
    /// channel that published, so whatever arrives there answers this request, whatever the
    /// requests' correlation ids. Channels come from a pool of the connection, each with its
    /// reply-to consumer already started, so a request costs one publish instead of opening a
    /// channel, starting a consumer and closing the channel again. A channel goes back to the pool
    /// only after its request's reply arrived; one whose request timed out, failed or was dropped
    /// is closed instead, so that a late reply dies with it rather than reaching the next request.
    ///
    /// One exception remains on a reused channel: a second reply to an earlier request, sent when
    /// that request was redelivered after its replier had answered but not acked. A reply that
    /// names another request in its [`IN_REPLY_TO`](crate::IN_REPLY_TO) header is therefore
    /// skipped. One without the header (a replier other than [`Rabbit::reply`]) is taken, but
    /// then nothing tells a second reply to this request from the next request's: the channel
    /// goes back to the pool only when the reply that completed its request named it, and is
    /// closed otherwise.
    ///
    /// The request expires `timeout` after it reached its queue (the AMQP `expiration`, in
    /// milliseconds): one that no replier took by then is answered by nobody, so the broker
    /// removes it rather than let it queue ahead of fresh requests. On a queue of a
    /// [`Topology`](crate::Topology) that means dead-lettering it to `<queue>.dlq` (`x-death`
    /// reason `expired`). A replier that took it in time still answers it, however late.
    ///
    /// The request channel has no publisher confirms: the reply is the acknowledgement, and a
    /// request the broker lost ends in [`RabbitError::Timeout`] like an unanswered one.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: Envelope<Req>,
        timeout: Duration,
    ) -> Result<Envelope<Resp>, RabbitError> {
        let envelope = Envelope {
            exchange: String::new(),
            routing_key: DIRECT_REPLY_TO.into(),
            ..envelope
        };
        let body = serde_json::to_vec(&envelope)?;
        let properties = properties(&envelope.correlation_id)
            .with_reply_to(DIRECT_REPLY_TO.into())
            .with_expiration(expiration(timeout));
        let message_id = properties.message_id().clone();
        tokio::time::timeout(timeout, async {
            let link = self.current_link(timeout).await?;
            let properties = properties.with_user_id(self.sender(&link));
            // Dropped on every early return, and with this future on a timeout: see RequestChannel.
            let mut requester = link.requesters.take(&link.connection).await?;
            confirmed_publish(
                &requester.channel,
                exchange,
                routing_key,
                &body,
                properties,
                ROUTED,
            )
            .await?;
            let reply = loop {
                let reply = requester
                    .replies
                    .next()
                    .await
                    .ok_or(RabbitError::Unavailable)??;
                match answers(&reply.properties, message_id.as_ref()) {
                    Answers::ThisRequest => {
                        link.requesters.give_back(requester);
                        break reply;
                    }
                    // Dropping the channel closes it: a second reply to this request dies with it.
                    Answers::Unnamed => break reply,
                    Answers::Another => {
                        debug!("skipped a second reply to an earlier request on this channel")
                    }
                }
            };
            Ok(serde_json::from_slice(&reply.data)?)
        })
        .await
        .map_err(|_| RabbitError::Timeout)?
    }
}

/// Which request a reply on a request channel answers, as its [`IN_REPLY_TO`] header says.
#[derive(Debug, PartialEq)]
enum Answers {
    /// It names the request waiting on the channel: the channel can serve the next request.
    ThisRequest,
    /// It names no request (a replier that does not set the header): taken for the request
    /// waiting, but a second reply to it could follow, so the channel must not be reused.
    Unnamed,
    /// It names another request: a second reply to an earlier request on this channel.
    Another,
}

fn answers(reply: &BasicProperties, message_id: Option<&ShortString>) -> Answers {
    let named = reply
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(IN_REPLY_TO));
    match (named, message_id) {
        (Some(AMQPValue::LongString(named)), Some(id)) => {
            if named.as_bytes() == id.as_str().as_bytes() {
                Answers::ThisRequest
            } else {
                Answers::Another
            }
        }
        _ => Answers::Unnamed,
    }
}

/// A channel consuming its direct reply-to pseudo-queue (without acks, as direct reply-to
/// requires).
///
/// Dropping it closes the channel: lapin closes a channel once its last handle is gone, and the
/// channel and its consumer are the only ones. The broker then discards any reply still on its way.
struct RequestChannel {
    channel: Channel,
    replies: lapin::Consumer,
}

impl RequestChannel {
    async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        Ok(Self { channel, replies })
    }

    fn usable(&self) -> bool {
        self.channel.status().connected()
    }
}

/// The idle request channels of one connection. It lives in the connection's `Link`, so it is
/// dropped, channels and all, when a reconnect replaces the link.
#[derive(Default)]
pub(crate) struct RequestChannels {
    idle: Mutex<Vec<RequestChannel>>,
}

impl RequestChannels {
    /// An idle channel that is still open, or a new one when there is none.
    async fn take(&self, connection: &Connection) -> lapin::Result<RequestChannel> {
        loop {
            let idle = self.idle.lock().expect("request pool poisoned").pop();
            match idle {
                Some(requester) if requester.usable() => return Ok(requester),
                // Closed by the broker while idle: dropping it is all there is to do.
                Some(_) => continue,
                None => return RequestChannel::open(connection).await,
            }
        }
    }

    /// Keeps a channel whose request got a reply naming it for the next request, unless enough
    /// are idle.
    fn give_back(&self, requester: RequestChannel) {
        if !requester.usable() {
            return;
        }
        let mut idle = self.idle.lock().expect("request pool poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(requester);
        }
    }
}
