//! `cache.complete_hashes`: once any platform's archive of a version is fetched, the other
//! platforms' archives are fetched and hashed in the background, so `<version>.json` (and
//! `GET /lock/…`) carry every platform's `h1:` without a client waiting for it.
//!
//! Each release is completed once at a time; archives go through the serving path (the same
//! single-flight, verified download a client would get) at most
//! `HASH_COMPLETION_CONCURRENCY` at a time across the mirror, so completion never takes more
//! than a small share of the upstream's slots. Progress is on the status page and in
//! `/metrics` (`tfmirror_hash_completions_pending`, `tfmirror_hash_completions_total`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use super::{Mirror, MirrorError};
use crate::{metrics::metrics, protocol::ReleaseKey, store::Item};

/// Archives fetched and hashed at once for `complete_hashes`, across the mirror.
pub(super) const HASH_COMPLETION_CONCURRENCY: usize = 2;

/// How far a release's background completion has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    /// Archives of other platforms without an `h1:` when it started.
    pub total: usize,
    pub done: usize,
    pub failed: usize,
}

pub(super) struct HashCompletion {
    enabled: bool,
    permits: Arc<tokio::sync::Semaphore>,
    /// Releases being completed now.
    running: Mutex<BTreeMap<ReleaseKey, Completion>>,
}

impl HashCompletion {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            permits: Arc::new(tokio::sync::Semaphore::new(HASH_COMPLETION_CONCURRENCY)),
            running: Mutex::default(),
        }
    }

    fn update(&self, key: &ReleaseKey, change: impl FnOnce(&mut Completion)) {
        if let Some(progress) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(key)
        {
            change(progress);
        }
    }
}

impl Mirror {
    /// With `complete_hashes`, starts fetching and hashing the archives of `key`'s other
    /// platforms, unless that is already under way.
    pub(super) fn complete_hashes_in_background(&self, key: &ReleaseKey) {
        let completion = &self.inner.completion;
        if !completion.enabled {
            return;
        }
        {
            let mut running = completion
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if running.contains_key(key) {
                return;
            }
            running.insert(key.clone(), Completion::default());
        }
        let mirror = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            if let Err(e) = mirror.complete_hashes(&key).await {
                tracing::warn!(release = %key, error = %e, "cannot complete the release's hashes");
            }
            mirror
                .inner
                .completion
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

    async fn complete_hashes(&self, key: &ReleaseKey) -> Result<(), MirrorError> {
        let release = self.release(key).await?;
        let store = &self.inner.store;
        let mut missing = Vec::new();
        for build in &release.builds {
            let file = key.file(build.filename.clone());
            let Some(digest) = release.digest_of(&build.filename) else {
                continue;
            };
            if !store.exists(Item::H1(&file)).await {
                missing.push((file, digest));
            }
        }
        let completion = &self.inner.completion;
        completion.update(key, |c| c.total = missing.len());
        let pending = &metrics().hash_completions_pending;
        pending.add(missing.len() as i64);
        let tasks = missing.into_iter().map(|(file, digest)| async move {
            let outcome = async {
                let _permit = completion
                    .permits
                    .acquire()
                    .await
                    .map_err(MirrorError::internal)?;
                self.ensure_file(&file).await?;
                self.archive_h1(&file, digest).await?.ok_or_else(|| {
                    MirrorError::internal(format!("no h1: computed for {file}"))
                })
            }
            .await;
            pending.dec();
            match outcome {
                Ok(_) => {
                    metrics().hash_completions.with_label_values(&["ok"]).inc();
                    completion.update(key, |c| c.done += 1);
                }
                Err(e) => {
                    metrics()
                        .hash_completions
                        .with_label_values(&["failed"])
                        .inc();
                    completion.update(key, |c| c.failed += 1);
                    tracing::warn!(file = %file, error = %e, "cannot fetch and hash an archive for complete_hashes");
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        Ok(())
    }

    /// Releases whose hashes are being completed now (status page).
    pub fn hash_completions(&self) -> Vec<(ReleaseKey, Completion)> {
        self.inner
            .completion
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, c)| (k.clone(), *c))
            .collect()
    }
}
