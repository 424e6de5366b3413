//! The JSON documents that describe a release to Terraform: the registry protocol's download
//! document and the network mirror's `<version>.json`.
//!
//! Each is rendered once and kept in memory with its typed value, so a server without
//! `[auth]` writes the same bytes to every client and a server with it can sign the URLs of
//! the typed value per request. Over the network mirror Terraform checks only the hashes we
//! list, so they come from the signed SHA256SUMS (`zh:`) and from archives we verified
//! ourselves (`h1:`); a release that does not verify has no document at all.
//!
//! A large document (a version list runs to hundreds of KB for a provider with many
//! versions) is also kept gzip-compressed (`JsonBody`), compressed once when it is rendered,
//! for the clients that accept gzip, as Terraform's does.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use serde::Serialize;

use super::{Mirror, MirrorError, Via};
use crate::{
    metrics::{note_cache, CacheOutcome},
    protocol::{
        network_mirror::{MirrorArchive, MirrorVersion},
        registry::{Download, GpgPublicKey, SigningKeys},
        Platform, ProviderType, Version,
    },
};

/// Shown as `source_url` for HashiCorp's key, as the public registry does.
const HASHICORP_SECURITY_URL: &str = "https://www.hashicorp.com/security.html";

/// Bodies shorter than this are sent as they are: gzip would save a packet at most.
const MIN_GZIP_BYTES: usize = 1024;

/// JSON bytes, and the same gzip-compressed when that is worth it.
#[derive(Debug, Clone)]
pub struct JsonBody {
    pub plain: Bytes,
    pub gzip: Option<Bytes>,
}

impl JsonBody {
    /// Compresses `plain` once, here, so no request pays for it.
    pub fn new(plain: Bytes) -> Self {
        let gzip = (plain.len() >= MIN_GZIP_BYTES)
            .then(|| {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder
                    .write_all(&plain)
                    .and_then(|()| encoder.finish())
                    .ok()
            })
            .flatten()
            .filter(|gzip| gzip.len() < plain.len())
            .map(Bytes::from);
        Self { plain, gzip }
    }
}

/// Same JSON, same body: the compressed form follows from the plain one.
impl PartialEq for JsonBody {
    fn eq(&self, other: &Self) -> bool {
        self.plain == other.plain
    }
}

/// The plain bytes, for everything that reads the document rather than sends it.
impl std::ops::Deref for JsonBody {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.plain
    }
}

/// A document with its rendering.
#[derive(Debug)]
pub struct Document<T> {
    pub value: T,
    /// `value` as JSON, ready to write to the socket.
    pub json: Bytes,
}

impl<T: Serialize> Document<T> {
    fn render(value: T) -> Result<Arc<Self>, MirrorError> {
        let json = Bytes::from(serde_json::to_vec(&value).map_err(MirrorError::internal)?);
        Ok(Arc::new(Self { value, json }))
    }
}

impl Mirror {
    /// `GET /v1/providers/:namespace/:type/:version/download/:os/:arch`.
    pub async fn download(
        &self,
        via: Via<'_>,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
    ) -> Result<Arc<Document<Download>>, MirrorError> {
        let namespace = via.namespace();
        let cache_key = format!("{namespace}/{provider}/{version}/{platform}");
        if let Some(doc) = self.inner.downloads_json.get(&cache_key).await {
            note_cache(CacheOutcome::Hit);
            return Ok(doc);
        }
        // Boxed, so a hit's future does not carry (and copy) the state of a miss.
        Box::pin(self.render_download(via, provider, version, platform, cache_key)).await
    }

    /// The download document of a platform not in memory yet, from its verified release.
    async fn render_download(
        &self,
        via: Via<'_>,
        provider: &ProviderType,
        version: &Version,
        platform: &Platform,
        cache_key: String,
    ) -> Result<Arc<Document<Download>>, MirrorError> {
        let namespace = via.namespace();
        let key = self.provider(via, provider)?.release(version.clone());
        let release = self.release(&key).await?;
        let build = release
            .build_for(platform)
            .ok_or_else(|| MirrorError::UnknownPlatform {
                release: Box::new(key.clone()),
                platform: platform.clone(),
            })?;
        let shasum = release
            .digest_of(&build.filename)
            .ok_or_else(|| MirrorError::internal("verified build without a digest"))?;
        let files = format!(
            "{}/v1/providers/{namespace}/{provider}/{version}/files",
            self.public_base()
        );
        let Some(signature) = &release.signature else {
            return Err(MirrorError::Unsigned(Box::new(key)));
        };
        let signer = &signature.signed_by;
        let doc = Document::render(Download {
            protocols: release.protocols.clone(),
            os: platform.os.clone(),
            arch: platform.arch.clone(),
            filename: build.filename.to_string(),
            download_url: format!("{files}/{}", build.filename),
            shasums_url: format!("{files}/{}", release.shasums_file),
            shasums_signature_url: format!("{files}/{}", signature.file),
            shasum: shasum.to_hex(),
            signing_keys: SigningKeys {
                gpg_public_keys: vec![GpgPublicKey {
                    key_id: signer.key_id.clone(),
                    ascii_armor: signer.armored.clone(),
                    trust_signature: signature.trust_signature.clone().unwrap_or_default(),
                    source: signer.source.clone(),
                    source_url: signer
                        .is_hashicorp()
                        .then(|| HASHICORP_SECURITY_URL.to_owned()),
                }],
            },
        })?;
        self.inner
            .downloads_json
            .insert(cache_key, doc.clone())
            .await;
        Ok(doc)
    }

    /// `GET /mirror/:hostname/:namespace/:type/:version.json`. Dropped from memory again when
    /// an archive's `h1:` is recorded; an evicted archive keeps its listed `h1:`, which stays
    /// true: a refetch must have the same digest.
    pub async fn mirror_version(
        &self,
        via: Via<'_>,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<Arc<Document<MirrorVersion>>, MirrorError> {
        let key = self.provider(via, provider)?.release(version.clone());
        if let Some(doc) = self.inner.mirror_versions.get(&key).await {
            return Ok(doc);
        }
        let release = self.release(&key).await?;
        let mut archives = BTreeMap::new();
        for build in &release.builds {
            let Some(zh) = release.digest_of(&build.filename) else {
                continue;
            };
            let mut hashes = Vec::with_capacity(2);
            if let Some(h1) = self
                .archive_h1(&key.file(build.filename.clone()), zh)
                .await?
            {
                hashes.push(h1);
            }
            hashes.push(zh.to_zh());
            archives.insert(
                build.platform.to_string(),
                MirrorArchive {
                    url: build.filename.to_string(),
                    hashes,
                },
            );
        }
        let doc = Document::render(MirrorVersion { archives })?;
        self.inner.mirror_versions.insert(key, doc.clone()).await;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::io::Read;

    use super::*;

    #[test]
    fn large_bodies_carry_their_gzip_form_and_small_ones_do_not() {
        let list: Vec<u8> = format!(
            "{{\"versions\":[{}]}}",
            (0..200)
                .map(|i| format!("{{\"version\":\"1.0.{i}\",\"protocols\":[\"5.0\"]}}"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes();
        let body = JsonBody::new(Bytes::from(list.clone()));
        let gzip = body.gzip.clone().expect("a gzip form");
        assert!(
            gzip.len() * 4 < list.len(),
            "{} of {}",
            gzip.len(),
            list.len()
        );
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, list);
        assert_eq!(body.plain, list);

        let small = JsonBody::new(Bytes::from_static(b"{\"versions\":[]}"));
        assert!(small.gzip.is_none());
    }
}
