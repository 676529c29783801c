//! The HTTP conventions of CONTRACT section 2, through the app wrapper every service uses.

use common::ApiError;
use common::http::{DEFAULT_BODY_LIMIT, app, correlation_id, health, json_body, respond};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Debug, Deserialize)]
struct Item {
    name: String,
}

/// A small service: `POST /items` echoes a JSON body, `GET /items/broken` fails internally.
fn service() -> BoxedFilter<(Response,)> {
    let create = warp::path!("items")
        .and(warp::post())
        .and(correlation_id())
        .and(json_body::<Item>(DEFAULT_BODY_LIMIT))
        .then(|cid, item: Item| respond(cid, async move { Ok(json!({"name": item.name})) }));
    let broken = warp::path!("items" / "broken")
        .and(warp::get())
        .and(correlation_id())
        .then(|cid| respond::<Value, _>(cid, async { Err(ApiError::internal("disk on fire")) }));
    let health = health(|| async { vec![("mongodb", true), ("rabbitmq", false)] });
    app(
        create.or(broken).unify().or(health).unify().boxed(),
        &common::openapi::Document::default(),
    )
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn unknown_routes_get_a_json_404_with_cors() {
    let response = warp::test::request()
        .path("/nowhere")
        .reply(&service())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(response.body()), json!({"error": "Not found"}));
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn a_wrong_method_gets_a_json_405() {
    let response = warp::test::request()
        .method("DELETE")
        .path("/items")
        .reply(&service())
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        json_of(response.body()),
        json!({"error": "Method not allowed"})
    );
}

#[tokio::test]
async fn a_preflight_on_any_path_is_answered() {
    let response = warp::test::request()
        .method("OPTIONS")
        .path("/anything/at/all")
        .header("origin", "http://ui.example")
        .header("access-control-request-method", "POST")
        .reply(&service())
        .await;
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(
        headers["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, OPTIONS"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "Origin, Authorization, Content-Type, Size, correlation_id, If-Match, Idempotency-Key"
    );
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400_never_500() {
    for body in [r#"{"name": "#, r#"{"name": 42}"#, "", "[]"] {
        let response = warp::test::request()
            .method("POST")
            .path("/items")
            .body(body)
            .reply(&service())
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let error = json_of(response.body())["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.starts_with("Invalid JSON: "), "{error}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let name = "x".repeat(DEFAULT_BODY_LIMIT as usize);
    let response = warp::test::request()
        .method("POST")
        .path("/items")
        .json(&json!({ "name": name }))
        .reply(&service())
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        json_of(response.body()),
        json!({"error": "Payload too large"})
    );
}

#[tokio::test]
async fn the_correlation_id_is_echoed_or_generated() {
    let response = warp::test::request()
        .method("POST")
        .path("/items")
        .header("correlation_id", "abc-123")
        .json(&json!({"name": "lamp"}))
        .reply(&service())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["correlation_id"], "abc-123");

    let response = warp::test::request()
        .method("POST")
        .path("/items")
        .json(&json!({"name": "lamp"}))
        .reply(&service())
        .await;
    let generated = response.headers()["correlation_id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    let response = warp::test::request()
        .path("/nowhere")
        .header("correlation_id", "on-error")
        .reply(&service())
        .await;
    assert_eq!(response.headers()["correlation_id"], "on-error");
}

#[tokio::test]
async fn internal_errors_hide_their_detail() {
    let response = warp::test::request()
        .path("/items/broken")
        .reply(&service())
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_of(response.body()),
        json!({"error": "Internal server error"})
    );
}

#[tokio::test]
async fn health_is_503_and_names_the_failing_dependency() {
    let response = warp::test::request()
        .path("/health")
        .reply(&service())
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_of(response.body());
    assert_eq!(body["status"], "down");
    assert_eq!(body["down"], json!(["rabbitmq"]));
    assert_eq!(body["dependencies"]["mongodb"], "up");
}
