//! `tfmirror prefetch` on the real binary: from `[[prefetch]]` with Terraform's constraint
//! syntax, from a Terraform configuration and its lock file, idempotent, beside a running
//! server on the same cache, and failing loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    config_toml, files_under, publisher_key, serving::tfmirror, FakeRelease, FakeUpstream,
    MirrorOptions, TestApp,
};

fn cached_zips(cache: &Path) -> Vec<String> {
    files_under(cache)
        .into_iter()
        .filter(|f| f.ends_with(".zip"))
        .map(|f| f.rsplit('/').next().unwrap().to_owned())
        .collect()
}

async fn publish_versions(upstream: &FakeUpstream) {
    for version in ["1.9.0", "2.0.0", "2.1.0", "3.0.0-beta1", "3.0.0"] {
        FakeRelease::new("local", version).publish(upstream, publisher_key());
    }
}

fn write_config(dir: &Path, upstream: &FakeUpstream, extra: &str) -> (PathBuf, PathBuf) {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let path = dir.join("tfmirror.toml");
    let options = MirrorOptions {
        extra: extra.to_owned(),
        ..MirrorOptions::new(upstream.url(), &cache)
    };
    std::fs::write(&path, config_toml(&options)).unwrap();
    (path, cache)
}

#[actix_web::test]
async fn prefetch_list_follows_terraform_constraints_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    publish_versions(&upstream).await;
    let (config, cache) = write_config(
        dir.path(),
        &upstream,
        "[[prefetch]]\nprovider = \"hashicorp/local\"\nversions = \"~> 2.0\"\nplatforms = [\"linux_amd64\", \"darwin_arm64\"]\n",
    );

    let first = tfmirror(&["prefetch"], &config).await;
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("prefetch: 4 fetched"), "{stdout}");
    assert!(
        stdout.contains("0 skipped") && stdout.contains("0 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains("fetched hashicorp/local 2.1.0 darwin_arm64"),
        "{stderr}"
    );
    let mut zips = cached_zips(&cache);
    zips.sort();
    assert_eq!(
        zips,
        [
            "terraform-provider-local_2.0.0_darwin_arm64.zip",
            "terraform-provider-local_2.0.0_linux_amd64.zip",
            "terraform-provider-local_2.1.0_darwin_arm64.zip",
            "terraform-provider-local_2.1.0_linux_amd64.zip",
        ]
    );

    let hits = upstream.total_hits();
    let again = tfmirror(&["prefetch"], &config).await;
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains("0 fetched") && stdout.contains("4 skipped"),
        "{stdout}"
    );
    // The version list is still fresh on disk and the releases verified: nothing refetched.
    assert_eq!(upstream.total_hits(), hits);
}

#[actix_web::test]
async fn prefetch_from_a_terraform_configuration_takes_the_locked_version() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    publish_versions(&upstream).await;
    let (config, cache) = write_config(dir.path(), &upstream, "");
    let module = dir.path().join("module");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("versions.tf"),
        "terraform {\n  required_providers {\n    local = { source = \"hashicorp/local\", version = \">= 2.0\" }\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(
        module.join(".terraform.lock.hcl"),
        "provider \"registry.terraform.io/hashicorp/local\" {\n  version = \"2.0.0\"\n  hashes = []\n}\n",
    )
    .unwrap();

    let out = tfmirror(
        &[
            "prefetch",
            "--from",
            module.to_str().unwrap(),
            "--platform",
            "windows_amd64",
        ],
        &config,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 fetched"), "{stdout}");
    assert_eq!(
        cached_zips(&cache),
        ["terraform-provider-local_2.0.0_windows_amd64.zip"]
    );
}

#[actix_web::test]
async fn prefetch_beside_a_running_server_and_failures_are_loud() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let (config, cache) = write_config(
        dir.path(),
        &upstream,
        "[[prefetch]]\nprovider = \"hashicorp/local\"\nplatforms = [\"linux_amd64\"]\n",
    );
    // The server on the same cache, serving while prefetch fills it.
    let app = TestApp::spawn(MirrorOptions::new(upstream.url(), &cache)).await;
    let zip = published.zip_name("linux", "amd64");
    let url = format!("/v1/providers/myproviders/local/2.1.0/files/{zip}");
    let (served, out) =
        futures_util::future::join(app.get_bytes(&url), tfmirror(&["prefetch"], &config)).await;
    assert_eq!(served.0, 200);
    assert_eq!(&served.1[..], &published.zips[&zip][..]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (status, body) = app.get_bytes(&url).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &published.zips[&zip][..]);

    // An unknown provider and an unmatched constraint: exit 1, each named.
    let (bad, _) = write_config(
        &dir.path().join("bad"),
        &upstream,
        "[[prefetch]]\nprovider = \"hashicorp/nope\"\nplatforms = [\"linux_amd64\"]\n\n[[prefetch]]\nprovider = \"hashicorp/local\"\nversions = \"~> 9.0\"\nplatforms = [\"linux_amd64\"]\n",
    );
    let out = tfmirror(&["prefetch"], &bad).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed: hashicorp/nope"), "{stdout}");
    assert!(
        stdout.contains("failed: hashicorp/local: no version matches ~> 9.0"),
        "{stdout}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("2 prefetch failures (listed above)"),
        "{stderr}"
    );
}
