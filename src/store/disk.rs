//! The local disk as a store: the only code that writes under `cache.dir`.
//!
//! Discipline (after panamax and sccache): every file is written to a temp file in its final
//! directory, fsynced, and renamed into place only when complete (the directory fsynced after
//! the rename, so the new name survives a crash too), so a reader never sees a
//! half-written file and a crash leaves at most a temp file, which the start-up sweep removes.
//! A writer holds a lock on its temp file (an import on its staging directory) while it
//! works, and the sweep removes only leftovers that are older than the sweeping process and
//! unlocked: `serve` starting during a long `import` or `prefetch` breaks neither.
//! Writes are refused rather than let the disk fill past `cache.min_free_space`.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Instant, SystemTime},
};

use futures_util::{future::BoxFuture, FutureExt};
use tokio::io::AsyncWriteExt;

use super::{
    backend::{Backend, Document, Listing, ObjectInfo, Sweep, Upload},
    layout::Location,
    Object, Partial, StoreError,
};
use crate::metrics::metrics;

/// Name of temp files: `.<final name>.tmp-<random>`, in the final file's directory. No
/// location's segment starts with a dot, so a temp name never collides with a stored file.
pub const TEMP_MARKER: &str = ".tmp-";

/// How often, at most, a file's access time is updated.
const ACCESS_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(60);

/// Most files `Disk::touched` remembers; past it, those touched longer ago than
/// `ACCESS_RESOLUTION` are forgotten (all of them, if every one is recent).
const MAX_TOUCHED: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
    /// Writes are refused rather than left to fill the disk past this reserve.
    min_free_space: u64,
    /// The files this process set the access time of lately, and when: a hot archive's next
    /// hits cost a map lookup, not a blocking task that opens it again, and `open` opens it on
    /// the calling thread.
    touched: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Disk {
    /// Opens (creating) a cache directory.
    pub async fn open(root: &Path, min_free_space: u64) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(root)
            .await
            .map_err(|e| StoreError::io(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            min_free_space,
            touched: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn path(&self, at: &Location) -> PathBuf {
        // Every segment of a location is one plain component (`layout`), so this stays inside.
        self.root.join(at.as_str())
    }

    fn touched(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this process set the file's access time within `ACCESS_RESOLUTION`.
    fn touched_lately(&self, at: &Location) -> bool {
        self.touched()
            .get(at.as_str())
            .is_some_and(|touched| touched.elapsed() < ACCESS_RESOLUTION)
    }

    /// A fresh name for something temporary directly under the root (import staging).
    pub fn temp_dir_name(&self, stem: &str) -> PathBuf {
        self.root.join(format!(
            ".{stem}{TEMP_MARKER}{:016x}",
            rand::random::<u64>()
        ))
    }

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

    async fn write_temp(
        &self,
        target: &Path,
        bytes: &[u8],
    ) -> Result<(TempFile, tokio::fs::File), StoreError> {
        let temp = self.temp_file(target, bytes.len() as u64).await?;
        let mut file = temp.file().await?;
        file.write_all(bytes)
            .await
            .map_err(|e| StoreError::io(&temp.path, e))?;
        temp.sync(&mut file).await?;
        Ok((temp, file))
    }
}

impl Backend for Disk {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn show(&self, at: &Location) -> String {
        self.path(at).display().to_string()
    }

    fn read<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<Document>, StoreError>> {
        async move {
            let path = self.path(at);
            match tokio::fs::read(&path).await {
                Ok(bytes) => {
                    let modified = tokio::fs::metadata(&path)
                        .await
                        .and_then(|m| m.modified())
                        .map_err(|e| StoreError::io(&path, e))?;
                    Ok(Some(Document { bytes, modified }))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        at: &'a Location,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let (temp, file) = self.write_temp(&self.path(at), bytes).await?;
            temp.rename_into_place(file).await
        }
        .boxed()
    }

    fn create<'a>(
        &'a self,
        at: &'a Location,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let target = self.path(at);
            let (temp, file) = self.write_temp(&target, bytes).await?;
            temp.link_into_place(file).await
        }
        .boxed()
    }

    fn upload<'a>(
        &'a self,
        at: &'a Location,
        size_hint: u64,
    ) -> BoxFuture<'a, Result<Box<dyn Upload>, StoreError>> {
        async move {
            let temp = self.temp_file(&self.path(at), size_hint).await?;
            let file = temp.file().await?;
            Ok(Box::new(DiskUpload { temp, file }) as Box<dyn Upload>)
        }
        .boxed()
    }

    fn open<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<Object>, StoreError>> {
        async move {
            let path = self.path(at);
            // A file served within the minute has its inode in memory: opening it takes a few
            // microseconds on this thread, less than the two thread switches of a blocking task.
            let opened = if self.touched_lately(at) {
                Object::open(&path)
            } else {
                tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || Object::open(&path)
                })
                .await
                .map_err(|e| StoreError::io(&path, io::Error::other(e)))?
            };
            match opened {
                Ok(object) => Ok(Some(object)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        }
        .boxed()
    }

    fn open_partial<'a>(
        &'a self,
        partial: Option<&'a Partial>,
        at: &'a Location,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        async move {
            let path = self.path(at);
            let temp = partial.map(|p| p.0.clone());
            tokio::task::spawn_blocking({
                let path = path.clone();
                // A handle on the temp file keeps working after it is renamed into place.
                move || match temp {
                    Some(temp) => Object::open(&temp).or_else(|_| Object::open(&path)),
                    None => Object::open(&path),
                }
            })
            .await
            .map_err(|e| StoreError::io(&path, io::Error::other(e)))?
            .map_err(|e| StoreError::io(&path, e))
        }
        .boxed()
    }

    fn exists<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, bool> {
        async move { tokio::fs::try_exists(self.path(at)).await.unwrap_or(false) }.boxed()
    }

    fn size<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        async move {
            let path = self.path(at);
            match tokio::fs::metadata(&path).await {
                Ok(metadata) => Ok(Some(metadata.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let path = self.path(at);
            let size = tokio::fs::metadata(&path).await.map(|m| m.len());
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {
                    if let Ok(size) = size {
                        metrics().cache_bytes.sub(size as i64);
                        metrics().cache_files.dec();
                    }
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        }
        .boxed()
    }

    fn evict<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>> {
        self.remove(at)
    }

    fn remove_all<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let path = self.path(at);
            match tokio::fs::remove_dir_all(&path).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(&path, e)),
                _ => Ok(()),
            }
        }
        .boxed()
    }

    fn list<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Listing, StoreError>> {
        async move {
            let dir = self.path(at);
            let mut listing = Listing::default();
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
                Err(e) => return Err(StoreError::io(&dir, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| StoreError::io(&dir, e))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_temp_name(&name) {
                    continue;
                }
                let is_dir = entry
                    .file_type()
                    .await
                    .map_err(|e| StoreError::io(&entry.path(), e))?
                    .is_dir();
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
        .boxed()
    }

    fn objects<'a>(
        &'a self,
        under: &'a Location,
    ) -> BoxFuture<'a, Result<Vec<ObjectInfo>, StoreError>> {
        async move {
            let (root, dir) = (self.root.clone(), self.path(under));
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                list_files(&root, &dir, &mut out)?;
                Ok(out)
            })
            .await
            .map_err(|e| StoreError::io(&self.root, io::Error::other(e)))?
        }
        .boxed()
    }

    /// Removes temp files last modified before `cutoff`: what a crashed process left behind.
    /// Younger ones belong to a download in progress (of this process, or of another one
    /// sharing the cache, such as `tfmirror prefetch` running beside `serve`) and stay.
    /// The same walk measures the cache, which sets the size metrics.
    fn sweep(&self, cutoff: SystemTime) -> BoxFuture<'_, Result<Sweep, StoreError>> {
        async move {
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
        .boxed()
    }

    fn probe_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let probe = self.temp_dir_name("probe");
            tokio::fs::write(&probe, b"probe")
                .await
                .map_err(|e| StoreError::io(&probe, e))?;
            tokio::fs::remove_file(&probe)
                .await
                .map_err(|e| StoreError::io(&probe, e))
        }
        .boxed()
    }

    /// The access time is set explicitly (mounts often run `noatime`) and at most once a
    /// minute per file, so a hot archive costs no write per hit, and no system call while this
    /// process touched it within the minute. Its modification time, and so its ETag, stay.
    fn touch_accessed(&self, at: &Location) {
        let now = Instant::now();
        {
            let mut touched = self.touched();
            let lately = |touched: &Instant| now.duration_since(*touched) < ACCESS_RESOLUTION;
            if touched.get(at.as_str()).is_some_and(lately) {
                return;
            }
            if touched.len() >= MAX_TOUCHED {
                touched.retain(|_, touched| lately(touched));
                if touched.len() >= MAX_TOUCHED {
                    touched.clear();
                }
            }
            touched.insert(at.as_str().to_owned(), now);
        }
        let path = self.path(at);
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
}

/// An upload into a temp file beside its final path.
struct DiskUpload {
    temp: TempFile,
    file: tokio::fs::File,
}

impl Upload for DiskUpload {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let path = &self.temp.path;
            self.file
                .write_all(chunk)
                .await
                .map_err(|e| StoreError::io(path, e))?;
            // tokio hands writes to a blocking thread; flushing waits until the bytes are in
            // the file, where readers following the download look for them.
            self.file.flush().await.map_err(|e| StoreError::io(path, e))
        }
        .boxed()
    }

    fn partial(&self) -> Option<Partial> {
        Some(Partial(self.temp.path.clone()))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        async move {
            let DiskUpload { temp, mut file } = *self;
            temp.sync(&mut file).await?;
            temp.rename_into_place(file).await
        }
        .boxed()
    }
}

/// A temp file beside its final path; removed on drop unless it was put in place.
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
            ".{name}{TEMP_MARKER}{:016x}",
            rand::random::<u64>()
        ));
        Ok(Self {
            path,
            target: target.to_owned(),
            committed: false,
        })
    }

    /// Creates the temp file, locked for as long as it is open: the sweep of another process
    /// sees the lock and leaves a live write alone, whatever its age.
    async fn file(&self) -> Result<tokio::fs::File, StoreError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .await
            .map_err(|e| StoreError::io(&self.path, e))?
            .into_std()
            .await;
        fs4::FileExt::lock(&file).map_err(|e| StoreError::io(&self.path, e))?;
        Ok(tokio::fs::File::from_std(file))
    }

    async fn sync(&self, file: &mut tokio::fs::File) -> Result<(), StoreError> {
        file.flush()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        file.sync_all()
            .await
            .map_err(|e| StoreError::io(&self.path, e))
    }

    async fn size(&self, file: &tokio::fs::File) -> Result<u64, StoreError> {
        Ok(file
            .metadata()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?
            .len())
    }

    /// Publishes the (synced) file under its final name, replacing what was there.
    /// The file stays open, and so locked, until it has its final name.
    async fn rename_into_place(mut self, file: tokio::fs::File) -> Result<(), StoreError> {
        let size = self.size(&file).await?;
        let replaced = tokio::fs::metadata(&self.target)
            .await
            .ok()
            .map(|m| m.len());
        tokio::fs::rename(&self.path, &self.target)
            .await
            .map_err(|e| StoreError::io(&self.target, e))?;
        self.committed = true;
        drop(file);
        sync_parent(&self.target).await?;
        count_stored(size, replaced);
        Ok(())
    }

    /// Publishes the (synced) file under its final name unless one is there: a hard link
    /// fails rather than replaces. `false` when one was there.
    async fn link_into_place(self, file: tokio::fs::File) -> Result<bool, StoreError> {
        let size = self.size(&file).await?;
        let linked = tokio::fs::hard_link(&self.path, &self.target).await;
        drop(file);
        match linked {
            Ok(()) => {
                sync_parent(&self.target).await?;
                count_stored(size, None);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::io(&self.target, e)),
        }
        // The temp name goes on drop either way.
    }
}

/// Makes a rename or link in `path`'s directory durable: without it a crash can lose the new
/// name although the file's bytes were synced.
async fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let handle = tokio::fs::File::open(dir)
        .await
        .map_err(|e| StoreError::io(dir, e))?;
    handle.sync_all().await.map_err(|e| StoreError::io(dir, e))
}

fn count_stored(size: u64, replaced: Option<u64>) {
    let m = metrics();
    m.cache_bytes
        .add(size as i64 - replaced.unwrap_or(0) as i64);
    if replaced.is_none() {
        m.cache_files.inc();
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

/// Whether another writer (a download, an import's staging, in this process or any other on
/// this host) holds the lock on a temp file or directory right now.
fn held_by_a_writer(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(file) => matches!(
            fs4::FileExt::try_lock(&file),
            Err(fs4::TryLockError::WouldBlock)
        ),
        Err(_) => false,
    }
}

/// Locks a directory for as long as the returned handle lives (an import's staging).
pub(super) fn lock_dir(dir: &Path) -> io::Result<std::fs::File> {
    let handle = std::fs::File::open(dir)?;
    fs4::FileExt::lock(&handle)?;
    Ok(handle)
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
            if stale && !held_by_a_writer(&path) {
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
            let stale = metadata.modified().is_ok_and(|modified| modified < cutoff);
            if stale && !held_by_a_writer(&path) {
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

fn list_files(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_temp_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            list_files(root, &path, out)?;
            continue;
        }
        let location = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .and_then(Location::parse);
        if let Some(location) = location {
            out.push(ObjectInfo {
                location,
                bytes: metadata.len(),
                accessed: metadata
                    .accessed()
                    .or_else(|_| metadata.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}
