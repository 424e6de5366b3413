//! The Provider Registry Protocol through tfmirror, against a fake upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{
    files_under, publisher_key, start_with_fake_upstream, FakeRelease, FakeUpstream, MirrorOptions,
    TestApp,
};
use sha2::{Digest, Sha256};

#[actix_web::test]
async fn discovery_points_at_the_registry_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app) = start_with_fake_upstream(dir.path()).await;
    let (status, body) = app.get_json("/.well-known/terraform.json").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"providers.v1": "/v1/providers/"}));
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

#[actix_web::test]
async fn versions_are_listed_in_semver_order_with_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    for v in ["2.10.0", "2.1.0", "2.2.0-beta1"] {
        FakeRelease::new("local", v).publish(&upstream, publisher_key());
    }
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200);
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.1.0", "2.2.0-beta1", "2.10.0"]);
    let platforms = &body["versions"][0]["platforms"];
    assert!(platforms
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"os": "linux", "arch": "amd64"})));

    // Namespace and type match case-insensitively.
    let (status, _) = app
        .get_json("/v1/providers/MyProviders/Local/versions")
        .await;
    assert_eq!(status, 200);
}

/// A cold list is written to the store beside the rest of its work, but never served before
/// the write is done: the moment a client has it, a restart would serve it too.
#[actix_web::test]
async fn a_version_list_is_stored_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    for v in ["2.1.0", "2.2.0"] {
        FakeRelease::new("local", v).publish(&upstream, publisher_key());
    }
    let (status, served) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200);
    let stored = app
        .cache_dir
        .join("releases/hashicorp/terraform-provider-local/versions.json");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stored).expect("the list is stored")).unwrap();
    let versions = |list: &serde_json::Value| -> Vec<String> {
        list["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(versions(&stored), versions(&served));
    assert_eq!(versions(&served), ["2.1.0", "2.2.0"]);
}

#[actix_web::test]
async fn download_document_and_files_match_upstream_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip_name = published.zip_name("linux", "amd64");
    let zip = &published.zips[&zip_name];

    let (status, doc) = app
        .get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["os"], "linux");
    assert_eq!(doc["arch"], "amd64");
    assert_eq!(doc["filename"], zip_name.as_str());
    assert_eq!(doc["protocols"], serde_json::json!(["5.0"]));
    assert_eq!(doc["shasum"], hex::encode(Sha256::digest(zip)));
    let key = &doc["signing_keys"]["gpg_public_keys"][0];
    assert_eq!(key["key_id"], publisher_key().key_id.as_str());
    assert_eq!(key["ascii_armor"], publisher_key().armored_public.as_str());
    for field in ["download_url", "shasums_url", "shasums_signature_url"] {
        let url = doc[field].as_str().unwrap();
        assert!(
            url.starts_with("/v1/providers/myproviders/local/2.1.0/files/"),
            "{field}: {url}"
        );
    }

    let (status, body) = app.get_bytes(doc["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &zip[..], "archive bytes differ from upstream");
    let (_, sums) = app.get_bytes(doc["shasums_url"].as_str().unwrap()).await;
    assert_eq!(
        &sums[..],
        &published.sums[..],
        "SHA256SUMS must be served unchanged"
    );
    let (_, sig) = app
        .get_bytes(doc["shasums_signature_url"].as_str().unwrap())
        .await;
    assert_eq!(
        &sig[..],
        &upstream
            .get(&format!("{}/{}", published.dir, published.sig_name))
            .unwrap()[..]
    );

    // Immutable files carry validators and a long cache lifetime; ranges and HEAD work.
    let response = app.get(doc["download_url"].as_str().unwrap()).await;
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(response.headers().contains_key("etag"));
    let ranged = app
        .client
        .get(format!(
            "{}{}",
            app.base,
            doc["download_url"].as_str().unwrap()
        ))
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &zip[..10]);
    let head = app
        .client
        .head(format!(
            "{}{}",
            app.base,
            doc["download_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        zip.len().to_string()
    );
}

#[actix_web::test]
async fn cached_answers_make_no_upstream_request() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let download = "/v1/providers/myproviders/local/2.1.0/download/linux/amd64";
    warm(&app, download).await;
    let after_first = upstream.total_hits();
    assert!(after_first > 0);
    for _ in 0..3 {
        warm(&app, download).await;
    }
    assert_eq!(
        upstream.total_hits(),
        after_first,
        "a cached answer went to upstream"
    );
}

#[actix_web::test]
async fn concurrent_misses_share_one_upstream_download() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip_name = published.zip_name("linux", "amd64");
    let url = format!("/v1/providers/myproviders/local/2.1.0/files/{zip_name}");
    let requests = (0..8).map(|_| app.get_bytes(&url));
    for (status, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200);
        assert_eq!(&body[..], &published.zips[&zip_name][..]);
    }
    assert_eq!(upstream.hits(&format!("{}/{zip_name}", published.dir)), 1);
    assert_eq!(upstream.hits(&format!("{}/index.json", published.dir)), 1);
}

#[actix_web::test]
async fn unknown_things_are_404_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    for path in [
        "/v1/providers/othernamespace/local/versions",
        "/v1/providers/myproviders/nosuchprovider/versions",
        "/v1/providers/myproviders/local/9.9.9/download/linux/amd64",
        "/v1/providers/myproviders/local/2.1.0/download/plan9/mips",
        "/v1/providers/myproviders/local/2.1.0/files/terraform-provider-local_2.1.0_plan9_mips.zip",
        "/v1/nothing/here",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["errors"][0].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {body}"
        );
    }
    // Nothing was fetched for the unknown namespace or platform, and no archive was cached.
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.ends_with(".zip")));
}

async fn warm(app: &TestApp, download: &str) {
    let (s, _) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(s, 200);
    let (s, doc) = app.get_json(download).await;
    assert_eq!(s, 200);
    for field in ["download_url", "shasums_url", "shasums_signature_url"] {
        let (s, _) = app.get_bytes(doc[field].as_str().unwrap()).await;
        assert_eq!(s, 200);
    }
}

#[actix_web::test]
async fn version_lists_are_revalidated_after_metadata_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let cache = dir.path().join("cache");
    let app = TestApp::spawn(MirrorOptions {
        upstream_url: upstream.url(),
        cache_dir: &cache,
        extra: String::new(),
        metadata_ttl: "1s",
        tls_dir: None,
        upstream_extra: "",
        cache_extra: "",
    })
    .await;
    let versions = || async {
        let (status, body) = app
            .get_json("/v1/providers/myproviders/local/versions")
            .await;
        assert_eq!(status, 200);
        body["versions"].as_array().unwrap().len()
    };
    FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    assert_eq!(versions().await, 1);
    FakeRelease::new("local", "2.2.0").publish(&upstream, publisher_key());
    assert_eq!(versions().await, 1, "served from memory within the TTL");
    assert_eq!(upstream.hits("/terraform-provider-local/index.json"), 1);
    // Waiting out the configured TTL is the behaviour under test, not a readiness wait.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // The stale list answers at once and starts one background revalidation.
    assert_eq!(
        versions().await,
        1,
        "stale list not served while revalidating"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while versions().await != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the list was not revalidated after metadata_ttl"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(upstream.hits("/terraform-provider-local/index.json"), 2);
}

#[actix_web::test]
async fn protocols_come_from_the_signed_manifest_or_default_to_5() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let mut with_manifest = FakeRelease::new("local", "2.1.0");
    with_manifest.protocols = Some(vec!["6.0"]);
    with_manifest.publish(&upstream, publisher_key());
    let mut without_manifest = FakeRelease::new("local", "2.0.0");
    without_manifest.protocols = None;
    let published = without_manifest.publish(&upstream, publisher_key());
    assert_eq!(published.zh_hashes().len(), 3, "no manifest line expected");

    for (version, expected) in [("2.1.0", ["6.0"]), ("2.0.0", ["5.0"])] {
        let (status, doc) = app
            .get_json(&format!(
                "/v1/providers/myproviders/local/{version}/download/linux/amd64"
            ))
            .await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["protocols"], serde_json::json!(expected), "{version}");
    }
}

/// The versions list as served: version → its `protocols`, when listed.
async fn listed_protocols(
    app: &TestApp,
) -> std::collections::BTreeMap<String, Option<serde_json::Value>> {
    let (status, body) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200, "{body}");
    body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                v.get("protocols").cloned(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn version_lists_learn_protocols_from_verified_manifests_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let manifests: [(&str, Option<Vec<&'static str>>); 4] = [
        ("1.0.0", Some(vec!["5.0"])),
        ("1.1.0", Some(vec!["5.0", "6.0"])),
        ("2.0.0", Some(vec!["6.0"])),
        ("0.9.0", None),
    ];
    let mut dirs = Vec::new();
    for (version, protocols) in &manifests {
        let mut release = FakeRelease::new("local", version);
        release.protocols = protocols.clone();
        let published = release.publish(&upstream, publisher_key());
        dirs.push((
            version.to_owned(),
            published.sums_name.clone(),
            published.dir,
        ));
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let expected: std::collections::BTreeMap<String, Option<serde_json::Value>> = manifests
        .iter()
        .map(|(v, p)| ((*v).to_owned(), p.as_ref().map(|p| serde_json::json!(p))))
        .collect();
    loop {
        let listed = listed_protocols(&app).await;
        // Whatever is listed is true at every moment: nothing invented meanwhile.
        for (version, protocols) in &listed {
            if let Some(protocols) = protocols {
                assert_eq!(Some(protocols), expected[version].as_ref(), "{version}");
            }
        }
        let all_verified = dirs
            .iter()
            .all(|(_, sums, dir)| upstream.hits(&format!("{dir}/{sums}")) == 1);
        if listed == expected && all_verified {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the list never carried every manifest's protocols: {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Once, and only once, per release: immutable, so never fetched again.
    for _ in 0..3 {
        assert_eq!(listed_protocols(&app).await, expected);
    }
    for (version, sums, dir) in &dirs {
        assert_eq!(upstream.hits(&format!("{dir}/{sums}")), 1, "{version}");
        assert_eq!(upstream.hits(&format!("{dir}/index.json")), 1, "{version}");
        let manifest = format!("{dir}/terraform-provider-local_{version}_manifest.json");
        let published_manifest = manifests.iter().any(|(v, p)| v == version && p.is_some());
        assert_eq!(
            upstream.hits(&manifest),
            usize::from(published_manifest),
            "{version}"
        );
    }
    // The release without a manifest is verified and still listed without `protocols`, even
    // though its download document says Terraform's default.
    let (status, doc) = app
        .get_json("/v1/providers/myproviders/local/0.9.0/download/linux/amd64")
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["protocols"], serde_json::json!(["5.0"]));
    assert_eq!(listed_protocols(&app).await["0.9.0"], None);

    // Restarted on the same cache, with nothing learned in the background this time: the
    // first list already carries them, from the releases stored and verified again (one
    // listing of the provider's stored versions, then their records), and asks upstream for
    // no release.
    app.stop().await;
    let cache = dir.path().join("cache");
    let mut options = MirrorOptions::new(upstream.url(), &cache);
    options.cache_extra = "protocol_fetches = 0\n";
    let again = TestApp::spawn(options).await;
    assert_eq!(listed_protocols(&again).await, expected);
    for (version, sums, dir) in &dirs {
        assert_eq!(upstream.hits(&format!("{dir}/{sums}")), 1, "{version}");
    }
}

#[actix_web::test]
async fn background_protocol_fetches_are_capped_per_list_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let cache = dir.path().join("cache");
    let mut options = MirrorOptions::new(upstream.url(), &cache);
    options.cache_extra = "protocol_fetches = 2\n";
    let app = TestApp::spawn(options).await;
    let mut dirs = Vec::new();
    for version in ["1.0.0", "1.1.0", "1.2.0", "2.0.0"] {
        let published = FakeRelease::new("local", version).publish(&upstream, publisher_key());
        dirs.push((version, published.sums_name.clone(), published.dir));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = listed_protocols(&app).await;
        let newest = ["1.2.0", "2.0.0"]
            .iter()
            .all(|v| listed[*v] == Some(serde_json::json!(["5.0"])));
        if newest {
            assert_eq!(listed["1.0.0"], None);
            assert_eq!(listed["1.1.0"], None);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (version, sums, dir) in &dirs {
        let expected = usize::from(["1.2.0", "2.0.0"].contains(version));
        assert_eq!(
            upstream.hits(&format!("{dir}/{sums}")),
            expected,
            "{version}"
        );
    }
}

#[actix_web::test]
async fn long_version_lists_go_gzip_compressed_to_clients_that_accept_gzip() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    for patch in 0..12 {
        FakeRelease::new("local", &format!("2.1.{patch}")).publish(&upstream, publisher_key());
    }
    let get = |path: &'static str, encoding: Option<&'static str>| {
        let mut request = app.client.get(format!("{}{path}", app.base));
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["vary"], "Accept-Encoding");
            let encoding = response
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (encoding, response.bytes().await.unwrap())
        }
    };
    {
        let path = "/v1/providers/myproviders/local/versions";
        let (encoding, plain) = get(path, None).await;
        assert_eq!(encoding, None, "{path}");
        assert!(plain.len() > 1024, "{path}: {} bytes", plain.len());
        let (encoding, gzip) = get(path, Some("gzip")).await;
        assert_eq!(encoding.as_deref(), Some("gzip"), "{path}");
        assert!(gzip.len() < plain.len() / 2, "{path}");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, plain, "{path}");
        let (encoding, _) = get(path, Some("gzip;q=0, identity")).await;
        assert_eq!(encoding, None, "{path}");
    }
    // Under 1 KiB (this `index.json` names 12 versions) gzip would save nothing worth a header.
    let path = "/mirror/registry.terraform.io/hashicorp/local/index.json";
    let (encoding, plain) = get(path, Some("gzip")).await;
    assert!(plain.len() < 1024);
    assert_eq!((encoding, &plain[..2]), (None, &b"{\""[..]));
}
