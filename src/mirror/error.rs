//! What can go wrong on the request path. `http::error` maps these to status codes; the
//! operations wrap them in their own error (`ops::OpsError`).

use std::path::PathBuf;

use crate::{
    protocol::{FileName, Hostname, Namespace, Platform, ProviderKey, ReleaseKey},
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
    #[error("provider {0} is signed by no key its registry publishes, so it is served only through the network mirror (/mirror/)")]
    Unsigned(Box<ReleaseKey>),
    #[error("provider {provider} is not served by this mirror: {rule}")]
    Denied { provider: String, rule: String },
    #[error("provider {} version {} is quarantined: this mirror first saw it less than policy.min_release_age ago; available from {}", .release.provider, .release.version, humantime::format_rfc3339_seconds(*.until))]
    Quarantined {
        release: Box<ReleaseKey>,
        until: std::time::SystemTime,
    },
    #[error("no upstream named {0} is configured")]
    UnknownUpstream(String),
    #[error("provider {0} is not known to its upstream")]
    UnknownProvider(Box<ProviderKey>),
    #[error("provider {} has no version {}", .0.provider, .0.version)]
    UnknownVersion(Box<ReleaseKey>),
    #[error("provider {} has no version {}: upstream's version list does not name it", .0.provider, .0.version)]
    Unlisted(Box<ReleaseKey>),
    #[error("provider {release} has no package for {platform}")]
    UnknownPlatform {
        release: Box<ReleaseKey>,
        platform: Platform,
    },
    #[error("provider {release} has no file {file}")]
    UnknownFile {
        release: Box<ReleaseKey>,
        file: FileName,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("upstream answered a version list without versions for {0}, which has some cached")]
    EmptyVersionList(Box<ProviderKey>),
    #[error("provider {release}: {file} failed verification: {failure}")]
    Verification {
        release: Box<ReleaseKey>,
        file: String,
        failure: VerifyFailure,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("not a replica of this mirror's bucket")]
    PeerDenied,
    #[error("no download of {0} is in progress on this replica")]
    NotDownloading(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl MirrorError {
    /// A verification failure of one file of a release.
    pub(super) fn verification(release: &ReleaseKey, file: &str, failure: VerifyFailure) -> Self {
        Self::Verification {
            release: Box::new(release.clone()),
            file: file.to_owned(),
            failure,
        }
    }

    pub(super) fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

/// Why the mirror could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read signing key file {path} of upstream {upstream}: {reason}")]
    SigningKeyFile {
        upstream: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot read token file {path} of upstream {upstream}: {reason}")]
    TokenFile {
        upstream: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot read storage.secret_access_key_file {path}: {reason}")]
    SecretKeyFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Client(#[from] UpstreamError),
    #[error("invalid configuration: {0}")]
    Config(String),
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
    #[error("the registry publishes no signing key for this provider; set allow_unsigned = true on the upstream to serve it, checked by its digests alone, through the network mirror")]
    NoPublishedKey,
    #[error(
        "archive exceeds {limit} bytes (the size upstream announced, or the configured maximum)"
    )]
    TooLarge { limit: u64 },
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("{0} is a file of another provider or version; this release's SHA256SUMS and files must all be named for it")]
    OtherRelease(String),
    #[error(
        "the signing key's trust signature does not verify against HashiCorp's partner key: {0}"
    )]
    TrustSignature(String),
    #[error("signed by key {new_key}, but the provider's earlier versions by {earlier}; the upstream pins keys, so add the new key to its signing_keys to accept it")]
    KeyChanged { new_key: String, earlier: String },
    #[error("upstream declared digest {declared} for the archive, but the signed SHA256SUMS says {signed}")]
    DeclaredDigest {
        declared: Sha256Digest,
        signed: Sha256Digest,
    },
}
