//! Measures the reservation path: `ORDERS` orders of one line each, published one after the other
//! (each waits for its `article-data` answer, over RabbitMQ direct reply-to), against `ARTICLES`
//! articles, on `INSTANCES` catalog instances sharing one fresh database and one fresh vhost.
//! The articles are written straight into MongoDB the way catalog's create writes them (the
//! initial movement, the saved head, the article) before the instances start.
//!
//! Usage: `cargo run --release -p catalog --example reserve_bench -- [ARTICLES] [ORDERS]
//! [INSTANCES]` (defaults 1000, 200, 1), with RabbitMQ and FerretDB running (`scripts/deps.sh`).

use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, Document, doc};
use rabbit::contract::{
    ArticleDataReply, OrderLine, OrderPlaced, exchange, kind, service, topology,
};
use rabbit::{Envelope, Rabbit};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("a number"))
        .collect();
    let articles = args.first().copied().unwrap_or(1000);
    let orders = args.get(1).copied().unwrap_or(200);
    let instances = args.get(2).copied().unwrap_or(1);

    let vhost = testkit::Vhost::create().await;
    let mongo_db = testkit::unique_name("catalog_bench");
    let db = mongodb::Client::with_uri_str(testkit::mongo_url())
        .await
        .expect("a MongoDB URL")
        .database(&mongo_db);
    let ids = seed(&db, articles).await;

    let shutdown = CancellationToken::new();
    let config = catalog::Config {
        port: 0,
        http: common::server::HttpLimits::default(),
        mongo_url: testkit::mongo_url(),
        mongo_db,
        rabbit_url: vhost.amqp_url_as(service::CATALOG),
        auth_service_url: "http://127.0.0.1:9".into(),
        token_cache_ttl: Duration::from_secs(600),
        snapshot_reload: Some(Duration::from_secs(300)),
    };
    for _ in 0..instances {
        catalog::run(config.clone(), shutdown.clone())
            .await
            .expect("catalog starts");
    }
    // Plays orders: `guest` may name it as the sender.
    let rabbit =
        Rabbit::start(&vhost.amqp_url(), topology(), shutdown.clone()).speaking_as(service::ORDERS);
    // Let the instances load their snapshots (about 14 s for 100,000 articles on FerretDB; a
    // probe through the API would itself load FerretDB) and subscribe.
    let loading = Duration::from_secs(3 + articles as u64 / 4_000);
    tokio::time::sleep(loading).await;

    let mut took = Vec::with_capacity(orders);
    let started = Instant::now();
    for n in 0..orders {
        let order = OrderPlaced {
            order_id: uuid::Uuid::new_v4().to_string(),
            cart_id: "bench".into(),
            user_id: "bench".into(),
            articles: vec![OrderLine {
                article_id: ids[n % ids.len()].clone(),
                quantity: 1,
            }],
        };
        let envelope = Envelope::new(kind::ORDER_PLACED, n.to_string(), order);
        let asked = Instant::now();
        let reply: Envelope<ArticleDataReply> = rabbit
            .request(
                exchange::SELL_FLOW,
                kind::ORDER_PLACED,
                envelope,
                Duration::from_secs(30),
            )
            .await
            .expect("catalog answers");
        assert!(reply.message.valid, "{:?}", reply.message);
        took.push(asked.elapsed());
    }
    let total = started.elapsed();
    took.sort();
    let at = |share: f64| took[((took.len() as f64 * share) as usize).min(took.len() - 1)];
    println!(
        "{orders} sequential reservations, {articles} articles, {instances} instance(s): \
         {:.2} s total, {:.0} reservations/s, p50 {:.1} ms, p99 {:.1} ms",
        total.as_secs_f64(),
        orders as f64 / total.as_secs_f64(),
        at(0.50).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
    );
    shutdown.cancel();
    db.drop().await.expect("the bench database is dropped");
}

/// Writes `count` articles with 1,000,000 units each as catalog's create does; returns their ids.
async fn seed(db: &mongodb::Database, count: usize) -> Vec<String> {
    let now = DateTime::now();
    let ids: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let stock = 1_000_000_i64;
    let movements: Vec<Document> = ids
        .iter()
        .map(|id| {
            doc! {"_id": format!("{id}:1"), "article": id, "position": 1_i64, "kind": "stock",
            "quantity": stock, "balance": stock, "at": now}
        })
        .collect();
    let heads: Vec<Document> = ids
        .iter()
        .map(|id| doc! {"_id": id, "position": 1_i64, "balance": stock})
        .collect();
    let articles: Vec<Document> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let name = format!("article {n}");
            doc! {"_id": id, "name": &name, "description": "", "image": "", "price": 1.0,
            "enabled": true, "key": &name, "search": format!("{name}\n"), "created": now,
            "updated": now, "version": 1_i64}
        })
        .collect();
    for (collection, documents) in [
        ("stock_movements", movements),
        ("stock_heads", heads),
        ("articles", articles),
    ] {
        db.collection::<Document>(collection)
            .insert_many(documents)
            .await
            .expect("MongoDB answers");
    }
    ids
}
