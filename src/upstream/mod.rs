//! Upstreams: where releases come from. The mirror core knows them only through the
//! [`Upstream`] interface; each kind of upstream implements it over the one HTTP client
//! (`client`), which with `peer` (another replica on the same bucket, as the source of an
//! archive it is downloading) is the only code that names `reqwest`.
//!
//! The interface is shaped for more than the releases site (`releases`, the first kind): a
//! provider key may carry a namespace, a listing may publish the keys that sign its provider,
//! and file URLs are the upstream's business — it may hand out URLs on other hosts — so the
//! core asks for files by key, never by URL. Nothing an upstream returns is trusted: the core
//! verifies every byte against a signed SHA256SUMS before it is cached or served.

mod client;
pub mod peer;
pub mod registry;
pub mod releases;

use std::{pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{future::BoxFuture, Stream};
use url::Url;

use crate::config::redact_url;

pub use client::{FetchPolicy, FetchRules, HttpClient, UpstreamBody, USER_AGENT};
pub use registry::RegistryUpstream;
pub use releases::ReleasesUpstream;

use crate::{
    protocol::{
        registry::VersionEntry, releases::ValidBuild, FileKey, FileName, Platform, ProviderKey,
        ReleaseKey, UpstreamName,
    },
    verify::Sha256Digest,
};

/// An archive's bytes as they arrive.
pub type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A release as upstream describes it. Unsigned: only what the signed SHA256SUMS confirms of
/// it is used.
#[derive(Debug, Clone)]
pub struct ReleaseListing {
    pub shasums: FileName,
    /// Signature files over the SHA256SUMS to try, in upstream's order.
    pub signatures: Vec<FileName>,
    /// Keys upstream publishes for this provider (a registry does); none for a releases site.
    pub published_keys: Vec<PublishedKey>,
    /// The builds upstream lists.
    pub builds: Vec<ValidBuild>,
    /// A manifest of plugin protocols, when upstream publishes one beside the SHA256SUMS.
    pub manifest: Option<FileName>,
    /// Plugin protocols, when upstream lists them itself.
    pub protocols: Option<Vec<String>>,
}

/// A signing key an upstream publishes for a provider.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub ascii_armor: String,
    /// HashiCorp's signature over the key, for partner providers.
    pub trust_signature: Option<String>,
    /// Who upstream says the key belongs to.
    pub source: String,
}

/// An archive download that has started.
pub struct ArchiveDownload {
    /// What `Content-Length` promised, if anything.
    pub declared_len: Option<u64>,
    /// The digest upstream declared for the archive, if it declares one; it must equal the
    /// signed SHA256SUMS entry too.
    pub declared_digest: Option<Sha256Digest>,
    pub chunks: Chunks,
}

/// An upstream's JSON document, or an error naming its URL.
fn parse_json<'a, T: serde::Deserialize<'a>>(
    url: &Url,
    body: &'a [u8],
) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|e| UpstreamError::InvalidBody {
        url: url.clone(),
        reason: e.to_string(),
    })
}

/// What every kind of upstream answers.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// The `[upstreams.NAME]` name.
    fn name(&self) -> &UpstreamName;
    /// Where it is, for people (status page, logs).
    fn url(&self) -> String;
    /// How it has been answering lately.
    fn health(&self) -> UpstreamHealth;
    /// Whether its providers live in namespaces (`integrations/github`).
    fn has_namespaces(&self) -> bool;
    /// Every version of a provider, with its platforms (and protocols where listed);
    /// `UpstreamError::NotFound` when upstream does not know the provider.
    fn versions<'a>(
        &'a self,
        provider: &'a ProviderKey,
    ) -> BoxFuture<'a, Result<Vec<VersionEntry>, UpstreamError>>;
    /// What one release consists of; `UpstreamError::NotFound` when there is no such version.
    fn release<'a>(
        &'a self,
        release: &'a ReleaseKey,
    ) -> BoxFuture<'a, Result<ReleaseListing, UpstreamError>>;
    /// A small file of a release (SHA256SUMS, a signature, the manifest), whole.
    fn small_file<'a>(&'a self, file: &'a FileKey) -> BoxFuture<'a, Result<Bytes, UpstreamError>>;
    /// One platform's archive, as a stream.
    fn archive<'a>(
        &'a self,
        file: &'a FileKey,
        platform: &'a Platform,
    ) -> BoxFuture<'a, Result<ArchiveDownload, UpstreamError>>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream has no {}", redact_url(.url))]
    NotFound { url: Url },
    #[error("upstream answered {status} for {}", redact_url(.url))]
    Status {
        url: Url,
        status: u16,
        /// What upstream's `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
    },
    #[error("upstream timed out on {}", redact_url(.url))]
    Timeout { url: Url },
    #[error("upstream unreachable for {}", redact_url(.url))]
    Unreachable {
        url: Url,
        #[source]
        source: Arc<reqwest::Error>,
    },
    #[error("upstream answer for {} exceeds {limit} bytes", redact_url(.url))]
    TooLarge { url: Url, limit: u64 },
    #[error("upstream sent an invalid document at {}: {reason}", redact_url(.url))]
    InvalidBody { url: Url, reason: String },
    #[error("upstream pointed tfmirror at a URL it refuses: {reason}")]
    HostNotAllowed { url: Url, reason: String },
    #[error("cannot build an HTTP client")]
    Client(#[source] Arc<reqwest::Error>),
}

impl UpstreamError {
    pub(crate) fn from_reqwest(url: &Url, error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout { url: url.clone() }
        } else {
            // reqwest's message repeats the URL, credentials and all.
            Self::Unreachable {
                url: url.clone(),
                source: Arc::new(error.without_url()),
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether asking again may help: transport failures, 5xx and 429. A 404 or a document we
    /// cannot parse will not get better by retrying.
    fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How an upstream has been answering lately, for `/readyz` and the status page.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UpstreamHealth {
    /// Whether the last request got an answer (any status but 5xx/429); `None` before any.
    pub reachable: Option<bool>,
    #[serde(with = "humantime_serde")]
    pub last_success: Option<std::time::SystemTime>,
    pub last_error: Option<String>,
}
