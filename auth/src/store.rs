//! MongoDB access for users, tokens, the access log and the logout outbox.
//!
//! Several auth instances share one store whose updates are not atomic (FerretDB applies an
//! update as a read and a later write), so what decides a token's validity is written only by
//! inserts and deletes:
//! - `access`: an append-only log per user of enable/disable, each entry at a unique position
//!   (`_id` `<userId>:<position>`), so two admins racing on one user both land, in one order.
//!   A user with no entry is at position 0, enabled.
//! - `tokens`: inserted with the access position they were issued under, deleted when revoked,
//!   never updated. A token is valid only while its user's access log is still at that position.
//! - `logouts`: the outbox of the broadcast on the `auth` fanout, inserted with the change and
//!   deleted once the broker confirmed it (see `broadcast.rs`): one entry per revoked token, which
//!   other services drop from their caches, or one per changed user (permissions, enable), whose
//!   tokens they drop: a live token never crosses the bus.
//!
//! The user document is still updated in place (password, permissions, and its `enabled` flag,
//! which an operator may set with mongosh and an enable sets back to true): concurrent updates of
//! one user are last-writer-wins, so nothing that must not be lost is decided there.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub login: String,
    pub password: String,
    pub permissions: Vec<String>,
    pub enabled: bool,
    pub created: DateTime,
    pub updated: DateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "userId")]
    pub user_id: ObjectId,
    pub enabled: bool,
    pub created: DateTime,
    /// The JWT's `iat`, kept to rebuild the exact token for its broadcast.
    pub iat: i64,
    /// The position of the user's access log this token was issued under (0 for tokens stored
    /// before the log existed).
    #[serde(default)]
    pub access: i64,
}

/// Where a user's access log stands: the newest entry's position and whether it enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub position: i64,
    pub enabled: bool,
}

impl Access {
    /// A user nobody enabled or disabled yet.
    const INITIAL: Access = Access {
        position: 0,
        enabled: true,
    };
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessDoc {
    /// `<userId>:<position>`: the `_id` index lets one entry only take a position.
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "userId")]
    user_id: ObjectId,
    position: i64,
    enabled: bool,
    created: DateTime,
}

impl AccessDoc {
    fn access(&self) -> Access {
        Access {
            position: self.position,
            enabled: self.enabled,
        }
    }
}

/// What the other services must drop from their caches: a revoked token (with its id and
/// `iat`, from which the token string is issued again), or every token of a changed user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "userId")]
    pub user_id: ObjectId,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub token: Option<RevokedToken>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RevokedToken {
    #[serde(rename = "tokenId")]
    pub id: ObjectId,
    pub iat: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    users: Collection<UserDoc>,
    tokens: Collection<TokenDoc>,
    access: Collection<AccessDoc>,
    logouts: Collection<LogoutDoc>,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            users: db.collection("users"),
            tokens: db.collection("tokens"),
            access: db.collection("access"),
            logouts: db.collection("logouts"),
            db,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The unique login index is what makes concurrent signups with one login give one user.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.users
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"login": 1})
                    .options(unique)
                    .build(),
            )
            .await?;
        self.tokens
            .create_index(IndexModel::builder().keys(doc! {"userId": 1}).build())
            .await?;
        self.access
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"userId": 1, "position": -1})
                    .build(),
            )
            .await?;
        Ok(())
    }

    pub async fn insert_user(&self, user: &UserDoc) -> mongodb::error::Result<()> {
        self.users.insert_one(user).await.map(drop)
    }

    pub async fn user_by_login(&self, login: &str) -> mongodb::error::Result<Option<UserDoc>> {
        self.users.find_one(doc! {"login": login}).await
    }

    pub async fn user(&self, id: ObjectId) -> mongodb::error::Result<Option<UserDoc>> {
        self.users.find_one(doc! {"_id": id}).await
    }

    pub async fn all_users(&self) -> mongodb::error::Result<Vec<UserDoc>> {
        self.users
            .find(doc! {})
            .sort(doc! {"login": 1})
            .await?
            .try_collect()
            .await
    }

    /// Applies `update` to user `id`; false when there is no such user.
    pub async fn update_user(
        &self,
        id: ObjectId,
        mut update: Document,
    ) -> mongodb::error::Result<bool> {
        let set = update
            .entry("$set".into())
            .or_insert_with(|| doc! {}.into());
        if let Some(set) = set.as_document_mut() {
            set.insert("updated", DateTime::now());
        }
        let result = self.users.update_one(doc! {"_id": id}, update).await?;
        Ok(result.matched_count == 1)
    }

    /// Where user `id`'s access log stands.
    pub async fn access(&self, id: ObjectId) -> mongodb::error::Result<Access> {
        let newest = self
            .access
            .find_one(doc! {"userId": id})
            .sort(doc! {"position": -1})
            .await?;
        Ok(newest.map_or(Access::INITIAL, |entry| entry.access()))
    }

    /// Whether each user with an access log is enabled; users without one are.
    pub async fn all_access(&self) -> mongodb::error::Result<HashMap<ObjectId, bool>> {
        let mut newest: HashMap<ObjectId, Access> = HashMap::new();
        let mut entries = self.access.find(doc! {}).await?;
        while let Some(entry) = entries.try_next().await? {
            let held = newest.entry(entry.user_id).or_insert(entry.access());
            if entry.position > held.position {
                *held = entry.access();
            }
        }
        Ok(newest
            .into_iter()
            .map(|(user, access)| (user, access.enabled))
            .collect())
    }

    /// Appends `access` to user `id`'s log; false when another entry took that position first.
    pub async fn append_access(
        &self,
        id: ObjectId,
        access: Access,
    ) -> mongodb::error::Result<bool> {
        let entry = AccessDoc {
            id: format!("{}:{}", id.to_hex(), access.position),
            user_id: id,
            position: access.position,
            enabled: access.enabled,
            created: DateTime::now(),
        };
        match self.access.insert_one(entry).await {
            Ok(_) => Ok(true),
            Err(error) if common::mongo::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub async fn insert_token(&self, token: &TokenDoc) -> mongodb::error::Result<()> {
        self.tokens.insert_one(token).await.map(drop)
    }

    /// Deletes a token that was never handed out, so nobody needs telling.
    pub async fn delete_token(&self, id: ObjectId) -> mongodb::error::Result<()> {
        self.tokens.delete_one(doc! {"_id": id}).await.map(drop)
    }

    pub async fn token(&self, id: ObjectId) -> mongodb::error::Result<Option<TokenDoc>> {
        self.tokens.find_one(doc! {"_id": id}).await
    }

    pub async fn user_tokens(&self, user_id: ObjectId) -> mongodb::error::Result<Vec<TokenDoc>> {
        self.tokens
            .find(doc! {"userId": user_id})
            .await?
            .try_collect()
            .await
    }

    /// Queues the broadcast of `tokens`, then deletes them: an unknown token is refused. In this
    /// order a crash in between leaves a broadcast too many, never a revoked token nobody was told
    /// about.
    pub async fn revoke(&self, tokens: &[TokenDoc]) -> mongodb::error::Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let logouts = tokens.iter().map(|token| LogoutDoc {
            id: ObjectId::new(),
            user_id: token.user_id,
            token: Some(RevokedToken {
                id: token.id,
                iat: token.iat,
            }),
        });
        self.logouts.insert_many(logouts).await?;
        let ids: Vec<ObjectId> = tokens.iter().map(|token| token.id).collect();
        self.tokens
            .delete_many(doc! {"_id": {"$in": ids}})
            .await
            .map(drop)
    }

    /// Queues the broadcast of a change of user `user_id`, so caches ask about its tokens again.
    pub async fn announce(&self, user_id: ObjectId) -> mongodb::error::Result<()> {
        let logout = LogoutDoc {
            id: ObjectId::new(),
            user_id,
            token: None,
        };
        self.logouts.insert_one(logout).await.map(drop)
    }

    /// Broadcasts still owed, of one user or of everybody.
    pub async fn pending_logouts(
        &self,
        user_id: Option<ObjectId>,
    ) -> mongodb::error::Result<Vec<LogoutDoc>> {
        let filter = match user_id {
            Some(user_id) => doc! {"userId": user_id},
            None => doc! {},
        };
        self.logouts
            .find(filter)
            .limit(1000)
            .await?
            .try_collect()
            .await
    }

    pub async fn logout_sent(&self, logout: &LogoutDoc) -> mongodb::error::Result<()> {
        self.logouts
            .delete_one(doc! {"_id": logout.id})
            .await
            .map(drop)
    }
}
