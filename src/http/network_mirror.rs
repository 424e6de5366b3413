//! Provider Network Mirror Protocol handlers under `/mirror/`.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{
    auth::{Authorized, FileAccess},
    files::{serve_artifact, serve_body, wants_whole_file},
    ApiError,
};
use crate::{
    mirror::Mirror,
    protocol::{
        network_mirror::{MirrorFile, MIRROR_BASE_PATH},
        Hostname, Namespace, ProviderType,
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
#[tracing::instrument(name = "mirror", skip_all, fields(origin = %path.hostname, provider = %path.provider_type, file = %path.file))]
pub async fn mirror_file(
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    path: web::Path<MirrorPath>,
) -> Result<HttpResponse, ApiError> {
    let MirrorPath {
        hostname,
        namespace,
        provider_type,
        file,
    } = path.into_inner();
    let wanted = MirrorFile::parse(&provider_type, &file)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let json = |body| {
        HttpResponse::Ok()
            .content_type(header::ContentType::json())
            .body(body)
    };
    match wanted {
        MirrorFile::Index => {
            Authorized::check(&req)?;
            Ok(json(
                mirror
                    .mirror_index(&hostname, &namespace, &provider_type)
                    .await?,
            ))
        }
        MirrorFile::Version(version) => {
            let access = Authorized::check(&req)?;
            if !access.signs_urls() {
                return Ok(json(
                    mirror
                        .mirror_version_json(&hostname, &namespace, &provider_type, &version)
                        .await?,
                ));
            }
            let mut document = mirror
                .mirror_version(&hostname, &namespace, &provider_type, &version)
                .await?;
            // Archive URLs are relative to this document's URL, so their path is its sibling.
            let dir = req.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            for archive in document.archives.values_mut() {
                let path = format!("{dir}/{}", archive.url);
                archive.url = access.sign(std::mem::take(&mut archive.url), &path);
            }
            Ok(HttpResponse::Ok().json(document))
        }
        MirrorFile::Archive {
            version,
            platform,
            file,
        } => {
            FileAccess::check(&req)?;
            if wants_whole_file(&req) {
                let artifact = mirror
                    .mirror_archive(
                        &hostname,
                        &namespace,
                        &provider_type,
                        &version,
                        &platform,
                        &file,
                    )
                    .await?;
                return serve_artifact(&req, artifact).await;
            }
            let body = mirror
                .mirror_archive_body(
                    &hostname,
                    &namespace,
                    &provider_type,
                    &version,
                    &platform,
                    &file,
                )
                .await?;
            serve_body(&req, body).await
        }
    }
}

/// `/mirror` → `/mirror/`: Terraform resolves paths against the base URL, which therefore
/// needs its trailing slash.
pub async fn add_trailing_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, MIRROR_BASE_PATH))
        .finish()
}
