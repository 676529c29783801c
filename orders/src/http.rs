//! Routes and handlers (CONTRACT section 8): parse, call the service, build the reply.

use std::sync::Arc;

use common::http::{DEFAULT_BODY_LIMIT, health, json_body, respond};
use common::{ApiError, Caller, FieldError, TokenGuard};
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::order::{Method, Rejection, Status};
use crate::service::{Orders, OrdersError, Viewer};
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
        .then(|caller: Caller, orders: Arc<Orders>| {
            respond(caller.correlation_id, async move {
                let list = orders.list(&caller.user.id).await.map_err(api_error)?;
                Ok(list.iter().map(OrderSummary::from).collect::<Vec<_>>())
            })
        });

    let detail = warp::path!("orders" / String)
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(|order_id: String, caller: Caller, orders: Arc<Orders>| {
            respond(caller.correlation_id.clone(), async move {
                let order = orders.get(&order_id, &viewer(&caller)).await;
                Ok(OrderJson::from(&order.map_err(api_error)?))
            })
        });

    let rebuild = warp::path!("orders" / String / "update")
        .and(warp::get())
        .and(guard.authenticated())
        .and(state.clone())
        .then(|order_id: String, caller: Caller, orders: Arc<Orders>| {
            respond(caller.correlation_id.clone(), async move {
                let order = orders.rebuild(&order_id, &viewer(&caller)).await;
                Ok(OrderJson::from(&order.map_err(api_error)?))
            })
        });

    let payment = warp::path!("orders" / String / "payment")
        .and(warp::post())
        .and(guard.authenticated())
        .and(state.clone())
        .and(json_body::<Value>(DEFAULT_BODY_LIMIT))
        .then(
            |order_id: String, caller: Caller, orders: Arc<Orders>, body: Value| {
                respond(caller.correlation_id.clone(), async move {
                    let (method, amount) = payment_fields(&body)?;
                    let order = orders
                        .pay(
                            &order_id,
                            &caller.user.id,
                            method,
                            amount,
                            &caller.correlation_id,
                        )
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

fn viewer(caller: &Caller) -> Viewer<'_> {
    Viewer {
        user_id: &caller.user.id,
        admin: caller.user.has("admin"),
    }
}

/// The keys a payment body may hold; `orderId` is allowed but ignored (the order is the one in
/// the path).
const PAYMENT_KEYS: [&str; 3] = ["method", "amount", "orderId"];

/// `{"method","amount"}`: both checked at once so a form can show every message. Any other key
/// is refused, so that nothing sent (an id, an owner, a status) can look mass-assigned.
fn payment_fields(body: &Value) -> Result<(Method, f64), ApiError> {
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
    match (method, amount) {
        (Some(method), Some(amount)) => Ok((method, amount)),
        _ => Err(ApiError::Validation(errors)),
    }
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
        OrdersError::Rejected(rejection) => ApiError::BadRequest(rejection.to_string()),
        OrdersError::Internal(detail) => ApiError::Internal(detail),
    }
}
