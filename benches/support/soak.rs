//! The soak run: many clients for a while against the real `tfmirror` binary, mixing cached
//! metadata, cached archives and cold misses, while the fake upstream fails a share of its
//! requests. Every answer is checked byte for byte; tfmirror's RSS is sampled throughout.
//! `cargo bench --bench soak` runs it at full size; a test runs it for two seconds
//! (`tests/soak_smoke.rs`). Only those two targets include this module (next to
//! `tests/common`, which it builds on).
#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::common::{
    config_toml, publisher_key, serving::Serving, FakeRelease, FakeUpstream, MirrorOptions,
};

pub struct SoakOptions {
    pub binary: PathBuf,
    pub duration: Duration,
    pub clients: usize,
    /// Share of upstream requests answered 503.
    pub failure_rate: f64,
    /// Random bytes per provider binary (archives are about this size).
    pub payload_bytes: usize,
    /// Versions of the provider used for cold misses; each is fetched cold once.
    pub cold_versions: usize,
}

/// Outcomes of one kind of request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub ok: usize,
    pub server_errors: usize,
    pub wrong: usize,
}

#[derive(Debug, Default)]
pub struct SoakReport {
    pub elapsed: Duration,
    pub cached_metadata: Tally,
    pub cached_archives: Tally,
    pub cold: Tally,
    /// Distinct cold releases fetched through tfmirror.
    pub cold_releases: usize,
    pub upstream_requests: usize,
    pub rss_after_warmup_kb: u64,
    /// RSS at each quarter of the run: flat memory means these stop growing.
    pub rss_quarters_kb: [u64; 4],
    pub rss_peak_kb: u64,
}

impl SoakReport {
    pub fn requests(&self) -> usize {
        [self.cached_metadata, self.cached_archives, self.cold]
            .iter()
            .map(|t| t.ok + t.server_errors + t.wrong)
            .sum()
    }

    /// What the run promises: no wrong byte anywhere, no 5xx for anything cached.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let wrong = self.cached_metadata.wrong + self.cached_archives.wrong + self.cold.wrong;
        if wrong > 0 {
            out.push(format!("{wrong} answers with wrong bytes"));
        }
        let cached_5xx = self.cached_metadata.server_errors + self.cached_archives.server_errors;
        if cached_5xx > 0 {
            out.push(format!("{cached_5xx} 5xx answers for cached items"));
        }
        out
    }

    pub fn table(&self, options: &SoakOptions) -> String {
        let row = |name: &str, t: Tally| {
            format!(
                "| {name} | {} | {} | {} |\n",
                t.ok, t.server_errors, t.wrong
            )
        };
        format!(
            "{} clients for {:.0} s, upstream failing {:.0}% of requests, {} KiB archives: \
             {} requests ({:.0} req/s), {} upstream requests, {} cold releases fetched\n\n\
             | request kind | 2xx | 5xx | wrong bytes |\n|---|---|---|---|\n{}{}{}\n\
             | tfmirror RSS (KiB) | after warm-up | at 25% | at 50% | at 75% | at 100% | peak |\n\
             |---|---|---|---|---|---|---|\n| | {} | {} | {} | {} | {} | {} |\n",
            options.clients,
            self.elapsed.as_secs_f64(),
            options.failure_rate * 100.0,
            options.payload_bytes / 1024,
            self.requests(),
            self.requests() as f64 / self.elapsed.as_secs_f64(),
            self.upstream_requests,
            self.cold_releases,
            row("cached metadata", self.cached_metadata),
            row("cached archives", self.cached_archives),
            row("cold misses", self.cold),
            self.rss_after_warmup_kb,
            self.rss_quarters_kb[0],
            self.rss_quarters_kb[1],
            self.rss_quarters_kb[2],
            self.rss_quarters_kb[3],
            self.rss_peak_kb,
        )
    }
}

/// One request the clients may make, with the bytes it must return.
#[derive(Clone)]
struct Expected {
    path: String,
    body: Bytes,
}

pub async fn run(options: &SoakOptions) -> SoakReport {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let release = |provider: &str, version: String| FakeRelease {
        payload_bytes: options.payload_bytes,
        ..FakeRelease::new(provider, &version)
    };
    let mut warm_archives = Vec::new();
    for provider in ["local", "null"] {
        for version in ["1.0.0", "1.1.0"] {
            let published =
                release(provider, version.to_owned()).publish(&upstream, publisher_key());
            for (zip, bytes) in &published.zips {
                warm_archives.push(Expected {
                    path: format!("/v1/providers/myproviders/{provider}/{version}/files/{zip}"),
                    body: Bytes::from(bytes.clone()),
                });
                warm_archives.push(Expected {
                    path: format!("/mirror/registry.terraform.io/hashicorp/{provider}/{zip}"),
                    body: Bytes::from(bytes.clone()),
                });
            }
        }
    }
    let cold: Vec<Expected> = (0..options.cold_versions)
        .map(|i| {
            let version = format!("0.{i}.0");
            let published = release("random", version.clone()).publish(&upstream, publisher_key());
            let zip = published.zip_name("linux", "amd64");
            Expected {
                path: format!("/v1/providers/myproviders/random/{version}/files/{zip}"),
                body: Bytes::from(published.zips[&zip].clone()),
            }
        })
        .collect();

    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = dir.path().join("tfmirror.toml");
    std::fs::write(
        &config,
        config_toml(&MirrorOptions {
            upstream_extra: "retries = 3",
            ..MirrorOptions::new(upstream.url(), &cache)
        }),
    )
    .unwrap();
    let serving = Serving::start(&options.binary, &config, "warn,tfmirror=info");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients)
        .build()
        .unwrap();

    // Warm-up with a healthy upstream: archives, then snapshots of the metadata answers.
    let base = serving.base.clone();
    let get = move |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let response = client.get(url).send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        }
    };
    for archive in &warm_archives {
        let (status, body) = get(archive.path.clone()).await.unwrap();
        assert!(
            status == 200 && body == archive.body,
            "warm-up of {}",
            archive.path
        );
    }
    let mut metadata = Vec::new();
    for provider in ["local", "null"] {
        for path in [
            format!("/v1/providers/myproviders/{provider}/versions"),
            format!("/v1/providers/myproviders/{provider}/1.1.0/download/linux/amd64"),
            format!("/mirror/registry.terraform.io/hashicorp/{provider}/index.json"),
            format!("/mirror/registry.terraform.io/hashicorp/{provider}/1.0.0.json"),
        ] {
            let (status, body) = get(path.clone()).await.unwrap();
            assert_eq!(status, 200, "warm-up of {path}");
            metadata.push(Expected { path, body });
        }
    }
    let rss_after_warmup_kb = serving.rss_kb();
    upstream.set_failure_rate(options.failure_rate);
    let upstream_before = upstream.total_hits();

    let tallies = Arc::new(Mutex::new([Tally::default(); 3]));
    let next_cold = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let clients: Vec<_> = (0..options.clients)
        .map(|_| {
            let (get, tallies, next_cold) = (get.clone(), tallies.clone(), next_cold.clone());
            let (metadata, warm_archives, cold) =
                (metadata.clone(), warm_archives.clone(), cold.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let roll = rand::random::<f64>();
                    let (kind, expected) = if roll < 0.45 {
                        (0, &metadata[rand::random::<usize>() % metadata.len()])
                    } else if roll < 0.9 || cold.is_empty() {
                        (
                            1,
                            &warm_archives[rand::random::<usize>() % warm_archives.len()],
                        )
                    } else {
                        let i = next_cold.fetch_add(1, Ordering::Relaxed) % cold.len();
                        (2, &cold[i])
                    };
                    let outcome = get(expected.path.clone()).await;
                    let mut tallies = tallies.lock().unwrap();
                    let tally = &mut tallies[kind];
                    match outcome {
                        Ok((200, body)) if body == expected.body => tally.ok += 1,
                        Ok((status, _)) if status >= 500 => tally.server_errors += 1,
                        _ => tally.wrong += 1,
                    }
                }
            })
        })
        .collect();

    let mut rss_peak_kb = rss_after_warmup_kb;
    let mut rss_quarters_kb = [0; 4];
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rss = serving.rss_kb();
        rss_peak_kb = rss_peak_kb.max(rss);
        let done = started.elapsed().as_secs_f64() / options.duration.as_secs_f64();
        let quarter = ((done * 4.0) as usize).min(3);
        // The last sample taken within each quarter.
        rss_quarters_kb[quarter] = rss;
    }
    for client in clients {
        client.await.unwrap();
    }
    let elapsed = started.elapsed();
    let [cached_metadata, cached_archives, cold_tally] = *tallies.lock().unwrap();
    let report = SoakReport {
        elapsed,
        cached_metadata,
        cached_archives,
        cold: cold_tally,
        cold_releases: next_cold.load(Ordering::Relaxed).min(cold.len()),
        upstream_requests: upstream.total_hits() - upstream_before,
        rss_after_warmup_kb,
        rss_quarters_kb,
        rss_peak_kb,
    };
    drop(serving);
    upstream.stop().await;
    report
}
