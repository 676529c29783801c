//! `Rabbit::request` (direct reply-to over pooled channels) against a real RabbitMQ, each test in a
//! vhost of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use rabbit::{
    Consumer, Envelope, ExchangeKind, HandlerError, Message, Rabbit, RabbitError, Topology,
};
use serde::{Deserialize, Serialize};
use testkit::{Vhost, eventually};
use tokio_util::sync::{CancellationToken, DropGuard};

const WAIT: Duration = Duration::from_secs(15);
/// The request whose reply the responder holds back.
const SLOW: u32 = 1;
const SLOW_DELAY: Duration = Duration::from_millis(1500);

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
    /// Whether the responder has published its reply to [`SLOW`].
    slow_replied: Arc<AtomicBool>,
    _shutdown: DropGuard,
}

/// Starts a responder that doubles `n`, holding back its reply to [`SLOW`] for [`SLOW_DELAY`].
async fn broker() -> Broker {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let topology = Topology::default()
        .exchange("math", ExchangeKind::Direct)
        .queue("math.double", "math", "double");
    let requester = Rabbit::start(&vhost.amqp_url(), topology.clone(), shutdown.clone());
    let responder = Rabbit::start(&vhost.amqp_url(), topology, shutdown.clone());
    let slow_replied = Arc::new(AtomicBool::new(false));
    let replied = slow_replied.clone();
    let replier = responder.clone();
    responder.consume(
        Consumer::queue("math.double"),
        move |message: Arc<Message<Question>>| {
            let (replier, replied) = (replier.clone(), replied.clone());
            async move {
                let n = message.envelope.message.n;
                if n == SLOW {
                    tokio::time::sleep(SLOW_DELAY).await;
                }
                let answer = Answer { n, doubled: n * 2 };
                replier
                    .reply(&message, answer)
                    .await
                    .map_err(|error| HandlerError::Failed(error.to_string()))?;
                if n == SLOW {
                    replied.store(true, Ordering::SeqCst);
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
        slow_replied,
        _shutdown: shutdown.drop_guard(),
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

/// How many channels the broker lists on the vhost.
async fn channels(vhost: &Vhost) -> usize {
    let url = format!("http://127.0.0.1:15672/api/vhosts/{}/channels", vhost.name);
    let list: serde_json::Value = reqwest::Client::new()
        .get(url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array().map_or(0, Vec::len)
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
    let bounded = eventually(WAIT, || async { channels(&broker.vhost).await == 32 + 3 }).await;
    assert!(bounded, "{} channels", channels(&broker.vhost).await);
}

#[tokio::test]
async fn a_request_that_timed_out_does_not_hand_its_late_reply_to_the_next_request() {
    let broker = broker().await;
    // One idle channel, which the slow request takes.
    ask_and_check(&broker.requester, 2).await;

    let result = ask(&broker.requester, SLOW, Duration::from_millis(300)).await;
    assert!(matches!(result, Err(RabbitError::Timeout)), "{result:?}");
    // Ask while the late reply is on its way, and after it was published.
    let mut n = 3;
    while !broker.slow_replied.load(Ordering::SeqCst) {
        ask_and_check(&broker.requester, n).await;
        n += 1;
    }
    for n in n..n + 5 {
        ask_and_check(&broker.requester, n).await;
    }
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

#[tokio::test]
async fn a_request_nobody_answers_times_out() {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let topology = Topology::default()
        .exchange("math", ExchangeKind::Direct)
        .queue("math.double", "math", "double");
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology, shutdown.clone());
    let _stop = shutdown.drop_guard();
    assert!(rabbit.wait_connected(WAIT).await, "connects to RabbitMQ");
    let result = ask(&rabbit, 2, Duration::from_millis(500)).await;
    assert!(matches!(result, Err(RabbitError::Timeout)), "{result:?}");
}
