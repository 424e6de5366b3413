//! `[tls]` with `self_signed`: a generated key is private from its first byte, and an existing
//! key is never overwritten when only its certificate is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config_toml, FakeUpstream, MirrorOptions};
use tfmirror::config::Config;

fn config(dir: &std::path::Path, upstream: &FakeUpstream) -> Config {
    let tls_dir = dir.join("certs");
    Config::from_toml(&config_toml(&MirrorOptions {
        tls_dir: Some(&tls_dir),
        ..MirrorOptions::new(upstream.url(), &dir.join("cache"))
    }))
    .unwrap()
}

#[actix_web::test]
async fn an_existing_key_is_never_overwritten_when_its_certificate_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let key = certs.join("localhost-key.pem");
    let original =
        b"-----BEGIN PRIVATE KEY-----\nthe operator's real key\n-----END PRIVATE KEY-----\n";
    std::fs::write(&key, original).unwrap();

    let error = match tfmirror::server::start(&config(dir.path(), &upstream)).await {
        Ok(_) => panic!("started with half a key pair"),
        Err(error) => error.to_string(),
    };
    assert_eq!(std::fs::read(&key).unwrap(), original);
    assert!(!certs.join("localhost.pem").exists());
    assert!(error.contains("localhost-key.pem"), "{error}");
    assert!(error.contains("localhost.pem"), "{error}");
}

#[cfg(unix)]
#[actix_web::test]
async fn a_generated_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let server = tfmirror::server::start(&config(dir.path(), &upstream))
        .await
        .unwrap();
    let key = dir.path().join("certs/localhost-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(dir.path().join("certs/localhost.pem").exists());
    server.stop(false).await;
}
