//! Terraform's `h1:` package hash ("hash scheme 1"): Go's `dirhash.Hash1` over a zip's entries.
//!
//! For every entry name in the central directory (directory entries included, as Go's
//! `HashZip` does), the line `hex(sha256(content)) + "  " + name + "\n"`; lines sorted by the
//! names' bytes; `h1:` + base64(sha256(all lines)). Compression, timestamps and modes do not
//! matter. Terraform checks a mirror's `h1:` against the zip it downloaded this way.

use std::io::{Read, Seek};

use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("archive is not a readable zip: {0}")]
    Zip(String),
    #[error("zip entry name contains a newline")]
    NewlineInName,
}

/// The `h1:` hash of a zip archive.
pub fn h1_of_zip(reader: impl Read + Seek) -> Result<String, HashError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| HashError::Zip(e.to_string()))?;
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| HashError::Zip(e.to_string()))?;
        let name = entry.name().to_owned();
        let mut hasher = Sha256::new();
        std::io::copy(&mut entry, &mut hasher).map_err(|e| HashError::Zip(e.to_string()))?;
        entries.push((name, hasher.finalize()));
    }
    h1_of_entries(entries)
}

/// `h1:` of named contents, given as (name, sha256 of content) pairs in any order.
fn h1_of_entries(mut entries: Vec<(String, impl AsRef<[u8]>)>) -> Result<String, HashError> {
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut summary = Sha256::new();
    for (name, digest) in &entries {
        if name.contains('\n') {
            return Err(HashError::NewlineInName);
        }
        summary.update(format!("{}  {name}\n", hex::encode(digest)));
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::{Cursor, Write};

    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            for (name, content) in files {
                zip.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                zip.write_all(content).unwrap();
            }
            zip.finish().unwrap();
        }
        out.into_inner()
    }

    fn h1(files: &[(&str, &[u8])]) -> String {
        h1_of_zip(Cursor::new(zip_of(files))).unwrap()
    }

    // Known answers from Terraform's and tfupdate's test suites and Go's dirhash tests.
    #[test]
    fn k1_terraform_testdata_null_provider() {
        let content =
            b"# This is just a placeholder file for discovery testing, not a real provider plugin.\n";
        assert_eq!(
            h1(&[("terraform-provider-null", content)]),
            "h1:qjsREM4DqEWECD43FcPqddZ9oxCG+IaMTxvWPciS05g="
        );
    }

    #[test]
    fn k2_to_k4_tfupdate_dummies() {
        let name = "terraform-provider-dummy_v3.2.1_x5";
        assert_eq!(
            h1(&[(name, b"dummy_3.2.1_linux_amd64")]),
            "h1:2zotrPRAjGZZMkjJGBGLnIbG+sqhQN30sbwqSDECQFQ="
        );
        assert_eq!(
            h1(&[(name, b"dummy_3.2.1_darwin_arm64")]),
            "h1:3323G20HW9PA9ONrL6CdQCdCFe6y94kXeOTprq+Zu+w="
        );
        assert_eq!(
            h1(&[(name, b"dummy_3.2.1_darwin_amd64")]),
            "h1:63My0EuWIYHWVwWOxmxWwgrfx+58Tz+nTduelaCCAfs="
        );
    }

    #[test]
    fn k5_entries_are_sorted_by_name() {
        assert_eq!(
            h1(&[("xyz", b"data for xyz"), ("abc", b"data for abc")]),
            "h1:EP6WfDoQTSk9klnxcjriWJOGztueJUywHNmWeq+efB8="
        );
    }

    #[test]
    fn k6_several_files() {
        assert_eq!(
            h1(&[
                ("terraform-provider-example_v1.0.0_x5", b"binary\n"),
                ("LICENSE", b"MIT\n"),
                ("README.md", b"hi\n"),
            ]),
            "h1:kzfwopROe3jL43wGUqXAth+LzqFiNTZI5DMRVS11P8M="
        );
    }

    #[test]
    fn garbage_is_not_a_zip() {
        assert!(h1_of_zip(Cursor::new(b"not a zip".to_vec())).is_err());
    }
}
