//! The OpenAPI 3.1 document of a service, derived from its handlers (`#[utoipa::path]`) and types
//! (`ToSchema`) so that it cannot drift from them, served at `/openapi.json` with Swagger UI at
//! `/docs`. Swagger UI's assets are compiled into the binary: nothing is downloaded at build or
//! run time. What every service answers alike (error bodies, the bearer scheme, `/health`) is
//! described here once.

use std::sync::Arc;

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContactBuilder, InfoBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::Config;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::FieldError;

pub use utoipa::openapi::OpenApi as Document;

/// The name of the bearer scheme in every document: `security(("bearer" = []))` on a path.
pub const BEARER: &str = "bearer";

/// `{"error": "<text>"}`: every refusal that is not about one field.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `{"messages": [{"path", "message"}]}`: every field that was refused, at once.
#[derive(Serialize, ToSchema)]
pub struct FieldErrors {
    pub messages: Vec<FieldError>,
}

/// A 400 names the fields it refused when it is about fields, else it says what was wrong.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BadRequestBody {
    Fields(FieldErrors),
    Error(ErrorBody),
}

pub use responses::*;

/// The responses every service gives alike, referenced from each path's `responses(...)`. They
/// describe what `ApiError` sends; nothing builds them.
#[allow(dead_code)]
mod responses {
    use utoipa::ToResponse;

    use super::{BadRequestBody, ErrorBody};

    /// The body is not what the endpoint takes: malformed JSON (`{"error": "Invalid JSON: ..."}`), or
    /// fields that break their rules (`{"messages": [{"path", "message"}]}`, every one at once).
    #[derive(ToResponse)]
    #[response(example = json!({"messages": [{"path": "price", "message": "must be a number"}]}))]
    pub struct BadRequest(#[to_schema] BadRequestBody);

    /// No bearer token, or a malformed, unknown or revoked one.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "Unauthorized"}))]
    pub struct Unauthorized(#[to_schema] ErrorBody);

    /// A valid token without the permission the endpoint needs.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "Forbidden"}))]
    pub struct Forbidden(#[to_schema] ErrorBody);

    /// No such resource, or one that belongs to another user.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "Not found"}))]
    pub struct NotFound(#[to_schema] ErrorBody);

    /// The body is larger than the endpoint takes.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "Payload too large"}))]
    pub struct PayloadTooLarge(#[to_schema] ErrorBody);

    /// The caller has as many such requests in flight as one caller may: try again after
    /// `Retry-After` seconds.
    #[derive(ToResponse)]
    #[response(
        example = json!({"error": "Too many requests"}),
        headers(("Retry-After" = u64, description = "seconds to wait"))
    )]
    pub struct TooManyRequests(#[to_schema] ErrorBody);

    /// A dependency (store, broker, auth) is down or failing over, or the service sheds load: try
    /// again after `Retry-After` seconds.
    #[derive(ToResponse)]
    #[response(
        example = json!({"error": "Service unavailable"}),
        headers(("Retry-After" = u64, description = "seconds to wait"))
    )]
    pub struct Unavailable(#[to_schema] ErrorBody);
}

/// `{"status": "up" | "down", "dependencies": {"<name>": "up" | "down"}}`; when down, also the
/// `error` and the `down` dependencies.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "up")]
    pub status: String,
    #[schema(value_type = Object, example = json!({"mongodb": "up", "rabbitmq": "up"}))]
    pub dependencies: serde_json::Value,
    pub error: Option<String>,
    pub down: Option<Vec<String>>,
}

/// Whether the service and each of its dependencies answer.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Every dependency answers", body = Health),
        (status = 503, description = "A dependency is down", body = Health),
    )
)]
#[allow(dead_code)] // documents common::http::health, which serves it
fn health() {}

/// Prometheus metrics of the process.
///
/// HTTP requests by route template, method and status, with latency histograms; messages
/// consumed and published by queue or exchange, type and outcome; token cache lookups and
/// evictions. The README's "Observability" lists them.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus's text format, version 0.0.4", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
    )
)]
#[allow(dead_code)] // documents common::metrics::route, which serves it
fn metrics() {}

#[derive(OpenApi)]
#[openapi(
    paths(health, metrics),
    components(
        schemas(ErrorBody, FieldErrors, FieldError, BadRequestBody, Health),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            PayloadTooLarge,
            TooManyRequests,
            Unavailable
        )
    ),
    modifiers(&BearerScheme)
)]
struct Shared;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, document: &mut Document) {
        let scheme = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "The token from auth's `POST /users/signin` or `/users/signup`, as \
                 `Authorization: Bearer <token>`; revoked at signout.",
            ))
            .build();
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// A service's document completed with what every service shares: its title and description,
/// the error bodies and responses, the bearer scheme and `/health`.
pub fn document(service: Document, title: &str, description: &str) -> Document {
    let mut document = Shared::openapi();
    document.merge(service);
    document.info = InfoBuilder::new()
        .title(title)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(description))
        .license(Some(
            utoipa::openapi::LicenseBuilder::new()
                .name("MIT")
                .identifier(Some("MIT"))
                .build(),
        ))
        .contact(Some(
            ContactBuilder::new()
                .name(Some("RabbitMQ e-commerce microservices"))
                .build(),
        ))
        .build();
    document
}

/// `GET /openapi.json` (the document), `GET /docs` (Swagger UI, redirected to `/docs/`) and the
/// UI's files under `/docs/`, `/docs/index.html` among them.
pub fn routes(document: &Document) -> BoxedFilter<(Response,)> {
    let json = bytes::Bytes::from(document.to_json().expect("an OpenAPI document serializes"));
    let spec = warp::path!("openapi.json")
        .and(warp::get())
        .map(move || crate::http::json_bytes(json.clone()).into_response());

    let config = Arc::new(Config::new(["/openapi.json"]).try_it_out_enabled(true));
    let ui = warp::path("docs")
        .and(warp::get())
        .and(warp::path::full())
        .and(warp::path::tail())
        .and_then(move |full: warp::path::FullPath, tail: warp::path::Tail| {
            let config = config.clone();
            async move {
                // The UI's page links its files relatively, so it must be read from `/docs/`.
                if full.as_str() == "/docs" {
                    let to = warp::http::Uri::from_static("/docs/");
                    return Ok(warp::redirect::see_other(to).into_response());
                }
                ui_file(tail.as_str(), config)
            }
        });
    spec.or(ui).unify().boxed()
}

fn ui_file(path: &str, config: Arc<Config<'static>>) -> Result<Response, Rejection> {
    match utoipa_swagger_ui::serve(path, config) {
        Ok(Some(file)) => {
            let mut response = Response::new(file.bytes.into_owned().into());
            let headers = response.headers_mut();
            if let Ok(content_type) = HeaderValue::from_str(&file.content_type) {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            if file.gzpipped {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Ok(response)
        }
        Ok(None) => Err(warp::reject::not_found()),
        Err(error) => Ok(crate::ApiError::internal(format!("Swagger UI: {error}")).into_response()),
    }
}
