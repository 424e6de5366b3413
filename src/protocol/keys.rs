//! What identifies a cached thing: a provider at one upstream, one release of it, one file of
//! that release. Every layer passes these instead of loose names; `store::layout` is the one
//! place that turns them into storage locations.
//!
//! An upstream that speaks the Provider Registry Protocol has namespaces (`integrations/github`),
//! a releases site has none (`hashicorp`'s providers are the site's whole catalogue), so the
//! namespace is optional.

use std::fmt;

use super::{FileName, Namespace, ProviderType, UpstreamName, Version};

/// A provider at one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderKey {
    pub upstream: UpstreamName,
    /// `None` for an upstream without namespaces (a releases site).
    pub namespace: Option<Namespace>,
    pub provider: ProviderType,
}

impl ProviderKey {
    pub fn new(
        upstream: UpstreamName,
        namespace: Option<Namespace>,
        provider: ProviderType,
    ) -> Self {
        Self {
            upstream,
            namespace,
            provider,
        }
    }

    /// One version of this provider.
    pub fn release(&self, version: Version) -> ReleaseKey {
        ReleaseKey {
            provider: self.clone(),
            version,
        }
    }
}

impl fmt::Display for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{namespace}/{}", self.upstream, self.provider),
            None => write!(f, "{}/{}", self.upstream, self.provider),
        }
    }
}

/// One version of a provider at one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseKey {
    pub provider: ProviderKey,
    pub version: Version,
}

impl ReleaseKey {
    /// One file of this release.
    pub fn file(&self, file: FileName) -> FileKey {
        FileKey {
            release: self.clone(),
            file,
        }
    }

    pub fn provider_type(&self) -> &ProviderType {
        &self.provider.provider
    }

    /// The stem every file of this release is named with: `terraform-provider-TYPE_VERSION`.
    pub fn file_stem(&self) -> String {
        format!("{}_{}", self.provider.provider.product_name(), self.version)
    }
}

impl fmt::Display for ReleaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.provider, self.version)
    }
}

/// One file of a release: SHA256SUMS, a signature, the manifest or an archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub release: ReleaseKey,
    pub file: FileName,
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.release, self.file)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_read_as_addresses() {
        let local = ProviderKey::new(
            UpstreamName::try_from("hashicorp").unwrap(),
            None,
            ProviderType::try_from("local").unwrap(),
        );
        let release = local.release(Version::try_from("2.1.0").unwrap());
        assert_eq!(release.to_string(), "hashicorp/local 2.1.0");
        assert_eq!(release.file_stem(), "terraform-provider-local_2.1.0");
        let github = ProviderKey::new(
            UpstreamName::try_from("registry").unwrap(),
            Some(Namespace::try_from("integrations").unwrap()),
            ProviderType::try_from("github").unwrap(),
        );
        assert_eq!(github.to_string(), "registry/integrations/github");
    }
}
