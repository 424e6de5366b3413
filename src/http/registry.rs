//! Provider Registry Protocol handlers: the version list and the download document.

use actix_web::{http::header::ContentType, web, HttpResponse};
use serde::Deserialize;

use super::ApiError;
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
    mirror: web::Data<Mirror>,
    path: web::Path<DownloadPath>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let platform = Platform {
        os: path.os,
        arch: path.arch,
    };
    let document = mirror
        .download(
            &path.namespace,
            &path.provider_type,
            &path.version,
            &platform,
        )
        .await?;
    Ok(HttpResponse::Ok().json(document))
}
