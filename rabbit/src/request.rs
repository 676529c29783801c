use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::DIRECT_REPLY_TO;
use crate::publisher::{confirmed_publish, properties};
use crate::{Envelope, Rabbit, RabbitError};

impl Rabbit {
    /// Sends a request with RabbitMQ direct reply-to and waits up to `timeout` for its reply.
    ///
    /// Each request gets a channel of its own: direct reply-to delivers replies on the channel that
    /// published, so whatever arrives there is this request's reply and no matching by id is
    /// needed, whatever the requests' correlation ids.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: Envelope<Req>,
        timeout: Duration,
    ) -> Result<Envelope<Resp>, RabbitError> {
        let envelope = Envelope {
            exchange: String::new(),
            routing_key: DIRECT_REPLY_TO.into(),
            ..envelope
        };
        let body = serde_json::to_vec(&envelope)?;
        let properties = properties(&envelope.correlation_id).with_reply_to(DIRECT_REPLY_TO.into());
        tokio::time::timeout(timeout, async {
            let link = self.current_link(timeout).await?;
            let channel = link.connection.create_channel().await?;
            let no_ack = BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            };
            let mut replies = channel
                .basic_consume(
                    DIRECT_REPLY_TO.into(),
                    "".into(),
                    no_ack,
                    FieldTable::default(),
                )
                .await?;
            confirmed_publish(&channel, exchange, routing_key, &body, properties).await?;
            let reply = replies.next().await.ok_or(RabbitError::Unavailable)??;
            let _ = channel.close(200, "reply received".into()).await;
            Ok(serde_json::from_slice(&reply.data)?)
        })
        .await
        .map_err(|_| RabbitError::Timeout)?
    }
}
