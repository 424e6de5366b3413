//! Provider addresses as `[[prefetch]]` entries and `required_providers` write them:
//! `NAMESPACE/TYPE`, or `HOST/NAMESPACE/TYPE` when the origin registry is named. Which
//! upstream an address stands for is the mirror's business; this only parses and prints it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Hostname, NameError, Namespace, ProviderType};

/// A provider address with every part validated and lowercased. Serialised as the text
/// `HOST/NAMESPACE/TYPE` or `NAMESPACE/TYPE`, as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderAddress {
    /// The origin registry; `None` when the address was written without one.
    pub hostname: Option<Hostname>,
    pub namespace: Namespace,
    pub provider: ProviderType,
}

impl TryFrom<&str> for ProviderAddress {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        let parts: Vec<&str> = input.split('/').collect();
        let (hostname, namespace, provider) = match parts.as_slice() {
            [namespace, provider] => (None, *namespace, *provider),
            [hostname, namespace, provider] => {
                (Some(Hostname::try_from(*hostname)?), *namespace, *provider)
            }
            _ => {
                return Err(NameError::new(
                    "provider address",
                    input,
                    "must be NAMESPACE/TYPE or HOST/NAMESPACE/TYPE",
                ))
            }
        };
        Ok(Self {
            hostname,
            namespace: Namespace::try_from(namespace)?,
            provider: ProviderType::try_from(provider)?,
        })
    }
}

impl TryFrom<String> for ProviderAddress {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<ProviderAddress> for String {
    fn from(address: ProviderAddress) -> String {
        address.to_string()
    }
}

impl fmt::Display for ProviderAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(hostname) = &self.hostname {
            write!(f, "{hostname}/")?;
        }
        write!(f, "{}/{}", self.namespace, self.provider)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_with_and_without_a_host() {
        let short = ProviderAddress::try_from("HashiCorp/AWS").unwrap();
        assert_eq!(short.hostname, None);
        assert_eq!(short.to_string(), "hashicorp/aws");
        let long = ProviderAddress::try_from("localhost:8443/private/thing").unwrap();
        assert_eq!(long.hostname.unwrap().as_str(), "localhost:8443");
        assert_eq!(long.namespace.as_str(), "private");
        assert_eq!(long.provider.as_str(), "thing");
        for bad in ["aws", "a/b/c/d", "a//b", "../x/y", "bad host/x/y", ""] {
            assert!(ProviderAddress::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_is_the_text() {
        let address: ProviderAddress =
            serde_json::from_str(r#""registry.terraform.io/hashicorp/aws""#).unwrap();
        assert_eq!(
            serde_json::to_string(&address).unwrap(),
            r#""registry.terraform.io/hashicorp/aws""#
        );
    }
}

/// A `[policy]` pattern: `NAMESPACE/TYPE`, either segment `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderPattern {
    namespace: Option<Namespace>,
    provider: Option<ProviderType>,
}

impl ProviderPattern {
    /// `*/*`: every provider.
    pub fn any() -> Self {
        Self {
            namespace: None,
            provider: None,
        }
    }

    pub fn matches(&self, namespace: &Namespace, provider: &ProviderType) -> bool {
        self.namespace.as_ref().is_none_or(|n| n == namespace)
            && self.provider.as_ref().is_none_or(|p| p == provider)
    }
}

impl TryFrom<&str> for ProviderPattern {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        let (namespace, provider) = input.split_once('/').ok_or_else(|| {
            NameError::new(
                "provider pattern",
                input,
                "must be NAMESPACE/TYPE, either part \"*\"",
            )
        })?;
        Ok(Self {
            namespace: (namespace != "*")
                .then(|| Namespace::try_from(namespace))
                .transpose()?,
            provider: (provider != "*")
                .then(|| ProviderType::try_from(provider))
                .transpose()?,
        })
    }
}

impl TryFrom<String> for ProviderPattern {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<ProviderPattern> for String {
    fn from(pattern: ProviderPattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for ProviderPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/")?,
            None => f.write_str("*/")?,
        }
        match &self.provider {
            Some(provider) => write!(f, "{provider}"),
            None => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod pattern_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let ns = |s: &str| Namespace::try_from(s).unwrap();
        let ty = |s: &str| ProviderType::try_from(s).unwrap();
        let datadog = ProviderPattern::try_from("datadog/*").unwrap();
        assert!(datadog.matches(&ns("datadog"), &ty("datadog")));
        assert!(!datadog.matches(&ns("hashicorp"), &ty("datadog")));
        let aws = ProviderPattern::try_from("*/aws").unwrap();
        assert!(aws.matches(&ns("hashicorp"), &ty("aws")));
        assert!(!aws.matches(&ns("hashicorp"), &ty("awscc")));
        assert!(ProviderPattern::any().matches(&ns("a"), &ty("b")));
        assert_eq!(datadog.to_string(), "datadog/*");
        for bad in ["datadog", "a/b/c", "../x", "*"] {
            assert!(ProviderPattern::try_from(bad).is_err(), "{bad}");
        }
    }
}
