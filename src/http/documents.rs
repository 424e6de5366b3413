//! Sending JSON documents, and the one place where their file URLs are signed.
//!
//! Without `[auth]` every client gets the bytes the mirror rendered once. With it, file URLs
//! carry a signature that binds them to their route path and an expiry (Terraform sends no
//! credentials when it downloads files), so the typed document is signed per request.

use actix_web::{http::header::ContentType, HttpResponse};
use bytes::Bytes;
use serde::Serialize;

use super::auth::Authorized;
use crate::{
    mirror::Document,
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
