//! MongoDB access: the `articles` collection, and stock reservations made exactly once without
//! transactions.
//!
//! An article document holds what clients see plus two derived fields, `key` (the folded name, for
//! sorting) and `search` (folded name and description, for search), and `reservations`: one entry
//! per order that asked for the article, keyed by order id, `{"state": "reserved" | "refused" |
//! "released", "quantity": n}`. Taking stock and recording which order took it is one
//! single-document update, which MongoDB applies atomically (and, for FerretDB, see below): a
//! redelivered message, a re-published order or a crash between two steps finds the record and
//! changes nothing a second time.
//!
//! FerretDB 1.x (SQLite) applies an update as a read and then a write, without isolation between
//! connections: two concurrent conditional updates of one document can both pass their condition
//! (the test reserving the last units of an article caught it). So the writes to one article are
//! also run one at a time within the process ([`ArticleLocks`]). Against MongoDB the update is
//! atomic on its own and several instances are safe; against FerretDB, run one instance.
//!
//! Every write that changes what clients see increments the document's `version` and puts the
//! new article into the [`Snapshot`] that listings and searches read, still under the lock.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};
use tracing::warn;

use crate::article::{Article, ArticleInput, literal_pattern, searchable, sort_key};
use crate::query::Page;
use crate::snapshot::{Entry, Snapshot};

type Result<T> = mongodb::error::Result<T>;

/// Documents per batch of a snapshot reload: as many as fit in the 16 MiB a batch can carry.
const RELOAD_BATCH: u32 = 100_000;

/// The fields of the article JSON, so that reads do not load the reservation records.
/// (FerretDB 1.x refuses a projection on `findAndModify`, so the updates returning an article
/// read it whole.)
fn article_fields() -> Document {
    doc! {"name": 1, "description": 1, "image": 1, "price": 1, "stock": 1, "enabled": 1}
}

#[derive(Serialize, Deserialize)]
struct ArticleDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    description: String,
    image: String,
    price: f64,
    stock: i64,
    enabled: bool,
    key: String,
    search: String,
    created: DateTime,
    updated: DateTime,
    /// Incremented by every write, so the snapshot can tell a newer copy from an older one.
    #[serde(default)]
    version: i64,
}

impl ArticleDoc {
    fn into_entry(self) -> Entry {
        Entry {
            article: Article {
                id: self.id,
                name: self.name,
                description: self.description,
                image: self.image,
                price: self.price,
                stock: self.stock,
                enabled: self.enabled,
            },
            key: self.key,
            search: self.search,
            version: self.version,
        }
    }
}

/// Everything but the reservation records.
fn without_reservations() -> Document {
    doc! {"reservations": 0}
}

/// What catalog answers about an article in an `article-data` reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub valid: bool,
    pub price: f64,
    pub stock: i64,
}

impl Answer {
    /// An unknown article: invalid, price and stock 0.
    pub const UNKNOWN: Self = Self {
        valid: false,
        price: 0.0,
        stock: 0,
    };

    fn of(article: &Article, valid: bool) -> Self {
        Self {
            valid,
            price: article.price,
            stock: article.stock,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    /// The `articles` collection read as the article JSON (with a projection),
    articles: Collection<Article>,
    /// as raw documents, for the reservation records,
    documents: Collection<Document>,
    /// and as whole stored documents, for the snapshot.
    whole: Collection<ArticleDoc>,
    locks: Arc<ArticleLocks>,
    snapshot: Arc<RwLock<Snapshot>>,
}

/// Striped locks: the writes to one article run one at a time; other articles rarely wait.
struct ArticleLocks(Vec<Mutex<()>>);

impl ArticleLocks {
    const STRIPES: usize = 64;

    fn new() -> Self {
        Self((0..Self::STRIPES).map(|_| Mutex::new(())).collect())
    }

    async fn lock(&self, article_id: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        article_id.hash(&mut hasher);
        self.0[hasher.finish() as usize % Self::STRIPES]
            .lock()
            .await
    }
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            articles: db.collection("articles"),
            documents: db.collection("articles"),
            whole: db.collection("articles"),
            locks: Arc::new(ArticleLocks::new()),
            snapshot: Arc::default(),
            db,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Listings and searches read enabled articles in name order.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let by_name = IndexModel::builder()
            .keys(doc! {"enabled": 1, "key": 1, "_id": 1})
            .build();
        self.documents.create_index(by_name).await?;
        Ok(())
    }

    pub async fn create(&self, input: ArticleInput) -> Result<Article> {
        let now = DateTime::now();
        let document = ArticleDoc {
            id: uuid::Uuid::new_v4().to_string(),
            key: sort_key(&input.name),
            search: searchable(&input.name, &input.description),
            name: input.name,
            description: input.description,
            image: input.image,
            price: input.price,
            stock: input.stock,
            enabled: true,
            created: now,
            updated: now,
            version: 1,
        };
        self.whole.insert_one(&document).await?;
        let entry = document.into_entry();
        let article = entry.article.clone();
        self.write_snapshot().put(entry);
        Ok(article)
    }

    /// The article, from the snapshot when it is loaded (FerretDB 1.x finds even an `_id` by
    /// scanning the collection). One the snapshot lacks is looked for in MongoDB: another
    /// instance may have created it since the last reload.
    pub async fn get(&self, id: &str) -> Result<Option<Article>> {
        // Catalog's ids are UUIDs: anything else is unknown without a costly miss.
        if uuid::Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        if let Some(Some(article)) = self.read_snapshot(|snapshot| snapshot.get(id)) {
            return Ok(Some(article));
        }
        self.stored(id).await
    }

    /// The article as MongoDB has it.
    async fn stored(&self, id: &str) -> Result<Option<Article>> {
        self.articles
            .find_one(doc! {"_id": id})
            .projection(article_fields())
            .await
    }

    /// Replaces what an admin sets; `enabled` and the reservations stay as they are.
    pub async fn update(&self, id: &str, input: ArticleInput) -> Result<Option<Article>> {
        let _locked = self.locks.lock(id).await;
        let set = doc! {
            "name": &input.name,
            "description": &input.description,
            "image": &input.image,
            "price": input.price,
            "stock": input.stock,
            "key": sort_key(&input.name),
            "search": searchable(&input.name, &input.description),
            "updated": DateTime::now(),
        };
        let updated = self
            .whole
            .find_one_and_update(doc! {"_id": id}, doc! {"$set": set, "$inc": {"version": 1}})
            .return_document(ReturnDocument::After)
            .await?;
        Ok(updated.map(|document| {
            let entry = document.into_entry();
            let article = entry.article.clone();
            self.write_snapshot().put(entry);
            article
        }))
    }

    /// Soft delete; false when there is no such article.
    pub async fn disable(&self, id: &str) -> Result<bool> {
        let _locked = self.locks.lock(id).await;
        let result = self
            .articles
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"enabled": false, "updated": DateTime::now()},
                "$inc": {"version": 1}},
            )
            .await?;
        if result.modified_count == 1 {
            self.refresh(id).await;
        }
        Ok(result.matched_count == 1)
    }

    /// A page of the enabled articles, in name order.
    pub async fn list(&self, page: Page) -> Result<Vec<Article>> {
        if let Some(articles) = self.read_snapshot(|snapshot| snapshot.list(page)) {
            return Ok(articles);
        }
        self.enabled(doc! {"enabled": true}, page).await
    }

    /// A page of the enabled articles whose name or description contains `folded` (a text folded
    /// by `article::fold`).
    pub async fn search(&self, folded: &str, page: Page) -> Result<Vec<Article>> {
        if let Some(articles) = self.read_snapshot(|snapshot| snapshot.search(folded, page)) {
            return Ok(articles);
        }
        let pattern = literal_pattern(folded);
        self.enabled(doc! {"enabled": true, "search": {"$regex": pattern}}, page)
            .await
    }

    /// Reads every article into the snapshot, merged with what it holds.
    pub async fn reload_snapshot(&self) -> Result<usize> {
        let entries: Vec<Entry> = self
            .whole
            .find(doc! {})
            .projection(without_reservations())
            // FerretDB 1.x answers each further batch of a cursor slowly on a large collection;
            // batches of the largest size MongoDB sends (16 MiB) keep them few.
            .batch_size(RELOAD_BATCH)
            .await?
            .map_ok(ArticleDoc::into_entry)
            .try_collect()
            .await?;
        let count = entries.len();
        self.write_snapshot().load(entries);
        Ok(count)
    }

    /// Puts the stored article into the snapshot after a write, and returns it. Should the read
    /// fail, the snapshot is not trusted (reads go to MongoDB) until the next full reload.
    async fn refresh(&self, id: &str) -> Option<Article> {
        let read = self
            .whole
            .find_one(doc! {"_id": id})
            .projection(without_reservations())
            .await;
        match read {
            Ok(document) => {
                let entry = document?.into_entry();
                let article = entry.article.clone();
                self.write_snapshot().put(entry);
                Some(article)
            }
            Err(error) => {
                warn!(%error, id, "cannot refresh the snapshot; reading MongoDB until reloaded");
                self.write_snapshot().distrust();
                None
            }
        }
    }

    fn read_snapshot<T>(&self, read: impl FnOnce(&Snapshot) -> T) -> Option<T> {
        let snapshot = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        snapshot.is_loaded().then(|| read(&snapshot))
    }

    fn write_snapshot(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.snapshot.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn enabled(&self, filter: Document, page: Page) -> Result<Vec<Article>> {
        self.articles
            .find(filter)
            .sort(doc! {"key": 1, "_id": 1})
            .skip(page.skip)
            .limit(page.limit)
            .projection(article_fields())
            .await?
            .try_collect()
            .await
    }

    /// Reserves `quantity` of the article for the order, once: the first time the article is
    /// known, enabled and has the stock, it is decremented and recorded as reserved in the same
    /// write; otherwise the refusal is recorded. Either record decides every later answer for
    /// this order, so a repeated message gets the first answer again and never reserves twice,
    /// even after the reservation was given back.
    pub async fn reserve(&self, article_id: &str, order_id: &str, quantity: i64) -> Result<Answer> {
        let _locked = self.locks.lock(article_id).await;
        let record = format!("reservations.{order_id}");
        let reserved = self
            .documents
            .update_one(
                doc! {"_id": article_id, "enabled": true, "stock": {"$gte": quantity},
                &record: {"$exists": false}},
                doc! {"$inc": {"stock": -quantity, "version": 1},
                "$set": {&record: {"state": "reserved", "quantity": quantity}}},
            )
            .await?;
        if reserved.modified_count == 1 {
            let article = match self.refresh(article_id).await {
                Some(article) => Some(article),
                None => self.stored(article_id).await?,
            };
            return Ok(article.map_or(Answer::UNKNOWN, |article| Answer::of(&article, true)));
        }
        // Nothing taken: unknown, disabled, short of stock, or this order has a record already.
        // Recording the refusal is conditional too, so the first outcome stays the only one.
        self.documents
            .update_one(
                doc! {"_id": article_id, &record: {"$exists": false}},
                doc! {"$set": {&record: {"state": "refused"}}},
            )
            .await?;
        let mut fields = article_fields();
        fields.insert(&record, 1);
        let Some(document) = self
            .documents
            .find_one(doc! {"_id": article_id})
            .projection(fields)
            .await?
        else {
            return Ok(Answer::UNKNOWN);
        };
        let taken = reservation(&document, order_id)
            .and_then(|entry| entry.get_str("state").ok())
            .is_some_and(|state| state == "reserved" || state == "released");
        let article: Article = mongodb::bson::from_document(document)?;
        Ok(Answer::of(&article, taken))
    }

    /// Gives back what the order reserved of the article, once; false when nothing was reserved
    /// or it was given back already.
    pub async fn release(&self, article_id: &str, order_id: &str) -> Result<bool> {
        let _locked = self.locks.lock(article_id).await;
        let state = format!("reservations.{order_id}.state");
        let held = doc! {"_id": article_id, &state: "reserved"};
        let Some(document) = self
            .documents
            .find_one(held.clone())
            .projection(doc! {format!("reservations.{order_id}"): 1})
            .await?
        else {
            return Ok(false);
        };
        let Some(quantity) =
            reservation(&document, order_id).and_then(|entry| entry.get_i64("quantity").ok())
        else {
            return Ok(false);
        };
        // Conditional on the state read above: of two concurrent releases, one gives back.
        let result = self
            .documents
            .update_one(
                held,
                doc! {"$inc": {"stock": quantity, "version": 1}, "$set": {&state: "released"}},
            )
            .await?;
        if result.modified_count == 1 {
            self.refresh(article_id).await;
        }
        Ok(result.modified_count == 1)
    }
}

/// The reservation record of `order_id` in an article document.
fn reservation<'a>(document: &'a Document, order_id: &str) -> Option<&'a Document> {
    document
        .get_document("reservations")
        .ok()?
        .get_document(order_id)
        .ok()
}
