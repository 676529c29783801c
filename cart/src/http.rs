//! Routes and handlers (CONTRACT section 7): parse, call the cart operations, build the reply.
//! Every route acts on the caller's own active cart: the user id comes from the token only.

use std::sync::Arc;

use common::http::{
    DEFAULT_BODY_LIMIT, health, json_body, json_bytes, percent_decode, respond, respond_with,
};
use common::{ApiError, Caller, FieldError, TokenGuard, openapi};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::cart::{Issue, MAX_ARTICLE_ID_LEN, MAX_QUANTITY, Validation};
use crate::service::{Carts, CheckoutError};
use crate::view::{CartJson, CartLine, cart_json};

/// The body of `POST /cart/article`. Unknown fields are refused: a `userId` or `cartId` sent here
/// must never look honoured. The fields are read as any JSON so that a wrong type gets a message
/// under its own path.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"articleId": "0b5f7a4e-5d2c-4b8e-9a57-3f1d2c6e8a90", "quantity": 2}))]
struct AddArticle {
    /// Catalog's `_id` of the article: 1 to 100 characters, no control character.
    #[serde(rename = "articleId")]
    #[schema(required = true, value_type = String, min_length = 1, max_length = 100)]
    article_id: Option<Value>,
    /// How many to add: an integer from 1 to 10000; a line holds at most 10000.
    #[schema(required = true, value_type = i64, minimum = 1, maximum = 10000)]
    quantity: Option<Value>,
}

/// A refused checkout: `{"error": "Cart is empty"}`, or the lines catalog refused, for the cart
/// screen to mark.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "Cart has invalid articles", "errors": [
    {"articleId": "0b5f7a4e-5d2c-4b8e-9a57-3f1d2c6e8a90", "message": "Not enough stock"}]}))]
struct CheckoutRefusal {
    error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<Issue>,
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

    let get = warp::path!("cart")
        .and(warp::get())
        .and(caller())
        .then(get_cart);

    let add = warp::path!("cart" / "article")
        .and(warp::post())
        .and(caller())
        .and(json_body::<AddArticle>(DEFAULT_BODY_LIMIT))
        .then(add_article);

    let increment = warp::path!("cart" / "article" / String / "increment")
        .and(warp::post())
        .and(caller())
        .then(increment_article);

    let decrement = warp::path!("cart" / "article" / String / "decrement")
        .and(warp::post())
        .and(caller())
        .then(decrement_article);

    let remove = warp::path!("cart" / "article" / String)
        .and(warp::delete())
        .and(caller())
        .then(remove_article);

    let validate = warp::path!("cart" / "validate")
        .and(warp::get())
        .and(caller())
        .then(validate_cart);

    let checkout = warp::path!("cart" / "checkout")
        .and(warp::post())
        .and(caller())
        .then(checkout);

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

/// Cart's OpenAPI document, from the handlers below.
pub fn document() -> openapi::Document {
    #[derive(OpenApi)]
    #[openapi(
        paths(
            get_cart,
            add_article,
            increment_article,
            decrement_article,
            remove_article,
            validate_cart,
            checkout
        ),
        components(schemas(CartJson, CartLine, AddArticle, Validation, Issue, CheckoutRefusal)),
        tags((name = "cart", description = "The caller's active cart"))
    )]
    struct CartApi;
    openapi::document(
        CartApi::openapi(),
        "cart",
        "One active cart per user, its lines validated against catalog in the background, \
         and a checkout that sends `place_order` to orders and never loses it. Every path acts \
         on the caller's own cart: the user comes from the token only.",
    )
}

/// The path parameter of the line endpoints.
const ARTICLE_ID: &str = "Catalog's `_id` of the article, percent-encoded as needed";

/// The caller's active cart, created on first use.
///
/// Served from the read model in Redis, one round trip, when it has the cart (`view.rs`).
#[utoipa::path(
    get,
    path = "/cart",
    tag = "cart",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The active cart", body = CartJson),
        (status = 401, response = openapi::Unauthorized),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn get_cart(caller: Caller, carts: Arc<Carts>) -> Response {
    respond_with(caller.correlation_id, async move {
        Ok(json_bytes(carts.view(&caller.user.id).await?))
    })
    .await
}

/// Adds an article to the cart.
///
/// A new line, or more on its line; catalog is asked about the line in the background.
#[utoipa::path(
    post,
    path = "/cart/article",
    tag = "cart",
    request_body = AddArticle,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartJson),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn add_article(caller: Caller, carts: Arc<Carts>, body: AddArticle) -> Response {
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
    .await
}

/// One more of a line's article.
#[utoipa::path(
    post,
    path = "/cart/article/{articleId}/increment",
    tag = "cart",
    params(("articleId" = String, Path, description = ARTICLE_ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartJson),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn increment_article(article_id: String, caller: Caller, carts: Arc<Carts>) -> Response {
    respond(caller.correlation_id.clone(), async move {
        let article_id = article_in_path(&article_id)?;
        let cart = carts
            .increment(&caller.user.id, &article_id, &caller.correlation_id)
            .await?;
        Ok(cart_json(&cart))
    })
    .await
}

/// One less of a line's article; a line reaching 0 is removed.
#[utoipa::path(
    post,
    path = "/cart/article/{articleId}/decrement",
    tag = "cart",
    params(("articleId" = String, Path, description = ARTICLE_ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartJson),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn decrement_article(article_id: String, caller: Caller, carts: Arc<Carts>) -> Response {
    respond(caller.correlation_id.clone(), async move {
        let article_id = article_in_path(&article_id)?;
        let cart = carts
            .decrement(&caller.user.id, &article_id, &caller.correlation_id)
            .await?;
        Ok(cart_json(&cart))
    })
    .await
}

/// Removes a line.
#[utoipa::path(
    delete,
    path = "/cart/article/{articleId}",
    tag = "cart",
    params(("articleId" = String, Path, description = ARTICLE_ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartJson),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn remove_article(article_id: String, caller: Caller, carts: Arc<Carts>) -> Response {
    respond(caller.correlation_id, async move {
        let article_id = article_in_path(&article_id)?;
        Ok(cart_json(
            &carts.remove(&caller.user.id, &article_id).await?,
        ))
    })
    .await
}

/// Validates every line with catalog now.
///
/// What would stop a checkout (`errors`) and what the buyer should know (`warnings`).
#[utoipa::path(
    get,
    path = "/cart/validate",
    tag = "cart",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Catalog's answers", body = Validation),
        (status = 401, response = openapi::Unauthorized),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn validate_cart(caller: Caller, carts: Arc<Carts>) -> Response {
    respond(caller.correlation_id.clone(), async move {
        carts
            .validate(&caller.user.id, &caller.correlation_id)
            .await
    })
    .await
}

/// Checks the cart out.
///
/// Closes the cart once catalog accepts every line, and sends `place_order` to orders (never
/// lost: re-sent until orders confirms).
#[utoipa::path(
    post,
    path = "/cart/checkout",
    tag = "cart",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The closed cart", body = CartJson),
        (status = 400, description = "The cart is empty, or catalog refused lines",
            body = CheckoutRefusal),
        (status = 401, response = openapi::Unauthorized),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn checkout(caller: Caller, carts: Arc<Carts>) -> Response {
    respond_with(caller.correlation_id.clone(), async move {
        match carts
            .checkout(&caller.user.id, &caller.correlation_id)
            .await
        {
            Ok(cart) => Ok(warp::reply::json(&cart_json(&cart)).into_response()),
            Err(CheckoutError::Empty) => Ok(refused("Cart is empty", Vec::new())),
            // The `error` text any client shows, and the lines the cart screen marks.
            Err(CheckoutError::Invalid(errors)) => Ok(refused("Cart has invalid articles", errors)),
            Err(CheckoutError::Api(error)) => Err(error),
        }
    })
    .await
}

fn refused(error: &str, errors: Vec<Issue>) -> Response {
    let refusal = CheckoutRefusal {
        error: error.into(),
        errors,
    };
    warp::reply::with_status(warp::reply::json(&refusal), StatusCode::BAD_REQUEST).into_response()
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
