//! The token guard (CONTRACT section 3): checks bearer tokens through auth's `/users/current`,
//! caches the answer under the raw token, and forgets a token as soon as auth broadcasts its
//! revocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use rabbit::{AUTH_EXCHANGE, Consumer, Rabbit};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use warp::filters::BoxedFilter;
use warp::{Filter, Rejection};

use crate::ApiError;
use crate::http::{CORRELATION_ID, correlation_id, optional_header};

/// How long a call to auth may take before the request answers 503.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the memory a flood of distinct tokens can take.
const MAX_CACHED_TOKENS: u64 = 100_000;

/// The user a valid token belongs to, as auth's `/users/current` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub login: String,
    pub permissions: Vec<String>,
    pub enabled: bool,
}

impl User {
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|held| held == permission)
    }
}

/// The raw token of an `Authorization: bearer <token>` header (scheme case-insensitive, one space).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let valid = scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ');
    valid.then_some(token)
}

/// Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct TokenGuard {
    http: reqwest::Client,
    current_user_url: String,
    /// `None` remembers a token auth refused: a refused token never becomes valid again (signout,
    /// password change and disable revoke tokens for good), so forged tokens cost one call each.
    cache: Cache<String, Option<Arc<User>>>,
    /// Counts evictions. An eviction cannot reach an answer still on its way from auth (moka
    /// inserts it after), so a check that saw the count move re-asks instead of trusting it.
    evictions: Arc<AtomicU64>,
}

impl TokenGuard {
    pub fn new(auth_service_url: &str, ttl: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(AUTH_TIMEOUT)
            .build()
            .expect("TLS backend available");
        Self {
            http,
            current_user_url: format!("{}/users/current", auth_service_url.trim_end_matches('/')),
            cache: Cache::builder()
                .max_capacity(MAX_CACHED_TOKENS)
                .time_to_live(ttl)
                .build(),
            evictions: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The user of the `Authorization` header's token, holding `permission` when one is named.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        permission: Option<&str>,
        correlation_id: &str,
    ) -> Result<Arc<User>, ApiError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let user = self
            .cached_answer(token, correlation_id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        match permission {
            Some(permission) if !user.has(permission) => Err(ApiError::Forbidden),
            _ => Ok(user),
        }
    }

    /// Auth's answer for `token`, from the cache or from one call shared by concurrent misses.
    async fn cached_answer(
        &self,
        token: &str,
        correlation_id: &str,
    ) -> Result<Option<Arc<User>>, ApiError> {
        const ATTEMPTS: usize = 3;
        for _ in 1..ATTEMPTS {
            let evictions = self.evictions.load(Ordering::Acquire);
            let answer = self.get_or_ask(token, correlation_id).await?;
            if self.evictions.load(Ordering::Acquire) == evictions {
                return Ok(answer);
            }
            // Maybe answered before a revocation and cached after its eviction: ask again.
            self.cache.invalidate(token).await;
        }
        self.get_or_ask(token, correlation_id).await
    }

    async fn get_or_ask(
        &self,
        token: &str,
        correlation_id: &str,
    ) -> Result<Option<Arc<User>>, ApiError> {
        self.cache
            .try_get_with_by_ref(token, self.ask_auth(token, correlation_id))
            .await
            .map_err(|error| (*error).clone())
    }

    async fn ask_auth(
        &self,
        token: &str,
        correlation_id: &str,
    ) -> Result<Option<Arc<User>>, ApiError> {
        let unavailable = |error: reqwest::Error| {
            tracing::warn!(%error, "auth unreachable");
            ApiError::Unavailable("auth")
        };
        let response = self
            .http
            .get(&self.current_user_url)
            .bearer_auth(token)
            .header(CORRELATION_ID, correlation_id)
            .send()
            .await
            .map_err(unavailable)?;
        match response.status() {
            reqwest::StatusCode::OK => {
                let user: User = response.json().await.map_err(unavailable)?;
                Ok(user.enabled.then(|| Arc::new(user)))
            }
            reqwest::StatusCode::UNAUTHORIZED => Ok(None),
            status => {
                tracing::warn!(%status, "unexpected answer from auth");
                Err(ApiError::Unavailable("auth"))
            }
        }
    }

    /// Forgets a token (a leading `Bearer ` is tolerated, as in the logout broadcast).
    pub async fn evict(&self, token: &str) {
        let token = bearer_token(token).unwrap_or(token);
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(token).await;
    }

    /// Forgets every token: logouts broadcast while this instance was not subscribed are lost.
    fn evict_all(&self) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    /// Evicts every token auth broadcasts on the `auth` fanout, across reconnects, until shutdown,
    /// and the whole cache each time the instance (re)subscribes.
    pub fn listen_for_logouts(&self, rabbit: &Rabbit) -> JoinHandle<()> {
        let guard = self.clone();
        let forget = self.clone();
        let consumer = Consumer {
            on_subscribed: Some(Arc::new(move || forget.evict_all())),
            ..Consumer::broadcast(AUTH_EXCHANGE)
        };
        rabbit.consume(consumer, move |message: Arc<rabbit::Message<String>>| {
            let guard = guard.clone();
            async move {
                guard.evict(&message.envelope.message).await;
                Ok(())
            }
        })
    }

    /// Any valid token.
    pub fn authenticated(&self) -> BoxedFilter<(Caller,)> {
        self.filter(None)
    }

    /// A valid token holding the `user` permission.
    pub fn user(&self) -> BoxedFilter<(Caller,)> {
        self.filter(Some("user"))
    }

    /// A valid token holding the `admin` permission.
    pub fn admin(&self) -> BoxedFilter<(Caller,)> {
        self.filter(Some("admin"))
    }

    fn filter(&self, permission: Option<&'static str>) -> BoxedFilter<(Caller,)> {
        let guard = self.clone();
        optional_header("authorization")
            .and(correlation_id())
            .and_then(
                move |authorization: Option<String>, correlation_id: String| {
                    let guard = guard.clone();
                    async move {
                        match guard
                            .check(authorization.as_deref(), permission, &correlation_id)
                            .await
                        {
                            Ok(user) => Ok(Caller {
                                user,
                                correlation_id,
                            }),
                            Err(error) => Err(Rejection::from(error)),
                        }
                    }
                },
            )
            .boxed()
    }
}

/// The authenticated caller of a request, with the request's correlation id: the one sent to auth
/// is the one the handler logs, publishes and echoes, even when the client sent none.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Arc<User>,
    pub correlation_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
    }

    #[test]
    fn malformed_headers_carry_no_token() {
        for header in [
            "abc",
            "Basic abc",
            "bearer ",
            "bearer  abc",
            "bearer a b",
            "",
        ] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn permissions_are_matched_exactly() {
        let user = User {
            id: "1".into(),
            name: "n".into(),
            login: "login".into(),
            permissions: vec!["user".into()],
            enabled: true,
        };
        assert!(user.has("user"));
        assert!(!user.has("admin"));
        assert!(!user.has("use"));
    }
}
