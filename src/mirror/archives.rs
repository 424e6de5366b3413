//! Release files served to clients: SHA256SUMS and its signature (stored with the release)
//! and archives (fetched on first request, verified while streaming into the store). On a
//! bucket shared by replicas with `[cluster]`, a cold archive is fetched once between them:
//! the replica holding its lease downloads it, the others follow that download
//! (`cluster`, and `peer_file` on the holder's side), hashing and checking it themselves.

use std::{pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::Stream;

use super::{
    cluster,
    live::{LiveDownload, Phase, Progress},
    Mirror, MirrorError, Release, VerifyFailure, Via,
};
use crate::{
    metrics::{metrics, note_cache, CacheOutcome},
    protocol::{FileKey, FileName, Platform, ProviderType, Version},
    store::{layout, Archive, IngestError, Item, Location, Object},
    upstream::ArchiveDownload,
    verify::{h1_of_zip, Sha256Digest},
};

/// A release file to send: verified in the store, or an archive still arriving from upstream
/// (whose tail is held back until its digest matches; see `live`).
pub enum FileBody {
    Ready(Object),
    /// A verified archive in the bucket, fetched from there (`storage.redirect =
    /// "presigned"`): a presigned URL, valid for `PRESIGNED_URL_TTL`.
    Redirect(String),
    Live {
        total: u64,
        stream: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    },
}

/// How long a presigned URL of an archive in the bucket works: long enough for a client to
/// follow the redirect at once, short enough that a URL seen in a log soon stops working.
pub const PRESIGNED_URL_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Which file a client asks for.
#[derive(Debug, Clone, Copy)]
pub struct FileRequest<'a> {
    pub via: Via<'a>,
    pub provider: &'a ProviderType,
    pub version: &'a Version,
    pub file: &'a FileName,
    /// Over the network mirror: only this platform's own build, not merely some file of the
    /// release.
    pub platform: Option<&'a Platform>,
}

/// How long an answer may wait for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until it is verified in the store (`HEAD`, `Range` and conditional requests).
    Verified,
    /// Only for its first bytes: a download in progress is followed as it arrives.
    FirstBytes,
}

/// Where a release file is.
enum Located {
    Ready(Object),
    Downloading(Arc<LiveDownload>),
}

impl Mirror {
    /// A file of a release (`/v1/providers/…/files/FILE`, or an archive named in a
    /// `<version>.json`), as soon as `wait` allows.
    pub async fn file(
        &self,
        request: FileRequest<'_>,
        wait: Wait,
    ) -> Result<FileBody, MirrorError> {
        let FileRequest {
            via,
            provider,
            version,
            file,
            platform,
        } = request;
        let key = self
            .provider(via, provider)?
            .release(version.clone())
            .file(file.clone());
        let release = self.release(&key.release).await?;
        let is_platforms_build =
            |platform| release.build_for(platform).map(|b| &b.filename) == Some(file);
        if platform.is_some_and(|platform| !is_platforms_build(platform)) {
            return Err(MirrorError::UnknownFile {
                release: Box::new(key.release),
                file: file.clone(),
            });
        }
        self.file_body(&release, key, wait).await
    }

    /// A file of a release once it is verified in the store, fetching it through the serving
    /// path if need be; `true` when it was fetched now (for the operations).
    pub async fn ensure_file(&self, key: &FileKey) -> Result<(Object, bool), MirrorError> {
        let release = self.release(&key.release).await?;
        match self.locate(&release, key.clone()).await? {
            Located::Ready(object) => Ok((object, false)),
            Located::Downloading(live) => {
                live.finished().await?;
                Ok((self.open_verified(key).await?, true))
            }
        }
    }

    async fn file_body(
        &self,
        release: &Release,
        key: FileKey,
        wait: Wait,
    ) -> Result<FileBody, MirrorError> {
        let live = match self.locate(release, key.clone()).await? {
            Located::Ready(object) => {
                // Only a plain GET of an archive, verified here (it is in the bucket: a
                // replica keeps an archive only once it is there).
                let is_archive = release.build_named(&key.file).is_some();
                if self.inner.presigned_redirects && wait == Wait::FirstBytes && is_archive {
                    match self
                        .inner
                        .store
                        .presigned_url(Item::File(&key), PRESIGNED_URL_TTL)
                        .await
                    {
                        Ok(Some(url)) => return Ok(FileBody::Redirect(url)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(file = %key, error = %e, "cannot presign a bucket URL; serving the archive through the mirror");
                        }
                    }
                }
                return Ok(FileBody::Ready(object));
            }
            Located::Downloading(live) => live,
        };
        self.count_hit(&key);
        self.live_body(&live, &key, wait).await
    }

    /// A download in progress as a body: followed as it arrives when `wait` allows, else (or
    /// when upstream announced no length, so no tail can be held back) the verified file once
    /// the download is done.
    async fn live_body(
        &self,
        live: &LiveDownload,
        key: &FileKey,
        wait: Wait,
    ) -> Result<FileBody, MirrorError> {
        if wait == Wait::FirstBytes {
            if let Some((total, stream)) = live.follow().await? {
                return Ok(FileBody::Live {
                    total,
                    stream: Box::pin(stream),
                });
            }
        }
        live.finished().await?;
        Ok(FileBody::Ready(self.open_verified(key).await?))
    }

    async fn open_verified(&self, key: &FileKey) -> Result<Object, MirrorError> {
        self.inner
            .store
            .open(Item::File(key))
            .await?
            .ok_or_else(|| MirrorError::internal(format!("{key} vanished after it was verified")))
    }

    /// Checks the file against the verified release and finds it: stored, or downloading
    /// (joining the download in progress, or starting it).
    async fn locate(&self, release: &Release, key: FileKey) -> Result<Located, MirrorError> {
        let store = &self.inner.store;
        if key.file == release.shasums_file || release.is_signature(&key.file) {
            return Ok(Located::Ready(self.open_verified(&key).await?));
        }
        // Only a build of this release is an archive; other SHA256SUMS lines (the manifest)
        // are not served.
        let (Some(build), Some(expected)) =
            (release.build_named(&key.file), release.digest_of(&key.file))
        else {
            return Err(MirrorError::UnknownFile {
                release: Box::new(key.release),
                file: key.file,
            });
        };
        match store.open_archive(&key, expected).await? {
            Archive::Verified(object) => {
                note_cache(CacheOutcome::Hit);
                store.touch_accessed(Item::File(&key));
                self.count_hit(&key);
                return Ok(Located::Ready(object));
            }
            Archive::Absent => {}
            Archive::Mismatch { actual } => {
                metrics().verification_failures.inc();
                tracing::error!(file = %key, signed = %expected, %actual, "stored archive does not match its release's signed SHA256SUMS; not served, fetching it again");
            }
        }
        note_cache(CacheOutcome::Miss);
        let target = ArchiveTarget {
            platform: build.platform.clone(),
            key: key.clone(),
            expected,
        };
        match self.join_or_start_download(target).await {
            Some(live) => Ok(Located::Downloading(live)),
            None => Ok(Located::Ready(self.open_verified(&key).await?)),
        }
    }

    /// Single flight: the download in progress for this archive, or a new one. The download
    /// runs in a task of its own, so clients hanging up never cancel it for the others.
    /// `None` when the archive landed in the store a moment ago.
    async fn join_or_start_download(&self, target: ArchiveTarget) -> Option<Arc<LiveDownload>> {
        // Held across the look at the store: a download removes itself only once its file is
        // in place, so under this lock "not downloading and not stored" means nobody has it.
        let mut downloads = self.inner.downloads.lock().await;
        if let Some(live) = downloads.get(&target.key) {
            return Some(live.clone());
        }
        let stored = self
            .inner
            .store
            .open_archive(&target.key, target.expected)
            .await;
        if matches!(stored, Ok(Archive::Verified(_))) {
            return None;
        }
        let (progress, watch) = tokio::sync::watch::channel(Progress::start());
        let live = Arc::new(LiveDownload::new(
            self.inner.store.clone(),
            target.key.clone(),
            watch,
        ));
        downloads.insert(target.key.clone(), live.clone());
        drop(downloads);
        let mirror = self.clone();
        tokio::spawn(async move {
            let result = mirror.fetch_archive(&target, &progress).await;
            let phase = match &result {
                Ok(()) => Phase::Verified,
                Err(error) => Phase::Failed(Arc::new(error.clone())),
            };
            progress.send_modify(|p| p.phase = phase);
            mirror.inner.downloads.lock().await.remove(&target.key);
            if result.is_ok() {
                // After the clients: they need not wait for this.
                mirror.record_h1(&target.key).await;
                mirror.complete_hashes_in_background(&target.key.release);
            }
        });
        Some(live)
    }

    /// Gets the archive into the store: from upstream, or — on a bucket shared with other
    /// replicas (`cluster`) — by following the download of the replica that holds its lease,
    /// or from the bucket once that replica has put it there.
    #[tracing::instrument(skip_all, fields(file = %target.key))]
    async fn fetch_archive(
        &self,
        target: &ArchiveTarget,
        progress: &tokio::sync::watch::Sender<Progress>,
    ) -> Result<(), MirrorError> {
        let started = std::time::Instant::now();
        let in_flight = &metrics().downloads_in_flight;
        in_flight.inc();
        let _done = scopeguard(|| in_flight.dec());
        let Some(cluster) = &self.inner.cluster else {
            return self.download_from_upstream(target, progress, started).await;
        };
        let store = &self.inner.store;
        // A holder that ended without the archive in the bucket (it failed, or was replaced)
        // leaves the next turn to whoever takes the lease then.
        for _ in 0..2 {
            match cluster.take(store, &target.key).await {
                cluster::Role::Alone => {
                    return self.download_from_upstream(target, progress, started).await
                }
                cluster::Role::Holder(lease) => {
                    // The last holder may have finished between the look at the store and
                    // the lease.
                    let result = match store.open_archive(&target.key, target.expected).await {
                        Ok(Archive::Verified(_)) => Ok(()),
                        _ => self.download_from_upstream(target, progress, started).await,
                    };
                    lease.release().await;
                    return result;
                }
                cluster::Role::Follower(holder) => {
                    let location = layout::location(Item::File(&target.key))?;
                    let secret = cluster.secret(store).await?;
                    if let Some(body) = cluster
                        .peers
                        .live_archive(&holder, location.as_str(), secret)
                        .await?
                    {
                        tracing::info!(%holder, "following the download of the replica holding the lease");
                        return self
                            .ingest(target, progress, body, Keep::HereOnly, started)
                            .await;
                    }
                    // Done there a moment ago: the bucket has it, unless it failed.
                    if let Archive::Verified(_) =
                        store.open_archive(&target.key, target.expected).await?
                    {
                        tracing::info!(%holder, "fetched from the bucket, where the replica holding the lease put it");
                        return Ok(());
                    }
                }
            }
        }
        Err(MirrorError::internal(format!(
            "{}: the replicas holding its download lease ended without storing it",
            target.key
        )))
    }

    /// Downloads the archive from upstream into the store.
    async fn download_from_upstream(
        &self,
        target: &ArchiveTarget,
        progress: &tokio::sync::watch::Sender<Progress>,
        started: std::time::Instant,
    ) -> Result<(), MirrorError> {
        let source = self.source(&target.key.release.provider.upstream)?;
        let body = source
            .upstream
            .archive(&target.key, &target.platform)
            .await?;
        self.ingest(target, progress, body, Keep::Everywhere, started)
            .await
    }

    /// Streams an archive's bytes (from upstream or another replica) into the store, hashing
    /// as they are written, and keeps it only if its digest is the signed one.
    async fn ingest(
        &self,
        target: &ArchiveTarget,
        progress: &tokio::sync::watch::Sender<Progress>,
        body: ArchiveDownload,
        keep: Keep,
        started: std::time::Instant,
    ) -> Result<(), MirrorError> {
        let ArchiveTarget { key, expected, .. } = target;
        let expected = *expected;
        progress.send_modify(|p| p.total = body.declared_len);
        let max = self.inner.max_archive_bytes;
        let fail = |failure| MirrorError::verification(&key.release, key.file.as_str(), failure);
        if let Some(declared) = body.declared_digest.filter(|d| *d != expected) {
            metrics().verification_failures.inc();
            tracing::error!(%declared, signed = %expected, "upstream declares another digest than the signed SHA256SUMS; not fetched");
            return Err(fail(VerifyFailure::DeclaredDigest {
                declared,
                signed: expected,
            }));
        }
        if let Some(declared) = body.declared_len.filter(|len| *len > max) {
            tracing::error!(
                declared,
                max,
                "upstream announces an archive over the size limit; not fetched"
            );
            return Err(fail(VerifyFailure::TooLarge { limit: max }));
        }
        // Never read past what upstream announced: a longer body is cut there (and then fails
        // its digest), so a lying upstream cannot fill the disk.
        let limit = body.declared_len.unwrap_or(max).min(max);
        let store = &self.inner.store;
        let item = Item::File(key);
        let size_hint = body.declared_len.unwrap_or(0);
        let mut observe = |partial: Option<&crate::store::Partial>, written| {
            progress.send_modify(|p| {
                if p.partial.is_none() {
                    p.partial = partial.cloned();
                }
                p.written = written;
            })
        };
        let written = match keep {
            Keep::Everywhere => {
                store
                    .write_verified(item, body.chunks, expected, limit, size_hint, &mut observe)
                    .await
            }
            Keep::HereOnly => {
                store
                    .write_verified_here(
                        item,
                        body.chunks,
                        expected,
                        limit,
                        size_hint,
                        &mut observe,
                    )
                    .await
            }
        };
        match written {
            Ok(bytes) => {
                self.note_change();
                tracing::info!(
                    bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "fetched and verified archive"
                );
                Ok(())
            }
            Err(IngestError::DigestMismatch { expected, actual }) => {
                metrics().verification_failures.inc();
                tracing::error!(%expected, %actual, "archive digest mismatch; nothing cached");
                Err(fail(VerifyFailure::DigestMismatch { expected, actual }))
            }
            Err(IngestError::TooLarge { limit }) => {
                metrics().verification_failures.inc();
                tracing::error!(limit, "archive exceeds the size limit; nothing cached");
                Err(fail(VerifyFailure::TooLarge { limit }))
            }
            Err(IngestError::Source(e)) => Err(e.into()),
            Err(IngestError::Store(e)) => Err(e.into()),
        }
    }

    /// Another replica following this one's download of the archive at `location` (the
    /// private route of `cluster`): its bytes as they arrive, tail held back until verified
    /// here, as for any client. `presented`: the secret the replica sent.
    pub async fn peer_file(
        &self,
        location: &str,
        presented: Option<&str>,
    ) -> Result<FileBody, MirrorError> {
        let Some(cluster) = &self.inner.cluster else {
            return Err(MirrorError::PeerDenied);
        };
        let admitted = match presented {
            Some(presented) => cluster.admits(&self.inner.store, presented).await?,
            None => false,
        };
        if !admitted {
            return Err(MirrorError::PeerDenied);
        }
        let key = Location::parse(location)
            .and_then(|at| layout::file_key(&at))
            .ok_or_else(|| MirrorError::NotDownloading(location.to_owned()))?;
        let live = self.inner.downloads.lock().await.get(&key).cloned();
        let Some(live) = live else {
            return Err(MirrorError::NotDownloading(location.to_owned()));
        };
        self.live_body(&live, &key, Wait::FirstBytes).await
    }

    /// Computes the `h1:` of a verified archive once and stores it beside the archive. A
    /// failure only costs the mirror protocol its `h1:` for this archive (`zh:` remains).
    pub async fn record_h1(&self, key: &FileKey) {
        let store = &self.inner.store;
        let computed = match store.open(Item::File(key)).await {
            Ok(Some(object)) => {
                let (file, _) = object.into_file();
                tokio::task::spawn_blocking(move || {
                    h1_of_zip(std::io::BufReader::new(file)).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|h1| h1)
            }
            Ok(None) => Err("the archive is not stored".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        let h1 = match computed {
            Ok(h1) => h1,
            Err(e) => {
                tracing::warn!(error = %e, file = %key, "cannot compute h1 of the archive; mirror clients get zh: only");
                return;
            }
        };
        if let Err(e) = store.write(Item::H1(key), h1.as_bytes()).await {
            tracing::warn!(error = %e, file = %key, "cannot keep the archive's h1");
        }
        self.inner.mirror_versions.invalidate(&key.release).await;
    }

    /// The `h1:` of a stored archive whose SHA-256 is `expected` (the release's signed one),
    /// if it has been computed. An archive that is not stored, or is not that one, has none.
    pub async fn archive_h1(
        &self,
        key: &FileKey,
        expected: Sha256Digest,
    ) -> Result<Option<String>, MirrorError> {
        let store = &self.inner.store;
        if !matches!(
            store.open_archive(key, expected).await?,
            Archive::Verified(_)
        ) {
            return Ok(None);
        }
        let read = || async {
            Ok::<_, MirrorError>(
                store
                    .read(Item::H1(key))
                    .await?
                    .and_then(|stored| String::from_utf8(stored.bytes).ok())
                    .filter(|h1| h1.starts_with("h1:")),
            )
        };
        if let Some(h1) = read().await? {
            return Ok(Some(h1));
        }
        // The download task records it just after clients got the archive; a client asking
        // right then (or an archive stored without one) gets it computed now.
        self.record_h1(key).await;
        read().await
    }
}

/// Where an archive that matched its digest is kept.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// In the store: with a bucket, there too.
    Everywhere,
    /// On this host's disk only: the replica that downloaded it from upstream puts it in the
    /// bucket.
    HereOnly,
}

/// One archive to download: which, for which platform, and the digest it must have.
struct ArchiveTarget {
    key: FileKey,
    platform: Platform,
    expected: Sha256Digest,
}

/// Runs `f` when dropped: on success, error and cancellation alike.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
