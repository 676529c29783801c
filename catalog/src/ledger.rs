//! Stock as a ledger of movements (the course's Stock case study: "the current quantity is
//! computed by processing stock movements"), correct with any number of catalog instances on a
//! store whose updates are not atomic.
//!
//! Collection `stock_movements`, append-only: every change of an article's stock is a movement
//! `{_id, article, position, kind, quantity, balance, order?, at}` at the next position of that
//! article, with a unique index on `{article, position}`. Position 1 is the admin's initial stock.
//! A writer computes movement n+1 from a movement n it knows (movements never change, so any one
//! it has seen is a fact) and inserts it; the unique index lets exactly one writer have n+1. The
//! loser's head was stale: it reads the movements after n and decides again on the true head.
//! So every balance was computed from the balance just before it, and none goes below zero.
//!
//! What must happen once is keyed by `_id`, unique too: the decision on an order's line
//! (`<order>:<article>:reserve`, kind `reserved` or `refused`), its release
//! (`<order>:<article>:release`) and an admin's change at a position (`<article>:<position>`).
//! A second writer of the same `_id` finds the first one's movement and answers from it.
//!
//! Everything else here is a cache, safe to be stale: the head each instance remembers per
//! article (a stale one costs a duplicate key and a catch-up read) and `stock_heads`, the last
//! head saved per article, which reloads and reads without the snapshot start from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::locks::KeyedLocks;
use common::mongo::is_duplicate_key;
use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OnceCell, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;
use tracing::warn;

type Result<T> = mongodb::error::Result<T>;

/// Attempts at one append before giving up; each failed one means another writer succeeded.
const MAX_ATTEMPTS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An admin's stock: the initial one at position 1, later changes.
    Stock,
    /// An order line's decision: stock taken.
    Reserved,
    /// An order line's decision: nothing taken (unknown quantity, disabled, short, or invalid
    /// before any decision), and never will be for this order.
    Refused,
    /// A reservation given back.
    Released,
}

/// One movement of an article's stock, never changed once written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Movement {
    #[serde(rename = "_id")]
    pub id: String,
    pub article: String,
    pub position: i64,
    pub kind: Kind,
    /// The signed change of the stock.
    pub quantity: i64,
    /// The stock after this movement.
    pub balance: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    pub at: DateTime,
}

impl Movement {
    pub fn head(&self) -> Head {
        Head {
            position: self.position,
            balance: self.balance,
        }
    }
}

/// The latest movement one knows of an article: its position and the stock after it. The
/// default, position 0, is "none known".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub position: i64,
    pub balance: i64,
}

impl Head {
    /// The newer of two heads.
    pub fn newest(self, other: Head) -> Head {
        if other.position > self.position {
            other
        } else {
            self
        }
    }
}

/// What a writer appends after a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub quantity: i64,
}

/// The decision on an order's line, made on the head it will follow: reserved when the article
/// is enabled and the stock covers the quantity, refused otherwise.
pub fn decide(head: Head, enabled: bool, quantity: i64) -> Change {
    if enabled && head.balance >= quantity {
        Change {
            kind: Kind::Reserved,
            quantity: -quantity,
        }
    } else {
        Change {
            kind: Kind::Refused,
            quantity: 0,
        }
    }
}

pub fn reserve_id(order: &str, article: &str) -> String {
    format!("{order}:{article}:reserve")
}

pub fn release_id(order: &str, article: &str) -> String {
    format!("{order}:{article}:release")
}

fn stock_id(article: &str, position: i64) -> String {
    format!("{article}:{position}")
}

/// How an append ended.
#[derive(Debug)]
pub enum Appended {
    /// This writer's movement is in the ledger.
    New(Movement),
    /// A movement with this `_id` was there already: the first writer's.
    Existing(Movement),
}

/// How an admin's stock value ended.
#[derive(Debug)]
pub enum StockEdit {
    /// The stock already had that value: no movement.
    Unchanged(Head),
    /// The movement to the new value.
    Changed(Movement),
    /// Another movement came after the version the admin read.
    Stale(Head),
    /// A different stock without the version it was read at.
    VersionMissing(Head),
}

/// The last head saved for an article in `stock_heads`.
#[derive(Serialize, Deserialize)]
struct SavedHead {
    #[serde(rename = "_id")]
    article: String,
    position: i64,
    balance: i64,
}

pub struct Ledger {
    movements: Collection<Movement>,
    saved: Collection<SavedHead>,
    /// Created once per process before the first movement: the positions rest on it.
    index: OnceCell<()>,
    /// The newest head this instance knows per article (a cache).
    known: Mutex<HashMap<String, Head>>,
    /// Heads learned but not yet saved in `stock_heads`, newest per article.
    unsaved: Mutex<HashMap<String, Head>>,
    saving: Notify,
    /// One writer per article at a time in this process. A throughput aid only: writers of one
    /// instance then do not make each other catch up; the unique index decides between instances.
    turns: KeyedLocks,
}

impl Ledger {
    pub fn new(db: &Database) -> Self {
        Self {
            movements: db.collection("stock_movements"),
            saved: db.collection("stock_heads"),
            index: OnceCell::new(),
            known: Mutex::default(),
            unsaved: Mutex::default(),
            saving: Notify::new(),
            turns: KeyedLocks::default(),
        }
    }

    pub async fn ensure_index(&self) -> Result<()> {
        self.index
            .get_or_try_init(|| async {
                let positions = IndexModel::builder()
                    .keys(doc! {"article": 1, "position": 1})
                    .options(IndexOptions::builder().unique(true).build())
                    .build();
                self.movements.create_index(positions).await.map(drop)
            })
            .await
            .map(drop)
    }

    /// This instance's turn to write the article's movements (see `turns`).
    pub async fn turn(&self, article: &str) -> OwnedMutexGuard<()> {
        self.turns.lock(article).await
    }

    /// The newest head this instance knows of the article.
    pub fn known(&self, article: &str) -> Option<Head> {
        self.lock_known().get(article).copied()
    }

    /// Remembers a head another instance announced.
    pub fn hear(&self, article: &str, head: Head) {
        self.remember(article, head);
    }

    /// Remembers a head read in or written to the ledger, and saves it in `stock_heads`.
    fn learn(&self, article: &str, head: Head) {
        if self.remember(article, head) {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
            let entry = unsaved.entry(article.to_owned()).or_default();
            *entry = entry.newest(head);
            self.saving.notify_one();
        }
    }

    /// True when `head` is newer than what was known.
    fn remember(&self, article: &str, head: Head) -> bool {
        let mut known = self.lock_known();
        let held = known.entry(article.to_owned()).or_default();
        let newer = head.position > held.position;
        *held = held.newest(head);
        newer
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Head>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A head to start writing from: the newest of the remembered one and `hint` (e.g. the
    /// snapshot's), else the ledger's latest movement.
    pub async fn head(&self, article: &str, hint: Head) -> Result<Head> {
        let head = self.known(article).unwrap_or_default().newest(hint);
        if head.position > 0 {
            return Ok(head);
        }
        let latest = self
            .movements
            .find_one(doc! {"article": article})
            .sort(doc! {"position": -1})
            .await?
            .map(|movement| movement.head())
            .unwrap_or_default();
        self.learn(article, latest);
        Ok(latest)
    }

    /// The movements of the article after `position`, in order.
    async fn after(&self, article: &str, position: i64) -> Result<Vec<Movement>> {
        let later: Vec<Movement> = self
            .movements
            .find(doc! {"article": article, "position": {"$gt": position}})
            .sort(doc! {"position": 1})
            .await?
            .try_collect()
            .await?;
        if let Some(last) = later.last() {
            self.learn(article, last.head());
        }
        Ok(later)
    }

    /// The movement with this `_id`, if any.
    pub async fn find(&self, id: &str) -> Result<Option<Movement>> {
        self.movements.find_one(doc! {"_id": id}).await
    }

    /// Appends the movement `id` after the article's true head, `change` deciding what it is on
    /// that head; or finds the movement `id` written before. Starts from `head` and catches up
    /// each time another movement took the next position.
    pub async fn append(
        &self,
        article: &str,
        id: &str,
        order: Option<&str>,
        mut head: Head,
        change: impl Fn(Head) -> Change,
    ) -> Result<Appended> {
        self.ensure_index().await?;
        for _ in 0..MAX_ATTEMPTS {
            let Change { kind, quantity } = change(head);
            let movement = Movement {
                id: id.to_owned(),
                article: article.to_owned(),
                position: head.position + 1,
                kind,
                quantity,
                balance: head.balance + quantity,
                order: order.map(str::to_owned),
                at: DateTime::now(),
            };
            match self.movements.insert_one(&movement).await {
                Ok(_) => {
                    self.learn(article, movement.head());
                    return Ok(Appended::New(movement));
                }
                Err(error) if is_duplicate_key(&error) => {}
                Err(error) => return Err(error),
            }
            // The position or the id was taken: what came after our head tells which.
            let later = self.after(article, head.position).await?;
            if let Some(first) = later.iter().find(|movement| movement.id == id) {
                return Ok(Appended::Existing(first.clone()));
            }
            match later.last() {
                Some(last) => head = last.head(),
                None => {
                    if let Some(first) = self.find(id).await? {
                        return Ok(Appended::Existing(first));
                    }
                }
            }
        }
        Err(mongodb::error::Error::custom(format!(
            "no free position for {id} after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Writes the initial stock of a new article: movement 1.
    pub async fn open(&self, article: &str, stock: i64) -> Result<Movement> {
        self.ensure_index().await?;
        let movement = Movement {
            id: stock_id(article, 1),
            article: article.to_owned(),
            position: 1,
            kind: Kind::Stock,
            quantity: stock,
            balance: stock,
            order: None,
            at: DateTime::now(),
        };
        self.movements.insert_one(&movement).await?;
        self.learn(article, movement.head());
        Ok(movement)
    }

    /// An admin sets the stock to `stock`, having read it at position `read`: a movement to that
    /// value right after `read`, so it never overwrites a movement the admin did not see. A form
    /// read before later movements is refused (`Stale`) when it changes the stock it read, even to
    /// the value the stock has now (the admin meant a change from what they saw), and leaves the
    /// stock alone when it does not (an edit of the description only).
    pub async fn edit(
        &self,
        article: &str,
        head: Head,
        stock: i64,
        read: Option<i64>,
    ) -> Result<StockEdit> {
        if read == Some(head.position) && stock == head.balance {
            return Ok(StockEdit::Unchanged(head));
        }
        // Compare with the true head, not a cached one.
        // From the movement the admin read, when it is older than the cached head.
        let from = read.map_or(head.position, |read| head.position.min(read - 1));
        let later = self.after(article, from).await?;
        let head = later.last().map_or(head, Movement::head);
        let Some(read) = read else {
            return Ok(if stock == head.balance {
                StockEdit::Unchanged(head)
            } else {
                StockEdit::VersionMissing(head)
            });
        };
        if read != head.position {
            let as_read = later.iter().find(|movement| movement.position == read);
            let untouched = as_read.is_some_and(|movement| movement.balance == stock);
            return Ok(if untouched {
                StockEdit::Unchanged(head)
            } else {
                StockEdit::Stale(head)
            });
        }
        if stock == head.balance {
            return Ok(StockEdit::Unchanged(head));
        }
        self.ensure_index().await?;
        let position = head.position + 1;
        let movement = Movement {
            id: stock_id(article, position),
            article: article.to_owned(),
            position,
            kind: Kind::Stock,
            quantity: stock - head.balance,
            balance: stock,
            order: None,
            at: DateTime::now(),
        };
        match self.movements.insert_one(&movement).await {
            Ok(_) => {
                self.learn(article, movement.head());
                Ok(StockEdit::Changed(movement))
            }
            Err(error) if is_duplicate_key(&error) => {
                let later = self.after(article, head.position).await?;
                Ok(StockEdit::Stale(later.last().map_or(head, Movement::head)))
            }
            Err(error) => Err(error),
        }
    }

    /// The saved heads of these articles (all of them for `None`).
    pub async fn saved_heads(&self, articles: Option<&[String]>) -> Result<HashMap<String, Head>> {
        let filter = match articles {
            Some(ids) => doc! {"_id": {"$in": ids}},
            None => doc! {},
        };
        let saved: Vec<SavedHead> = self
            .saved
            .find(filter)
            .batch_size(100_000)
            .await?
            .try_collect()
            .await?;
        Ok(saved
            .into_iter()
            .map(|saved| {
                let head = Head {
                    position: saved.position,
                    balance: saved.balance,
                };
                (saved.article, head)
            })
            .collect())
    }

    /// Saves learned heads in `stock_heads` in the background until shutdown, newest per article
    /// (a burst of movements of one article costs one write). A lost or late write leaves a stale
    /// head there, which costs a catch-up, never a wrong stock.
    pub async fn keep_saving_heads(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.saving.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            let batch =
                std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(|e| e.into_inner()));
            for (article, head) in batch {
                let started = tokio::time::Instant::now();
                let pause = match self.save(&article, head).await {
                    // FerretDB 1.x scans the collection for an update (about 0.4 s at 100,000
                    // articles) and movements wait for it meanwhile: saving takes at most a
                    // quarter of the store's time; heads learned meanwhile wait, coalesced.
                    Ok(()) => started.elapsed() * 3,
                    Err(error) => {
                        warn!(%error, article, "cannot save the stock head yet");
                        self.learn_unsaved(article, head);
                        Duration::from_secs(1)
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }

    fn learn_unsaved(&self, article: String, head: Head) {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
        let entry = unsaved.entry(article).or_default();
        *entry = entry.newest(head);
        self.saving.notify_one();
    }

    /// Replaces an older saved head; a newer one saved already makes the upsert a duplicate key.
    async fn save(&self, article: &str, head: Head) -> Result<()> {
        let result = self
            .saved
            .update_one(
                doc! {"_id": article, "position": {"$lt": head.position}},
                doc! {"$set": {"position": head.position, "balance": head.balance}},
            )
            .upsert(true)
            .await;
        match result {
            Err(error) if !is_duplicate_key(&error) => Err(error),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Head = Head {
        position: 4,
        balance: 3,
    };

    #[test]
    fn a_line_is_reserved_only_when_enabled_and_covered() {
        assert_eq!(
            decide(HEAD, true, 3),
            Change {
                kind: Kind::Reserved,
                quantity: -3
            }
        );
        for (enabled, quantity) in [(true, 4), (false, 1)] {
            assert_eq!(
                decide(HEAD, enabled, quantity),
                Change {
                    kind: Kind::Refused,
                    quantity: 0
                }
            );
        }
    }

    #[test]
    fn the_newest_head_is_the_one_at_the_higher_position() {
        let older = Head {
            position: 2,
            balance: 9,
        };
        assert_eq!(older.newest(HEAD), HEAD);
        assert_eq!(HEAD.newest(older), HEAD);
        assert_eq!(Head::default().newest(older), older);
    }

    #[test]
    fn once_only_ids_name_the_order_the_article_and_the_step() {
        assert_eq!(reserve_id("o1", "a1"), "o1:a1:reserve");
        assert_eq!(release_id("o1", "a1"), "o1:a1:release");
        assert_eq!(stock_id("a1", 7), "a1:7");
    }
}
