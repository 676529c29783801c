//! How a `Topology` declares its queues on a real RabbitMQ, each test in a vhost of its own.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use rabbit::{
    Consumer, Envelope, ExchangeKind, Message, QueueType, REQUEST_DEAD_LETTERS_MAX, Rabbit,
    RabbitError, Topology,
};
use serde::{Deserialize, Serialize};
use testkit::{Vhost, eventually};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, Deserialize)]
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

/// Publishes a job and waits until a consumer of `work.jobs` handled it.
async fn round_trip(rabbit: &Rabbit) {
    let (handled, mut handled_rx) = mpsc::unbounded_channel();
    rabbit.consume(
        Consumer::queue("work.jobs", &["guest"]),
        move |message: Arc<Message<Job>>| {
            let handled = handled.clone();
            async move {
                let _ = handled.send(message.envelope.message.n);
                Ok(())
            }
        },
    );
    let envelope = Envelope::new("job", "c-1", Job { n: 7 });
    rabbit.publish("work", "job", &envelope).await.unwrap();
    let n = tokio::time::timeout(WAIT, handled_rx.recv()).await;
    assert_eq!(n, Ok(Some(7)), "the job was consumed");
}

#[tokio::test]
async fn every_queue_and_its_dead_letter_queue_are_quorum_queues() {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology(), shutdown);
    assert!(rabbit.wait_connected(WAIT).await, "connects to RabbitMQ");

    for queue in ["work.jobs", "work.jobs.dlq"] {
        let listed = eventually(WAIT, || async {
            vhost.queue(queue).await["type"] == "quorum"
        })
        .await;
        assert!(listed, "{queue}: {}", vhost.queue(queue).await);
    }
    let arguments = &vhost.queue("work.jobs").await["arguments"];
    assert_eq!(arguments["x-dead-letter-exchange"], "dead_letter");
    assert_eq!(arguments["x-dead-letter-routing-key"], "work.jobs");
    round_trip(&rabbit).await;
}

#[tokio::test]
async fn a_classic_queue_an_earlier_version_declared_is_used_as_it_is() {
    let vhost = Vhost::create().await;
    // What the topology declared before its queues were quorum queues.
    let connection = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("dead_letter".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("work.jobs".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare("work.jobs".into(), durable, arguments)
        .await
        .unwrap();
    connection.close(200, "declared".into()).await.unwrap();

    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology(), shutdown);
    assert!(
        rabbit.wait_connected(WAIT).await,
        "connects although the broker refuses to redeclare work.jobs as a quorum queue"
    );
    round_trip(&rabbit).await;
    assert_eq!(vhost.queue("work.jobs").await["type"], "classic");
    let dlq = eventually(WAIT, || async {
        vhost.queue("work.jobs.dlq").await["type"] == "quorum"
    })
    .await;
    assert!(
        dlq,
        "the missing dead-letter queue is declared after the refusal"
    );
}

#[tokio::test]
async fn a_topology_of_classic_queues_declares_them_without_a_queue_type() {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let classic = topology().queue_type(QueueType::Classic);
    let rabbit = Rabbit::start(&vhost.amqp_url(), classic, shutdown);
    assert!(rabbit.wait_connected(WAIT).await, "connects to RabbitMQ");

    for queue in ["work.jobs", "work.jobs.dlq"] {
        let listed = eventually(WAIT, || async {
            vhost.queue(queue).await["type"] == "classic"
        })
        .await;
        assert!(listed, "{queue}: {}", vhost.queue(queue).await);
        let arguments = vhost.queue(queue).await["arguments"].clone();
        assert_eq!(arguments.get("x-queue-type"), None, "{queue}: {arguments}");
    }
    round_trip(&rabbit).await;
}

/// How many messages `queue` holds now (a passive declare: exact, unlike the management API's
/// statistics).
async fn message_count(vhost: &Vhost, queue: &str) -> u32 {
    let connection = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap();
    let _ = connection.close(200, "counted".into()).await;
    queue.message_count()
}

#[tokio::test]
async fn the_dead_letters_of_a_request_queue_expire_instead_of_piling_up() {
    let vhost = Vhost::create().await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let mut topology = Topology::default()
        .exchange("work", ExchangeKind::Direct)
        .request_queue("work.questions", "work", "question")
        .queue_type(QueueType::Quorum);
    // An hour in production; short enough here to watch.
    topology.queues[0].dead_letters_kept = Some(Duration::from_millis(1500));
    let rabbit = Rabbit::start(&vhost.amqp_url(), topology, shutdown);
    assert!(rabbit.wait_connected(WAIT).await, "connects to RabbitMQ");

    // Nobody answers: the request expires after its timeout and is dead-lettered.
    let envelope = Envelope::new("question", "c-1", Job { n: 1 });
    let timeout = Duration::from_millis(200);
    let answer = rabbit
        .request::<_, Job>("work", "question", envelope, timeout)
        .await;
    assert!(matches!(answer, Err(RabbitError::Timeout)), "{answer:?}");
    let dead_lettered = eventually(WAIT, || async {
        message_count(&vhost, "work.questions.dlq").await == 1
    })
    .await;
    assert!(
        dead_lettered,
        "the expired request reached the dead-letter queue"
    );
    let expired = eventually(WAIT, || async {
        message_count(&vhost, "work.questions.dlq").await == 0
    })
    .await;
    assert!(expired, "and left it after the time it is kept");

    let arguments = &vhost.queue("work.questions.dlq").await["arguments"];
    assert_eq!(arguments["x-message-ttl"], 1500);
    assert_eq!(arguments["x-max-length"], REQUEST_DEAD_LETTERS_MAX);
    assert_eq!(arguments["x-queue-type"], "quorum");
}
