//! The storage interface: what a place that keeps the cache must do, whatever it is.
//!
//! The local disk is one implementation (`store::disk`); an S3-compatible bucket with the disk
//! in front is the other (`store::tiered`), so nothing here assumes that a rename publishes a
//! file:
//! - small documents are read and written whole ([`Backend::read`], [`Backend::write`]), and
//!   [`Backend::create`] writes one only if nothing is there yet (a lease, a first-seen time);
//! - large files stream in through an [`Upload`], which becomes visible under its location
//!   only when committed (a temp file renamed, a multipart upload completed) and leaves
//!   nothing when dropped uncommitted;
//! - files stream out through an [`Object`], read in chunks from any offset.
//!
//! Locations come from `store::layout` only; a backend never builds one from a name.

use std::{fmt, time::SystemTime};

use futures_util::future::BoxFuture;

use super::{layout::Location, Object, Partial, StoreError};

/// A small document read whole, with when it was last written.
#[derive(Debug)]
pub struct Document {
    pub bytes: Vec<u8>,
    pub modified: SystemTime,
}

/// What a directory-like prefix holds, one level down.
#[derive(Debug, Default)]
pub struct Listing {
    pub dirs: Vec<String>,
    pub files: Vec<String>,
}

/// A stored file with its size and last access, for eviction.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub location: Location,
    pub bytes: u64,
    pub accessed: SystemTime,
}

/// What a sweep of leftovers removed and found.
#[derive(Debug, Default)]
pub struct Sweep {
    pub removed: usize,
    pub files: u64,
    pub bytes: u64,
}

/// A file being streamed in: invisible under its location until committed.
pub trait Upload: Send {
    /// Appends a chunk; once this returns, followers of [`Upload::partial`] can read it.
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Where readers can follow the upload before it is committed, if they can.
    fn partial(&self) -> Option<Partial>;
    /// Makes the file durable and visible under its location.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A place that keeps the cache.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Where this is, for logs: a directory, a bucket.
    fn describe(&self) -> String;

    /// Where a location is, for people: a path, an object URL.
    fn show(&self, at: &Location) -> String;

    /// A whole small document, or `None` when there is none.
    fn read<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<Document>, StoreError>>;

    /// Writes a small document, replacing any; readers see the old or the new one, never a mix.
    fn write<'a>(
        &'a self,
        at: &'a Location,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Writes a small document only if there is none; `false` when one was there already.
    fn create<'a>(
        &'a self,
        at: &'a Location,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Starts streaming a file in; `size_hint` (0 when unknown) is checked against free space.
    fn upload<'a>(
        &'a self,
        at: &'a Location,
        size_hint: u64,
    ) -> BoxFuture<'a, Result<Box<dyn Upload>, StoreError>>;

    /// Opens a file for streaming out, or `None` when there is none.
    fn open<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<Object>, StoreError>>;

    /// Opens an upload in progress (falling back to the file it became), for followers.
    fn open_partial<'a>(
        &'a self,
        partial: Option<&'a Partial>,
        at: &'a Location,
    ) -> BoxFuture<'a, Result<Object, StoreError>>;

    fn exists<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, bool>;

    /// A file's size without reading it, or `None` when there is none.
    fn size<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;

    /// Removes a file; one that is already gone is not an error.
    fn remove<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes this host's copy of a file to free its disk (`gc`): where the disk is the only
    /// tier, the same as [`Backend::remove`]; in front of a bucket, the bucket keeps it.
    fn evict<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes everything under a prefix.
    fn remove_all<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Names one level under a prefix, sorted; empty when there is nothing.
    fn list<'a>(&'a self, at: &'a Location) -> BoxFuture<'a, Result<Listing, StoreError>>;

    /// Every file under a prefix, with size and last access.
    fn objects<'a>(
        &'a self,
        under: &'a Location,
    ) -> BoxFuture<'a, Result<Vec<ObjectInfo>, StoreError>>;

    /// Removes leftovers of crashed writers older than `cutoff` and measures what is kept.
    fn sweep(&self, cutoff: SystemTime) -> BoxFuture<'_, Result<Sweep, StoreError>>;

    /// Writes and removes a probe: the store accepts writes right now.
    fn probe_writable(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records that a file was just served, for least-recently-used eviction; in the
    /// background, never delaying the answer.
    fn touch_accessed(&self, at: &Location);

    /// A URL a client may fetch a stored file from directly for `ttl`, where the backend has
    /// such URLs (a bucket's presigned ones); `None` where it has not (a disk).
    fn presigned_url<'a>(
        &'a self,
        _at: &'a Location,
        _ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}
