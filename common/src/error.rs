//! The one error type of every REST handler. Each variant documents the status and JSON body it
//! becomes (CONTRACT section 2); internal details are logged, never sent to clients.

use serde::Serialize;
use serde_json::json;
use tracing::{debug, error, warn};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// What a 503 or a 429 tells clients to wait before trying again: about one server selection, and short
/// next to a replica-set election (about 10 s), so a client retrying on it meets the new primary
/// within a few tries.
pub const RETRY_AFTER_SECS: u64 = 2;

/// One entry of a `{"messages": [...]}` body; `path` is the JSON field name the client sent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400 `{"messages": [{"path", "message"}]}`
    #[error("validation failed: {0:?}")]
    Validation(Vec<FieldError>),
    /// 400 `{"error": <text>}`, e.g. `Invalid JSON: ...`
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401 `{"error": "Unauthorized"}`: no, malformed, unknown or revoked token.
    #[error("unauthorized")]
    Unauthorized,
    /// 403 `{"error": "Forbidden"}`: valid token, missing permission.
    #[error("forbidden")]
    Forbidden,
    /// 404 `{"error": "Not found"}`, also for objects owned by another user.
    #[error("not found")]
    NotFound,
    /// 405 `{"error": "Method not allowed"}`
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `{"error": "Already exist"}`
    #[error("already exists")]
    Conflict,
    /// 409 `{"messages": [{"path", "message"}]}`: a unique field already in use, e.g. a login.
    #[error("duplicate: {0:?}")]
    Duplicate(FieldError),
    /// 408 `{"error": "Request timeout"}`: the body did not arrive within the server's body
    /// timeout (`common::server::HttpLimits`); the connection is closed after the answer.
    #[error("request body timed out")]
    RequestTimeout,
    /// 413 `{"error": "Payload too large"}`
    #[error("payload too large")]
    PayloadTooLarge,
    /// 429 `{"error": "Too many requests"}` with `Retry-After`: the caller has as many requests of
    /// this kind in flight as one caller may; names the kind in the logs.
    #[error("too many {0} in flight for one caller")]
    TooManyRequests(&'static str),
    /// Another refusal the contract words itself, e.g. 401 `Invalid login or password`.
    #[error("{1}")]
    Refused(StatusCode, &'static str),
    /// 503 `{"error": "Service unavailable"}` with `Retry-After`; names the dependency in the
    /// logs. For a dependency that is down or momentarily unable (a failover): the request may
    /// succeed when tried again.
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// 503 `{"error": "Service unavailable"}` with `Retry-After`, like `Unavailable`, but for a
    /// bound of this instance (a full queue) rather than a dependency: shedding load is expected
    /// under a flood, so it is logged at debug level only. Names the bound in the logs.
    #[error("{0} is full")]
    Busy(&'static str),
    /// 500 `{"error": "Internal server error"}`; the detail goes to the logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid_json(error: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("Invalid JSON: {error}"))
    }

    pub fn field(path: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(path, message)])
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::Duplicate(_) => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Refused(status, _) => *status,
            Self::Unavailable(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> serde_json::Value {
        let text = match self {
            Self::Validation(messages) => return json!({ "messages": messages }),
            Self::Duplicate(message) => return json!({ "messages": [message] }),
            Self::BadRequest(text) => text.as_str(),
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Already exist",
            Self::RequestTimeout => "Request timeout",
            Self::PayloadTooLarge => "Payload too large",
            Self::TooManyRequests(_) => "Too many requests",
            Self::Refused(_, text) => text,
            Self::Unavailable(_) | Self::Busy(_) => "Service unavailable",
            Self::Internal(_) => "Internal server error",
        };
        json!({ "error": text })
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => error!(detail, "internal error"),
            Self::Unavailable(dependency) => warn!(dependency, "dependency unavailable"),
            Self::Busy(bound) => debug!(bound, "request shed: full"),
            Self::TooManyRequests(kind) => debug!(kind, "request refused: too many in flight"),
            _ => {}
        }
        let response = warp::reply::with_status(warp::reply::json(&self.body()), self.status());
        let retry = matches!(
            self,
            Self::Unavailable(_) | Self::Busy(_) | Self::TooManyRequests(_)
        );
        if retry {
            let retry_after = warp::reply::with_header(response, "Retry-After", RETRY_AFTER_SECS);
            return retry_after.into_response();
        }
        response.into_response()
    }
}

/// Lets filters (token guard, JSON body) refuse a request with an `ApiError`. warp ranks custom
/// rejections above its own 404/405, so a matched route's error is the one the client sees.
impl warp::reject::Reject for ApiError {}

impl From<mongodb::error::Error> for ApiError {
    fn from(error: mongodb::error::Error) -> Self {
        if crate::mongo::is_unavailable(&error) {
            warn!(%error, "MongoDB unavailable");
            Self::Unavailable("mongodb")
        } else {
            Self::internal(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response.headers().get("Retry-After");
        assert_eq!(
            retry_after.is_some(),
            status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS,
            "Retry-After on 503 and 429 only"
        );
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn validation_errors_use_the_messages_shape() {
        let (status, body) = body_of(ApiError::field("login", "already exists")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"messages": [{"path": "login", "message": "already exists"}]})
        );
    }

    #[tokio::test]
    async fn internal_details_never_reach_the_client() {
        let (status, body) = body_of(ApiError::internal("secret stack trace")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"error": "Internal server error"}));
    }

    #[tokio::test]
    async fn conflict_and_unavailable_use_the_contract_texts() {
        assert_eq!(
            body_of(ApiError::Conflict).await.1,
            json!({"error": "Already exist"})
        );
        let response = ApiError::Unavailable("mongodb").into_response();
        assert_eq!(response.headers()["Retry-After"], "2");
        let (status, body) = body_of(ApiError::Unavailable("mongodb")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, json!({"error": "Service unavailable"}));
    }

    #[tokio::test]
    async fn shed_and_refused_requests_are_told_when_to_come_back() {
        let (status, body) = body_of(ApiError::Busy("upload queue")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, json!({"error": "Service unavailable"}));
        let (status, body) = body_of(ApiError::TooManyRequests("validations")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body, json!({"error": "Too many requests"}));
        let (status, body) = body_of(ApiError::RequestTimeout).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(body, json!({"error": "Request timeout"}));
    }
}
