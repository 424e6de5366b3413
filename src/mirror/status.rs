//! What the status page shows: every cached release with its archives, sizes, when it was
//! fetched, the key that verified it and how often its archives were served.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::SystemTime,
};

use super::{Mirror, MirrorError};
use crate::{store::layout, upstream::UpstreamHealth};

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

impl Mirror {
    /// Counts one serving of a cached archive, for the status page.
    pub(super) fn count_hit(&self, path: &std::path::Path) {
        let counter = {
            let mut hits = self
                .inner
                .hits
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            hits.entry(path.to_owned())
                .or_insert_with(|| Arc::new(AtomicU64::new(0)))
                .clone()
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn hits_of(&self, path: &PathBuf) -> u64 {
        self.inner
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub async fn status(&self) -> Result<StatusSnapshot, MirrorError> {
        let store = &self.inner.store;
        let root = store.root().to_owned();
        let dirs = self.release_dirs().await?;
        let truncated = dirs.len() > MAX_RELEASES_SHOWN;
        let mut releases = Vec::new();
        for dir in dirs.into_iter().take(MAX_RELEASES_SHOWN) {
            let Ok(source) = self.upstream(&dir.upstream) else {
                continue;
            };
            let record = layout::release_record(&root, &dir.upstream, &dir.provider, &dir.version)?;
            let Some(stored) = store.read(&record).await? else {
                continue;
            };
            // From memory when serving has it, else verified again from disk; a release that
            // fails is not shown as cached (and nothing is fetched for the page).
            let key = (
                dir.upstream.clone(),
                dir.provider.clone(),
                dir.version.clone(),
            );
            let release = match self.inner.releases.get(&key).await {
                Some(release) => release,
                None => match self
                    .load_release(&dir.upstream, source, &dir.provider, &dir.version)
                    .await?
                {
                    Some(release) => Arc::new(release),
                    None => continue,
                },
            };
            let mut archives = Vec::new();
            for build in &release.builds {
                let path = layout::release_file(
                    &root,
                    &dir.upstream,
                    &dir.provider,
                    &dir.version,
                    &build.filename,
                )?;
                if let Ok(metadata) = tokio::fs::metadata(&path).await {
                    archives.push(CachedArchiveStatus {
                        platform: build.platform.to_string(),
                        bytes: metadata.len(),
                        hits: self.hits_of(&path),
                    });
                }
            }
            releases.push(CachedRelease {
                upstream: dir.upstream.clone(),
                provider: dir.provider.to_string(),
                version: dir.version.to_string(),
                fetched: Some(stored.modified),
                key_id: release.signed_by.key_id.clone(),
                key_source: release.signed_by.source.clone(),
                archives,
            });
        }
        Ok(StatusSnapshot {
            releases,
            truncated,
            upstreams: self
                .inner
                .upstreams
                .iter()
                .map(|(name, u)| (name.clone(), u.releases.base_url(), u.releases.health()))
                .collect(),
            namespaces: self
                .inner
                .namespaces
                .iter()
                .map(|(ns, upstream)| (ns.to_string(), upstream.clone()))
                .collect(),
            origins: self
                .inner
                .origins
                .iter()
                .map(|((host, ns), upstream)| (format!("{host}/{ns}"), upstream.clone()))
                .collect(),
        })
    }
}
