//! HTTP/2 over TLS: tfmirror offers `h2` by ALPN, and the real Terraform CLI (1.15.5), whose
//! Go client takes it when offered, installs a provider over it — every one of its requests
//! is counted under `HTTP/2.0` in `tfmirror_http_requests_by_version_total`. The metrics are
//! process-wide, so this binary holds this one test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    publisher_key,
    terraform::{main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, TestApp,
};

/// `tfmirror_http_requests_by_version_total{version=VERSION}` as `/metrics` shows it now.
async fn requests_over(app: &TestApp, version: &str) -> u64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let series = format!("tfmirror_http_requests_by_version_total{{version=\"{version}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[actix_web::test]
async fn terraform_installs_over_http2_when_tls_offers_it() {
    python();
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let tls_dir = dir.path().join("certs");
    let app = TestApp::spawn(MirrorOptions {
        tls_dir: Some(&tls_dir),
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let port = app.server.addr.port();

    // ALPN: a client offering both gets h2.
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    let (h1_before, h2_before) = (
        requests_over(&app, "HTTP/1.1").await,
        requests_over(&app, "HTTP/2.0").await,
    );
    let mut ws = TfWorkspace::new(
        &dir.path().join("tf"),
        &main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0"),
    );
    ws.ca_file = Some(tls_dir.join("localhost.pem"));
    let out = ws.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "terraform init failed:\n{}", out.combined());
    assert!(
        out.stdout.contains(&format!(
            "Installed localhost:{port}/myproviders/local v2.1.0"
        )),
        "{}",
        out.stdout
    );
    let (h1_after, h2_after) = (
        requests_over(&app, "HTTP/1.1").await,
        requests_over(&app, "HTTP/2.0").await,
    );
    // Terraform's requests: service discovery, the version list, the download document, the
    // archive, SHA256SUMS and its signature (the test's own `/metrics` reads are h2 too, and
    // add to the later readings).
    assert!(
        h2_after - h2_before >= 6,
        "HTTP/2 requests went from {h2_before} to {h2_after}"
    );
    assert_eq!(h1_after, h1_before, "a request went over HTTP/1.1");
}
