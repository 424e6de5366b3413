//! `cache.max_size`: `tfmirror gc` and the server's own check evict least-recently-used
//! archives, never `[[prefetch]]` providers nor archives served within `gc_grace`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use common::{
    config_toml, files_under, publisher_key, wait_for_recorded_h1, FakeRelease, FakeUpstream,
    MirrorOptions, TestApp,
};

const KEEP_3: &str =
    "[[prefetch]]\nprovider = \"hashicorp/local\"\nversions = \"3.0.0\"\nplatforms = [\"linux_amd64\"]\n";

async fn warm_three_versions(dir: &Path) -> (FakeUpstream, PathBuf) {
    let upstream = FakeUpstream::start().await;
    let cache = dir.join("cache");
    let app = TestApp::spawn(MirrorOptions::new(upstream.url(), &cache)).await;
    // All published before the first request: the mirror's version list decides what exists.
    let published: Vec<_> = ["1.0.0", "2.0.0", "3.0.0"]
        .into_iter()
        .map(|version| {
            let release = FakeRelease {
                payload_bytes: 20_000,
                ..FakeRelease::new("local", version)
            };
            (version, release.publish(&upstream, publisher_key()))
        })
        .collect();
    for (version, published) in published {
        let zip = published.zip_name("linux", "amd64");
        let url = format!("/v1/providers/myproviders/local/{version}/files/{zip}");
        assert_eq!(app.get_bytes(&url).await.0, 200);
        // Written in the background just after the download; the tests measure the cache.
        wait_for_recorded_h1(&cache, &zip).await;
    }
    app.stop().await;
    (upstream, cache)
}

fn zip_of(cache: &Path, version: &str) -> PathBuf {
    cache.join(format!(
        "releases/hashicorp/terraform-provider-local/{version}/terraform-provider-local_{version}_linux_amd64.zip"
    ))
}

fn set_accessed(path: &Path, ago: Duration) {
    let file = std::fs::File::open(path).unwrap();
    file.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::now() - ago))
        .unwrap();
}

fn cache_bytes(cache: &Path) -> u64 {
    files_under(cache)
        .iter()
        .map(|f| std::fs::metadata(cache.join(f)).unwrap().len())
        .sum()
}

async fn gc(
    dir: &Path,
    upstream: &FakeUpstream,
    cache: &Path,
    cache_extra: &str,
) -> std::process::Output {
    let config = dir.join("tfmirror.toml");
    let options = MirrorOptions {
        extra: KEEP_3.to_owned(),
        cache_extra,
        ..MirrorOptions::new(upstream.url(), cache)
    };
    std::fs::write(&config, config_toml(&options)).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tfmirror"))
        .args(["gc", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap()
}

#[actix_web::test]
async fn gc_evicts_least_recently_used_but_keeps_prefetched_and_recent_archives() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, cache) = warm_three_versions(dir.path()).await;
    set_accessed(&zip_of(&cache, "3.0.0"), Duration::from_secs(4 * 3600));
    set_accessed(&zip_of(&cache, "1.0.0"), Duration::from_secs(3 * 3600));
    set_accessed(&zip_of(&cache, "2.0.0"), Duration::from_secs(2 * 3600));

    // Room for all but one archive: the oldest that is not prefetched goes.
    let limit = cache_bytes(&cache) - 10_000;
    let out = gc(
        dir.path(),
        &upstream,
        &cache,
        &format!("max_size = {limit}"),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("evicted 1 archives"), "{stdout}");
    assert!(stdout.contains("1 kept for [[prefetch]]"), "{stdout}");
    assert!(!zip_of(&cache, "1.0.0").exists());
    assert!(zip_of(&cache, "2.0.0").exists());
    assert!(
        zip_of(&cache, "3.0.0").exists(),
        "a [[prefetch]] archive was evicted"
    );
    assert!(cache_bytes(&cache) <= limit);

    // 2.0.0 was just served: within gc_grace it stays even if the limit cannot be met.
    set_accessed(&zip_of(&cache, "2.0.0"), Duration::ZERO);
    let out = gc(dir.path(), &upstream, &cache, "max_size = \"1 KB\"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still over its limit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(zip_of(&cache, "2.0.0").exists());
    assert!(zip_of(&cache, "3.0.0").exists());
}

#[actix_web::test]
async fn the_server_keeps_its_cache_under_max_size_and_refetches_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, cache) = warm_three_versions(dir.path()).await;
    for (version, hours) in [("1.0.0", 3), ("2.0.0", 2), ("3.0.0", 1)] {
        set_accessed(&zip_of(&cache, version), Duration::from_secs(hours * 3600));
    }
    let limit = cache_bytes(&cache) - 30_000;
    let cache_extra = format!("max_size = {limit}\ngc_interval = \"200ms\"\ngc_grace = \"1m\"");
    let app = TestApp::spawn(MirrorOptions {
        cache_extra: &cache_extra,
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache_bytes(&cache) > limit {
        assert!(
            std::time::Instant::now() < deadline,
            "never got under max_size"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!zip_of(&cache, "1.0.0").exists() && !zip_of(&cache, "2.0.0").exists());
    assert!(zip_of(&cache, "3.0.0").exists());
    // An evicted archive is fetched again, verified, when asked for.
    let zip = "terraform-provider-local_1.0.0_linux_amd64.zip";
    let (status, _) = app
        .get_bytes(&format!(
            "/v1/providers/myproviders/local/1.0.0/files/{zip}"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(zip_of(&cache, "1.0.0").exists());
}
