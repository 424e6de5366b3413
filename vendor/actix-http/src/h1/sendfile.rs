//! Whole-file response bodies sent with `sendfile(2)` on plain TCP connections (an addition of
//! this copy; see `vendor/README.md`).
//!
//! A handler that answers with the bytes of a file region attaches a [`SendFile`] to the
//! response's extensions, beside an ordinary body of the same bytes and length. The HTTP/1
//! dispatcher then sends the region from the file to the socket inside the kernel, with no copy
//! through user space, when it can: a plain `tokio::net::TcpStream` on Linux, a `Content-Length`
//! body of exactly the region's length, and not a `HEAD` response. Everywhere else (TLS,
//! HTTP/2, systems other than Linux, a file system that refuses `sendfile` before the first
//! byte) the ordinary body is sent as before, so the extension never changes what a client
//! receives.

use std::{fs::File, sync::Arc};

/// A region of a file that is exactly a response's body. Put it in the response's extensions.
#[derive(Debug, Clone)]
pub struct SendFile {
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl SendFile {
    /// `len` bytes of `file` from `offset`. The response's body must be these same bytes: it is
    /// what goes out wherever `sendfile` cannot be used.
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self { file, offset, len }
    }
}

pub(crate) use transfer::{Outcome, Transfer};

mod transfer {
    use std::{
        io,
        task::{ready, Context, Poll},
    };

    use bytes::{Buf as _, BytesMut};
    use tokio::{io::Interest, net::TcpStream};

    use super::SendFile;

    /// Most bytes one `sendfile` call is asked for, and one connection's turn on its worker
    /// thread (nginx's `sendfile_max_chunk` default is the same).
    const MAX_PER_CALL: u64 = 2 * 1024 * 1024;

    /// How a transfer ended.
    pub(crate) enum Outcome {
        /// Every byte was sent.
        Sent,
        /// `sendfile` refused before any byte went out: send the ordinary body instead.
        Unsupported,
    }

    /// A [`SendFile`] under way on one connection.
    #[derive(Debug)]
    pub(crate) struct Transfer {
        source: SendFile,
        sent: u64,
    }

    impl Transfer {
        pub(crate) fn new(source: SendFile) -> Self {
            Self { source, sent: 0 }
        }

        pub(crate) fn len(&self) -> u64 {
            self.source.len
        }

        /// Sends `head` (the response head, which `sendfile` must follow), then what is left of
        /// the file, until done or the socket is full (then `Pending`, with the task woken once
        /// it can take more). After each `MAX_PER_CALL` bytes it also returns `Pending`, woken
        /// at once, so other connections on the thread get their turn (as nginx does after each
        /// `sendfile_max_chunk`).
        pub(crate) fn poll_send(
            &mut self,
            tcp: &TcpStream,
            head: &mut BytesMut,
            cx: &mut Context<'_>,
        ) -> Poll<io::Result<Outcome>> {
            while !head.is_empty() {
                ready!(tcp.poll_write_ready(cx))?;
                match tcp.try_io(Interest::WRITABLE, || send_head(tcp, head)) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => head.advance(n),
                    Err(err) if retry(&err) => {}
                    Err(err) if refused(&err) => return Poll::Ready(Ok(Outcome::Unsupported)),
                    Err(err) => return Poll::Ready(Err(err)),
                }
            }
            while self.sent < self.source.len {
                ready!(tcp.poll_write_ready(cx))?;
                let count = (self.source.len - self.sent).min(MAX_PER_CALL);
                let result = tcp.try_io(Interest::WRITABLE, || {
                    send_once(tcp, &self.source, self.sent, count)
                });
                match result {
                    Ok(0) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file ended before the response's Content-Length",
                        )))
                    }
                    Ok(n) => {
                        self.sent += n;
                        if n == MAX_PER_CALL && self.sent < self.source.len {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                    Err(err) if retry(&err) => {}
                    Err(err) if self.sent == 0 && refused(&err) => {
                        return Poll::Ready(Ok(Outcome::Unsupported))
                    }
                    Err(err) => return Poll::Ready(Err(err)),
                }
            }
            Poll::Ready(Ok(Outcome::Sent))
        }
    }

    /// Whether an error only means "not now".
    fn retry(err: &io::Error) -> bool {
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        )
    }

    /// Whether an error means this file or system cannot `sendfile` at all.
    fn refused(err: &io::Error) -> bool {
        #[cfg(target_os = "linux")]
        if matches!(
            err.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        ) {
            return true;
        }
        err.kind() == io::ErrorKind::Unsupported
    }

    /// One `sendfile` of up to `count` bytes from `sent` bytes into the region.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn send_once(tcp: &TcpStream, source: &SendFile, sent: u64, count: u64) -> io::Result<u64> {
        use std::os::fd::AsRawFd as _;

        let mut offset = libc::off_t::try_from(source.offset + sent).map_err(io::Error::other)?;
        // SAFETY: both descriptors are open for the whole call (`tcp` and `source.file` are
        // borrowed), and `offset` is a valid `off_t` the call may update.
        let n = unsafe {
            libc::sendfile(
                tcp.as_raw_fd(),
                source.file.as_raw_fd(),
                &mut offset,
                count as usize,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as u64)
        }
    }

    /// Writes the start of `head`, telling the kernel more follows (`MSG_MORE`): the head then
    /// leaves in one segment with the start of the file rather than in one of its own.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn send_head(tcp: &TcpStream, head: &[u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd as _;

        // SAFETY: `head` is valid for `head.len()` bytes for the call; the descriptor is open.
        let n = unsafe {
            libc::send(
                tcp.as_raw_fd(),
                head.as_ptr().cast(),
                head.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Elsewhere the ordinary body is sent.
    #[cfg(not(target_os = "linux"))]
    fn send_head(_: &TcpStream, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    #[cfg(not(target_os = "linux"))]
    fn send_once(_: &TcpStream, _: &SendFile, _: u64, _: u64) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
