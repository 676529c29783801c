//! Routes and handlers: parse, call the service, map the result (CONTRACT section 4).

use std::sync::Arc;

use common::http::{
    DEFAULT_BODY_LIMIT, correlation_id, health, json_body, optional_header, respond, respond_with,
};
use common::{ApiError, User, openapi};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::service::{Auth, Session};

/// Signup creates a user, so any field beyond these is refused rather than ignored: a
/// `permissions` or `enabled` sent here must never be mistaken for being honoured.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Alice", "login": "alice", "password": "correct horse"}))]
struct Signup {
    /// 1 to 100 characters, not all spaces, no control character.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    name: Option<String>,
    /// 5 to 100 characters, no space or control character; unique.
    #[schema(required = true, value_type = String, min_length = 5, max_length = 100,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F]*$")]
    login: Option<String>,
    /// 8 to 128 characters.
    #[schema(required = true, value_type = String, min_length = 8, max_length = 128)]
    password: Option<String>,
}

/// Other fields are ignored.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"login": "alice", "password": "correct horse"}))]
struct Signin {
    #[schema(required = true, value_type = String)]
    login: Option<String>,
    #[schema(required = true, value_type = String)]
    password: Option<String>,
}

/// Other fields are ignored.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PasswordChange {
    #[schema(required = true, value_type = String)]
    current_password: Option<String>,
    /// 8 to 128 characters.
    #[schema(required = true, value_type = String, min_length = 8, max_length = 128)]
    new_password: Option<String>,
}

/// Other fields of the user JSON are ignored, so a client may send back the user it read; its
/// `id` must then be the user of the path.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"permissions": ["editor"]}))]
struct Permissions {
    /// Trimmed; at least one, none empty.
    #[schema(required = true, value_type = Vec<String>, min_items = 1)]
    permissions: Option<Vec<String>>,
    /// The user's `id`, when the body is the user JSON as read: it must be the user of the path.
    id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TokenReply {
    /// A JWT that never expires; revoked at signout.
    token: String,
}

pub fn routes(auth: Arc<Auth>) -> BoxedFilter<(Response,)> {
    let state = {
        let auth = auth.clone();
        warp::any().map(move || auth.clone())
    };
    let session = state
        .clone()
        .and(optional_header("authorization"))
        .and_then(
            |auth: Arc<Auth>, authorization: Option<String>| async move {
                auth.authenticate(authorization.as_deref())
                    .await
                    .map_err(Rejection::from)
            },
        );
    let admin = session.clone().and_then(|session: Session| async move {
        session.require_admin().map_err(Rejection::from)
    });
    let user_action = |action: &'static str| {
        warp::path!("users" / String / String)
            .and_then(move |id: String, name: String| async move {
                if name == action {
                    Ok(id)
                } else {
                    Err(warp::reject::not_found())
                }
            })
            .and(warp::post())
            .and(state.clone())
            .and(admin.clone())
            .and(correlation_id())
    };

    let signup = warp::path!("users" / "signup")
        .and(warp::post())
        .and(state.clone())
        .and(correlation_id())
        .and(json_body::<Signup>(DEFAULT_BODY_LIMIT))
        .then(signup);

    let signin = warp::path!("users" / "signin")
        .and(warp::post())
        .and(state.clone())
        .and(correlation_id())
        .and(json_body::<Signin>(DEFAULT_BODY_LIMIT))
        .then(signin);

    let signout = warp::path!("users" / "signout")
        .and(warp::get().or(warp::post()).unify())
        .and(state.clone())
        .and(session.clone())
        .and(correlation_id())
        .then(signout);

    let current = warp::path!("users" / "current")
        .and(warp::get())
        .and(state.clone())
        .and(optional_header("authorization"))
        .and(optional_header("cache-control"))
        .and(correlation_id())
        .then(current_user);

    let password = warp::path!("users" / "password")
        .and(warp::post())
        .and(state.clone())
        .and(session.clone())
        .and(correlation_id())
        .and(json_body::<PasswordChange>(DEFAULT_BODY_LIMIT))
        .then(change_password);

    let all = warp::path!("users" / "all")
        .and(warp::get())
        .and(state.clone())
        .and(admin.clone())
        .and(correlation_id())
        .then(all_users);

    let enable = user_action("enable").then(enable_user);
    let disable = user_action("disable").then(disable_user);
    let grant = user_action("grant")
        .and(json_body::<Permissions>(DEFAULT_BODY_LIMIT))
        .then(grant_permissions);
    let revoke = user_action("revoke")
        .and(json_body::<Permissions>(DEFAULT_BODY_LIMIT))
        .then(revoke_permissions);

    let health = {
        let auth = auth.clone();
        health(move || {
            let auth = auth.clone();
            async move { auth.health().await }
        })
    };

    [
        signup.boxed(),
        signin.boxed(),
        signout.boxed(),
        current.boxed(),
        password.boxed(),
        all.boxed(),
        enable.boxed(),
        disable.boxed(),
        grant.boxed(),
        revoke.boxed(),
        health,
    ]
    .into_iter()
    .reduce(|routes, route| routes.or(route).unify().boxed())
    .expect("at least one route")
}

/// Auth's OpenAPI document, from the handlers below.
pub fn document() -> openapi::Document {
    #[derive(OpenApi)]
    #[openapi(
        paths(
            signup,
            signin,
            signout,
            current_user,
            change_password,
            all_users,
            enable_user,
            disable_user,
            grant_permissions,
            revoke_permissions
        ),
        components(schemas(Signup, Signin, PasswordChange, Permissions, TokenReply, User)),
        tags(
            (name = "users", description = "Signup, signin, signout and the current user"),
            (name = "admin", description = "What admins do to users"),
        )
    )]
    struct AuthApi;
    openapi::document(
        AuthApi::openapi(),
        "auth",
        "Users and their tokens: JWTs that never expire and are revoked at signout, each \
         revocation broadcast on the `auth` fanout exchange so every service drops its cached \
         copy. The first admin is made with Mongo tooling (see the README).",
    )
}

/// Signs a new user up.
///
/// The user has the permission `user`; the answer is its first token.
#[utoipa::path(
    post,
    path = "/users/signup",
    tag = "users",
    request_body = Signup,
    responses(
        (status = 200, description = "The new user's token", body = TokenReply),
        (status = 400, response = openapi::BadRequest),
        (status = 409, description = "The login is taken", body = openapi::FieldErrors,
            example = json!({"messages": [{"path": "login", "message": "already exists"}]})),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn signup(auth: Arc<Auth>, correlation_id: String, body: Signup) -> Response {
    respond(correlation_id, async move {
        let token = auth
            .signup(text(&body.name), text(&body.login), text(&body.password))
            .await?;
        Ok(TokenReply { token })
    })
    .await
}

/// A new token for a login and its password.
#[utoipa::path(
    post,
    path = "/users/signin",
    tag = "users",
    request_body = Signin,
    responses(
        (status = 200, description = "A new token", body = TokenReply),
        (status = 400, response = openapi::BadRequest),
        (status = 401, description = "Unknown login or wrong password (alike, and alike in time)",
            body = openapi::ErrorBody, example = json!({"error": "Invalid login or password"})),
        (status = 403, description = "The user is disabled", body = openapi::ErrorBody,
            example = json!({"error": "User disabled"})),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn signin(auth: Arc<Auth>, correlation_id: String, body: Signin) -> Response {
    respond(correlation_id, async move {
        let token = auth.signin(text(&body.login), text(&body.password)).await?;
        Ok(TokenReply { token })
    })
    .await
}

/// Signs the caller out (POST too).
///
/// Revokes the caller's token and broadcasts the revocation.
#[utoipa::path(
    get,
    path = "/users/signout",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = Object, example = json!({})),
        (status = 401, response = openapi::Unauthorized),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn signout(auth: Arc<Auth>, session: Session, correlation_id: String) -> Response {
    respond(correlation_id.clone(), async move {
        auth.signout(session, &correlation_id).await?;
        Ok(json!({}))
    })
    .await
}

/// The user a token belongs to.
///
/// Answered from memory, unless the request asks past caches (`Cache-Control: no-cache`,
/// `no-store` or `max-age=0`), as the other services' token guards do.
#[utoipa::path(
    get,
    path = "/users/current",
    tag = "users",
    params(("Cache-Control" = Option<String>, Header, description = "`no-cache` to read the store")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, response = openapi::Unauthorized),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn current_user(
    auth: Arc<Auth>,
    authorization: Option<String>,
    cache_control: Option<String>,
    correlation_id: String,
) -> Response {
    respond_with(correlation_id, async move {
        let fresh = asks_past_caches(cache_control.as_deref());
        let user = auth.current_user(authorization.as_deref(), fresh).await?;
        Ok(warp::reply::json(user.as_ref()))
    })
    .await
}

/// Changes the caller's password; the user's other tokens are revoked and broadcast.
#[utoipa::path(
    post,
    path = "/users/password",
    tag = "users",
    request_body = PasswordChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = Object, example = json!({})),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn change_password(
    auth: Arc<Auth>,
    session: Session,
    correlation_id: String,
    body: PasswordChange,
) -> Response {
    respond(correlation_id.clone(), async move {
        let (current, new) = (text(&body.current_password), text(&body.new_password));
        auth.change_password(session, current, new, &correlation_id)
            .await?;
        Ok(json!({}))
    })
    .await
}

/// Every user (admin).
#[utoipa::path(
    get,
    path = "/users/all",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user", body = Vec<User>),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn all_users(auth: Arc<Auth>, _admin: Session, correlation_id: String) -> Response {
    respond(correlation_id, async move { auth.all_users().await }).await
}

/// Enables a user (admin); its live tokens work again.
#[utoipa::path(
    post,
    path = "/users/{id}/enable",
    tag = "admin",
    params(("id" = String, Path, description = "The user's `id`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Enabled", body = Object, example = json!({})),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn enable_user(
    id: String,
    auth: Arc<Auth>,
    admin: Session,
    correlation_id: String,
) -> Response {
    respond(correlation_id.clone(), async move {
        auth.set_enabled(&admin, &id, true, &correlation_id).await?;
        Ok(json!({}))
    })
    .await
}

/// Disables a user (admin).
///
/// Every token of the user is revoked and broadcast. An admin cannot disable itself.
#[utoipa::path(
    post,
    path = "/users/{id}/disable",
    tag = "admin",
    params(("id" = String, Path, description = "The user's `id`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Disabled", body = Object, example = json!({})),
        (status = 400, description = "The admin named itself", body = openapi::ErrorBody,
            example = json!({"error": "An admin cannot disable itself"})),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn disable_user(
    id: String,
    auth: Arc<Auth>,
    admin: Session,
    correlation_id: String,
) -> Response {
    respond(correlation_id.clone(), async move {
        auth.set_enabled(&admin, &id, false, &correlation_id)
            .await?;
        Ok(json!({}))
    })
    .await
}

/// Grants permissions to a user (admin); other services drop their cached copy of its tokens.
#[utoipa::path(
    post,
    path = "/users/{id}/grant",
    tag = "admin",
    params(("id" = String, Path, description = "The user's `id`")),
    request_body = Permissions,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Granted", body = Object, example = json!({})),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn grant_permissions(
    id: String,
    auth: Arc<Auth>,
    admin: Session,
    correlation_id: String,
    body: Permissions,
) -> Response {
    change_permissions(id, auth, admin, correlation_id, body, true).await
}

/// Revokes permissions of a user (admin).
///
/// Other services drop their cached copy of the user's tokens. An admin cannot revoke its own
/// `admin` permission.
#[utoipa::path(
    post,
    path = "/users/{id}/revoke",
    tag = "admin",
    params(("id" = String, Path, description = "The user's `id`")),
    request_body = Permissions,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = Object, example = json!({})),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
        (status = 404, response = openapi::NotFound),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn revoke_permissions(
    id: String,
    auth: Arc<Auth>,
    admin: Session,
    correlation_id: String,
    body: Permissions,
) -> Response {
    change_permissions(id, auth, admin, correlation_id, body, false).await
}

async fn change_permissions(
    id: String,
    auth: Arc<Auth>,
    admin: Session,
    correlation_id: String,
    body: Permissions,
    grant: bool,
) -> Response {
    respond(correlation_id.clone(), async move {
        if body.id.as_ref().is_some_and(|sent| *sent != id) {
            return Err(ApiError::field("id", "names another user"));
        }
        let permissions = body.permissions.unwrap_or_default();
        auth.change_permissions(&admin, &id, &permissions, grant, &correlation_id)
            .await?;
        Ok(json!({}))
    })
    .await
}

/// A missing field reads as empty text, which the field rules then refuse with its path.
fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

/// Whether a request's `Cache-Control` forbids answering from a cache without checking:
/// `no-cache`, `no-store` or `max-age=0` (RFC 9111 request directives, case-insensitive).
fn asks_past_caches(cache_control: Option<&str>) -> bool {
    cache_control
        .into_iter()
        .flat_map(|value| value.split(','))
        .any(|directive| {
            let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            name.eq_ignore_ascii_case("no-cache")
                || name.eq_ignore_ascii_case("no-store")
                || (name.eq_ignore_ascii_case("max-age")
                    && argument.trim().trim_matches('"').parse() == Ok(0_u64))
        })
}

#[cfg(test)]
mod tests {
    use super::asks_past_caches;

    #[test]
    fn no_cache_no_store_and_max_age_0_ask_past_caches() {
        for value in [
            "no-cache",
            "No-Cache",
            "no-store",
            "max-age=0",
            "max-age=\"0\"",
            "max-age=00",
            "max-stale=10, no-cache",
            " max-age = 0 ",
        ] {
            assert!(asks_past_caches(Some(value)), "{value:?}");
        }
    }

    #[test]
    fn other_or_no_directives_accept_a_cached_answer() {
        for value in ["", "max-age=60", "max-age=00x", "no-transform", "private"] {
            assert!(!asks_past_caches(Some(value)), "{value:?}");
        }
        assert!(!asks_past_caches(None));
    }
}
