//! Complete lock files (`tfmirror lock`): which version of each provider Terraform would
//! select, and the lock file entry it gets — written from what the mirror verified instead of
//! downloading every platform's archive on every workstation.
//!
//! Version selection is `terraform init`'s: a version already in the lock file wins (and must
//! still satisfy the configuration's constraints), otherwise the newest version the
//! constraints allow (pre-releases only when named exactly) outside quarantine, newer ones in
//! quarantine being passed over with a note. The hashes come from
//! `Mirror::lock_hashes`' pieces, so an absent archive goes through the verified fetch path.

use super::{quarantine_note, resolve_provider, OpsError};
use crate::{
    mirror::Mirror,
    protocol::{
        constraints::VersionConstraints,
        lock_file::{LockAddress, LockFile, ProviderLock},
        ProviderAddress, ReleaseKey, Version,
    },
};

/// One provider to lock.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// The address the lock file names it by (`registry.terraform.io/hashicorp/aws`).
    pub address: LockAddress,
    pub provider: ProviderAddress,
    /// The configuration's constraints (`required_providers`, `--versions`).
    pub constraints: Option<VersionConstraints>,
    /// The version an existing lock file records.
    pub locked: Option<String>,
}

/// The release a request selects, with what the lock file says about it.
#[derive(Debug, Clone)]
pub struct LockTarget {
    pub address: LockAddress,
    pub release: ReleaseKey,
    /// Canonical constraints text, empty without constraints.
    pub constraints: String,
    /// Newer matching versions passed over because they are in quarantine, with why.
    pub quarantined: Vec<String>,
}

/// The version Terraform would select for a request, among what the mirror lists.
pub async fn select_version(
    mirror: &Mirror,
    request: &LockRequest,
) -> Result<LockTarget, OpsError> {
    let provider = resolve_provider(mirror, &request.provider)?;
    let constraints = request.constraints.as_ref();
    let allowed = |v: &Version| match constraints {
        Some(c) => c.matches(v),
        None => v.semver().pre.is_empty(),
    };
    let mut listed: Vec<Version> = mirror
        .version_entries(&provider)
        .await?
        .iter()
        .filter_map(|e| Version::try_from(e.version.as_str()).ok())
        .collect();
    listed.sort();
    let mut quarantined = Vec::new();
    let version = match &request.locked {
        Some(locked) => {
            let version = Version::try_from(locked.as_str())
                .map_err(|e| OpsError::Lock(format!("{}: locked {e}", request.address)))?;
            if constraints.is_some_and(|c| !c.matches(&version)) {
                return Err(OpsError::Lock(format!(
                    "{}: the locked version {version} does not match the constraints {}; remove it from the lock file to select another",
                    request.address,
                    constraints.map(ToString::to_string).unwrap_or_default()
                )));
            }
            if !listed.contains(&version) {
                return Err(OpsError::Lock(format!(
                    "{}: the locked version {version} is not available",
                    request.address
                )));
            }
            let release = provider.release(version.clone());
            if let Some(until) = mirror.quarantined_until(&release).await? {
                return Err(OpsError::Lock(format!(
                    "{}: the locked version is in quarantine: {}",
                    request.address,
                    quarantine_note(&release, until)
                )));
            }
            version
        }
        None => {
            let mut chosen = None;
            for version in listed.into_iter().rev().filter(|v| allowed(v)) {
                let release = provider.release(version.clone());
                match mirror.quarantined_until(&release).await? {
                    Some(until) => quarantined.push(quarantine_note(&release, until)),
                    None => {
                        chosen = Some(version);
                        break;
                    }
                }
            }
            chosen.ok_or_else(|| {
                OpsError::Lock(format!(
                    "{}: no available version matches {}{}",
                    request.address,
                    constraints.map_or_else(|| "any".to_owned(), ToString::to_string),
                    if quarantined.is_empty() {
                        String::new()
                    } else {
                        format!(" outside quarantine ({})", quarantined.join("; "))
                    }
                ))
            })?
        }
    };
    Ok(LockTarget {
        address: request.address.clone(),
        release: provider.release(version),
        constraints: constraints.map(|c| c.canonical()).unwrap_or_default(),
        quarantined,
    })
}

/// Records a locked provider in a lock file as Terraform would: hashes already recorded for
/// the same version are kept, another version's are dropped.
pub fn merge_lock(
    locks: &mut LockFile,
    target: &LockTarget,
    hashes: impl IntoIterator<Item = String>,
) {
    let version = target.release.version.to_string();
    let entry = locks.entry(target.address.clone()).or_default();
    if entry.version != version {
        *entry = ProviderLock {
            version,
            ..ProviderLock::default()
        };
    }
    entry.constraints = target.constraints.clone();
    entry.hashes.extend(hashes);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::{ProviderKey, ProviderType, UpstreamName};

    fn target(version: &str) -> LockTarget {
        let provider = ProviderKey::new(
            UpstreamName::try_from("hashicorp").unwrap(),
            None,
            ProviderType::try_from("local").unwrap(),
        );
        LockTarget {
            address: LockAddress::parse("hashicorp/local").unwrap(),
            release: provider.release(Version::try_from(version).unwrap()),
            constraints: "~> 2.0".to_owned(),
            quarantined: Vec::new(),
        }
    }

    #[test]
    fn same_version_keeps_its_hashes_another_version_drops_them() {
        let mut locks = LockFile::new();
        let other = LockAddress::parse("hashicorp/null").unwrap();
        locks.insert(
            other.clone(),
            ProviderLock {
                version: "3.2.0".to_owned(),
                ..ProviderLock::default()
            },
        );
        merge_lock(&mut locks, &target("2.1.0"), ["h1:a".to_owned()]);
        merge_lock(&mut locks, &target("2.1.0"), ["zh:b".to_owned()]);
        let local = &locks[&LockAddress::parse("hashicorp/local").unwrap()];
        assert_eq!(local.hashes.iter().collect::<Vec<_>>(), ["h1:a", "zh:b"]);
        assert_eq!(local.constraints, "~> 2.0");
        merge_lock(&mut locks, &target("2.2.0"), ["h1:c".to_owned()]);
        let local = &locks[&LockAddress::parse("hashicorp/local").unwrap()];
        assert_eq!(local.version, "2.2.0");
        assert_eq!(local.hashes.iter().collect::<Vec<_>>(), ["h1:c"]);
        assert_eq!(
            locks[&other].version, "3.2.0",
            "other providers are left alone"
        );
    }
}
