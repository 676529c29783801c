//! Routes and handlers (CONTRACT section 5): parse, call the service, build the reply.

use std::sync::Arc;

use bytes::Bytes;
use common::http::{correlation_id, health, json_body, optional_header, respond, respond_with};
use common::{ApiError, Caller, TokenGuard};
use rabbit::Rabbit;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::service::{Body, Images, SIZES, UploadTicket};

/// Images never change, so browsers and proxies may keep them for a year.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

#[derive(Deserialize)]
struct Upload {
    image: Option<String>,
}

pub fn routes(
    images: Arc<Images>,
    guard: &TokenGuard,
    rabbit: Rabbit,
    body_limit: u64,
) -> BoxedFilter<(Response,)> {
    let state = {
        let images = images.clone();
        warp::any().map(move || images.clone())
    };

    let upload = warp::path!("images" / "create")
        .or(warp::path!("images"))
        .unify()
        .and(warp::post())
        .and(guard.user())
        .and(state.clone())
        // A place in the upload queue before the body is read: a refused upload costs no memory.
        .and_then(|caller: Caller, images: Arc<Images>| async move {
            match images.admit_upload() {
                Ok(ticket) => Ok((caller, images, ticket)),
                Err(error) => Err(Rejection::from(error)),
            }
        })
        .untuple_one()
        .and(json_body::<Upload>(body_limit))
        .then(
            |caller: Caller, images: Arc<Images>, ticket: UploadTicket, upload: Upload| {
                respond(caller.correlation_id, async move {
                    let image = upload
                        .image
                        .ok_or_else(|| ApiError::field("image", "is required"))?;
                    let id = images.upload(ticket, image).await?;
                    Ok(json!({ "id": id }))
                })
            },
        );

    // `wanted` says which body a route answers for a `Size`.
    let download = |path: BoxedFilter<(String,)>, wanted: fn(Option<u32>) -> Body| {
        path.and(warp::get())
            .and(state.clone())
            .and(correlation_id())
            .and(size())
            .and(optional_header("if-none-match"))
            .then(
                move |id: String, images: Arc<Images>, cid, size, if_none_match: Option<String>| {
                    respond_with(cid, async move {
                        let body = wanted(size?);
                        let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
                        let etag = etag(id, body);
                        if matches(if_none_match.as_deref(), &etag) {
                            // `*` or a guessed tag must not make an unknown id look like an image.
                            if !images.exists(id, body).await? {
                                return Err(ApiError::NotFound);
                            }
                            return Ok(cached(StatusCode::NOT_MODIFIED.into_response(), &etag));
                        }
                        let bytes = images.body(id, body).await?;
                        Ok(cached(reply(bytes, body.content_type()), &etag))
                    })
                },
            )
    };
    let json = download(warp::path!("images" / String).boxed(), Body::json);
    let jpeg = download(warp::path!("images" / String / "jpeg").boxed(), Body::Jpeg);

    let health = health(move || {
        let images = images.clone();
        let rabbitmq = rabbit.is_connected();
        async move {
            vec![
                ("redis", images.store().ping().await),
                ("rabbitmq", rabbitmq),
            ]
        }
    });

    upload
        .boxed()
        .or(json.boxed())
        .unify()
        .or(jpeg.boxed())
        .unify()
        .or(health)
        .unify()
        .boxed()
}

/// `Size` from the query string, else from the header; absent is the original size.
fn size()
-> impl Filter<Extract = (Result<Option<u32>, ApiError>,), Error = std::convert::Infallible> + Clone
{
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and(optional_header("size"))
        .map(|query: String, header: Option<String>| {
            let from_query = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == "Size")
                .map(|(_, value)| value.to_owned());
            match from_query.or(header) {
                None => Ok(None),
                Some(value) => value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|size| SIZES.contains(size))
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError::field("Size", "must be one of 160, 320, 640, 800, 1024, 1200")
                    }),
            }
        })
}

/// A 200 with the body as it is kept in memory: no copy, and hyper sets `Content-Length` from
/// its exact size.
fn reply(bytes: Bytes, content_type: &'static str) -> Response {
    let mut response = Response::new(bytes.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Strong: the bytes behind an image id and body never change.
fn etag(id: Uuid, body: Body) -> String {
    format!("\"{}-{}\"", id.simple(), body.name())
}

fn matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|header| {
        header
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == etag || tag == "*")
    })
}

fn cached(mut response: Response, etag: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}
