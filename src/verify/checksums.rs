//! The `SHA256SUMS` document: `<64 hex>  <file name>` per line, as `sha256sum` writes it.
//!
//! Parsing is lenient about whitespace (Terraform splits on any run of it) but strict about
//! the digest, so a malformed document is refused rather than half-read. The bytes themselves
//! are kept untouched elsewhere: the signature and every lock file pin them.

use std::fmt;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Terraform's legacy "zip hash": `zh:` + the hex digest of the archive.
    pub fn to_zh(self) -> String {
        format!("zh:{}", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumsError {
    #[error("SHA256SUMS line {line} is malformed")]
    MalformedLine { line: usize },
    #[error("SHA256SUMS is not valid UTF-8")]
    NotUtf8,
    #[error("SHA256SUMS lists {file} twice")]
    Duplicate { file: String },
}

/// The parsed entries of a SHA256SUMS document, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    entries: Vec<(String, Sha256Digest)>,
}

impl Checksums {
    pub fn parse(bytes: &[u8]) -> Result<Self, ChecksumsError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ChecksumsError::NotUtf8)?;
        let mut entries: Vec<(String, Sha256Digest)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(digest), Some(name), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(ChecksumsError::MalformedLine { line: index + 1 });
            };
            let digest = Sha256Digest::from_hex(digest)
                .ok_or(ChecksumsError::MalformedLine { line: index + 1 })?;
            // `sha256sum -b` marks binary mode with a leading '*'.
            let name = name.strip_prefix('*').unwrap_or(name);
            if entries.iter().any(|(n, _)| n == name) {
                return Err(ChecksumsError::Duplicate {
                    file: name.to_owned(),
                });
            }
            entries.push((name.to_owned(), digest));
        }
        Ok(Self { entries })
    }

    /// The digest listed for `file_name` (exact, case-sensitive match).
    pub fn digest_of(&self, file_name: &str) -> Option<Sha256Digest> {
        self.entries
            .iter()
            .find(|(name, _)| name == file_name)
            .map(|(_, digest)| *digest)
    }

    /// Every entry, in document order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Sha256Digest)> {
        self.entries.iter().map(|(n, d)| (n.as_str(), *d))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NULL_310: &[u8] = include_bytes!(
        "../../tests/fixtures/hashicorp-null-3.1.0/terraform-provider-null_3.1.0_SHA256SUMS"
    );

    #[test]
    fn parses_the_real_null_sums() {
        let sums = Checksums::parse(NULL_310).unwrap();
        assert_eq!(sums.entries().count(), 11);
        assert_eq!(
            sums.digest_of("terraform-provider-null_3.1.0_linux_amd64.zip")
                .unwrap()
                .to_hex(),
            "53e30545ff8926a8e30ad30648991ca8b93b6fa496272cd23b26763c8ee84515"
        );
        assert!(sums
            .digest_of("terraform-provider-null_3.1.0_LINUX_amd64.zip")
            .is_none());
    }

    #[test]
    fn accepts_any_whitespace_and_binary_marker() {
        let hex = "ab".repeat(32);
        let sums = Checksums::parse(format!("{hex}\t*a.zip\n\n{hex} b.zip").as_bytes()).unwrap();
        assert!(sums.digest_of("a.zip").is_some());
        assert!(sums.digest_of("b.zip").is_some());
    }

    #[test]
    fn refuses_malformed_documents() {
        let hex = "ab".repeat(32);
        for bad in [
            "zz  a.zip".to_owned(),
            hex.clone(),
            format!("{hex}  a.zip extra"),
            format!("{hex}  a.zip\n{hex}  a.zip"),
        ] {
            assert!(Checksums::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(Checksums::parse(&[0xff, 0xfe]).is_err());
    }
}
