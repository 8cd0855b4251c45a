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
mod tests {
    use super::*;

    /// The store's script, in Rust.
    #[derive(Default)]
    struct Store(HashMap<String, (u64, u64)>);

    impl Store {
        fn sync(&mut self, f: &FleetShares, ms: u64, n: u64) {
            f.set_instances(n);
            f.set_connected(true);
            let items = f.plan(ms);
            let given: Vec<Option<u64>> = items
                .iter()
                .map(|i| {
                    let (c, r) = self.0.entry(i.store_key()).or_default();
                    *c += i.charge;
                    *r += u64::from(i.first);
                    let held = n.saturating_sub(*r) * i.held_share;
                    let rem = i.limit.saturating_sub(*c + held);
                    let g = fair_part(rem, n, i.headroom);
                    *c += g;
                    Some(g)
                })
                .collect();
            f.apply(&items, &given);
        }
    }

    const K: FleetKey = [7; 16];

    fn admitted(f: &FleetShares, tries: u64, ms: u64) -> u64 {
        (0..tries).filter(|_| f.take(K, 10, 1, ms).is_ok()).count() as u64
    }

    #[test]
    fn two_instances_balanced_never_pass_the_budget() {
        let (a, b) = (FleetShares::new(Fallback::Share), FleetShares::new(Fallback::Share));
        let mut store = Store::default();
        store.sync(&a, 0, 2);
        store.sync(&b, 0, 2);
        for window in 1..50u64 {
            let mut total = 0;
            // 10 sync rounds per window, each instance offered 5 requests between syncs; the
            // order of the syncs alternates.
            for round in 0..10 {
                let ms = window * 1000 + round * 100 + 1;
                total += admitted(&a, 5, ms);
                total += admitted(&b, 5, ms);
                let ms = ms + 50;
                if (round + window) % 2 == 0 {
                    store.sync(&a, ms, 2);
                    store.sync(&b, ms, 2);
                } else {
                    store.sync(&b, ms, 2);
                    store.sync(&a, ms, 2);
                }
            }
            assert!((9..=10).contains(&total), "window {window}: {total}");
        }
    }

    #[test]
    fn traffic_moving_mid_window_is_bounded_by_one_request() {
        let (a, b) = (FleetShares::new(Fallback::Share), FleetShares::new(Fallback::Share));
        let mut store = Store::default();
        store.sync(&a, 0, 2);
        store.sync(&b, 0, 2);
        let mut total = 0;
        for round in 0..7 {
            total += admitted(&a, 5, 1000 + round * 100 + 1);
            store.sync(&a, 1000 + round * 100 + 50, 2);
        }
        assert_eq!(total, 10, "one busy instance gets the budget once the grace is over");
        total += admitted(&b, 20, 1800);
        store.sync(&b, 1850, 2);
        total += admitted(&b, 20, 1900);
        assert_eq!(total, 11, "worst case: the count + 1 per late instance");
    }

    #[test]
    fn one_busy_instance_gets_the_whole_budget_after_the_grace() {
        let (a, b) = (FleetShares::new(Fallback::Share), FleetShares::new(Fallback::Share));
        let mut store = Store::default();
        store.sync(&a, 0, 2);
        store.sync(&b, 0, 2);
        let mut total = 0;
        let mut at_grace = 0;
        for round in 0..10 {
            total += admitted(&a, 100, 1000 + round * 100 + 1);
            if round == 2 {
                at_grace = total;
            }
            store.sync(&a, 1000 + round * 100 + 50, 2);
        }
        assert_eq!(at_grace, 5, "within the grace: its share");
        assert_eq!(total, 10);
    }

    #[test]
    fn unreachable_store_share_or_local() {
        let s = FleetShares::new(Fallback::Share);
        s.set_instances(2);
        assert_eq!(admitted(&s, 100, 5000), 5, "a new window: the share");
        assert_eq!(admitted(&s, 100, 5100), 0);
        assert_eq!(s.take(K, 10, 1, 5100), Err(1));
        assert_eq!(admitted(&s, 100, 6000), 5);
        let l = FleetShares::new(Fallback::Local);
        l.set_instances(2);
        assert_eq!(admitted(&l, 100, 5000), 100, "local: the fleet budget is not applied");
        l.set_connected(true);
        assert_eq!(admitted(&l, 100, 6000), 5);
    }

    #[test]
    fn refused_keys_keep_what_they_have_and_refunds_give_back() {
        let s = FleetShares::new(Fallback::Share);
        s.set_instances(2);
        s.set_connected(true);
        assert_eq!(admitted(&s, 3, 1000), 3);
        let items = s.plan(1050);
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].charge, items[0].headroom, items[0].first, items[0].held_share), (3, 0, true, 5));
        s.apply(&items, &[None]);
        assert_eq!(admitted(&s, 3, 1100), 0, "a key the store refused admits nothing more");
        s.refund(K, 1100);
        assert_eq!(admitted(&s, 3, 1100), 1);
        assert_eq!(s.plan(1300)[0].held_share, 0, "past the grace");
        assert!(s.plan(3000).is_empty());
        assert!(s.is_empty(), "past windows are forgotten");
    }

    #[test]
    fn small_counts_and_retry_after() {
        assert_eq!(first_share(1, 3), 1);
        assert_eq!(first_share(10, 0), 10);
        assert_eq!(fair_part(5, 2, 0), 3);
        assert_eq!(fair_part(5, 2, 4), 0);
        assert_eq!(fair_part(1, 4, 0), 1);
        let s = FleetShares::new(Fallback::Share);
        s.set_connected(true);
        assert_eq!((0..200).filter(|_| s.take(K, 100, 60, 120_100).is_ok()).count(), 100);
        assert_eq!(s.take(K, 100, 60, 125_000), Err(55), "until the minute ends");
        assert_eq!(s.take([9; 16], 100, 60, 125_000), Ok(()), "a key first seen past the grace: 1");
        assert_eq!(s.take([9; 16], 100, 60, 125_000), Err(55));
    }
}
