//! The status page at `/`, loaded in a real browser (headless Debian Chromium) against a
//! running tfmirror with a warmed cache. `tests/run.sh` installs Chromium; set `CHROMIUM` to
//! use another binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{path::Path, process::Command};

use common::{publisher_key, start_with_fake_upstream, FakeRelease};

/// Chromium's rendering of `url` after load: `--dump-dom` (HTML) or `--screenshot=FILE`.
fn browser(url: &str, profile: &Path, mode: &str) -> String {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let output = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1200,900")
        .arg(mode)
        .arg(url)
        .output()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => panic!(
                "{binary} not found: run tests/run.sh, which installs it (or apt-get install \
                 chromium; CHROMIUM=/path for another binary)"
            ),
            _ => panic!("cannot run {binary}: {e}"),
        });
    assert!(
        output.status.success(),
        "{binary} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[actix_web::test]
async fn the_status_page_shows_the_warm_cache_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());
    let linux = published.zip_name("linux", "amd64");
    let url = format!("/v1/providers/myproviders/local/2.1.0/files/{linux}");
    for _ in 0..3 {
        assert_eq!(app.get_bytes(&url).await.0, 200);
    }
    let mirror_darwin = format!(
        "/mirror/registry.terraform.io/hashicorp/local/{}",
        published.zip_name("darwin", "arm64")
    );
    assert_eq!(app.get_bytes(&mirror_darwin).await.0, 200);
    // 2.0.0: verified metadata, no archive.
    app.get_json("/v1/providers/myproviders/local/2.0.0/download/linux/amd64")
        .await;

    let dom = browser(
        &format!("{}/", app.base),
        &dir.path().join("profile"),
        "--dump-dom",
    );
    let base = app.base.clone();

    assert!(dom.contains("<title>tfmirror status</title>"), "{dom}");
    assert!(
        dom.contains("2 releases, 2 archives"),
        "summary wrong:\n{dom}"
    );
    let release_row = dom
        .split("<tr ")
        .find(|row| row.contains("data-provider=\"hashicorp/local\" data-version=\"2.1.0\""))
        .unwrap_or_else(|| panic!("no row for local 2.1.0:\n{dom}"));
    assert!(
        release_row.contains("data-platform=\"linux_amd64\" data-hits=\"3\""),
        "{release_row}"
    );
    assert!(
        release_row.contains("data-platform=\"darwin_arm64\" data-hits=\"1\""),
        "{release_row}"
    );
    assert!(
        release_row.contains(&format!("data-key=\"{}\"", publisher_key().key_id)),
        "{release_row}"
    );
    let metadata_only = dom
        .split("<tr ")
        .find(|row| row.contains("data-version=\"2.0.0\""))
        .unwrap();
    assert!(metadata_only.contains("metadata only"), "{metadata_only}");
    assert!(
        dom.contains("data-upstream=\"hashicorp\"") && dom.contains(">reachable<"),
        "upstream health missing:\n{dom}"
    );
    // The copy-paste CLI config names this very server.
    assert!(
        dom.contains(&format!("url = \"{base}/mirror/\"")),
        "network mirror block:\n{dom}"
    );
    assert!(dom.contains(&format!("\"providers.v1\" = \"{base}/v1/providers/\"")));
    let host = base.trim_start_matches("http://");
    assert!(dom.contains(&format!("source = \"{host}/myproviders/local\"")));

    // A picture of it, for people: target/status-page.png.
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&png);
    browser(
        &format!("{}/", app.base),
        &dir.path().join("profile"),
        &format!("--screenshot={}", png.display()),
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 1000,
        "no screenshot"
    );
}
