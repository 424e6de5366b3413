//! The Provider Network Mirror Protocol over the same verified cache.
//!
//! Over this protocol Terraform checks only the hashes we list, so they come from the signed
//! SHA256SUMS (`zh:`) and from archives we verified ourselves (`h1:`); a release that does
//! not verify has no `<version>.json` at all.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{ArchiveBody, Artifact, Mirror, MirrorError, ReleaseId};
use crate::protocol::{
    network_mirror::{MirrorArchive, MirrorVersion},
    FileName, Hostname, Namespace, Platform, ProviderType, Version,
};

impl Mirror {
    /// `GET /mirror/:hostname/:namespace/:type/index.json`.
    pub async fn mirror_index(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
    ) -> Result<Bytes, MirrorError> {
        let upstream = self.upstream_for_origin(hostname, namespace)?.to_owned();
        Ok(self.version_lists(&upstream, provider).await?.mirror_index)
    }

    /// `<version>.json` as JSON bytes, rendered once and kept in memory until an archive's
    /// `h1:` is added (for servers without `[auth]`, whose URLs are the same for everyone).
    pub async fn mirror_version_json(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<Bytes, MirrorError> {
        let upstream = self.upstream_for_origin(hostname, namespace)?;
        let key = mirror_doc_key(upstream, provider, version);
        if let Some(doc) = self.inner.documents.get(&key).await {
            return Ok(doc);
        }
        let doc = self
            .mirror_version(hostname, namespace, provider, version)
            .await?;
        let bytes = Bytes::from(
            serde_json::to_vec(&doc).map_err(|e| MirrorError::Internal(e.to_string()))?,
        );
        // Dropped again when an archive's `h1:` is recorded (`record_h1`). An evicted archive
        // keeps its listed `h1:`, which stays true: a refetch must have the same digest.
        self.inner.documents.insert(key, bytes.clone()).await;
        Ok(bytes)
    }

    /// `GET /mirror/:hostname/:namespace/:type/:version.json`.
    pub async fn mirror_version(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<MirrorVersion, MirrorError> {
        let upstream = self.upstream_for_origin(hostname, namespace)?.to_owned();
        let release = self.release(&upstream, provider, version).await?;
        let mut archives = BTreeMap::new();
        for build in &release.builds {
            let Some(zh) = release.digest_of(&build.filename) else {
                continue;
            };
            let mut hashes = Vec::with_capacity(2);
            if let Some(h1) = self
                .archive_h1(&upstream, provider, version, &build.filename)
                .await?
            {
                hashes.push(h1);
            }
            hashes.push(zh.to_zh());
            archives.insert(
                build.platform.to_string(),
                MirrorArchive {
                    url: build.filename.to_string(),
                    hashes,
                },
            );
        }
        Ok(MirrorVersion { archives })
    }

    /// An archive named in a `<version>.json`, once verified on disk.
    pub async fn mirror_archive(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
        file: &FileName,
    ) -> Result<Artifact, MirrorError> {
        let upstream = self
            .mirror_archive_upstream(hostname, namespace, provider, version, platform, file)
            .await?;
        self.release_artifact(upstream, provider, version, file)
            .await
    }

    /// An archive named in a `<version>.json`, streamed while it downloads.
    pub async fn mirror_archive_body(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
        file: &FileName,
    ) -> Result<ArchiveBody, MirrorError> {
        let upstream = self
            .mirror_archive_upstream(hostname, namespace, provider, version, platform, file)
            .await?;
        self.release_body(upstream, provider, version, file).await
    }

    /// The upstream of an origin, once the name is known to be the platform's archive (not
    /// merely some file of the release).
    async fn mirror_archive_upstream(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
        file: &FileName,
    ) -> Result<String, MirrorError> {
        let upstream = self.upstream_for_origin(hostname, namespace)?.to_owned();
        let release = self.release(&upstream, provider, version).await?;
        if release.build_for(platform).map(|b| &b.filename) != Some(file) {
            return Err(MirrorError::UnknownFile {
                release: ReleaseId::boxed(provider, version),
                file: file.clone(),
            });
        }
        Ok(upstream)
    }
}

pub(super) fn mirror_doc_key(upstream: &str, provider: &ProviderType, version: &Version) -> String {
    format!("mirror/{upstream}/{provider}/{version}")
}
