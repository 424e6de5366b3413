//! The Provider Network Mirror Protocol under `/mirror/`, against a fake upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{attacker_key, files_under, publisher_key, start_with_fake_upstream, FakeRelease};
use sha2::{Digest, Sha256};

const BASE: &str = "/mirror/registry.terraform.io/hashicorp/local";

#[actix_web::test]
async fn index_and_version_documents_have_the_protocol_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());

    let (status, index) = app.get_json(&format!("{BASE}/index.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        index,
        serde_json::json!({"versions": {"2.0.0": {}, "2.1.0": {}}})
    );

    // Before any archive is fetched: every platform, with the signed zh: only.
    let (status, doc) = app.get_json(&format!("{BASE}/2.1.0.json")).await;
    assert_eq!(status, 200, "{doc}");
    let archives = doc["archives"].as_object().unwrap();
    assert_eq!(
        archives.keys().collect::<Vec<_>>(),
        ["darwin_arm64", "linux_amd64", "windows_amd64"]
    );
    for (platform, archive) in archives {
        let name = archive["url"].as_str().unwrap();
        assert_eq!(
            name,
            format!("terraform-provider-local_2.1.0_{platform}.zip")
        );
        let zh = format!("zh:{}", hex::encode(Sha256::digest(&published.zips[name])));
        assert_eq!(archive["hashes"], serde_json::json!([zh]), "{platform}");
    }
    assert_eq!(
        upstream.hits(&format!(
            "{}/{}",
            published.dir,
            published.zip_name("linux", "amd64")
        )),
        0
    );

    // The relative url resolves to an archive we serve, byte for byte.
    let zip_name = published.zip_name("linux", "amd64");
    let (status, body) = app.get_bytes(&format!("{BASE}/{zip_name}")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&zip_name][..]);

    // Once cached, the archive's h1: is listed too, computed as Terraform computes it.
    let doc = app
        .version_doc_with_h1(&format!("{BASE}/2.1.0.json"), "linux_amd64")
        .await;
    let hashes = doc["archives"]["linux_amd64"]["hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 2, "{doc}");
    let h1 = hashes[0].as_str().unwrap();
    let expected =
        tfmirror::verify::h1_of_zip(std::io::Cursor::new(&published.zips[&zip_name])).unwrap();
    assert_eq!(h1, expected);
}

#[actix_web::test]
async fn matching_is_case_insensitive_and_unknown_origins_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let (status, _) = app
        .get_json("/mirror/Registry.Terraform.IO/HashiCorp/Local/index.json")
        .await;
    assert_eq!(status, 200);
    for path in [
        "/mirror/registry.opentofu.org/hashicorp/local/index.json",
        "/mirror/registry.terraform.io/someoneelse/local/index.json",
        "/mirror/registry.terraform.io/hashicorp/nosuch/index.json",
        "/mirror/registry.terraform.io/hashicorp/local/9.9.9.json",
        "/mirror/registry.terraform.io/hashicorp/local/terraform-provider-local_2.1.0_plan9_mips.zip",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[actix_web::test]
async fn bad_paths_are_400_and_the_base_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    for path in [
        "/mirror/../hashicorp/local/index.json",
        "/mirror/registry.terraform.io/%2e%2e/local/index.json",
        "/mirror/registry.terraform.io/hashicorp/local/..%2Findex.json",
        "/mirror/registry.terraform.io/hashicorp/local/v2.1.0.json",
        "/mirror/registry.terraform.io/hashicorp/local/terraform-provider-local_2.1.0_linux.zip",
        "/mirror/registry.terraform.io/hashicorp/local/terraform-provider-null_2.1.0_linux_amd64.zip",
        "/mirror/regi%00stry.terraform.io/hashicorp/local/index.json",
    ] {
        assert_eq!(app.raw_status(path).await, 400, "{path}");
    }
    assert_eq!(upstream.total_hits(), 0);
    assert!(files_under(&app.cache_dir).is_empty());

    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/mirror", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(response.headers()["location"], "/mirror/");
}

#[actix_web::test]
async fn unverifiable_versions_get_no_document() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, attacker_key());
    let (status, body) = app.get_json(&format!("{BASE}/2.1.0.json")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("verification"),
        "{body}"
    );
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.contains("2.1.0")));
}

#[actix_web::test]
async fn the_registry_path_and_the_mirror_share_one_download() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip_name = published.zip_name("linux", "amd64");
    let (status, _) = app.get_bytes(&format!("{BASE}/{zip_name}")).await;
    assert_eq!(status, 200);
    let (status, body) = app
        .get_bytes(&format!(
            "/v1/providers/hashicorp/local/2.1.0/files/{zip_name}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&zip_name][..]);
    assert_eq!(upstream.hits(&format!("{}/{zip_name}", published.dir)), 1);
}
