//! Uploads and downloads: codec work on the blocking pool under a bound, variants computed once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::ApiError;
use moka::future::Cache;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::codec::{self, Format, Refusal};
use crate::store::Store;

/// The widths a client may ask for (CONTRACT section 5).
pub const SIZES: [u32; 6] = [160, 320, 640, 800, 1024, 1200];
/// Memory for recently served images, so hot ones skip the Redis round trip.
const MEMORY_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Which bytes of an image a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// As uploaded, JPEG or PNG.
    Original,
    /// A JPEG at most this wide; `None` is full size.
    Jpeg(Option<u32>),
}

impl Variant {
    /// The image hash's field for this variant, also a stable name for ETags.
    pub fn field(self) -> String {
        match self {
            Self::Original => "original".into(),
            Self::Jpeg(None) => "jpeg".into(),
            Self::Jpeg(Some(width)) => format!("w{width}"),
        }
    }
}

/// Bytes to serve, with their type.
#[derive(Clone)]
pub struct Served {
    pub mime: &'static str,
    pub bytes: Bytes,
}

pub struct Images {
    store: Store,
    workers: Arc<Semaphore>,
    max_pixels: u64,
    /// Also the single flight: concurrent first requests for one variant wait for one resize.
    served: Cache<(Uuid, Variant), Served>,
    resizes: AtomicU64,
}

impl Images {
    pub fn new(store: Store, workers: usize, max_pixels: u64) -> Self {
        let served = Cache::builder()
            .max_capacity(MEMORY_CACHE_BYTES)
            .weigher(|_, served: &Served| u32::try_from(served.bytes.len()).unwrap_or(u32::MAX))
            .build();
        Self {
            store,
            workers: Arc::new(Semaphore::new(workers)),
            max_pixels,
            served,
            resizes: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many variants this instance has computed since it started.
    pub fn resizes(&self) -> u64 {
        self.resizes.load(Ordering::Relaxed)
    }

    /// True when the image exists; answered from memory when it was served recently.
    pub async fn exists(&self, id: Uuid) -> Result<bool, ApiError> {
        if self.served.contains_key(&(id, Variant::Original)) {
            return Ok(true);
        }
        self.store.exists(id).await
    }

    /// Stores an upload after checking it is a real JPEG or PNG within the limits.
    pub async fn upload(&self, data_url: String) -> Result<Uuid, ApiError> {
        let max_pixels = self.max_pixels;
        let accepted = self
            .blocking(move || {
                let (declared, bytes) = codec::parse_data_url(&data_url)?;
                codec::accept(declared, bytes, max_pixels)
            })
            .await?
            .map_err(refused)?;
        let id = Uuid::new_v4();
        self.store
            .insert(id, accepted.format, accepted.width, &accepted.bytes)
            .await?;
        Ok(id)
    }

    /// The bytes of `variant`, from memory, Redis, or computed once and stored.
    pub async fn get(&self, id: Uuid, variant: Variant) -> Result<Served, ApiError> {
        match variant {
            Variant::Original => self.original(id).await,
            Variant::Jpeg(width) => {
                self.remembered(id, variant, self.load_jpeg(id, width))
                    .await
            }
        }
    }

    async fn original(&self, id: Uuid) -> Result<Served, ApiError> {
        let load = async {
            let lookup = self
                .store
                .lookup(id, "original")
                .await?
                .ok_or(ApiError::NotFound)?;
            let bytes = lookup
                .field
                .ok_or_else(|| ApiError::internal(format!("image {id} has no original")))?;
            Ok(Served {
                mime: lookup.format.mime(),
                bytes: bytes.into(),
            })
        };
        self.remembered(id, Variant::Original, load).await
    }

    async fn load_jpeg(&self, id: Uuid, width: Option<u32>) -> Result<Served, ApiError> {
        let field = Variant::Jpeg(width).field();
        let lookup = self
            .store
            .lookup(id, &field)
            .await?
            .ok_or(ApiError::NotFound)?;
        if let Some(bytes) = lookup.field {
            return Ok(Served {
                mime: "image/jpeg",
                bytes: bytes.into(),
            });
        }
        let width = width.filter(|&width| width < lookup.width);
        let original = self.original(id).await?;
        if width.is_none() && lookup.format == Format::Jpeg {
            // A JPEG original at full size is its own variant.
            return Ok(original);
        }
        let (format, max_pixels) = (lookup.format, self.max_pixels);
        let jpeg = self
            .blocking(move || codec::jpeg_variant(&original.bytes, format, width, max_pixels))
            .await?
            .map_err(ApiError::internal)?;
        self.resizes.fetch_add(1, Ordering::Relaxed);
        self.store.put_variant(id, &field, &jpeg).await?;
        Ok(Served {
            mime: "image/jpeg",
            bytes: jpeg.into(),
        })
    }

    /// Serves from memory, or runs `load` once however many requests ask at the same time.
    /// Failures are not remembered.
    async fn remembered(
        &self,
        id: Uuid,
        variant: Variant,
        load: impl Future<Output = Result<Served, ApiError>>,
    ) -> Result<Served, ApiError> {
        self.served
            .try_get_with((id, variant), load)
            .await
            .map_err(|error| (*error).clone())
    }

    /// Runs codec work on the blocking pool, at most `workers` at once, so that large images
    /// neither stall the async runtime nor take more memory than the bound allows.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.workers.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(ApiError::internal)
    }
}

fn refused(refusal: Refusal) -> ApiError {
    ApiError::field("image", refusal.to_string())
}
