//! Optional client authentication (`[auth]`).
//!
//! Terraform sends the token of a CLI config `credentials "HOST" { token = ... }` block as
//! `Authorization: Bearer` to the registry and network mirror endpoints, but not when it
//! downloads the files those documents point to. So the JSON endpoints require a token, and
//! the file URLs they hand out carry an HMAC signature over their path and an expiry time:
//! unguessable without the token, and useless after `auth.url_ttl`.

use std::{
    collections::HashSet,
    future::{ready, Ready},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::config::AuthConfig;

type HmacSha256 = Hmac<Sha256>;

const EXPIRES_PARAM: &str = "expires";
const SIGNATURE_PARAM: &str = "signature";

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.tokens_file {path}: {reason}")]
    TokensFile { path: String, reason: String },
}

/// Who may use the server. Absent from the app data when `[auth]` is not configured.
pub struct Access {
    /// SHA-256 of every accepted token: comparing digests leaks nothing useful through timing.
    token_digests: HashSet<[u8; 32]>,
    url_key: Vec<u8>,
    url_ttl: Duration,
    /// `/metrics` needs no token.
    open_metrics: bool,
}

impl Access {
    /// `None` when authentication is off.
    pub fn from_config(config: Option<&AuthConfig>) -> Result<Option<Self>, AuthSetupError> {
        let Some(config) = config else {
            return Ok(None);
        };
        let mut tokens = config.tokens.clone();
        if let Some(path) = &config.tokens_file {
            tokens.extend(read_tokens_file(path)?);
        }
        let url_key = match &config.url_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Ok(Some(Self {
            token_digests: tokens.iter().map(|t| digest(t)).collect(),
            url_key,
            url_ttl: config.url_ttl,
            open_metrics: config.open_metrics,
        }))
    }

    fn has_valid_token(&self, req: &HttpRequest) -> bool {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| self.token_digests.contains(&digest(token.trim())))
    }

    fn mac(&self, path: &str, expires: u64) -> HmacSha256 {
        // Any key length is valid for HMAC; `new_from_slice` cannot fail here.
        let mut mac = HmacSha256::new_from_slice(&self.url_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string that lets anyone fetch `path` until `url_ttl` from now.
    pub fn signed_query(&self, path: &str) -> String {
        let expires = unix_now() + self.url_ttl.as_secs();
        let signature = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("{EXPIRES_PARAM}={expires}&{SIGNATURE_PARAM}={signature}")
    }

    /// `url` (whose path is `path`) with a signature appended.
    pub fn sign(&self, url: &str, path: &str) -> String {
        format!("{url}?{}", self.signed_query(path))
    }

    fn has_valid_signature(&self, req: &HttpRequest) -> bool {
        let Ok(query) =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        else {
            return false;
        };
        let (Some(expires), Some(signature)) = (
            query.get(EXPIRES_PARAM).and_then(|e| e.parse::<u64>().ok()),
            query.get(SIGNATURE_PARAM).and_then(|s| hex::decode(s).ok()),
        ) else {
            return false;
        };
        expires >= unix_now()
            && self
                .mac(req.path(), expires)
                .verify_slice(&signature)
                .is_ok()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn read_tokens_file(path: &Path) -> Result<Vec<String>, AuthSetupError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthSetupError::TokensFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

fn access(req: &HttpRequest) -> Option<&Access> {
    req.app_data::<web::Data<Access>>().map(|a| a.get_ref())
}

/// Extractor for the JSON endpoints: a valid bearer token, when authentication is on.
pub struct Authorized(Option<web::Data<Access>>);

impl Authorized {
    /// Whether URLs handed out need signing (authentication is on).
    pub fn signs_urls(&self) -> bool {
        self.0.is_some()
    }

    /// Signs a file URL for this client, when authentication is on.
    pub fn sign(&self, url: String, path: &str) -> String {
        match &self.0 {
            Some(access) => access.sign(&url, path),
            None => url,
        }
    }
}

impl Authorized {
    pub fn check(req: &HttpRequest) -> Result<Self, ApiError> {
        let data = req.app_data::<web::Data<Access>>().cloned();
        match &data {
            Some(access) if !access.has_valid_token(req) => Err(ApiError::Unauthorized(
                "a valid token is required: add a credentials block for this host to the Terraform CLI config".to_owned(),
            )),
            _ => Ok(Self(data)),
        }
    }
}

/// Extractor for `/metrics`: a valid bearer token, unless `auth.open_metrics` (or
/// authentication is off).
pub struct MetricsAccess;

impl FromRequest for MetricsAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match access(req) {
            Some(access) if access.open_metrics => Ok(Self),
            _ => Authorized::check(req).map(|_| Self),
        })
    }
}

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::check(req))
    }
}

/// Extractor for file downloads: a valid signed URL or bearer token, when authentication is on.
pub struct FileAccess;

impl FileAccess {
    pub fn check(req: &HttpRequest) -> Result<Self, ApiError> {
        match access(req) {
            Some(access) if !access.has_valid_signature(req) && !access.has_valid_token(req) => {
                Err(ApiError::Unauthorized(
                    "this file URL is not signed, its signature is wrong, or it has expired; ask the registry for a fresh one"
                        .to_owned(),
                ))
            }
            _ => Ok(Self),
        }
    }
}

impl FromRequest for FileAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::check(req))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use actix_web::test::TestRequest;

    use super::*;

    fn access() -> Access {
        Access::from_config(Some(&AuthConfig {
            tokens: vec!["s3cret".to_owned()],
            tokens_file: None,
            url_secret: Some("k".to_owned()),
            url_ttl: Duration::from_secs(60),
            open_metrics: false,
        }))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn tokens_are_checked_exactly() {
        let access = access();
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request()
        };
        assert!(access.has_valid_token(&with("Bearer s3cret")));
        assert!(!access.has_valid_token(&with("Bearer s3cre")));
        assert!(!access.has_valid_token(&with("Basic s3cret")));
        assert!(!access.has_valid_token(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn signatures_bind_path_and_expiry() {
        let access = access();
        let path = "/v1/providers/a/b/1.0.0/files/x.zip";
        let query = access.signed_query(path);
        let request = |uri: String| TestRequest::with_uri(&uri).to_http_request();
        assert!(access.has_valid_signature(&request(format!("{path}?{query}"))));
        assert!(!access.has_valid_signature(&request(format!(
            "/v1/providers/a/b/1.0.0/files/y.zip?{query}"
        ))));
        let later = query.replace("expires=", "expires=9");
        assert!(!access.has_valid_signature(&request(format!("{path}?{later}"))));
        let expired = format!(
            "expires=1&signature={}",
            hex::encode(access.mac(path, 1).finalize().into_bytes())
        );
        assert!(!access.has_valid_signature(&request(format!("{path}?{expired}"))));
        assert!(!access.has_valid_signature(&request(path.to_owned())));
    }
}
