//! `cache.complete_hashes`: one platform's archive fetched, and the other platforms' archives
//! are fetched and hashed in the background — at most two at a time, shown on the status
//! page and in `/metrics` — until `<version>.json` lists an `h1:` for every platform. Off by
//! default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{publisher_key, FakeRelease, FakeUpstream, MirrorOptions, TestApp};

const PLATFORMS: [(&str, &str); 6] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
    ("freebsd", "amd64"),
];

const VERSION_DOC: &str = "/mirror/registry.terraform.io/hashicorp/local/2.1.0.json";

fn h1_platforms(doc: &serde_json::Value) -> usize {
    doc["archives"]
        .as_object()
        .unwrap()
        .values()
        .filter(|a| {
            a["hashes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h.as_str().unwrap().starts_with("h1:"))
        })
        .count()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[actix_web::test]
async fn one_download_brings_every_platforms_h1_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let mut release = FakeRelease::new("local", "2.1.0");
    release.platforms = PLATFORMS.to_vec();
    let published = release.publish(&upstream, publisher_key());
    for zip in published.zips.keys() {
        // Slow archives, so that the background downloads overlap if they may.
        upstream.throttle(
            &format!("{}/{zip}", published.dir),
            64,
            Duration::from_millis(40),
        );
    }
    let cache = dir.path().join("cache");
    let app = TestApp::spawn(MirrorOptions {
        cache_extra: "complete_hashes = true",
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;

    let linux = published.zip_name("linux", "amd64");
    let (status, _) = app
        .get_bytes(&format!(
            "/v1/providers/myproviders/local/2.1.0/files/{linux}"
        ))
        .await;
    assert_eq!(status, 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_on_status_page = false;
    let mut seen_pending = false;
    loop {
        let page = app.get("/").await.text().await.unwrap();
        seen_on_status_page |=
            page.contains("<h2>Completing hashes</h2>") && page.contains("hashicorp/local 2.1.0");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        seen_pending |= metric(&metrics, "tfmirror_hash_completions_pending") > 0;
        let (_, doc) = app.get_json(VERSION_DOC).await;
        if h1_platforms(&doc) == PLATFORMS.len()
            && metric(&metrics, "tfmirror_hash_completions_total{outcome=\"ok\"}") == 5
        {
            break;
        }
        assert!(Instant::now() < deadline, "never complete: {doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_on_status_page, "the status page never showed the work");
    assert!(seen_pending, "/metrics never showed pending work");
    for zip in published.zips.keys() {
        assert_eq!(
            upstream.hits(&format!("{}/{zip}", published.dir)),
            1,
            "{zip}"
        );
    }
    assert!(
        upstream.max_in_flight() <= 2,
        "{} upstream requests at once",
        upstream.max_in_flight()
    );
    // Done: the page says nothing more about it, and nothing is pending.
    let page = app.get("/").await.text().await.unwrap();
    assert!(!page.contains("Completing hashes"), "{page}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(metric(&metrics, "tfmirror_hash_completions_pending"), 0);
}

#[actix_web::test]
async fn without_complete_hashes_only_fetched_archives_get_an_h1() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("null", "3.2.0").publish(&upstream, publisher_key());
    let app = TestApp::spawn(MirrorOptions::new(
        upstream.url(),
        &dir.path().join("cache"),
    ))
    .await;
    let linux = published.zip_name("linux", "amd64");
    let (status, _) = app
        .get_bytes(&format!(
            "/v1/providers/myproviders/null/3.2.0/files/{linux}"
        ))
        .await;
    assert_eq!(status, 200);
    let path = "/mirror/registry.terraform.io/hashicorp/null/3.2.0.json";
    let doc = app.version_doc_with_h1(path, "linux_amd64").await;
    assert_eq!(h1_platforms(&doc), 1, "{doc}");
    for zip in published.zips.keys().filter(|z| **z != linux) {
        assert_eq!(upstream.hits(&format!("{}/{zip}", published.dir)), 0);
    }
}
