//! Shapes read from a releases.hashicorp.com-style upstream.
//!
//! Layout: `/<product>/index.json` lists every version, `/<product>/<version>/index.json` one
//! version; the version directory holds the zips, `_SHA256SUMS`, its detached signatures and
//! `_manifest.json`. Fields are parsed leniently (unknown fields ignored, junk versions skipped),
//! because the upstream's listing is not signed: only the SHA256SUMS file is trusted.

use std::{borrow::Cow, collections::BTreeMap};

use serde::Deserialize;

use super::{FileName, Platform, ProviderType, Version};

/// The product name of a provider on the releases site.
pub fn product_name(provider_type: &ProviderType) -> String {
    provider_type.product_name()
}

/// `/<product>/index.json`, read for the version list only: each version (its key copied) and
/// its builds' names, borrowed from the body (copied only where JSON escapes had to be
/// undone). An aws-sized index is a few MB, and this is all of it a list needs.
#[derive(Debug, Deserialize)]
pub struct ProductIndex<'a> {
    #[serde(default, borrow)]
    pub versions: BTreeMap<String, ListedVersion<'a>>,
}

/// One version of the product index.
#[derive(Debug, Deserialize)]
pub struct ListedVersion<'a> {
    #[serde(default, borrow)]
    pub builds: Vec<ListedBuild<'a>>,
}

/// One build of the product index.
#[derive(Debug, Deserialize)]
pub struct ListedBuild<'a> {
    #[serde(borrow)]
    pub os: Cow<'a, str>,
    #[serde(borrow)]
    pub arch: Cow<'a, str>,
    #[serde(borrow)]
    pub filename: Cow<'a, str>,
}

/// A version's own `/<product>/<version>/index.json`: its builds and signed checksum files.
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
                    platform: Platform::new(&b.os, &b.arch).ok()?,
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

impl ProductIndex<'_> {
    /// Versions with canonical semver keys, ascending, each with the platforms of its builds
    /// whose names are valid, sorted and once each; junk versions and builds are skipped.
    pub fn valid_versions(&self) -> Vec<(Version, Vec<Platform>)> {
        let mut out: Vec<_> = self
            .versions
            .iter()
            .filter_map(|(key, listed)| {
                let version = Version::try_from(key.as_str()).ok()?;
                let mut platforms: Vec<Platform> = listed
                    .builds
                    .iter()
                    .filter(|b| FileName::check(&b.filename).is_ok())
                    .filter_map(|b| Platform::new(&b.os, &b.arch).ok())
                    .collect();
                platforms.sort();
                platforms.dedup();
                Some((version, platforms))
            })
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
    fn product_index_keeps_valid_platforms_once_each_escaped_or_not() {
        // `\u0061md64` is `amd64` written with an escape: read, not borrowed.
        let json = r#"{"versions":{"1.0.0":{"builds":[
            {"os":"linux","arch":"\u0061md64","filename":"p_1.0.0_linux_amd64.zip"},
            {"os":"Linux","arch":"amd64","filename":"p_1.0.0_linux_amd64_again.zip"},
            {"os":"darwin","arch":"arm64","filename":"../escape.zip"},
            {"os":"../etc","arch":"amd64","filename":"p.zip"},
            {"os":"windows","arch":"386","filename":"p_1.0.0_windows_386.zip"}]}}}"#;
        let idx: ProductIndex = serde_json::from_str(json).unwrap();
        let listed = idx.valid_versions();
        assert_eq!(listed.len(), 1);
        let platforms: Vec<String> = listed[0].1.iter().map(Platform::to_string).collect();
        assert_eq!(platforms, ["linux_amd64", "windows_386"]);
    }

    #[test]
    fn signature_names_fall_back_to_the_single_field() {
        let v: ReleaseVersion =
            serde_json::from_str(r#"{"shasums_signature":"x_SHA256SUMS.sig"}"#).unwrap();
        assert_eq!(v.signature_names(), ["x_SHA256SUMS.sig"]);
    }
}
