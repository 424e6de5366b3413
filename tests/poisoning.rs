//! Nothing unverified is ever cached or served, and hostile paths never reach the disk; an
//! archive is served only while it matches its release's signed SHA256SUMS as recorded now.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{
    attacker_key, files_under, publisher_key, start_with_fake_upstream, wait_for_recorded_h1,
    FakeRelease, FakeUpstream, Fault, MirrorOptions, TestApp,
};
use sha2::{Digest, Sha256};

const DOWNLOAD: &str = "/v1/providers/myproviders/local/2.1.0/download/linux/amd64";

#[actix_web::test]
async fn tampered_archive_is_refused_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip_name = published.zip_name("linux", "amd64");
    let mut evil = published.zips[&zip_name].clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    upstream.put(&format!("{}/{zip_name}", published.dir), evil);

    // The signed metadata is fine, so the download document is served...
    let (status, doc) = app.get_json(DOWNLOAD).await;
    assert_eq!(status, 200);
    // ...but the archive itself is refused, every time, and never lands on disk.
    for _ in 0..2 {
        let (status, body) = app.get_json(doc["download_url"].as_str().unwrap()).await;
        assert_eq!(status, 502, "{body}");
        assert!(
            body["errors"][0]
                .as_str()
                .unwrap()
                .contains("failed verification"),
            "{body}"
        );
    }
    let files = files_under(&app.cache_dir);
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".zip") || f.contains(".tmp-")),
        "{files:?}"
    );
    assert_eq!(
        upstream.hits(&format!("{}/{zip_name}", published.dir)),
        2,
        "a failure must not be cached as success"
    );
}

#[actix_web::test]
async fn signature_by_an_untrusted_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, attacker_key());
    let (status, body) = app.get_json(DOWNLOAD).await;
    assert_eq!(status, 502, "{body}");
    let (status, _) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/files/terraform-provider-local_2.1.0_linux_amd64.zip")
        .await;
    assert_eq!(status, 502);
    let files = files_under(&app.cache_dir);
    assert!(
        !files.iter().any(|f| f.contains("2.1.0")),
        "cached from a bad release: {files:?}"
    );
}

#[actix_web::test]
async fn sums_altered_after_signing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let mut sums = published.sums.clone();
    sums[0] = if sums[0] == b'0' { b'1' } else { b'0' };
    upstream.put(&format!("{}/{}", published.dir, published.sums_name), sums);
    let (status, body) = app.get_json(DOWNLOAD).await;
    assert_eq!(status, 502, "{body}");
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.contains("2.1.0")));
}

#[actix_web::test]
async fn tampered_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    upstream.put(
        &format!(
            "{}/terraform-provider-local_2.1.0_manifest.json",
            published.dir
        ),
        r#"{"version":1,"metadata":{"protocol_versions":["4.0"]}}"#,
    );
    let (status, _) = app.get_json(DOWNLOAD).await;
    assert_eq!(status, 502);
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.contains("2.1.0")));
}

#[actix_web::test]
async fn hostile_paths_are_400_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let long = "a".repeat(300);
    let hostile = [
        "/v1/providers/../local/versions".to_owned(),
        "/v1/providers/%2e%2e/local/versions".to_owned(),
        "/v1/providers/myproviders/..%2f..%2fetc/versions".to_owned(),
        "/v1/providers/my%00providers/local/versions".to_owned(),
        "/v1/providers/my%5cproviders/local/versions".to_owned(),
        format!("/v1/providers/{long}/local/versions"),
        "/v1/providers/myproviders/local/2.1/download/linux/amd64".to_owned(),
        "/v1/providers/myproviders/local/v2.1.0/download/linux/amd64".to_owned(),
        "/v1/providers/myproviders/local/..%2F2.1.0/download/linux/amd64".to_owned(),
        "/v1/providers/myproviders/local/2.1.0/download/../amd64".to_owned(),
        "/v1/providers/myproviders/local/2.1.0/download/linux/amd%2F64".to_owned(),
        "/v1/providers/myproviders/local/2.1.0/files/..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/v1/providers/myproviders/local/2.1.0/files/.release.json".to_owned(),
        "/v1/providers/myproviders/local/2.1.0/files/%2e%2e".to_owned(),
        "/../../../../etc/passwd".to_owned(),
    ];
    for path in &hostile {
        assert_eq!(app.raw_status(path).await, 400, "{path}");
    }
    assert_eq!(upstream.total_hits(), 0, "a hostile path reached upstream");
    assert!(
        files_under(&app.cache_dir).is_empty(),
        "a hostile path touched the cache"
    );
}

#[actix_web::test]
async fn an_archive_kept_from_before_its_release_changed_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let cache = dir.path().join("cache");
    let release = || FakeRelease {
        payload_bytes: 4096,
        ..FakeRelease::new("local", "2.1.0")
    };
    let old = release().publish(&upstream, publisher_key());
    let zip = old.zip_name("linux", "amd64");
    let archive = format!("/v1/providers/myproviders/local/2.1.0/files/{zip}");
    let mirror_doc = "/mirror/registry.terraform.io/hashicorp/local/2.1.0.json";
    let mirror_archive = format!("/mirror/registry.terraform.io/hashicorp/local/{zip}");
    let app = TestApp::spawn(MirrorOptions::new(upstream.url(), &cache)).await;
    assert_eq!(
        app.get_bytes(&archive).await,
        (200, old.zips[&zip].clone().into())
    );
    wait_for_recorded_h1(&cache, &zip).await;
    app.stop().await;

    // Upstream publishes 2.1.0 again with other bytes, and the stored release stops verifying
    // (its signature damaged), so the next start fetches the release again and records the new
    // SHA256SUMS, while the archive verified under the old one is still on disk.
    let new = release().publish(&upstream, publisher_key());
    assert_ne!(new.zips[&zip], old.zips[&zip]);
    let release_dir = cache.join("releases/hashicorp/terraform-provider-local/2.1.0");
    std::fs::write(release_dir.join(&old.sig_name), b"damaged").unwrap();
    let app = TestApp::spawn(MirrorOptions::new(upstream.url(), &cache)).await;
    let (status, doc) = app.get_json(DOWNLOAD).await;
    assert_eq!(status, 200, "{doc}");
    let new_digest = hex::encode(Sha256::digest(&new.zips[&zip]));
    assert_eq!(doc["shasum"], new_digest.as_str());
    assert_eq!(
        std::fs::read(release_dir.join(&zip)).unwrap(),
        old.zips[&zip]
    );

    // With upstream failing for the archive, the old bytes are not served over either
    // protocol, and `<version>.json` hands out no `h1:` computed from them.
    upstream.fail_always(&format!("{}/{zip}", new.dir), Fault::Status(503, None));
    for path in [&archive, &mirror_archive] {
        let (status, body) = app.get_bytes(path).await;
        assert!(status >= 500, "{path}: {status}");
        assert_ne!(&body[..], &old.zips[&zip][..], "{path}");
    }
    let (status, doc) = app.get_json(mirror_doc).await;
    assert_eq!(status, 200, "{doc}");
    let old_h1 = tfmirror::verify::h1_of_zip(std::io::Cursor::new(&old.zips[&zip])).unwrap();
    assert_eq!(
        doc["archives"]["linux_amd64"]["hashes"],
        serde_json::json!([format!("zh:{new_digest}")]),
        "old h1 {old_h1}"
    );

    // Upstream back: the archive is fetched again, verified against the new sums, and served.
    upstream.heal(&format!("{}/{zip}", new.dir));
    assert_eq!(
        app.get_bytes(&archive).await,
        (200, new.zips[&zip].clone().into())
    );
    assert_eq!(
        app.get_bytes(&mirror_archive).await,
        (200, new.zips[&zip].clone().into())
    );
    let new_h1 = tfmirror::verify::h1_of_zip(std::io::Cursor::new(&new.zips[&zip])).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, doc) = app.get_json(mirror_doc).await;
        let hashes = doc["archives"]["linux_amd64"]["hashes"].clone();
        if hashes
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(new_h1))
        {
            assert!(!hashes.to_string().contains(&old_h1), "{hashes}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{hashes}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stop().await;
}
