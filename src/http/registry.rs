//! Provider Registry Protocol handlers: the version list and the download document.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{
    auth::Authorized,
    documents::{json_list, signed},
    ApiError,
};
use crate::{
    mirror::{Mirror, Via},
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

#[tracing::instrument(name = "versions", level = "debug", skip_all, fields(namespace = %path.namespace, provider = %path.provider_type))]
pub async fn versions(
    _: Authorized,
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    path: web::Path<ProviderPath>,
) -> Result<HttpResponse, ApiError> {
    let via = Via::Namespace(&path.namespace);
    let lists = mirror.versions(via, &path.provider_type).await?;
    Ok(json_list(&req, &lists.registry))
}

#[tracing::instrument(name = "download", level = "debug", skip_all, fields(provider = %path.provider_type, version = %path.version))]
pub async fn download(
    access: Authorized,
    mirror: web::Data<Mirror>,
    path: web::Path<DownloadPath>,
) -> Result<HttpResponse, ApiError> {
    let platform = Platform {
        os: path.os.clone(),
        arch: path.arch.clone(),
    };
    let via = Via::Namespace(&path.namespace);
    let doc = mirror
        .download(via, &path.provider_type, &path.version, &platform)
        .await?;
    // The URLs are public base + route path; the signature covers the route path.
    let base_len = mirror.public_base().len();
    Ok(signed(&doc, &access, |url| {
        url.get(base_len..).unwrap_or(url).to_owned()
    }))
}
