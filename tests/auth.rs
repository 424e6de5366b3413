//! `[auth]`: bearer tokens on the JSON endpoints (and `/lock/`), signed time-limited file
//! URLs, and the real Terraform CLI with (and without) a `credentials` block, over both
//! protocols.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;

use common::{
    publisher_key,
    terraform::{main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, Published, TestApp,
};

const TOKEN: &str = "tfm_0123456789abcdef";

async fn start(dir: &Path, tls: bool) -> (FakeUpstream, TestApp, Published) {
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let tokens_file = dir.join("tokens");
    std::fs::write(&tokens_file, "# CI agents\nfrom-file-token\n").unwrap();
    let tls_dir = dir.join("certs");
    let app = TestApp::spawn(MirrorOptions {
        extra: format!(
            "[auth]\ntokens = [\"{TOKEN}\"]\ntokens_file = {tokens_file:?}\nurl_ttl = \"5m\"\n"
        ),
        tls_dir: tls.then_some(tls_dir.as_path()),
        ..MirrorOptions::new(upstream.url(), &dir.join("cache"))
    })
    .await;
    (upstream, app, published)
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{path}", app.base)
    };
    let mut request = app.client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[actix_web::test]
async fn json_endpoints_need_a_token_and_files_a_signed_url() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app, published) = start(dir.path(), false).await;
    let zip = published.zip_name("linux", "amd64");

    // Open: discovery and health.
    assert_eq!(
        get(&app, "/.well-known/terraform.json", None)
            .await
            .status(),
        200
    );
    assert_eq!(get(&app, "/healthz", None).await.status(), 200);

    // JSON endpoints: 401 with a JSON error and a challenge, unless a known token is sent.
    for path in [
        "/v1/providers/myproviders/local/versions",
        "/v1/providers/myproviders/local/2.1.0/download/linux/amd64",
        "/mirror/registry.terraform.io/hashicorp/local/index.json",
        "/mirror/registry.terraform.io/hashicorp/local/2.1.0.json",
        "/lock/registry.terraform.io/hashicorp/local/2.1.0?platform=linux_amd64",
    ] {
        for token in [None, Some("wrong")] {
            let response = get(&app, path, token).await;
            assert_eq!(response.status(), 401, "{path} {token:?}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"tfmirror\""
            );
            let body = json(response).await;
            assert!(
                body["errors"][0].as_str().unwrap().contains("token"),
                "{body}"
            );
        }
        assert_eq!(get(&app, path, Some(TOKEN)).await.status(), 200, "{path}");
        assert_eq!(get(&app, path, Some("from-file-token")).await.status(), 200);
    }

    // The download document's URLs are signed; they work without a token.
    let doc = json(
        get(
            &app,
            "/v1/providers/myproviders/local/2.1.0/download/linux/amd64",
            Some(TOKEN),
        )
        .await,
    )
    .await;
    for key in ["download_url", "shasums_url", "shasums_signature_url"] {
        let url = doc[key].as_str().unwrap();
        assert!(
            url.contains("?expires=") && url.contains("&signature="),
            "{url}"
        );
        assert_eq!(get(&app, url, None).await.status(), 200, "{key}");
    }
    let signed = doc["download_url"].as_str().unwrap();
    let body = get(&app, signed, None).await.bytes().await.unwrap();
    assert_eq!(&body[..], &published.zips[&zip][..]);

    // Unsigned, re-pointed, tampered or expired file URLs are refused.
    let bare = format!("/v1/providers/myproviders/local/2.1.0/files/{zip}");
    let query = signed.split_once('?').unwrap().1;
    let other = published.zip_name("darwin", "arm64");
    let expires: u64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    for refused in [
        bare.clone(),
        format!("/v1/providers/myproviders/local/2.1.0/files/{other}?{query}"),
        format!("{bare}?{}", query.replacen("signature=", "signature=00", 1)),
        format!(
            "{bare}?{}",
            query.replacen(
                &format!("expires={expires}"),
                &format!("expires={}", expires + 1),
                1
            )
        ),
        format!("{bare}?expires=1&signature=00"),
    ] {
        let response = get(&app, &refused, None).await;
        assert_eq!(response.status(), 401, "{refused}");
    }
    // A token also opens a file (curl users, scripts).
    assert_eq!(get(&app, &bare, Some(TOKEN)).await.status(), 200);

    // Network mirror: archive URLs in <version>.json are signed relative URLs.
    let version_doc = "/mirror/registry.terraform.io/hashicorp/local/2.1.0.json";
    let doc = json(get(&app, version_doc, Some(TOKEN)).await).await;
    let relative = doc["archives"]["linux_amd64"]["url"].as_str().unwrap();
    assert!(
        relative.starts_with(&format!("{zip}?expires=")),
        "{relative}"
    );
    let archive = format!("/mirror/registry.terraform.io/hashicorp/local/{relative}");
    assert_eq!(get(&app, &archive, None).await.status(), 200);
    let unsigned = format!("/mirror/registry.terraform.io/hashicorp/local/{zip}");
    assert_eq!(get(&app, &unsigned, None).await.status(), 401);
}

#[test]
fn auth_without_tokens_is_a_config_error_naming_the_key() {
    let error = tfmirror::config::Config::from_toml("[auth]\nurl_ttl = \"1h\"\n").unwrap_err();
    assert!(error.to_string().contains("auth.tokens"), "{error}");
}

#[actix_web::test]
async fn terraform_with_a_credentials_block_installs_and_without_one_is_refused() {
    python();
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app, _) = start(dir.path(), true).await;
    let port = app.server.addr.port();
    let cert = dir.path().join("certs/localhost.pem");
    let credentials = format!("credentials \"localhost:{port}\" {{\n  token = \"{TOKEN}\"\n}}\n");
    let network_mirror = format!(
        "provider_installation {{\n  network_mirror {{\n    url = \"https://localhost:{port}/mirror/\"\n  }}\n}}\n"
    );
    let registry_tf = main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0");
    let mirror_tf = main_tf("hashicorp/local", "2.1.0");

    let cases = [
        ("registry", registry_tf.as_str(), String::new()),
        ("mirror", mirror_tf.as_str(), network_mirror.clone()),
    ];
    for (name, main, cli_config) in &cases {
        // With the token: installs, and the lock file is complete.
        let mut ws = TfWorkspace::new(&dir.path().join(format!("{name}-token")), main);
        ws.ca_file = Some(cert.clone());
        ws.set_cli_config(&format!("{credentials}{cli_config}"));
        let out = ws.run(&["init", "-no-color", "-input=false"]);
        assert!(
            out.success,
            "{name}: init with a token failed:\n{}",
            out.combined()
        );
        assert!(out.stdout.contains("v2.1.0"), "{}", out.stdout);
        assert!(ws.lock_file().contains("h1:"), "{}", ws.lock_file());

        // Without: refused, nothing installed.
        let mut ws = TfWorkspace::new(&dir.path().join(format!("{name}-none")), main);
        ws.ca_file = Some(cert.clone());
        ws.set_cli_config(cli_config);
        let out = ws.run(&["init", "-no-color", "-input=false"]);
        assert!(!out.success, "{name}: init without a token succeeded");
        let said = out
            .combined()
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            said.contains("authentication credentials"),
            "{name}: {}",
            out.combined()
        );
        assert!(ws.lock_file().is_empty());
    }
}

#[actix_web::test]
async fn the_status_page_and_metrics_need_a_token_unless_metrics_are_opened() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, app, _) = start(dir.path(), false).await;
    for path in ["/", "/metrics"] {
        for token in [None, Some("wrong")] {
            let response = get(&app, path, token).await;
            assert_eq!(response.status(), 401, "{path} {token:?}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"tfmirror\""
            );
        }
        assert_eq!(get(&app, path, Some(TOKEN)).await.status(), 200, "{path}");
    }
    // Probes stay open.
    assert_eq!(get(&app, "/healthz", None).await.status(), 200);
    assert_eq!(get(&app, "/readyz", None).await.status(), 200);

    // `open_metrics` opens /metrics alone.
    let upstream = FakeUpstream::start().await;
    let open = TestApp::spawn(MirrorOptions {
        extra: format!("[auth]\ntokens = [\"{TOKEN}\"]\nopen_metrics = true\n"),
        ..MirrorOptions::new(upstream.url(), &dir.path().join("cache-open"))
    })
    .await;
    let response = get(&open, "/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("tfmirror_http_requests_total"));
    assert_eq!(get(&open, "/", None).await.status(), 401);
    assert_eq!(get(&open, "/", Some(TOKEN)).await.status(), 200);
}
