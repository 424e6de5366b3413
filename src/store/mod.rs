//! The disk cache: the only writer under `cache.dir`.
//!
//! Discipline (after panamax and sccache): every file is written to a temp file in its final
//! directory, fsynced, and renamed into place only when complete — and, for archives, only
//! when the SHA-256 computed while streaming equals the verified SHA256SUMS entry. A reader
//! therefore never sees a half-written or unverified file, and a crash leaves at most a temp
//! file, which start-up sweeps away.

pub mod chunks;
pub mod layout;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{metrics::metrics, verify::Sha256Digest};
pub use layout::LayoutError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cache I/O failed on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cache disk is full: {available} bytes free under {path}, {required} needed (cache.min_free_space plus the file)")]
    Full {
        path: PathBuf,
        available: u64,
        required: u64,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl StoreError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }

    /// The filesystem ran out of space, by our own check or the kernel's `ENOSPC`.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Full { .. } => true,
            Self::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            Self::Layout(_) => false,
        }
    }
}

/// Why a streamed archive was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError<E> {
    #[error("reading the archive failed")]
    Source(#[source] E),
    #[error("archive is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive digest {actual} does not match the signed SHA256SUMS entry {expected}")]
    DigestMismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A small file read from the cache with its modification time.
#[derive(Debug)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub modified: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Writes are refused rather than left to fill the disk past this reserve.
    min_free_space: u64,
}

impl Store {
    /// Opens (creating) the cache at `root`.
    pub async fn open(root: &Path, min_free_space: u64) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(root)
            .await
            .map_err(|e| StoreError::io(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            min_free_space,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temp files last modified before `cutoff`: what a crashed process left behind.
    /// Younger ones belong to a download in progress (of this process, or of another one
    /// sharing the cache, such as `tfmirror prefetch` running beside `serve`) and stay.
    /// The same walk measures the cache, which sets the size metrics.
    pub async fn sweep_temp_files(&self, cutoff: SystemTime) -> Result<Sweep, StoreError> {
        let root = self.root.clone();
        let sweep = tokio::task::spawn_blocking(move || {
            let mut sweep = Sweep::default();
            sweep_dir(&root, cutoff, &mut sweep).map(|()| sweep)
        })
        .await
        .map_err(|e| StoreError::io(&self.root, io::Error::other(e)))??;
        metrics().cache_bytes.set(sweep.bytes as i64);
        metrics().cache_files.set(sweep.files as i64);
        Ok(sweep)
    }

    /// Bytes and files in the cache (temp files not counted, none removed).
    pub async fn usage(&self) -> Result<Sweep, StoreError> {
        self.sweep_temp_files(SystemTime::UNIX_EPOCH).await
    }

    /// Every cached archive with its size and last access, for eviction.
    pub async fn archives(&self) -> Result<Vec<CachedArchive>, StoreError> {
        let releases = layout::releases_dir(&self.root);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            list_archives(&releases, &mut out)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::io(&self.root, io::Error::other(e)))?
    }

    /// Records that `path` was just served, for least-recently-used eviction. The access time
    /// is set explicitly (mounts often run `noatime`) and at most once a minute per file, so a
    /// hot archive costs no write per hit. Its modification time, and so its ETag, stay.
    /// Runs in the background: the answer never waits for it.
    pub fn touch_accessed(&self, path: &Path) {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let accessed = file.metadata()?.accessed()?;
            let now = SystemTime::now();
            if now.duration_since(accessed).unwrap_or_default() > ACCESS_RESOLUTION {
                file.set_times(std::fs::FileTimes::new().set_accessed(now))?;
            }
            Ok::<_, io::Error>(())
        });
    }

    /// Reads a whole small file, or `None` when it is not cached.
    pub async fn read(&self, path: &Path) -> Result<Option<Stored>, StoreError> {
        match tokio::fs::read(path).await {
            Ok(bytes) => {
                let modified = tokio::fs::metadata(path)
                    .await
                    .and_then(|m| m.modified())
                    .map_err(|e| StoreError::io(path, e))?;
                Ok(Some(Stored { bytes, modified }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    pub async fn exists(&self, path: &Path) -> bool {
        tokio::fs::try_exists(path).await.unwrap_or(false)
    }

    /// Writes a small file atomically.
    pub async fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let temp = self.temp_file(path, bytes.len() as u64).await?;
        let mut file = temp.file().await?;
        file.write_all(bytes)
            .await
            .map_err(|e| StoreError::io(&temp.path, e))?;
        temp.commit(file).await
    }

    /// Streams an archive to `path`, hashing as it writes; renames it into place only if it is
    /// at most `limit` bytes and its SHA-256 equals `expected`. Otherwise nothing is left.
    /// `size_hint` (the announced size, or 0) is checked against the free space up front.
    /// `observe(temp, written)` hears of every chunk once it is readable from the temp file,
    /// so that clients can follow the download.
    pub async fn write_verified<E>(
        &self,
        path: &Path,
        mut chunks: impl Stream<Item = Result<Bytes, E>> + Unpin,
        expected: Sha256Digest,
        limit: u64,
        size_hint: u64,
        observe: &mut (dyn FnMut(&Path, u64) + Send),
    ) -> Result<u64, IngestError<E>> {
        let temp = self.temp_file(path, size_hint).await?;
        let mut file = temp.file().await?;
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        observe(&temp.path, 0);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(IngestError::Source)?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(IngestError::TooLarge { limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| StoreError::io(&temp.path, e))?;
            // tokio hands writes to a blocking thread; flushing waits until the bytes are in
            // the file, where readers following the download look for them.
            file.flush()
                .await
                .map_err(|e| StoreError::io(&temp.path, e))?;
            observe(&temp.path, written);
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != expected {
            return Err(IngestError::DigestMismatch { expected, actual });
        }
        temp.commit(file).await?;
        Ok(written)
    }
}

/// How often, at most, an archive's access time is updated.
const ACCESS_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(60);

/// What a start-up sweep removed and found.
#[derive(Debug, Default)]
pub struct Sweep {
    pub removed: usize,
    pub files: u64,
    pub bytes: u64,
}

/// A cached archive, for eviction.
#[derive(Debug, Clone)]
pub struct CachedArchive {
    pub path: PathBuf,
    pub bytes: u64,
    pub accessed: SystemTime,
}

/// What a cache directory holds.
#[derive(Debug, Default)]
pub struct DirListing {
    pub dirs: Vec<String>,
    pub files: Vec<String>,
}

/// Reading back and pruning, for `tfmirror verify`.
impl Store {
    /// Names of the subdirectories and of the files in `dir`, sorted; none when `dir` does
    /// not exist.
    pub async fn list_dir(&self, dir: &Path) -> Result<DirListing, StoreError> {
        let mut listing = DirListing::default();
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(e) => return Err(StoreError::io(dir, e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| StoreError::io(dir, e))?
        {
            let is_dir = entry
                .file_type()
                .await
                .map_err(|e| StoreError::io(&entry.path(), e))?
                .is_dir();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_dir {
                listing.dirs.push(name);
            } else {
                listing.files.push(name);
            }
        }
        listing.dirs.sort();
        listing.files.sort();
        Ok(listing)
    }

    /// The SHA-256 and length of a cached file, read in blocks off the async runtime.
    pub async fn digest_of(&self, path: &Path) -> Result<(Sha256Digest, u64), StoreError> {
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&owned)?;
            let mut hasher = Sha256::new();
            let bytes = io::copy(&mut file, &mut hasher)?;
            Ok::<_, io::Error>((Sha256Digest(hasher.finalize().into()), bytes))
        })
        .await
        .map_err(|e| StoreError::io(path, io::Error::other(e)))?
        .map_err(|e| StoreError::io(path, e))
    }

    /// Writes and removes a probe file: the cache accepts writes right now.
    pub async fn probe_writable(&self) -> Result<(), StoreError> {
        let probe = self.root.join(format!(
            ".probe{}{:016x}",
            layout::TEMP_MARKER,
            rand::random::<u64>()
        ));
        tokio::fs::write(&probe, b"probe")
            .await
            .map_err(|e| StoreError::io(&probe, e))?;
        self.remove_file(&probe).await
    }

    /// Removes a file; one that is already gone is not an error.
    pub async fn remove_file(&self, path: &Path) -> Result<(), StoreError> {
        let size = tokio::fs::metadata(path).await.map(|m| m.len());
        match tokio::fs::remove_file(path).await {
            Ok(()) => {
                if let Ok(size) = size {
                    metrics().cache_bytes.sub(size as i64);
                    metrics().cache_files.dec();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Removes a directory and everything in it.
    pub async fn remove_dir(&self, path: &Path) -> Result<(), StoreError> {
        match tokio::fs::remove_dir_all(path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
            _ => Ok(()),
        }
    }
}

impl Store {
    /// A temp file for `target`, if the disk can take `size` more bytes and keep its reserve.
    async fn temp_file(&self, target: &Path, size: u64) -> Result<TempFile, StoreError> {
        let temp = TempFile::create(target).await?;
        let dir = target.parent().unwrap_or(&self.root).to_owned();
        let available = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || fs4::available_space(dir)
        })
        .await
        .map_err(|e| StoreError::io(&dir, io::Error::other(e)))?
        .map_err(|e| StoreError::io(&dir, e))?;
        let required = self.min_free_space.saturating_add(size);
        if available < required {
            return Err(StoreError::Full {
                path: dir,
                available,
                required,
            });
        }
        Ok(temp)
    }
}

/// A temp file beside its final path; removed on drop unless committed.
struct TempFile {
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl TempFile {
    async fn create(target: &Path) -> Result<Self, StoreError> {
        let dir = target
            .parent()
            .ok_or_else(|| StoreError::io(target, io::Error::other("no parent directory")))?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StoreError::io(dir, e))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join(format!(
            ".{name}{}{:016x}",
            layout::TEMP_MARKER,
            rand::random::<u64>()
        ));
        Ok(Self {
            path,
            target: target.to_owned(),
            committed: false,
        })
    }

    async fn file(&self) -> Result<tokio::fs::File, StoreError> {
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .await
            .map_err(|e| StoreError::io(&self.path, e))
    }

    async fn commit(mut self, mut file: tokio::fs::File) -> Result<(), StoreError> {
        file.flush()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        file.sync_all()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?
            .len();
        drop(file);
        let replaced = tokio::fs::metadata(&self.target)
            .await
            .ok()
            .map(|m| m.len());
        tokio::fs::rename(&self.path, &self.target)
            .await
            .map_err(|e| StoreError::io(&self.target, e))?;
        self.committed = true;
        let m = metrics();
        m.cache_bytes
            .add(size as i64 - replaced.unwrap_or(0) as i64);
        if replaced.is_none() {
            m.cache_files.inc();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover is swept at the next start-up.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn sweep_dir(dir: &Path, cutoff: SystemTime, sweep: &mut Sweep) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| StoreError::io(&path, e))?;
        let temp = is_temp_name(&entry.file_name().to_string_lossy());
        if kind.is_dir() && temp {
            // An import's staging directory, left by a crash.
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff);
            if stale {
                std::fs::remove_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
                sweep.removed += 1;
            }
            continue;
        }
        if kind.is_dir() {
            sweep_dir(&path, cutoff, sweep)?;
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if temp {
            if metadata.modified().is_ok_and(|modified| modified < cutoff) {
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                sweep.removed += 1;
            }
        } else {
            sweep.files += 1;
            sweep.bytes += metadata.len();
        }
    }
    Ok(())
}

fn list_archives(dir: &Path, out: &mut Vec<CachedArchive>) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            list_archives(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "zip")
            && !is_temp_name(&entry.file_name().to_string_lossy())
        {
            out.push(CachedArchive {
                bytes: metadata.len(),
                accessed: metadata
                    .accessed()
                    .or_else(|_| metadata.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            });
        }
    }
    Ok(())
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(layout::TEMP_MARKER)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn digest(data: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(data).into())
    }

    fn chunks(data: &'static [u8]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures_util::stream::iter(data.chunks(3).map(|c| Ok(Bytes::from_static(c))))
    }

    #[tokio::test]
    async fn verified_write_lands_only_on_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let target = dir.path().join("a/b.zip");

        let err = store
            .write_verified(
                &target,
                chunks(b"tampered"),
                digest(b"original"),
                100,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::DigestMismatch { .. }));
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("a")).unwrap().count(),
            0,
            "temp file left"
        );

        let err = store
            .write_verified(
                &target,
                chunks(b"original"),
                digest(b"original"),
                4,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { limit: 4 }));
        assert!(!target.exists());

        let n = store
            .write_verified(
                &target,
                chunks(b"original"),
                digest(b"original"),
                100,
                0,
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(n, 8);
        assert_eq!(std::fs::read(&target).unwrap(), b"original");
    }

    #[tokio::test]
    async fn a_full_disk_refuses_writes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), u64::MAX).await.unwrap();
        let target = dir.path().join("a/b.json");
        let err = store.write(&target, b"{}").await.unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        let err = store
            .write_verified(
                &target,
                chunks(b"original"),
                digest(b"original"),
                100,
                8,
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Store(e) if e.is_disk_full()));
        assert!(files_in(dir.path()).is_empty());
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                out.extend(files_in(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
        out
    }

    #[tokio::test]
    async fn sweeping_removes_only_temp_files_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("releases/x");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(".a.zip.tmp-0123"), b"partial").unwrap();
        std::fs::write(sub.join("a.zip"), b"done").unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let before = SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(store.sweep_temp_files(before).await.unwrap().removed, 0);
        assert!(
            sub.join(".a.zip.tmp-0123").exists(),
            "a young temp file was removed"
        );
        let after = SystemTime::now() + std::time::Duration::from_secs(1);
        let sweep = store.sweep_temp_files(after).await.unwrap();
        assert_eq!((sweep.removed, sweep.files, sweep.bytes), (1, 1, 4));
        assert!(!sub.join(".a.zip.tmp-0123").exists());
        assert!(sub.join("a.zip").exists());
    }
}
