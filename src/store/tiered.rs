//! A bucket shared by every replica, with this host's disk in front: `[storage] kind = "s3"`.
//!
//! The bucket is the truth that replicas share; `cache.dir` is a local tier that holds what
//! this host served, so hot files go out of the page cache at the disk's speed. Which copy
//! wins depends on the location (`layout::sharing`):
//! - immutable files (archives, SHA256SUMS, signatures, release records, `h1:`) are looked for
//!   on the local disk first, then in the bucket, and a copy fetched from the bucket is kept
//!   locally (streamed through a temp file: bounded memory, nothing half-visible);
//! - mutable documents (version lists, signing keys seen) are read from the bucket, and the
//!   local copy serves only while the bucket cannot be reached;
//! - per-host records (an archive's digest record names the local file) stay on the disk:
//!   each replica checks its own copy once, and none invalidates another's;
//! - what replicas coordinate with (download leases, their shared secret) is in the bucket
//!   only and never copied to the disk.
//!
//! Writes go to the bucket first, then to the disk. An archive is streamed to a local temp
//! file (which live followers read as before), committed locally after its digest matched,
//! and only then uploaded: a file that failed verification never reaches the bucket, and one
//! that could not be uploaded is removed locally too, so nothing is cached on one replica
//! that the others cannot see. Eviction (`gc`) removes local copies only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use futures_util::{future::BoxFuture, FutureExt, StreamExt};

use super::{
    backend::{Backend, Document, Listing, ObjectInfo, Sweep, Upload},
    bucket::Bucket,
    disk::Disk,
    layout::{self, Location, Sharing},
    Object, Partial, StoreError,
};

#[derive(Debug, Clone)]
pub struct Tiered {
    local: Disk,
    bucket: Bucket,
    /// Copies from the bucket in progress, one per location, so concurrent misses on this host
    /// fetch a file once.
    fills: Arc<Mutex<HashMap<Location, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Tiered {
    pub fn new(local: Disk, bucket: Bucket) -> Self {
        Self {
            local,
            bucket,
            fills: Default::default(),
        }
    }

    /// Copies a file from the bucket to the local tier, if the bucket has it.
    async fn fill(&self, at: &Location) -> Result<bool, StoreError> {
        let lock = {
            let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
            fills.entry(at.clone()).or_default().clone()
        };
        let filled = async {
            let _guard = lock.lock().await;
            if self.local.exists(at).await {
                return Ok(true);
            }
            let Some((len, mut chunks)) = self.bucket.get_stream(at).await? else {
                return Ok(false);
            };
            let mut upload = self.local.upload(at, len).await?;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| StoreError::Bucket {
                    location: self.bucket.show(at),
                    reason: e.to_string(),
                })?;
                upload.write(&chunk).await?;
            }
            upload.commit().await?;
            tracing::debug!(location = %at, bytes = len, "copied from the bucket to the local tier");
            Ok(true)
        }
        .await;
        let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            fills.remove(at);
        }
        filled
    }
}

impl Backend for Tiered {
    fn describe(&self) -> String {
        format!(
            "{} (local tier {})",
            self.bucket.describe(),
            self.local.describe()
        )
    }

    fn show(&self, at: &Location) -> String {
        match layout::sharing(at) {
            Sharing::PerHost => self.local.show(at),
            _ => self.bucket.show(at),
        }
    }

    fn read<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<Document>, StoreError>> {
        async move {
            match layout::sharing(at) {
                Sharing::PerHost => self.local.read(at).await,
                Sharing::BucketOnly => Ok(self
                    .bucket
                    .get(at)
                    .await?
                    .map(|(bytes, modified)| Document { bytes, modified })),
                Sharing::Immutable => {
                    if let Some(document) = self.local.read(at).await? {
                        return Ok(Some(document));
                    }
                    let Some((bytes, modified)) = self.bucket.get(at).await? else {
                        return Ok(None);
                    };
                    keep_locally(&self.local, at, &bytes).await;
                    Ok(Some(Document { bytes, modified }))
                }
                Sharing::Mutable => match self.bucket.get(at).await {
                    Ok(Some((bytes, modified))) => {
                        keep_locally(&self.local, at, &bytes).await;
                        Ok(Some(Document { bytes, modified }))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => match self.local.read(at).await {
                        Ok(Some(document)) => {
                            tracing::warn!(location = %at, error = %e, "bucket unreachable; serving the local copy");
                            Ok(Some(document))
                        }
                        _ => Err(e),
                    },
                },
            }
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        at: &'a Location,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            match layout::sharing(at) {
                Sharing::PerHost => {}
                Sharing::BucketOnly => return self.bucket.put(at, bytes).await,
                Sharing::Immutable | Sharing::Mutable => self.bucket.put(at, bytes).await?,
            }
            self.local.write(at, bytes).await
        }
        .boxed()
    }

    fn create<'a>(
        &'a self,
        at: &'a Location,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            match layout::sharing(at) {
                Sharing::PerHost => return self.local.create(at, bytes).await,
                Sharing::BucketOnly => return self.bucket.create(at, bytes).await,
                Sharing::Immutable | Sharing::Mutable => {}
            }
            if !self.bucket.create(at, bytes).await? {
                return Ok(false);
            }
            self.local.write(at, bytes).await?;
            Ok(true)
        }
        .boxed()
    }

    fn upload<'a>(
        &'a self,
        at: &'a Location,
        size_hint: u64,
    ) -> BoxFuture<'a, Result<Box<dyn Upload>, StoreError>> {
        async move {
            let local = self.local.upload(at, size_hint).await?;
            Ok(Box::new(TieredUpload {
                local,
                tiers: self.clone(),
                at: at.clone(),
            }) as Box<dyn Upload>)
        }
        .boxed()
    }

    fn open<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<Object>, StoreError>> {
        async move {
            if let Some(object) = self.local.open(at).await? {
                return Ok(Some(object));
            }
            if layout::sharing(at) == Sharing::PerHost || !self.fill(at).await? {
                return Ok(None);
            }
            self.local.open(at).await
        }
        .boxed()
    }

    fn open_partial<'a>(
        &'a self,
        partial: Option<&'a Partial>,
        at: &'a Location,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        self.local.open_partial(partial, at)
    }

    fn exists<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, bool> {
        async move {
            if self.local.exists(at).await {
                return true;
            }
            layout::sharing(at) != Sharing::PerHost && self.bucket.exists(at).await.unwrap_or(false)
        }
        .boxed()
    }

    fn size<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        async move {
            match self.local.size(at).await? {
                Some(size) => Ok(Some(size)),
                None if layout::sharing(at) == Sharing::PerHost => Ok(None),
                None => self.bucket.size(at).await,
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            match layout::sharing(at) {
                Sharing::PerHost => {}
                Sharing::BucketOnly => return self.bucket.delete(at).await,
                Sharing::Immutable | Sharing::Mutable => self.bucket.delete(at).await?,
            }
            self.local.remove(at).await
        }
        .boxed()
    }

    fn evict<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>> {
        self.local.remove(at)
    }

    fn remove_all<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.bucket.delete_all(at).await?;
            self.local.remove_all(at).await
        }
        .boxed()
    }

    fn list<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Listing, StoreError>> {
        self.bucket.list(at).boxed()
    }

    fn objects<'a>(
        &'a self,
        under: &'a Location,
    ) -> BoxFuture<'a, Result<Vec<ObjectInfo>, StoreError>> {
        self.local.objects(under)
    }

    fn sweep(&self, cutoff: SystemTime) -> BoxFuture<'_, Result<Sweep, StoreError>> {
        self.local.sweep(cutoff)
    }

    fn probe_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            self.local.probe_writable().await?;
            self.bucket.probe_writable().await
        }
        .boxed()
    }

    fn touch_accessed(&self, at: &Location) {
        self.local.touch_accessed(at);
    }

    fn presigned_url<'a>(
        &'a self,
        at: &'a Location,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        async move {
            if layout::sharing(at) != Sharing::Immutable {
                return Ok(None);
            }
            Ok(Some(self.bucket.presigned_get(at, ttl).await?.to_string()))
        }
        .boxed()
    }
}

/// Keeps a copy of a small document fetched from the bucket; a failure only costs a fetch
/// the next time.
async fn keep_locally(local: &Disk, at: &Location, bytes: &[u8]) {
    if let Err(e) = local.write(at, bytes).await {
        tracing::warn!(location = %at, error = %e, "could not keep a local copy");
    }
}

/// An archive streamed to the local tier, uploaded to the bucket once committed there.
struct TieredUpload {
    local: Box<dyn Upload>,
    tiers: Tiered,
    at: Location,
}

impl Upload for TieredUpload {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.local.write(chunk)
    }

    fn partial(&self) -> Option<Partial> {
        self.local.partial()
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        async move {
            let TieredUpload { local, tiers, at } = *self;
            local.commit().await?;
            let path = tiers.local.path(&at);
            if let Err(e) = tiers.bucket.upload_file(&at, &path).await {
                // Not in the bucket, so not cached: the next request fetches it again.
                let _ = tiers.local.remove(&at).await;
                return Err(e);
            }
            Ok(())
        }
        .boxed()
    }
}
