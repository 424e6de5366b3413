//! The service discovery document, `/.well-known/terraform.json`.
//!
//! Spec: <https://developer.hashicorp.com/terraform/internals/remote-service-discovery>.

use serde::Serialize;

/// The base path of the Provider Registry Protocol; it must end with `/` because Terraform
/// resolves endpoint paths relative to it.
pub const PROVIDERS_V1_PATH: &str = "/v1/providers/";

#[derive(Debug, Serialize)]
pub struct DiscoveryDocument {
    #[serde(rename = "providers.v1")]
    pub providers_v1: String,
}

impl DiscoveryDocument {
    /// `base` is the public URL prefix (empty for URLs relative to the request).
    pub fn new(base: &str) -> Self {
        Self {
            providers_v1: format!("{base}{PROVIDERS_V1_PATH}"),
        }
    }
}
