//! Shared test harness: a fake releases.hashicorp.com, throwaway OpenPGP keys, provider
//! releases built on the fly, and tfmirror started on an ephemeral port.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod perf;
pub mod serving;
pub mod soak;
pub mod terraform;

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use pgp::{
    composed::{
        ArmorOptions, DetachedSignature, EncryptionCaps, KeyType, SecretKeyParamsBuilder,
        SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
    },
    crypto::hash::HashAlgorithm,
    ser::Serialize,
    types::{KeyDetails, Password},
};
use sha2::{Digest, Sha256};
use tfmirror::{config::Config, server::RunningServer};

// ---------------------------------------------------------------------------------------------
// Keys

/// A throwaway RSA signing key: certify-only primary plus a signing subkey, like HashiCorp's.
pub struct TestKey {
    secret: SignedSecretKey,
    pub armored_public: String,
    pub key_id: String,
}

impl TestKey {
    pub fn generate(name: &str) -> Self {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Rsa(2048))
            .can_certify(true)
            .can_sign(false)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(format!("{name} <{name}@example.invalid>"))
            .subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Rsa(2048))
                    .can_sign(true)
                    .can_encrypt(EncryptionCaps::None)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let secret = params.generate(rand::thread_rng()).unwrap();
        let public = SignedPublicKey::from(secret.clone());
        Self {
            armored_public: public.to_armored_string(ArmorOptions::default()).unwrap(),
            key_id: hex::encode_upper(public.primary_key.legacy_key_id()),
            secret,
        }
    }

    /// A binary detached signature, as releases.hashicorp.com serves them.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.secret.secret_subkeys[0].key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .unwrap()
        .to_bytes()
        .unwrap()
    }

    pub fn short_id(&self) -> &str {
        &self.key_id[8..]
    }
}

/// The publisher's key, trusted through `signing_keys` (generated once per test binary).
pub fn publisher_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("publisher"))
}

/// A key nobody trusts.
pub fn attacker_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("attacker"))
}

// ---------------------------------------------------------------------------------------------
// Fake upstream

/// Something the fake upstream does instead of (or before) answering normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, and `Retry-After: <secs>` when given.
    Status(u16, Option<u64>),
    /// Wait this long, then answer normally.
    Delay(std::time::Duration),
    /// Answer 200 with bytes that were never published.
    Garbage,
}

#[derive(Default)]
struct UpstreamState {
    files: HashMap<String, Bytes>,
    hits: HashMap<String, usize>,
    /// product -> version -> per-version index JSON
    products: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Faults for the next requests of a path, used up one per request.
    next_faults: HashMap<String, std::collections::VecDeque<Fault>>,
    /// A fault for every request of a path, until cleared.
    standing_faults: HashMap<String, Fault>,
    /// Paths whose body is sent `(chunk bytes, pause between chunks)` at a time.
    throttled: HashMap<String, (usize, std::time::Duration)>,
    in_flight: usize,
    max_in_flight: usize,
    /// Share of all requests answered 503, at random.
    failure_rate: f64,
}

/// A releases.hashicorp.com-shaped server on 127.0.0.1 that counts every request and can be
/// told to misbehave.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<UpstreamState>>,
    handle: ServerHandle,
}

/// Counts a request as in flight until the response body is done or dropped.
struct InFlight(Arc<Mutex<UpstreamState>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

async fn fake_upstream_answer(state: Arc<Mutex<UpstreamState>>, path: String) -> HttpResponse {
    let (fault, body, throttle) = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let random_failure = (s.failure_rate > 0.0 && rand::random::<f64>() < s.failure_rate)
            .then_some(Fault::Status(503, None));
        let fault = s
            .next_faults
            .get_mut(&path)
            .and_then(|q| q.pop_front())
            .or_else(|| s.standing_faults.get(&path).cloned())
            .or(random_failure);
        (
            fault,
            s.files.get(&path).cloned(),
            s.throttled.get(&path).copied(),
        )
    };
    let guard = InFlight(state);
    match fault {
        Some(Fault::Status(code, retry_after)) => {
            let mut response =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap());
            if let Some(secs) = retry_after {
                response.insert_header(("Retry-After", secs.to_string()));
            }
            return response.body("injected fault");
        }
        Some(Fault::Delay(pause)) => tokio::time::sleep(pause).await,
        Some(Fault::Garbage) => return HttpResponse::Ok().body("<html>garbage</html>"),
        None => {}
    }
    let Some(body) = body else {
        return HttpResponse::NotFound().body("not found");
    };
    match throttle {
        None => HttpResponse::Ok().body(body),
        Some((chunk, pause)) => {
            let len = body.len() as u64;
            let chunks: Vec<Bytes> = body.chunks(chunk).map(Bytes::copy_from_slice).collect();
            let stream = futures_util::stream::unfold(
                (chunks.into_iter(), guard),
                move |(mut rest, guard)| async move {
                    let next = rest.next()?;
                    tokio::time::sleep(pause).await;
                    Some((Ok::<_, std::io::Error>(next), (rest, guard)))
                },
            );
            HttpResponse::Ok().no_chunking(len).streaming(stream)
        }
    }
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            let state = shared.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                fake_upstream_answer(state.clone(), req.path().to_owned())
            }))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            addr,
            state,
            handle,
        }
    }

    /// The next requests of `path` meet these faults, one each, then it answers normally.
    pub fn fail_next(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .lock()
            .unwrap()
            .next_faults
            .entry(path.to_owned())
            .or_default()
            .extend(faults);
    }

    /// Every request of `path` meets `fault` until `heal`.
    pub fn fail_always(&self, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .standing_faults
            .insert(path.to_owned(), fault);
    }

    pub fn heal(&self, path: &str) {
        let mut s = self.state.lock().unwrap();
        s.standing_faults.remove(path);
        s.next_faults.remove(path);
    }

    /// Sends `path`'s body `chunk` bytes at a time with `pause` before each chunk.
    pub fn throttle(&self, path: &str, chunk: usize, pause: std::time::Duration) {
        self.state
            .lock()
            .unwrap()
            .throttled
            .insert(path.to_owned(), (chunk, pause));
    }

    /// Answers this share of all requests (0.0–1.0) with a 503, at random.
    pub fn set_failure_rate(&self, rate: f64) {
        self.state.lock().unwrap().failure_rate = rate;
    }

    /// The most requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put(&self, path: &str, body: impl Into<Bytes>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), body.into());
    }

    pub fn get(&self, path: &str) -> Option<Bytes> {
        self.state.lock().unwrap().files.get(path).cloned()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }

    /// Stops answering: connections are refused from now on.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn register_version(&self, product: &str, version: &str, index: serde_json::Value) {
        let mut state = self.state.lock().unwrap();
        state
            .products
            .entry(product.to_owned())
            .or_default()
            .insert(version.to_owned(), index);
        let versions = state.products[product].clone();
        let product_index = serde_json::json!({ "name": product, "versions": versions });
        state.files.insert(
            format!("/{product}/index.json"),
            Bytes::from(serde_json::to_vec(&product_index).unwrap()),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Releases

/// A provider release to publish on the fake upstream.
pub struct FakeRelease {
    pub provider: String,
    pub version: String,
    pub platforms: Vec<(&'static str, &'static str)>,
    pub protocols: Option<Vec<&'static str>>,
    /// Random (incompressible) bytes added to each provider binary.
    pub payload_bytes: usize,
}

/// What was published, for assertions.
pub struct Published {
    pub zips: BTreeMap<String, Vec<u8>>,
    pub sums: Vec<u8>,
    pub sums_name: String,
    pub sig_name: String,
    pub dir: String,
}

impl Published {
    pub fn zip_name(&self, os: &str, arch: &str) -> String {
        self.zips
            .keys()
            .find(|n| n.ends_with(&format!("_{os}_{arch}.zip")))
            .unwrap()
            .clone()
    }

    /// Every `zh:` the signed SHA256SUMS gives, as Terraform records them.
    pub fn zh_hashes(&self) -> Vec<String> {
        String::from_utf8(self.sums.clone())
            .unwrap()
            .lines()
            .map(|l| format!("zh:{}", l.split_whitespace().next().unwrap()))
            .collect()
    }
}

impl FakeRelease {
    pub fn new(provider: &str, version: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            version: version.to_owned(),
            platforms: vec![
                ("linux", "amd64"),
                ("darwin", "arm64"),
                ("windows", "amd64"),
            ],
            protocols: Some(vec!["5.0"]),
            payload_bytes: 0,
        }
    }

    pub fn product(&self) -> String {
        format!("terraform-provider-{}", self.provider)
    }

    /// Builds the zips, SHA256SUMS (signed by `key`), manifest and indexes, and serves them.
    pub fn publish(&self, upstream: &FakeUpstream, key: &TestKey) -> Published {
        let product = self.product();
        let v = &self.version;
        let dir = format!("/{product}/{v}");
        let mut zips = BTreeMap::new();
        for (os, arch) in &self.platforms {
            let name = format!("{product}_{v}_{os}_{arch}.zip");
            let mut binary =
                format!("#!/bin/sh\n# fake {product} {v} for {os}_{arch}\n").into_bytes();
            binary.extend((0..self.payload_bytes).map(|_| rand::random::<u8>()));
            zips.insert(name, make_zip(&format!("{product}_v{v}_x5"), &binary));
        }
        let mut sums = String::new();
        let mut listed: Vec<(String, Vec<u8>)> =
            zips.iter().map(|(n, z)| (n.clone(), z.clone())).collect();
        if let Some(protocols) = &self.protocols {
            let manifest =
                serde_json::json!({"version": 1, "metadata": {"protocol_versions": protocols}});
            let name = format!("{product}_{v}_manifest.json");
            let bytes = serde_json::to_vec(&manifest).unwrap();
            upstream.put(&format!("{dir}/{name}"), bytes.clone());
            listed.push((name, bytes));
        }
        listed.sort();
        for (name, bytes) in &listed {
            sums.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))));
        }
        let sums_name = format!("{product}_{v}_SHA256SUMS");
        let sig_name = format!("{sums_name}.{}.sig", key.short_id());
        upstream.put(&format!("{dir}/{sums_name}"), sums.clone());
        upstream.put(&format!("{dir}/{sig_name}"), key.sign(sums.as_bytes()));
        for (name, zip) in &zips {
            upstream.put(&format!("{dir}/{name}"), zip.clone());
        }
        let builds: Vec<_> = self
            .platforms
            .iter()
            .map(|(os, arch)| {
                let filename = format!("{product}_{v}_{os}_{arch}.zip");
                serde_json::json!({
                    "name": product, "version": v, "os": os, "arch": arch,
                    "filename": filename,
                    "url": format!("{}{dir}/{filename}", upstream.url()),
                })
            })
            .collect();
        let index = serde_json::json!({
            "name": product,
            "version": v,
            "shasums": sums_name,
            "shasums_signature": format!("{sums_name}.sig"),
            "shasums_signatures": [sig_name, format!("{sums_name}.sig")],
            "builds": builds,
        });
        upstream.put(
            &format!("{dir}/index.json"),
            serde_json::to_vec(&index).unwrap(),
        );
        upstream.register_version(&product, v, index);
        Published {
            zips,
            sums: sums.into_bytes(),
            sums_name,
            sig_name,
            dir,
        }
    }
}

/// A zip holding one executable file.
pub fn make_zip(name: &str, content: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o755);
        zip.start_file(name, options).unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
    }
    out.into_inner()
}

// ---------------------------------------------------------------------------------------------
// tfmirror under test

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

impl TestApp {
    pub async fn spawn(options: MirrorOptions<'_>) -> Self {
        let toml = config_toml(&options);
        let config = Config::from_toml(&toml).unwrap();
        let server = tfmirror::server::start(&config).await.unwrap();
        let base = server.base_url();
        Self {
            server,
            base,
            client: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap(),
            cache_dir: options.cache_dir.to_path_buf(),
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

/// Every file under `dir`, relative, sorted.
/// Temp files under the cache: a download or an `h1:` still being written.
pub fn temp_files(cache: &std::path::Path) -> Vec<String> {
    files_under(cache)
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect()
}

pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
