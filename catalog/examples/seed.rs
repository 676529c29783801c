//! Fills a running catalog with articles through its REST API, for the benchmark
//! (`bench/catalog.sh`): signs a benchmark admin up at auth, grants it `admin` the way an
//! operator does (directly in auth's database), then creates the articles, 32 at a time.
//!
//! Usage: `seed <catalog url> <auth url> <auth MongoDB url> <auth database> <count>`; prints the
//! admin's token.
//!
//! Names and descriptions are drawn from small word lists (a few accented), so that a word
//! matches a known share of the catalog: each adjective about 1/16 of it, each noun 1/16, each
//! colour 1/8, and `model-<n>` exactly one article.

use futures_util::StreamExt;
use mongodb::bson::doc;
use serde_json::{Value, json};

const ADJECTIVES: [&str; 16] = [
    "Small", "Large", "Vintage", "Modern", "Rustic", "Elegant", "Compact", "Sturdy", "Léger",
    "Classic", "Bright", "Quiet", "Smart", "Foldable", "Premium", "Handmade",
];
const NOUNS: [&str; 16] = [
    "lamp",
    "chair",
    "table",
    "sofa",
    "shelf",
    "mirror",
    "rug",
    "clock",
    "vase",
    "desk",
    "stool",
    "cushion",
    "bench",
    "crème jar",
    "kettle",
    "basket",
];
const COLOURS: [&str; 8] = [
    "red", "blue", "green", "oak", "walnut", "white", "black", "grey",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, catalog, auth, mongo_url, auth_db, count] = args.as_slice() else {
        eprintln!(
            "usage: seed <catalog url> <auth url> <auth MongoDB url> <auth database> <count>"
        );
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("a count");
    let http = reqwest::Client::new();
    let token = admin_token(&http, auth, mongo_url, auth_db).await;

    let created = futures_util::stream::iter(0..count)
        .map(|n| {
            let (http, token) = (&http, &token);
            async move {
                let response = http
                    .post(format!("{catalog}/articles"))
                    .bearer_auth(token)
                    .json(&article(n))
                    .send()
                    .await
                    .expect("catalog answers");
                assert!(
                    response.status().is_success(),
                    "{:?}",
                    response.text().await
                );
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    eprintln!("created {created} articles");
    println!("{token}");
}

fn article(n: usize) -> Value {
    let adjective = ADJECTIVES[n % 16];
    let noun = NOUNS[(n / 16) % 16];
    let colour = COLOURS[(n / 256) % 8];
    json!({
        "name": format!("{adjective} {noun} {n}"),
        "description": format!("A {colour} {noun}, model-{n}. Ships in two days."),
        "image": "",
        "price": (n % 500) as f64 + 0.99,
        "stock": n % 50,
    })
}

async fn admin_token(http: &reqwest::Client, auth: &str, mongo_url: &str, auth_db: &str) -> String {
    let login = "bench_admin";
    let credentials = json!({"name": "Bench", "login": login, "password": "benchmark password"});
    let signup: Value = http
        .post(format!("{auth}/users/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("auth answers")
        .json()
        .await
        .expect("a JSON answer");
    let token = signup["token"].as_str().expect("a token").to_owned();
    mongodb::Client::with_uri_str(mongo_url)
        .await
        .expect("a MongoDB URL")
        .database(auth_db)
        .collection::<mongodb::bson::Document>("users")
        .update_one(
            doc! {"login": login},
            doc! {"$addToSet": {"permissions": "admin"}},
        )
        .await
        .expect("MongoDB answers");
    token
}
