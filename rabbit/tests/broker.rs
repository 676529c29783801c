//! The rabbit crate against a real RabbitMQ, each test in a vhost of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rabbit::{
    Consumer, Envelope, ExchangeKind, HandlerError, Message, QueueType, Rabbit, RabbitError,
    Topology,
};
use serde::{Deserialize, Serialize};
use testkit::{Vhost, eventually};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Job {
    n: u32,
}

/// Of quorum queues, whatever `RABBIT_QUEUE_TYPE` says (`scripts/test.sh` sets it to classic).
fn topology() -> Topology {
    Topology::default()
        .exchange("work", ExchangeKind::Direct)
        .queue("work.jobs", "work", "job")
        .queue_type(QueueType::Quorum)
}

/// A connected `Rabbit` on the test's vhost, stopped when the test ends.
struct Broker {
    rabbit: Rabbit,
    vhost: Vhost,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn broker() -> Broker {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology(), shutdown.clone());
    assert!(rabbit.wait_connected(WAIT).await, "connects to RabbitMQ");
    Broker {
        rabbit,
        vhost,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn publish_job(rabbit: &Rabbit, n: u32) {
    let envelope = Envelope::new("job", format!("c-{n}"), Job { n });
    rabbit.publish("work", "job", &envelope).await.unwrap();
}

/// Publishes raw bytes as `guest`, as a misbehaving producer would.
async fn publish_raw(vhost: &Vhost, body: &[u8]) {
    publish_raw_as(vhost, body, Some("guest")).await;
}

/// Publishes raw bytes naming `sender` as their `user_id` (or none).
async fn publish_raw_as(vhost: &Vhost, body: &[u8], sender: Option<&str>) {
    let mut properties = BasicProperties::default();
    if let Some(sender) = sender {
        properties = properties.with_user_id(sender.into());
    }
    let connection = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            "work".into(),
            "job".into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Drains `queue` and returns the bodies it held.
async fn drain(vhost: &Vhost, queue: &str) -> Vec<Vec<u8>> {
    let connection = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut bodies = Vec::new();
    let options = BasicGetOptions { no_ack: true };
    while let Some(message) = channel.basic_get(queue.into(), options).await.unwrap() {
        bodies.push(message.delivery.data);
    }
    bodies
}

/// Waits until `queue` has yielded at least `count` messages (or the wait is over); returns them.
async fn take(vhost: &Vhost, queue: &str, count: usize) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut taken = Vec::new();
    while taken.len() < count && tokio::time::Instant::now() < deadline {
        taken.extend(drain(vhost, queue).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    taken
}

/// Counts how many times the handler saw each job.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<u32, u32>>>);

impl Seen {
    fn record(&self, n: u32) -> u32 {
        let mut seen = self.0.lock().unwrap();
        let count = seen.entry(n).or_default();
        *count += 1;
        *count
    }

    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }

    fn snapshot(&self) -> HashMap<u32, u32> {
        self.0.lock().unwrap().clone()
    }
}

fn counting_consumer(rabbit: &Rabbit, seen: &Seen) {
    let seen = seen.clone();
    rabbit.consume(
        Consumer::queue("work.jobs", &["guest"]),
        move |message: Arc<Message<Job>>| {
            let seen = seen.clone();
            async move {
                seen.record(message.envelope.message.n);
                Ok(())
            }
        },
    );
}

#[tokio::test]
async fn a_handled_message_is_never_delivered_again_even_across_a_reconnect() {
    let broker = broker().await;
    let seen = Seen::default();
    counting_consumer(&broker.rabbit, &seen);
    for n in 0..20 {
        publish_job(&broker.rabbit, n).await;
    }
    assert!(eventually(WAIT, || async { seen.total() == 20 }).await);

    let closed = broker.vhost.close_connections().await;
    assert!(broker.vhost.wait_for_new_connection(&closed).await);
    publish_job(&broker.rabbit, 20).await;
    assert!(eventually(WAIT, || async { seen.total() == 21 }).await);

    let seen = seen.snapshot();
    assert_eq!(seen.len(), 21);
    assert!(seen.values().all(|&count| count == 1), "{seen:?}");
    assert!(drain(&broker.vhost, "work.jobs").await.is_empty());
}

#[tokio::test]
async fn consuming_and_publishing_resume_after_the_broker_drops_the_connection() {
    let broker = broker().await;
    let seen = Seen::default();
    counting_consumer(&broker.rabbit, &seen);
    publish_job(&broker.rabbit, 1).await;
    assert!(eventually(WAIT, || async { seen.total() == 1 }).await);

    broker.vhost.close_connections().await;
    // Publishing right away waits for the new connection instead of failing.
    publish_job(&broker.rabbit, 2).await;
    assert!(eventually(WAIT, || async { seen.total() == 2 }).await);
}

#[tokio::test]
async fn an_unparseable_message_is_dead_lettered_and_consuming_goes_on() {
    let broker = broker().await;
    let seen = Seen::default();
    counting_consumer(&broker.rabbit, &seen);
    publish_raw(&broker.vhost, b"not json at all").await;
    publish_raw(
        &broker.vhost,
        br#"{"type":"job","correlation_id":"c","message":{"n":"NaN"}}"#,
    )
    .await;
    publish_job(&broker.rabbit, 7).await;

    assert!(eventually(WAIT, || async { seen.total() == 1 }).await);
    let dead = take(&broker.vhost, "work.jobs.dlq", 2).await;
    assert_eq!(dead.len(), 2);
    assert!(dead.contains(&b"not json at all".to_vec()));
}

/// A consumer whose handler answers `error` a given number of times, then succeeds.
fn failing_consumer(
    rabbit: &Rabbit,
    max_attempts: u32,
    failures: u32,
    error: fn() -> HandlerError,
) -> Seen {
    let seen = Seen::default();
    let attempts = seen.clone();
    let consumer = Consumer {
        max_attempts,
        ..Consumer::queue("work.jobs", &["guest"])
    };
    rabbit.consume(consumer, move |message: Arc<Message<Job>>| {
        let attempt = attempts.record(message.envelope.message.n);
        async move {
            if attempt <= failures {
                Err(error())
            } else {
                Ok(())
            }
        }
    });
    seen
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_after_its_attempts() {
    let broker = broker().await;
    let attempts = failing_consumer(&broker.rabbit, 3, u32::MAX, || {
        HandlerError::Failed("boom".into())
    });
    publish_job(&broker.rabbit, 1).await;

    let dead = take(&broker.vhost, "work.jobs.dlq", 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(attempts.snapshot()[&1], 3);
    let envelope: Envelope<Job> = serde_json::from_slice(&dead[0]).unwrap();
    assert_eq!(envelope.message, Job { n: 1 });
}

#[tokio::test]
async fn an_invalid_message_is_dead_lettered_at_once() {
    let broker = broker().await;
    let attempts = failing_consumer(&broker.rabbit, 5, u32::MAX, || {
        HandlerError::Invalid("unknown order".into())
    });
    publish_job(&broker.rabbit, 1).await;

    assert_eq!(take(&broker.vhost, "work.jobs.dlq", 1).await.len(), 1);
    assert_eq!(attempts.snapshot()[&1], 1);
}

#[tokio::test]
async fn a_message_waits_while_a_dependency_is_unavailable_and_is_never_dead_lettered() {
    let broker = broker().await;
    // More failures than max_attempts: being unavailable is not failing.
    let attempts = failing_consumer(&broker.rabbit, 2, 4, || {
        HandlerError::Unavailable("mongodb".into())
    });
    publish_job(&broker.rabbit, 1).await;

    assert!(eventually(Duration::from_secs(30), || async { attempts.total() == 5 }).await);
    assert!(drain(&broker.vhost, "work.jobs.dlq").await.is_empty());
    assert!(drain(&broker.vhost, "work.jobs").await.is_empty());
}

#[tokio::test]
async fn every_instance_receives_a_broadcast_also_after_a_reconnect() {
    let broker = broker().await;
    let fanout = Topology::default().exchange("news", ExchangeKind::Fanout);
    let mut instances = Vec::new();
    for _ in 0..2 {
        let shutdown = CancellationToken::new();
        let rabbit = Rabbit::start(&broker.vhost.amqp_url(), fanout.clone(), shutdown.clone());
        let seen = Seen::default();
        let record = seen.clone();
        rabbit.consume(
            Consumer::broadcast("news", &["guest"]),
            move |message: Arc<Message<Job>>| {
                record.record(message.envelope.message.n);
                async { Ok(()) }
            },
        );
        instances.push((rabbit, seen, shutdown.drop_guard()));
    }
    let publisher = &instances[0].0;
    let publish = |n| async move {
        publisher
            .broadcast("news", "", &Envelope::new("news", "c", Job { n }))
            .await
            .unwrap();
    };
    // The exclusive queues exist once both consumers are up; retry the first publish until then.
    assert!(
        eventually(WAIT, || async {
            publish(1).await;
            instances
                .iter()
                .all(|(_, seen, _)| seen.snapshot().contains_key(&1))
        })
        .await
    );

    let closed = broker.vhost.close_connections().await;
    assert!(broker.vhost.wait_for_new_connection(&closed).await);
    assert!(
        eventually(WAIT, || async {
            publish(2).await;
            instances
                .iter()
                .all(|(_, seen, _)| seen.snapshot().contains_key(&2))
        })
        .await
    );
}

#[tokio::test]
async fn a_publish_the_broker_refuses_fails_alone_and_disturbs_no_consumer() {
    let broker = broker().await;
    let seen = Seen::default();
    let record = seen.clone();
    let subscriptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = subscriptions.clone();
    let consumer = Consumer {
        on_subscribed: Some(Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })),
        ..Consumer::queue("work.jobs", &["guest"])
    };
    broker
        .rabbit
        .consume(consumer, move |message: Arc<Message<Job>>| {
            record.record(message.envelope.message.n);
            async { Ok(()) }
        });
    publish_job(&broker.rabbit, 0).await;
    assert!(eventually(WAIT, || async { seen.total() == 1 }).await);

    // The broker closes the channel of a publish to a missing exchange.
    let stray = Envelope::new("job", "c", Job { n: 99 });
    let refused = broker
        .rabbit
        .publish("no-such-exchange", "job", &stray)
        .await;
    assert!(
        matches!(refused, Err(RabbitError::Refused(_))),
        "{refused:?}"
    );

    publish_job(&broker.rabbit, 1).await;
    assert!(eventually(WAIT, || async { seen.total() == 2 }).await);
    let subscribed = subscriptions.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        subscribed, 1,
        "the connection and its consumers were left alone"
    );
}

#[tokio::test]
async fn a_panicking_handler_neither_stops_the_consumer_nor_loses_the_message() {
    let broker = broker().await;
    let seen = Seen::default();
    let record = seen.clone();
    let consumer = Consumer {
        max_attempts: 2,
        ..Consumer::queue("work.jobs", &["guest"])
    };
    broker
        .rabbit
        .consume(consumer, move |message: Arc<Message<Job>>| {
            let n = message.envelope.message.n;
            record.record(n);
            async move {
                assert_ne!(n, 0, "a handler bug");
                Ok(())
            }
        });
    publish_job(&broker.rabbit, 0).await;
    publish_job(&broker.rabbit, 1).await;

    assert!(eventually(WAIT, || async { seen.snapshot().contains_key(&1) }).await);
    let dead = take(&broker.vhost, "work.jobs.dlq", 1).await;
    assert_eq!(dead.len(), 1);
    let envelope: Envelope<Job> = serde_json::from_slice(&dead[0]).unwrap();
    assert_eq!(envelope.message, Job { n: 0 });
    assert_eq!(seen.snapshot()[&0], 2, "retried, then dead-lettered");
}

#[tokio::test]
async fn publishes_alongside_a_refused_one_still_succeed() {
    let broker = broker().await;
    let seen = Seen::default();
    counting_consumer(&broker.rabbit, &seen);
    // The refusal closes the shared publishing channel under the publishes in flight with it.
    let stray = Envelope::new("job", "c", Job { n: 999 });
    let refused = broker.rabbit.publish("no-such-exchange", "job", &stray);
    let jobs = (0..20).map(|n| {
        let envelope = Envelope::new("job", format!("c-{n}"), Job { n });
        let rabbit = broker.rabbit.clone();
        async move { rabbit.publish("work", "job", &envelope).await }
    });
    let (refused, published) = tokio::join!(refused, futures_util::future::join_all(jobs));
    assert!(refused.is_err());
    for result in published {
        assert!(result.is_ok(), "{result:?}");
    }
    assert!(eventually(WAIT, || async { seen.snapshot().len() == 20 }).await);
}

/// An AMQP URL where nothing listens: a port the system gave out and took back.
fn dead_address(vhost: &Vhost) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("amqp://guest:guest@127.0.0.1:{port}/{}", vhost.name)
}

/// A `Rabbit` given a list of two nodes whose first is dead.
async fn broker_behind_a_dead_node() -> Broker {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let nodes = format!("{},{}", dead_address(&vhost), vhost.amqp_url());
    let rabbit = Rabbit::start(&nodes, topology(), shutdown.clone());
    assert!(
        rabbit.wait_connected(WAIT).await,
        "connects to the second node"
    );
    Broker {
        rabbit,
        vhost,
        _shutdown: shutdown.drop_guard(),
    }
}

#[tokio::test]
async fn a_list_of_nodes_whose_first_is_dead_connects_to_a_live_one() {
    let broker = broker_behind_a_dead_node().await;
    let seen = Seen::default();
    counting_consumer(&broker.rabbit, &seen);
    for n in 0..5 {
        publish_job(&broker.rabbit, n).await;
    }
    assert!(eventually(WAIT, || async { seen.total() == 5 }).await);
}

#[tokio::test]
async fn a_lost_connection_is_replaced_through_the_list_of_nodes() {
    let broker = broker_behind_a_dead_node().await;
    let seen = Seen::default();
    counting_consumer(&broker.rabbit, &seen);
    publish_job(&broker.rabbit, 1).await;
    assert!(eventually(WAIT, || async { seen.total() == 1 }).await);

    // The next round starts after the lost node: at the dead one, then the live one again.
    let closed = broker.vhost.close_connections().await;
    assert!(broker.vhost.wait_for_new_connection(&closed).await);
    publish_job(&broker.rabbit, 2).await;
    assert!(eventually(WAIT, || async { seen.total() == 2 }).await);
}

/// A consumer takes messages only from its senders, which the broker vouches for: one naming
/// another user, or none, is dead-lettered unread; a connection cannot name a user it is not
/// (unless an `impersonator`, as `guest` is on the test broker).
#[tokio::test]
async fn a_consumer_takes_messages_only_from_its_senders() {
    let broker = broker().await;
    let seen = Seen::default();
    let record = seen.clone();
    broker.rabbit.consume(
        Consumer::queue("work.jobs", &["cart"]),
        move |message: Arc<Message<Job>>| {
            record.record(message.envelope.message.n);
            async { Ok(()) }
        },
    );
    let job = |n| serde_json::to_vec(&Envelope::new("job", "c", Job { n })).unwrap();
    publish_raw_as(&broker.vhost, &job(1), Some("orders")).await;
    publish_raw_as(&broker.vhost, &job(2), None).await;
    publish_raw_as(&broker.vhost, &job(3), Some("guest")).await;
    publish_job(&broker.rabbit.speaking_as("cart"), 4).await;

    assert!(eventually(WAIT, || async { seen.total() == 1 }).await);
    assert_eq!(seen.snapshot(), HashMap::from([(4, 1)]));
    let dead = eventually(WAIT, || async {
        broker.vhost.queued("work.jobs.dlq").await == 3
    })
    .await;
    assert!(dead, "the three others are dead-lettered");

    // The service users of the test vhost are no impersonators: naming another is refused.
    let shutdown = CancellationToken::new();
    let catalog_exchange = Topology::default().exchange("catalog", ExchangeKind::Direct);
    let cart = Rabbit::start(
        &broker.vhost.amqp_url_as("cart"),
        catalog_exchange,
        shutdown.clone(),
    );
    let question = Envelope::new("job", "c", Job { n: 5 });
    cart.broadcast("catalog", "nobody", &question)
        .await
        .expect("cart may publish to catalog as itself");
    let refused = cart
        .speaking_as("orders")
        .broadcast("catalog", "nobody", &question)
        .await;
    assert!(
        matches!(refused, Err(RabbitError::Refused(_))),
        "{refused:?}"
    );
    shutdown.cancel();
}

/// A message no queue takes is an error for `publish` (its consumer's service has not declared
/// its queue yet: send it again later), and fine for `broadcast`.
#[tokio::test]
async fn an_unroutable_publish_is_an_error_and_a_broadcast_is_not() {
    let broker = broker().await;
    let envelope = Envelope::new("job", "c", Job { n: 1 });
    let published = broker.rabbit.publish("work", "nobody", &envelope).await;
    assert!(
        matches!(published, Err(RabbitError::Unroutable)),
        "{published:?}"
    );
    broker
        .rabbit
        .broadcast("work", "nobody", &envelope)
        .await
        .expect("a broadcast to nobody is fine");
}

/// Publishing and consuming use two connections: a broker alarm that blocks the publishing one
/// leaves the acks of consumers flowing on the other.
#[tokio::test]
async fn publishing_and_consuming_use_two_connections() {
    let broker = broker().await;
    counting_consumer(&broker.rabbit, &Seen::default());
    publish_job(&broker.rabbit, 1).await;
    let two = eventually(WAIT, || async {
        broker.vhost.connections().await.len() == 2
    })
    .await;
    assert!(two, "{:?}", broker.vhost.connections().await);
}
