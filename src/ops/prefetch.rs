//! Filling the cache ahead of time (`tfmirror prefetch`), through the same fetch → verify →
//! store path that serves clients: a prefetched archive is exactly what a client's first
//! request would have cached.

use super::OpsError;
use crate::{
    config::PrefetchConfig,
    mirror::{Mirror, MirrorError},
    protocol::{
        constraints::VersionConstraints, Hostname, Platform, ProviderAddress, ProviderKey,
        ReleaseKey, Version,
    },
};

/// Host of provider addresses written without one (`hashicorp/aws`).
pub const DEFAULT_REGISTRY_HOST: &str = "registry.terraform.io";

/// A provider address with the versions and platforms wanted.
#[derive(Debug, Clone)]
pub struct PrefetchRequest {
    /// `NAMESPACE/TYPE` or `HOST/NAMESPACE/TYPE`.
    pub provider: ProviderAddress,
    /// `None`: every version.
    pub versions: Option<VersionConstraints>,
    pub platforms: Vec<Platform>,
}

impl From<&PrefetchConfig> for PrefetchRequest {
    /// A `[[prefetch]]` entry, typed when the config was read.
    fn from(entry: &PrefetchConfig) -> Self {
        Self {
            provider: entry.provider.clone(),
            versions: entry.versions.clone(),
            platforms: entry.platforms.clone(),
        }
    }
}

/// One archive to have in the cache.
#[derive(Debug, Clone)]
pub struct PrefetchItem {
    pub provider: ProviderKey,
    pub version: Version,
    pub platform: Platform,
}

impl std::fmt::Display for PrefetchItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.provider, self.version, self.platform)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchOutcome {
    /// Downloaded and verified now.
    Fetched { bytes: u64 },
    /// Already in the cache, verified when it was stored.
    Skipped { bytes: u64 },
}

/// The provider an address stands for: a `[mirrors]` origin (`registry.terraform.io` when no
/// host is written), else a `[namespaces]` name.
pub fn resolve_provider(
    mirror: &Mirror,
    address: &ProviderAddress,
) -> Result<ProviderKey, OpsError> {
    let host = match &address.hostname {
        Some(host) => host.clone(),
        None => Hostname::try_from(DEFAULT_REGISTRY_HOST)
            .map_err(|e| OpsError::Internal(e.to_string()))?,
    };
    Ok(mirror.provider_at(&host, &address.namespace, &address.provider)?)
}

/// What a request stands for.
#[derive(Debug, Default)]
pub struct PrefetchPlan {
    pub items: Vec<PrefetchItem>,
    /// Matching versions skipped because they are in quarantine, with why.
    pub quarantined: Vec<String>,
}

/// Every archive a request stands for, from the provider's (cached or fetched) version list.
/// Platforms a version was not built for are left out, and so are versions in quarantine.
pub async fn prefetch_plan(
    mirror: &Mirror,
    request: &PrefetchRequest,
) -> Result<PrefetchPlan, OpsError> {
    let provider = resolve_provider(mirror, &request.provider)?;
    let mut plan = PrefetchPlan::default();
    for entry in mirror.version_entries(&provider).await? {
        let Ok(version) = Version::try_from(entry.version.as_str()) else {
            continue;
        };
        if request
            .versions
            .as_ref()
            .is_some_and(|wanted| !wanted.matches(&version))
        {
            continue;
        }
        let release = provider.release(version.clone());
        if let Some(until) = mirror.quarantined_until(&release).await? {
            plan.quarantined.push(quarantine_note(&release, until));
            continue;
        }
        for platform in &request.platforms {
            let offered = entry
                .platforms
                .iter()
                .any(|p| p.os == platform.os && p.arch == platform.arch);
            if offered {
                plan.items.push(PrefetchItem {
                    provider: provider.clone(),
                    version: version.clone(),
                    platform: platform.clone(),
                });
            }
        }
    }
    Ok(plan)
}

/// Why a version is skipped: it is in quarantine until `until`.
pub fn quarantine_note(release: &ReleaseKey, until: std::time::SystemTime) -> String {
    format!(
        "{} {} skipped: quarantined until {} (policy.min_release_age)",
        release.provider,
        release.version,
        humantime::format_rfc3339_seconds(until)
    )
}

/// Makes sure one archive is in the cache.
pub async fn prefetch(mirror: &Mirror, item: &PrefetchItem) -> Result<PrefetchOutcome, OpsError> {
    let release_key = item.provider.release(item.version.clone());
    let release = mirror.release(&release_key).await?;
    let build = release
        .build_for(&item.platform)
        .ok_or_else(|| MirrorError::UnknownPlatform {
            release: Box::new(release_key.clone()),
            platform: item.platform.clone(),
        })?;
    let (object, fetched) = mirror
        .ensure_file(&release_key.file(build.filename.clone()))
        .await?;
    let bytes = object.len();
    Ok(if fetched {
        PrefetchOutcome::Fetched { bytes }
    } else {
        PrefetchOutcome::Skipped { bytes }
    })
}
