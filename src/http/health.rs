//! Operations endpoints: `/healthz` (alive), `/readyz` (can serve and fetch), `/metrics`.

use actix_web::{http::header::CONTENT_TYPE, web, HttpResponse};

use super::auth::MetricsAccess;
use crate::{metrics::metrics, mirror::Mirror};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the cache accepts writes: the local disk and, with `[storage] kind = "s3"`, the
/// shared bucket (the error says which failed). Upstream reachability is reported, not
/// required: a mirror with upstream down still serves everything it has.
pub async fn readyz(mirror: web::Data<Mirror>) -> HttpResponse {
    let cache = mirror.cache_writable().await;
    let upstreams = mirror.upstream_health();
    let body = serde_json::json!({
        "status": if cache.is_ok() { "ready" } else { "not ready" },
        "cache": {
            "storage": mirror.storage(),
            "writable": cache.is_ok(),
            "error": cache.as_ref().err().map(ToString::to_string),
        },
        "upstreams": upstreams,
    });
    if cache.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The Prometheus text exposition format, version 0.0.4. With `[auth]`, a token is needed
/// unless `auth.open_metrics`.
pub async fn prometheus(_access: MetricsAccess) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(metrics().render())
}
