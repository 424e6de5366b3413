//! The pull-through core shared by every front end: look up → fetch → verify → store → answer.
//!
//! Handlers call one `Mirror` method each and get either ready bytes or a path to a verified
//! file. Concurrent misses for one key share one upstream fetch (moka's `try_get_with`), and
//! archive downloads run in their own task, so a client that hangs up does not cancel a
//! download other clients are waiting for.

mod archives;
mod audit;
mod bundle;
mod error;
mod gc;
mod live;
mod network_mirror;
mod prefetch;
mod releases;
mod status;
mod versions;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use moka::future::Cache;

use crate::{
    config::Config,
    protocol::{Hostname, Namespace, ProviderType, Version},
    store::Store,
    upstream::{FetchPolicy, HttpClient, ReleasesUpstream},
    verify::{Keyring, TrustedKey},
};
pub use archives::{ArchiveBody, Artifact};
pub use audit::{AuditMode, AuditReport, Damage};
pub use bundle::{import_bundle, BundleFilter, BundleReport};
pub use error::{MirrorError, ReleaseId, VerifyFailure};
pub use gc::GcReport;
pub use live::HOLDBACK;
pub use prefetch::{PrefetchItem, PrefetchOutcome, PrefetchRequest, DEFAULT_REGISTRY_HOST};
pub use releases::Release;
pub use status::{CachedArchiveStatus, CachedRelease, StatusSnapshot};

/// Most verified releases kept in memory; each is a few KB.
const MAX_RELEASES_IN_MEMORY: u64 = 10_000;
/// Bytes of rendered documents kept in memory (each is a few KB: the download document
/// carries the signing key).
const MAX_DOCUMENT_BYTES_IN_MEMORY: u64 = 4 * 1024 * 1024;
/// Most version lists kept in memory.
const MAX_VERSION_LISTS_IN_MEMORY: u64 = 10_000;

/// One configured upstream with the keys it is trusted to sign with.
#[derive(Debug)]
struct Upstream {
    releases: ReleasesUpstream,
    keyring: Keyring,
}

type ProviderKey = (String, ProviderType);
type ReleaseKey = (String, ProviderType, Version);
/// A provider (no version) or one version of it that upstream said it does not have.
type NotFoundKey = (String, ProviderType, Option<Version>);

#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// When this mirror was built; older temp files are leftovers of a crash.
    started: std::time::SystemTime,
    public_base: String,
    metadata_ttl: Duration,
    max_archive_bytes: u64,
    upstreams: BTreeMap<String, Upstream>,
    namespaces: BTreeMap<Namespace, String>,
    /// Network mirror origins (`registry.terraform.io`, `hashicorp`) -> upstream name.
    origins: BTreeMap<(Hostname, Namespace), String>,
    /// Served version-list JSON, ready to write to the socket. Entries outlive their
    /// freshness on purpose: a stale list is served while a refresh runs in the background.
    version_lists: Cache<ProviderKey, versions::CachedVersions>,
    /// Version lists being refreshed in the background (one refresh per list at a time).
    refreshing: std::sync::Mutex<std::collections::HashSet<ProviderKey>>,
    /// How often each cached archive was served since start-up (status page).
    hits: std::sync::Mutex<
        std::collections::HashMap<std::path::PathBuf, Arc<std::sync::atomic::AtomicU64>>,
    >,
    /// Upstream "not found" answers, remembered for `cache.negative_ttl`.
    not_found: Cache<NotFoundKey, MirrorError>,
    releases: Cache<ReleaseKey, Arc<Release>>,
    /// Rendered download and `<version>.json` documents, ready to write to the socket.
    documents: Cache<String, bytes::Bytes>,
    /// Archive downloads in progress, keyed by their final path (single flight).
    downloads:
        std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Arc<live::LiveDownload>>>,
}

impl Mirror {
    /// Builds the mirror from a validated config: opens the cache, reads the trusted keys and
    /// builds one HTTP client per upstream (timeouts are an upstream setting).
    pub async fn new(config: &Config) -> Result<Self, MirrorError> {
        let store = Store::open(&config.cache.dir, config.cache.min_free_space.as_u64()).await?;
        let mut upstreams = BTreeMap::new();
        for (name, upstream) in &config.upstreams {
            let http = HttpClient::new(name.as_str(), FetchPolicy::from(upstream))?;
            let mut keyring = Keyring::hashicorp()?;
            for path in &upstream.signing_keys {
                let armored = tokio::fs::read_to_string(path).await.map_err(|e| {
                    MirrorError::SigningKeyFile {
                        upstream: name.to_string(),
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                keyring.add(TrustedKey::parse(&armored, &path.display().to_string())?);
            }
            upstreams.insert(
                name.to_string(),
                Upstream {
                    releases: ReleasesUpstream::new(name.to_string(), &upstream.url, http),
                    keyring,
                },
            );
        }
        let namespaces = config
            .namespaces
            .iter()
            .map(|(name, ns)| (name.clone(), ns.upstream.to_string()))
            .collect();
        let origins = config
            .mirrors
            .iter()
            .map(|(origin, mirror)| {
                let key = (origin.hostname.clone(), origin.namespace.clone());
                (key, mirror.upstream.to_string())
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                started: std::time::SystemTime::now(),
                public_base: config.public_base(),
                metadata_ttl: config.cache.metadata_ttl,
                max_archive_bytes: config.cache.max_archive_bytes.as_u64(),
                upstreams,
                namespaces,
                origins,
                version_lists: Cache::builder()
                    .max_capacity(MAX_VERSION_LISTS_IN_MEMORY)
                    .build(),
                refreshing: Default::default(),
                hits: Default::default(),
                not_found: Cache::builder()
                    .max_capacity(MAX_VERSION_LISTS_IN_MEMORY)
                    .time_to_live(config.cache.negative_ttl)
                    .build(),
                // Releases never change; the TTL only makes memory defer to the disk record
                // now and then, which re-verifies its signature against today's keyring.
                releases: Cache::builder()
                    .max_capacity(MAX_RELEASES_IN_MEMORY)
                    .time_to_live(config.cache.metadata_ttl)
                    .build(),
                downloads: Default::default(),
                documents: Cache::builder()
                    .weigher(|key: &String, doc: &bytes::Bytes| {
                        u32::try_from(key.len() + doc.len()).unwrap_or(u32::MAX)
                    })
                    .max_capacity(MAX_DOCUMENT_BYTES_IN_MEMORY)
                    .time_to_live(config.cache.metadata_ttl)
                    .build(),
            }),
        })
    }

    /// Removes the temp files a crashed process left in the cache: those older than this
    /// mirror, so downloads started since (here or by another process) are left alone.
    pub async fn sweep_leftovers(&self) -> Result<(), MirrorError> {
        let sweep = self
            .inner
            .store
            .sweep_temp_files(self.inner.started)
            .await?;
        if sweep.removed > 0 {
            tracing::info!(
                removed = sweep.removed,
                "removed stale temp files from the cache"
            );
        }
        tracing::info!(files = sweep.files, bytes = sweep.bytes, "cache opened");
        Ok(())
    }

    /// How each upstream has been answering lately.
    pub fn upstream_health(&self) -> BTreeMap<String, crate::upstream::UpstreamHealth> {
        self.inner
            .upstreams
            .iter()
            .map(|(name, u)| (name.clone(), u.releases.health()))
            .collect()
    }

    /// Whether the cache accepts writes now (a probe file written and removed).
    pub async fn cache_writable(&self) -> Result<(), MirrorError> {
        Ok(self.inner.store.probe_writable().await?)
    }

    /// The public URL prefix ("" for request-relative URLs).
    pub fn public_base(&self) -> &str {
        &self.inner.public_base
    }

    /// The upstream name a private namespace maps to.
    fn upstream_for(&self, namespace: &Namespace) -> Result<&str, MirrorError> {
        self.inner
            .namespaces
            .get(namespace)
            .map(String::as_str)
            .ok_or_else(|| MirrorError::UnknownNamespace(namespace.clone()))
    }

    /// The upstream a network-mirror origin maps to.
    fn upstream_for_origin(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
    ) -> Result<&str, MirrorError> {
        self.inner
            .origins
            .get(&(hostname.clone(), namespace.clone()))
            .map(String::as_str)
            .ok_or_else(|| MirrorError::UnknownOrigin {
                hostname: hostname.clone(),
                namespace: namespace.clone(),
            })
    }

    fn upstream(&self, name: &str) -> Result<&Upstream, MirrorError> {
        self.inner
            .upstreams
            .get(name)
            .ok_or_else(|| MirrorError::UnknownUpstream(name.to_owned()))
    }
}

/// moka hands every waiter the same `Arc`ed error; callers want an owned one.
fn unshare(error: Arc<MirrorError>) -> MirrorError {
    Arc::unwrap_or_clone(error)
}
