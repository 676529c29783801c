//! `shop faults`: checkouts that go on through faults, then the wait for the system to settle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use reqwest::Client;
use serde_json::{Value, json};

use crate::{PASSWORD, Urls};

/// How long the system may take to settle after the load before the run counts as failed.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);
/// The pause after a failed request: a fault is on, the shopper waits a little like a person.
const PAUSE: Duration = Duration::from_millis(250);
/// The article's price in `setup`: every unit of an order costs this much.
const PRICE: f64 = 10.5;
/// Answers 5xx other than 503 (a 503 with `Retry-After` is the documented answer to a fault).
static SERVER_ERRORS: AtomicUsize = AtomicUsize::new(0);

/// How often a shopper who watches its new order looks at it.
const WATCH_POLL: Duration = Duration::from_millis(250);

struct Shopper {
    token: String,
    /// The carts a checkout answered closed: each must end in exactly one order.
    checked_out: Vec<String>,
    /// When each of those checkouts was answered, in Unix seconds.
    answered_at: Vec<u64>,
    failures: usize,
}

/// Shoppers who buy one unit, then watch their order until it is decided for up to `WATCH_SECS`
/// (default 10) before buying again, as a person looks at the order page; `WATCH_SECS=0` buys
/// again at once, a load that outruns orders and catalog whatever the faults. When
/// `CHECKOUT_TIMES` names a file, it gets the Unix second of every checkout answered closed.
pub async fn run(http: &Client, urls: &Urls, shoppers: usize, run_for: Duration) {
    let article = std::env::var("ARTICLE_ID").expect("ARTICLE_ID is set");
    let watch = Duration::from_secs(
        std::env::var("WATCH_SECS").map_or(10, |secs| secs.parse().expect("WATCH_SECS: seconds")),
    );
    let start_stock = stock(http, urls, &article).await;
    let deadline = Instant::now() + run_for;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let runs = (0..shoppers).map(|n| {
        let login = format!("faulty_{suffix}_{n}");
        let article = article.as_str();
        async move {
            let mut shopper = Shopper {
                token: signup(http, urls, &login).await,
                checked_out: Vec::new(),
                answered_at: Vec::new(),
                failures: 0,
            };
            while Instant::now() < deadline {
                match buy(http, urls, &shopper.token, article).await {
                    Ok(cart_id) => {
                        shopper.answered_at.push(unix_now().as_secs());
                        watch_order(http, urls, &shopper.token, &cart_id, watch).await;
                        shopper.checked_out.push(cart_id);
                    }
                    Err(_) => {
                        shopper.failures += 1;
                        tokio::time::sleep(PAUSE).await;
                    }
                }
            }
            shopper
        }
    });
    let shoppers: Vec<Shopper> = join_all(runs).await;
    let checkouts: usize = shoppers.iter().map(|s| s.checked_out.len()).sum();
    let failures: usize = shoppers.iter().map(|s| s.failures).sum();
    println!("CHECKOUTS={checkouts}\nFAILED_REQUESTS={failures}");
    if let Ok(path) = std::env::var("CHECKOUT_TIMES") {
        let mut times: Vec<u64> = shoppers
            .iter()
            .flat_map(|s| s.answered_at.clone())
            .collect();
        times.sort_unstable();
        let lines: String = times.iter().map(|t| format!("{t}\n")).collect();
        std::fs::write(&path, lines).expect("CHECKOUT_TIMES is writable");
    }

    let load_ended = Instant::now();
    loop {
        let survey = survey(http, urls, &shoppers).await;
        let stock_now = stock(http, urls, &article).await;
        let settled = survey.as_ref().is_some_and(|survey| {
            survey.missing == 0
                && survey.placed == 0
                && stock_now == start_stock - survey.validated_units
        });
        if settled || load_ended.elapsed() > SETTLE_LIMIT {
            let survey = survey.unwrap_or_default();
            let now = unix_now();
            println!(
                "ORDERS={}\nVALIDATED={}\nINVALID={}\nPLACED={}\nLOST={}\nDUPLICATED={}",
                survey.orders,
                survey.validated,
                survey.invalid,
                survey.placed,
                survey.missing,
                survey.duplicated,
            );
            println!(
                "START_STOCK={start_stock}\nSTOCK={stock_now}\nVALIDATED_UNITS={}\nSETTLED_AT={}",
                survey.validated_units,
                if settled { now.as_secs() } else { 0 },
            );
            println!("SERVER_ERRORS={}", SERVER_ERRORS.load(Ordering::Relaxed));
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The shoppers' orders as the orders service shows them.
#[derive(Default)]
struct Survey {
    orders: usize,
    validated: usize,
    invalid: usize,
    placed: usize,
    /// Carts answered closed that have no order.
    missing: usize,
    /// Carts with more than one order.
    duplicated: usize,
    validated_units: i64,
}

/// `None` while a service does not answer.
async fn survey(http: &Client, urls: &Urls, shoppers: &[Shopper]) -> Option<Survey> {
    let mut survey = Survey::default();
    for shopper in shoppers {
        let orders = get(http, &format!("{}/orders", urls.orders), &shopper.token)
            .await
            .ok()?;
        let mut per_cart: HashMap<&str, usize> = HashMap::new();
        for order in orders.as_array()? {
            survey.orders += 1;
            *per_cart.entry(order["cartId"].as_str()?).or_default() += 1;
            match order["status"].as_str()? {
                "PLACED" => survey.placed += 1,
                "INVALID" => survey.invalid += 1,
                _ => {
                    survey.validated += 1;
                    survey.validated_units +=
                        (order["totalPrice"].as_f64()? / PRICE).round() as i64;
                }
            }
        }
        survey.duplicated += per_cart.values().filter(|&&count| count > 1).count();
        survey.missing += shopper
            .checked_out
            .iter()
            .filter(|cart| !per_cart.contains_key(cart.as_str()))
            .count();
    }
    Some(survey)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}

/// Looks at the order of cart `cart_id` until it is decided (not `PLACED`), for `watch` at most;
/// errors only mean looking again.
async fn watch_order(http: &Client, urls: &Urls, token: &str, cart_id: &str, watch: Duration) {
    let until = Instant::now() + watch;
    while Instant::now() < until {
        if let Ok(orders) = get(http, &format!("{}/orders", urls.orders), token).await
            && let Some(order) = orders
                .as_array()
                .and_then(|orders| orders.iter().find(|order| order["cartId"] == cart_id))
            && order["status"] != "PLACED"
        {
            return;
        }
        tokio::time::sleep(WATCH_POLL).await;
    }
}

/// Adds one unit and checks out; the closed cart's id.
async fn buy(http: &Client, urls: &Urls, token: &str, article: &str) -> Result<String, String> {
    let add = http
        .post(format!("{}/cart/article", urls.cart))
        .bearer_auth(token)
        .json(&json!({"articleId": article, "quantity": 1}));
    send(add).await?;
    let checkout = http
        .post(format!("{}/cart/checkout", urls.cart))
        .bearer_auth(token);
    let cart = send(checkout).await?;
    match (cart["_id"].as_str(), cart["enabled"].as_bool()) {
        (Some(id), Some(false)) => Ok(id.to_owned()),
        _ => Err(format!("not a closed cart: {cart}")),
    }
}

async fn signup(http: &Client, urls: &Urls, login: &str) -> String {
    let body = json!({"name": login, "login": login, "password": PASSWORD});
    loop {
        let request = http.post(format!("{}/users/signup", urls.auth)).json(&body);
        if let Ok(reply) = send(request).await
            && let Some(token) = reply["token"].as_str()
        {
            return token.to_owned();
        }
        tokio::time::sleep(PAUSE).await;
    }
}

async fn stock(http: &Client, urls: &Urls, article: &str) -> i64 {
    loop {
        let request = http.get(format!("{}/articles/{article}", urls.catalog));
        if let Ok(reply) = send(request).await
            && let Some(stock) = reply["stock"].as_i64()
        {
            return stock;
        }
        tokio::time::sleep(PAUSE).await;
    }
}

async fn get(http: &Client, url: &str, token: &str) -> Result<Value, String> {
    send(http.get(url).bearer_auth(token)).await
}

/// The JSON body of a 2xx answer; anything else is an error.
async fn send(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|error| error.to_string())?;
    if status.is_server_error() && status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
        SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|error| error.to_string())
}
