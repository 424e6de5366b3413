//! Registry upstreams (`kind = "registry"`) over HTTP, against a fake Provider Registry
//! Protocol registry whose files are GitHub-style release assets behind a redirect: two
//! namespaces through `[namespaces."*"]`, the `gh` alias, the network mirror for
//! `registry.terraform.io/*`, what is served once every upstream host is gone, the refusals
//! (tampering, foreign signatures, re-labelled releases, hosts outside `download_hosts`,
//! policy), the bearer token and the egress proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;

use common::{
    attacker_key, error_text, files_under, proxy::Tinyproxy, publisher_key, FakeRegistry,
    FakeRelease, FileHosting, MirrorOptions, Publication, RegistryRelease, TestApp, TestKey,
};

/// Nothing listens here; the releases upstream the generated config always has is not used.
const UNUSED_RELEASES_URL: &str = "http://127.0.0.1:1";

async fn spawn(dir: &Path, registry: &FakeRegistry, upstream_more: &str, extra: &str) -> TestApp {
    std::fs::create_dir_all(dir).unwrap();
    let cache = dir.join("cache");
    let mut options = MirrorOptions::new(UNUSED_RELEASES_URL.to_owned(), &cache);
    options.extra = format!("{}\n{extra}", registry.mirror_toml(upstream_more));
    TestApp::spawn(options).await
}

fn datadog_key() -> &'static TestKey {
    static KEY: std::sync::OnceLock<TestKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("datadog"))
}

/// The path part of a URL tfmirror handed out, which must be its own.
fn own_path(app: &TestApp, url: &str) -> String {
    if url.starts_with('/') {
        url.to_owned()
    } else {
        url.strip_prefix(&app.base)
            .unwrap_or_else(|| panic!("{url} is not on tfmirror ({})", app.base))
            .to_owned()
    }
}

/// A download document, then the archive it names: the first answer that is not a success.
async fn fetch_archive(app: &TestApp, download: &str) -> (u16, serde_json::Value) {
    let (status, doc) = app.get_json(download).await;
    if status != 200 {
        return (status, doc);
    }
    let url = own_path(app, doc["download_url"].as_str().unwrap());
    let response = app.get(&url).await;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::json!({"bytes": bytes.len()}));
    (status, body)
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

/// The linux_amd64 archive of a release through tfmirror's registry protocol under `ns`.
async fn assert_serves(app: &TestApp, ns: &str, release: &RegistryRelease, key: &TestKey) {
    let (ty, v) = (&release.provider_type, &release.version);
    let (status, doc) = app
        .get_json(&format!("/v1/providers/{ns}/{ty}/{v}/download/linux/amd64"))
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["os"], "linux");
    assert_eq!(doc["arch"], "amd64");
    assert_eq!(doc["filename"], release.zip_name("linux", "amd64").as_str());
    assert_eq!(doc["shasum"], release.shasum("linux", "amd64").as_str());
    assert_eq!(doc["protocols"], serde_json::json!(["5.0"]));
    let keys = doc["signing_keys"]["gpg_public_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{doc}");
    assert_eq!(keys[0]["key_id"], key.key_id.as_str());
    assert_eq!(keys[0]["ascii_armor"], key.armored_public.as_str());
    assert_eq!(keys[0]["trust_signature"], "");
    for field in ["download_url", "shasums_url", "shasums_signature_url"] {
        let url = doc[field].as_str().unwrap();
        own_path(app, url);
        assert!(!url.contains("release-assets"), "{field}: {url}");
    }
    let (status, zip) = app
        .get_bytes(&own_path(app, doc["download_url"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(&zip[..], release.zip("linux", "amd64"), "archive bytes");
    let (status, sums) = app
        .get_bytes(&own_path(app, doc["shasums_url"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(&sums[..], &release.published.sums[..], "SHA256SUMS bytes");
    let (status, sig) = app
        .get_bytes(&own_path(
            app,
            doc["shasums_signature_url"].as_str().unwrap(),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(&sig[..], &release.published.sig[..], "signature bytes");
}

async fn assert_versions(app: &TestApp, ns: &str, ty: &str, expected: &[&str]) {
    let (status, body) = app
        .get_json(&format!("/v1/providers/{ns}/{ty}/versions"))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, expected, "{body}");
    let platforms = body["versions"][0]["platforms"].as_array().unwrap();
    for (os, arch) in [
        ("linux", "amd64"),
        ("darwin", "arm64"),
        ("windows", "amd64"),
    ] {
        assert!(
            platforms.contains(&serde_json::json!({"os": os, "arch": arch})),
            "{body}"
        );
    }
}

/// The network mirror's documents for a release and its linux_amd64 archive.
async fn assert_mirror_serves(app: &TestApp, release: &RegistryRelease, expect_h1: bool) {
    let base = format!(
        "/mirror/registry.terraform.io/{}/{}",
        release.namespace, release.provider_type
    );
    let (status, index) = app.get_json(&format!("{base}/index.json")).await;
    assert_eq!(status, 200, "{index}");
    assert!(index["versions"][&release.version].is_object(), "{index}");
    let doc_path = format!("{base}/{}.json", release.version);
    let doc = if expect_h1 {
        app.version_doc_with_h1(&doc_path, "linux_amd64").await
    } else {
        let (status, doc) = app.get_json(&doc_path).await;
        assert_eq!(status, 200, "{doc}");
        doc
    };
    let zh = release.published.zh_hashes();
    for (os, arch) in [
        ("linux", "amd64"),
        ("darwin", "arm64"),
        ("windows", "amd64"),
    ] {
        let archive = &doc["archives"][format!("{os}_{arch}")];
        let hashes: Vec<&str> = archive["hashes"]
            .as_array()
            .unwrap_or_else(|| panic!("no {os}_{arch} in {doc}"))
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let own = format!("zh:{}", release.shasum(os, arch));
        assert!(hashes.contains(&own.as_str()), "{doc}");
        assert!(zh.contains(&own));
    }
    let url = doc["archives"]["linux_amd64"]["url"].as_str().unwrap();
    let path = if url.starts_with("http") || url.starts_with('/') {
        own_path(app, url)
    } else {
        format!("{base}/{url}")
    };
    let (status, zip) = app.get_bytes(&path).await;
    assert_eq!(status, 200);
    assert_eq!(
        &zip[..],
        release.zip("linux", "amd64"),
        "mirror archive bytes"
    );
}

#[actix_web::test]
async fn two_namespaces_the_alias_and_the_network_mirror_then_every_host_gone() {
    let dir = tempfile::tempdir().unwrap();
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
    let app = spawn(dir.path(), &registry, "", "").await;

    assert_versions(&app, "integrations", "github", &["6.1.0", "6.2.0"]).await;
    assert_versions(&app, "gh", "github", &["6.1.0", "6.2.0"]).await;
    assert_versions(&app, "datadog", "datadog", &["3.40.0"]).await;

    assert_serves(&app, "integrations", &github, publisher_key()).await;
    assert_serves(&app, "datadog", &datadog, datadog_key()).await;
    assert_eq!(registry.archive_downloads(&github, "linux", "amd64"), 1);
    assert_eq!(registry.archive_downloads(&datadog, "linux", "amd64"), 1);
    // The redirect was followed from the asset host: the bytes came from the download host.
    assert_eq!(
        registry.assets.hits(&github.asset_path("linux", "amd64")),
        1
    );

    // The alias and a second fetch reuse the verified archive.
    assert_serves(&app, "gh", &github, publisher_key()).await;
    assert_serves(&app, "integrations", &github, publisher_key()).await;
    assert_eq!(registry.archive_downloads(&github, "linux", "amd64"), 1);

    // The network mirror: zh: for every platform, h1: once the archive is cached.
    assert_mirror_serves(&app, &github, true).await;
    assert_mirror_serves(&app, &datadog, true).await;
    assert_eq!(registry.archive_downloads(&github, "linux", "amd64"), 1);
    assert_eq!(registry.archive_downloads(&datadog, "linux", "amd64"), 1);
    assert_nothing_cached_elsewhere(&registry);

    // Every fake host gone: what was fetched is still served.
    let hits = registry.total_hits();
    registry.stop().await;
    assert_versions(&app, "integrations", "github", &["6.1.0", "6.2.0"]).await;
    assert_versions(&app, "gh", "github", &["6.1.0", "6.2.0"]).await;
    assert_serves(&app, "integrations", &github, publisher_key()).await;
    assert_serves(&app, "gh", &github, publisher_key()).await;
    assert_serves(&app, "datadog", &datadog, datadog_key()).await;
    assert_mirror_serves(&app, &github, true).await;
    assert_mirror_serves(&app, &datadog, true).await;
    assert_eq!(registry.total_hits(), hits);
    app.stop().await;
}

fn assert_nothing_cached_elsewhere(registry: &FakeRegistry) {
    assert_eq!(
        registry.outside.total_hits(),
        0,
        "{:?}",
        registry.outside.requested_paths()
    );
}

#[actix_web::test]
async fn a_tampered_asset_is_refused_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let github = registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
        publisher_key(),
    );
    registry.tamper_archive(&github, "linux", "amd64");
    let app = spawn(dir.path(), &registry, "", "").await;
    for _ in 0..2 {
        let (status, body) = fetch_archive(&app, &github.download_path("linux", "amd64")).await;
        assert_eq!(status, 502, "{body}");
        assert!(error_text(&body).contains("failed verification"), "{body}");
    }
    // The SHA256SUMS here is genuine and verified, so its record may be kept; the archive
    // that does not match it never is.
    let files = files_under(&app.cache_dir);
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".zip") || f.ends_with(".h1")),
        "cached a tampered archive: {files:?}"
    );
    // A failure is not cached as a success: the second request fetched again.
    assert_eq!(registry.archive_downloads(&github, "linux", "amd64"), 2);
    app.stop().await;
}

/// The archive through the registry protocol and `<version>.json` through the network mirror
/// both fail verification, and nothing of the release is cached.
async fn refused_through_both_protocols(app: &TestApp, download_path: &str, version: &str) {
    let (status, body) = fetch_archive(app, download_path).await;
    assert_eq!(status, 502, "{body}");
    assert!(error_text(&body).contains("failed verification"), "{body}");
    let (status, body) = app
        .get_json(&format!(
            "/mirror/registry.terraform.io/integrations/github/{version}.json"
        ))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_nothing_cached(&app.cache_dir);
}

#[actix_web::test]
async fn a_signature_by_another_key_than_the_published_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let release = FakeRelease::new("github", "6.2.0");
    let github = registry.publish_as(Publication {
        namespace: "integrations",
        provider_type: "github",
        version: "6.2.0",
        release: &release,
        signer: attacker_key(),
        published_key: publisher_key(),
        hosting: FileHosting::Assets,
    });
    let app = spawn(dir.path(), &registry, "", "").await;
    refused_through_both_protocols(&app, &github.download_path("linux", "amd64"), "6.2.0").await;
    assert_eq!(registry.archive_downloads(&github, "linux", "amd64"), 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_release_relabelled_as_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    // 6.2.0's paths serve 6.1.0's genuinely signed SHA256SUMS and archives, consistently.
    let older = FakeRelease::new("github", "6.1.0");
    let relabelled = registry.publish_as(Publication {
        namespace: "integrations",
        provider_type: "github",
        version: "6.2.0",
        release: &older,
        signer: publisher_key(),
        published_key: publisher_key(),
        hosting: FileHosting::Assets,
    });
    assert!(relabelled.zip_name("linux", "amd64").contains("_6.1.0_"));
    let app = spawn(dir.path(), &registry, "", "").await;
    let download = relabelled.download_path("linux", "amd64");
    refused_through_both_protocols(&app, &download, "6.2.0").await;
    app.stop().await;
}

#[actix_web::test]
async fn a_release_relabelled_as_another_provider_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    // integrations/github 3.40.0 serves datadog's genuinely signed release.
    let other = FakeRelease::new("datadog", "3.40.0");
    let relabelled = registry.publish_as(Publication {
        namespace: "integrations",
        provider_type: "github",
        version: "3.40.0",
        release: &other,
        signer: publisher_key(),
        published_key: publisher_key(),
        hosting: FileHosting::Assets,
    });
    let app = spawn(dir.path(), &registry, "", "").await;
    let download = relabelled.download_path("linux", "amd64");
    refused_through_both_protocols(&app, &download, "3.40.0").await;
    app.stop().await;
}

#[actix_web::test]
async fn files_on_hosts_outside_download_hosts_are_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    // Linked directly on the outside host, and redirected there from the asset host.
    let direct = FakeRelease::new("github", "6.2.0");
    let direct = registry.publish_as(Publication {
        namespace: "integrations",
        provider_type: "github",
        version: "6.2.0",
        release: &direct,
        signer: publisher_key(),
        published_key: publisher_key(),
        hosting: FileHosting::Outside,
    });
    let redirected = FakeRelease::new("datadog", "3.40.0");
    let redirected = registry.publish_as(Publication {
        namespace: "datadog",
        provider_type: "datadog",
        version: "3.40.0",
        release: &redirected,
        signer: publisher_key(),
        published_key: publisher_key(),
        hosting: FileHosting::RedirectOutside,
    });
    let app = spawn(dir.path(), &registry, "", "").await;
    let mut refusals = Vec::new();
    for release in [&direct, &redirected] {
        let (status, body) = fetch_archive(&app, &release.download_path("linux", "amd64")).await;
        assert_eq!(status, 502, "{body}");
        let text = error_text(&body);
        assert!(text.contains("download_hosts"), "{body}");
        refusals.push(text);
    }
    assert_eq!(
        registry.outside.total_hits(),
        0,
        "{:?}",
        registry.outside.requested_paths()
    );
    // No archive at all; no record of the release whose SHA256SUMS was outside too (the
    // redirected one's SHA256SUMS came, genuine and verified, from the asset host).
    let files = files_under(&app.cache_dir);
    assert!(
        !files.iter().any(|f| f.ends_with(".zip")
            || (f.contains("terraform-provider-github") && f.ends_with("release.json"))),
        "{files:?}"
    );
    // The allowed hosts are 127.0.0.1 too, on other ports: only host and port tell which.
    let outside = registry.outside.addr.to_string();
    for text in refusals {
        assert!(text.contains(&outside), "{outside} not named: {text}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_denied_provider_is_refused_before_anything_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
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
    let app = spawn(
        dir.path(),
        &registry,
        "",
        "[policy]\nallow = [\"*/*\"]\ndeny = [\"datadog/*\"]\n",
    )
    .await;
    for path in [
        "/v1/providers/datadog/datadog/versions".to_owned(),
        datadog.download_path("linux", "amd64"),
        "/mirror/registry.terraform.io/datadog/datadog/index.json".to_owned(),
        "/mirror/registry.terraform.io/datadog/datadog/3.40.0.json".to_owned(),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(error_text(&body).contains("datadog/*"), "{path}: {body}");
    }
    assert_eq!(
        registry.requests_for("datadog", "datadog"),
        Vec::<String>::new()
    );
    assert_nothing_cached(&app.cache_dir);
    // Others still pass.
    assert_serves(&app, "integrations", &github, publisher_key()).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_provider_outside_allow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let github = registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
        publisher_key(),
    );
    registry.publish(
        "datadog",
        &FakeRelease::new("datadog", "3.40.0"),
        datadog_key(),
    );
    let app = spawn(
        dir.path(),
        &registry,
        "",
        "[policy]\nallow = [\"integrations/*\"]\ndeny = []\n",
    )
    .await;
    let (status, body) = app.get_json("/v1/providers/datadog/datadog/versions").await;
    assert_eq!(status, 403, "{body}");
    assert!(error_text(&body).contains("allow"), "{body}");
    assert_eq!(
        registry.requests_for("datadog", "datadog"),
        Vec::<String>::new()
    );
    assert_serves(&app, "integrations", &github, publisher_key()).await;
    app.stop().await;
}

#[actix_web::test]
async fn the_token_goes_to_the_registry_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let github = registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
        publisher_key(),
    );
    let token = "s3cr3t-registry-token";
    registry.require_token(token);
    let token_file = dir.path().join("registry.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    // Without the token the registry answers 401, and tfmirror passes on a failure.
    let plain = spawn(&dir.path().join("plain"), &registry, "", "").await;
    let (status, body) = plain
        .get_json("/v1/providers/integrations/github/versions")
        .await;
    assert!(status >= 400, "{status}: {body}");
    plain.stop().await;

    let app = spawn(
        dir.path(),
        &registry,
        &format!("token_file = {token_file:?}"),
        "",
    )
    .await;
    assert_versions(&app, "integrations", "github", &["6.2.0"]).await;
    assert_serves(&app, "integrations", &github, publisher_key()).await;
    assert_mirror_serves(&app, &github, true).await;

    let bearer = format!("Bearer {token}");
    let seen = registry.registry.authorizations();
    let with_token: Vec<_> = seen
        .iter()
        .filter(|(_, auth)| auth.as_deref() == Some(bearer.as_str()))
        .collect();
    assert!(
        with_token
            .iter()
            .any(|(path, _)| path.ends_with("/download/linux/amd64")),
        "{seen:?}"
    );
    for host in [&registry.assets, &registry.objects] {
        let seen = host.authorizations();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|(_, auth)| auth.is_none()),
            "a file host saw an Authorization header: {seen:?}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_egress_proxy_carries_registry_and_asset_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = Tinyproxy::start(&dir.path().join("proxy"));
    let registry = FakeRegistry::start().await;
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
    let app = spawn(
        dir.path(),
        &registry,
        &format!("proxy = \"{}\"", proxy.url()),
        "",
    )
    .await;
    assert_serves(&app, "integrations", &github, publisher_key()).await;

    let requests = proxy.requests();
    for (host, path) in [
        (
            registry.registry.addr,
            github.download_path("linux", "amd64"),
        ),
        (
            registry.assets.addr,
            format!("{}/{}", github.asset_dir, github.published.sums_name),
        ),
        (registry.assets.addr, github.asset_path("linux", "amd64")),
        (registry.objects.addr, github.object_path("linux", "amd64")),
    ] {
        let url = format!("http://{host}{path}");
        assert!(
            requests.iter().any(|r| r.contains(&url)),
            "{url} did not cross the proxy: {requests:#?}"
        );
    }

    // With the proxy gone, nothing new can be fetched: it really carried the traffic.
    proxy.stop();
    let (status, body) = fetch_archive(&app, &datadog.download_path("linux", "amd64")).await;
    assert!(status >= 500, "{status}: {body}");
    assert_eq!(registry.archive_downloads(&datadog, "linux", "amd64"), 0);
    assert_nothing_cached_for(&app.cache_dir, "datadog");
    app.stop().await;
}

fn assert_nothing_cached_for(cache: &Path, provider_type: &str) {
    let files = files_under(cache);
    assert!(
        !files
            .iter()
            .any(|f| f.contains(provider_type) && f.ends_with(".zip")),
        "{files:?}"
    );
}

/// The fake registry itself, walked the way a client does (no tfmirror): discovery, versions,
/// a download document, its redirect to the download host, SHA256SUMS naming the archive, and
/// the token it demands; the egress proxy forwarding plain-http requests.
#[actix_web::test]
async fn the_fake_registry_is_consistent_and_github_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeRegistry::start().await;
    let github = registry.publish(
        "integrations",
        &FakeRelease::new("github", "6.2.0"),
        publisher_key(),
    );
    let proxy = Tinyproxy::start(&dir.path().join("proxy"));
    // tinyproxy may close a kept-alive connection after an answer: one connection a request.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.url()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let get_json = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200, "{url}");
            assert_eq!(response.headers()["content-type"], "application/json");
            serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap()
        }
    };
    let discovery = get_json(format!("{}/.well-known/terraform.json", registry.url())).await;
    let api = url::Url::parse(&registry.url())
        .unwrap()
        .join("/.well-known/terraform.json")
        .unwrap()
        .join(discovery["providers.v1"].as_str().unwrap())
        .unwrap();
    let versions = get_json(api.join("integrations/github/versions").unwrap().into()).await;
    assert_eq!(versions["versions"][0]["version"], "6.2.0");
    let doc = get_json(
        api.join("integrations/github/6.2.0/download/linux/amd64")
            .unwrap()
            .into(),
    )
    .await;
    assert_eq!(doc["shasum"], github.shasum("linux", "amd64").as_str());
    assert_eq!(
        doc["signing_keys"]["gpg_public_keys"][0]["ascii_armor"],
        publisher_key().armored_public.as_str()
    );
    let download_url = doc["download_url"].as_str().unwrap();
    assert!(download_url.starts_with(&registry.assets.url()));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hop = no_redirects.get(download_url).send().await.unwrap();
    assert_eq!(hop.status().as_u16(), 302);
    assert!(hop.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&registry.objects.url()));
    let zip = client
        .get(download_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&zip[..], github.zip("linux", "amd64"));
    let sums = client
        .get(doc["shasums_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sums.contains(&format!(
        "{}  {}",
        github.shasum("linux", "amd64"),
        doc["filename"].as_str().unwrap()
    )));
    assert_eq!(registry.archive_downloads(&github, "linux", "amd64"), 1);
    assert!(proxy
        .requests()
        .iter()
        .any(|r| r.contains(&format!("http://{}", registry.objects.addr))));

    registry.require_token("t0ken");
    let versions_url = api.join("integrations/github/versions").unwrap();
    let denied = client.get(versions_url.clone()).send().await.unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let allowed = client
        .get(versions_url)
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(
        registry
            .registry
            .authorizations()
            .last()
            .unwrap()
            .1
            .as_deref(),
        Some("Bearer t0ken")
    );
}
