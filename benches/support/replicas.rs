//! The cross-replica cold miss, as deployed: two `tfmirror serve` processes (the release
//! build) on one bucket (moto or SeaweedFS), each with eight clients asking at once for an
//! uncached archive from a throttled upstream. Run once with `[cluster]` (one replica holds
//! the download's lease, the other follows it) and once without (each replica downloads
//! alone), in the same run, so the rows are ratios. Shared by `cargo bench --bench replicas`
//! and its smoke test in `tests/shared_storage.rs` (each uses part of this module).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use sha2::Digest;

use crate::common::{
    self,
    s3::{free_port, Flavour, S3Server},
    serving::Serving,
    FakeRelease, FakeUpstream, MirrorOptions,
};

const ZIP: &str = "terraform-provider-local_2.1.0_linux_amd64.zip";
const FILE_URL: &str = "/v1/providers/myproviders/local/2.1.0/files/";
const DOWNLOAD_DOC: &str = "/v1/providers/myproviders/local/2.1.0/download/linux/amd64";

pub struct Options {
    /// The `tfmirror` binary to run.
    pub binary: PathBuf,
    pub flavour: Flavour,
    pub archive_bytes: usize,
    /// The upstream's pace: `chunk` bytes every `pause`.
    pub chunk: usize,
    pub pause: Duration,
    pub clients_per_replica: usize,
}

impl Options {
    /// `cargo bench --bench replicas -- [--mib N] [--seaweedfs]`: 100 MiB at ~10 MB/s on moto
    /// unless told otherwise.
    pub fn parse(binary: PathBuf) -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse::<usize>().ok())
        };
        Self {
            binary,
            flavour: if args.iter().any(|a| a == "--seaweedfs") {
                Flavour::SeaweedFs
            } else {
                Flavour::Moto
            },
            archive_bytes: value("--mib").unwrap_or(100) << 20,
            // 64 KiB every 6 ms: about 10 MB/s.
            chunk: 64 * 1024,
            pause: Duration::from_millis(6),
            clients_per_replica: value("--clients").unwrap_or(8),
        }
    }
}

/// What one cold miss cost and how the clients fared.
#[derive(Debug)]
pub struct ColdMiss {
    pub upstream_gets: usize,
    /// Each client's first byte, after the upstream sent its first byte.
    pub first_bytes: Vec<Duration>,
    /// From the requests to the last client done.
    pub done: Duration,
    /// The upstream's own time for one download (first byte to last).
    pub one_download: Duration,
    /// Each replica's peak resident set while it ran, KiB.
    pub peak_rss_kb: Vec<u64>,
    /// Whether every client got the whole archive with the right digest.
    pub all_verified: bool,
}

struct Got {
    first_byte: Option<Instant>,
    bytes: u64,
    digest: Vec<u8>,
    status: u16,
}

async fn fetch(client: reqwest::Client, url: String) -> Got {
    let Ok(response) = client.get(url).send().await else {
        return Got {
            first_byte: None,
            bytes: 0,
            digest: Vec::new(),
            status: 0,
        };
    };
    let status = response.status().as_u16();
    let mut got = Got {
        first_byte: None,
        bytes: 0,
        digest: Vec::new(),
        status,
    };
    let mut hasher = sha2::Sha256::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        got.first_byte.get_or_insert_with(Instant::now);
        hasher.update(&chunk);
        got.bytes += chunk.len() as u64;
    }
    got.digest = hasher.finalize().to_vec();
    got
}

/// A replica as a child process on a port chosen up front, logging to a file as a deployed
/// server does; with `[cluster]` naming that port, or only the bucket.
fn replica(
    options: &Options,
    upstream: &FakeUpstream,
    s3: &S3Server,
    dir: &Path,
    cluster: bool,
) -> Serving {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let port = free_port();
    let storage = if cluster {
        s3.cluster_toml(dir, port, "30s")
    } else {
        s3.storage_toml(dir)
    };
    let toml = common::config_toml(&MirrorOptions {
        extra: storage,
        ..MirrorOptions::new(upstream.url(), &cache)
    });
    let config = dir.join("tfmirror.toml");
    std::fs::write(&config, common::app::on_port(&toml, port)).unwrap();
    Serving::start_logging_to(&options.binary, &config, "info", &dir.join("tfmirror.log"))
}

/// One cold miss on a fresh bucket and fresh disks.
pub async fn cold_miss(options: &Options, cluster: bool) -> ColdMiss {
    let s3 = S3Server::start(options.flavour);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let (zip, zip_path) = FakeRelease::publish_paced(
        &upstream,
        options.archive_bytes,
        options.chunk,
        options.pause,
    );
    let size = zip.len() as u64;
    let digest = sha2::Sha256::digest(&zip).to_vec();

    let replicas = [
        replica(options, &upstream, &s3, &dir.path().join("a"), cluster),
        replica(options, &upstream, &s3, &dir.path().join("b"), cluster),
    ];
    let client = reqwest::Client::new();
    for serving in &replicas {
        let status = client
            .get(format!("{}{DOWNLOAD_DOC}", serving.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "the download document");
    }

    let pids: Vec<u32> = replicas.iter().map(Serving::pid).collect();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let sampling = sampling.clone();
        move || {
            let mut peak = vec![0u64; pids.len()];
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                for (peak, pid) in peak.iter_mut().zip(&pids) {
                    *peak = (*peak).max(common::serving::rss_kb(*pid));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        }
    });

    let started = Instant::now();
    let clients: Vec<_> = replicas
        .iter()
        .flat_map(|serving| {
            let url = format!("{}{FILE_URL}{ZIP}", serving.base);
            let client = client.clone();
            (0..options.clients_per_replica)
                .map(move |_| tokio::spawn(fetch(client.clone(), url.clone())))
        })
        .collect();
    let mut got = Vec::new();
    for client in clients {
        got.push(client.await.unwrap());
    }
    let done = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_rss_kb = sampler.join().unwrap();

    let upstream_first = upstream.first_byte_sent(&zip_path).unwrap_or(started);
    let all_verified = got
        .iter()
        .all(|g| g.status == 200 && g.bytes == size && g.digest == digest);
    let first_bytes = got
        .iter()
        .map(|g| {
            g.first_byte
                .map_or(done, |at| at.saturating_duration_since(upstream_first))
        })
        .collect();
    // The upstream's pace alone: the whole archive in `chunk` steps.
    let one_download = options
        .pause
        .mul_f64(options.archive_bytes as f64 / options.chunk as f64);
    let upstream_gets = upstream.hits(&zip_path);
    upstream.stop().await;
    ColdMiss {
        upstream_gets,
        first_bytes,
        done,
        one_download,
        peak_rss_kb,
        all_verified,
    }
}

/// Both runs, as a Markdown table.
pub async fn run(options: &Options) -> (ColdMiss, ColdMiss, String) {
    let with = cold_miss(options, true).await;
    let without = cold_miss(options, false).await;
    let slowest = |c: &ColdMiss| c.first_bytes.iter().max().copied().unwrap_or_default();
    let mut table = format!(
        "cross-replica cold miss: {} MiB archive from a ~{:.0} MB/s upstream, 2 replicas × {} \
         clients, {:?}, {} build\n\n\
         | measurement | with `[cluster]` | without (each replica alone) | ratio | target |\n\
         |---|---|---|---|---|\n",
        options.archive_bytes >> 20,
        options.chunk as f64 / options.pause.as_secs_f64() / 1e6,
        options.clients_per_replica,
        options.flavour,
        if options
            .binary
            .components()
            .any(|c| c.as_os_str() == "release")
        {
            "release"
        } else {
            "debug"
        },
    );
    let mut row = |name: &str, a: String, b: String, ratio: String, target: &str| {
        table.push_str(&format!("| {name} | {a} | {b} | {ratio} | {target} |\n"));
    };
    row(
        "upstream GETs of the archive",
        with.upstream_gets.to_string(),
        without.upstream_gets.to_string(),
        format!(
            "{:.2}×",
            with.upstream_gets as f64 / without.upstream_gets.max(1) as f64
        ),
        "exactly 1",
    );
    row(
        "slowest client's first byte after upstream's first byte",
        format!("{:.0} ms", slowest(&with).as_secs_f64() * 1e3),
        format!("{:.0} ms", slowest(&without).as_secs_f64() * 1e3),
        "-".to_owned(),
        "≤ 500 ms",
    );
    row(
        "last client done, × one upstream download at its pace",
        format!(
            "{:.2}× ({:.1} s)",
            with.done.as_secs_f64() / with.one_download.as_secs_f64(),
            with.done.as_secs_f64()
        ),
        format!(
            "{:.2}× ({:.1} s)",
            without.done.as_secs_f64() / without.one_download.as_secs_f64(),
            without.done.as_secs_f64()
        ),
        format!(
            "{:.2}×",
            with.done.as_secs_f64() / without.done.as_secs_f64()
        ),
        "-",
    );
    row(
        "peak RSS of each replica (KiB)",
        format!("{} / {}", with.peak_rss_kb[0], with.peak_rss_kb[1]),
        format!("{} / {}", without.peak_rss_kb[0], without.peak_rss_kb[1]),
        "-".to_owned(),
        "≤ 32 MB",
    );
    row(
        "every client got the verified archive",
        with.all_verified.to_string(),
        without.all_verified.to_string(),
        "-".to_owned(),
        "true",
    );
    (with, without, table)
}
