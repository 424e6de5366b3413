//! Sending JSON documents, and the one place where their file URLs are signed.
//!
//! Without `[auth]` every client gets the bytes the mirror rendered once. With it, file URLs
//! carry a signature that binds them to their route path and an expiry (Terraform sends no
//! credentials when it downloads files), so the typed document is signed per request.
//!
//! Version lists are sent gzip-compressed to a client that accepts gzip (Terraform does), in
//! the form the mirror compressed once (`JsonBody`); never compressed per request.

use actix_web::{
    http::header::{self, ContentType},
    HttpRequest, HttpResponse,
};
use bytes::Bytes;
use serde::Serialize;

use super::auth::Authorized;
use crate::{
    mirror::{Document, JsonBody},
    protocol::{network_mirror::MirrorVersion, registry::Download},
};

/// A document that hands out file URLs.
pub trait FileUrls {
    fn file_urls(&mut self) -> Vec<&mut String>;
}

impl FileUrls for Download {
    fn file_urls(&mut self) -> Vec<&mut String> {
        vec![
            &mut self.download_url,
            &mut self.shasums_url,
            &mut self.shasums_signature_url,
        ]
    }
}

impl FileUrls for MirrorVersion {
    fn file_urls(&mut self) -> Vec<&mut String> {
        self.archives.values_mut().map(|a| &mut a.url).collect()
    }
}

/// JSON bytes as a `200`.
pub fn json(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

/// A version list as a `200`: gzip-compressed when the client accepts gzip and the body has
/// a compressed form; `Vary` either way, so caches keep the two apart.
pub fn json_list(req: &HttpRequest, body: &JsonBody) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .content_type(ContentType::json())
        .insert_header((header::VARY, "Accept-Encoding"));
    match &body.gzip {
        Some(gzip) if accepts_gzip(req) => response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gzip.clone()),
        _ => response.body(body.plain.clone()),
    }
}

/// Whether `Accept-Encoding` names `gzip` (or `*`) with a non-zero weight.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f32>().map_or(true, |q| q <= 0.0))
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// A document for this client: as rendered, or with every file URL signed. `route_path`
/// gives the route path a URL stands for, which is what the signature covers.
pub fn signed<T>(
    doc: &Document<T>,
    access: &Authorized,
    route_path: impl Fn(&str) -> String,
) -> HttpResponse
where
    T: Clone + Serialize + FileUrls,
{
    if !access.signs_urls() {
        return json(doc.json.clone());
    }
    let mut value = doc.value.clone();
    for url in value.file_urls() {
        let path = route_path(url);
        *url = access.sign(std::mem::take(url), &path);
    }
    HttpResponse::Ok().json(value)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn gzip_is_accepted_unless_its_weight_is_zero() {
        let accepts = |value: &str| {
            accepts_gzip(
                &TestRequest::default()
                    .insert_header((header::ACCEPT_ENCODING, value))
                    .to_http_request(),
            )
        };
        for yes in [
            "gzip",
            "GZIP",
            "br, gzip",
            "gzip;q=0.5",
            "*",
            "deflate, gzip ; q=1",
        ] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br",
            "gzip;q=0",
            "gzip; q=0.000",
            "gzipx",
            "gzip;q=x",
        ] {
            assert!(!accepts(no), "{no}");
        }
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }
}
