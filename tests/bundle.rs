//! `tfmirror export` / `import`: a verified subset of one cache carried into another that
//! has no upstream, re-verified on the way in; tampered bundles refused whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    config_toml, files_under, publisher_key, serving::tfmirror, wait_for_recorded_h1, FakeRelease,
    FakeUpstream, MirrorOptions, Published, TestApp,
};

fn write_config(dir: &Path, upstream_url: String) -> (PathBuf, PathBuf) {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let path = dir.join("tfmirror.toml");
    std::fs::write(
        &path,
        config_toml(&MirrorOptions::new(upstream_url, &cache)),
    )
    .unwrap();
    (path, cache)
}

/// A cache with local 2.0.0 and 2.1.0 (linux and darwin archives), and the bundle of 2.1.0.
async fn exported(dir: &Path) -> (FakeUpstream, Published, PathBuf, String) {
    let (upstream, published, _, bundle, h1) = exported_with_older(dir).await;
    (upstream, published, bundle, h1)
}

/// As `exported`, with 2.0.0's publication too.
async fn exported_with_older(dir: &Path) -> (FakeUpstream, Published, Published, PathBuf, String) {
    let upstream = FakeUpstream::start().await;
    let older = FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let (config, cache) = write_config(&dir.join("online"), upstream.url());
    let app = TestApp::spawn(MirrorOptions::new(upstream.url(), &cache)).await;
    for version in ["2.0.0", "2.1.0"] {
        for platform in ["linux_amd64", "darwin_arm64"] {
            let zip = format!("terraform-provider-local_{version}_{platform}.zip");
            let url = format!("/v1/providers/myproviders/local/{version}/files/{zip}");
            assert_eq!(app.get_bytes(&url).await.0, 200);
            // Written in the background just after the download: the export below reads the
            // cache once it is settled.
            wait_for_recorded_h1(&cache, &zip).await;
        }
    }
    let doc = app
        .version_doc_with_h1(
            "/mirror/registry.terraform.io/hashicorp/local/2.1.0.json",
            "linux_amd64",
        )
        .await;
    let h1 = doc["archives"]["linux_amd64"]["hashes"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(h1.starts_with("h1:"));
    app.stop().await;

    let bundle = dir.join("bundle.tar");
    let out = tfmirror(
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--provider",
            "local",
            "--version",
            "2.1.0",
        ],
        &config,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("export: 1 releases"), "{stdout}");
    (upstream, published, older, bundle, h1)
}

/// Copies a bundle with each file passed through `edit(path, bytes)`, plus `extra` entries.
fn rewrite(
    bundle: &Path,
    out: &Path,
    edit: impl Fn(&str, Vec<u8>) -> Vec<u8>,
    extra: &[(&str, &[u8])],
) {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        let bytes = edit(&path, bytes);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, &path, &bytes[..]).unwrap();
    }
    for (path, bytes) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    builder.finish().unwrap();
}

#[actix_web::test]
async fn a_bundle_moves_verified_releases_into_an_offline_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, published, bundle, h1) = exported(dir.path()).await;
    upstream.stop().await;

    // The air-gapped site: same trust, an upstream it can never reach.
    let (config, cache) = write_config(&dir.path().join("offline"), "http://127.0.0.1:9".into());
    let out = tfmirror(&["import", bundle.to_str().unwrap()], &config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("import: 1 releases"), "{stdout}");
    assert!(
        !files_under(&cache).iter().any(|f| f.contains("2.0.0")),
        "the filter let 2.0.0 through"
    );

    let app = TestApp::spawn(MirrorOptions::new("http://127.0.0.1:9".into(), &cache)).await;
    let (status, list) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["versions"].as_array().unwrap().len(), 1);
    assert_eq!(list["versions"][0]["version"], "2.1.0");
    let zip = published.zip_name("linux", "amd64");
    let (status, body) = app
        .get_bytes(&format!(
            "/v1/providers/myproviders/local/2.1.0/files/{zip}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&zip][..]);
    // h1: recomputed on import, equal to what the online mirror published.
    let (_, doc) = app
        .get_json("/mirror/registry.terraform.io/hashicorp/local/2.1.0.json")
        .await;
    assert_eq!(doc["archives"]["linux_amd64"]["hashes"][0], h1.as_str());
}

#[actix_web::test]
async fn tampered_bundles_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, published, older, bundle, _) = exported_with_older(dir.path()).await;
    let zip = published.zip_name("linux", "amd64");
    let flip = |name: &str| {
        let zip = zip.clone();
        let name = name.to_owned();
        move |path: &str, mut bytes: Vec<u8>| {
            if path.ends_with(&name) || (name == "zip" && path.ends_with(&zip)) {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 1;
            }
            bytes
        }
    };
    let keep = |_: &str, bytes: Vec<u8>| bytes;
    let planted_h1 = format!("releases/hashicorp/terraform-provider-local/2.1.0/{zip}.h1");
    let cases: Vec<(&str, PathBuf)> = {
        let mut cases = Vec::new();
        let out = dir.path().join("zip.tar");
        rewrite(&bundle, &out, flip("zip"), &[]);
        cases.push(("does not match the signed", out));
        let out = dir.path().join("sums.tar");
        rewrite(&bundle, &out, flip("_SHA256SUMS"), &[]);
        cases.push(("does not verify", out));
        let out = dir.path().join("h1.tar");
        rewrite(
            &bundle,
            &out,
            keep,
            &[(planted_h1.as_str(), b"h1:planted=".as_slice())],
        );
        cases.push(("a file the release does not name", out));
        // 2.1.0's SHA256SUMS and signature replaced by 2.0.0's, genuinely signed.
        let out = dir.path().join("relabelled.tar");
        let (old_sums, old_sig) = (older.sums.clone(), older.sig.clone());
        rewrite(
            &bundle,
            &out,
            move |path: &str, bytes: Vec<u8>| {
                if path.ends_with("_SHA256SUMS") {
                    old_sums.clone()
                } else if path.ends_with(".sig") {
                    old_sig.clone()
                } else {
                    bytes
                }
            },
            &[],
        );
        cases.push(("does not verify", out));
        let out = dir.path().join("stray.tar");
        rewrite(
            &bundle,
            &out,
            keep,
            &[("config/tfmirror.toml", b"evil".as_slice())],
        );
        cases.push(("not a path of the cache", out));
        cases
    };
    for (expected, tampered) in cases {
        let (config, cache) = write_config(
            &dir.path().join(tampered.file_stem().unwrap()),
            "http://127.0.0.1:9".into(),
        );
        let out = tfmirror(&["import", tampered.to_str().unwrap()], &config).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {stderr}",
            tampered.display()
        );
        assert!(
            stderr.contains("bundle refused, nothing imported"),
            "{stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{}: {stderr}",
            tampered.display()
        );
        assert_eq!(
            files_under(&cache),
            Vec::<String>::new(),
            "{}",
            tampered.display()
        );
    }

    // A link entry is never followed or created.
    let linked = dir.path().join("link.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&linked).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(
                &mut header,
                "releases/hashicorp/terraform-provider-local/2.1.0/release.json",
                "/etc/passwd",
            )
            .unwrap();
        builder.finish().unwrap();
    }
    let (config, cache) = write_config(&dir.path().join("link"), "http://127.0.0.1:9".into());
    let out = tfmirror(&["import", linked.to_str().unwrap()], &config).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only regular files"));
    assert_eq!(files_under(&cache), Vec::<String>::new());
}

#[actix_web::test]
async fn a_second_import_adds_its_versions_and_a_bundle_too_big_for_the_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _, bundle, _) = exported(dir.path()).await;
    upstream.stop().await;
    // 2.0.0 from the same online cache, in a bundle of its own.
    let older = dir.path().join("older.tar");
    let online = dir.path().join("online/tfmirror.toml");
    let out = tfmirror(
        &[
            "export",
            "--output",
            older.to_str().unwrap(),
            "--provider",
            "local",
            "--version",
            "2.0.0",
        ],
        &online,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (config, cache) = write_config(&dir.path().join("offline"), "http://127.0.0.1:9".into());
    for bundle in [&bundle, &older] {
        let out = tfmirror(&["import", bundle.to_str().unwrap()], &config).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let app = TestApp::spawn(MirrorOptions::new("http://127.0.0.1:9".into(), &cache)).await;
    let (status, list) = app
        .get_json("/v1/providers/myproviders/local/versions")
        .await;
    assert_eq!(status, 200);
    let versions: Vec<&str> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.0.0", "2.1.0"]);
    app.stop().await;

    // A disk that cannot take the bundle (here: a reserve larger than any disk) refuses it
    // before anything is unpacked.
    let full = dir.path().join("full");
    let (config, cache) = write_config(&full, "http://127.0.0.1:9".into());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[cache]\n", "[cache]\nmin_free_space = \"1 PiB\"\n"),
    )
    .unwrap();
    let out = tfmirror(&["import", bundle.to_str().unwrap()], &config).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bytes free"), "{stderr}");
    assert_eq!(files_under(&cache), Vec::<String>::new());
}
