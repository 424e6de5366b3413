//! A releases.hashicorp.com-style upstream: the first kind of [`Upstream`].
//!
//! Layout: `/<product>/index.json` lists every version, `/<product>/<version>/index.json` one
//! version, beside its zips, `_SHA256SUMS`, signatures and `_manifest.json`. Every URL is built
//! from the configured base and validated names, never taken from a listing (whose
//! `builds[].url` could point at any host), so this upstream only ever fetches from the site
//! it was configured with. Its providers have no namespace.

use bytes::Bytes;
use futures_util::{future::BoxFuture, FutureExt};
use url::Url;

use super::{
    parse_json, ArchiveDownload, HttpClient, ReleaseListing, Upstream, UpstreamError,
    UpstreamHealth,
};
use crate::protocol::{
    registry::{PlatformEntry, VersionEntry},
    releases::{ProductIndex, ReleaseVersion},
    FileKey, FileName, Platform, ProviderKey, ProviderType, ReleaseKey, UpstreamName,
};

/// Cap on index documents. The largest real product index (aws, ~500 versions × ~15 builds)
/// is a few MB.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;
/// Cap on SHA256SUMS, signatures and manifests.
pub const MAX_SMALL_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReleasesUpstream {
    name: UpstreamName,
    base: Url,
    http: HttpClient,
    /// Short ids of the trusted keys: signature names to try when a listing names none
    /// (`<sums>.72D7468F.sig`).
    key_ids: Vec<String>,
}

impl ReleasesUpstream {
    pub fn new(name: UpstreamName, base: &Url, http: HttpClient, key_ids: Vec<String>) -> Self {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Self {
            name,
            base,
            http,
            key_ids,
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| UpstreamError::InvalidBody {
                url: self.base.clone(),
                reason: "upstream URL cannot have a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn product_index_url(&self, provider: &ProviderType) -> Result<Url, UpstreamError> {
        self.url(&[&provider.product_name(), "index.json"])
    }

    fn file_url(&self, file: &FileKey) -> Result<Url, UpstreamError> {
        let release = &file.release;
        self.url(&[
            &release.provider_type().product_name(),
            release.version.as_str(),
            file.file.as_str(),
        ])
    }

    async fn version_index(&self, release: &ReleaseKey) -> Result<ReleaseVersion, UpstreamError> {
        let url = self.url(&[
            &release.provider_type().product_name(),
            release.version.as_str(),
            "index.json",
        ])?;
        let body = self.http.get_bytes(&url, MAX_INDEX_BYTES).await?;
        parse_json(&url, &body)
    }

    async fn listing(&self, release: &ReleaseKey) -> Result<ReleaseListing, UpstreamError> {
        let index = self.version_index(release).await?;
        let stem = release.file_stem();
        let invalid = |reason: String| UpstreamError::InvalidBody {
            url: self.base.clone(),
            reason,
        };
        let shasums = match index.shasums.as_deref().map(FileName::try_from) {
            Some(Ok(name)) => name,
            _ => FileName::try_from(format!("{stem}_SHA256SUMS"))
                .map_err(|e| invalid(e.to_string()))?,
        };
        let mut signatures = index.signature_names();
        if signatures.is_empty() {
            signatures = self
                .key_ids
                .iter()
                .map(|id| format!("{shasums}.{id}.sig"))
                .chain(std::iter::once(format!("{shasums}.sig")))
                .collect();
        }
        Ok(ReleaseListing {
            signatures: signatures
                .into_iter()
                .filter_map(|n| FileName::try_from(n).ok())
                .collect(),
            shasums,
            published_keys: Vec::new(),
            builds: index.valid_builds(),
            manifest: FileName::try_from(format!("{stem}_manifest.json")).ok(),
            protocols: None,
        })
    }
}

impl Upstream for ReleasesUpstream {
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
        false
    }

    fn versions<'a>(
        &'a self,
        provider: &'a ProviderKey,
    ) -> BoxFuture<'a, Result<Vec<VersionEntry>, UpstreamError>> {
        async move {
            let url = self.product_index_url(&provider.provider)?;
            let body = self.http.get_bytes(&url, MAX_INDEX_BYTES).await?;
            let index: ProductIndex<'_> = parse_json(&url, &body)?;
            Ok(index
                .valid_versions()
                .into_iter()
                .map(|(version, platforms)| VersionEntry {
                    version: version.to_string(),
                    protocols: None,
                    platforms: platforms.into_iter().map(PlatformEntry::from).collect(),
                })
                .collect())
        }
        .boxed()
    }

    fn release<'a>(
        &'a self,
        release: &'a ReleaseKey,
    ) -> BoxFuture<'a, Result<ReleaseListing, UpstreamError>> {
        self.listing(release).boxed()
    }

    fn small_file<'a>(&'a self, file: &'a FileKey) -> BoxFuture<'a, Result<Bytes, UpstreamError>> {
        async move {
            let url = self.file_url(file)?;
            self.http.get_bytes(&url, MAX_SMALL_FILE_BYTES).await
        }
        .boxed()
    }

    fn archive<'a>(
        &'a self,
        file: &'a FileKey,
        _platform: &'a Platform,
    ) -> BoxFuture<'a, Result<ArchiveDownload, UpstreamError>> {
        async move {
            let url = self.file_url(file)?;
            let body = self.http.get_stream(&url).await?;
            Ok(ArchiveDownload {
                declared_len: body.declared_len,
                declared_digest: None,
                chunks: Box::pin(body.chunks),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::Version;

    #[test]
    fn urls_stay_under_the_configured_base() {
        let config: crate::config::UpstreamConfig =
            serde_json::from_str(r#"{"url": "http://127.0.0.1:9/releases"}"#).unwrap();
        let http = HttpClient::new("h", crate::upstream::FetchPolicy::from(&config)).unwrap();
        let up = ReleasesUpstream::new(
            UpstreamName::try_from("h").unwrap(),
            &Url::parse("http://127.0.0.1:9/releases").unwrap(),
            http,
            Vec::new(),
        );
        let t = ProviderType::try_from("local").unwrap();
        let file = ProviderKey::new(up.name.clone(), None, t.clone())
            .release(Version::try_from("2.1.0").unwrap())
            .file(FileName::try_from("terraform-provider-local_2.1.0_SHA256SUMS").unwrap());
        assert_eq!(
            up.file_url(&file).unwrap().as_str(),
            "http://127.0.0.1:9/releases/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_SHA256SUMS"
        );
        assert_eq!(
            up.product_index_url(&t).unwrap().as_str(),
            "http://127.0.0.1:9/releases/terraform-provider-local/index.json"
        );
    }
}
