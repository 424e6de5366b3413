//! `tfmirror verify`: re-checks everything cached against its signed SHA256SUMS.
//!
//! Every release's signature is verified again with today's keyring (as serving does), and
//! every cached archive is re-hashed. Whatever fails is reported and, when repairing, removed
//! — the next request fetches it again through the normal verified path.

use std::path::PathBuf;

use super::{Mirror, MirrorError};
use crate::{
    protocol::{FileName, ProviderType, Version},
    store::layout,
};

/// What a verification run found.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub releases: usize,
    pub archives: usize,
    pub bytes: u64,
    pub damaged: Vec<Damage>,
    pub removed: usize,
}

/// One cached thing that is not what its signed SHA256SUMS says.
#[derive(Debug)]
pub struct Damage {
    pub path: PathBuf,
    pub problem: String,
}

const PRODUCT_PREFIX: &str = "terraform-provider-";

/// How an audit treats what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// Report damage only.
    Report,
    /// Report and remove damage.
    Repair,
    /// A bundle being imported: besides damage, anything not backed by a verified release
    /// (a file of no release, a file the release does not name, an upstream we cannot verify
    /// for, a derived `.h1` we would rather compute ourselves) counts as damage.
    Import,
}

impl Mirror {
    /// Re-verifies the whole cache; with `repair`, removes what fails. `progress` gets one
    /// line per release checked.
    pub async fn audit(
        &self,
        mode: AuditMode,
        progress: impl Fn(&str),
    ) -> Result<AuditReport, MirrorError> {
        let store = &self.inner.store;
        let mut report = AuditReport::default();
        // Each upstream we cannot verify for is reported once, whatever it holds.
        let mut unverifiable = std::collections::BTreeSet::new();
        for dir in self.release_dirs().await? {
            let upstream = &dir.upstream;
            if self.upstream(upstream).is_err() {
                if unverifiable.insert(upstream.clone()) {
                    let problem =
                        format!("no [upstreams.{upstream}] is configured to verify it with");
                    if mode == AuditMode::Import {
                        report.damaged.push(Damage {
                            path: layout::releases_dir(store.root()).join(upstream),
                            problem,
                        });
                    } else {
                        progress(&format!("skipping {upstream}: {problem}"));
                    }
                }
                continue;
            }
            self.audit_release(upstream, &dir.provider, &dir.version, mode, &mut report)
                .await?;
            progress(&format!(
                "checked {upstream}/{PRODUCT_PREFIX}{} {}: {} damaged so far",
                dir.provider,
                dir.version,
                report.damaged.len()
            ));
        }
        Ok(report)
    }

    async fn audit_release(
        &self,
        upstream: &str,
        provider: &ProviderType,
        version: &Version,
        mode: AuditMode,
        report: &mut AuditReport,
    ) -> Result<(), MirrorError> {
        let repair = mode == AuditMode::Repair;
        let store = &self.inner.store;
        let root = store.root();
        let dir = layout::release_dir(root, upstream, provider, version)?;
        if !store
            .exists(&layout::release_record(root, upstream, provider, version)?)
            .await
        {
            // Files are written before the record: without one, nothing here was ever served
            // and the next request fetches the release again. A bundle has no such excuse.
            if mode == AuditMode::Import {
                report.damaged.push(Damage {
                    path: dir,
                    problem: "files without a release record".to_owned(),
                });
            }
            return Ok(());
        }
        report.releases += 1;
        let source = self.upstream(upstream)?;
        let Some(release) = self
            .load_release(upstream, source, provider, version)
            .await?
        else {
            report.damaged.push(Damage {
                path: dir.clone(),
                problem: "release record, SHA256SUMS or its signature does not verify".to_owned(),
            });
            if repair {
                store.remove_dir(&dir).await?;
                report.removed += 1;
            }
            return Ok(());
        };
        let manifest = format!("{PRODUCT_PREFIX}{provider}_{version}_manifest.json");
        for name in store.list_dir(&dir).await?.files {
            if !name.ends_with(".zip") {
                let named = name == "release.json"
                    || name == release.shasums_file.as_str()
                    || name == release.signature_file.as_str();
                let problem = if mode != AuditMode::Import || named {
                    None
                } else if name == manifest {
                    let expected = release.checksums.digest_of(&name);
                    let (actual, _) = store.digest_of(&dir.join(&name)).await?;
                    (expected != Some(actual))
                        .then(|| "manifest does not match the signed SHA256SUMS".to_owned())
                } else {
                    Some("a file the release does not name".to_owned())
                };
                if let Some(problem) = problem {
                    report.damaged.push(Damage {
                        path: dir.join(&name),
                        problem,
                    });
                }
                continue;
            }
            let path = dir.join(&name);
            let listed = FileName::try_from(name.as_str())
                .ok()
                .and_then(|file| release.digest_of(&file));
            let problem = match listed {
                None => Some("not listed in the signed SHA256SUMS".to_owned()),
                Some(expected) => {
                    let (actual, bytes) = store.digest_of(&path).await?;
                    report.archives += 1;
                    report.bytes += bytes;
                    (actual != expected)
                        .then(|| format!("SHA-256 {actual} does not match the signed {expected}"))
                }
            };
            if let Some(problem) = problem {
                tracing::error!(path = %path.display(), %problem, "damaged archive in the cache");
                report.damaged.push(Damage {
                    path: path.clone(),
                    problem,
                });
                if repair {
                    store.remove_file(&path).await?;
                    store.remove_file(&dir.join(format!("{name}.h1"))).await?;
                    report.removed += 1;
                }
            }
        }
        Ok(())
    }
}
