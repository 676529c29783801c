//! `GET /metrics` (issue 16): Prometheus's text format, with the HTTP requests counted under their
//! route template, the token cache's lookups and the messages consumed and published, moving with
//! the traffic the test makes.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rabbit::contract::{exchange, kind, queue};
use serde_json::json;
use support::spawn_catalog;

/// The samples of a Prometheus text exposition, by `name{labels}` as written; panics on a line
/// that is neither a comment nor `<name>[{labels}] <number>`.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a number: {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

async fn scrape(app: &support::TestCatalog) -> HashMap<String, f64> {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&response.text().await.unwrap())
}

/// The sum of the samples whose name and labels contain every one of `parts` (one series, or
/// several that differ in a label the parts leave out).
fn sample(samples: &HashMap<String, f64>, parts: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| parts.iter().all(|part| series.contains(part)))
        .map(|(_, value)| *value)
        .sum()
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 3).await;
    let ok = [
        "http_requests_total{",
        "method=\"GET\"",
        "route=\"/articles/{id}\"",
        "status=\"200\"",
    ];
    let missing = [
        "http_requests_total{",
        "route=\"/articles/{id}\"",
        "status=\"404\"",
    ];
    let before = scrape(&app).await;

    for _ in 0..3 {
        assert_eq!(app.get(&format!("/articles/{id}")).await.status, 200);
    }
    let unknown = "/articles/0b5f7a4e-5d2c-4b8e-9a57-3f1d2c6e8a90";
    assert_eq!(app.get(unknown).await.status, 404);
    assert_eq!(app.get("/no/such/route/here").await.status, 404);

    let after = scrape(&app).await;
    assert!(sample(&after, &ok) - sample(&before, &ok) >= 3.0);
    assert!(sample(&after, &missing) - sample(&before, &missing) >= 1.0);
    assert!(sample(&after, &["http_requests_total{", "route=\"unmatched\""]) >= 1.0);
    let buckets = [
        "http_request_duration_seconds_bucket{",
        "route=\"/articles/{id}\"",
    ];
    assert!(sample(&after, &buckets) > 0.0, "a histogram with buckets");
    assert!(
        !after.keys().any(|series| series.contains(&id)),
        "no raw path in a label"
    );
}

#[tokio::test]
async fn the_token_cache_counts_its_misses_and_hits() {
    let app = spawn_catalog().await;
    app.admin().await;
    let before = scrape(&app).await;

    app.article("Lamp", 1).await;
    app.article("Chair", 1).await;

    let after = scrape(&app).await;
    let lookups = |result: &str| {
        let parts = [
            "token_cache_lookups_total{",
            &format!("result=\"{result}\""),
        ];
        sample(&after, &parts) - sample(&before, &parts)
    };
    assert!(lookups("miss") + lookups("hit") >= 2.0);
    assert!(lookups("hit") >= 1.0, "the second write reuses the answer");
}

#[tokio::test]
async fn consumed_and_published_messages_are_counted_by_queue_type_and_outcome() {
    let app = spawn_catalog().await;
    let id = app.article("Lamp", 1).await;
    let replies = app.messages(queue::CART_ARTICLE_VALID);
    let dead = app.messages("catalog.article-valid.dlq");
    let reply_to = Some((exchange::CART, kind::ARTICLE_VALID));
    let handled = [
        "messages_consumed_total{",
        "queue=\"catalog.article-valid\"",
        "type=\"article-valid\"",
        "outcome=\"handled\"",
    ];
    let dead_lettered = [
        "messages_consumed_total{",
        "queue=\"catalog.article-valid\"",
        "outcome=\"dead_lettered\"",
    ];
    let replied = [
        "messages_published_total{",
        "exchange=\"cart\"",
        "type=\"article-valid\"",
        "result=\"confirmed\"",
    ];
    let before = scrape(&app).await;

    let question = json!({"referenceId": "c", "articleId": id});
    app.publish(exchange::CATALOG, kind::ARTICLE_VALID, question, reply_to)
        .await;
    let malformed = json!({"article": 1});
    app.publish(exchange::CATALOG, kind::ARTICLE_VALID, malformed, reply_to)
        .await;
    replies.next().await;
    dead.next().await;

    let counted = |parts: &[&str], after: &HashMap<String, f64>| {
        sample(after, parts) - sample(&before, parts)
    };
    let all_counted = testkit::eventually(Duration::from_secs(10), || async {
        let after = scrape(&app).await;
        counted(&handled, &after) >= 1.0
            && counted(&dead_lettered, &after) >= 1.0
            && counted(&replied, &after) >= 1.0
    })
    .await;
    assert!(all_counted, "{:?}", scrape(&app).await);
}
