//! Routes and handlers (CONTRACT section 8): parse, call the service, build the reply.

use std::sync::Arc;

use common::http::{DEFAULT_BODY_LIMIT, health, json_body, json_bytes, respond, respond_with};
use common::{ApiError, Caller, FieldError, TokenGuard};
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::order::{Method, Rejection, Status};
use crate::service::{Orders, OrdersError, PaymentRequest, Viewer};
use crate::view::OrderJson;

pub fn routes(orders: Arc<Orders>, guard: &TokenGuard) -> BoxedFilter<(Response,)> {
    let state = {
        let orders = orders.clone();
        warp::any().map(move || orders.clone())
    };

    // Both reads answer bytes stored in Redis as they are (`read_models.rs`).
    let list = warp::path!("orders")
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(|caller: Caller, orders: Arc<Orders>| {
            respond_with(caller.correlation_id, async move {
                let list = orders.list_json(&caller.user.id).await;
                Ok(json_bytes(list.map_err(api_error)?))
            })
        });

    let detail = warp::path!("orders" / String)
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(|order_id: String, caller: Caller, orders: Arc<Orders>| {
            respond_with(caller.correlation_id.clone(), async move {
                let order_id = order_in_path(&order_id)?;
                let order = orders.order_json(order_id, &viewer(&caller)).await;
                Ok(json_bytes(order.map_err(api_error)?))
            })
        });

    let rebuild = warp::path!("orders" / String / "update")
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(|order_id: String, caller: Caller, orders: Arc<Orders>| {
            respond(caller.correlation_id.clone(), async move {
                let order_id = order_in_path(&order_id)?;
                let order = orders.rebuild(order_id, &viewer(&caller)).await;
                Ok(OrderJson::from(&order.map_err(api_error)?))
            })
        });

    let payment = warp::path!("orders" / String / "payment")
        .and(warp::post())
        .and(guard.authenticated())
        .and(state.clone())
        .and(warp::header::headers_cloned())
        .and(json_body::<Value>(DEFAULT_BODY_LIMIT))
        .then(
            |order_id: String,
             caller: Caller,
             orders: Arc<Orders>,
             headers: HeaderMap,
             body: Value| {
                respond(caller.correlation_id.clone(), async move {
                    let order_id = order_in_path(&order_id)?;
                    let key = headers.get(IDEMPOTENCY_KEY);
                    let (method, amount, key) = payment_fields(&body, key)?;
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
            },
        );

    let batch = warp::path!("orders_batch" / String)
        .and(warp::get())
        .and(guard.admin())
        .and(state)
        .then(|name: String, caller: Caller, orders: Arc<Orders>| {
            respond(caller.correlation_id, async move {
                let status = match name.as_str() {
                    "placed" => Status::Placed,
                    "validated" => Status::Validated,
                    "payment_defined" => Status::PaymentDefined,
                    _ => return Err(ApiError::NotFound),
                };
                let processed = orders.run_batch(status).await.map_err(api_error)?;
                Ok(json!({ "processed": processed }))
            })
        });

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

/// The keys a payment body may hold; `orderId` is allowed but ignored (the order is the one in
/// the path).
const PAYMENT_KEYS: [&str; 3] = ["method", "amount", "orderId"];

/// The header that makes a payment safe to retry (contract extension, see the README).
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The longest `Idempotency-Key` taken.
const MAX_KEY_LENGTH: usize = 200;

/// `{"method","amount"}` and the `Idempotency-Key` header, if any: all checked at once so a form
/// can show every message. Any other body key is refused, so that nothing sent (an id, an owner,
/// a status) can look mass-assigned.
fn payment_fields<'a>(
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
    let key = key.map(|key| idempotency_key(key.as_bytes()));
    if let Some(None) = key {
        errors.push(FieldError::new(
            IDEMPOTENCY_KEY,
            "must be 1 to 200 visible ASCII characters",
        ));
    }
    match (method, amount, key) {
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
