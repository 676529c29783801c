//! The token guard against a real HTTP server standing in for auth, and a real RabbitMQ for the
//! logout broadcast.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use common::{ApiError, TokenGuard, openapi};
use rabbit::{AUTH_EXCHANGE, Envelope, ExchangeKind, LOGOUT, Rabbit, Topology, USER_CHANGED};
use serde_json::json;
use testkit::{Vhost, eventually};
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::{Filter, Reply};

const TTL: Duration = Duration::from_secs(600);

/// Answers `/users/current` like auth: tokens named `user-<id>-*` belong to a user with that id
/// (an admin once the id is granted), `admin-*` to an admin, revoked or other tokens get 401. Counts the calls and takes a little time, as a real
/// lookup does, so that concurrent misses overlap.
#[derive(Clone, Default)]
struct StandIn {
    calls: Arc<AtomicUsize>,
    revoked: Arc<Mutex<HashSet<String>>>,
    /// User ids made admins.
    granted: Arc<Mutex<HashSet<String>>>,
    /// Notified when a request has been answered in principle and is on its way back.
    answering: Arc<Notify>,
    /// The `correlation_id` header of the last call.
    correlation_id: Arc<Mutex<Option<String>>>,
}

impl StandIn {
    async fn start(&self) -> SocketAddr {
        let state = self.clone();
        let route = warp::path!("users" / "current")
            .and(warp::header::<String>("authorization"))
            .and(warp::header::optional::<String>("correlation_id"))
            .then(
                move |authorization: String, correlation_id: Option<String>| {
                    let state = state.clone();
                    async move {
                        state.calls.fetch_add(1, Ordering::SeqCst);
                        *state.correlation_id.lock().unwrap() = correlation_id;
                        let token = authorization.trim_start_matches("Bearer ").to_owned();
                        let id = token.split('-').nth(1).unwrap_or("1").to_owned();
                        let permissions = match token.split('-').next() {
                            _ if state.revoked.lock().unwrap().contains(&token) => None,
                            Some("user") if state.granted.lock().unwrap().contains(&id) => {
                                Some(vec!["user", "admin"])
                            }
                            Some("user") => Some(vec!["user"]),
                            Some("admin") => Some(vec!["user", "admin"]),
                            _ => None,
                        };
                        state.answering.notify_one();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match permissions {
                            Some(permissions) => warp::reply::with_status(
                                warp::reply::json(&json!({"id": id, "name": "n", "login": token,
                                "permissions": permissions, "enabled": true})),
                                StatusCode::OK,
                            ),
                            None => warp::reply::with_status(
                                warp::reply::json(&json!({"error": "Unauthorized"})),
                                StatusCode::UNAUTHORIZED,
                            ),
                        }
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        addr
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn guard_with_stand_in() -> (TokenGuard, StandIn) {
    let stand_in = StandIn::default();
    let addr = stand_in.start().await;
    (TokenGuard::new(&format!("http://{addr}"), TTL), stand_in)
}

/// A fresh vhost with the `auth` fanout, and a guard consuming it; stops when dropped.
struct Bus {
    rabbit: Rabbit,
    vhost: Vhost,
    _stop: tokio_util::sync::DropGuard,
}

impl Bus {
    /// Returns once `guard` listens: its subscription's forgetting of every cached token is
    /// behind, so what a test caches from now on stays until a broadcast evicts it. A probe
    /// token's logout is broadcast until the probe is refused (evicted, or forgotten on
    /// subscribing: either way the subscription is live).
    async fn until_listening(&self, guard: &TokenGuard, stand_in: &StandIn) {
        guard
            .check(Some("Bearer user-probe"), None, "c")
            .await
            .unwrap();
        stand_in.revoked.lock().unwrap().insert("user-probe".into());
        let logout = Envelope::new(LOGOUT, "c", "Bearer user-probe".to_owned());
        let listening = eventually(Duration::from_secs(15), || async {
            self.rabbit
                .broadcast(AUTH_EXCHANGE, "", &logout)
                .await
                .unwrap();
            matches!(
                guard.check(Some("Bearer user-probe"), None, "c").await,
                Err(ApiError::Unauthorized)
            )
        })
        .await;
        assert!(listening, "the guard never listened to the auth fanout");
    }

    async fn listened_to_by(guard: &TokenGuard) -> Self {
        let vhost = Vhost::create().await;
        let shutdown = CancellationToken::new();
        let topology = Topology::default().exchange(AUTH_EXCHANGE, ExchangeKind::Fanout);
        // The bus plays auth: `guest` may name it as the sender.
        let rabbit =
            Rabbit::start(&vhost.amqp_url(), topology, shutdown.clone()).speaking_as("auth");
        guard.listen_for_logouts(&rabbit);
        Self {
            rabbit,
            vhost,
            _stop: shutdown.drop_guard(),
        }
    }
}

#[tokio::test]
async fn concurrent_checks_of_one_token_call_auth_once() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let checks = (0..50).map(|_| guard.check(Some("Bearer user-a"), Some("user"), "c"));
    for result in futures_util::future::join_all(checks).await {
        assert_eq!(result.unwrap().login, "user-a");
    }
    assert_eq!(stand_in.calls(), 1);

    guard.check(Some("bearer user-a"), None, "c").await.unwrap();
    assert_eq!(stand_in.calls(), 1, "served from the cache");
}

#[tokio::test]
async fn refused_tokens_are_unauthorized_and_missing_permissions_forbidden() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let check = |header: Option<&'static str>, permission| guard.check(header, permission, "c");
    assert!(matches!(
        check(None, None).await,
        Err(ApiError::Unauthorized)
    ));
    assert!(matches!(
        check(Some("Basic user-a"), None).await,
        Err(ApiError::Unauthorized)
    ));
    assert_eq!(stand_in.calls(), 0, "malformed headers never reach auth");

    assert!(matches!(
        check(Some("Bearer forged"), None).await,
        Err(ApiError::Unauthorized)
    ));
    assert!(matches!(
        check(Some("Bearer user-a"), Some("admin")).await,
        Err(ApiError::Forbidden)
    ));
    assert!(check(Some("Bearer admin-a"), Some("admin")).await.is_ok());
}

#[tokio::test]
async fn auth_unreachable_gives_503_never_401() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = listener.local_addr().unwrap();
    drop(listener);
    let guard = TokenGuard::new(&format!("http://{closed_port}"), TTL);
    let result = guard.check(Some("Bearer user-a"), None, "c").await;
    assert!(
        matches!(result, Err(ApiError::Unavailable("auth"))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_logout_broadcast_evicts_the_token_without_waiting_for_the_ttl() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let bus = Bus::listened_to_by(&guard).await;
    bus.until_listening(&guard, &stand_in).await;
    let rabbit = &bus.rabbit;

    guard.check(Some("Bearer user-a"), None, "c").await.unwrap();
    guard.check(Some("Bearer user-b"), None, "c").await.unwrap();
    stand_in.revoked.lock().unwrap().insert("user-a".into());
    let logout = Envelope::new(LOGOUT, "c", "Bearer user-a".to_owned());

    let evicted = eventually(Duration::from_secs(15), || async {
        rabbit.broadcast(AUTH_EXCHANGE, "", &logout).await.unwrap();
        matches!(
            guard.check(Some("Bearer user-a"), None, "c").await,
            Err(ApiError::Unauthorized)
        )
    })
    .await;
    assert!(evicted);
    let calls = stand_in.calls();
    guard.check(Some("Bearer user-b"), None, "c").await.unwrap();
    assert_eq!(stand_in.calls(), calls, "other tokens stay cached");
}

#[tokio::test]
async fn a_user_change_broadcast_evicts_every_token_of_that_user_and_no_other() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let bus = Bus::listened_to_by(&guard).await;
    bus.until_listening(&guard, &stand_in).await;
    let rabbit = &bus.rabbit;
    let is_admin = |token: &'static str| {
        let guard = guard.clone();
        async move { guard.check(Some(token), Some("admin"), "c").await.is_ok() }
    };
    assert!(!is_admin("Bearer user-a-1").await);
    assert!(!is_admin("Bearer user-a-2").await);
    guard
        .check(Some("Bearer user-b-1"), None, "c")
        .await
        .unwrap();

    // Auth grants admin to user a and broadcasts the user's id, not its live tokens.
    stand_in.granted.lock().unwrap().insert("a".into());
    let changed = Envelope::new(USER_CHANGED, "c", "a".to_owned());
    let evicted = eventually(Duration::from_secs(15), || async {
        rabbit.broadcast(AUTH_EXCHANGE, "", &changed).await.unwrap();
        is_admin("Bearer user-a-1").await
    })
    .await;

    assert!(evicted, "the grant never showed");
    assert!(is_admin("Bearer user-a-2").await, "every token of the user");
    let calls = stand_in.calls();
    guard
        .check(Some("Bearer user-b-1"), None, "c")
        .await
        .unwrap();
    assert_eq!(stand_in.calls(), calls, "other users' tokens stay cached");
}

#[tokio::test]
async fn an_oversized_token_is_refused_without_asking_auth() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let header = format!("Bearer user-{}", "a".repeat(common::guard::MAX_TOKEN_BYTES));

    let checked = guard.check(Some(&header), None, "c").await;

    assert!(
        matches!(checked, Err(ApiError::Unauthorized)),
        "{checked:?}"
    );
    assert_eq!(stand_in.calls(), 0);
}

#[tokio::test]
async fn the_admin_filter_answers_403_json_through_the_app() {
    let (guard, _stand_in) = guard_with_stand_in().await;
    let route = warp::path!("admin")
        .and(guard.admin())
        .map(|_user| warp::reply::json(&json!({})).into_response())
        .boxed();
    let app = common::http::app(route, &openapi::Document::default());
    let request = |token: &str| {
        warp::test::request()
            .path("/admin")
            .header("authorization", format!("Bearer {token}"))
    };
    let response = request("user-a").reply(&app).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.body(), r#"{"error":"Forbidden"}"#);
    assert_eq!(
        request("admin-a").reply(&app).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        request("nobody").reply(&app).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_logout_during_a_check_is_not_undone_by_the_answer_in_flight() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let check = tokio::spawn({
        let guard = guard.clone();
        async move { guard.check(Some("Bearer user-a"), None, "c").await }
    });
    // auth has judged the token valid and its answer is on the way when the token is revoked.
    stand_in.answering.notified().await;
    stand_in.revoked.lock().unwrap().insert("user-a".into());
    guard.evict("user-a").await;

    let in_flight = check.await.unwrap();
    assert!(
        matches!(in_flight, Err(ApiError::Unauthorized)),
        "{in_flight:?}"
    );
    let later = guard.check(Some("Bearer user-a"), None, "c").await;
    assert!(matches!(later, Err(ApiError::Unauthorized)), "{later:?}");
}

#[tokio::test]
async fn a_resubscription_forgets_every_cached_token() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let bus = Bus::listened_to_by(&guard).await;
    let vhost = &bus.vhost;
    assert!(
        eventually(Duration::from_secs(15), || async {
            vhost.consumer_count().await == 1
        })
        .await
    );

    guard.check(Some("Bearer user-a"), None, "c").await.unwrap();
    let calls = stand_in.calls();
    // While the logout queue is gone, broadcasts reach nobody: a new subscription must not trust
    // what was cached before it.
    let closed = vhost.close_connections().await;
    assert!(vhost.wait_for_new_connection(&closed).await);
    let forgotten = eventually(Duration::from_secs(15), || async {
        guard.check(Some("Bearer user-a"), None, "c").await.unwrap();
        stand_in.calls() > calls
    })
    .await;
    assert!(forgotten);
}

#[tokio::test]
async fn auth_sees_the_correlation_id_the_response_echoes() {
    let (guard, stand_in) = guard_with_stand_in().await;
    let route = warp::path!("me")
        .and(guard.authenticated())
        .then(|caller: common::Caller| {
            common::http::respond(caller.correlation_id, async { Ok(json!({})) })
        })
        .boxed();
    let response = warp::test::request()
        .path("/me")
        .header("authorization", "Bearer user-a")
        .reply(&common::http::app(route, &openapi::Document::default()))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.headers()["correlation_id"].to_str().unwrap();
    assert_eq!(
        stand_in.correlation_id.lock().unwrap().as_deref(),
        Some(echoed)
    );
}
