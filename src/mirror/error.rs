//! What can go wrong in the mirror core. `http::error` maps these to status codes.

use std::path::PathBuf;

use crate::{
    protocol::{FileName, Hostname, Namespace, Platform, ProviderType, Version},
    store::{LayoutError, StoreError},
    upstream::UpstreamError,
    verify::{ChecksumsError, KeyError, Sha256Digest, SignatureError},
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    #[error("namespace {0} is not served by this mirror")]
    UnknownNamespace(Namespace),
    #[error("{hostname}/{namespace} is not mirrored here")]
    UnknownOrigin {
        hostname: Hostname,
        namespace: Namespace,
    },
    #[error("{0}")]
    InvalidAddress(String),
    #[error("{0}")]
    Bundle(String),
    #[error("bundle refused, nothing imported: {}", .0.join("; "))]
    BundleRefused(Vec<String>),
    #[error("no upstream named {0} is configured")]
    UnknownUpstream(String),
    #[error("provider {provider} is not known to upstream {upstream}")]
    UnknownProvider {
        upstream: String,
        provider: ProviderType,
    },
    #[error("provider {} has no version {}", release.provider, release.version)]
    UnknownVersion { release: Box<ReleaseId> },
    #[error("provider {release} has no package for {platform}")]
    UnknownPlatform {
        release: Box<ReleaseId>,
        platform: Platform,
    },
    #[error("provider {release} has no file {file}")]
    UnknownFile {
        release: Box<ReleaseId>,
        file: FileName,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("provider {release}: {file} failed verification: {failure}")]
    Verification {
        release: Box<ReleaseId>,
        file: String,
        failure: VerifyFailure,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read signing key file {path} of upstream {upstream}: {reason}")]
    SigningKeyFile {
        upstream: String,
        path: PathBuf,
        reason: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// One release of one provider, for error reports (boxed: errors stay small on the happy path).
#[derive(Debug, Clone)]
pub struct ReleaseId {
    pub provider: ProviderType,
    pub version: Version,
}

impl ReleaseId {
    pub fn boxed(provider: &ProviderType, version: &Version) -> Box<Self> {
        Box::new(Self {
            provider: provider.clone(),
            version: version.clone(),
        })
    }
}

impl std::fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.provider, self.version)
    }
}

/// Why upstream data was not trusted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyFailure {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Checksums(#[from] ChecksumsError),
    #[error("digest {actual} does not match the signed SHA256SUMS entry {expected}")]
    DigestMismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("the file is not listed in the signed SHA256SUMS")]
    NotListed,
    #[error("no signature file is listed for the release")]
    NoSignature,
    #[error(
        "archive exceeds {limit} bytes (the size upstream announced, or the configured maximum)"
    )]
    TooLarge { limit: u64 },
    #[error("invalid manifest: {0}")]
    Manifest(String),
}
