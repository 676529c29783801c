//! Routes and handlers (CONTRACT section 7): parse, call the cart operations, build the reply.
//! Every route acts on the caller's own active cart: the user id comes from the token only.

use std::sync::Arc;

use common::http::{
    DEFAULT_BODY_LIMIT, health, json_body, json_bytes, percent_decode, respond, respond_with,
};
use common::{ApiError, Caller, FieldError, TokenGuard};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::cart::{MAX_ARTICLE_ID_LEN, MAX_QUANTITY};
use crate::service::{Carts, CheckoutError};
use crate::view::cart_json;

/// The body of `POST /cart/article`. Unknown fields are refused: a `userId` or `cartId` sent here
/// must never look honoured. The fields are read as any JSON so that a wrong type gets a message
/// under its own path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddArticle {
    #[serde(rename = "articleId")]
    article_id: Option<Value>,
    quantity: Option<Value>,
}

impl AddArticle {
    fn parse(self) -> Result<(String, i64), ApiError> {
        let article_id = match self.article_id {
            Some(Value::String(id)) if id.chars().any(char::is_control) => Err(FieldError::new(
                "articleId",
                "must not contain control characters",
            )),
            Some(Value::String(id))
                if !id.trim().is_empty() && id.chars().count() <= MAX_ARTICLE_ID_LEN =>
            {
                Ok(id)
            }
            Some(Value::String(id)) if !id.trim().is_empty() => Err(FieldError::new(
                "articleId",
                format!("at most {MAX_ARTICLE_ID_LEN} characters"),
            )),
            None | Some(Value::Null) => Err(FieldError::new("articleId", "is required")),
            _ => Err(FieldError::new("articleId", "must be a non-empty text")),
        };
        let quantity = match self.quantity.as_ref().and_then(Value::as_i64) {
            Some(quantity) if (1..=MAX_QUANTITY).contains(&quantity) => Ok(quantity),
            _ => Err(FieldError::new(
                "quantity",
                format!("must be an integer from 1 to {MAX_QUANTITY}"),
            )),
        };
        match (article_id, quantity) {
            (Ok(article_id), Ok(quantity)) => Ok((article_id, quantity)),
            (article_id, quantity) => Err(ApiError::Validation(
                [article_id.err(), quantity.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            )),
        }
    }
}

/// The article id of a path segment, which warp leaves percent-encoded: ids are opaque, so
/// `a%20b` must name the line of `a b`. A segment that does not decode to an id a line can have
/// (UTF-8, at most `MAX_ARTICLE_ID_LEN` characters, no control character) names no line: 404
/// before the store is asked.
fn article_in_path(segment: &str) -> Result<String, ApiError> {
    let id = String::from_utf8(percent_decode(segment)).map_err(|_| ApiError::NotFound)?;
    if id.chars().count() > MAX_ARTICLE_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::NotFound);
    }
    Ok(id)
}

pub fn routes(carts: Arc<Carts>, guard: &TokenGuard) -> BoxedFilter<(Response,)> {
    let state = {
        let carts = carts.clone();
        warp::any().map(move || carts.clone())
    };
    let caller = || guard.authenticated().and(state.clone());

    // Served from the read model in Redis, one round trip, when it has the cart (`view.rs`).
    let get = warp::path!("cart").and(warp::get()).and(caller()).then(
        |caller: Caller, carts: Arc<Carts>| {
            respond_with(caller.correlation_id, async move {
                Ok(json_bytes(carts.view(&caller.user.id).await?))
            })
        },
    );

    let add = warp::path!("cart" / "article")
        .and(warp::post())
        .and(caller())
        .and(json_body::<AddArticle>(DEFAULT_BODY_LIMIT))
        .then(|caller: Caller, carts: Arc<Carts>, body: AddArticle| {
            respond(caller.correlation_id.clone(), async move {
                let (article_id, quantity) = body.parse()?;
                let cart = carts
                    .add(
                        &caller.user.id,
                        &article_id,
                        quantity,
                        &caller.correlation_id,
                    )
                    .await?;
                Ok(cart_json(&cart))
            })
        });

    let increment = warp::path!("cart" / "article" / String / "increment")
        .and(warp::post())
        .and(caller())
        .then(|article_id: String, caller: Caller, carts: Arc<Carts>| {
            respond(caller.correlation_id.clone(), async move {
                let article_id = article_in_path(&article_id)?;
                let cart = carts
                    .increment(&caller.user.id, &article_id, &caller.correlation_id)
                    .await?;
                Ok(cart_json(&cart))
            })
        });

    let decrement = warp::path!("cart" / "article" / String / "decrement")
        .and(warp::post())
        .and(caller())
        .then(|article_id: String, caller: Caller, carts: Arc<Carts>| {
            respond(caller.correlation_id.clone(), async move {
                let article_id = article_in_path(&article_id)?;
                let cart = carts
                    .decrement(&caller.user.id, &article_id, &caller.correlation_id)
                    .await?;
                Ok(cart_json(&cart))
            })
        });

    let remove = warp::path!("cart" / "article" / String)
        .and(warp::delete())
        .and(caller())
        .then(|article_id: String, caller: Caller, carts: Arc<Carts>| {
            respond(caller.correlation_id, async move {
                let article_id = article_in_path(&article_id)?;
                Ok(cart_json(
                    &carts.remove(&caller.user.id, &article_id).await?,
                ))
            })
        });

    let validate = warp::path!("cart" / "validate")
        .and(warp::get())
        .and(caller())
        .then(|caller: Caller, carts: Arc<Carts>| {
            respond(caller.correlation_id.clone(), async move {
                carts
                    .validate(&caller.user.id, &caller.correlation_id)
                    .await
            })
        });

    let checkout = warp::path!("cart" / "checkout")
        .and(warp::post())
        .and(caller())
        .then(|caller: Caller, carts: Arc<Carts>| {
            respond_with(caller.correlation_id.clone(), async move {
                match carts
                    .checkout(&caller.user.id, &caller.correlation_id)
                    .await
                {
                    Ok(cart) => Ok(warp::reply::json(&cart_json(&cart)).into_response()),
                    Err(CheckoutError::Empty) => Err(ApiError::BadRequest("Cart is empty".into())),
                    // The `error` text any client shows, and the lines the cart screen marks.
                    Err(CheckoutError::Invalid(errors)) => Ok(warp::reply::with_status(
                        warp::reply::json(
                            &json!({"error": "Cart has invalid articles", "errors": errors}),
                        ),
                        StatusCode::BAD_REQUEST,
                    )
                    .into_response()),
                    Err(CheckoutError::Api(error)) => Err(error),
                }
            })
        });

    let health = health(move || {
        let carts = carts.clone();
        async move { carts.health().await }
    });

    [
        get.boxed(),
        add.boxed(),
        increment.boxed(),
        decrement.boxed(),
        remove.boxed(),
        validate.boxed(),
        checkout.boxed(),
    ]
    .into_iter()
    .fold(health, |routes, route| routes.or(route).unify().boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_article_ids_are_percent_decoded() {
        assert_eq!(article_in_path("65b2ab").unwrap(), "65b2ab");
        assert_eq!(article_in_path("a%20b%2Fc").unwrap(), "a b/c");
        assert_eq!(article_in_path("caf%C3%A9").unwrap(), "café");
        assert_eq!(article_in_path("100%").unwrap(), "100%");
        assert_eq!(article_in_path("%zz").unwrap(), "%zz");
        assert!(article_in_path("%FF").is_err());
    }

    #[test]
    fn path_ids_no_line_can_have_are_not_found() {
        for segment in ["a%00b", "%0A", "a%7F", &"x".repeat(MAX_ARTICLE_ID_LEN + 1)] {
            assert!(
                matches!(article_in_path(segment), Err(ApiError::NotFound)),
                "{segment}"
            );
        }
        assert!(article_in_path(&"x".repeat(MAX_ARTICLE_ID_LEN)).is_ok());
    }
}
