//! Routes and handlers: parse, call the service, map the result (CONTRACT section 4).

use std::sync::Arc;

use common::http::{
    DEFAULT_BODY_LIMIT, correlation_id, health, json_body, optional_header, respond,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::service::{Auth, Session, to_user};

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

    let current = warp::path!("users" / "current")
        .and(warp::get())
        .and(session.clone())
        .and(correlation_id())
        .then(|session: Session, cid| respond(cid, async move { Ok(to_user(&session.user)) }));

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
