//! The replay cache: which verified deliveries were accepted recently, bounded in memory.
//!
//! Pure (time is passed in) and shared by every request and every rule snapshot: the gateway
//! keeps one for its lifetime, so a reload never forgets a delivery. Keys are namespaced by rule
//! id (not by rule hash), so rotating a rule's secret does not reopen a replay window.
//!
//! A delivery *claims* its keys when it is accepted; if the upstream does not take it (any
//! answer other than 2xx, or no answer), the gateway *releases* the claim so the sender's retry
//! of the same delivery is not mistaken for a replay. A second copy arriving while the first is
//! in flight is a replay.
//!
//! Keys are the first 16 bytes of SHA-256 over (rule id, key kind, value): fixed size whatever a
//! sender puts in its delivery id, and a collision (2^-64 for a pair at 10^5 entries) only ever
//! refuses a delivery, never accepts one.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Entries kept by default (about 40 bytes each in the map: 4 MB at the cap).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A cache key (see the module doc).
pub type Key = [u8; 16];

/// The keys of one accepted delivery, until released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    keys: Vec<Key>,
    expires_at: u64,
}

impl Claim {
    /// The keys claimed (fleet mode claims the same ones in the fleet store).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Unix seconds the claim holds until.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// The delivery was accepted before (or is in flight), and its window has not passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// When the earlier claim expires (Unix seconds).
    pub until: u64,
}

/// Bounded map from key to expiry (Unix seconds).
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, u64>,
    /// Unexpired entries dropped because the cache was full.
    evicted: u64,
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::new(DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        ReplayCache { inner: Mutex::new(Inner::default()), capacity: capacity.max(1) }
    }

    /// The key for `value` of kind `kind` (`content`: the signed message's SHA-256, `id`: a signed
    /// delivery id) under rule `rule_id`.
    pub fn key(rule_id: &str, kind: &str, value: &[u8]) -> Key {
        let mut h = Sha256::new();
        for part in [rule_id.as_bytes(), kind.as_bytes(), value] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
        key
    }

    /// Claims `keys` until `expires_at`, all or none: [`Replayed`] when any of them is held by an
    /// unexpired claim. When the cache is full, expired entries go first, then the unexpired
    /// ones closest to expiry (counted in [`ReplayCache::evicted`]): only verified deliveries
    /// are ever stored, so filling it takes the sender's secret.
    pub fn claim(&self, keys: &[Key], expires_at: u64, now: u64) -> Result<Claim, Replayed> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = keys.iter().filter_map(|k| inner.map.get(k).copied()).filter(|&exp| exp > now).max() {
            return Err(Replayed { until });
        }
        if inner.map.len() + keys.len() > self.capacity {
            inner.map.retain(|_, exp| *exp > now);
        }
        if inner.map.len() + keys.len() > self.capacity {
            // Drop the tenth of entries closest to expiry (at least what is needed).
            let need = (inner.map.len() + keys.len()).saturating_sub(self.capacity).max(self.capacity / 10);
            let mut by_expiry: Vec<(u64, Key)> = inner.map.iter().map(|(k, e)| (*e, *k)).collect();
            let n = need.min(by_expiry.len());
            if n > 0 && n < by_expiry.len() {
                by_expiry.select_nth_unstable(n - 1);
            }
            for (_, k) in by_expiry.iter().take(n) {
                inner.map.remove(k);
            }
            inner.evicted += n as u64;
        }
        for k in keys {
            inner.map.insert(*k, expires_at);
        }
        Ok(Claim { keys: keys.to_vec(), expires_at })
    }

    /// Gives a claim back (the upstream did not take the delivery): its keys are free again,
    /// unless a later claim replaced them.
    pub fn release(&self, claim: &Claim) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for k in &claim.keys {
            if inner.map.get(k) == Some(&claim.expires_at) {
                inner.map.remove(k);
            }
        }
    }

    /// Entries held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unexpired entries dropped because the cache was full, since it was created.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).evicted
    }
}

#[cfg(test)]
mod tests;
