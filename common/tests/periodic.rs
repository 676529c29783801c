//! Turns of periodic work against the real MongoDB-compatible server: of many instances claiming
//! the same interval at once, exactly one runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::periodic::{Turns, every_turn};
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

async fn database() -> mongodb::Database {
    let name = testkit::unique_name("periodic");
    common::mongo::connect(&testkit::mongo_url(), &name, "periodic-test")
        .await
        .expect("MONGO_URL")
}

#[tokio::test]
async fn one_of_many_concurrent_claims_wins_a_turn() {
    let db = database().await;
    // Eight instances, each with its own client, as separate processes would have.
    let mut instances = Vec::new();
    for _ in 0..8 {
        instances.push(Turns::new(&db));
    }
    let hour = Duration::from_secs(3600);
    let claims = join_all(instances.iter().map(|turns| turns.claim("job", hour))).await;
    let won = claims
        .into_iter()
        .map(|claim| claim.expect("MongoDB answers"))
        .filter(|won| *won)
        .count();
    assert_eq!(won, 1);
    // Another job has turns of its own.
    assert!(instances[0].claim("other", hour).await.unwrap());
}

#[tokio::test]
async fn work_runs_once_per_interval_whatever_the_number_of_instances() {
    let db = database().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let interval = Duration::from_millis(500);
    for _ in 0..3 {
        let runs = runs.clone();
        every_turn(
            Turns::new(&db),
            "count",
            interval,
            shutdown.clone(),
            move || {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
    }
    tokio::time::sleep(Duration::from_millis(3200)).await;
    shutdown.cancel();
    let runs = runs.load(Ordering::SeqCst);
    // About six intervals went by; three instances running each would give about eighteen. A
    // wake-up late past a boundary can claim the next slot too, so allow one more than elapsed.
    assert!((3..=7).contains(&runs), "{runs} runs");
}
