//! Redis storage. One hash per image, `image:<uuid>`, holds everything about it: `mime`, `width`,
//! the `original` bytes, and one field per JPEG variant (`jpeg` full size, `w320`, ...). Bytes are
//! stored raw, not as base64: a third smaller, and a JPEG original is served by `/jpeg` as is.
//! Keys are built only from parsed UUIDs, so no key outside `image:` is ever read.

use std::time::Duration;

use common::ApiError;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use crate::codec::Format;

/// What a request reads in one round trip: the image's metadata and one field.
pub struct Lookup {
    pub format: Format,
    pub width: u32,
    pub field: Option<Vec<u8>>,
}

#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
}

fn key(id: Uuid) -> String {
    format!("image:{id}")
}

fn unavailable(error: redis::RedisError) -> ApiError {
    tracing::warn!(%error, "Redis unavailable");
    ApiError::Unavailable("redis")
}

impl Store {
    /// Connects lazily and reconnects by itself: the service starts while Redis is down and answers
    /// 503 until it is back.
    pub fn new(url: &str) -> Result<Self, common::config::ConfigError> {
        let invalid = |error: redis::RedisError| {
            common::config::ConfigError::new("REDIS_URL", &common::secrets::redacted(url), error)
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // Values are whole images: the 500 ms default is too short for them.
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)?;
        Ok(Self { redis })
    }

    pub async fn ping(&self) -> bool {
        let mut redis = self.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .is_ok()
    }

    pub async fn insert(
        &self,
        id: Uuid,
        format: Format,
        width: u32,
        original: &[u8],
    ) -> Result<(), ApiError> {
        let mut redis = self.redis.clone();
        redis
            .hset_multiple::<_, _, _, ()>(
                key(id),
                &[
                    ("mime", format.mime().as_bytes()),
                    ("width", width.to_string().as_bytes()),
                    ("original", original),
                ],
            )
            .await
            .map_err(unavailable)
    }

    /// The image's metadata and `field`, or `None` when there is no such image.
    pub async fn lookup(&self, id: Uuid, field: &str) -> Result<Option<Lookup>, ApiError> {
        let mut redis = self.redis.clone();
        let (mime, width, field): (Option<String>, Option<u32>, Option<Vec<u8>>) =
            redis::cmd("HMGET")
                .arg(key(id))
                .arg(&["mime", "width", field])
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
        Ok(match (mime.as_deref().and_then(Format::from_mime), width) {
            (Some(format), Some(width)) => Some(Lookup {
                format,
                width,
                field,
            }),
            _ => None,
        })
    }

    pub async fn exists(&self, id: Uuid) -> Result<bool, ApiError> {
        let mut redis = self.redis.clone();
        redis.exists(key(id)).await.map_err(unavailable)
    }

    /// Stores a computed variant; the first writer wins, so concurrent instances agree.
    pub async fn put_variant(&self, id: Uuid, field: &str, bytes: &[u8]) -> Result<(), ApiError> {
        let mut redis = self.redis.clone();
        redis
            .hset_nx::<_, _, _, ()>(key(id), field, bytes)
            .await
            .map_err(unavailable)
    }
}
