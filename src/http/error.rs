//! The one place where errors become HTTP answers: a status code and `{"errors":["..."]}`.
//!
//! Client mistakes (4xx) say exactly what was wrong. Server-side failures (5xx) say what kind
//! of failure it was — Terraform shows only the status line anyway — and the full error chain
//! goes to the log, where an operator can act on it.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

use crate::{mirror::MirrorError, protocol::registry::ErrorBody, upstream::UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// Our own failure outside the mirror core (the status page's snapshot, a cached file
    /// that cannot be answered from); the detail goes to the log.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

impl ApiError {
    fn public_message(&self) -> String {
        match self {
            Self::BadRequest(m)
            | Self::NotFound(m)
            | Self::Unauthorized(m)
            | Self::UriTooLong(m)
            | Self::HeadersTooLarge(m) => m.clone(),
            Self::Internal(_) => "internal error; see the mirror's log".to_owned(),
            Self::Mirror(e) => match e {
                MirrorError::Verification { release, .. } => format!(
                    "provider {release} failed verification against its signed SHA256SUMS; nothing was cached"
                ),
                MirrorError::Upstream(e @ UpstreamError::HostNotAllowed { .. }) => e.to_string(),
                MirrorError::Upstream(UpstreamError::Timeout { .. }) => {
                    "upstream timed out and nothing is cached for this request".to_owned()
                }
                MirrorError::Upstream(_) => {
                    "upstream unreachable or answered with an error, and nothing is cached for this request".to_owned()
                }
                MirrorError::Store(e) if e.is_disk_full() => {
                    "the mirror's cache disk is full: cached providers are still served, new ones cannot be fetched".to_owned()
                }
                MirrorError::Store(e) if e.is_bucket_unavailable() => {
                    "the mirror's shared storage is unreachable: files on this replica's disk are still served, this one is not; see its log".to_owned()
                }
                MirrorError::Store(_) => {
                    "the mirror cannot write its cache; see its log".to_owned()
                }
                e if self.status_code().is_client_error() => e.to_string(),
                _ => "internal error; see the mirror's log".to_owned(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Mirror(e) => match e {
                MirrorError::Denied { .. }
                | MirrorError::Unsigned(_)
                | MirrorError::Quarantined { .. }
                | MirrorError::PeerDenied => StatusCode::FORBIDDEN,
                MirrorError::UnknownNamespace(_)
                | MirrorError::UnknownOrigin { .. }
                | MirrorError::UnknownProvider { .. }
                | MirrorError::UnknownVersion { .. }
                | MirrorError::Unlisted(_)
                | MirrorError::UnknownPlatform { .. }
                | MirrorError::UnknownFile { .. }
                | MirrorError::NotDownloading(_) => StatusCode::NOT_FOUND,
                MirrorError::Upstream(UpstreamError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
                MirrorError::Upstream(_)
                | MirrorError::EmptyVersionList(_)
                | MirrorError::Verification { .. } => StatusCode::BAD_GATEWAY,
                MirrorError::Store(e) if e.is_disk_full() => StatusCode::INSUFFICIENT_STORAGE,
                MirrorError::Store(e) if e.is_bucket_unavailable() => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                MirrorError::UnknownUpstream(_)
                | MirrorError::Store(_)
                | MirrorError::Layout(_)
                | MirrorError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %error_chain(self), "request failed");
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((
                actix_web::http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"tfmirror\"",
            ));
        }
        response.json(ErrorBody {
            errors: vec![self.public_message()],
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
