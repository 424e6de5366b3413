//! Host patterns: which hosts an upstream's documents may send tfmirror to
//! (`download_hosts = ["github.com", "*.githubusercontent.com", "127.0.0.1:8080"]`).

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use super::NameError;

/// A host, a `*.` pattern for its sub-domains, either with an optional `:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    /// Lowercase host, without the `*.` of a pattern.
    host: String,
    subdomains: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Whether `url`'s host (and port, when the pattern names one) matches.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        let host_ok = if self.subdomains {
            host.strip_suffix(&self.host)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
        } else {
            host == self.host
        };
        host_ok
            && self
                .port
                .is_none_or(|port| url.port_or_known_default() == Some(port))
    }

    /// The pattern for exactly this URL's host and port.
    pub fn exactly(url: &Url) -> Option<Self> {
        Some(Self {
            host: url.host_str()?.to_ascii_lowercase(),
            subdomains: false,
            port: url.port_or_known_default(),
        })
    }
}

impl TryFrom<&str> for HostPattern {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        let invalid = |reason| NameError::new("host pattern", input, reason);
        let (subdomains, rest) = match input.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| invalid("has a port that is not a number"))?,
                ),
            ),
            None => (rest, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with('.')
            && !host.ends_with('.');
        if !valid {
            return Err(invalid(
                "must be a host name, \"*.\" and a domain, or either with :PORT",
            ));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            subdomains,
            port,
        })
    }
}

impl TryFrom<String> for HostPattern {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_hosts_subdomains_and_ports() {
        let github = HostPattern::try_from("github.com").unwrap();
        assert!(github.matches(&url("https://github.com/a/b")));
        assert!(github.matches(&url("https://GitHub.com:443/a")));
        assert!(!github.matches(&url("https://evilgithub.com/a")));
        assert!(!github.matches(&url("https://api.github.com/a")));
        let assets = HostPattern::try_from("*.githubusercontent.com").unwrap();
        assert!(assets.matches(&url("https://objects.githubusercontent.com/x")));
        assert!(!assets.matches(&url("https://githubusercontent.com/x")));
        assert!(!assets.matches(&url("https://evil-githubusercontent.com/x")));
        let local = HostPattern::try_from("127.0.0.1:8080").unwrap();
        assert!(local.matches(&url("http://127.0.0.1:8080/x")));
        assert!(!local.matches(&url("http://127.0.0.1:8081/x")));
        assert_eq!(assets.to_string(), "*.githubusercontent.com");
        for bad in ["", "*.", "a/b", "a:b", "http://x", ".x", "x."] {
            assert!(HostPattern::try_from(bad).is_err(), "{bad}");
        }
    }
}
