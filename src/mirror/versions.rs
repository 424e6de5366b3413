//! Version lists and download documents of the Provider Registry Protocol.
//!
//! A version list is the one mutable thing we cache: trusted for `metadata_ttl`, then asked
//! for again. When upstream cannot answer, the last list we had is served (stale beats down:
//! a mirror exists to keep `terraform init` working through upstream outages).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use moka::Expiry;

use super::{unshare, Mirror, MirrorError, ProviderKey, ReleaseId};
use crate::{
    protocol::{
        network_mirror::{EmptyObject, MirrorIndex},
        registry::{Download, GpgPublicKey, PlatformEntry, SigningKeys, VersionEntry, VersionList},
        Namespace, Platform, ProviderType, Version,
    },
    store::layout,
};

/// A version list in memory, with how long it stays trusted from the moment it is cached.
/// A provider's version list in memory, rendered once for each protocol, with how long it
/// stays trusted from the moment it is cached.
#[derive(Debug, Clone)]
pub(super) struct CachedVersions {
    /// Registry protocol `versions` body (also what is kept on disk).
    pub registry: Bytes,
    /// Network mirror `index.json` body.
    pub mirror_index: Bytes,
    fresh_for: Duration,
}

impl CachedVersions {
    fn from_registry_json(registry: Bytes, fresh_for: Duration) -> Result<Self, serde_json::Error> {
        let list: VersionList = serde_json::from_slice(&registry)?;
        let index = MirrorIndex {
            versions: list
                .versions
                .into_iter()
                .map(|entry| (entry.version, EmptyObject {}))
                .collect(),
        };
        Ok(Self {
            registry,
            mirror_index: Bytes::from(serde_json::to_vec(&index)?),
            fresh_for,
        })
    }
}

/// Expires each list when *its* freshness ends: a list read back from disk has less of its
/// `metadata_ttl` left than one just fetched, so one cache-wide TTL would keep it too long.
pub(super) struct UntilStale;

impl Expiry<ProviderKey, CachedVersions> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &ProviderKey,
        value: &CachedVersions,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.fresh_for)
    }
}

/// Shown as `source_url` for HashiCorp's key, as the public registry does.
const HASHICORP_SECURITY_URL: &str = "https://www.hashicorp.com/security.html";

impl Mirror {
    /// `GET /v1/providers/:namespace/:type/versions`, as JSON bytes.
    pub async fn versions(
        &self,
        namespace: &Namespace,
        provider: &ProviderType,
    ) -> Result<Bytes, MirrorError> {
        let upstream = self.upstream_for(namespace)?.to_owned();
        Ok(self.version_lists(&upstream, provider).await?.registry)
    }

    /// Both renderings of an upstream provider's version list.
    pub(super) async fn version_lists(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<CachedVersions, MirrorError> {
        let key: ProviderKey = (upstream.to_owned(), provider.clone());
        self.inner
            .version_lists
            .try_get_with(key, self.load_versions(upstream, provider))
            .await
            .map_err(unshare)
    }

    async fn load_versions(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<CachedVersions, MirrorError> {
        let ttl = self.inner.metadata_ttl;
        let store = &self.inner.store;
        let path = layout::versions_file(store.root(), upstream, provider)?;
        let cached = store.read(&path).await?;
        if let Some(stored) = &cached {
            let age = SystemTime::now()
                .duration_since(stored.modified)
                .unwrap_or_default();
            if let Some(fresh_for) = ttl.checked_sub(age).filter(|left| !left.is_zero()) {
                // A copy of a small document, once per metadata_ttl at most.
                let body = Bytes::copy_from_slice(&stored.bytes);
                match CachedVersions::from_registry_json(body, fresh_for) {
                    Ok(cached) => return Ok(cached),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable cached version list; fetching again")
                    }
                }
            }
        }
        let rendered = |body: Bytes| {
            CachedVersions::from_registry_json(body, ttl)
                .map_err(|e| MirrorError::Internal(e.to_string()))
        };
        match self.fetch_versions(upstream, provider).await {
            Ok(body) => {
                if let Err(e) = store.write(&path, &body).await {
                    tracing::warn!(error = %e, "cannot persist version list; serving it anyway");
                }
                rendered(body)
            }
            Err(e) if matches!(e, MirrorError::UnknownProvider { .. }) => Err(e),
            Err(e) => match cached {
                // Upstream is asked again after another `metadata_ttl`.
                Some(stored) => {
                    tracing::warn!(%provider, upstream, error = %e, "upstream failed; serving stale version list");
                    rendered(Bytes::from(stored.bytes))
                }
                None => Err(e),
            },
        }
    }

    #[tracing::instrument(skip(self), fields(provider = %provider))]
    async fn fetch_versions(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<Bytes, MirrorError> {
        let source = self.upstream(upstream)?;
        let index = match source.releases.product_index(provider).await {
            Err(e) if e.is_not_found() => {
                return Err(MirrorError::UnknownProvider {
                    upstream: upstream.to_owned(),
                    provider: provider.clone(),
                })
            }
            other => other?,
        };
        let versions = index
            .valid_versions()
            .into_iter()
            .map(|(version, release)| {
                let mut platforms: Vec<Platform> = release
                    .valid_builds()
                    .into_iter()
                    .map(|b| b.platform)
                    .collect();
                platforms.sort();
                platforms.dedup();
                VersionEntry {
                    version: version.to_string(),
                    protocols: None,
                    platforms: platforms.iter().map(PlatformEntry::from).collect(),
                }
            })
            .collect::<Vec<_>>();
        tracing::info!(versions = versions.len(), "fetched version list");
        serde_json::to_vec(&VersionList { versions })
            .map(Bytes::from)
            .map_err(|e| MirrorError::Internal(e.to_string()))
    }

    /// `GET /v1/providers/:namespace/:type/:version/download/:os/:arch`.
    pub async fn download(
        &self,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
    ) -> Result<Download, MirrorError> {
        let upstream = self.upstream_for(namespace)?;
        let release = self.release(upstream, provider, version).await?;
        let build = release
            .build_for(platform)
            .ok_or_else(|| MirrorError::UnknownPlatform {
                release: ReleaseId::boxed(provider, version),
                platform: platform.clone(),
            })?;
        let shasum = release
            .digest_of(&build.filename)
            .ok_or_else(|| MirrorError::Internal("verified build without a digest".to_owned()))?;
        let files = format!(
            "{}/v1/providers/{namespace}/{provider}/{version}/files",
            self.public_base()
        );
        let key = &release.signed_by;
        Ok(Download {
            protocols: release.protocols.clone(),
            os: platform.os.clone(),
            arch: platform.arch.clone(),
            filename: build.filename.to_string(),
            download_url: format!("{files}/{}", build.filename),
            shasums_url: format!("{files}/{}", release.shasums_file),
            shasums_signature_url: format!("{files}/{}", release.signature_file),
            shasum: shasum.to_hex(),
            signing_keys: SigningKeys {
                gpg_public_keys: vec![GpgPublicKey {
                    key_id: key.key_id.clone(),
                    ascii_armor: key.armored.clone(),
                    trust_signature: String::new(),
                    source: key.source.clone(),
                    source_url: key
                        .is_hashicorp()
                        .then(|| HASHICORP_SECURITY_URL.to_owned()),
                }],
            },
        })
    }
}
