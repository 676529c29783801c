//! An in-memory copy of the catalog in name order, which reads (by id, listings, searches) use
//! instead of MongoDB. Pure data, no I/O: the store feeds it.
//!
//! Why: FerretDB 1.x pushes neither sorts nor regex filters down to SQLite, so every listing or
//! search through it reads and sorts the whole collection (about a quarter of a second per 3,000
//! articles on the project's machine), and even a lookup by `_id` scans it (180 ms for 100,000
//! articles). 100,000 articles fit in a few tens of MiB, and a substring
//! scan over their folded text takes milliseconds.
//!
//! How it stays current: every write of this instance re-reads the article it wrote and puts it
//! here, under the article's lock, and a full reload at an interval picks up what other instances
//! wrote. Each document carries a `version` that every write increments, so a reload that read an
//! article before a newer write never replaces the newer copy.

use std::collections::{BTreeMap, HashMap};

use crate::article::Article;
use crate::query::Page;

/// An article as the snapshot keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub article: Article,
    /// The folded name: the sort key.
    pub key: String,
    /// Folded name and description: what search looks in.
    pub search: String,
    pub version: i64,
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

    /// Keeps `entry` unless the snapshot holds a newer version of the article.
    pub fn put(&mut self, entry: Entry) {
        let id = entry.article.id.clone();
        if let Some(key) = self.keys.get(&id) {
            let place = (key.clone(), id.clone());
            if self.by_name[&place].version > entry.version {
                return;
            }
            self.by_name.remove(&place);
        }
        self.keys.insert(id.clone(), entry.key.clone());
        self.by_name.insert((entry.key.clone(), id), entry);
    }

    /// Merges a full reload: newer versions win, whichever side they come from.
    pub fn load(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.put(entry);
        }
        self.loaded = true;
    }

    /// Stops listings from being answered here until the next full load: after a write whose
    /// result could not be read back, this copy may be behind.
    pub fn distrust(&mut self) {
        self.loaded = false;
    }

    /// The article with this id, enabled or not.
    pub fn get(&self, id: &str) -> Option<Article> {
        let key = self.keys.get(id)?;
        let place = (key.clone(), id.to_owned());
        self.by_name.get(&place).map(|entry| entry.article.clone())
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
    use crate::article::{searchable, sort_key};

    fn entry(id: &str, name: &str, enabled: bool, version: i64) -> Entry {
        Entry {
            article: Article {
                id: id.into(),
                name: name.into(),
                description: String::new(),
                image: String::new(),
                price: 1.0,
                stock: version,
                enabled,
            },
            key: sort_key(name),
            search: searchable(name, ""),
            version,
        }
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
        snapshot.load(vec![
            entry("1", "cherry", true, 1),
            entry("2", "Banana", true, 1),
            entry("3", "apple", false, 1),
            entry("4", "Éclair", true, 1),
        ]);
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
            snapshot.get("1").map(|article| article.name),
            Some("lamp".into())
        );
        assert_eq!(snapshot.get("2"), None);
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let mut snapshot = Snapshot::default();
        snapshot.put(entry("1", "lamp", true, 3));
        snapshot.load(vec![entry("1", "old lamp", true, 2)]);
        assert_eq!(names(snapshot.list(ALL)), ["lamp"]);
        assert_eq!(snapshot.list(ALL)[0].stock, 3);
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
        snapshot.load(Vec::new());
        assert!(snapshot.is_loaded());
    }
}
