//! Typed keys to storage locations: the only place that turns names into places in a store,
//! and the only place that reads a place back as a key.
//!
//! ```text
//! releases/<upstream>/[<namespace>/]terraform-provider-<type>/versions.json             version list (mutable)
//! releases/<upstream>/[<namespace>/]terraform-provider-<type>/signing-keys.json         keys its versions were signed with
//! releases/<upstream>/[<namespace>/]terraform-provider-<type>/<version>/release.json    verified release record
//! releases/<upstream>/[<namespace>/]terraform-provider-<type>/<version>/<file>          SHA256SUMS, .sig, manifest, zips
//! releases/<upstream>/[<namespace>/]terraform-provider-<type>/<version>/<zip>.h1        h1: of a verified zip
//! releases/<upstream>/[<namespace>/]terraform-provider-<type>/<version>/<zip>.sha256    SHA-256 the zip was verified against
//! first-seen/<upstream>/[<namespace>/]terraform-provider-<type>/<version>               when this mirror first saw a version (written once)
//! leases/<upstream>/[<namespace>/]terraform-provider-<type>/<version>/<zip>              which replica is downloading an archive (bucket only)
//! cluster/secret                                                                          what replicas authenticate to each other with (bucket only)
//! ```
//! The namespace level exists only for upstreams with namespaces (registries); a releases
//! site's providers sit right under the upstream, as they always have. A directory under an
//! upstream is a provider when its name starts with `terraform-provider-`, else a namespace.
//!
//! A [`Location`] is relative and `/`-separated, so that a disk (joined to its root) and an
//! object store (prefixed) can both use it as it is. Every segment is a validated name (see
//! `protocol::names`), and as a second line of defence each one is checked again to be a single
//! plain path component, so no key can leave the store.

use std::{
    fmt,
    path::{Component, Path},
};

use crate::protocol::{
    FileKey, FileName, Namespace, ProviderKey, ProviderType, ReleaseKey, UpstreamName, Version,
    PRODUCT_PREFIX,
};

const RELEASES_DIR: &str = "releases";
/// Apart from `releases/`, so that nothing reading releases mistakes these for release files.
const FIRST_SEEN_DIR: &str = "first-seen";
/// Apart from `releases/` too, and never copied to a disk: replicas coordinate through them.
const LEASES_DIR: &str = "leases";
const CLUSTER_DIR: &str = "cluster";
const CLUSTER_SECRET_FILE: &str = "secret";
const VERSIONS_FILE: &str = "versions.json";
const RELEASE_RECORD_FILE: &str = "release.json";
const SIGNING_KEYS_FILE: &str = "signing-keys.json";
const H1_SUFFIX: &str = ".h1";
const DIGEST_SUFFIX: &str = ".sha256";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache key segment {0:?} is not a plain file name")]
pub struct LayoutError(String);

/// What a store holds, by key.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// A provider's version list, as served (the one mutable document).
    VersionList(&'a ProviderKey),
    /// The keys a provider's cached versions were signed with, to notice a change.
    SigningKeys(&'a ProviderKey),
    /// The record of a verified release, written after its files.
    ReleaseRecord(&'a ReleaseKey),
    /// A file of a release, as upstream published it.
    File(&'a FileKey),
    /// The `h1:` hash computed from a verified archive.
    H1(&'a FileKey),
    /// The SHA-256 an archive was verified with, naming the exact file (its entity tag).
    Digest(&'a FileKey),
    /// When this mirror first saw a version upstream (quarantine); created once, never moved.
    FirstSeen(&'a ReleaseKey),
    /// Which replica is downloading an archive from upstream, until when.
    Lease(&'a FileKey),
    /// The secret replicas on one bucket authenticate to each other with.
    ClusterSecret,
}

/// A place in a store: `/`-separated plain segments, relative to the store's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location(String);

impl Location {
    fn from_segments(segments: &[&str]) -> Result<Self, LayoutError> {
        let mut location = String::new();
        for segment in segments {
            check_segment(segment)?;
            if !location.is_empty() {
                location.push('/');
            }
            location.push_str(segment);
        }
        Ok(Self(location))
    }

    /// One level down.
    pub fn join(&self, segment: &str) -> Result<Self, LayoutError> {
        check_segment(segment)?;
        Ok(Self(format!("{}/{segment}", self.0)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Reads back a location a backend listed, refusing anything that is not plain segments.
    pub fn parse(text: &str) -> Option<Self> {
        let segments: Vec<&str> = text.split('/').collect();
        Self::from_segments(&segments).ok()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_segment(segment: &str) -> Result<(), LayoutError> {
    let mut components = Path::new(segment).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(c)), None) if c == segment && !segment.contains('/') => Ok(()),
        _ => Err(LayoutError(segment.to_owned())),
    }
}

/// Where every upstream's providers live.
pub fn releases_root() -> Location {
    Location(RELEASES_DIR.to_owned())
}

/// Where the first sightings of every upstream's versions live.
pub fn first_seen_root() -> Location {
    Location(FIRST_SEEN_DIR.to_owned())
}

/// Where the first sightings of one provider's versions live.
pub fn first_seen_dir(provider: &ProviderKey) -> Result<Location, LayoutError> {
    let product = provider.provider.product_name();
    let mut segments = vec![FIRST_SEEN_DIR, provider.upstream.as_str()];
    if let Some(ns) = &provider.namespace {
        segments.push(ns.as_str());
    }
    segments.push(&product);
    Location::from_segments(&segments)
}

/// Where the download leases of one release's archives live.
fn lease_dir(release: &ReleaseKey) -> Result<Location, LayoutError> {
    let provider = &release.provider;
    let product = provider.provider.product_name();
    let mut segments = vec![LEASES_DIR, provider.upstream.as_str()];
    if let Some(ns) = &provider.namespace {
        segments.push(ns.as_str());
    }
    segments.push(&product);
    segments.push(release.version.as_str());
    Location::from_segments(&segments)
}

/// Where one upstream's providers live.
pub fn upstream_dir(upstream: &UpstreamName) -> Result<Location, LayoutError> {
    Location::from_segments(&[RELEASES_DIR, upstream.as_str()])
}

/// Where one provider's files live.
pub fn provider_dir(provider: &ProviderKey) -> Result<Location, LayoutError> {
    let product = provider.provider.product_name();
    match &provider.namespace {
        // A namespace named like a product would be read back as a provider.
        Some(ns) if ns.as_str().starts_with(PRODUCT_PREFIX) => {
            Err(LayoutError(ns.as_str().to_owned()))
        }
        Some(ns) => Location::from_segments(&[
            RELEASES_DIR,
            provider.upstream.as_str(),
            ns.as_str(),
            &product,
        ]),
        None => Location::from_segments(&[RELEASES_DIR, provider.upstream.as_str(), &product]),
    }
}

/// Where one release's files live.
pub fn release_dir(release: &ReleaseKey) -> Result<Location, LayoutError> {
    provider_dir(&release.provider)?.join(release.version.as_str())
}

/// Where an item lives.
pub fn location(item: Item<'_>) -> Result<Location, LayoutError> {
    match item {
        Item::VersionList(provider) => provider_dir(provider)?.join(VERSIONS_FILE),
        Item::SigningKeys(provider) => provider_dir(provider)?.join(SIGNING_KEYS_FILE),
        Item::ReleaseRecord(release) => release_dir(release)?.join(RELEASE_RECORD_FILE),
        Item::File(file) => release_dir(&file.release)?.join(file.file.as_str()),
        Item::H1(file) => release_dir(&file.release)?.join(&format!("{}{H1_SUFFIX}", file.file)),
        Item::Digest(file) => {
            release_dir(&file.release)?.join(&format!("{}{DIGEST_SUFFIX}", file.file))
        }
        Item::FirstSeen(release) => {
            first_seen_dir(&release.provider)?.join(release.version.as_str())
        }
        Item::Lease(file) => lease_dir(&file.release)?.join(file.file.as_str()),
        Item::ClusterSecret => Location::from_segments(&[CLUSTER_DIR, CLUSTER_SECRET_FILE]),
    }
}

/// How a location is shared between replicas on one bucket (`store::tiered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Written once and never changed: any tier's copy is as good as the bucket's.
    Immutable,
    /// Rewritten now and then (version lists, signing keys seen): the bucket's is the truth.
    Mutable,
    /// About one host's copy of a file (a digest record names the local file's entity tag):
    /// never shared.
    PerHost,
    /// How replicas coordinate (download leases, their shared secret): only in the bucket,
    /// never copied to a disk, where a stale copy would mislead.
    BucketOnly,
}

/// How a location is shared between replicas.
pub fn sharing(at: &Location) -> Sharing {
    let name = at.name();
    if matches!(at.segments().next(), Some(LEASES_DIR | CLUSTER_DIR)) {
        Sharing::BucketOnly
    } else if name.ends_with(DIGEST_SUFFIX) {
        Sharing::PerHost
    } else if name == VERSIONS_FILE || name == SIGNING_KEYS_FILE {
        Sharing::Mutable
    } else {
        Sharing::Immutable
    }
}

/// What a name inside a release directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseEntry {
    Record,
    File(FileName),
    H1(FileName),
    Digest(FileName),
}

/// Reads a name listed in a release directory.
pub fn release_entry(name: &str) -> Option<ReleaseEntry> {
    if name == RELEASE_RECORD_FILE {
        return Some(ReleaseEntry::Record);
    }
    if let Some(archive) = name.strip_suffix(H1_SUFFIX) {
        return FileName::try_from(archive).ok().map(ReleaseEntry::H1);
    }
    if let Some(archive) = name.strip_suffix(DIGEST_SUFFIX) {
        return FileName::try_from(archive).ok().map(ReleaseEntry::Digest);
    }
    FileName::try_from(name).ok().map(ReleaseEntry::File)
}

/// What a directory directly under an upstream's holds.
pub enum UpstreamEntry {
    Provider(ProviderType),
    Namespace(Namespace),
}

/// Reads a directory name listed under an upstream.
pub fn upstream_entry(name: &str) -> Option<UpstreamEntry> {
    if name.starts_with(PRODUCT_PREFIX) {
        return ProviderType::from_product_name(name).map(UpstreamEntry::Provider);
    }
    Namespace::try_from(name).ok().map(UpstreamEntry::Namespace)
}

/// Reads a release file's location back as its key, if it has the layout's shape.
pub fn file_key(at: &Location) -> Option<FileKey> {
    let segments: Vec<&str> = at.segments().collect();
    let (upstream, namespace, product, version, file) = match segments.as_slice() {
        [RELEASES_DIR, upstream, product, version, file] => {
            (upstream, None, product, version, file)
        }
        [RELEASES_DIR, upstream, namespace, product, version, file] => {
            (upstream, Some(namespace), product, version, file)
        }
        _ => return None,
    };
    let namespace = match namespace {
        Some(ns) if ns.starts_with(PRODUCT_PREFIX) => return None,
        Some(ns) => Some(Namespace::try_from(*ns).ok()?),
        None => None,
    };
    let key = ProviderKey::new(
        UpstreamName::try_from(*upstream).ok()?,
        namespace,
        ProviderType::from_product_name(product)?,
    )
    .release(Version::try_from(*version).ok()?)
    .file(FileName::try_from(*file).ok()?);
    // Only what `location` would build reads back.
    (location(Item::File(&key)).ok()? == *at).then_some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn local(upstream: &str) -> ProviderKey {
        ProviderKey::new(
            UpstreamName::try_from(upstream).unwrap(),
            None,
            ProviderType::try_from("local").unwrap(),
        )
    }

    #[test]
    fn only_digest_records_are_per_host_and_only_lists_are_mutable() {
        let provider = local("hashicorp");
        let release = provider.release(Version::try_from("2.1.0").unwrap());
        let file = release
            .file(FileName::try_from("terraform-provider-local_2.1.0_linux_amd64.zip").unwrap());
        let of = |item| sharing(&location(item).unwrap());
        assert_eq!(of(Item::Digest(&file)), Sharing::PerHost);
        assert_eq!(of(Item::Lease(&file)), Sharing::BucketOnly);
        assert_eq!(of(Item::ClusterSecret), Sharing::BucketOnly);
        assert_eq!(of(Item::VersionList(&provider)), Sharing::Mutable);
        assert_eq!(of(Item::SigningKeys(&provider)), Sharing::Mutable);
        for item in [
            Item::File(&file),
            Item::H1(&file),
            Item::ReleaseRecord(&release),
        ] {
            assert_eq!(of(item), Sharing::Immutable, "{item:?}");
        }
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        let release = local("hashicorp").release(Version::try_from("2.1.0").unwrap());
        let file =
            release.file(FileName::try_from("terraform-provider-local_2.1.0_SHA256SUMS").unwrap());
        assert_eq!(
            location(Item::File(&file)).unwrap().as_str(),
            "releases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_SHA256SUMS"
        );
        assert_eq!(
            location(Item::VersionList(&local("hashicorp")))
                .unwrap()
                .as_str(),
            "releases/hashicorp/terraform-provider-local/versions.json"
        );
        assert_eq!(
            location(Item::H1(&file)).unwrap().name(),
            "terraform-provider-local_2.1.0_SHA256SUMS.h1"
        );
        let namespaced = ProviderKey::new(
            UpstreamName::try_from("registry").unwrap(),
            Some(Namespace::try_from("integrations").unwrap()),
            ProviderType::try_from("github").unwrap(),
        );
        assert_eq!(
            provider_dir(&namespaced).unwrap().as_str(),
            "releases/registry/integrations/terraform-provider-github"
        );
        assert_eq!(
            location(Item::FirstSeen(&release)).unwrap().as_str(),
            "first-seen/hashicorp/terraform-provider-local/2.1.0"
        );
        let github = namespaced.release(Version::try_from("6.2.0").unwrap());
        assert_eq!(
            location(Item::FirstSeen(&github)).unwrap().as_str(),
            "first-seen/registry/integrations/terraform-provider-github/6.2.0"
        );
        // Never under releases/, where it would be read as a release's file.
        let at = location(Item::FirstSeen(&release)).unwrap();
        assert_eq!(file_key(&at), None);
        let zip = release
            .file(FileName::try_from("terraform-provider-local_2.1.0_linux_amd64.zip").unwrap());
        let at = location(Item::Lease(&zip)).unwrap();
        assert_eq!(
            at.as_str(),
            "leases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_linux_amd64.zip"
        );
        assert_eq!(file_key(&at), None);
        assert_eq!(
            location(Item::ClusterSecret).unwrap().as_str(),
            "cluster/secret"
        );
    }

    #[test]
    fn locations_read_back_as_their_keys() {
        let release = local("hashicorp").release(Version::try_from("2.1.0").unwrap());
        let file = release
            .file(FileName::try_from("terraform-provider-local_2.1.0_linux_amd64.zip").unwrap());
        let at = location(Item::File(&file)).unwrap();
        assert_eq!(file_key(&at), Some(file));
        for bad in [
            "releases/hashicorp/local/2.1.0/x.zip",
            "releases/hashicorp/terraform-provider-local/2.1/x.zip",
            "other/hashicorp/terraform-provider-local/2.1.0/x.zip",
            "releases/hashicorp/terraform-provider-local/2.1.0/.x.zip.tmp-0",
        ] {
            assert_eq!(
                Location::parse(bad).and_then(|l| file_key(&l)),
                None,
                "{bad}"
            );
        }
        assert_eq!(release_entry("release.json"), Some(ReleaseEntry::Record));
        assert!(
            matches!(release_entry("a.zip.h1"), Some(ReleaseEntry::H1(f)) if f.as_str() == "a.zip")
        );
        assert!(
            matches!(release_entry("a.zip.sha256"), Some(ReleaseEntry::Digest(f)) if f.as_str() == "a.zip")
        );
    }

    #[test]
    fn segments_that_are_not_plain_names_are_refused() {
        for bad in ["..", ".", "a/b", "/abs", ""] {
            assert!(
                Location::from_segments(&["releases", bad]).is_err(),
                "{bad:?}"
            );
            assert!(releases_root().join(bad).is_err(), "{bad:?}");
        }
        let product_like = ProviderKey::new(
            UpstreamName::try_from("registry").unwrap(),
            Some(Namespace::try_from("terraform-provider-x").unwrap()),
            ProviderType::try_from("github").unwrap(),
        );
        assert!(provider_dir(&product_like).is_err());
    }

    mod properties {
        #![allow(clippy::unwrap_used)]
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::{network_mirror::MirrorFile, Arch, Os, Platform};

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

        fn stays_under(root: &Path, location: &Location) -> bool {
            let path = root.join(location.as_str());
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
                namespace in segment(),
                provider in segment(),
                version in segment(),
                file in segment(),
            ) {
                let root = Path::new("/cache");
                if let (Ok(u), Ok(t), Ok(v), Ok(f)) = (
                    UpstreamName::try_from(upstream.as_str()),
                    ProviderType::try_from(provider.as_str()),
                    Version::try_from(version.as_str()),
                    FileName::try_from(file.as_str()),
                ) {
                    let namespaces = [None, Namespace::try_from(namespace.as_str()).ok()];
                    for ns in namespaces {
                        let provider = ProviderKey::new(u.clone(), ns, t.clone());
                        let file = provider.release(v.clone()).file(f.clone());
                        for item in [Item::File(&file), Item::H1(&file), Item::Digest(&file), Item::Lease(&file), Item::VersionList(&provider)] {
                            if let Ok(location) = location(item) {
                                prop_assert!(stays_under(root, &location), "{location}");
                            }
                        }
                        if let Ok(location) = location(Item::File(&file)) {
                            prop_assert_eq!(file_key(&location), Some(file));
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
                // Checking a name without keeping it accepts exactly what parsing it does.
                prop_assert_eq!(FileName::check(&input).is_ok(), FileName::try_from(input.as_str()).is_ok());
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
                if let Some(location) = Location::parse(&input) {
                    prop_assert!(stays_under(Path::new("/cache"), &location));
                }
            }
        }
    }
}
