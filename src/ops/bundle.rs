//! Moving a verified cache into an air-gapped site: `tfmirror export` writes a tar of whole
//! releases; `tfmirror import` unpacks one into a staging store beside the cache, verifies
//! every signature and digest there as strictly as a fetch from upstream would, and only then
//! copies the files into the cache through its normal verified writes. A bundle that fails
//! anywhere is refused whole.
//!
//! Bundles carry what upstream published plus our release records, never derived data: the
//! `h1:` hashes are computed again after import, and version lists are rebuilt from what was
//! imported, so a bundle cannot plant a hash that Terraform would write into lock files.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Component, Path},
};

use futures_util::StreamExt;

use super::{audit, AuditMode, Damage, OpsError};
use crate::{
    config::Config,
    mirror::Mirror,
    protocol::{
        registry::{PlatformEntry, VersionEntry, VersionList},
        FileKey, ProviderKey, ReleaseKey, Version,
    },
    store::{chunks, layout, Archive, Item, Location, ReleaseEntry, Store},
};

/// Which releases to export.
#[derive(Debug, Clone, Default)]
pub struct BundleFilter {
    /// A provider type (`local`), optionally with its upstream (`hashicorp/local`) and, for
    /// registry upstreams, its namespace (`integrations/github`, `registry/integrations/github`).
    pub provider: Option<String>,
    pub version: Option<Version>,
}

impl BundleFilter {
    fn wants(&self, key: &ReleaseKey) -> bool {
        let provider = &key.provider;
        let (upstream, ty) = (&provider.upstream, &provider.provider);
        let mut names = vec![ty.to_string(), format!("{upstream}/{ty}")];
        if let Some(ns) = &provider.namespace {
            names.push(format!("{ns}/{ty}"));
            names.push(format!("{upstream}/{ns}/{ty}"));
        }
        let wanted_provider = self
            .provider
            .as_deref()
            .is_none_or(|p| names.iter().any(|name| name == p));
        wanted_provider && self.version.as_ref().is_none_or(|v| v == &key.version)
    }
}

#[derive(Debug, Default)]
pub struct BundleReport {
    pub releases: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Writes the verified releases that match `filter` to a tar at `output`.
pub async fn export_bundle(
    mirror: &Mirror,
    output: &Path,
    filter: &BundleFilter,
) -> Result<BundleReport, OpsError> {
    let store = mirror.store();
    let mut keys: Vec<FileKey> = Vec::new();
    let mut records: Vec<ReleaseKey> = Vec::new();
    let mut report = BundleReport::default();
    for key in store.releases().await? {
        if !filter.wants(&key) {
            continue;
        }
        let Some(release) = mirror.stored_release(&key).await? else {
            return Err(OpsError::Bundle(format!(
                "{key} does not verify; run `tfmirror verify --repair` first"
            )));
        };
        for entry in store.release_entries(&key).await? {
            let ReleaseEntry::File(name) = entry else {
                continue;
            };
            if !release.publishes(&name) {
                continue;
            }
            let file = key.file(name);
            // Only what serving would serve: an archive that no longer matches the signed
            // SHA256SUMS stays behind.
            if let (Some(_), Some(expected)) = (
                release.build_named(&file.file),
                release.digest_of(&file.file),
            ) {
                if !matches!(
                    store.open_archive(&file, expected).await?,
                    Archive::Verified(_)
                ) {
                    tracing::warn!(%file, "stored archive does not match the signed SHA256SUMS; left out of the bundle");
                    continue;
                }
            }
            keys.push(file);
        }
        records.push(key);
        report.releases += 1;
    }
    if report.releases == 0 {
        return Err(OpsError::Bundle(
            "no cached release matches; nothing exported".to_owned(),
        ));
    }
    // Files first, each release's record after them, as in the store: whoever unpacks the
    // bundle in order has a release's files before its record.
    let mut entries: Vec<Item<'_>> = keys.iter().map(Item::File).collect();
    entries.extend(records.iter().map(Item::ReleaseRecord));
    report.files = entries.len();
    report.bytes = write_tar(store, &entries, output).await?;
    Ok(report)
}

/// Streams stored files into a tar at `output`, written beside it first and renamed into place
/// once complete and synced.
async fn write_tar(store: &Store, entries: &[Item<'_>], output: &Path) -> Result<u64, OpsError> {
    let temp = output.with_file_name(format!(
        ".{}.partial-{:016x}",
        output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rand::random::<u64>()
    ));
    let failed = |e: std::io::Error| OpsError::Bundle(format!("cannot write the bundle: {e}"));
    let result = async {
        let file = std::fs::File::create(&temp).map_err(failed)?;
        let mut tar = Some(tar::Builder::new(std::io::BufWriter::new(file)));
        let mut bytes = 0;
        for item in entries {
            let at = layout::location(*item)?;
            let object = store
                .open(*item)
                .await?
                .ok_or_else(|| OpsError::Bundle(format!("{at} vanished during the export")))?;
            bytes += object.len();
            let (file, _) = object.into_file();
            let mut builder = tar
                .take()
                .ok_or_else(|| OpsError::Internal("no tar".into()))?;
            builder = tokio::task::spawn_blocking(move || {
                let mut file = file;
                builder
                    .append_file(at.as_str(), &mut file)
                    .map(|()| builder)
            })
            .await
            .map_err(|e| OpsError::Internal(e.to_string()))?
            .map_err(failed)?;
            tar = Some(builder);
        }
        let builder = tar.ok_or_else(|| OpsError::Internal("no tar".into()))?;
        tokio::task::spawn_blocking(move || {
            let mut out = builder.into_inner()?;
            out.flush()?;
            out.into_inner()
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .sync_all()
        })
        .await
        .map_err(|e| OpsError::Internal(e.to_string()))?
        .map_err(failed)?;
        std::fs::rename(&temp, output).map_err(failed)?;
        Ok(bytes)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Unpacks, verifies and then copies a bundle into the cache of `config`. Nothing reaches the
/// cache unless everything in the bundle verifies.
pub async fn import_bundle(
    config: &Config,
    bundle: &Path,
    progress: impl Fn(&str),
) -> Result<BundleReport, OpsError> {
    let mirror = Mirror::for_command(config).await?;
    let staging = mirror.store().staging().await?;
    let unpacked = {
        let (bundle, max_file) = (bundle.to_owned(), config.cache.max_archive_bytes.as_u64());
        let reserve = config.cache.min_free_space.as_u64();
        let unpacker = staging.unpacker();
        tokio::task::spawn_blocking(move || unpack(&bundle, &unpacker, max_file, reserve))
            .await
            .map_err(|e| OpsError::Internal(e.to_string()))??
    };
    progress(&format!(
        "unpacked {} files ({} bytes); verifying",
        unpacked.files, unpacked.bytes
    ));

    // The staging store, audited as a cache of its own under today's keyring.
    let staged = Mirror::with_store(config, staging.store.clone()).await?;
    let audit = audit(&staged, AuditMode::Import, |line| progress(line)).await?;
    if !audit.damaged.is_empty() {
        return Err(OpsError::BundleRefused(
            audit
                .damaged
                .iter()
                .map(|Damage { location, problem }| format!("{location}: {problem}"))
                .collect(),
        ));
    }
    if audit.releases == 0 {
        return Err(OpsError::BundleRefused(vec![
            "the bundle holds no release".to_owned()
        ]));
    }

    // Signing-key continuity, as a fetch checks it, before anything is copied.
    for key in staging.store.releases().await? {
        if let Some(release) = staged.stored_release(&key).await? {
            mirror
                .check_imported_key(&release)
                .await
                .map_err(|e| OpsError::BundleRefused(vec![e.to_string()]))?;
        }
    }

    let mut providers = BTreeSet::new();
    for key in staging.store.releases().await? {
        copy_release(&staged, mirror.store(), &key).await?;
        providers.insert(key.provider.clone());
    }
    for key in staging.store.releases().await? {
        for entry in mirror.store().release_entries(&key).await? {
            if let ReleaseEntry::File(file) = entry {
                if file.as_str().ends_with(".zip") {
                    mirror.record_h1(&key.file(file)).await;
                }
            }
        }
    }
    for provider in providers {
        ensure_version_list(&mirror, &provider).await?;
    }
    Ok(BundleReport {
        releases: audit.releases,
        files: unpacked.files,
        bytes: unpacked.bytes,
    })
}

/// Copies one verified release from the staging store: archives through the verified write
/// (their digests checked once more on the way), the record last.
async fn copy_release(staged: &Mirror, store: &Store, key: &ReleaseKey) -> Result<(), OpsError> {
    let release = staged
        .stored_release(key)
        .await?
        .ok_or_else(|| OpsError::Bundle(format!("{key} no longer verifies in staging")))?;
    let from = staged.store();
    for entry in from.release_entries(key).await? {
        let ReleaseEntry::File(name) = entry else {
            continue;
        };
        let file = key.file(name);
        let item = Item::File(&file);
        let Some(object) = from.open(item).await? else {
            continue;
        };
        match release.digest_of(&file.file) {
            Some(expected) => {
                let len = object.len();
                let chunks = object.stream(chunks::CHUNK).boxed();
                store
                    .write_verified(item, chunks, expected, len, len, &mut |_, _| {})
                    .await
                    .map_err(|e| OpsError::Bundle(format!("cannot copy {file}: {e}")))?;
            }
            None => {
                let bytes = from
                    .read(item)
                    .await?
                    .ok_or_else(|| OpsError::Bundle(format!("{file} vanished from staging")))?;
                store.write(item, &bytes.bytes).await?;
            }
        }
    }
    let record = from
        .read(Item::ReleaseRecord(key))
        .await?
        .ok_or_else(|| OpsError::Bundle(format!("{key} has no record in staging")))?;
    store.write(Item::ReleaseRecord(key), &record.bytes).await?;
    Ok(())
}

/// Adds the stored releases of a provider to its version list (writing one if it has none),
/// so that a second import into an offline cache lists the new versions beside the old ones.
/// Versions already listed keep their entries.
async fn ensure_version_list(mirror: &Mirror, provider: &ProviderKey) -> Result<(), OpsError> {
    let store = mirror.store();
    let mut list = match store.read(Item::VersionList(provider)).await? {
        Some(doc) => serde_json::from_slice::<VersionList>(&doc.bytes).unwrap_or(VersionList {
            versions: Vec::new(),
        }),
        None => VersionList {
            versions: Vec::new(),
        },
    };
    let before = list.versions.len();
    for key in store.releases().await? {
        let listed = list
            .versions
            .iter()
            .any(|v| v.version == key.version.as_str());
        if &key.provider != provider || listed {
            continue;
        }
        if let Some(release) = mirror.stored_release(&key).await? {
            list.versions.push(VersionEntry {
                version: key.version.to_string(),
                protocols: None,
                platforms: release
                    .builds
                    .iter()
                    .map(|b| PlatformEntry::from(&b.platform))
                    .collect(),
            });
        }
    }
    if list.versions.len() == before && store.exists(Item::VersionList(provider)).await {
        return Ok(());
    }
    list.versions
        .sort_by_key(|v| Version::try_from(v.version.as_str()).ok());
    let body = serde_json::to_vec(&list).map_err(|e| OpsError::Internal(e.to_string()))?;
    store.write(Item::VersionList(provider), &body).await?;
    Ok(())
}

#[derive(Debug, Default)]
struct Unpacked {
    files: usize,
    bytes: u64,
}

/// Extracts regular files whose paths have the cache's own shape (every segment a valid name,
/// read back by `layout`) and nothing else: no links, no absolute or climbing paths, no
/// oversized files.
fn unpack(
    bundle: &Path,
    staging: &crate::store::Unpacker,
    max_file: u64,
    reserve: u64,
) -> Result<Unpacked, OpsError> {
    let refused = |reason: String| OpsError::BundleRefused(vec![reason]);
    let (entries, bytes) = measure(bundle)?;
    if entries > MAX_BUNDLE_ENTRIES {
        return Err(refused(format!(
            "{entries} entries; a bundle holds at most {MAX_BUNDLE_ENTRIES}"
        )));
    }
    let available = staging
        .available_space()
        .map_err(|e| OpsError::Bundle(format!("cannot measure the cache's free space: {e}")))?;
    // Unpacked once into staging and once more into the cache, keeping cache.min_free_space.
    let needed = bytes.saturating_mul(2).saturating_add(reserve);
    if needed > available {
        return Err(refused(format!(
            "the cache disk has {available} bytes free; unpacking needs {needed} (twice the {bytes} the bundle holds, plus cache.min_free_space)"
        )));
    }
    let file = std::fs::File::open(bundle)
        .map_err(|e| OpsError::Bundle(format!("cannot open {}: {e}", bundle.display())))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut unpacked = Unpacked::default();
    let entries = archive
        .entries()
        .map_err(|e| refused(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| refused(format!("unreadable tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| refused(format!("unreadable entry name: {e}")))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(refused(format!(
                "{}: only regular files are accepted",
                path.display()
            )));
        }
        let target = staged_item(&path)
            .ok_or_else(|| refused(format!("{}: not a path of the cache", path.display())))?;
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > max_file {
            return Err(refused(format!(
                "{}: {size} bytes is over cache.max_archive_bytes",
                path.display()
            )));
        }
        let item = match &target {
            Staged::File(file) => Item::File(file),
            Staged::Record(release) => Item::ReleaseRecord(release),
        };
        let copied = staging
            .put_blocking(item, &mut entry, max_file)
            .map_err(|e| refused(format!("{}: {e} (listed twice?)", path.display())))?;
        if copied != size {
            return Err(refused(format!(
                "{}: {copied} bytes where its header says {size}",
                path.display()
            )));
        }
        unpacked.files += 1;
        unpacked.bytes += copied;
    }
    Ok(unpacked)
}

/// Most entries a bundle may hold (a full mirror of the public registry's popular providers
/// is a few tens of thousands of files).
const MAX_BUNDLE_ENTRIES: usize = 200_000;

/// How many entries a bundle has and how many bytes they announce, from its headers alone.
fn measure(bundle: &Path) -> Result<(usize, u64), OpsError> {
    let refused = |reason: String| OpsError::BundleRefused(vec![reason]);
    let file = std::fs::File::open(bundle)
        .map_err(|e| OpsError::Bundle(format!("cannot open {}: {e}", bundle.display())))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let (mut entries, mut bytes) = (0usize, 0u64);
    for entry in archive
        .entries()
        .map_err(|e| refused(format!("not a tar archive: {e}")))?
    {
        let entry = entry.map_err(|e| refused(format!("unreadable tar entry: {e}")))?;
        entries += 1;
        bytes = bytes.saturating_add(entry.header().size().unwrap_or(u64::MAX));
    }
    Ok((entries, bytes))
}

/// A bundle entry, read back as a key.
enum Staged {
    File(FileKey),
    Record(ReleaseKey),
}

/// What a bundle entry is, if it has the cache's shape.
fn staged_item(entry: &Path) -> Option<Staged> {
    let segments: Vec<&str> = entry
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let location = Location::parse(&segments.join("/"))?;
    let key = layout::file_key(&location)?;
    match layout::release_entry(key.file.as_str())? {
        ReleaseEntry::Record => Some(Staged::Record(key.release)),
        // `.h1` and digest records are refused later, by the audit, as files the release does
        // not name.
        ReleaseEntry::File(_) | ReleaseEntry::H1(_) | ReleaseEntry::Digest(_) => {
            Some(Staged::File(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_providers_with_or_without_upstream_and_namespace() {
        #![allow(clippy::unwrap_used)]
        use crate::protocol::{Namespace, ProviderType, UpstreamName};
        let key = ProviderKey::new(
            UpstreamName::try_from("registry").unwrap(),
            Some(Namespace::try_from("integrations").unwrap()),
            ProviderType::try_from("github").unwrap(),
        )
        .release(Version::try_from("6.2.0").unwrap());
        let filter = |provider: &str| BundleFilter {
            provider: Some(provider.to_owned()),
            version: None,
        };
        for name in [
            "github",
            "registry/github",
            "integrations/github",
            "registry/integrations/github",
        ] {
            assert!(filter(name).wants(&key), "{name}");
        }
        for name in ["datadog/github", "other/integrations/github", "gith"] {
            assert!(!filter(name).wants(&key), "{name}");
        }
    }

    #[test]
    fn only_cache_shaped_paths_are_staged() {
        let ok = "releases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_SHA256SUMS";
        assert!(matches!(staged_item(Path::new(ok)), Some(Staged::File(_))));
        let record = "releases/hashicorp/terraform-provider-local/2.1.0/release.json";
        assert!(matches!(
            staged_item(Path::new(record)),
            Some(Staged::Record(_))
        ));
        for bad in [
            "/etc/passwd",
            "../releases/a/terraform-provider-b/1.0.0/x",
            "releases/../../x/terraform-provider-b/1.0.0/x",
            "releases/a/terraform-provider-b/1.0.0/../x",
            "releases/a/b/1.0.0/x",
            "releases/a/terraform-provider-b/01.0/x",
            "releases/a/terraform-provider-b/1.0.0/sub/x",
            "cache.toml",
        ] {
            assert!(staged_item(Path::new(bad)).is_none(), "{bad}");
        }
    }
}
