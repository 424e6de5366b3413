//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON.
//!
//! Lines are not written to stderr by the thread that logs them: they are appended to one
//! shared buffer, and a thread of its own, woken by the first line, waits `BATCH_WINDOW` and
//! writes whatever has gathered in one `write` — hundreds of lines per write under load. A request's log
//! line then costs a copy into memory instead of a system call on a worker thread (the
//! request log is on as shipped). Nothing is dropped: past `MAX_PENDING_BYTES` waiting, the
//! logging thread writes them out itself. `flush` writes out what is left before exit.

use std::{
    io::{self, IsTerminal, Write},
    sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError},
};

use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(BufferedStderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Writes out every log line still waiting. Call before the process exits.
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.write_out_pending();
    }
}

/// Bytes of log lines that may wait for the writer thread before the logging thread writes
/// them itself (a stalled stderr then slows logging down rather than growing memory).
const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// How long the writer thread lets lines gather after the first one arrives: at most this
/// late on stderr, and at most one wake-up per this under any load.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

static SHARED: OnceLock<Shared> = OnceLock::new();

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when lines arrive while the writer thread waits.
    arrived: Condvar,
    /// Held while bytes are written to stderr, so batches never interleave or reorder.
    output: Mutex<()>,
    /// Where batches go: stderr.
    sink: fn(&[u8]),
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    writer_waiting: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(sink: fn(&[u8])) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            arrived: Condvar::new(),
            output: Mutex::new(()),
            sink,
        }
    }

    /// The buffer, with its writer thread started on first use. Without a thread (the system
    /// refused one), `None`: lines go to stderr directly.
    fn get() -> Option<&'static Shared> {
        static STARTED: OnceLock<bool> = OnceLock::new();
        let shared = SHARED.get_or_init(|| Shared::new(write_stderr));
        let started = *STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("tfmirror-log".to_owned())
                .spawn(move || shared.write_forever())
                .is_ok()
        });
        started.then_some(shared)
    }

    fn append(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        if pending.bytes.len() + line.len() > MAX_PENDING_BYTES {
            pending.bytes.extend_from_slice(line);
            let batch = std::mem::take(&mut pending.bytes);
            let output = lock(&self.output);
            drop(pending);
            (self.sink)(&batch);
            drop(output);
            return;
        }
        pending.bytes.extend_from_slice(line);
        if pending.writer_waiting {
            pending.writer_waiting = false;
            self.arrived.notify_one();
        }
    }

    fn write_forever(&self) {
        // Two buffers trade places, so neither side allocates once they have grown.
        let mut batch = Vec::new();
        loop {
            let mut pending = lock(&self.pending);
            if pending.bytes.is_empty() {
                while pending.bytes.is_empty() {
                    pending.writer_waiting = true;
                    pending = self
                        .arrived
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                // Let the lines of a busy moment gather: one wake-up and one write for all
                // of them, not a thread switch per line.
                drop(pending);
                std::thread::sleep(BATCH_WINDOW);
                pending = lock(&self.pending);
            }
            std::mem::swap(&mut batch, &mut pending.bytes);
            let output = lock(&self.output);
            drop(pending);
            (self.sink)(&batch);
            drop(output);
            batch.clear();
            if batch.capacity() > MAX_PENDING_BYTES {
                batch = Vec::new();
            }
        }
    }

    fn write_out_pending(&self) {
        let mut pending = lock(&self.pending);
        let batch = std::mem::take(&mut pending.bytes);
        let output = lock(&self.output);
        drop(pending);
        (self.sink)(&batch);
        drop(output);
    }
}

fn write_stderr(bytes: &[u8]) {
    if !bytes.is_empty() {
        // Nowhere to report a failing stderr.
        let _ = io::stderr().lock().write_all(bytes);
    }
}

/// The `MakeWriter` of the log subscriber: lines into the shared buffer.
#[derive(Debug, Clone, Copy)]
struct BufferedStderr;

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = BufferedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        BufferedStderr
    }
}

impl Write for BufferedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Shared::get() {
            Some(shared) => shared.append(buf),
            None => write_stderr(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    static WRITTEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn record(bytes: &[u8]) {
        lock(&WRITTEN).extend_from_slice(bytes);
    }

    #[test]
    fn lines_come_out_whole_in_order_and_waiting_bytes_stay_bounded() {
        let shared: &'static Shared = Box::leak(Box::new(Shared::new(record)));
        std::thread::spawn(move || shared.write_forever());
        let mut expected = Vec::new();
        for i in 0..10_000 {
            let line = format!("line {i}\n");
            shared.append(line.as_bytes());
            expected.extend_from_slice(line.as_bytes());
        }
        // Past the limit, the logging thread writes the batch itself.
        let big = vec![b'x'; MAX_PENDING_BYTES / 2];
        for _ in 0..4 {
            shared.append(&big);
            expected.extend_from_slice(&big);
            assert!(lock(&shared.pending).bytes.len() <= MAX_PENDING_BYTES);
        }
        shared.write_out_pending();
        assert!(lock(&shared.pending).bytes.is_empty());
        assert!(*lock(&WRITTEN) == expected, "lines lost or reordered");
    }
}
