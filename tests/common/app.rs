//! tfmirror under test, in-process: its generated config, started on `127.0.0.1:0` in front
//! of a fake upstream, and a client with request helpers.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tfmirror::{config::Config, server::RunningServer};

use super::{keys::publisher_key, upstream::FakeUpstream};

/// Options for starting tfmirror.
pub struct MirrorOptions<'a> {
    pub upstream_url: String,
    pub cache_dir: &'a Path,
    /// Extra TOML appended to the generated config.
    pub extra: String,
    /// `cache.metadata_ttl`, humantime.
    pub metadata_ttl: &'a str,
    pub tls_dir: Option<&'a Path>,
    /// Extra keys for `[upstreams.hashicorp]`.
    pub upstream_extra: &'a str,
    /// Extra keys for `[cache]`.
    pub cache_extra: &'a str,
}

impl<'a> MirrorOptions<'a> {
    /// Plain HTTP, a 10 minute `metadata_ttl`, nothing extra.
    pub fn new(upstream_url: String, cache_dir: &'a Path) -> Self {
        Self {
            upstream_url,
            cache_dir,
            extra: String::new(),
            metadata_ttl: "10m",
            tls_dir: None,
            upstream_extra: "",
            cache_extra: "",
        }
    }
}

pub struct TestApp {
    pub server: RunningServer,
    pub base: String,
    pub client: reqwest::Client,
    pub cache_dir: PathBuf,
}

/// A fresh fake upstream and a plain-HTTP tfmirror in front of it, caching under `dir/cache`.
pub async fn start_with_fake_upstream(dir: &Path) -> (FakeUpstream, TestApp) {
    let upstream = FakeUpstream::start().await;
    let cache = dir.join("cache");
    let app = TestApp::spawn(MirrorOptions {
        upstream_url: upstream.url(),
        cache_dir: &cache,
        extra: String::new(),
        metadata_ttl: "10m",
        tls_dir: None,
        upstream_extra: "",
        cache_extra: "",
    })
    .await;
    (upstream, app)
}

/// Writes the publisher's public key to `dir` and returns its path.
pub fn write_publisher_key(dir: &Path) -> PathBuf {
    let path = dir.join("publisher.asc");
    std::fs::write(&path, &publisher_key().armored_public).unwrap();
    path
}

/// The config TOML `TestApp::spawn` runs with (also written to files for the binary).
pub fn config_toml(options: &MirrorOptions<'_>) -> String {
    let key_path = write_publisher_key(options.cache_dir.parent().unwrap());
    let tls = match options.tls_dir {
        Some(dir) => format!(
            "[tls]\ncert = {:?}\nkey = {:?}\nself_signed = true\n",
            dir.join("localhost.pem"),
            dir.join("localhost-key.pem")
        ),
        None => String::new(),
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{tls}
[cache]
dir = {cache:?}
metadata_ttl = "{ttl}"
{cache_extra}

[upstreams.hashicorp]
url = "{url}"
signing_keys = [{key:?}]
connect_timeout = "2s"
retry_initial_delay = "20ms"
{upstream_extra}
[namespaces.myproviders]
upstream = "hashicorp"

[namespaces.hashicorp]
upstream = "hashicorp"

[mirrors."registry.terraform.io/hashicorp"]
upstream = "hashicorp"
{extra}
"#,
        cache = options.cache_dir,
        url = options.upstream_url,
        key = key_path,
        extra = options.extra,
        ttl = options.metadata_ttl,
        // Tests may set their own read_timeout; 5 s otherwise.
        upstream_extra = if options.upstream_extra.contains("read_timeout") {
            options.upstream_extra.to_owned()
        } else {
            format!("read_timeout = \"5s\"\n{}", options.upstream_extra)
        },
        cache_extra = options.cache_extra,
    )
}

/// A generated config listening on `port` of 127.0.0.1.
pub fn on_port(toml: &str, port: u16) -> String {
    toml.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
}

impl TestApp {
    pub async fn spawn(options: MirrorOptions<'_>) -> Self {
        let toml = config_toml(&options);
        Self::spawn_toml(&toml, options.cache_dir).await
    }

    /// Listening on `port` instead of any free one: for a replica whose `advertise_url` has
    /// to name its port before it starts.
    pub async fn spawn_on_port(options: MirrorOptions<'_>, port: u16) -> Self {
        let toml = on_port(&config_toml(&options), port);
        Self::spawn_toml(&toml, options.cache_dir).await
    }

    async fn spawn_toml(toml: &str, cache_dir: &Path) -> Self {
        let config = Config::from_toml(toml).unwrap();
        let server = tfmirror::server::start(&config).await.unwrap();
        let base = server.base_url();
        Self {
            server,
            base,
            client: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap(),
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// A mirror `<version>.json` once it lists an `h1:` for `platform`. tfmirror computes an
    /// archive's `h1:` in the background just after the download, so a client asking straight
    /// after the archive may see only the signed `zh:` for a moment.
    pub async fn version_doc_with_h1(&self, path: &str, platform: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, doc) = self.get_json(path).await;
            assert_eq!(status, 200, "{doc}");
            let has_h1 = doc["archives"][platform]["hashes"]
                .as_array()
                .is_some_and(|hashes| {
                    hashes
                        .iter()
                        .any(|h| h.as_str().is_some_and(|h| h.starts_with("h1:")))
                });
            if has_h1 {
                return doc;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no h1: for {platform} in {doc}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: content type {content_type:?}"
        );
        (
            status,
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
        )
    }

    pub async fn get_bytes(&self, path: &str) -> (u16, Bytes) {
        let response = self.get(path).await;
        (response.status().as_u16(), response.bytes().await.unwrap())
    }

    /// Sends a request line byte for byte (no client-side path normalisation) and returns the
    /// status code.
    pub async fn raw_status(&self, raw_path: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.server.addr)
            .await
            .unwrap();
        let request =
            format!("GET {raw_path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// The messages of a JSON error body (`{"errors":[...]}`), joined.
pub fn error_text(body: &serde_json::Value) -> String {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in {body}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}
