//! `GET /lock/HOST/NAMESPACE/TYPE/VERSION?platform=OS_ARCH&…`: one provider's block of a
//! complete `.terraform.lock.hcl`, exactly as Terraform writes it (every `zh:` of the signed
//! SHA256SUMS, an `h1:` per platform asked for; absent archives are fetched and verified
//! first). Needs a token like the JSON endpoints when `[auth]` is on.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{auth::Authorized, ApiError};
use crate::{
    mirror::Mirror,
    protocol::{
        lock_file::{render_block, LockAddress, ProviderLock},
        Hostname, Namespace, Platform, ProviderType, Version,
    },
};

#[derive(Debug, Deserialize)]
pub struct LockPath {
    hostname: Hostname,
    namespace: Namespace,
    provider_type: ProviderType,
    version: Version,
}

#[tracing::instrument(name = "lock", level = "debug", skip_all, fields(provider = %path.provider_type, version = %path.version))]
pub async fn lock_block(
    _: Authorized,
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    path: web::Path<LockPath>,
) -> Result<HttpResponse, ApiError> {
    let platforms = platforms_asked(req.query_string())?;
    let provider = mirror.provider_at(&path.hostname, &path.namespace, &path.provider_type)?;
    let release = provider.release(path.version.clone());
    let hashes = mirror.lock_hashes(&release, &platforms).await?;
    let text = format!(
        "{}/{}/{}",
        path.hostname, path.namespace, path.provider_type
    );
    let address = LockAddress::parse(&text)
        .ok_or_else(|| ApiError::BadRequest(format!("{text} is not a provider address")))?;
    let lock = ProviderLock {
        version: path.version.to_string(),
        constraints: String::new(),
        hashes,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(render_block(&address, &lock)))
}

/// The `platform=` parameters, at least one; any other parameter is a mistake worth naming.
fn platforms_asked(query: &str) -> Result<Vec<Platform>, ApiError> {
    let mut platforms = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key != "platform" {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {key:?}; only platform=OS_ARCH is understood"
            )));
        }
        let platform =
            Platform::try_from(value.as_ref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        return Err(ApiError::BadRequest(
            "name at least one platform: ?platform=OS_ARCH (repeatable)".to_owned(),
        ));
    }
    Ok(platforms)
}
