//! The auth operations of CONTRACT section 4, between the HTTP layer and the store.
//!
//! Correct with any number of instances on one store whose updates are not atomic: a login is
//! unique because the unique login index decides between racing signups, and whether a user may
//! hold tokens is decided by the user's access log, where enable and disable are inserts at a
//! unique position (see `store.rs` and [`Auth::set_enabled`]).
//!
//! `GET /users/current` answers from memory ([`Auth::current_user`]); everything that writes or
//! decides authenticates against the store ([`Auth::authenticate`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::guard::{TokenCache, bearer_token};
use common::{ApiError, FieldError, User};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use rabbit::Rabbit;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warp::http::StatusCode;

use crate::broadcast::Broadcaster;
use crate::jwt::{Claims, Jwt};
use crate::password::Hasher;
use crate::rules;
use crate::store::{Access, Store, TokenDoc, UserDoc};

const INVALID_CREDENTIALS: ApiError =
    ApiError::Refused(StatusCode::UNAUTHORIZED, "Invalid login or password");
const USER_DISABLED: ApiError = ApiError::Refused(StatusCode::FORBIDDEN, "User disabled");

/// The caller of an authenticated request: its user and the token it used.
pub struct Session {
    pub user: UserDoc,
    pub token: TokenDoc,
}

impl Session {
    pub fn require_admin(self) -> Result<Self, ApiError> {
        if self.user.permissions.iter().any(|held| held == "admin") {
            Ok(self)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

pub struct Auth {
    store: Store,
    jwt: Jwt,
    hasher: Hasher,
    broadcaster: Broadcaster,
    rabbit: Rabbit,
    /// The answers of `GET /users/current`, evicted by the logout broadcast like every other
    /// service's token cache, and at once by this instance's own changes.
    current_users: TokenCache,
    /// Signups wait for the unique login index: without it two signups could share a login.
    indexes_ready: AtomicBool,
}

impl Auth {
    pub fn new(store: Store, jwt: Jwt, rabbit: Rabbit, token_cache_ttl: Duration) -> Arc<Self> {
        let broadcaster = Broadcaster::new(store.clone(), jwt.clone(), rabbit.clone());
        Arc::new(Self {
            store,
            jwt,
            hasher: Hasher::default(),
            broadcaster,
            rabbit,
            current_users: TokenCache::new(token_cache_ttl),
            indexes_ready: AtomicBool::new(false),
        })
    }

    /// Creates the indexes (retrying while MongoDB is down), starts the broadcast sweeper and
    /// the eviction of broadcast tokens from the `/users/current` cache.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        let auth = self.clone();
        let indexes_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while let Err(error) = auth.store.ensure_indexes().await {
                warn!(%error, retry_in = ?backoff, "cannot create indexes");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = indexes_shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            auth.indexes_ready.store(true, Ordering::Release);
            info!("indexes ready");
        });
        self.broadcaster.clone().spawn_sweeper(shutdown);
        self.current_users.listen_for_logouts(&self.rabbit);
    }

    pub async fn health(&self) -> Vec<(&'static str, bool)> {
        vec![
            // Not ready before the unique login index exists: signups would be refused.
            (
                "mongodb",
                self.indexes_ready.load(Ordering::Acquire)
                    && common::mongo::ping(self.store.db()).await,
            ),
            ("rabbitmq", self.rabbit.is_connected()),
        ]
    }

    pub async fn signup(
        &self,
        name: &str,
        login: &str,
        password: &str,
    ) -> Result<String, ApiError> {
        let errors: Vec<FieldError> = [
            rules::name(name),
            rules::login(login),
            rules::password("password", password),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if !self.indexes_ready.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable("mongodb"));
        }
        let now = DateTime::now();
        let user = UserDoc {
            id: ObjectId::new(),
            name: name.trim().to_owned(),
            login: login.to_owned(),
            password: self.hasher.hash(password).await?,
            permissions: vec!["user".into()],
            enabled: true,
            created: now,
            updated: now,
        };
        match self.store.insert_user(&user).await {
            Err(error) if common::mongo::is_duplicate_key(&error) => Err(ApiError::Duplicate(
                FieldError::new("login", "already exists"),
            )),
            result => result.map_err(ApiError::from),
        }?;
        self.issue_token(&user).await
    }

    /// Unknown login and wrong password answer alike and take about the same time. A login no
    /// user can have (see `rules::login`) is unknown without asking the store, which could not
    /// even take a NUL in a query.
    pub async fn signin(&self, login: &str, password: &str) -> Result<String, ApiError> {
        let user = match rules::login(login) {
            None => self.store.user_by_login(login).await?,
            Some(_) => None,
        };
        let hash = user.as_ref().map(|user| user.password.as_str());
        if !self.hasher.verify(password, hash).await? {
            return Err(INVALID_CREDENTIALS);
        }
        let user = user.expect("verified against a real hash");
        if !user.enabled {
            return Err(USER_DISABLED);
        }
        self.issue_token(&user).await
    }

    /// The session of a token whose signature verifies (HS256 only), whose token document
    /// exists and is enabled, whose user is enabled, and whose user's access log is still at the
    /// position the token was issued under (a disable since then ended it for good).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Session, ApiError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let claims = self.jwt.verify(token).ok_or(ApiError::Unauthorized)?;
        self.session(&claims).await
    }

    /// The user `GET /users/current` answers for a token: from memory, or from the store as
    /// [`Auth::authenticate`] decides on a miss and whenever the caller asks for a `fresh` answer
    /// (which leaves the cache as it is). Only tokens whose signature verifies are cached, so
    /// forged ones cannot crowd out real ones.
    pub async fn current_user(
        &self,
        authorization: Option<&str>,
        fresh: bool,
    ) -> Result<Arc<User>, ApiError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let claims = self.jwt.verify(token).ok_or(ApiError::Unauthorized)?;
        let look_up = || async {
            match self.session(&claims).await {
                Ok(session) => Ok(Some(Arc::new(to_user(&session.user)))),
                Err(ApiError::Unauthorized) => Ok(None),
                Err(error) => Err(error),
            }
        };
        let user = if fresh {
            look_up().await?
        } else {
            self.current_users.get_or_look_up(token, look_up).await?
        };
        user.ok_or(ApiError::Unauthorized)
    }

    /// The session of verified `claims`, read from the store.
    async fn session(&self, claims: &Claims) -> Result<Session, ApiError> {
        let (Ok(token_id), Ok(user_id)) = (
            ObjectId::parse_str(&claims.token_id),
            ObjectId::parse_str(&claims.user_id),
        ) else {
            return Err(ApiError::Unauthorized);
        };
        let (token, user, access) = tokio::try_join!(
            self.store.token(token_id),
            self.store.user(user_id),
            self.store.access(user_id)
        )?;
        match (token, user) {
            (Some(token), Some(user))
                if token.enabled
                    && token.user_id == user_id
                    && claims_of(&token) == *claims
                    && user.enabled
                    && access.enabled
                    && token.access == access.position =>
            {
                Ok(Session { user, token })
            }
            _ => Err(ApiError::Unauthorized),
        }
    }

    pub async fn signout(&self, session: Session, correlation_id: &str) -> Result<(), ApiError> {
        self.revoke(&[session.token]).await?;
        self.broadcaster
            .flush_user(session.user.id, correlation_id)
            .await;
        Ok(())
    }

    /// Changes the password and revokes the user's other tokens; the one in use stays valid.
    pub async fn change_password(
        &self,
        session: Session,
        current: &str,
        new: &str,
        correlation_id: &str,
    ) -> Result<(), ApiError> {
        if let Some(error) = rules::password("newPassword", new) {
            return Err(ApiError::Validation(vec![error]));
        }
        if !self
            .hasher
            .verify(current, Some(&session.user.password))
            .await?
        {
            return Err(ApiError::field(
                "currentPassword",
                "is not the current password",
            ));
        }
        let hash = self.hasher.hash(new).await?;
        let user = session.user.id;
        // Tokens first: a crash between the writes leaves sessions ended, never a changed
        // password with the old sessions alive. Tokens again after the new password is stored:
        // a signin with the old password inserts its token before re-reading the password
        // ([`Auth::issue_token`]), so either it sees the new password or this sees its token.
        self.revoke_other_tokens(&session).await?;
        self.store
            .update_user(user, doc! {"$set": {"password": hash}})
            .await?;
        self.revoke_other_tokens(&session).await?;
        self.broadcaster.flush_user(user, correlation_id).await;
        Ok(())
    }

    async fn revoke_other_tokens(&self, session: &Session) -> Result<(), ApiError> {
        let others: Vec<TokenDoc> = self
            .store
            .user_tokens(session.user.id)
            .await?
            .into_iter()
            .filter(|token| token.id != session.token.id)
            .collect();
        self.revoke(&others).await
    }

    /// Revokes `tokens` for good and queues their broadcast; see [`Auth::forget`].
    async fn revoke(&self, tokens: &[TokenDoc]) -> Result<(), ApiError> {
        let revoked = self.store.revoke(tokens).await;
        // Even when the store failed part way: some tokens may be revoked already.
        self.forget(tokens).await;
        Ok(revoked?)
    }

    /// Queues the broadcast of a change of `user` (its id, never its live tokens), and drops
    /// the user's tokens from this instance's cache at once, as [`Auth::forget`] does.
    async fn announce(&self, user: ObjectId) -> Result<(), ApiError> {
        let announced = self.store.announce(user).await;
        // Even when the broadcast could not be queued: the user's change itself is stored.
        self.current_users.evict_user(&user.to_hex());
        Ok(announced?)
    }

    /// Drops `tokens` from this instance's `/users/current` cache once their change is stored and
    /// before the broadcast is sent: whoever made the change reads it back here at once, whatever
    /// the broadcast's delay (or RabbitMQ's outage). The broadcast carries the same token strings.
    async fn forget(&self, tokens: &[TokenDoc]) {
        for token in tokens {
            let raw = self.jwt.issue(&claims_of(token));
            self.current_users.evict(&raw).await;
        }
    }

    pub async fn all_users(&self) -> Result<Vec<User>, ApiError> {
        let (users, access) = tokio::try_join!(self.store.all_users(), self.store.all_access())?;
        Ok(users
            .into_iter()
            .map(|mut user| {
                user.enabled &= access.get(&user.id).copied().unwrap_or(true);
                to_user(&user)
            })
            .collect())
    }

    /// Enables or disables a user. Disabling ends every token the user holds, for good: a later
    /// `enable` brings none back, and no signin racing the disable leaves a working token.
    ///
    /// Why, with any number of instances: the disable first appends a disabling entry at
    /// position n+1 of the user's access log (an insert the `_id` index decides), and only then
    /// reads the user's tokens to revoke and broadcast them. A signin first inserts its token,
    /// tagged with the position it read, and only then re-reads the log ([`Auth::issue_token`]).
    /// Both sides write, then read, so at least one sees the other:
    /// - the token was tagged with position n (or earlier): authentication compares the tag with
    ///   the log, which now stands at n+1 or later, so auth refuses it from the moment the entry
    ///   exists, whatever happens to the token document;
    /// - another service may have cached the token only if auth accepted it before the entry was
    ///   inserted, so after the token's insert; the disable's read of the tokens comes after its
    ///   insert, sees the token and broadcasts its logout.
    ///
    /// Nothing here rests on an update: the token documents are deleted, the log only grows,
    /// and a racing enable or disable takes the next position and decides from what it reads.
    pub async fn set_enabled(
        &self,
        admin: &Session,
        id: &str,
        enabled: bool,
        correlation_id: &str,
    ) -> Result<(), ApiError> {
        let user = parse_user_id(id)?;
        if !enabled && user == admin.user.id {
            return Err(ApiError::BadRequest(
                "An admin cannot disable itself".into(),
            ));
        }
        if self.store.user(user).await?.is_none() {
            return Err(ApiError::NotFound);
        }
        loop {
            let access = self.store.access(user).await?;
            if access.enabled == enabled {
                break;
            }
            let next = Access {
                position: access.position + 1,
                enabled,
            };
            if self.store.append_access(user, next).await? {
                break;
            }
        }
        // The user document's flag is the operator's switch (mongosh) and is honoured too, so
        // an enable also clears it. A disable never writes it: a concurrent update of the user
        // (a grant) could write the old value back, while nothing undoes the log's entry.
        if enabled {
            self.store
                .update_user(user, doc! {"$set": {"enabled": true}})
                .await?;
        }
        // Enabling brings no token back; the caches re-ask about the live ones either way.
        if enabled {
            self.announce(user).await?;
        } else {
            let tokens = self.store.user_tokens(user).await?;
            self.revoke(&tokens).await?;
        }
        self.broadcaster.flush_user(user, correlation_id).await;
        Ok(())
    }

    /// Grants (or revokes) permissions; caches drop the user's tokens so it applies at once. An
    /// admin cannot revoke its own `admin` permission (as it cannot disable itself), so the
    /// system is never left without an admin by a slip.
    pub async fn change_permissions(
        &self,
        admin: &Session,
        id: &str,
        permissions: &[String],
        grant: bool,
        correlation_id: &str,
    ) -> Result<(), ApiError> {
        let user = parse_user_id(id)?;
        let permissions =
            rules::permissions(permissions).map_err(|e| ApiError::Validation(vec![e]))?;
        if !grant && user == admin.user.id && permissions.iter().any(|held| held == "admin") {
            return Err(ApiError::BadRequest(
                "An admin cannot revoke its own admin permission".into(),
            ));
        }
        let update = if grant {
            doc! {"$addToSet": {"permissions": {"$each": permissions}}}
        } else {
            doc! {"$pullAll": {"permissions": permissions}}
        };
        if !self.store.update_user(user, update).await? {
            return Err(ApiError::NotFound);
        }
        self.announce(user).await?;
        self.broadcaster.flush_user(user, correlation_id).await;
        Ok(())
    }

    /// Issues a token to `user`, whose password was just verified, under the user's current
    /// access position. The token is inserted before the user is read again, so a racing disable
    /// or password change either shows in that read (the token is dropped: 403, or 401 as for a
    /// wrong password) or reads the token after its own write and revokes it
    /// ([`Auth::set_enabled`], [`Auth::change_password`]).
    async fn issue_token(&self, user: &UserDoc) -> Result<String, ApiError> {
        let mut access = self.store.access(user.id).await?;
        loop {
            if !access.enabled {
                return Err(USER_DISABLED);
            }
            let created = DateTime::now();
            let token = TokenDoc {
                id: ObjectId::new(),
                user_id: user.id,
                enabled: true,
                created,
                iat: created.timestamp_millis() / 1000,
                access: access.position,
            };
            self.store.insert_token(&token).await?;
            let (now, stored) =
                tokio::try_join!(self.store.access(user.id), self.store.user(user.id))?;
            let password_kept = stored.is_some_and(|stored| stored.password == user.password);
            if now == access && password_kept {
                return Ok(self.jwt.issue(&claims_of(&token)));
            }
            // Never handed out: nobody holds it, so nobody needs telling.
            self.store.delete_token(token.id).await?;
            if !password_kept {
                return Err(INVALID_CREDENTIALS);
            }
            access = now;
        }
    }
}

/// The claims of the JWT issued for `token`.
fn claims_of(token: &TokenDoc) -> Claims {
    Claims {
        token_id: token.id.to_hex(),
        user_id: token.user_id.to_hex(),
        iat: token.iat,
    }
}

fn to_user(user: &UserDoc) -> User {
    User {
        id: user.id.to_hex(),
        name: user.name.clone(),
        login: user.login.clone(),
        permissions: user.permissions.clone(),
        enabled: user.enabled,
    }
}

/// An id that is not an ObjectId names no user: 404, like an unknown one.
fn parse_user_id(id: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse_str(id).map_err(|_| ApiError::NotFound)
}
