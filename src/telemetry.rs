//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON.
//!
//! The request line (one per request, on as shipped) is written by hand, byte by byte
//! (`RequestLine`), straight into the log buffer: the same bytes as `tracing-subscriber`'s text
//! and JSON formats, without an event's dispatch, field visitors and `fmt` machinery, which
//! cost about 6% of a cached hit's throughput. It is still filtered by `RUST_LOG` like any
//! event of its target. A request line inside a span or to a terminal (colours) is an ordinary
//! event, formatted by `RequestLines` (the same bytes again, through `tracing`); every other
//! event goes through `tracing-subscriber`'s formatters unchanged. Handlers' spans are at
//! `debug`, so with the log as shipped a request creates no span at all: its line names what it
//! asked for, and the mirror's own `info` spans (an upstream fetch, a release being verified)
//! give the events of a miss their context.
//!
//! Lines are not written to stderr by the thread that logs them: they are appended to one
//! shared buffer, and a thread of its own, woken by the first line, waits `BATCH_WINDOW` and
//! writes whatever has gathered in one `write` — hundreds of lines per write under load. A request's log
//! line then costs a copy into memory instead of a system call on a worker thread (the
//! request log is on as shipped). Nothing is dropped: past `MAX_PENDING_BYTES` waiting, the
//! logging thread writes them out itself. `flush` writes out what is left before exit.

use std::{
    cell::RefCell,
    fmt,
    io::{self, IsTerminal, Write},
    sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields, MakeWriter},
    registry::LookupSpan,
    EnvFilter,
};

/// The name of the request line's event (`tracing::info!(name: REQUEST_EVENT, …)`): events of
/// this name are formatted by `RequestLines`.
pub const REQUEST_EVENT: &str = "request";

/// The request line's target, as when it was logged from `http`.
const REQUEST_TARGET: &str = "tfmirror::http";

/// The format `RequestLine` writes in, once `init` has found the log is not a terminal.
static DIRECT: OnceLock<LogFormat> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(BufferedStderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let installed = match format {
        LogFormat::Text => builder
            .event_format(RequestLines::text(tracing_subscriber::fmt::format()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .event_format(RequestLines::json(tracing_subscriber::fmt::format().json()))
            .try_init(),
    };
    if installed.is_ok() && !ansi {
        let _ = DIRECT.set(format);
    }
}

/// One request's log line (`REQUEST_EVENT`): what was asked, the answer, how long it took.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub elapsed: Duration,
    /// `CacheOutcome::as_str`, or `-`.
    pub cache: &'a str,
}

thread_local! {
    /// Where this thread puts a request line together.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl RequestLine<'_> {
    /// Logs the line if `RUST_LOG` lets `info` of its target through: written by hand into the
    /// log buffer when `init` set the log up and no span is entered, else as a `tracing` event.
    pub fn log(&self) {
        if !tracing::enabled!(target: REQUEST_TARGET, tracing::Level::INFO) {
            return;
        }
        match DIRECT.get() {
            Some(&format) if tracing::Span::current().is_none() => LINE.with(|line| {
                let Ok(mut line) = line.try_borrow_mut() else {
                    return self.event();
                };
                line.clear();
                self.write(format, SystemTime::now(), &mut line);
                let _ = BufferedStderr.write(&line);
            }),
            _ => self.event(),
        }
    }

    /// The line as an event, for `RequestLines` and any other formatter.
    fn event(&self) {
        tracing::info!(
            name: REQUEST_EVENT,
            target: REQUEST_TARGET,
            method = self.method,
            path = self.path,
            version = self.version,
            status = self.status,
            bytes = self.bytes,
            elapsed_ms = self.elapsed_ms(),
            cache = self.cache,
            "request"
        );
    }

    /// Milliseconds, rounded to the microsecond.
    fn elapsed_ms(&self) -> f64 {
        (self.elapsed.as_secs_f64() * 1e6).round() / 1e3
    }

    /// The line as `RequestLines` writes the event in `format`, at `now`.
    fn write(&self, format: LogFormat, now: SystemTime, out: &mut Vec<u8>) {
        // The nearest microsecond, as `elapsed_ms` rounds.
        let micros = u64::try_from((self.elapsed.as_nanos() + 500) / 1000).unwrap_or(u64::MAX);
        let fields = [
            ("method", LineValue::Str(self.method)),
            ("path", LineValue::Str(self.path)),
            ("version", LineValue::Str(self.version)),
            ("status", LineValue::Number(self.status.into())),
            ("bytes", LineValue::Number(self.bytes)),
            ("elapsed_ms", LineValue::Micros(micros)),
            ("cache", LineValue::Str(self.cache)),
        ];
        let json = format == LogFormat::Json;
        if json {
            out.extend_from_slice(b"{\"timestamp\":\"");
            out.extend_from_slice(&timestamp(now));
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
        } else {
            out.extend_from_slice(&timestamp(now));
            out.extend_from_slice(b"  INFO ");
            out.extend_from_slice(REQUEST_TARGET.as_bytes());
            out.extend_from_slice(b": request");
        }
        let mut numbers = itoa::Buffer::new();
        for (name, value) in fields {
            if json {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
            } else {
                out.push(b' ');
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
            }
            match value {
                LineValue::Str(text) if json => json_str(out, text),
                LineValue::Str(text) => text_str(out, text),
                LineValue::Number(n) => out.extend_from_slice(numbers.format(n).as_bytes()),
                LineValue::Micros(n) => write_micros_as_ms(out, n, self.elapsed_ms()),
            }
        }
        if json {
            out.extend_from_slice(b"},\"target\":\"");
            out.extend_from_slice(REQUEST_TARGET.as_bytes());
            out.extend_from_slice(b"\"}\n");
        } else {
            out.push(b'\n');
        }
    }
}

/// A request line's field value, as `RequestLine::write` writes it.
enum LineValue<'a> {
    Str(&'a str),
    Number(u64),
    /// Microseconds, written as milliseconds.
    Micros(u64),
}

/// A string field as the text format writes it: in quotes, or as `Debug` escapes it.
fn text_str(out: &mut Vec<u8>, value: &str) {
    if is_plain_text(value) {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{value:?}").as_bytes());
    }
}

/// A string that `Debug` shows as itself in quotes.
fn is_plain_text(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// A JSON string: as it is when nothing needs escaping, else escaped by `serde_json`.
fn json_str(out: &mut Vec<u8>, value: &str) {
    if is_plain_json(value) {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// A string that JSON carries as itself in quotes.
fn is_plain_json(value: &str) -> bool {
    value.bytes().all(|b| b >= b' ' && b != b'"' && b != b'\\')
}

/// `micros` microseconds as milliseconds, as `write_thousandths` writes `ms` (`3.031`, `12.5`,
/// `0.0`); past what it writes by hand, as `Debug` writes `ms`.
fn write_micros_as_ms(out: &mut Vec<u8>, micros: u64, ms: f64) {
    if micros >= 9_000_000_000_000_000 {
        out.extend_from_slice(format!("{ms:?}").as_bytes());
        return;
    }
    let mut numbers = itoa::Buffer::new();
    let (whole, mut fraction) = (micros / 1000, micros % 1000);
    out.extend_from_slice(numbers.format(whole).as_bytes());
    out.push(b'.');
    if fraction == 0 {
        out.push(b'0');
        return;
    }
    let mut digits = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let text = numbers.format(fraction);
    out.extend(std::iter::repeat_n(b'0', digits - text.len()));
    out.extend_from_slice(text.as_bytes());
}

/// An event format that writes `REQUEST_EVENT` lines by hand, as `inner` would write them,
/// and hands every other event to `inner`.
struct RequestLines<F> {
    json: bool,
    inner: F,
}

impl<F> RequestLines<F> {
    /// Around `tracing-subscriber`'s full text format.
    fn text(inner: F) -> Self {
        Self { json: false, inner }
    }

    /// Around `tracing-subscriber`'s JSON format.
    fn json(inner: F) -> Self {
        Self { json: true, inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for RequestLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Spans and colours are `inner`'s business; request lines have neither as deployed.
        if meta.name() != REQUEST_EVENT || writer.has_ansi_escapes() || ctx.event_scope().is_some()
        {
            return self.inner.format_event(ctx, writer, event);
        }
        let now = SystemTime::now();
        if self.json {
            writer.write_str("{\"timestamp\":\"")?;
            write_timestamp(&mut writer, now)?;
            write!(writer, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
            let mut fields = JsonFields {
                writer: &mut writer,
                first: true,
                result: Ok(()),
            };
            event.record(&mut fields);
            fields.result?;
            writer.write_str("},\"target\":")?;
            write_json_str(&mut writer, meta.target())?;
            writer.write_str("}\n")
        } else {
            write_timestamp(&mut writer, now)?;
            write!(writer, " {:>5} {}: ", meta.level(), meta.target())?;
            let mut fields = TextFields {
                writer: &mut writer,
                first: true,
                result: Ok(()),
            };
            event.record(&mut fields);
            fields.result?;
            writer.write_char('\n')
        }
    }
}

/// `2026-01-02T03:04:05.678901Z`, as `tracing-subscriber`'s default timer writes it (years
/// 0–9999; the digits are put in place by hand, `write!` with widths costs more than the rest
/// of the line).
fn write_timestamp(writer: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let text = timestamp(now);
    // Only ASCII digits and separators were written.
    writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// `now` as `write_timestamp` writes it.
fn timestamp(now: SystemTime) -> [u8; 27] {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, u64::from(month));
    put(8, 2, u64::from(day));
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    text
}

/// `value` as `Debug` (and JSON) shows it, written without the general float formatter when
/// it is a whole number of thousandths, as the request line's `elapsed_ms` is: for such a
/// value below 2^53 thousandths the shortest form that reads back the same is that decimal,
/// trailing zeros dropped (`3.031`, `12.5`, `0.0`). Anything else: `fallback`.
fn write_thousandths(
    writer: &mut Writer<'_>,
    value: f64,
    fallback: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
) -> fmt::Result {
    let scaled = (value * 1000.0).round();
    if !(0.0..9.0e15).contains(&scaled) || scaled / 1000.0 != value {
        return fallback(writer);
    }
    let thousandths = scaled as u64;
    let (whole, mut fraction) = (thousandths / 1000, thousandths % 1000);
    write!(writer, "{whole}.")?;
    if fraction == 0 {
        return writer.write_char('0');
    }
    let mut digits = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    write!(writer, "{fraction:0digits$}")
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A request line's fields as the text format writes them: `message` bare, then
/// `name=value` with values as `Debug` shows them (strings quoted), separated by spaces.
struct TextFields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl TextFields<'_, '_> {
    /// The separator and `name=`; `false` for the `message` field, written bare.
    fn start(&mut self, field: &Field) -> bool {
        if self.first {
            self.first = false;
        } else if self.result.is_ok() {
            self.result = self.writer.write_char(' ');
        }
        let name = field.name();
        if name == "message" || self.result.is_err() {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = self
            .writer
            .write_str(name)
            .and_then(|()| self.writer.write_char('='));
        true
    }
}

impl tracing::field::Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.start(field) {
            // `Debug` of a string that needs no escaping is the string in quotes.
            self.result = if is_plain_text(value) {
                write!(self.writer, "\"{value}\"")
            } else {
                write!(self.writer, "{value:?}")
            };
        } else if self.result.is_ok() {
            self.result = self.writer.write_str(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write_thousandths(self.writer, value, |w| write!(w, "{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// A request line's fields as the JSON format writes them: in order, strings and numbers as
/// JSON, anything else as its `Debug` text in a string.
struct JsonFields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn start(&mut self, field: &Field) {
        if self.result.is_err() {
            return;
        }
        if !self.first {
            self.result = self.writer.write_char(',');
        }
        self.first = false;
        if self.result.is_ok() {
            self.result = write_json_str(self.writer, field.name());
        }
        if self.result.is_ok() {
            self.result = self.writer.write_char(':');
        }
    }
}

impl tracing::field::Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write_json_str(self.writer, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write_thousandths(self.writer, value, |w| write_json(w, &value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.start(field);
        if self.result.is_ok() {
            self.result = write_json_str(self.writer, &format!("{value:?}"));
        }
    }
}

/// A JSON string: as it is when nothing needs escaping, else escaped by `serde_json`.
fn write_json_str(writer: &mut Writer<'_>, value: &str) -> fmt::Result {
    if is_plain_json(value) {
        writer.write_char('"')?;
        writer.write_str(value)?;
        writer.write_char('"')
    } else {
        write_json(writer, value)
    }
}

fn write_json(writer: &mut Writer<'_>, value: &(impl serde::Serialize + ?Sized)) -> fmt::Result {
    let text = serde_json::to_string(value).map_err(|_| fmt::Error)?;
    writer.write_str(&text)
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

    /// What a subscriber writes, for comparing formats.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// A request line as `log_request` logs it, with `path` as given.
    fn log_request_line(path: &str, elapsed_ms: f64) {
        tracing::info!(
            name: REQUEST_EVENT,
            target: "tfmirror::http",
            method = "GET",
            path,
            version = "HTTP/1.1",
            status = 200_u16,
            bytes = 268_u64,
            elapsed_ms,
            cache = "hit",
            "request"
        );
    }

    /// The line written by `tracing-subscriber`'s own format and by `RequestLines`, each
    /// subscriber built as `init` builds it.
    fn both_formats(json: bool, log: impl Fn()) -> (String, String) {
        let (theirs, ours) = (Captured::default(), Captured::default());
        let builder = |to: Captured| tracing_subscriber::fmt().with_ansi(false).with_writer(to);
        if json {
            let reference = builder(theirs.clone()).json().finish();
            tracing::subscriber::with_default(reference, &log);
            let fast = builder(ours.clone())
                .json()
                .event_format(RequestLines::json(tracing_subscriber::fmt::format().json()))
                .finish();
            tracing::subscriber::with_default(fast, &log);
        } else {
            let reference = builder(theirs.clone()).finish();
            tracing::subscriber::with_default(reference, &log);
            let fast = builder(ours.clone())
                .event_format(RequestLines::text(tracing_subscriber::fmt::format()))
                .finish();
            tracing::subscriber::with_default(fast, &log);
        }
        let text = |c: &Captured| String::from_utf8(lock(&c.0).clone()).unwrap();
        (text(&theirs), text(&ours))
    }

    /// The line with its timestamp (`2026-01-02T03:04:05.678901Z`) replaced by `T`, after
    /// checking its shape.
    fn without_timestamp(line: &str) -> String {
        let start = line.find("20").expect("a timestamp");
        let stamp = &line[start..start + 27];
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        assert_eq!(shape, "0000-00-00T00:00:00.000000Z", "{line}");
        format!("{}T{}", &line[..start], &line[start + 27..])
    }

    const AWKWARD_PATHS: [&str; 5] = [
        "/v1/providers/hashicorp/aws/versions",
        "/v1/providers/a\"b/c\\d/versions",
        "/v1/providers/ünïcødé/x/versions",
        "/v1/providers/tab\there/nl\n/versions",
        "/mirror/registry.terraform.io/hashicorp/aws/index.json?q=%2e",
    ];

    /// Durations as `log_request` rounds them, and some it never makes (the general path).
    const ELAPSED: [f64; 14] = [
        3.031,
        0.0,
        0.001,
        0.01,
        0.1,
        0.052,
        12.5,
        100.0,
        1234.567,
        99_999.999,
        8.0e12,
        1.0e-7,
        0.123_456_7,
        1.0e17,
    ];

    #[test]
    fn request_lines_are_written_as_the_text_format_writes_them() {
        for path in AWKWARD_PATHS {
            for elapsed in ELAPSED {
                let (theirs, ours) = both_formats(false, || log_request_line(path, elapsed));
                assert!(theirs.contains("request method="), "{theirs}");
                assert_eq!(without_timestamp(&ours), without_timestamp(&theirs));
            }
        }
    }

    #[test]
    fn request_lines_are_written_as_the_json_format_writes_them() {
        for path in AWKWARD_PATHS {
            for elapsed in ELAPSED {
                let (theirs, ours) = both_formats(true, || log_request_line(path, elapsed));
                let value: serde_json::Value = serde_json::from_str(&ours).unwrap();
                assert_eq!(value["fields"]["path"], path);
                assert_eq!(without_timestamp(&ours), without_timestamp(&theirs));
            }
        }
    }

    /// Microseconds as `log_request` measures them, written by hand.
    const ELAPSED_MICROS: [u64; 10] = [
        3031,
        0,
        1,
        10,
        100,
        52,
        12_500,
        1_234_567,
        99_999_999,
        8_000_000_000_000_000,
    ];

    #[test]
    fn request_lines_written_by_hand_match_both_formats() {
        for (json, format) in [(false, LogFormat::Text), (true, LogFormat::Json)] {
            for path in AWKWARD_PATHS {
                for micros in ELAPSED_MICROS {
                    let line = RequestLine {
                        method: "GET",
                        path,
                        version: "HTTP/1.1",
                        status: 200,
                        bytes: 268,
                        elapsed: std::time::Duration::from_micros(micros),
                        cache: "hit",
                    };
                    let (theirs, _) =
                        both_formats(json, || log_request_line(path, line.elapsed_ms()));
                    let mut ours = Vec::new();
                    line.write(format, SystemTime::now(), &mut ours);
                    let ours = String::from_utf8(ours).unwrap();
                    assert_eq!(without_timestamp(&ours), without_timestamp(&theirs));
                }
            }
        }
    }

    #[test]
    fn a_request_line_is_rounded_to_the_microsecond() {
        for (nanos, ms) in [(1_499, "0.001"), (1_500, "0.002"), (999_999_499, "999.999")] {
            let line = RequestLine {
                method: "GET",
                path: "/",
                version: "HTTP/1.1",
                status: 200,
                bytes: 0,
                elapsed: std::time::Duration::from_nanos(nanos),
                cache: "-",
            };
            let mut out = Vec::new();
            line.write(LogFormat::Text, SystemTime::now(), &mut out);
            let out = String::from_utf8(out).unwrap();
            assert!(out.contains(&format!(" elapsed_ms={ms} ")), "{out}");
            assert_eq!(line.elapsed_ms().to_string(), ms);
        }
    }

    #[test]
    fn other_events_and_request_lines_inside_spans_keep_the_full_format() {
        for json in [false, true] {
            let (theirs, ours) = both_formats(json, || {
                tracing::warn!(target: "tfmirror::mirror", key = %"aws", error = "boom", "refresh failed");
                let span = tracing::info_span!("versions", provider = %"aws");
                let _entered = span.enter();
                log_request_line("/in/a/span", 1.0);
            });
            assert!(
                ours.contains("refresh failed") && ours.contains("versions"),
                "{ours}"
            );
            let lines = |text: &str| text.lines().map(without_timestamp).collect::<Vec<_>>();
            assert_eq!(lines(&ours), lines(&theirs));
        }
    }

    #[test]
    fn timestamps_have_the_default_timers_form() {
        let cases = [
            (1_780_000_000, 123_456, "2026-05-28T20:26:40.123456Z"),
            (951_868_799, 7, "2000-02-29T23:59:59.000007Z"),
            (0, 0, "1970-01-01T00:00:00.000000Z"),
        ];
        for (secs, micros, expected) in cases {
            let at = UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000);
            let mut text = String::new();
            write_timestamp(&mut Writer::new(&mut text), at).unwrap();
            assert_eq!(text, expected);
        }
    }

    #[test]
    fn days_become_dates_across_leap_years_and_centuries() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (-25_508, (1900, 3, 1)),
            (20_818, (2026, 12, 31)),
            (47_540, (2100, 2, 28)),
        ] {
            assert_eq!(civil_from_days(days), date, "day {days}");
        }
    }

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
