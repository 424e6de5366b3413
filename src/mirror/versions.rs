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

use super::{unshare, Mirror, MirrorError, NotFoundKey, Via};
use crate::{
    metrics::{metrics, note_cache, CacheOutcome},
    protocol::{
        network_mirror::{EmptyObject, MirrorIndex},
        registry::{VersionEntry, VersionList},
        ProviderKey, ProviderType,
    },
    store::Item,
};

/// After a failed refresh, how long the stale list is served before upstream is tried again
/// (at most `metadata_ttl`), so an outage costs upstream one request per list per interval.
const STALE_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// A provider's version list, rendered once for each protocol.
#[derive(Debug, Clone)]
pub struct VersionLists {
    /// Registry protocol `versions` body (also what is stored).
    pub registry: Bytes,
    /// Network mirror `index.json` body.
    pub mirror_index: Bytes,
}

/// A version list in memory, with its freshness.
#[derive(Debug, Clone)]
pub(super) struct CachedVersions {
    lists: VersionLists,
    /// Until when the list is served without asking upstream again.
    fresh_until: Instant,
    /// A refresh failed and the list is served stale (warned about once).
    serving_stale: bool,
    /// How many versions the list names; a list with some is never replaced by one without.
    count: usize,
}

impl CachedVersions {
    fn from_registry_json(registry: Bytes, fresh_for: Duration) -> Result<Self, serde_json::Error> {
        let list: VersionList = serde_json::from_slice(&registry)?;
        let count = list.versions.len();
        let index = MirrorIndex {
            versions: list
                .versions
                .into_iter()
                .map(|entry| (entry.version, EmptyObject {}))
                .collect(),
        };
        Ok(Self {
            lists: VersionLists {
                registry,
                mirror_index: Bytes::from(serde_json::to_vec(&index)?),
            },
            fresh_until: Instant::now() + fresh_for,
            serving_stale: false,
            count,
        })
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.fresh_until
    }
}

impl Mirror {
    /// Both renderings of a provider's version list: `versions` for the registry protocol,
    /// `index.json` for the network mirror.
    pub async fn versions(
        &self,
        via: Via<'_>,
        provider: &ProviderType,
    ) -> Result<VersionLists, MirrorError> {
        let key = self.provider(via, provider)?;
        Ok(self.version_lists(&key).await?.lists)
    }

    /// The versions upstream offers, with their platforms (for the operations).
    pub async fn version_entries(
        &self,
        provider: &ProviderKey,
    ) -> Result<Vec<VersionEntry>, MirrorError> {
        let cached = self.version_lists(provider).await?;
        let list: VersionList =
            serde_json::from_slice(&cached.lists.registry).map_err(MirrorError::internal)?;
        Ok(list.versions)
    }

    /// A provider's version list: from memory, else from the store, else from upstream
    /// (concurrent misses share one fetch). A stale list is returned at once and refreshed in
    /// the background.
    pub(super) async fn version_lists(
        &self,
        key: &ProviderKey,
    ) -> Result<CachedVersions, MirrorError> {
        let missing: NotFoundKey = (key.clone(), None);
        if let Some(error) = self.inner.not_found.get(&missing).await {
            note_cache(CacheOutcome::Negative);
            return Err(error);
        }
        let lists = &self.inner.version_lists;
        let cached = match lists.get(key).await {
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
                    .try_get_with(key.clone(), self.load_versions(key))
                    .await
                    .map_err(unshare);
                if let Err(error @ MirrorError::UnknownProvider { .. }) = &loaded {
                    self.inner.not_found.insert(missing, error.clone()).await;
                }
                loaded?
            }
        };
        if !cached.is_fresh() {
            self.refresh_in_background(key.clone());
        }
        Ok(cached)
    }

    /// The stored list, fresh or stale (the caller refreshes a stale one), or else
    /// upstream's.
    async fn load_versions(&self, key: &ProviderKey) -> Result<CachedVersions, MirrorError> {
        if let Some(stored) = self.inner.store.read(Item::VersionList(key)).await? {
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
                    tracing::warn!(provider = %key, error = %e, "unreadable cached version list; fetching again")
                }
            }
        }
        note_cache(CacheOutcome::Miss);
        self.fetch_and_keep_versions(key).await
    }

    async fn fetch_and_keep_versions(
        &self,
        key: &ProviderKey,
    ) -> Result<CachedVersions, MirrorError> {
        let body = self.fetch_versions(key).await?;
        let cached = CachedVersions::from_registry_json(body, self.inner.metadata_ttl)
            .map_err(MirrorError::internal)?;
        if cached.count == 0 {
            // A 200 with nothing in it (`{}`, an error object) is upstream misbehaving, not
            // every version withdrawn: the list we have stays, and stays on disk.
            if let Some(kept) = self.inner.version_lists.get(key).await {
                if kept.count > 0 {
                    metrics().version_lists_refused.inc();
                    tracing::warn!(provider = %key, cached_versions = kept.count, "upstream answered a version list without versions; keeping the cached one");
                    return Err(MirrorError::EmptyVersionList(Box::new(key.clone())));
                }
            }
        }
        if let Err(e) = self
            .inner
            .store
            .write(Item::VersionList(key), &cached.lists.registry)
            .await
        {
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
            let lists = &mirror.inner.version_lists;
            match mirror.fetch_and_keep_versions(&key).await {
                Ok(fresh) => {
                    lists.insert(key.clone(), fresh).await;
                    tracing::debug!(provider = %key, "refreshed version list");
                }
                Err(error) => {
                    if let Some(mut stale) = lists.get(&key).await {
                        if !stale.serving_stale {
                            tracing::warn!(provider = %key, error = %error, "upstream failed; serving the stale version list until it answers");
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

    #[tracing::instrument(skip(self), fields(provider = %key))]
    async fn fetch_versions(&self, key: &ProviderKey) -> Result<Bytes, MirrorError> {
        let source = self.source(&key.upstream)?;
        let versions = match source.upstream.versions(key).await {
            Err(e) if e.is_not_found() => {
                return Err(MirrorError::UnknownProvider(Box::new(key.clone())))
            }
            other => other?,
        };
        tracing::info!(versions = versions.len(), "fetched version list");
        serde_json::to_vec(&VersionList { versions })
            .map(Bytes::from)
            .map_err(MirrorError::internal)
    }
}
