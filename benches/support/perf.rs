//! The performance comparison: tfmirror against nginx `proxy_cache` on the same data, in one
//! run — cached JSON, cached archives (1 MB and 100 MB), memory, a cold miss shared by eight
//! clients, start-up time. `bench/run.sh` runs it at full size (`benches/perf.rs`); a smoke
//! run of a few seconds is part of `cargo test` (`tests/bench_smoke.rs`). Only those two
//! targets include this module (next to `tests/common`, which it builds on).
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
}

impl Options {
    /// From command-line flags: `--quick`, `--duration SECS`, `--rounds N`, `--big-mib N`,
    /// `--upstream-mibps N`, `--hold SECS`, `--profile DIR`.
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
        }
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

/// What wrk measured.
#[derive(Debug, Clone, Copy, Default)]
struct Wrk {
    requests_per_sec: f64,
    bytes_per_sec: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn wrk(url: &str, connections: usize, seconds: u64) -> Wrk {
    let out = Command::new("wrk")
        .args([
            "-t",
            &connections.min(2).to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .unwrap_or_else(|e| cannot_start("wrk", INSTALLER, "wrk", &e));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut result = Wrk::default();
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

/// Sampling profiles of both servers (`--profile DIR`).
struct Profiler {
    dir: PathBuf,
    ours: Vec<u32>,
    theirs: Vec<u32>,
}

impl Profiler {
    /// Runs `measure` while `perf record` samples `pids` (call graphs, kernel included); keeps
    /// `NAME.data` and writes the top of its report, by shared object and symbol, to `NAME.txt`.
    fn record<T>(&self, name: &str, pids: &[u32], seconds: u64, measure: impl FnOnce() -> T) -> T {
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

/// wrk against `ours` and `theirs` in turn, `rounds` times; the median of each figure. With a
/// profiler, the first round of each side is profiled under `name`.
fn compare(
    ours: &str,
    theirs: &str,
    connections: usize,
    seconds: u64,
    rounds: usize,
    profile: Option<(&Profiler, &str)>,
) -> (Wrk, Wrk) {
    let mut runs = (Vec::new(), Vec::new());
    for round in 0..rounds {
        match profile.filter(|_| round == 0) {
            Some((profiler, name)) => {
                runs.0.push(profiler.record(
                    &format!("{name}-tfmirror"),
                    &profiler.ours,
                    seconds,
                    || wrk(ours, connections, seconds),
                ));
                runs.1.push(profiler.record(
                    &format!("{name}-nginx"),
                    &profiler.theirs,
                    seconds,
                    || wrk(theirs, connections, seconds),
                ));
            }
            None => {
                runs.0.push(wrk(ours, connections, seconds));
                runs.1.push(wrk(theirs, connections, seconds));
            }
        }
    }
    (median(&runs.0), median(&runs.1))
}

fn median(runs: &[Wrk]) -> Wrk {
    let middle = |figure: fn(&Wrk) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Wrk {
        requests_per_sec: middle(|w| w.requests_per_sec),
        bytes_per_sec: middle(|w| w.bytes_per_sec),
        p99_ms: middle(|w| w.p99_ms),
        non_2xx: runs.iter().map(|w| w.non_2xx).sum(),
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

/// nginx with `proxy_cache` in front of the upstream: the baseline.
fn start_nginx(dir: &Path, upstream: &str) -> (Proc, String) {
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let port = free_port();
    let user = if std::env::var("USER").as_deref() == Ok("root") || is_root() {
        "user root;"
    } else {
        ""
    };
    let conf = format!(
        r#"{user}
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  proxy_cache_path {dir}/cache levels=1:2 keys_zone=providers:10m max_size=10g inactive=1d use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache providers;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"#,
        dir = dir.display(),
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
    let base = format!("http://127.0.0.1:{port}");
    wait_until_up(&format!("{base}/"));
    (Proc(child), base)
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

/// tfmirror on a fresh or given cache.
fn start_tfmirror(binary: &Path, dir: &Path, upstream: &str) -> Serving {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = dir.join("tfmirror.toml");
    std::fs::write(
        &config,
        config_toml(&MirrorOptions::new(upstream.to_owned(), &cache)),
    )
    .unwrap();
    Serving::start(binary, &config, "warn,tfmirror::cli=info")
}

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

fn mib(bytes_per_sec: f64) -> String {
    format!("{:.0} MB/s", bytes_per_sec / 1024.0 / 1024.0)
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

/// Runs every measurement against both servers and returns the table.
pub async fn run(options: &Options) -> Table {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    eprintln!(
        "bench: generating archives ({} and {} bytes)",
        options.small_bytes, options.big_bytes
    );
    let small = publish(&upstream, "small", options.small_bytes);
    let big = publish(&upstream, "big", options.big_bytes);
    let cold = publish(&upstream, "cold", options.big_bytes);
    let small_zip = small.zip_name("linux", "amd64");
    let big_zip = big.zip_name("linux", "amd64");
    let cold_zip = cold.zip_name("linux", "amd64");

    let (nginx, nginx_base) = start_nginx(&dir.path().join("nginx"), &upstream.url());
    let nginx_pids: Vec<u32> = {
        std::thread::sleep(Duration::from_millis(200));
        let out = Command::new("pgrep")
            .args(["-P", &nginx.0.id().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .chain(std::iter::once(nginx.0.id()))
            .collect()
    };
    let tfm = start_tfmirror(
        &options.binary,
        &dir.path().join("tfmirror"),
        &upstream.url(),
    );

    // Warm both caches.
    let client = reqwest::Client::new();
    let ours = |path: &str| format!("{}{path}", tfm.base);
    let theirs = |path: &str| format!("{nginx_base}{path}");
    let json_ours = [
        (
            "version list",
            ours("/v1/providers/myproviders/small/versions"),
        ),
        (
            "download document",
            ours("/v1/providers/myproviders/small/1.0.0/download/linux/amd64"),
        ),
        (
            "mirror index.json",
            ours("/mirror/registry.terraform.io/hashicorp/small/index.json"),
        ),
        (
            "mirror <version>.json",
            ours("/mirror/registry.terraform.io/hashicorp/small/1.0.0.json"),
        ),
    ];
    let json_theirs = theirs("/terraform-provider-small/index.json");
    let small_ours = ours(&format!(
        "/v1/providers/myproviders/small/1.0.0/files/{small_zip}"
    ));
    let small_theirs = theirs(&format!("{}/{small_zip}", small.dir));
    let big_ours = ours(&format!(
        "/v1/providers/myproviders/big/1.0.0/files/{big_zip}"
    ));
    let big_theirs = theirs(&format!("{}/{big_zip}", big.dir));
    for url in json_ours.iter().map(|(_, u)| u.clone()).chain([
        json_theirs.clone(),
        small_ours.clone(),
        small_theirs.clone(),
        big_ours.clone(),
        big_theirs.clone(),
    ]) {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.unwrap();
    }
    // nginx caches on the second request's completion of the first; ask twice.
    for url in [&json_theirs, &small_theirs, &big_theirs] {
        client
            .get(url.as_str())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    // Let the warm-up's aftermath finish first: tfmirror computes each new archive's `h1:` in
    // the background, seconds of CPU for 100 MiB, which would land in the first measurement.
    for pid in nginx_pids.iter().chain([&tfm.pid()]) {
        wait_until_idle(*pid);
    }
    let upstream_after_warm = upstream.total_hits();
    if options.hold > 0 {
        eprintln!(
            "bench: holding {} s. tfmirror pid {} at {big_ours}\nbench: nginx pids {nginx_pids:?} at {big_theirs}",
            options.hold,
            tfm.pid()
        );
        tokio::time::sleep(Duration::from_secs(options.hold)).await;
    }

    let (d, rounds) = (options.duration, options.rounds);
    let profiler = options.profile.as_ref().map(|dir| {
        std::fs::create_dir_all(dir).unwrap();
        Profiler {
            dir: dir.clone(),
            ours: vec![tfm.pid()],
            theirs: nginx_pids.clone(),
        }
    });
    let mut table = Table(Vec::new());
    let json_connections: &[usize] = if options.smoke { &[16] } else { &[16, 64] };
    for &connections in json_connections {
        for (name, url) in &json_ours {
            let profile = profiler
                .as_ref()
                .filter(|_| connections == 16 && *name == "download document")
                .map(|p| (p, "download-document-16"));
            let (r, base) = compare(url, &json_theirs, connections, d, rounds, profile);
            assert_eq!(r.non_2xx, 0, "{url}");
            table.row(
                &format!("cached JSON, {name}, {connections} conns: req/s (p99)"),
                format!("{:.0} ({:.1} ms)", r.requests_per_sec, r.p99_ms),
                format!("{:.0} ({:.1} ms)", base.requests_per_sec, base.p99_ms),
                r.requests_per_sec / base.requests_per_sec.max(1.0),
                "≥ 1.0×, p99 no worse",
            );
        }
    }
    let (r, b) = compare(&small_ours, &small_theirs, 8, d, rounds, None);
    table.row(
        &format!("cached {} KiB archive, 8 conns", options.small_bytes / 1024),
        mib(r.bytes_per_sec),
        mib(b.bytes_per_sec),
        r.bytes_per_sec / b.bytes_per_sec.max(1.0),
        "≥ 1.0×",
    );
    // Sampled over the whole alternation: neither process grows while the other is measured.
    let samplers = (
        RssSampler::start(vec![tfm.pid()]),
        RssSampler::start(nginx_pids.clone()),
    );
    let big_clients: &[usize] = if options.smoke { &[8] } else { &[1, 8] };
    for &connections in big_clients {
        let name = format!("big-archive-{connections}");
        let profile = profiler.as_ref().map(|p| (p, name.as_str()));
        let (r, b) = compare(
            &big_ours,
            &big_theirs,
            connections,
            d.max(2),
            rounds,
            profile,
        );
        table.row(
            &format!(
                "cached {} MiB archive, {connections} client(s)",
                options.big_bytes / 1024 / 1024
            ),
            mib(r.bytes_per_sec),
            mib(b.bytes_per_sec),
            r.bytes_per_sec / b.bytes_per_sec.max(1.0),
            "≥ 1.0×",
        );
    }
    let (rss_ours, rss_theirs) = (samplers.0.finish(), samplers.1.finish());
    table.row(
        "peak RSS while serving the big archive (KiB; nginx: all processes)",
        rss_ours.to_string(),
        rss_theirs.to_string(),
        rss_ours as f64 / rss_theirs.max(1) as f64,
        "tfmirror ≤ 32 MB",
    );
    assert_eq!(
        upstream.total_hits(),
        upstream_after_warm,
        "a cached request went upstream"
    );

    // Cold miss: eight clients at once, the upstream throttled.
    let per_chunk = 64 * 1024;
    let pause = Duration::from_secs_f64(per_chunk as f64 / options.upstream_bytes_per_sec as f64);
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
        &ours(&format!(
            "/v1/providers/myproviders/cold/1.0.0/files/{cold_zip}"
        )),
        8,
    )
    .await;
    let rss_cold = sampler.finish();
    let hits_ours = upstream.hits(&cold_path) - hits_before;
    let (first_theirs, last_theirs, ok_theirs) = cold_miss(&theirs(&cold_path), 8).await;
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
    drop(tfm);
    drop(nginx);

    // Start-up to listening, with an empty cache and with many cached archives.
    // Each is stopped again at the end of its statement.
    let empty = start_tfmirror(
        &options.binary,
        &dir.path().join("startup-empty"),
        &upstream.url(),
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
    let with_many = start_tfmirror(&options.binary, &full, &upstream.url()).ready;
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

    table
}
