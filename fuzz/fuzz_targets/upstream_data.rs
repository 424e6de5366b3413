//! Everything tfmirror parses from an upstream, fed arbitrary bytes: SHA256SUMS, the
//! releases `index.json` documents, registry discovery, version lists and download documents,
//! manifests, version strings, file and mirror names, host patterns, store locations, and
//! detached signatures (binary and armored). Any panic is a bug; errors are the expected answer.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tfmirror::{
    protocol::{
        network_mirror::MirrorFile,
        registry::{UpstreamDiscovery, UpstreamDownload, UpstreamVersionList},
        releases::{Manifest, ProductIndex, ReleaseVersion},
        FileName, HostPattern, ProviderType, Version,
    },
    store::{layout, Location},
    verify::{Checksums, Keyring},
};

/// HashiCorp's key, parsed once rather than per input.
fn hashicorp() -> Option<&'static Keyring> {
    static KEYRING: OnceLock<Option<Keyring>> = OnceLock::new();
    KEYRING.get_or_init(|| Keyring::hashicorp().ok()).as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sums) = Checksums::parse(data) {
        let _ = sums.digest_of("terraform-provider-null_3.1.0_linux_amd64.zip");
    }
    if let Ok(index) = serde_json::from_slice::<ProductIndex>(data) {
        let _ = index.valid_versions();
    }
    if let Ok(release) = serde_json::from_slice::<ReleaseVersion>(data) {
        let _ = release.valid_builds();
        let _ = release.signature_names();
    }
    let _ = serde_json::from_slice::<Manifest>(data);
    if let Ok(list) = serde_json::from_slice::<UpstreamVersionList>(data) {
        let _ = list.valid_entries();
    }
    let _ = serde_json::from_slice::<UpstreamDownload>(data);
    let _ = serde_json::from_slice::<UpstreamDiscovery>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(version) = Version::try_from(text) {
            let _ = version.semver();
        }
        let _ = FileName::try_from(text);
        let _ = HostPattern::try_from(text);
        if let Some(location) = Location::parse(text) {
            let _ = layout::file_key(&location);
        }
        if let Ok(local) = ProviderType::try_from("null") {
            let _ = MirrorFile::parse(&local, text);
        }
    }
    // A signature that fails to parse is the common case; one that parses is checked
    // against HashiCorp's key over a fixed message.
    if let Some(keyring) = hashicorp() {
        let _ = keyring.verify(b"fuzz", data);
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = keyring.verify_armored(b"fuzz", text);
        }
    }
});
