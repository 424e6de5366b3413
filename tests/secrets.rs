//! Credentials in upstream and proxy URLs are never shown: not by `config check`, not in the
//! start-up log of the real binary, not on the status page, `/readyz`, `/metrics` or in an
//! error body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config_toml, serving::Serving, FakeUpstream, MirrorOptions};

const SECRET: &str = "secret";

#[actix_web::test]
async fn credentials_in_upstream_and_proxy_urls_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let url = upstream
        .url()
        .replacen("http://", &format!("http://user:{SECRET}@"), 1);
    let toml = config_toml(&MirrorOptions {
        upstream_extra: &format!(
            "proxy = \"http://proxyuser:{SECRET}@127.0.0.1:9/\"\nretries = 0\n"
        ),
        ..MirrorOptions::new(url, &dir.path().join("cache"))
    });
    let config = dir.path().join("tfmirror.toml");
    std::fs::write(&config, &toml).unwrap();

    let check = common::serving::tfmirror(&["config", "check"], &config).await;
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");

    let server = Serving::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_tfmirror")),
        &config,
        "info",
    );
    let log = server.startup_log.join("\n");
    assert!(log.contains("serving namespace"), "{log}");
    assert!(!log.contains(SECRET), "{log}");

    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", server.base)).send();
    // Through the unreachable proxy: an upstream error, recorded for /readyz and the page.
    let failed = get("/v1/providers/myproviders/local/versions")
        .await
        .unwrap();
    assert!(failed.status().is_server_error(), "{}", failed.status());
    let body = failed.text().await.unwrap();
    assert!(!body.contains(SECRET), "{body}");
    for path in ["/", "/readyz", "/metrics"] {
        let body = get(path).await.unwrap().text().await.unwrap();
        assert!(!body.contains(SECRET), "{path}: {body}");
    }
    let readyz = get("/readyz").await.unwrap().text().await.unwrap();
    assert!(
        readyz.contains("error") || readyz.contains("fail"),
        "{readyz}"
    );
}
