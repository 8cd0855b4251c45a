//! The keyed GCRA limiter: [`Gcra`] (the arithmetic) and [`LimiterStore`] (one rule's keys).
//!
//! # Algorithm
//!
//! GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per key): with the
//! emission interval `T = period / count` and the tolerance `D = burst × T`, each key stores its
//! *theoretical arrival time* `TAT`. A request at `now` is allowed when
//! `max(TAT, now) + T − now ≤ D`, and then sets `TAT = max(TAT, now) + T`; a refused request
//! changes nothing. Over any interval of length `L`, at most `burst + ⌊L / T⌋` requests of one key
//! are allowed (tested as a property).
//!
//! # Storage
//!
//! A key is stored as its 64-bit keyed hash (SipHash-1-3 under a per-store random key, std's
//! `RandomState`) and its TAT: one 16-byte slot. Slots live in 8-way buckets (128 bytes,
//! aligned, so a bucket is one memory round trip) of an array per shard. Up to 64 shards, picked
//! by the hash's low bits, each behind a `parking_lot::Mutex` on its own cache line. Each key
//! has two candidate buckets (from two independent parts of its hash): it goes into the first
//! if that has room, else the second, else one key of those buckets moves to its own other
//! bucket to make room (one cuckoo step). Most keys sit in their first bucket, so a lookup
//! mostly reads one; a full-size shard holds over 99 % of the keys it has room for before one is
//! evicted (tested at 90 % fill). Measured: 16 to 34 bytes per key, depending on where the
//! arrays' last doubling falls (from 5k to 2M keys in steps of 5k; `benches/ratelimit.rs`).
//!
//! * **Expired is free.** A slot whose `TAT ≤ now` is indistinguishable from a fresh key (a fresh
//!   key has `TAT = now`), so it is reused without any bookkeeping: idle keys are forgotten at
//!   the latest `D` (for the default burst: one period) after their last request. A key that
//!   comes back finds its own expired slot and reuses it in place.
//! * **Bounded.** A shard's array doubles when a new key finds both its buckets full of live
//!   keys and no room to move one, up to `⌈max_keys / shards⌉` slots (rounded up to a multiple of 8). At that size, a new
//!   key that finds no room **replaces the live key with the smallest TAT** of its buckets: the
//!   one closest to being forgotten anyway, i.e. the one with the most allowance left. Keys
//!   that are being limited (large TATs) are evicted last, so a flood of unique keys (random
//!   source addresses) cannot free a limited client, and memory never exceeds the cap.
//!   [`LimiterStore::sweep`] clears expired slots and halves shards that fell under a quarter
//!   full.
//! * **Collisions.** Two keys share state only when their 64-bit hashes are equal: with `n` live
//!   keys the odds that any two collide are about `n² / 2⁶⁵` (3 · 10⁻⁸ for a million keys), and a
//!   collision makes a limit stricter, never looser. The hash key is random per store and never
//!   leaves the process, so an attacker can aim neither at a collision nor at a bucket.
//!
//! Time is passed in (`now`, nanoseconds from a monotonic origin the caller picks); nothing here
//! reads a clock.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use parking_lot::Mutex;

/// Default of a rule's `max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Largest `max_keys` accepted.
pub const MAX_MAX_KEYS: usize = 10_000_000;

/// Slots per bucket.
const WAYS: usize = 8;

/// Most shards per store.
const MAX_SHARDS: usize = 64;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The arithmetic of one rate: `count` requests per `period`, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `T`: nanoseconds one request costs.
    interval: u64,
    /// `D = burst × T`.
    tolerance: u64,
    /// The policy's request count (`q` of `RateLimit-Policy`).
    limit: u64,
    burst: u64,
}

/// One answer of the limiter: enough for `Retry-After`, `RateLimit-Policy` and `RateLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDecision {
    /// Whether the request conforms (and was counted).
    pub allowed: bool,
    /// The policy's request count per period (`q`).
    pub limit: u64,
    /// Requests the key may still make right now (`r`): 0 when refused.
    pub remaining: u64,
    /// Seconds (rounded up) until the key is back to its full burst (`t`).
    pub reset_after_secs: u64,
    /// Seconds (rounded up, at least 1) until a refused request would be allowed; 0 when allowed.
    pub retry_after_secs: u64,
}

impl Gcra {
    /// `count` requests per `period_ns`, bursts of `burst`. `None` when a value is 0, the interval
    /// would be under 1 ns, or `burst × interval` does not fit in 62 bits.
    pub fn new(count: u64, period_ns: u64, burst: u64) -> Option<Gcra> {
        if count == 0 || burst == 0 || period_ns == 0 {
            return None;
        }
        let interval = period_ns / count;
        if interval == 0 {
            return None;
        }
        let tolerance = u64::try_from(u128::from(burst) * u128::from(interval)).ok().filter(|d| *d < 1 << 62)?;
        Some(Gcra { interval, tolerance, limit: count, burst })
    }

    /// The emission interval `T`, in nanoseconds.
    pub const fn interval_ns(&self) -> u64 {
        self.interval
    }

    /// The burst.
    pub const fn burst(&self) -> u64 {
        self.burst
    }

    /// The policy's request count.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// Decides a request at `now` for a key whose TAT is `tat` (`now` or less for a fresh key).
    /// Returns the decision and, when allowed, the new TAT to store.
    pub fn decide(&self, tat: u64, now: u64) -> (LimitDecision, Option<u64>) {
        let tat = tat.max(now);
        let new_tat = tat.saturating_add(self.interval);
        let horizon = now.saturating_add(self.tolerance);
        if new_tat > horizon {
            let retry = new_tat - horizon;
            let d = LimitDecision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_after_secs: ceil_secs(tat - now),
                retry_after_secs: ceil_secs(retry).max(1),
            };
            return (d, None);
        }
        let d = LimitDecision {
            allowed: true,
            limit: self.limit,
            remaining: (horizon - new_tat) / self.interval,
            reset_after_secs: ceil_secs(new_tat - now),
            retry_after_secs: 0,
        };
        (d, Some(new_tat))
    }
}

fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SEC)
}

/// One key: its hash and TAT (0: empty).
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    hash: u64,
    tat: u64,
}

/// 8 slots, 128 bytes, aligned to 128: a lookup reads both cache lines at once (independent
/// loads) and finds the TAT next to the hash, so a bucket costs one memory round trip.
#[derive(Clone, Copy)]
#[repr(C, align(128))]
struct Bucket {
    slots: [Slot; WAYS],
}

const EMPTY: Bucket = Bucket { slots: [Slot { hash: 0, tat: 0 }; WAYS] };

/// The two candidate buckets of `hash` among `n` (`n ≤ 2²⁶`): Lemire's multiply-shift on the
/// high 32 bits, and on bits 6..32 (bits 0..6 pick the shard). Doubling `n` maps a candidate `b`
/// to `2b` or `2b + 1`, so growing never overflows a bucket.
fn buckets_of(hash: u64, n: usize) -> (usize, usize) {
    let n = n as u64;
    let b1 = ((hash >> 32) * n) >> 32;
    let b2 = (((hash & 0xffff_ffff) >> 6) * n) >> 26;
    (b1 as usize, b2 as usize)
}

/// Where a key is: bucket and slot.
type At = (usize, usize);

/// One shard's slots.
struct Table {
    buckets: Vec<Bucket>,
    /// Slots with a non-zero TAT (live, or expired but not yet swept).
    used: usize,
    max_buckets: usize,
}

impl Table {
    fn new(max_buckets: usize) -> Table {
        Table { buckets: vec![EMPTY], used: 0, max_buckets }
    }

    fn tat(&self, (b, i): At) -> u64 {
        self.buckets.get(b).map_or(0, |k| k.slots[i].tat)
    }

    fn set(&mut self, (b, i): At, hash: u64, tat: u64) {
        if let Some(k) = self.buckets.get_mut(b) {
            if k.slots[i].tat == 0 {
                self.used += 1;
            }
            k.slots[i] = Slot { hash, tat };
        }
    }

    /// The slot of `hash`, live or expired, if it still has one. A key has at most one slot:
    /// a new slot is only taken when it has none, and its expired slot is reused in place (so
    /// a key that comes back after going idle costs no more than a live one).
    fn find(&self, hash: u64) -> Option<At> {
        let (b1, b2) = buckets_of(hash, self.buckets.len());
        [b1, b2].into_iter().find_map(|b| self.buckets.get(b).and_then(|k| slot_of(k, hash)).map(|i| (b, i)))
    }

    /// A free slot (expired or empty) for a new key: in its first bucket if that has one, else
    /// in its second.
    fn free(&self, hash: u64, now: u64) -> Option<At> {
        let (b1, b2) = buckets_of(hash, self.buckets.len());
        [b1, b2]
            .into_iter()
            .find_map(|b| self.buckets.get(b).and_then(|k| k.slots.iter().position(|s| s.tat <= now)).map(|i| (b, i)))
    }

    /// Both buckets of `hash` are full: moves one of their keys to its other bucket, if that
    /// has room, and returns the slot it left (one cuckoo step, at most 16 keys looked at).
    fn relocate(&mut self, hash: u64, now: u64) -> Option<At> {
        let n = self.buckets.len();
        let (b1, b2) = buckets_of(hash, n);
        let (from, to, moved) = [b1, b2].into_iter().find_map(|b| {
            let bucket = self.buckets.get(b)?;
            bucket.slots.iter().enumerate().find_map(|(i, slot)| {
                let (c1, c2) = buckets_of(slot.hash, n);
                let other = if c1 == b { c2 } else { c1 };
                if other == b {
                    return None;
                }
                let j = self.buckets.get(other)?.slots.iter().position(|s| s.tat <= now)?;
                Some(((b, i), (other, j), *slot))
            })
        })?;
        self.set(to, moved.hash, moved.tat);
        Some(from)
    }

    /// The live slot with the smallest TAT among the key's two buckets: the eviction victim.
    fn victim(&self, hash: u64) -> At {
        let (b1, b2) = buckets_of(hash, self.buckets.len());
        let mut best = (b1, 0);
        for b in [b1, b2] {
            if let Some(k) = self.buckets.get(b) {
                let i = min_slot(k);
                if k.slots[i].tat < self.tat(best) {
                    best = (b, i);
                }
            }
        }
        best
    }

    fn check(&mut self, gcra: &Gcra, hash: u64, now: u64) -> LimitDecision {
        if let Some(at) = self.find(hash) {
            let (d, new_tat) = gcra.decide(self.tat(at), now);
            if let Some(t) = new_tat {
                self.set(at, hash, t);
            }
            return d;
        }
        // A fresh key: always allowed (burst ≥ 1); it needs a slot.
        let (d, new_tat) = gcra.decide(now, now);
        if let Some(t) = new_tat {
            self.insert(hash, t, now);
        }
        d
    }

    fn insert(&mut self, hash: u64, tat: u64, now: u64) {
        // At full size with hardly a slot never used, moving keys around rarely finds room (a
        // flood of unique keys keeps every slot live): evict at once.
        let crowded = self.buckets.len() >= self.max_buckets && self.used * 20 >= self.buckets.len() * WAYS * 19;
        let mut at = self.free(hash, now).or_else(|| if crowded { None } else { self.relocate(hash, now) });
        while at.is_none() && self.buckets.len() < self.max_buckets {
            self.resize((self.buckets.len() * 2).min(self.max_buckets), now);
            at = self.free(hash, now).or_else(|| self.relocate(hash, now));
        }
        // Both buckets full of live keys at the cap: replace the one closest to expiry.
        let at = at.unwrap_or_else(|| self.victim(hash));
        self.set(at, hash, tat);
    }

    /// Rebuilds with `n` buckets, keeping the slots live at `now` (all non-empty ones when
    /// `now` is 0). Returns false, changing nothing, when a bucket would overflow: never when
    /// `n` doubles (see [`buckets_of`]), possible when it shrinks or grows to a cap that is not
    /// a doubling; then growing keeps the larger TATs and shrinking is abandoned.
    fn rebuild(&mut self, n: usize, now: u64, lossy: bool) -> bool {
        let n = n.max(1);
        let old_n = self.buckets.len();
        let mut next = Table { buckets: vec![EMPTY; n], used: 0, max_buckets: self.max_buckets };
        for (b, old) in self.buckets.iter().enumerate() {
            for &Slot { hash: h, tat: t } in &old.slots {
                if t <= now {
                    continue;
                }
                // Keep the key on the same side (first or second candidate) it was on.
                let (o1, _) = buckets_of(h, old_n);
                let (n1, n2) = buckets_of(h, n);
                let nb = if o1 == b { n1 } else { n2 };
                let Some(k) = next.buckets.get(nb) else { continue };
                match k.slots.iter().position(|s| s.tat == 0) {
                    Some(i) => next.set((nb, i), h, t),
                    None if lossy => {
                        let i = min_slot(k);
                        if k.slots[i].tat < t {
                            next.set((nb, i), h, t);
                        }
                    }
                    None => return false,
                }
            }
        }
        *self = next;
        true
    }

    fn resize(&mut self, n: usize, now: u64) {
        self.rebuild(n, now, true);
    }

    /// Clears expired slots; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        let mut freed = 0;
        for bucket in &mut self.buckets {
            for slot in &mut bucket.slots {
                if slot.tat != 0 && slot.tat <= now {
                    *slot = Slot { hash: 0, tat: 0 };
                    freed += 1;
                }
            }
        }
        self.used -= freed.min(self.used);
        freed
    }

    /// Halves the table while it is under a quarter full and everything still fits.
    fn try_shrink(&mut self) {
        while self.buckets.len() > 1 && self.used * 4 < self.buckets.len() * WAYS {
            if !self.rebuild(self.buckets.len() / 2, 0, false) {
                return;
            }
        }
    }

    fn refund(&mut self, gcra: &Gcra, hash: u64, now: u64) {
        if let Some(at) = self.find(hash) {
            let tat = self.tat(at);
            if tat > now {
                // Never 0: that marks an empty slot.
                self.set(at, hash, tat.saturating_sub(gcra.interval).max(1));
            }
        }
    }
}

fn slot_of(bucket: &Bucket, hash: u64) -> Option<usize> {
    bucket.slots.iter().position(|s| s.hash == hash)
}

fn min_slot(bucket: &Bucket) -> usize {
    let mut best = 0;
    for (i, s) in bucket.slots.iter().enumerate() {
        if s.tat < bucket.slots[best].tat {
            best = i;
        }
    }
    best
}

/// A shard on its own cache line.
#[repr(align(64))]
struct Shard(Mutex<Table>);

/// The keyed limiter state of one rule: bounded, sharded, `Send + Sync`. See the module doc.
pub struct LimiterStore {
    gcra: Gcra,
    hasher: RandomState,
    shard_mask: u64,
    shards: Box<[Shard]>,
    max_keys: usize,
}

impl std::fmt::Debug for LimiterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterStore")
            .field("gcra", &self.gcra)
            .field("shards", &self.shards.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl LimiterStore {
    /// An empty store for `gcra` holding at most about `max_keys` keys (clamped to
    /// 1..=[`MAX_MAX_KEYS`]; the cap is split over the shards and rounded up to 8 per shard).
    pub fn new(gcra: Gcra, max_keys: usize) -> LimiterStore {
        let max_keys = max_keys.clamp(1, MAX_MAX_KEYS);
        let shards = (max_keys / 256).next_power_of_two().clamp(1, MAX_SHARDS);
        let max_buckets = max_keys.div_ceil(shards).div_ceil(WAYS);
        LimiterStore {
            gcra,
            hasher: RandomState::new(),
            shard_mask: shards as u64 - 1,
            shards: (0..shards).map(|_| Shard(Mutex::new(Table::new(max_buckets)))).collect(),
            max_keys,
        }
    }

    /// The rate this store applies.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// The keyed 64-bit hash of a key (what is stored instead of the key).
    pub fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.finish()
    }

    /// A hasher in the same state [`LimiterStore::hash`] starts from: writing a key into it in
    /// pieces gives the same hash as hashing the concatenation.
    pub(crate) fn hasher(&self) -> impl Hasher {
        self.hasher.build_hasher()
    }

    /// Checks (and, when allowed, counts) one request of `key` at `now`.
    pub fn check(&self, key: &[u8], now: u64) -> LimitDecision {
        self.check_hash(self.hash(key), now)
    }

    /// [`LimiterStore::check`] for a key already hashed with [`LimiterStore::hash`].
    pub fn check_hash(&self, hash: u64, now: u64) -> LimitDecision {
        match self.shard(hash) {
            Some(s) => s.lock().check(&self.gcra, hash, now),
            None => self.gcra.decide(now, now).0,
        }
    }

    /// Gives back one request an allowed check counted (a request another limit refused).
    pub fn refund(&self, hash: u64, now: u64) {
        if let Some(s) = self.shard(hash) {
            s.lock().refund(&self.gcra, hash, now);
        }
    }

    /// Clears expired keys and shrinks shards under a quarter full; returns how many keys were
    /// cleared. Not needed for correctness or for the cap (expired slots are reused anyway):
    /// call it every few seconds to keep [`LimiterStore::len`] and memory after a flood honest.
    /// Locks one shard at a time.
    pub fn sweep(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut t = s.0.lock();
                let n = t.sweep(now);
                t.try_shrink();
                n
            })
            .sum()
    }

    /// Keys held: live ones, and expired ones not yet reused or swept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().used).sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store can hold (the configured cap, rounded up per shard).
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().max_buckets * WAYS).sum()
    }

    /// The configured cap.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Bytes this store holds: itself, its shards and their slot arrays (exact, not sampled).
    pub fn approx_bytes(&self) -> usize {
        let tables: usize =
            self.shards.iter().map(|s| s.0.lock().buckets.capacity() * std::mem::size_of::<Bucket>()).sum();
        std::mem::size_of::<Self>() + std::mem::size_of_val(&*self.shards) + tables
    }

    fn shard(&self, hash: u64) -> Option<&Mutex<Table>> {
        usize::try_from(hash & self.shard_mask).ok().and_then(|i| self.shards.get(i)).map(|s| &s.0)
    }
}

#[cfg(test)]
mod tests;
