//! Version lists and download documents of the Provider Registry Protocol.
//!
//! A version list is the one mutable thing we cache: trusted for `metadata_ttl`, then asked
//! for again — in the background. A client never waits on upstream for a list we already
//! have: it gets the cached one at once, stale or not, and the refresh replaces it when (and
//! if) upstream answers. Stale beats down: a mirror exists to keep `terraform init` working
//! through upstream outages.

use std::{
    sync::PoisonError,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;

use super::{unshare, Mirror, MirrorError, NotFoundKey, ProviderKey, ReleaseId};
use crate::{
    metrics::{note_cache, CacheOutcome},
    protocol::{
        network_mirror::{EmptyObject, MirrorIndex},
        registry::{Download, GpgPublicKey, PlatformEntry, SigningKeys, VersionEntry, VersionList},
        Namespace, Platform, ProviderType, Version,
    },
    store::layout,
};

/// After a failed refresh, how long the stale list is served before upstream is tried again
/// (at most `metadata_ttl`), so an outage costs upstream one request per list per interval.
const STALE_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// A provider's version list in memory, rendered once for each protocol.
#[derive(Debug, Clone)]
pub(super) struct CachedVersions {
    /// Registry protocol `versions` body (also what is kept on disk).
    pub registry: Bytes,
    /// Network mirror `index.json` body.
    pub mirror_index: Bytes,
    /// Until when the list is served without asking upstream again.
    fresh_until: Instant,
    /// A refresh failed and the list is served stale (warned about once).
    serving_stale: bool,
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
            fresh_until: Instant::now() + fresh_for,
            serving_stale: false,
        })
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.fresh_until
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

    /// Both renderings of an upstream provider's version list: from memory, else from disk,
    /// else from upstream (concurrent misses share one fetch). A stale list is returned at
    /// once and refreshed in the background.
    pub(super) async fn version_lists(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<CachedVersions, MirrorError> {
        let key: ProviderKey = (upstream.to_owned(), provider.clone());
        let missing: NotFoundKey = (upstream.to_owned(), provider.clone(), None);
        if let Some(error) = self.inner.not_found.get(&missing).await {
            note_cache(CacheOutcome::Negative);
            return Err(error);
        }
        let lists = &self.inner.version_lists;
        let cached = match lists.get(&key).await {
            Some(cached) => {
                note_cache(if cached.is_fresh() {
                    CacheOutcome::Hit
                } else {
                    CacheOutcome::Stale
                });
                cached
            }
            None => {
                let loaded = lists
                    .try_get_with(key.clone(), self.load_versions(upstream, provider))
                    .await
                    .map_err(unshare);
                if let Err(error @ MirrorError::UnknownProvider { .. }) = &loaded {
                    self.inner.not_found.insert(missing, error.clone()).await;
                }
                loaded?
            }
        };
        if !cached.is_fresh() {
            self.refresh_in_background(key);
        }
        Ok(cached)
    }

    /// The list kept on disk, fresh or stale (the caller refreshes a stale one), or else
    /// upstream's.
    async fn load_versions(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<CachedVersions, MirrorError> {
        let store = &self.inner.store;
        let path = layout::versions_file(store.root(), upstream, provider)?;
        if let Some(stored) = store.read(&path).await? {
            let age = SystemTime::now()
                .duration_since(stored.modified)
                .unwrap_or_default();
            let fresh_for = self.inner.metadata_ttl.saturating_sub(age);
            match CachedVersions::from_registry_json(Bytes::from(stored.bytes), fresh_for) {
                Ok(cached) => {
                    note_cache(if cached.is_fresh() {
                        CacheOutcome::Hit
                    } else {
                        CacheOutcome::Stale
                    });
                    return Ok(cached);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable cached version list; fetching again")
                }
            }
        }
        note_cache(CacheOutcome::Miss);
        self.fetch_and_keep_versions(upstream, provider).await
    }

    async fn fetch_and_keep_versions(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<CachedVersions, MirrorError> {
        let body = self.fetch_versions(upstream, provider).await?;
        let cached = CachedVersions::from_registry_json(body, self.inner.metadata_ttl)
            .map_err(|e| MirrorError::Internal(e.to_string()))?;
        let store = &self.inner.store;
        let path = layout::versions_file(store.root(), upstream, provider)?;
        if let Err(e) = store.write(&path, &cached.registry).await {
            tracing::warn!(error = %e, "cannot persist version list; serving it anyway");
        }
        Ok(cached)
    }

    /// Asks upstream for a fresh list without making anyone wait for it. On failure the stale
    /// list stays in place and upstream is asked again after `STALE_RETRY_INTERVAL`.
    fn refresh_in_background(&self, key: ProviderKey) {
        let claimed = self
            .inner
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        if !claimed {
            return;
        }
        let mirror = self.clone();
        tokio::spawn(async move {
            let (upstream, provider) = &key;
            let lists = &mirror.inner.version_lists;
            match mirror.fetch_and_keep_versions(upstream, provider).await {
                Ok(fresh) => {
                    lists.insert(key.clone(), fresh).await;
                    tracing::debug!(%provider, upstream, "refreshed version list");
                }
                Err(error) => {
                    if let Some(mut stale) = lists.get(&key).await {
                        if !stale.serving_stale {
                            tracing::warn!(%provider, upstream, error = %error, "upstream failed; serving the stale version list until it answers");
                        }
                        stale.serving_stale = true;
                        stale.fresh_until =
                            Instant::now() + STALE_RETRY_INTERVAL.min(mirror.inner.metadata_ttl);
                        lists.insert(key.clone(), stale).await;
                    }
                }
            }
            mirror
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
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

    /// The download document as JSON bytes, rendered once and kept in memory (for servers
    /// without `[auth]`, whose URLs are the same for everyone).
    pub async fn download_json(
        &self,
        namespace: &Namespace,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
    ) -> Result<Bytes, MirrorError> {
        let key = format!("download/{namespace}/{provider}/{version}/{platform}");
        if let Some(doc) = self.inner.documents.get(&key).await {
            note_cache(CacheOutcome::Hit);
            return Ok(doc);
        }
        let doc = self
            .download(namespace, provider, version, platform)
            .await?;
        let bytes = Bytes::from(
            serde_json::to_vec(&doc).map_err(|e| MirrorError::Internal(e.to_string()))?,
        );
        self.inner.documents.insert(key, bytes.clone()).await;
        Ok(bytes)
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
