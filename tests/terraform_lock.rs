//! Complete lock files with the real Terraform CLI: `tfmirror lock` for three platforms (one
//! the local one) writes the file Terraform itself would, `terraform init -lockfile=readonly`
//! accepts it through the network mirror and through the host override with no "incomplete
//! lock file" warning, and `terraform providers lock` for the same platforms changes nothing.
//! A private-namespace address (`localhost:PORT/myproviders/local`) is locked the same way,
//! with the constraints in Terraform's canonical form. Also what it costs: archives downloaded from upstream by `tfmirror lock`, against archives
//! `terraform providers lock` downloads on every run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    config_toml, publisher_key,
    serving::tfmirror,
    terraform::{lock_hashes, main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, Published, TestApp,
};

const PLATFORMS: [&str; 3] = ["linux_amd64", "darwin_arm64", "windows_amd64"];

struct Setup {
    upstream: FakeUpstream,
    app: TestApp,
    published: Published,
    config: PathBuf,
    cert: PathBuf,
}

async fn setup(dir: &Path) -> Setup {
    python();
    let upstream = FakeUpstream::start().await;
    FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "3.0.0").publish(&upstream, publisher_key());
    let tls_dir = dir.join("certs");
    let cache = dir.join("cache");
    let mut options = MirrorOptions::new(upstream.url(), &cache);
    options.tls_dir = Some(&tls_dir);
    let config = dir.join("tfmirror.toml");
    std::fs::write(&config, config_toml(&options)).unwrap();
    let app = TestApp::spawn(options).await;
    Setup {
        upstream,
        app,
        published,
        config,
        cert: tls_dir.join("localhost.pem"),
    }
}

impl Setup {
    fn https_base(&self) -> String {
        format!("https://localhost:{}", self.app.server.addr.port())
    }

    fn workspace(&self, dir: &Path, cli_config: &str) -> TfWorkspace {
        let mut ws = TfWorkspace::new(dir, &main_tf("hashicorp/local", "~> 2.0"));
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

    /// Upstream downloads of 2.1.0's archives so far.
    fn archive_downloads(&self) -> usize {
        self.published
            .zips
            .keys()
            .map(|zip| self.upstream.hits(&format!("{}/{zip}", self.published.dir)))
            .sum()
    }
}

async fn lock(s: &Setup, dir: &Path) -> (String, String) {
    let mut args = vec!["lock", "--from", dir.to_str().unwrap()];
    for platform in PLATFORMS {
        args.extend(["--platform", platform]);
    }
    let out = tfmirror(&args, &s.config).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[actix_web::test]
async fn a_lock_file_for_three_platforms_is_the_one_terraform_writes_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;

    // tfmirror lock: newest version under "~> 2.0", each archive fetched from upstream once.
    let ws = s.workspace(&dir.path().join("locked"), &s.host_override_config());
    let (stdout, stderr) = lock(&s, &ws.dir).await;
    println!("{stderr}{stdout}");
    assert!(
        stdout.contains("locked registry.terraform.io/hashicorp/local 2.1.0"),
        "{stdout}"
    );
    let lock_file = ws.lock_file();
    println!("tfmirror lock wrote:\n{lock_file}");
    let tfmirror_downloads = s.archive_downloads();
    assert_eq!(tfmirror_downloads, 3, "one upstream download per platform");
    assert!(
        lock_file.contains("  version     = \"2.1.0\"\n  constraints = \"~> 2.0\"\n"),
        "{lock_file}"
    );
    let zh = lock_hashes(&lock_file, "zh:");
    let mut expected = s.published.zh_hashes();
    expected.sort();
    assert_eq!(zh, expected, "every line of the signed SHA256SUMS, sorted");
    assert_eq!(lock_hashes(&lock_file, "h1:").len(), 3, "{lock_file}");

    // Re-running changes nothing and downloads nothing. (Upstream may still be asked for
    // other versions' manifests: version lists learn their protocols in the background.)
    let (stdout, _) = lock(&s, &ws.dir).await;
    assert!(stdout.contains("lock: unchanged"), "{stdout}");
    assert!(stdout.contains("0 archives fetched"), "{stdout}");
    assert_eq!(ws.lock_file(), lock_file);
    assert_eq!(s.archive_downloads(), tfmirror_downloads);
    let release = s.published.dir.clone();
    assert_eq!(
        s.upstream
            .hits(&format!("{release}/{}", s.published.sums_name)),
        1
    );

    // Accepted as it is, through both set-ups, with no "incomplete" warning.
    for (name, cli_config) in [
        ("network-mirror", s.network_mirror_config()),
        ("host-override", s.host_override_config()),
    ] {
        let other = s.workspace(&dir.path().join(name), &cli_config);
        std::fs::write(other.dir.join(".terraform.lock.hcl"), &lock_file).unwrap();
        let out = other.run(&["init", "-no-color", "-input=false", "-lockfile=readonly"]);
        assert!(out.success, "{name}: {}", out.combined());
        assert!(
            !out.combined().contains("Incomplete lock file information"),
            "{name}: {}",
            out.combined()
        );
        assert!(
            out.stdout.contains("Installed hashicorp/local v2.1.0"),
            "{name}: {}",
            out.stdout
        );
        assert_eq!(other.lock_file(), lock_file, "{name}");
    }

    // Terraform's own `providers lock` for the same platforms finds nothing to add, but
    // downloads every platform's archive (from tfmirror) to learn what tfmirror already wrote.
    let mut args = vec!["providers", "lock", "-no-color"];
    let flags: Vec<String> = PLATFORMS.iter().map(|p| format!("-platform={p}")).collect();
    args.extend(flags.iter().map(String::as_str));
    let out = ws.run(&args);
    assert!(out.success, "{}", out.combined());
    assert_eq!(
        ws.lock_file(),
        lock_file,
        "terraform providers lock changed the file"
    );
    // One "Retrieved" line per archive Terraform downloaded and hashed.
    let terraform_downloads = out.stdout.matches("- Retrieved hashicorp/local").count();
    assert_eq!(terraform_downloads, 3, "{}", out.stdout);
    assert!(
        out.stdout.contains("found no need for changes"),
        "{}",
        out.stdout
    );

    let ws = s.workspace(&dir.path().join("net-mirror-lock"), "");
    std::fs::write(ws.dir.join(".terraform.lock.hcl"), &lock_file).unwrap();
    let net_mirror = format!("-net-mirror={}/mirror/", s.https_base());
    let mut args = vec!["providers", "lock", "-no-color", net_mirror.as_str()];
    args.extend(flags.iter().map(String::as_str));
    let out = ws.run(&args);
    assert!(out.success, "{}", out.combined());
    assert_eq!(ws.lock_file(), lock_file, "providers lock -net-mirror");
    assert_eq!(
        out.stdout.matches("- Retrieved hashicorp/local").count(),
        3,
        "{}",
        out.stdout
    );
    println!(
        "archive downloads: tfmirror lock {tfmirror_downloads} from upstream, once for every \
         workspace (0 when cached); terraform providers lock {terraform_downloads} per run and workspace"
    );
}

#[actix_web::test]
async fn a_private_namespace_address_is_locked_and_accepted_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let source = format!("localhost:{}/myproviders/local", s.app.server.addr.port());
    let mut ws = TfWorkspace::new(
        &dir.path().join("private"),
        &main_tf(&source, ">= 2.0, < 3"),
    );
    ws.ca_file = Some(s.cert.clone());
    let (stdout, _) = lock(&s, &ws.dir).await;
    assert!(
        stdout.contains(&format!("locked {source} 2.1.0")),
        "{stdout}"
    );
    let lock_file = ws.lock_file();
    assert!(
        lock_file.contains(&format!(
            "provider \"{source}\" {{\n  version     = \"2.1.0\"\n  constraints = \">= 2.0.0, < 3.0.0\"\n"
        )),
        "{lock_file}"
    );
    let out = ws.run(&["init", "-no-color", "-input=false", "-lockfile=readonly"]);
    assert!(out.success, "{}", out.combined());
    assert!(
        !out.combined().contains("Incomplete lock file information"),
        "{}",
        out.combined()
    );
    assert_eq!(ws.lock_file(), lock_file);
}

#[actix_web::test]
async fn the_lock_route_answers_the_same_block() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let query = PLATFORMS
        .iter()
        .map(|p| format!("platform={p}"))
        .collect::<Vec<_>>()
        .join("&");
    let response = s
        .app
        .get(&format!(
            "/lock/registry.terraform.io/hashicorp/local/2.1.0?{query}"
        ))
        .await;
    assert_eq!(response.status(), 200);
    let block = response.text().await.unwrap();
    assert!(
        block.starts_with("provider \"registry.terraform.io/hashicorp/local\" {\n  version = \"2.1.0\"\n  hashes = [\n"),
        "{block}"
    );
    assert_eq!(lock_hashes(&block, "h1:").len(), 3, "{block}");
    assert_eq!(
        lock_hashes(&block, "zh:").len(),
        s.published.zh_hashes().len()
    );

    // The CLI, on the same cache, writes the same hashes without any further download.
    let hits = s.archive_downloads();
    let out = tfmirror(
        &[
            "lock",
            "--provider",
            "hashicorp/local",
            "--versions",
            "2.1.0",
            "--platform",
            "linux_amd64",
            "--platform",
            "darwin_arm64",
            "--platform",
            "windows_amd64",
            "--output",
            dir.path().join("cli.lock.hcl").to_str().unwrap(),
        ],
        &s.config,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("cli.lock.hcl")).unwrap();
    assert_eq!(lock_hashes(&written, "h1:"), lock_hashes(&block, "h1:"));
    assert_eq!(s.archive_downloads(), hits);

    // Private namespace on the mirror's own host; mistakes are JSON errors.
    let (status, _) = s
        .app
        .get_bytes("/lock/localhost:8443/myproviders/local/2.1.0?platform=linux_amd64")
        .await;
    assert_eq!(status, 200);
    for (path, status) in [
        ("/lock/registry.terraform.io/hashicorp/local/2.1.0", 400),
        (
            "/lock/registry.terraform.io/hashicorp/local/2.1.0?platform=plan9_mips",
            404,
        ),
        (
            "/lock/registry.terraform.io/hashicorp/local/9.9.9?platform=linux_amd64",
            404,
        ),
        (
            "/lock/registry.terraform.io/hashicorp/local/2.1.0?platforms=linux_amd64",
            400,
        ),
    ] {
        let (got, body) = s.app.get_json(path).await;
        assert_eq!(got, status, "{path}: {body}");
    }
}
