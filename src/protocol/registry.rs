//! Bodies of the Provider Registry Protocol that tfmirror serves.
//!
//! Spec: <https://developer.hashicorp.com/terraform/internals/provider-registry-protocol>.

use serde::{Deserialize, Serialize};

use super::{Arch, Os, Platform};

/// `GET :namespace/:type/versions`. Also the on-disk form of a cached version list.
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionList {
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    pub version: String,
    /// Omitted when unknown: Terraform then skips its compatibility check for the listing and
    /// checks the download response's `protocols` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    pub platforms: Vec<PlatformEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformEntry {
    pub os: Os,
    pub arch: Arch,
}

impl From<&Platform> for PlatformEntry {
    fn from(p: &Platform) -> Self {
        Self {
            os: p.os.clone(),
            arch: p.arch.clone(),
        }
    }
}

/// `GET :namespace/:type/:version/download/:os/:arch`.
#[derive(Debug, Clone, Serialize)]
pub struct Download {
    pub protocols: Vec<String>,
    pub os: Os,
    pub arch: Arch,
    /// Must equal the SHA256SUMS entry byte for byte.
    pub filename: String,
    pub download_url: String,
    pub shasums_url: String,
    pub shasums_signature_url: String,
    /// 64 lowercase hex digits.
    pub shasum: String,
    pub signing_keys: SigningKeys,
}

#[derive(Debug, Clone, Serialize)]
pub struct SigningKeys {
    pub gpg_public_keys: Vec<GpgPublicKey>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpgPublicKey {
    /// Upper-case hex long key id; Terraform shows it, it does not trust it.
    pub key_id: String,
    /// The key Terraform verifies the SHA256SUMS signature with.
    pub ascii_armor: String,
    /// Empty: a partner trust signature is for third-party keys, which we do not issue.
    pub trust_signature: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
}

/// The JSON error body registries answer with: `{"errors":["..."]}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub errors: Vec<String>,
}
