//! Operating tfmirror: `/readyz` and the per-request log line (`/metrics` has a test binary of
//! its own: the registry is process-wide, and exact counts need no neighbours).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{publisher_key, start_with_fake_upstream, FakeRelease};

#[actix_web::test]
async fn readyz_reports_cache_and_upstreams_and_fails_when_the_cache_is_unwritable() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cache"]["writable"], true);
    assert!(
        body["upstreams"]["hashicorp"]["reachable"].is_null(),
        "{body}"
    );

    app.get_json("/v1/providers/myproviders/local/versions")
        .await;
    let (_, body) = app.get_json("/readyz").await;
    assert_eq!(body["upstreams"]["hashicorp"]["reachable"], true, "{body}");

    // Upstream down: reported, still ready (the cache serves).
    upstream.stop().await;
    app.get_json("/v1/providers/myproviders/nope/versions")
        .await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["upstreams"]["hashicorp"]["reachable"], false, "{body}");
    assert!(body["upstreams"]["hashicorp"]["last_error"].is_string());

    // The cache directory replaced by a file: not ready.
    let cache = dir.path().join("cache");
    std::fs::rename(&cache, dir.path().join("cache-moved")).unwrap();
    std::fs::write(&cache, "not a directory").unwrap();
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["cache"]["writable"], false);
    assert!(body["cache"]["error"].is_string());
}

#[test]
fn json_logs_have_one_line_per_request_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tfmirror.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = {:?}\n",
            dir.path().join("cache")
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tfmirror"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = std::io::BufRead::lines(stderr).map_while(Result::ok);
    let base = lines
        .by_ref()
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).ok()?;
            let message = value["fields"]["message"].as_str()?.to_owned();
            message.strip_prefix("listening on ").map(str::to_owned)
        })
        .unwrap();
    let status = plain_http::get_status(&format!("{base}/healthz"));
    assert_eq!(status, 200);
    let request = lines
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            (value["fields"]["message"] == "request").then_some(value)
        })
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let fields = &request["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/healthz");
    assert_eq!(fields["status"], 200);
    assert!(fields["bytes"].as_u64().unwrap() > 0);
    assert!(fields["elapsed_ms"].is_number());
    assert_eq!(fields["cache"], "-");
}

mod plain_http {
    /// A plain HTTP/1.1 GET on a std socket, returning the status (no async runtime here).
    pub fn get_status(url: &str) -> u16 {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
