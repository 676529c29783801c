//! The catalog service (CONTRACT sections 6 and 9): articles with price and stock in MongoDB,
//! admin-only writes, public reads and search, and catalog's part in the message flows:
//! answering `article-valid` and `article-data` requests, reserving stock when an order is
//! placed and giving it back when the order turns out invalid. Stock is a ledger of movements,
//! so any number of instances can share one store and one broker.

mod article;
mod changes;
pub mod config;
mod http;
mod ledger;
mod messaging;
mod order;
mod query;
mod snapshot;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::TokenGuard;
use rabbit::Rabbit;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use article::Article;
pub use common::server::StartError;
pub use config::Config;
/// The OpenAPI document the service serves at `/openapi.json`.
pub use http::document as openapi_document;

/// A started catalog service.
pub struct Running {
    pub addr: SocketAddr,
    /// Ends once the server has drained after shutdown.
    pub server: JoinHandle<()>,
}

/// Starts catalog on `config.port` (0 for any free port, as tests do). It starts while MongoDB,
/// RabbitMQ or auth are down, answers 503 where it needs them and keeps messages waiting until
/// they are back. Everything stops when `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let db = common::mongo::connect(&config.mongo_url, &config.mongo_db, "catalog").await?;
    let rabbit = Rabbit::start(
        &config.rabbit_url,
        rabbit::contract::topology_of(rabbit::contract::service::CATALOG),
        shutdown.clone(),
    );
    let store = store::Store::new(db, changes::Changes::new(rabbit.clone()));
    tokio::spawn(ensure_indexes(store.clone(), shutdown.clone()));
    tokio::spawn({
        let (store, shutdown) = (store.clone(), shutdown.clone());
        async move { store.ledger().keep_saving_heads(shutdown).await }
    });
    let reload = Arc::new(Notify::new());
    if let Some(interval) = config.snapshot_reload {
        tokio::spawn(keep_snapshot(
            store.clone(),
            interval,
            reload.clone(),
            shutdown.clone(),
        ));
    }
    let guard = TokenGuard::new(&config.auth_service_url, config.token_cache_ttl);
    guard.listen_for_logouts(&rabbit);
    messaging::listen_for_changes(&rabbit, store.clone(), move || reload.notify_one());
    messaging::start(&rabbit, store.clone());
    let routes = http::routes(store, &guard, rabbit);
    let server = common::server::serve(
        routes,
        &http::document(),
        config.port,
        config.http,
        shutdown,
    )
    .await?;
    Ok(Running {
        addr: server.addr,
        server: server.task,
    })
}

/// The name index only speeds listings up, so the service does not wait for it: it is retried
/// in the background until MongoDB accepts it. (The ledger's unique index is also created before
/// the first movement is written: positions rest on it.)
async fn ensure_indexes(store: store::Store, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    while let Err(error) = store.ensure_indexes().await {
        warn!(%error, "cannot create the article index yet");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Loads the in-memory snapshot listings and searches read, then reloads it every `interval` (a
/// safety net: other instances' writes arrive on `catalog_changes`) or when `reload` is notified
/// (announcements were missed); retried every 2 s while MongoDB is unreachable.
async fn keep_snapshot(
    store: store::Store,
    interval: Duration,
    reload: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match store.reload_snapshot().await {
            Ok(count) => {
                info!(count, "article snapshot loaded");
                interval
            }
            Err(error) => {
                warn!(%error, "cannot load the article snapshot yet");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = reload.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
