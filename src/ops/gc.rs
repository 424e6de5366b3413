//! Keeping the cache under `cache.max_size`: least-recently-used archives go first.
//!
//! Never evicted: archives of providers listed in `[[prefetch]]` (an air-gapped site relies on
//! them), and archives served within the grace period (a client may still be downloading; on
//! Unix an open download would survive the unlink anyway, but the next request would refetch).
//! Releases' small files stay: they are what lets an evicted archive be refetched verified.
//! With `[storage] kind = "s3"` this bounds the local tier: an evicted archive leaves this
//! host's disk and stays in the bucket, from which the next request copies it back.

use std::time::{Duration, SystemTime};

use super::{prefetch::resolve_provider, OpsError, PrefetchRequest};
use crate::{
    mirror::Mirror,
    protocol::{constraints::VersionConstraints, FileKey, Platform, ProviderKey},
};

/// What a collection did.
#[derive(Debug, Default)]
pub struct GcReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub limit: u64,
    pub evicted: Vec<FileKey>,
    pub evicted_bytes: u64,
    /// Archives kept although old enough, because `[[prefetch]]` lists them.
    pub protected: usize,
}

/// A `[[prefetch]]` entry resolved to the provider it protects.
struct Protected {
    provider: ProviderKey,
    versions: Option<VersionConstraints>,
    platforms: Vec<Platform>,
}

impl Protected {
    fn covers(&self, archive: &FileKey) -> bool {
        let release = &archive.release;
        let platform = archive
            .file
            .as_str()
            .strip_prefix(&format!("{}_", release.file_stem()))
            .and_then(|rest| rest.strip_suffix(".zip"))
            .and_then(|p| Platform::try_from(p).ok());
        self.provider == release.provider
            && self
                .versions
                .as_ref()
                .is_none_or(|v| v.matches(&release.version))
            && platform.is_some_and(|p| self.platforms.contains(&p))
    }
}

/// Evicts least-recently-used archives until the cache is at most `limit` bytes.
pub async fn collect_garbage(
    mirror: &Mirror,
    limit: u64,
    grace: Duration,
    keep: &[PrefetchRequest],
) -> Result<GcReport, OpsError> {
    let protected: Vec<Protected> = keep
        .iter()
        .filter_map(|request| {
            Some(Protected {
                provider: resolve_provider(mirror, &request.provider).ok()?,
                versions: request.versions.clone(),
                platforms: request.platforms.clone(),
            })
        })
        .collect();
    let store = mirror.store();
    let usage = store.usage().await?;
    let mut report = GcReport {
        bytes_before: usage.bytes,
        bytes_after: usage.bytes,
        limit,
        ..GcReport::default()
    };
    if usage.bytes <= limit {
        return Ok(report);
    }
    let mut archives = store.archives().await?;
    archives.sort_by_key(|a| a.accessed);
    let recent = SystemTime::now() - grace;
    for archive in archives {
        if report.bytes_after <= limit {
            break;
        }
        if archive.accessed > recent {
            continue;
        }
        if protected.iter().any(|p| p.covers(&archive.key)) {
            report.protected += 1;
            continue;
        }
        store.evict_archive(&archive.key).await?;
        mirror.note_change();
        tracing::info!(archive = %archive.key, bytes = archive.bytes, "evicted archive");
        report.bytes_after = report.bytes_after.saturating_sub(archive.bytes);
        report.evicted_bytes += archive.bytes;
        report.evicted.push(archive.key);
    }
    Ok(report)
}
