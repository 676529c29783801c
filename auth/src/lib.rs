//! The auth service (CONTRACT section 4): users, JWTs that never expire but are revoked, admin
//! permission management, and the logout broadcast that lets every other service drop a revoked
//! token from its cache at once.

mod broadcast;
pub mod config;
mod http;
mod jwt;
mod password;
mod rules;
mod service;
mod store;

use std::net::SocketAddr;

use rabbit::Rabbit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use common::server::StartError;
pub use config::Config;
/// The OpenAPI document the service serves at `/openapi.json`.
pub use http::document as openapi_document;

/// A started auth service.
pub struct Running {
    pub addr: SocketAddr,
    /// Ends once the server has drained after shutdown.
    pub server: JoinHandle<()>,
}

/// Starts auth on `config.port` (0 for any free port, as tests do). It starts even while MongoDB
/// or RabbitMQ are down and answers 503 until they are back. Everything stops when `shutdown` is
/// cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let db = common::mongo::connect(&config.mongo_url, &config.mongo_db, "auth").await?;
    let topology = rabbit::contract::topology_of(rabbit::contract::service::AUTH);
    let rabbit = Rabbit::start(&config.rabbit_url, topology, shutdown.clone());
    let auth = service::Auth::new(
        store::Store::new(db),
        jwt::Jwt::new(&config.jwt_secret),
        rabbit,
        config.token_cache_ttl,
    );
    auth.spawn_background(shutdown.clone());
    let server = common::server::serve(
        http::routes(auth),
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
