//! Version lists and download documents of the Provider Registry Protocol.
//!
//! A version list is the one mutable thing we cache: trusted for `metadata_ttl`, then asked
//! for again — in the background. A client never waits on upstream for a list we already
//! have: it gets the cached one at once, stale or not, and the refresh replaces it when (and
//! if) upstream answers. Stale beats down: a mirror exists to keep `terraform init` working
//! through upstream outages.
//!
//! A list carries `protocols` for every version whose plugin protocols are known for certain:
//! upstream listed them (registries), or the version's release is verified and its manifest,
//! listed in the signed SHA256SUMS, gave them. Nothing is invented: a version whose release
//! has no manifest, or is not verified yet, is listed without `protocols`. Each time a list is
//! rendered (fetched, or loaded from the store), the newest `cache.protocol_fetches` versions
//! of a releases upstream whose release is not verified yet are verified in the background,
//! one provider at a time each and at most `PROTOCOL_FETCH_CONCURRENCY` across the mirror,
//! and the list in memory is rendered again. That costs upstream a release's index, SHA256SUMS,
//! signature and manifest per version once (releases are immutable and stored), not a burst
//! per request; a version upstream does not have, or whose release fails verification, is not
//! asked for again for `PROTOCOLS_UNAVAILABLE_FOR`.
//!
//! The list is also what decides whether a version exists: a release that is not stored is
//! fetched only if the cached list (fresh or stale) names its version, so made-up versions
//! cost upstream nothing, and a version published upstream appears once the list is
//! refreshed (at most `metadata_ttl` later).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures_util::StreamExt;

use super::{unshare, JsonBody, Mirror, MirrorError, NotFoundKey, Release, Via};
use crate::{
    metrics::{metrics, note_cache, CacheOutcome},
    protocol::{
        network_mirror::{EmptyObject, MirrorIndex},
        registry::{VersionEntry, VersionList},
        ProviderKey, ProviderType, ReleaseKey, Version,
    },
    store::Item,
};

/// After a failed refresh, how long the stale list is served before upstream is tried again
/// (at most `metadata_ttl`), so an outage costs upstream one request per list per interval.
const STALE_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// Releases verified at once, across the mirror, to learn the protocols of listed versions.
pub(super) const PROTOCOL_FETCH_CONCURRENCY: usize = 2;

/// Versions of one list looked up in the store at once, to fill in their protocols.
const STORED_RELEASE_LOOKUPS: usize = 16;

/// How long a version whose release upstream does not have, or that failed verification, is
/// left out of the background protocol fetches.
pub(super) const PROTOCOLS_UNAVAILABLE_FOR: Duration = Duration::from_secs(6 * 3600);

/// A provider's version list, rendered once for each protocol.
#[derive(Debug, Clone)]
pub struct VersionLists {
    /// Registry protocol `versions` body (also what is stored), plain and gzip.
    pub registry: JsonBody,
    /// Network mirror `index.json` body.
    pub mirror_index: JsonBody,
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
    /// The versions it names.
    listed: Arc<HashSet<Version>>,
    /// Versions whose release is not verified yet (newest first), taken by the first request
    /// that gets this list to verify them in the background.
    pending: Arc<Mutex<Vec<Version>>>,
}

impl CachedVersions {
    /// `registry` is `list` serialised.
    fn from_list(
        registry: Bytes,
        list: VersionList,
        fresh_for: Duration,
    ) -> Result<Self, serde_json::Error> {
        let count = list.versions.len();
        let listed = list
            .versions
            .iter()
            .filter_map(|entry| Version::try_from(entry.version.as_str()).ok())
            .collect();
        let index = MirrorIndex {
            versions: list
                .versions
                .into_iter()
                .map(|entry| (entry.version, EmptyObject {}))
                .collect(),
        };
        Ok(Self {
            lists: VersionLists {
                registry: JsonBody::new(registry),
                mirror_index: JsonBody::new(Bytes::from(serde_json::to_vec(&index)?)),
            },
            fresh_until: Instant::now() + fresh_for,
            serving_stale: false,
            count,
            listed: Arc::new(listed),
            pending: Arc::default(),
        })
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.fresh_until
    }
}

/// A list with what the mirror knows filled in, serialised as stored and served.
#[derive(Debug)]
struct Rendered {
    /// `list` serialised.
    registry: Bytes,
    list: VersionList,
    /// Versions whose release is not verified yet, newest first.
    unknown: Vec<Version>,
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
        let lists = self.version_lists(&key).await?.lists;
        self.hide_young(&key, lists).await
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

    /// Whether a release not stored may be asked of upstream: its version is in the
    /// provider's cached list, fresh or stale (a stale one is refreshed in the background, as
    /// for any request). Without a list to go by (upstream failing, nothing cached), upstream
    /// is asked for the release itself.
    pub(super) async fn check_listed(&self, key: &ReleaseKey) -> Result<(), MirrorError> {
        match self.version_lists(&key.provider).await {
            Ok(cached) if cached.listed.contains(&key.version) => Ok(()),
            Ok(_) => {
                note_cache(CacheOutcome::Negative);
                Err(MirrorError::Unlisted(Box::new(key.clone())))
            }
            Err(e @ MirrorError::UnknownProvider(_)) => Err(e),
            Err(e) => {
                tracing::debug!(release = %key, error = %e, "no version list to check the version against; asking upstream for the release");
                Ok(())
            }
        }
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
                // Boxed, as a release's miss is (`verified_release`).
                let loaded = Box::pin(lists.try_get_with(key.clone(), self.load_versions(key)))
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
        self.complete_protocols_in_background(key, &cached);
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
            match self.render(key, Bytes::from(stored.bytes), fresh_for).await {
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

    /// Upstream's list, rendered and stored. The provider's stored releases are listed while
    /// upstream is asked, and the list is written to the store while its served forms are
    /// made (compressed, indexed): a client waiting for a cold list waits for neither on its
    /// own. It is stored before it is served, so a list served once survives a restart.
    async fn fetch_and_keep_versions(
        &self,
        key: &ProviderKey,
    ) -> Result<CachedVersions, MirrorError> {
        let (list, stored) = tokio::join!(self.fetch_versions(key), self.stored_versions(key));
        let list = list?;
        if list.versions.is_empty() {
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
        let rendered = self
            .fill_and_serialise(key, list, None, stored)
            .await
            .map_err(MirrorError::internal)?;
        // A task of its own: the store's steps go on while this one builds the served forms.
        let persist = tokio::spawn({
            let (store, key, registry) = (
                self.inner.store.clone(),
                key.clone(),
                rendered.registry.clone(),
            );
            async move { store.write(Item::VersionList(&key), &registry).await }
        });
        let cached = self.cached(key, rendered, self.inner.metadata_ttl);
        match persist.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot persist version list; serving it anyway")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the version list's store write failed; serving it anyway")
            }
        }
        cached.map_err(MirrorError::internal)
    }

    /// Asks upstream for a fresh list without making anyone wait for it. On failure the stale
    /// list stays in place and upstream is asked again after `STALE_RETRY_INTERVAL`.
    fn refresh_in_background(&self, key: ProviderKey) {
        let Some(claim) = self.inner.refreshing.claim(&key) else {
            return;
        };
        let mirror = self.clone();
        tokio::spawn(async move {
            let _claim = claim;
            let lists = &mirror.inner.version_lists;
            match mirror.fetch_and_keep_versions(&key).await {
                Ok(fresh) => {
                    lists.insert(key.clone(), fresh.clone()).await;
                    tracing::debug!(provider = %key, "refreshed version list");
                    mirror.complete_protocols_in_background(&key, &fresh);
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
        });
    }

    #[tracing::instrument(skip(self), fields(provider = %key))]
    async fn fetch_versions(&self, key: &ProviderKey) -> Result<VersionList, MirrorError> {
        let source = self.source(&key.upstream)?;
        let versions = match source.upstream.versions(key).await {
            Err(e) if e.is_not_found() => {
                return Err(MirrorError::UnknownProvider(Box::new(key.clone())))
            }
            other => other?,
        };
        tracing::info!(versions = versions.len(), "fetched version list");
        Ok(VersionList { versions })
    }

    /// The stored list (its bytes) as served: see `fill_and_serialise`.
    async fn render(
        &self,
        key: &ProviderKey,
        registry: Bytes,
        fresh_for: Duration,
    ) -> Result<CachedVersions, serde_json::Error> {
        let list: VersionList = serde_json::from_slice(&registry)?;
        let stored = self.stored_versions(key).await;
        let rendered = self
            .fill_and_serialise(key, list, Some(registry), stored)
            .await?;
        self.cached(key, rendered, fresh_for)
    }

    /// A list as served: upstream's (or the stored one, with its bytes as `serialised`) with
    /// `protocols` filled in from verified releases (`stored` is what the store holds of the
    /// provider, see `fill_known_protocols`). Serialised once, and not at all when the stored
    /// bytes still hold.
    async fn fill_and_serialise(
        &self,
        key: &ProviderKey,
        mut list: VersionList,
        serialised: Option<Bytes>,
        stored: Option<HashSet<Version>>,
    ) -> Result<Rendered, serde_json::Error> {
        let (filled, unknown) = self.fill_known_protocols(key, &mut list, stored).await;
        let registry = match serialised {
            Some(stored) if !filled => stored,
            _ => Bytes::from(serde_json::to_vec(&list)?),
        };
        Ok(Rendered {
            registry,
            list,
            unknown,
        })
    }

    /// A rendered list in memory, fresh for `fresh_for`, with the versions still unknown left
    /// for the background.
    fn cached(
        &self,
        key: &ProviderKey,
        rendered: Rendered,
        fresh_for: Duration,
    ) -> Result<CachedVersions, serde_json::Error> {
        let cached = CachedVersions::from_list(rendered.registry, rendered.list, fresh_for)?;
        let background = self
            .source(&key.upstream)
            .is_ok_and(|s| !s.upstream.has_namespaces());
        if background && self.inner.protocol_fetches > 0 {
            let mut unknown = rendered.unknown;
            unknown.truncate(self.inner.protocol_fetches);
            *cached
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = unknown;
        }
        Ok(cached)
    }

    /// The versions of the provider's releases in the store, or `None` when they cannot be
    /// listed (then every version is looked for as if stored).
    async fn stored_versions(&self, key: &ProviderKey) -> Option<HashSet<Version>> {
        match self.inner.store.stored_versions(key).await {
            Ok(stored) => Some(stored.into_iter().collect()),
            Err(e) => {
                tracing::debug!(provider = %key, error = %e, "cannot list the stored releases");
                None
            }
        }
    }

    /// Sets `protocols` of each version that has none and whose release is verified with a
    /// manifest (never from anything else). Whether any was set, and the versions whose release
    /// is not verified yet, newest first. Never asks upstream.
    ///
    /// An aws-sized list names hundreds of versions, and on a bucket every lookup is a round
    /// trip: `stored` (one listing of the provider's stored versions) comes first, so a version
    /// never fetched costs a look in memory only, and the rest are looked up
    /// `STORED_RELEASE_LOOKUPS` at a time.
    async fn fill_known_protocols(
        &self,
        key: &ProviderKey,
        list: &mut VersionList,
        stored: Option<HashSet<Version>>,
    ) -> (bool, Vec<Version>) {
        let mut found: Vec<(usize, Version, Option<Arc<Release>>)> = Vec::new();
        let mut in_store = Vec::new();
        for (i, entry) in list.versions.iter().enumerate() {
            if entry.protocols.is_some() {
                continue;
            }
            let Ok(version) = Version::try_from(entry.version.as_str()) else {
                continue;
            };
            if stored.as_ref().is_none_or(|s| s.contains(&version)) {
                in_store.push((i, version));
            } else {
                // Verified in memory but not (or no longer) listed in the store.
                let release = self.inner.releases.get(&key.release(version.clone())).await;
                found.push((i, version, release));
            }
        }
        // Made before they are streamed: a stream that builds them in a closure over borrowed
        // entries is not `Send` to the compiler.
        let lookups: Vec<_> = in_store
            .into_iter()
            .map(|(i, version)| async move {
                let release_key = key.release(version.clone());
                let release = self.known_release(&release_key).await.unwrap_or_else(|e| {
                    tracing::debug!(release = %release_key, error = %e, "cannot read the stored release");
                    None
                });
                (i, version, release)
            })
            .collect();
        found.extend(
            futures_util::stream::iter(lookups)
                .buffered(STORED_RELEASE_LOOKUPS)
                .collect::<Vec<_>>()
                .await,
        );
        let mut filled = false;
        let mut unknown = Vec::new();
        for (i, version, release) in found {
            match release {
                Some(release) if release.manifest_file.is_some() => {
                    list.versions[i].protocols = Some(release.protocols.clone());
                    filled = true;
                }
                Some(_) => {}
                None => unknown.push(version),
            }
        }
        unknown.sort_by(|a, b| b.cmp(a));
        (filled, unknown)
    }

    /// Verifies, in the background, the releases a list left pending (one provider's at a
    /// time, `PROTOCOL_FETCH_CONCURRENCY` at once across the mirror), then renders the list in
    /// memory again. Failures are logged and nothing else.
    fn complete_protocols_in_background(&self, key: &ProviderKey, cached: &CachedVersions) {
        let pending = std::mem::take(
            &mut *cached
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if pending.is_empty() {
            return;
        }
        let Some(claim) = self.inner.completing.claim(key) else {
            return;
        };
        let mirror = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let _claim = claim;
            let mut learned = 0_usize;
            for version in pending {
                let release_key = key.release(version);
                if mirror
                    .inner
                    .protocols_unavailable
                    .contains_key(&release_key)
                {
                    continue;
                }
                let Ok(_permit) = mirror.inner.protocol_permits.acquire().await else {
                    break;
                };
                // Verified, not served: the quarantine has no say in learning protocols.
                match mirror.verified_release(&release_key).await {
                    Ok(release) => {
                        if release.manifest_file.is_some() {
                            learned += 1;
                        }
                    }
                    Err(error) => {
                        if matches!(
                            error,
                            MirrorError::UnknownVersion(_) | MirrorError::Verification { .. }
                        ) {
                            mirror
                                .inner
                                .protocols_unavailable
                                .insert(release_key.clone(), ())
                                .await;
                        }
                        tracing::warn!(release = %release_key, error = %error, "cannot verify a listed release to learn its protocols");
                    }
                }
            }
            if learned > 0 {
                mirror.render_again(&key).await;
            }
        });
    }

    /// Fills in the list in memory with what was verified since it was rendered, keeping its
    /// freshness; a list replaced meanwhile is left alone.
    async fn render_again(&self, key: &ProviderKey) {
        let lists = &self.inner.version_lists;
        let Some(current) = lists.get(key).await else {
            return;
        };
        let Ok(mut list) = serde_json::from_slice::<VersionList>(&current.lists.registry) else {
            return;
        };
        let stored = self.stored_versions(key).await;
        let (filled, _) = self.fill_known_protocols(key, &mut list, stored).await;
        if !filled {
            return;
        }
        let rendered = serde_json::to_vec(&list)
            .map(Bytes::from)
            .and_then(|registry| CachedVersions::from_list(registry, list, Duration::ZERO));
        let mut rendered = match rendered {
            Ok(rendered) => rendered,
            Err(e) => {
                tracing::warn!(provider = %key, error = %e, "cannot render the version list again");
                return;
            }
        };
        rendered.fresh_until = current.fresh_until;
        rendered.serving_stale = current.serving_stale;
        let unchanged = lists
            .get(key)
            .await
            .is_some_and(|now| now.lists.registry == current.lists.registry);
        if unchanged {
            lists.insert(key.clone(), rendered).await;
            tracing::debug!(provider = %key, "version list now carries the protocols learned");
        }
    }
}
