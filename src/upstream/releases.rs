//! A releases.hashicorp.com-style upstream: URL building and typed fetches.
//!
//! Every URL is built from the configured base and validated names, never taken from a
//! listing (whose `builds[].url` could point at any host), so tfmirror only ever fetches from
//! the upstream it was configured with.

use bytes::Bytes;
use futures_util::Stream;
use url::Url;

use super::{HttpClient, UpstreamBody, UpstreamError};
use crate::protocol::{
    releases::{product_name, ProductIndex, ReleaseVersion},
    FileName, ProviderType, Version,
};

/// Cap on index documents. The largest real product index (aws, ~500 versions × ~15 builds)
/// is a few MB.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;
/// Cap on SHA256SUMS, signatures and manifests.
pub const MAX_SMALL_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReleasesUpstream {
    /// Name of the `[upstreams.NAME]` table, for logs.
    pub name: String,
    base: Url,
    http: HttpClient,
}

impl ReleasesUpstream {
    pub fn new(name: String, base: &Url, http: HttpClient) -> Self {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Self { name, base, http }
    }

    pub fn base_url(&self) -> String {
        self.base.to_string()
    }

    pub fn health(&self) -> super::UpstreamHealth {
        self.http.health()
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

    pub fn product_index_url(&self, provider: &ProviderType) -> Result<Url, UpstreamError> {
        self.url(&[&product_name(provider), "index.json"])
    }

    pub fn file_url(
        &self,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Url, UpstreamError> {
        self.url(&[&product_name(provider), version.as_str(), file.as_str()])
    }

    pub async fn product_index(
        &self,
        provider: &ProviderType,
    ) -> Result<ProductIndex, UpstreamError> {
        let url = self.product_index_url(provider)?;
        let body = self.http.get_bytes(&url, MAX_INDEX_BYTES).await?;
        parse_json(&url, &body)
    }

    pub async fn version_index(
        &self,
        provider: &ProviderType,
        version: &Version,
    ) -> Result<ReleaseVersion, UpstreamError> {
        let url = self.url(&[&product_name(provider), version.as_str(), "index.json"])?;
        let body = self.http.get_bytes(&url, MAX_INDEX_BYTES).await?;
        parse_json(&url, &body)
    }

    /// A small file of a release (SHA256SUMS, signature, manifest).
    pub async fn small_file(
        &self,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<Bytes, UpstreamError> {
        let url = self.file_url(provider, version, file)?;
        self.http.get_bytes(&url, MAX_SMALL_FILE_BYTES).await
    }

    /// An archive, as a stream of chunks.
    pub async fn archive(
        &self,
        provider: &ProviderType,
        version: &Version,
        file: &FileName,
    ) -> Result<
        UpstreamBody<impl Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static>,
        UpstreamError,
    > {
        let url = self.file_url(provider, version, file)?;
        self.http.get_stream(&url).await
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|e| UpstreamError::InvalidBody {
        url: url.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_stay_under_the_configured_base() {
        let config: crate::config::UpstreamConfig =
            serde_json::from_str(r#"{"url": "http://127.0.0.1:9/releases"}"#).unwrap();
        let http = HttpClient::new("h", crate::upstream::FetchPolicy::from(&config)).unwrap();
        let up = ReleasesUpstream::new(
            "h".into(),
            &Url::parse("http://127.0.0.1:9/releases").unwrap(),
            http,
        );
        let t = ProviderType::try_from("local").unwrap();
        let v = Version::try_from("2.1.0").unwrap();
        let f = FileName::try_from("terraform-provider-local_2.1.0_SHA256SUMS").unwrap();
        assert_eq!(
            up.file_url(&t, &v, &f).unwrap().as_str(),
            "http://127.0.0.1:9/releases/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_SHA256SUMS"
        );
        assert_eq!(
            up.product_index_url(&t).unwrap().as_str(),
            "http://127.0.0.1:9/releases/terraform-provider-local/index.json"
        );
    }
}
