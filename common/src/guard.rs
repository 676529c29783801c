//! The token guard (CONTRACT section 3): checks bearer tokens through auth's `/users/current`,
//! caches the answer under a hash of the token, and forgets a token as soon as auth broadcasts
//! its revocation, or every token of a user as soon as auth broadcasts a change of that user. The
//! cache and its eviction ([`TokenCache`]) also serve auth's own `/users/current`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use rabbit::{AUTH_EXCHANGE, Consumer, LOGOUT, Rabbit, USER_CHANGED};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tracing::warn;
use warp::filters::BoxedFilter;
use warp::{Filter, Rejection};

use crate::ApiError;
use crate::http::{CORRELATION_ID, correlation_id, optional_header};

/// How long a call to auth may take before the request answers 503.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the memory a flood of distinct tokens can take: each entry is a 32-byte hash and, for
/// a valid token, a user whose fields auth bounds.
const MAX_CACHED_TOKENS: u64 = 100_000;
/// Longer tokens are refused unseen and never cached: auth's are about 200 bytes.
pub const MAX_TOKEN_BYTES: usize = 2048;

/// The user a valid token belongs to, as auth's `/users/current` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "6650c0ffee0000000000abcd", "name": "Alice", "login": "alice",
    "permissions": ["user"], "enabled": true}))]
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

/// The SHA-256 of a token: what the cache keeps instead of the token, so an entry has one size
/// whatever the token, and a memory dump holds no usable credential.
type TokenHash = [u8; 32];

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// What is known about tokens, under their hash: the user a token belongs to, or `None` for a
/// refused token. Entries live until the TTL, or until auth's broadcast evicts them (the token's
/// logout, or a change of its user). Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct TokenCache {
    /// `None` remembers a refused token: a refused token never becomes valid again (signout,
    /// password change and disable revoke tokens for good), so forged tokens cost one lookup each.
    answers: Cache<TokenHash, Option<Arc<User>>>,
    /// Counts evictions. An eviction cannot reach an answer still being looked up (moka inserts
    /// it after), so a lookup that saw the count move looks again instead of trusting it.
    evictions: Arc<AtomicU64>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(MAX_CACHED_TOKENS)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            evictions: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The answer for `token`: cached, or from `look_up`, called once for concurrent misses of
    /// one token. Errors are passed on and never cached. A token longer than
    /// [`MAX_TOKEN_BYTES`] is refused without a lookup and leaves nothing behind.
    pub async fn get_or_look_up<F, Fut>(
        &self,
        token: &str,
        look_up: F,
    ) -> Result<Option<Arc<User>>, ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Arc<User>>, ApiError>>,
    {
        const ATTEMPTS: usize = 3;
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(None);
        }
        let key = hash(token);
        let mut attempt = 1;
        loop {
            let evictions = self.evictions.load(Ordering::Acquire);
            let answer = self.get_with(key, look_up()).await?;
            if self.evictions.load(Ordering::Acquire) == evictions {
                return Ok(answer);
            }
            // Maybe looked up before a revocation and cached after its eviction: never keep it.
            self.answers.invalidate(&key).await;
            if attempt == ATTEMPTS {
                // Evictions keep coming: answer this request as of its lookup, cache nothing.
                return Ok(answer);
            }
            attempt += 1;
        }
    }

    /// The cached answer, else `look_up`'s; counted as `token_cache_lookups_total{result}`,
    /// `hit` or `miss`.
    async fn get_with(
        &self,
        key: TokenHash,
        look_up: impl Future<Output = Result<Option<Arc<User>>, ApiError>>,
    ) -> Result<Option<Arc<User>>, ApiError> {
        let entry = self
            .answers
            .entry(key)
            .or_try_insert_with(look_up)
            .await
            .map_err(|error| (*error).clone())?;
        let result = if entry.is_fresh() { "miss" } else { "hit" };
        metrics::counter!("token_cache_lookups_total", "result" => result).increment(1);
        Ok(entry.into_value())
    }

    /// How many answers the cache holds once its pending work is done: a metric, and how tests
    /// see what a request left behind.
    pub async fn entries(&self) -> u64 {
        self.answers.run_pending_tasks().await;
        self.answers.entry_count()
    }

    /// Forgets a token (a leading `Bearer ` is tolerated, as in the logout broadcast).
    pub async fn evict(&self, token: &str) {
        let token = bearer_token(token).unwrap_or(token);
        self.evictions.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("token_cache_evictions_total", "of" => "token").increment(1);
        self.answers.invalidate(&hash(token)).await;
    }

    /// Forgets every token of user `user_id`: its permissions or its access changed, and the
    /// next request with any of them asks auth again. Refused tokens stay refused.
    pub fn evict_user(&self, user_id: &str) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("token_cache_evictions_total", "of" => "user").increment(1);
        let user_id = user_id.to_owned();
        let of_user = move |_: &TokenHash, answer: &Option<Arc<User>>| {
            answer.as_ref().is_some_and(|user| user.id == user_id)
        };
        // Reads never return an entry the predicate matches, from this call on.
        if let Err(error) = self.answers.invalidate_entries_if(of_user) {
            warn!(%error, "cannot evict one user's tokens; evicting every token");
            self.answers.invalidate_all();
        }
    }

    /// Forgets every token: logouts broadcast while this instance was not subscribed are lost.
    fn evict_all(&self) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.answers.invalidate_all();
    }

    /// Evicts what auth broadcasts on the `auth` fanout (a signed-out token, or every token of
    /// a changed user), across reconnects, until shutdown, and the whole cache each time the
    /// instance (re)subscribes.
    pub fn listen_for_logouts(&self, rabbit: &Rabbit) -> JoinHandle<()> {
        let cache = self.clone();
        let forget = self.clone();
        let consumer = Consumer {
            on_subscribed: Some(Arc::new(move || forget.evict_all())),
            ..rabbit::contract::listener(AUTH_EXCHANGE)
        };
        rabbit.consume(consumer, move |message: Arc<rabbit::Message<String>>| {
            let cache = cache.clone();
            async move {
                let envelope = &message.envelope;
                match envelope.kind.as_str() {
                    LOGOUT => cache.evict(&envelope.message).await,
                    USER_CHANGED => cache.evict_user(&envelope.message),
                    other => warn!(kind = other, "unknown message on the auth fanout ignored"),
                }
                Ok(())
            }
        })
    }
}

/// Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct TokenGuard {
    http: reqwest::Client,
    current_user_url: String,
    answers: TokenCache,
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
            answers: TokenCache::new(ttl),
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
            .answers
            .get_or_look_up(token, || self.ask_auth(token, correlation_id))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        match permission {
            Some(permission) if !user.has(permission) => Err(ApiError::Forbidden),
            _ => Ok(user),
        }
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
            // Past auth's own cache: the auth instance asked may not have processed yet the
            // logout broadcast that just evicted this token here, and this answer is kept until
            // the TTL.
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
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
        self.answers.evict(token).await;
    }

    /// How many tokens the cache holds answers for (see [`TokenCache::entries`]).
    pub async fn cached_tokens(&self) -> u64 {
        self.answers.entries().await
    }

    /// Evicts every token auth broadcasts on the `auth` fanout, across reconnects, until shutdown,
    /// and the whole cache each time the instance (re)subscribes.
    pub fn listen_for_logouts(&self, rabbit: &Rabbit) -> JoinHandle<()> {
        self.answers.listen_for_logouts(rabbit)
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
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn alice() -> Arc<User> {
        Arc::new(User {
            id: "1".into(),
            name: "Alice".into(),
            login: "alice".into(),
            permissions: vec!["user".into()],
            enabled: true,
        })
    }

    #[tokio::test]
    async fn a_refused_token_is_remembered_and_an_error_is_not() {
        let cache = TokenCache::new(Duration::from_secs(600));
        let lookups = AtomicUsize::new(0);
        let refuse = || async {
            lookups.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        };
        let fail = || async { Err(ApiError::Unavailable("auth")) };

        assert_eq!(cache.get_or_look_up("revoked", refuse).await.unwrap(), None);
        assert_eq!(cache.get_or_look_up("revoked", refuse).await.unwrap(), None);
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        assert!(cache.get_or_look_up("unknown", fail).await.is_err());
        assert_eq!(cache.get_or_look_up("unknown", refuse).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_answer_looked_up_while_its_token_was_evicted_is_looked_up_again() {
        let cache = TokenCache::new(Duration::from_secs(600));
        let lookups = AtomicUsize::new(0);
        // The first lookup reads "valid" from the store, then the revocation's eviction arrives
        // before the answer is cached; the second lookup sees the revocation.
        let look_up = || async {
            if lookups.fetch_add(1, Ordering::SeqCst) == 0 {
                cache.evict("token").await;
                Ok(Some(alice()))
            } else {
                Ok(None)
            }
        };

        assert_eq!(cache.get_or_look_up("token", look_up).await.unwrap(), None);
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        let cached = cache.get_or_look_up("token", || async { Ok(Some(alice())) });
        assert_eq!(
            cached.await.unwrap(),
            None,
            "the refusal is what stays cached"
        );
    }

    #[tokio::test]
    async fn an_evicted_token_is_looked_up_again_with_or_without_its_scheme() {
        let cache = TokenCache::new(Duration::from_secs(600));
        let valid = || async { Ok(Some(alice())) };
        let refused = || async { Ok(None) };
        cache.get_or_look_up("token", valid).await.unwrap();

        cache.evict("Bearer token").await;

        assert_eq!(cache.get_or_look_up("token", refused).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_guard_asks_auth_past_its_cache() {
        let sent = Arc::new(Mutex::new(None));
        let seen = sent.clone();
        let current = warp::path!("users" / "current")
            .and(warp::header::optional::<String>("cache-control"))
            .map(move |cache_control: Option<String>| {
                *seen.lock().unwrap() = cache_control;
                warp::reply::json(alice().as_ref())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(current).incoming(listener).run());
        let guard = TokenGuard::new(&format!("http://{addr}"), Duration::from_secs(600));

        let user = guard.check(Some("Bearer token"), None, "c").await.unwrap();

        assert_eq!(user, alice());
        assert_eq!(sent.lock().unwrap().as_deref(), Some("no-cache"));
    }

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
