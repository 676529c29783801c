//! Drives the running system over HTTP for `bench/system.sh`, the way the browser UI would.
//!
//! `shop setup <articles>`: signs up an admin (made admin in auth's MongoDB, as an operator does
//! with mongosh) and a shopper, creates `<articles>` articles (named so that a search for
//! `needle` matches about one in a hundred), puts ten in the shopper's cart, has a reader buy three
//! times, and prints shell assignments (`ADMIN_TOKEN=...`) for the script to `eval`.
//!
//! `shop checkouts <shoppers> <seconds>`: every shopper loops add-to-cart, checkout, then polls
//! its orders until the new one is `VALIDATED`, for `<seconds>`; prints one table row: orders per
//! minute and p50/p99 of the time from checkout to `VALIDATED`.
//!
//! `shop faults <shoppers> <seconds>`: for `bench/faults.sh`, every shopper loops add-to-cart and
//! checkout for `<seconds>` while the script injects faults, taking every error as a reason to
//! pause and go on, and remembers each cart a checkout answered closed. Then it waits (up to ten
//! minutes) until the system has settled: every such cart has exactly one order, no order is
//! still `PLACED`, and the article's stock is its start less what the `VALIDATED` orders hold.
//! Prints `key=value` lines: the counts, and `SETTLED_AT` (Unix seconds, 0 if it never settled).
//!
//! Service URLs come from `AUTH`, `CATALOG`, `CART` and `ORDERS`, MongoDB from `MONGO_URL` and
//! auth's database from `AUTH_DB`.

mod faults;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mongodb::bson::doc;
use reqwest::Client;
use serde_json::{Value, json};

pub(crate) const PASSWORD: &str = "benchmark password";
/// Lines in the cart of `setup`'s shopper.
const CART_LINES: usize = 10;
/// Orders of `setup`'s reader.
const READER_ORDERS: usize = 3;
/// Shoppers with a CART_LINES cart: one per connection of the validation scenario.
const VALIDATORS: usize = 128;

pub(crate) struct Urls {
    auth: String,
    catalog: String,
    cart: String,
    orders: String,
}

impl Urls {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
        Self {
            auth: var("AUTH"),
            catalog: var("CATALOG"),
            cart: var("CART"),
            orders: var("ORDERS"),
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let urls = Urls::from_env();
    let http = Client::new();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["setup", articles] => setup(&http, &urls, articles.parse().expect("a count")).await,
        ["checkouts", shoppers, seconds] => {
            let shoppers = shoppers.parse().expect("a count");
            let run_for = Duration::from_secs(seconds.parse().expect("seconds"));
            checkouts(&http, &urls, shoppers, run_for).await
        }
        ["faults", shoppers, seconds] => {
            let shoppers = shoppers.parse().expect("a count");
            let run_for = Duration::from_secs(seconds.parse().expect("seconds"));
            faults::run(&http, &urls, shoppers, run_for).await
        }
        _ => {
            eprintln!(
                "usage: shop setup <articles> | shop checkouts <shoppers> <seconds> | shop faults <shoppers> <seconds>"
            );
            std::process::exit(2)
        }
    }
}

/// Sends a request and returns its JSON body, panicking with the answer unless it is a 200.
async fn call(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).expect("a JSON body")
}

async fn signup(http: &Client, urls: &Urls, login: &str) -> String {
    let body = json!({"name": login, "login": login, "password": PASSWORD});
    let reply = call(http.post(format!("{}/users/signup", urls.auth)).json(&body)).await;
    reply["token"].as_str().expect("a token").to_owned()
}

async fn create_article(http: &Client, urls: &Urls, admin: &str, n: usize, stock: i64) -> String {
    let word = if n.is_multiple_of(100) {
        "needle"
    } else {
        "hay"
    };
    let body = json!({"name": format!("Article {n:06} {word}"),
                      "description": format!("A benchmark article made of {word} number {n}"),
                      "image": "", "price": 10.5, "stock": stock});
    let reply = call(
        http.post(format!("{}/articles", urls.catalog))
            .bearer_auth(admin)
            .json(&body),
    )
    .await;
    reply["_id"].as_str().expect("an article id").to_owned()
}

async fn setup(http: &Client, urls: &Urls, articles: usize) {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let admin_login = format!("admin_{suffix}");
    let admin = signup(http, urls, &admin_login).await;
    let mongo_url = std::env::var("MONGO_URL").unwrap_or("mongodb://127.0.0.1:27017".into());
    let auth_db = std::env::var("AUTH_DB").expect("AUTH_DB is set");
    mongodb::Client::with_uri_str(mongo_url)
        .await
        .expect("a MongoDB URL")
        .database(&auth_db)
        .collection::<mongodb::bson::Document>("users")
        .update_one(
            doc! {"login": &admin_login},
            doc! {"$addToSet": {"permissions": "admin"}},
        )
        .await
        .expect("MongoDB answers");

    // The article every cart and checkout uses has stock for any run.
    let article = create_article(http, urls, &admin, 0, 1_000_000_000).await;
    let mut created = vec![article.clone()];
    for batch in (1..articles).collect::<Vec<_>>().chunks(64) {
        let ids = join_all(
            batch
                .iter()
                .map(|&n| create_article(http, urls, &admin, n, 100)),
        )
        .await;
        created.extend(ids);
    }

    // The shopper's cart holds CART_LINES articles, so that one `GET /cart/validate` makes that
    // many `article-data` request/replies with catalog. A user has at most a few validations in
    // flight (429 past them), so the validation scenario takes one shopper per connection:
    // VALIDATORS shoppers with the same cart.
    let lines = &created[..CART_LINES.min(created.len())];
    let shoppers = join_all((0..VALIDATORS).map(|n| async move {
        let shopper = signup(http, urls, &format!("shopper_{suffix}_{n}")).await;
        for line in lines {
            call(
                http.post(format!("{}/cart/article", urls.cart))
                    .bearer_auth(&shopper)
                    .json(&json!({"articleId": line, "quantity": 1})),
            )
            .await;
        }
        shopper
    }))
    .await;
    let shopper = &shoppers[0];
    // The reader has READER_ORDERS validated orders and an empty cart: what the order and cart
    // reads of the benchmark show.
    let reader = signup(http, urls, &format!("reader_{suffix}")).await;
    for _ in 0..READER_ORDERS {
        checkout_once(http, urls, &reader, &article).await;
    }
    let orders = call(
        http.get(format!("{}/orders", urls.orders))
            .bearer_auth(&reader),
    )
    .await;
    let order = orders[0]["id"].as_str().expect("an order id");
    println!(
        "ADMIN_TOKEN={admin}\nSHOPPER_TOKEN={shopper}\nARTICLE_ID={article}\nCART_LINES={CART_LINES}"
    );
    println!("SHOPPER_TOKENS={}", shoppers.join(","));
    println!("READER_TOKEN={reader}\nORDER_ID={order}");
}

async fn checkouts(http: &Client, urls: &Urls, shoppers: usize, run_for: Duration) {
    let article = std::env::var("ARTICLE_ID").expect("ARTICLE_ID is set");
    let deadline = Instant::now() + run_for;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let runs = (0..shoppers).map(|n| {
        let login = format!("buyer_{suffix}_{n}");
        let article = article.clone();
        async move {
            let token = signup(http, urls, &login).await;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                latencies.push(checkout_once(http, urls, &token, &article).await);
            }
            latencies
        }
    });
    let started = Instant::now();
    let mut latencies: Vec<Duration> = join_all(runs).await.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    let per_minute = latencies.len() as f64 * 60.0 / elapsed.as_secs_f64();
    println!(
        "checkout to VALIDATED ({shoppers} shoppers) | {per_minute:.0} orders/min | {:.1} ms | {:.1} ms | {} | 0",
        percentile(0.5).as_secs_f64() * 1000.0,
        percentile(0.99).as_secs_f64() * 1000.0,
        latencies.len()
    );
}

/// One purchase: add, checkout, then poll the shopper's orders until the cart's order is
/// `VALIDATED`. Returns the time from the checkout request to the first poll that saw it.
async fn checkout_once(http: &Client, urls: &Urls, token: &str, article: &str) -> Duration {
    call(
        http.post(format!("{}/cart/article", urls.cart))
            .bearer_auth(token)
            .json(&json!({"articleId": article, "quantity": 1})),
    )
    .await;
    let started = Instant::now();
    let cart = call(
        http.post(format!("{}/cart/checkout", urls.cart))
            .bearer_auth(token),
    )
    .await;
    let cart_id = cart["_id"].as_str().expect("a cart id").to_owned();
    loop {
        let orders = call(
            http.get(format!("{}/orders", urls.orders))
                .bearer_auth(token),
        )
        .await;
        let order = orders
            .as_array()
            .expect("an array of orders")
            .iter()
            .find(|order| order["cartId"] == cart_id.as_str());
        match order.map(|order| order["status"].as_str().unwrap_or_default()) {
            Some("VALIDATED") => return started.elapsed(),
            Some("PLACED") | None => tokio::time::sleep(Duration::from_millis(10)).await,
            Some(status) => panic!("order of cart {cart_id} ended {status}"),
        }
    }
}
