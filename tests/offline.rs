//! After a restart with upstream unreachable, everything cached is still served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, SystemTime};

use common::{publisher_key, FakeRelease, FakeUpstream, MirrorOptions, TestApp};

#[actix_web::test]
async fn restart_with_upstream_down_serves_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip_name = published.zip_name("linux", "amd64");
    let options = || MirrorOptions {
        upstream_url: upstream.url(),
        cache_dir: &cache,
        extra: String::new(),
        metadata_ttl: "10m",
        tls_dir: None,
        upstream_extra: "",
        cache_extra: "",
    };

    let app = TestApp::spawn(options()).await;
    // The list as clients get it once the release is verified: with its manifest's protocols.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let versions_before = loop {
        let (status, versions) = app
            .get_json("/v1/providers/myproviders/local/versions")
            .await;
        assert_eq!(status, 200);
        if versions["versions"][0].get("protocols").is_some() {
            break versions;
        }
        assert!(std::time::Instant::now() < deadline, "{versions}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, doc_before) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .get_bytes(doc_before["download_url"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    app.stop().await;

    upstream.stop().await;
    // Make the version list stale, so the restarted mirror has to ask the dead upstream first.
    let versions_file = cache.join("releases/hashicorp/terraform-provider-local/versions.json");
    std::fs::File::options()
        .write(true)
        .open(&versions_file)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    let app = TestApp::spawn(options()).await;
    let (status, versions) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(versions, versions_before);
    let (status, doc) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc, doc_before);
    for field in ["download_url", "shasums_url", "shasums_signature_url"] {
        let (status, _) = app.get_bytes(doc[field].as_str().unwrap()).await;
        assert_eq!(status, 200, "{field}");
    }
    let (_, zip) = app.get_bytes(doc["download_url"].as_str().unwrap()).await;
    assert_eq!(&zip[..], &published.zips[&zip_name][..]);

    // What was never cached is a clear gateway error, not a hang or a 500.
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/darwin/arm64")
        .await;
    assert_eq!(status, 200, "release metadata is cached: {body}");
    let (status, body) = app
        .get_json(&format!(
            "/v1/providers/myproviders/local/2.1.0/files/{}",
            published.zip_name("darwin", "arm64")
        ))
        .await;
    assert_eq!(status, 502, "{body}");
    let (status, body) = app
        .get_json("/v1/providers/myproviders/other/versions")
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("upstream"),
        "{body}"
    );
}

/// A cache written before the storage and upstream interfaces existed — laid out here by hand,
/// byte for byte as those releases wrote it (no namespace level, a `release.json` with a
/// `signature_file`, no `signing-keys.json`) — is served as it is, with upstream unreachable.
#[actix_web::test]
async fn a_cache_in_the_earlier_layout_is_served_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let published = FakeRelease::new("local", "2.1.0").build(publisher_key());
    let zip_name = published.zip_name("linux", "amd64");
    let release_dir = cache.join("releases/hashicorp/terraform-provider-local/2.1.0");
    std::fs::create_dir_all(&release_dir).unwrap();
    std::fs::write(release_dir.join(&published.sums_name), &published.sums).unwrap();
    std::fs::write(release_dir.join(&published.sig_name), &published.sig).unwrap();
    std::fs::write(release_dir.join(&zip_name), &published.zips[&zip_name]).unwrap();
    let record = serde_json::json!({
        "shasums_file": published.sums_name,
        "signature_file": published.sig_name,
        "protocols": ["5.0"],
        "builds": [{"platform": {"os": "linux", "arch": "amd64"}, "filename": zip_name}],
    });
    std::fs::write(
        release_dir.join("release.json"),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
    std::fs::write(
        cache.join("releases/hashicorp/terraform-provider-local/versions.json"),
        r#"{"versions":[{"version":"2.1.0","platforms":[{"os":"linux","arch":"amd64"}]}]}"#,
    )
    .unwrap();

    let app = TestApp::spawn(MirrorOptions::new("http://127.0.0.1:9".into(), &cache)).await;
    let (status, list) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["versions"][0]["version"], "2.1.0");
    let (status, doc) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{doc}");
    let (status, zip) = app.get_bytes(doc["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(&zip[..], &published.zips[&zip_name][..]);
    let (status, mirror_doc) = app
        .get_json("/mirror/registry.terraform.io/hashicorp/local/2.1.0.json")
        .await;
    assert_eq!(status, 200, "{mirror_doc}");
    assert!(mirror_doc["archives"]["linux_amd64"]["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h.as_str().unwrap().starts_with("zh:")));
    app.stop().await;
}
