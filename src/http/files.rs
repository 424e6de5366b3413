//! Release files (archives, SHA256SUMS, signatures), sent from the verified cache with Range,
//! HEAD, ETag and Last-Modified support (a whole file in the page cache by `sendfile` on plain
//! HTTP/1.1), or followed while their download is live. Never a redirect to upstream; with
//! `storage.redirect = "presigned"`, a verified archive in the bucket is a redirect to a
//! presigned URL of it.

use actix_files::NamedFile;
use actix_web::{http::header, web, HttpRequest, HttpResponse, Responder};
use serde::Deserialize;

use super::{auth::FileAccess, ApiError};
use crate::{
    mirror::{FileBody, FileRequest, Mirror, Via, Wait},
    protocol::{FileName, Namespace, ProviderType, Version},
    store::{chunks, Object},
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

#[tracing::instrument(name = "file", level = "debug", skip_all, fields(provider = %path.provider_type, version = %path.version, file = %path.file))]
pub async fn release_file(
    _: FileAccess,
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    path: web::Path<FilePath>,
) -> Result<HttpResponse, ApiError> {
    let request = FileRequest {
        via: Via::Namespace(&path.namespace),
        provider: &path.provider_type,
        version: &path.version,
        file: &path.file,
        platform: None,
    };
    send(&req, mirror.file(request, wait_for(&req)).await?)
}

/// `HEAD` and `Range` requests are answered from the verified file (waiting for a download
/// in progress); a plain `GET` may follow a download as it arrives.
pub(super) fn wait_for(req: &HttpRequest) -> Wait {
    if req.method() == actix_web::http::Method::HEAD || req.headers().contains_key(header::RANGE) {
        Wait::Verified
    } else {
        Wait::FirstBytes
    }
}

/// Sends a verified file, or the stream of one still arriving.
pub(super) fn send(req: &HttpRequest, body: FileBody) -> Result<HttpResponse, ApiError> {
    match body {
        FileBody::Ready(object) => Ok(send_object(req, object)),
        // The URL expires: never cached.
        FileBody::Redirect(url) => Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, url))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()),
        FileBody::Live { total, stream } => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, IMMUTABLE))
            .content_type("application/zip")
            .no_chunking(total)
            .streaming(stream)),
    }
}

fn send_object(req: &HttpRequest, object: Object) -> HttpResponse {
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
        return whole_file(req, object);
    }
    // Ranges, conditional requests and HEAD: actix-files implements them all over the file.
    let (file, path) = object.into_file();
    match NamedFile::from_file(file, path) {
        Ok(file) => file
            .use_etag(true)
            .use_last_modified(true)
            .customize()
            .insert_header((header::CACHE_CONTROL, IMMUTABLE))
            .respond_to(req)
            .map_into_boxed_body(),
        Err(e) => actix_web::ResponseError::error_response(&ApiError::Internal(format!(
            "cannot answer from a cached file: {e}"
        ))),
    }
}

/// The type actix-files gives the file (`HEAD` and conditional requests), without parsing
/// one for every archive.
fn content_type(object: &Object) -> header::HeaderValue {
    match object.name().and_then(|n| n.rsplit_once('.')) {
        Some((_, "zip")) => header::HeaderValue::from_static("application/zip"),
        Some((_, extension)) => {
            let mime = actix_files::file_extension_to_mime(extension);
            header::HeaderValue::from_str(mime.as_ref())
                .unwrap_or_else(|_| header::HeaderValue::from_static("application/octet-stream"))
        }
        None => header::HeaderValue::from_static("application/octet-stream"),
    }
}

/// A plain `GET` of a whole verified file, read in `chunks::CHUNK` steps from the page cache
/// on the worker thread when it can (`store::chunks`; actix-files reads 64 KiB per blocking
/// task, which caps a download at a few hundred MB/s), with the same `ETag` and
/// `Last-Modified` that actix-files gives `HEAD` and conditional requests. When the file is in
/// the page cache (all but a few pages) the response also carries it as a `SendFile`: on a plain HTTP/1.1
/// connection the kernel then sends it straight from the page cache, as nginx's `sendfile`
/// does, and the chunks are never read.
fn whole_file(req: &HttpRequest, object: Object) -> HttpResponse {
    let len = object.len();
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .content_type(content_type(&object));
    if let (Some(etag), Some(modified)) = (object.etag(), object.modified()) {
        response
            .insert_header((header::ETAG, header::EntityTag::new_strong(etag)))
            .insert_header((header::LAST_MODIFIED, header::HttpDate::from(modified)));
    }
    // One chunk size for every file: a response then holds at most one chunk in our buffer
    // and one in actix's write buffer, whatever the file's size.
    let chunk = chunks::CHUNK.min(len as usize).max(1);
    // Only plain HTTP/1.x can use `SendFile`: elsewhere the page cache is not asked.
    let plain_http1 =
        !req.app_config().secure() && req.version() < actix_web::http::Version::HTTP_2;
    if !plain_http1 {
        return response.no_chunking(len).streaming(object.stream(chunk));
    }
    let (stream, cached) = object.stream_and_cached_file(chunk);
    let mut response = response.no_chunking(len).streaming(stream);
    if let Some(file) = cached {
        response
            .extensions_mut()
            .insert(actix_http::h1::SendFile::new(file, 0, len));
    }
    response
}
