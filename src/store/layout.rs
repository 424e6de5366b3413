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

    mod properties {
        #![allow(clippy::unwrap_used)]
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::{network_mirror::MirrorFile, Arch, Namespace, Os, Platform};

        /// Segments biased towards the dangerous: dots, separators, encodings, NUL, unicode.
        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9._-]{0,20}",
                prop::collection::vec(
                    prop_oneof![
                        Just("..".to_owned()),
                        Just(".".to_owned()),
                        Just("/".to_owned()),
                        Just("\\".to_owned()),
                        Just("%2e".to_owned()),
                        Just("%2F".to_owned()),
                        Just("\0".to_owned()),
                        Just("é".to_owned()),
                        "[a-zA-Z0-9]{1,4}",
                    ],
                    0..8
                )
                .prop_map(|parts| parts.concat()),
                ".{0,300}",
            ]
        }

        fn stays_under(root: &Path, path: &Path) -> bool {
            path.starts_with(root)
                && path
                    .strip_prefix(root)
                    .unwrap()
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever a client or upstream sends, a name that parses maps inside the cache.
            #[test]
            fn parsed_names_never_leave_the_cache(
                upstream in segment(),
                provider in segment(),
                version in segment(),
                file in segment(),
            ) {
                let root = Path::new("/cache");
                if let (Ok(t), Ok(v), Ok(f)) = (
                    ProviderType::try_from(provider.as_str()),
                    Version::try_from(version.as_str()),
                    FileName::try_from(file.as_str()),
                ) {
                    for path in [
                        release_file(root, &upstream, &t, &v, &f),
                        archive_h1_file(root, &upstream, &t, &v, &f),
                        versions_file(root, &upstream, &t),
                    ] {
                        // Whatever the upstream name, a path that is built stays inside;
                        // a valid upstream name (config checks it) always builds one.
                        match path {
                            Ok(path) => prop_assert!(stays_under(root, &path), "{path:?}"),
                            Err(_) => prop_assert!(Namespace::try_from(upstream.as_str()).is_err()),
                        }
                    }
                }
            }

            /// Names that parse hold only their whitelisted alphabet: no separator, no dot-dot
            /// segment, no encoding, and at most the documented length.
            #[test]
            fn parsers_accept_only_plain_names(input in segment()) {
                let plain = |s: &str| !s.contains(['/', '\\', '%', '\0']) && s != ".." && s != ".";
                if let Ok(t) = ProviderType::try_from(input.as_str()) {
                    prop_assert!(plain(t.as_str()) && t.as_str().len() <= crate::protocol::names::MAX_NAME_LEN);
                }
                if let Ok(f) = FileName::try_from(input.as_str()) {
                    prop_assert!(plain(f.as_str()) && f.as_str().len() <= crate::protocol::names::MAX_FILE_NAME_LEN);
                }
                if let Ok(v) = Version::try_from(input.as_str()) {
                    prop_assert!(plain(v.as_str()));
                }
                if let (Ok(os), Ok(arch)) = (Os::try_from(input.as_str()), Arch::try_from(input.as_str())) {
                    let platform = Platform { os, arch }.to_string();
                    prop_assert!(plain(&platform));
                }
                let local = ProviderType::try_from("local").unwrap();
                if let Ok(MirrorFile::Archive { file, .. }) = MirrorFile::parse(&local, &input) {
                    prop_assert!(plain(file.as_str()));
                }
            }
        }
    }
}
