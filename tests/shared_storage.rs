//! Replicas on one S3-compatible bucket (`[storage] kind = "s3"`), against real servers
//! (moto and SeaweedFS, from `tests/common/s3.rs`): what one replica verified, another serves
//! with the upstream down and its own disk empty; nothing unverified reaches the bucket; with
//! the bucket gone, the local tier is still served and the rest is a clear 503.
//!
//! With `[cluster]`, one upstream download across replicas: the replica that takes an
//! archive's lease in the bucket downloads it, the others follow its live download and check
//! every byte themselves; a tampered archive fails everyone's clients and leaves nothing in
//! the bucket; a holder killed with SIGKILL fails its followers' clients (no hang), leaves no
//! object, and its lease expires so the next request fetches cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../benches/support/replicas.rs"]
mod replicas;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use sha2::Digest;

use common::{
    error_text, publisher_key,
    s3::{free_port, Flavour, S3Server},
    serving::Serving,
    terraform::{main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, TestApp,
};

const ZIP: &str = "terraform-provider-local_2.1.0_linux_amd64.zip";

/// Tests of this file run side by side (shared), but the one measuring this process's memory
/// runs alone (exclusive).
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
const ZIP_KEY: &str =
    "mirror/releases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_linux_amd64.zip";
const FILE_URL: &str = "/v1/providers/myproviders/local/2.1.0/files/";
const DOWNLOAD_DOC: &str = "/v1/providers/myproviders/local/2.1.0/download/linux/amd64";

/// A replica over `cache` on the server's bucket, optionally with TLS (Terraform needs it).
async fn replica(
    upstream: &FakeUpstream,
    s3: &S3Server,
    dir: &Path,
    name: &str,
    tls: bool,
) -> TestApp {
    let cache = dir.join(name).join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let tls_dir = dir.join(name).join("certs");
    TestApp::spawn(MirrorOptions {
        extra: s3.storage_toml(&dir.join(name)),
        tls_dir: tls.then_some(tls_dir.as_path()),
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await
}

async fn installs_through_a_then_through_b_with_a_and_the_upstream_gone(flavour: Flavour) {
    python();
    let s3 = S3Server::start(flavour);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());

    let a = replica(&upstream, &s3, dir.path(), "a", true).await;
    let port = a.server.addr.port();
    let mut cold = TfWorkspace::new(
        &dir.path().join("tf-a"),
        &main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0"),
    );
    cold.ca_file = Some(dir.path().join("a/certs/localhost.pem"));
    let out = cold.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "init through A failed:\n{}", out.combined());
    let lock_a = cold.lock_file();

    let keys = s3.keys();
    assert!(keys.iter().any(|k| k == ZIP_KEY), "{keys:?}");
    for wanted in [
        "versions.json",
        "release.json",
        "_SHA256SUMS",
        ".sig",
        ".zip.h1",
    ] {
        assert!(
            keys.iter().any(|k| k.ends_with(wanted)),
            "no {wanted} in {keys:?}"
        );
    }
    // Digest records name one host's file: never shared.
    assert!(!keys.iter().any(|k| k.ends_with(".sha256")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(".tmp-")), "{keys:?}");

    a.stop().await;
    upstream.stop().await;

    // B: a fresh disk, the same bucket, no upstream and no A.
    let b = replica(&upstream, &s3, dir.path(), "b", true).await;
    let port = b.server.addr.port();
    // Its status page shows what A cached, read from the bucket without copying archives.
    let page = b.client.get(format!("{}/", b.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("2.1.0") && page.contains("linux_amd64"),
        "{page}"
    );
    let b_zip = dir
        .path()
        .join("b/cache/releases/hashicorp/terraform-provider-local/2.1.0")
        .join(ZIP);
    assert!(!b_zip.exists(), "the status page copied an archive");
    let mut warm = TfWorkspace::new(
        &dir.path().join("tf-b"),
        &main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0"),
    );
    warm.ca_file = Some(dir.path().join("b/certs/localhost.pem"));
    let out = warm.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "init through B failed:\n{}", out.combined());
    let installed = format!(
        "Installed localhost:{port}/myproviders/local v2.1.0 (self-signed, key ID {})",
        publisher_key().key_id
    );
    assert!(out.stdout.contains(&installed), "{}", out.stdout);
    // The same verified hashes, whichever replica answered.
    let lock_b = warm.lock_file();
    let zh = |lock: &str| -> Vec<String> {
        lock.lines()
            .filter(|l| l.contains("\"zh:"))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    assert_eq!(zh(&lock_a), zh(&lock_b));
    assert!(!zh(&lock_b).is_empty());
    // B copied what it served into its local tier.
    assert!(b_zip.exists());
    b.stop().await;
}

#[actix_web::test]
async fn moto_replica_b_installs_what_a_verified_with_a_and_upstream_gone() {
    let _memory = MEMORY.read().await;
    installs_through_a_then_through_b_with_a_and_the_upstream_gone(Flavour::Moto).await;
}

#[actix_web::test]
async fn seaweedfs_replica_b_installs_what_a_verified_with_a_and_upstream_gone() {
    let _memory = MEMORY.read().await;
    installs_through_a_then_through_b_with_a_and_the_upstream_gone(Flavour::SeaweedFs).await;
}

#[actix_web::test]
async fn a_tampered_archive_leaves_nothing_in_the_bucket() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let mut evil = published.zips[ZIP].clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    upstream.put(&format!("{}/{ZIP}", published.dir), evil);

    let app = replica(&upstream, &s3, dir.path(), "a", false).await;
    let (status, doc) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{doc}");
    let (status, body) = app.get_json(doc["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 502, "{body}");
    let keys = s3.keys();
    // The signed metadata is there; the archive is not, nor any part of it.
    assert!(keys.iter().any(|k| k.ends_with("release.json")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(".zip")), "{keys:?}");
    assert!(common::files_under(&app.cache_dir)
        .iter()
        .all(|f| !f.contains(".zip")));
    app.stop().await;
}

#[actix_web::test]
async fn with_the_bucket_gone_the_local_tier_is_served_and_the_rest_is_a_503() {
    let _memory = MEMORY.read().await;
    let mut s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("null", "3.0.0").publish(&upstream, publisher_key());
    let app = replica(&upstream, &s3, dir.path(), "a", false).await;
    let files = "/v1/providers/myproviders/local/2.1.0/files";
    let (status, body) = app.get_bytes(&format!("{files}/{ZIP}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, published.zips[ZIP]);
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready["cache"]["storage"]
            .as_str()
            .unwrap()
            .starts_with("s3://tfmirror/mirror/"),
        "{ready}"
    );

    s3.kill();
    // On this replica's disk: served as before.
    let (status, body) = app.get_bytes(&format!("{files}/{ZIP}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, published.zips[ZIP]);
    // Not on it: a clear 503, before anything is fetched from upstream.
    let hits = upstream.total_hits();
    let other = "terraform-provider-local_2.1.0_darwin_arm64.zip";
    let (status, body) = app.get_json(&format!("{files}/{other}")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        error_text(&body).contains("shared storage is unreachable"),
        "{body}"
    );
    let (status, body) = app
        .get_json("/v1/providers/myproviders/null/versions")
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        upstream.total_hits(),
        hits,
        "fetched what could not be kept"
    );
    // /readyz says why.
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let error = ready["cache"]["error"].as_str().unwrap();
    assert!(error.contains("s3://tfmirror/mirror/"), "{ready}");
    assert!(!error.contains(common::s3::SECRET_ACCESS_KEY), "{ready}");
    app.stop().await;
}

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Downloads `url`, hashing as it goes: (first byte after `started`, SHA-256, bytes).
async fn download(
    client: reqwest::Client,
    url: String,
    started: std::time::Instant,
) -> (std::time::Duration, Vec<u8>, u64) {
    use futures_util::StreamExt;
    use sha2::Digest;
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut first_byte = None;
    let mut hasher = sha2::Sha256::new();
    let mut bytes = 0;
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        first_byte.get_or_insert_with(|| started.elapsed());
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    (first_byte.unwrap(), hasher.finalize().to_vec(), bytes)
}

/// A replica like `replica`, with `[cluster]`: it listens on a port chosen up front, which
/// its `advertise_url` names; its download leases last `lease_ttl`.
async fn cluster_replica(
    upstream: &FakeUpstream,
    s3: &S3Server,
    dir: &Path,
    name: &str,
    lease_ttl: &str,
) -> TestApp {
    let cache = dir.join(name).join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let port = common::s3::free_port();
    TestApp::spawn_on_port(
        MirrorOptions {
            extra: s3.cluster_toml(&dir.join(name), port, lease_ttl),
            ..MirrorOptions::new(upstream.url(), &cache)
        },
        port,
    )
    .await
}

/// The benchmark row for replicas on a bucket: eight clients on each of two replicas
/// (`[cluster]`) ask at once for an uncached 32 MiB archive from a ~10 MB/s upstream. One
/// replica takes the archive's lease and downloads it, the other follows that download live:
/// one upstream GET, and every client streams as the bytes arrive.
#[actix_web::test]
async fn a_cold_miss_on_two_replicas_streams_to_every_client_at_once() {
    let _memory = MEMORY.read().await;
    use sha2::Digest;
    use std::time::{Duration, Instant};
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    // 64 KiB every 6 ms: about 10 MB/s, 3 s for the archive.
    let (zip, zip_path) = FakeRelease::publish_paced(
        &upstream,
        32 * 1024 * 1024,
        64 * 1024,
        Duration::from_millis(6),
    );
    let size = zip.len() as u64;
    let digest = sha2::Sha256::digest(&zip).to_vec();
    let replicas = [
        cluster_replica(&upstream, &s3, dir.path(), "a", "30s").await,
        cluster_replica(&upstream, &s3, dir.path(), "b", "30s").await,
    ];
    for app in &replicas {
        let (status, _) = app
            .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
            .await;
        assert_eq!(status, 200);
    }

    let started = Instant::now();
    let clients: Vec<_> = replicas
        .iter()
        .flat_map(|app| {
            let url = format!(
                "{}/v1/providers/myproviders/local/2.1.0/files/{ZIP}",
                app.base
            );
            (0..8).map(move |_| tokio::spawn(download(app.client.clone(), url.clone(), started)))
        })
        .collect();
    let mut first_bytes = Vec::new();
    for client in clients {
        let (first_byte, got, bytes) = client.await.unwrap();
        assert_eq!((bytes, &got), (size, &digest));
        first_bytes.push(first_byte);
    }
    let whole = started.elapsed();
    let upstream_gets = upstream.hits(&zip_path);
    let upstream_first = upstream.first_byte_sent(&zip_path).unwrap() - started;
    let slowest_first_byte = *first_bytes.iter().max().unwrap();
    let behind_upstream = slowest_first_byte.saturating_sub(upstream_first);
    eprintln!(
        "cross-replica cold miss: {} MiB archive, 2 replicas x 8 clients: upstream GETs {upstream_gets}, \
         upstream's first byte at {upstream_first:?}, first byte at the clients {:?}..{:?} \
         (the slowest {behind_upstream:?} after upstream's), all done (uploaded) in {whole:?}",
        size >> 20,
        first_bytes.iter().min().unwrap(),
        slowest_first_byte,
    );
    // The tail is released once the archive is in the bucket; the lease went with the
    // download, the replicas' shared secret stays.
    let keys = s3.keys();
    assert!(keys.iter().any(|k| k == ZIP_KEY), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("/leases/")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k == "mirror/cluster/secret"),
        "{keys:?}"
    );
    // One download for both replicas: the lease holder's.
    assert_eq!(upstream_gets, 1, "{upstream_gets} upstream GETs");
    // Bytes flowed while the download ran, not after it (the target is 0.5 s after
    // upstream's first byte; the bound is generous for a host shared by parallel builds).
    assert!(
        behind_upstream < Duration::from_secs(2) && slowest_first_byte < whole / 2,
        "{first_bytes:?} of {whole:?}"
    );
    for app in replicas {
        app.stop().await;
    }
}

/// A small run of the cross-replica benchmark (`cargo bench --bench replicas`), so that it
/// cannot rot: the real binary as two replica processes, with and without `[cluster]`.
#[actix_web::test]
async fn the_replica_benchmark_runs_end_to_end() {
    let _memory = MEMORY.read().await;
    let options = replicas::Options {
        binary: env!("CARGO_BIN_EXE_tfmirror").into(),
        flavour: Flavour::Moto,
        archive_bytes: 2 << 20,
        chunk: 64 * 1024,
        pause: Duration::from_millis(5),
        clients_per_replica: 3,
    };
    let (with, without, table) = replicas::run(&options).await;
    eprintln!("{table}");
    assert!(with.all_verified && without.all_verified, "{table}");
    assert_eq!(
        (with.upstream_gets, without.upstream_gets),
        (1, 2),
        "{table}"
    );
    assert!(
        table.contains("| upstream GETs of the archive | 1 | 2 |"),
        "{table}"
    );
}

/// 64 KiB chunks of a 64 MiB archive made up on the fly (never whole in memory), the same
/// bytes every time.
fn generated(
    chunks: usize,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter((0..chunks).map(|i| {
        let mut chunk = vec![0u8; 64 * 1024];
        for (j, byte) in chunk.iter_mut().enumerate() {
            *byte = (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8;
        }
        Ok(bytes::Bytes::from(chunk))
    }))
}

/// The archive goes up to the bucket in parts: the store's memory during a 64 MiB upload
/// stays at a few parts, far below the archive's size.
#[actix_web::test]
async fn a_multipart_upload_holds_a_few_parts_in_memory() {
    use futures_util::StreamExt;
    use sha2::Digest;
    use tfmirror::{
        protocol::{FileKey, FileName, ProviderKey, ProviderType, UpstreamName, Version},
        store::{bucket::BucketSettings, Item, Store},
        verify::Sha256Digest,
    };
    const CHUNKS: usize = 1024;
    let _memory = MEMORY.write().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_shared(
        &dir.path().join("cache"),
        0,
        &BucketSettings {
            bucket: common::s3::BUCKET.to_owned(),
            prefix: "mirror/".to_owned(),
            endpoint: Some(s3.endpoint.clone()),
            region: "us-east-1".to_owned(),
            credentials: Some((
                common::s3::ACCESS_KEY_ID.to_owned(),
                common::s3::SECRET_ACCESS_KEY.to_owned(),
            )),
        },
    )
    .await
    .unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut all = generated(CHUNKS);
    while let Some(chunk) = all.next().await {
        hasher.update(chunk.unwrap());
    }
    let expected = Sha256Digest(hasher.finalize().into());
    let key: FileKey = ProviderKey::new(
        UpstreamName::try_from("hashicorp").unwrap(),
        None,
        ProviderType::try_from("local").unwrap(),
    )
    .release(Version::try_from("2.1.0").unwrap())
    .file(FileName::try_from(ZIP).unwrap());

    let baseline = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampling = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    });
    let written = store
        .write_verified(
            Item::File(&key),
            generated(CHUNKS),
            expected,
            u64::MAX,
            0,
            &mut |_, _| {},
        )
        .await
        .unwrap();
    sampling.abort();
    let peak_delta = peak.load(std::sync::atomic::Ordering::Relaxed) - baseline;
    eprintln!(
        "multipart upload of {} MiB: RSS peak +{} MiB over {} MiB",
        written >> 20,
        peak_delta >> 20,
        baseline >> 20
    );
    assert!(s3.keys().iter().any(|k| k == ZIP_KEY));
    assert!(
        peak_delta < written / 4,
        "RSS grew by {peak_delta} bytes for a {written}-byte upload"
    );
}

#[actix_web::test]
async fn gc_bounds_the_local_tier_and_the_bucket_keeps_what_it_evicts() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("a/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let app = TestApp::spawn(MirrorOptions {
        extra: s3.storage_toml(&dir.path().join("a")),
        // The grace lets the copy fetched back from the bucket be served before it is
        // evicted again (with none, eviction may race the second request).
        cache_extra: "max_size = 1\ngc_interval = \"200ms\"\ngc_grace = \"2s\"",
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let url = format!("/v1/providers/myproviders/local/2.1.0/files/{ZIP}");
    let (status, body) = app.get_bytes(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body, published.zips[ZIP]);
    let local = cache
        .join("releases/hashicorp/terraform-provider-local/2.1.0")
        .join(ZIP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while local.exists() {
        assert!(std::time::Instant::now() < deadline, "never evicted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        s3.keys().iter().any(|k| k == ZIP_KEY),
        "evicted from the bucket"
    );
    // Served again from the bucket, with upstream gone.
    upstream.stop().await;
    let (status, body) = app.get_bytes(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body, published.zips[ZIP]);
    app.stop().await;
}

#[actix_web::test]
async fn verify_and_export_on_a_fresh_disk_work_on_the_bucket() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let app = replica(&upstream, &s3, dir.path(), "a", false).await;
    for zip in [ZIP, "terraform-provider-local_2.1.0_darwin_arm64.zip"] {
        let (status, _) = app
            .get_bytes(&format!(
                "/v1/providers/myproviders/local/2.1.0/files/{zip}"
            ))
            .await;
        assert_eq!(status, 200);
    }
    app.stop().await;
    upstream.stop().await;

    // Another host: an empty disk, the same bucket, the binary's one-shot commands.
    let cache = dir.path().join("c/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = dir.path().join("c/tfmirror.toml");
    std::fs::write(
        &config,
        common::config_toml(&MirrorOptions {
            extra: s3.storage_toml(&dir.path().join("c")),
            ..MirrorOptions::new(upstream.url(), &cache)
        }),
    )
    .unwrap();
    let out = common::serving::tfmirror(&["verify"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 releases, 2 archives"), "{stdout}");
    assert!(stdout.contains("0 damaged"), "{stdout}");
    let bundle = dir.path().join("bundle.tar");
    let out =
        common::serving::tfmirror(&["export", "--output", bundle.to_str().unwrap()], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 releases"), "{stdout}");
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&bundle).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n.ends_with(ZIP)), "{names:?}");
}

/// A host's config on the server's bucket under `prefix`, with `[[prefetch]]` `more`, written
/// beside an empty cache for the binary's one-shot commands.
fn one_shot_config(
    upstream: &FakeUpstream,
    s3: &S3Server,
    dir: &Path,
    prefix: &str,
    more: &str,
) -> std::path::PathBuf {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let storage = s3
        .storage_toml(dir)
        .replace("prefix = \"mirror/\"", &format!("prefix = {prefix:?}"));
    let config = dir.join("tfmirror.toml");
    std::fs::write(
        &config,
        common::config_toml(&MirrorOptions {
            extra: format!("{storage}{more}"),
            ..MirrorOptions::new(upstream.url(), &cache)
        }),
    )
    .unwrap();
    config
}

fn assert_ran(out: &std::process::Output, expected: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(expected),
        "expected {expected:?}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `prefetch` on one host fills the bucket for every replica; a bundle exported from it and
/// imported on a host of another bucket (prefix) fills that one: with the upstream gone,
/// replicas on empty disks serve both.
#[actix_web::test]
async fn prefetch_and_import_fill_the_bucket_for_every_replica() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());

    let prefetching = one_shot_config(
        &upstream,
        &s3,
        &dir.path().join("p"),
        "mirror/",
        "\n[[prefetch]]\nprovider = \"hashicorp/local\"\nplatforms = [\"linux_amd64\"]\n",
    );
    assert_ran(
        &common::serving::tfmirror(&["prefetch"], &prefetching).await,
        "prefetch: 1 fetched",
    );
    assert!(
        s3.keys().iter().any(|k| k == ZIP_KEY),
        "the prefetched archive is not in the bucket: {:?}",
        s3.keys()
    );
    let bundle = dir.path().join("bundle.tar");
    assert_ran(
        &common::serving::tfmirror(
            &["export", "--output", bundle.to_str().unwrap()],
            &prefetching,
        )
        .await,
        "1 releases",
    );
    let importing = one_shot_config(&upstream, &s3, &dir.path().join("i"), "imported/", "");
    assert_ran(
        &common::serving::tfmirror(&["import", bundle.to_str().unwrap()], &importing).await,
        "verified and added to s3://tfmirror/imported/",
    );
    let upstream_hits = upstream.total_hits();
    upstream.stop().await;

    for prefix in ["mirror/", "imported/"] {
        let name = prefix.trim_end_matches('/');
        let cache = dir.path().join(name).join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let storage = s3
            .storage_toml(&dir.path().join(name))
            .replace("prefix = \"mirror/\"", &format!("prefix = {prefix:?}"));
        let app = TestApp::spawn(MirrorOptions {
            extra: storage,
            ..MirrorOptions::new(upstream.url(), &cache)
        })
        .await;
        let (status, body) = app.get_bytes(&format!("{FILE_URL}{ZIP}")).await;
        assert_eq!(status, 200, "{prefix}: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, published.zips[ZIP], "{prefix}");
        app.stop().await;
    }
    assert!(
        s3.keys()
            .iter()
            .any(|k| k.starts_with("imported/") && k.ends_with(ZIP)),
        "{:?}",
        s3.keys()
    );
    assert_eq!(upstream.total_hits(), upstream_hits);
}

/// `storage.redirect = "presigned"`: a plain `GET` of an archive verified in the bucket is a
/// redirect to a presigned URL of it; everything else (a download still live, `HEAD`, ranges,
/// `SHA256SUMS`) still comes through the mirror.
#[actix_web::test]
async fn presigned_redirects_send_clients_to_the_bucket_for_verified_archives_only() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("a/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let app = TestApp::spawn(MirrorOptions {
        extra: format!(
            "{}redirect = \"presigned\"\n",
            s3.storage_toml(&dir.path().join("a"))
        ),
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let files = format!("{}/v1/providers/myproviders/local/2.1.0/files", app.base);
    let zip_url = format!("{files}/{ZIP}");
    // Cold: streamed through the mirror as it arrives.
    let cold = client.get(&zip_url).send().await.unwrap();
    assert_eq!(cold.status(), 200);
    assert_eq!(cold.bytes().await.unwrap(), published.zips[ZIP]);
    // Verified and in the bucket: a redirect there.
    let warm = client.get(&zip_url).send().await.unwrap();
    assert_eq!(warm.status(), 302);
    assert_eq!(warm.headers()["cache-control"], "no-store");
    let location = warm.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&s3.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(
        !location.contains(common::s3::SECRET_ACCESS_KEY),
        "{location}"
    );
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.bytes().await.unwrap(), published.zips[ZIP]);
    // The same archive through the network mirror.
    let mirror_zip = format!(
        "{}/mirror/registry.terraform.io/hashicorp/local/{ZIP}",
        app.base
    );
    assert_eq!(client.get(&mirror_zip).send().await.unwrap().status(), 302);
    // HEAD, a range and the sums are answered here.
    assert_eq!(client.head(&zip_url).send().await.unwrap().status(), 200);
    let range = client
        .get(&zip_url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.unwrap(), published.zips[ZIP][..10]);
    let sums = client
        .get(format!("{files}/terraform-provider-local_2.1.0_SHA256SUMS"))
        .send()
        .await
        .unwrap();
    assert_eq!(sums.status(), 200);
    app.stop().await;
}

/// An archive (or any part of one) in the bucket, not its lease.
fn is_archive(key: &str) -> bool {
    key.starts_with("mirror/releases/") && key.contains(".zip")
}

/// What one client got: its status, when its first byte came, the SHA-256 and length of
/// what it received, and whether the body ended in an error.
#[derive(Debug)]
struct Got {
    status: u16,
    first_byte: Option<Instant>,
    digest: Vec<u8>,
    bytes: u64,
    broken: bool,
}

/// GETs `url` to the end, noting the first byte; `first` hears of it as it comes.
async fn fetch(
    client: reqwest::Client,
    url: String,
    first: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> Got {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let mut got = Got {
        status,
        first_byte: None,
        digest: Vec::new(),
        bytes: 0,
        broken: false,
    };
    let mut hasher = sha2::Sha256::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                if got.first_byte.is_none() {
                    got.first_byte = Some(Instant::now());
                    if let Some(first) = &first {
                        let _ = first.send(());
                    }
                }
                hasher.update(&chunk);
                got.bytes += chunk.len() as u64;
            }
            Err(_) => {
                got.broken = true;
                break;
            }
        }
    }
    got.digest = hasher.finalize().to_vec();
    got
}

/// Publishes `local 2.1.0` for linux_amd64 with a `payload`-byte archive sent at
/// `64 KiB / pause`; returns the archive and its upstream path.
async fn sixteen_clients_cost_one_upstream_download(flavour: Flavour) {
    let s3 = S3Server::start(flavour);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    // 8 MiB at ~10 MB/s: about 0.8 s.
    let (zip, path) =
        FakeRelease::publish_paced(&upstream, 8 << 20, 64 * 1024, Duration::from_millis(6));
    let digest = sha2::Sha256::digest(&zip).to_vec();
    let replicas = [
        cluster_replica(&upstream, &s3, dir.path(), "a", "30s").await,
        cluster_replica(&upstream, &s3, dir.path(), "b", "30s").await,
    ];
    for app in &replicas {
        assert_eq!(app.get_json(DOWNLOAD_DOC).await.0, 200);
    }
    let started = Instant::now();
    let clients: Vec<_> = replicas
        .iter()
        .flat_map(|app| {
            let url = format!("{}{FILE_URL}{ZIP}", app.base);
            (0..8).map(move |_| tokio::spawn(fetch(app.client.clone(), url.clone(), None)))
        })
        .collect();
    let mut got = Vec::new();
    for client in clients {
        got.push(client.await.unwrap());
    }
    let done = started.elapsed();
    let upstream_first = upstream.first_byte_sent(&path).unwrap();
    for g in &got {
        assert_eq!(g.status, 200, "{g:?}");
        assert!(!g.broken, "{g:?}");
        assert_eq!((g.bytes, &g.digest), (zip.len() as u64, &digest));
    }
    let after_upstream: Vec<Duration> = got
        .iter()
        .map(|g| {
            g.first_byte
                .unwrap()
                .saturating_duration_since(upstream_first)
        })
        .collect();
    let slowest = *after_upstream.iter().max().unwrap();
    eprintln!(
        "{flavour:?}: 2 replicas x 8 clients, {} MiB: upstream GETs {}, first byte at every client \
         within {slowest:?} of upstream's first byte, all done in {done:?}",
        zip.len() >> 20,
        upstream.hits(&path)
    );
    assert_eq!(
        upstream.hits(&path),
        1,
        "one upstream download for both replicas"
    );
    // Generous (the target is 0.5 s on a quiet host; this one is shared by parallel builds).
    assert!(slowest < Duration::from_secs(2), "{after_upstream:?}");
    let keys = s3.keys();
    assert!(keys.iter().any(|k| k == ZIP_KEY), "{keys:?}");
    // The lease went with the download; the shared secret stays.
    assert!(!keys.iter().any(|k| k.contains("/leases/")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k == "mirror/cluster/secret"),
        "{keys:?}"
    );
    for app in replicas {
        app.stop().await;
    }
}

#[actix_web::test]
async fn seaweedfs_sixteen_clients_on_two_replicas_cost_one_upstream_download() {
    let _memory = MEMORY.read().await;
    sixteen_clients_cost_one_upstream_download(Flavour::SeaweedFs).await;
}

#[actix_web::test]
async fn a_tampered_archive_fails_the_followers_clients_and_leaves_nothing_in_the_bucket() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let (mut zip, path) =
        FakeRelease::publish_paced(&upstream, 2 << 20, 64 * 1024, Duration::from_millis(10));
    let last = zip.len() - 1;
    zip[last] ^= 0xff;
    upstream.put(&path, zip.clone());
    let replicas = [
        cluster_replica(&upstream, &s3, dir.path(), "a", "30s").await,
        cluster_replica(&upstream, &s3, dir.path(), "b", "30s").await,
    ];
    for app in &replicas {
        assert_eq!(app.get_json(DOWNLOAD_DOC).await.0, 200);
    }
    let clients: Vec<_> = replicas
        .iter()
        .flat_map(|app| {
            let url = format!("{}{FILE_URL}{ZIP}", app.base);
            (0..4).map(move |_| tokio::spawn(fetch(app.client.clone(), url.clone(), None)))
        })
        .collect();
    for client in clients {
        let got = tokio::time::timeout(Duration::from_secs(20), client)
            .await
            .expect("a client hung")
            .unwrap();
        // A clear error, or a body cut short of its length: never the whole archive.
        assert!(
            got.status >= 500 || (got.broken && got.bytes < zip.len() as u64),
            "{got:?}"
        );
    }
    assert_eq!(upstream.hits(&path), 1, "the follower downloaded it too");
    let keys = s3.keys();
    assert!(!keys.iter().any(|k| is_archive(k)), "{keys:?}");
    for app in &replicas {
        assert!(common::files_under(&app.cache_dir)
            .iter()
            .all(|f| !f.contains(".zip")));
    }
    for app in replicas {
        app.stop().await;
    }
}

#[actix_web::test]
async fn kill_9_of_the_lease_holder_fails_its_followers_and_the_lease_expires() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    // 4 MiB at ~6.5 MB/s: the holder is still downloading when it is killed.
    let (zip, path) =
        FakeRelease::publish_paced(&upstream, 4 << 20, 64 * 1024, Duration::from_millis(10));
    let digest = sha2::Sha256::digest(&zip).to_vec();

    // The holder: the real binary, in a process of its own.
    let holder_dir = dir.path().join("holder");
    let cache = holder_dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let port = free_port();
    let config = holder_dir.join("tfmirror.toml");
    let toml = common::config_toml(&MirrorOptions {
        extra: s3.cluster_toml(&holder_dir, port, "2s"),
        ..MirrorOptions::new(upstream.url(), &cache)
    });
    std::fs::write(&config, common::app::on_port(&toml, port)).unwrap();
    let holder = Serving::start(Path::new(env!("CARGO_BIN_EXE_tfmirror")), &config, "info");
    let client = reqwest::Client::new();
    let follower = cluster_replica(&upstream, &s3, dir.path(), "follower", "2s").await;
    let doc = client
        .get(format!("{}{DOWNLOAD_DOC}", holder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    assert_eq!(follower.get_json(DOWNLOAD_DOC).await.0, 200);

    // A client of the holder starts the download (and the lease, before asking upstream).
    let holder_client = tokio::spawn(fetch(
        client.clone(),
        format!("{}{FILE_URL}{ZIP}", holder.base),
        None,
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.first_byte_sent(&path).is_none() {
        assert!(Instant::now() < deadline, "the holder never downloaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The follower's clients get bytes from the holder's live download...
    let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
    let followers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(fetch(
                follower.client.clone(),
                format!("{}{FILE_URL}{ZIP}", follower.base),
                Some(first_tx.clone()),
            ))
        })
        .collect();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), first_rx.recv())
            .await
            .expect("a follower's client got no byte");
    }
    // ...until the holder dies mid-download.
    assert_eq!(upstream.hits(&path), 1);
    holder.kill9();
    let _ = holder_client.await;
    for client in followers {
        let got = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .expect("a follower's client hung after the holder died")
            .unwrap();
        assert_eq!(got.status, 200);
        assert!(got.broken && got.bytes < zip.len() as u64, "{got:?}");
    }
    // While the dead holder's lease lasts, a request fails fast instead of waiting.
    let asked = Instant::now();
    let (status, _) = follower.get_json(&format!("{FILE_URL}{ZIP}")).await;
    assert_eq!(status, 502);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let keys = s3.keys();
    assert!(!keys.iter().any(|k| is_archive(k)), "{keys:?}");
    // Once the dead holder's lease has expired, the next request fetches cleanly.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let again = fetch(
        follower.client.clone(),
        format!("{}{FILE_URL}{ZIP}", follower.base),
        None,
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert!(!again.broken);
    assert_eq!((again.bytes, &again.digest), (zip.len() as u64, &digest));
    assert_eq!(upstream.hits(&path), 2);
    let keys = s3.keys();
    assert!(keys.iter().any(|k| k == ZIP_KEY), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("/leases/")), "{keys:?}");
    follower.stop().await;
}

#[actix_web::test]
async fn the_private_route_needs_the_replicas_shared_secret() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let (zip, _) =
        FakeRelease::publish_paced(&upstream, 256 << 10, 64 * 1024, Duration::from_millis(1));
    let app = cluster_replica(&upstream, &s3, dir.path(), "a", "30s").await;
    let live = format!(
        "{}/_cluster/live/releases/hashicorp/terraform-provider-local/2.1.0/{ZIP}",
        app.base
    );
    let ask = |secret: Option<&str>| {
        let mut request = app.client.get(&live);
        if let Some(secret) = secret {
            request = request.header("x-tfmirror-peer-secret", secret);
        }
        request.send()
    };
    assert_eq!(ask(None).await.unwrap().status(), 403);
    assert_eq!(ask(Some("not-the-secret")).await.unwrap().status(), 403);
    // The first replica that needs the secret created it in the bucket.
    let secret = String::from_utf8(s3.get("mirror/cluster/secret").unwrap()).unwrap();
    assert_eq!(secret.len(), 64, "{secret}");
    // Admitted, but nothing of that name is downloading here.
    let response = ask(Some(&secret)).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(common::error_text(&body).contains("no download"), "{body}");
    let (status, body) = app.get_bytes(&format!("{FILE_URL}{ZIP}")).await;
    assert_eq!((status, body.len()), (200, zip.len()));
    // Names the layout would not build are refused the same way, never read.
    let response = app
        .client
        .get(format!(
            "{}/_cluster/live/releases/../cluster/secret",
            app.base
        ))
        .header("x-tfmirror-peer-secret", &secret)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    // The secret stays in the bucket: nothing of the cluster is kept on the disk.
    assert!(common::files_under(&app.cache_dir)
        .iter()
        .all(|f| !f.contains("cluster")));
    let base = app.base.clone();
    app.stop().await;

    // A replica without [cluster] has no such route to offer.
    let cache = dir.path().join("plain/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let plain = TestApp::spawn(MirrorOptions {
        extra: s3.storage_toml(&dir.path().join("plain")),
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let response = plain
        .client
        .get(live.replace(&base, &plain.base))
        .header("x-tfmirror-peer-secret", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    plain.stop().await;
}

/// Replicas that reach each other over https, sharing one certificate (`tls.cert`, trusted
/// for their `advertise_url`s): the follower still streams from the lease holder.
#[actix_web::test]
async fn replicas_follow_each_other_over_tls_with_their_shared_certificate() {
    let _memory = MEMORY.read().await;
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let (zip, path) =
        FakeRelease::publish_paced(&upstream, 1 << 20, 64 * 1024, Duration::from_millis(10));
    let certs = dir.path().join("certs");
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let cache = dir.path().join(name).join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let port = free_port();
        let extra = format!(
            "{}\n[cluster]\nadvertise_url = \"https://127.0.0.1:{port}\"\n",
            s3.storage_toml(&dir.path().join(name))
        );
        let app = TestApp::spawn_on_port(
            MirrorOptions {
                extra,
                tls_dir: Some(&certs),
                ..MirrorOptions::new(upstream.url(), &cache)
            },
            port,
        )
        .await;
        assert_eq!(app.get_json(DOWNLOAD_DOC).await.0, 200);
        replicas.push(app);
    }
    let clients: Vec<_> = replicas
        .iter()
        .flat_map(|app| {
            let url = format!("{}{FILE_URL}{ZIP}", app.base);
            (0..2).map(move |_| tokio::spawn(fetch(app.client.clone(), url.clone(), None)))
        })
        .collect();
    for client in clients {
        let got = client.await.unwrap();
        assert_eq!(
            (got.status, got.broken, got.bytes),
            (200, false, zip.len() as u64),
            "{got:?}"
        );
    }
    assert_eq!(upstream.hits(&path), 1);
    for app in replicas {
        app.stop().await;
    }
}
