//! Talking to upstreams: the only module that names `reqwest`.
//!
//! One shared client (rustls with the system's roots, connect and read timeouts, a
//! `User-Agent`). Metadata reads stop at a byte cap instead of trusting upstream sizes;
//! archives are handed out as a chunk stream so that nobody ever buffers one whole.

pub mod releases;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use url::Url;

pub use releases::ReleasesUpstream;

/// Sent on every upstream request.
pub const USER_AGENT: &str = concat!("tfmirror/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream has no {url}")]
    NotFound { url: Url },
    #[error("upstream answered {status} for {url}")]
    Status { url: Url, status: u16 },
    #[error("upstream timed out on {url}")]
    Timeout { url: Url },
    #[error("upstream unreachable for {url}")]
    Unreachable {
        url: Url,
        #[source]
        source: Arc<reqwest::Error>,
    },
    #[error("upstream answer for {url} exceeds {limit} bytes")]
    TooLarge { url: Url, limit: u64 },
    #[error("upstream sent an invalid document at {url}: {reason}")]
    InvalidBody { url: Url, reason: String },
    #[error("cannot build an HTTP client")]
    Client(#[source] Arc<reqwest::Error>),
}

impl UpstreamError {
    fn from_reqwest(url: &Url, error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout { url: url.clone() }
        } else {
            Self::Unreachable {
                url: url.clone(),
                source: Arc::new(error),
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// The process-wide HTTP client for upstream requests.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration, read_timeout: Duration) -> Result<Self, UpstreamError> {
        let inner = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            // Upstream files are immutable; a redirect to another host is not expected and
            // would let a listing point us anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Client(Arc::new(e)))?;
        Ok(Self { inner })
    }

    async fn send(&self, url: &Url) -> Result<reqwest::Response, UpstreamError> {
        let response = self
            .inner
            .get(url.clone())
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(url, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(UpstreamError::NotFound { url: url.clone() });
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        Ok(response)
    }

    /// A whole small document, refused once it grows past `limit` bytes.
    pub async fn get_bytes(&self, url: &Url, limit: u64) -> Result<Bytes, UpstreamError> {
        let response = self.send(url).await?;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(UpstreamError::TooLarge {
                url: url.clone(),
                limit,
            });
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| UpstreamError::from_reqwest(url, e))?;
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(UpstreamError::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    /// A large body as a stream of chunks; the caller enforces its own size limit.
    pub async fn get_stream(
        &self,
        url: &Url,
    ) -> Result<impl Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static, UpstreamError>
    {
        let response = self.send(url).await?;
        let url = url.clone();
        Ok(response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| UpstreamError::from_reqwest(&url, e))))
    }
}
