//! Release files served to clients: SHA256SUMS and its signature (cached with the release)
//! and archives (fetched on first request, verified while streaming to disk).

use std::path::PathBuf;

use super::{unshare, Mirror, MirrorError, ReleaseId, VerifyFailure};
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

impl Mirror {
    /// A file of a release, by name: only files the verified release lists are served.
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

    /// A release file of an upstream provider, fetched and verified on first request.
    pub(super) async fn release_artifact(
        &self,
        upstream: String,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Artifact, MirrorError> {
        let release = self.release(&upstream, provider, version).await?;
        let path =
            layout::release_file(self.inner.store.root(), &upstream, provider, version, file)?;
        if file == &release.shasums_file || file == &release.signature_file {
            return Ok(Artifact { path });
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
            return Ok(Artifact { path });
        }
        note_cache(CacheOutcome::Miss);

        // Single flight: concurrent requests for one archive wait for one download, which runs
        // in its own task so that a client hanging up does not abort it for the others.
        let fetch = {
            let mirror = self.clone();
            let (path, provider, version, file) = (
                path.clone(),
                provider.clone(),
                version.clone(),
                file.clone(),
            );
            async move {
                let task = tokio::spawn(async move {
                    mirror
                        .fetch_archive(&upstream, &provider, &version, &file, &path, expected)
                        .await
                });
                task.await
                    .map_err(|e| MirrorError::Internal(e.to_string()))?
            }
        };
        let fetches = &self.inner.archive_fetches;
        let result = fetches
            .try_get_with(path.clone(), fetch)
            .await
            .map_err(unshare);
        // The file on disk is the record from now on; keep no marker that could outlive it.
        fetches.invalidate(&path).await;
        result.map(|()| {
            self.count_hit(&path);
            Artifact { path }
        })
    }

    #[tracing::instrument(skip(self, path, expected), fields(provider = %provider, version = %version, file = %file))]
    async fn fetch_archive(
        &self,
        upstream: &str,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
        path: &std::path::Path,
        expected: crate::verify::Sha256Digest,
    ) -> Result<(), MirrorError> {
        let started = std::time::Instant::now();
        let in_flight = &metrics().downloads_in_flight;
        in_flight.inc();
        let _done = scopeguard(|| in_flight.dec());
        let source = self.upstream(upstream)?;
        let body = source.releases.archive(provider, version, file).await?;
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
            )
            .await
        {
            Ok(bytes) => {
                self.record_h1(upstream, provider, version, file, path)
                    .await;
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
        Ok(store
            .read(&path)
            .await?
            .and_then(|stored| String::from_utf8(stored.bytes).ok())
            .filter(|h1| h1.starts_with("h1:")))
    }
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
