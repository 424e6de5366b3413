//! Wire shapes and names of the protocols tfmirror speaks and reads. Nothing in here does I/O.

pub mod address;
pub mod constraints;
pub mod discovery;
pub mod hosts;
pub mod keys;
pub mod lock_file;
pub mod names;
pub mod network_mirror;
pub mod registry;
pub mod releases;
pub mod tf_config;

pub use address::{ProviderAddress, ProviderPattern};
pub use hosts::HostPattern;
pub use keys::{FileKey, ProviderKey, ReleaseKey};
pub use names::{
    Arch, FileName, NameError, Namespace, NamespacePattern, Os, Platform, ProviderType,
    UpstreamName, Version, PRODUCT_PREFIX,
};
pub use network_mirror::{Hostname, Origin};

/// A provider source address in its full form: `hashicorp/aws` is
/// `registry.terraform.io/hashicorp/aws`, as Terraform reads it. Hostnames compare
/// case-insensitively, so they are lowercased.
pub fn full_provider_address(source: &str) -> String {
    let parts: Vec<&str> = source.split('/').collect();
    match parts.as_slice() {
        [namespace, provider] => format!(
            "registry.terraform.io/{}/{}",
            namespace.to_ascii_lowercase(),
            provider.to_ascii_lowercase()
        ),
        _ => source.to_ascii_lowercase(),
    }
}
