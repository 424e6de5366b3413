//! One background job per key: a job claims its key before it starts, and the claim is given
//! back when the job ends — however it ends (done, failed, panicked or cancelled).

use std::{
    collections::HashSet,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

/// The keys whose job is running.
#[derive(Debug)]
pub(super) struct Claims<K: Hash + Eq>(Arc<Mutex<HashSet<K>>>);

impl<K: Hash + Eq> Default for Claims<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: Hash + Eq + Clone> Claims<K> {
    /// The claim on `key`, or `None` while another job holds it.
    pub(super) fn claim(&self, key: &K) -> Option<Claim<K>> {
        let claimed = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        claimed.then(|| Claim {
            claims: self.0.clone(),
            key: key.clone(),
        })
    }
}

/// A held claim; dropping it gives the key back.
pub(super) struct Claim<K: Hash + Eq> {
    claims: Arc<Mutex<HashSet<K>>>,
    key: K,
}

impl<K: Hash + Eq> Drop for Claim<K> {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_once_until_its_claim_is_dropped() {
        let claims = Claims::default();
        let first = claims.claim(&"a");
        assert!(first.is_some());
        assert!(claims.claim(&"a").is_none());
        assert!(claims.claim(&"b").is_some());
        drop(first);
        assert!(claims.claim(&"a").is_some());
    }
}
