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
        Self::from(p.clone())
    }
}

impl From<Platform> for PlatformEntry {
    fn from(Platform { os, arch }: Platform) -> Self {
        Self { os, arch }
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
    /// HashiCorp's partner signature over the key, as upstream published it; empty for
    /// HashiCorp's own key and for community keys.
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

/// What a registry upstream answers for `GET :namespace/:type/versions`, read leniently:
/// unknown fields are ignored, and entries with names we cannot use are dropped by the reader.
#[derive(Debug, Deserialize)]
pub struct UpstreamVersionList {
    #[serde(default)]
    pub versions: Vec<UpstreamVersion>,
}

#[derive(Debug, Deserialize)]
pub struct UpstreamVersion {
    pub version: String,
    #[serde(default)]
    pub protocols: Option<Vec<String>>,
    #[serde(default)]
    pub platforms: Vec<UpstreamPlatform>,
}

#[derive(Debug, Deserialize)]
pub struct UpstreamPlatform {
    pub os: String,
    pub arch: String,
}

impl UpstreamVersionList {
    /// The entries whose version and platforms are valid names; the rest is ignored.
    pub fn valid_entries(&self) -> Vec<VersionEntry> {
        self.versions
            .iter()
            .filter_map(|v| {
                let version = super::Version::try_from(v.version.as_str()).ok()?;
                let mut platforms: Vec<Platform> = v
                    .platforms
                    .iter()
                    .filter_map(|p| Platform::new(&p.os, &p.arch).ok())
                    .collect();
                platforms.sort();
                platforms.dedup();
                Some(VersionEntry {
                    version: version.to_string(),
                    protocols: v.protocols.clone(),
                    platforms: platforms.into_iter().map(PlatformEntry::from).collect(),
                })
            })
            .collect()
    }
}

/// What a registry upstream answers for one platform's download document, read leniently.
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamDownload {
    #[serde(default)]
    pub protocols: Option<Vec<String>>,
    pub filename: String,
    pub download_url: String,
    pub shasums_url: String,
    pub shasums_signature_url: String,
    pub shasum: String,
    #[serde(default)]
    pub signing_keys: UpstreamSigningKeys,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpstreamSigningKeys {
    #[serde(default)]
    pub gpg_public_keys: Vec<UpstreamKey>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamKey {
    #[serde(default)]
    pub key_id: Option<String>,
    pub ascii_armor: String,
    #[serde(default)]
    pub trust_signature: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub source_url: Option<String>,
}

/// `/.well-known/terraform.json`, as far as providers go.
#[derive(Debug, Deserialize)]
pub struct UpstreamDiscovery {
    #[serde(rename = "providers.v1")]
    pub providers_v1: Option<String>,
}
