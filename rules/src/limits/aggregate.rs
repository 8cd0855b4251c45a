//! Event aggregation: one event per (rule, key) per window, plus one summary with the count of
//! the rest.
//!
//! A flood of refused requests must not become a flood of events. The first refusal of a key in
//! a window is reported at once ([`Emit::First`]: the caller emits its finding); every further
//! one in the same window is only counted ([`Emit::Suppressed`]). When the window has closed,
//! [`Aggregator::drain`] returns a [`Summary`] per key that had suppressed refusals, which the
//! gateway emits as one more event carrying the count. A key that stays quiet for a window is
//! forgotten.
//!
//! Bounded: at most `max_entries` keys are tracked (split over 8 shards). A new key arriving
//! when its shard is full is counted under one overflow entry per rule, labelled
//! `(other keys)`, so a flood of unique keys yields at most one extra event per rule and window.
//! Summaries waiting to be drained are bounded the same way; past that they are dropped and
//! counted ([`Aggregator::dropped`]). Drain every second or so and that never happens.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Map};

use crate::deny::{Deny, DenyCode};
use crate::verdict::{EventType, Finding, Mode, Severity};

/// Default aggregation window.
pub const DEFAULT_WINDOW_SECS: u64 = 60;

/// Default bound on tracked keys.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Label of the overflow entry.
pub const OVERFLOW_LABEL: &str = "(other keys)";

const SHARDS: usize = 8;
const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Stands for "any key" in the overflow entry's hash input.
const OVERFLOW_KEY: u64 = 0x6f76_6572_666c_6f77;

/// What an aggregated event is about: the rule and how its events look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The rule.
    pub rule_id: Arc<str>,
    /// `rate_limit_hit` or `quota_exceeded`.
    pub event: EventType,
    /// The rule's mode.
    pub mode: Mode,
    /// The rule's severity.
    pub severity: Severity,
}

/// What to do with one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The first of its key in this window: emit its event now.
    First,
    /// Counted; reported in the window's [`Summary`].
    Suppressed,
}

/// The suppressed hits of one key in one closed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Which rule, and how its events look.
    pub origin: Arc<Origin>,
    /// The key, as events show it (never a secret; see the rules' key labels).
    pub key_label: String,
    /// Hits suppressed in the window (the first one was emitted on its own).
    pub count: u64,
    /// When the window started (the caller's clock, nanoseconds).
    pub window_start: u64,
    /// The window's length.
    pub window_secs: u64,
    /// The client address, when every suppressed hit came from the same one: a flood from one
    /// address stays attributed to it (top threats).
    pub client_ip: Option<IpAddr>,
}

impl Summary {
    /// The finding the gateway turns into the summary event: the rule's event type, mode and
    /// severity; `detail` has `key`, `count`, `window_secs` and `aggregated: true`.
    pub fn finding(&self) -> Finding {
        let code = match self.origin.event {
            EventType::QuotaExceeded => DenyCode::QuotaExceeded,
            _ => DenyCode::RateLimited,
        };
        let mut detail = Map::new();
        detail.insert("key".into(), json!(self.key_label));
        detail.insert("count".into(), json!(self.count));
        detail.insert("window_secs".into(), json!(self.window_secs));
        detail.insert("aggregated".into(), json!(true));
        Finding {
            rule_id: self.origin.rule_id.clone(),
            mode: self.origin.mode,
            event: self.origin.event,
            severity: self.origin.severity,
            deny: Deny::new(code, "aggregated"),
            detail,
        }
    }
}

struct Entry {
    origin: Arc<Origin>,
    label: String,
    window_start: u64,
    suppressed: u64,
    /// The one client address every hit of the window came from (`None`: unknown, or several).
    client: Option<IpAddr>,
}

#[derive(Default)]
struct AggShard {
    entries: HashMap<u64, Entry>,
    closed: Vec<Summary>,
}

/// The aggregation state: long-lived (the gateway keeps one across reloads), `Send + Sync`.
pub struct Aggregator {
    window: u64,
    per_shard: usize,
    hasher: RandomState,
    shards: Box<[Mutex<AggShard>]>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("window_secs", &(self.window / NANOS_PER_SEC))
            .field("max_entries", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator::new(DEFAULT_WINDOW_SECS, DEFAULT_MAX_ENTRIES)
    }
}

impl Aggregator {
    /// Windows of `window_secs` (at least 1), at most about `max_entries` keys (at least 8).
    pub fn new(window_secs: u64, max_entries: usize) -> Aggregator {
        Aggregator {
            window: window_secs.max(1).saturating_mul(NANOS_PER_SEC),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(AggShard::default())).collect(),
            dropped: AtomicU64::new(0),
        }
    }

    /// The window length.
    pub fn window_secs(&self) -> u64 {
        self.window / NANOS_PER_SEC
    }

    /// Records one hit of `key_hash` (any stable hash of the key; the limiter's) for the rule of
    /// `origin` at `now` (nanoseconds, the same clock as [`Aggregator::drain`]). `label` is only
    /// called for a key not tracked yet.
    pub fn hit(&self, origin: &Arc<Origin>, key_hash: u64, now: u64, label: impl FnOnce() -> String) -> Emit {
        self.hit_from(origin, key_hash, None, now, label)
    }

    /// [`Aggregator::hit`] for a hit from a known client address: the window's summary keeps the
    /// address when every suppressed hit came from it.
    pub fn hit_from(
        &self,
        origin: &Arc<Origin>,
        key_hash: u64,
        client: Option<IpAddr>,
        now: u64,
        label: impl FnOnce() -> String,
    ) -> Emit {
        let k = self.entry_key(&origin.rule_id, key_hash);
        let Some(shard) = self.shard_of(k) else { return Emit::First };
        let mut shard = shard.lock();
        let AggShard { entries, closed } = &mut *shard;
        if let Some(e) = entries.get_mut(&k) {
            return self.bump(e, origin, client, now, closed);
        }
        if entries.len() < self.per_shard {
            let label = truncate(label());
            entries.insert(k, Entry { origin: origin.clone(), label, window_start: now, suppressed: 0, client: None });
            return Emit::First;
        }
        // Full: count under the rule's overflow entry (which may exceed the bound by one per rule).
        let o = self.entry_key(&origin.rule_id, OVERFLOW_KEY);
        if let Some(e) = entries.get_mut(&o) {
            return self.bump(e, origin, client, now, closed);
        }
        entries.insert(
            o,
            Entry {
                origin: origin.clone(),
                label: OVERFLOW_LABEL.to_owned(),
                window_start: now,
                suppressed: 0,
                client: None,
            },
        );
        Emit::First
    }

    fn bump(
        &self,
        e: &mut Entry,
        origin: &Arc<Origin>,
        client: Option<IpAddr>,
        now: u64,
        closed: &mut Vec<Summary>,
    ) -> Emit {
        if now < e.window_start.saturating_add(self.window) {
            // The first suppressed hit names the client; a different one later un-names it.
            e.client = if e.suppressed == 0 { client } else { e.client.filter(|c| Some(*c) == client) };
            e.suppressed += 1;
            return Emit::Suppressed;
        }
        // The window closed before anyone drained it: keep its summary, start a new window.
        if e.suppressed > 0 {
            let s = self.summary(e);
            if closed.len() < self.per_shard {
                closed.push(s);
            } else {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
        e.origin = origin.clone();
        e.window_start = now;
        e.suppressed = 0;
        e.client = None;
        Emit::First
    }

    /// Summaries of every window closed by `now` that had suppressed hits; forgets every key
    /// whose window closed. Call it every second or so.
    pub fn drain(&self, now: u64) -> Vec<Summary> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            out.append(&mut shard.closed);
            shard.entries.retain(|_, e| {
                if now < e.window_start.saturating_add(self.window) {
                    return true;
                }
                if e.suppressed > 0 {
                    out.push(self.summary(e));
                }
                false
            });
        }
        out
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().entries.len()).sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Summaries dropped because nobody drained them in time (a metric).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// A keyed 64-bit hash for labels: shows that two events are about the same value without
    /// showing the value. The key is random per process, so a label cannot be brute-forced
    /// offline, nor compared across restarts.
    pub fn label_hash(&self, bytes: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(bytes);
        h.finish()
    }

    fn summary(&self, e: &Entry) -> Summary {
        Summary {
            origin: e.origin.clone(),
            key_label: e.label.clone(),
            count: e.suppressed,
            window_start: e.window_start,
            window_secs: self.window_secs(),
            client_ip: e.client,
        }
    }

    fn entry_key(&self, rule: &str, key_hash: u64) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(rule.as_bytes());
        h.write_u8(0xff);
        h.write_u64(key_hash);
        h.finish()
    }

    fn shard_of(&self, k: u64) -> Option<&Mutex<AggShard>> {
        usize::try_from(k % SHARDS as u64).ok().and_then(|i| self.shards.get(i))
    }
}

/// Labels are at most this long, in bytes.
pub const MAX_LABEL_LEN: usize = 200;

fn truncate(mut s: String) -> String {
    if s.len() > MAX_LABEL_LEN {
        let mut end = MAX_LABEL_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
