//! What the status page shows: every cached release with its archives, sizes, when it was
//! fetched, the key that verified it and how often its archives were served.
//!
//! Listing the cached releases reads and verifies every one of them (verified releases are
//! then kept in memory), so the status page does it at most once per [`STATUS_REFRESH`]
//! (sooner when something cached changed), whatever the request rate: [`StatusCache`] keeps
//! the last listing (which also loads the stored first sightings, for the quarantine), and
//! past the refresh window lists again in the background while requests are answered from
//! the last one. Hit counts, upstream health, key changes, the versions in quarantine and
//! hash completions are cheap and always current.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use super::OpsError;
use crate::{
    metrics::metrics,
    mirror::{Completion, KeyChange, Mirror, Quarantined},
    protocol::{FileKey, ReleaseKey},
    store::Item,
    upstream::UpstreamHealth,
};

/// Longest a listing of the cached releases is reused while nothing cached changes.
pub const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// Most releases listed on the status page (the page is for people, not an inventory API).
pub const MAX_RELEASES_SHOWN: usize = 1000;

#[derive(Debug, Clone)]
pub struct CachedRelease {
    pub upstream: String,
    pub provider: String,
    pub version: String,
    /// When the release was verified and stored.
    pub fetched: Option<SystemTime>,
    /// Long key id and source of the key whose signature verified.
    pub key_id: String,
    pub key_source: String,
    pub archives: Vec<CachedArchiveStatus>,
}

#[derive(Debug, Clone)]
pub struct CachedArchiveStatus {
    pub platform: String,
    pub bytes: u64,
    pub hits: u64,
}

#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    pub releases: Vec<CachedRelease>,
    /// More releases are cached than shown.
    pub truncated: bool,
    pub upstreams: Vec<(String, String, UpstreamHealth)>,
    pub namespaces: Vec<(String, String)>,
    pub origins: Vec<(String, String)>,
    /// Versions signed by another key than their provider's earlier ones, since start-up.
    pub key_changes: Vec<KeyChange>,
    /// Versions held back by `policy.min_release_age`, soonest available first.
    pub quarantined: Vec<Quarantined>,
    /// Releases whose other platforms are being fetched and hashed (`cache.complete_hashes`).
    pub completing: Vec<(ReleaseKey, Completion)>,
}

/// The cache as the status page shows it. A release is shown only if it verifies (from
/// memory when serving has it, else verified again from the store); nothing is fetched.
pub async fn status(mirror: &Mirror) -> Result<StatusSnapshot, OpsError> {
    let listing = list_releases(mirror).await?;
    Ok(assemble(mirror, &listing))
}

/// The last listing of the cached releases, shared by every request for the status page.
#[derive(Default)]
pub struct StatusCache {
    listing: tokio::sync::Mutex<Option<Listing>>,
    /// A listing is being built in the background.
    refreshing: AtomicBool,
}

impl StatusCache {
    /// [`status`], from the last listing of the releases. When something cached changed since,
    /// the releases are listed again first (concurrent requests share one listing); when the
    /// listing is merely older than [`STATUS_REFRESH`], it is answered from at once and listed
    /// again in the background, so no request waits for a listing of a large cache.
    pub async fn snapshot(self: &Arc<Self>, mirror: &Mirror) -> Result<StatusSnapshot, OpsError> {
        let mut kept = self.listing.lock().await;
        let changes = mirror.changes();
        if let Some(listing) = kept.as_ref().filter(|l| l.changes == changes) {
            if listing.built.elapsed() >= STATUS_REFRESH {
                self.refresh_in_background(mirror);
            }
            return Ok(assemble(mirror, listing));
        }
        let listing = list_releases(mirror).await?;
        let snapshot = assemble(mirror, &listing);
        *kept = Some(listing);
        Ok(snapshot)
    }

    /// Lists the releases in the background (once at a time), for the next request; at
    /// start-up, so the first one does not wait either.
    pub fn refresh_in_background(self: &Arc<Self>, mirror: &Mirror) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (cache, mirror) = (Arc::clone(self), mirror.clone());
        tokio::spawn(async move {
            match list_releases(&mirror).await {
                Ok(fresh) => {
                    let mut kept = cache.listing.lock().await;
                    // A listing made meanwhile for a change is newer than this one.
                    if kept.as_ref().is_none_or(|k| k.changes <= fresh.changes) {
                        *kept = Some(fresh);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the cached releases"),
            }
            cache.refreshing.store(false, Ordering::Release);
        });
    }
}

/// The verified releases in the cache, with the keys of their stored archives.
struct Listing {
    built: Instant,
    /// `Mirror::changes` when the listing started.
    changes: u64,
    releases: Vec<(CachedRelease, Vec<FileKey>)>,
    truncated: bool,
}

async fn list_releases(mirror: &Mirror) -> Result<Listing, OpsError> {
    metrics().status_snapshots.inc();
    let changes = mirror.changes();
    let store = mirror.store();
    if mirror.quarantine_enabled() {
        // Sightings recorded before a restart, or by another server on this cache, are shown
        // too: loaded into memory, where `Mirror::quarantined` finds them.
        for key in store.first_sightings().await? {
            if mirror.has_upstream(&key.provider.upstream) {
                mirror.first_seen(&key).await?;
            }
        }
    }
    let keys = store.releases().await?;
    let truncated = keys.len() > MAX_RELEASES_SHOWN;
    let mut releases = Vec::new();
    for key in keys.into_iter().take(MAX_RELEASES_SHOWN) {
        if !mirror.has_upstream(&key.provider.upstream) {
            continue;
        }
        let Some(record) = store.read(Item::ReleaseRecord(&key)).await? else {
            continue;
        };
        let Some(release) = mirror.known_release(&key).await? else {
            continue;
        };
        let mut archives = Vec::new();
        let mut files = Vec::new();
        for build in &release.builds {
            let file = key.file(build.filename.clone());
            if let Some(bytes) = store.size_of(Item::File(&file)).await? {
                archives.push(CachedArchiveStatus {
                    platform: build.platform.to_string(),
                    bytes,
                    hits: 0,
                });
                files.push(file);
            }
        }
        let provider = match &key.provider.namespace {
            Some(ns) => format!("{ns}/{}", key.provider.provider),
            None => key.provider.provider.to_string(),
        };
        let shown = CachedRelease {
            upstream: key.provider.upstream.to_string(),
            provider,
            version: key.version.to_string(),
            fetched: Some(record.modified),
            key_id: release
                .signature
                .as_ref()
                .map_or_else(|| "unsigned".to_owned(), |s| s.signed_by.key_id.clone()),
            key_source: release.signature.as_ref().map_or_else(
                || "digests only (allow_unsigned)".to_owned(),
                |s| format!("{} ({})", s.signed_by.source, s.tier.as_str()),
            ),
            archives,
        };
        releases.push((shown, files));
    }
    Ok(Listing {
        built: Instant::now(),
        changes,
        releases,
        truncated,
    })
}

/// A snapshot from a listing, with today's hit counts, upstream health and key changes.
fn assemble(mirror: &Mirror, listing: &Listing) -> StatusSnapshot {
    let releases = listing
        .releases
        .iter()
        .map(|(release, files)| {
            let mut release = release.clone();
            for (archive, file) in release.archives.iter_mut().zip(files) {
                archive.hits = mirror.hits_of(file);
            }
            release
        })
        .collect();
    let routes = mirror.routes();
    StatusSnapshot {
        releases,
        truncated: listing.truncated,
        upstreams: mirror.upstreams(),
        namespaces: routes.namespaces,
        origins: routes.origins,
        key_changes: mirror.key_changes(),
        quarantined: mirror.quarantined(),
        completing: mirror.hash_completions(),
    }
}
