//! Cache keys to paths: the only place that turns names into file system paths.
//!
//! ```text
//! <dir>/releases/<upstream>/terraform-provider-<type>/versions.json        version list (mutable)
//! <dir>/releases/<upstream>/terraform-provider-<type>/<version>/release.json  verified release record
//! <dir>/releases/<upstream>/terraform-provider-<type>/<version>/<file>        SHA256SUMS, .sig, manifest, zips
//! <dir>/releases/<upstream>/terraform-provider-<type>/<version>/<zip>.h1      h1: of a verified zip
//! ```
//! Every segment is a validated name (see `protocol::names`); as a second line of defence each
//! one is checked again to be a single normal path component, so no key can leave the root.

use std::path::{Component, Path, PathBuf};

use crate::protocol::{releases::product_name, FileName, ProviderType, Version};

const RELEASES_DIR: &str = "releases";
const VERSIONS_FILE: &str = "versions.json";
const RELEASE_RECORD_FILE: &str = "release.json";

/// Name of temp files: `.<final name>.tmp-<random>`, in the final file's directory.
pub const TEMP_MARKER: &str = ".tmp-";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache key segment {0:?} is not a plain file name")]
pub struct LayoutError(String);

fn push_segment(path: &mut PathBuf, segment: &str) -> Result<(), LayoutError> {
    let mut components = Path::new(segment).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(c)), None) if c == segment => {
            path.push(segment);
            Ok(())
        }
        _ => Err(LayoutError(segment.to_owned())),
    }
}

fn join(root: &Path, segments: &[&str]) -> Result<PathBuf, LayoutError> {
    let mut path = root.to_path_buf();
    for segment in segments {
        push_segment(&mut path, segment)?;
    }
    Ok(path)
}

/// Where one upstream's providers live.
pub fn upstream_dir(root: &Path, upstream: &str) -> Result<PathBuf, LayoutError> {
    join(root, &[RELEASES_DIR, upstream])
}

/// Where all upstreams' providers live.
pub fn releases_dir(root: &Path) -> PathBuf {
    root.join(RELEASES_DIR)
}

/// Where one upstream provider's files live.
pub fn provider_dir(
    root: &Path,
    upstream: &str,
    provider: &ProviderType,
) -> Result<PathBuf, LayoutError> {
    join(root, &[RELEASES_DIR, upstream, &product_name(provider)])
}

pub fn versions_file(
    root: &Path,
    upstream: &str,
    provider: &ProviderType,
) -> Result<PathBuf, LayoutError> {
    let mut path = provider_dir(root, upstream, provider)?;
    push_segment(&mut path, VERSIONS_FILE)?;
    Ok(path)
}

pub fn release_dir(
    root: &Path,
    upstream: &str,
    provider: &ProviderType,
    version: &Version,
) -> Result<PathBuf, LayoutError> {
    let mut path = provider_dir(root, upstream, provider)?;
    push_segment(&mut path, version.as_str())?;
    Ok(path)
}

pub fn release_record(
    root: &Path,
    upstream: &str,
    provider: &ProviderType,
    version: &Version,
) -> Result<PathBuf, LayoutError> {
    let mut path = release_dir(root, upstream, provider, version)?;
    push_segment(&mut path, RELEASE_RECORD_FILE)?;
    Ok(path)
}

pub fn release_file(
    root: &Path,
    upstream: &str,
    provider: &ProviderType,
    version: &Version,
    file: &FileName,
) -> Result<PathBuf, LayoutError> {
    let mut path = release_dir(root, upstream, provider, version)?;
    push_segment(&mut path, file.as_str())?;
    Ok(path)
}

/// The `h1:` hash computed from a verified archive, kept beside it.
pub fn archive_h1_file(
    root: &Path,
    upstream: &str,
    provider: &ProviderType,
    version: &Version,
    archive: &FileName,
) -> Result<PathBuf, LayoutError> {
    let mut path = release_dir(root, upstream, provider, version)?;
    push_segment(&mut path, &format!("{archive}.h1"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let root = Path::new("/c");
        let t = ProviderType::try_from("local").unwrap();
        let v = Version::try_from("2.1.0").unwrap();
        let f = FileName::try_from("terraform-provider-local_2.1.0_SHA256SUMS").unwrap();
        assert_eq!(
            release_file(root, "hashicorp", &t, &v, &f).unwrap(),
            Path::new("/c/releases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_SHA256SUMS")
        );
        assert_eq!(
            versions_file(root, "hashicorp", &t).unwrap(),
            Path::new("/c/releases/hashicorp/terraform-provider-local/versions.json")
        );
    }

    #[test]
    fn segments_that_are_not_plain_names_are_refused() {
        let t = ProviderType::try_from("local").unwrap();
        for bad in ["..", ".", "a/b", "/abs", ""] {
            assert!(provider_dir(Path::new("/c"), bad, &t).is_err(), "{bad:?}");
        }
    }
}
