use serde::{Deserialize, Serialize};

/// The JSON body of every message (CONTRACT section 9). `exchange`/`routing_key` say where a reply
/// must be published; both are empty when none is expected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    #[serde(rename = "type")]
    pub kind: String,
    pub correlation_id: String,
    #[serde(default)]
    pub exchange: String,
    #[serde(default)]
    pub routing_key: String,
    pub message: T,
}

/// Where the reply to a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub exchange: String,
    pub routing_key: String,
}

/// The pseudo-queue of RabbitMQ direct reply-to. Requesters put it in the envelope; the broker
/// rewrites the AMQP `reply_to` property to the requester's private name on delivery.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

impl<T> Envelope<T> {
    /// A message that expects no reply.
    pub fn new(kind: impl Into<String>, correlation_id: impl Into<String>, message: T) -> Self {
        Self {
            kind: kind.into(),
            correlation_id: correlation_id.into(),
            exchange: String::new(),
            routing_key: String::new(),
            message,
        }
    }

    /// A request whose reply must be published to `reply_to`.
    pub fn with_reply_to(mut self, reply_to: ReplyTo) -> Self {
        self.exchange = reply_to.exchange;
        self.routing_key = reply_to.routing_key;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_the_contract_field_names() {
        let envelope = Envelope::new("logout", "c-1", "token").with_reply_to(ReplyTo {
            exchange: "cart".into(),
            routing_key: "article-valid".into(),
        });
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "logout", "correlation_id": "c-1", "exchange": "cart",
                               "routing_key": "article-valid", "message": "token"})
        );
    }

    #[test]
    fn missing_reply_fields_mean_no_reply() {
        let envelope: Envelope<String> =
            serde_json::from_str(r#"{"type":"logout","correlation_id":"c","message":"t"}"#)
                .unwrap();
        assert_eq!(envelope.exchange, "");
        assert_eq!(envelope.routing_key, "");
    }
}
