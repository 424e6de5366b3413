//! Verified releases: one provider version's SHA256SUMS, its signature, its builds and plugin
//! protocols.
//!
//! A release is fetched once, verified (signature by a trusted key, manifest digest), stored
//! (files first, the record last) and never fetched again. Loading it back from the store
//! verifies the signature again, so a cache edited behind our back, or a key removed from the
//! config, is never trusted on the strength of an old verdict.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{unshare, Mirror, MirrorError, NotFoundKey, Source, VerifyFailure};
use crate::{
    metrics::{metrics, note_cache, CacheOutcome},
    protocol::{
        releases::{default_protocols, Manifest, ValidBuild},
        FileName, Platform, ReleaseKey,
    },
    store::Item,
    upstream::{PublishedKey, ReleaseListing},
    verify::{Checksums, Keyring, Sha256Digest, Tier, TrustedKey},
};

/// A release whose SHA256SUMS verified against a trusted key (or, from an upstream with
/// `allow_unsigned` whose registry publishes no key, one checked by its digests alone).
#[derive(Debug)]
pub struct Release {
    pub key: ReleaseKey,
    pub shasums_file: FileName,
    pub checksums: Checksums,
    pub protocols: Vec<String>,
    /// Builds whose archive is listed in the signed SHA256SUMS.
    pub builds: Vec<ValidBuild>,
    /// The manifest, when the signed SHA256SUMS lists one and it is stored.
    pub manifest_file: Option<FileName>,
    /// `None` only for a release accepted unsigned.
    pub signature: Option<Signature>,
}

/// The signature that verified a release's SHA256SUMS.
#[derive(Debug, Clone)]
pub struct Signature {
    pub file: FileName,
    pub signed_by: Arc<TrustedKey>,
    /// How Terraform grades the signing key.
    pub tier: Tier,
    /// HashiCorp's partner signature over the signing key, when upstream published one.
    pub trust_signature: Option<String>,
}

impl Release {
    pub fn build_for(&self, platform: &Platform) -> Option<&ValidBuild> {
        self.builds.iter().find(|b| &b.platform == platform)
    }

    pub fn build_named(&self, file: &FileName) -> Option<&ValidBuild> {
        self.builds.iter().find(|b| &b.filename == file)
    }

    /// The signed digest of a file of this release.
    pub fn digest_of(&self, file: &FileName) -> Option<Sha256Digest> {
        self.checksums.digest_of(file.as_str())
    }

    /// Whether a file is one this release publishes: its signed files and its builds.
    pub fn publishes(&self, file: &FileName) -> bool {
        file == &self.shasums_file
            || self.is_signature(file)
            || self.manifest_file.as_ref() == Some(file)
            || self.build_named(file).is_some()
    }

    /// Whether a file is the signature that verified this release.
    pub fn is_signature(&self, file: &FileName) -> bool {
        self.signature.as_ref().is_some_and(|s| &s.file == file)
    }
}

/// A SHA256SUMS and the signature that verified it (none when accepted unsigned).
struct SignedSums {
    sums: Bytes,
    checksums: Checksums,
    signature: Option<(Bytes, Signature)>,
}

/// What `release.json` holds; the trust material is re-derived from the files beside it.
#[derive(Debug, Serialize, Deserialize)]
struct ReleaseRecord {
    shasums_file: FileName,
    /// `None` for a release accepted unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature_file: Option<FileName>,
    protocols: Vec<String>,
    builds: Vec<BuildRecord>,
    /// The keys upstream published for the provider (registries), trusted again on load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    published_keys: Vec<KeyRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    ascii_armor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust_signature: Option<String>,
    source: String,
}

impl From<&PublishedKey> for KeyRecord {
    fn from(key: &PublishedKey) -> Self {
        Self {
            ascii_armor: key.ascii_armor.clone(),
            trust_signature: key.trust_signature.clone(),
            source: key.source.clone(),
        }
    }
}

impl From<&KeyRecord> for PublishedKey {
    fn from(key: &KeyRecord) -> Self {
        Self {
            ascii_armor: key.ascii_armor.clone(),
            trust_signature: key.trust_signature.clone(),
            source: key.source.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct BuildRecord {
    platform: Platform,
    filename: FileName,
}

impl Mirror {
    /// The verified release, from memory, the store or upstream (in that order), unless it is
    /// in quarantine (`policy.min_release_age`). Only a version that exists gets a first
    /// sighting recorded, so made-up versions leave nothing behind.
    pub async fn release(&self, key: &ReleaseKey) -> Result<Arc<Release>, MirrorError> {
        let release = self.verified_release(key).await?;
        self.check_release_age(key).await?;
        Ok(release)
    }

    /// The verified release, whatever its age (for work that serves nothing).
    pub(super) async fn verified_release(
        &self,
        key: &ReleaseKey,
    ) -> Result<Arc<Release>, MirrorError> {
        let missing: NotFoundKey = (key.provider.clone(), Some(key.version.clone()));
        if let Some(error) = self.inner.not_found.get(&missing).await {
            note_cache(CacheOutcome::Negative);
            return Err(error);
        }
        if let Some(release) = self.inner.releases.get(key).await {
            note_cache(CacheOutcome::Hit);
            return Ok(release);
        }
        // Boxed: a miss's state (fetching and verifying a release) would otherwise be part of
        // every caller's future, and copied with it on each cached hit.
        let result = Box::pin(self.inner.releases.try_get_with(key.clone(), async {
            let source = self.source(&key.provider.upstream)?;
            if let Some(release) = self.load_release(source, key).await? {
                note_cache(CacheOutcome::Hit);
                return Ok(Arc::new(release));
            }
            self.check_listed(key).await?;
            note_cache(CacheOutcome::Miss);
            self.ingest_release(source, key).await.map(Arc::new)
        }))
        .await
        .map_err(unshare);
        if let Err(error @ MirrorError::UnknownVersion { .. }) = &result {
            self.inner.not_found.insert(missing, error.clone()).await;
        }
        result
    }

    /// The release as stored, verified again; `None` when it is not stored or no longer
    /// verifies. Never asks upstream. (For the operations.)
    pub async fn stored_release(&self, key: &ReleaseKey) -> Result<Option<Release>, MirrorError> {
        let source = self.source(&key.provider.upstream)?;
        self.load_release(source, key).await
    }

    /// The release from memory when serving has it, else as stored and verified again (and
    /// then kept in memory);
    /// never fetched. (For the operations.)
    pub async fn known_release(
        &self,
        key: &ReleaseKey,
    ) -> Result<Option<Arc<Release>>, MirrorError> {
        if let Some(release) = self.inner.releases.get(key).await {
            return Ok(Some(release));
        }
        let Some(release) = self.stored_release(key).await?.map(Arc::new) else {
            return Ok(None);
        };
        // Verified just now, as serving would have: kept, so the status page's next listing
        // does not verify it again (`forget_release` drops it when the store changes).
        self.inner
            .releases
            .insert(key.clone(), release.clone())
            .await;
        Ok(Some(release))
    }

    /// Forgets what memory holds of a release, after the operations changed what is stored.
    pub async fn forget_release(&self, key: &ReleaseKey) {
        self.inner.releases.invalidate(key).await;
        self.inner.mirror_versions.invalidate(key).await;
        self.note_change();
    }

    async fn load_release(
        &self,
        source: &Source,
        key: &ReleaseKey,
    ) -> Result<Option<Release>, MirrorError> {
        let store = &self.inner.store;
        let Some(stored) = store.read(Item::ReleaseRecord(key)).await? else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<ReleaseRecord>(&stored.bytes) else {
            tracing::warn!(release = %key, "unreadable release record; fetching again");
            return Ok(None);
        };
        let Some(sums) = store
            .read(Item::File(&key.file(record.shasums_file.clone())))
            .await?
        else {
            return Ok(None);
        };
        let published: Vec<PublishedKey> = record
            .published_keys
            .iter()
            .map(PublishedKey::from)
            .collect();
        let verified = match &record.signature_file {
            Some(file) => {
                let Some(sig) = store.read(Item::File(&key.file(file.clone()))).await? else {
                    return Ok(None);
                };
                let keyring = keyring_for(source, &published);
                verify_sums(keyring, key, &record.shasums_file, sums.bytes, sig.bytes)
                    .await
                    .and_then(|(checksums, signed_by)| {
                        let signature = signature(key, file.clone(), signed_by, &published)?;
                        Ok((checksums, Some(signature)))
                    })
            }
            None if source.allow_unsigned => unsigned_sums(key, &record.shasums_file, &sums.bytes)
                .map(|checksums| (checksums, None)),
            None => Err(MirrorError::verification(
                key,
                record.shasums_file.as_str(),
                VerifyFailure::NoSignature,
            )),
        };
        let (checksums, signature) = match verified {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cached release no longer verifies; fetching again");
                return Ok(None);
            }
        };
        let builds: Vec<ValidBuild> = record
            .builds
            .into_iter()
            .filter(|b| checksums.digest_of(b.filename.as_str()).is_some())
            .map(|b| ValidBuild {
                platform: b.platform,
                filename: b.filename,
            })
            .collect();
        // What was stored (or imported) is bound to its name as strictly as a fetch.
        if let Err(e) = bind_to_release(key, &record.shasums_file, &checksums, &builds) {
            tracing::warn!(error = %e, "cached release is named for another one; fetching again");
            return Ok(None);
        }
        let manifest_file =
            manifest_name(key).filter(|name| checksums.digest_of(name.as_str()).is_some());
        Ok(Some(Release {
            key: key.clone(),
            shasums_file: record.shasums_file,
            checksums,
            protocols: record.protocols,
            builds,
            manifest_file,
            signature,
        }))
    }

    #[tracing::instrument(skip_all, fields(release = %key))]
    async fn ingest_release(
        &self,
        source: &Source,
        key: &ReleaseKey,
    ) -> Result<Release, MirrorError> {
        let listing = match source.upstream.release(key).await {
            Err(e) if e.is_not_found() => {
                return Err(MirrorError::UnknownVersion(Box::new(key.clone())))
            }
            other => other?,
        };
        let signed = self.signed_sums(source, key, &listing).await?;
        bind_to_release(key, &listing.shasums, &signed.checksums, &listing.builds).inspect_err(
            |_| {
                metrics().verification_failures.inc();
            },
        )?;
        if let Some((_, signature)) = &signed.signature {
            self.check_key_continuity(source, key, &signature.signed_by)
                .await?;
        }
        let (protocols, manifest) = self
            .verified_protocols(source, key, &listing, &signed.checksums)
            .await?;
        let builds: Vec<ValidBuild> = listing
            .builds
            .iter()
            .filter(|b| {
                let listed = signed.checksums.digest_of(b.filename.as_str()).is_some();
                if !listed {
                    tracing::warn!(file = %b.filename, "build not listed in SHA256SUMS; ignored");
                }
                listed
            })
            .cloned()
            .collect();
        let release = Release {
            key: key.clone(),
            shasums_file: listing.shasums.clone(),
            checksums: signed.checksums.clone(),
            protocols,
            builds,
            manifest_file: manifest.as_ref().map(|(name, _)| name.clone()),
            signature: signed.signature.as_ref().map(|(_, s)| s.clone()),
        };
        self.keep_release(&release, &signed, &listing.published_keys, manifest)
            .await?;
        match &release.signature {
            Some(s) => tracing::info!(key_id = %s.signed_by.key_id, tier = s.tier.as_str(), builds = release.builds.len(), "verified and cached release"),
            None => tracing::warn!(builds = release.builds.len(), "cached a release whose registry publishes no signing key, checked by its digests alone (allow_unsigned)"),
        }
        Ok(release)
    }

    /// The SHA256SUMS and the first signature over it that verifies, trying those named for a
    /// trusted key first.
    async fn signed_sums(
        &self,
        source: &Source,
        key: &ReleaseKey,
        listing: &ReleaseListing,
    ) -> Result<SignedSums, MirrorError> {
        let upstream = &source.upstream;
        let shasums_file = &listing.shasums;
        let sums = upstream.small_file(&key.file(shasums_file.clone())).await?;
        let keyring = keyring_for(source, &listing.published_keys);
        let mut last_failure = VerifyFailure::NoSignature;
        for signature_file in signature_candidates(listing, &keyring) {
            let signature = match upstream.small_file(&key.file(signature_file.clone())).await {
                Ok(signature) => signature,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let verified = verify_sums(
                keyring.clone(),
                key,
                shasums_file,
                sums.to_vec(),
                signature.to_vec(),
            )
            .await;
            match verified {
                Ok((checksums, signed_by)) => {
                    let graded =
                        self::signature(key, signature_file, signed_by, &listing.published_keys)?;
                    return Ok(SignedSums {
                        sums,
                        checksums,
                        signature: Some((signature, graded)),
                    });
                }
                Err(MirrorError::Verification { failure, .. }) => last_failure = failure,
                Err(other) => return Err(other),
            }
        }
        if listing.published_keys.is_empty() && upstream.has_namespaces() {
            if source.allow_unsigned {
                let checksums = unsigned_sums(key, shasums_file, &sums)?;
                return Ok(SignedSums {
                    sums,
                    checksums,
                    signature: None,
                });
            }
            last_failure = VerifyFailure::NoPublishedKey;
        }
        metrics().verification_failures.inc();
        tracing::error!(file = %shasums_file, reason = %last_failure, "SHA256SUMS failed verification; nothing cached");
        Err(MirrorError::verification(
            key,
            shasums_file.as_str(),
            last_failure,
        ))
    }

    /// Stores a verified release: its files first, the record last, so a stored record always
    /// has its files beside it.
    async fn keep_release(
        &self,
        release: &Release,
        signed: &SignedSums,
        published_keys: &[PublishedKey],
        manifest: Option<(FileName, Bytes)>,
    ) -> Result<(), MirrorError> {
        let (store, key) = (&self.inner.store, &release.key);
        store
            .write(
                Item::File(&key.file(release.shasums_file.clone())),
                &signed.sums,
            )
            .await?;
        if let Some((bytes, signature)) = &signed.signature {
            store
                .write(Item::File(&key.file(signature.file.clone())), bytes)
                .await?;
        }
        if let Some((name, bytes)) = &manifest {
            store
                .write(Item::File(&key.file(name.clone())), bytes)
                .await?;
        }
        let record = ReleaseRecord {
            shasums_file: release.shasums_file.clone(),
            signature_file: release.signature.as_ref().map(|s| s.file.clone()),
            protocols: release.protocols.clone(),
            builds: release
                .builds
                .iter()
                .map(|b| BuildRecord {
                    platform: b.platform.clone(),
                    filename: b.filename.clone(),
                })
                .collect(),
            published_keys: published_keys.iter().map(KeyRecord::from).collect(),
        };
        let record_json = serde_json::to_vec_pretty(&record).map_err(MirrorError::internal)?;
        store.write(Item::ReleaseRecord(key), &record_json).await?;
        self.note_change();
        Ok(())
    }

    /// The plugin protocols: from a manifest the signed SHA256SUMS lists (verified), else as
    /// upstream lists them, else Terraform's default.
    async fn verified_protocols(
        &self,
        source: &Source,
        key: &ReleaseKey,
        listing: &ReleaseListing,
        checksums: &Checksums,
    ) -> Result<(Vec<String>, Option<(FileName, Bytes)>), MirrorError> {
        let fallback = || listing.protocols.clone().unwrap_or_else(default_protocols);
        let Some((name, expected)) = listing
            .manifest
            .as_ref()
            .and_then(|name| Some((name, checksums.digest_of(name.as_str())?)))
        else {
            return Ok((fallback(), None));
        };
        let bytes = source.upstream.small_file(&key.file(name.clone())).await?;
        let actual = Sha256Digest(Sha256::digest(&bytes).into());
        if actual != expected {
            metrics().verification_failures.inc();
            tracing::error!(file = %name, %expected, %actual, "manifest digest mismatch; nothing cached");
            return Err(MirrorError::verification(
                key,
                name.as_str(),
                VerifyFailure::DigestMismatch { expected, actual },
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            MirrorError::verification(key, name.as_str(), VerifyFailure::Manifest(e.to_string()))
        })?;
        let protocols = if manifest.metadata.protocol_versions.is_empty() {
            fallback()
        } else {
            manifest.metadata.protocol_versions
        };
        Ok((protocols, Some((name.clone(), bytes))))
    }
}

/// `terraform-provider-TYPE_VERSION_manifest.json`.
fn manifest_name(key: &ReleaseKey) -> Option<FileName> {
    FileName::try_from(format!("{}_manifest.json", key.file_stem())).ok()
}

/// The configured keys plus those upstream publishes for this provider.
fn keyring_for(source: &Source, published_keys: &[PublishedKey]) -> Keyring {
    let mut keyring = source.keyring.clone();
    for published in published_keys {
        match TrustedKey::parse(&published.ascii_armor, &published.source) {
            Ok(key) => keyring.add(key),
            Err(e) => {
                tracing::warn!(error = %e, source = %published.source, "upstream published an unusable signing key; ignored")
            }
        }
    }
    keyring
}

/// The signature that verified, graded.
fn signature(
    key: &ReleaseKey,
    file: FileName,
    signed_by: Arc<TrustedKey>,
    published: &[PublishedKey],
) -> Result<Signature, MirrorError> {
    let trust_signature = trust_signature_of(&signed_by, published);
    let tier = grade(key, &signed_by, trust_signature.as_deref())?;
    Ok(Signature {
        file,
        signed_by,
        tier,
        trust_signature,
    })
}

/// The SHA256SUMS of a release accepted unsigned: parsed, never signature-checked.
fn unsigned_sums(
    key: &ReleaseKey,
    shasums_file: &FileName,
    sums: &[u8],
) -> Result<Checksums, MirrorError> {
    Checksums::parse(sums)
        .map_err(|e| MirrorError::verification(key, shasums_file.as_str(), VerifyFailure::from(e)))
}

/// The trust signature published with the key that signed, if any.
fn trust_signature_of(signed_by: &TrustedKey, published: &[PublishedKey]) -> Option<String> {
    published
        .iter()
        .find(|p| p.ascii_armor == signed_by.armored)
        .and_then(|p| p.trust_signature.clone())
}

/// The signer's tier; a trust signature that does not verify fails the release.
fn grade(
    key: &ReleaseKey,
    signed_by: &TrustedKey,
    trust_signature: Option<&str>,
) -> Result<Tier, MirrorError> {
    Tier::of(signed_by, trust_signature).map_err(|e| {
        MirrorError::verification(
            key,
            "trust_signature",
            VerifyFailure::TrustSignature(e.to_string()),
        )
    })
}

/// A signed SHA256SUMS is trusted for one release only: every line must name a file of this
/// provider and version (`terraform-provider-TYPE_VERSION_…`), and every build must be named
/// `terraform-provider-TYPE_VERSION_OS_ARCH.zip`. Otherwise an upstream could serve an older
/// signed release, or another provider's, under this one's name.
fn bind_to_release(
    key: &ReleaseKey,
    shasums_file: &FileName,
    checksums: &Checksums,
    builds: &[ValidBuild],
) -> Result<(), MirrorError> {
    let prefix = format!("{}_", key.file_stem());
    let stranger = checksums
        .entries()
        .map(|(name, _)| name)
        .find(|name| !name.starts_with(&prefix));
    if let Some(name) = stranger {
        tracing::error!(
            line = name,
            "SHA256SUMS lists a file of another release; nothing cached"
        );
        return Err(MirrorError::verification(
            key,
            shasums_file.as_str(),
            VerifyFailure::OtherRelease(name.to_owned()),
        ));
    }
    let misnamed = builds
        .iter()
        .find(|b| b.filename.as_str() != format!("{prefix}{}.zip", b.platform));
    if let Some(build) = misnamed {
        tracing::error!(file = %build.filename, "a build is named for another release; nothing cached");
        return Err(MirrorError::verification(
            key,
            build.filename.as_str(),
            VerifyFailure::OtherRelease(build.filename.to_string()),
        ));
    }
    Ok(())
}

/// Signature files to try: those named for a trusted key (`.72D7468F.sig`) first, then the
/// rest as listed (the unsuffixed `.sig` was made with a revoked key on old releases).
fn signature_candidates(listing: &ReleaseListing, keyring: &Keyring) -> Vec<FileName> {
    let trusted_suffixes: Vec<String> = keyring
        .keys()
        .iter()
        .map(|k| format!(".{}.sig", k.short_id()))
        .collect();
    let preferred = |name: &&FileName| {
        trusted_suffixes
            .iter()
            .any(|s| name.as_str().ends_with(s.as_str()))
    };
    let (mut first, rest): (Vec<&FileName>, Vec<&FileName>) =
        listing.signatures.iter().partition(preferred);
    first.extend(rest);
    first
        .into_iter()
        .filter(|n| n.as_str().starts_with(listing.shasums.as_str()))
        .cloned()
        .collect()
}

/// Verifies the signature (off the async runtime: RSA is CPU work) and parses the sums.
async fn verify_sums(
    keyring: Keyring,
    key: &ReleaseKey,
    shasums_file: &FileName,
    sums: Vec<u8>,
    sig: Vec<u8>,
) -> Result<(Checksums, Arc<TrustedKey>), MirrorError> {
    let result = tokio::task::spawn_blocking(move || {
        let key = keyring.verify(&sums, &sig).map_err(VerifyFailure::from)?;
        let checksums = Checksums::parse(&sums).map_err(VerifyFailure::from)?;
        Ok::<_, VerifyFailure>((checksums, key))
    })
    .await
    .map_err(MirrorError::internal)?;
    result.map_err(|failure| MirrorError::verification(key, shasums_file.as_str(), failure))
}
