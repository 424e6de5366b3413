//! Terraform version constraints (`"~> 5.0"`, `">= 1.2, < 2.0"`, `"2.1.0"`), as
//! `required_providers` and `[[prefetch]]` write them.
//!
//! Terraform's rules, not Cargo's: `~> 5.0` allows any 5.x (Cargo's `~5.0` would stop at
//! 5.1), `~> 5.0.3` allows 5.0.x from 5.0.3, a bare version means exactly that version, and a
//! pre-release is only ever selected by an exact (`=`) constraint naming it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Pessimistic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraint {
    op: Op,
    version: semver::Version,
    /// How many of major.minor.patch were written (`~> 5.0` is 2).
    segments: usize,
}

/// A comma-separated list of constraints; a version must satisfy all of them. Serialised as
/// the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VersionConstraints {
    text: String,
    all: Vec<Constraint>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version constraint {text:?}: {reason}")]
pub struct ConstraintError {
    text: String,
    reason: String,
}

impl VersionConstraints {
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let fail = |reason: String| ConstraintError {
            text: text.to_owned(),
            reason,
        };
        let mut all = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(fail("an empty constraint".to_owned()));
            }
            let (op, rest) = [
                ("~>", Op::Pessimistic),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                ("=", Op::Eq),
                (">", Op::Gt),
                ("<", Op::Lt),
            ]
            .iter()
            .find_map(|(prefix, op)| part.strip_prefix(prefix).map(|rest| (*op, rest.trim())))
            .unwrap_or((Op::Eq, part));
            let rest = rest.strip_prefix('v').unwrap_or(rest);
            let (core, suffix) = match rest.find(['-', '+']) {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            let numbers: Vec<&str> = core.split('.').collect();
            if numbers.is_empty()
                || numbers.len() > 3
                || numbers
                    .iter()
                    .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(fail(format!("{part:?} is not a version")));
            }
            let mut padded: Vec<&str> = numbers.clone();
            padded.resize(3, "0");
            let version = semver::Version::parse(&format!("{}{suffix}", padded.join(".")))
                .map_err(|e| fail(format!("{part:?}: {e}")))?;
            all.push(Constraint {
                op,
                version,
                segments: numbers.len(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            all,
        })
    }

    /// Whether Terraform would select `version` under these constraints.
    pub fn matches(&self, version: &Version) -> bool {
        let v = version.semver();
        if !v.pre.is_empty() {
            // Pre-releases only by an exact constraint naming them.
            return self.all.iter().any(|c| c.op == Op::Eq && c.version == *v)
                && self.all.iter().all(|c| c.allows(v));
        }
        self.all.iter().all(|c| c.allows(v))
    }
}

impl VersionConstraints {
    /// The constraints as Terraform records them in a lock file: duplicates removed, sorted
    /// by boundary version then operator, every version written in full except `~> X.Y`
    /// (`>= 2.0, < 3` is `>= 2.0.0, < 3.0.0`; `~> 3` is `~> 3.0`).
    pub fn canonical(&self) -> String {
        let mut terms: Vec<(&semver::Version, u8, String)> = Vec::new();
        for c in &self.all {
            let (priority, op) = match (c.op, c.segments) {
                (Op::Gt, _) => (1, "> "),
                (Op::Ge, _) => (2, ">= "),
                (Op::Eq, _) => (3, ""),
                (Op::Pessimistic, 3) => (4, "~> "),
                (Op::Pessimistic, _) => (5, "~> "),
                (Op::Le, _) => (6, "<= "),
                (Op::Lt, _) => (7, "< "),
                (Op::Ne, _) => (8, "!= "),
            };
            let v = &c.version;
            let mut text = if priority == 5 {
                format!("{op}{}.{}", v.major, v.minor)
            } else {
                format!("{op}{}.{}.{}", v.major, v.minor, v.patch)
            };
            if !v.pre.is_empty() {
                text.push_str(&format!("-{}", v.pre));
            }
            if !v.build.is_empty() {
                text.push_str(&format!("+{}", v.build));
            }
            if !terms.iter().any(|(_, p, t)| *p == priority && *t == text) {
                terms.push((v, priority, text));
            }
        }
        terms.sort_by(|a, b| {
            let (va, vb) = (a.0, b.0);
            (
                va.major,
                va.minor,
                va.patch,
                &va.pre,
                va.build.as_str(),
                a.1,
            )
                .cmp(&(
                    vb.major,
                    vb.minor,
                    vb.patch,
                    &vb.pre,
                    vb.build.as_str(),
                    b.1,
                ))
        });
        terms
            .into_iter()
            .map(|(_, _, text)| text)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Constraint {
    fn allows(&self, v: &semver::Version) -> bool {
        let c = &self.version;
        let cmp = |a: &semver::Version, b: &semver::Version| {
            (a.major, a.minor, a.patch, &a.pre).cmp(&(b.major, b.minor, b.patch, &b.pre))
        };
        use std::cmp::Ordering::*;
        match self.op {
            Op::Eq => cmp(v, c) == Equal,
            Op::Ne => cmp(v, c) != Equal,
            Op::Gt => cmp(v, c) == Greater,
            Op::Ge => cmp(v, c) != Less,
            Op::Lt => cmp(v, c) == Less,
            Op::Le => cmp(v, c) != Greater,
            Op::Pessimistic => {
                if cmp(v, c) == Less {
                    return false;
                }
                match self.segments {
                    // `~> 1` and `~> 1.2`: the same major version.
                    1 | 2 => v.major == c.major,
                    // `~> 1.2.3`: the same minor version.
                    _ => v.major == c.major && v.minor == c.minor,
                }
            }
        }
    }
}

impl TryFrom<String> for VersionConstraints {
    type Error = ConstraintError;
    fn try_from(text: String) -> Result<Self, ConstraintError> {
        Self::parse(&text)
    }
}

impl From<VersionConstraints> for String {
    fn from(constraints: VersionConstraints) -> String {
        constraints.text
    }
}

impl fmt::Display for VersionConstraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn allowed(constraint: &str, versions: &[&str]) -> Vec<String> {
        let c = VersionConstraints::parse(constraint).unwrap();
        versions
            .iter()
            .map(|v| Version::try_from(*v).unwrap())
            .filter(|v| c.matches(v))
            .map(|v| v.to_string())
            .collect()
    }

    const ALL: &[&str] = &[
        "4.9.0",
        "5.0.0",
        "5.0.3",
        "5.0.9",
        "5.1.0",
        "5.31.2",
        "6.0.0",
        "6.0.0-beta1",
    ];

    #[test]
    fn pessimistic_follows_terraform_not_cargo() {
        assert_eq!(
            allowed("~> 5.0", ALL),
            ["5.0.0", "5.0.3", "5.0.9", "5.1.0", "5.31.2"]
        );
        assert_eq!(allowed("~> 5.0.3", ALL), ["5.0.3", "5.0.9"]);
        assert_eq!(
            allowed("~> 5", ALL),
            ["5.0.0", "5.0.3", "5.0.9", "5.1.0", "5.31.2"]
        );
    }

    #[test]
    fn ranges_exact_and_exclusions() {
        assert_eq!(
            allowed(">= 5.0.3, < 5.31", ALL),
            ["5.0.3", "5.0.9", "5.1.0"]
        );
        assert_eq!(allowed("5.0.3", ALL), ["5.0.3"]);
        assert_eq!(allowed("= 5.0.3", ALL), ["5.0.3"]);
        assert_eq!(allowed("~> 5.0, != 5.0.9", ALL).len(), 4);
        assert_eq!(allowed("> 5.31.2", ALL), ["6.0.0"]);
        assert_eq!(allowed("<= 5.0.0", ALL), ["4.9.0", "5.0.0"]);
    }

    #[test]
    fn prereleases_only_by_exact_constraint() {
        assert!(!allowed(">= 5.0", ALL).contains(&"6.0.0-beta1".to_owned()));
        assert_eq!(allowed("6.0.0-beta1", ALL), ["6.0.0-beta1"]);
    }

    #[test]
    fn serde_is_the_written_text() {
        let c: VersionConstraints = serde_json::from_str(r#"">= 1.2, < 2.0""#).unwrap();
        assert!(c.matches(&Version::try_from("1.5.0").unwrap()));
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"">= 1.2, < 2.0""#);
        assert!(serde_json::from_str::<VersionConstraints>(r#""~> five""#).is_err());
    }

    // Terraform's own cases (`getproviders.VersionConstraintsString`).
    #[test]
    fn canonical_is_what_terraform_writes_in_lock_files() {
        for (written, canonical) in [
            ("1.2.3", "1.2.3"),
            ("1.2.3-beta", "1.2.3-beta"),
            (">= 3", ">= 3.0.0"),
            ("~> 3", "~> 3.0"),
            ("~> 3.0", "~> 3.0"),
            ("~> 3.0.0", "~> 3.0.0"),
            (
                "> 1.0.0, < 1.0.0, >= 1.0.0, <= 1.0.0, != 1.0.0",
                "> 1.0.0, >= 1.0.0, <= 1.0.0, < 1.0.0, != 1.0.0",
            ),
            (">= 3.0, < 4.0", ">= 3.0.0, < 4.0.0"),
            (">= 1.2.3, 1.2.3, ~> 1.2, 1.2.3", "~> 1.2, >= 1.2.3, 1.2.3"),
            (">= 2.68, >= 2.68.0", ">= 2.68.0"),
            ("~> 1.2, >= 1.2, 1.2.4", ">= 1.2.0, ~> 1.2, 1.2.4"),
            (">= 2, >= 1.2, < 1.3", ">= 1.2.0, < 1.3.0, >= 2.0.0"),
        ] {
            assert_eq!(
                VersionConstraints::parse(written).unwrap().canonical(),
                canonical,
                "{written}"
            );
        }
    }

    #[test]
    fn nonsense_is_an_error() {
        for bad in ["", "~>", ">= x", "1.2.3.4", "5.0,", "=> 1.0"] {
            assert!(VersionConstraints::parse(bad).is_err(), "{bad:?}");
        }
    }
}
