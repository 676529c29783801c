//! Routes and handlers (CONTRACT section 6): parse, call the store, build the reply. Reads are
//! public; writes need the `admin` permission. An update changing the stock carries the
//! `stockVersion` it read (in the body, or `If-Match: "<n>"`), else 409.

use common::http::{DEFAULT_BODY_LIMIT, correlation_id, health, json_body, respond, respond_with};
use common::{ApiError, Caller, TokenGuard, openapi};
use rabbit::Rabbit;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::article::{Article, ArticleBody, ArticleInput, Target, fold};
use crate::query::{Page, search_text};
use crate::store::{Store, UpdateError};

pub fn routes(store: Store, guard: &TokenGuard, rabbit: Rabbit) -> BoxedFilter<(Response,)> {
    let state = {
        let store = store.clone();
        warp::any().map(move || store.clone())
    };
    let page = || warp::query::raw().or(warp::any().map(String::new)).unify();

    let get = warp::path!("articles" / String)
        .and(warp::get())
        .and(state.clone())
        .and(correlation_id())
        .then(get_article);

    let search = warp::path!("articles" / "search" / String)
        .and(warp::get())
        .and(page())
        .and(state.clone())
        .and(correlation_id())
        .then(search_articles);

    let list = warp::path!("articles")
        .and(warp::get())
        .and(page())
        .and(state.clone())
        .and(correlation_id())
        .then(list_articles);

    let create = warp::path!("articles")
        .and(warp::post())
        .and(guard.admin())
        .and(article_body())
        .and(state.clone())
        .then(create_article);

    let update = warp::path!("articles" / String)
        .and(warp::post().or(warp::put()).unify())
        .and(guard.admin())
        .and(article_body())
        .and(warp::header::optional::<String>("if-match"))
        .and(state.clone())
        .then(update_article);

    let delete = warp::path!("articles" / String)
        .and(warp::delete())
        .and(guard.admin())
        .and(state)
        .then(disable_article);

    let health = health(move || {
        let store = store.clone();
        let rabbitmq = rabbit.is_connected();
        async move {
            vec![
                ("mongodb", common::mongo::ping(store.db()).await),
                ("rabbitmq", rabbitmq),
            ]
        }
    });

    get.boxed()
        .or(search.boxed())
        .unify()
        .or(list.boxed())
        .unify()
        .or(create.boxed())
        .unify()
        .or(update.boxed())
        .unify()
        .or(delete.boxed())
        .unify()
        .or(health)
        .unify()
        .boxed()
}

/// Catalog's OpenAPI document, from the handlers below.
pub fn document() -> openapi::Document {
    #[derive(OpenApi)]
    #[openapi(
        paths(
            get_article,
            search_articles,
            list_articles,
            create_article,
            update_article,
            disable_article
        ),
        components(schemas(Article, ArticleBody)),
        tags((name = "articles", description = "Articles, their price and stock"))
    )]
    struct Catalog;
    openapi::document(
        Catalog::openapi(),
        "catalog",
        "Articles with price and stock: anyone reads and searches, admins write. Stock changes \
         are movements in a ledger; an update that changes the stock carries the `stockVersion` \
         it read.",
    )
}

/// One article, disabled ones too.
///
/// A disabled article answers with `enabled: false`.
#[utoipa::path(
    get,
    path = "/articles/{id}",
    tag = "articles",
    params(("id" = String, Path, description = "The article's `_id` (a UUID)")),
    responses(
        (status = 200, description = "The article", body = Article),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn get_article(id: String, store: Store, correlation_id: String) -> Response {
    respond(correlation_id, async move {
        store.get(&id).await?.ok_or(ApiError::NotFound)
    })
    .await
}

/// Searches enabled articles.
///
/// The articles whose name or description contains the text, ignoring case and accents, sorted
/// by name.
#[utoipa::path(
    get,
    path = "/articles/search/{text}",
    tag = "articles",
    params(
        ("text" = String, Path, description = "Literal text (never a pattern), 1 to 200 characters"),
        Page,
    ),
    responses(
        (status = 200, description = "The matching articles", body = Vec<Article>),
        (status = 400, response = openapi::BadRequest),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn search_articles(
    text: String,
    query: String,
    store: Store,
    correlation_id: String,
) -> Response {
    respond(correlation_id, async move {
        let text = search_text(&text).map_err(|error| ApiError::Validation(vec![error]))?;
        let page = Page::parse(&query).map_err(ApiError::Validation)?;
        Ok(store.search(&fold(&text), page).await?)
    })
    .await
}

/// Enabled articles, sorted by name, a page at a time.
#[utoipa::path(
    get,
    path = "/articles",
    tag = "articles",
    params(Page),
    responses(
        (status = 200, description = "A page of articles", body = Vec<Article>),
        (status = 400, response = openapi::BadRequest),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn list_articles(query: String, store: Store, correlation_id: String) -> Response {
    respond(correlation_id, async move {
        let page = Page::parse(&query).map_err(ApiError::Validation)?;
        Ok(store.list(page).await?)
    })
    .await
}

/// Creates an article (admin). It starts enabled, with its stock as the first movement.
#[utoipa::path(
    post,
    path = "/articles",
    tag = "articles",
    request_body = ArticleBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The created article", body = Article),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn create_article(
    caller: Caller,
    body: Result<Map<String, Value>, ApiError>,
    store: Store,
) -> Response {
    respond(caller.correlation_id, async move {
        let input = ArticleInput::parse(&body?, Target::New).map_err(ApiError::Validation)?;
        Ok(store.create(input).await?)
    })
    .await
}

/// Updates an article (admin; PUT too).
///
/// Replaces what an admin sets. The body may be the whole article as read: its `_id` must be
/// this article's and its `enabled` the article's own (they are read-only). A changed `stock`
/// needs the `stockVersion` it was read at (in the body, or `If-Match: "<n>"`), else 409.
#[utoipa::path(
    post,
    path = "/articles/{id}",
    tag = "articles",
    params(
        ("id" = String, Path, description = "The article's `_id`"),
        ("If-Match" = Option<String>, Header, description = "`\"<stockVersion>\"`, when the body has none"),
    ),
    request_body = ArticleBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated article", body = Article),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 409, description = "The stock changed since `stockVersion`, or a changed stock \
            came without it: read the article again", body = openapi::ErrorBody,
            example = json!({"error": "Conflict: stock changed (now 7 at version 2)"})),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn update_article(
    id: String,
    caller: Caller,
    body: Result<Map<String, Value>, ApiError>,
    if_match: Option<String>,
    store: Store,
) -> Response {
    respond_with(caller.correlation_id, async move {
        let mut input =
            ArticleInput::parse(&body?, Target::Existing(&id)).map_err(ApiError::Validation)?;
        if input.stock_version.is_none() {
            input.stock_version = if_match.as_deref().and_then(read_version);
        }
        match store.update(&id, input).await {
            Ok(article) => Ok(warp::reply::json(&article).into_response()),
            Err(UpdateError::NotFound) => Err(ApiError::NotFound),
            Err(UpdateError::EnabledDiffers { enabled }) => Err(ApiError::field(
                "enabled",
                format!(
                    "is read-only: the article is {}; DELETE /articles/{{id}} disables it",
                    if enabled { "enabled" } else { "disabled" }
                ),
            )),
            Err(UpdateError::Store(error)) => Err(error.into()),
            Err(UpdateError::StockChanged(head)) => Ok(conflict(format!(
                "Conflict: stock changed (now {} at version {})",
                head.balance, head.position
            ))),
            Err(UpdateError::VersionMissing(head)) => Ok(conflict(format!(
                "Conflict: a stock change needs the stockVersion it was read at \
                 (now {} at version {})",
                head.balance, head.position
            ))),
        }
    })
    .await
}

/// Disables an article (admin).
///
/// A soft delete: the article stays readable, with `enabled: false`.
#[utoipa::path(
    delete,
    path = "/articles/{id}",
    tag = "articles",
    params(("id" = String, Path, description = "The article's `_id`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Disabled", body = Object, example = json!({})),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn disable_article(id: String, caller: Caller, store: Store) -> Response {
    respond(caller.correlation_id, async move {
        if store.disable(&id).await? {
            Ok(json!({}))
        } else {
            Err(ApiError::NotFound)
        }
    })
    .await
}

/// The version of an `If-Match: "<n>"` header (quotes optional).
fn read_version(header: &str) -> Option<i64> {
    header
        .trim()
        .trim_matches('"')
        .parse()
        .ok()
        .filter(|version| *version >= 0)
}

/// 409 `{"error": message}`: the admin re-reads the article and decides again.
fn conflict(message: String) -> Response {
    warp::reply::with_status(
        warp::reply::json(&json!({ "error": message })),
        StatusCode::CONFLICT,
    )
    .into_response()
}

/// An article body: a JSON object within the 64 KiB limit.
fn article_body()
-> impl Filter<Extract = (Result<Map<String, Value>, ApiError>,), Error = warp::Rejection> + Clone {
    json_body::<Value>(DEFAULT_BODY_LIMIT).map(|body: Value| match body {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::invalid_json("expected a JSON object")),
    })
}
