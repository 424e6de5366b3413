//! Signing-key continuity: the keys a provider's cached versions were signed with.
//!
//! A new version signed by another key than the earlier ones is how a compromised registry
//! account or a hijacked namespace shows itself. It is logged, counted in
//! `tfmirror_signing_key_changes_total` and listed on the status page; an upstream with
//! `pin_keys = true` refuses such a version until the new key is configured in its
//! `signing_keys`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Mirror, MirrorError, Release, Source, VerifyFailure};
use crate::{metrics::metrics, protocol::ReleaseKey, store::Item, verify::TrustedKey};

/// Keys seen for one provider, oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeenKeys {
    keys: Vec<SeenKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeenKey {
    key_id: String,
    /// The first version it signed.
    first_version: String,
}

/// A version signed by another key than its provider's earlier versions.
#[derive(Debug, Clone)]
pub struct KeyChange {
    pub release: ReleaseKey,
    pub new_key: String,
    pub earlier_keys: Vec<String>,
    pub refused: bool,
    pub at: SystemTime,
}

/// Most key changes remembered for the status page.
const MAX_KEY_CHANGES_SHOWN: usize = 100;

impl Mirror {
    /// Records the key that signed a release about to be cached, and refuses it when it
    /// changed and the upstream pins keys.
    pub(super) async fn check_key_continuity(
        &self,
        source: &Source,
        key: &ReleaseKey,
        signed_by: &TrustedKey,
    ) -> Result<(), MirrorError> {
        let store = &self.inner.store;
        let item = Item::SigningKeys(&key.provider);
        let mut seen: SeenKeys = match store.read(item).await? {
            Some(doc) => serde_json::from_slice(&doc.bytes).unwrap_or_default(),
            None => SeenKeys::default(),
        };
        if seen.keys.iter().any(|k| k.key_id == signed_by.key_id) {
            return Ok(());
        }
        if !seen.keys.is_empty() {
            let configured = source
                .keyring
                .keys()
                .iter()
                .any(|k| k.key_id == signed_by.key_id);
            let refused = source.pin_keys && !configured;
            let change = KeyChange {
                release: key.clone(),
                new_key: signed_by.key_id.clone(),
                earlier_keys: seen.keys.iter().map(|k| k.key_id.clone()).collect(),
                refused,
                at: SystemTime::now(),
            };
            metrics()
                .signing_key_changes
                .with_label_values(&[
                    key.provider.upstream.as_str(),
                    if refused { "refused" } else { "accepted" },
                ])
                .inc();
            tracing::warn!(release = %key, new_key = %change.new_key, earlier = ?change.earlier_keys, refused, "signed by another key than the provider's earlier versions");
            {
                let mut changes = self
                    .inner
                    .key_changes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if changes.len() >= MAX_KEY_CHANGES_SHOWN {
                    changes.remove(0);
                }
                changes.push(change.clone());
            }
            if refused {
                return Err(MirrorError::verification(
                    key,
                    "signing key",
                    VerifyFailure::KeyChanged {
                        new_key: change.new_key,
                        earlier: change.earlier_keys.join(", "),
                    },
                ));
            }
        }
        seen.keys.push(SeenKey {
            key_id: signed_by.key_id.clone(),
            first_version: key.version.to_string(),
        });
        let body = serde_json::to_vec_pretty(&seen).map_err(MirrorError::internal)?;
        store.write(item, &body).await?;
        Ok(())
    }

    /// Checks a verified release from a bundle against the keys of its provider's earlier
    /// versions, as a fetch does: an import must not bring in what `pin_keys` refuses.
    pub async fn check_imported_key(&self, release: &Release) -> Result<(), MirrorError> {
        let Some(signature) = &release.signature else {
            return Ok(());
        };
        let source = self.source(&release.key.provider.upstream)?;
        self.check_key_continuity(source, &release.key, &signature.signed_by)
            .await
    }

    /// Key changes noticed since start-up, newest last (for the status page).
    pub fn key_changes(&self) -> Vec<KeyChange> {
        self.inner
            .key_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
