//! Moving a verified cache into an air-gapped site: `tfmirror export` writes a tar of whole
//! releases; `tfmirror import` unpacks one into a staging directory inside the cache,
//! verifies every signature and digest there as strictly as a fetch from upstream would, and
//! only then moves the files into place. A bundle that fails anywhere is refused whole.
//!
//! Bundles carry what upstream published plus our release records, never derived data: the
//! `h1:` hashes are computed again after import, and version lists are rebuilt from what was
//! imported, so a bundle cannot plant a hash that Terraform would write into lock files.

use std::{
    io::{Read, Write},
    path::{Component, Path, PathBuf},
};

use super::{AuditMode, Damage, Mirror, MirrorError};
use crate::{
    config::Config,
    protocol::{
        registry::{PlatformEntry, VersionEntry, VersionList},
        FileName, Namespace, ProviderType, Version,
    },
    store::layout,
};

const PRODUCT_PREFIX: &str = "terraform-provider-";

/// Which releases to export.
#[derive(Debug, Clone, Default)]
pub struct BundleFilter {
    /// A provider type (`local`), optionally with its upstream (`hashicorp/local`).
    pub provider: Option<String>,
    pub version: Option<Version>,
}

#[derive(Debug, Default)]
pub struct BundleReport {
    pub releases: usize,
    pub files: usize,
    pub bytes: u64,
}

/// One release directory of the cache.
pub(super) struct ReleaseDir {
    pub upstream: String,
    pub provider: ProviderType,
    pub version: Version,
}

impl Mirror {
    /// Every release directory in the cache (verified or not), sorted.
    pub(super) async fn release_dirs(&self) -> Result<Vec<ReleaseDir>, MirrorError> {
        let store = &self.inner.store;
        let mut out = Vec::new();
        for upstream in store
            .list_dir(&layout::releases_dir(store.root()))
            .await?
            .dirs
        {
            if Namespace::try_from(upstream.as_str()).is_err() {
                continue;
            }
            let upstream_dir = layout::upstream_dir(store.root(), &upstream)?;
            for product in store.list_dir(&upstream_dir).await?.dirs {
                let Some(provider) = product
                    .strip_prefix(PRODUCT_PREFIX)
                    .and_then(|t| ProviderType::try_from(t).ok())
                else {
                    continue;
                };
                let provider_dir = layout::provider_dir(store.root(), &upstream, &provider)?;
                for version in store.list_dir(&provider_dir).await?.dirs {
                    if let Ok(version) = Version::try_from(version.as_str()) {
                        out.push(ReleaseDir {
                            upstream: upstream.clone(),
                            provider: provider.clone(),
                            version,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes the verified releases that match `filter` to a tar at `output`.
    pub async fn export_bundle(
        &self,
        output: &Path,
        filter: &BundleFilter,
    ) -> Result<BundleReport, MirrorError> {
        let store = &self.inner.store;
        let root = store.root().to_owned();
        let mut files: Vec<PathBuf> = Vec::new();
        let mut report = BundleReport::default();
        for dir in self.release_dirs().await? {
            let wanted_provider = filter.provider.as_deref().is_none_or(|p| {
                p == dir.provider.as_str() || p == format!("{}/{}", dir.upstream, dir.provider)
            });
            let wanted_version = filter.version.as_ref().is_none_or(|v| v == &dir.version);
            if !(wanted_provider && wanted_version) {
                continue;
            }
            let source = self.upstream(&dir.upstream)?;
            let Some(release) = self
                .load_release(&dir.upstream, source, &dir.provider, &dir.version)
                .await?
            else {
                return Err(MirrorError::Bundle(format!(
                    "{}/{} {} does not verify; run `tfmirror verify --repair` first",
                    dir.upstream, dir.provider, dir.version
                )));
            };
            let release_dir =
                layout::release_dir(&root, &dir.upstream, &dir.provider, &dir.version)?;
            let manifest = format!(
                "{PRODUCT_PREFIX}{}_{}_manifest.json",
                dir.provider, dir.version
            );
            for name in store.list_dir(&release_dir).await?.files {
                let published = name == release.shasums_file.as_str()
                    || name == release.signature_file.as_str()
                    || (name == manifest && release.checksums.digest_of(&name).is_some())
                    || (name.ends_with(".zip")
                        && FileName::try_from(name.as_str())
                            .is_ok_and(|f| release.build_named(&f).is_some()));
                if published {
                    files.push(release_dir.join(&name));
                }
            }
            // The record last, as on disk: whoever unpacks it has the files already.
            files.push(layout::release_record(
                &root,
                &dir.upstream,
                &dir.provider,
                &dir.version,
            )?);
            report.releases += 1;
        }
        if report.releases == 0 {
            return Err(MirrorError::Bundle(
                "no cached release matches; nothing exported".to_owned(),
            ));
        }
        report.files = files.len();
        let output = output.to_owned();
        report.bytes = tokio::task::spawn_blocking(move || write_tar(&root, &files, &output))
            .await
            .map_err(|e| MirrorError::Internal(e.to_string()))?
            .map_err(|e| MirrorError::Bundle(format!("cannot write the bundle: {e}")))?;
        Ok(report)
    }

    /// Computes the `h1:` of an archive that arrived without one (imports).
    async fn ensure_h1(&self, dir: &ReleaseDir, file: &FileName) -> Result<(), MirrorError> {
        let root = self.inner.store.root();
        let path = layout::release_file(root, &dir.upstream, &dir.provider, &dir.version, file)?;
        self.record_h1(&dir.upstream, &dir.provider, &dir.version, file, &path)
            .await;
        Ok(())
    }

    /// Writes a version list for a provider that has none, from the releases cached for it.
    async fn ensure_version_list(
        &self,
        upstream: &str,
        provider: &ProviderType,
    ) -> Result<(), MirrorError> {
        let store = &self.inner.store;
        let path = layout::versions_file(store.root(), upstream, provider)?;
        if store.exists(&path).await {
            return Ok(());
        }
        let source = self.upstream(upstream)?;
        let mut versions = Vec::new();
        for dir in self.release_dirs().await? {
            if dir.upstream != upstream || &dir.provider != provider {
                continue;
            }
            if let Some(release) = self
                .load_release(upstream, source, provider, &dir.version)
                .await?
            {
                versions.push((
                    dir.version.clone(),
                    release
                        .builds
                        .iter()
                        .map(|b| PlatformEntry::from(&b.platform))
                        .collect::<Vec<_>>(),
                ));
            }
        }
        versions.sort_by(|a, b| a.0.cmp(&b.0));
        let list = VersionList {
            versions: versions
                .into_iter()
                .map(|(version, platforms)| VersionEntry {
                    version: version.to_string(),
                    protocols: None,
                    platforms,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&list).map_err(|e| MirrorError::Internal(e.to_string()))?;
        store.write(&path, &body).await?;
        Ok(())
    }
}

/// Unpacks, verifies and then moves a bundle into the cache of `config`. Nothing is moved
/// unless everything in the bundle verifies.
pub async fn import_bundle(
    config: &Config,
    bundle: &Path,
    progress: impl Fn(&str),
) -> Result<BundleReport, MirrorError> {
    let mirror = Mirror::new(config).await?;
    let root = mirror.inner.store.root().to_owned();
    let staging = root.join(format!(
        ".import{}{:016x}",
        layout::TEMP_MARKER,
        rand::random::<u64>()
    ));
    let cleanup = StagingDir(staging.clone());
    let max_file = config.cache.max_archive_bytes.as_u64();
    let unpacked = {
        let (bundle, staging) = (bundle.to_owned(), staging.clone());
        tokio::task::spawn_blocking(move || unpack(&bundle, &staging, max_file))
            .await
            .map_err(|e| MirrorError::Internal(e.to_string()))??
    };
    progress(&format!(
        "unpacked {} files ({} bytes); verifying",
        unpacked.files, unpacked.bytes
    ));

    // The staging directory, audited as a cache of its own under today's keyring.
    let mut staging_config = config.clone();
    staging_config.cache.dir = staging.clone();
    staging_config.cache.min_free_space = bytesize::ByteSize(0);
    let staged = Mirror::new(&staging_config).await?;
    let audit = staged
        .audit(AuditMode::Import, |line| progress(line))
        .await?;
    if !audit.damaged.is_empty() {
        return Err(MirrorError::BundleRefused(
            audit
                .damaged
                .iter()
                .map(|Damage { path, problem }| {
                    let shown = path.strip_prefix(&staging).unwrap_or(path);
                    format!("{}: {problem}", shown.display())
                })
                .collect(),
        ));
    }
    if audit.releases == 0 {
        return Err(MirrorError::BundleRefused(vec![
            "the bundle holds no release".to_owned(),
        ]));
    }

    let dirs = staged.release_dirs().await?;
    {
        let (staging, root) = (staging.clone(), root.clone());
        tokio::task::spawn_blocking(move || move_into_place(&staging, &root))
            .await
            .map_err(|e| MirrorError::Internal(e.to_string()))?
            .map_err(|e| MirrorError::Bundle(format!("cannot move verified files: {e}")))?;
    }
    drop(cleanup);
    let mut providers = std::collections::BTreeSet::new();
    for dir in &dirs {
        let release_dir = layout::release_dir(&root, &dir.upstream, &dir.provider, &dir.version)?;
        for name in mirror.inner.store.list_dir(&release_dir).await?.files {
            if let Some(file) = name
                .ends_with(".zip")
                .then(|| FileName::try_from(name.as_str()).ok())
                .flatten()
            {
                mirror.ensure_h1(dir, &file).await?;
            }
        }
        providers.insert((dir.upstream.clone(), dir.provider.clone()));
    }
    for (upstream, provider) in providers {
        mirror.ensure_version_list(&upstream, &provider).await?;
    }
    Ok(BundleReport {
        releases: audit.releases,
        files: unpacked.files,
        bytes: unpacked.bytes,
    })
}

/// Removes the staging directory however the import ends.
struct StagingDir(PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_tar(root: &Path, files: &[PathBuf], output: &Path) -> std::io::Result<u64> {
    let temp = output.with_file_name(format!(
        ".{}{}{:016x}",
        output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        layout::TEMP_MARKER,
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&temp)?));
        let mut bytes = 0;
        for path in files {
            let relative = path.strip_prefix(root).map_err(std::io::Error::other)?;
            let mut file = std::fs::File::open(path)?;
            bytes += file.metadata()?.len();
            tar.append_file(relative, &mut file)?;
        }
        let mut out = tar.into_inner()?;
        out.flush()?;
        out.into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .sync_all()?;
        std::fs::rename(&temp, output)?;
        Ok(bytes)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[derive(Debug, Default)]
struct Unpacked {
    files: usize,
    bytes: u64,
}

/// Extracts regular files whose paths have the cache's own shape
/// (`releases/<upstream>/terraform-provider-<type>/<version>/<file>`, every segment a valid
/// name) and nothing else: no links, no absolute or climbing paths, no oversized files.
fn unpack(bundle: &Path, staging: &Path, max_file: u64) -> Result<Unpacked, MirrorError> {
    let refused = |reason: String| MirrorError::BundleRefused(vec![reason]);
    let file = std::fs::File::open(bundle)
        .map_err(|e| MirrorError::Bundle(format!("cannot open {}: {e}", bundle.display())))?;
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
        let target = staged_path(staging, &path)
            .ok_or_else(|| refused(format!("{}: not a path of the cache", path.display())))?;
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > max_file {
            return Err(refused(format!(
                "{}: {size} bytes is over cache.max_archive_bytes",
                path.display()
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| MirrorError::Bundle(format!("cannot unpack: {e}")))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| refused(format!("{}: {e} (listed twice?)", path.display())))?;
        let copied = std::io::copy(&mut (&mut entry).take(max_file + 1), &mut out)
            .map_err(|e| MirrorError::Bundle(format!("cannot unpack: {e}")))?;
        unpacked.files += 1;
        unpacked.bytes += copied;
    }
    Ok(unpacked)
}

/// Where a bundle entry goes in the staging directory, if it has the cache's shape.
fn staged_path(staging: &Path, entry: &Path) -> Option<PathBuf> {
    let segments: Vec<&str> = entry
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let ["releases", upstream, product, version, file] = segments.as_slice() else {
        return None;
    };
    let upstream = Namespace::try_from(*upstream).ok()?;
    let provider = ProviderType::try_from(product.strip_prefix(PRODUCT_PREFIX)?).ok()?;
    let version = Version::try_from(*version).ok()?;
    let file = FileName::try_from(*file).ok()?;
    layout::release_file(staging, upstream.as_str(), &provider, &version, &file).ok()
}

/// Renames every staged file into the cache; release records last, so a record on disk always
/// has its files beside it.
fn move_into_place(staging: &Path, root: &Path) -> std::io::Result<()> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(staging, &mut files)?;
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "release.json"));
    for file in files {
        let relative = file.strip_prefix(staging).map_err(std::io::Error::other)?;
        let target = root.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&file, &target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cache_shaped_paths_are_staged() {
        let staging = Path::new("/s");
        let ok = "releases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_SHA256SUMS";
        assert_eq!(
            staged_path(staging, Path::new(ok)),
            Some(PathBuf::from(format!("/s/{ok}")))
        );
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
            assert_eq!(staged_path(staging, Path::new(bad)), None, "{bad}");
        }
    }
}
