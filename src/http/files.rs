//! Release files (archives, SHA256SUMS, signatures), streamed from the verified cache with
//! Range, HEAD, ETag and Last-Modified support. Never a redirect to upstream.

use actix_files::NamedFile;
use actix_web::{http::header, web, HttpRequest, HttpResponse, Responder};
use serde::Deserialize;

use super::{auth::FileAccess, ApiError};
use crate::{
    mirror::{ArchiveBody, Artifact, Mirror, MirrorError},
    protocol::{FileName, Namespace, ProviderType, Version},
    store::StoreError,
};

#[derive(Debug, Deserialize)]
pub struct FilePath {
    namespace: Namespace,
    provider_type: ProviderType,
    version: Version,
    file: FileName,
}

/// Verified release files never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[tracing::instrument(name = "file", skip_all, fields(provider = %path.provider_type, version = %path.version, file = %path.file))]
pub async fn release_file(
    _: FileAccess,
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    path: web::Path<FilePath>,
) -> Result<HttpResponse, ApiError> {
    if wants_whole_file(&req) {
        let artifact = mirror
            .artifact(
                &path.namespace,
                &path.provider_type,
                &path.version,
                &path.file,
            )
            .await?;
        return serve_artifact(&req, artifact).await;
    }
    let body = mirror
        .artifact_body(
            &path.namespace,
            &path.provider_type,
            &path.version,
            &path.file,
        )
        .await?;
    serve_body(&req, body).await
}

/// `HEAD` and `Range` requests are answered from the verified file (waiting for a download
/// in progress); a plain `GET` may follow a download as it arrives.
pub(super) fn wants_whole_file(req: &HttpRequest) -> bool {
    req.method() == actix_web::http::Method::HEAD || req.headers().contains_key(header::RANGE)
}

/// Sends a file that is on disk, or the stream of one still arriving.
pub(super) async fn serve_body(
    req: &HttpRequest,
    body: ArchiveBody,
) -> Result<HttpResponse, ApiError> {
    match body {
        ArchiveBody::File(artifact) => serve_artifact(req, artifact).await,
        ArchiveBody::Live { total, stream } => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, IMMUTABLE))
            .content_type("application/zip")
            .no_chunking(total)
            .streaming(stream)),
    }
}

/// Streams a verified file from the cache.
pub(super) async fn serve_artifact(
    req: &HttpRequest,
    artifact: Artifact,
) -> Result<HttpResponse, ApiError> {
    let file = NamedFile::open_async(&artifact.path).await.map_err(|e| {
        MirrorError::Store(StoreError::Io {
            path: artifact.path.clone(),
            source: std::sync::Arc::new(e),
        })
    })?;
    Ok(file
        .use_etag(true)
        .use_last_modified(true)
        .customize()
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .respond_to(req)
        .map_into_boxed_body())
}
