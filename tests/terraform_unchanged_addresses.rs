//! Unchanged `hashicorp/*` source addresses through tfmirror with the real Terraform CLI,
//! both ways Terraform offers: a network mirror, and a `host` override of
//! registry.terraform.io's `providers.v1`. Also multi-platform lock files, and refusal of
//! tampered or badly signed releases over the network mirror.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;

use common::{
    attacker_key, publisher_key,
    terraform::{lock_hashes, main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, Published, TestApp,
};

const PLATFORMS: [&str; 3] = [
    "-platform=linux_amd64",
    "-platform=darwin_arm64",
    "-platform=windows_amd64",
];

struct Setup {
    upstream: FakeUpstream,
    app: TestApp,
    published: Published,
    cert: std::path::PathBuf,
}

async fn setup(dir: &Path, key: &'static common::TestKey) -> Setup {
    python();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, key);
    let tls_dir = dir.join("certs");
    let app = TestApp::spawn(MirrorOptions {
        upstream_url: upstream.url(),
        cache_dir: &dir.join("cache"),
        extra: String::new(),
        metadata_ttl: "10m",
        tls_dir: Some(&tls_dir),
        upstream_extra: "",
        cache_extra: "",
    })
    .await;
    Setup {
        upstream,
        app,
        published,
        cert: tls_dir.join("localhost.pem"),
    }
}

impl Setup {
    fn workspace(&self, dir: &Path, cli_config: &str) -> TfWorkspace {
        let mut ws = TfWorkspace::new(dir, &main_tf("hashicorp/local", "2.1.0"));
        ws.ca_file = Some(self.cert.clone());
        ws.set_cli_config(cli_config);
        ws
    }

    fn network_mirror_config(&self) -> String {
        format!(
            "provider_installation {{\n  network_mirror {{\n    url = \"{}/mirror/\"\n  }}\n}}\n",
            self.https_base()
        )
    }

    fn host_override_config(&self) -> String {
        format!(
            "host \"registry.terraform.io\" {{\n  services = {{\n    \"providers.v1\" = \"{}/v1/providers/\"\n  }}\n}}\n",
            self.https_base()
        )
    }

    fn https_base(&self) -> String {
        format!("https://localhost:{}", self.app.server.addr.port())
    }

    /// The h1: values tfmirror publishes for 2.1.0, once it has one for each of `platforms`.
    async fn published_h1(&self, platforms: &[&str]) -> Vec<String> {
        let path = "/mirror/registry.terraform.io/hashicorp/local/2.1.0.json";
        let mut doc = self.app.get_json(path).await.1;
        for platform in platforms {
            doc = self.app.version_doc_with_h1(path, platform).await;
        }
        let mut h1: Vec<String> = doc["archives"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|a| a["hashes"].as_array().unwrap().clone())
            .filter_map(|h| {
                h.as_str()
                    .filter(|h| h.starts_with("h1:"))
                    .map(str::to_owned)
            })
            .collect();
        h1.sort();
        h1
    }
}

fn installed_binary(ws: &TfWorkspace) -> std::path::PathBuf {
    ws.dir.join(
        ".terraform/providers/registry.terraform.io/hashicorp/local/2.1.0/linux_amd64/terraform-provider-local_v2.1.0_x5",
    )
}

#[actix_web::test]
async fn network_mirror_init_cold_then_warm() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), publisher_key()).await;

    let cold = s.workspace(&dir.path().join("cold"), &s.network_mirror_config());
    let out = cold.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "{}", out.combined());
    assert!(
        out.stdout
            .contains("Installed hashicorp/local v2.1.0 (verified checksum)"),
        "{}",
        out.stdout
    );
    assert!(installed_binary(&cold).exists());
    let lock = cold.lock_file();
    println!("network mirror lock file:\n{lock}");
    let h1 = lock_hashes(&lock, "h1:");
    assert_eq!(h1.len(), 1, "{lock}");
    assert!(
        s.published_h1(&["linux_amd64"]).await.contains(&h1[0]),
        "published h1 differs from Terraform's"
    );

    let hits = s.upstream.total_hits();
    s.upstream.stop().await;
    let warm = s.workspace(&dir.path().join("warm"), &s.network_mirror_config());
    let out = warm.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "{}", out.combined());
    assert!(installed_binary(&warm).exists());
    assert_eq!(s.upstream.total_hits(), hits);
}

#[actix_web::test]
async fn host_override_gives_complete_lock_files_for_unchanged_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), publisher_key()).await;
    let ws = s.workspace(&dir.path().join("init"), &s.host_override_config());
    let out = ws.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "{}", out.combined());
    let installed = format!(
        "Installed hashicorp/local v2.1.0 (self-signed, key ID {})",
        publisher_key().key_id
    );
    assert!(out.stdout.contains(&installed), "{}", out.stdout);
    let lock = ws.lock_file();
    println!("host override lock file:\n{lock}");
    assert!(
        lock.contains("provider \"registry.terraform.io/hashicorp/local\""),
        "{lock}"
    );
    let mut zh = lock_hashes(&lock, "zh:");
    zh.sort();
    let mut expected = s.published.zh_hashes();
    expected.sort();
    assert_eq!(
        zh, expected,
        "the lock file must hold every zh: of the signed SHA256SUMS"
    );
    assert_eq!(lock_hashes(&lock, "h1:").len(), 1, "{lock}");
}

#[actix_web::test]
async fn providers_lock_for_three_platforms_both_ways_then_init_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), publisher_key()).await;

    // Through the host override: every zh: plus an h1: per requested platform.
    let ws = s.workspace(&dir.path().join("lock-registry"), &s.host_override_config());
    let mut args = vec!["providers", "lock", "-no-color"];
    args.extend(PLATFORMS);
    let out = ws.run(&args);
    assert!(out.success, "{}", out.combined());
    let registry_lock = ws.lock_file();
    assert_eq!(
        lock_hashes(&registry_lock, "h1:").len(),
        3,
        "{registry_lock}"
    );
    assert_eq!(
        lock_hashes(&registry_lock, "zh:").len(),
        s.published.zh_hashes().len()
    );

    // Through the network mirror: an h1: per platform, equal to what tfmirror publishes.
    let ws = s.workspace(&dir.path().join("lock-mirror"), "");
    let net_mirror = format!("-net-mirror={}/mirror/", s.https_base());
    let mut args = vec!["providers", "lock", "-no-color", net_mirror.as_str()];
    args.extend(PLATFORMS);
    let out = ws.run(&args);
    assert!(out.success, "{}", out.combined());
    let mirror_lock = ws.lock_file();
    let mut h1 = lock_hashes(&mirror_lock, "h1:");
    h1.sort();
    assert_eq!(
        h1,
        s.published_h1(&["linux_amd64", "darwin_arm64", "windows_amd64"])
            .await,
        "Terraform recorded other h1: than tfmirror publishes"
    );
    let mut registry_h1 = lock_hashes(&registry_lock, "h1:");
    registry_h1.sort();
    assert_eq!(h1, registry_h1, "both ways must agree on the packages");

    // Another machine with that lock file installs through the mirror.
    let other = s.workspace(
        &dir.path().join("other-machine"),
        &s.network_mirror_config(),
    );
    std::fs::write(other.dir.join(".terraform.lock.hcl"), &mirror_lock).unwrap();
    let out = other.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "{}", out.combined());
    assert!(installed_binary(&other).exists());
}

#[actix_web::test]
async fn tampered_archive_never_installs_through_the_network_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), publisher_key()).await;
    let zip_name = s.published.zip_name("linux", "amd64");
    let mut evil = s.published.zips[&zip_name].clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    s.upstream
        .put(&format!("{}/{zip_name}", s.published.dir), evil);

    let ws = s.workspace(&dir.path().join("ws"), &s.network_mirror_config());
    let out = ws.run(&["init", "-no-color", "-input=false"]);
    assert!(
        !out.success,
        "a tampered package was installed:\n{}",
        out.combined()
    );
    assert!(!installed_binary(&ws).exists());
    assert!(!ws.dir.join(".terraform.lock.hcl").exists());
}

#[actix_web::test]
async fn badly_signed_release_never_installs_through_the_network_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), attacker_key()).await;
    let ws = s.workspace(&dir.path().join("ws"), &s.network_mirror_config());
    let out = ws.run(&["init", "-no-color", "-input=false"]);
    assert!(
        !out.success,
        "a badly signed package was installed:\n{}",
        out.combined()
    );
    assert!(out.combined().contains("502"), "{}", out.combined());
    assert!(!installed_binary(&ws).exists());
    assert!(!ws.dir.join(".terraform.lock.hcl").exists());
}
