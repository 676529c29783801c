//! Fills an orders database with Order projection snapshots for the read benchmark
//! (`orders/bench-reads.sh`): `OTHERS` orders spread over 1,000 other users, and `MINE` orders of
//! `USER_ID`, inserted straight into the `orders` collection in the shape `store.rs` writes
//! (`_id` = `<orderId>:<position>`, the order's fields beside it). No events: reads never look at
//! them, and nothing here is meant to be paid or validated.
//!
//! `MONGO_URL=mongodb://127.0.0.1:27017 MONGO_DB=bench_orders \
//!  cargo run --release -p orders --example seed_orders -- <USER_ID> <MINE> <OTHERS>`

use std::time::Instant;

use mongodb::bson::{DateTime, Document, doc};

/// Documents per `insert_many`: large batches are what makes 100,000 inserts take seconds.
const BATCH: usize = 2_000;

#[tokio::main]
async fn main() -> mongodb::error::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user_id, mine, others] = args.as_slice() else {
        eprintln!("usage: seed_orders <USER_ID> <MINE> <OTHERS>  (MONGO_URL, MONGO_DB from env)");
        std::process::exit(2)
    };
    let (mine, others): (usize, usize) = match (mine.parse(), others.parse()) {
        (Ok(mine), Ok(others)) => (mine, others),
        _ => {
            eprintln!("MINE and OTHERS are counts");
            std::process::exit(2)
        }
    };
    let url = std::env::var("MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let db = std::env::var("MONGO_DB").unwrap_or_else(|_| "orders".into());
    let orders = mongodb::Client::with_uri_str(&url)
        .await?
        .database(&db)
        .collection::<Document>("orders");

    let started = Instant::now();
    let now = DateTime::now().timestamp_millis();
    let owners = (0..others)
        .map(|n| format!("bench-user-{:04}", n % 1_000))
        .chain((0..mine).map(|_| user_id.clone()));
    let mut batch = Vec::with_capacity(BATCH);
    for (n, owner) in owners.enumerate() {
        // One order a second, the user's own the newest.
        let created = DateTime::from_millis(now - 1_000 * (others + mine - n) as i64);
        batch.push(snapshot(&owner, n, created));
        if batch.len() == BATCH {
            orders.insert_many(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        orders.insert_many(batch).await?;
    }
    println!(
        "{} orders in {db} ({mine} of {user_id}) in {:.1} s",
        others + mine,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A VALIDATED order of two lines at position 2 (placed, then one reply per line).
fn snapshot(user_id: &str, n: usize, created: DateTime) -> Document {
    let order_id = uuid::Uuid::new_v4().to_string();
    let line = |article: &str, quantity: i64, price: f64| {
        doc! {"articleId": article, "quantity": quantity, "unitaryPrice": price,
        "valid": true, "validated": true}
    };
    doc! {
        "_id": format!("{order_id}:2"),
        "orderId": &order_id,
        "userId": user_id,
        "cartId": format!("bench-cart-{n}"),
        "status": "VALIDATED",
        "articles": [line("bench-article-a", 2, 10.5), line("bench-article-b", 1, 3.25)],
        "payments": [],
        "position": 2_i64,
        "created": created,
        "updated": DateTime::from_millis(created.timestamp_millis() + 50),
        "settled": false,
    }
}
