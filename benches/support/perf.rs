//! The performance comparison: tfmirror against nginx `proxy_cache` on the same data, in one
//! run, both logging as deployed — cached JSON over plain HTTP/1.1 and over TLS 1.3 with
//! HTTP/1.1 (wrk) and HTTP/2 (h2load), the request log's own cost, cached archives (1 MB
//! and 100 MB) plain and over TLS with a large-body client (4 MiB reads, a thread per
//! connection) and the server's CPU-seconds per GB, memory, growth with size (an aws-sized
//! version list, many cached releases, idle connections), a cold miss shared by eight
//! clients, start-up time. `bench/run.sh` runs it at full size (`benches/perf.rs`); a smoke
//! run is part of `cargo test` (`tests/bench_smoke.rs`). Only those two targets include this
//! module (next to `tests/common`, which it builds on).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::common::{
    config_toml, publisher_key,
    serving::{rss_kb, Serving},
    FakeRelease, FakeUpstream, MirrorOptions, Published,
};
use futures_util::StreamExt;

pub struct Options {
    /// Tiny sizes and one-second measurements.
    pub quick: bool,
    /// Even less: one measurement of each kind (the `cargo test` smoke run).
    pub smoke: bool,
    pub duration: u64,
    /// Each comparison alternates tfmirror and nginx this many times and reports the median of
    /// each: the machine's load drifts, and alternating spreads the drift over both sides.
    pub rounds: usize,
    pub big_bytes: usize,
    pub small_bytes: usize,
    pub upstream_bytes_per_sec: usize,
    pub binary: PathBuf,
    /// After warming both caches, print their URLs and process ids and wait this many seconds
    /// before measuring: time to attach a profiler (`perf record -p`, `heaptrack -p`) by hand.
    pub hold: u64,
    /// `perf record` both servers during the first round of the big-archive and download-
    /// document measurements; profiles and the top of each report go to this directory.
    pub profile: Option<PathBuf>,
    /// Only these sections of the table (`--only json,log,tls,archives,growth,idle,many,cold,
    /// startup`); `None`: all of them.
    pub only: Option<Vec<String>>,
}

impl Options {
    /// From command-line flags: `--quick`, `--duration SECS`, `--rounds N`, `--big-mib N`,
    /// `--upstream-mibps N`, `--hold SECS`, `--profile DIR`, `--only SECTION,...`.
    pub fn parse(binary: PathBuf) -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let quick = args.iter().any(|a| a == "--quick");
        Self {
            quick,
            smoke: false,
            duration: value("--duration").unwrap_or(if quick { 1 } else { 3 }) as u64,
            rounds: value("--rounds")
                .unwrap_or(if quick { 1 } else { 3 })
                .max(1),
            big_bytes: value("--big-mib").unwrap_or(if quick { 2 } else { 100 }) * 1024 * 1024,
            small_bytes: if quick { 64 * 1024 } else { 1024 * 1024 },
            upstream_bytes_per_sec: value("--upstream-mibps").unwrap_or(if quick { 4 } else { 10 })
                * 1024
                * 1024,
            binary,
            hold: value("--hold").unwrap_or(0) as u64,
            profile: args
                .iter()
                .position(|a| a == "--profile")
                .and_then(|i| args.get(i + 1))
                .map(PathBuf::from),
            only: args
                .iter()
                .position(|a| a == "--only")
                .and_then(|i| args.get(i + 1))
                .map(|list| list.split(',').map(str::to_owned).collect()),
        }
    }

    /// Whether the section `name` of the table is measured.
    pub fn runs(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    }
}

/// nginx's master process, stopped on drop.
struct Proc(Child);

impl Drop for Proc {
    /// SIGTERM first: nginx's master stops its workers only when asked nicely.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to a minute) until `pid` has used no CPU for half a second.
fn wait_until_idle(pid: u32) {
    let cpu_ticks = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // Fields after the parenthesised command name; utime and stime are 14th and 15th.
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = cpu_ticks();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = cpu_ticks();
        if now <= last + 1 {
            return;
        }
        last = now;
    }
}

/// Samples the RSS of `pids` (summed) until stopped; returns the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let rss: u64 = pids.iter().map(|pid| rss_kb(*pid)).sum();
                p.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// What installs wrk and nginx.
const INSTALLER: &str = "tests/run.sh (for the benchmark: bench/run.sh)";

/// The panic for a tool that cannot be started: when it is missing, which script installs it.
fn cannot_start(tool: &str, installer: &str, package: &str, e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::NotFound {
        panic!(
            "{tool} not found: run {installer}, which installs it (or apt-get install {package})"
        );
    }
    panic!("cannot start {tool}: {e}")
}

/// What one load run measured. `cpu_seconds` is the server's (nginx: all its processes)
/// user and system CPU time during the run, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    requests_per_sec: f64,
    bytes_per_sec: f64,
    /// 0 when the client does not report it (h2load, the large-body client).
    p99_ms: f64,
    non_2xx: u64,
    seconds: f64,
    cpu_seconds: f64,
}

impl Load {
    /// Server CPU-seconds per GB (10^9 bytes) sent.
    fn cpu_per_gb(&self) -> f64 {
        self.cpu_seconds / (self.bytes_per_sec * self.seconds / 1e9).max(1e-9)
    }

    /// Server CPU per wall-clock second (1.0: one core busy).
    fn cpu_share(&self) -> f64 {
        self.cpu_seconds / self.seconds.max(1e-9)
    }
}

/// User and system CPU ticks of `pids` (1/100 s each: Linux's USER_HZ in `/proc`).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Runs `load` and charges it the CPU `pids` used meanwhile.
fn with_cpu(pids: &[u32], load: impl FnOnce() -> Load) -> Load {
    let before = cpu_ticks(pids);
    let started = Instant::now();
    let mut result = load();
    result.cpu_seconds = cpu_ticks(pids).saturating_sub(before) as f64 / 100.0;
    if result.seconds == 0.0 {
        result.seconds = started.elapsed().as_secs_f64();
    }
    result
}

fn wrk(url: &str, connections: usize, seconds: u64, headers: &[&str]) -> Load {
    let mut command = Command::new("wrk");
    command.args([
        "-t",
        &connections.min(2).to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{seconds}s"),
        "--latency",
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command
        .arg(url)
        .output()
        .unwrap_or_else(|e| cannot_start("wrk", INSTALLER, "wrk", &e));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut result = Load {
        seconds: seconds as f64,
        ..Load::default()
    };
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("Transfer/sec:") {
            result.bytes_per_sec = parse_size(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            result.p99_ms = parse_ms(v.trim());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    result
}

/// h2load (nghttp2-client): HTTP/2 over TLS, one stream at a time per connection.
fn h2load(url: &str, connections: usize, seconds: u64, headers: &[&str]) -> Load {
    let mut command = Command::new("h2load");
    command.args([
        "-t",
        &connections.min(2).to_string(),
        "-c",
        &connections.to_string(),
        "-m",
        "1",
        "-D",
        &seconds.to_string(),
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command
        .arg(url)
        .output()
        .unwrap_or_else(|e| cannot_start("h2load", INSTALLER, "nghttp2-client", &e));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut result = Load {
        seconds: seconds as f64,
        ..Load::default()
    };
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // "finished in 3.00s, 41234.33 req/s, 12.34MB/s"
            let parts: Vec<&str> = rest.split(", ").collect();
            if let Some(rps) = parts.get(1).and_then(|p| p.strip_suffix(" req/s")) {
                result.requests_per_sec = rps.parse().unwrap_or(0.0);
            }
            if let Some(rate) = parts.get(2).and_then(|p| p.strip_suffix("/s")) {
                result.bytes_per_sec = parse_size(rate);
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            // "123 2xx, 0 3xx, 0 4xx, 0 5xx"
            let count = |class: &str| {
                rest.split(", ")
                    .find_map(|p| p.strip_suffix(class))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            result.non_2xx = count(" 4xx") + count(" 5xx");
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // "N total, N started, N done, N succeeded, F failed, ..."
            let failed = rest
                .split(", ")
                .find_map(|p| p.strip_suffix(" failed"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            result.non_2xx += failed;
        }
    }
    assert!(
        result.requests_per_sec > 0.0,
        "h2load measured nothing for {url}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    result
}

/// Where a large-body client connects, and how.
#[derive(Clone)]
struct Target {
    addr: std::net::SocketAddr,
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// `http://127.0.0.1:PORT/PATH` or `https://...` (then `tls` says which roots to trust).
    fn new(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap());
        assert_eq!(scheme == "https", tls.is_some(), "{url}");
        Self {
            addr: authority.parse().unwrap(),
            path: path.to_owned(),
            tls,
        }
    }
}

/// A client that trusts `cert` (PEM) and offers HTTP/1.1 only.
fn tls_client(cert: &Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A connection, plain or TLS.
fn connect(target: &Target) -> Box<dyn ReadWrite> {
    let tcp = std::net::TcpStream::connect(target.addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    match &target.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    }
}

trait ReadWrite: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> ReadWrite for T {}

/// Bytes one large-body client reads at a time.
const LARGE_BODY_READ_BYTES: usize = 4 * 1024 * 1024;

/// The large-body client: `connections` OS threads, each with one keep-alive connection,
/// asking for the file again and again for `seconds` and reading it `LARGE_BODY_READ_BYTES`
/// at a time (wrk reads 8 KiB at a time, and is the limit near 1.5 GB/s).
fn large_bodies(target: &Target, connections: usize, seconds: u64) -> Load {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let target = target.clone();
            std::thread::spawn(move || fetch_until(&target, deadline))
        })
        .collect();
    let (mut requests, mut bytes, mut non_2xx) = (0u64, 0u64, 0u64);
    for t in threads {
        let (r, b, n) = t.join().unwrap();
        requests += r;
        bytes += b;
        non_2xx += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    Load {
        requests_per_sec: requests as f64 / seconds,
        bytes_per_sec: bytes as f64 / seconds,
        non_2xx,
        seconds,
        ..Load::default()
    }
}

/// One connection's loop: (responses, body bytes, non-200 answers).
fn fetch_until(target: &Target, deadline: Instant) -> (u64, u64, u64) {
    use std::io::{Read, Write};
    let mut conn = connect(target);
    let mut buf = vec![0u8; LARGE_BODY_READ_BYTES];
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tfmirror-bench\r\n\r\n",
        target.path
    );
    let (mut responses, mut bytes) = (0u64, 0u64);
    while Instant::now() < deadline {
        conn.write_all(request.as_bytes()).unwrap();
        conn.flush().unwrap();
        // The head, and whatever of the body came with it.
        let mut filled = 0;
        let head_end = loop {
            let n = conn.read(&mut buf[filled..]).unwrap();
            assert!(n > 0, "connection closed before the response head");
            filled += n;
            if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return (responses, bytes, 1);
        }
        let length: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        let mut remaining = length - (filled - head_end) as u64;
        while remaining > 0 {
            let want = buf.len().min(remaining as usize);
            let n = conn.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "connection closed mid-body");
            remaining -= n as u64;
        }
        responses += 1;
        bytes += length;
    }
    (responses, bytes, 0)
}

/// Sampling profiles of both servers (`--profile DIR`).
struct Profiler {
    dir: PathBuf,
    /// How long a measurement runs.
    seconds: u64,
}

impl Profiler {
    /// Runs `measure` while `perf record` samples `pids` (call graphs, kernel included); keeps
    /// `NAME.data` and writes the top of its report, by shared object and symbol, to `NAME.txt`.
    fn record<T>(&self, name: &str, pids: &[u32], measure: impl FnOnce() -> T) -> T {
        let seconds = self.seconds;
        let data = self.dir.join(format!("{name}.data"));
        // nginx's cache loader exits a minute after start; perf refuses a pid that is gone.
        let pids = pids
            .iter()
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut perf = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-p", &pids, "-o"])
            .arg(&data)
            .args(["--", "sleep", &(seconds + 1).to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| cannot_start("perf", "bench/run.sh --profile", "linux-perf", &e));
        std::thread::sleep(Duration::from_millis(300));
        let result = measure();
        let _ = perf.wait();
        let report = Command::new("perf")
            .args(["report", "--no-children", "--stdio", "-g", "none"])
            .args(["--sort", "dso,symbol", "--percent-limit", "1", "-i"])
            .arg(&data)
            .output()
            .expect("perf report");
        std::fs::write(self.dir.join(format!("{name}.txt")), report.stdout).unwrap();
        result
    }
}

/// One side of a comparison: the server's processes and a load against it.
struct Side<'a> {
    pids: &'a [u32],
    load: &'a dyn Fn() -> Load,
}

/// `ours` and `theirs` in turn, `rounds` times; the median of each figure. With a profiler,
/// the first round of each side is profiled under `name`.
fn compare(
    ours: Side<'_>,
    theirs: Side<'_>,
    rounds: usize,
    profile: Option<(&Profiler, &str)>,
) -> (Load, Load) {
    let mut runs = (Vec::new(), Vec::new());
    for round in 0..rounds {
        match profile.filter(|_| round == 0) {
            Some((profiler, name)) => {
                runs.0
                    .push(profiler.record(&format!("{name}-tfmirror"), ours.pids, || {
                        with_cpu(ours.pids, ours.load)
                    }));
                runs.1
                    .push(profiler.record(&format!("{name}-nginx"), theirs.pids, || {
                        with_cpu(theirs.pids, theirs.load)
                    }));
            }
            // Each side goes first in every other round: what one run leaves behind (work
            // still finishing, a warm cache) lands on both sides alike.
            None if round % 2 == 1 => {
                runs.1.push(with_cpu(theirs.pids, theirs.load));
                runs.0.push(with_cpu(ours.pids, ours.load));
            }
            None => {
                runs.0.push(with_cpu(ours.pids, ours.load));
                runs.1.push(with_cpu(theirs.pids, theirs.load));
            }
        }
    }
    (median(&runs.0), median(&runs.1))
}

fn median(runs: &[Load]) -> Load {
    let middle = |figure: fn(&Load) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    // CPU per byte is a ratio of one run's figures: take the median run's, by throughput.
    let mut by_rate: Vec<&Load> = runs.iter().collect();
    by_rate.sort_by(|a, b| a.bytes_per_sec.total_cmp(&b.bytes_per_sec));
    let typical = by_rate[by_rate.len() / 2];
    Load {
        requests_per_sec: middle(|w| w.requests_per_sec),
        bytes_per_sec: typical.bytes_per_sec,
        p99_ms: middle(|w| w.p99_ms),
        non_2xx: runs.iter().map(|w| w.non_2xx).sum(),
        seconds: typical.seconds,
        cpu_seconds: typical.cpu_seconds,
    }
}

fn parse_size(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or(0.0);
    number
        * match unit {
            "KB" => 1024.0,
            "MB" => 1024.0 * 1024.0,
            "GB" => 1024.0 * 1024.0 * 1024.0,
            _ => 1.0,
        }
}

fn parse_ms(text: &str) -> f64 {
    if let Some(us) = text.strip_suffix("us") {
        us.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().unwrap_or(0.0)
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse::<f64>().unwrap_or(0.0) * 1000.0
    } else {
        0.0
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The baseline: nginx as a `proxy_cache` in front of the upstream, logging as deployed
/// (access log on, buffered), over plain HTTP and over TLS 1.3 (h2 and http/1.1 by ALPN)
/// with tfmirror's certificate; `/static/` serves `static_dir` from disk (checking the
/// large-body client).
struct Nginx {
    proc: Proc,
    /// `http://127.0.0.1:PORT`.
    plain: String,
    /// `https://127.0.0.1:PORT`.
    tls: String,
}

fn start_nginx(dir: &Path, upstream: &str, cert: &Path, key: &Path, static_dir: &Path) -> Nginx {
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let user = if std::env::var("USER").as_deref() == Ok("root") || is_root() {
        "user root;"
    } else {
        ""
    };
    let location = format!(
        r#"location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache providers;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      proxy_max_temp_file_size 0;
    }}
    location /static/ {{
      alias {static_dir}/;
    }}"#,
        static_dir = static_dir.display()
    );
    let conf = format!(
        r#"{user}
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {dir}/logs/access.log combined buffer=64k flush=1s;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  proxy_cache_path {dir}/cache levels=1:2 keys_zone=providers:10m max_size=10g inactive=1d use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    {location}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    {location}
  }}
}}
"#,
        dir = dir.display(),
        cert = cert.display(),
        key = key.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| cannot_start("nginx", INSTALLER, "nginx", &e));
    let plain = format!("http://127.0.0.1:{port}");
    wait_until_up(&format!("{plain}/"));
    wait_until_up(&format!("http://127.0.0.1:{tls_port}/"));
    Nginx {
        proc: Proc(child),
        plain,
        tls: format!("https://127.0.0.1:{tls_port}"),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

fn wait_until_up(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "{url} never came up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// tfmirror on a fresh or given cache, its log (`RUST_LOG=rust_log`) to `DIR/tfmirror.log`;
/// over TLS with a certificate generated into `DIR/certs` when `tls`.
fn start_tfmirror(binary: &Path, dir: &Path, upstream: &str, rust_log: &str, tls: bool) -> Serving {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = dir.join("tfmirror.toml");
    let certs = dir.join("certs");
    std::fs::write(
        &config,
        config_toml(&MirrorOptions {
            tls_dir: tls.then_some(certs.as_path()),
            ..MirrorOptions::new(upstream.to_owned(), &cache)
        }),
    )
    .unwrap();
    Serving::start_logging_to(binary, &config, rust_log, &dir.join("tfmirror.log"))
}

/// The request log as shipped (`info`), and off.
const LOG_AS_SHIPPED: &str = "info";
const LOG_OFF: &str = "warn,tfmirror::cli=info";

/// Eight clients at once for an uncached archive: (slowest first byte, last finish).
async fn cold_miss(url: &str, clients: usize) -> (Duration, Duration, bool) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let ok = response.status() == 200;
                let mut first = None;
                let mut stream = response.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.unwrap();
                    if !chunk.is_empty() {
                        first.get_or_insert_with(|| started.elapsed());
                    }
                }
                (first.unwrap_or_default(), started.elapsed(), ok)
            })
        })
        .collect();
    let mut slowest_first = Duration::ZERO;
    let mut last = Duration::ZERO;
    let mut all_ok = true;
    for task in tasks {
        let (first, done, ok) = task.await.unwrap();
        slowest_first = slowest_first.max(first);
        last = last.max(done);
        all_ok &= ok;
    }
    (slowest_first, last, all_ok)
}

/// Throughput with the server's CPU cost: `2.31 GB/s (0.42 CPU-s/GB, 97% CPU)`.
fn gbps(load: &Load) -> String {
    format!(
        "{:.2} GB/s ({:.2} CPU-s/GB, {:.0}% CPU)",
        load.bytes_per_sec / 1e9,
        load.cpu_per_gb(),
        load.cpu_share() * 100.0
    )
}

/// Requests per second with p99 when the client reports it, and the server's CPU share.
fn rps(load: &Load) -> String {
    let p99 = if load.p99_ms > 0.0 {
        format!("{:.1} ms, ", load.p99_ms)
    } else {
        String::new()
    };
    format!(
        "{:.0} ({p99}{:.0}% CPU)",
        load.requests_per_sec,
        load.cpu_share() * 100.0
    )
}

/// Rows of measurement, tfmirror, nginx, ratio, target.
pub struct Table(pub Vec<[String; 5]>);

impl Table {
    fn row(&mut self, what: &str, ours: String, theirs: String, ratio: f64, target: &str) {
        self.0.push([
            what.to_owned(),
            ours,
            theirs,
            format!("{ratio:.2}×"),
            target.to_owned(),
        ]);
    }
}

fn publish(upstream: &FakeUpstream, provider: &str, bytes: usize) -> Published {
    FakeRelease {
        payload_bytes: bytes,
        platforms: vec![("linux", "amd64")],
        ..FakeRelease::new(provider, "1.0.0")
    }
    .publish(upstream, publisher_key())
}

impl Table {
    /// The Markdown table.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "| measurement | tfmirror | nginx proxy_cache | ratio | target |\n|---|---|---|---|---|\n",
        );
        for [a, b, c, d, e] in &self.0 {
            let ratio = if d == "0.00×" { "-" } else { d.as_str() };
            out.push_str(&format!("| {a} | {b} | {c} | {ratio} | {e} |\n"));
        }
        out
    }
}

/// The nginx master and its workers.
fn nginx_processes(master: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &master.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .chain(std::iter::once(master))
        .collect()
}

/// Providers listed like `aws`, each asked for once, cold, for the cold-list row's median.
const COLD_LISTINGS: [&str; 4] = ["aws-b", "aws-c", "aws-d", "aws-e"];

/// Registers `versions` × `platforms` versions of `product` on the upstream, listed only (no
/// files): an aws-sized listing.
fn register_listing(upstream: &FakeUpstream, product: &str, versions: usize, platforms: usize) {
    const PLATFORMS: [(&str, &str); 14] = [
        ("darwin", "amd64"),
        ("darwin", "arm64"),
        ("freebsd", "386"),
        ("freebsd", "amd64"),
        ("freebsd", "arm"),
        ("linux", "386"),
        ("linux", "amd64"),
        ("linux", "arm"),
        ("linux", "arm64"),
        ("openbsd", "386"),
        ("openbsd", "amd64"),
        ("solaris", "amd64"),
        ("windows", "386"),
        ("windows", "amd64"),
    ];
    for i in 0..versions {
        let v = format!("{}.{}.{}", 1 + i / 100, (i / 10) % 10, i % 10);
        let builds: Vec<_> = PLATFORMS
            .iter()
            .take(platforms)
            .map(|(os, arch)| {
                let filename = format!("{product}_{v}_{os}_{arch}.zip");
                serde_json::json!({
                    "name": product, "version": v, "os": os, "arch": arch,
                    "filename": filename,
                    "url": format!("{}/{product}/{v}/{filename}", upstream.url()),
                })
            })
            .collect();
        let sums = format!("{product}_{v}_SHA256SUMS");
        upstream.register_version(
            product,
            &v,
            serde_json::json!({
                "name": product, "version": v, "shasums": sums,
                "shasums_signature": format!("{sums}.sig"),
                "builds": builds,
            }),
        );
    }
}

/// Opens `count` keep-alive connections, each having sent one request and read its answer,
/// and holds them until dropped.
fn idle_connections(target: &Target, count: usize) -> Vec<Box<dyn ReadWrite>> {
    use std::io::{Read, Write};
    (0..count)
        .map(|_| {
            let mut conn = connect(target);
            conn.write_all(
                format!("GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", target.path).as_bytes(),
            )
            .unwrap();
            conn.flush().unwrap();
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap();
            assert!(
                n > 0 && buf.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
            conn
        })
        .collect()
}

/// The status page (first request, the next, past the refresh window) and `/metrics`, on a
/// tfmirror started with `config` on a cache of `count` releases.
async fn status_rows(
    options: &Options,
    client: &reqwest::Client,
    config: &Path,
    dir: &Path,
    count: usize,
    table: &mut Table,
) {
    let many = Serving::start_logging_to(
        &options.binary,
        config,
        LOG_AS_SHIPPED,
        &dir.join(format!("tfmirror-{count}.log")),
    );
    let timed = |path: &str| {
        let url = format!("{}{path}", many.base);
        let client = client.clone();
        async move {
            let started = Instant::now();
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            let body = response.bytes().await.unwrap();
            (started.elapsed(), body)
        }
    };
    // Started as an operator starts it: the listing made at start-up is done first.
    wait_until_idle(many.pid());
    let (first_page, page) = timed("/").await;
    let (again_page, _) = timed("/").await;
    let (metrics_time, _) = timed("/metrics").await;
    let past_window = if options.smoke {
        "-".to_owned()
    } else {
        // Past the refresh window: answered from the last listing, listed again behind it.
        tokio::time::sleep(tfmirror::ops::STATUS_REFRESH + Duration::from_millis(100)).await;
        let (late, _) = timed("/").await;
        format!("{:.1} ms", late.as_secs_f64() * 1e3)
    };
    // Every release shown verified (a copy that did not would be left out).
    let shown = String::from_utf8_lossy(&page).matches("<tr").count();
    eprintln!("bench: status page with {count} cached releases: {shown} table rows");
    table.row(
        &format!(
            "growth, {count} cached releases: status page ({} KB): first request, next, past the refresh window",
            page.len() / 1000
        ),
        format!(
            "{:.1} ms, {:.1} ms, {past_window}",
            first_page.as_secs_f64() * 1e3,
            again_page.as_secs_f64() * 1e3
        ),
        "-".to_owned(),
        0.0,
        "≤ 50 ms each",
    );
    table.row(
        &format!("growth, {count} cached releases: `/metrics`"),
        format!("{:.1} ms", metrics_time.as_secs_f64() * 1e3),
        "-".to_owned(),
        0.0,
        "≤ 50 ms",
    );
}

/// Runs every measurement against both servers and returns the table.
pub async fn run(options: &Options) -> Table {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    eprintln!(
        "bench: generating archives ({} and {} bytes)",
        options.small_bytes, options.big_bytes
    );
    let small = publish(&upstream, "small", options.small_bytes);
    // A second version, so the small provider's list is the "2 versions" of the growth rows.
    FakeRelease {
        payload_bytes: 1024,
        platforms: vec![("linux", "amd64")],
        ..FakeRelease::new("small", "1.1.0")
    }
    .publish(&upstream, publisher_key());
    let big = publish(&upstream, "big", options.big_bytes);
    let cold = publish(&upstream, "cold", options.big_bytes);
    let small_zip = small.zip_name("linux", "amd64");
    let big_zip = big.zip_name("linux", "amd64");
    let cold_zip = cold.zip_name("linux", "amd64");
    let static_dir = dir.path().join("static");
    std::fs::create_dir_all(&static_dir).unwrap();
    std::fs::write(static_dir.join(&big_zip), &big.zips[&big_zip]).unwrap();
    let (listed_versions, listed_platforms) = if options.smoke { (20, 14) } else { (600, 14) };
    // `aws` for the hot row and the memory row; the same listing under more names, so the
    // cold row is a median of several cold lists and not one sample.
    for product in std::iter::once("aws".to_owned()).chain(COLD_LISTINGS.map(String::from)) {
        register_listing(
            &upstream,
            &format!("terraform-provider-{product}"),
            listed_versions,
            listed_platforms,
        );
    }

    // tfmirror three times: plain HTTP with the request log as shipped, the same with it
    // off, and over TLS (as shipped); nginx with the TLS one's certificate.
    let bin = &options.binary;
    let tls = start_tfmirror(
        bin,
        &dir.path().join("tfm-tls"),
        &upstream.url(),
        LOG_AS_SHIPPED,
        true,
    );
    let tfm = start_tfmirror(
        bin,
        &dir.path().join("tfm"),
        &upstream.url(),
        LOG_AS_SHIPPED,
        false,
    );
    let quiet = start_tfmirror(
        bin,
        &dir.path().join("tfm-quiet"),
        &upstream.url(),
        LOG_OFF,
        false,
    );
    let cert = dir.path().join("tfm-tls/certs/localhost.pem");
    let key = dir.path().join("tfm-tls/certs/localhost-key.pem");
    let nginx = start_nginx(
        &dir.path().join("nginx"),
        &upstream.url(),
        &cert,
        &key,
        &static_dir,
    );
    std::thread::sleep(Duration::from_millis(200));
    let nginx_pids = nginx_processes(nginx.proc.0.id());
    let trust = tls_client(&cert);

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let versions_path = "/v1/providers/myproviders/small/versions";
    let download_path = "/v1/providers/myproviders/small/1.0.0/download/linux/amd64";
    let small_path = format!("/v1/providers/myproviders/small/1.0.0/files/{small_zip}");
    let big_path = format!("/v1/providers/myproviders/big/1.0.0/files/{big_zip}");
    let json_theirs = "/terraform-provider-small/index.json";
    let small_theirs = format!("{}/{small_zip}", small.dir);
    let big_theirs = format!("{}/{big_zip}", big.dir);
    let mut warm = Vec::new();
    for base in [&tfm.base, &tls.base, &quiet.base] {
        for path in [versions_path, download_path] {
            warm.push(format!("{base}{path}"));
        }
    }
    for base in [&tfm.base, &tls.base] {
        for path in [&small_path, &big_path] {
            warm.push(format!("{base}{path}"));
        }
    }
    // nginx caches on the second request's completion of the first; ask twice.
    for _ in 0..2 {
        for base in [&nginx.plain, &nginx.tls] {
            for path in [json_theirs, &small_theirs, &big_theirs] {
                warm.push(format!("{base}{path}"));
            }
        }
    }
    for url in warm {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.unwrap();
    }
    // Let the warm-up's aftermath finish first: tfmirror computes each new archive's `h1:` in
    // the background, seconds of CPU for 100 MiB, which would land in the first measurement.
    for pid in nginx_pids
        .iter()
        .chain([&tfm.pid(), &tls.pid(), &quiet.pid()])
    {
        wait_until_idle(*pid);
    }
    let upstream_after_warm = upstream.total_hits();
    if options.hold > 0 {
        eprintln!(
            "bench: holding {} s. tfmirror pids {} (plain), {} (TLS), {} (plain, log off) at {}{big_path}, {}{versions_path}, {}{versions_path}\nbench: nginx pids {nginx_pids:?} at {}{big_theirs}",
            options.hold,
            tfm.pid(),
            tls.pid(),
            quiet.pid(),
            tfm.base,
            tfm.base,
            quiet.base,
            nginx.plain,
        );
        tokio::time::sleep(Duration::from_secs(options.hold)).await;
    }

    let (d, rounds) = (options.duration, options.rounds);
    // The rows whose run-to-run spread is widest on a shared two-core host (the request log
    // on against off, the growth list over HTTP/2) take more rounds for their medians.
    let noisy_rounds = if options.smoke { rounds } else { rounds.max(5) };
    // Large bodies need a little longer to settle, except in the smoke run.
    let big_d = if options.smoke { d } else { d.max(2) };
    let profiler = options.profile.as_ref().map(|dir| {
        std::fs::create_dir_all(dir).unwrap();
        Profiler {
            dir: dir.clone(),
            seconds: big_d,
        }
    });
    let (ours_pids, tls_pids, quiet_pids) = ([tfm.pid()], [tls.pid()], [quiet.pid()]);
    let mut table = Table(Vec::new());
    let connections: &[usize] = if options.smoke { &[16] } else { &[16, 64] };
    let documents: &[(&str, &str)] = if options.smoke {
        &[("version list", versions_path)]
    } else {
        &[
            ("version list", versions_path),
            ("download document", download_path),
        ]
    };

    if options.runs("json") {
        // Cached JSON over plain HTTP/1.1, both logging as deployed.
        for &c in connections {
            for (name, path) in documents {
                let ours = format!("{}{path}", tfm.base);
                let theirs = format!("{}{json_theirs}", nginx.plain);
                let profile = profiler
                    .as_ref()
                    .filter(|_| c == 16 && *name == "download document")
                    .map(|p| (p, "download-document-16"));
                let (r, b) = compare(
                    Side {
                        pids: &ours_pids,
                        load: &|| wrk(&ours, c, d, &[]),
                    },
                    Side {
                        pids: &nginx_pids,
                        load: &|| wrk(&theirs, c, d, &[]),
                    },
                    rounds,
                    profile,
                );
                assert_eq!(r.non_2xx + b.non_2xx, 0, "{ours}");
                table.row(
                    &format!(
                        "plain HTTP/1.1, cached JSON, {name}, {c} conns: req/s (p99, server CPU)"
                    ),
                    rps(&r),
                    rps(&b),
                    r.requests_per_sec / b.requests_per_sec.max(1.0),
                    "≥ 1.0×",
                );
            }
        }
    }
    if options.runs("log") {
        // The request log as shipped against the same build with it off.
        for &c in connections {
            let on = format!("{}{versions_path}", tfm.base);
            let off = format!("{}{versions_path}", quiet.base);
            let (r, b) = compare(
                Side {
                    pids: &ours_pids,
                    load: &|| wrk(&on, c, d, &[]),
                },
                Side {
                    pids: &quiet_pids,
                    load: &|| wrk(&off, c, d, &[]),
                },
                noisy_rounds,
                profiler
                    .as_ref()
                    .filter(|_| c == 16)
                    .map(|p| (p, "request-log-16")),
            );
            table.row(
            &format!("request log as shipped (`info`) vs off (`warn`), tfmirror both sides: version list, {c} conns: req/s"),
            rps(&r),
            format!("{} (tfmirror, log off)", rps(&b)),
            r.requests_per_sec / b.requests_per_sec.max(1.0),
            "≥ 0.95×",
        );
        }
    }
    if options.runs("tls") {
        // Cached JSON over TLS 1.3: HTTP/1.1 (wrk) and HTTP/2 (h2load).
        for (protocol, client) in [
            ("HTTP/1.1", wrk as fn(&str, usize, u64, &[&str]) -> Load),
            ("HTTP/2", h2load),
        ] {
            for &c in connections {
                let ours = format!("{}{versions_path}", tls.base);
                let theirs = format!("{}{json_theirs}", nginx.tls);
                let (r, b) = compare(
                    Side {
                        pids: &tls_pids,
                        load: &|| client(&ours, c, d, &[]),
                    },
                    Side {
                        pids: &nginx_pids,
                        load: &|| client(&theirs, c, d, &[]),
                    },
                    rounds,
                    profiler
                        .as_ref()
                        .filter(|_| c == 16 && protocol == "HTTP/2")
                        .map(|p| (p, "tls-h2-json-16")),
                );
                assert_eq!(r.non_2xx + b.non_2xx, 0, "{ours}");
                table.row(
                    &format!("TLS 1.3 {protocol}, cached JSON, version list, {c} conns: req/s"),
                    rps(&r),
                    rps(&b),
                    r.requests_per_sec / b.requests_per_sec.max(1.0),
                    "≥ 1.0×",
                );
            }
        }
    }
    if options.runs("archives") {
        // Archives, with the large-body client, plain and over TLS. RSS is sampled over the
        // whole alternation: neither process grows while the other is measured.
        let samplers = (
            RssSampler::start(vec![tfm.pid()]),
            RssSampler::start(vec![tls.pid()]),
            RssSampler::start(nginx_pids.clone()),
        );
        let big_clients: &[usize] = if options.smoke { &[8] } else { &[1, 8] };
        for (transport, ours_base, theirs_base, pids, trust) in [
            ("plain HTTP", &tfm.base, &nginx.plain, &ours_pids, None),
            (
                "TLS 1.3",
                &tls.base,
                &nginx.tls,
                &tls_pids,
                Some(trust.clone()),
            ),
        ] {
            let mut runs = vec![(
                format!("{} KiB", options.small_bytes / 1024),
                &small_path,
                &small_theirs,
                8,
            )];
            for &c in big_clients {
                runs.push((
                    format!("{} MiB", options.big_bytes / 1024 / 1024),
                    &big_path,
                    &big_theirs,
                    c,
                ));
            }
            for (size, ours_path, theirs_path, c) in runs {
                let ours = Target::new(&format!("{ours_base}{ours_path}"), trust.clone());
                let theirs = Target::new(&format!("{theirs_base}{theirs_path}"), trust.clone());
                let name = format!(
                    "archive-{}-{}-{c}",
                    if trust.is_some() { "tls" } else { "plain" },
                    size.replace(' ', "")
                );
                let profile = profiler.as_ref().map(|p| (p, name.as_str()));
                let (r, b) = compare(
                    Side {
                        pids,
                        load: &|| large_bodies(&ours, c, big_d),
                    },
                    Side {
                        pids: &nginx_pids,
                        load: &|| large_bodies(&theirs, c, big_d),
                    },
                    rounds,
                    profile,
                );
                assert_eq!(r.non_2xx + b.non_2xx, 0, "{size} archive");
                table.row(
                &format!("{transport}, cached {size} archive, {c} client(s): GB/s (server CPU-s per GB, CPU)"),
                gbps(&r),
                gbps(&b),
                r.bytes_per_sec / b.bytes_per_sec.max(1.0),
                "≥ 1.0×, CPU/GB no worse",
            );
            }
        }
        let (rss_plain, rss_tls, rss_theirs) = (
            samplers.0.finish(),
            samplers.1.finish(),
            samplers.2.finish(),
        );
        table.row(
        "peak RSS while serving the archives (KiB; tfmirror: plain / TLS process; nginx: all processes)",
        format!("{rss_plain} / {rss_tls}"),
        rss_theirs.to_string(),
        rss_plain.max(rss_tls) as f64 / rss_theirs.max(1) as f64,
        "≤ 32 MB each tfmirror",
    );
        // The client itself, on the file nginx serves from disk: it outruns wrk, which reads
        // 8 KiB at a time, so the archive rows measure the servers.
        {
            let url = format!("{}/static/{big_zip}", nginx.plain);
            let target = Target::new(&url, None);
            let (r, b) = compare(
                Side {
                    pids: &nginx_pids,
                    load: &|| large_bodies(&target, 1, big_d),
                },
                Side {
                    pids: &nginx_pids,
                    load: &|| wrk(&url, 1, big_d, &[]),
                },
                rounds,
                None,
            );
            table.row(
            &format!(
                "client check: nginx `sendfile` of the {} MiB file from disk, 1 conn: this large-body client vs wrk",
                options.big_bytes / 1024 / 1024
            ),
            gbps(&r),
            gbps(&b),
            r.bytes_per_sec / b.bytes_per_sec.max(1.0),
            "> 1.0×: the client is not the limit",
        );
        }
    }
    assert_eq!(
        upstream.total_hits(),
        upstream_after_warm,
        "a cached request went upstream"
    );

    if options.runs("growth") {
        // Growth: an aws-sized listing against the two-version one, as Terraform asks for it
        // (TLS, HTTP/2, gzip accepted).
        {
            let product_index = format!("{}/terraform-provider-aws/index.json", upstream.url());
            let started = Instant::now();
            // A client of its own: the fake upstream does not keep connections for long.
            let upstream_json = reqwest::Client::new()
                .get(&product_index)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let upstream_fetch = started.elapsed();
            let aws = format!("{}/v1/providers/myproviders/aws/versions", tls.base);
            // A connection already open, so the cold row times the list, not a handshake.
            client
                .get(format!("{}/healthz", tls.base))
                .send()
                .await
                .unwrap();
            let rss_before = rss_kb(tls.pid());
            let started = Instant::now();
            let response = client.get(&aws).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let list = response.bytes().await.unwrap();
            let cold_list = started.elapsed();
            wait_until_idle(tls.pid());
            let rss_after = rss_kb(tls.pid());
            let shape = format!(
            "{listed_versions} versions × {listed_platforms} platforms ({} KB upstream JSON, {} KB list)",
            upstream_json.len() / 1000,
            list.len() / 1000
        );
            // More cold lists, each timed against its own upstream fetch just before it.
            let mut colds = vec![(cold_list, upstream_fetch)];
            for product in COLD_LISTINGS {
                let index = format!("{}/terraform-provider-{product}/index.json", upstream.url());
                let started = Instant::now();
                let fetched = reqwest::Client::new().get(&index).send().await.unwrap();
                fetched.bytes().await.unwrap();
                let fetch = started.elapsed();
                let url = format!("{}/v1/providers/myproviders/{product}/versions", tls.base);
                let started = Instant::now();
                let response = client.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                colds.push((started.elapsed(), fetch));
                wait_until_idle(tls.pid());
            }
            let ratio = |(list, fetch): &(Duration, Duration)| {
                list.as_secs_f64() / fetch.as_secs_f64().max(1e-6)
            };
            colds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
            let median = colds[colds.len() / 2];
            table.row(
                &format!(
                    "growth, {shape}: cold version list vs one upstream fetch of it (median of {})",
                    colds.len()
                ),
                format!("{:.1} ms", median.0.as_secs_f64() * 1e3),
                format!("{:.1} ms (upstream)", median.1.as_secs_f64() * 1e3),
                ratio(&median),
                "≤ 2×",
            );
            table.row(
                &format!("growth, {shape}: tfmirror RSS after vs before caching it (KiB)"),
                rss_after.to_string(),
                format!("{rss_before} (before)"),
                rss_after as f64 / rss_before.max(1) as f64,
                "bounded",
            );
            let two = format!("{}{versions_path}", tls.base);
            let gzip = ["accept-encoding: gzip"];
            let (r, b) = compare(
                Side {
                    pids: &tls_pids,
                    load: &|| h2load(&aws, 16, d, &gzip),
                },
                Side {
                    pids: &tls_pids,
                    load: &|| h2load(&two, 16, d, &gzip),
                },
                noisy_rounds,
                profiler.as_ref().map(|p| (p, "growth-h2-gzip-aws-vs-two")),
            );
            assert_eq!(r.non_2xx + b.non_2xx, 0);
            table.row(
                &format!(
                    "growth, TLS HTTP/2 gzip, 16 conns, req/s: {shape} vs 2 versions × 1 platform"
                ),
                rps(&r),
                format!("{} (2 versions)", rps(&b)),
                r.requests_per_sec / b.requests_per_sec.max(1.0),
                "≥ 0.9×",
            );
        }
    }
    if options.runs("idle") {
        // Idle keep-alive connections over TLS: what each costs in memory.
        {
            let count = if options.smoke { 50 } else { 1000 };
            let (ours, theirs) = (
                Target::new(&format!("{}/healthz", tls.base), Some(trust.clone())),
                Target::new(&format!("{}{json_theirs}", nginx.tls), Some(trust.clone())),
            );
            let nginx_rss = || nginx_pids.iter().map(|p| rss_kb(*p)).sum::<u64>();
            let before = (rss_kb(tls.pid()), nginx_rss());
            let held = idle_connections(&ours, count);
            std::thread::sleep(Duration::from_millis(300));
            let ours_rss = rss_kb(tls.pid());
            drop(held);
            let held = idle_connections(&theirs, count);
            std::thread::sleep(Duration::from_millis(300));
            let theirs_rss = nginx_rss();
            drop(held);
            table.row(
                &format!("{count} idle keep-alive TLS connections: RSS (KiB; growth)"),
                format!("{ours_rss} (+{})", ours_rss.saturating_sub(before.0)),
                format!("{theirs_rss} (+{})", theirs_rss.saturating_sub(before.1)),
                ours_rss as f64 / theirs_rss.max(1) as f64,
                "≤ 64 MB",
            );
        }
    }
    if options.runs("many") {
        // Growth: the status page and `/metrics` with many releases cached (fetched and
        // verified by `tfmirror prefetch`, as an operator fills a cache).
        {
            let count = match (options.smoke, options.quick) {
                (true, _) => 5,
                (false, true) => 50,
                _ => 1000,
            };
            let started = Instant::now();
            for i in 0..count {
                FakeRelease {
                    payload_bytes: 64,
                    platforms: vec![("linux", "amd64")],
                    ..FakeRelease::new("many", &format!("1.{}.{}", i / 100, i % 100))
                }
                .publish(&upstream, publisher_key());
            }
            let many_dir = dir.path().join("tfm-many");
            let cache = many_dir.join("cache");
            std::fs::create_dir_all(&cache).unwrap();
            let config = many_dir.join("tfmirror.toml");
            std::fs::write(
            &config,
            config_toml(&MirrorOptions {
                extra:
                    "[[prefetch]]\nprovider = \"myproviders/many\"\nplatforms = [\"linux_amd64\"]\n"
                        .to_owned(),
                ..MirrorOptions::new(upstream.url(), &cache)
            }),
        )
        .unwrap();
            let out = tokio::process::Command::new(&options.binary)
                .args(["prefetch", "--jobs", "8", "--config"])
                .arg(&config)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "bench: {count} releases published and prefetched in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            status_rows(options, &client, &config, &many_dir, count, &mut table).await;
            // Ten times as many: the same releases again under nine more upstreams (same URL,
            // same key), their stored files copied rather than fetched — prefetching 10,000
            // takes minutes. Each copy is a release as valid as the original: a release's
            // binding is to its provider, version and signed digests, not to the upstream's name.
            if !options.quick {
                let copies = 9;
                let releases = cache.join("releases");
                let mut toml = std::fs::read_to_string(&config).unwrap();
                for n in 1..=copies {
                    let status = Command::new("cp")
                        .arg("-a")
                        .arg(releases.join("hashicorp"))
                        .arg(releases.join(format!("copy{n}")))
                        .status()
                        .unwrap();
                    assert!(status.success());
                    toml.push_str(&format!(
                        "\n[upstreams.copy{n}]\nurl = {:?}\nsigning_keys = [{:?}]\n",
                        upstream.url(),
                        many_dir.join("publisher.asc")
                    ));
                }
                let config = many_dir.join("tfmirror-copies.toml");
                std::fs::write(&config, toml).unwrap();
                let count = count * (copies + 1);
                status_rows(options, &client, &config, &many_dir, count, &mut table).await;
            }
        }
    }
    if options.runs("cold") {
        // Cold miss: eight clients at once, the upstream throttled.
        let per_chunk = 64 * 1024;
        let pause =
            Duration::from_secs_f64(per_chunk as f64 / options.upstream_bytes_per_sec as f64);
        let cold_path = format!("{}/{cold_zip}", cold.dir);
        upstream.throttle(&cold_path, per_chunk, pause);
        let single_started = Instant::now();
        let direct = client
            .get(format!("{}{cold_path}", upstream.url()))
            .send()
            .await
            .unwrap();
        direct.bytes().await.unwrap();
        let single = single_started.elapsed();
        let hits_before = upstream.hits(&cold_path);
        let sampler = RssSampler::start(vec![tfm.pid()]);
        let (first_ours, last_ours, ok_ours) = cold_miss(
            &format!(
                "{}/v1/providers/myproviders/cold/1.0.0/files/{cold_zip}",
                tfm.base
            ),
            8,
        )
        .await;
        let rss_cold = sampler.finish();
        let hits_ours = upstream.hits(&cold_path) - hits_before;
        let (first_theirs, last_theirs, ok_theirs) =
            cold_miss(&format!("{}{cold_path}", nginx.plain), 8).await;
        let hits_theirs = upstream.hits(&cold_path) - hits_before - hits_ours;
        assert!(ok_ours && ok_theirs);
        table.row(
            "cold miss, 8 clients: upstream downloads",
            hits_ours.to_string(),
            hits_theirs.to_string(),
            hits_ours as f64 / hits_theirs.max(1) as f64,
            "exactly 1",
        );
        table.row(
            &format!(
                "cold miss, 8 clients: slowest first byte (one upstream download takes {:.1} s)",
                single.as_secs_f64()
            ),
            format!("{:.2} s", first_ours.as_secs_f64()),
            format!("{:.2} s", first_theirs.as_secs_f64()),
            first_ours.as_secs_f64() / first_theirs.as_secs_f64().max(0.001),
            "≤ 0.2 s after upstream's first byte",
        );
        table.row(
            "cold miss, 8 clients: last client done, × one upstream download",
            format!("{:.2}×", last_ours.as_secs_f64() / single.as_secs_f64()),
            format!("{:.2}×", last_theirs.as_secs_f64() / single.as_secs_f64()),
            last_ours.as_secs_f64() / last_theirs.as_secs_f64(),
            "≤ 1.1×",
        );
        table.row(
            "peak RSS during the cold miss (KiB)",
            rss_cold.to_string(),
            "-".to_owned(),
            0.0,
            "≤ 32 MB",
        );
    }
    drop((tfm, tls, quiet));
    drop(nginx);

    if options.runs("startup") {
        // Start-up to listening, with an empty cache and with many cached archives.
        // Each is stopped again at the end of its statement.
        let empty = start_tfmirror(
            &options.binary,
            &dir.path().join("startup-empty"),
            &upstream.url(),
            LOG_AS_SHIPPED,
            false,
        )
        .ready;
        let many = match (options.smoke, options.quick) {
            (true, _) => 100,
            (false, true) => 500,
            _ => 10_000,
        };
        let full = dir.path().join("startup-full");
        for i in 0..many {
            let release = full.join(format!(
                "cache/releases/hashicorp/terraform-provider-p{}/1.0.{}",
                i / 100,
                i % 100
            ));
            std::fs::create_dir_all(&release).unwrap();
            std::fs::write(
                release.join(format!("terraform-provider-p_1.0.{i}_linux_amd64.zip")),
                b"x",
            )
            .unwrap();
        }
        let with_many = start_tfmirror(
            &options.binary,
            &full,
            &upstream.url(),
            LOG_AS_SHIPPED,
            false,
        )
        .ready;
        table.row(
            "start-up to listening, empty cache",
            format!("{} ms", empty.as_millis()),
            "-".to_owned(),
            0.0,
            "≤ 100 ms",
        );
        table.row(
            &format!("start-up to listening, {many} cached archives"),
            format!("{} ms", with_many.as_millis()),
            "-".to_owned(),
            0.0,
            "≤ 100 ms",
        );
    }
    table
}
