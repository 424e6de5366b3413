//! Release files (archives, SHA256SUMS, signatures), streamed from the verified cache with
//! Range, HEAD, ETag and Last-Modified support. Never a redirect to upstream.

use actix_files::NamedFile;
use actix_web::{http::header, web, HttpRequest, HttpResponse, Responder};
use serde::Deserialize;

use super::{auth::FileAccess, ApiError};
use crate::{
    mirror::{ArchiveBody, Artifact, Mirror, MirrorError},
    protocol::{FileName, Namespace, ProviderType, Version},
    store::{
        chunks::{self, FileChunks},
        StoreError,
    },
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
    let io_error = |e: std::io::Error| {
        ApiError::from(MirrorError::Store(StoreError::Io {
            path: artifact.path.clone(),
            source: std::sync::Arc::new(e),
        }))
    };
    let conditional = [
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|h| req.headers().contains_key(h));
    if req.method() == actix_web::http::Method::GET && !conditional {
        return whole_file(&artifact.path).await.map_err(io_error);
    }
    // Ranges, conditional requests and HEAD: actix-files implements them all.
    let file = NamedFile::open_async(&artifact.path)
        .await
        .map_err(io_error)?;
    Ok(file
        .use_etag(true)
        .use_last_modified(true)
        .customize()
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .respond_to(req)
        .map_into_boxed_body())
}

/// A plain `GET` of a whole verified file, read in `chunks::CHUNK` steps from the page
/// cache on the worker thread when it can (`store::chunks`; actix-files reads 64 KiB per
/// blocking task, which caps a download at a few hundred MB/s), with the same `ETag` and
/// `Last-Modified` that actix-files gives `HEAD` and conditional requests.
async fn whole_file(path: &std::path::Path) -> std::io::Result<HttpResponse> {
    let path_for_mime = path.to_owned();
    let path = path.to_owned();
    let (file, metadata) = web::block(move || {
        let file = std::fs::File::open(&path)?;
        let metadata = file.metadata()?;
        Ok::<_, std::io::Error>((file, metadata))
    })
    .await
    .map_err(std::io::Error::other)??;
    let len = metadata.len();
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .content_type(
            path_for_mime
                .extension()
                .and_then(|e| e.to_str())
                .map(actix_files::file_extension_to_mime)
                .unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM),
        );
    if let Ok(modified) = metadata.modified() {
        use std::os::unix::fs::MetadataExt as _;
        let since_epoch = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        response
            .insert_header((
                header::ETAG,
                header::EntityTag::new_strong(format!(
                    "{:x}:{:x}:{:x}:{:x}",
                    metadata.ino(),
                    len,
                    since_epoch.as_secs(),
                    since_epoch.subsec_nanos()
                )),
            ))
            .insert_header((header::LAST_MODIFIED, header::HttpDate::from(modified)));
    }
    // One chunk size for every file: a response then holds at most one chunk in our buffer
    // and one in actix's write buffer, whatever the file's size.
    let chunk = chunks::CHUNK.min(len as usize).max(1);
    let chunks = FileChunks::new(file).stream(len, chunk);
    Ok(response.no_chunking(len).streaming(chunks))
}
