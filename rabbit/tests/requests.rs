//! `Rabbit::request` (direct reply-to over pooled channels) against a real RabbitMQ, each test in a
//! vhost of its own.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::join_all;
use lapin::message::Delivery;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use rabbit::{
    Consumer, Envelope, ExchangeKind, HandlerError, Message, QueueType, Rabbit, RabbitError,
    Topology,
};
use serde::{Deserialize, Serialize};
use testkit::{Vhost, eventually};
use tokio_util::sync::{CancellationToken, DropGuard};

const WAIT: Duration = Duration::from_secs(15);
/// The request whose reply the responder holds back.
const SLOW: u32 = 1;
const SLOW_DELAY: Duration = Duration::from_millis(1500);
/// The request the responder answers twice, as a replier does when the request is redelivered
/// after the reply was sent but before it was acked.
const TWICE: u32 = 1000;
const SECOND_REPLY_DELAY: Duration = Duration::from_millis(300);

#[derive(Debug, Serialize, Deserialize)]
struct Question {
    n: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    n: u32,
    doubled: u32,
}

/// A requester and a responder, each with a connection of its own, on the test's vhost.
struct Broker {
    requester: Rabbit,
    vhost: Vhost,
    /// The requests whose late reply (to [`SLOW`], the second to [`TWICE`]) has been published.
    late_replies: Arc<Mutex<Vec<u32>>>,
    _shutdown: DropGuard,
}

/// How the responder publishes its replies.
#[derive(Clone, Copy)]
enum Replier {
    /// With [`Rabbit::reply`], which names the request in the `in_reply_to` header.
    Named,
    /// As a replier that does not set `in_reply_to`: a plain publish where the request asks.
    Unnamed,
}

/// Starts a responder that doubles `n` with [`Rabbit::reply`]: see [`broker_replying`].
async fn broker() -> Broker {
    broker_replying(Replier::Named).await
}

/// Starts a responder that doubles `n`, holding back its reply to [`SLOW`] for [`SLOW_DELAY`] and
/// answering [`TWICE`] again after [`SECOND_REPLY_DELAY`].
async fn broker_replying(replier_kind: Replier) -> Broker {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let topology = Topology::default()
        .exchange("math", ExchangeKind::Direct)
        .queue("math.double", "math", "double")
        .queue_type(QueueType::Quorum);
    let requester = Rabbit::start(&vhost.amqp_url(), topology.clone(), shutdown.clone());
    let responder = Rabbit::start(&vhost.amqp_url(), topology, shutdown.clone());
    let late_replies = Arc::new(Mutex::new(Vec::new()));
    let late = late_replies.clone();
    let replier = responder.clone();
    responder.consume(
        Consumer::queue("math.double", &["guest"]),
        move |message: Arc<Message<Question>>| {
            let (replier, late) = (replier.clone(), late.clone());
            async move {
                let n = message.envelope.message.n;
                if n == SLOW {
                    tokio::time::sleep(SLOW_DELAY).await;
                }
                let reply = || async {
                    let answer = Answer { n, doubled: n * 2 };
                    let sent = match replier_kind {
                        Replier::Named => replier.reply(&message, answer).await,
                        Replier::Unnamed => {
                            let to = message.reply_to().expect("a request asks for a reply");
                            let envelope = Envelope::new(
                                "double",
                                message.envelope.correlation_id.clone(),
                                answer,
                            );
                            // A reply may find nobody waiting: a broadcast, not a publish.
                            replier
                                .broadcast(&to.exchange, &to.routing_key, &envelope)
                                .await
                        }
                    };
                    sent.map_err(|error| HandlerError::Failed(error.to_string()))
                };
                reply().await?;
                if n == TWICE {
                    tokio::time::sleep(SECOND_REPLY_DELAY).await;
                    reply().await?;
                }
                if n == SLOW || n == TWICE {
                    late.lock().unwrap().push(n);
                }
                Ok(())
            }
        },
    );
    assert!(requester.wait_connected(WAIT).await, "connects to RabbitMQ");
    assert!(responder.wait_connected(WAIT).await, "connects to RabbitMQ");
    Broker {
        requester,
        vhost,
        late_replies,
        _shutdown: shutdown.drop_guard(),
    }
}

impl Broker {
    fn late_reply_sent(&self, n: u32) -> bool {
        self.late_replies.lock().unwrap().contains(&n)
    }

    /// Asks one question after another, each on the channel the one before gave back, while the
    /// late reply to `n` is on its way and a few times after it was published.
    async fn ask_in_turn_around_the_late_reply_to(&self, n: u32) {
        let mut next = 2;
        while !self.late_reply_sent(n) {
            ask_and_check(&self.requester, next).await;
            next += 1;
        }
        for next in next..next + 5 {
            ask_and_check(&self.requester, next).await;
        }
    }
}

async fn ask(rabbit: &Rabbit, n: u32, timeout: Duration) -> Result<Answer, RabbitError> {
    // One correlation id for all, as one HTTP request fanning out would use.
    let envelope = Envelope::new("double", "same-correlation-id", Question { n });
    let reply: Envelope<Answer> = rabbit.request("math", "double", envelope, timeout).await?;
    assert_eq!(reply.correlation_id, "same-correlation-id");
    Ok(reply.message)
}

/// Asks `n` and asserts that the answer is the one to `n`.
async fn ask_and_check(rabbit: &Rabbit, n: u32) {
    let answer = ask(rabbit, n, WAIT).await.unwrap();
    assert_eq!((answer.n, answer.doubled), (n, n * 2), "the reply to {n}");
}

#[tokio::test]
async fn many_concurrent_requests_each_get_their_own_reply_also_on_reused_channels() {
    let broker = broker().await;
    // More requests than the pool keeps, twice: the second round reuses the first one's channels.
    for round in 0..2 {
        let requests = (100 * round + 2..100 * round + 102).map(|n| {
            let rabbit = broker.requester.clone();
            async move { ask_and_check(&rabbit, n).await }
        });
        join_all(requests).await;
    }
}

#[tokio::test]
async fn the_idle_request_channels_of_a_connection_are_bounded() {
    let broker = broker().await;
    let requests = (2..202).map(|n| {
        let rabbit = broker.requester.clone();
        async move { ask_and_check(&rabbit, n).await }
    });
    join_all(requests).await;
    // 32 idle request channels kept for the next requests, the two publishers and the
    // responder's consumer.
    let bounded = eventually(WAIT, || async {
        broker.vhost.channel_count().await == 32 + 3
    })
    .await;
    assert!(bounded, "{} channels", broker.vhost.channel_count().await);
}

#[tokio::test]
async fn a_request_that_timed_out_does_not_hand_its_late_reply_to_the_next_request() {
    let broker = broker().await;
    // One idle channel, which the slow request takes.
    ask_and_check(&broker.requester, 2).await;

    let result = ask(&broker.requester, SLOW, Duration::from_millis(300)).await;
    assert!(matches!(result, Err(RabbitError::Timeout)), "{result:?}");
    broker.ask_in_turn_around_the_late_reply_to(SLOW).await;
}

#[tokio::test]
async fn a_second_reply_to_an_answered_request_does_not_reach_the_next_request() {
    let broker = broker().await;
    // The answered request gives its channel back, and the next request takes it.
    ask_and_check(&broker.requester, TWICE).await;
    broker.ask_in_turn_around_the_late_reply_to(TWICE).await;
}

#[tokio::test]
async fn a_second_reply_without_in_reply_to_does_not_reach_the_next_request() {
    let broker = broker_replying(Replier::Unnamed).await;
    // Taken, as the reply that names no request; its channel must not serve the next request.
    ask_and_check(&broker.requester, TWICE).await;
    broker.ask_in_turn_around_the_late_reply_to(TWICE).await;
}

#[tokio::test]
async fn a_request_answered_without_in_reply_to_closes_its_channel() {
    let broker = broker_replying(Replier::Unnamed).await;
    let requests = (2..12).map(|n| {
        let rabbit = broker.requester.clone();
        async move { ask_and_check(&rabbit, n).await }
    });
    join_all(requests).await;
    // No idle request channel: only the two publishers and the responder's consumer.
    let closed = eventually(WAIT, || async { broker.vhost.channel_count().await == 3 }).await;
    assert!(closed, "{} channels", broker.vhost.channel_count().await);
}

#[tokio::test]
async fn requests_work_again_once_the_broker_connection_is_replaced() {
    let broker = broker().await;
    let requests = (2..12).map(|n| {
        let rabbit = broker.requester.clone();
        async move { ask_and_check(&rabbit, n).await }
    });
    join_all(requests).await;

    let closed = broker.vhost.close_connections().await;
    assert!(broker.vhost.wait_for_new_connection(&closed).await);
    // The first requests may still meet the dead connection before the supervisor has replaced
    // it; from then on the new connection's channels answer.
    assert!(
        eventually(WAIT, || async {
            ask(&broker.requester, 20, Duration::from_secs(2))
                .await
                .is_ok()
        })
        .await
    );
    let requests = (21..31).map(|n| {
        let rabbit = broker.requester.clone();
        async move { ask_and_check(&rabbit, n).await }
    });
    join_all(requests).await;
}

/// A requester on a vhost of its own where nobody consumes `math.double`.
async fn nobody_answering() -> (Rabbit, Vhost, DropGuard) {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let topology = Topology::default()
        .exchange("math", ExchangeKind::Direct)
        .queue("math.double", "math", "double")
        .queue_type(QueueType::Quorum);
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology, shutdown.clone());
    assert!(rabbit.wait_connected(WAIT).await, "connects to RabbitMQ");
    (rabbit, vhost, shutdown.drop_guard())
}

/// Takes the next message of `queue`, if any, without a consumer.
async fn get(vhost: &Vhost, queue: &str) -> Option<Delivery> {
    let connection = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let options = BasicGetOptions { no_ack: true };
    let message = channel.basic_get(queue.into(), options).await.unwrap();
    message.map(|message| message.delivery)
}

/// Polls `queue` for a message until one comes or `wait` passes.
async fn get_within(vhost: &Vhost, queue: &str, wait: Duration) -> Option<Delivery> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = get(vhost, queue).await;
        if message.is_some() || tokio::time::Instant::now() >= deadline {
            return message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `reason` and `original-expiration` of the broker's first `x-death` record of a message.
fn death(delivery: &Delivery) -> (String, String) {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death header: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!("no x-death record: {deaths:?}");
    };
    let text = |key: &str| match first.inner().get(key) {
        Some(AMQPValue::LongString(value)) => value.to_string(),
        other => panic!("{key}: {other:?}"),
    };
    (text("reason"), text("original-expiration"))
}

#[tokio::test]
async fn a_request_nobody_answers_times_out() {
    let (rabbit, _vhost, _stop) = nobody_answering().await;
    let result = ask(&rabbit, 2, Duration::from_millis(500)).await;
    assert!(matches!(result, Err(RabbitError::Timeout)), "{result:?}");
}

#[tokio::test]
async fn a_request_nobody_took_within_its_timeout_expires_from_its_queue() {
    let (rabbit, vhost, _stop) = nobody_answering().await;
    let result = ask(&rabbit, 2, Duration::from_millis(300)).await;
    assert!(matches!(result, Err(RabbitError::Timeout)), "{result:?}");

    // The broker expires it and, as the queue has a dead-letter exchange, dead-letters it.
    let expired = get_within(&vhost, "math.double.dlq", WAIT)
        .await
        .expect("the request dead-lettered once expired");
    assert_eq!(death(&expired), ("expired".into(), "300".into()));
    assert!(
        get(&vhost, "math.double").await.is_none(),
        "a consumer starting now gets no stale request"
    );
}

#[tokio::test]
async fn a_message_published_to_expire_leaves_its_queue_unconsumed_after_its_ttl() {
    let (rabbit, vhost, _stop) = nobody_answering().await;
    let question = |n: u32| Envelope::new("double", format!("question-{n}"), Question { n });
    rabbit
        .publish_expiring("math", "double", &question(1), Duration::from_millis(200))
        .await
        .expect("confirmed");
    rabbit
        .publish("math", "double", &question(2))
        .await
        .expect("confirmed");

    tokio::time::sleep(Duration::from_millis(600)).await;
    let left = get(&vhost, "math.double").await.expect("the lasting one");
    assert_eq!(
        left.properties.correlation_id().as_ref().unwrap().as_str(),
        "question-2"
    );
    assert!(
        get(&vhost, "math.double").await.is_none(),
        "the expiring one is gone"
    );
}
