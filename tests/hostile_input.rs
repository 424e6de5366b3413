//! Hostile requests: generated malformed paths (proptest) are 4xx and never touch a file
//! outside the cache; over-long targets and headers are refused; made-up versions and
//! providers cost upstream (almost) nothing; upstream concurrency is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::Duration,
};

use common::{
    files_under, publisher_key, start_with_fake_upstream, FakeRelease, FakeUpstream, MirrorOptions,
    TestApp,
};
use proptest::prelude::*;

/// Sends `raw_target` byte for byte (blocking: the server runs on its own thread) and returns
/// the status code.
fn raw_request(addr: SocketAddr, raw_target: &str, extra_header: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET {raw_target} HTTP/1.1\r\nHost: localhost\r\n{extra_header}Connection: close\r\n\r\n"
    );
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Printable ASCII with traversal pieces, encodings and long runs mixed in.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[!-~&&[^?#]]{0,40}",
        prop::collection::vec(
            prop_oneof![
                Just("..".to_owned()),
                Just("%2e%2e".to_owned()),
                Just("%2f".to_owned()),
                Just("%5c".to_owned()),
                Just("%00".to_owned()),
                Just("%c0%ae".to_owned()),
                Just("\\".to_owned()),
                Just("/".to_owned()),
                "[a-z0-9]{1,8}",
            ],
            1..6
        )
        .prop_map(|parts| parts.concat()),
        "[a-z]{200,400}",
    ]
}

#[actix_web::test]
async fn generated_malformed_paths_are_4xx_and_touch_nothing_outside_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let outside_before = files_under(dir.path());
    let addr = app.server.addr;

    let templates = [
        "/v1/providers/{}/{}/versions",
        "/v1/providers/myproviders/{}/{}/download/linux/amd64",
        "/v1/providers/myproviders/local/{}/download/{}/amd64",
        "/v1/providers/myproviders/local/{}/files/{}",
        "/v1/providers/myproviders/local/2.1.0/files/{}{}",
        "/mirror/{}/hashicorp/{}/index.json",
        "/mirror/registry.terraform.io/hashicorp/local/{}{}",
        "/mirror/registry.terraform.io/{}/local/{}.json",
        "/{}/{}",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(
            &(0..templates.len(), segment(), segment()),
            |(template, a, b)| {
                let target = templates[template]
                    .replacen("{}", &a, 1)
                    .replacen("{}", &b, 1);
                let status = raw_request(addr, &target, "");
                prop_assert!((400..500).contains(&status), "{target:?} answered {status}");
                Ok(())
            },
        )
        .unwrap();

    let mut outside_after = files_under(dir.path());
    outside_after.retain(|f| !f.starts_with("cache/"));
    let mut expected = outside_before;
    expected.retain(|f| !f.starts_with("cache/"));
    assert_eq!(outside_after, expected, "a file appeared outside the cache");
    // Only the one real release a template names may have been fetched (with the record of
    // the key that signed it, and the version list that said it exists); no archive, nothing
    // anywhere else in the cache.
    for file in files_under(&app.cache_dir) {
        let release_file = file.starts_with("releases/hashicorp/terraform-provider-local/2.1.0/")
            && !file.ends_with(".zip");
        let provider_record = [
            "releases/hashicorp/terraform-provider-local/signing-keys.json",
            "releases/hashicorp/terraform-provider-local/versions.json",
        ]
        .contains(&file.as_str());
        assert!(release_file || provider_record, "{file}");
    }
}

#[actix_web::test]
async fn over_long_targets_and_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app) = start_with_fake_upstream(dir.path()).await;
    let long_path = format!("/v1/providers/{}/local/versions", "a".repeat(10_000));
    let response = app.get(&long_path).await;
    assert_eq!(response.status(), 414);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        body["errors"][0].as_str().unwrap().contains("limit"),
        "{body}"
    );

    // Over our limit, then over actix's own read limit.
    for size in [20 * 1024, 200 * 1024] {
        let huge_header = format!("X-Padding: {}\r\n", "b".repeat(size));
        let status = raw_request(app.server.addr, "/healthz", &huge_header);
        assert_eq!(status, 431, "{size} header bytes");
    }
    // The server is still fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[actix_web::test]
async fn concurrent_upstream_fetches_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let app = TestApp::spawn(MirrorOptions {
        upstream_extra: "max_concurrent_fetches = 1",
        ..MirrorOptions::new(upstream.url(), &dir.path().join("cache"))
    })
    .await;
    // Warm the release so that only archive downloads remain.
    app.get("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    for zip in published.zips.keys() {
        upstream.throttle(
            &format!("{}/{zip}", published.dir),
            100,
            Duration::from_millis(10),
        );
    }
    let urls: Vec<String> = published
        .zips
        .keys()
        .map(|zip| format!("/v1/providers/myproviders/local/2.1.0/files/{zip}"))
        .collect();
    let results = futures_util::future::join_all(urls.iter().map(|u| app.get_bytes(u))).await;
    for ((status, body), zip) in results.iter().zip(published.zips.values()) {
        assert_eq!(*status, 200);
        assert_eq!(&body[..], &zip[..]);
    }
    assert_eq!(upstream.max_in_flight(), 1);
}

#[actix_web::test]
async fn made_up_versions_are_answered_from_the_cached_list() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let app = TestApp::spawn(MirrorOptions {
        metadata_ttl: "2s",
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let list = "/terraform-provider-local/index.json";
    let zip = published.zip_name("linux", "amd64");

    // 60 distinct versions nobody published, over every route that names a version.
    for minor in 0..20 {
        let version = format!("9.{minor}.0");
        for path in [
            format!("/v1/providers/myproviders/local/{version}/download/linux/amd64"),
            format!("/mirror/registry.terraform.io/hashicorp/local/{version}.json"),
            format!(
                "/v1/providers/myproviders/local/{version}/files/terraform-provider-local_{version}_linux_amd64.zip"
            ),
        ] {
            let (status, body) = app.get_json(&path).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert!(
                common::error_text(&body).contains("version list does not name it"),
                "{body}"
            );
        }
    }
    // Made-up providers: one upstream question each, remembered (`negative_ttl`).
    for round in 0..2 {
        for n in 0..10 {
            let path = format!("/v1/providers/myproviders/madeup{n}/versions");
            assert_eq!(app.get_json(&path).await.0, 404, "round {round}");
        }
    }
    for n in 0..10 {
        assert_eq!(
            upstream.hits(&format!("/terraform-provider-madeup{n}/index.json")),
            1
        );
    }
    assert_eq!(upstream.hits(list), 1, "{:?}", upstream.requested_paths());
    let asked_for_versions: Vec<String> = upstream
        .requested_paths()
        .into_iter()
        .filter(|p| p.starts_with("/terraform-provider-local/9."))
        .collect();
    assert_eq!(asked_for_versions, Vec::<String>::new());
    // A real version is served as ever.
    assert_eq!(
        app.get_bytes(&format!(
            "/v1/providers/myproviders/local/2.1.0/files/{zip}"
        ))
        .await
        .0,
        200
    );

    // A version published upstream meanwhile appears with the list's refresh, after
    // `metadata_ttl`, not before, and costs one refresh however often it was asked for.
    let newer = FakeRelease::new("local", "2.2.0").publish(&upstream, publisher_key());
    let path = format!(
        "/v1/providers/myproviders/local/2.2.0/files/{}",
        newer.zip_name("linux", "amd64")
    );
    assert_eq!(app.get_bytes(&path).await.0, 404);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = app.get_bytes(&path).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 404);
        assert!(std::time::Instant::now() < deadline, "2.2.0 never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        upstream.hits(list),
        2,
        "one refresh after metadata_ttl, however many requests"
    );
    app.stop().await;
}
