//! Starting a service's HTTP server, with bounds on slow clients and on connections, and stopping
//! it gracefully.
//!
//! warp's own server gives hyper no timer, so hyper's header read timeout never fires, and it
//! accepts every connection: a client that trickles its request (slowloris) holds a task, a file
//! descriptor and its buffers for as long as it likes, and graceful shutdown waits for it. So the
//! routes are served here, as a service (`warp::service`), on hyper's HTTP/1 connections with a
//! timer, a deadline on every request body, and a cap on the connections served at once.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::openapi::Document;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// How long a client may take over a request, and how many connections are served at once
/// (`common::config::http_limits` reads them from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request line and its headers, from when the server
    /// starts waiting for them; the connection is closed past it. Waiting for the next request on
    /// a kept-alive connection is such a wait, so this is also how long an idle connection stays.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive, from the end of its headers; past it the
    /// request answers 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// A client on a slow mobile link sends its headers (a few hundred bytes) in well under 10 s,
    /// and a 16 MiB image body in 30 s at 4.5 Mbit/s. 10,000 connections stay within the file
    /// descriptors a container has by default, and cost at most a few hundred MiB of buffers.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// A running HTTP server: where it listens, and the task that ends once in-flight requests are
/// done after shutdown.
pub struct Server {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Binds `0.0.0.0:port` (port 0 picks a free one, as tests do) and serves `routes` wrapped in the
/// shared conventions (`crate::http::app`, with `document` as the routes' OpenAPI document),
/// within `limits`, until `shutdown` is cancelled.
pub async fn serve(
    routes: BoxedFilter<(Response,)>,
    document: &Document,
    port: u16,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    let addr = listener.local_addr()?;
    info!(%addr, "listening");
    let app = warp::service(crate::http::app(routes, document));
    let task = tokio::spawn(accept(listener, app, limits, shutdown));
    Ok(Server { addr, task })
}

/// Serves the connections of `listener` with `app`, at most `limits.max_connections` at once,
/// until `shutdown`; then stops accepting and waits for the connections to finish their requests
/// (idle ones are closed at once, and the timeouts bound the others).
async fn accept<App>(
    listener: TcpListener,
    app: App,
    limits: HttpLimits,
    shutdown: CancellationToken,
) where
    App: tower_service::Service<
            http::Request<TimedBody>,
            Response = Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        // The slot is taken before the accept: past the cap, connections wait in the kernel's
        // backlog, and cost this process nothing.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached: new connections wait for one to close"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot.expect("never closed"),
                }
            }
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    pause_after(error).await;
                    continue;
                }
            },
        };
        let (app, body_timeout) = (app.clone(), limits.body_timeout);
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let request = request.map(|body| TimedBody::new(body, body_timeout));
            app.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A client that went away or was too slow: its business, not the service's.
                debug!(%error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed accept: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors, typically) waits a moment, since connections may close meanwhile.
async fn pause_after(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    error!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes: a client sending
/// its body slowly holds its connection (and what the handler has read so far) that long at most.
pub struct TimedBody {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(body: Incoming, within: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// Why a request body stopped before its end: it did not arrive within the body timeout.
/// `common::http::body_bytes` answers it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
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
