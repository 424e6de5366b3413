//! `tfmirror verify`: re-checks everything cached against its signed SHA256SUMS.
//!
//! Every release's signature is verified again with today's keyring (as serving does), and
//! every cached archive is re-hashed. Whatever fails is reported and, when repairing, removed
//! — the next request fetches it again through the normal verified path.

use super::OpsError;
use crate::{
    mirror::{Mirror, Release},
    protocol::{ReleaseKey, UpstreamName},
    store::{layout, Item, LayoutError, Location, ReleaseEntry},
    verify::h1_of_zip,
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
    /// Where it is in the store.
    pub location: Location,
    pub problem: String,
}

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

/// Re-verifies the whole cache; with `Repair`, removes what fails. `progress` gets one line
/// per release checked.
pub async fn audit(
    mirror: &Mirror,
    mode: AuditMode,
    progress: impl Fn(&str),
) -> Result<AuditReport, OpsError> {
    let mut report = AuditReport::default();
    // Each upstream we cannot verify for is reported once, whatever it holds.
    let mut unverifiable = std::collections::BTreeSet::<UpstreamName>::new();
    for key in mirror.store().releases().await? {
        let upstream = &key.provider.upstream;
        if !mirror.has_upstream(upstream) {
            if unverifiable.insert(upstream.clone()) {
                let problem = format!("no [upstreams.{upstream}] is configured to verify it with");
                if mode == AuditMode::Import {
                    report.damaged.push(Damage {
                        location: layout::upstream_dir(upstream)?,
                        problem,
                    });
                } else {
                    progress(&format!("skipping {upstream}: {problem}"));
                }
            }
            continue;
        }
        audit_release(mirror, &key, mode, &mut report).await?;
        progress(&format!(
            "checked {key}: {} damaged so far",
            report.damaged.len()
        ));
    }
    Ok(report)
}

async fn audit_release(
    mirror: &Mirror,
    key: &ReleaseKey,
    mode: AuditMode,
    report: &mut AuditReport,
) -> Result<(), OpsError> {
    let store = mirror.store();
    let dir = layout::release_dir(key)?;
    if !store.exists(Item::ReleaseRecord(key)).await {
        // Files are written before the record: without one, nothing here was ever served
        // and the next request fetches the release again. A bundle has no such excuse.
        if mode == AuditMode::Import {
            report.damaged.push(Damage {
                location: dir,
                problem: "files without a release record".to_owned(),
            });
        }
        return Ok(());
    }
    report.releases += 1;
    let Some(release) = mirror.stored_release(key).await? else {
        report.damaged.push(Damage {
            location: dir,
            problem: "release record, SHA256SUMS or its signature does not verify".to_owned(),
        });
        if mode == AuditMode::Repair {
            store.remove_release(key).await?;
            mirror.forget_release(key).await;
            report.removed += 1;
        }
        return Ok(());
    };
    if mode == AuditMode::Import {
        for name in store.foreign_names(key).await? {
            report.damaged.push(Damage {
                location: dir.join(&name).unwrap_or_else(|_| dir.clone()),
                problem: "a file the release does not name".to_owned(),
            });
        }
    }
    for entry in store.release_entries(key).await? {
        let file = match entry {
            ReleaseEntry::Record => continue,
            // Derived records: ours to compute, never a bundle's to bring.
            ReleaseEntry::H1(archive) => {
                if mode == AuditMode::Import {
                    report
                        .damaged
                        .push(not_named(Item::H1(&key.file(archive)))?);
                }
                continue;
            }
            ReleaseEntry::Digest(archive) => {
                if mode == AuditMode::Import {
                    report
                        .damaged
                        .push(not_named(Item::Digest(&key.file(archive)))?);
                }
                continue;
            }
            ReleaseEntry::File(file) => key.file(file),
        };
        if !file.file.as_str().ends_with(".zip") {
            if let Some(problem) = check_small_file(mirror, &release, &file, mode).await? {
                report.damaged.push(Damage {
                    location: layout::location(Item::File(&file))?,
                    problem,
                });
            }
            continue;
        }
        let problem = match release.digest_of(&file.file) {
            None => Some("not listed in the signed SHA256SUMS".to_owned()),
            Some(expected) => match store.digest_of(Item::File(&file)).await? {
                None => continue,
                Some((actual, bytes)) => {
                    report.archives += 1;
                    report.bytes += bytes;
                    (actual != expected)
                        .then(|| format!("SHA-256 {actual} does not match the signed {expected}"))
                }
            },
        };
        if problem.is_none() && mode != AuditMode::Import {
            check_h1(mirror, &file, mode, report).await?;
            continue;
        }
        if let Some(problem) = problem {
            let location = layout::location(Item::File(&file))?;
            tracing::error!(%location, %problem, "damaged archive in the cache");
            report.damaged.push(Damage { location, problem });
            if mode == AuditMode::Repair {
                store.remove_archive(&file).await?;
                report.removed += 1;
            }
        }
    }
    Ok(())
}

fn not_named(item: Item<'_>) -> Result<Damage, LayoutError> {
    Ok(Damage {
        location: layout::location(item)?,
        problem: "a file the release does not name".to_owned(),
    })
}

/// A verified archive's `.h1` record must be the `h1:` of that archive: it is what the network
/// mirror hands Terraform to check the package with. A wrong one is damage; repairing removes
/// it and the next request computes it again.
async fn check_h1(
    mirror: &Mirror,
    file: &crate::protocol::FileKey,
    mode: AuditMode,
    report: &mut AuditReport,
) -> Result<(), OpsError> {
    let store = mirror.store();
    let Some(recorded) = store.read(Item::H1(file)).await? else {
        return Ok(());
    };
    let Some(archive) = store.open(Item::File(file)).await? else {
        return Ok(());
    };
    let (archive, _) = archive.into_file();
    let computed = tokio::task::spawn_blocking(move || {
        h1_of_zip(std::io::BufReader::new(archive)).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| OpsError::Internal(e.to_string()))?;
    let actual = match computed {
        Ok(actual) => actual,
        Err(e) => {
            tracing::warn!(file = %file, error = %e, "cannot compute the h1 of a verified archive");
            return Ok(());
        }
    };
    if recorded.bytes == actual.as_bytes() {
        return Ok(());
    }
    let location = layout::location(Item::H1(file))?;
    let problem = format!(
        "recorded {:?} is not the archive's {actual}",
        String::from_utf8_lossy(&recorded.bytes)
    );
    tracing::error!(%location, %problem, "wrong h1 record in the cache");
    report.damaged.push(Damage { location, problem });
    if mode == AuditMode::Repair {
        store.remove(Item::H1(file)).await?;
        mirror.forget_release(&file.release).await;
        report.removed += 1;
    }
    Ok(())
}

/// Small files are checked only for bundles: a bundle may hold only what the release names,
/// and its manifest must match the signed SHA256SUMS.
async fn check_small_file(
    mirror: &Mirror,
    release: &Release,
    file: &crate::protocol::FileKey,
    mode: AuditMode,
) -> Result<Option<String>, OpsError> {
    let named = file.file == release.shasums_file || release.is_signature(&file.file);
    if mode != AuditMode::Import || named {
        return Ok(None);
    }
    let manifest = format!("{}_manifest.json", file.release.file_stem());
    if file.file.as_str() != manifest {
        return Ok(Some("a file the release does not name".to_owned()));
    }
    let expected = release.digest_of(&file.file);
    let actual = mirror
        .store()
        .digest_of(Item::File(file))
        .await?
        .map(|(digest, _)| digest);
    Ok((expected.is_none() || expected != actual)
        .then(|| "manifest does not match the signed SHA256SUMS".to_owned()))
}
