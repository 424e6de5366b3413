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

impl Mirror {
    /// Re-verifies the whole cache; with `repair`, removes what fails. `progress` gets one
    /// line per release checked.
    pub async fn audit(
        &self,
        repair: bool,
        progress: impl Fn(&str),
    ) -> Result<AuditReport, MirrorError> {
        let store = &self.inner.store;
        let mut report = AuditReport::default();
        let upstreams = store
            .list_dir(&layout::releases_dir(store.root()))
            .await?
            .dirs;
        for upstream in upstreams {
            if self.upstream(&upstream).is_err() {
                progress(&format!(
                    "skipping {upstream}: no [upstreams.{upstream}] is configured to verify it with"
                ));
                continue;
            }
            let upstream_dir = layout::upstream_dir(store.root(), &upstream)?;
            for product in store.list_dir(&upstream_dir).await?.dirs {
                let Some(provider) = product
                    .strip_prefix(PRODUCT_PREFIX)
                    .and_then(|t| ProviderType::try_from(t).ok())
                else {
                    continue;
                };
                let provider_dir = layout::provider_dir(store.root(), &upstream, &provider)?;
                for version in store.list_dir(&provider_dir).await?.dirs {
                    let Ok(version) = Version::try_from(version.as_str()) else {
                        continue;
                    };
                    self.audit_release(&upstream, &provider, &version, repair, &mut report)
                        .await?;
                    progress(&format!(
                        "checked {upstream}/{product} {version}: {} damaged so far",
                        report.damaged.len()
                    ));
                }
            }
        }
        Ok(report)
    }

    async fn audit_release(
        &self,
        upstream: &str,
        provider: &ProviderType,
        version: &Version,
        repair: bool,
        report: &mut AuditReport,
    ) -> Result<(), MirrorError> {
        let store = &self.inner.store;
        let root = store.root();
        let dir = layout::release_dir(root, upstream, provider, version)?;
        if !store
            .exists(&layout::release_record(root, upstream, provider, version)?)
            .await
        {
            // Files are written before the record: without one, nothing here was ever served
            // and the next request fetches the release again.
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
        for name in store.list_dir(&dir).await?.files {
            if !name.ends_with(".zip") {
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
