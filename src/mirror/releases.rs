//! Verified releases: one provider version's SHA256SUMS, its signature, its builds and plugin
//! protocols.
//!
//! A release is fetched once, verified (signature by a trusted key, manifest digest), written
//! to disk (files first, the record last) and never refetched. Loading it back from disk
//! verifies the signature again, so a cache edited behind our back, or a key removed from the
//! config, is never trusted on the strength of an old verdict.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    unshare, Mirror, MirrorError, NotFoundKey, ReleaseId, ReleaseKey, Upstream, VerifyFailure,
};
use crate::{
    metrics::{metrics, note_cache, CacheOutcome},
    protocol::{
        releases::{default_protocols, product_name, Manifest, ReleaseVersion, ValidBuild},
        FileName, Platform, ProviderType, Version,
    },
    store::layout,
    verify::{Checksums, Sha256Digest, TrustedKey},
};

/// A release whose SHA256SUMS verified against a trusted key.
#[derive(Debug)]
pub struct Release {
    pub provider: ProviderType,
    pub version: Version,
    pub shasums_file: FileName,
    pub signature_file: FileName,
    pub checksums: Checksums,
    pub signed_by: Arc<TrustedKey>,
    pub protocols: Vec<String>,
    /// Builds whose archive is listed in the signed SHA256SUMS.
    pub builds: Vec<ValidBuild>,
}

impl Release {
    pub fn build_for(&self, platform: &Platform) -> Option<&ValidBuild> {
        self.builds.iter().find(|b| &b.platform == platform)
    }

    pub fn build_named(&self, file: &FileName) -> Option<&ValidBuild> {
        self.builds.iter().find(|b| &b.filename == file)
    }

    /// The signed digest of an archive of this release.
    pub fn digest_of(&self, file: &FileName) -> Option<Sha256Digest> {
        self.checksums.digest_of(file.as_str())
    }
}

/// What `release.json` holds; the trust material is re-derived from the files beside it.
#[derive(Debug, Serialize, Deserialize)]
struct ReleaseRecord {
    shasums_file: FileName,
    signature_file: FileName,
    protocols: Vec<String>,
    builds: Vec<BuildRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BuildRecord {
    platform: Platform,
    filename: FileName,
}

impl Mirror {
    /// The verified release, from memory, disk or upstream (in that order).
    pub(super) async fn release(
        &self,
        upstream: &str,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<Arc<Release>, MirrorError> {
        let key: ReleaseKey = (upstream.to_owned(), provider.clone(), version.clone());
        let missing: NotFoundKey = (upstream.to_owned(), provider.clone(), Some(version.clone()));
        if let Some(error) = self.inner.not_found.get(&missing).await {
            note_cache(CacheOutcome::Negative);
            return Err(error);
        }
        if let Some(release) = self.inner.releases.get(&key).await {
            note_cache(CacheOutcome::Hit);
            return Ok(release);
        }
        let result = self
            .inner
            .releases
            .try_get_with(key, async {
                let source = self.upstream(upstream)?;
                if let Some(release) = self
                    .load_release(upstream, source, provider, version)
                    .await?
                {
                    note_cache(CacheOutcome::Hit);
                    return Ok(Arc::new(release));
                }
                note_cache(CacheOutcome::Miss);
                self.ingest_release(upstream, source, provider, version)
                    .await
                    .map(Arc::new)
            })
            .await
            .map_err(unshare);
        if let Err(error @ MirrorError::UnknownVersion { .. }) = &result {
            self.inner.not_found.insert(missing, error.clone()).await;
        }
        result
    }

    pub(super) async fn load_release(
        &self,
        upstream: &str,
        source: &Upstream,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<Option<Release>, MirrorError> {
        let root = self.inner.store.root();
        let record_path = layout::release_record(root, upstream, provider, version)?;
        let Some(stored) = self.inner.store.read(&record_path).await? else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<ReleaseRecord>(&stored.bytes) else {
            tracing::warn!(path = %record_path.display(), "unreadable release record; fetching again");
            return Ok(None);
        };
        let sums_path =
            layout::release_file(root, upstream, provider, version, &record.shasums_file)?;
        let sig_path =
            layout::release_file(root, upstream, provider, version, &record.signature_file)?;
        let (Some(sums), Some(sig)) = (
            self.inner.store.read(&sums_path).await?,
            self.inner.store.read(&sig_path).await?,
        ) else {
            return Ok(None);
        };
        let verified = verify_sums(
            source,
            provider,
            version,
            &record.shasums_file,
            sums.bytes,
            sig.bytes,
        )
        .await;
        let (checksums, signed_by) = match verified {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cached release no longer verifies; fetching again");
                return Ok(None);
            }
        };
        let builds = record
            .builds
            .into_iter()
            .filter(|b| checksums.digest_of(b.filename.as_str()).is_some())
            .map(|b| ValidBuild {
                platform: b.platform,
                filename: b.filename,
            })
            .collect();
        Ok(Some(Release {
            provider: provider.clone(),
            version: version.clone(),
            shasums_file: record.shasums_file,
            signature_file: record.signature_file,
            checksums,
            signed_by,
            protocols: record.protocols,
            builds,
        }))
    }

    #[tracing::instrument(skip_all, fields(upstream, provider = %provider, version = %version))]
    async fn ingest_release(
        &self,
        upstream: &str,
        source: &Upstream,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<Release, MirrorError> {
        let index = match source.releases.version_index(provider, version).await {
            Err(e) if e.is_not_found() => {
                return Err(MirrorError::UnknownVersion {
                    release: ReleaseId::boxed(provider, version),
                })
            }
            other => other?,
        };
        let fail = |file: &str, failure: VerifyFailure| MirrorError::Verification {
            release: ReleaseId::boxed(provider, version),
            file: file.to_owned(),
            failure,
        };

        let shasums_file = index
            .shasums
            .as_deref()
            .and_then(|n| FileName::try_from(n).ok())
            .map_or_else(|| default_shasums_name(provider, version), Ok)?;
        let sums = source
            .releases
            .small_file(provider, version, &shasums_file)
            .await?;

        // Try the signatures in order of preference; the first that verifies wins.
        let mut last_failure = VerifyFailure::NoSignature;
        let mut verified = None;
        for sig_file in signature_candidates(&index, &shasums_file, source) {
            let sig = match source
                .releases
                .small_file(provider, version, &sig_file)
                .await
            {
                Ok(sig) => sig,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            match verify_sums(
                source,
                provider,
                version,
                &shasums_file,
                sums.to_vec(),
                sig.to_vec(),
            )
            .await
            {
                Ok((checksums, key)) => {
                    verified = Some((sig_file, sig, checksums, key));
                    break;
                }
                Err(MirrorError::Verification { failure, .. }) => last_failure = failure,
                Err(other) => return Err(other),
            }
        }
        let Some((signature_file, sig, checksums, signed_by)) = verified else {
            metrics().verification_failures.inc();
            tracing::error!(file = %shasums_file, reason = %last_failure, "SHA256SUMS failed verification; nothing cached");
            return Err(fail(shasums_file.as_str(), last_failure));
        };

        let manifest_file = FileName::try_from(format!(
            "{}_{version}_manifest.json",
            product_name(provider)
        ))
        .map_err(|e| MirrorError::Internal(e.to_string()))?;
        let mut manifest_bytes = None;
        let protocols = match checksums.digest_of(manifest_file.as_str()) {
            None => default_protocols(),
            Some(expected) => {
                let bytes = source
                    .releases
                    .small_file(provider, version, &manifest_file)
                    .await?;
                let actual = Sha256Digest(Sha256::digest(&bytes).into());
                if actual != expected {
                    metrics().verification_failures.inc();
                    tracing::error!(file = %manifest_file, %expected, %actual, "manifest digest mismatch; nothing cached");
                    return Err(fail(
                        manifest_file.as_str(),
                        VerifyFailure::DigestMismatch { expected, actual },
                    ));
                }
                let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    fail(
                        manifest_file.as_str(),
                        VerifyFailure::Manifest(e.to_string()),
                    )
                })?;
                manifest_bytes = Some(bytes);
                if manifest.metadata.protocol_versions.is_empty() {
                    default_protocols()
                } else {
                    manifest.metadata.protocol_versions
                }
            }
        };

        let builds: Vec<ValidBuild> = index
            .valid_builds()
            .into_iter()
            .filter(|b| {
                let listed = checksums.digest_of(b.filename.as_str()).is_some();
                if !listed {
                    tracing::warn!(file = %b.filename, "build not listed in SHA256SUMS; ignored");
                }
                listed
            })
            .collect();

        // Files first, the record last: a record on disk always has its files beside it.
        let store = &self.inner.store;
        let root = store.root();
        store
            .write(
                &layout::release_file(root, upstream, provider, version, &shasums_file)?,
                &sums,
            )
            .await?;
        store
            .write(
                &layout::release_file(root, upstream, provider, version, &signature_file)?,
                &sig,
            )
            .await?;
        if let Some(bytes) = &manifest_bytes {
            store
                .write(
                    &layout::release_file(root, upstream, provider, version, &manifest_file)?,
                    bytes,
                )
                .await?;
        }
        let record = ReleaseRecord {
            shasums_file: shasums_file.clone(),
            signature_file: signature_file.clone(),
            protocols: protocols.clone(),
            builds: builds
                .iter()
                .map(|b| BuildRecord {
                    platform: b.platform.clone(),
                    filename: b.filename.clone(),
                })
                .collect(),
        };
        let record_json =
            serde_json::to_vec_pretty(&record).map_err(|e| MirrorError::Internal(e.to_string()))?;
        store
            .write(
                &layout::release_record(root, upstream, provider, version)?,
                &record_json,
            )
            .await?;
        tracing::info!(key_id = %signed_by.key_id, builds = builds.len(), "verified and cached release");

        Ok(Release {
            provider: provider.clone(),
            version: version.clone(),
            shasums_file,
            signature_file,
            checksums,
            signed_by,
            protocols,
            builds,
        })
    }
}

fn default_shasums_name(
    provider: &ProviderType,
    version: &Version,
) -> Result<FileName, MirrorError> {
    FileName::try_from(format!("{}_{version}_SHA256SUMS", product_name(provider)))
        .map_err(|e| MirrorError::Internal(e.to_string()))
}

/// Signature files to try: those named for a trusted key (`.72D7468F.sig`) first, then the
/// rest as listed (the unsuffixed `.sig` was made with a revoked key on old releases).
fn signature_candidates(
    index: &ReleaseVersion,
    shasums: &FileName,
    source: &Upstream,
) -> Vec<FileName> {
    let mut names: Vec<String> = index.signature_names();
    if names.is_empty() {
        names = source
            .keyring
            .keys()
            .iter()
            .map(|k| format!("{shasums}.{}.sig", k.short_id()))
            .chain(std::iter::once(format!("{shasums}.sig")))
            .collect();
    }
    let trusted_suffixes: Vec<String> = source
        .keyring
        .keys()
        .iter()
        .map(|k| format!(".{}.sig", k.short_id()))
        .collect();
    let preferred = |name: &String| trusted_suffixes.iter().any(|s| name.ends_with(s.as_str()));
    let (mut first, rest): (Vec<String>, Vec<String>) = names.into_iter().partition(preferred);
    first.extend(rest);
    first
        .into_iter()
        .filter(|n| n.starts_with(shasums.as_str()))
        .filter_map(|n| FileName::try_from(n).ok())
        .collect()
}

/// Verifies the signature (off the async runtime: RSA is CPU work) and parses the sums.
async fn verify_sums(
    source: &Upstream,
    provider: &ProviderType,
    version: &Version,
    shasums_file: &FileName,
    sums: Vec<u8>,
    sig: Vec<u8>,
) -> Result<(Checksums, Arc<TrustedKey>), MirrorError> {
    let keyring = source.keyring.clone();
    let result = tokio::task::spawn_blocking(move || {
        let key = keyring.verify(&sums, &sig).map_err(VerifyFailure::from)?;
        let checksums = Checksums::parse(&sums).map_err(VerifyFailure::from)?;
        Ok::<_, VerifyFailure>((checksums, key))
    })
    .await
    .map_err(|e| MirrorError::Internal(e.to_string()))?;
    result.map_err(|failure| MirrorError::Verification {
        release: ReleaseId::boxed(provider, version),
        file: shasums_file.to_string(),
        failure,
    })
}
