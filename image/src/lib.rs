//! The image service (CONTRACT section 5): base64 data-URL uploads of JPEG and PNG, stored in
//! Redis, downloaded as JSON or JPEG, with resized variants computed once and cached.

mod codec;
pub mod config;
mod http;
mod service;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use common::TokenGuard;
use rabbit::Rabbit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use common::server::StartError;
pub use config::Config;
/// The OpenAPI document the service serves at `/openapi.json`.
pub use http::document as openapi_document;
pub use service::SIZES;

/// A started image service.
pub struct Running {
    pub addr: SocketAddr,
    /// Ends once the server has drained after shutdown.
    pub server: JoinHandle<()>,
    images: Arc<service::Images>,
}

impl Running {
    /// How many variants this instance has computed: a metric, and how tests see that a variant
    /// was computed once.
    pub fn resizes(&self) -> u64 {
        self.images.resizes()
    }
}

/// Starts the service on `config.port` (0 for any free port). It starts while Redis, RabbitMQ or
/// auth are down and answers 503 where it needs them.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let store = store::Store::new(&config.redis_url)?;
    let bounds = service::CodecBounds {
        workers: config.workers,
        upload_queue: config.upload_queue,
        max_pixels: config.max_pixels,
    };
    let images = Arc::new(service::Images::new(
        store,
        bounds,
        config.memory_cache_mb.saturating_mul(1024 * 1024),
    ));
    let topology = rabbit::contract::topology_of(rabbit::contract::service::IMAGE);
    let rabbit = Rabbit::start(&config.rabbit_url, topology, shutdown.clone());
    let guard = TokenGuard::new(&config.auth_service_url, config.token_cache_ttl);
    guard.listen_for_logouts(&rabbit);
    let routes = http::routes(images.clone(), &guard, rabbit, config.body_limit);
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
        images,
    })
}
