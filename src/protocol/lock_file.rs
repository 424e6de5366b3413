//! Terraform's dependency lock file (`.terraform.lock.hcl`): read one, and write one exactly
//! as Terraform writes it, so that `terraform init` and `terraform providers lock` find
//! nothing to change.
//!
//! Terraform's order: the two header comments, then one `provider "ADDRESS"` block per
//! provider sorted by hostname, namespace and type, each with `version`, `constraints` (only
//! when the configuration has some, in Terraform's canonical form) and `hashes` (sorted as
//! strings, `h1:` and `zh:` together, one per line; left out when empty). Text in, text out;
//! reading and writing the file is the caller's business.
//! Format reference: <https://developer.hashicorp.com/terraform/language/files/dependency-lock>

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
};

use hcl::{Body, Expression};

const HEADER: &str = "# This file is maintained automatically by \"terraform init\".\n\
                      # Manual edits may be lost in future updates.\n";

/// What a lock file records for one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderLock {
    pub version: String,
    /// Canonical constraints text; empty when the configuration has none.
    pub constraints: String,
    pub hashes: BTreeSet<String>,
}

/// Sort key of a provider address, as Terraform orders them: by hostname, then namespace,
/// then type, each compared as a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockAddress {
    parts: (String, String, String),
}

impl LockAddress {
    /// A full address (`registry.terraform.io/hashicorp/aws`); a short one is completed as
    /// Terraform reads it.
    pub fn parse(address: &str) -> Option<Self> {
        let full = super::full_provider_address(address);
        let mut parts = full.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(host), Some(ns), Some(ty))
                if !host.is_empty() && !ns.is_empty() && !ty.is_empty() && !ty.contains('/') =>
            {
                Some(Self {
                    parts: (host.to_owned(), ns.to_owned(), ty.to_owned()),
                })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for LockAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (host, ns, ty) = &self.parts;
        write!(f, "{host}/{ns}/{ty}")
    }
}

/// A whole lock file: every provider it records.
pub type LockFile = BTreeMap<LockAddress, ProviderLock>;

#[derive(Debug, thiserror::Error)]
pub enum LockFileError {
    #[error("not valid HCL: {0}")]
    Hcl(#[from] hcl::Error),
    #[error("provider block {0:?} does not name a provider address")]
    BadAddress(String),
}

/// Reads every `provider` block of a lock file.
pub fn parse(text: &str) -> Result<LockFile, LockFileError> {
    let body: Body = hcl::parse(text)?;
    let mut locks = LockFile::new();
    for block in body.blocks().filter(|b| b.identifier() == "provider") {
        let label = block
            .labels()
            .first()
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default();
        let address = LockAddress::parse(&label).ok_or(LockFileError::BadAddress(label))?;
        let mut lock = ProviderLock::default();
        for attribute in block.body().attributes() {
            match (attribute.key(), attribute.expr()) {
                ("version", Expression::String(v)) => lock.version = v.clone(),
                ("constraints", Expression::String(c)) => lock.constraints = c.clone(),
                ("hashes", Expression::Array(items)) => {
                    lock.hashes.extend(items.iter().filter_map(|e| match e {
                        Expression::String(h) => Some(h.clone()),
                        _ => None,
                    }))
                }
                _ => {}
            }
        }
        locks.insert(address, lock);
    }
    Ok(locks)
}

/// The lock file as Terraform writes it.
pub fn render(locks: &LockFile) -> String {
    let mut out = String::from(HEADER);
    for (address, lock) in locks {
        out.push('\n');
        out.push_str(&render_block(address, lock));
    }
    out
}

/// One `provider` block, as Terraform writes it (also `GET /lock/…`'s answer).
pub fn render_block(address: &LockAddress, lock: &ProviderLock) -> String {
    let mut out = String::new();
    // Terraform's writer aligns the `=` of consecutive one-line attributes.
    let width = if lock.constraints.is_empty() {
        "version".len()
    } else {
        "constraints".len()
    };
    let _ = writeln!(out, "provider {} {{", quote(&address.to_string()));
    let _ = writeln!(out, "  {:<width$} = {}", "version", quote(&lock.version));
    if !lock.constraints.is_empty() {
        let _ = writeln!(
            out,
            "  {:<width$} = {}",
            "constraints",
            quote(&lock.constraints)
        );
    }
    if !lock.hashes.is_empty() {
        out.push_str("  hashes = [\n");
        for hash in &lock.hashes {
            let _ = writeln!(out, "    {},", quote(hash));
        }
        out.push_str("  ]\n");
    }
    out.push_str("}\n");
    out
}

/// An HCL string literal. Versions, constraints, addresses and hashes never need escapes
/// but a hand-edited file might hold anything.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' | '%' => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // As Terraform 1.x writes it (`terraform providers lock` for two platforms).
    const WRITTEN_BY_TERRAFORM: &str = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.31.0"
  constraints = "~> 5.0"
  hashes = [
    "h1:ltxyuBWIy9cq0kIKDJH1jeWJy/y7XJLjS4QrsQK4plA=",
    "h1:yGYwXZfjXCvmFx8FjcUJyYAfRa6mP4FdDkaGMQm1EvM=",
    "zh:0cdb9c2083bf0902442384f7309367791e4640581652dda456f2d6d7abf0de8d",
    "zh:2fe4884cb9642f48a5889f8dff8f5f511418a18537a9dfa77ada3bcdad391e4e",
  ]
}

provider "registry.terraform.io/hashicorp/local" {
  version = "2.1.0"
  hashes = [
    "h1:KfieWtVyGWwplSoLIB5usKAUnrIkDQBkWaR5TI+4WYg=",
    "zh:0f1ec65101fa35050978d483d6e8916664b7556800348456ff3d09454ac1eae2",
  ]
}
"#;

    #[test]
    fn reads_and_writes_back_byte_for_byte() {
        let locks = parse(WRITTEN_BY_TERRAFORM).unwrap();
        assert_eq!(locks.len(), 2);
        let aws = &locks[&LockAddress::parse("hashicorp/aws").unwrap()];
        assert_eq!(aws.version, "5.31.0");
        assert_eq!(aws.constraints, "~> 5.0");
        assert_eq!(aws.hashes.len(), 4);
        assert_eq!(render(&locks), WRITTEN_BY_TERRAFORM);
    }

    #[test]
    fn providers_sort_by_host_then_namespace_then_type() {
        let mut locks = LockFile::new();
        for address in [
            "registry.terraform.io/hashicorp/null",
            "localhost:8443/myproviders/local",
            "registry.terraform.io/hashicorp-x/a",
            "registry.terraform.io/hashicorp/aws",
        ] {
            let lock = ProviderLock {
                version: "1.0.0".to_owned(),
                ..Default::default()
            };
            locks.insert(LockAddress::parse(address).unwrap(), lock);
        }
        let order: Vec<String> = locks.keys().map(ToString::to_string).collect();
        // "hashicorp" < "hashicorp-x" as namespaces, though "hashicorp/" > "hashicorp-" as text.
        assert_eq!(
            order,
            [
                "localhost:8443/myproviders/local",
                "registry.terraform.io/hashicorp/aws",
                "registry.terraform.io/hashicorp/null",
                "registry.terraform.io/hashicorp-x/a",
            ]
        );
        // No hashes: no hashes attribute.
        assert!(!render(&locks).contains("hashes"));
    }

    #[test]
    fn a_bad_file_is_an_error() {
        assert!(parse("provider \"x\" {").is_err());
        assert!(parse("provider \"a/b/c/d\" {\n}\n").is_err());
    }
}
