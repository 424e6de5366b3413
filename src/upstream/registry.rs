//! A Provider Registry Protocol upstream (registry.terraform.io, registry.opentofu.org, a
//! private registry): the second kind of [`Upstream`].
//!
//! Service discovery (`/.well-known/terraform.json`) gives the providers API; a version list
//! gives each version's platforms; each platform's download document names the archive, its
//! `shasum`, the SHA256SUMS and its signature, and the keys the registry publishes for the
//! provider. Those URLs may be relative to the document or absolute on other hosts (GitHub
//! release assets, with a redirect to a download host): every URL and every redirect hop is
//! checked against the registry's own host and `download_hosts` by the client's
//! [`FetchRules`](super::FetchRules), and only the registry's own host ever gets the token.
//!
//! What the documents say is not trusted: the core verifies the SHA256SUMS signature, binds
//! it to this provider and version, and checks each archive against it and against the
//! `shasum` declared here.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{future::BoxFuture, FutureExt};
use moka::future::Cache;
use tokio::sync::OnceCell;
use url::Url;

use super::{
    parse_json, ArchiveDownload, HttpClient, PublishedKey, ReleaseListing, Upstream, UpstreamError,
    UpstreamHealth,
};
use crate::{
    protocol::{
        registry::{UpstreamDiscovery, UpstreamDownload, UpstreamVersionList, VersionEntry},
        releases::ValidBuild,
        FileKey, FileName, Namespace, Platform, ProviderKey, ReleaseKey, UpstreamName,
    },
    verify::Sha256Digest,
};

/// Cap on discovery, version lists and download documents. An aws-sized version list (600
/// versions × 14 platforms) is a few MB.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;
/// Cap on SHA256SUMS and signatures.
pub const MAX_SMALL_FILE_BYTES: u64 = 1024 * 1024;
/// How long download documents are reused while a release is fetched and its archives follow.
const DOCUMENT_TTL: Duration = Duration::from_secs(600);
/// Most download documents kept in memory.
const MAX_DOCUMENTS: u64 = 10_000;

/// A download document with the URL it came from (its URLs are relative to that).
#[derive(Debug)]
struct Fetched {
    url: Url,
    document: UpstreamDownload,
}

#[derive(Debug)]
pub struct RegistryUpstream {
    name: UpstreamName,
    base: Url,
    http: HttpClient,
    providers_api: OnceCell<Url>,
    documents: Cache<(ReleaseKey, Platform), Arc<Fetched>>,
    /// Where each release's SHA256SUMS and signature are, by the names we store them under.
    files: Cache<ReleaseKey, Arc<HashMap<FileName, Url>>>,
}

impl RegistryUpstream {
    /// `http` must carry the rules for this registry's hosts (see `FetchRules`).
    pub fn new(name: UpstreamName, base: &Url, http: HttpClient) -> Self {
        Self {
            name,
            base: base.clone(),
            http,
            providers_api: OnceCell::new(),
            documents: Cache::builder()
                .max_capacity(MAX_DOCUMENTS)
                .time_to_live(DOCUMENT_TTL)
                .build(),
            files: Cache::builder()
                .max_capacity(MAX_DOCUMENTS)
                .time_to_live(DOCUMENT_TTL)
                .build(),
        }
    }

    /// The providers API from service discovery, asked once per process.
    async fn providers_api(&self) -> Result<&Url, UpstreamError> {
        self.providers_api
            .get_or_try_init(|| async {
                let url = self.join(&self.base, "/.well-known/terraform.json")?;
                let body = self.http.get_bytes(&url, MAX_DOCUMENT_BYTES).await?;
                let discovery: UpstreamDiscovery = parse_json(&url, &body)?;
                let api = discovery
                    .providers_v1
                    .ok_or_else(|| UpstreamError::InvalidBody {
                        url: url.clone(),
                        reason: "the registry offers no providers.v1 service".to_owned(),
                    })?;
                let mut api = self.join(&url, &api)?;
                if !api.path().ends_with('/') {
                    api.set_path(&format!("{}/", api.path()));
                }
                Ok(api)
            })
            .await
    }

    fn join(&self, base: &Url, reference: &str) -> Result<Url, UpstreamError> {
        base.join(reference)
            .map_err(|e| UpstreamError::InvalidBody {
                url: base.clone(),
                reason: format!("invalid URL {reference:?}: {e}"),
            })
    }

    fn namespace<'a>(&self, provider: &'a ProviderKey) -> Result<&'a Namespace, UpstreamError> {
        provider
            .namespace
            .as_ref()
            .ok_or_else(|| UpstreamError::InvalidBody {
                url: self.base.clone(),
                reason: "a registry provider needs a namespace".to_owned(),
            })
    }

    async fn version_list(
        &self,
        provider: &ProviderKey,
    ) -> Result<Vec<VersionEntry>, UpstreamError> {
        let namespace = self.namespace(provider)?;
        let api = self.providers_api().await?;
        let url = self.join(api, &format!("{namespace}/{}/versions", provider.provider))?;
        let body = self.http.get_bytes(&url, MAX_DOCUMENT_BYTES).await?;
        let list: UpstreamVersionList = parse_json(&url, &body)?;
        Ok(list.valid_entries())
    }

    async fn download_document(
        &self,
        release: &ReleaseKey,
        platform: &Platform,
    ) -> Result<Arc<Fetched>, UpstreamError> {
        let key = (release.clone(), platform.clone());
        if let Some(fetched) = self.documents.get(&key).await {
            return Ok(fetched);
        }
        let namespace = self.namespace(&release.provider)?;
        let api = self.providers_api().await?;
        let url = self.join(
            api,
            &format!(
                "{namespace}/{}/{}/download/{}/{}",
                release.provider.provider, release.version, platform.os, platform.arch
            ),
        )?;
        let body = self.http.get_bytes(&url, MAX_DOCUMENT_BYTES).await?;
        let document: UpstreamDownload = parse_json(&url, &body)?;
        let fetched = Arc::new(Fetched { url, document });
        self.documents.insert(key, fetched.clone()).await;
        Ok(fetched)
    }

    async fn listing(&self, release: &ReleaseKey) -> Result<ReleaseListing, UpstreamError> {
        let versions = self.version_list(&release.provider).await?;
        let wanted = release.version.as_str();
        let Some(entry) = versions.into_iter().find(|v| v.version == wanted) else {
            return Err(UpstreamError::NotFound {
                url: self.base.clone(),
            });
        };
        let platforms: Vec<Platform> = entry
            .platforms
            .iter()
            .map(|p| Platform {
                os: p.os.clone(),
                arch: p.arch.clone(),
            })
            .collect();
        let first = platforms
            .first()
            .ok_or_else(|| UpstreamError::InvalidBody {
                url: self.base.clone(),
                reason: format!("{release} lists no platform"),
            })?;
        let fetched = self.download_document(release, first).await?;
        let stem = release.file_stem();
        let shasums = file_name(&self.base, format!("{stem}_SHA256SUMS"))?;
        let signature = file_name(&self.base, format!("{stem}_SHA256SUMS.sig"))?;
        let document = &fetched.document;
        let files = HashMap::from([
            (
                shasums.clone(),
                self.join(&fetched.url, &document.shasums_url)?,
            ),
            (
                signature.clone(),
                self.join(&fetched.url, &document.shasums_signature_url)?,
            ),
        ]);
        self.files.insert(release.clone(), Arc::new(files)).await;
        let builds = platforms
            .iter()
            .map(|platform| {
                Ok(ValidBuild {
                    filename: file_name(&self.base, format!("{stem}_{platform}.zip"))?,
                    platform: platform.clone(),
                })
            })
            .collect::<Result<_, UpstreamError>>()?;
        Ok(ReleaseListing {
            shasums,
            signatures: vec![signature],
            published_keys: document
                .signing_keys
                .gpg_public_keys
                .iter()
                .map(|key| PublishedKey {
                    ascii_armor: key.ascii_armor.clone(),
                    trust_signature: key.trust_signature.clone().filter(|t| !t.is_empty()),
                    source: key
                        .source
                        .clone()
                        .unwrap_or_else(|| format!("upstream {}", self.name)),
                })
                .collect(),
            builds,
            manifest: None,
            protocols: document.protocols.clone().or(entry.protocols),
        })
    }

    async fn file_url(&self, file: &FileKey) -> Result<Url, UpstreamError> {
        let files = match self.files.get(&file.release).await {
            Some(files) => files,
            None => {
                self.listing(&file.release).await?;
                self.files
                    .get(&file.release)
                    .await
                    .ok_or_else(|| UpstreamError::NotFound {
                        url: self.base.clone(),
                    })?
            }
        };
        files
            .get(&file.file)
            .cloned()
            .ok_or_else(|| UpstreamError::NotFound {
                url: self.base.clone(),
            })
    }
}

impl Upstream for RegistryUpstream {
    fn name(&self) -> &UpstreamName {
        &self.name
    }

    fn url(&self) -> String {
        crate::config::redact_url(&self.base).to_string()
    }

    fn health(&self) -> UpstreamHealth {
        self.http.health()
    }

    fn has_namespaces(&self) -> bool {
        true
    }

    fn versions<'a>(
        &'a self,
        provider: &'a ProviderKey,
    ) -> BoxFuture<'a, Result<Vec<VersionEntry>, UpstreamError>> {
        self.version_list(provider).boxed()
    }

    fn release<'a>(
        &'a self,
        release: &'a ReleaseKey,
    ) -> BoxFuture<'a, Result<ReleaseListing, UpstreamError>> {
        self.listing(release).boxed()
    }

    fn small_file<'a>(&'a self, file: &'a FileKey) -> BoxFuture<'a, Result<Bytes, UpstreamError>> {
        async move {
            let url = self.file_url(file).await?;
            self.http.get_bytes(&url, MAX_SMALL_FILE_BYTES).await
        }
        .boxed()
    }

    fn archive<'a>(
        &'a self,
        file: &'a FileKey,
        platform: &'a Platform,
    ) -> BoxFuture<'a, Result<ArchiveDownload, UpstreamError>> {
        async move {
            let fetched = self.download_document(&file.release, platform).await?;
            let document = &fetched.document;
            if document.filename != file.file.as_str() {
                return Err(UpstreamError::InvalidBody {
                    url: fetched.url.clone(),
                    reason: format!(
                        "the download document names {:?}, not {}",
                        document.filename, file.file
                    ),
                });
            }
            let declared = Sha256Digest::from_hex(&document.shasum).ok_or_else(|| {
                UpstreamError::InvalidBody {
                    url: fetched.url.clone(),
                    reason: "the download document's shasum is not a SHA-256".to_owned(),
                }
            })?;
            let url = self.join(&fetched.url, &document.download_url)?;
            let body = self.http.get_stream(&url).await?;
            Ok(ArchiveDownload {
                declared_len: body.declared_len,
                declared_digest: Some(declared),
                chunks: Box::pin(body.chunks),
            })
        }
        .boxed()
    }
}

/// A file name built from a release's validated names (a type or version so long that the
/// name is over the limit is the only way this fails).
fn file_name(base: &Url, name: String) -> Result<FileName, UpstreamError> {
    FileName::try_from(name.as_str()).map_err(|e| UpstreamError::InvalidBody {
        url: base.clone(),
        reason: e.to_string(),
    })
}
