//! Routes and handlers: parse, call the service, map the result (CONTRACT section 4).

use std::sync::Arc;

use common::http::{
    DEFAULT_BODY_LIMIT, correlation_id, health, json_body, optional_header, respond, respond_with,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::service::{Auth, Session};

/// Signup creates a user, so any field beyond these is refused rather than ignored: a
/// `permissions` or `enabled` sent here must never be mistaken for being honoured.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signup {
    name: Option<String>,
    login: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct Signin {
    login: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordChange {
    current_password: Option<String>,
    new_password: Option<String>,
}

#[derive(Deserialize)]
struct Permissions {
    permissions: Option<Vec<String>>,
}

#[derive(Serialize)]
struct TokenReply {
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
    };

    let signup = warp::path!("users" / "signup")
        .and(warp::post())
        .and(state.clone())
        .and(correlation_id())
        .and(json_body::<Signup>(DEFAULT_BODY_LIMIT))
        .then(|auth: Arc<Auth>, cid, body: Signup| {
            respond(cid, async move {
                let token = auth
                    .signup(text(&body.name), text(&body.login), text(&body.password))
                    .await?;
                Ok(TokenReply { token })
            })
        });

    let signin = warp::path!("users" / "signin")
        .and(warp::post())
        .and(state.clone())
        .and(correlation_id())
        .and(json_body::<Signin>(DEFAULT_BODY_LIMIT))
        .then(|auth: Arc<Auth>, cid, body: Signin| {
            respond(cid, async move {
                let token = auth.signin(text(&body.login), text(&body.password)).await?;
                Ok(TokenReply { token })
            })
        });

    let signout = warp::path!("users" / "signout")
        .and(warp::get().or(warp::post()).unify())
        .and(state.clone())
        .and(session.clone())
        .and(correlation_id())
        .then(|auth: Arc<Auth>, session, cid: String| {
            respond(cid.clone(), async move {
                auth.signout(session, &cid).await?;
                Ok(json!({}))
            })
        });

    // From memory, unless the caller asks past caches (as the other services' token guards do).
    let current = warp::path!("users" / "current")
        .and(warp::get())
        .and(state.clone())
        .and(optional_header("authorization"))
        .and(optional_header("cache-control"))
        .and(correlation_id())
        .then(
            |auth: Arc<Auth>, authorization: Option<String>, cache_control: Option<String>, cid| {
                respond_with(cid, async move {
                    let fresh = asks_past_caches(cache_control.as_deref());
                    let user = auth.current_user(authorization.as_deref(), fresh).await?;
                    Ok(warp::reply::json(user.as_ref()))
                })
            },
        );

    let password = warp::path!("users" / "password")
        .and(warp::post())
        .and(state.clone())
        .and(session.clone())
        .and(correlation_id())
        .and(json_body::<PasswordChange>(DEFAULT_BODY_LIMIT))
        .then(
            |auth: Arc<Auth>, session, cid: String, body: PasswordChange| {
                respond(cid.clone(), async move {
                    let (current, new) = (text(&body.current_password), text(&body.new_password));
                    auth.change_password(session, current, new, &cid).await?;
                    Ok(json!({}))
                })
            },
        );

    let all = warp::path!("users" / "all")
        .and(warp::get())
        .and(state.clone())
        .and(admin.clone())
        .and(correlation_id())
        .then(|auth: Arc<Auth>, _admin: Session, cid| {
            respond(cid, async move { auth.all_users().await })
        });

    let enable = user_action("enable")
        .and(state.clone())
        .and(admin.clone())
        .and(correlation_id())
        .then(|id: String, auth: Arc<Auth>, admin: Session, cid: String| {
            respond(cid.clone(), async move {
                auth.set_enabled(&admin, &id, true, &cid).await?;
                Ok(json!({}))
            })
        });

    let disable = user_action("disable")
        .and(state.clone())
        .and(admin.clone())
        .and(correlation_id())
        .then(|id: String, auth: Arc<Auth>, admin: Session, cid: String| {
            respond(cid.clone(), async move {
                auth.set_enabled(&admin, &id, false, &cid).await?;
                Ok(json!({}))
            })
        });

    let permissions = |action: &'static str, grant: bool| {
        user_action(action)
            .and(state.clone())
            .and(admin.clone())
            .and(correlation_id())
            .and(json_body::<Permissions>(DEFAULT_BODY_LIMIT))
            .then(
                move |id: String,
                      auth: Arc<Auth>,
                      _admin: Session,
                      cid: String,
                      body: Permissions| {
                    respond(cid.clone(), async move {
                        let permissions = body.permissions.unwrap_or_default();
                        auth.change_permissions(&id, &permissions, grant, &cid)
                            .await?;
                        Ok(json!({}))
                    })
                },
            )
    };

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
        permissions("grant", true).boxed(),
        permissions("revoke", false).boxed(),
        health,
    ]
    .into_iter()
    .reduce(|routes, route| routes.or(route).unify().boxed())
    .expect("at least one route")
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
