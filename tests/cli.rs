//! The `tfmirror` binary: start-up with the shipped config, environment overrides, and config
//! errors that name the key and the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

fn tfmirror(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tfmirror"));
    command
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("TFMIRROR_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn serve_starts_with_the_shipped_config_and_says_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tfmirror.toml"),
        dir.path().join("config/tfmirror.toml"),
    )
    .unwrap();
    let mut child = tfmirror(dir.path())
        .arg("serve")
        .env("TFMIRROR_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Read the log until the server says where it listens; no sleeping. A thread keeps
    // draining stderr afterwards so the server never writes into a closed pipe.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut address = None;
    while let Ok(line) = lines_rx.recv_timeout(std::time::Duration::from_secs(60)) {
        seen.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            address = Some(rest.trim().to_owned());
            break;
        }
    }
    let log = seen.join("\n");
    let address = address.unwrap_or_else(|| panic!("no 'listening on' line:\n{log}"));
    assert!(address.starts_with("https://127.0.0.1:"), "{address}");
    assert!(
        !address.ends_with(":8443"),
        "TFMIRROR_SERVER__LISTEN was ignored"
    );
    assert!(
        log.contains("config/tfmirror.toml"),
        "config file not shown:\n{log}"
    );
    assert!(log.contains("cache=cache"), "cache dir not shown:\n{log}");
    assert!(
        log.contains("namespace=\"myproviders\""),
        "namespaces not shown:\n{log}"
    );
    assert!(dir.path().join("certs/localhost.pem").exists());
    assert!(dir.path().join("certs/localhost-key.pem").exists());

    // The generated certificate serves TLS for the discovery document.
    let cert = std::fs::read(dir.path().join("certs/localhost.pem")).unwrap();
    let client = client_trusting_only(&cert);
    let body = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!(
            "{}/.well-known/terraform.json",
            address.replace("127.0.0.1", "localhost")
        );
        client.get(url).send().await.unwrap().text().await.unwrap()
    });
    assert_eq!(body, r#"{"providers.v1":"/v1/providers/"}"#);

    child.kill().unwrap();
    let _ = child.wait();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains("SSL_CERT_FILE="),
        "no trust hint printed:\n{stdout}"
    );
}

/// A client trusting only `cert_pem`, so the test proves the certificate's SANs.
fn client_trusting_only(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem).unwrap()])
        .http1_only()
        .build()
        .unwrap()
}

#[test]
fn unknown_config_keys_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 80\n",
    )
    .unwrap();
    let out = tfmirror(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_port"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn bad_environment_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = tfmirror(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .env("TFMIRROR_CACHE__METADATA_TTL", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cache.metadata_ttl"), "{stderr}");
    assert!(stderr.contains("TFMIRROR_"), "{stderr}");
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tfmirror(dir.path())
        .args(["serve", "--config", "nope.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[auth]\ntokens = [\"very-secret-token\"]\nurl_secret = \"also-secret\"\n\n[[prefetch]]\nprovider = \"hashicorp/aws\"\nversions = \"~> 5.0\"\nplatforms = [\"linux_amd64\"]\n",
    )
    .unwrap();
    let out = tfmirror(dir.path())
        .args(["config", "check", "--config"])
        .arg(&config)
        .env("TFMIRROR_CACHE__METADATA_TTL", "5m")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("# valid; effective configuration from"),
        "{stdout}"
    );
    assert!(
        stdout.contains("metadata_ttl = \"5m\""),
        "environment not merged:\n{stdout}"
    );
    assert!(
        stdout.contains("[upstreams.hashicorp]"),
        "defaults missing:\n{stdout}"
    );
    assert!(stdout.contains("versions = \"~> 5.0\""), "{stdout}");
    assert!(!stdout.contains("very-secret-token") && !stdout.contains("also-secret"));
    assert!(stdout.contains("<redacted>"), "{stdout}");

    std::fs::write(
        &config,
        "[[prefetch]]\nprovider = \"hashicorp/aws\"\nversions = \"~> five\"\nplatforms = [\"linux_amd64\"]\n",
    )
    .unwrap();
    let out = tfmirror(dir.path())
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prefetch[0].versions"), "{stderr}");
    assert!(stderr.contains("site.toml"), "{stderr}");
}

#[test]
fn durations_and_sizes_that_would_overflow_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("huge.toml");
    for (toml, key) in [
        (
            "[cache]\nmetadata_ttl = \"1000000y\"\n",
            "cache.metadata_ttl: must be at most 10y",
        ),
        (
            "[cache]\nmax_archive_bytes = 9223372036854775807\n",
            "cache.max_archive_bytes: must be at most 1 PiB",
        ),
    ] {
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\n{toml}"),
        )
        .unwrap();
        for command in [&["config", "check"][..], &["serve"][..]] {
            let out = tfmirror(dir.path())
                .args(command)
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command:?}: {stderr}");
            assert!(stderr.contains(key), "{command:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{command:?}: {stderr}");
        }
    }
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        vec!["serve"],
        vec!["prefetch"],
        vec!["export"],
        vec!["import"],
        vec!["gc"],
        vec!["verify"],
        vec!["config", "check"],
    ] {
        let out = tfmirror(dir.path())
            .args(&command)
            .arg("--help")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command:?}");
        assert!(stdout.contains("Usage: tfmirror"), "{command:?}: {stdout}");
        assert!(stdout.contains("--config"), "{command:?}: {stdout}");
    }
}
