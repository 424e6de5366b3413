//! Providers of a registry upstream (`kind = "registry"`) through what tfmirror does besides
//! serving them: signing-key continuity (counted, shown, refused when keys are pinned),
//! `allow_unsigned`, the one-shot subcommands of the real binary (`prefetch`, `verify`,
//! `export` / `import`, `gc`; an import held to pinned keys as a fetch is) and `[auth]`'s
//! signed file URLs. The providers are namespaced
//! (`integrations/github`), reached through `[namespaces."*"]` and
//! `[mirrors."registry.terraform.io/*"]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use common::{
    config_toml, error_text, files_under, publisher_key,
    serving::{tfmirror, Serving},
    FakeRegistry, FakeRelease, MirrorOptions, RegistryRelease, TestApp, TestKey,
};

/// Nothing listens here: the releases upstream the generated config always has, and the
/// registry of an offline site.
const NOWHERE: &str = "http://127.0.0.1:1";

const PLATFORMS: [(&str, &str); 3] = [
    ("linux", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
];

/// Where the store keeps `integrations/github` of upstream `registry`.
const GITHUB_DIR: &str = "releases/registry/integrations/terraform-provider-github";

/// Writes `dir/tfmirror.toml` with `registry_toml` appended, caching under `dir/cache`.
fn write_config(dir: &Path, registry_toml: &str) -> (PathBuf, PathBuf) {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut options = MirrorOptions::new(NOWHERE.to_owned(), &cache);
    options.extra = registry_toml.to_owned();
    let path = dir.join("tfmirror.toml");
    std::fs::write(&path, config_toml(&options)).unwrap();
    (path, cache)
}

/// tfmirror in-process, caching under `dir/cache`, with `registry_toml` appended.
async fn spawn(dir: &Path, registry_toml: &str) -> TestApp {
    std::fs::create_dir_all(dir).unwrap();
    let cache = dir.join("cache");
    let mut options = MirrorOptions::new(NOWHERE.to_owned(), &cache);
    options.extra = registry_toml.to_owned();
    TestApp::spawn(options).await
}

/// `tfmirror serve` as a child process: its own process, so its metrics count only its own.
fn serve(config: &Path) -> Serving {
    Serving::start(Path::new(env!("CARGO_BIN_EXE_tfmirror")), config, "info")
}

fn output_text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the first line of metric `name` that carries every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// GET `base + path` without a token: status and body.
async fn get(client: &reqwest::Client, base: &str, path: &str) -> (u16, bytes::Bytes) {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{base}{path}")
    };
    let response = client.get(url).send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap())
}

async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(client, base, path).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{path}: {status} {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// The path part of a URL tfmirror handed out, which must be its own.
fn own_path(base: &str, url: &str) -> String {
    if url.starts_with('/') {
        url.to_owned()
    } else {
        url.strip_prefix(base)
            .unwrap_or_else(|| panic!("{url} is not on tfmirror ({base})"))
            .to_owned()
    }
}

/// A release's download document for `os_arch` through tfmirror and then the archive it names;
/// the document, and the archive's status and bytes.
async fn download(
    client: &reqwest::Client,
    base: &str,
    release: &RegistryRelease,
    os: &str,
    arch: &str,
) -> (serde_json::Value, u16, bytes::Bytes) {
    let (status, doc) = get_json(client, base, &release.download_path(os, arch)).await;
    assert_eq!(status, 200, "{doc}");
    let url = own_path(base, doc["download_url"].as_str().unwrap());
    let (status, zip) = get(client, base, &url).await;
    (doc, status, zip)
}

/// Asserts the linux_amd64 archive of `release` is served, signed by `key`.
async fn assert_serves(
    client: &reqwest::Client,
    base: &str,
    release: &RegistryRelease,
    key: &TestKey,
) {
    let (doc, status, zip) = download(client, base, release, "linux", "amd64").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&zip));
    assert_eq!(&zip[..], release.zip("linux", "amd64"), "archive bytes");
    assert_eq!(doc["shasum"], release.shasum("linux", "amd64").as_str());
    assert_eq!(
        doc["signing_keys"]["gpg_public_keys"][0]["key_id"],
        key.key_id.as_str(),
        "{doc}"
    );
}

fn version_files(cache: &Path, version: &str) -> Vec<String> {
    let prefix = format!("{GITHUB_DIR}/{version}/");
    files_under(cache)
        .into_iter()
        .filter(|f| f.starts_with(&prefix))
        .collect()
}

/// The status page, the way a browser first gets it.
async fn status_page(client: &reqwest::Client, base: &str) -> String {
    let (status, html) = get(client, base, "/").await;
    assert_eq!(status, 200);
    String::from_utf8(html.to_vec()).unwrap()
}

/// The `#key-changes` table of a status page.
fn key_changes_table(html: &str) -> &str {
    let start = html
        .find("<table id=\"key-changes\">")
        .unwrap_or_else(|| panic!("no #key-changes table in {html}"));
    let end = html[start..].find("</table>").unwrap();
    &html[start..start + end]
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let (status, text) = get(client, base, "/metrics").await;
    assert_eq!(status, 200);
    String::from_utf8(text.to_vec()).unwrap()
}

const KEY_CHANGES: &str = "tfmirror_signing_key_changes_total";
const ACCEPTED: [&str; 2] = ["upstream=\"registry\"", "outcome=\"accepted\""];
const REFUSED: [&str; 2] = ["upstream=\"registry\"", "outcome=\"refused\""];

#[actix_web::test]
async fn a_new_signing_key_is_counted_and_shown_and_refused_while_keys_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let key_a = publisher_key();
    let key_b = TestKey::generate("rotated");
    let registry = FakeRegistry::start().await;
    let client = reqwest::Client::new();
    let older = registry.publish("integrations", &FakeRelease::new("github", "6.1.0"), key_a);
    let newer = registry.publish("integrations", &FakeRelease::new("github", "6.2.0"), &key_b);

    // Keys not pinned: the change is accepted, counted and listed.
    let (config, _) = write_config(&dir.path().join("unpinned"), &registry.mirror_toml(""));
    let serving = serve(&config);
    let base = serving.base.clone();
    assert_serves(&client, &base, &older, key_a).await;
    assert_serves(&client, &base, &newer, &key_b).await;
    let metrics = scrape(&client, &base).await;
    assert_eq!(
        metric(&metrics, KEY_CHANGES, &ACCEPTED),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, KEY_CHANGES, &REFUSED).unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    let html = status_page(&client, &base).await;
    let table = key_changes_table(&html);
    assert!(table.contains(&key_b.key_id), "{table}");
    assert!(table.contains(&key_a.key_id), "{table}");
    assert!(
        table.contains("6.2.0") && table.contains("accepted"),
        "{table}"
    );
    drop(serving);

    // Keys pinned, on a fresh cache: 6.1.0 (key A) first, then 6.2.0 (key B) is refused.
    let pinned_dir = dir.path().join("pinned");
    let (config, cache) = write_config(&pinned_dir, &registry.mirror_toml("pin_keys = true"));
    let serving = serve(&config);
    let base = serving.base.clone();
    assert_serves(&client, &base, &older, key_a).await;
    for _ in 0..2 {
        let (status, body) = get_json(&client, &base, &newer.download_path("linux", "amd64")).await;
        assert_eq!(status, 502, "{body}");
        let text = error_text(&body);
        assert!(text.contains("failed verification"), "{text}");
    }
    let (status, body) = get_json(
        &client,
        &base,
        "/mirror/registry.terraform.io/integrations/github/6.2.0.json",
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(version_files(&cache, "6.2.0"), Vec::<String>::new());
    assert_eq!(
        registry.archive_downloads(&newer, "linux", "amd64"),
        1,
        "only the unpinned run's"
    );
    // Counted once per refused request: two download documents and one `<version>.json`.
    let metrics = scrape(&client, &base).await;
    assert_eq!(
        metric(&metrics, KEY_CHANGES, &REFUSED),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, KEY_CHANGES, &ACCEPTED).unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    let html = status_page(&client, &base).await;
    let table = key_changes_table(&html);
    assert!(
        table.contains(&key_b.key_id) && table.contains("refused (pin_keys)"),
        "{table}"
    );
    drop(serving);

    // Key B configured for the upstream: restarted on the same cache, 6.2.0 is served.
    let key_file = pinned_dir.join("rotated.asc");
    std::fs::write(&key_file, &key_b.armored_public).unwrap();
    let more = format!("pin_keys = true\nsigning_keys = [{key_file:?}]");
    let (config, _) = write_config(&pinned_dir, &registry.mirror_toml(&more));
    let serving = serve(&config);
    let base = serving.base.clone();
    assert_serves(&client, &base, &newer, &key_b).await;
    assert_serves(&client, &base, &older, key_a).await;
    assert!(version_files(&cache, "6.2.0")
        .iter()
        .any(|f| f.ends_with("release.json")));
    // Still a change of key, accepted now that the key is configured.
    let metrics = scrape(&client, &base).await;
    assert_eq!(
        metric(&metrics, KEY_CHANGES, &ACCEPTED),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, KEY_CHANGES, &REFUSED).unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    drop(serving);
}

/// Publishes a release whose download documents carry no signing key (`gpg_public_keys: []`).
fn publish_unsigned(
    registry: &FakeRegistry,
    namespace: &str,
    release: &FakeRelease,
) -> RegistryRelease {
    let published = registry.publish(namespace, release, publisher_key());
    for (os, arch) in PLATFORMS {
        let path = published.download_path(os, arch);
        let mut doc: serde_json::Value =
            serde_json::from_slice(&registry.registry.get(&path).unwrap()).unwrap();
        doc["signing_keys"]["gpg_public_keys"] = serde_json::json!([]);
        registry
            .registry
            .put(&path, serde_json::to_vec(&doc).unwrap());
    }
    published
}

fn assert_nothing_cached(cache: &Path) {
    let files = files_under(cache);
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".zip") || f.ends_with("release.json")),
        "cached from a refused release: {files:?}"
    );
}

#[actix_web::test]
async fn a_provider_published_without_keys_is_served_only_through_the_network_mirror_with_allow_unsigned(
) {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let unsigned = publish_unsigned(
        &registry,
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
    );
    let tampered = publish_unsigned(
        &registry,
        "integrations",
        &FakeRelease::new("github", "6.3.0"),
    );
    registry.tamper_archive(&tampered, "linux", "amd64");
    let mirror_base = "/mirror/registry.terraform.io/integrations/github";

    // By default: refused, over both protocols, and nothing kept.
    let app = spawn(&dir.path().join("default"), &registry.mirror_toml("")).await;
    let (status, body) = app
        .get_json(&unsigned.download_path("linux", "amd64"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(error_text(&body).contains("failed verification"), "{body}");
    let (status, body) = app.get_json(&format!("{mirror_base}/6.2.0.json")).await;
    assert_eq!(status, 502, "{body}");
    assert!(error_text(&body).contains("failed verification"), "{body}");
    assert_nothing_cached(&app.cache_dir);
    assert_eq!(registry.archive_downloads(&unsigned, "linux", "amd64"), 0);
    app.stop().await;

    // allow_unsigned: checked by its digests alone, through the network mirror only.
    let app = spawn(
        &dir.path().join("allowed"),
        &registry.mirror_toml("allow_unsigned = true"),
    )
    .await;
    let (status, doc) = app.get_json(&format!("{mirror_base}/6.2.0.json")).await;
    assert_eq!(status, 200, "{doc}");
    for (os, arch) in PLATFORMS {
        let archive = &doc["archives"][format!("{os}_{arch}")];
        let hashes = archive["hashes"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc}"));
        let zh = format!("zh:{}", unsigned.shasum(os, arch));
        assert!(hashes.contains(&serde_json::json!(zh)), "{doc}");
        let url = archive["url"].as_str().unwrap();
        let (status, zip) = app.get_bytes(&format!("{mirror_base}/{url}")).await;
        assert_eq!(
            status,
            200,
            "{os}_{arch}: {}",
            String::from_utf8_lossy(&zip)
        );
        assert_eq!(&zip[..], unsigned.zip(os, arch), "{os}_{arch} bytes");
    }
    let (status, body) = app
        .get_json(&unsigned.download_path("linux", "amd64"))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(error_text(&body).contains("network mirror"), "{body}");

    // Digests still bind it: a tampered archive of an unsigned provider is refused.
    let (status, doc) = app.get_json(&format!("{mirror_base}/6.3.0.json")).await;
    assert_eq!(status, 200, "{doc}");
    let zip = tampered.zip_name("linux", "amd64");
    let response = app.get(&format!("{mirror_base}/{zip}")).await;
    assert_eq!(response.status().as_u16(), 502);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let text = error_text(&body);
    assert!(text.contains("failed verification"), "{text}");
    assert!(
        !version_files(&app.cache_dir, "6.3.0")
            .iter()
            .any(|f| f.ends_with(".zip")),
        "cached a tampered archive"
    );
    app.stop().await;
}

fn zip_path(cache: &Path, release: &RegistryRelease, os: &str, arch: &str) -> PathBuf {
    cache.join(format!(
        "{GITHUB_DIR}/{}/{}",
        release.version,
        release.zip_name(os, arch)
    ))
}

/// `[[prefetch]]` of `registry.terraform.io/integrations/github` 6.2.0 (linux, darwin).
const PREFETCH_GITHUB: &str = "[[prefetch]]\nprovider = \"registry.terraform.io/integrations/github\"\nversions = \"6.2.0\"\nplatforms = [\"linux_amd64\", \"darwin_arm64\"]\n";

/// A registry with integrations/github 6.1.0 and 6.2.0 (larger archives, for gc), and a config
/// that prefetches 6.2.0.
async fn github_registry(
    dir: &Path,
) -> (
    FakeRegistry,
    RegistryRelease,
    RegistryRelease,
    PathBuf,
    PathBuf,
) {
    let registry = FakeRegistry::start().await;
    let release = |version| FakeRelease {
        payload_bytes: 20_000,
        ..FakeRelease::new("github", version)
    };
    let older = registry.publish("integrations", &release("6.1.0"), publisher_key());
    let newer = registry.publish("integrations", &release("6.2.0"), publisher_key());
    let (config, cache) = write_config(
        dir,
        &format!("{}\n{PREFETCH_GITHUB}", registry.mirror_toml("")),
    );
    (registry, older, newer, config, cache)
}

async fn prefetch(config: &Path, args: &[&str]) -> String {
    let mut all = vec!["prefetch"];
    all.extend_from_slice(args);
    let out = tfmirror(&all, config).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[actix_web::test]
async fn prefetch_verify_repair_and_gc_work_on_registry_providers() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, older, newer, config, cache) = github_registry(dir.path()).await;

    // [[prefetch]] by its registry.terraform.io address.
    let stdout = prefetch(&config, &[]).await;
    assert!(
        stdout.contains("prefetch: 2 fetched") && stdout.contains("0 failed"),
        "{stdout}"
    );
    for (os, arch) in [("linux", "amd64"), ("darwin", "arm64")] {
        assert_eq!(
            registry.archive_downloads(&newer, os, arch),
            1,
            "{os}_{arch}"
        );
        assert_eq!(
            std::fs::read(zip_path(&cache, &newer, os, arch)).unwrap(),
            newer.zip(os, arch)
        );
    }
    assert_eq!(registry.archive_downloads(&newer, "windows", "amd64"), 0);

    // --from a root module that requires the provider by its short source address.
    let module = dir.path().join("module");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("versions.tf"),
        "terraform {\n  required_providers {\n    github = { source = \"integrations/github\", version = \"6.1.0\" }\n  }\n}\n",
    )
    .unwrap();
    let stdout = prefetch(
        &config,
        &[
            "--from",
            module.to_str().unwrap(),
            "--platform",
            "windows_amd64",
        ],
    )
    .await;
    assert!(
        stdout.contains("prefetch: 1 fetched") && stdout.contains("2 skipped"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(zip_path(&cache, &older, "windows", "amd64")).unwrap(),
        older.zip("windows", "amd64")
    );
    assert_eq!(registry.archive_downloads(&newer, "linux", "amd64"), 1);

    // verify: clean, then a flipped byte is DAMAGED, and --repair removes it.
    let verify = |repair: bool| {
        let config = config.clone();
        async move {
            let args: &[&str] = if repair {
                &["verify", "--repair"]
            } else {
                &["verify"]
            };
            tfmirror(args, &config).await
        }
    };
    let out = verify(false).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 releases, 3 archives") && stdout.contains("0 damaged"),
        "{stdout}"
    );
    let damaged = zip_path(&cache, &newer, "linux", "amd64");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = verify(false).await;
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("DAMAGED "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&newer.zip_name("linux", "amd64")), "{line}");
    assert_eq!(stdout.matches("DAMAGED ").count(), 1, "{stdout}");
    assert!(
        damaged.exists(),
        "verify without --repair removed something"
    );
    let out = verify(true).await;
    let (stdout, _) = output_text(&out);
    assert!(stdout.contains("1 damaged, 1 removed"), "{stdout}");
    assert!(!damaged.exists());
    let out = verify(false).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The removed archive is fetched again, verified, on the next prefetch.
    let stdout = prefetch(&config, &[]).await;
    assert!(stdout.contains("prefetch: 1 fetched"), "{stdout}");
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        newer.zip("linux", "amd64")
    );

    // gc: the [[prefetch]] archives stay although older; the other registry archive goes.
    for (release, os, arch, hours) in [
        (&newer, "linux", "amd64", 4),
        (&newer, "darwin", "arm64", 4),
        (&older, "windows", "amd64", 2),
    ] {
        let file = std::fs::File::open(zip_path(&cache, release, os, arch)).unwrap();
        file.set_times(
            std::fs::FileTimes::new()
                .set_accessed(SystemTime::now() - Duration::from_secs(hours * 3600)),
        )
        .unwrap();
    }
    let total: u64 = files_under(&cache)
        .iter()
        .map(|f| std::fs::metadata(cache.join(f)).unwrap().len())
        .sum();
    let limit = (total - 10_000).to_string();
    let out = tfmirror(&["gc", "--max-size", &limit], &config).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("evicted 1 archives"), "{stdout}");
    assert!(stdout.contains("2 kept for [[prefetch]]"), "{stdout}");
    assert!(
        stderr.contains(&older.zip_name("windows", "amd64")),
        "{stderr}"
    );
    assert!(!zip_path(&cache, &older, "windows", "amd64").exists());
    assert!(zip_path(&cache, &newer, "linux", "amd64").exists());
    assert!(zip_path(&cache, &newer, "darwin", "arm64").exists());
    // The release's small files stay: the evicted archive is fetched again on request.
    let app = spawn(
        dir.path(),
        &format!("{}\n{PREFETCH_GITHUB}", registry.mirror_toml("")),
    )
    .await;
    let (_, status, zip) = download(&app.client, &app.base, &older, "windows", "amd64").await;
    assert_eq!(status, 200);
    assert_eq!(&zip[..], older.zip("windows", "amd64"));
    assert_eq!(registry.archive_downloads(&older, "windows", "amd64"), 2);
    app.stop().await;
}

#[actix_web::test]
async fn a_registry_provider_exported_and_imported_is_served_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _older, newer, config, _) = github_registry(&dir.path().join("online")).await;
    prefetch(&config, &[]).await;

    let bundle = dir.path().join("github.tar");
    let out = tfmirror(
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--provider",
            "registry/github",
            "--version",
            "6.2.0",
        ],
        &config,
    )
    .await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("export: 1 releases"), "{stdout}");

    // The offline site: the same registry upstream, its URL pointing nowhere.
    let offline_toml = registry.mirror_toml("").replace(&registry.url(), NOWHERE);
    assert!(!offline_toml.contains(&registry.url()));
    let offline_dir = dir.path().join("offline");
    let (offline_config, offline_cache) = write_config(&offline_dir, &offline_toml);
    let out = tfmirror(&["import", bundle.to_str().unwrap()], &offline_config).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("import: 1 releases"), "{stdout}");
    assert!(version_files(&offline_cache, "6.2.0")
        .iter()
        .any(|f| f.ends_with("release.json")));

    let hits = registry.total_hits();
    registry.stop().await;
    let app = spawn(&offline_dir, &offline_toml).await;
    let (status, body) = app
        .get_json("/v1/providers/integrations/github/versions")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["versions"][0]["version"], "6.2.0", "{body}");
    for (os, arch) in [("linux", "amd64"), ("darwin", "arm64")] {
        let (doc, status, zip) = download(&app.client, &app.base, &newer, os, arch).await;
        assert_eq!(status, 200, "{os}_{arch}");
        assert_eq!(&zip[..], newer.zip(os, arch), "{os}_{arch} bytes");
        assert_eq!(
            doc["signing_keys"]["gpg_public_keys"][0]["key_id"],
            publisher_key().key_id.as_str()
        );
    }
    let doc = app
        .version_doc_with_h1(
            "/mirror/registry.terraform.io/integrations/github/6.2.0.json",
            "linux_amd64",
        )
        .await;
    assert!(doc["archives"]["darwin_arm64"].is_object(), "{doc}");
    // The windows archive was not in the bundle: its document is (the release is verified),
    // the archive is not, and there is no upstream to fetch it from.
    let (_, status, _) = download(&app.client, &app.base, &newer, "windows", "amd64").await;
    assert!(status >= 500, "{status}");
    assert_eq!(registry.total_hits(), hits);
    app.stop().await;
}

#[actix_web::test]
async fn with_auth_a_registry_download_document_has_signed_file_urls() {
    const TOKEN: &str = "tfm_registry_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let github = registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
        publisher_key(),
    );
    let app = spawn(
        dir.path(),
        &format!(
            "{}\n[auth]\ntokens = [\"{TOKEN}\"]\nurl_ttl = \"5m\"\n",
            registry.mirror_toml("")
        ),
    )
    .await;
    let download_path = github.download_path("linux", "amd64");
    let request = |path: &str, token: Option<&str>| {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", app.base)
        };
        let mut request = app.client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(request(&download_path, None).await.unwrap().status(), 401);
    assert_eq!(
        request(&download_path, Some("wrong"))
            .await
            .unwrap()
            .status(),
        401
    );
    let response = request(&download_path, Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let expected = [
        ("download_url", github.zip("linux", "amd64").to_vec()),
        ("shasums_url", github.published.sums.clone()),
        ("shasums_signature_url", github.published.sig.clone()),
    ];
    for (field, bytes) in expected {
        let url = own_path(&app.base, doc[field].as_str().unwrap());
        let url = url.as_str();
        assert!(
            url.contains("?expires=") && url.contains("&signature="),
            "{field}: {url}"
        );
        let response = request(url, None).await.unwrap();
        assert_eq!(response.status(), 200, "{field}: {url}");
        assert_eq!(&response.bytes().await.unwrap()[..], &bytes[..], "{field}");
        // The same file without its signature needs a token.
        let bare = url.split_once('?').unwrap().0;
        assert_eq!(request(bare, None).await.unwrap().status(), 401, "{bare}");
        assert_eq!(request(bare, Some(TOKEN)).await.unwrap().status(), 200);
    }
    // A signature is for its own file only.
    let signed = doc["download_url"].as_str().unwrap();
    let query = signed.split_once('?').unwrap().1;
    let other = format!(
        "/v1/providers/integrations/github/6.2.0/files/{}?{query}",
        github.zip_name("darwin", "arm64")
    );
    assert_eq!(request(&other, None).await.unwrap().status(), 401);
    assert_eq!(registry.archive_downloads(&github, "darwin", "arm64"), 0);
    app.stop().await;
}

/// `tfmirror export` of one version of integrations/github; the bundle's path.
async fn export_version(config: &Path, dir: &Path, version: &str) -> PathBuf {
    let bundle = dir.join(format!("github-{version}.tar"));
    let out = tfmirror(
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--provider",
            "registry/github",
            "--version",
            version,
        ],
        config,
    )
    .await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    bundle
}

#[actix_web::test]
async fn an_imported_version_signed_by_a_new_key_is_refused_while_keys_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let key_b = TestKey::generate("rotated");
    let registry = FakeRegistry::start().await;
    registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.1.0"),
        publisher_key(),
    );
    let newer = registry.publish("integrations", &FakeRelease::new("github", "6.2.0"), &key_b);
    let online = dir.path().join("online");
    let (config, _) = write_config(
        &online,
        &format!(
            "{}\n[[prefetch]]\nprovider = \"integrations/github\"\nplatforms = [\"linux_amd64\"]\n",
            registry.mirror_toml("")
        ),
    );
    let stdout = prefetch(&config, &[]).await;
    assert!(stdout.contains("prefetch: 2 fetched"), "{stdout}");
    let older_bundle = export_version(&config, dir.path(), "6.1.0").await;
    let newer_bundle = export_version(&config, dir.path(), "6.2.0").await;
    registry.stop().await;

    // The offline site pins keys and has 6.1.0, signed by the publisher's key.
    let offline_dir = dir.path().join("offline");
    let pinned = registry
        .mirror_toml("pin_keys = true")
        .replace(&registry.url(), NOWHERE);
    let (offline_config, offline_cache) = write_config(&offline_dir, &pinned);
    let out = tfmirror(&["import", older_bundle.to_str().unwrap()], &offline_config).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // 6.2.0, signed by another key, is refused whole, as a fetch of it would be.
    let out = tfmirror(&["import", newer_bundle.to_str().unwrap()], &offline_config).await;
    let (stdout, stderr) = output_text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(&key_b.key_id), "{stderr}");
    assert_eq!(version_files(&offline_cache, "6.2.0"), Vec::<String>::new());

    // With the new key configured, the same bundle is imported and served.
    let key_file = offline_dir.join("rotated.asc");
    std::fs::write(&key_file, &key_b.armored_public).unwrap();
    let pinned = registry
        .mirror_toml(&format!("pin_keys = true\nsigning_keys = [{key_file:?}]"))
        .replace(&registry.url(), NOWHERE);
    let (offline_config, _) = write_config(&offline_dir, &pinned);
    let out = tfmirror(&["import", newer_bundle.to_str().unwrap()], &offline_config).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let app = spawn(&offline_dir, &pinned).await;
    assert_serves(&app.client, &app.base, &newer, &key_b).await;
    app.stop().await;
}
