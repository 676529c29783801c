//! Publishes and consumes through `rabbit` against the nodes of a cluster while you stop one, and
//! counts what happened: every message the broker confirmed must be consumed, at least once.
//!
//! ```sh
//! RABBIT_CLUSTER=1 bash scripts/deps.sh      # prints the RABBIT_URL list of the three nodes
//! RABBIT_URL=$(cat .deps/rabbitmq-cluster.url) cargo run -p rabbit --example failover -- 60 20
//! rabbitmqctl -n deps-rabbit-1@$(hostname -s) stop   # meanwhile, in another shell
//! ```
//!
//! Arguments: how long to publish (seconds, default 60) and when to start consuming (seconds,
//! default 0): messages confirmed before a node stopped must still be there for a consumer that
//! starts after. Prints a line a second and a verdict at the end; exits 1 if a confirmed message
//! was never consumed. Its queue `failover.probe` is a quorum queue of the `/` vhost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rabbit::{Consumer, Envelope, ExchangeKind, Message, QueueType, Rabbit, Topology};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    n: u64,
}

/// What the consumer saw of this run's messages (others' are acked and ignored).
#[derive(Default)]
struct Consumed {
    distinct: HashSet<u64>,
    duplicates: u64,
}

fn seconds_arg(position: usize, default: u64) -> Duration {
    let value = std::env::args().nth(position);
    Duration::from_secs(value.map_or(default, |value| value.parse().expect("seconds")))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "rabbit=info".into()))
        .init();
    let urls = std::env::var("RABBIT_URL").expect("RABBIT_URL: the nodes, comma-separated");
    let (publishing, consume_after) = (seconds_arg(1, 60), seconds_arg(2, 0));
    let run = uuid::Uuid::new_v4().simple().to_string();

    let topology = Topology::default()
        .exchange("failover", ExchangeKind::Direct)
        .queue("failover.probe", "failover", "probe")
        .queue_type(QueueType::Quorum);
    let shutdown = CancellationToken::new();
    let rabbit = Rabbit::start(&urls, topology, shutdown.clone());
    assert!(
        rabbit.wait_connected(Duration::from_secs(30)).await,
        "no node answered"
    );

    let consumed = Arc::new(Mutex::new(Consumed::default()));
    let consumer = {
        let (rabbit, consumed, run) = (rabbit.clone(), consumed.clone(), run.clone());
        tokio::spawn(async move {
            tokio::time::sleep(consume_after).await;
            rabbit.consume(
                Consumer::queue("failover.probe", &["guest"]),
                move |message: Arc<Message<Probe>>| {
                    let (consumed, run) = (consumed.clone(), run.clone());
                    async move {
                        if message.envelope.correlation_id == run {
                            let mut consumed = consumed.lock().unwrap();
                            if !consumed.distinct.insert(message.envelope.message.n) {
                                consumed.duplicates += 1;
                            }
                        }
                        Ok(())
                    }
                },
            );
        })
    };

    let started = Instant::now();
    let (mut confirmed, mut failed) = (HashSet::new(), 0_u64);
    let mut report = started;
    let mut n = 0;
    while started.elapsed() < publishing {
        n += 1;
        let envelope = Envelope::new("probe", run.as_str(), Probe { n });
        match rabbit.publish("failover", "probe", &envelope).await {
            Ok(()) => {
                confirmed.insert(n);
            }
            Err(error) => {
                failed += 1;
                tracing::warn!(n, %error, "publish not confirmed");
            }
        }
        if report.elapsed() >= Duration::from_secs(1) {
            report = Instant::now();
            let consumed = consumed.lock().unwrap();
            println!(
                "t={:>3}s published {n:>5} confirmed {:>5} unconfirmed {failed:>3} consumed {:>5} duplicates {}",
                started.elapsed().as_secs(),
                confirmed.len(),
                consumed.distinct.len(),
                consumed.duplicates,
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.await.expect("consumer started");

    // Give the consumer time to catch up, then compare.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing = {
            let consumed = consumed.lock().unwrap();
            confirmed.difference(&consumed.distinct).count()
        };
        if missing == 0 || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let consumed = consumed.lock().unwrap();
    println!(
        "done: published {n}, confirmed {}, unconfirmed {failed}, consumed {} (of which \
         unconfirmed {}), duplicates {}, confirmed but never consumed {missing}",
        confirmed.len(),
        consumed.distinct.len(),
        consumed.distinct.difference(&confirmed).count(),
        consumed.duplicates,
    );
    shutdown.cancel();
    if missing > 0 {
        std::process::exit(1);
    }
}
