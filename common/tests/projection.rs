//! Read models in the real Redis: the newest version wins whatever order writes arrive in, and a
//! set is trusted only once filled, with members added during the fill kept; readers that miss
//! together read the store once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::projection::{Entry, Projections};

fn pair(member: &str, value: &str) -> (String, String) {
    (member.to_owned(), value.to_owned())
}

fn projections() -> Projections {
    let namespace = testkit::unique_name("projection");
    Projections::new(&testkit::redis_url(), &namespace, Duration::from_secs(60)).unwrap()
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    let projections = projections();
    assert_eq!(projections.get("order:1").await, None);
    projections.put("order:1", 2, "alice", b"two").await;
    projections.put("order:1", 1, "alice", b"one").await;
    projections.put("order:1", 2, "alice", b"two again").await;
    let entry = projections.get("order:1").await.unwrap();
    assert_eq!(
        entry,
        Entry {
            owner: "alice".into(),
            body: "two".into()
        }
    );
    projections.put("order:1", 3, "alice", b"three").await;
    let entries = projections.get_many(&["order:1", "order:2"]).await;
    assert_eq!(entries[0].as_ref().unwrap().body, "three");
    assert_eq!(entries[1], None);
}

/// What a reader that missed does (cart's GET /cart, orders' order reads): wait for its turn, ask
/// Redis again, and only then read the store (here: count the read, take a while, write Redis).
async fn read(projections: &Projections, store_reads: &AtomicUsize) -> Entry {
    if let Some(entry) = projections.get("cart:alice").await {
        return entry;
    }
    let _turn = projections.read_turn("cart:alice").await;
    if let Some(entry) = projections.get("cart:alice").await {
        return entry;
    }
    store_reads.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    projections.put("cart:alice", 1, "alice", b"cart").await;
    projections.get("cart:alice").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_that_miss_together_read_the_store_once() {
    let projections = projections();
    let store_reads = AtomicUsize::new(0);
    let entries =
        futures_util::future::join_all((0..32).map(|_| read(&projections, &store_reads))).await;
    assert!(entries.iter().all(|entry| entry.body == "cart"));
    assert_eq!(store_reads.into_inner(), 1);
}

#[tokio::test]
async fn a_set_is_unknown_until_filled_and_keeps_what_writers_add_meanwhile() {
    let projections = projections();
    // A writer adds to a set nobody filled yet: nothing is created.
    projections.add("orders:alice", "o1", "1").await;
    assert_eq!(projections.members("orders:alice").await, None);

    let during = projections.clone();
    let filled = projections
        .fill("orders:alice", async move {
            // A writer stored o3 after this read of the store began: it adds to the open set.
            during.add("orders:alice", "o3", "3").await;
            Ok::<_, ()>(vec![pair("o1", "1"), pair("o2", "2")])
        })
        .await
        .unwrap();
    assert_eq!(filled, [pair("o1", "1"), pair("o2", "2")]);
    let mut members = projections.members("orders:alice").await.unwrap();
    members.sort();
    assert_eq!(members, [pair("o1", "1"), pair("o2", "2"), pair("o3", "3")]);

    projections.add("orders:alice", "o4", "4").await;
    assert_eq!(projections.members("orders:alice").await.unwrap().len(), 4);
}

#[tokio::test]
async fn without_redis_reads_say_nothing_and_writes_are_dropped() {
    let port = testkit::free_port();
    let projections = Projections::new(
        &format!("redis://127.0.0.1:{port}"),
        "nowhere",
        Duration::from_secs(60),
    )
    .unwrap();
    projections.put("order:1", 1, "alice", b"one").await;
    projections.add("orders:alice", "o1", "1").await;
    assert_eq!(projections.get("order:1").await, None);
    assert_eq!(projections.members("orders:alice").await, None);
    let filled = projections
        .fill("orders:alice", async { Ok::<_, ()>(vec![pair("o1", "1")]) })
        .await;
    assert_eq!(filled, Ok(vec![pair("o1", "1")]));
    assert!(!projections.ping().await);
}

#[tokio::test]
async fn a_set_that_vanishes_while_it_is_filled_stays_missing() {
    let namespace = testkit::unique_name("projection");
    let projections =
        Projections::new(&testkit::redis_url(), &namespace, Duration::from_secs(60)).unwrap();
    let during = projections.clone();
    let key = format!("{namespace}:orders:bob");
    let filled = projections
        .fill("orders:bob", async move {
            // Expired or deleted meanwhile: a writer now finds no set and adds nothing.
            let client = redis::Client::open(testkit::redis_url()).unwrap();
            let mut redis = client.get_multiplexed_async_connection().await.unwrap();
            let () = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap();
            during.add("orders:bob", "o2", "2").await;
            Ok::<_, ()>(vec![pair("o1", "1")])
        })
        .await
        .unwrap();
    assert_eq!(filled, [pair("o1", "1")]);
    // Left for the next reader to fill, never trusted without o2.
    assert_eq!(projections.members("orders:bob").await, None);
}
