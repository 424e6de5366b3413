//! The pull-through core of the request path: look up → fetch → verify → store → answer.
//!
//! Every request names a provider through a private namespace (`/v1/providers/NS/…`) or a
//! network-mirror origin (`/mirror/HOST/NS/…`); `routes` turns that into a [`ProviderKey`] at a
//! configured upstream, and from there on everything is keyed. Handlers call one `Mirror`
//! method per answer and get one value: a rendered document, or a file that is either verified
//! in the store or still streaming in from upstream. Concurrent misses for one key share one
//! upstream fetch (moka's `try_get_with`), and archive downloads run in their own task, so a
//! client that hangs up does not cancel a download other clients are waiting for. Replicas on
//! one bucket with `[cluster]` share an archive's download too (`cluster`): one replica
//! downloads it, the others follow that download.
//!
//! The operations (`crate::ops`) use the same core through the methods marked for them, so a
//! prefetched or imported release is exactly what serving would have cached.

mod archives;
mod claims;
mod cluster;
mod completion;
mod documents;
mod error;
mod keys;
mod live;
mod lock;
mod quarantine;
mod releases;
mod routes;
mod versions;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, SystemTime},
};

use moka::future::Cache;

pub use archives::{FileBody, FileRequest, Wait, PRESIGNED_URL_TTL};
pub use completion::Completion;
pub use documents::{Document, JsonBody};
pub use error::{MirrorError, SetupError, VerifyFailure};
pub use keys::KeyChange;
pub use live::HOLDBACK;
pub use lock::PlatformHash;
pub use quarantine::Quarantined;
pub use releases::{Release, Signature};
pub use routes::{RouteTable, Via};
pub use versions::VersionLists;

pub use crate::upstream::peer::PEER_SECRET_HEADER;

use crate::{
    config::{Config, StorageConfig, StorageKind, StorageRedirect, UpstreamConfig, UpstreamKind},
    protocol::{
        network_mirror::MirrorVersion, registry::Download, FileKey, HostPattern, ProviderKey,
        ReleaseKey, UpstreamName, Version,
    },
    store::{bucket::BucketSettings, Store},
    upstream::{
        FetchPolicy, FetchRules, HttpClient, RegistryUpstream, ReleasesUpstream, Upstream,
        UpstreamHealth,
    },
    verify::{Keyring, TrustedKey},
};

/// Most verified releases kept in memory; each is a few KB.
const MAX_RELEASES_IN_MEMORY: u64 = 10_000;
/// Bytes of rendered documents kept in memory (each is a few KB: the download document
/// carries the signing key).
const MAX_DOCUMENT_BYTES_IN_MEMORY: u64 = 4 * 1024 * 1024;
/// Most version lists kept in memory.
const MAX_VERSION_LISTS_IN_MEMORY: u64 = 10_000;

/// One configured upstream with the keys it is trusted to sign with.
#[derive(Debug)]
struct Source {
    upstream: Box<dyn Upstream>,
    keyring: Keyring,
    /// Refuse a version signed by another key than the provider's earlier ones.
    pin_keys: bool,
    /// Accept releases whose registry publishes no key, by their digests alone.
    allow_unsigned: bool,
}

/// A provider (no version) or one version of it that upstream said it does not have.
type NotFoundKey = (ProviderKey, Option<Version>);

#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// When this mirror was built; older temp files are leftovers of a crash.
    started: SystemTime,
    public_base: String,
    metadata_ttl: Duration,
    max_archive_bytes: u64,
    sources: BTreeMap<UpstreamName, Source>,
    routes: routes::Routes,
    /// Served version lists, ready to write to the socket. Entries outlive their freshness on
    /// purpose: a stale list is served while a refresh runs in the background.
    version_lists: Cache<ProviderKey, versions::CachedVersions>,
    /// Version lists being refreshed in the background (one refresh per list at a time).
    refreshing: claims::Claims<ProviderKey>,
    /// Version lists whose releases are being verified in the background for their protocols.
    completing: claims::Claims<ProviderKey>,
    /// Background release verifications for protocols, across the mirror.
    protocol_permits: tokio::sync::Semaphore,
    /// Releases left out of the background protocol fetches for a while.
    protocols_unavailable: Cache<ReleaseKey, ()>,
    /// Pending versions verified per rendered list (`cache.protocol_fetches`).
    protocol_fetches: usize,
    /// How often each cached archive was served since start-up (status page).
    hits: Mutex<HashMap<FileKey, u64>>,
    /// Bumped whenever a release or archive is stored or forgotten (status page snapshot).
    changes: AtomicU64,
    /// Upstream "not found" answers, remembered for `cache.negative_ttl`.
    not_found: Cache<NotFoundKey, MirrorError>,
    releases: Cache<ReleaseKey, Arc<Release>>,
    /// Rendered download documents, by request (the URLs name the private namespace).
    downloads_json: Cache<String, Arc<Document<Download>>>,
    /// Rendered `<version>.json` documents, by release.
    mirror_versions: Cache<ReleaseKey, Arc<Document<MirrorVersion>>>,
    /// Signing-key changes noticed since start-up (status page).
    key_changes: Mutex<Vec<keys::KeyChange>>,
    /// Archive downloads in progress (single flight).
    downloads: tokio::sync::Mutex<HashMap<FileKey, Arc<live::LiveDownload>>>,
    /// `policy.min_release_age`: first-seen times and the lists without young versions.
    quarantine: quarantine::Quarantine,
    /// `cache.complete_hashes`: the other platforms' archives fetched and hashed.
    completion: completion::HashCompletion,
    /// `[cluster]` on a bucket: download leases and following other replicas' downloads.
    cluster: Option<cluster::Cluster>,
    /// `storage.redirect = "presigned"`: verified archives in the bucket are fetched from it.
    presigned_redirects: bool,
}

impl Mirror {
    /// Builds the mirror from a validated config: opens the cache, reads the trusted keys and
    /// builds one HTTP client per upstream (timeouts are an upstream setting).
    pub async fn new(config: &Config) -> Result<Self, SetupError> {
        let (dir, min_free_space) = (&config.cache.dir, config.cache.min_free_space.as_u64());
        let (store, cluster) = match bucket_settings(&config.storage)? {
            None => (Store::open_disk(dir, min_free_space).await?, None),
            Some(bucket) => (
                Store::open_shared(dir, min_free_space, &bucket).await?,
                cluster_of(config)?,
            ),
        };
        Self::build(config, store, cluster).await
    }

    /// The mirror for a command that exits when its own work is done (`prefetch`, `lock`,
    /// `import`, …): no background work that would die half-done with the process and only
    /// cost upstream requests — no protocol learning for listed versions, no
    /// `complete_hashes`.
    pub async fn for_command(config: &Config) -> Result<Self, SetupError> {
        let mut config = config.clone();
        config.cache.protocol_fetches = 0;
        config.cache.complete_hashes = false;
        // It serves nothing, so no replica could follow a download it holds a lease for.
        config.cluster.advertise_url = None;
        Self::new(&config).await
    }

    /// Builds the mirror over a store of the caller's (a staging store, for imports).
    pub async fn with_store(config: &Config, store: Store) -> Result<Self, SetupError> {
        Self::build(config, store, None).await
    }

    async fn build(
        config: &Config,
        store: Store,
        cluster: Option<cluster::Cluster>,
    ) -> Result<Self, SetupError> {
        let sources = sources(config).await?;
        let routes = routes::Routes::from_config(config);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                started: SystemTime::now(),
                public_base: config.public_base(),
                metadata_ttl: config.cache.metadata_ttl,
                max_archive_bytes: config.cache.max_archive_bytes.as_u64(),
                sources,
                routes,
                version_lists: Cache::builder()
                    .max_capacity(MAX_VERSION_LISTS_IN_MEMORY)
                    .build(),
                refreshing: Default::default(),
                completing: Default::default(),
                protocol_permits: tokio::sync::Semaphore::new(versions::PROTOCOL_FETCH_CONCURRENCY),
                protocols_unavailable: Cache::builder()
                    .max_capacity(MAX_RELEASES_IN_MEMORY)
                    .time_to_live(versions::PROTOCOLS_UNAVAILABLE_FOR)
                    .build(),
                protocol_fetches: config.cache.protocol_fetches,
                hits: Default::default(),
                changes: Default::default(),
                not_found: Cache::builder()
                    .max_capacity(MAX_VERSION_LISTS_IN_MEMORY)
                    .time_to_live(config.cache.negative_ttl)
                    .build(),
                // Releases never change; the TTL only makes memory defer to the stored record
                // now and then, which re-verifies its signature against today's keyring.
                releases: Cache::builder()
                    .max_capacity(MAX_RELEASES_IN_MEMORY)
                    .time_to_live(config.cache.metadata_ttl)
                    .build(),
                downloads: Default::default(),
                quarantine: quarantine::Quarantine::from_config(config),
                completion: completion::HashCompletion::new(config.cache.complete_hashes),
                key_changes: Default::default(),
                cluster,
                presigned_redirects: config.storage.redirect == StorageRedirect::Presigned,
                downloads_json: Cache::builder()
                    .weigher(|key: &String, doc: &Arc<Document<Download>>| {
                        u32::try_from(key.len() + doc.json.len()).unwrap_or(u32::MAX)
                    })
                    .max_capacity(MAX_DOCUMENT_BYTES_IN_MEMORY)
                    .time_to_live(config.cache.metadata_ttl)
                    .build(),
                mirror_versions: Cache::builder()
                    .weigher(|_: &ReleaseKey, doc: &Arc<Document<MirrorVersion>>| {
                        u32::try_from(doc.json.len()).unwrap_or(u32::MAX)
                    })
                    .max_capacity(MAX_DOCUMENT_BYTES_IN_MEMORY)
                    .time_to_live(config.cache.metadata_ttl)
                    .build(),
            }),
        })
    }

    /// Removes what a crashed process left in the cache: temp files older than this mirror,
    /// so downloads started since (here or by another process) are left alone.
    pub async fn sweep_leftovers(&self) -> Result<(), MirrorError> {
        let sweep = self.inner.store.sweep_leftovers(self.inner.started).await?;
        if sweep.removed > 0 {
            tracing::info!(
                removed = sweep.removed,
                "removed stale temp files from the cache"
            );
        }
        tracing::info!(
            storage = %self.inner.store.describe(),
            files = sweep.files,
            bytes = sweep.bytes,
            "cache opened"
        );
        Ok(())
    }

    /// How each upstream has been answering lately.
    pub fn upstream_health(&self) -> BTreeMap<String, UpstreamHealth> {
        self.inner
            .sources
            .iter()
            .map(|(name, s)| (name.to_string(), s.upstream.health()))
            .collect()
    }

    /// How this replica shares cold downloads with the others on its bucket, for the log.
    pub fn cluster_mode(&self) -> Option<String> {
        match &self.inner.cluster {
            Some(cluster) => Some(format!(
                "one upstream download across replicas: leases in the bucket, followers reach this replica at {}",
                cluster.advertise_url()
            )),
            None if self.inner.store.describe().starts_with("s3://") => Some(
                "no cluster.advertise_url: each replica downloads a cold archive from upstream on its own"
                    .to_owned(),
            ),
            None => None,
        }
    }

    /// Where the cache is: a directory, or a bucket with its local tier.
    pub fn storage(&self) -> String {
        self.inner.store.describe()
    }

    /// Whether the cache accepts writes now (a probe written and removed).
    pub async fn cache_writable(&self) -> Result<(), MirrorError> {
        Ok(self.inner.store.probe_writable().await?)
    }

    /// The public URL prefix ("" for request-relative URLs).
    pub fn public_base(&self) -> &str {
        &self.inner.public_base
    }

    fn source(&self, name: &UpstreamName) -> Result<&Source, MirrorError> {
        self.inner
            .sources
            .get(name)
            .ok_or_else(|| MirrorError::UnknownUpstream(name.to_string()))
    }
}

/// For the operations (`crate::ops`): the store, and what the core knows of its upstreams and
/// routes.
impl Mirror {
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether an upstream of this name is configured (and so can verify what is cached for it).
    pub fn has_upstream(&self, name: &UpstreamName) -> bool {
        self.inner.sources.contains_key(name)
    }

    /// Every upstream: name, URL and health.
    pub fn upstreams(&self) -> Vec<(String, String, UpstreamHealth)> {
        self.inner
            .sources
            .iter()
            .map(|(name, s)| (name.to_string(), s.upstream.url(), s.upstream.health()))
            .collect()
    }

    /// Every route: private namespaces and network-mirror origins with their upstreams.
    pub fn routes(&self) -> RouteTable {
        self.inner.routes.describe()
    }

    /// How often a cached archive was served since start-up.
    /// Notes that what is cached changed (a release or an archive stored or removed).
    pub fn note_change(&self) {
        self.inner
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many changes to what is cached were noted since start-up.
    pub fn changes(&self) -> u64 {
        self.inner
            .changes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn hits_of(&self, file: &FileKey) -> u64 {
        self.inner
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(file)
            .copied()
            .unwrap_or(0)
    }

    /// Counts one serving of a cached archive, for the status page.
    fn count_hit(&self, file: &FileKey) {
        let mut hits = self
            .inner
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match hits.get_mut(file) {
            Some(count) => *count += 1,
            // The key is copied once, at a file's first hit.
            None => {
                hits.insert(file.clone(), 1);
            }
        }
    }
}

/// One source per `[upstreams.NAME]`: its client, and the keys it is trusted to sign with
/// (HashiCorp's built in, plus `signing_keys`).
async fn sources(config: &Config) -> Result<BTreeMap<UpstreamName, Source>, SetupError> {
    let mut sources = BTreeMap::new();
    for (name, upstream) in &config.upstreams {
        let name = name.clone();
        let mut keyring = Keyring::hashicorp()?;
        for path in &upstream.signing_keys {
            let armored =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| SetupError::SigningKeyFile {
                        upstream: name.to_string(),
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            keyring.add(TrustedKey::parse(&armored, &path.display().to_string())?);
        }
        let key_ids = keyring
            .keys()
            .iter()
            .map(|k| k.short_id().to_owned())
            .collect();
        let (pin_keys, allow_unsigned) = (upstream.pin_keys, upstream.allow_unsigned);
        let policy = FetchPolicy::from(upstream);
        let upstream: Box<dyn Upstream> = match upstream.kind {
            UpstreamKind::Releases => {
                let rules = FetchRules {
                    proxy: upstream.proxy.clone(),
                    ..FetchRules::default()
                };
                let http = HttpClient::with_rules(name.as_str(), policy, rules)?;
                Box::new(ReleasesUpstream::new(
                    name.clone(),
                    &upstream.url,
                    http,
                    key_ids,
                ))
            }
            UpstreamKind::Registry => {
                let rules = registry_rules(&name, upstream).await?;
                let http = HttpClient::with_rules(name.as_str(), policy, rules)?;
                Box::new(RegistryUpstream::new(name.clone(), &upstream.url, http))
            }
        };
        sources.insert(
            name,
            Source {
                upstream,
                keyring,
                pin_keys,
                allow_unsigned,
            },
        );
    }
    Ok(sources)
}

/// Where a registry upstream's client may go: the registry itself (the only host that gets
/// the token), `download_hosts`, redirects checked hop by hop; plain http only when the
/// registry's own URL is http.
async fn registry_rules(
    name: &UpstreamName,
    upstream: &UpstreamConfig,
) -> Result<FetchRules, SetupError> {
    let token = match &upstream.token_file {
        Some(path) => {
            let text =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| SetupError::TokenFile {
                        upstream: name.to_string(),
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            Some(text.trim().to_owned()).filter(|t| !t.is_empty())
        }
        None => None,
    };
    Ok(FetchRules {
        home: HostPattern::exactly(&upstream.url),
        allowed_hosts: upstream.download_hosts.clone(),
        allow_http: upstream.url.scheme() == "http",
        max_redirects: MAX_REDIRECTS,
        token,
        proxy: upstream.proxy.clone(),
        hosts_key: format!("upstreams.{name}.download_hosts"),
    })
}

/// Redirects followed per request to a registry's files (GitHub answers with one).
const MAX_REDIRECTS: u8 = 5;

/// moka hands every waiter the same `Arc`ed error; callers want an owned one.
fn unshare(error: Arc<MirrorError>) -> MirrorError {
    Arc::unwrap_or_clone(error)
}

/// `[cluster]` for a mirror on a bucket, when it has an `advertise_url`.
fn cluster_of(config: &Config) -> Result<Option<cluster::Cluster>, SetupError> {
    let Some(advertise) = &config.cluster.advertise_url else {
        return Ok(None);
    };
    let trusted = config.tls.as_ref().map(|tls| tls.cert.as_path());
    let peers = crate::upstream::peer::PeerClient::new(trusted, config.cluster.lease_ttl)?;
    Ok(Some(cluster::Cluster::new(
        advertise.clone(),
        config.cluster.lease_ttl,
        peers,
    )))
}

/// The bucket `[storage]` names, with its secret read from its file; `None` for the disk.
fn bucket_settings(storage: &StorageConfig) -> Result<Option<BucketSettings>, SetupError> {
    let (StorageKind::S3, Some(bucket)) = (storage.kind, &storage.bucket) else {
        return Ok(None);
    };
    let credentials = match (&storage.access_key_id, &storage.secret_access_key_file) {
        (Some(id), Some(path)) => {
            let secret = std::fs::read_to_string(path).map_err(|e| SetupError::SecretKeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Some((id.clone(), secret.trim().to_owned()))
        }
        _ => None,
    };
    Ok(Some(BucketSettings {
        bucket: bucket.clone(),
        prefix: storage.prefix.clone(),
        endpoint: storage
            .endpoint
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned()),
        region: storage.region.clone(),
        credentials,
    }))
}
