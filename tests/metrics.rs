//! `/metrics` in the Prometheus text format: requests, cache outcomes, upstream traffic,
//! verification failures, cache size. Alone in its test binary, so counts are exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{publisher_key, start_with_fake_upstream, FakeRelease};

/// The tests here take turns: each server's start-up sweep sets the process-wide cache size
/// gauges to its own (empty) cache's, which would undo another test's stored files.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of the metric line that starts with `series` (name and labels), if any.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[actix_web::test]
async fn metrics_count_requests_cache_outcomes_upstream_and_verification() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let tampered = FakeRelease::new("local", "2.2.0").publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let path = format!("{}/{}", tampered.dir, tampered.zip_name("linux", "amd64"));
    let mut bytes = upstream.get(&path).unwrap().to_vec();
    bytes[5] ^= 1;
    upstream.put(&path, bytes);

    let scrape = || async {
        let response = app.get("/metrics").await;
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.text().await.unwrap()
    };
    let before = scrape().await;
    let versions_ok = "tfmirror_http_requests_total{method=\"GET\",route=\"/v1/providers/{namespace}/{provider_type}/versions\",status=\"200\"}";
    let failures = "tfmirror_verification_failures_total";

    app.get_json("/v1/providers/myproviders/local/versions")
        .await;
    app.get_json("/v1/providers/myproviders/local/versions")
        .await;
    let url = format!("/v1/providers/myproviders/local/2.1.0/files/{zip}");
    app.get_bytes(&url).await;
    app.get_bytes(&url).await;
    let bad = format!(
        "/v1/providers/myproviders/local/2.2.0/files/{}",
        tampered.zip_name("linux", "amd64")
    );
    assert_eq!(app.get_bytes(&bad).await.0, 502);
    let after = scrape().await;

    let delta = |series: &str| {
        metric(&after, series).unwrap_or(0.0) - metric(&before, series).unwrap_or(0.0)
    };
    assert_eq!(delta(versions_ok), 2.0, "{after}");
    assert!(delta(failures) >= 1.0, "{after}");
    assert!(delta("tfmirror_cache_events_total{outcome=\"hit\"}") >= 2.0);
    assert!(delta("tfmirror_cache_events_total{outcome=\"miss\"}") >= 3.0);
    assert!(
        delta("tfmirror_upstream_requests_total{outcome=\"ok\",upstream=\"hashicorp\"}") >= 5.0
    );
    assert!(delta("tfmirror_upstream_bytes_total{upstream=\"hashicorp\"}") > 0.0);
    assert!(after.contains("tfmirror_http_request_duration_seconds_bucket{route=\"/v1/providers/{namespace}/{provider_type}/{version}/files/{file}\""));
    assert!(metric(&after, "tfmirror_downloads_in_flight").is_some());
    assert!(metric(&after, "tfmirror_cache_bytes").unwrap() > 0.0);
    assert!(metric(&after, "process_resident_memory_bytes").unwrap() > 0.0);
    // Hostile paths do not create series: unmatched routes share one label.
    app.get("/no/such/thing").await;
    let text = scrape().await;
    assert!(!text.contains("/no/such/thing"));
    assert!(text.contains("route=\"unmatched\""));
}

/// The label values of every `tfmirror_http_*` series in `text`, by label name.
fn http_label_values(text: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut values: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for line in text.lines().filter(|l| l.starts_with("tfmirror_http_")) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = &rest[..rest.rfind('}').unwrap()];
        let mut rest = labels;
        while let Some((name, after)) = rest.split_once("=\"") {
            let end = after.find('"').unwrap();
            values
                .entry(name.trim_start_matches(',').to_owned())
                .or_default()
                .insert(after[..end].to_owned());
            rest = &after[end + 1..];
        }
    }
    values
}

/// Every route pattern the server registers, and the label shared by everything else.
const ROUTES: &[&str] = &[
    "/.well-known/terraform.json",
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/providers/{namespace}/{provider_type}/versions",
    "/v1/providers/{namespace}/{provider_type}/{version}/download/{os}/{arch}",
    "/v1/providers/{namespace}/{provider_type}/{version}/files/{file}",
    "/mirror",
    "/mirror/{hostname}/{namespace}/{provider_type}/{file}",
    "unmatched",
];

#[actix_web::test]
async fn request_labels_stay_bounded_whatever_methods_and_paths_clients_send() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app) = start_with_fake_upstream(dir.path()).await;
    let methods = [
        "GET",
        "HEAD",
        "PROPFIND",
        "DELETE",
        "OPTIONS",
        "POST",
        "get",
        "FROBNICATE",
        "X-MADE-UP-7f3a",
    ];
    for (i, method) in methods.iter().enumerate() {
        let paths = [
            format!("/random-{i}-{}", rand::random::<u64>()),
            format!("/v1/providers/ns{i}/t{i}/versions"),
            format!(
                "/mirror/host{i}.example/ns/t/{}.json",
                rand::random::<u32>()
            ),
            "/healthz".to_owned(),
            format!("/%2e%2e/{i}"),
        ];
        for path in paths {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            app.client
                .request(method, format!("{}{path}", app.base))
                .send()
                .await
                .unwrap();
        }
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let values = http_label_values(&text);
    let methods_seen = &values["method"];
    assert!(
        methods_seen
            .iter()
            .all(|m| ["GET", "HEAD", "other"].contains(&m.as_str())),
        "{methods_seen:?}"
    );
    assert!(methods_seen.contains("other"), "{methods_seen:?}");
    let routes_seen = &values["route"];
    assert!(
        routes_seen.iter().all(|r| ROUTES.contains(&r.as_str())),
        "{routes_seen:?}"
    );
}

#[actix_web::test]
async fn refused_targets_and_headers_are_counted_like_any_other_answer() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app) = start_with_fake_upstream(dir.path()).await;
    let count = |text: &str, status: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("tfmirror_http_requests_total{")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = app.get("/metrics").await.text().await.unwrap();
    let long_path = format!("/v1/providers/{}/local/versions", "a".repeat(10_000));
    assert_eq!(app.get(&long_path).await.status(), 414);
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-padding", "b".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let after = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(count(&after, "414") - count(&before, "414"), 1.0, "{after}");
    assert_eq!(count(&after, "431") - count(&before, "431"), 1.0, "{after}");
}
