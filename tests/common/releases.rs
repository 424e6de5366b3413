//! Provider releases built on the fly: zips, a manifest, `SHA256SUMS` and its signature, and
//! the release and product indexes, published on the fake upstream; `Published` keeps what was
//! published for assertions. `FakeRelease::build` makes the files without publishing them, for
//! other layouts (the fake registry's GitHub-style assets).

use std::{collections::BTreeMap, io::Write};

use sha2::{Digest, Sha256};

use super::{keys::TestKey, upstream::FakeUpstream};

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
    /// The binary detached signature of `sums`.
    pub sig: Vec<u8>,
    /// Every file of the release by name: zips, manifest, SHA256SUMS and its signature.
    pub files: BTreeMap<String, Vec<u8>>,
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

    /// Builds the zips, manifest and SHA256SUMS signed by `key`, publishing nothing.
    pub fn build(&self, key: &TestKey) -> Published {
        let product = self.product();
        let v = &self.version;
        let mut zips = BTreeMap::new();
        for (os, arch) in &self.platforms {
            let name = format!("{product}_{v}_{os}_{arch}.zip");
            let mut binary =
                format!("#!/bin/sh\n# fake {product} {v} for {os}_{arch}\n").into_bytes();
            binary.extend((0..self.payload_bytes).map(|_| rand::random::<u8>()));
            zips.insert(name, make_zip(&format!("{product}_v{v}_x5"), &binary));
        }
        let mut files = zips.clone();
        if let Some(protocols) = &self.protocols {
            let manifest =
                serde_json::json!({"version": 1, "metadata": {"protocol_versions": protocols}});
            files.insert(
                format!("{product}_{v}_manifest.json"),
                serde_json::to_vec(&manifest).unwrap(),
            );
        }
        let mut sums = String::new();
        for (name, bytes) in &files {
            sums.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))));
        }
        let sums_name = format!("{product}_{v}_SHA256SUMS");
        let sig_name = format!("{sums_name}.{}.sig", key.short_id());
        let sig = key.sign(sums.as_bytes());
        files.insert(sums_name.clone(), sums.clone().into_bytes());
        files.insert(sig_name.clone(), sig.clone());
        Published {
            zips,
            sums: sums.into_bytes(),
            sums_name,
            sig_name,
            sig,
            files,
            dir: format!("/{product}/{v}"),
        }
    }

    /// `local` 2.1.0 for `linux_amd64` only, with `payload` random bytes in its binary,
    /// published (signed by the trusted publisher) with its archive sent `chunk` bytes every
    /// `pause`: a slow upstream download. The archive's bytes and its path on the upstream.
    pub fn publish_paced(
        upstream: &FakeUpstream,
        payload: usize,
        chunk: usize,
        pause: std::time::Duration,
    ) -> (Vec<u8>, String) {
        let release = FakeRelease {
            payload_bytes: payload,
            platforms: vec![("linux", "amd64")],
            ..FakeRelease::new("local", "2.1.0")
        };
        let published = release.publish(upstream, super::keys::publisher_key());
        let (name, zip) = published.zips.into_iter().next().expect("one platform");
        let path = format!("{}/{name}", published.dir);
        upstream.throttle(&path, chunk, pause);
        (zip, path)
    }

    /// Builds the zips, SHA256SUMS (signed by `key`), manifest and indexes, and serves them.
    pub fn publish(&self, upstream: &FakeUpstream, key: &TestKey) -> Published {
        let product = self.product();
        let v = &self.version;
        let published = self.build(key);
        let dir = &published.dir;
        for (name, bytes) in &published.files {
            upstream.put(&format!("{dir}/{name}"), bytes.clone());
        }
        let sums_name = &published.sums_name;
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
            "shasums_signatures": [published.sig_name, format!("{sums_name}.sig")],
            "builds": builds,
        });
        upstream.put(
            &format!("{dir}/index.json"),
            serde_json::to_vec(&index).unwrap(),
        );
        upstream.register_version(&product, v, index);
        published
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
