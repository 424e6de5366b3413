//! Reliability: concurrent misses share one fetch (errors included), clients hanging up,
//! upstream faults (retries, Retry-After, timeouts, garbage), serving stale, negative caching,
//! size caps, listing URLs and a full disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{
    files_under, publisher_key, start_with_fake_upstream, temp_files, wait_for_recorded_h1,
    FakeRelease, FakeUpstream, Fault, MirrorOptions, TestApp,
};

const VERSIONS: &str = "/v1/providers/myproviders/local/versions";

fn archive_url(version: &str, zip: &str) -> String {
    format!("/v1/providers/myproviders/local/{version}/files/{zip}")
}

/// The version list once the background has verified every release and each version carries
/// its manifest's `protocols` (the list a client gets from then on).
async fn complete_list(app: &TestApp) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get_json(VERSIONS).await;
        assert_eq!(status, 200, "{body}");
        let versions = body["versions"].as_array().unwrap();
        if versions.iter().all(|v| v.get("protocols").is_some()) {
            return body;
        }
        assert!(Instant::now() < deadline, "protocols never listed: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// tfmirror in front of `upstream` with `options`.
async fn spawn(upstream: &FakeUpstream, options: MirrorOptions<'_>) -> TestApp {
    TestApp::spawn(MirrorOptions {
        upstream_url: upstream.url(),
        ..options
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Single flight

#[actix_web::test]
async fn concurrent_misses_for_lists_and_sums_share_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    // Slow answers make sure all requests arrive while the first fetch is under way.
    let slow = || Fault::Delay(Duration::from_millis(300));
    upstream.fail_next("/terraform-provider-local/index.json", [slow()]);
    upstream.fail_next(
        &format!("{}/{}", published.dir, published.sums_name),
        [slow()],
    );

    let lists = (0..16).map(|_| app.get_json(VERSIONS));
    let lists = futures_util::future::join_all(lists).await;
    assert!(lists
        .iter()
        .all(|(status, body)| *status == 200 && body == &lists[0].1));
    assert_eq!(upstream.hits("/terraform-provider-local/index.json"), 1);

    let download = "/v1/providers/myproviders/local/2.1.0/download/linux/amd64";
    let docs = futures_util::future::join_all((0..16).map(|_| app.get_json(download))).await;
    assert!(docs.iter().all(|(status, _)| *status == 200));
    assert_eq!(
        upstream.hits(&format!("{}/{}", published.dir, published.sums_name)),
        1
    );
    assert_eq!(upstream.hits(&format!("{}/index.json", published.dir)), 1);
}

#[actix_web::test]
async fn every_waiter_gets_the_error_of_a_shared_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let path = format!("{}/{zip}", published.dir);
    let mut tampered = upstream.get(&path).unwrap().to_vec();
    tampered[10] ^= 1;
    upstream.put(&path, tampered);
    upstream.throttle(&path, 32, Duration::from_millis(20));

    let registry_url = archive_url("2.1.0", &zip);
    let registry = (0..6).map(|_| app.get_json(&registry_url));
    let mirror_url = format!("/mirror/registry.terraform.io/hashicorp/local/{zip}");
    let mirror = (0..2).map(|_| app.get_json(&mirror_url));
    let (registry, mirror) = futures_util::future::join(
        futures_util::future::join_all(registry),
        futures_util::future::join_all(mirror),
    )
    .await;
    for (status, body) in registry.iter().chain(&mirror) {
        assert_eq!(*status, 502, "{body}");
        assert!(body["errors"][0]
            .as_str()
            .unwrap()
            .contains("failed verification"));
    }
    assert_eq!(upstream.hits(&path), 1, "each waiter fetched on its own");
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.ends_with(".zip")));
    assert!(temp_files(&app.cache_dir).is_empty());
}

#[actix_web::test]
async fn a_client_hanging_up_does_not_cancel_the_download_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let path = format!("{}/{zip}", published.dir);
    // About 0.6 s for the whole archive.
    upstream.throttle(
        &path,
        published.zips[&zip].len() / 20 + 1,
        Duration::from_millis(30),
    );

    let impatient = app
        .client
        .get(format!("{}{}", app.base, archive_url("2.1.0", &zip)))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(impatient.is_err(), "the first client should have given up");

    let (status, body) = app.get_bytes(&archive_url("2.1.0", &zip)).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&zip][..]);
    assert_eq!(
        upstream.hits(&path),
        1,
        "the hang-up restarted the download"
    );
    // The archive's h1: is written in the background just after the download; once it is
    // there, nothing temporary may stay.
    wait_for_recorded_h1(&app.cache_dir, &zip).await;
    assert!(
        temp_files(&app.cache_dir).is_empty(),
        "{:?}",
        temp_files(&app.cache_dir)
    );
}

// ---------------------------------------------------------------------------------------------
// Upstream faults

/// Throttles the upstream's `zip` of `published` to about 4 s for the whole archive.
fn throttle_archive(upstream: &FakeUpstream, published: &common::Published, zip: &str) -> String {
    let path = format!("{}/{zip}", published.dir);
    upstream.throttle(
        &path,
        published.zips[zip].len() / 20 + 1,
        Duration::from_millis(200),
    );
    path
}

/// Starts reading `url` from tfmirror in the background; the answer's status, once complete.
fn download_in_background(app: &TestApp, url: &str) -> actix_web::rt::task::JoinHandle<u16> {
    let request = app.client.get(format!("{}{url}", app.base)).send();
    actix_web::rt::spawn(async move {
        let response = request.await.unwrap();
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        status
    })
}

/// Until every `(upstream path, download)` pair has either reached the upstream or been
/// answered.
async fn wait_until_asked_or_answered(
    upstream: &FakeUpstream,
    pairs: &[(&str, &actix_web::rt::task::JoinHandle<u16>)],
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pairs
        .iter()
        .all(|(path, download)| upstream.hits(path) > 0 || download.is_finished())
    {
        assert!(Instant::now() < deadline, "the downloads never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn slow_archive_downloads_leave_a_slot_for_version_lists() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("null", "3.2.0").publish(&upstream, publisher_key());
    let app = spawn(
        &upstream,
        MirrorOptions {
            upstream_extra: "max_concurrent_fetches = 2\nfirst_byte_timeout = \"500ms\"",
            ..MirrorOptions::new(String::new(), &dir.path().join("cache"))
        },
    )
    .await;
    // Warm the release so that only the archive downloads remain.
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{body}");
    let linux = published.zip_name("linux", "amd64");
    let darwin = published.zip_name("darwin", "arm64");
    let linux_path = throttle_archive(&upstream, &published, &linux);
    let darwin_path = throttle_archive(&upstream, &published, &darwin);

    let started = Instant::now();
    let first = download_in_background(&app, &archive_url("2.1.0", &linux));
    let second = download_in_background(&app, &archive_url("2.1.0", &darwin));
    wait_until_asked_or_answered(&upstream, &[(&linux_path, &first), (&darwin_path, &second)])
        .await;
    assert!(
        !first.is_finished() || !second.is_finished(),
        "no archive download in flight"
    );

    let asked = Instant::now();
    let (status, body) = app
        .get_json("/v1/providers/myproviders/null/versions")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "the version list waited {:?} behind the archives",
        asked.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the archives finished before the version list was asked for; the test proves nothing"
    );
}

#[actix_web::test]
async fn an_archive_waiting_for_a_busy_slot_gets_a_504_after_first_byte_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("null", "3.2.0").publish(&upstream, publisher_key());
    // Three slots: two for archives, one kept for metadata.
    let app = spawn(
        &upstream,
        MirrorOptions {
            upstream_extra: "max_concurrent_fetches = 3\nfirst_byte_timeout = \"500ms\"",
            ..MirrorOptions::new(String::new(), &dir.path().join("cache"))
        },
    )
    .await;
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{body}");
    let linux = published.zip_name("linux", "amd64");
    let darwin = published.zip_name("darwin", "arm64");
    let windows = published.zip_name("windows", "amd64");
    let linux_path = throttle_archive(&upstream, &published, &linux);
    let darwin_path = throttle_archive(&upstream, &published, &darwin);

    let started = Instant::now();
    let first = download_in_background(&app, &archive_url("2.1.0", &linux));
    let second = download_in_background(&app, &archive_url("2.1.0", &darwin));
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.hits(&linux_path) == 0 || upstream.hits(&darwin_path) == 0 {
        assert!(Instant::now() < deadline, "the downloads never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every archive slot is busy for seconds: the third waits about first_byte_timeout.
    let asked = Instant::now();
    let response = app
        .client
        .get(format!("{}{}", app.base, archive_url("2.1.0", &windows)))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("the third archive request hung");
    let waited = asked.elapsed();
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        body["errors"][0].as_str().unwrap().contains("timed out"),
        "{body}"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
        "waited {waited:?} for a slot"
    );
    let windows_path = format!("{}/{windows}", published.dir);
    assert_eq!(upstream.hits(&windows_path), 0, "it went past the slots");
    assert!(
        !first.is_finished() && !second.is_finished() && started.elapsed() < Duration::from_secs(3),
        "the slots were free again before the third request; the test proves nothing"
    );

    // Metadata still has its own slot, and the slots come back once the downloads end.
    let (status, body) = app
        .get_json("/v1/providers/myproviders/null/versions")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    let (status, _) = app.get_bytes(&archive_url("2.1.0", &windows)).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn transient_upstream_errors_are_retried_and_404_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let index = "/terraform-provider-local/index.json";
    upstream.fail_next(index, [Fault::Status(503, None), Fault::Status(502, None)]);
    let (status, _) = app.get_json(VERSIONS).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.hits(index), 3);

    let (status, body) = app
        .get_json("/v1/providers/myproviders/nope/versions")
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(upstream.hits("/terraform-provider-nope/index.json"), 1);
}

#[actix_web::test]
async fn retry_after_is_honoured_and_a_long_one_is_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let cache = dir.path().join("cache");
    // No background verification of listed releases: the 2.1.0 release must be fetched by the
    // request below, into the fault set for it, not before by the version list's follow-up.
    let app = spawn(
        &upstream,
        MirrorOptions {
            cache_extra: "protocol_fetches = 0\n",
            ..MirrorOptions::new(String::new(), &cache)
        },
    )
    .await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let index = "/terraform-provider-local/index.json";
    upstream.fail_next(index, [Fault::Status(429, Some(1))]);
    let started = Instant::now();
    let (status, _) = app.get_json(VERSIONS).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After ignored"
    );
    assert_eq!(upstream.hits(index), 2);

    // An hour is past retry_max_delay (10 s by default): fail now rather than hang a client.
    let version_index = format!("{}/index.json", published.dir);
    upstream.fail_next(&version_index, [Fault::Status(503, Some(3600))]);
    let started = Instant::now();
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("upstream"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(upstream.hits(&version_index), 1);
}

#[actix_web::test]
async fn slow_upstreams_time_out_with_a_json_504_and_cache_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let app = spawn(
        &upstream,
        MirrorOptions {
            upstream_extra: "first_byte_timeout = \"300ms\"\nread_timeout = \"300ms\"\nretries = 1",
            ..MirrorOptions::new(String::new(), &cache)
        },
    )
    .await;

    // No first byte: two attempts of 300 ms, then 504.
    let index = "/terraform-provider-local/index.json";
    upstream.fail_always(index, Fault::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    let (status, body) = app.get_json(VERSIONS).await;
    assert_eq!(status, 504, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(upstream.hits(index), 2);

    // Headers at once, then the body stalls between chunks.
    let zip = published.zip_name("linux", "amd64");
    let path = format!("{}/{zip}", published.dir);
    upstream.throttle(&path, 64, Duration::from_secs(1));
    let (status, _) = app.get_json(&archive_url("2.1.0", &zip)).await;
    assert!(status == 504 || status == 502, "{status}");
    assert!(!files_under(&cache).iter().any(|f| f.ends_with(".zip")));
    assert!(temp_files(&cache).is_empty());
}

#[actix_web::test]
async fn stale_lists_are_served_at_once_and_refreshed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let app = spawn(
        &upstream,
        MirrorOptions {
            metadata_ttl: "1s",
            ..MirrorOptions::new(String::new(), &cache)
        },
    )
    .await;
    let warm = complete_list(&app).await;
    let index = "/terraform-provider-local/index.json";

    // Past the TTL, each kind of upstream failure: the client still gets the list, at once.
    for fault in [
        Fault::Delay(Duration::from_secs(5)),
        Fault::Status(500, None),
        Fault::Garbage,
    ] {
        upstream.fail_always(index, fault.clone());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        let (status, body) = app.get_json(VERSIONS).await;
        assert_eq!(status, 200, "{fault:?}");
        assert_eq!(body, warm, "{fault:?}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{fault:?}: the client waited on upstream for {:?}",
            started.elapsed()
        );
        upstream.heal(index);
    }

    // Upstream is back with a new version: a later request sees it without anyone waiting.
    FakeRelease::new("local", "2.2.0").publish(&upstream, publisher_key());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let (status, body) = app.get_json(VERSIONS).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
        if body["versions"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the list was never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `tfmirror_version_lists_refused_total` as `/metrics` shows it (process-wide, so tests
/// compare it with an earlier reading).
async fn lists_refused(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("tfmirror_version_lists_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[actix_web::test]
async fn a_list_without_versions_never_replaces_a_cached_one() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let options = || MirrorOptions {
        metadata_ttl: "1s",
        ..MirrorOptions::new(upstream.url(), &cache)
    };
    let app = spawn(&upstream, options()).await;
    let warm = complete_list(&app).await;
    assert_eq!(warm["versions"].as_array().unwrap().len(), 1);
    let index = "/terraform-provider-local/index.json";
    let published = upstream.get(index).unwrap();

    // 200 answers that parse to no versions are refused and counted; the list stays.
    for useless in [&b"{}"[..], br#"{"errors":["service unavailable"]}"#] {
        upstream.put(index, useless.to_vec());
        let before = lists_refused(&app).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = app.get_json(VERSIONS).await;
            assert_eq!(status, 200);
            assert_eq!(body, warm, "{}", String::from_utf8_lossy(useless));
            if lists_refused(&app).await > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the useless list was never asked for or counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A truncated list fails to parse: the cached one stays as well.
    upstream.put(index, published.slice(..published.len() / 2));
    let hits = upstream.hits(index);
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.hits(index) < hits + 2 {
        let (status, body) = app.get_json(VERSIONS).await;
        assert_eq!(status, 200);
        assert_eq!(body, warm);
        assert!(
            Instant::now() < deadline,
            "the truncated list was never asked for"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = app.get_json(VERSIONS).await;
    assert_eq!(body, warm);

    // Nor was the list on disk replaced: a restart with upstream gone still serves it.
    app.stop().await;
    upstream.stop().await;
    let app = spawn(&upstream, options()).await;
    let (status, body) = app.get_json(VERSIONS).await;
    assert_eq!(status, 200);
    assert_eq!(body, warm);
}

#[actix_web::test]
async fn nothing_cached_and_upstream_down_is_a_json_502() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    upstream.fail_always(
        "/terraform-provider-local/index.json",
        Fault::Status(503, None),
    );
    let (status, body) = app.get_json(VERSIONS).await;
    assert_eq!(status, 502);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("upstream unreachable"),
        "{body}"
    );
}

#[actix_web::test]
async fn upstream_404s_are_remembered_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    for _ in 0..3 {
        let (status, _) = app
            .get_json("/v1/providers/myproviders/typo/versions")
            .await;
        assert_eq!(status, 404);
        let (status, _) = app
            .get_json("/v1/providers/myproviders/local/9.9.9/download/linux/amd64")
            .await;
        assert_eq!(status, 404);
    }
    assert_eq!(upstream.hits("/terraform-provider-typo/index.json"), 1);
    // A version the cached list does not name is not asked of upstream at all.
    assert_eq!(upstream.hits("/terraform-provider-local/index.json"), 1);
    assert_eq!(
        upstream.hits("/terraform-provider-local/9.9.9/index.json"),
        0
    );
    // Known things are unaffected.
    let (status, _) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200);
    let _ = published;
}

// ---------------------------------------------------------------------------------------------
// Caps and hosts

#[actix_web::test]
async fn archives_over_the_size_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let app = spawn(
        &upstream,
        MirrorOptions {
            cache_extra: "max_archive_bytes = 100",
            ..MirrorOptions::new(String::new(), &cache)
        },
    )
    .await;
    let zip = published.zip_name("linux", "amd64");
    assert!(published.zips[&zip].len() > 100);
    let (status, body) = app.get_json(&archive_url("2.1.0", &zip)).await;
    assert_eq!(status, 502, "{body}");
    assert!(!files_under(&cache).iter().any(|f| f.ends_with(".zip")));
    assert!(temp_files(&cache).is_empty());
}

#[actix_web::test]
async fn urls_in_listings_never_send_us_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let elsewhere = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    // The listing says the archive lives on another host, which would serve anything.
    let index_path = format!("{}/index.json", published.dir);
    let index = String::from_utf8(upstream.get(&index_path).unwrap().to_vec()).unwrap();
    upstream.put(
        &index_path,
        index.replace(&upstream.url(), &elsewhere.url()),
    );
    elsewhere.put(&format!("{}/{zip}", published.dir), "evil bytes");

    let (status, body) = app.get_bytes(&archive_url("2.1.0", &zip)).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&zip][..]);
    assert_eq!(elsewhere.total_hits(), 0, "tfmirror followed a listing URL");
}

#[actix_web::test]
async fn a_full_disk_still_serves_the_cache_and_refuses_new_downloads_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let linux = published.zip_name("linux", "amd64");
    let darwin = published.zip_name("darwin", "arm64");
    assert_eq!(app.get_bytes(&archive_url("2.1.0", &linux)).await.0, 200);
    app.get_json(VERSIONS).await;
    // The archive's h1: is written in the background just after the download: the snapshot
    // waits for it, or it may catch its temp file.
    wait_for_recorded_h1(&app.cache_dir, &linux).await;
    app.stop().await;
    let cached_before = files_under(&dir.path().join("cache"));

    // The same cache, now on a "full" disk: no filesystem has this much free.
    let cache = dir.path().join("cache");
    let app = spawn(
        &upstream,
        MirrorOptions {
            cache_extra: "min_free_space = \"1 PiB\"",
            ..MirrorOptions::new(String::new(), &cache)
        },
    )
    .await;
    let (status, body) = app.get_bytes(&archive_url("2.1.0", &linux)).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&linux][..]);
    assert_eq!(app.get_json(VERSIONS).await.0, 200);

    let (status, body) = app.get_json(&archive_url("2.1.0", &darwin)).await;
    assert_eq!(status, 507, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    assert_eq!(
        files_under(&cache),
        cached_before,
        "something new was written"
    );
}

#[actix_web::test]
async fn an_unwritable_cache_still_serves_what_it_has_and_says_why_it_cannot_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "2.2.0").publish(&upstream, publisher_key());
    let linux = published.zip_name("linux", "amd64");
    // A plain file where 2.2.0's directory would go: every write below it fails (a stand-in
    // for a read-only or broken cache volume that also works when the tests run as root).
    // Put there first: the version list fetched for 2.1.0 has the mirror verify 2.2.0 in the
    // background to learn its protocols.
    let blocked = app
        .cache_dir
        .join("releases/hashicorp/terraform-provider-local/2.2.0");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "not a directory").unwrap();
    assert_eq!(app.get_bytes(&archive_url("2.1.0", &linux)).await.0, 200);

    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.2.0/download/linux/amd64")
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("cannot write its cache"),
        "{body}"
    );
    let (status, bytes) = app.get_bytes(&archive_url("2.1.0", &linux)).await;
    assert_eq!(status, 200);
    assert_eq!(&bytes[..], &published.zips[&linux][..]);
    // 2.1.0's h1: is written in the background just after its download; once it is there,
    // nothing temporary may stay.
    wait_for_recorded_h1(&app.cache_dir, &linux).await;
    assert!(
        temp_files(&app.cache_dir).is_empty(),
        "{:?}",
        temp_files(&app.cache_dir)
    );
}
