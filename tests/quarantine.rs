//! The release quarantine (`policy.min_release_age`): young versions are absent from version
//! lists and `index.json`, refused with a `403` saying when they become available, listed on
//! the status page; `allow_young` exceptions; first-seen times kept in the store, written once,
//! shared by two servers on one cache and surviving restarts; `prefetch` and `lock` skip young
//! versions with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use common::{
    config_toml, error_text, publisher_key, serving::tfmirror, FakeRelease, FakeUpstream,
    MirrorOptions, TestApp,
};

const POLICY: &str =
    "[policy]\nmin_release_age = \"72h\"\nallow_young = [\"hashicorp/local 1.9.0\"]\n";

fn options<'a>(upstream: &FakeUpstream, cache: &'a Path) -> MirrorOptions<'a> {
    MirrorOptions {
        extra: POLICY.to_owned(),
        ..MirrorOptions::new(upstream.url(), cache)
    }
}

async fn publish(upstream: &FakeUpstream) {
    for version in ["1.9.0", "2.0.0", "2.1.0"] {
        FakeRelease::new("local", version).publish(upstream, publisher_key());
    }
}

fn first_seen_record(cache: &Path, version: &str) -> PathBuf {
    cache.join(format!(
        "first-seen/hashicorp/terraform-provider-local/{version}"
    ))
}

/// Moves a version's first sighting into the past, as if that much time had gone by.
fn age_record(cache: &Path, version: &str, by: Duration) {
    let seen = humantime::format_rfc3339_seconds(SystemTime::now() - by).to_string();
    std::fs::write(first_seen_record(cache, version), seen).unwrap();
}

async fn listed(app: &TestApp) -> (Vec<String>, Vec<String>) {
    let (status, list) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200, "{list}");
    let mut registry: Vec<String> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect();
    registry.sort();
    let (status, index) = app
        .get_json("/mirror/registry.terraform.io/hashicorp/local/index.json")
        .await;
    assert_eq!(status, 200, "{index}");
    let mirror: Vec<String> = index["versions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    (registry, mirror)
}

/// The `403`s a young version gets on every route that would serve it, and the time they name.
async fn refusals(app: &TestApp, version: &str) -> String {
    let zip = format!("terraform-provider-local_{version}_linux_amd64.zip");
    let mut messages = Vec::new();
    for path in [
        format!("/v1/providers/myproviders/local/{version}/download/linux/amd64"),
        format!("/mirror/registry.terraform.io/hashicorp/local/{version}.json"),
        format!("/lock/registry.terraform.io/hashicorp/local/{version}?platform=linux_amd64"),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 403, "{path}: {body}");
        messages.push(error_text(&body));
    }
    let (status, _) = app
        .get_bytes(&format!(
            "/v1/providers/myproviders/local/{version}/files/{zip}"
        ))
        .await;
    assert_eq!(status, 403);
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
    let message = messages.remove(0);
    assert!(
        message.contains(&format!("version {version} is quarantined")),
        "{message}"
    );
    let until = message.rsplit("available from ").next().unwrap().to_owned();
    let until_time = humantime::parse_rfc3339(&until).unwrap();
    let ahead = until_time.duration_since(SystemTime::now()).unwrap();
    assert!(
        ahead > Duration::from_secs(71 * 3600) && ahead <= Duration::from_secs(72 * 3600),
        "{message}"
    );
    until
}

#[actix_web::test]
async fn young_versions_are_hidden_refused_and_shown_until_they_come_of_age() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let upstream = FakeUpstream::start().await;
    publish(&upstream).await;
    let app = TestApp::spawn(options(&upstream, &cache)).await;

    // A mirror that has never seen the provider: every version is young but the exception.
    assert_eq!(
        listed(&app).await,
        (vec!["1.9.0".into()], vec!["1.9.0".into()])
    );
    let until = refusals(&app, "2.1.0").await;
    let (status, _) = app
        .get_json("/v1/providers/myproviders/local/1.9.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "allow_young lets 1.9.0 through");
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("<h2>In quarantine</h2>"), "{page}");
    assert!(
        page.contains("data-version=\"2.1.0\"><td>hashicorp/local</td><td>2.1.0</td>"),
        "{page}"
    );
    assert!(page.contains(&until), "{page}");
    let recorded = std::fs::read_to_string(first_seen_record(&cache, "2.1.0")).unwrap();
    // A made-up version is not young, it is unknown, and leaves no record behind.
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/9.9.9/download/linux/amd64")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!first_seen_record(&cache, "9.9.9").exists());

    // A second server on the same cache, and a restart: the same first sighting, never moved.
    let replica = TestApp::spawn(options(&upstream, &cache)).await;
    assert_eq!(refusals(&replica, "2.1.0").await, until);
    replica.stop().await;
    app.stop().await;
    let app = TestApp::spawn(options(&upstream, &cache)).await;
    // The status page knows from the store, before anyone asks for the provider again.
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains("data-version=\"2.1.0\"") && page.contains(&until),
        "{page}"
    );
    assert_eq!(listed(&app).await.0, ["1.9.0"]);
    assert_eq!(refusals(&app, "2.1.0").await, until);
    assert_eq!(
        std::fs::read_to_string(first_seen_record(&cache, "2.1.0")).unwrap(),
        recorded
    );
    app.stop().await;

    // 73 hours later 2.0.0 is of age; 2.1.0, seen 71 hours ago, is still held back.
    age_record(&cache, "2.0.0", Duration::from_secs(73 * 3600));
    age_record(&cache, "2.1.0", Duration::from_secs(71 * 3600));
    let app = TestApp::spawn(options(&upstream, &cache)).await;
    assert_eq!(
        listed(&app).await,
        (
            vec!["1.9.0".into(), "2.0.0".into()],
            vec!["1.9.0".into(), "2.0.0".into()]
        )
    );
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.0.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 403, "{body}");
}

#[actix_web::test]
async fn without_min_release_age_nothing_is_held_back_or_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let upstream = FakeUpstream::start().await;
    publish(&upstream).await;
    let app = TestApp::spawn(MirrorOptions::new(upstream.url(), &cache)).await;
    assert_eq!(listed(&app).await.0, ["1.9.0", "2.0.0", "2.1.0"]);
    assert!(!cache.join("first-seen").exists());
}

#[actix_web::test]
async fn prefetch_and_lock_skip_young_versions_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let upstream = FakeUpstream::start().await;
    publish(&upstream).await;
    let mut options = options(&upstream, &cache);
    options.extra.push_str(
        "\n[[prefetch]]\nprovider = \"hashicorp/local\"\nplatforms = [\"linux_amd64\"]\n",
    );
    let config = dir.path().join("tfmirror.toml");
    std::fs::write(&config, config_toml(&options)).unwrap();

    let out = tfmirror(&["prefetch"], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("prefetch: 1 fetched"), "{stdout}");
    for version in ["2.0.0", "2.1.0"] {
        assert!(
            stderr.contains(&format!(
                "hashicorp/local {version} skipped: quarantined until"
            )),
            "{stderr}"
        );
    }

    age_record(&cache, "2.0.0", Duration::from_secs(100 * 3600));
    let output = dir.path().join("lock.hcl");
    let out = tfmirror(
        &[
            "lock",
            "--provider",
            "hashicorp/local",
            "--platform",
            "linux_amd64",
            "--output",
            output.to_str().unwrap(),
        ],
        &config,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("hashicorp/local 2.1.0 skipped: quarantined until"),
        "{stderr}"
    );
    assert!(
        stdout.contains("locked registry.terraform.io/hashicorp/local 2.0.0"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&output)
        .unwrap()
        .contains("version = \"2.0.0\""));
}
