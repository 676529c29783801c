//! The JSON shapes of CONTRACT section 8, built from the Order projection.

use mongodb::bson::DateTime;
use serde::Serialize;
use utoipa::ToSchema;

use crate::order::{Method, Order, Status};

/// The full order JSON; money in units with cents (`totalPrice`, `amount`), times RFC 3339 UTC.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson {
    id: String,
    /// The same as `id` (the course's clients read either).
    order_id: String,
    #[schema(value_type = Status)]
    status: &'static str,
    user_id: String,
    cart_id: String,
    total_price: f64,
    total_payment: f64,
    articles: Vec<LineJson>,
    payments: Vec<PaymentJson>,
    created: String,
    updated: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct LineJson {
    id: String,
    article_id: String,
    quantity: i64,
    unitary_price: f64,
    valid: bool,
    validated: bool,
}

#[derive(Serialize, ToSchema)]
struct PaymentJson {
    method: Method,
    amount: f64,
}

/// One entry of `GET /orders`; `articles` is the line count.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    id: String,
    #[schema(value_type = Status)]
    status: &'static str,
    cart_id: String,
    total_price: f64,
    total_payment: f64,
    created: String,
    updated: String,
    articles: usize,
}

fn rfc3339(time: DateTime) -> String {
    time.try_to_rfc3339_string().unwrap_or_default()
}

fn money(cents: i128) -> f64 {
    cents as f64 / 100.0
}

impl From<&Order> for OrderJson {
    fn from(order: &Order) -> Self {
        Self {
            id: order.id.clone(),
            order_id: order.id.clone(),
            status: order.status.as_str(),
            user_id: order.user_id.clone(),
            cart_id: order.cart_id.clone(),
            total_price: money(order.total_price_cents()),
            total_payment: money(order.total_payment_cents()),
            articles: order
                .articles
                .iter()
                .map(|line| LineJson {
                    id: line.article_id.clone(),
                    article_id: line.article_id.clone(),
                    quantity: line.quantity,
                    unitary_price: line.unitary_price,
                    valid: line.valid,
                    validated: line.validated,
                })
                .collect(),
            payments: order
                .payments
                .iter()
                .map(|payment| PaymentJson {
                    method: payment.method,
                    amount: payment.amount,
                })
                .collect(),
            created: rfc3339(order.created),
            updated: rfc3339(order.updated),
        }
    }
}

impl From<&Order> for OrderSummary {
    fn from(order: &Order) -> Self {
        Self {
            id: order.id.clone(),
            status: order.status.as_str(),
            cart_id: order.cart_id.clone(),
            total_price: money(order.total_price_cents()),
            total_payment: money(order.total_payment_cents()),
            created: rfc3339(order.created),
            updated: rfc3339(order.updated),
            articles: order.articles.len(),
        }
    }
}
