//! Bodies and paths of the Provider Network Mirror Protocol.
//!
//! Spec: <https://developer.hashicorp.com/terraform/internals/provider-network-mirror-protocol>.
//! Paths are `:hostname/:namespace/:type/` followed by `index.json`, `<version>.json` or an
//! archive file name; the hostname is the provider's *origin* host (`registry.terraform.io`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{names::NameError, FileName, NamespacePattern, Platform, ProviderType, Version};

/// The fixed base path; Terraform needs the trailing slash in the configured URL.
pub const MIRROR_BASE_PATH: &str = "/mirror/";

/// An origin registry hostname, optionally with a port (`registry.terraform.io`,
/// `localhost:8443`), lowercased as Terraform normalises it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

/// Longest hostname (DNS limit) plus a port.
const MAX_HOSTNAME_LEN: usize = 253 + 6;

impl Hostname {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Hostname {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        let (host, port) = match input.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (input, None),
        };
        let valid_host = !host.is_empty()
            && input.len() <= MAX_HOSTNAME_LEN
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let valid_port = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if !(valid_host && valid_port) {
            return Err(NameError::new(
                "hostname",
                input,
                "is not a valid host name",
            ));
        }
        Ok(Self(input.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for Hostname {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<Hostname> for String {
    fn from(name: Hostname) -> String {
        name.0
    }
}

impl std::fmt::Display for Hostname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A provider origin served under `/mirror/`: the `HOSTNAME/NAMESPACE` of a
/// `[mirrors."HOSTNAME/NAMESPACE"]` table, lowercased in both parts. Serialised as that text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin {
    pub hostname: Hostname,
    /// One namespace, or `*` for every namespace of the host not configured otherwise.
    pub namespace: NamespacePattern,
}

impl TryFrom<&str> for Origin {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        let (hostname, namespace) = input.split_once('/').ok_or_else(|| {
            NameError::new("origin", input, "must be written \"HOSTNAME/NAMESPACE\"")
        })?;
        Ok(Self {
            hostname: Hostname::try_from(hostname)?,
            namespace: NamespacePattern::try_from(namespace)?,
        })
    }
}

impl TryFrom<String> for Origin {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<Origin> for String {
    fn from(origin: Origin) -> String {
        origin.to_string()
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hostname, self.namespace)
    }
}

/// What the last path segment under `:hostname/:namespace/:type/` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorFile {
    /// `index.json`: the versions.
    Index,
    /// `<version>.json`: one version's archives and hashes.
    Version(Version),
    /// `terraform-provider-<type>_<version>_<os>_<arch>.zip`.
    Archive {
        version: Version,
        platform: Platform,
        file: FileName,
    },
}

impl MirrorFile {
    pub fn parse(provider: &ProviderType, segment: &str) -> Result<Self, NameError> {
        if segment == "index.json" {
            return Ok(Self::Index);
        }
        if let Some(version) = segment.strip_suffix(".json") {
            return Ok(Self::Version(Version::try_from(version)?));
        }
        let file = FileName::try_from(segment)?;
        let invalid = || NameError::new("archive name", segment, "is not a provider archive name");
        let rest = segment
            .strip_prefix(&format!("{}_", provider.product_name()))
            .and_then(|r| r.strip_suffix(".zip"))
            .ok_or_else(invalid)?;
        let mut parts = rest.rsplitn(3, '_');
        let (Some(arch), Some(os), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        Ok(Self::Archive {
            version: Version::try_from(version)?,
            platform: Platform {
                os: os.try_into()?,
                arch: arch.try_into()?,
            },
            file,
        })
    }
}

/// `index.json`: `{"versions": {"2.1.0": {}}}`.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorIndex {
    pub versions: BTreeMap<String, EmptyObject>,
}

/// Terraform wants an object per version; it is reserved and left empty.
#[derive(Debug, Clone, Serialize)]
pub struct EmptyObject {}

/// `<version>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorVersion {
    pub archives: BTreeMap<String, MirrorArchive>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MirrorArchive {
    /// Relative to the `<version>.json` URL: the bare archive file name.
    pub url: String,
    /// `h1:` (when the archive is cached) and `zh:` (always, from the signed SHA256SUMS).
    pub hashes: Vec<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn local() -> ProviderType {
        ProviderType::try_from("local").unwrap()
    }

    #[test]
    fn hostnames_are_lowercased_and_checked() {
        assert_eq!(
            Hostname::try_from("Registry.Terraform.IO")
                .unwrap()
                .as_str(),
            "registry.terraform.io"
        );
        assert!(Hostname::try_from("localhost:8443").is_ok());
        for bad in [
            "", "..", "a..b", "a/b", "a:", "a:port", "-a b", "a:123456", "%2e%2e",
        ] {
            assert!(Hostname::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origins_are_hostname_slash_namespace() {
        let origin = Origin::try_from("Registry.Terraform.io/HashiCorp").unwrap();
        assert_eq!(origin.hostname.as_str(), "registry.terraform.io");
        assert_eq!(origin.namespace.to_string(), "hashicorp");
        assert_eq!(origin.to_string(), "registry.terraform.io/hashicorp");
        assert!(Origin::try_from("localhost:8443/private").is_ok());
        for bad in ["registry.terraform.io", "a/b/c", "../x", "/x", "x/"] {
            assert!(Origin::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mirror_files_parse() {
        assert_eq!(
            MirrorFile::parse(&local(), "index.json").unwrap(),
            MirrorFile::Index
        );
        assert_eq!(
            MirrorFile::parse(&local(), "2.1.0.json").unwrap(),
            MirrorFile::Version(Version::try_from("2.1.0").unwrap())
        );
        let MirrorFile::Archive {
            version, platform, ..
        } = MirrorFile::parse(
            &local(),
            "terraform-provider-local_2.1.0-rc1_linux_amd64.zip",
        )
        .unwrap()
        else {
            panic!("not an archive");
        };
        assert_eq!(version.as_str(), "2.1.0-rc1");
        assert_eq!(platform.to_string(), "linux_amd64");
        for bad in [
            "..",
            "..json",
            "v2.1.0.json",
            "terraform-provider-null_2.1.0_linux_amd64.zip",
            "terraform-provider-local_2.1.0_linux.zip",
            "terraform-provider-local_2.1.0_linux_amd64.tar",
            "../terraform-provider-local_2.1.0_linux_amd64.zip",
        ] {
            assert!(MirrorFile::parse(&local(), bad).is_err(), "{bad:?}");
        }
    }
}
