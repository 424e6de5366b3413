//! Configuration: figment layers, lowest first — built-in defaults, the TOML file, then
//! `TFMIRROR_<SECTION>__<KEY>` environment variables. Every struct denies unknown fields, so a
//! typo is an error that names the key and the file instead of a silently ignored setting.
//! Values are checked here once, so a bad config stops start-up rather than a request.

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

use crate::protocol::{constraints::VersionConstraints, Hostname, Namespace, Platform};

/// The config file `serve` reads when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/tfmirror.toml";
/// Shown instead of a secret.
pub const REDACTED: &str = "<redacted>";
/// Environment variables with this prefix override the file (`TFMIRROR_SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "TFMIRROR_";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// Absent: plain HTTP (behind a TLS-terminating proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Private namespace -> upstream, for `<host>/<namespace>/<type>` source addresses.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Origin `hostname/namespace` -> upstream, for the network mirror protocol under `/mirror/`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, MirrorConfig>,
    /// Absent: anyone who can reach the server may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Providers `tfmirror prefetch` fills the cache with, and `gc` never evicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefetch: Vec<PrefetchConfig>,
}

/// One `[[prefetch]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchConfig {
    /// `NAMESPACE/TYPE` (a `[namespaces]` name) or `HOST/NAMESPACE/TYPE` (a `[mirrors]` origin).
    pub provider: String,
    /// Terraform version constraints, e.g. `"~> 5.0"`; default: every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<String>,
    /// `OS_ARCH` platforms to fetch.
    pub platforms: Vec<String>,
}

/// Client authentication: bearer tokens for the JSON endpoints, signed time-limited URLs for
/// the files (Terraform sends no credentials when it downloads those).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted `Authorization: Bearer` tokens.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// A file with more tokens, one per line (`#` starts a comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Key that signs file URLs. Default: random at start-up, so URLs handed out before a
    /// restart stop working; replicas behind one load balancer need the same secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<String>,
    /// How long a signed file URL stays valid.
    #[serde(default = "default_url_ttl", with = "humantime_serde")]
    pub url_ttl: Duration,
}

fn default_url_ttl() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Prefix for URLs in responses; default: URLs relative to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<Url>,
    /// On SIGTERM/SIGINT, how long in-flight requests may still run.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Generate a self-signed certificate for localhost when the files are missing.
    #[serde(default)]
    pub self_signed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// How long version lists are trusted before upstream is asked again.
    #[serde(with = "humantime_serde")]
    pub metadata_ttl: Duration,
    /// Largest archive accepted from upstream, in bytes.
    #[serde(default = "default_max_archive_bytes")]
    pub max_archive_bytes: u64,
    /// How long an upstream "not found" is remembered, so a typo'd provider does not hammer
    /// upstream.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// New downloads are refused while the cache's filesystem has less space free than this
    /// (bytes or "512MB"); what is cached is still served.
    #[serde(default = "default_min_free_space")]
    pub min_free_space: ByteSize,
    /// Largest size of the disk cache ("50GB"); least-recently-used archives are evicted past
    /// it, by `serve` every `gc_interval` and by `tfmirror gc`. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// How often `serve` checks `max_size`.
    #[serde(default = "default_gc_interval", with = "humantime_serde")]
    pub gc_interval: Duration,
    /// Archives served this recently are never evicted (a client may be downloading one).
    #[serde(default = "default_gc_grace", with = "humantime_serde")]
    pub gc_grace: Duration,
}

fn default_gc_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_gc_grace() -> Duration {
    Duration::from_secs(600)
}

fn default_negative_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_min_free_space() -> ByteSize {
    ByteSize::mib(64)
}

fn default_max_archive_bytes() -> u64 {
    2 * 1024 * 1024 * 1024
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("cache"),
            metadata_ttl: Duration::from_secs(600),
            max_archive_bytes: default_max_archive_bytes(),
            negative_ttl: default_negative_ttl(),
            min_free_space: default_min_free_space(),
            max_size: None,
            gc_interval: default_gc_interval(),
            gc_grace: default_gc_grace(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of a releases.hashicorp.com-style site.
    pub url: Url,
    /// Extra ASCII-armored public key files trusted besides HashiCorp's built-in key.
    #[serde(default)]
    pub signing_keys: Vec<PathBuf>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to the first byte of the answer.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of an answer.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Extra attempts after a connection error, timeout, 5xx or 429.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff ceiling; it doubles per attempt, with full jitter.
    #[serde(default = "default_retry_initial_delay", with = "humantime_serde")]
    pub retry_initial_delay: Duration,
    /// Longest backoff; a `Retry-After` asking for more is not waited for.
    #[serde(default = "default_retry_max_delay", with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Most requests in flight to this upstream at once.
    #[serde(default = "default_max_concurrent_fetches")]
    pub max_concurrent_fetches: usize,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retries() -> u32 {
    3
}

fn default_retry_initial_delay() -> Duration {
    Duration::from_millis(250)
}

fn default_retry_max_delay() -> Duration {
    Duration::from_secs(10)
}

fn default_max_concurrent_fetches() -> usize {
    16
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Name of an `[upstreams.NAME]` table.
    pub upstream: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Name of an `[upstreams.NAME]` table.
    pub upstream: String,
}

/// Splits a `[mirrors."HOST/NAMESPACE"]` key into validated, lowercased parts.
pub fn parse_mirror_key(key: &str) -> Result<(Hostname, Namespace), String> {
    let (host, namespace) = key
        .split_once('/')
        .ok_or_else(|| "must be written \"HOSTNAME/NAMESPACE\"".to_owned())?;
    Ok((
        Hostname::try_from(host).map_err(|e| e.to_string())?,
        Namespace::try_from(namespace).map_err(|e| e.to_string())?,
    ))
}

impl Default for Config {
    fn default() -> Self {
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            "hashicorp".to_owned(),
            UpstreamConfig {
                url: Url::parse("https://releases.hashicorp.com")
                    .unwrap_or_else(|_| unreachable!()),
                signing_keys: Vec::new(),
                connect_timeout: default_connect_timeout(),
                first_byte_timeout: default_read_timeout(),
                read_timeout: default_read_timeout(),
                retries: default_retries(),
                retry_initial_delay: default_retry_initial_delay(),
                retry_max_delay: default_retry_max_delay(),
                max_concurrent_fetches: default_max_concurrent_fetches(),
            },
        );
        Self {
            server: ServerConfig::default(),
            tls: None,
            cache: CacheConfig::default(),
            upstreams,
            namespaces: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            auth: None,
            prefetch: Vec::new(),
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

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let rule = |message: String| ConfigError::Rule {
            file: file.to_owned(),
            message,
        };
        for (name, ns) in &self.namespaces {
            Namespace::try_from(name.as_str())
                .map_err(|e| rule(format!("namespaces.{name}: {e}")))?;
            if !self.upstreams.contains_key(&ns.upstream) {
                return Err(rule(format!(
                    "namespaces.{name}.upstream: no [upstreams.{}] table is configured",
                    ns.upstream
                )));
            }
        }
        for (key, mirror) in &self.mirrors {
            parse_mirror_key(key).map_err(|e| rule(format!("mirrors.\"{key}\": {e}")))?;
            if !self.upstreams.contains_key(&mirror.upstream) {
                return Err(rule(format!(
                    "mirrors.\"{key}\".upstream: no [upstreams.{}] table is configured",
                    mirror.upstream
                )));
            }
        }
        for (name, upstream) in &self.upstreams {
            // Upstream names become a directory of the cache.
            Namespace::try_from(name.as_str())
                .map_err(|e| rule(format!("upstreams.{name}: {e}")))?;
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
            let at = |key: &str| format!("prefetch[{i}].{key}");
            let parts: Vec<&str> = entry.provider.split('/').collect();
            if !(2..=3).contains(&parts.len()) {
                return Err(rule(format!(
                    "{}: {:?} must be NAMESPACE/TYPE or HOST/NAMESPACE/TYPE",
                    at("provider"),
                    entry.provider
                )));
            }
            if let Some(versions) = &entry.versions {
                VersionConstraints::parse(versions)
                    .map_err(|e| rule(format!("{}: {e}", at("versions"))))?;
            }
            if entry.platforms.is_empty() {
                return Err(rule(format!(
                    "{}: list at least one OS_ARCH",
                    at("platforms")
                )));
            }
            for platform in &entry.platforms {
                Platform::try_from(platform.as_str())
                    .map_err(|e| rule(format!("{}: {e}", at("platforms"))))?;
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
        Ok(())
    }

    /// A copy safe to print: tokens and secrets replaced.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
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

/// One figment error as "key `a.b` in FILE: message".
fn describe_figment_error(error: figment::Error) -> String {
    let key = if error.path.is_empty() {
        String::new()
    } else {
        format!("key `{}`", error.path.join("."))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_shipped_config_is_valid() {
        let config = Config::from_toml(include_str!("../config/tfmirror.toml")).unwrap();
        assert_eq!(config.server.listen.port(), 8443);
        assert_eq!(config.namespaces["myproviders"].upstream, "hashicorp");
        assert!(config.tls.unwrap().self_signed);
        assert_eq!(config.namespaces["hashicorp"].upstream, "hashicorp");
        assert_eq!(
            config.mirrors["registry.terraform.io/hashicorp"].upstream,
            "hashicorp"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn namespaces_must_name_an_upstream() {
        let err = Config::from_toml("[namespaces.x]\nupstream = \"nope\"\n").unwrap_err();
        assert!(err.to_string().contains("namespaces.x.upstream"), "{err}");
    }

    #[test]
    fn upstream_names_must_be_plain_names() {
        let err = Config::from_toml("[upstreams.\"a/b\"]\nurl = \"https://x\"\n").unwrap_err();
        assert!(err.to_string().contains("upstreams.a/b"), "{err}");
    }

    #[test]
    fn mirror_keys_are_host_slash_namespace() {
        let config = Config::from_toml(
            "[mirrors.\"Registry.Terraform.io/HashiCorp\"]\nupstream = \"hashicorp\"\n",
        )
        .unwrap();
        let (host, ns) = parse_mirror_key(config.mirrors.keys().next().unwrap()).unwrap();
        assert_eq!(
            (host.as_str(), ns.as_str()),
            ("registry.terraform.io", "hashicorp")
        );
        for bad in ["registry.terraform.io", "a/b/c", "../x"] {
            let toml = format!("[mirrors.\"{bad}\"]\nupstream = \"hashicorp\"\n");
            assert!(Config::from_toml(&toml).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_humantime() {
        let config = Config::from_toml("[cache]\ndir = \"c\"\nmetadata_ttl = \"90s\"\n").unwrap();
        assert_eq!(config.cache.metadata_ttl, Duration::from_secs(90));
    }
}
