//! What the status page shows: every cached release with its archives, sizes, when it was
//! fetched, the key that verified it and how often its archives were served.

use std::time::SystemTime;

use super::OpsError;
use crate::{mirror::Mirror, store::Item, upstream::UpstreamHealth};

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
}

/// The cache as the status page shows it. A release is shown only if it verifies (from
/// memory when serving has it, else verified again from the store); nothing is fetched.
pub async fn status(mirror: &Mirror) -> Result<StatusSnapshot, OpsError> {
    let store = mirror.store();
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
        for build in &release.builds {
            let file = key.file(build.filename.clone());
            if let Some(object) = store.open(Item::File(&file)).await? {
                archives.push(CachedArchiveStatus {
                    platform: build.platform.to_string(),
                    bytes: object.len(),
                    hits: mirror.hits_of(&file),
                });
            }
        }
        let provider = match &key.provider.namespace {
            Some(ns) => format!("{ns}/{}", key.provider.provider),
            None => key.provider.provider.to_string(),
        };
        releases.push(CachedRelease {
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
        });
    }
    let routes = mirror.routes();
    Ok(StatusSnapshot {
        releases,
        truncated,
        upstreams: mirror.upstreams(),
        namespaces: routes.namespaces,
        origins: routes.origins,
    })
}
