//! The HTTP front end: routes, shared state and middleware. Handlers are thin: typed path
//! extractors (invalid segments never reach them) → one `Mirror` call → a response.

pub mod auth;
mod cluster;
mod discovery;
mod documents;
pub mod error;
mod files;
mod health;
mod lock;
mod network_mirror;
mod registry;
mod status_page;

use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    guard,
    middleware::Next,
    web, HttpRequest, HttpResponse, Resource, Route,
};

pub use error::ApiError;

use crate::{
    metrics::{http_version_label, metrics, with_cache_outcome, CacheOutcome, RouteSeries},
    mirror::Mirror,
};

/// The status page's snapshot cache, one for all workers.
pub fn status_cache() -> web::Data<crate::ops::StatusCache> {
    web::Data::new(crate::ops::StatusCache::default())
}

/// Registers every route on an actix `App`; `access` turns client authentication on;
/// `status` is shared by every worker (`status_cache`).
pub fn configure(
    mirror: Mirror,
    access: Option<web::Data<auth::Access>>,
    status: web::Data<crate::ops::StatusCache>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if let Some(access) = access {
            cfg.app_data(access);
        }
        cfg.app_data(status);
        cfg.app_data(web::Data::new(mirror))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|err, _req| ApiError::BadRequest(err.to_string()).into()),
            )
            .service(get(
                "/.well-known/terraform.json",
                web::to(discovery::document),
            ))
            .service(get("/", web::to(status_page::page)))
            .service(get("/healthz", web::to(health::healthz)))
            .service(get("/readyz", web::to(health::readyz)))
            .service(get("/metrics", web::to(health::prometheus)))
            .service(get(
                "/v1/providers/{namespace}/{provider_type}/versions",
                web::to(registry::versions),
            ))
            .service(get(
                "/v1/providers/{namespace}/{provider_type}/{version}/download/{os}/{arch}",
                web::to(registry::download),
            ))
            .service(get_or_head(
                "/v1/providers/{namespace}/{provider_type}/{version}/files/{file}",
                web::to(files::release_file),
            ))
            .service(get(
                "/lock/{hostname}/{namespace}/{provider_type}/{version}",
                web::to(lock::lock_block),
            ))
            .service(get("/mirror", web::to(network_mirror::add_trailing_slash)))
            .service(get(
                "/_cluster/live/{location:.*}",
                web::to(cluster::live_archive),
            ))
            .service(get_or_head(
                "/mirror/{hostname}/{namespace}/{provider_type}/{file}",
                web::to(network_mirror::mirror_file),
            ))
            .default_service(web::to(not_found));
    }
}

/// `GET` on `pattern`. Other methods fall through to `not_found`, as with
/// `ServiceConfig::route`.
fn get(pattern: &'static str, handler: Route) -> Resource {
    resource(pattern, guard::Get(), handler)
}

/// `GET` and `HEAD` on `pattern`.
fn get_or_head(pattern: &'static str, handler: Route) -> Resource {
    resource(pattern, guard::Any(guard::Get()).or(guard::Head()), handler)
}

fn resource(
    pattern: &'static str,
    methods: impl guard::Guard + 'static,
    handler: Route,
) -> Resource {
    web::resource(pattern)
        .guard(methods)
        // The request metrics find the route's pattern and series in the answered request,
        // instead of matching its path against every pattern again.
        .app_data(RouteSeries::new(pattern))
        .route(handler)
}

/// Unknown routes: 400 for paths that try to climb or smuggle separators, 404 otherwise.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw = req.uri().path();
    let lowered = raw.to_ascii_lowercase();
    let hostile = raw.split('/').any(|s| s == ".." || s == ".")
        || ["%2e", "%2f", "%5c", "%00", "\\"]
            .iter()
            .any(|p| lowered.contains(p));
    if hostile {
        return Err(ApiError::BadRequest("malformed request path".to_owned()));
    }
    Err(ApiError::NotFound(format!("no such endpoint: {raw}")))
}

/// Longest request target (path and query) accepted. Real ones are under 300 bytes; the
/// signed query adds about 100.
pub const MAX_REQUEST_TARGET_BYTES: usize = 2048;

/// Most header bytes (names and values) accepted. Terraform sends well under 1 KiB; actix
/// itself stops reading at 128 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses over-long request targets and header sets before routing: nothing downstream ever
/// sees one. The refusal is an answer, not an error, so `log_request` (outside this) logs and
/// counts it like any other.
pub async fn limit_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match request_too_large(&req) {
        Some(refusal) => Ok(req.error_response(refusal).map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// Why a request's target or headers are over the limits, if they are.
fn request_too_large(req: &ServiceRequest) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_REQUEST_TARGET_BYTES {
        return Some(ApiError::UriTooLong(format!(
            "request target is {target} bytes; the limit is {MAX_REQUEST_TARGET_BYTES}"
        )));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (headers > MAX_HEADER_BYTES).then(|| {
        ApiError::HeadersTooLarge(format!(
            "request headers are {headers} bytes; the limit is {MAX_HEADER_BYTES}"
        ))
    })
}

/// One log line per request (method, path, HTTP version, status, bytes, duration, cache
/// outcome), and the request metrics. It runs for every request with the log on as shipped,
/// so it copies nothing from the request it can borrow from the response afterwards.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let (response, cache) = with_cache_outcome(next.call(req)).await;
    let response = response?;
    let elapsed = started.elapsed();
    let status = response.status();
    let bytes = match response.response().body().size() {
        actix_web::body::BodySize::Sized(n) => n,
        _ => 0,
    };
    let request = response.request();
    // Route patterns, not paths, and known methods, not whatever token a client sent, keep
    // the label set bounded.
    let method = request.method();
    let version = http_version_label(request.version());
    // Requests no route answered share one series: hostile paths cannot create new ones.
    static UNMATCHED: RouteSeries = RouteSeries::new("unmatched");
    let route = request.app_data::<RouteSeries>().unwrap_or(&UNMATCHED);
    let m = metrics();
    m.http_requests
        .with_label_values(&[route.pattern(), method_label(method), status.as_str()])
        .inc();
    route.duration().observe(elapsed.as_secs_f64());
    route.response_bytes().inc_by(bytes);
    m.http_version(request.version()).inc();
    crate::telemetry::RequestLine {
        method: method.as_str(),
        path: request.path(),
        version,
        status: status.as_u16(),
        bytes,
        elapsed,
        cache: cache.map_or("-", CacheOutcome::as_str),
    }
    .log();
    Ok(response)
}

/// The `method` label: the two methods Terraform uses, and one bucket for every other.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}
