//! The hashes a complete lock file records for one release: a `zh:` for every line of the
//! verified SHA256SUMS (as Terraform takes them from a signed release, manifest included) and
//! an `h1:` for each platform asked for, computed here from an archive verified on its way
//! into the store. An absent archive is fetched through the serving path (`ensure_file`), so
//! nothing unverified is ever hashed or handed out.

use std::collections::BTreeSet;

use super::{Mirror, MirrorError, Via};
use crate::protocol::{Hostname, Namespace, Platform, ProviderKey, ProviderType, ReleaseKey};

/// The `h1:` of one platform's archive, and whether the archive had to be fetched for it.
#[derive(Debug, Clone)]
pub struct PlatformHash {
    pub h1: String,
    /// Bytes downloaded from upstream for it now; `None` when it was cached already.
    pub fetched: Option<u64>,
}

impl Mirror {
    /// The provider a full address (`HOST/NAMESPACE/TYPE`, as lock files name providers)
    /// stands for: a network-mirror origin when `[mirrors]` has one for `HOST/NAMESPACE`,
    /// else a private namespace of this mirror.
    pub fn provider_at(
        &self,
        hostname: &Hostname,
        namespace: &Namespace,
        provider: &ProviderType,
    ) -> Result<ProviderKey, MirrorError> {
        match self.provider(Via::Origin(hostname, namespace), provider) {
            Err(MirrorError::UnknownOrigin { .. }) => {
                self.provider(Via::Namespace(namespace), provider)
            }
            found => found,
        }
    }

    /// Every `zh:` of a verified release.
    pub async fn zh_hashes(&self, key: &ReleaseKey) -> Result<BTreeSet<String>, MirrorError> {
        let release = self.release(key).await?;
        Ok(release
            .checksums
            .entries()
            .map(|(_, digest)| digest.to_zh())
            .collect())
    }

    /// The `h1:` of a platform's verified archive, fetched first when absent.
    pub async fn platform_h1(
        &self,
        key: &ReleaseKey,
        platform: &Platform,
    ) -> Result<PlatformHash, MirrorError> {
        let release = self.release(key).await?;
        let build = release
            .build_for(platform)
            .ok_or_else(|| MirrorError::UnknownPlatform {
                release: Box::new(key.clone()),
                platform: platform.clone(),
            })?;
        let file = key.file(build.filename.clone());
        let digest = release
            .digest_of(&build.filename)
            .ok_or_else(|| MirrorError::internal("verified build without a digest"))?;
        let (object, fetched) = self.ensure_file(&file).await?;
        let h1 = self.archive_h1(&file, digest).await?.ok_or_else(|| {
            MirrorError::internal(format!("cannot compute the h1: of the verified {file}"))
        })?;
        Ok(PlatformHash {
            h1,
            fetched: fetched.then(|| object.len()),
        })
    }

    /// `zh:` of the release and `h1:` of each platform, sorted as a lock file lists them.
    pub async fn lock_hashes(
        &self,
        key: &ReleaseKey,
        platforms: &[Platform],
    ) -> Result<BTreeSet<String>, MirrorError> {
        let mut hashes = self.zh_hashes(key).await?;
        let h1s = futures_util::future::try_join_all(
            platforms
                .iter()
                .map(|platform| self.platform_h1(key, platform)),
        )
        .await?;
        hashes.extend(h1s.into_iter().map(|p| p.h1));
        Ok(hashes)
    }
}
