//! The orders service (CONTRACT sections 8 and 9): event-sourced orders. Each order is an
//! append-only stream of events in MongoDB; the Order projection, copied into read models in
//! Redis after every write, serves the REST reads, and the Order_Status projection is kept by
//! batch processes, each run once per interval for the whole system. Orders are placed from
//! cart's `place_order`, validated line by line by catalog's `article-data` replies, and paid
//! over REST.

pub mod config;
mod http;
mod messaging;
mod order;
mod read_models;
mod redrive;
mod service;
mod store;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use common::TokenGuard;
use common::projection::Projections;
use rabbit::Rabbit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use common::server::StartError;
pub use config::Config;
/// The OpenAPI document the service serves at `/openapi.json`.
pub use http::document as openapi_document;

use crate::order::Status;
use crate::read_models::ReadModels;
use crate::service::{Batch, Orders};

/// A started orders service.
pub struct Running {
    pub addr: SocketAddr,
    /// Ends once the server has drained after shutdown.
    pub server: JoinHandle<()>,
}

/// Starts the service on `config.port` (0 for any free port). It starts while MongoDB, RabbitMQ
/// or auth are down and answers 503 where it needs them; consumers and batches start once the
/// event store's indexes exist.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let db = common::mongo::connect(&config.mongo_url, &config.mongo_db, "orders").await?;
    let rabbit = Rabbit::start(
        &config.rabbit_url,
        rabbit::contract::topology_of(rabbit::contract::service::ORDERS),
        shutdown.clone(),
    );
    // Namespaced by the database: deployments and tests sharing one Redis stay apart.
    let projections = Projections::new(&config.redis_url, &config.mongo_db, config.projection_ttl)?;
    let orders = Arc::new(Orders::new(
        store::Store::new(db),
        ReadModels::new(projections),
        rabbit.clone(),
        redrive::Schedule::new(config.stuck_placed_after, config.redrive_max),
        config.payment_defined_batch_interval,
    ));
    let guard = TokenGuard::new(&config.auth_service_url, config.token_cache_ttl);
    guard.listen_for_logouts(&rabbit);

    let background = orders.clone();
    let consumers = rabbit.clone();
    let batches = [
        Batch {
            name: "placed",
            status: Status::Placed,
            interval: config.placed_batch_interval,
        },
        Batch {
            name: "validated",
            status: Status::Validated,
            interval: config.validated_batch_interval,
        },
        Batch {
            name: "payment_defined",
            status: Status::PaymentDefined,
            interval: config.payment_defined_batch_interval,
        },
    ];
    let batches_shutdown = shutdown.clone();
    tokio::spawn(async move {
        if background.prepare(&batches_shutdown).await {
            messaging::consume(&consumers, background.clone());
            service::spawn_batches(background, batches, batches_shutdown);
        }
    });

    let routes = http::routes(orders, &guard);
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
