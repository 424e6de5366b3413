//! Replicas on one S3-compatible bucket (`[storage] kind = "s3"`), against real servers
//! (moto and SeaweedFS, from `tests/common/s3.rs`): what one replica verified, another serves
//! with the upstream down and its own disk empty; nothing unverified reaches the bucket; with
//! the bucket gone, the local tier is still served and the rest is a clear 503.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{
    error_text, publisher_key,
    s3::{Flavour, S3Server},
    terraform::{main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, TestApp,
};

const ZIP: &str = "terraform-provider-local_2.1.0_linux_amd64.zip";
const ZIP_KEY: &str =
    "mirror/releases/hashicorp/terraform-provider-local/2.1.0/terraform-provider-local_2.1.0_linux_amd64.zip";

/// A replica over `cache` on the server's bucket, optionally with TLS (Terraform needs it).
async fn replica(
    upstream: &FakeUpstream,
    s3: &S3Server,
    dir: &Path,
    name: &str,
    tls: bool,
) -> TestApp {
    let cache = dir.join(name).join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let tls_dir = dir.join(name).join("certs");
    TestApp::spawn(MirrorOptions {
        extra: s3.storage_toml(&dir.join(name)),
        tls_dir: tls.then_some(tls_dir.as_path()),
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await
}

async fn installs_through_a_then_through_b_with_a_and_the_upstream_gone(flavour: Flavour) {
    python();
    let s3 = S3Server::start(flavour);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());

    let a = replica(&upstream, &s3, dir.path(), "a", true).await;
    let port = a.server.addr.port();
    let mut cold = TfWorkspace::new(
        &dir.path().join("tf-a"),
        &main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0"),
    );
    cold.ca_file = Some(dir.path().join("a/certs/localhost.pem"));
    let out = cold.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "init through A failed:\n{}", out.combined());
    let lock_a = cold.lock_file();

    let keys = s3.keys();
    assert!(keys.iter().any(|k| k == ZIP_KEY), "{keys:?}");
    for wanted in [
        "versions.json",
        "release.json",
        "_SHA256SUMS",
        ".sig",
        ".zip.h1",
    ] {
        assert!(
            keys.iter().any(|k| k.ends_with(wanted)),
            "no {wanted} in {keys:?}"
        );
    }
    // Digest records name one host's file: never shared.
    assert!(!keys.iter().any(|k| k.ends_with(".sha256")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(".tmp-")), "{keys:?}");

    a.stop().await;
    upstream.stop().await;

    // B: a fresh disk, the same bucket, no upstream and no A.
    let b = replica(&upstream, &s3, dir.path(), "b", true).await;
    let port = b.server.addr.port();
    // Its status page shows what A cached, read from the bucket without copying archives.
    let page = b.client.get(format!("{}/", b.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("2.1.0") && page.contains("linux_amd64"),
        "{page}"
    );
    let b_zip = dir
        .path()
        .join("b/cache/releases/hashicorp/terraform-provider-local/2.1.0")
        .join(ZIP);
    assert!(!b_zip.exists(), "the status page copied an archive");
    let mut warm = TfWorkspace::new(
        &dir.path().join("tf-b"),
        &main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0"),
    );
    warm.ca_file = Some(dir.path().join("b/certs/localhost.pem"));
    let out = warm.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "init through B failed:\n{}", out.combined());
    let installed = format!(
        "Installed localhost:{port}/myproviders/local v2.1.0 (self-signed, key ID {})",
        publisher_key().key_id
    );
    assert!(out.stdout.contains(&installed), "{}", out.stdout);
    // The same verified hashes, whichever replica answered.
    let lock_b = warm.lock_file();
    let zh = |lock: &str| -> Vec<String> {
        lock.lines()
            .filter(|l| l.contains("\"zh:"))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    assert_eq!(zh(&lock_a), zh(&lock_b));
    assert!(!zh(&lock_b).is_empty());
    // B copied what it served into its local tier.
    assert!(b_zip.exists());
    b.stop().await;
}

#[actix_web::test]
async fn moto_replica_b_installs_what_a_verified_with_a_and_upstream_gone() {
    installs_through_a_then_through_b_with_a_and_the_upstream_gone(Flavour::Moto).await;
}

#[actix_web::test]
async fn seaweedfs_replica_b_installs_what_a_verified_with_a_and_upstream_gone() {
    installs_through_a_then_through_b_with_a_and_the_upstream_gone(Flavour::SeaweedFs).await;
}

#[actix_web::test]
async fn a_tampered_archive_leaves_nothing_in_the_bucket() {
    let s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let mut evil = published.zips[ZIP].clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    upstream.put(&format!("{}/{ZIP}", published.dir), evil);

    let app = replica(&upstream, &s3, dir.path(), "a", false).await;
    let (status, doc) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{doc}");
    let (status, body) = app.get_json(doc["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 502, "{body}");
    let keys = s3.keys();
    // The signed metadata is there; the archive is not, nor any part of it.
    assert!(keys.iter().any(|k| k.ends_with("release.json")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(".zip")), "{keys:?}");
    assert!(common::files_under(&app.cache_dir)
        .iter()
        .all(|f| !f.contains(".zip")));
    app.stop().await;
}

#[actix_web::test]
async fn with_the_bucket_gone_the_local_tier_is_served_and_the_rest_is_a_503() {
    let mut s3 = S3Server::start(Flavour::Moto);
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("null", "3.0.0").publish(&upstream, publisher_key());
    let app = replica(&upstream, &s3, dir.path(), "a", false).await;
    let files = "/v1/providers/myproviders/local/2.1.0/files";
    let (status, body) = app.get_bytes(&format!("{files}/{ZIP}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, published.zips[ZIP]);
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready["cache"]["storage"]
            .as_str()
            .unwrap()
            .starts_with("s3://tfmirror/mirror/"),
        "{ready}"
    );

    s3.kill();
    // On this replica's disk: served as before.
    let (status, body) = app.get_bytes(&format!("{files}/{ZIP}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, published.zips[ZIP]);
    // Not on it: a clear 503, before anything is fetched from upstream.
    let hits = upstream.total_hits();
    let other = "terraform-provider-local_2.1.0_darwin_arm64.zip";
    let (status, body) = app.get_json(&format!("{files}/{other}")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        error_text(&body).contains("shared storage is unreachable"),
        "{body}"
    );
    let (status, body) = app
        .get_json("/v1/providers/myproviders/null/versions")
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        upstream.total_hits(),
        hits,
        "fetched what could not be kept"
    );
    // /readyz says why.
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let error = ready["cache"]["error"].as_str().unwrap();
    assert!(error.contains("s3://tfmirror/mirror/"), "{ready}");
    assert!(!error.contains(common::s3::SECRET_ACCESS_KEY), "{ready}");
    app.stop().await;
}
