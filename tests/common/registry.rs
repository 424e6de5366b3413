//! A fake Provider Registry Protocol registry on three fake hosts, shaped like a public
//! registry whose providers live on GitHub: the registry itself (service discovery with a
//! relative `providers.v1`, version lists, download documents), an asset host whose release
//! URLs answer archives with a redirect, and a download host that has the archive bytes.
//! SHA256SUMS and its signature are served by the asset host directly.
//!
//! Releases are published per namespace with a throwaway key whose armored public key the
//! download documents carry, as a registry does. Helpers publish the hostile variants a mirror
//! must refuse: a tampered archive, a signature by another key than the one published, a
//! release re-labelled as another version or another provider, a file URL on a host outside
//! `download_hosts`, and a registry that wants a bearer token.

use std::{collections::BTreeMap, sync::Mutex};

use sha2::{Digest, Sha256};

use super::{
    keys::TestKey,
    releases::{FakeRelease, Published},
    upstream::FakeUpstream,
};

/// Where a release's files are put and what its download documents point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileHosting {
    /// GitHub-style: release URLs on the asset host; archives redirect to the download host.
    Assets,
    /// Everything on a host outside `download_hosts`, linked directly.
    Outside,
    /// Release URLs on the asset host, but archives redirect to a host outside `download_hosts`.
    RedirectOutside,
}

/// How to publish a release in the fake registry.
pub struct Publication<'a> {
    /// The namespace and type the registry lists the release under.
    pub namespace: &'a str,
    pub provider_type: &'a str,
    /// The version the registry lists the release under.
    pub version: &'a str,
    /// The release actually served (its own name and version are inside its files).
    pub release: &'a FakeRelease,
    /// Signs the SHA256SUMS.
    pub signer: &'a TestKey,
    /// The key the download documents publish.
    pub published_key: &'a TestKey,
    pub hosting: FileHosting,
}

/// One release as the fake registry published it.
pub struct RegistryRelease {
    pub namespace: String,
    pub provider_type: String,
    pub version: String,
    pub published: Published,
    /// The asset-host directory of the release's files.
    pub asset_dir: String,
}

impl RegistryRelease {
    /// The archive name for a platform (of the release actually served).
    pub fn zip_name(&self, os: &str, arch: &str) -> String {
        self.published.zip_name(os, arch)
    }

    pub fn zip(&self, os: &str, arch: &str) -> &[u8] {
        &self.published.zips[&self.zip_name(os, arch)]
    }

    /// The hex SHA-256 of a platform's archive, as `shasum` declares it.
    pub fn shasum(&self, os: &str, arch: &str) -> String {
        hex::encode(Sha256::digest(self.zip(os, arch)))
    }

    /// The download-host path that has a platform's archive bytes.
    pub fn object_path(&self, os: &str, arch: &str) -> String {
        object_path(
            &self.namespace,
            &self.provider_type,
            &self.version,
            &self.zip_name(os, arch),
        )
    }

    /// The asset-host path of a platform's archive (it redirects).
    pub fn asset_path(&self, os: &str, arch: &str) -> String {
        format!("{}/{}", self.asset_dir, self.zip_name(os, arch))
    }

    /// The registry path of a platform's download document.
    pub fn download_path(&self, os: &str, arch: &str) -> String {
        format!(
            "/v1/providers/{}/{}/{}/download/{os}/{arch}",
            self.namespace, self.provider_type, self.version
        )
    }
}

fn object_path(namespace: &str, provider_type: &str, version: &str, file: &str) -> String {
    format!("/release-assets/{namespace}/{provider_type}/{version}/{file}")
}

/// The fake registry and its two file hosts, plus a host outside `download_hosts`.
pub struct FakeRegistry {
    /// The registry: discovery, version lists, download documents.
    pub registry: FakeUpstream,
    /// github.com's role: release URLs; archives redirect to `objects`.
    pub assets: FakeUpstream,
    /// The download host's role: archive bytes.
    pub objects: FakeUpstream,
    /// A host tfmirror is not allowed to fetch from (it has the bytes all the same).
    pub outside: FakeUpstream,
    /// (namespace, type) -> version -> versions-list entry.
    versions: Mutex<BTreeMap<(String, String), BTreeMap<String, serde_json::Value>>>,
}

impl FakeRegistry {
    pub async fn start() -> Self {
        let registry = FakeUpstream::start().await;
        registry.put(
            "/.well-known/terraform.json",
            serde_json::to_vec(&serde_json::json!({
                "modules.v1": "/v1/modules/",
                "providers.v1": "/v1/providers/",
            }))
            .unwrap(),
        );
        registry.set_content_type("/.well-known/terraform.json", "application/json");
        Self {
            registry,
            assets: FakeUpstream::start().await,
            objects: FakeUpstream::start().await,
            outside: FakeUpstream::start().await,
            versions: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn url(&self) -> String {
        self.registry.url()
    }

    /// The `download_hosts` TOML array: the asset and download hosts, with their ports.
    pub fn download_hosts_toml(&self) -> String {
        format!("[\"{}\", \"{}\"]", self.assets.addr, self.objects.addr)
    }

    /// `[upstreams.registry]` for this registry, with `more` keys appended to the table.
    pub fn upstream_toml(&self, more: &str) -> String {
        format!(
            "\n[upstreams.registry]\nkind = \"registry\"\nurl = \"{}\"\ndownload_hosts = {}\nconnect_timeout = \"2s\"\nread_timeout = \"5s\"\nretry_initial_delay = \"20ms\"\n{more}\n",
            self.url(),
            self.download_hosts_toml()
        )
    }

    /// The common config: this registry as upstream `registry`, every other namespace and the
    /// network mirror's `registry.terraform.io/*` through it, the `gh` alias for
    /// `integrations`.
    pub fn mirror_toml(&self, upstream_more: &str) -> String {
        format!(
            "{}\n[namespaces.\"*\"]\nupstream = \"registry\"\n\n[namespaces.gh]\nupstream = \"registry\"\nupstream_namespace = \"integrations\"\n\n[mirrors.\"registry.terraform.io/*\"]\nupstream = \"registry\"\n",
            self.upstream_toml(upstream_more)
        )
    }

    /// Publishes `release` as `namespace/<its provider>` at its own version, signed by `key`,
    /// with `key` in the download documents, files GitHub-style.
    pub fn publish(
        &self,
        namespace: &str,
        release: &FakeRelease,
        key: &TestKey,
    ) -> RegistryRelease {
        self.publish_as(Publication {
            namespace,
            provider_type: &release.provider,
            version: &release.version,
            release,
            signer: key,
            published_key: key,
            hosting: FileHosting::Assets,
        })
    }

    /// Publishes a release exactly as told: under any name and version, signed by any key,
    /// publishing any key, with files anywhere. The documents stay self-consistent (the
    /// `filename` and `shasum` are those of the files served), as an attacker would make them.
    pub fn publish_as(&self, p: Publication<'_>) -> RegistryRelease {
        let published = p.release.build(p.signer);
        let (ns, ty, v) = (p.namespace, p.provider_type, p.version);
        let asset_dir = format!("/{ns}/terraform-provider-{ty}/releases/download/v{v}");
        let file_host = match p.hosting {
            FileHosting::Outside => &self.outside,
            FileHosting::Assets | FileHosting::RedirectOutside => &self.assets,
        };
        let object_host = match p.hosting {
            FileHosting::Assets => &self.objects,
            FileHosting::Outside | FileHosting::RedirectOutside => &self.outside,
        };
        for (name, bytes) in &published.files {
            let asset = format!("{asset_dir}/{name}");
            if published.zips.contains_key(name) && p.hosting != FileHosting::Outside {
                let object = object_path(ns, ty, v, name);
                object_host.put(&object, bytes.clone());
                self.assets.redirect(
                    &asset,
                    &format!("{}{object}?X-Amz-Signature=0123abcd", object_host.url()),
                );
            } else {
                file_host.put(&asset, bytes.clone());
            }
        }
        let file_url = |name: &str| format!("{}{asset_dir}/{name}", file_host.url());
        let key = serde_json::json!({
            "key_id": p.published_key.key_id,
            "ascii_armor": p.published_key.armored_public,
            "trust_signature": "",
            "source": "Test publisher",
            "source_url": "https://publisher.example.invalid/keys",
        });
        let protocols = p.release.protocols.clone().unwrap_or_default();
        let mut platforms = Vec::new();
        for (os, arch) in &p.release.platforms {
            let filename = published.zip_name(os, arch);
            let doc = serde_json::json!({
                "protocols": protocols,
                "os": os,
                "arch": arch,
                "filename": filename,
                "download_url": file_url(&filename),
                "shasums_url": file_url(&published.sums_name),
                "shasums_signature_url": file_url(&published.sig_name),
                "shasum": hex::encode(Sha256::digest(&published.zips[&filename])),
                "signing_keys": { "gpg_public_keys": [key.clone()] },
            });
            let path = format!("/v1/providers/{ns}/{ty}/{v}/download/{os}/{arch}");
            self.registry.put(&path, serde_json::to_vec(&doc).unwrap());
            self.registry.set_content_type(&path, "application/json");
            platforms.push(serde_json::json!({"os": os, "arch": arch}));
        }
        let entry = serde_json::json!({
            "version": v,
            "protocols": protocols,
            "platforms": platforms,
        });
        let list = {
            let mut versions = self.versions.lock().unwrap();
            let listed = versions.entry((ns.to_owned(), ty.to_owned())).or_default();
            listed.insert(v.to_owned(), entry);
            serde_json::json!({
                "id": format!("{ns}/{ty}"),
                "versions": listed.values().collect::<Vec<_>>(),
                "warnings": null,
            })
        };
        let path = format!("/v1/providers/{ns}/{ty}/versions");
        self.registry.put(&path, serde_json::to_vec(&list).unwrap());
        self.registry.set_content_type(&path, "application/json");
        RegistryRelease {
            namespace: ns.to_owned(),
            provider_type: ty.to_owned(),
            version: v.to_owned(),
            published,
            asset_dir,
        }
    }

    /// Replaces a platform's archive bytes on the download host with tampered ones (the
    /// documents and the signed SHA256SUMS stay as published).
    pub fn tamper_archive(&self, release: &RegistryRelease, os: &str, arch: &str) {
        let mut evil = release.zip(os, arch).to_vec();
        let last = evil.len() - 1;
        evil[last] ^= 0xff;
        self.objects.put(&release.object_path(os, arch), evil);
    }

    /// Every request of the registry from now on needs `Authorization: Bearer <token>`.
    pub fn require_token(&self, token: &str) {
        self.registry.require_token(token);
    }

    /// How many times a platform's archive bytes were downloaded from the download host.
    pub fn archive_downloads(&self, release: &RegistryRelease, os: &str, arch: &str) -> usize {
        self.objects.hits(&release.object_path(os, arch))
    }

    /// Requests the registry got that name `namespace/type`.
    pub fn requests_for(&self, namespace: &str, provider_type: &str) -> Vec<String> {
        let needle = format!("/{namespace}/{provider_type}/");
        let mut paths = self.registry.requested_paths();
        paths.extend(self.assets.requested_paths());
        paths.extend(self.objects.requested_paths());
        paths.retain(|p| {
            p.contains(&needle)
                || p.contains(&format!("/{namespace}/terraform-provider-{provider_type}/"))
        });
        paths
    }

    /// Requests to all four hosts.
    pub fn total_hits(&self) -> usize {
        self.registry.total_hits()
            + self.assets.total_hits()
            + self.objects.total_hits()
            + self.outside.total_hits()
    }

    /// Stops every host: connections are refused from now on.
    pub async fn stop(&self) {
        self.registry.stop().await;
        self.assets.stop().await;
        self.objects.stop().await;
        self.outside.stop().await;
    }
}
