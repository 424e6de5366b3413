//! Keeping the disk cache under `cache.max_size`: least-recently-used archives go first.
//!
//! Never evicted: archives of providers listed in `[[prefetch]]` (an air-gapped site relies on
//! them), and archives served within the grace period (a client may still be downloading; on
//! Unix an open download would survive the unlink anyway, but the next request would refetch).
//! Releases' small files stay: they are what lets an evicted archive be refetched verified.

use std::time::{Duration, SystemTime};

use super::{Mirror, MirrorError, PrefetchRequest};
use crate::protocol::{constraints::VersionConstraints, Platform, ProviderType, Version};

/// What a collection did.
#[derive(Debug, Default)]
pub struct GcReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub limit: u64,
    pub evicted: Vec<std::path::PathBuf>,
    pub evicted_bytes: u64,
    /// Archives kept although old enough, because `[[prefetch]]` lists them.
    pub protected: usize,
}

/// A `[[prefetch]]` entry resolved to the upstream provider it protects.
struct Protected {
    upstream: String,
    provider: ProviderType,
    versions: Option<VersionConstraints>,
    platforms: Vec<Platform>,
}

impl Mirror {
    /// Evicts least-recently-used archives until the cache is at most `limit` bytes.
    pub async fn collect_garbage(
        &self,
        limit: u64,
        grace: Duration,
        keep: &[PrefetchRequest],
    ) -> Result<GcReport, MirrorError> {
        let protected: Vec<Protected> = keep
            .iter()
            .filter_map(|request| {
                let (upstream, provider) = self.resolve_provider(&request.provider).ok()?;
                Some(Protected {
                    upstream,
                    provider,
                    versions: request.versions.clone(),
                    platforms: request.platforms.clone(),
                })
            })
            .collect();
        let store = &self.inner.store;
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
            if self.is_protected(&archive.path, &protected) {
                report.protected += 1;
                continue;
            }
            store.remove_file(&archive.path).await?;
            let mut h1 = archive.path.clone().into_os_string();
            h1.push(".h1");
            store.remove_file(std::path::Path::new(&h1)).await?;
            tracing::info!(path = %archive.path.display(), bytes = archive.bytes, "evicted archive");
            report.bytes_after = report.bytes_after.saturating_sub(archive.bytes);
            report.evicted_bytes += archive.bytes;
            report.evicted.push(archive.path);
        }
        Ok(report)
    }

    /// Whether an archive path (`…/<upstream>/terraform-provider-<type>/<version>/<zip>`) is one
    /// a `[[prefetch]]` entry asks for.
    fn is_protected(&self, path: &std::path::Path, protected: &[Protected]) -> bool {
        let parts: Vec<String> = path
            .iter()
            .rev()
            .take(4)
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let [file, version, product, upstream] = parts.as_slice() else {
            return false;
        };
        let (Some(provider), Ok(version)) = (
            product.strip_prefix("terraform-provider-"),
            Version::try_from(version.as_str()),
        ) else {
            return false;
        };
        let platform = file
            .strip_prefix(&format!("{product}_{version}_"))
            .and_then(|rest| rest.strip_suffix(".zip"))
            .and_then(|p| Platform::try_from(p).ok());
        protected.iter().any(|p| {
            p.upstream == *upstream
                && p.provider.as_str() == provider
                && p.versions.as_ref().is_none_or(|v| v.matches(&version))
                && platform.as_ref().is_some_and(|pl| p.platforms.contains(pl))
        })
    }
}
