//! What can go wrong in the mirror core. `http::error` maps these to status codes.

use std::path::PathBuf;

use crate::{
    protocol::{FileName, Namespace, Platform, ProviderType, Version},
    store::{LayoutError, StoreError},
    upstream::UpstreamError,
    verify::{ChecksumsError, KeyError, Sha256Digest, SignatureError},
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    #[error("namespace {0} is not served by this mirror")]
    UnknownNamespace(Namespace),
    #[error("no upstream named {0} is configured")]
    UnknownUpstream(String),
    #[error("provider {provider} is not known to upstream {upstream}")]
    UnknownProvider {
        upstream: String,
        provider: ProviderType,
    },
    #[error("provider {provider} has no version {version}")]
    UnknownVersion {
        provider: ProviderType,
        version: Version,
    },
    #[error("provider {provider} {version} has no package for {platform}")]
    UnknownPlatform {
        provider: ProviderType,
        version: Version,
        platform: Platform,
    },
    #[error("provider {provider} {version} has no file {file}")]
    UnknownFile {
        provider: ProviderType,
        version: Version,
        file: FileName,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("provider {provider} {version}: {file} failed verification: {failure}")]
    Verification {
        provider: ProviderType,
        version: Version,
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
    #[error("archive is larger than the configured maximum of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("invalid manifest: {0}")]
    Manifest(String),
}
