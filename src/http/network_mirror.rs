//! Provider Network Mirror Protocol handlers under `/mirror/`: the last path segment says
//! whether a request is for `index.json`, a `<version>.json` or an archive.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{
    auth::{Authorized, FileAccess},
    documents::{json_list, signed},
    files::{send, wait_for},
    ApiError,
};
use crate::{
    mirror::{FileRequest, Mirror, Via},
    protocol::{
        network_mirror::{MirrorFile, MIRROR_BASE_PATH},
        Hostname, Namespace, ProviderType, Version,
    },
};

#[derive(Debug, Deserialize)]
pub struct MirrorPath {
    hostname: Hostname,
    namespace: Namespace,
    provider_type: ProviderType,
    file: String,
}

/// `index.json`, `<version>.json` or an archive, by the last segment.
#[tracing::instrument(name = "mirror", level = "debug", skip_all, fields(origin = %path.hostname, provider = %path.provider_type, file = %path.file))]
pub async fn mirror_file(
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    path: web::Path<MirrorPath>,
) -> Result<HttpResponse, ApiError> {
    let wanted = MirrorFile::parse(&path.provider_type, &path.file)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let via = Via::Origin(&path.hostname, &path.namespace);
    match wanted {
        MirrorFile::Index => index(&req, &mirror, via, &path.provider_type).await,
        MirrorFile::Version(version) => {
            version_document(&req, &mirror, via, &path.provider_type, &version).await
        }
        MirrorFile::Archive {
            version,
            platform,
            file,
        } => {
            FileAccess::check(&req)?;
            let request = FileRequest {
                via,
                provider: &path.provider_type,
                version: &version,
                file: &file,
                platform: Some(&platform),
            };
            send(&req, mirror.file(request, wait_for(&req)).await?)
        }
    }
}

async fn index(
    req: &HttpRequest,
    mirror: &Mirror,
    via: Via<'_>,
    provider: &ProviderType,
) -> Result<HttpResponse, ApiError> {
    Authorized::check(req)?;
    let lists = mirror.versions(via, provider).await?;
    Ok(json_list(req, &lists.mirror_index))
}

async fn version_document(
    req: &HttpRequest,
    mirror: &Mirror,
    via: Via<'_>,
    provider: &ProviderType,
    version: &Version,
) -> Result<HttpResponse, ApiError> {
    let access = Authorized::check(req)?;
    let doc = mirror.mirror_version(via, provider, version).await?;
    // Archive URLs are relative to this document's URL, so their path is its sibling.
    let dir = req.path().rsplit_once('/').map_or("", |(dir, _)| dir);
    Ok(signed(&doc, &access, |url| format!("{dir}/{url}")))
}

/// `/mirror` → `/mirror/`: Terraform resolves paths against the base URL, which therefore
/// needs its trailing slash.
pub async fn add_trailing_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, MIRROR_BASE_PATH))
        .finish()
}
