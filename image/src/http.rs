//! Routes and handlers (CONTRACT section 5): parse, call the service, build the reply.

use std::sync::Arc;

use bytes::Bytes;
use common::http::{correlation_id, health, json_body, optional_header, respond, respond_with};
use common::{ApiError, Caller, TokenGuard, openapi};
use rabbit::Rabbit;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::service::{Body, Images, SIZES, UploadTicket};

/// Images never change, so browsers and proxies may keep them for a year.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Other fields are ignored.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"image": "data:image/jpeg;base64,/9j/4AAQSkZJRg..."}))]
struct Upload {
    /// A data URL of a JPEG or PNG image: `data:image/jpeg;base64,...` or `data:image/png;...`.
    #[schema(required = true, value_type = String)]
    image: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Uploaded {
    /// The new image's id.
    id: Uuid,
}

/// `GET /images/{id}`'s body.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only: the body is built once per variant and kept as bytes
struct ImageJson {
    id: String,
    /// The image as a data URL: the original, or with a `Size` a JPEG at most that wide.
    image: String,
}

/// `Size`: the width of the JPEG variant wanted, from the query (or the `Size` header).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents size(), which reads the query and the header alike
struct SizeQuery {
    /// One of 160, 320, 640, 800, 1024, 1200; absent is full size. Also taken from a `Size`
    /// header.
    #[param(rename = "Size", required = false)]
    size: Option<u32>,
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
        .then(upload);

    let download = |path: BoxedFilter<(String,)>| {
        path.and(warp::get())
            .and(state.clone())
            .and(correlation_id())
            .and(size())
            .and(optional_header("if-none-match"))
    };
    let json = download(warp::path!("images" / String).boxed()).then(download_json);
    let jpeg = download(warp::path!("images" / String / "jpeg").boxed()).then(download_jpeg);

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

/// Image's OpenAPI document, from the handlers below.
pub fn document() -> openapi::Document {
    #[derive(OpenApi)]
    #[openapi(
        paths(upload, download_json, download_jpeg),
        components(schemas(Upload, Uploaded, ImageJson)),
        tags((name = "images", description = "Uploads, and downloads at any of six widths"))
    )]
    struct ImageApi;
    openapi::document(
        ImageApi::openapi(),
        "image",
        "JPEG and PNG images uploaded as base64 data URLs, downloaded as JSON or JPEG bytes; \
         resized variants are computed once and kept. Images never change: downloads carry a \
         strong `ETag` and answer `If-None-Match` with 304.",
    )
}

/// Uploads an image (permission user).
#[utoipa::path(
    post,
    path = "/images/create",
    tag = "images",
    request_body = Upload,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored (`POST /images` too)", body = Uploaded),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn upload(
    caller: Caller,
    images: Arc<Images>,
    ticket: UploadTicket,
    body: Upload,
) -> Response {
    respond(caller.correlation_id, async move {
        let image = body
            .image
            .ok_or_else(|| ApiError::field("image", "is required"))?;
        let id = images.upload(ticket, image).await?;
        Ok(Uploaded { id })
    })
    .await
}

/// An image as JSON.
///
/// `{"id","image"}` with the image as a data URL.
#[utoipa::path(
    get,
    path = "/images/{id}",
    tag = "images",
    params(
        ("id" = String, Path, description = "The image's id (a UUID)"),
        SizeQuery,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` already held"),
    ),
    responses(
        (status = 200, description = "The image", body = ImageJson, headers(
            ("ETag" = String, description = "Strong: the bytes never change"),
            ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`"))),
        (status = 304, description = "The `ETag` held is current"),
        (status = 400, response = openapi::BadRequest),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn download_json(
    id: String,
    images: Arc<Images>,
    correlation_id: String,
    size: Result<Option<u32>, ApiError>,
    if_none_match: Option<String>,
) -> Response {
    download(id, images, correlation_id, size, if_none_match, Body::json).await
}

/// An image as JPEG bytes (the original converted when it is a PNG).
#[utoipa::path(
    get,
    path = "/images/{id}/jpeg",
    tag = "images",
    params(
        ("id" = String, Path, description = "The image's id (a UUID)"),
        SizeQuery,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` already held"),
    ),
    responses(
        (status = 200, description = "The JPEG", content_type = "image/jpeg", body = Vec<u8>,
            headers(
                ("ETag" = String, description = "Strong: the bytes never change"),
                ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`"))),
        (status = 304, description = "The `ETag` held is current"),
        (status = 400, response = openapi::BadRequest),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn download_jpeg(
    id: String,
    images: Arc<Images>,
    correlation_id: String,
    size: Result<Option<u32>, ApiError>,
    if_none_match: Option<String>,
) -> Response {
    download(id, images, correlation_id, size, if_none_match, Body::Jpeg).await
}

/// `wanted` says which body the route answers for a `Size`.
async fn download(
    id: String,
    images: Arc<Images>,
    correlation_id: String,
    size: Result<Option<u32>, ApiError>,
    if_none_match: Option<String>,
    wanted: fn(Option<u32>) -> Body,
) -> Response {
    respond_with(correlation_id, async move {
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
    .await
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
