//! Uploads and downloads: codec work on the blocking pool under a bound, uploads admitted into a
//! bounded queue before their bodies are read, variants computed once, response bodies built once
//! and served from memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::ApiError;
use moka::future::Cache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::codec::{self, Format, Refusal};
use crate::store::Store;

/// The widths a client may ask for (CONTRACT section 5).
pub const SIZES: [u32; 6] = [160, 320, 640, 800, 1024, 1200];

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

/// A response body a GET answers with: the memory cache keeps each one as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `{"id","image"}` with the variant as a data URL (`GET /images/{id}`).
    Json(Variant),
    /// The bytes of the JPEG at most this wide, `None` full size (`GET /images/{id}/jpeg`).
    Jpeg(Option<u32>),
}

impl Body {
    /// `GET /images/{id}`: the original, or with a `Size` that JPEG variant.
    pub fn json(size: Option<u32>) -> Self {
        Self::Json(size.map_or(Variant::Original, |width| Variant::Jpeg(Some(width))))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json(_) => "application/json",
            Self::Jpeg(_) => "image/jpeg",
        }
    }

    /// A stable name of the body for ETags: the variant and the representation.
    pub fn name(self) -> String {
        match self {
            Self::Json(variant) => format!("{}-json", variant.field()),
            Self::Jpeg(width) => format!("{}-jpeg", Variant::Jpeg(width).field()),
        }
    }
}

/// An original as Redis holds it.
struct Original {
    format: Format,
    bytes: Bytes,
}

pub struct Images {
    store: Store,
    /// Codec jobs running at once (`IMAGE_WORKERS`): decoding and resizing are CPU work.
    workers: Arc<Semaphore>,
    /// Uploads in this instance at once, decoding or waiting for a worker (`IMAGE_WORKERS` +
    /// `IMAGE_UPLOAD_QUEUE`). Taken before the body is read, so the memory uploads hold is
    /// bounded, and a flood past it is answered 503 at once instead of queueing without end.
    uploads: Arc<Semaphore>,
    max_pixels: u64,
    /// Response bodies exactly as sent, so that a hit costs no encoding and no copy. Also the
    /// single flight: concurrent first requests for one body wait for one load and one resize.
    bodies: Cache<(Uuid, Body), Bytes>,
    resizes: AtomicU64,
}

impl Images {
    /// `memory_cache_bytes` bounds the bodies kept in memory; Redis holds everything anyway.
    pub fn new(store: Store, bounds: CodecBounds, memory_cache_bytes: u64) -> Self {
        let bodies = Cache::builder()
            .max_capacity(memory_cache_bytes)
            .weigher(|_, body: &Bytes| u32::try_from(body.len()).unwrap_or(u32::MAX))
            .build();
        Self {
            store,
            workers: Arc::new(Semaphore::new(bounds.workers)),
            uploads: Arc::new(Semaphore::new(bounds.workers + bounds.upload_queue)),
            max_pixels: bounds.max_pixels,
            bodies,
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

    /// True when the image exists; answered from memory when `body` of it is there.
    pub async fn exists(&self, id: Uuid, body: Body) -> Result<bool, ApiError> {
        if self.bodies.contains_key(&(id, body)) {
            return Ok(true);
        }
        self.store.exists(id).await
    }

    /// A place for an upload in this instance, to take before its body is read; 503 when every
    /// worker is busy and the queue behind them is full.
    pub fn admit_upload(&self) -> Result<UploadTicket, ApiError> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .map(|place| UploadTicket { _place: place })
            .map_err(|_| ApiError::Busy("image upload queue"))
    }

    /// Stores an upload after checking it is a real JPEG or PNG within the limits; its `ticket`
    /// is held until it is stored.
    pub async fn upload(&self, ticket: UploadTicket, data_url: String) -> Result<Uuid, ApiError> {
        let max_pixels = self.max_pixels;
        let worker = self.worker().await?;
        let accepted = on_worker(worker, move || {
            let (declared, bytes) = codec::parse_data_url(&data_url)?;
            codec::accept(declared, bytes, max_pixels)
        })
        .await?
        .map_err(refused)?;
        let id = Uuid::new_v4();
        self.store
            .insert(id, accepted.format, accepted.width, &accepted.bytes)
            .await?;
        drop(ticket);
        Ok(id)
    }

    /// `body` of image `id`: from memory, else built once from Redis (computing a variant the first
    /// time it is asked for) and kept in memory.
    pub async fn body(&self, id: Uuid, body: Body) -> Result<Bytes, ApiError> {
        match body {
            Body::Json(variant) => {
                self.remembered(id, body, self.render_json(id, variant))
                    .await
            }
            Body::Jpeg(width) => self.jpeg(id, width).await,
        }
    }

    async fn render_json(&self, id: Uuid, variant: Variant) -> Result<Bytes, ApiError> {
        let (mime, bytes) = match variant {
            Variant::Original => {
                let original = self.original(id).await?;
                (original.format.mime(), original.bytes)
            }
            // The JPEG body of the variant: one resize for both representations.
            Variant::Jpeg(width) => ("image/jpeg", self.jpeg(id, width).await?),
        };
        // Base64 of a large original takes milliseconds: off the async runtime. Not under the
        // codec workers' bound, whose queue of resizes it would wait behind.
        tokio::task::spawn_blocking(move || codec::json_document(id, mime, &bytes).into())
            .await
            .map_err(ApiError::internal)
    }

    /// The JPEG body at most `width` wide.
    async fn jpeg(&self, id: Uuid, width: Option<u32>) -> Result<Bytes, ApiError> {
        self.remembered(id, Body::Jpeg(width), self.load_jpeg(id, width))
            .await
    }

    /// The original from Redis. Not kept in memory: only computing a variant needs it, and its
    /// JSON body is what requests read.
    async fn original(&self, id: Uuid) -> Result<Original, ApiError> {
        let lookup = self
            .store
            .lookup(id, "original")
            .await?
            .ok_or(ApiError::NotFound)?;
        let bytes = lookup
            .field
            .ok_or_else(|| ApiError::internal(format!("image {id} has no original")))?;
        Ok(Original {
            format: lookup.format,
            bytes: bytes.into(),
        })
    }

    async fn load_jpeg(&self, id: Uuid, width: Option<u32>) -> Result<Bytes, ApiError> {
        let field = Variant::Jpeg(width).field();
        let lookup = self
            .store
            .lookup(id, &field)
            .await?
            .ok_or(ApiError::NotFound)?;
        if let Some(bytes) = lookup.field {
            return Ok(bytes.into());
        }
        if width.is_some_and(|width| width >= lookup.width) {
            // Never upscaled: the full-size JPEG, whose bytes in memory this entry then shares.
            return Box::pin(self.jpeg(id, None)).await;
        }
        if width.is_none() && lookup.format == Format::Jpeg {
            // A JPEG original at full size is its own variant.
            return Ok(self.original(id).await?.bytes);
        }
        // A worker first, then the original: resizes waiting for a worker (a page of new images
        // asks for many at once) hold no image in memory.
        let worker = self.worker().await?;
        let original = self.original(id).await?;
        let (format, max_pixels) = (original.format, self.max_pixels);
        let jpeg = on_worker(worker, move || {
            codec::jpeg_variant(&original.bytes, format, width, max_pixels)
        })
        .await?
        .map_err(ApiError::internal)?;
        self.resizes.fetch_add(1, Ordering::Relaxed);
        self.store.put_variant(id, &field, &jpeg).await?;
        Ok(jpeg.into())
    }

    /// Serves from memory, or runs `load` once however many requests ask at the same time.
    /// Failures are not remembered.
    async fn remembered(
        &self,
        id: Uuid,
        body: Body,
        load: impl Future<Output = Result<Bytes, ApiError>>,
    ) -> Result<Bytes, ApiError> {
        self.bodies
            .try_get_with((id, body), load)
            .await
            .map_err(|error| (*error).clone())
    }

    /// One of the `workers`, once one is free: codec work runs on the blocking pool, at most
    /// `workers` at once, so that large images neither stall the async runtime nor take more
    /// memory than the bound allows.
    async fn worker(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.workers
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)
    }
}

/// The bounds of codec work (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct CodecBounds {
    /// Codec jobs running at once.
    pub workers: usize,
    /// Uploads that may wait for a worker; more are answered 503.
    pub upload_queue: usize,
    /// Most pixels an image may have.
    pub max_pixels: u64,
}

/// An upload's place in the instance (`Images::admit_upload`), from before its body is read
/// until it is stored.
pub struct UploadTicket {
    _place: OwnedSemaphorePermit,
}

/// Runs `work` on the blocking pool, holding `worker` until it is done: a request whose client
/// hangs up stops waiting, but the work goes on, and so does its claim on the bound.
async fn on_worker<T: Send + 'static>(
    worker: OwnedSemaphorePermit,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let _worker = worker;
        work()
    })
    .await
    .map_err(ApiError::internal)
}

fn refused(refusal: Refusal) -> ApiError {
    ApiError::field("image", refusal.to_string())
}
