//! An in-memory copy of the catalog in name order, which reads (by id, listings, searches) use
//! instead of MongoDB. Pure data, no I/O: the store feeds it.
//!
//! Why: FerretDB 1.x pushes neither sorts nor regex filters down to SQLite, so every listing or
//! search through it reads and sorts the whole collection (about a quarter of a second per 3,000
//! articles on the project's machine), and even a lookup by `_id` scans it (180 ms for 100,000
//! articles). 100,000 articles fit in a few tens of MiB, and a substring
//! scan over their folded text takes milliseconds.
//!
//! How it stays current: every write of any instance is put here by the writer at once and
//! announced on the `catalog_changes` fanout to every other instance, which puts it here too; a
//! full reload at an interval is the safety net for announcements lost while a queue was down.
//! Content and stock are ordered separately: content by the article's `version`, which every
//! content write increments, stock by its `stockVersion` (its position in the stock ledger). So an
//! older copy, however late it arrives, never replaces a newer one. Nothing here decides a
//! reservation: the ledger does.

use std::collections::{BTreeMap, HashMap};

use crate::article::{Article, searchable, sort_key};
use crate::ledger::Head;
use crate::query::Page;

/// An article as the snapshot keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub article: Article,
    /// The folded name: the sort key.
    pub key: String,
    /// Folded name and description: what search looks in.
    pub search: String,
    /// The version of the content (everything but the stock).
    pub version: i64,
}

impl Entry {
    pub fn new(article: Article, version: i64) -> Self {
        Self {
            key: sort_key(&article.name),
            search: searchable(&article.name, &article.description),
            article,
            version,
        }
    }

    /// The stock and its ledger position.
    pub fn head(&self) -> Head {
        Head {
            position: self.article.stock_version,
            balance: self.article.stock,
        }
    }

    /// With the stock of `head` when that is newer.
    pub fn with_head(mut self, head: Head) -> Self {
        if head.position > self.article.stock_version {
            self.article.stock = head.balance;
            self.article.stock_version = head.position;
        }
        self
    }

    /// `newer`'s content unless this one's is newer, and the newer of the two stocks.
    fn merged(self, newer: Entry) -> Entry {
        let head = self.head().newest(newer.head());
        let content = if newer.version >= self.version {
            newer
        } else {
            self
        };
        content.with_head(head)
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every article, enabled or not, in name order (then id, like the MongoDB queries).
    by_name: BTreeMap<(String, String), Entry>,
    /// Each article's place in `by_name`.
    keys: HashMap<String, String>,
    /// Listings come from here only after a first full load.
    loaded: bool,
}

impl Snapshot {
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Merges `entry` with the copy held: the newer content and the newer stock win.
    pub fn put(&mut self, entry: Entry) {
        let id = entry.article.id.clone();
        let entry = match self.keys.remove(&id) {
            Some(key) => match self.by_name.remove(&(key, id.clone())) {
                Some(held) => held.merged(entry),
                None => entry,
            },
            None => entry,
        };
        self.keys.insert(id.clone(), entry.key.clone());
        self.by_name.insert((entry.key.clone(), id), entry);
    }

    /// Merges part of a full reload: newer versions win, whichever side they come from.
    pub fn merge(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            self.put(entry);
        }
    }

    /// A full reload is merged: reads may come from here from now on.
    pub fn mark_loaded(&mut self) {
        self.loaded = true;
    }

    /// The article with this id, enabled or not.
    pub fn get(&self, id: &str) -> Option<Entry> {
        let key = self.keys.get(id)?;
        let place = (key.clone(), id.to_owned());
        self.by_name.get(&place).cloned()
    }

    /// A page of the enabled articles.
    pub fn list(&self, page: Page) -> Vec<Article> {
        self.page(page, |_| true)
    }

    /// A page of the enabled articles whose folded text contains `folded`.
    pub fn search(&self, folded: &str, page: Page) -> Vec<Article> {
        self.page(page, |entry| entry.search.contains(folded))
    }

    fn page(&self, page: Page, matches: impl Fn(&Entry) -> bool) -> Vec<Article> {
        self.by_name
            .values()
            .filter(|entry| entry.article.enabled && matches(entry))
            .skip(usize::try_from(page.skip).unwrap_or(usize::MAX))
            .take(page.limit as usize)
            .map(|entry| entry.article.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, name: &str, enabled: bool, version: i64) -> Entry {
        let article = Article {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            image: String::new(),
            price: 1.0,
            stock: version,
            stock_version: version,
            enabled,
        };
        Entry::new(article, version)
    }

    fn stock_at(mut entry: Entry, stock: i64, position: i64) -> Entry {
        entry.article.stock = stock;
        entry.article.stock_version = position;
        entry
    }

    fn names(articles: Vec<Article>) -> Vec<String> {
        articles.into_iter().map(|article| article.name).collect()
    }

    const ALL: Page = Page {
        skip: 0,
        limit: 200,
    };

    #[test]
    fn lists_enabled_articles_in_name_order_by_page() {
        let mut snapshot = Snapshot::default();
        snapshot.merge(vec![
            entry("1", "cherry", true, 1),
            entry("2", "Banana", true, 1),
            entry("3", "apple", false, 1),
            entry("4", "Éclair", true, 1),
        ]);
        snapshot.mark_loaded();
        assert_eq!(names(snapshot.list(ALL)), ["Banana", "cherry", "Éclair"]);
        let second = Page { skip: 1, limit: 1 };
        assert_eq!(names(snapshot.list(second)), ["cherry"]);
    }

    #[test]
    fn a_renamed_article_moves_to_its_new_place() {
        let mut snapshot = Snapshot::default();
        snapshot.put(entry("1", "zebra", true, 1));
        snapshot.put(entry("2", "mule", true, 1));
        snapshot.put(entry("1", "aardvark", true, 2));
        assert_eq!(names(snapshot.list(ALL)), ["aardvark", "mule"]);
    }

    #[test]
    fn articles_are_found_by_id_enabled_or_not() {
        let mut snapshot = Snapshot::default();
        snapshot.put(entry("1", "lamp", false, 1));
        assert_eq!(
            snapshot.get("1").map(|entry| entry.article.name),
            Some("lamp".into())
        );
        assert_eq!(snapshot.get("2"), None);
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let mut snapshot = Snapshot::default();
        snapshot.put(entry("1", "lamp", true, 3));
        snapshot.merge(vec![entry("1", "old lamp", true, 2)]);
        assert_eq!(names(snapshot.list(ALL)), ["lamp"]);
        assert_eq!(snapshot.list(ALL)[0].stock, 3);
    }

    #[test]
    fn content_and_stock_are_each_kept_from_the_newer_copy() {
        let mut snapshot = Snapshot::default();
        snapshot.put(stock_at(entry("1", "lamp", true, 1), 5, 7));
        // A content edit announced with an older stock, then a movement with the old content.
        snapshot.put(stock_at(entry("1", "desk lamp", true, 2), 9, 6));
        snapshot.put(stock_at(entry("1", "lamp", true, 1), 4, 8));
        let held = snapshot.get("1").unwrap();
        assert_eq!(held.article.name, "desk lamp");
        assert_eq!((held.article.stock, held.article.stock_version), (4, 8));
    }

    #[test]
    fn search_matches_folded_text_of_enabled_articles() {
        let mut snapshot = Snapshot::default();
        snapshot.put(entry("1", "Crème brûlée", true, 1));
        snapshot.put(entry("2", "crème fraîche", false, 1));
        assert_eq!(names(snapshot.search("creme", ALL)), ["Crème brûlée"]);
        assert!(snapshot.search("lamp", ALL).is_empty());
    }

    #[test]
    fn it_is_loaded_only_after_a_full_load() {
        let mut snapshot = Snapshot::default();
        snapshot.put(entry("1", "lamp", true, 1));
        assert!(!snapshot.is_loaded());
        snapshot.mark_loaded();
        assert!(snapshot.is_loaded());
    }
}
