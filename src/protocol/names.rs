//! Validated names taken from request paths and upstream listings.
//!
//! Every path segment a client sends becomes one of these newtypes before anything else looks
//! at it ("parse, don't validate"). The accepted alphabets are whitelists, so `..`, `/`, `\`,
//! NUL, percent-encodings and over-long segments are refused here, long before a name can reach
//! the cache layout. Namespace, type, OS and arch are compared case-insensitively by Terraform
//! and the public registries, so they are stored lowercase.

use std::{fmt, marker::PhantomData};

use serde::{Deserialize, Serialize};

/// Longest namespace or provider type we accept (the public registry's limit is 64).
pub const MAX_NAME_LEN: usize = 64;
/// Longest version string we accept; real versions are far shorter.
pub const MAX_VERSION_LEN: usize = 128;
/// Longest OS or architecture name (Go's names are at most ~10 characters).
pub const MAX_PLATFORM_PART_LEN: usize = 32;
/// Longest file name we accept in an artifact route.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Why a name was refused; the text is shown to the client in a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {shown:?}: {reason}")]
pub struct NameError {
    what: &'static str,
    shown: String,
    reason: &'static str,
}

impl NameError {
    pub(crate) fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        // Never echo a huge or binary segment back in full.
        let shown: String = input.chars().take(80).collect();
        Self {
            what,
            shown,
            reason,
        }
    }
}

fn check_segment(
    what: &'static str,
    input: &str,
    max_len: usize,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), NameError> {
    if input.is_empty() {
        return Err(NameError::new(what, input, "must not be empty"));
    }
    if input.len() > max_len {
        return Err(NameError::new(what, input, "is too long"));
    }
    if !input.bytes().all(allowed) {
        return Err(NameError::new(
            what,
            input,
            "contains a character that is not allowed",
        ));
    }
    Ok(())
}

/// Serde for a name: written as its text, read from a string (borrowed or not) through its
/// `TryFrom<&str>`, so reading one makes no `String` just to check and copy it, and writing
/// one copies nothing. Long listings hold thousands of names.
macro_rules! serde_as_text {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(NameVisitor(PhantomData))
            }
        }
    };
}

/// Reads a string into a name `N`, refusing it with the name's own error.
struct NameVisitor<N>(PhantomData<N>);

impl<N> serde::de::Visitor<'_> for NameVisitor<N>
where
    N: for<'a> TryFrom<&'a str, Error = NameError>,
{
    type Value = N;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<N, E> {
        N::try_from(text).map_err(E::custom)
    }
}

macro_rules! lowercase_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        serde_as_text!($name);

        impl $name {
            /// The normalised (lowercase) name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(input: &str) -> Result<Self, NameError> {
                check_segment($what, input, $max, $allowed)?;
                Ok(Self(input.to_ascii_lowercase()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(input: String) -> Result<Self, NameError> {
                Self::try_from(input.as_str())
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_platform_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

lowercase_name!(
    /// A provider namespace as it appears in a source address (`myproviders` in
    /// `localhost:8443/myproviders/local`), or the name of a configured namespace.
    Namespace, "namespace", MAX_NAME_LEN, is_name_byte
);
lowercase_name!(
    /// A provider type (`local`, `aws`): the last part of a source address.
    ProviderType, "provider type", MAX_NAME_LEN, is_name_byte
);
lowercase_name!(
    /// The name of an `[upstreams.NAME]` table; it names the upstream's directory in the cache.
    UpstreamName, "upstream name", MAX_NAME_LEN, is_name_byte
);

/// A namespace as config keys name it: one namespace, or `*` for every namespace that is not
/// configured otherwise. Orders `*` last, so exact entries come first when listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NamespacePattern {
    Exact(Namespace),
    Any,
}

impl NamespacePattern {
    pub fn matches(&self, namespace: &Namespace) -> bool {
        match self {
            Self::Exact(exact) => exact == namespace,
            Self::Any => true,
        }
    }
}

impl TryFrom<&str> for NamespacePattern {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        match input {
            "*" => Ok(Self::Any),
            _ => Namespace::try_from(input).map(Self::Exact),
        }
    }
}

impl TryFrom<String> for NamespacePattern {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<NamespacePattern> for String {
    fn from(pattern: NamespacePattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(namespace) => namespace.fmt(f),
            Self::Any => f.write_str("*"),
        }
    }
}

/// What every provider's files are called after: `terraform-provider-<type>`.
pub const PRODUCT_PREFIX: &str = "terraform-provider-";

impl ProviderType {
    /// The provider's product name (`terraform-provider-local`), the stem of its file names.
    pub fn product_name(&self) -> String {
        format!("{PRODUCT_PREFIX}{self}")
    }

    /// The provider type of a product name, if it is one.
    pub fn from_product_name(product: &str) -> Option<Self> {
        Self::try_from(product.strip_prefix(PRODUCT_PREFIX)?).ok()
    }
}
lowercase_name!(
    /// A Go operating system name (`linux`, `darwin`, `windows`).
    Os, "os", MAX_PLATFORM_PART_LEN, is_platform_byte
);
lowercase_name!(
    /// A Go architecture name (`amd64`, `arm64`, `386`).
    Arch, "arch", MAX_PLATFORM_PART_LEN, is_platform_byte
);

/// A target platform, written `os_arch` in mirror documents and `/os/arch` in registry paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: Os,
    pub arch: Arch,
}

impl TryFrom<&str> for Platform {
    type Error = NameError;

    /// `linux_amd64`, as Terraform writes platforms.
    fn try_from(input: &str) -> Result<Self, NameError> {
        let (os, arch) = input
            .split_once('_')
            .ok_or_else(|| NameError::new("platform", input, "must be written OS_ARCH"))?;
        Self::new(os, arch)
    }
}

impl Platform {
    /// The platform of an OS and an architecture named apart, as upstream listings do.
    pub fn new(os: &str, arch: &str) -> Result<Self, NameError> {
        Ok(Self {
            os: Os::try_from(os)?,
            arch: Arch::try_from(arch)?,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.os, self.arch)
    }
}

/// A provider version in canonical semver form (`2.1.0`, `1.0.0-beta1`), never `v2.1.0` or
/// `2.1`: Terraform re-serialises versions it parses and requests them under that spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    text: String,
    parsed: semver::Version,
}

serde_as_text!(Version);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn semver(&self) -> &semver::Version {
        &self.parsed
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parsed.cmp(&other.parsed)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TryFrom<&str> for Version {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        check_segment("version", input, MAX_VERSION_LEN, |b| {
            b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+'
        })?;
        let parsed = semver::Version::parse(input)
            .map_err(|_| NameError::new("version", input, "is not a semantic version"))?;
        // Build metadata is ignored by Terraform and would alias two spellings of one version.
        if !parsed.build.is_empty() || parsed.to_string() != input {
            return Err(NameError::new("version", input, "is not in canonical form"));
        }
        Ok(Self {
            text: input.to_owned(),
            parsed,
        })
    }
}

impl TryFrom<String> for Version {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<Version> for String {
    fn from(version: Version) -> String {
        version.text
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A file name inside one release directory (`terraform-provider-local_2.1.0_linux_amd64.zip`,
/// `..._SHA256SUMS.72D7468F.sig`). Case is kept: SHA256SUMS names are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

serde_as_text!(FileName);

impl FileName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `input` is a valid file name, without keeping it (a listing's thousands of
    /// builds are checked, not kept).
    pub fn check(input: &str) -> Result<(), NameError> {
        check_segment("file name", input, MAX_FILE_NAME_LEN, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+')
        })?;
        if input.starts_with('.') {
            return Err(NameError::new(
                "file name",
                input,
                "must not start with a dot",
            ));
        }
        Ok(())
    }
}

impl TryFrom<&str> for FileName {
    type Error = NameError;
    fn try_from(input: &str) -> Result<Self, NameError> {
        Self::check(input)?;
        Ok(Self(input.to_owned()))
    }
}

impl TryFrom<String> for FileName {
    type Error = NameError;
    fn try_from(input: String) -> Result<Self, NameError> {
        Self::try_from(input.as_str())
    }
}

impl From<FileName> for String {
    fn from(name: FileName) -> String {
        name.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_lowercased() {
        assert_eq!(
            Namespace::try_from("MyProviders").unwrap().as_str(),
            "myproviders"
        );
        assert_eq!(ProviderType::try_from("Local").unwrap().as_str(), "local");
    }

    #[test]
    fn hostile_segments_are_refused() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "a\\b",
            "a\0b",
            "%2e%2e",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(Namespace::try_from(bad).is_err(), "{bad:?} accepted");
            assert!(ProviderType::try_from(bad).is_err(), "{bad:?} accepted");
            assert!(Os::try_from(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "a\0b", "%2F"] {
            assert!(FileName::try_from(bad).is_err(), "{bad:?} accepted");
            assert!(FileName::check(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_must_be_canonical_semver() {
        assert!(Version::try_from("2.1.0").is_ok());
        assert!(Version::try_from("1.0.0-beta1").is_ok());
        for bad in [
            "v2.1.0",
            "2.1",
            "02.1.0",
            "2.1.0+build",
            "../2.1.0",
            "latest",
            "",
        ] {
            assert!(Version::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_order_by_semver_precedence() {
        let mut v: Vec<Version> = ["1.10.0", "1.2.0", "1.2.0-rc1", "1.9.9"]
            .into_iter()
            .map(|s| Version::try_from(s).unwrap())
            .collect();
        v.sort();
        let order: Vec<&str> = v.iter().map(Version::as_str).collect();
        assert_eq!(order, ["1.2.0-rc1", "1.2.0", "1.9.9", "1.10.0"]);
    }
}
