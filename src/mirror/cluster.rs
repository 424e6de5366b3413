//! One upstream download across replicas on one bucket (`[cluster] advertise_url`).
//!
//! Before a replica downloads an archive from upstream it creates a lease for it in the
//! bucket, only if there is none (`Item::Lease`, a create-if-absent PUT), naming itself (its
//! `advertise_url`) and an expiry. It renews the lease every third of `cluster.lease_ttl`
//! while the download runs and removes it when the download ends, so a holder killed outright
//! stops renewing and its lease simply expires. A replica that finds a live lease of another
//! follows that holder's download over HTTP (`upstream::peer`), authenticated by a secret the
//! replicas share, created in the bucket the first time one needs it (bucket access is the
//! trust boundary already); the follower hashes what it receives and checks it itself.
//!
//! A lease that has expired, or that an earlier run of this very replica left, is removed and
//! taken again. Two replicas doing that at the same moment may both win (the removal and the
//! creation are two requests): the cost is one more upstream download, never a wrong byte.
//! For the same reason a holder renews only a lease that is still its own and still live:
//! renewing is a read and then a write, and a write after another replica's takeover would
//! put the old holder's name back. Expiry is judged by each replica's own clock; keep them in
//! sync (NTP).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    protocol::FileKey,
    store::{Item, Store, StoreError},
    upstream::peer::PeerClient,
};

/// This replica's part in the cluster.
#[derive(Debug)]
pub(super) struct Cluster {
    advertise: Url,
    ttl: Duration,
    /// Tells this run's leases from those an earlier run of this replica left behind.
    incarnation: String,
    secret: tokio::sync::OnceCell<String>,
    pub(super) peers: PeerClient,
}

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    /// The holder's `advertise_url`.
    holder: Url,
    incarnation: String,
    /// Milliseconds since the Unix epoch.
    expires_unix_ms: u64,
}

/// What this replica is to do about an archive nobody here has.
pub(super) enum Role {
    /// Download it from upstream, holding the lease meanwhile.
    Holder(Box<Lease>),
    /// Follow the live download of the replica at this URL.
    Follower(Url),
    /// Download it without a lease (the bucket refused one).
    Alone,
}

impl LeaseRecord {
    /// The stored lease, if it is this one (renewed or not): the same holder, the same run.
    fn ours_in(&self, stored: &[u8]) -> Option<LeaseRecord> {
        serde_json::from_slice::<LeaseRecord>(stored)
            .ok()
            .filter(|found| found.holder == self.holder && found.incarnation == self.incarnation)
    }

    /// Whether a stored lease is this one and has not expired yet, so that no other replica
    /// can be taking it over: only such a lease is renewed.
    fn is_still_held(&self, stored: &[u8], now_unix_ms: u64) -> bool {
        self.ours_in(stored)
            .is_some_and(|found| found.expires_unix_ms > now_unix_ms)
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Cluster {
    pub(super) fn new(advertise: Url, ttl: Duration, peers: PeerClient) -> Self {
        Self {
            advertise,
            ttl,
            incarnation: format!("{:016x}", rand::random::<u64>()),
            secret: tokio::sync::OnceCell::new(),
            peers,
        }
    }

    pub(super) fn advertise_url(&self) -> &Url {
        &self.advertise
    }

    fn record(&self) -> LeaseRecord {
        LeaseRecord {
            holder: self.advertise.clone(),
            incarnation: self.incarnation.clone(),
            expires_unix_ms: unix_ms(SystemTime::now() + self.ttl),
        }
    }

    /// Takes the archive's lease, or finds who holds it.
    pub(super) async fn take(&self, store: &Store, file: &FileKey) -> Role {
        // A stale lease is removed and creation tried again; twice is enough unless
        // another replica keeps racing this one, and then downloading alone is fine.
        for _ in 0..3 {
            let record = self.record();
            let bytes = match serde_json::to_vec(&record) {
                Ok(bytes) => bytes,
                Err(_) => return Role::Alone,
            };
            match store.create(Item::Lease(file), &bytes).await {
                Ok(true) => {
                    return Role::Holder(Box::new(Lease::start(
                        store.clone(),
                        file.clone(),
                        record,
                        self.ttl,
                    )))
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%file, error = %e, "cannot take a download lease in the bucket; downloading alone");
                    return Role::Alone;
                }
            }
            let found = match store.read(Item::Lease(file)).await {
                Ok(Some(document)) => document,
                // Removed since: try again.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%file, error = %e, "cannot read a download lease in the bucket; downloading alone");
                    return Role::Alone;
                }
            };
            match serde_json::from_slice::<LeaseRecord>(&found.bytes) {
                Ok(lease)
                    if lease.holder != self.advertise
                        && lease.expires_unix_ms > unix_ms(SystemTime::now()) =>
                {
                    return Role::Follower(lease.holder);
                }
                Ok(lease) => {
                    tracing::info!(%file, holder = %lease.holder, "removing a stale download lease");
                }
                Err(_) => tracing::warn!(%file, "removing an unreadable download lease"),
            }
            if let Err(e) = store.remove(Item::Lease(file)).await {
                tracing::warn!(%file, error = %e, "cannot remove a stale download lease; downloading alone");
                return Role::Alone;
            }
        }
        Role::Alone
    }

    /// The secret replicas on this bucket share: read from the bucket, or created there by
    /// the first replica that needs it. Never logged.
    pub(super) async fn secret(&self, store: &Store) -> Result<&str, StoreError> {
        self.secret
            .get_or_try_init(|| async {
                for _ in 0..2 {
                    if let Some(found) = store.read(Item::ClusterSecret).await? {
                        let text = String::from_utf8_lossy(&found.bytes).trim().to_owned();
                        if !text.is_empty() {
                            return Ok(text);
                        }
                    }
                    let fresh = hex::encode(rand::random::<[u8; 32]>());
                    if store.create(Item::ClusterSecret, fresh.as_bytes()).await? {
                        tracing::info!("created the replicas' shared secret in the bucket");
                        return Ok(fresh);
                    }
                }
                Err(StoreError::Bucket {
                    location: "cluster secret".to_owned(),
                    reason: "the secret is empty in the bucket".to_owned(),
                })
            })
            .await
            .map(String::as_str)
    }

    /// Whether another replica presented the shared secret.
    pub(super) async fn admits(&self, store: &Store, presented: &str) -> Result<bool, StoreError> {
        let secret = self.secret(store).await?;
        Ok(constant_time_eq(secret.as_bytes(), presented.as_bytes()))
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A lease this replica holds: renewed in the background until released or dropped.
pub(super) struct Lease {
    store: Store,
    file: FileKey,
    record: LeaseRecord,
    renewal: tokio::task::JoinHandle<()>,
    released: bool,
}

impl Lease {
    fn start(store: Store, file: FileKey, record: LeaseRecord, ttl: Duration) -> Self {
        let renewal = tokio::spawn({
            let (store, file, mut record) = (store.clone(), file.clone(), record.clone());
            async move {
                let mut ticks = tokio::time::interval(ttl / 3);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    // Only a lease still ours and live is renewed. One taken by another
                    // replica is left to it, and so is one that expired: another replica may
                    // be taking it over right now, and a renewal written after its takeover
                    // would put this replica's name back over the new holder's.
                    match store.read(Item::Lease(&file)).await {
                        Ok(Some(found))
                            if record.is_still_held(&found.bytes, unix_ms(SystemTime::now())) => {}
                        Ok(_) => {
                            tracing::warn!(%file, "the download lease expired or was taken over; no longer renewing it");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(%file, error = %e, "cannot renew the download lease");
                            continue;
                        }
                    }
                    record.expires_unix_ms = unix_ms(SystemTime::now() + ttl);
                    let Ok(bytes) = serde_json::to_vec(&record) else {
                        return;
                    };
                    if let Err(e) = store.write(Item::Lease(&file), &bytes).await {
                        tracing::warn!(%file, error = %e, "cannot renew the download lease");
                    }
                }
            }
        });
        Self {
            store,
            file,
            record,
            renewal,
            released: false,
        }
    }

    /// Stops renewing and removes the lease, if it is still this one.
    pub(super) async fn release(mut self) {
        self.released = true;
        self.renewal.abort();
        remove_if_ours(&self.store, &self.file, &self.record).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        if !self.released {
            let (store, file, record) =
                (self.store.clone(), self.file.clone(), self.record.clone());
            tokio::spawn(async move { remove_if_ours(&store, &file, &record).await });
        }
    }
}

async fn remove_if_ours(store: &Store, file: &FileKey, record: &LeaseRecord) {
    let ours = match store.read(Item::Lease(file)).await {
        Ok(Some(found)) => record.ours_in(&found.bytes).is_some(),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(%file, error = %e, "cannot remove the download lease; it expires by itself");
            false
        }
    };
    if ours {
        if let Err(e) = store.remove(Item::Lease(file)).await {
            tracing::warn!(%file, error = %e, "cannot remove the download lease; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::{FileName, ProviderKey, ProviderType, UpstreamName, Version};

    fn archive() -> FileKey {
        ProviderKey::new(
            UpstreamName::try_from("hashicorp").unwrap(),
            None,
            ProviderType::try_from("local").unwrap(),
        )
        .release(Version::try_from("2.1.0").unwrap())
        .file(FileName::try_from("terraform-provider-local_2.1.0_linux_amd64.zip").unwrap())
    }

    fn replica(url: &str, ttl: Duration) -> Cluster {
        let peers = PeerClient::new(None, ttl).unwrap();
        Cluster::new(Url::parse(url).unwrap(), ttl, peers)
    }

    async fn stored(store: &Store, file: &FileKey) -> Option<LeaseRecord> {
        let found = store.read(Item::Lease(file)).await.unwrap()?;
        Some(serde_json::from_slice(&found.bytes).unwrap())
    }

    // The lease logic over a disk store, which creates only if absent just as a bucket does.
    #[tokio::test]
    async fn one_replica_holds_a_lease_and_the_others_follow_it_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let file = archive();
        let (a, b) = (
            replica("http://10.0.0.5:8443", Duration::from_secs(30)),
            replica("http://10.0.0.6:8443", Duration::from_secs(30)),
        );
        let Role::Holder(lease) = a.take(&store, &file).await else {
            panic!("no lease taken");
        };
        let record = stored(&store, &file).await.unwrap();
        assert_eq!(record.holder.as_str(), "http://10.0.0.5:8443/");
        assert!(record.expires_unix_ms > unix_ms(SystemTime::now()));
        match b.take(&store, &file).await {
            Role::Follower(holder) => assert_eq!(holder, record.holder),
            _ => panic!("B did not follow A"),
        }
        lease.release().await;
        assert!(stored(&store, &file).await.is_none());
        assert!(matches!(b.take(&store, &file).await, Role::Holder(_)));
    }

    #[tokio::test]
    async fn expired_unreadable_and_earlier_runs_leases_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let file = archive();
        let a = replica("http://10.0.0.5:8443", Duration::from_secs(30));
        let expired = LeaseRecord {
            holder: Url::parse("http://10.0.0.6:8443").unwrap(),
            incarnation: "dead".to_owned(),
            expires_unix_ms: unix_ms(SystemTime::now()) - 1,
        };
        // This replica's own address, from a run before this one.
        let earlier_run = LeaseRecord {
            holder: a.advertise.clone(),
            incarnation: "earlier".to_owned(),
            expires_unix_ms: unix_ms(SystemTime::now() + Duration::from_secs(60)),
        };
        for left in [
            serde_json::to_vec(&expired).unwrap(),
            serde_json::to_vec(&earlier_run).unwrap(),
            b"{not json".to_vec(),
        ] {
            store.write(Item::Lease(&file), &left).await.unwrap();
            let Role::Holder(lease) = a.take(&store, &file).await else {
                panic!("a stale lease was not taken over");
            };
            assert_eq!(
                stored(&store, &file).await.unwrap().incarnation,
                a.incarnation
            );
            lease.release().await;
        }
    }

    /// A lease of `ttl` held by one replica on a fresh disk store; renewals run from here.
    async fn held(ttl: Duration) -> (tempfile::TempDir, Store, FileKey, Box<Lease>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_disk(dir.path(), 0).await.unwrap();
        let file = archive();
        let Role::Holder(lease) = replica("http://10.0.0.5:8443", ttl)
            .take(&store, &file)
            .await
        else {
            panic!("no lease taken");
        };
        (dir, store, file, lease)
    }

    /// Puts a lease record in the store, as another replica (or time) would.
    async fn put(store: &Store, file: &FileKey, record: &LeaseRecord) {
        let bytes = serde_json::to_vec(record).unwrap();
        store.write(Item::Lease(file), &bytes).await.unwrap();
    }

    /// Waits until the stored lease's expiry moves past `after`: a renewal has just been
    /// written, and the next one is a third of the lease's time away.
    async fn renewed_after(store: &Store, file: &FileKey, after: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stored(store, file).await.unwrap().expires_unix_ms <= after {
            assert!(tokio::time::Instant::now() < deadline, "never renewed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // Both renewal tests hold leases of 3 s, renewed every second, so what a test writes
    // lands well clear of a renewal's read and write, however slow the disk.

    #[tokio::test]
    async fn a_held_lease_is_renewed_and_one_taken_over_is_left_alone() {
        let ttl = Duration::from_secs(3);
        let (_dir, store, file, lease) = held(ttl).await;
        let first = stored(&store, &file).await.unwrap().expires_unix_ms;
        renewed_after(&store, &file, first).await;
        // Another replica's lease now: the old holder neither renews nor removes it.
        let other = LeaseRecord {
            holder: Url::parse("http://10.0.0.6:8443").unwrap(),
            incarnation: "other".to_owned(),
            expires_unix_ms: unix_ms(SystemTime::now() + Duration::from_secs(60)),
        };
        put(&store, &file, &other).await;
        // Past the next renewal's tick.
        tokio::time::sleep(ttl / 2).await;
        lease.release().await;
        assert_eq!(stored(&store, &file).await, Some(other));
    }

    #[tokio::test]
    async fn a_lease_of_this_run_that_expired_is_not_renewed() {
        let ttl = Duration::from_secs(3);
        let (_dir, store, file, lease) = held(ttl).await;
        // As if renewals had stalled past the expiry: another replica may be taking it over.
        let mut lapsed = stored(&store, &file).await.unwrap();
        lapsed.expires_unix_ms = unix_ms(SystemTime::now()) - 1;
        put(&store, &file, &lapsed).await;
        // Past the first renewal's tick.
        tokio::time::sleep(ttl / 2).await;
        assert_eq!(stored(&store, &file).await, Some(lapsed));
        lease.release().await;
    }

    #[tokio::test]
    async fn a_bucket_that_refuses_the_lease_leaves_the_replica_downloading_alone() {
        let dir = tempfile::tempdir().unwrap();
        let unreachable = crate::store::bucket::BucketSettings {
            bucket: "tfmirror".to_owned(),
            prefix: String::new(),
            // Nothing listens on the discard port.
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            region: "us-east-1".to_owned(),
            credentials: Some(("id".to_owned(), "secret".to_owned())),
        };
        let store = Store::open_shared(dir.path(), 0, &unreachable)
            .await
            .unwrap();
        let a = replica("http://10.0.0.5:8443", Duration::from_secs(30));
        assert!(matches!(a.take(&store, &archive()).await, Role::Alone));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
