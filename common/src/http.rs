//! The HTTP conventions every service shares (CONTRACT section 2), as warp filters and helpers.

use std::convert::Infallible;
use std::future::Future;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, info_span};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::ApiError;
use crate::openapi::Document;

pub const CORRELATION_ID: &str = "correlation_id";
/// Default limit for JSON request bodies; services with larger bodies (images) pass their own.
pub const DEFAULT_BODY_LIMIT: u64 = 64 * 1024;
const ALLOW_METHODS: &str = "GET, PUT, POST, DELETE, OPTIONS";
const ALLOW_HEADERS: &str =
    "Origin, Authorization, Content-Type, Size, correlation_id, If-Match, Idempotency-Key";
const MAX_CORRELATION_ID_LEN: usize = 128;

/// A header's text; absent and unreadable (non-visible ASCII) values are both `None`.
pub fn optional_header(
    name: &'static str,
) -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>(name)
        .or(warp::any().map(|| None))
        .unify()
}

/// The request's `correlation_id` header, or a new one when it is absent or unusable.
pub fn correlation_id() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    optional_header(CORRELATION_ID).map(|id: Option<String>| {
        id.filter(|id| !id.is_empty() && id.len() <= MAX_CORRELATION_ID_LEN)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    })
}

/// The body parsed as JSON `T`, read up to `limit` bytes whether or not it declares its length:
/// a larger body is refused with 413 and a malformed one with 400 `Invalid JSON: ...`.
pub fn json_body<T: DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    body_bytes(limit).and_then(|bytes: bytes::Bytes| async move {
        serde_json::from_slice::<T>(&bytes)
            .map_err(|error| warp::reject::custom(ApiError::invalid_json(error)))
    })
}

/// The raw body, refused with 413 past `limit` bytes (declared or streamed).
pub fn body_bytes(limit: u64) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |declared: Option<u64>| async move {
            match declared {
                Some(length) if length > limit => {
                    Err(warp::reject::custom(ApiError::PayloadTooLarge))
                }
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |body| read_limited(body, limit))
}

async fn read_limited<S, B>(body: S, limit: u64) -> Result<bytes::Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|error| warp::reject::custom(unreadable(&error)))?;
        if (collected.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(ApiError::PayloadTooLarge));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let read = part.len();
            chunk.advance(read);
        }
    }
    Ok(collected.freeze())
}

/// The answer to a body that could not be read: 408 when it did not arrive in time (the server's
/// body timeout), else 400.
fn unreadable(error: &warp::Error) -> ApiError {
    let timed_out = std::iter::successors(Some(error as &dyn std::error::Error), |error| {
        error.source()
    })
    .any(|error| error.is::<crate::server::BodyTimedOut>());
    if timed_out {
        ApiError::RequestTimeout
    } else {
        ApiError::BadRequest(format!("Cannot read body: {error}"))
    }
}

/// A path segment with its `%XX` sequences decoded, since warp leaves them encoded. A `%` that is
/// not followed by two hex digits stays as it is; [`is_percent_encoded`] tells whether there is one.
pub fn percent_decode(segment: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte == b'%').then(|| escaped(tail)).flatten() {
            Some(decoded) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    bytes
}

/// True when every `%` of `segment` starts a `%XX` sequence.
pub fn is_percent_encoded(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'%')
        .all(|(at, _)| escaped(&bytes[at + 1..]).is_some())
}

/// The byte that the two hex digits starting `tail` stand for.
fn escaped(tail: &[u8]) -> Option<u8> {
    let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// Runs a handler inside a span carrying the correlation id and turns its result into the JSON
/// reply, echoing the correlation id.
pub async fn respond<T, F>(correlation_id: String, handler: F) -> Response
where
    T: Serialize,
    F: Future<Output = Result<T, ApiError>>,
{
    let json = async { handler.await.map(|body| warp::reply::json(&body)) };
    respond_with(correlation_id, json).await
}

/// [`respond`] for handlers that build their own reply (bytes, extra headers, 304).
pub async fn respond_with<R, F>(correlation_id: String, handler: F) -> Response
where
    R: Reply,
    F: Future<Output = Result<R, ApiError>>,
{
    let span = info_span!("request", correlation_id = %correlation_id);
    let started = std::time::Instant::now();
    let mut response = match handler.instrument(span.clone()).await {
        Ok(reply) => reply.into_response(),
        Err(error) => span.in_scope(|| error.into_response()),
    };
    // What bench/stages.py follows a checkout by (RUST_LOG=common::http=debug).
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

/// A JSON body already serialized (a read model's bytes), with the headers `warp::reply::json`
/// gives.
pub fn json_bytes(body: bytes::Bytes) -> warp::http::Response<bytes::Bytes> {
    let mut response = warp::http::Response::new(body);
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /health`: 200 `{"status":"up","dependencies":{..}}` when every check passes, else 503 with
/// the failing dependency named.
pub fn health<F, Fut>(checks: F) -> BoxedFilter<(Response,)>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Vec<(&'static str, bool)>> + Send,
{
    warp::path!("health")
        .and(warp::get())
        .then(move || {
            let checks = checks.clone();
            async move { health_reply(checks().await) }
        })
        .boxed()
}

fn health_reply(results: Vec<(&'static str, bool)>) -> Response {
    let dependencies: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|(name, up)| (name.to_string(), (if *up { "up" } else { "down" }).into()))
        .collect();
    let down: Vec<&str> = results
        .iter()
        .filter(|(_, up)| !up)
        .map(|(n, _)| *n)
        .collect();
    if down.is_empty() {
        let body = serde_json::json!({"status": "up", "dependencies": dependencies});
        warp::reply::json(&body).into_response()
    } else {
        let body = serde_json::json!({"status": "down", "error": "Service unavailable",
                                      "down": down, "dependencies": dependencies});
        warp::reply::with_status(warp::reply::json(&body), StatusCode::SERVICE_UNAVAILABLE)
            .into_response()
    }
}

/// A CORS preflight on any path: `OPTIONS` with `Access-Control-Request-Method`. Any other
/// request passes as "not found", the one rejection warp ranks below a route's own 404 or 405.
fn preflight() -> BoxedFilter<(Response,)> {
    warp::method()
        .and(optional_header("access-control-request-method"))
        .and_then(
            |method: warp::http::Method, requested: Option<String>| async move {
                if method == warp::http::Method::OPTIONS && requested.is_some() {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            },
        )
        .untuple_one()
        .map(|| {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                "access-control-allow-headers",
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert("access-control-max-age", HeaderValue::from_static("86400"));
            response
        })
        .boxed()
}

/// Turns every rejection into a JSON error: ours as they are, warp's 404/405/413 and body errors
/// by their meaning, anything unknown as a 500 that is logged.
async fn json_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject::{InvalidHeader, InvalidQuery, MethodNotAllowed, PayloadTooLarge};
    let error = if let Some(error) = rejection.find::<ApiError>() {
        error.clone()
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge
    } else if rejection.find::<InvalidQuery>().is_some() {
        ApiError::BadRequest("Invalid query string".into())
    } else if let Some(error) = rejection.find::<InvalidHeader>() {
        ApiError::BadRequest(error.to_string())
    } else if let Some(error) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::invalid_json(error)
    } else {
        ApiError::internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error.into_response())
}

/// The whole application around a service's routes and their OpenAPI document: preflight first,
/// the document and Swagger UI (`common::openapi`) and `/metrics` beside the routes, JSON errors
/// for every rejection, CORS on every response, a correlation id on every response (the
/// handler's, else the client's, else a new one), and every answer counted under its route
/// template (`common::metrics`).
pub fn app(routes: BoxedFilter<(Response,)>, document: &Document) -> BoxedFilter<(Response,)> {
    let served = routes
        .or(crate::openapi::routes(document))
        .unify()
        .or(crate::metrics::route())
        .unify();
    let handled = preflight()
        .or(served)
        .unify()
        .recover(json_rejection)
        .unify();
    let app = correlation_id()
        .and(handled)
        .map(|correlation_id: String, mut response: Response| {
            let headers = response.headers_mut();
            headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
            if !headers.contains_key(CORRELATION_ID)
                && let Ok(value) = HeaderValue::from_str(&correlation_id)
            {
                headers.insert(CORRELATION_ID, value);
            }
            response
        })
        .boxed();
    crate::metrics::recorded(app, crate::metrics::Routes::of(document))
}
