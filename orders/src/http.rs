//! Routes and handlers (CONTRACT section 8): parse, call the service, build the reply.

use std::sync::Arc;

use common::http::{DEFAULT_BODY_LIMIT, health, json_body, json_bytes, respond, respond_with};
use common::{ApiError, Caller, FieldError, TokenGuard, openapi};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::order::{Method, Rejection, Status};
use crate::service::{Orders, OrdersError, PaymentRequest, Viewer};
use crate::view::{OrderJson, OrderSummary};

pub fn routes(orders: Arc<Orders>, guard: &TokenGuard) -> BoxedFilter<(Response,)> {
    let state = {
        let orders = orders.clone();
        warp::any().map(move || orders.clone())
    };

    let list = warp::path!("orders")
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(list_orders);

    let detail = warp::path!("orders" / String)
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(get_order);

    let rebuild = warp::path!("orders" / String / "update")
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(rebuild_order);

    let payment = warp::path!("orders" / String / "payment")
        .and(warp::post())
        .and(guard.authenticated())
        .and(state.clone())
        .and(warp::header::headers_cloned())
        .and(json_body::<Value>(DEFAULT_BODY_LIMIT))
        .then(pay);

    let batch = warp::path!("orders_batch" / String)
        .and(warp::get())
        .and(guard.admin())
        .and(state)
        .then(run_batch);

    let health = health(move || {
        let orders = orders.clone();
        async move { orders.health().await }
    });

    list.boxed()
        .or(detail.boxed())
        .unify()
        .or(rebuild.boxed())
        .unify()
        .or(payment.boxed())
        .unify()
        .or(batch.boxed())
        .unify()
        .or(health)
        .unify()
        .boxed()
}

/// Orders' OpenAPI document, from the handlers below.
pub fn document() -> openapi::Document {
    #[derive(OpenApi)]
    #[openapi(
        paths(list_orders, get_order, rebuild_order, pay, run_batch),
        components(schemas(OrderJson, OrderSummary, PaymentBody, Status, Method, Processed)),
        tags(
            (name = "orders", description = "The caller's orders and their payments"),
            (name = "admin", description = "Batches an admin runs now"),
        )
    )]
    struct OrdersApi;
    openapi::document(
        OrdersApi::openapi(),
        "orders",
        "Event-sourced orders: events are the truth, the Order projections are rebuilt from \
         them. Orders are placed by cart's `place_order` message, validated by catalog's \
         `article-data` answers, and paid here.",
    )
}

/// The path parameter naming an order.
const ORDER_ID: &str = "The order's `id` (a UUID)";

/// The body of a payment, as the document shows it; `payment_fields` reads it, every error at
/// once.
#[derive(ToSchema)]
#[schema(example = json!({"method": "CREDIT", "amount": 25.5}))]
#[allow(dead_code)] // a schema only
struct PaymentBody {
    method: Method,
    /// Greater than 0, in units with at most two decimals.
    #[schema(exclusive_minimum = 0)]
    amount: f64,
    /// The order of the path, when the body carries it back (any other is refused).
    #[schema(rename = "orderId")]
    order_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Processed {
    /// How many orders the batch examined.
    processed: usize,
}

/// The caller's orders, newest first.
///
/// Served from the read model in Redis (`read_models.rs`).
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's orders", body = Vec<OrderSummary>),
        (status = 401, response = openapi::Unauthorized),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn list_orders(caller: Caller, orders: Arc<Orders>) -> Response {
    respond_with(caller.correlation_id, async move {
        let list = orders.list_json(&caller.user.id).await;
        Ok(json_bytes(list.map_err(api_error)?))
    })
    .await
}

/// One order of the caller's (any order, for an admin). Served from the read model in Redis.
#[utoipa::path(
    get,
    path = "/orders/{orderId}",
    tag = "orders",
    params(("orderId" = String, Path, description = ORDER_ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderJson),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn get_order(order_id: String, caller: Caller, orders: Arc<Orders>) -> Response {
    respond_with(caller.correlation_id.clone(), async move {
        let order_id = order_in_path(&order_id)?;
        let order = orders.order_json(order_id, &viewer(&caller)).await;
        Ok(json_bytes(order.map_err(api_error)?))
    })
    .await
}

/// The order with its projection rebuilt from its events.
#[utoipa::path(
    get,
    path = "/orders/{orderId}/update",
    tag = "orders",
    params(("orderId" = String, Path, description = ORDER_ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order, rebuilt", body = OrderJson),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn rebuild_order(order_id: String, caller: Caller, orders: Arc<Orders>) -> Response {
    respond(caller.correlation_id.clone(), async move {
        let order_id = order_in_path(&order_id)?;
        let order = orders.rebuild(order_id, &viewer(&caller)).await;
        Ok(OrderJson::from(&order.map_err(api_error)?))
    })
    .await
}

/// Pays (part of) a validated order of the caller's.
///
/// With an `Idempotency-Key`, a retry of the same payment is answered as the first was.
#[utoipa::path(
    post,
    path = "/orders/{orderId}/payment",
    tag = "orders",
    params(
        ("orderId" = String, Path, description = ORDER_ID),
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 200 visible ASCII characters naming this payment"),
    ),
    request_body = PaymentBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order with the payment", body = OrderJson),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 409, description = "The `Idempotency-Key` named another payment",
            body = openapi::ErrorBody,
            example = json!({"error": "Idempotency-Key reused with a different payment"})),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn pay(
    order_id: String,
    caller: Caller,
    orders: Arc<Orders>,
    headers: HeaderMap,
    body: Value,
) -> Response {
    respond(caller.correlation_id.clone(), async move {
        let order_id = order_in_path(&order_id)?;
        let key = headers.get(IDEMPOTENCY_KEY);
        let (method, amount, key) = payment_fields(order_id, &body, key)?;
        let payment = PaymentRequest {
            method,
            amount,
            idempotency_key: key,
        };
        let order = orders
            .pay(order_id, &caller.user.id, payment, &caller.correlation_id)
            .await
            .map_err(api_error)?;
        Ok(OrderJson::from(&order))
    })
    .await
}

/// Runs a batch now (admin).
///
/// It re-folds the unsettled orders in that status from their events, repairs their projections
/// and re-sends what was never sent (`order_placed` of an order still `PLACED`,
/// `order_invalid`, a status never announced).
#[utoipa::path(
    get,
    path = "/orders_batch/{batch}",
    tag = "admin",
    params(("batch" = String, Path, description = "`placed`, `validated` or `payment_defined`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many orders it examined", body = Processed),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn run_batch(name: String, caller: Caller, orders: Arc<Orders>) -> Response {
    respond(caller.correlation_id, async move {
        let status = match name.as_str() {
            "placed" => Status::Placed,
            "validated" => Status::Validated,
            "payment_defined" => Status::PaymentDefined,
            _ => return Err(ApiError::NotFound),
        };
        let processed = orders.run_batch(status).await.map_err(api_error)?;
        Ok(Processed { processed })
    })
    .await
}

/// The order id of a path segment: orders' ids are UUIDs, so anything else (a NUL, a very long
/// segment, a stray encoding) is an order nobody has, answered 404 before Redis or the store is
/// asked.
fn order_in_path(segment: &str) -> Result<&str, ApiError> {
    match uuid::Uuid::try_parse(segment) {
        Ok(_) => Ok(segment),
        Err(_) => Err(ApiError::NotFound),
    }
}

fn viewer(caller: &Caller) -> Viewer<'_> {
    Viewer {
        user_id: &caller.user.id,
        admin: caller.user.has("admin"),
    }
}

/// The keys a payment body may hold; `orderId` is allowed when it is the order of the path (a
/// client sending back what it read), and then ignored.
const PAYMENT_KEYS: [&str; 3] = ["method", "amount", "orderId"];

/// The header that makes a payment safe to retry (contract extension, see the README).
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The longest `Idempotency-Key` taken.
const MAX_KEY_LENGTH: usize = 200;

/// `{"method","amount"}` and the `Idempotency-Key` header, if any: all checked at once so a form
/// can show every message. Any other body key is refused, so that nothing sent (an id, an owner,
/// a status) can look mass-assigned.
fn payment_fields<'a>(
    order_id: &str,
    body: &Value,
    key: Option<&'a HeaderValue>,
) -> Result<(Method, f64, Option<&'a str>), ApiError> {
    refuse_unknown_keys(body)?;
    let method = body["method"].as_str().and_then(Method::parse);
    let amount = body["amount"]
        .as_f64()
        .filter(|amount| amount.is_finite() && *amount > 0.0);
    let mut errors = Vec::new();
    if method.is_none() {
        errors.push(FieldError::new(
            "method",
            "must be one of CASH, CREDIT, DEBIT",
        ));
    }
    if amount.is_none() {
        errors.push(FieldError::new("amount", "must be a number greater than 0"));
    }
    match &body["orderId"] {
        Value::Null => {}
        Value::String(sent) if sent == order_id => {}
        Value::String(_) => errors.push(FieldError::new("orderId", "names another order")),
        _ => errors.push(FieldError::new("orderId", "must be a string")),
    }
    let key = key.map(|key| idempotency_key(key.as_bytes()));
    if let Some(None) = key {
        errors.push(FieldError::new(
            IDEMPOTENCY_KEY,
            "must be 1 to 200 visible ASCII characters",
        ));
    }
    match (method, amount, key) {
        _ if !errors.is_empty() => Err(ApiError::Validation(errors)),
        (Some(method), Some(amount), None) => Ok((method, amount, None)),
        (Some(method), Some(amount), Some(Some(key))) => Ok((method, amount, Some(key))),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The key when it is 1 to [`MAX_KEY_LENGTH`] visible ASCII characters (`!` to `~`).
fn idempotency_key(key: &[u8]) -> Option<&str> {
    let visible = key.iter().all(|byte| matches!(byte, b'!'..=b'~'));
    if !visible || key.is_empty() || key.len() > MAX_KEY_LENGTH {
        return None;
    }
    std::str::from_utf8(key).ok()
}

fn refuse_unknown_keys(body: &Value) -> Result<(), ApiError> {
    let unknown = body.as_object().and_then(|fields| {
        fields
            .keys()
            .find(|key| !PAYMENT_KEYS.contains(&key.as_str()))
    });
    match unknown {
        Some(key) => Err(ApiError::BadRequest(format!(
            "Invalid JSON: unknown field `{key}`, expected one of `method`, `amount`, `orderId`"
        ))),
        None => Ok(()),
    }
}

fn api_error(error: OrdersError) -> ApiError {
    match error {
        OrdersError::Unavailable(dependency) => ApiError::Unavailable(dependency),
        OrdersError::NotFound => ApiError::NotFound,
        OrdersError::Rejected(rejection @ Rejection::NotPositive) => {
            ApiError::field("amount", rejection.to_string())
        }
        OrdersError::Rejected(Rejection::KeyReused) => ApiError::Refused(
            StatusCode::CONFLICT,
            "Idempotency-Key reused with a different payment",
        ),
        OrdersError::Rejected(rejection) => ApiError::BadRequest(rejection.to_string()),
        OrdersError::Internal(detail) => ApiError::Internal(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_key_is_1_to_200_visible_ascii_characters() {
        for key in ["k", "2f1c-77/retry#1", "!~", &"x".repeat(200)] {
            assert_eq!(idempotency_key(key.as_bytes()), Some(key), "{key}");
        }
        for key in ["", "with space", "tab\t", "é", "\u{7f}", &"x".repeat(201)] {
            assert_eq!(idempotency_key(key.as_bytes()), None, "{key:?}");
        }
    }
}
