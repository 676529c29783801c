//! The auth operations of CONTRACT section 4, between the HTTP layer and the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::guard::bearer_token;
use common::{ApiError, FieldError, User};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use rabbit::Rabbit;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warp::http::StatusCode;

use crate::broadcast::{Broadcaster, claims};
use crate::jwt::Jwt;
use crate::password::Hasher;
use crate::rules;
use crate::store::{Store, TokenDoc, Tokens, UserDoc};

const INVALID_CREDENTIALS: ApiError =
    ApiError::Refused(StatusCode::UNAUTHORIZED, "Invalid login or password");
const USER_DISABLED: ApiError = ApiError::Refused(StatusCode::FORBIDDEN, "User disabled");

/// The caller of an authenticated request: its user and the token it used.
pub struct Session {
    pub user: UserDoc,
    pub token_id: ObjectId,
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
    /// Signups wait for the unique login index: without it two signups could share a login.
    indexes_ready: AtomicBool,
}

impl Auth {
    pub fn new(store: Store, jwt: Jwt, rabbit: Rabbit) -> Arc<Self> {
        let broadcaster = Broadcaster::new(store.clone(), jwt.clone(), rabbit.clone());
        Arc::new(Self {
            store,
            jwt,
            hasher: Hasher::default(),
            broadcaster,
            rabbit,
            indexes_ready: AtomicBool::new(false),
        })
    }

    /// Creates the indexes (retrying while MongoDB is down) and starts the broadcast sweeper.
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
        self.new_token(user.id).await
    }

    /// Unknown login and wrong password answer alike and take about the same time.
    pub async fn signin(&self, login: &str, password: &str) -> Result<String, ApiError> {
        let user = self.store.user_by_login(login).await?;
        let hash = user.as_ref().map(|user| user.password.as_str());
        if !self.hasher.verify(password, hash).await? {
            return Err(INVALID_CREDENTIALS);
        }
        let user = user.expect("verified against a real hash");
        if !user.enabled {
            return Err(USER_DISABLED);
        }
        self.new_token(user.id).await
    }

    /// The session of a token whose signature verifies (HS256 only), whose token document is
    /// enabled and whose user is enabled.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Session, ApiError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let claims = self.jwt.verify(token).ok_or(ApiError::Unauthorized)?;
        let (Ok(token_id), Ok(user_id)) = (
            ObjectId::parse_str(&claims.token_id),
            ObjectId::parse_str(&claims.user_id),
        ) else {
            return Err(ApiError::Unauthorized);
        };
        let (token, user) = tokio::try_join!(self.store.token(token_id), self.store.user(user_id))?;
        let token_ok = token.is_some_and(|token| {
            token.enabled && token.user_id == user_id && crate::broadcast::claims(&token) == claims
        });
        match user {
            Some(user) if token_ok && user.enabled => Ok(Session { user, token_id }),
            _ => Err(ApiError::Unauthorized),
        }
    }

    pub async fn signout(&self, session: Session, correlation_id: &str) -> Result<(), ApiError> {
        let user = session.user.id;
        self.store
            .revoke_tokens(user, Tokens::Only(session.token_id))
            .await?;
        self.broadcaster.flush_user(user, correlation_id).await;
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
        // Tokens first: a crash between the two writes leaves sessions ended, never a changed
        // password with the old sessions alive.
        self.store
            .revoke_tokens(user, Tokens::AllBut(session.token_id))
            .await?;
        self.store
            .update_user(user, doc! {"$set": {"password": hash}})
            .await?;
        self.broadcaster.flush_user(user, correlation_id).await;
        Ok(())
    }

    pub async fn all_users(&self) -> Result<Vec<User>, ApiError> {
        Ok(self.store.all_users().await?.iter().map(to_user).collect())
    }

    /// Disabling revokes every token of the user; either way caches drop the user's tokens.
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
        // Disabling revokes the tokens first: a crash between the two writes leaves a user who
        // must sign in again, never a disabled user whose tokens come back with `enable`.
        if !enabled {
            self.store.revoke_tokens(user, Tokens::All).await?;
        }
        if !self
            .store
            .update_user(user, doc! {"$set": {"enabled": enabled}})
            .await?
        {
            return Err(ApiError::NotFound);
        }
        if enabled {
            self.store.mark_for_eviction(user).await?;
        }
        self.broadcaster.flush_user(user, correlation_id).await;
        Ok(())
    }

    /// Grants (or revokes) permissions; caches drop the user's tokens so it applies at once.
    pub async fn change_permissions(
        &self,
        id: &str,
        permissions: &[String],
        grant: bool,
        correlation_id: &str,
    ) -> Result<(), ApiError> {
        let user = parse_user_id(id)?;
        let permissions =
            rules::permissions(permissions).map_err(|e| ApiError::Validation(vec![e]))?;
        let update = if grant {
            doc! {"$addToSet": {"permissions": {"$each": permissions}}}
        } else {
            doc! {"$pullAll": {"permissions": permissions}}
        };
        if !self.store.update_user(user, update).await? {
            return Err(ApiError::NotFound);
        }
        self.store.mark_for_eviction(user).await?;
        self.broadcaster.flush_user(user, correlation_id).await;
        Ok(())
    }

    async fn new_token(&self, user_id: ObjectId) -> Result<String, ApiError> {
        let created = DateTime::now();
        let token = TokenDoc {
            id: ObjectId::new(),
            user_id,
            enabled: true,
            created,
            iat: created.timestamp_millis() / 1000,
            evict: None,
        };
        self.store.insert_token(&token).await?;
        Ok(self.jwt.issue(&claims(&token)))
    }
}

pub fn to_user(user: &UserDoc) -> User {
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
