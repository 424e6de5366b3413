//! The release quarantine (`policy.min_release_age`): a version is hidden from version lists
//! and `index.json`, and refused (`403`, saying when it becomes available), until that long
//! after this mirror first saw it upstream — not upstream's own dates, which a compromised
//! publisher controls. `policy.allow_young` lists exceptions.
//!
//! First-seen times live in the store (`Item::FirstSeen`), created once and never rewritten,
//! so they survive restarts and replicas on one cache agree on them. They are recorded the
//! first time a version list naming the version is served, or the version is asked for.
//! Nothing is recorded while the quarantine is off.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use moka::future::Cache;

use super::{unshare, JsonBody, Mirror, MirrorError, VersionLists};
use crate::{
    config::{Config, YoungException},
    protocol::{
        network_mirror::{EmptyObject, MirrorIndex},
        registry::VersionList,
        ProviderKey, ReleaseKey, Version,
    },
    store::Item,
};

/// First-seen times kept in memory (they never change, so they are never stale).
const MAX_FIRST_SEEN_IN_MEMORY: u64 = 200_000;
/// First-seen records read or written at once while a list is filtered.
const FIRST_SEEN_WRITES_AT_ONCE: usize = 16;

/// The quarantine's settings and what it knows.
pub(super) struct Quarantine {
    min_age: Option<Duration>,
    exceptions: Vec<YoungException>,
    first_seen: Cache<ReleaseKey, SystemTime>,
    /// Per provider: the served lists with young versions left out, for the list they were
    /// made from, until the next young version comes of age.
    filtered: Mutex<HashMap<ProviderKey, Filtered>>,
}

#[derive(Clone)]
struct Filtered {
    source: Bytes,
    lists: VersionLists,
    valid_until: Option<SystemTime>,
}

/// A version held back, for the status page.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub release: ReleaseKey,
    pub first_seen: SystemTime,
    pub until: SystemTime,
}

impl Quarantine {
    pub(super) fn from_config(config: &Config) -> Self {
        Self {
            min_age: config.policy.min_release_age.filter(|age| !age.is_zero()),
            exceptions: config.policy.allow_young.clone(),
            first_seen: Cache::builder()
                .max_capacity(MAX_FIRST_SEEN_IN_MEMORY)
                .build(),
            filtered: Mutex::default(),
        }
    }

    fn excepted(&self, key: &ReleaseKey) -> bool {
        let provider = &key.provider;
        self.exceptions.iter().any(|e| {
            e.provider == provider.provider
                && e.version == key.version
                && match &provider.namespace {
                    Some(ns) => ns == &e.namespace,
                    // A releases site has no namespaces: its name, or HashiCorp's namespace.
                    None => {
                        e.namespace.as_str() == provider.upstream.as_str()
                            || e.namespace.as_str() == "hashicorp"
                    }
                }
        })
    }
}

impl Mirror {
    /// When this mirror first saw a version: recorded now if it never did.
    pub async fn first_seen(&self, key: &ReleaseKey) -> Result<SystemTime, MirrorError> {
        let quarantine = &self.inner.quarantine;
        if let Some(seen) = quarantine.first_seen.get(key).await {
            return Ok(seen);
        }
        quarantine
            .first_seen
            .try_get_with(key.clone(), async {
                let store = &self.inner.store;
                if let Some(seen) = self.stored_first_seen(key).await? {
                    return Ok(seen);
                }
                let text = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                // Whole seconds, as stored, so every server on the cache agrees to the second.
                let now = humantime::parse_rfc3339(&text).map_err(MirrorError::internal)?;
                if store.create(Item::FirstSeen(key), text.as_bytes()).await? {
                    tracing::info!(release = %key, "first seen; quarantined for policy.min_release_age");
                    return Ok(now);
                }
                // Another process recorded it a moment ago: its time is the one.
                self.stored_first_seen(key)
                    .await?
                    .ok_or_else(|| MirrorError::internal(format!("first-seen record of {key} vanished")))
            })
            .await
            .map_err(unshare)
    }

    async fn stored_first_seen(&self, key: &ReleaseKey) -> Result<Option<SystemTime>, MirrorError> {
        let Some(stored) = self.inner.store.read(Item::FirstSeen(key)).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&stored.bytes);
        match humantime::parse_rfc3339(text.trim()) {
            Ok(seen) => Ok(Some(seen)),
            Err(e) => Err(MirrorError::internal(format!(
                "unreadable first-seen record of {key}: {e}"
            ))),
        }
    }

    /// Until when a version is held back; `None` when it may be served (quarantine off, an
    /// `allow_young` exception, or old enough).
    pub async fn quarantined_until(
        &self,
        key: &ReleaseKey,
    ) -> Result<Option<SystemTime>, MirrorError> {
        let quarantine = &self.inner.quarantine;
        let Some(min_age) = quarantine.min_age else {
            return Ok(None);
        };
        if quarantine.excepted(key) {
            return Ok(None);
        }
        let until = self.first_seen(key).await? + min_age;
        Ok((SystemTime::now() < until).then_some(until))
    }

    /// Refuses a version still in quarantine.
    pub(super) async fn check_release_age(&self, key: &ReleaseKey) -> Result<(), MirrorError> {
        match self.quarantined_until(key).await? {
            Some(until) => Err(MirrorError::Quarantined {
                release: Box::new(key.clone()),
                until,
            }),
            None => Ok(()),
        }
    }

    /// The served lists without the versions in quarantine.
    pub(super) async fn hide_young(
        &self,
        key: &ProviderKey,
        lists: VersionLists,
    ) -> Result<VersionLists, MirrorError> {
        if self.inner.quarantine.min_age.is_none() {
            return Ok(lists);
        }
        // Boxed, so every list request's future does not carry the filtering's state.
        Box::pin(self.filter_young(key, lists)).await
    }

    async fn filter_young(
        &self,
        key: &ProviderKey,
        lists: VersionLists,
    ) -> Result<VersionLists, MirrorError> {
        let quarantine = &self.inner.quarantine;
        let memo = quarantine
            .filtered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned();
        if let Some(memo) = memo {
            let same_list = memo.source.as_ptr() == lists.registry.as_ptr()
                && memo.source.len() == lists.registry.len();
            if same_list && memo.valid_until.is_none_or(|t| SystemTime::now() < t) {
                return Ok(memo.lists);
            }
        }
        let mut list: VersionList =
            serde_json::from_slice(&lists.registry).map_err(MirrorError::internal)?;
        // A provider's first list records a sighting per version: written side by side.
        let untils: Vec<Option<SystemTime>> =
            futures_util::stream::iter(list.versions.iter().map(|entry| async move {
                match Version::try_from(entry.version.as_str()) {
                    Ok(version) => self.quarantined_until(&key.release(version)).await,
                    Err(_) => Ok(None),
                }
            }))
            .buffered(FIRST_SEEN_WRITES_AT_ONCE)
            .try_collect()
            .await?;
        let mut valid_until: Option<SystemTime> = None;
        let mut kept = Vec::with_capacity(list.versions.len());
        for (entry, until) in list.versions.into_iter().zip(untils) {
            match until {
                Some(until) => valid_until = Some(valid_until.map_or(until, |t| t.min(until))),
                None => kept.push(entry),
            }
        }
        let filtered = if valid_until.is_none() {
            lists.clone()
        } else {
            list.versions = kept;
            let index = MirrorIndex {
                versions: list
                    .versions
                    .iter()
                    .map(|entry| (entry.version.clone(), EmptyObject {}))
                    .collect(),
            };
            VersionLists {
                registry: JsonBody::new(Bytes::from(
                    serde_json::to_vec(&list).map_err(MirrorError::internal)?,
                )),
                mirror_index: JsonBody::new(Bytes::from(
                    serde_json::to_vec(&index).map_err(MirrorError::internal)?,
                )),
            }
        };
        quarantine
            .filtered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                key.clone(),
                Filtered {
                    source: lists.registry.plain,
                    lists: filtered.clone(),
                    valid_until,
                },
            );
        Ok(filtered)
    }

    /// Whether `policy.min_release_age` is set.
    pub fn quarantine_enabled(&self) -> bool {
        self.inner.quarantine.min_age.is_some()
    }

    /// Versions held back now, among the first sightings in memory (status page; the status
    /// snapshot loads the stored ones), soonest first.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        let quarantine = &self.inner.quarantine;
        let Some(min_age) = quarantine.min_age else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let mut held: Vec<Quarantined> = quarantine
            .first_seen
            .iter()
            .filter(|(key, _)| !quarantine.excepted(key))
            .map(|(key, first_seen)| Quarantined {
                release: (*key).clone(),
                first_seen,
                until: first_seen + min_age,
            })
            .filter(|q| now < q.until)
            .collect();
        held.sort_by(|a, b| (a.until, &a.release).cmp(&(b.until, &b.release)));
        held
    }
}
