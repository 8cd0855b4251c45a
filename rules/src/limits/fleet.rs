//! Fleet shares: one rate limit held across several gateway instances without a round trip to
//! the fleet store on the request path. Pure (time is passed in); the gateway's fleet thread
//! carries [`FleetShares::plan`] to the store and [`FleetShares::apply`] back.
//!
//! Each rule's count is also a **fleet budget per aligned window** (`rate: 10/s` → at most 10
//! requests per key per wall-clock second, fleet-wide; windows start at multiples of the period
//! in Unix time, so every instance's windows line up). The local GCRA bucket still applies on
//! every instance; the fleet budget only refuses more.
//!
//! * In a new window an instance may admit its **share** of the budget at once, `count / N`
//!   (at least 1), `N` the number of live instances last seen in the store; a key it first sees
//!   later than [`GRACE_MS`] into the window gets 1 instead (the others may have reserved the
//!   rest by then).
//! * Every sync (the gateway runs one every 100 ms) charges what it admitted beyond what it had
//!   reserved to the store's counter for the key and window, then **reserves** its fair part of
//!   what remains, `ceil(remaining / N)` less what it still holds; from then on it admits only
//!   within its reservations. During the first [`GRACE_MS`] of a window, what remains also
//!   holds back one share for each instance that has not reported the key yet (it may be
//!   spending its share right now).
//! * Accuracy (`total admitted per key and window ≤ count × (1 + ε)`): reservations never pass
//!   the budget less the shares held back, so with `N` stable the only excess is a key first
//!   seen by an instance after the grace, 1 request each: `ε ≤ (N − 1) / count`. A change of
//!   `N` within a window (an instance joining) can add one share more. The price: a key whose
//!   traffic reaches only one instance waits for the grace before it gets more than its share,
//!   and unused reservations are not given back (the fleet then admits less, never more). A
//!   count below `N` gives each instance 1 (excess at most `N − count`). Clocks: windows are
//!   aligned on each instance's own clock; skew between instances shifts them (keep NTP).
//! * The store unreachable: reservations held stay usable; each new window starts with the
//!   share again (`Fallback::Share`, the default: the fleet stays near the limit while the
//!   instance count holds), or the fleet budget is not applied at all (`Fallback::Local`: each
//!   instance allows the full limit, N instances N×).
//! * Bounded: at most [`MAX_ENTRIES`] keys in the current window; past it a new key is not
//!   tracked (admitted by the fleet budget, still limited by the local bucket) and counted in
//!   [`FleetShares::untracked`].

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The fleet-wide identity of a key: SHA-256 (first 16 bytes) of the rule id, rule hash and key
/// bytes, the same on every instance running the same rule.
pub type FleetKey = [u8; 16];

/// How long into a window the shares of instances that have not reported a key are held back,
/// and after which a key new to an instance gets 1 request before its first sync.
pub const GRACE_MS: u64 = 250;

/// Most keys tracked at once (all rules).
pub const MAX_ENTRIES: usize = 1 << 20;

const SHARDS: usize = 16;

/// What the fleet budget does while the store is unreachable (`fleet.rate_limit_fallback`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Each instance admits `count / N` per window (`N`: the instances last seen).
    #[default]
    Share,
    /// The fleet budget is not applied: each instance's own bucket only.
    Local,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    limit: u64,
    period: u64,
    window: u64,
    /// What this instance may admit in the window.
    granted: u64,
    /// What the store counts for this instance in the window (charges + reservations).
    reserved: u64,
    /// What this instance admitted in the window.
    used: u64,
    /// A request came since the last plan.
    touched: bool,
    /// The store has counted this instance for the key in this window.
    reported: bool,
}

/// One key to carry to the store: charge `charge`, then reserve up to the fair part of what
/// remains less `headroom` (what the instance still holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncItem {
    /// The key.
    pub key: FleetKey,
    /// The window (Unix seconds / period).
    pub window: u64,
    /// The budget per window.
    pub limit: u64,
    /// The window's length in seconds.
    pub period: u64,
    /// Admitted and not yet counted by the store.
    pub charge: u64,
    /// Reserved and not yet used.
    pub headroom: u64,
    /// The first report of this instance for the key in this window.
    pub first: bool,
    /// The share held back for each instance that has not reported (0 past the grace).
    pub held_share: u64,
    used: u64,
}

impl SyncItem {
    /// The store's key suffix: `<hex key>:<window>`.
    pub fn store_key(&self) -> String {
        format!("{}:{}", hex::encode(self.key), self.window)
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct FleetShares {
    shards: Box<[Mutex<HashMap<FleetKey, Entry>>]>,
    instances: AtomicU64,
    connected: AtomicBool,
    fallback: Fallback,
    untracked: AtomicU64,
}

/// The hasher of a rule's fleet keys: the key bytes follow.
pub fn key_hasher(rule_id: &str, rule_hash: &str) -> Sha256 {
    let mut h = Sha256::new();
    for part in [rule_id.as_bytes(), rule_hash.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h
}

/// The key a [`key_hasher`] fed with the key bytes names.
pub fn finish(h: Sha256) -> FleetKey {
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
    k
}

/// The share of one instance in a new window.
pub fn first_share(limit: u64, instances: u64) -> u64 {
    (limit / instances.max(1)).max(1)
}

/// The fair part of `remaining` for one of `instances`, less `headroom` (what the store's
/// script computes; here for tests and docs).
pub fn fair_part(remaining: u64, instances: u64, headroom: u64) -> u64 {
    remaining.div_ceil(instances.max(1)).saturating_sub(headroom).min(remaining)
}

impl FleetShares {
    /// Empty, one instance known, not connected.
    pub fn new(fallback: Fallback) -> FleetShares {
        FleetShares {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            instances: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            fallback,
            untracked: AtomicU64::new(0),
        }
    }

    /// The key of `key_bytes` under a rule.
    pub fn key(rule_id: &str, rule_hash: &str, key_bytes: &[u8]) -> FleetKey {
        let mut h = key_hasher(rule_id, rule_hash);
        h.update(key_bytes);
        finish(h)
    }

    fn shard(&self, key: &FleetKey) -> &Mutex<HashMap<FleetKey, Entry>> {
        let i = usize::from(key[0]) % SHARDS;
        &self.shards[i]
    }

    /// Live instances last seen (at least 1).
    pub fn instances(&self) -> u64 {
        self.instances.load(Ordering::Relaxed)
    }

    /// Records the live instances seen in the store.
    pub fn set_instances(&self, n: u64) {
        self.instances.store(n.max(1), Ordering::Relaxed);
    }

    /// Records whether the last sync reached the store.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// True when the last sync reached the store.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Keys not tracked because the table was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One request of `key` (a budget of `limit` per `period` seconds) at `unix_ms`: `Ok`
    /// counts it, `Err(retry_after)` refuses it (the seconds until the window ends).
    pub fn take(&self, key: FleetKey, limit: u64, period: u64, unix_ms: u64) -> Result<(), u64> {
        if self.fallback == Fallback::Local && !self.connected() {
            return Ok(());
        }
        let period = period.max(1);
        let unix = unix_ms / 1000;
        let window = unix / period;
        let into = unix_ms.saturating_sub(window * period * 1000);
        let n = self.instances();
        let mut shard = self.shard(&key).lock();
        if shard.len() >= MAX_ENTRIES / SHARDS && !shard.contains_key(&key) {
            shard.retain(|_, e| e.window == unix / e.period);
            if shard.len() >= MAX_ENTRIES / SHARDS {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let share = if into < GRACE_MS { first_share(limit, n) } else { 1 };
        let fresh =
            || Entry { limit, period, window, granted: share, reserved: 0, used: 0, touched: false, reported: false };
        let e = shard.entry(key).or_insert_with(fresh);
        if e.window != window || e.limit != limit || e.period != period {
            *e = fresh();
        }
        e.touched = true;
        if e.used < e.granted {
            e.used += 1;
            Ok(())
        } else {
            Err(((window + 1) * period * 1000).saturating_sub(unix_ms).div_ceil(1000).max(1))
        }
    }

    /// Gives back a request [`FleetShares::take`] counted (another limit refused it).
    pub fn refund(&self, key: FleetKey, unix_ms: u64) {
        if let Some(e) = self.shard(&key).lock().get_mut(&key) {
            if e.window == unix_ms / 1000 / e.period.max(1) {
                e.used = e.used.saturating_sub(1);
            }
        }
    }

    /// What to carry to the store now: every key of the current window a request touched since
    /// the last plan. Keys of past windows are forgotten.
    pub fn plan(&self, unix_ms: u64) -> Vec<SyncItem> {
        let unix = unix_ms / 1000;
        let n = self.instances();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut s = shard.lock();
            s.retain(|_, e| e.window == unix / e.period);
            for (k, e) in s.iter_mut().filter(|(_, e)| e.touched) {
                e.touched = false;
                let into = unix_ms.saturating_sub(e.window * e.period * 1000);
                out.push(SyncItem {
                    key: *k,
                    window: e.window,
                    limit: e.limit,
                    period: e.period,
                    charge: e.used.saturating_sub(e.reserved),
                    headroom: e.reserved.saturating_sub(e.used),
                    first: !e.reported,
                    held_share: if into < GRACE_MS { first_share(e.limit, n) } else { 0 },
                    used: e.used,
                });
            }
        }
        out
    }

    /// Marks `items` to be carried again (the store did not answer).
    pub fn retouch(&self, items: &[SyncItem]) {
        for item in items {
            if let Some(e) = self.shard(&item.key).lock().get_mut(&item.key) {
                e.touched = true;
            }
        }
    }

    /// The store's answer to `items`: what each key was given (`None`: the store refused that
    /// key, e.g. a tampered value; the instance keeps admitting only what it has).
    pub fn apply(&self, items: &[SyncItem], given: &[Option<u64>]) {
        for (item, give) in items.iter().zip(given) {
            let mut s = self.shard(&item.key).lock();
            let Some(e) = s.get_mut(&item.key) else { continue };
            if e.window != item.window || e.limit != item.limit {
                continue;
            }
            match give {
                Some(g) => {
                    e.reserved = e.reserved.max(item.used).saturating_add(*g);
                    e.granted = e.reserved;
                    e.reported = true;
                }
                // Fail closed for that key: no more than what was already admitted.
                None => e.granted = e.granted.min(item.used.max(e.reserved)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
