//! Provider Registry Protocol handlers: the version list and the download document.

use actix_web::{http::header::ContentType, web, HttpResponse};
use serde::Deserialize;

use super::{auth::Authorized, ApiError};
use crate::{
    mirror::Mirror,
    protocol::{Arch, Namespace, Os, Platform, ProviderType, Version},
};

#[derive(Debug, Deserialize)]
pub struct ProviderPath {
    namespace: Namespace,
    provider_type: ProviderType,
}

#[derive(Debug, Deserialize)]
pub struct DownloadPath {
    namespace: Namespace,
    provider_type: ProviderType,
    version: Version,
    os: Os,
    arch: Arch,
}

#[tracing::instrument(name = "versions", skip_all, fields(namespace = %path.namespace, provider = %path.provider_type))]
pub async fn versions(
    _: Authorized,
    mirror: web::Data<Mirror>,
    path: web::Path<ProviderPath>,
) -> Result<HttpResponse, ApiError> {
    let body = mirror
        .versions(&path.namespace, &path.provider_type)
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

#[tracing::instrument(name = "download", skip_all, fields(provider = %path.provider_type, version = %path.version))]
pub async fn download(
    access: Authorized,
    mirror: web::Data<Mirror>,
    path: web::Path<DownloadPath>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let platform = Platform {
        os: path.os,
        arch: path.arch,
    };
    if !access.signs_urls() {
        let body = mirror
            .download_json(
                &path.namespace,
                &path.provider_type,
                &path.version,
                &platform,
            )
            .await?;
        return Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(body));
    }
    let mut document = mirror
        .download(
            &path.namespace,
            &path.provider_type,
            &path.version,
            &platform,
        )
        .await?;
    // The URLs were built as public base + route path; the signature covers the route path.
    let base_len = mirror.public_base().len();
    for url in [
        &mut document.download_url,
        &mut document.shasums_url,
        &mut document.shasums_signature_url,
    ] {
        let path = url[base_len..].to_owned();
        *url = access.sign(std::mem::take(url), &path);
    }
    Ok(HttpResponse::Ok().json(document))
}
