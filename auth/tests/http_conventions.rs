//! The HTTP conventions of CONTRACT section 2, as auth applies them.

mod support;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;
use support::{TestAuth, spawn_auth};

/// `POST /users/signup` with `body` sent as is.
fn raw_signup(app: &TestAuth, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    app.http
        .post(app.url("/users/signup"))
        .header("content-type", "application/json")
        .body(body)
}

/// The comma-separated entries of a header, lowercased.
fn entries(value: Option<&str>) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|entry| entry.trim().to_lowercase())
        .filter(|entry| !entry.is_empty())
        .collect()
}

#[tokio::test]
async fn health_reports_up() {
    let app = spawn_auth().await;

    let reply = app.get("/health", None).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "up", "{reply:?}");
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_saying_invalid_json() {
    let app = spawn_auth().await;

    let reply = app.send(raw_signup(&app, "{\"name\": ")).await;

    assert_eq!(reply.status, 400, "{reply:?}");
    let error = reply.body["error"].as_str().expect("an error text");
    assert!(error.starts_with("Invalid JSON"), "{reply:?}");
}

#[tokio::test]
async fn a_body_over_64_kib_is_too_large() {
    let app = spawn_auth().await;
    let name = "n".repeat(64 * 1024);
    let body = json!({"name": name, "login": "alice01", "password": "long enough"});

    let reply = app.send(raw_signup(&app, body.to_string())).await;

    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.body["error"].is_string(), "{reply:?}");
}

#[tokio::test]
async fn an_unknown_route_is_a_json_not_found() {
    let app = spawn_auth().await;

    for (method, path) in [
        (Method::GET, "/nowhere"),
        (Method::POST, "/nowhere"),
        (Method::GET, "/users"),
        (Method::GET, "/users/signup/extra"),
        (Method::POST, "/users/0123456789abcdef01234567/promote"),
    ] {
        let reply = app
            .send(app.http.request(method.clone(), app.url(path)))
            .await;
        let answer = (reply.status.as_u16(), reply.body);
        assert_eq!(
            answer,
            (404, json!({"error": "Not found"})),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_a_json_method_not_allowed() {
    let app = spawn_auth().await;

    for (method, path) in [
        (Method::GET, "/users/signup"),
        (Method::GET, "/users/signin"),
        (Method::DELETE, "/users/current"),
        (Method::PUT, "/users/all"),
    ] {
        let reply = app.send(app.http.request(method, app.url(path))).await;
        assert_eq!(reply.status, 405, "{path}: {reply:?}");
        assert!(reply.body["error"].is_string(), "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn every_response_allows_any_origin_errors_included() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    let replies = [
        app.get("/health", None).await,
        app.current(&token).await,
        app.get("/users/current", None).await,
        app.get("/users/all", Some(&token)).await,
        app.get("/nowhere", None).await,
        app.get("/users/signup", None).await,
        app.send(raw_signup(&app, "not json")).await,
        app.post("/users/signup", None, &json!({})).await,
        app.signin("alice01", "wrong password").await,
    ];

    for reply in replies {
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn a_preflight_allows_the_contract_methods_and_headers() {
    let app = spawn_auth().await;

    for path in ["/users/signup", "/users/current", "/anything"] {
        let request = app
            .http
            .request(Method::OPTIONS, app.url(path))
            .header("origin", "http://shop.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            );
        let reply = app.send(request).await;

        assert!(reply.status.is_success(), "{path}: {reply:?}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            entries(reply.header("access-control-allow-methods")),
            entries(Some("GET, PUT, POST, DELETE, OPTIONS"))
        );
        assert_eq!(
            entries(reply.header("access-control-allow-headers")),
            entries(Some(
                "Origin, Authorization, Content-Type, Size, correlation_id, If-Match, Idempotency-Key"
            ))
        );
    }
}

#[tokio::test]
async fn the_correlation_id_is_echoed_on_successes_and_errors() {
    let app = spawn_auth().await;
    let token = app.signup("alice01").await;

    let requests = [
        app.http.get(app.url("/health")),
        app.http
            .get(app.url("/users/current"))
            .header("authorization", format!("bearer {token}")),
        app.http.get(app.url("/users/current")),
        app.http.get(app.url("/nowhere")),
        raw_signup(&app, "not json"),
    ];

    for request in requests {
        let reply = app.send(request.header("correlation_id", "test-42")).await;
        assert_eq!(reply.header("correlation_id"), Some("test-42"), "{reply:?}");
    }
}

#[tokio::test]
async fn a_correlation_id_is_generated_when_absent() {
    let app = spawn_auth().await;
    let signup = json!({"name": "Alice", "login": "alice01", "password": "long enough"});

    let replies = [
        app.post("/users/signup", None, &signup).await,
        app.post("/users/signup", None, &json!({})).await,
        app.signin("nobody01", "wrong password").await,
    ];

    let ids: BTreeSet<&str> = replies
        .iter()
        .map(|reply| reply.header("correlation_id").unwrap_or_default())
        .filter(|id| !id.is_empty())
        .collect();
    assert_eq!(
        ids.len(),
        replies.len(),
        "one new id per reply: {replies:?}"
    );
}
