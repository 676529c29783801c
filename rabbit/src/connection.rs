use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::brokers::{Brokers, node};
use crate::request::RequestChannels;
use crate::{QueueType, Topology};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long connecting to one node and declaring the topology there may take before the next node
/// is tried: an address that drops packets would otherwise hold a reconnect for minutes.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing a link may take. A connection whose peer is gone may never get its close
/// answered (a broker restart left orders waiting on one for good): a reconnect must not wait.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RabbitError {
    #[error("RabbitMQ is unavailable")]
    Unavailable,
    #[error("RabbitMQ did not answer in time")]
    Timeout,
    #[error("the broker refused the message")]
    Nacked,
    /// No queue took it: its consumer's service has not declared its queue yet.
    #[error("no queue takes the message yet")]
    Unroutable,
    #[error("the broker refused the publish: {0}")]
    Refused(lapin::Error),
    #[error("cannot encode or decode a message: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Protocol(#[from] lapin::Error),
}

/// Two live connections to one node: one to publish on, with its confirmed publishing channel and
/// its idle request channels, and one to consume on. RabbitMQ blocks a connection that publishes
/// while a memory or disk alarm is on; acks travel on the other, so queues still drain. Replaced
/// as a whole on reconnect, so nothing of a dead connection is used again.
#[derive(Clone)]
pub(crate) struct Link {
    pub connection: Arc<Connection>,
    pub consuming: Arc<Connection>,
    /// Replaced on its own when the broker closes it over a refused publish.
    publisher: Arc<Mutex<Channel>>,
    pub requesters: Arc<RequestChannels>,
    /// The user the connection logged in as: the `user_id` of everything published on it.
    pub user: ShortString,
}

impl Link {
    /// Closes both connections, giving up after [`CLOSE_TIMEOUT`].
    async fn close(&self, reason: &str) {
        let both = futures_util::future::join(
            self.connection.close(200, reason.into()),
            self.consuming.close(200, reason.into()),
        );
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, both).await;
    }

    pub async fn publisher(&self) -> Channel {
        self.publisher.lock().await.clone()
    }

    /// Opens a new confirmed publishing channel in place of `closed`, unless another publish
    /// already did.
    pub async fn replace_publisher(&self, closed: &Channel) -> lapin::Result<()> {
        let mut publisher = self.publisher.lock().await;
        if publisher.id() == closed.id() {
            *publisher = confirmed_channel(&self.connection).await?;
        }
        Ok(())
    }
}

pub(crate) async fn confirmed_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// A handle on the supervised RabbitMQ connection; cheap to clone.
///
/// A background task keeps one connection open, to one broker or to a live node of a cluster: it
/// reconnects (trying every node in turn) with exponential backoff, redeclares the topology on
/// every new connection and publishes the new [`Link`] on a watch channel, from which consumers
/// restart and publishers pick it up. The service never has to restart because the broker (or a
/// node) did.
#[derive(Clone)]
pub struct Rabbit {
    link: watch::Receiver<Option<Link>>,
    pub(crate) shutdown: CancellationToken,
    /// Whom publishes name as their sender, when not the connection's user.
    speaking_as: Option<ShortString>,
}

impl Rabbit {
    /// Starts the supervisor and returns at once: the service starts even while the broker is down.
    /// `url` is one AMQP URL or a comma-separated list of the nodes of a cluster: the supervisor
    /// connects to the first that answers, and after a lost connection to the next one that does,
    /// starting after the node it lost. The topology's queues are of the type it names, or else of the type `RABBIT_QUEUE_TYPE`
    /// says (quorum when unset or invalid: services refuse an invalid one at start).
    pub fn start(url: &str, mut topology: Topology, shutdown: CancellationToken) -> Self {
        if topology.queue_type.is_none() {
            let configured = QueueType::configured().unwrap_or_else(|reason| {
                error!(%reason, "invalid {}; declaring quorum queues", QueueType::VARIABLE);
                QueueType::Quorum
            });
            topology.queue_type = Some(configured);
        }
        let (sender, link) = watch::channel(None);
        tokio::spawn(supervise(
            Brokers::parse(url),
            topology,
            sender,
            shutdown.clone(),
        ));
        Self {
            link,
            shutdown,
            speaking_as: None,
        }
    }

    /// This connection publishing as `user` (the AMQP `user_id`). The broker refuses that unless
    /// the connection's user is tagged `impersonator`: for tools and tests that play several
    /// services on one connection.
    pub fn speaking_as(&self, user: &str) -> Self {
        Self {
            speaking_as: Some(user.into()),
            ..self.clone()
        }
    }

    /// The `user_id` of what is published on `link`.
    pub(crate) fn sender(&self, link: &Link) -> ShortString {
        self.speaking_as
            .clone()
            .unwrap_or_else(|| link.user.clone())
    }

    pub fn is_connected(&self) -> bool {
        self.link.borrow().is_some()
    }

    /// Waits up to `timeout` for a connection.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.current_link(timeout).await.is_ok()
    }

    /// The current link, waiting up to `timeout` for one while reconnecting.
    pub(crate) async fn current_link(&self, timeout: Duration) -> Result<Link, RabbitError> {
        let mut link = self.link.clone();
        let wait = link.wait_for(|link| link.is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(link)) => Ok(link.clone().expect("waited for Some")),
            _ => Err(RabbitError::Unavailable),
        }
    }

    /// Waits for a link other than `previous`; `None` once shutting down.
    pub(crate) async fn next_link(&self, previous: Option<&Link>) -> Option<Link> {
        let mut receiver = self.link.clone();
        let is_new = |link: &Option<Link>| match (link, previous) {
            (Some(link), Some(previous)) => !Arc::ptr_eq(&link.connection, &previous.connection),
            (Some(_), None) => true,
            (None, _) => false,
        };
        tokio::select! {
            link = receiver.wait_for(is_new) => link.ok().and_then(|link| link.clone()),
            _ = self.shutdown.cancelled() => None,
        }
    }
}

async fn supervise(
    brokers: Brokers,
    topology: Topology,
    sender: watch::Sender<Option<Link>>,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut first = 0;
    while !shutdown.is_cancelled() {
        match open_any(&brokers, first, &topology).await {
            Some((index, link)) => {
                backoff = FIRST_BACKOFF;
                sender.send_replace(Some(link.clone()));
                let lost = tokio::select! {
                    _ = unusable(&link.connection) => true,
                    _ = unusable(&link.consuming) => true,
                    _ = shutdown.cancelled() => false,
                };
                // Publishers and consumers stop using the link before it is closed.
                sender.send_replace(None);
                if !lost {
                    link.close("shutdown").await;
                    return;
                }
                warn!("RabbitMQ connection lost; reconnecting");
                link.close("reconnecting").await;
                first = brokers.after(index);
            }
            None if brokers.len() > 1 => {
                warn!(retry_in = ?backoff, "no RabbitMQ node reachable");
            }
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects to the first node that answers, trying each once from the one at `first`.
async fn open_any(brokers: &Brokers, first: usize, topology: &Topology) -> Option<(usize, Link)> {
    for (index, url) in brokers.from(first) {
        let node = node(url);
        match tokio::time::timeout(OPEN_TIMEOUT, open(url, topology)).await {
            Ok(Ok(link)) => {
                info!(node, "connected to RabbitMQ");
                return Some((index, link));
            }
            Ok(Err(error)) => warn!(node, %error, "cannot connect to RabbitMQ"),
            Err(_) => warn!(node, timeout = ?OPEN_TIMEOUT, "cannot connect to RabbitMQ in time"),
        }
    }
    None
}

async fn open(url: &str, topology: &Topology) -> lapin::Result<Link> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let consuming = Connection::connect(url, ConnectionProperties::default()).await?;
    // It parsed: the connections are open.
    let user = url
        .parse::<AMQPUri>()
        .map(|uri| uri.authority.userinfo.username)
        .unwrap_or_default()
        .into();
    topology.declare(&connection).await?;
    let publisher = confirmed_channel(&connection).await?;
    Ok(Link {
        connection: Arc::new(connection),
        consuming: Arc::new(consuming),
        publisher: Arc::new(Mutex::new(publisher)),
        requesters: Arc::default(),
        user,
    })
}

/// Resolves when the connection has failed or was closed by the broker. A channel error (a refused
/// publish, a cancelled consumer) is left to that channel's owner, which opens another.
async fn unusable(connection: &Connection) {
    let mut events = connection.events_listener();
    loop {
        // The status check covers a close that raised no event.
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) if is_channel_error(&error) => {
                    warn!(%error, "RabbitMQ channel error");
                }
                Some(Event::Error(error)) => {
                    warn!(%error, "RabbitMQ connection error");
                    return;
                }
                None => return,
                Some(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if !connection.status().connected() {
                    return;
                }
            }
        }
    }
}

/// A soft error closes only its channel; the connection stays usable.
pub(crate) fn is_channel_error(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(error)
        if matches!(error.kind(), lapin::protocol::AMQPErrorKind::Soft(_)))
}
