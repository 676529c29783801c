//! MongoDB access for articles, and the catalog's writes put together: the `articles` collection
//! (what clients see), the stock ledger (`ledger`), the in-memory snapshot reads come from
//! (`snapshot`) and the announcements that keep other instances' snapshots current (`changes`).
//!
//! An article document holds what clients see but the stock, plus two derived fields, `key` (the
//! folded name, for sorting) and `search` (folded name and description, for search), and the
//! content `version`. Nothing in it grows with orders. The stock lives in the ledger only: its
//! copies (the snapshot's, `stock_heads`, each instance's remembered heads) are caches, and
//! deliberately not a field of the article document, where FerretDB 1.x, which applies an update
//! as a read and a later whole-document write, would let a cache write undo an admin's edit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::article::{Article, ArticleInput, literal_pattern, searchable, sort_key};
use crate::changes::{ArticleChanged, Changes};
use crate::ledger::{Appended, Head, Kind, Ledger, Movement, StockEdit, decide};
use crate::query::Page;
use crate::snapshot::{Entry, Snapshot};

type Result<T> = mongodb::error::Result<T>;

/// Documents per batch of a snapshot reload: as many as fit in the 16 MiB a batch can carry.
const RELOAD_BATCH: u32 = 100_000;
/// Entries merged into the snapshot per hold of its write lock.
const RELOAD_CHUNK: usize = 1_000;

/// An article document.
#[derive(Serialize, Deserialize)]
struct ArticleDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    description: String,
    image: String,
    price: f64,
    enabled: bool,
    key: String,
    search: String,
    created: DateTime,
    updated: DateTime,
    /// Incremented by every content write, so a snapshot can tell a newer copy from an older one.
    #[serde(default)]
    version: i64,
}

impl ArticleDoc {
    fn into_entry(self, head: Head) -> Entry {
        let article = Article {
            id: self.id,
            name: self.name,
            description: self.description,
            image: self.image,
            price: self.price,
            stock: head.balance,
            stock_version: head.position,
            enabled: self.enabled,
        };
        Entry::new(article, self.version)
    }
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
}

/// Why an admin's update was not applied.
#[derive(Debug)]
pub enum UpdateError {
    NotFound,
    /// The body's stock differs and another movement came after its `stockVersion`.
    StockChanged(Head),
    /// The body's stock differs and it has no `stockVersion`.
    VersionMissing(Head),
    /// The body carries back an `enabled` that is not the article's: it cannot be set here.
    EnabledDiffers {
        enabled: bool,
    },
    Store(mongodb::error::Error),
}

impl From<mongodb::error::Error> for UpdateError {
    fn from(error: mongodb::error::Error) -> Self {
        Self::Store(error)
    }
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    articles: Collection<ArticleDoc>,
    ledger: Arc<Ledger>,
    snapshot: Arc<RwLock<Snapshot>>,
    changes: Changes,
}

impl Store {
    pub fn new(db: Database, changes: Changes) -> Self {
        Self {
            articles: db.collection("articles"),
            ledger: Arc::new(Ledger::new(&db)),
            snapshot: Arc::default(),
            changes,
            db,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Listings and searches read enabled articles in name order; the ledger's positions are
    /// unique per article.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let by_name = IndexModel::builder()
            .keys(doc! {"enabled": 1, "key": 1, "_id": 1})
            .build();
        self.articles.create_index(by_name).await?;
        self.ledger.ensure_index().await
    }

    /// Writes the initial stock movement first, then the article: a crash in between leaves a
    /// movement of an article nobody can see, never an article whose stock is not in the ledger.
    pub async fn create(&self, input: ArticleInput) -> Result<Article> {
        let id = uuid::Uuid::new_v4().to_string();
        let opened = self.ledger.open(&id, input.stock).await?;
        let now = DateTime::now();
        let document = ArticleDoc {
            key: sort_key(&input.name),
            search: searchable(&input.name, &input.description),
            id,
            name: input.name,
            description: input.description,
            image: input.image,
            price: input.price,
            enabled: true,
            created: now,
            updated: now,
            version: 1,
        };
        self.articles.insert_one(&document).await?;
        Ok(self.wrote(document.into_entry(opened.head())))
    }

    /// The article, from the snapshot when it has it (FerretDB 1.x finds even an `_id` by
    /// scanning the collection), else from MongoDB.
    pub async fn get(&self, id: &str) -> Result<Option<Article>> {
        Ok(self.entry(id).await?.map(|entry| entry.article))
    }

    async fn entry(&self, id: &str) -> Result<Option<Entry>> {
        // Catalog's ids are UUIDs: anything else is unknown without a costly miss.
        if uuid::Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        if let Some(entry) = self.snapshot_entry(id) {
            return Ok(Some(entry));
        }
        let Some(document) = self.articles.find_one(doc! {"_id": id}).await? else {
            return Ok(None);
        };
        let ids = [id.to_owned()];
        let saved = self.ledger.saved_heads(Some(&ids)).await?;
        Ok(Some(self.with_stock(document, &saved)))
    }

    fn snapshot_entry(&self, id: &str) -> Option<Entry> {
        let entry = {
            let snapshot = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            snapshot.is_loaded().then(|| snapshot.get(id)).flatten()?
        };
        Some(self.freshest(entry))
    }

    /// The entry with the newest stock this instance knows.
    fn freshest(&self, entry: Entry) -> Entry {
        match self.ledger.known(&entry.article.id) {
            Some(head) => entry.with_head(head),
            None => entry,
        }
    }

    fn with_stock(&self, document: ArticleDoc, saved: &HashMap<String, Head>) -> Entry {
        let head = saved.get(&document.id).copied().unwrap_or_default();
        self.freshest(document.into_entry(head))
    }

    /// Replaces what an admin sets; `enabled` stays as it is. A different stock is a movement
    /// checked against the `stockVersion` the admin read, applied before the content, so a refused
    /// stock leaves the article untouched.
    pub async fn update(
        &self,
        id: &str,
        input: ArticleInput,
    ) -> std::result::Result<Article, UpdateError> {
        let Some(entry) = self.entry(id).await? else {
            return Err(UpdateError::NotFound);
        };
        let enabled = entry.article.enabled;
        if input.enabled.is_some_and(|sent| sent != enabled) {
            return Err(UpdateError::EnabledDiffers { enabled });
        }
        let head = {
            let _turn = self.ledger.turn(id).await;
            let head = self.ledger.head(id, entry.head()).await?;
            match self
                .ledger
                .edit(id, head, input.stock, input.stock_version)
                .await?
            {
                StockEdit::Unchanged(head) => head,
                StockEdit::Changed(movement) => movement.head(),
                StockEdit::Stale(head) => return Err(UpdateError::StockChanged(head)),
                StockEdit::VersionMissing(head) => return Err(UpdateError::VersionMissing(head)),
            }
        };
        let set = doc! {
            "name": &input.name,
            "description": &input.description,
            "image": &input.image,
            "price": input.price,
            "key": sort_key(&input.name),
            "search": searchable(&input.name, &input.description),
            "updated": DateTime::now(),
        };
        let document = self
            .articles
            .find_one_and_update(doc! {"_id": id}, doc! {"$set": set, "$inc": {"version": 1}})
            .return_document(ReturnDocument::After)
            .await?
            .ok_or(UpdateError::NotFound)?;
        Ok(self.wrote(self.freshest(document.into_entry(head))))
    }

    /// Soft delete; false when there is no such article.
    pub async fn disable(&self, id: &str) -> Result<bool> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Ok(false);
        }
        let disabled = self
            .articles
            .find_one_and_update(
                doc! {"_id": id},
                doc! {"$set": {"enabled": false, "updated": DateTime::now()},
                "$inc": {"version": 1}},
            )
            .return_document(ReturnDocument::After)
            .await?;
        let Some(document) = disabled else {
            return Ok(false);
        };
        let entry = match self.snapshot_entry(id) {
            Some(held) => document.into_entry(held.head()),
            None => {
                let ids = [id.to_owned()];
                self.with_stock(document, &self.ledger.saved_heads(Some(&ids)).await?)
            }
        };
        self.wrote(self.freshest(entry));
        Ok(true)
    }

    /// A page of the enabled articles, in name order.
    pub async fn list(&self, page: Page) -> Result<Vec<Article>> {
        if let Some(articles) = self
            .read_snapshot(move |snapshot| snapshot.list(page))
            .await
        {
            return Ok(articles);
        }
        self.enabled(doc! {"enabled": true}, page).await
    }

    /// A page of the enabled articles whose name or description contains `folded` (a text folded
    /// by `article::fold`).
    pub async fn search(&self, folded: &str, page: Page) -> Result<Vec<Article>> {
        let text = folded.to_owned();
        let found = self
            .read_snapshot(move |snapshot| snapshot.search(&text, page))
            .await;
        if let Some(articles) = found {
            return Ok(articles);
        }
        let pattern = literal_pattern(folded);
        self.enabled(doc! {"enabled": true, "search": {"$regex": pattern}}, page)
            .await
    }

    /// Reads every article and saved stock head into the snapshot, merged with what it holds.
    pub async fn reload_snapshot(&self) -> Result<usize> {
        let saved = self.ledger.saved_heads(None).await?;
        let entries: Vec<Entry> = self
            .articles
            .find(doc! {})
            // FerretDB 1.x answers each further batch of a cursor slowly on a large collection;
            // batches of the largest size MongoDB sends (16 MiB) keep them few.
            .batch_size(RELOAD_BATCH)
            .await?
            .map_ok(|document| self.with_stock(document, &saved))
            .try_collect()
            .await?;
        let count = entries.len();
        let snapshot = self.snapshot.clone();
        // A merge of 100,000 entries is CPU work: off the async workers, and in chunks, so that a
        // read by id on an async worker never waits for the write lock longer than one chunk.
        tokio::task::spawn_blocking(move || {
            let write = || snapshot.write().unwrap_or_else(|e| e.into_inner());
            let mut entries = entries.into_iter();
            loop {
                let chunk: Vec<Entry> = entries.by_ref().take(RELOAD_CHUNK).collect();
                if chunk.is_empty() {
                    break;
                }
                write().merge(chunk);
            }
            write().mark_loaded();
        })
        .await
        .map_err(mongodb::error::Error::custom)?;
        Ok(count)
    }

    /// Takes in another instance's (or this one's) announced write.
    pub fn hear(&self, change: ArticleChanged) {
        let entry = change.into_entry();
        self.ledger.hear(&entry.article.id, entry.head());
        self.put(entry);
    }

    /// After a write: into this instance's snapshot at once (it reads its own writes), and
    /// announced to the others.
    fn wrote(&self, entry: Entry) -> Article {
        self.changes.announce(&entry);
        let article = entry.article.clone();
        self.put(entry);
        article
    }

    fn put(&self, entry: Entry) {
        self.snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .put(entry);
    }

    /// Runs `read` on the loaded snapshot on a blocking thread: a search scans every article, too
    /// long a CPU stretch for an async worker. `None` when the snapshot is not loaded.
    async fn read_snapshot<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Snapshot) -> T + Send + 'static,
    ) -> Option<T> {
        let snapshot = self.snapshot.clone();
        tokio::task::spawn_blocking(move || {
            let snapshot = snapshot.read().unwrap_or_else(|e| e.into_inner());
            snapshot.is_loaded().then(|| read(&snapshot))
        })
        .await
        .ok()
        .flatten()
    }

    async fn enabled(&self, filter: Document, page: Page) -> Result<Vec<Article>> {
        let documents: Vec<ArticleDoc> = self
            .articles
            .find(filter)
            .sort(doc! {"key": 1, "_id": 1})
            .skip(page.skip)
            .limit(page.limit)
            .await?
            .try_collect()
            .await?;
        let ids: Vec<String> = documents
            .iter()
            .map(|document| document.id.clone())
            .collect();
        let saved = self.ledger.saved_heads(Some(&ids)).await?;
        Ok(documents
            .into_iter()
            .map(|document| self.with_stock(document, &saved).article)
            .collect())
    }

    /// Decides the order's line once: a `reserved` (stock taken) or `refused` movement keyed by
    /// order and article, appended on the article's true head. A repeated message, on any
    /// instance, finds that decision and gets the same answer, even after a release or a restock.
    pub async fn reserve(&self, article_id: &str, order_id: &str, quantity: i64) -> Result<Answer> {
        let Some(entry) = self.entry(article_id).await? else {
            return Ok(Answer::UNKNOWN);
        };
        let enabled = entry.article.enabled;
        let price = entry.article.price;
        let id = crate::ledger::reserve_id(order_id, article_id);
        let decision = {
            let _turn = self.ledger.turn(article_id).await;
            let head = self.ledger.head(article_id, entry.head()).await?;
            let decide = |head| decide(head, enabled, quantity);
            self.ledger
                .append(article_id, &id, Some(order_id), head, decide)
                .await?
        };
        let decision = self.settle(entry, decision);
        Ok(Answer {
            valid: decision.kind == Kind::Reserved,
            price,
            stock: decision.balance,
        })
    }

    /// Gives back what the order reserved of the article, once; false when nothing was reserved
    /// or it was given back already. With no decision yet, the line is refused first, so a late
    /// `order_placed` of this invalid order can never take stock.
    pub async fn release(&self, article_id: &str, order_id: &str) -> Result<bool> {
        let Some(entry) = self.entry(article_id).await? else {
            return Ok(false);
        };
        let decision_id = crate::ledger::reserve_id(order_id, article_id);
        let _turn = self.ledger.turn(article_id).await;
        let decision = match self.ledger.find(&decision_id).await? {
            Some(decision) => decision,
            None => {
                let head = self.ledger.head(article_id, entry.head()).await?;
                let refuse = |_| crate::ledger::Change {
                    kind: Kind::Refused,
                    quantity: 0,
                };
                let appended = self
                    .ledger
                    .append(article_id, &decision_id, Some(order_id), head, refuse)
                    .await?;
                self.settle(entry.clone(), appended)
            }
        };
        if decision.kind != Kind::Reserved {
            return Ok(false);
        }
        let head = self.ledger.head(article_id, entry.head()).await?;
        let give_back = |_| crate::ledger::Change {
            kind: Kind::Released,
            quantity: -decision.quantity,
        };
        let release_id = crate::ledger::release_id(order_id, article_id);
        let appended = self
            .ledger
            .append(article_id, &release_id, Some(order_id), head, give_back)
            .await?;
        let given_back = matches!(appended, Appended::New(_));
        self.settle(entry, appended);
        Ok(given_back)
    }

    /// The movement an append ended with; a new one is shown and announced.
    fn settle(&self, entry: Entry, appended: Appended) -> Movement {
        match appended {
            Appended::New(movement) => {
                self.wrote(self.freshest(entry.with_head(movement.head())));
                movement
            }
            Appended::Existing(movement) => movement,
        }
    }
}
