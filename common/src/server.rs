//! Starting a service's HTTP server and stopping it gracefully.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// A running HTTP server: where it listens, and the task that ends once in-flight requests are
/// done after shutdown.
pub struct Server {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Binds `0.0.0.0:port` (port 0 picks a free one, as tests do) and serves `routes` wrapped in the
/// shared conventions until `shutdown` is cancelled.
pub async fn serve(
    routes: BoxedFilter<(Response,)>,
    port: u16,
    shutdown: CancellationToken,
) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    let addr = listener.local_addr()?;
    info!(%addr, "listening");
    let server = warp::serve(crate::http::app(routes))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled_owned().await });
    let task = tokio::spawn(server.run());
    Ok(Server { addr, task })
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` sends).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down");
}
