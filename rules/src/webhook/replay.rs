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
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        ReplayCache::key("rule", "id", s.as_bytes())
    }

    #[test]
    fn claim_refuses_until_expiry_then_accepts() {
        let c = ReplayCache::new(10);
        assert!(c.claim(&[k("a")], 100, 0).is_ok());
        assert_eq!(c.claim(&[k("a")], 200, 50), Err(Replayed { until: 100 }));
        assert_eq!(c.claim(&[k("a")], 200, 99), Err(Replayed { until: 100 }));
        assert!(c.claim(&[k("a")], 200, 100).is_ok(), "expired at 100");
    }

    #[test]
    fn any_key_held_refuses_and_nothing_is_claimed() {
        let c = ReplayCache::new(10);
        c.claim(&[k("sig1")], 100, 0).unwrap();
        assert!(c.claim(&[k("id1"), k("sig1")], 100, 1).is_err());
        assert!(c.claim(&[k("id1")], 100, 1).is_ok(), "the refused claim took nothing");
    }

    #[test]
    fn release_frees_only_its_own_claim() {
        let c = ReplayCache::new(10);
        let first = c.claim(&[k("a")], 100, 0).unwrap();
        c.release(&first);
        let second = c.claim(&[k("a")], 150, 1).unwrap();
        c.release(&first); // stale: must not free the second
        assert!(c.claim(&[k("a")], 150, 2).is_err());
        c.release(&second);
        assert!(c.claim(&[k("a")], 150, 3).is_ok());
    }

    #[test]
    fn keys_are_namespaced_by_rule_and_kind() {
        assert_ne!(ReplayCache::key("r1", "id", b"x"), ReplayCache::key("r2", "id", b"x"));
        assert_ne!(ReplayCache::key("r", "id", b"x"), ReplayCache::key("r", "signature", b"x"));
        // Length-prefixed: no ambiguity between parts.
        assert_ne!(ReplayCache::key("ab", "c", b""), ReplayCache::key("a", "bc", b""));
    }

    #[test]
    fn bounded_expired_first_then_closest_to_expiry() {
        let c = ReplayCache::new(100);
        for i in 0..50 {
            c.claim(&[k(&format!("old{i}"))], 10, 0).unwrap();
        }
        for i in 0..50 {
            c.claim(&[k(&format!("live{i}"))], 1000 + i, 0).unwrap();
        }
        // Full: the 50 expired go first, nothing unexpired is evicted.
        for i in 0..50 {
            c.claim(&[k(&format!("new{i}"))], 2000, 20).unwrap();
        }
        assert_eq!(c.evicted(), 0);
        assert!(c.len() <= 100);
        // Still full of unexpired entries: the ones closest to expiry go, the rest stay.
        c.claim(&[k("one-more")], 3000, 20).unwrap();
        assert!(c.len() <= 100);
        assert!(c.evicted() >= 1);
        assert!(c.claim(&[k("live0")], 5000, 21).is_ok(), "closest to expiry was evicted");
        assert!(c.claim(&[k("new0")], 5000, 21).is_err(), "later expiries kept");
        for i in 0..10_000 {
            let _ = c.claim(&[k(&format!("flood{i}"))], 9000, 30);
        }
        assert!(c.len() <= 100);
    }
}
