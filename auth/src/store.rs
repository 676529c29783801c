//! MongoDB access for users and tokens.
//!
//! A token document carries an `evict` marker while the other services must still be told to
//! drop it from their caches (revoked, or its user's permissions changed). The marker is written
//! with the change itself and cleared only after the broadcast was confirmed, so a broadcast
//! survives a RabbitMQ outage or a crash (see `broadcast.rs`).

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict: Option<ObjectId>,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    users: Collection<UserDoc>,
    tokens: Collection<TokenDoc>,
}

/// Which of a user's tokens a change touches.
pub enum Tokens {
    Only(ObjectId),
    All,
    AllBut(ObjectId),
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            users: db.collection("users"),
            tokens: db.collection("tokens"),
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
        self.tokens
            .create_index(IndexModel::builder().keys(doc! {"evict": 1}).build())
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

    pub async fn insert_token(&self, token: &TokenDoc) -> mongodb::error::Result<()> {
        self.tokens.insert_one(token).await.map(drop)
    }

    pub async fn token(&self, id: ObjectId) -> mongodb::error::Result<Option<TokenDoc>> {
        self.tokens.find_one(doc! {"_id": id}).await
    }

    /// Disables the user's enabled tokens among `which` and marks them for broadcast.
    pub async fn revoke_tokens(
        &self,
        user_id: ObjectId,
        which: Tokens,
    ) -> mongodb::error::Result<()> {
        let update = doc! {"$set": {"enabled": false, "evict": ObjectId::new()}};
        self.tokens
            .update_many(tokens_filter(user_id, which), update)
            .await
            .map(drop)
    }

    /// Marks the user's enabled tokens for broadcast, so caches pick up a permission change.
    pub async fn mark_for_eviction(&self, user_id: ObjectId) -> mongodb::error::Result<()> {
        let update = doc! {"$set": {"evict": ObjectId::new()}};
        self.tokens
            .update_many(tokens_filter(user_id, Tokens::All), update)
            .await
            .map(drop)
    }

    /// Tokens still waiting for their broadcast, of one user or of everybody.
    pub async fn pending_evictions(
        &self,
        user_id: Option<ObjectId>,
    ) -> mongodb::error::Result<Vec<TokenDoc>> {
        let mut filter = doc! {"evict": {"$exists": true}};
        if let Some(user_id) = user_id {
            filter.insert("userId", user_id);
        }
        self.tokens
            .find(filter)
            .limit(1000)
            .await?
            .try_collect()
            .await
    }

    /// Clears the marker, unless a newer change set another one meanwhile (that change's
    /// broadcast is then still owed).
    /// A revoked token's document is deleted then: an unknown token is refused like a revoked
    /// one, and the collection keeps only live tokens.
    pub async fn eviction_sent(&self, token: &TokenDoc) -> mongodb::error::Result<()> {
        let Some(marker) = token.evict else {
            return Ok(());
        };
        let unchanged = doc! {"_id": token.id, "evict": marker};
        if token.enabled {
            let update = doc! {"$unset": {"evict": ""}};
            self.tokens.update_one(unchanged, update).await.map(drop)
        } else {
            self.tokens.delete_one(unchanged).await.map(drop)
        }
    }
}

fn tokens_filter(user_id: ObjectId, which: Tokens) -> Document {
    let mut filter = doc! {"userId": user_id, "enabled": true};
    match which {
        Tokens::Only(id) => filter.insert("_id", id),
        Tokens::All => None,
        Tokens::AllBut(kept) => filter.insert("_id", doc! {"$ne": kept}),
    };
    filter
}
