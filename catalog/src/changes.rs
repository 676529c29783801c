//! Catalog instances see each other's writes within a second: after every write (article created,
//! updated or disabled, every stock movement) the writer announces the article as it now is on the
//! `catalog_changes` fanout, where every instance (the writer included) has an exclusive queue of
//! its own, like the logout broadcast of auth. Each puts the article into its snapshot where it is
//! newer (see `snapshot`). The payload is catalog's own, a contract extension:
//! `{"article": <article JSON with stock and stockVersion>, "version": <content version>}`.

use rabbit::contract::{exchange, kind};
use rabbit::{Envelope, Rabbit};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::article::Article;
use crate::snapshot::Entry;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArticleChanged {
    pub article: Article,
    pub version: i64,
}

impl ArticleChanged {
    pub fn into_entry(self) -> Entry {
        Entry::new(self.article, self.version)
    }
}

/// Announces this instance's writes.
#[derive(Clone)]
pub struct Changes {
    rabbit: Rabbit,
}

impl Changes {
    pub fn new(rabbit: Rabbit) -> Self {
        Self { rabbit }
    }

    /// Publishes in the background: a write never waits for the broker, and announcements that
    /// arrive out of order are merged by version. One lost while RabbitMQ is down is made good by
    /// the next announcement of the article or by the periodic reload.
    pub fn announce(&self, entry: &Entry) {
        let change = ArticleChanged {
            article: entry.article.clone(),
            version: entry.version,
        };
        let rabbit = self.rabbit.clone();
        tokio::spawn(async move {
            let id = change.article.id.clone();
            let envelope = Envelope::new(
                kind::ARTICLE_CHANGED,
                uuid::Uuid::new_v4().to_string(),
                change,
            );
            if let Err(error) = rabbit
                .broadcast(exchange::CATALOG_CHANGES, "", &envelope)
                .await
            {
                warn!(%error, article_id = %id, "cannot announce the article change");
            }
        });
    }
}
