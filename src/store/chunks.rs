//! Reading cached files into response bodies, chunk by chunk.
//!
//! nginx answers a cached hit with `sendfile`, and so does tfmirror on plain HTTP/1.1 when the
//! file is in the page cache (`nearly_all_cached`, and `SendFile` in the vendored actix-http).
//! Everywhere else (TLS, HTTP/2, a file partly on disk only) every byte is read into user
//! space and then copied into the connection's write buffer. A profile of
//! eight clients downloading a cached 100 MiB archive showed where the rest of the time went
//! when that read was done the obvious way (a fresh zeroed `Vec` per chunk, filled on the
//! blocking pool): 14% zeroing buffers and about 17% switching to and from blocking threads,
//! whose per-thread malloc arenas also held most of the extra memory. So a reader here:
//!
//! - reads into the spare capacity of one buffer per response, reclaimed each time once the
//!   server has copied the previous chunk out (nothing zeroed, nothing allocated per chunk);
//! - reads on the calling thread when the bytes are already in the page cache (`preadv2` with
//!   `RWF_NOWAIT`, which fails rather than waits for the disk), and only otherwise hands the
//!   read to the blocking pool. A hot cache never leaves the worker thread, which is also how
//!   nginx's `sendfile` behaves; a cold disk never stalls it.
//!
//! It also tells whether a file is (nearly) all in the page cache (`nearly_all_cached`), so that
//! a hot file can be handed to the kernel to send (`sendfile`) with no read at all; at most
//! `MAX_UNCACHED_BYTES` of it may then be read from disk inside `sendfile`, on the worker.
//!
//! This is the crate's only `unsafe` code: the system calls and telling the buffer how
//! much of it the kernel filled.
#![allow(unsafe_code)]

use std::{
    fs::File,
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::{Bytes, BytesMut};

/// Bytes per chunk of a response body. Measured with one client on a cached 100 MiB archive
/// (same runs, same host): 96 KiB moved 2.2–2.6 GB/s, 256 KiB 1.1–1.4, 1 MiB 2.0–2.5 (with
/// ten times the memory per download) and 64 KiB 1.9 (more system calls per byte). It also
/// stays under the 128 KiB above which actix-http drops a connection's write buffer after
/// each flush instead of reusing it.
pub const CHUNK: usize = 96 * 1024;

/// One response's reads from one file.
pub struct FileChunks {
    file: Arc<File>,
    /// The last chunk handed out. Once the server has copied it into its write buffer and
    /// dropped its handle, this is the only one left and the allocation is reused.
    last: Option<Bytes>,
}

impl FileChunks {
    pub fn new(file: File) -> Self {
        Self::shared(Arc::new(file))
    }

    /// Reads from a file that others hold open too.
    pub fn shared(file: Arc<File>) -> Self {
        Self { file, last: None }
    }

    /// Up to `max` bytes from `offset`; empty at the end of the file.
    pub async fn read_at(&mut self, offset: u64, max: usize) -> io::Result<Bytes> {
        let mut buf = self.reclaim(max);
        match read_into(&self.file, &mut buf, offset, max, Wait::No) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let file = self.file.clone();
                buf = actix_web::rt::task::spawn_blocking(move || {
                    read_into(&file, &mut buf, offset, max, Wait::Yes).map(|()| buf)
                })
                .await
                .map_err(io::Error::other)??;
            }
            other => other?,
        }
        let chunk = buf.freeze();
        self.last = Some(chunk.clone());
        Ok(chunk)
    }

    /// The whole file, `len` bytes, in chunks of up to `chunk` bytes. A file shorter than
    /// `len` ends the stream with an error, so the client sees a short body, never a wrong one.
    pub fn stream(
        self,
        len: u64,
        chunk: usize,
    ) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
        futures_util::stream::unfold((self, 0u64), move |(mut chunks, pos)| async move {
            if pos >= len {
                return None;
            }
            let want = (len - pos).min(chunk as u64) as usize;
            match chunks.read_at(pos, want).await {
                Ok(bytes) if bytes.is_empty() => Some((
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shorter than it was when opened",
                    )),
                    (chunks, len),
                )),
                Ok(bytes) => {
                    let next = pos + bytes.len() as u64;
                    Some((Ok(bytes), (chunks, next)))
                }
                Err(e) => Some((Err(e), (chunks, len))),
            }
        })
    }

    /// An empty buffer with room for `max` bytes: the last chunk's allocation if nobody else
    /// holds it any more.
    fn reclaim(&mut self, max: usize) -> BytesMut {
        if let Some(Ok(mut buf)) = self.last.take().map(Bytes::try_into_mut) {
            buf.clear();
            // With the buffer unique and large enough, this moves nothing and allocates nothing.
            buf.reserve(max);
            return buf;
        }
        BytesMut::with_capacity(max)
    }
}

/// Most bytes of a file that may be missing from the page cache for `nearly_all_cached`.
/// Kernels drop a few pages of even a hot file now and then; sending the file with `sendfile`
/// then reads those from disk on the worker thread, as nginx's `sendfile` does, and this
/// bounds how much that can be.
pub const MAX_UNCACHED_BYTES: u64 = 1024 * 1024;

/// Whether all of the first `len` bytes of `file` but at most `MAX_UNCACHED_BYTES` are in the
/// page cache now (Linux's `cachestat`, or `mincore` on kernels before 6.5); the missing ones
/// are then asked for in the background (`POSIX_FADV_WILLNEED`). `false` wherever that cannot
/// be told: another system, an error.
pub fn nearly_all_cached(file: &File, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::nearly_all_cached(file, len)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::{
        fs::File,
        os::fd::AsRawFd as _,
        sync::atomic::{AtomicBool, Ordering},
    };

    /// `cachestat`'s number in the system call table every Linux architecture shares since 6.5.
    const SYS_CACHESTAT: libc::c_long = 451;

    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }

    /// Set once the kernel has no `cachestat`, so it is not asked again.
    static MISSING: AtomicBool = AtomicBool::new(false);

    pub(super) fn nearly_all_cached(file: &File, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        // SAFETY: `sysconf` has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page) = u64::try_from(page) else {
            return false;
        };
        if page == 0 {
            return false;
        }
        let cached = if MISSING.load(Ordering::Relaxed) {
            None
        } else {
            cachestat_pages(file, len)
        };
        let Some(cached) = cached.or_else(|| mincore_pages(file, len, page)) else {
            return false;
        };
        nearly_all(file, len, page, cached)
    }

    /// Pages of the first `len` bytes in the page cache, by `cachestat` (Linux 6.5 and later).
    fn cachestat_pages(file: &File, len: u64) -> Option<u64> {
        let range = CachestatRange { off: 0, len };
        let mut stat = Cachestat::default();
        // SAFETY: `range` and `stat` are valid for the call, laid out as the kernel's
        // `struct cachestat_range` and `struct cachestat`; the descriptor is open (borrowed).
        let result = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                file.as_raw_fd(),
                &range as *const CachestatRange,
                &mut stat as *mut Cachestat,
                0u32,
            )
        };
        if result != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                MISSING.store(true, Ordering::Relaxed);
            }
            return None;
        }
        Some(stat.nr_cache)
    }

    /// The same by `mincore` over a mapping of the file, for kernels before `cachestat`. (It
    /// tells the page cache's state only for files this process owns or may write, as the
    /// cache's are; for others it undercounts, which only means no `sendfile`.)
    pub(super) fn mincore_pages(file: &File, len: u64, page: u64) -> Option<u64> {
        let bytes = usize::try_from(len).ok()?;
        let pages = usize::try_from(len.div_ceil(page)).ok()?;
        // SAFETY: a new shared read-only mapping of an open descriptor; nothing else uses it,
        // and it is unmapped below. Its memory is never read here.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let mut resident = vec![0u8; pages];
        // SAFETY: `map` is a mapping of `bytes` bytes, and `resident` has one byte for each
        // of its pages.
        let result = unsafe { libc::mincore(map, bytes, resident.as_mut_ptr()) };
        // SAFETY: `map` and `bytes` are the mapping made above, unmapped once.
        unsafe { libc::munmap(map, bytes) };
        (result == 0).then(|| resident.iter().filter(|&&b| b & 1 != 0).count() as u64)
    }

    /// Whether `cached` pages of `len` bytes are all but `MAX_UNCACHED_BYTES`; the missing
    /// ones are then asked for in the background.
    fn nearly_all(file: &File, len: u64, page: u64, cached: u64) -> bool {
        let pages = len.div_ceil(page);
        if cached >= pages {
            return true;
        }
        if cached + super::MAX_UNCACHED_BYTES / page < pages {
            return false;
        }
        let len = libc::off_t::try_from(len).unwrap_or(0);
        // SAFETY: no memory is passed; the descriptor is open (borrowed). Only a hint: its
        // result does not matter.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_WILLNEED) };
        true
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Only what the page cache holds; `WouldBlock` if that is nothing.
    No,
    Yes,
}

/// Set once the kernel or file system has refused `RWF_NOWAIT`: then every read goes to the
/// blocking pool rather than first failing on the worker.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(!cfg!(target_os = "linux"));

/// Appends up to `max` bytes read at `offset` to `buf` (which has that much spare room).
fn read_into(
    file: &File,
    buf: &mut BytesMut,
    offset: u64,
    max: usize,
    wait: Wait,
) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    if wait == Wait::No && NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    let n = loop {
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: `iov` points at `len` bytes of `buf`'s spare capacity, which this call has to
        // itself (`spare` borrows `buf` mutably) and which outlives the call.
        let n = unsafe { read_syscall(file.as_raw_fd(), &iov, offset, wait) };
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) if wait == Wait::No => {
                NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            _ => return Err(error),
        }
    };
    // SAFETY: the kernel wrote exactly `n` (≤ `len`) bytes at the start of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(())
}

/// `EAGAIN` (as `WouldBlock`) from a `Wait::No` read means nothing asked for is cached.
#[cfg(target_os = "linux")]
unsafe fn read_syscall(
    fd: libc::c_int,
    iov: &libc::iovec,
    offset: libc::off_t,
    wait: Wait,
) -> isize {
    let flags = match wait {
        Wait::No => libc::RWF_NOWAIT,
        Wait::Yes => 0,
    };
    libc::preadv2(fd, iov, 1, offset, flags)
}

#[cfg(not(target_os = "linux"))]
unsafe fn read_syscall(fd: libc::c_int, iov: &libc::iovec, offset: libc::off_t, _: Wait) -> isize {
    libc::pread(fd, iov.iov_base, iov.iov_len, offset)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        use std::io::Write as _;
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(bytes).unwrap();
        temp.flush().unwrap();
        let file = File::open(temp.path()).unwrap();
        (temp, file)
    }

    #[actix_web::test]
    async fn reads_a_file_in_chunks_to_the_end() {
        let content: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (_temp, file) = file_with(&content);
        let mut chunks = FileChunks::new(file);
        let mut got = Vec::new();
        loop {
            let chunk = chunks.read_at(got.len() as u64, 64 * 1024).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.len() <= 64 * 1024);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, content);
        assert!(chunks.read_at(5_000_000, 16).await.unwrap().is_empty());
        assert_eq!(&chunks.read_at(10, 3).await.unwrap()[..], &content[10..13]);
    }

    #[test]
    fn the_blocking_read_fills_the_spare_capacity() {
        let (_temp, file) = file_with(b"hello, mirror");
        let mut buf = BytesMut::with_capacity(64);
        read_into(&file, &mut buf, 7, 64, Wait::Yes).unwrap();
        assert_eq!(&buf[..], b"mirror");
        read_into(&file, &mut buf, 100, 10, Wait::Yes).unwrap();
        assert_eq!(&buf[..], b"mirror", "a read past the end adds nothing");
    }

    #[actix_web::test]
    async fn a_stream_gives_the_file_and_a_shrunken_file_ends_it_with_an_error() {
        use futures_util::StreamExt as _;
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (_temp, file) = file_with(&content);
        let parts: Vec<_> = FileChunks::new(file)
            .stream(content.len() as u64, 100_000)
            .collect()
            .await;
        assert_eq!(parts.len(), 3);
        let got: Vec<u8> = parts
            .into_iter()
            .flat_map(|p| p.unwrap().to_vec())
            .collect();
        assert_eq!(got, content);

        let (_temp, file) = file_with(&content[..1000]);
        let parts: Vec<_> = FileChunks::new(file).stream(5000, 4096).collect().await;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].as_ref().unwrap().len(), 1000);
        assert_eq!(
            parts[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[actix_web::test]
    async fn a_chunk_nobody_holds_any_more_is_reused_and_one_still_held_is_not() {
        let (_temp, file) = file_with(&[1u8; 4 * 4096]);
        let mut chunks = FileChunks::new(file);
        let first = chunks.read_at(0, 4096).await.unwrap();
        let address = first.as_ptr();
        drop(first);
        let second = chunks.read_at(4096, 4096).await.unwrap();
        assert_eq!(
            second.as_ptr(),
            address,
            "the dropped chunk's buffer was not reused"
        );
        // Still held (as if the server had not sent it yet): the next read must not touch it.
        let third = chunks.read_at(8192, 4096).await.unwrap();
        assert_ne!(third.as_ptr(), second.as_ptr());
        assert_eq!(second.len(), 4096);
    }

    /// The file just written is in the page cache; a range reaching well past its end is not,
    /// by more than `MAX_UNCACHED_BYTES`; an empty one is never sent this way.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_just_written_is_in_the_page_cache_and_a_range_past_its_end_is_not() {
        let (_temp, file) = file_with(&[7u8; 64 * 1024]);
        assert!(nearly_all_cached(&file, 64 * 1024));
        assert!(!nearly_all_cached(
            &file,
            64 * 1024 + 2 * MAX_UNCACHED_BYTES
        ));
        assert!(!nearly_all_cached(&file, 0));
    }

    /// The fallback for kernels without `cachestat` counts the same pages.
    #[cfg(target_os = "linux")]
    #[test]
    fn mincore_counts_the_pages_of_a_file_just_written() {
        // SAFETY: `sysconf` has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        let (_temp, file) = file_with(&[7u8; 64 * 1024]);
        let pages = 64 * 1024 / page;
        assert_eq!(linux::mincore_pages(&file, 64 * 1024, page), Some(pages));
        // Past the end of the file, no page is cached.
        assert_eq!(
            linux::mincore_pages(&file, 64 * 1024 + 2 * MAX_UNCACHED_BYTES, page),
            Some(pages)
        );
    }
}
