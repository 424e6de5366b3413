//! Filling the cache ahead of time (`tfmirror prefetch`), through the same fetch → verify →
//! store path that serves clients: a prefetched archive is exactly what a client's first
//! request would have cached.

use super::{Mirror, MirrorError, ReleaseId};
use crate::{
    config::PrefetchConfig,
    protocol::{
        constraints::VersionConstraints, registry::VersionList, Hostname, Platform,
        ProviderAddress, ProviderType, Version,
    },
    store::layout,
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
    pub upstream: String,
    pub provider: ProviderType,
    pub version: Version,
    pub platform: Platform,
}

impl std::fmt::Display for PrefetchItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} {} {}",
            self.upstream, self.provider, self.version, self.platform
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchOutcome {
    /// Downloaded and verified now.
    Fetched { bytes: u64 },
    /// Already in the cache, verified when it was stored.
    Skipped { bytes: u64 },
}

impl Mirror {
    /// The upstream and provider type a provider address stands for: a `[namespaces]` name,
    /// or a `[mirrors]` origin (`registry.terraform.io` when no host is written).
    pub fn resolve_provider(
        &self,
        address: &ProviderAddress,
    ) -> Result<(String, ProviderType), MirrorError> {
        let (namespace, provider) = (&address.namespace, address.provider.clone());
        let host = match &address.hostname {
            Some(host) => Some(host.clone()),
            None => Hostname::try_from(DEFAULT_REGISTRY_HOST).ok(),
        };
        let origin = host.and_then(|host| self.upstream_for_origin(&host, namespace).ok());
        let upstream = match origin {
            Some(upstream) => upstream,
            None => self.upstream_for(namespace)?,
        };
        Ok((upstream.to_owned(), provider))
    }

    /// Every archive a request stands for, from the provider's (cached or fetched) version
    /// list. Platforms a version was not built for are left out.
    pub async fn prefetch_plan(
        &self,
        request: &PrefetchRequest,
    ) -> Result<Vec<PrefetchItem>, MirrorError> {
        let (upstream, provider) = self.resolve_provider(&request.provider)?;
        let lists = self.version_lists(&upstream, &provider).await?;
        let list: VersionList = serde_json::from_slice(&lists.registry)
            .map_err(|e| MirrorError::Internal(e.to_string()))?;
        let mut items = Vec::new();
        for entry in list.versions {
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
            for platform in &request.platforms {
                let offered = entry
                    .platforms
                    .iter()
                    .any(|p| p.os == platform.os && p.arch == platform.arch);
                if offered {
                    items.push(PrefetchItem {
                        upstream: upstream.clone(),
                        provider: provider.clone(),
                        version: version.clone(),
                        platform: platform.clone(),
                    });
                }
            }
        }
        Ok(items)
    }

    /// Makes sure one archive is in the cache.
    pub async fn prefetch(&self, item: &PrefetchItem) -> Result<PrefetchOutcome, MirrorError> {
        let release = self
            .release(&item.upstream, &item.provider, &item.version)
            .await?;
        let build =
            release
                .build_for(&item.platform)
                .ok_or_else(|| MirrorError::UnknownPlatform {
                    release: ReleaseId::boxed(&item.provider, &item.version),
                    platform: item.platform.clone(),
                })?;
        let path = layout::release_file(
            self.inner.store.root(),
            &item.upstream,
            &item.provider,
            &item.version,
            &build.filename,
        )?;
        let cached = self.inner.store.exists(&path).await;
        let file = build.filename.clone();
        let artifact = self
            .release_artifact(item.upstream.clone(), &item.provider, &item.version, &file)
            .await?;
        let bytes = tokio::fs::metadata(&artifact.path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(if cached {
            PrefetchOutcome::Skipped { bytes }
        } else {
            PrefetchOutcome::Fetched { bytes }
        })
    }
}
