//! The OpenAPI document and Swagger UI every service serves, through the shared application
//! filter (CORS, JSON errors) as a service serves them.

use common::openapi;
use serde_json::Value;
use utoipa::OpenApi;
use warp::http::StatusCode;
use warp::{Filter, Reply};

/// A one-path service document, completed as every service's is.
fn document() -> openapi::Document {
    /// Says hello.
    #[utoipa::path(get, path = "/hello", responses((status = 200, description = "Hello")))]
    #[allow(dead_code)]
    fn hello() {}

    #[derive(OpenApi)]
    #[openapi(paths(hello))]
    struct Hello;
    openapi::document(Hello::openapi(), "hello", "A service that says hello.")
}

fn app() -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let hello = warp::path!("hello").map(|| warp::reply::json(&"hello").into_response());
    common::http::app(hello.boxed(), &document())
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_shared_parts() {
    let response = warp::test::request()
        .path("/openapi.json")
        .reply(&app())
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let spec: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["title"], "hello");
    assert!(spec["paths"]["/hello"]["get"].is_object(), "{spec}");
    assert!(spec["paths"]["/health"]["get"].is_object(), "{spec}");
    assert!(spec["paths"]["/metrics"]["get"].is_object(), "{spec}");
    let components = &spec["components"];
    assert_eq!(components["securitySchemes"]["bearer"]["scheme"], "bearer");
    for response in [
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Unavailable",
    ] {
        assert!(components["responses"][response].is_object(), "{response}");
    }
    assert!(components["schemas"]["FieldErrors"].is_object());
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_at_docs() {
    let redirect = warp::test::request().path("/docs").reply(&app()).await;
    assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirect.headers()["location"], "/docs/");

    for path in ["/docs/", "/docs/index.html"] {
        let page = warp::test::request().path(path).reply(&app()).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = String::from_utf8_lossy(page.body());
        assert!(html.contains("swagger-ui"), "{html}");
    }
    let initializer = warp::test::request()
        .path("/docs/swagger-initializer.js")
        .reply(&app())
        .await;
    assert_eq!(initializer.status(), StatusCode::OK);
    assert!(String::from_utf8_lossy(initializer.body()).contains("\"url\": \"/openapi.json\""));
    let bundle = warp::test::request()
        .path("/docs/swagger-ui-bundle.js")
        .reply(&app())
        .await;
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.body().len() > 100_000, "the whole UI, not a loader");
}

#[tokio::test]
async fn an_unknown_docs_file_is_a_json_404() {
    let response = warp::test::request()
        .path("/docs/nothing-here.js")
        .reply(&app())
        .await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.body(), r#"{"error":"Not found"}"#);
}
