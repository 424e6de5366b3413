//! The verified cache, by key: the only way into stored data.
//!
//! Callers name what they want with typed keys (`layout::Item`); `layout` turns them into
//! locations and a `Backend` keeps them: the local disk (`disk`), or an S3-compatible bucket
//! shared by replicas with the local disk in front (`tiered`, `bucket`). Archives go in through
//! [`Store::write_verified`] (or [`Store::write_verified_here`], to this host's disk only, for
//! an archive another replica puts in the bucket), which hashes every chunk as it is written
//! and commits the file only when it is complete, within its size limit and its SHA-256 equals
//! the verified SHA256SUMS entry, then records that digest beside it. A reader therefore never sees a
//! half-written or unverified file, and [`Store::open_archive`] serves an archive only while
//! it is the one the release's current SHA256SUMS names: existence is not verification.

pub mod backend;
pub mod bucket;
pub mod chunks;
pub mod disk;
pub mod layout;
pub mod tiered;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::{
    protocol::{FileKey, Namespace, ProviderKey, ReleaseKey, UpstreamName, Version},
    verify::Sha256Digest,
};
pub use backend::{Backend, Document, Listing, Sweep};
use chunks::FileChunks;
pub use layout::{Item, LayoutError, Location, ReleaseEntry};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cache I/O failed on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cache disk is full: {available} bytes free under {path}, {required} needed (cache.min_free_space plus the file)")]
    Full {
        path: PathBuf,
        available: u64,
        required: u64,
    },
    #[error("shared storage {location} failed: {reason}")]
    Bucket { location: String, reason: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }

    /// The filesystem ran out of space, by our own check or the kernel's `ENOSPC`.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Full { .. } => true,
            Self::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            Self::Bucket { .. } | Self::Layout(_) => false,
        }
    }

    /// The shared bucket could not be reached or refused the request.
    pub fn is_bucket_unavailable(&self) -> bool {
        matches!(self, Self::Bucket { .. })
    }
}

/// Why a streamed archive was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError<E> {
    #[error("reading the archive failed")]
    Source(#[source] E),
    #[error("archive is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive digest {actual} does not match the signed SHA256SUMS entry {expected}")]
    DigestMismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An upload in progress that readers can follow before it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial(pub(crate) PathBuf);

/// A stored file opened for reading: its length and dates, and its bytes from any offset.
#[derive(Debug)]
pub struct Object {
    file: std::fs::File,
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Object {
    fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let file = std::fs::File::open(path)?;
        let metadata = file.metadata()?;
        Ok(Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode: metadata.ino(),
            path: path.to_owned(),
            file,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    /// A strong entity tag: the same one for the same stored file, a new one when it is
    /// written again.
    pub fn etag(&self) -> Option<String> {
        let since_epoch = self
            .modified?
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Some(format!(
            "{:x}:{:x}:{:x}:{:x}",
            self.inode,
            self.len,
            since_epoch.as_secs(),
            since_epoch.subsec_nanos()
        ))
    }

    /// The file's name, for its media type.
    pub fn name(&self) -> Option<&str> {
        self.path.file_name().and_then(|n| n.to_str())
    }

    /// Reads at any offset, chunk by chunk (see `chunks`).
    pub fn into_chunks(self) -> FileChunks {
        FileChunks::new(self.file)
    }

    /// The whole file as a stream of chunks of up to `chunk` bytes.
    pub fn stream(self, chunk: usize) -> impl Stream<Item = io::Result<Bytes>> {
        self.stream_and_cached_file(chunk).0
    }

    /// The whole file as [`Object::stream`] gives it, and the open file too when it is in the
    /// page cache now (`chunks::nearly_all_cached`): then the server may hand the file to the
    /// kernel to send instead of reading it, without that waiting on the disk for more than a
    /// few pages.
    pub fn stream_and_cached_file(
        self,
        chunk: usize,
    ) -> (
        impl Stream<Item = io::Result<Bytes>>,
        Option<Arc<std::fs::File>>,
    ) {
        let file = Arc::new(self.file);
        let cached = chunks::nearly_all_cached(&file, self.len).then(|| file.clone());
        (FileChunks::shared(file).stream(self.len, chunk), cached)
    }

    /// The open file and its name, for answering ranged and conditional requests with a
    /// library that implements them over a file.
    pub fn into_file(self) -> (std::fs::File, PathBuf) {
        (self.file, self.path)
    }
}

/// The SHA-256 of an open file, read at positions (so the handle's offset does not move) on a
/// blocking thread: hashing a large archive is CPU work.
async fn hash_object(object: &Object) -> Result<Sha256Digest, StoreError> {
    use std::os::unix::fs::FileExt as _;
    let path = object.path.clone();
    let file = object
        .file
        .try_clone()
        .map_err(|e| StoreError::io(&path, e))?;
    let hashed = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; chunks::CHUNK];
        let mut offset = 0;
        loop {
            let read = file.read_at(&mut buffer, offset)?;
            if read == 0 {
                return Ok::<_, io::Error>(Sha256Digest(hasher.finalize().into()));
            }
            hasher.update(&buffer[..read]);
            offset += read as u64;
        }
    })
    .await
    .map_err(|e| StoreError::io(&object.path, io::Error::other(e)))?;
    hashed.map_err(|e| StoreError::io(&path, e))
}

/// A cached archive, for eviction.
#[derive(Debug, Clone)]
pub struct CachedArchive {
    pub key: FileKey,
    pub bytes: u64,
    pub accessed: SystemTime,
}

/// A store of its own for unpacking something before it is trusted (imports); removed with
/// everything in it when dropped.
pub struct Staging {
    pub store: Store,
    dir: PathBuf,
    /// Held while staging lives, so that another process's sweep leaves it alone.
    _lock: std::fs::File,
}

impl Staging {
    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A handle for filling the staging store from a blocking thread.
    pub fn unpacker(&self) -> Unpacker {
        Unpacker {
            dir: self.dir.clone(),
        }
    }
}

/// Fills a staging store from a blocking thread (unpacking a bundle).
#[derive(Debug, Clone)]
pub struct Unpacker {
    dir: PathBuf,
}

impl Unpacker {
    /// Free bytes on the staging disk, which is the cache's.
    pub fn available_space(&self) -> io::Result<u64> {
        fs4::available_space(&self.dir)
    }

    /// Writes one file into the staging store from a reader, at most `limit` bytes (more is
    /// an error), refusing a location that is already there. Blocking: for unpacking on a
    /// blocking thread. Nothing staged is trusted or fsynced; it is verified, then copied into
    /// the real store through its normal writes.
    pub fn put_blocking(
        &self,
        item: Item<'_>,
        reader: &mut impl io::Read,
        limit: u64,
    ) -> io::Result<u64> {
        let at = layout::location(item).map_err(io::Error::other)?;
        let path = self.dir.join(at.as_str());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let copied = io::copy(&mut io::Read::take(reader, limit + 1), &mut out)?;
        if copied > limit {
            return Err(io::Error::other(format!("more than {limit} bytes")));
        }
        Ok(copied)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The local disk tier: served files and staging live here.
    disk: disk::Disk,
    /// The SHA-256 of stored archives as this process has checked them, by the exact stored
    /// file (its entity tag), so the hot path reads no record and hashes nothing.
    checked: moka::future::Cache<FileKey, (String, Sha256Digest)>,
}

/// Most archive digests remembered as checked; each is about 200 bytes.
const MAX_CHECKED_ARCHIVES: u64 = 100_000;

/// A stored archive, looked at against the digest its release's SHA256SUMS gives it.
#[derive(Debug)]
pub enum Archive {
    /// Stored, and its SHA-256 is the expected one.
    Verified(Object),
    /// Not stored.
    Absent,
    /// Stored, but with another SHA-256 (the release's sums changed since it was written, or
    /// the file was changed behind our back): never to be served.
    Mismatch { actual: Sha256Digest },
}

impl Store {
    /// Opens (creating) the cache on the local disk at `root`.
    pub async fn open_disk(root: &Path, min_free_space: u64) -> Result<Self, StoreError> {
        let disk = disk::Disk::open(root, min_free_space).await?;
        Ok(Self {
            backend: Arc::new(disk.clone()),
            disk,
            checked: moka::future::Cache::new(MAX_CHECKED_ARCHIVES),
        })
    }

    /// Opens (creating) the local tier at `root` in front of a bucket shared by replicas.
    /// Nothing is sent to the bucket yet: a replica starts while the bucket is down.
    pub async fn open_shared(
        root: &Path,
        min_free_space: u64,
        bucket: &bucket::BucketSettings,
    ) -> Result<Self, StoreError> {
        let disk = disk::Disk::open(root, min_free_space).await?;
        let bucket = bucket::Bucket::open(bucket)?;
        Ok(Self {
            backend: Arc::new(tiered::Tiered::new(disk.clone(), bucket)),
            disk,
            checked: moka::future::Cache::new(MAX_CHECKED_ARCHIVES),
        })
    }

    /// Where the cache is, for logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Where a location is, for people.
    pub fn show(&self, at: &Location) -> String {
        self.backend.show(at)
    }

    /// An empty staging store beside the cache, on the same disk.
    pub async fn staging(&self) -> Result<Staging, StoreError> {
        let dir = self.disk.temp_dir_name("import");
        let store = Self::open_disk(&dir, 0).await?;
        let lock = disk::lock_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
        Ok(Staging {
            store,
            dir,
            _lock: lock,
        })
    }

    /// Reads a whole small item, or `None` when it is not stored.
    pub async fn read(&self, item: Item<'_>) -> Result<Option<Document>, StoreError> {
        self.backend.read(&layout::location(item)?).await
    }

    /// Writes a small item atomically, replacing any.
    pub async fn write(&self, item: Item<'_>, bytes: &[u8]) -> Result<(), StoreError> {
        self.backend.write(&layout::location(item)?, bytes).await
    }

    /// Writes a small item only if there is none; `false` when one was there.
    pub async fn create(&self, item: Item<'_>, bytes: &[u8]) -> Result<bool, StoreError> {
        self.backend.create(&layout::location(item)?, bytes).await
    }

    pub async fn exists(&self, item: Item<'_>) -> bool {
        match layout::location(item) {
            Ok(at) => self.backend.exists(&at).await,
            Err(_) => false,
        }
    }

    /// A stored file's size, without reading (or, behind a bucket, copying) it.
    pub async fn size_of(&self, item: Item<'_>) -> Result<Option<u64>, StoreError> {
        self.backend.size(&layout::location(item)?).await
    }

    /// Opens a stored file for reading, or `None` when it is not stored.
    pub async fn open(&self, item: Item<'_>) -> Result<Option<Object>, StoreError> {
        self.backend.open(&layout::location(item)?).await
    }

    /// Opens an upload in progress for a follower, or the file it has become.
    pub async fn open_partial(
        &self,
        partial: Option<&Partial>,
        item: Item<'_>,
    ) -> Result<Object, StoreError> {
        self.backend
            .open_partial(partial, &layout::location(item)?)
            .await
    }

    pub async fn remove(&self, item: Item<'_>) -> Result<(), StoreError> {
        self.backend.remove(&layout::location(item)?).await
    }

    /// Removes an archive with the records derived from it (`h1:`, digest).
    pub async fn remove_archive(&self, file: &FileKey) -> Result<(), StoreError> {
        self.remove(Item::File(file)).await?;
        self.remove(Item::H1(file)).await?;
        self.remove(Item::Digest(file)).await?;
        self.checked.invalidate(file).await;
        Ok(())
    }

    /// Frees this host's disk of an archive and its records; a bucket behind it keeps them.
    pub async fn evict_archive(&self, file: &FileKey) -> Result<(), StoreError> {
        for item in [Item::File(file), Item::H1(file), Item::Digest(file)] {
            self.backend.evict(&layout::location(item)?).await?;
        }
        self.checked.invalidate(file).await;
        Ok(())
    }

    /// Opens a stored archive if, and only if, its SHA-256 is `expected`. The digest recorded
    /// when it was written says so at the cost of a small read (once per stored file and
    /// process); an archive without a matching record (written before records existed, or
    /// before its release's sums changed) is hashed once, and recorded when it matches.
    pub async fn open_archive(
        &self,
        file: &FileKey,
        expected: Sha256Digest,
    ) -> Result<Archive, StoreError> {
        let Some(object) = self.open(Item::File(file)).await? else {
            return Ok(Archive::Absent);
        };
        let stamp = object.etag().unwrap_or_default();
        let known = self
            .checked
            .get(file)
            .await
            .filter(|(checked, _)| !stamp.is_empty() && *checked == stamp)
            .map(|(_, digest)| digest);
        let actual = match known {
            Some(digest) => digest,
            None => {
                let actual = match self.recorded_digest(file, &stamp).await? {
                    Some(recorded) if recorded == expected => recorded,
                    _ => {
                        let actual = hash_object(&object).await?;
                        if actual == expected {
                            self.record_digest(file, actual, &object).await?;
                        }
                        actual
                    }
                };
                self.checked.insert(file.clone(), (stamp, actual)).await;
                actual
            }
        };
        Ok(if actual == expected {
            Archive::Verified(object)
        } else {
            Archive::Mismatch { actual }
        })
    }

    /// The digest record of an archive, `<hex> <entity tag>`: the SHA-256 of exactly the file
    /// with that tag, so a file replaced since (by a crashed writer, or behind our back) has no
    /// record.
    async fn record_digest(
        &self,
        file: &FileKey,
        digest: Sha256Digest,
        object: &Object,
    ) -> Result<(), StoreError> {
        let Some(stamp) = object.etag() else {
            return Ok(());
        };
        let record = format!("{} {stamp}\n", digest.to_hex());
        self.write(Item::Digest(file), record.as_bytes()).await
    }

    /// The recorded digest, if the record names the file as it is now (`stamp`).
    async fn recorded_digest(
        &self,
        file: &FileKey,
        stamp: &str,
    ) -> Result<Option<Sha256Digest>, StoreError> {
        let Some(record) = self.read(Item::Digest(file)).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&record.bytes);
        let mut fields = text.split_whitespace();
        Ok(match (fields.next(), fields.next(), fields.next()) {
            (Some(digest), Some(recorded), None) if !stamp.is_empty() && recorded == stamp => {
                Sha256Digest::from_hex(digest)
            }
            _ => None,
        })
    }

    /// Removes a release with every file of it.
    pub async fn remove_release(&self, release: &ReleaseKey) -> Result<(), StoreError> {
        self.backend
            .remove_all(&layout::release_dir(release)?)
            .await
    }

    /// A URL a client may fetch a stored file from directly for `ttl` (a bucket's presigned
    /// one), or `None` where the store has no such URLs. The caller has verified the file.
    pub async fn presigned_url(
        &self,
        item: Item<'_>,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        self.backend
            .presigned_url(&layout::location(item)?, ttl)
            .await
    }

    /// Records that a file was just served, for least-recently-used eviction.
    pub fn touch_accessed(&self, item: Item<'_>) {
        if let Ok(at) = layout::location(item) {
            self.backend.touch_accessed(&at);
        }
    }

    /// Streams an archive in, hashing as it writes; commits it only if it is at most `limit`
    /// bytes and its SHA-256 equals `expected`. Otherwise nothing is left. `size_hint` (the
    /// announced size, or 0) is checked against the free space up front. `observe(partial,
    /// written)` hears of every chunk once followers can read it.
    pub async fn write_verified<E>(
        &self,
        item: Item<'_>,
        chunks: impl Stream<Item = Result<Bytes, E>> + Unpin,
        expected: Sha256Digest,
        limit: u64,
        size_hint: u64,
        observe: &mut (dyn FnMut(Option<&Partial>, u64) + Send),
    ) -> Result<u64, IngestError<E>> {
        let backend = self.backend.as_ref();
        self.write_verified_to(backend, item, chunks, expected, limit, size_hint, observe)
            .await
    }

    /// [`Store::write_verified`] to this host's disk only: for an archive another replica is
    /// downloading from upstream and puts in the bucket itself (archives are content-addressed,
    /// so one upload is enough). Where the disk is the only tier, the same thing.
    pub async fn write_verified_here<E>(
        &self,
        item: Item<'_>,
        chunks: impl Stream<Item = Result<Bytes, E>> + Unpin,
        expected: Sha256Digest,
        limit: u64,
        size_hint: u64,
        observe: &mut (dyn FnMut(Option<&Partial>, u64) + Send),
    ) -> Result<u64, IngestError<E>> {
        let disk = self.disk.clone();
        self.write_verified_to(&disk, item, chunks, expected, limit, size_hint, observe)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_verified_to<E>(
        &self,
        backend: &dyn Backend,
        item: Item<'_>,
        mut chunks: impl Stream<Item = Result<Bytes, E>> + Unpin,
        expected: Sha256Digest,
        limit: u64,
        size_hint: u64,
        observe: &mut (dyn FnMut(Option<&Partial>, u64) + Send),
    ) -> Result<u64, IngestError<E>> {
        let mut upload = backend
            .upload(
                &layout::location(item).map_err(StoreError::from)?,
                size_hint,
            )
            .await?;
        let partial = upload.partial();
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        observe(partial.as_ref(), 0);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(IngestError::Source)?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(IngestError::TooLarge { limit });
            }
            hasher.update(&chunk);
            upload.write(&chunk).await?;
            observe(partial.as_ref(), written);
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != expected {
            return Err(IngestError::DigestMismatch { expected, actual });
        }
        upload.commit().await?;
        if let Item::File(file) = item {
            // After the file, and naming it: a record never vouches for bytes that are not in
            // place. Until it lands, a reader finds no matching record and hashes the file.
            if let Some(object) = self.open(item).await? {
                self.record_digest(file, actual, &object).await?;
            }
        }
        Ok(written)
    }

    /// The SHA-256 and length of a stored file.
    pub async fn digest_of(
        &self,
        item: Item<'_>,
    ) -> Result<Option<(Sha256Digest, u64)>, StoreError> {
        let at = layout::location(item)?;
        let Some(object) = self.backend.open(&at).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut bytes = 0;
        let mut stream = std::pin::pin!(object.stream(chunks::CHUNK));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::io(Path::new(at.as_str()), e))?;
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
        }
        Ok(Some((Sha256Digest(hasher.finalize().into()), bytes)))
    }

    /// Every release stored, verified or not, sorted.
    pub async fn releases(&self) -> Result<Vec<ReleaseKey>, StoreError> {
        let mut out = Vec::new();
        for upstream in self.backend.list(&layout::releases_root()).await?.dirs {
            let Ok(upstream) = UpstreamName::try_from(upstream.as_str()) else {
                continue;
            };
            let upstream_dir = layout::upstream_dir(&upstream)?;
            for entry in self.backend.list(&upstream_dir).await?.dirs {
                match layout::upstream_entry(&entry) {
                    Some(layout::UpstreamEntry::Provider(provider)) => {
                        let key = ProviderKey::new(upstream.clone(), None, provider);
                        self.versions_of(&key, &mut out).await?;
                    }
                    Some(layout::UpstreamEntry::Namespace(namespace)) => {
                        self.namespace_releases(&upstream, namespace, &mut out)
                            .await?;
                    }
                    None => {}
                }
            }
        }
        Ok(out)
    }

    async fn namespace_releases(
        &self,
        upstream: &UpstreamName,
        namespace: Namespace,
        out: &mut Vec<ReleaseKey>,
    ) -> Result<(), StoreError> {
        let dir = layout::upstream_dir(upstream)?.join(namespace.as_str())?;
        for entry in self.backend.list(&dir).await?.dirs {
            if let Some(layout::UpstreamEntry::Provider(provider)) = layout::upstream_entry(&entry)
            {
                let key = ProviderKey::new(upstream.clone(), Some(namespace.clone()), provider);
                self.versions_of(&key, out).await?;
            }
        }
        Ok(())
    }

    /// The versions of `provider` with anything stored (a release directory), sorted, from
    /// one listing: where a release record can be, and nowhere else.
    pub async fn stored_versions(
        &self,
        provider: &ProviderKey,
    ) -> Result<Vec<Version>, StoreError> {
        let dir = layout::provider_dir(provider)?;
        let listing = self.backend.list(&dir).await?;
        Ok(listing
            .dirs
            .iter()
            .filter_map(|version| Version::try_from(version.as_str()).ok())
            .collect())
    }

    async fn versions_of(
        &self,
        provider: &ProviderKey,
        out: &mut Vec<ReleaseKey>,
    ) -> Result<(), StoreError> {
        let versions = self.stored_versions(provider).await?;
        out.extend(
            versions
                .into_iter()
                .map(|version| provider.release(version)),
        );
        Ok(())
    }

    /// Every version with a first-seen record (`Item::FirstSeen`), sorted by provider.
    pub async fn first_sightings(&self) -> Result<Vec<ReleaseKey>, StoreError> {
        let root = layout::first_seen_root();
        let mut providers = Vec::new();
        for upstream in self.backend.list(&root).await?.dirs {
            let Ok(upstream) = UpstreamName::try_from(upstream.as_str()) else {
                continue;
            };
            let upstream_dir = root.join(upstream.as_str())?;
            for entry in self.backend.list(&upstream_dir).await?.dirs {
                match layout::upstream_entry(&entry) {
                    Some(layout::UpstreamEntry::Provider(provider)) => {
                        providers.push(ProviderKey::new(upstream.clone(), None, provider));
                    }
                    Some(layout::UpstreamEntry::Namespace(namespace)) => {
                        let dir = upstream_dir.join(namespace.as_str())?;
                        for entry in self.backend.list(&dir).await?.dirs {
                            if let Some(layout::UpstreamEntry::Provider(provider)) =
                                layout::upstream_entry(&entry)
                            {
                                let ns = Some(namespace.clone());
                                providers.push(ProviderKey::new(upstream.clone(), ns, provider));
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        let mut out = Vec::new();
        for provider in providers {
            let dir = layout::first_seen_dir(&provider)?;
            for name in self.backend.list(&dir).await?.files {
                if let Ok(version) = Version::try_from(name.as_str()) {
                    out.push(provider.release(version));
                }
            }
        }
        Ok(out)
    }

    /// What a release's directory holds, by name; names the layout does not know are left out.
    pub async fn release_entries(
        &self,
        release: &ReleaseKey,
    ) -> Result<Vec<ReleaseEntry>, StoreError> {
        let dir = layout::release_dir(release)?;
        let listing = self.backend.list(&dir).await?;
        Ok(listing
            .files
            .iter()
            .filter_map(|name| layout::release_entry(name))
            .collect())
    }

    /// Names in a release's directory that are not the layout's (for strict audits).
    pub async fn foreign_names(&self, release: &ReleaseKey) -> Result<Vec<String>, StoreError> {
        let dir = layout::release_dir(release)?;
        let listing = self.backend.list(&dir).await?;
        Ok(listing
            .files
            .into_iter()
            .filter(|name| layout::release_entry(name).is_none())
            .chain(listing.dirs)
            .collect())
    }

    /// Every cached archive with its size and last access, for eviction.
    pub async fn archives(&self) -> Result<Vec<CachedArchive>, StoreError> {
        let objects = self.backend.objects(&layout::releases_root()).await?;
        Ok(objects
            .into_iter()
            .filter(|o| o.location.name().ends_with(".zip"))
            .filter_map(|o| {
                Some(CachedArchive {
                    key: layout::file_key(&o.location)?,
                    bytes: o.bytes,
                    accessed: o.accessed,
                })
            })
            .collect())
    }

    /// Removes what crashed writers left that is older than `cutoff`, and measures the cache.
    pub async fn sweep_leftovers(&self, cutoff: SystemTime) -> Result<Sweep, StoreError> {
        self.backend.sweep(cutoff).await
    }

    /// Bytes and files in the cache (nothing removed).
    pub async fn usage(&self) -> Result<Sweep, StoreError> {
        self.backend.sweep(SystemTime::UNIX_EPOCH).await
    }

    /// Writes and removes a probe: the cache accepts writes right now.
    pub async fn probe_writable(&self) -> Result<(), StoreError> {
        self.backend.probe_writable().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::{FileName, ProviderType};

    fn digest(data: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(data).into())
    }

    fn chunks(data: &'static [u8]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures_util::stream::iter(data.chunks(3).map(|c| Ok(Bytes::from_static(c))))
    }

    fn archive() -> FileKey {
        ProviderKey::new(
            UpstreamName::try_from("a").unwrap(),
            None,
            ProviderType::try_from("b").unwrap(),
        )
        .release(Version::try_from("1.0.0").unwrap())
        .file(FileName::try_from("terraform-provider-b_1.0.0_linux_amd64.zip").unwrap())
    }

    /// Stores `original` as `key`'s archive, verified.
    async fn store_original(store: &Store, key: &FileKey) {
        store
            .write_verified(
                Item::File(key),
                chunks(b"original"),
                digest(b"original"),
                100,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap();
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                out.extend(files_in(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
        out
    }

    #[tokio::test]
    async fn verified_write_lands_only_on_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let key = archive();
        let item = Item::File(&key);

        let err = store
            .write_verified(
                item,
                chunks(b"tampered"),
                digest(b"original"),
                100,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::DigestMismatch { .. }));
        assert!(!store.exists(item).await);
        assert!(files_in(dir.path()).is_empty(), "temp file left");

        let err = store
            .write_verified(
                item,
                chunks(b"original"),
                digest(b"original"),
                4,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { limit: 4 }));
        assert!(!store.exists(item).await);

        let n = store
            .write_verified(
                item,
                chunks(b"original"),
                digest(b"original"),
                100,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(n, 8);
        assert_eq!(
            store.digest_of(item).await.unwrap(),
            Some((digest(b"original"), 8))
        );
        assert_eq!(store.archives().await.unwrap()[0].key, key);
    }

    #[tokio::test]
    async fn an_archive_opens_only_for_the_digest_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let key = archive();
        let (original, other) = (digest(b"original"), digest(b"other"));
        assert!(matches!(
            store.open_archive(&key, original).await.unwrap(),
            Archive::Absent
        ));
        store_original(&store, &key).await;
        let recorded = store.read(Item::Digest(&key)).await.unwrap().unwrap();
        assert!(recorded.bytes.starts_with(original.to_hex().as_bytes()));
        assert!(matches!(
            store.open_archive(&key, original).await.unwrap(),
            Archive::Verified(_)
        ));
        // The release's sums changed: the same file is not the archive they name.
        assert!(matches!(
            store.open_archive(&key, other).await.unwrap(),
            Archive::Mismatch { actual } if actual == original
        ));

        // A file without a record (or with one that does not name it) is hashed, and recorded
        // when it matches.
        let fresh = Store::open_disk(dir.path(), 0).await.unwrap();
        fresh.remove(Item::Digest(&key)).await.unwrap();
        assert!(matches!(
            fresh.open_archive(&key, original).await.unwrap(),
            Archive::Verified(_)
        ));
        assert!(fresh.exists(Item::Digest(&key)).await);
        let fresh = Store::open_disk(dir.path(), 0).await.unwrap();
        fresh
            .write(Item::Digest(&key), other.to_hex().as_bytes())
            .await
            .unwrap();
        assert!(matches!(
            fresh.open_archive(&key, other).await.unwrap(),
            Archive::Mismatch { actual } if actual == original
        ));
        // Replaced behind its back: the next look sees the new file, not the remembered one.
        std::fs::write(
            dir.path()
                .join(layout::location(Item::File(&key)).unwrap().as_str()),
            b"changed!",
        )
        .unwrap();
        assert!(matches!(
            fresh.open_archive(&key, other).await.unwrap(),
            Archive::Mismatch { actual } if actual == digest(b"changed!")
        ));

        store.remove_archive(&key).await.unwrap();
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_hot_archive_is_touched_once_a_minute_and_still_opened_as_it_is_now() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let key = archive();
        let original = digest(b"original");
        store_original(&store, &key).await;
        let path = dir
            .path()
            .join(layout::location(Item::File(&key)).unwrap().as_str());
        let set_accessed = |ago: u64| {
            let file = std::fs::File::open(&path).unwrap();
            let at = SystemTime::now() - std::time::Duration::from_secs(ago);
            file.set_times(std::fs::FileTimes::new().set_accessed(at))
                .unwrap();
        };
        let accessed_ago = || {
            let accessed = std::fs::metadata(&path).unwrap().accessed().unwrap();
            SystemTime::now()
                .duration_since(accessed)
                .unwrap_or_default()
        };
        let minute = std::time::Duration::from_secs(60);

        set_accessed(3600);
        store.touch_accessed(Item::File(&key));
        // The touch runs on a blocking thread.
        for _ in 0..100 {
            if accessed_ago() < minute {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(accessed_ago() < minute);
        // Touched by this process within the minute: the next hits do not touch it again.
        set_accessed(3600);
        store.touch_accessed(Item::File(&key));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(accessed_ago() > 50 * minute);

        // Hot files open on the calling thread, and what they open is the file as it is now.
        let ino = std::fs::metadata(&path).unwrap().ino();
        let Archive::Verified(object) = store.open_archive(&key, original).await.unwrap() else {
            panic!("the hot archive did not open");
        };
        assert_eq!((object.len(), object.inode), (8, ino));
        std::fs::write(&path, b"changed, longer").unwrap();
        assert!(matches!(
            store.open_archive(&key, original).await.unwrap(),
            Archive::Mismatch { actual } if actual == digest(b"changed, longer")
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            store.open_archive(&key, original).await.unwrap(),
            Archive::Absent
        ));
    }

    #[tokio::test]
    async fn a_full_disk_refuses_writes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), u64::MAX).await.unwrap();
        let key = archive();
        let err = store.write(Item::H1(&key), b"{}").await.unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        let err = store
            .write_verified(
                Item::File(&key),
                chunks(b"original"),
                digest(b"original"),
                100,
                8,
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Store(e) if e.is_disk_full()));
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn create_writes_only_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let key = archive();
        assert!(store.create(Item::H1(&key), b"first").await.unwrap());
        assert!(!store.create(Item::H1(&key), b"second").await.unwrap());
        let stored = store.read(Item::H1(&key)).await.unwrap().unwrap();
        assert_eq!(stored.bytes, b"first");
        assert_eq!(files_in(dir.path()).len(), 1, "temp file left");
    }

    #[tokio::test]
    async fn sweeping_removes_only_temp_files_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("releases/x");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(".a.zip.tmp-0123"), b"partial").unwrap();
        std::fs::write(sub.join("a.zip"), b"done").unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let before = SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(store.sweep_leftovers(before).await.unwrap().removed, 0);
        assert!(
            sub.join(".a.zip.tmp-0123").exists(),
            "a young temp file was removed"
        );
        let after = SystemTime::now() + std::time::Duration::from_secs(1);
        let sweep = store.sweep_leftovers(after).await.unwrap();
        assert_eq!((sweep.removed, sweep.files, sweep.bytes), (1, 1, 4));
        assert!(!sub.join(".a.zip.tmp-0123").exists());
        assert!(sub.join("a.zip").exists());
    }

    #[tokio::test]
    async fn sweeping_leaves_what_a_writer_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let key = archive();
        let mut upload_chunks = futures_util::stream::pending::<Result<Bytes, io::Error>>();
        let mut observe = |_: Option<&Partial>, _| {};
        // A write in progress, seen from a sweep whose cutoff is in the future.
        let writing = store.write_verified(
            Item::File(&key),
            &mut upload_chunks,
            digest(b"x"),
            100,
            0,
            &mut observe,
        );
        tokio::pin!(writing);
        let started = tokio::time::timeout(std::time::Duration::from_millis(100), &mut writing);
        assert!(
            started.await.is_err(),
            "the write should wait for its chunks"
        );
        let after = SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(store.sweep_leftovers(after).await.unwrap().removed, 0);
        assert_eq!(
            files_in(dir.path()).len(),
            1,
            "the live temp file was swept"
        );
        let staging = store.staging().await.unwrap();
        assert_eq!(store.sweep_leftovers(after).await.unwrap().removed, 0);
        assert!(staging.dir().exists(), "a live staging directory was swept");
    }
}
