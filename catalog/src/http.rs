//! Routes and handlers (CONTRACT section 6): parse, call the store, build the reply. Reads are
//! public; writes need the `admin` permission. An update changing the stock carries the
//! `stockVersion` it read (in the body, or `If-Match: "<n>"`), else 409.

use common::http::{DEFAULT_BODY_LIMIT, correlation_id, health, json_body, respond, respond_with};
use common::{ApiError, Caller, TokenGuard};
use rabbit::Rabbit;
use serde_json::{Map, Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::article::{ArticleInput, fold};
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
        .then(|id: String, store: Store, cid| {
            respond(cid, async move {
                store.get(&id).await?.ok_or(ApiError::NotFound)
            })
        });

    let search = warp::path!("articles" / "search" / String)
        .and(warp::get())
        .and(page())
        .and(state.clone())
        .and(correlation_id())
        .then(|text: String, query: String, store: Store, cid| {
            respond(cid, async move {
                let text = search_text(&text).map_err(|error| ApiError::Validation(vec![error]))?;
                let page = Page::parse(&query).map_err(ApiError::Validation)?;
                Ok(store.search(&fold(&text), page).await?)
            })
        });

    let list = warp::path!("articles")
        .and(warp::get())
        .and(page())
        .and(state.clone())
        .and(correlation_id())
        .then(|query: String, store: Store, cid| {
            respond(cid, async move {
                let page = Page::parse(&query).map_err(ApiError::Validation)?;
                Ok(store.list(page).await?)
            })
        });

    let create = warp::path!("articles")
        .and(warp::post())
        .and(guard.admin())
        .and(article_body())
        .and(state.clone())
        .then(
            |caller: Caller, input: Result<ArticleInput, ApiError>, store: Store| {
                respond(caller.correlation_id, async move {
                    Ok(store.create(input?).await?)
                })
            },
        );

    let update = warp::path!("articles" / String)
        .and(warp::post().or(warp::put()).unify())
        .and(guard.admin())
        .and(article_body())
        .and(warp::header::optional::<String>("if-match"))
        .and(state.clone())
        .then(
            |id: String,
             caller: Caller,
             input: Result<ArticleInput, ApiError>,
             if_match: Option<String>,
             store: Store| {
                respond_with(caller.correlation_id, async move {
                    let mut input = input?;
                    if input.stock_version.is_none() {
                        input.stock_version = if_match.as_deref().and_then(read_version);
                    }
                    match store.update(&id, input).await {
                        Ok(article) => Ok(warp::reply::json(&article).into_response()),
                        Err(UpdateError::NotFound) => Err(ApiError::NotFound),
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
            },
        );

    let delete = warp::path!("articles" / String)
        .and(warp::delete())
        .and(guard.admin())
        .and(state)
        .then(|id: String, caller: Caller, store: Store| {
            respond(caller.correlation_id, async move {
                if store.disable(&id).await? {
                    Ok(json!({}))
                } else {
                    Err(ApiError::NotFound)
                }
            })
        });

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

/// An article body: a JSON object within the 64 KiB limit, its fields checked all at once.
fn article_body()
-> impl Filter<Extract = (Result<ArticleInput, ApiError>,), Error = warp::Rejection> + Clone {
    json_body::<Value>(DEFAULT_BODY_LIMIT).map(|body: Value| {
        let fields: Map<String, Value> = match body {
            Value::Object(fields) => fields,
            _ => return Err(ApiError::invalid_json("expected a JSON object")),
        };
        ArticleInput::parse(&fields).map_err(ApiError::Validation)
    })
}
