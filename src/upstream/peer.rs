//! Another replica on the same bucket as a source of one archive: the one holding the
//! archive's download lease, whose live download this replica follows (`mirror::cluster`).
//!
//! Nothing a peer sends is trusted any more than upstream: the core hashes what it receives
//! and checks it against the signed SHA256SUMS it verified itself. The shared secret goes in
//! a header, never in the URL, so request logs never carry it.

use std::{path::Path, sync::Arc, time::Duration};

use futures_util::StreamExt;
use url::Url;

use super::{ArchiveDownload, UpstreamError, USER_AGENT};

/// The header replicas authenticate to each other with.
pub const PEER_SECRET_HEADER: &str = "x-tfmirror-peer-secret";
/// The private route a holder serves its live downloads under, before the archive's location.
pub const PEER_LIVE_PREFIX: &str = "_cluster/live/";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The client for other replicas.
#[derive(Debug, Clone)]
pub struct PeerClient {
    inner: reqwest::Client,
}

impl PeerClient {
    /// `trusted_cert`: a PEM certificate (this replica's own `tls.cert`) trusted besides the
    /// system's roots, for replicas that share one; `silence`: the longest pause between two
    /// chunks before a holder counts as gone.
    pub fn new(trusted_cert: Option<&Path>, silence: Duration) -> Result<Self, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(silence)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(pem) = trusted_cert.and_then(|path| std::fs::read(path).ok()) {
            if let Ok(certs) = reqwest::Certificate::from_pem_bundle(&pem) {
                builder = builder.tls_certs_merge(certs);
            }
        }
        let inner = builder
            .build()
            .map_err(|e| UpstreamError::Client(Arc::new(e)))?;
        Ok(Self { inner })
    }

    /// The archive at `location` as the holder at `holder` is downloading it, or `None` when
    /// it has no download of it in progress (it finished, or failed, a moment ago).
    pub async fn live_archive(
        &self,
        holder: &Url,
        location: &str,
        secret: &str,
    ) -> Result<Option<ArchiveDownload>, UpstreamError> {
        let url = holder
            .join(&format!("{PEER_LIVE_PREFIX}{location}"))
            .map_err(|e| UpstreamError::InvalidBody {
                url: holder.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .inner
            .get(url.clone())
            .header(PEER_SECRET_HEADER, secret)
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(&url, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                url,
                status: status.as_u16(),
                retry_after: None,
            });
        }
        let declared_len = response.content_length();
        let chunks = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| UpstreamError::from_reqwest(&url, e)))
            .boxed();
        Ok(Some(ArchiveDownload {
            declared_len,
            declared_digest: None,
            chunks,
        }))
    }
}
