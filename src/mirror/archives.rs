//! Release files served to clients: SHA256SUMS and its signature (cached with the release)
//! and archives (fetched on first request, verified while streaming to disk).

use std::{path::PathBuf, pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::Stream;

use super::{
    live::{LiveDownload, Phase, Progress},
    Mirror, MirrorError, ReleaseId, VerifyFailure,
};
use crate::{
    metrics::{metrics, note_cache, CacheOutcome},
    protocol::{FileName, Namespace, ProviderType, Version},
    store::{layout, IngestError},
    verify::h1_of_zip,
};

/// A verified file on disk, ready to be served.
#[derive(Debug)]
pub struct Artifact {
    pub path: PathBuf,
}

/// A release file to send: verified on disk, or an archive still arriving from upstream
/// (whose tail is held back until its digest matches; see `live`).
pub enum ArchiveBody {
    File(Artifact),
    Live {
        total: u64,
        stream: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    },
}

/// Where a release file is.
enum Located {
    Ready(Artifact),
    Downloading(PathBuf, Arc<LiveDownload>),
}

impl Mirror {
    /// A file of a release, by name, once it is verified on disk.
    pub async fn artifact(
        &self,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Artifact, MirrorError> {
        let upstream = self.upstream_for(namespace)?.to_owned();
        self.release_artifact(upstream, provider, version, file)
            .await
    }

    /// A file of a release, by name, as soon as it can be sent: an archive being downloaded
    /// is streamed while it arrives.
    pub async fn artifact_body(
        &self,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<ArchiveBody, MirrorError> {
        let upstream = self.upstream_for(namespace)?.to_owned();
        self.release_body(upstream, provider, version, file).await
    }

    /// A release file of an upstream provider, fetched and verified on first request.
    pub(super) async fn release_artifact(
        &self,
        upstream: String,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Artifact, MirrorError> {
        match self.locate(upstream, provider, version, file).await? {
            Located::Ready(artifact) => Ok(artifact),
            Located::Downloading(path, live) => {
                live.finished().await?;
                self.count_hit(&path);
                Ok(Artifact { path })
            }
        }
    }

    pub(super) async fn release_body(
        &self,
        upstream: String,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<ArchiveBody, MirrorError> {
        match self.locate(upstream, provider, version, file).await? {
            Located::Ready(artifact) => Ok(ArchiveBody::File(artifact)),
            Located::Downloading(path, live) => {
                self.count_hit(&path);
                match live.follow().await? {
                    Some((total, stream)) => Ok(ArchiveBody::Live {
                        total,
                        stream: Box::pin(stream),
                    }),
                    // No announced length: no way to hold back a tail; wait for the file.
                    None => {
                        live.finished().await?;
                        Ok(ArchiveBody::File(Artifact { path }))
                    }
                }
            }
        }
    }

    /// Checks the file against the verified release and finds it: cached, or downloading
    /// (joining the download in progress, or starting it).
    async fn locate(
        &self,
        upstream: String,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Located, MirrorError> {
        let release = self.release(&upstream, provider, version).await?;
        let path =
            layout::release_file(self.inner.store.root(), &upstream, provider, version, file)?;
        if file == &release.shasums_file || file == &release.signature_file {
            return Ok(Located::Ready(Artifact { path }));
        }
        // Only a build of this release is an archive; other SHA256SUMS lines (the manifest)
        // are not served.
        let Some(expected) = release.build_named(file).and(release.digest_of(file)) else {
            return Err(MirrorError::UnknownFile {
                release: ReleaseId::boxed(provider, version),
                file: file.clone(),
            });
        };
        if self.inner.store.exists(&path).await {
            note_cache(CacheOutcome::Hit);
            self.inner.store.touch_accessed(&path);
            self.count_hit(&path);
            return Ok(Located::Ready(Artifact { path }));
        }
        note_cache(CacheOutcome::Miss);
        let target = ArchiveTarget {
            upstream,
            provider: provider.clone(),
            version: version.clone(),
            file: file.clone(),
            path: path.clone(),
            expected,
        };
        Ok(match self.join_or_start_download(target) {
            Some(live) => Located::Downloading(path, live),
            None => Located::Ready(Artifact { path }),
        })
    }

    /// Single flight: the download in progress for this archive, or a new one. The download
    /// runs in a task of its own, so clients hanging up never cancel it for the others.
    /// `None` when the archive landed on disk a moment ago.
    fn join_or_start_download(&self, target: ArchiveTarget) -> Option<Arc<LiveDownload>> {
        let mut downloads = self
            .inner
            .downloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = downloads.get(&target.path) {
            return Some(live.clone());
        }
        // A download removes itself once its file is in place: look again under the lock.
        if target.path.exists() {
            return None;
        }
        let (progress, watch) = tokio::sync::watch::channel(Progress::start());
        let live = Arc::new(LiveDownload::new(target.path.clone(), watch));
        downloads.insert(target.path.clone(), live.clone());
        let mirror = self.clone();
        tokio::spawn(async move {
            let result = mirror.fetch_archive(&target, &progress).await;
            let phase = match &result {
                Ok(()) => Phase::Verified,
                Err(error) => Phase::Failed(Arc::new(error.clone())),
            };
            progress.send_modify(|p| p.phase = phase);
            mirror
                .inner
                .downloads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&target.path);
            if result.is_ok() {
                // After the clients: they need not wait for this.
                let t = &target;
                mirror
                    .record_h1(&t.upstream, &t.provider, &t.version, &t.file, &t.path)
                    .await;
            }
        });
        Some(live)
    }

    #[tracing::instrument(skip_all, fields(provider = %target.provider, version = %target.version, file = %target.file))]
    async fn fetch_archive(
        &self,
        target: &ArchiveTarget,
        progress: &tokio::sync::watch::Sender<Progress>,
    ) -> Result<(), MirrorError> {
        let ArchiveTarget {
            upstream,
            provider,
            version,
            file,
            path,
            expected,
        } = target;
        let expected = *expected;
        let started = std::time::Instant::now();
        let in_flight = &metrics().downloads_in_flight;
        in_flight.inc();
        let _done = scopeguard(|| in_flight.dec());
        let source = self.upstream(upstream)?;
        let body = source.releases.archive(provider, version, file).await?;
        progress.send_modify(|p| p.total = body.declared_len);
        let max = self.inner.max_archive_bytes;
        let fail = |failure| MirrorError::Verification {
            release: ReleaseId::boxed(provider, version),
            file: file.to_string(),
            failure,
        };
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
        match self
            .inner
            .store
            .write_verified(
                path,
                Box::pin(body.chunks),
                expected,
                limit,
                body.declared_len.unwrap_or(0),
                &mut |temp, written| {
                    progress.send_modify(|p| {
                        if p.temp.is_none() {
                            p.temp = Some(temp.to_owned());
                        }
                        p.written = written;
                    })
                },
            )
            .await
        {
            Ok(bytes) => {
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

    /// Computes the `h1:` of a freshly verified archive once and keeps it beside the archive.
    /// A failure only costs the mirror protocol its `h1:` for this archive (`zh:` remains).
    pub(super) async fn record_h1(
        &self,
        upstream: &str,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
        archive: &std::path::Path,
    ) {
        let archive = archive.to_path_buf();
        let computed = tokio::task::spawn_blocking(move || {
            let reader = std::io::BufReader::new(std::fs::File::open(&archive)?);
            h1_of_zip(reader).map_err(std::io::Error::other)
        })
        .await;
        let h1 = match computed {
            Ok(Ok(h1)) => h1,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot compute h1 of the archive; mirror clients get zh: only");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "h1 computation did not finish");
                return;
            }
        };
        let store = &self.inner.store;
        let written = match layout::archive_h1_file(store.root(), upstream, provider, version, file)
        {
            Ok(path) => store
                .write(&path, h1.as_bytes())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot keep the archive's h1");
        }
        self.inner
            .documents
            .invalidate(&super::network_mirror::mirror_doc_key(
                upstream, provider, version,
            ))
            .await;
    }

    /// The `h1:` of a cached archive, if it has been computed.
    pub(super) async fn archive_h1(
        &self,
        upstream: &str,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Option<String>, MirrorError> {
        let store = &self.inner.store;
        let path = layout::archive_h1_file(store.root(), upstream, provider, version, file)?;
        let read = || async {
            Ok::<_, MirrorError>(
                store
                    .read(&path)
                    .await?
                    .and_then(|stored| String::from_utf8(stored.bytes).ok())
                    .filter(|h1| h1.starts_with("h1:")),
            )
        };
        if let Some(h1) = read().await? {
            return Ok(Some(h1));
        }
        // The download task records it just after clients got the archive; a client asking
        // right then (or an archive cached without one) gets it computed now.
        let archive = layout::release_file(store.root(), upstream, provider, version, file)?;
        if !store.exists(&archive).await {
            return Ok(None);
        }
        self.record_h1(upstream, provider, version, file, &archive)
            .await;
        read().await
    }
}

/// One archive to download: where from, where to, and the digest it must have.
pub(super) struct ArchiveTarget {
    pub upstream: String,
    pub provider: ProviderType,
    pub version: Version,
    pub file: FileName,
    pub path: PathBuf,
    pub expected: crate::verify::Sha256Digest,
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
