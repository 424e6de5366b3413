//! Shapes read from a releases.hashicorp.com-style upstream.
//!
//! Layout: `/<product>/index.json` lists every version, `/<product>/<version>/index.json` one
//! version; the version directory holds the zips, `_SHA256SUMS`, its detached signatures and
//! `_manifest.json`. Fields are parsed leniently (unknown fields ignored, junk versions skipped),
//! because the upstream's listing is not signed: only the SHA256SUMS file is trusted.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Arch, FileName, Os, Platform, ProviderType, Version};

/// The product name of a provider on the releases site.
pub fn product_name(provider_type: &ProviderType) -> String {
    provider_type.product_name()
}

/// `/<product>/index.json`.
#[derive(Debug, Deserialize)]
pub struct ProductIndex {
    #[serde(default)]
    pub versions: BTreeMap<String, ReleaseVersion>,
}

/// One entry of the product index, or the whole per-version `index.json`.
#[derive(Debug, Deserialize)]
pub struct ReleaseVersion {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub shasums: Option<String>,
    #[serde(default)]
    pub shasums_signature: Option<String>,
    #[serde(default)]
    pub shasums_signatures: Option<Vec<String>>,
    #[serde(default)]
    pub builds: Vec<Build>,
}

#[derive(Debug, Deserialize)]
pub struct Build {
    pub os: String,
    pub arch: String,
    pub filename: String,
}

/// A build whose names passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBuild {
    pub platform: Platform,
    pub filename: FileName,
}

impl ReleaseVersion {
    /// Builds with valid names; anything else in the listing is ignored.
    pub fn valid_builds(&self) -> Vec<ValidBuild> {
        self.builds
            .iter()
            .filter_map(|b| {
                Some(ValidBuild {
                    platform: Platform {
                        os: Os::try_from(b.os.as_str()).ok()?,
                        arch: Arch::try_from(b.arch.as_str()).ok()?,
                    },
                    filename: FileName::try_from(b.filename.as_str()).ok()?,
                })
            })
            .collect()
    }

    /// Signature file names, in the upstream's order (the unsuffixed name last if listed alone).
    pub fn signature_names(&self) -> Vec<String> {
        let mut names = self.shasums_signatures.clone().unwrap_or_default();
        if let Some(single) = &self.shasums_signature {
            if !names.contains(single) {
                names.push(single.clone());
            }
        }
        names
    }
}

impl ProductIndex {
    /// Versions with canonical semver keys, ascending; junk keys are skipped.
    pub fn valid_versions(&self) -> Vec<(Version, &ReleaseVersion)> {
        let mut out: Vec<_> = self
            .versions
            .iter()
            .filter_map(|(k, v)| Some((Version::try_from(k.as_str()).ok()?, v)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// `<product>_<version>_manifest.json`: the plugin protocol versions a release speaks.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub metadata: ManifestMetadata,
}

#[derive(Debug, Default, Deserialize)]
pub struct ManifestMetadata {
    #[serde(default)]
    pub protocol_versions: Vec<String>,
}

/// What the public registry assumes when a release has no manifest.
pub fn default_protocols() -> Vec<String> {
    vec!["5.0".to_owned()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn product_index_skips_junk_versions_and_sorts() {
        let json = r#"{"name":"terraform-provider-null","versions":{
            "3.10.0":{"version":"3.10.0","builds":[{"os":"linux","arch":"amd64","filename":"a.zip","url":"x"}]},
            "3.2.0":{"version":"3.2.0","builds":[]},
            "v1":{"version":"v1"},
            "3.2.0-rc1":{"version":"3.2.0-rc1"}}}"#;
        let idx: ProductIndex = serde_json::from_str(json).unwrap();
        let versions: Vec<String> = idx
            .valid_versions()
            .iter()
            .map(|(v, _)| v.to_string())
            .collect();
        assert_eq!(versions, ["3.2.0-rc1", "3.2.0", "3.10.0"]);
    }

    #[test]
    fn signature_names_fall_back_to_the_single_field() {
        let v: ReleaseVersion =
            serde_json::from_str(r#"{"shasums_signature":"x_SHA256SUMS.sig"}"#).unwrap();
        assert_eq!(v.signature_names(), ["x_SHA256SUMS.sig"]);
    }
}
