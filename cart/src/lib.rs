//! The cart service (CONTRACT section 7): one active cart per user in MongoDB, its lines validated
//! against catalog over RabbitMQ, and a checkout that hands the cart to orders through a
//! `place_order` kept and re-sent until orders confirms it with `order_placed`.

mod cart;
pub mod config;
mod http;
mod jobs;
mod messaging;
mod recent;
mod service;
mod slots;
mod store;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use common::TokenGuard;
use common::projection::Projections;
use rabbit::Rabbit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cart::{MAX_ARTICLE_ID_LEN, MAX_LINES, MAX_QUANTITY};
pub use common::server::StartError;
pub use config::Config;
/// The OpenAPI document the service serves at `/openapi.json`.
pub use http::document as openapi_document;

/// A started cart service.
pub struct Running {
    pub addr: SocketAddr,
    /// Ends once the server has drained after shutdown.
    pub server: JoinHandle<()>,
    guard: TokenGuard,
}

impl Running {
    /// How many tokens the token guard holds answers for: a metric, and how tests see that
    /// refused tokens leave nothing behind.
    pub async fn cached_tokens(&self) -> u64 {
        self.guard.cached_tokens().await
    }
}

/// Starts cart on `config.port` (0 for any free port, as tests do). It starts while MongoDB,
/// RabbitMQ, Redis or auth are down and answers 503 where it needs them (Redis never: GET /cart
/// then reads the store). Everything stops when `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let db = common::mongo::connect(&config.mongo_url, &config.mongo_db, "cart").await?;
    // The database name keeps deployments and tests that share one Redis apart.
    let projections = Projections::new(&config.redis_url, &config.mongo_db, config.projection_ttl)?;
    let rabbit = Rabbit::start(
        &config.rabbit_url,
        rabbit::contract::topology_of(rabbit::contract::service::CART),
        shutdown.clone(),
    );
    let guard = TokenGuard::new(&config.auth_service_url, config.token_cache_ttl);
    guard.listen_for_logouts(&rabbit);
    let timings = service::Timings {
        revalidate_every: config.revalidate_every,
        revalidate_max_age: config.revalidate_max_age,
        validate_timeout: config.validate_timeout,
        order_resend_first: config.order_resend_first,
        order_resend_max: config.order_resend_max,
    };
    let carts = Arc::new(service::Carts::new(
        store::Store::new(db),
        view::CartViews::new(projections),
        rabbit.clone(),
        timings,
    ));
    carts.spawn_background(shutdown.clone());
    messaging::consume(&rabbit, carts.clone());
    let server = common::server::serve(
        http::routes(carts, &guard),
        &http::document(),
        config.port,
        config.http,
        shutdown,
    )
    .await?;
    Ok(Running {
        addr: server.addr,
        server: server.task,
        guard,
    })
}
