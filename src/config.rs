//! Configuration: figment layers, lowest first — built-in defaults, the TOML file, then
//! `TFMIRROR_<SECTION>__<KEY>` environment variables. Every struct denies unknown fields, so a
//! typo is an error that names the key and the file instead of a silently ignored setting.
//! Names, addresses, constraints, platforms and sizes deserialise straight into typed values
//! (the `protocol` names, `ByteSize`), so a bad value is refused with its key path while the file is read and
//! nothing downstream parses config strings again; `validate` then checks what types cannot
//! (cross-references and bounds). Each struct's defaults live in one `Default` impl (or
//! `UpstreamConfig::new`), which both serde and `Config::default()` use.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bytesize::ByteSize;
use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::protocol::{
    constraints::VersionConstraints, HostPattern, Namespace, NamespacePattern, Origin, Platform,
    ProviderAddress, ProviderPattern, ProviderType, UpstreamName, Version,
};

/// The config file `serve` reads when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/tfmirror.toml";
/// Shown instead of a secret.
pub const REDACTED: &str = "<redacted>";
/// Environment variables with this prefix override the file (`TFMIRROR_SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "TFMIRROR_";
/// Longest duration any key accepts, shown as `MAX_DURATION_SHOWN`: far past any sane TTL or
/// timeout, and small enough that adding it to `Instant::now()` or subtracting it from
/// `SystemTime::now()` cannot overflow on any platform we build for.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);
const MAX_DURATION_SHOWN: &str = "10y";
/// Largest size any key accepts (1 PiB): sums and comparisons of cache sizes stay far from
/// `u64::MAX`.
pub const MAX_SIZE: ByteSize = ByteSize::pib(1);
const MAX_SIZE_SHOWN: &str = "1 PiB";
/// Most concurrent fetches per upstream: far past what any upstream tolerates, and well
/// inside what a semaphore holds.
pub const MAX_CONCURRENT_FETCHES: usize = 4096;
/// Most releases verified in the background per version list rendering.
pub const MAX_PROTOCOL_FETCHES: usize = 1000;
/// The upstream `Config::default()` configures.
const HASHICORP_RELEASES: &str = "https://releases.hashicorp.com";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Absent: plain HTTP (behind a TLS-terminating proxy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    pub cache: CacheConfig,
    pub upstreams: BTreeMap<UpstreamName, UpstreamConfig>,
    /// Private namespace -> upstream, for `<host>/<namespace>/<type>` source addresses.
    pub namespaces: BTreeMap<NamespacePattern, NamespaceConfig>,
    /// Origin `hostname/namespace` -> upstream, for the network mirror protocol under `/mirror/`.
    pub mirrors: BTreeMap<Origin, MirrorConfig>,
    /// Absent: anyone who can reach the server may use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Providers `tfmirror prefetch` fills the cache with, and `gc` never evicts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefetch: Vec<PrefetchConfig>,
    /// Which providers may be served at all.
    #[serde(skip_serializing_if = "PolicyConfig::is_open")]
    pub policy: PolicyConfig,
    /// Where the cache lives besides `cache.dir`: nowhere (`disk`) or a shared bucket.
    #[serde(skip_serializing_if = "StorageConfig::is_disk")]
    pub storage: StorageConfig,
    /// How replicas on one bucket find each other (one upstream download across replicas).
    #[serde(skip_serializing_if = "ClusterConfig::is_unset")]
    pub cluster: ClusterConfig,
}

/// `[policy]`: `NAMESPACE/TYPE` patterns, `*` for a whole segment. A provider is served when
/// it matches an `allow` pattern and no `deny` pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub allow: Vec<ProviderPattern>,
    pub deny: Vec<ProviderPattern>,
    /// A version is hidden from lists, and refused, until this long after this mirror first
    /// saw it upstream. Unset: no quarantine.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    pub min_release_age: Option<Duration>,
    /// Versions served however young (`"hashicorp/aws 5.80.1"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_young: Vec<YoungException>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            allow: vec![ProviderPattern::any()],
            deny: Vec::new(),
            min_release_age: None,
            allow_young: Vec::new(),
        }
    }
}

/// One `policy.allow_young` entry: `NAMESPACE/TYPE VERSION`. For an upstream without
/// namespaces (a releases site), NAMESPACE is the upstream's name or `hashicorp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct YoungException {
    pub namespace: Namespace,
    pub provider: ProviderType,
    pub version: Version,
}

impl TryFrom<String> for YoungException {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| format!("allow_young entry {text:?}: {why}");
        let (address, version) = text
            .split_once(' ')
            .ok_or_else(|| bad("must be \"NAMESPACE/TYPE VERSION\""))?;
        let (namespace, provider) = address
            .split_once('/')
            .ok_or_else(|| bad("must be \"NAMESPACE/TYPE VERSION\""))?;
        Ok(Self {
            namespace: Namespace::try_from(namespace).map_err(|e| bad(&e.to_string()))?,
            provider: ProviderType::try_from(provider).map_err(|e| bad(&e.to_string()))?,
            version: Version::try_from(version.trim()).map_err(|e| bad(&e.to_string()))?,
        })
    }
}

impl From<YoungException> for String {
    fn from(e: YoungException) -> String {
        format!("{}/{} {}", e.namespace, e.provider, e.version)
    }
}

impl PolicyConfig {
    fn is_open(&self) -> bool {
        self == &Self::default()
    }
}

/// One `[[prefetch]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchConfig {
    /// `NAMESPACE/TYPE` (a `[namespaces]` name) or `HOST/NAMESPACE/TYPE` (a `[mirrors]` origin).
    pub provider: ProviderAddress,
    /// Terraform version constraints, e.g. `"~> 5.0"`; default: every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<VersionConstraints>,
    /// `OS_ARCH` platforms to fetch.
    #[serde(with = "os_arch_list")]
    pub platforms: Vec<Platform>,
}

/// Client authentication: bearer tokens for the JSON endpoints, signed time-limited URLs for
/// the files (Terraform sends no credentials when it downloads those).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted `Authorization: Bearer` tokens.
    pub tokens: Vec<String>,
    /// A file with more tokens, one per line (`#` starts a comment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Key that signs file URLs. Default: random at start-up, so URLs handed out before a
    /// restart stop working; replicas behind one load balancer need the same secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<String>,
    /// How long a signed file URL stays valid.
    #[serde(with = "humantime_serde")]
    pub url_ttl: Duration,
    /// Serve `/metrics` without a token, for scrapers that cannot send one. The status page
    /// and the JSON endpoints still need one.
    pub open_metrics: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            tokens_file: None,
            url_secret: None,
            url_ttl: Duration::from_secs(3600),
            open_metrics: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Prefix for URLs in responses; default: URLs relative to the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<Url>,
    /// On SIGTERM/SIGINT, how long in-flight requests may still run.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Generate a self-signed certificate for localhost when the files are missing.
    #[serde(default)]
    pub self_signed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// How long version lists are trusted before upstream is asked again.
    #[serde(with = "humantime_serde")]
    pub metadata_ttl: Duration,
    /// Largest archive accepted from upstream: bytes (`2147483648`) or a size (`"2 GiB"`).
    #[serde(with = "exact_size")]
    pub max_archive_bytes: ByteSize,
    /// How long an upstream "not found" is remembered, so a typo'd provider does not hammer
    /// upstream.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// New downloads are refused while the cache's filesystem has less space free than this
    /// (bytes or "512MB"); what is cached is still served.
    #[serde(with = "exact_size")]
    pub min_free_space: ByteSize,
    /// Largest size of the disk cache ("50GB"); least-recently-used archives are evicted past
    /// it, by `serve` every `gc_interval` and by `tfmirror gc`. Unset: no limit.
    #[serde(skip_serializing_if = "Option::is_none", with = "exact_size::option")]
    pub max_size: Option<ByteSize>,
    /// How often `serve` checks `max_size`.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// Archives served this recently are never evicted (a client may be downloading one).
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// How many releases whose plugin protocols are unknown (the newest first) are verified
    /// in the background each time a version list is rendered, so the list can carry their
    /// `protocols`. `0` turns it off.
    pub protocol_fetches: usize,
    /// Once any platform of a version is fetched, fetch and hash its other platforms in the
    /// background, so `<version>.json` lists every platform's `h1:`.
    pub complete_hashes: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("cache"),
            metadata_ttl: Duration::from_secs(600),
            max_archive_bytes: ByteSize::gib(2),
            negative_ttl: Duration::from_secs(60),
            min_free_space: ByteSize::mib(64),
            max_size: None,
            gc_interval: Duration::from_secs(300),
            gc_grace: Duration::from_secs(600),
            protocol_fetches: 20,
            complete_hashes: false,
        }
    }
}

/// What an upstream speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// A releases.hashicorp.com-style site.
    #[default]
    Releases,
    /// The Provider Registry Protocol (registry.terraform.io, registry.opentofu.org, private).
    Registry,
}

/// One `[upstreams.NAME]` table. `url` is required; every other key defaults to
/// `UpstreamConfig::new`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "UpstreamFields")]
pub struct UpstreamConfig {
    /// What the upstream speaks.
    pub kind: UpstreamKind,
    /// A releases.hashicorp.com-style site, or a registry (service discovery at
    /// `/.well-known/terraform.json`).
    pub url: Url,
    /// Registries: hosts their documents' file URLs (and redirects) may point at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub download_hosts: Vec<HostPattern>,
    /// Registries: a file with a bearer token, sent to the registry's own host only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Egress proxy for this upstream (else `HTTPS_PROXY`/`HTTP_PROXY`, minus `NO_PROXY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Url>,
    /// Registries: serve providers whose registry publishes no signing key, checked against
    /// their digests alone and offered only through the network mirror.
    pub allow_unsigned: bool,
    /// Refuse a version signed by another key than the provider's earlier versions until that
    /// key is in `signing_keys`.
    pub pin_keys: bool,
    /// Extra ASCII-armored public key files trusted besides HashiCorp's built-in key.
    pub signing_keys: Vec<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to the first byte of the answer.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of an answer.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Extra attempts after a connection error, timeout, 5xx or 429.
    pub retries: u32,
    /// First backoff ceiling; it doubles per attempt, with full jitter.
    #[serde(with = "humantime_serde")]
    pub retry_initial_delay: Duration,
    /// Longest backoff; a `Retry-After` asking for more is not waited for.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Most requests in flight to this upstream at once.
    pub max_concurrent_fetches: usize,
}

impl UpstreamConfig {
    /// An upstream at `url` with the default timeouts, retries and concurrency.
    pub fn new(url: Url) -> Self {
        Self {
            kind: UpstreamKind::default(),
            url,
            download_hosts: Vec::new(),
            token_file: None,
            proxy: None,
            allow_unsigned: false,
            pin_keys: false,
            signing_keys: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            retries: 3,
            retry_initial_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(10),
            max_concurrent_fetches: 16,
        }
    }
}

/// What an `[upstreams.NAME]` table may say: `url` and any of the settings, the rest taken
/// from `UpstreamConfig::new`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFields {
    kind: Option<UpstreamKind>,
    url: Url,
    download_hosts: Option<Vec<HostPattern>>,
    token_file: Option<PathBuf>,
    proxy: Option<Url>,
    allow_unsigned: Option<bool>,
    pin_keys: Option<bool>,
    signing_keys: Option<Vec<PathBuf>>,
    #[serde(default, with = "humantime_serde::option")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    first_byte_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    read_timeout: Option<Duration>,
    retries: Option<u32>,
    #[serde(default, with = "humantime_serde::option")]
    retry_initial_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    retry_max_delay: Option<Duration>,
    max_concurrent_fetches: Option<usize>,
}

impl From<UpstreamFields> for UpstreamConfig {
    fn from(fields: UpstreamFields) -> Self {
        let defaults = UpstreamConfig::new(fields.url);
        Self {
            kind: fields.kind.unwrap_or(defaults.kind),
            download_hosts: fields.download_hosts.unwrap_or(defaults.download_hosts),
            token_file: fields.token_file,
            proxy: fields.proxy,
            allow_unsigned: fields.allow_unsigned.unwrap_or(defaults.allow_unsigned),
            pin_keys: fields.pin_keys.unwrap_or(defaults.pin_keys),
            signing_keys: fields.signing_keys.unwrap_or(defaults.signing_keys),
            connect_timeout: fields.connect_timeout.unwrap_or(defaults.connect_timeout),
            first_byte_timeout: fields
                .first_byte_timeout
                .unwrap_or(defaults.first_byte_timeout),
            read_timeout: fields.read_timeout.unwrap_or(defaults.read_timeout),
            retries: fields.retries.unwrap_or(defaults.retries),
            retry_initial_delay: fields
                .retry_initial_delay
                .unwrap_or(defaults.retry_initial_delay),
            retry_max_delay: fields.retry_max_delay.unwrap_or(defaults.retry_max_delay),
            max_concurrent_fetches: fields
                .max_concurrent_fetches
                .unwrap_or(defaults.max_concurrent_fetches),
            url: defaults.url,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Name of an `[upstreams.NAME]` table.
    pub upstream: UpstreamName,
    /// The namespace at a registry upstream (`integrations` for a private `gh`); default:
    /// the namespace as the client wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_namespace: Option<Namespace>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Name of an `[upstreams.NAME]` table.
    pub upstream: UpstreamName,
}

impl Default for Config {
    fn default() -> Self {
        let hashicorp = UpstreamName::try_from("hashicorp").unwrap_or_else(|_| unreachable!());
        let url = Url::parse(HASHICORP_RELEASES).unwrap_or_else(|_| unreachable!());
        Self {
            server: ServerConfig::default(),
            tls: None,
            cache: CacheConfig::default(),
            upstreams: BTreeMap::from([(hashicorp, UpstreamConfig::new(url))]),
            namespaces: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            auth: None,
            prefetch: Vec::new(),
            policy: PolicyConfig::default(),
            storage: StorageConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// `[[prefetch]] platforms` as `OS_ARCH` strings. `Platform`'s own serde form stays the
/// `{os, arch}` table that release records on disk are written with.
mod os_arch_list {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::protocol::{NameError, Platform};

    #[derive(Deserialize)]
    #[serde(try_from = "String")]
    struct OsArch(Platform);

    impl TryFrom<String> for OsArch {
        type Error = NameError;
        fn try_from(text: String) -> Result<Self, NameError> {
            Platform::try_from(text.as_str()).map(Self)
        }
    }

    pub fn serialize<S: Serializer>(
        platforms: &[Platform],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(platforms.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Platform>, D::Error> {
        Ok(Vec::<OsArch>::deserialize(deserializer)?
            .into_iter()
            .map(|p| p.0)
            .collect())
    }
}

/// Sizes read as bytes (`2147483648`) or text (`"64 MiB"`), and written back as text only
/// when that text reads back as the same number of bytes (`"46.6 GiB"` would not).
mod exact_size {
    use bytesize::ByteSize;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Shown {
        Text(String),
        Bytes(u64),
    }

    fn shown(size: ByteSize) -> Shown {
        let text = size.to_string();
        if text.parse::<ByteSize>().ok() == Some(size) {
            Shown::Text(text)
        } else {
            Shown::Bytes(size.as_u64())
        }
    }

    pub fn serialize<S: Serializer>(size: &ByteSize, serializer: S) -> Result<S::Ok, S::Error> {
        shown(*size).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        ByteSize::deserialize(deserializer)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            size: &Option<ByteSize>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            size.map(shown).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<ByteSize>, D::Error> {
            Option::<ByteSize>::deserialize(deserializer)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration in {file}: {message}")]
    Rule { file: String, message: String },
}

impl Config {
    /// Loads defaults, then `path` (if it exists or was asked for explicitly), then environment.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        if required && !path.exists() {
            return Err(ConfigError::Missing(path.to_owned()));
        }
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::file_exact(path))
                .merge(Env::prefixed(ENV_PREFIX).split("__")),
            &path.display().to_string(),
        )
    }

    /// Parses a config from TOML text (tests and `config check` use it).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
            "inline TOML",
        )
    }

    fn from_figment(figment: Figment, file: &str) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            ConfigError::Invalid(
                e.into_iter()
                    .map(describe_figment_error)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// The rules the types cannot express: cross-references between tables and bounds.
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let rule = |message: String| ConfigError::Rule {
            file: file.to_owned(),
            message,
        };
        let no_upstream = |key: String, upstream: &UpstreamName| {
            rule(format!(
                "{key}.upstream: no [upstreams.{upstream}] table is configured"
            ))
        };
        for (name, ns) in &self.namespaces {
            let Some(upstream) = self.upstreams.get(&ns.upstream) else {
                return Err(no_upstream(format!("namespaces.{name}"), &ns.upstream));
            };
            if ns.upstream_namespace.is_some() && upstream.kind != UpstreamKind::Registry {
                return Err(rule(format!(
                    "namespaces.{name}.upstream_namespace: upstream {} is a releases site, which has no namespaces",
                    ns.upstream
                )));
            }
        }
        for (origin, mirror) in &self.mirrors {
            if !self.upstreams.contains_key(&mirror.upstream) {
                return Err(no_upstream(
                    format!("mirrors.\"{origin}\""),
                    &mirror.upstream,
                ));
            }
        }
        for (name, upstream) in &self.upstreams {
            if upstream.max_concurrent_fetches == 0 {
                return Err(rule(format!(
                    "upstreams.{name}.max_concurrent_fetches: must be at least 1"
                )));
            }
            if !matches!(upstream.url.scheme(), "http" | "https") {
                return Err(rule(format!(
                    "upstreams.{name}.url: must be an http(s) URL"
                )));
            }
            if upstream
                .proxy
                .as_ref()
                .is_some_and(|p| !matches!(p.scheme(), "http" | "https"))
            {
                return Err(rule(format!(
                    "upstreams.{name}.proxy: must be an http(s) URL"
                )));
            }
            let registry_only = [
                ("download_hosts", !upstream.download_hosts.is_empty()),
                ("token_file", upstream.token_file.is_some()),
                ("allow_unsigned", upstream.allow_unsigned),
            ];
            if upstream.kind == UpstreamKind::Releases {
                if let Some((key, _)) = registry_only.iter().find(|(_, set)| *set) {
                    return Err(rule(format!(
                        "upstreams.{name}.{key}: only for kind = \"registry\""
                    )));
                }
            }
        }
        if let Some(url) = &self.server.public_url {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(rule("server.public_url: must be an http(s) URL".to_owned()));
            }
        }
        if let Some(auth) = &self.auth {
            if auth.tokens.is_empty() && auth.tokens_file.is_none() {
                return Err(rule(
                    "auth: set auth.tokens or auth.tokens_file (or remove [auth] to serve without authentication)"
                        .to_owned(),
                ));
            }
            if auth
                .tokens
                .iter()
                .any(|t| t.trim().is_empty() || t.contains(char::is_whitespace))
            {
                return Err(rule(
                    "auth.tokens: tokens must be non-empty and contain no whitespace".to_owned(),
                ));
            }
            if auth.url_ttl.is_zero() {
                return Err(rule("auth.url_ttl: must be longer than zero".to_owned()));
            }
        }
        for (i, entry) in self.prefetch.iter().enumerate() {
            if entry.platforms.is_empty() {
                return Err(rule(format!(
                    "prefetch[{i}].platforms: list at least one OS_ARCH"
                )));
            }
        }
        if self.cache.gc_interval.is_zero() {
            return Err(rule(
                "cache.gc_interval: must be longer than zero".to_owned(),
            ));
        }
        if self.cache.metadata_ttl.is_zero() {
            return Err(rule(
                "cache.metadata_ttl: must be longer than zero".to_owned(),
            ));
        }
        self.storage.validate(&rule)?;
        self.cluster.validate(self.storage.kind, &rule)?;
        if let Some(key) = self
            .durations()
            .into_iter()
            .find_map(|(key, d)| (d > MAX_DURATION).then_some(key))
        {
            return Err(rule(format!("{key}: must be at most {MAX_DURATION_SHOWN}")));
        }
        if let Some(key) = self
            .sizes()
            .into_iter()
            .find_map(|(key, s)| (s > MAX_SIZE).then_some(key))
        {
            return Err(rule(format!("{key}: must be at most {MAX_SIZE_SHOWN}")));
        }
        if self.cache.protocol_fetches > MAX_PROTOCOL_FETCHES {
            return Err(rule(format!(
                "cache.protocol_fetches: must be at most {MAX_PROTOCOL_FETCHES}"
            )));
        }
        for (name, upstream) in &self.upstreams {
            if upstream.max_concurrent_fetches > MAX_CONCURRENT_FETCHES {
                return Err(rule(format!(
                    "upstreams.{name}.max_concurrent_fetches: must be at most {MAX_CONCURRENT_FETCHES}"
                )));
            }
        }
        Ok(())
    }

    /// Every duration in the config, by key.
    fn durations(&self) -> Vec<(String, Duration)> {
        let cache = &self.cache;
        let mut all = vec![
            (
                "server.shutdown_timeout".to_owned(),
                self.server.shutdown_timeout,
            ),
            ("cache.metadata_ttl".to_owned(), cache.metadata_ttl),
            ("cache.negative_ttl".to_owned(), cache.negative_ttl),
            ("cache.gc_interval".to_owned(), cache.gc_interval),
            ("cache.gc_grace".to_owned(), cache.gc_grace),
            ("cluster.lease_ttl".to_owned(), self.cluster.lease_ttl),
        ];
        if let Some(auth) = &self.auth {
            all.push(("auth.url_ttl".to_owned(), auth.url_ttl));
        }
        if let Some(age) = self.policy.min_release_age {
            all.push(("policy.min_release_age".to_owned(), age));
        }
        for (name, u) in &self.upstreams {
            for (key, d) in [
                ("connect_timeout", u.connect_timeout),
                ("first_byte_timeout", u.first_byte_timeout),
                ("read_timeout", u.read_timeout),
                ("retry_initial_delay", u.retry_initial_delay),
                ("retry_max_delay", u.retry_max_delay),
            ] {
                all.push((format!("upstreams.{name}.{key}"), d));
            }
        }
        all
    }

    /// Every size in the config, by key.
    fn sizes(&self) -> Vec<(&'static str, ByteSize)> {
        let cache = &self.cache;
        let mut all = vec![
            ("cache.max_archive_bytes", cache.max_archive_bytes),
            ("cache.min_free_space", cache.min_free_space),
        ];
        if let Some(max_size) = cache.max_size {
            all.push(("cache.max_size", max_size));
        }
        all
    }

    /// A copy safe to print: tokens and secrets replaced.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        for upstream in copy.upstreams.values_mut() {
            upstream.url = redact_url(&upstream.url);
            upstream.proxy = upstream.proxy.as_ref().map(redact_url);
        }
        copy.storage = copy.storage.redacted();
        if let Some(auth) = &mut copy.auth {
            auth.tokens = vec![REDACTED.to_owned(); auth.tokens.len()];
            if auth.url_secret.is_some() {
                auth.url_secret = Some(REDACTED.to_owned());
            }
        }
        copy
    }

    /// The public URL prefix without a trailing slash, or "" for request-relative URLs.
    pub fn public_base(&self) -> String {
        self.server
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }
}

/// Where the cache is kept besides `cache.dir`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Only `cache.dir`.
    #[default]
    Disk,
    /// An S3-compatible bucket shared by replicas, `cache.dir` as a local tier in front.
    S3,
}

/// `[storage]`: the bucket replicas share. Credentials: `access_key_id` with
/// `secret_access_key_file`, else the standard AWS environment variables or profile.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StorageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket (`mirror/`), for a bucket shared with other data.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Any S3-compatible service; unset: AWS S3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Url>,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<PathBuf>,
    /// How clients get archives that are in the bucket.
    pub redirect: StorageRedirect,
}

/// `storage.redirect`: whether clients are sent to the bucket for archives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageRedirect {
    /// Every byte goes through the mirror (firewalled clients often cannot reach the bucket).
    #[default]
    None,
    /// A `GET` of a verified archive is answered with a redirect to a presigned bucket URL.
    Presigned,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            kind: StorageKind::Disk,
            bucket: None,
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key_file: None,
            redirect: StorageRedirect::None,
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.redacted();
        f.debug_struct("StorageConfig")
            .field("kind", &shown.kind)
            .field("bucket", &shown.bucket)
            .field("prefix", &shown.prefix)
            .field("endpoint", &shown.endpoint.as_ref().map(Url::as_str))
            .field("region", &shown.region)
            .field("access_key_id", &shown.access_key_id)
            .field("secret_access_key_file", &shown.secret_access_key_file)
            .field("redirect", &shown.redirect)
            .finish()
    }
}

impl StorageConfig {
    fn is_disk(&self) -> bool {
        *self == Self::default()
    }

    /// A copy safe to show: the access key id and any credentials in the endpoint replaced.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        copy.endpoint = copy.endpoint.as_ref().map(redact_url);
        if copy.access_key_id.is_some() {
            copy.access_key_id = Some(REDACTED.to_owned());
        }
        copy
    }

    fn validate(&self, rule: &dyn Fn(String) -> ConfigError) -> Result<(), ConfigError> {
        let s3_only = [
            ("bucket", self.bucket.is_some()),
            ("prefix", !self.prefix.is_empty()),
            ("endpoint", self.endpoint.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            (
                "secret_access_key_file",
                self.secret_access_key_file.is_some(),
            ),
            ("redirect", self.redirect != StorageRedirect::None),
        ];
        if self.kind == StorageKind::Disk {
            if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err(rule(format!("storage.{key}: only for kind = \"s3\"")));
            }
            return Ok(());
        }
        match &self.bucket {
            None => {
                return Err(rule(
                    "storage.bucket: kind = \"s3\" needs a bucket".to_owned(),
                ))
            }
            Some(b) if b.is_empty() || b.contains(['/', ' ']) => {
                return Err(rule(format!("storage.bucket: {b:?} is not a bucket name")))
            }
            Some(_) => {}
        }
        if self
            .prefix
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err(rule("storage.prefix: no . or .. segments".to_owned()));
        }
        if self
            .endpoint
            .as_ref()
            .is_some_and(|e| !matches!(e.scheme(), "http" | "https"))
        {
            return Err(rule("storage.endpoint: must be an http(s) URL".to_owned()));
        }
        if self.region.trim().is_empty() {
            return Err(rule("storage.region: must not be empty".to_owned()));
        }
        match (&self.access_key_id, &self.secret_access_key_file) {
            (Some(_), None) => Err(rule(
                "storage.access_key_id: set storage.secret_access_key_file too".to_owned(),
            )),
            (None, Some(_)) => Err(rule(
                "storage.secret_access_key_file: set storage.access_key_id too".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

/// `[cluster]`: what replicas on one bucket need to share a download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How the other replicas reach this one (`https://10.0.0.5:8443`). Unset: no leases,
    /// each replica downloads a cold archive on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<Url>,
    /// How long a download's lease lasts without being renewed (it is renewed every third
    /// of this while the download runs).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

/// Shortest `cluster.lease_ttl`: renewals every third of it must still get through a bucket
/// request.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(300);

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            advertise_url: None,
            lease_ttl: Duration::from_secs(30),
        }
    }
}

impl ClusterConfig {
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    fn validate(
        &self,
        storage: StorageKind,
        rule: &dyn Fn(String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(url) = &self.advertise_url {
            if storage != StorageKind::S3 {
                return Err(rule(
                    "cluster.advertise_url: only with storage.kind = \"s3\" (replicas share a bucket)"
                        .to_owned(),
                ));
            }
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(rule(
                    "cluster.advertise_url: must be an http(s) URL with a host".to_owned(),
                ));
            }
            if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
                return Err(rule(
                    "cluster.advertise_url: scheme, host and port only (no path, query or user)"
                        .to_owned(),
                ));
            }
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            return Err(rule("cluster.lease_ttl: must be at least 300ms".to_owned()));
        }
        Ok(())
    }
}

/// `url` safe to show: a user name and password in it replaced by `redacted`.
pub fn redact_url(url: &Url) -> Url {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("redacted");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    shown
}

/// One figment error as "key `a.b` in FILE: message".
fn describe_figment_error(error: figment::Error) -> String {
    let key = if error.path.is_empty() {
        String::new()
    } else {
        format!("key `{}`", key_path(&error.path))
    };
    let source = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => src.to_string(),
            None => m.name.to_string(),
        })
        .unwrap_or_default();
    let place = match (key.is_empty(), source.is_empty()) {
        (false, false) => format!("{key} in {source}: "),
        (false, true) => format!("{key}: "),
        (true, false) => format!("{source}: "),
        (true, true) => String::new(),
    };
    format!("{place}{}", error.kind)
}

/// A figment error path as the config is written: `prefetch[0].platforms[1]`,
/// `mirrors."registry.terraform.io"`. List indexes are bracketed; a key is quoted when a dot,
/// a quote or white space in it would make the path ambiguous.
fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if !out.is_empty() && !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if segment.is_empty()
            || segment.contains(['.', '"'])
            || segment.contains(char::is_whitespace)
        {
            out.push_str(&format!("{segment:?}"));
        } else {
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ns(name: &str) -> Namespace {
        Namespace::try_from(name).unwrap()
    }

    fn upstream(name: &str) -> UpstreamName {
        UpstreamName::try_from(name).unwrap()
    }

    /// The error `toml` gives, which must name `key`.
    fn refused(toml: &str, key: &str) -> String {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{key} not named in: {err}");
        err
    }

    const PREFETCH: &str = "[[prefetch]]\nprovider = \"hashicorp/aws\"\n";

    const S3: &str = "[storage]\nkind = \"s3\"\nbucket = \"tfmirror\"\n";

    #[test]
    fn storage_is_the_disk_unless_s3_is_asked_for_with_a_bucket() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.storage.kind, StorageKind::Disk);
        assert!(!toml::to_string(&config).unwrap().contains("[storage]"));
        let config = Config::from_toml(&format!(
            "{S3}prefix = \"mirror/\"\nendpoint = \"http://127.0.0.1:8333\"\nregion = \"eu-west-1\"\n"
        ))
        .unwrap();
        assert_eq!(config.storage.kind, StorageKind::S3);
        assert_eq!(config.storage.bucket.as_deref(), Some("tfmirror"));
        assert_eq!(config.storage.region, "eu-west-1");
        refused("[storage]\nkind = \"s3\"\n", "storage.bucket");
        refused("[storage]\nbucket = \"tfmirror\"\n", "storage.bucket");
        refused("[storage]\nkind = \"s4\"\n", "storage.kind");
        refused("[storage]\nbukket = \"x\"\n", "bukket");
        refused(&format!("{S3}endpoint = \"ftp://x\"\n"), "storage.endpoint");
        refused(
            &format!("{S3}access_key_id = \"AKIA\"\n"),
            "storage.access_key_id",
        );
        refused(
            &format!("{S3}secret_access_key_file = \"/s\"\n"),
            "storage.secret_access_key_file",
        );
        refused(&format!("{S3}prefix = \"a/../b\"\n"), "storage.prefix");
        refused("[storage]\nredirect = \"presigned\"\n", "storage.redirect");
        refused(&format!("{S3}redirect = \"always\"\n"), "storage.redirect");
        let config = Config::from_toml(&format!("{S3}redirect = \"presigned\"\n")).unwrap();
        assert_eq!(config.storage.redirect, StorageRedirect::Presigned);
        assert_eq!(
            Config::from_toml(S3).unwrap().storage.redirect,
            StorageRedirect::None
        );
    }

    #[test]
    fn cluster_needs_the_bucket_and_a_plain_url() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.cluster.advertise_url, None);
        assert_eq!(config.cluster.lease_ttl, Duration::from_secs(30));
        assert!(!toml::to_string(&config).unwrap().contains("[cluster]"));
        let config = Config::from_toml(&format!(
            "{S3}[cluster]\nadvertise_url = \"https://10.0.0.5:8443\"\nlease_ttl = \"5s\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.cluster.advertise_url.as_ref().map(Url::as_str),
            Some("https://10.0.0.5:8443/")
        );
        assert_eq!(config.cluster.lease_ttl, Duration::from_secs(5));
        refused(
            "[cluster]\nadvertise_url = \"http://10.0.0.5:8443\"\n",
            "cluster.advertise_url",
        );
        for bad in ["ftp://10.0.0.5", "http://10.0.0.5/x/", "http://u@10.0.0.5"] {
            refused(
                &format!("{S3}[cluster]\nadvertise_url = \"{bad}\"\n"),
                "cluster.advertise_url",
            );
        }
        refused(
            &format!("{S3}[cluster]\nlease_ttl = \"100ms\"\n"),
            "cluster.lease_ttl",
        );
        refused(&format!("{S3}[cluster]\nadvertise = \"x\"\n"), "advertise");
    }

    #[test]
    fn storage_credentials_are_redacted() {
        let config = Config::from_toml(&format!(
            "{S3}endpoint = \"http://user:pw@127.0.0.1:8333\"\naccess_key_id = \"AKIASECRETID\"\nsecret_access_key_file = \"/run/s3-secret\"\n"
        ))
        .unwrap();
        for shown in [
            toml::to_string(&config.redacted()).unwrap(),
            format!("{:?}", config.storage),
        ] {
            assert!(!shown.contains("AKIASECRETID"), "{shown}");
            assert!(!shown.contains("pw@"), "{shown}");
            assert!(shown.contains("tfmirror"), "{shown}");
        }
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let config = Config::from_toml(include_str!("../config/tfmirror.toml")).unwrap();
        assert_eq!(config.server.listen.port(), 8443);
        assert_eq!(
            config.namespaces[&NamespacePattern::Exact(ns("myproviders"))].upstream,
            upstream("hashicorp")
        );
        assert!(config.tls.unwrap().self_signed);
        assert_eq!(
            config.namespaces[&NamespacePattern::Exact(ns("hashicorp"))].upstream,
            upstream("hashicorp")
        );
        let origin = Origin::try_from("registry.terraform.io/hashicorp").unwrap();
        assert_eq!(config.mirrors[&origin].upstream, upstream("hashicorp"));
        assert_eq!(config.cache.max_archive_bytes, ByteSize::gib(2));
    }

    #[test]
    fn serde_defaults_are_the_default_impls() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());
        assert_eq!(
            toml::from_str::<ServerConfig>("").unwrap(),
            ServerConfig::default()
        );
        assert_eq!(
            toml::from_str::<CacheConfig>("").unwrap(),
            CacheConfig::default()
        );
        assert_eq!(
            toml::from_str::<AuthConfig>("").unwrap(),
            AuthConfig::default()
        );
        let hashicorp: UpstreamConfig =
            toml::from_str("url = \"https://releases.hashicorp.com\"").unwrap();
        assert_eq!(
            hashicorp,
            Config::default().upstreams[&upstream("hashicorp")]
        );
    }

    #[test]
    fn an_upstream_needs_a_url() {
        refused("[upstreams.corp]\nretries = 1\n", "url");
    }

    #[test]
    fn the_effective_config_reads_back_the_same() {
        let text = format!(
            "[cache]\nmax_size = \"50GB\"\nmin_free_space = 1000001\n\
             [namespaces.hashicorp]\nupstream = \"hashicorp\"\n\
             [mirrors.\"registry.terraform.io/hashicorp\"]\nupstream = \"hashicorp\"\n\
             {PREFETCH}versions = \">= 1.2, < 2.0\"\nplatforms = [\"linux_amd64\", \"Darwin_ARM64\"]\n\
             [[prefetch]]\nprovider = \"Registry.Terraform.io/HashiCorp/AWS\"\nplatforms = [\"linux_arm64\"]\n"
        );
        let config = Config::from_toml(&text).unwrap();
        let shown = toml::to_string_pretty(&config).unwrap();
        assert!(
            shown.contains("provider = \"registry.terraform.io/hashicorp/aws\""),
            "{shown}"
        );
        assert!(shown.contains("versions = \">= 1.2, < 2.0\""), "{shown}");
        assert!(shown.contains("\"darwin_arm64\""), "{shown}");
        assert!(
            shown.contains("[mirrors.\"registry.terraform.io/hashicorp\"]"),
            "{shown}"
        );
        assert_eq!(Config::from_toml(&shown).unwrap(), config);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn namespaces_must_name_an_upstream() {
        refused(
            "[namespaces.x]\nupstream = \"nope\"\n",
            "namespaces.x.upstream",
        );
        refused(
            "[mirrors.\"example.com/x\"]\nupstream = \"nope\"\n",
            "mirrors.\"example.com/x\".upstream",
        );
    }

    #[test]
    fn namespace_names_are_checked() {
        refused(
            "[namespaces.\"a/b\"]\nupstream = \"hashicorp\"\n",
            "namespaces.a/b",
        );
        let config =
            Config::from_toml("[namespaces.MyProviders]\nupstream = \"hashicorp\"\n").unwrap();
        assert!(config
            .namespaces
            .contains_key(&NamespacePattern::Exact(ns("myproviders"))));
    }

    #[test]
    fn upstream_names_must_be_plain_names() {
        refused(
            "[upstreams.\"a/b\"]\nurl = \"https://x\"\n",
            "upstreams.a/b",
        );
        refused(
            "[namespaces.x]\nupstream = \"a/b\"\n",
            "namespaces.x.upstream",
        );
        refused(
            "[mirrors.\"example.com/x\"]\nupstream = \"../up\"\n",
            "mirrors.\"example.com/x\".upstream",
        );
    }

    #[test]
    fn mirror_keys_are_host_slash_namespace() {
        let config = Config::from_toml(
            "[mirrors.\"Registry.Terraform.io/HashiCorp\"]\nupstream = \"hashicorp\"\n",
        )
        .unwrap();
        let origin = config.mirrors.keys().next().unwrap();
        assert_eq!(
            (
                origin.hostname.as_str(),
                origin.namespace.to_string().as_str()
            ),
            ("registry.terraform.io", "hashicorp")
        );
        for bad in ["registry.terraform.io", "a/b/c", "../x"] {
            let toml = format!("[mirrors.\"{bad}\"]\nupstream = \"hashicorp\"\n");
            let shown = if bad.contains('.') {
                format!("mirrors.\"{bad}\"")
            } else {
                format!("mirrors.{bad}")
            };
            refused(&toml, &shown);
        }
    }

    #[test]
    fn prefetch_providers_are_addresses() {
        let config = Config::from_toml(&format!(
            "{PREFETCH}platforms = [\"linux_amd64\"]\n[[prefetch]]\nprovider = \"localhost:8443/Private/Thing\"\nplatforms = [\"linux_amd64\"]\n"
        ))
        .unwrap();
        assert_eq!(config.prefetch[0].provider.hostname, None);
        assert_eq!(
            config.prefetch[1].provider.to_string(),
            "localhost:8443/private/thing"
        );
        for bad in ["aws", "a/b/c/d", "hashicorp/a ws", "bad_host/x/y"] {
            refused(
                &format!("[[prefetch]]\nprovider = \"{bad}\"\nplatforms = [\"linux_amd64\"]\n"),
                "prefetch[0].provider",
            );
        }
    }

    #[test]
    fn prefetch_versions_are_constraints() {
        let config = Config::from_toml(&format!(
            "{PREFETCH}versions = \"~> 5.0\"\nplatforms = [\"linux_amd64\"]\n"
        ))
        .unwrap();
        let wanted = config.prefetch[0].versions.as_ref().unwrap();
        assert!(wanted.matches(&crate::protocol::Version::try_from("5.3.0").unwrap()));
        refused(
            &format!("{PREFETCH}versions = \"~> five\"\nplatforms = [\"linux_amd64\"]\n"),
            "prefetch[0].versions",
        );
    }

    #[test]
    fn prefetch_platforms_are_os_arch() {
        let config = Config::from_toml(&format!(
            "{PREFETCH}platforms = [\"linux_amd64\", \"Windows_386\"]\n"
        ))
        .unwrap();
        assert_eq!(config.prefetch[0].platforms[1].to_string(), "windows_386");
        refused(
            &format!("{PREFETCH}platforms = [\"linux_amd64\", \"linux\"]\n"),
            "prefetch[0].platforms[1]",
        );
        refused(
            &format!("{PREFETCH}platforms = []\n"),
            "prefetch[0].platforms",
        );
    }

    #[test]
    fn sizes_are_bytes_or_text() {
        let config = Config::from_toml(
            "[cache]\nmax_archive_bytes = 100\nmin_free_space = \"1 GiB\"\nmax_size = \"50GB\"\n",
        )
        .unwrap();
        assert_eq!(config.cache.max_archive_bytes.as_u64(), 100);
        assert_eq!(config.cache.min_free_space, ByteSize::gib(1));
        assert_eq!(config.cache.max_size, Some(ByteSize::gb(50)));
        let config = Config::from_toml("[cache]\nmax_archive_bytes = \"512 MiB\"\n").unwrap();
        assert_eq!(config.cache.max_archive_bytes, ByteSize::mib(512));
        for key in ["max_archive_bytes", "min_free_space", "max_size"] {
            refused(
                &format!("[cache]\n{key} = \"lots\"\n"),
                &format!("cache.{key}"),
            );
        }
    }

    #[test]
    fn durations_past_ten_years_are_refused_by_key() {
        for (table, key) in [
            ("server", "shutdown_timeout"),
            ("cache", "metadata_ttl"),
            ("cache", "negative_ttl"),
            ("cache", "gc_interval"),
            ("cache", "gc_grace"),
            ("upstreams.hashicorp", "connect_timeout"),
            ("upstreams.hashicorp", "first_byte_timeout"),
            ("upstreams.hashicorp", "read_timeout"),
            ("upstreams.hashicorp", "retry_initial_delay"),
            ("upstreams.hashicorp", "retry_max_delay"),
        ] {
            let url = if table.starts_with("upstreams") {
                "url = \"https://releases.hashicorp.com\"\n"
            } else {
                ""
            };
            let err = refused(
                &format!("[{table}]\n{url}{key} = \"1000000y\"\n"),
                &format!("{table}.{key}: must be at most 10y"),
            );
            assert!(!err.contains("panic"), "{err}");
            let at_limit = format!("[{table}]\n{url}{key} = \"10y\"\n");
            Config::from_toml(&at_limit).unwrap();
        }
        refused(
            "[auth]\ntokens = [\"t\"]\nurl_ttl = \"1000000y\"\n",
            "auth.url_ttl: must be at most 10y",
        );
    }

    #[test]
    fn sizes_past_a_pebibyte_are_refused_by_key() {
        for key in ["max_archive_bytes", "min_free_space", "max_size"] {
            refused(
                &format!("[cache]\n{key} = {}\n", i64::MAX),
                &format!("cache.{key}: must be at most 1 PiB"),
            );
            refused(
                &format!("[cache]\n{key} = \"16 EiB\"\n"),
                &format!("cache.{key}"),
            );
            Config::from_toml(&format!("[cache]\n{key} = \"1 PiB\"\n")).unwrap();
        }
        refused(
            "[upstreams.hashicorp]\nurl = \"https://x\"\nmax_concurrent_fetches = 1000000000\n",
            "upstreams.hashicorp.max_concurrent_fetches: must be at most 4096",
        );
    }

    #[test]
    fn durations_are_humantime() {
        let config = Config::from_toml("[cache]\ndir = \"c\"\nmetadata_ttl = \"90s\"\n").unwrap();
        assert_eq!(config.cache.metadata_ttl, Duration::from_secs(90));
        refused("[cache]\nmetadata_ttl = \"0s\"\n", "cache.metadata_ttl");
        refused(
            "[upstreams.hashicorp]\nread_timeout = \"soon\"\n",
            "upstreams.hashicorp.read_timeout",
        );
    }
}
