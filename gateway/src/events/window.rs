//! Per-minute rings of counters for the last 7 days: no lock, no allocation on record.
//!
//! Each counter is one `AtomicU64` holding the minute it counts (high 32 bits, minutes since the
//! Unix epoch) and the count (low 32 bits, saturating). Recording compares-and-swaps the word: a
//! word tagged with an older minute is restarted at 1, one tagged with a newer minute (a late
//! record for a slot already reused) is left alone. Reading sums the words whose tag lies in the
//! window, so a slot never reports another week's counts.

use portcullis_rules::verdict::{EventType, Severity};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Minutes kept: 7 days.
pub(crate) const MINUTES: usize = 7 * 24 * 60;
/// Longest window answered, in hours.
pub(crate) const MAX_HOURS: u32 = 7 * 24;

const COUNT_MASK: u64 = 0xFFFF_FFFF;

/// Minutes since the Unix epoch for `unix_ms` (0 before the epoch).
pub(crate) fn minute_of(unix_ms: i64) -> u32 {
    u32::try_from(unix_ms.max(0) / 60_000).unwrap_or(u32::MAX)
}

fn slot_of(minute: u32) -> usize {
    usize::try_from(minute).unwrap_or(0) % MINUTES
}

/// Adds one to a tagged word for `minute`.
fn bump(word: &AtomicU64, minute: u32) {
    add(word, minute, 1);
}

/// Adds `n` (saturating at the count's 32 bits) to a tagged word for `minute`.
fn add(word: &AtomicU64, minute: u32, n: u64) {
    if n == 0 {
        return;
    }
    let m = u64::from(minute);
    let n = n.min(COUNT_MASK);
    let mut cur = word.load(Relaxed);
    loop {
        let tag = cur >> 32;
        let new = if tag == m {
            if cur & COUNT_MASK == COUNT_MASK {
                return; // saturated
            }
            (m << 32) | ((cur & COUNT_MASK) + n).min(COUNT_MASK)
        } else if tag < m {
            (m << 32) | n
        } else {
            return; // the slot already counts a later minute
        };
        match word.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// The count of a tagged word when its minute lies in `lo..=hi`.
fn read(word: &AtomicU64, lo: u32, hi: u32) -> u64 {
    let w = word.load(Relaxed);
    let tag = w >> 32;
    if tag >= u64::from(lo) && tag <= u64::from(hi) {
        w & COUNT_MASK
    } else {
        0
    }
}

/// The minutes `lo..=hi` of a window of `hours` (capped at 7 days) ending in `now_minute`.
fn span(now_minute: u32, hours: u32) -> (u32, u32) {
    span_minutes(now_minute, hours.clamp(1, MAX_HOURS) * 60)
}

/// The minutes `lo..=hi` of a window of `minutes` (1 to 7 days) ending in `now_minute`.
fn span_minutes(now_minute: u32, minutes: u32) -> (u32, u32) {
    let minutes = minutes.clamp(1, MAX_HOURS * 60);
    (now_minute.saturating_sub(minutes - 1), now_minute)
}

/// Upper bounds (milliseconds) of the per-minute latency buckets: the alert rules' p99. The last
/// bucket is everything slower.
pub const LATENCY_BOUNDS_MS: [u64; 13] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];
/// The p99 reported when it lies beyond the last bound.
pub const LATENCY_OVER_MS: u64 = 120_000;
const LAT_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// Columns of a request slot: requests, every 5xx, failed 5xx, then the latency buckets.
const REQ_COLS: usize = 3 + LAT_BUCKETS;

/// What one finished request adds to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The status sent (0 or 499 when none was).
    pub status: u16,
    /// A failure to serve (see `DenyCode::is_failure`): an upstream 5xx, an unreachable or timed
    /// out upstream, the gateway's own failure. The gateway's deliberate 5xx answers are not.
    pub failure: bool,
    /// How long the request took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Request totals over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    /// Every finished request.
    pub requests: u64,
    /// Every 5xx response, deliberate or not.
    pub responses_5xx: u64,
    /// Failed responses: what the 5xx rate, the health score and the 5xx alarms count.
    pub failures: u64,
    /// Requests per latency bucket ([`LATENCY_BOUNDS_MS`], then the rest).
    pub latency: [u64; LAT_BUCKETS],
}

impl RequestTotals {
    /// Failures as a percentage of requests (0 with no request).
    pub fn failure_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            (self.failures as f64 * 100.0 / self.requests as f64).min(100.0)
        }
    }

    /// The gateway's deliberate 5xx answers (maintenance, channel off, response blocked, ...).
    pub fn deliberate_5xx(&self) -> u64 {
        self.responses_5xx.saturating_sub(self.failures)
    }

    /// The p99 duration in milliseconds: the upper bound of the bucket the 99th percentile falls
    /// in (`None` with no request).
    pub fn p99_ms(&self) -> Option<u64> {
        let n: u64 = self.latency.iter().sum();
        if n == 0 {
            return None;
        }
        // The smallest bucket bound with at least 99 % of requests at or under it.
        let need = n - n / 100;
        let mut seen = 0;
        for (i, c) in self.latency.iter().enumerate() {
            seen += c;
            if seen >= need {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(LATENCY_OVER_MS));
            }
        }
        Some(LATENCY_OVER_MS)
    }
}

fn latency_bucket(ms: u64) -> usize {
    LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// Per-minute request, 5xx, failure and latency counts for the last 7 days, for the summary's 5xx
/// rate, the health score and the alert rules. Recording is a few compare-and-swaps: no lock, no
/// allocation.
pub struct RequestWindow {
    /// [`REQ_COLS`] counters per minute slot.
    slots: Box<[[AtomicU64; REQ_COLS]]>,
}

impl Default for RequestWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RequestWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.totals(1);
        f.debug_struct("RequestWindow")
            .field("last_hour_requests", &t.requests)
            .field("last_hour_failures", &t.failures)
            .finish()
    }
}

impl RequestWindow {
    /// An empty window covering 7 days (one allocation of about 1.3 MiB).
    pub fn new() -> Self {
        Self { slots: (0..MINUTES).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect() }
    }

    /// Counts a finished request.
    pub fn record(&self, done: Finished) {
        self.record_at(super::now_ms(), done);
    }

    pub(crate) fn record_at(&self, unix_ms: i64, done: Finished) {
        let minute = minute_of(unix_ms);
        let Some(slot) = self.slots.get(slot_of(minute)) else { return };
        let mut cols = [Some(0), None, None, Some(3 + latency_bucket(done.elapsed_ms))];
        if (500..600).contains(&done.status) {
            cols[1] = Some(1);
            if done.failure {
                cols[2] = Some(2);
            }
        }
        for c in cols.into_iter().flatten() {
            if let Some(w) = slot.get(c) {
                bump(w, minute);
            }
        }
    }

    /// Totals over the last `hours` (at minute resolution, capped at 168).
    pub fn totals(&self, hours: u32) -> RequestTotals {
        self.totals_at(super::now_ms(), hours)
    }

    pub(crate) fn totals_at(&self, now_ms: i64, hours: u32) -> RequestTotals {
        let (lo, hi) = span(minute_of(now_ms), hours);
        self.sum(lo, hi)
    }

    /// Totals over the last `minutes` (1 to 7 days), for the alert rules' windows.
    pub fn totals_minutes_at(&self, now_ms: i64, minutes: u32) -> RequestTotals {
        let (lo, hi) = span_minutes(minute_of(now_ms), minutes);
        self.sum(lo, hi)
    }

    fn sum(&self, lo: u32, hi: u32) -> RequestTotals {
        let mut t = RequestTotals::default();
        for s in self.slots.iter() {
            let v = |c: usize| s.get(c).map_or(0, |w| read(w, lo, hi));
            t.requests += v(0);
            t.responses_5xx += v(1);
            t.failures += v(2);
            for (i, dst) in t.latency.iter_mut().enumerate() {
                *dst += v(3 + i);
            }
        }
        t
    }
}

/// Columns of an event slot: one per (type, severity), test events, then hits per type.
const TS_COLS: usize = EventType::ALL.len() * Severity::ALL.len();
const TEST_COL: usize = TS_COLS;
const HITS_COL: usize = TS_COLS + 1;
const EVENT_COLS: usize = HITS_COL + EventType::ALL.len();

/// Per-minute event counts by type and severity (test events apart) for the last 7 days, so the
/// summary and health score stay exact however many events the in-memory index has evicted.
pub(crate) struct EventWindow {
    slots: Box<[[AtomicU64; EVENT_COLS]]>,
}

/// Event counts over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventCounts {
    /// `[type][severity]`, test events excluded.
    pub by_type_severity: [[u64; 3]; EventType::ALL.len()],
    /// Test events (`test: true`).
    pub test: u64,
    /// Hits per type, test events excluded: an aggregated summary event counts the refusals it
    /// stands for (see `SecurityEvent::hits`).
    pub hits: [u64; EventType::ALL.len()],
}

impl EventCounts {
    pub fn by_type(&self, kind: EventType) -> u64 {
        self.by_type_severity.get(kind.index()).map_or(0, |r| r.iter().sum())
    }

    pub fn by_severity(&self, sev: Severity) -> u64 {
        self.by_type_severity.iter().filter_map(|r| r.get(sev.index())).sum()
    }

    pub fn total(&self) -> u64 {
        self.by_type_severity.iter().flatten().sum()
    }

    pub fn hits(&self, kind: EventType) -> u64 {
        self.hits.get(kind.index()).copied().unwrap_or(0)
    }

    /// Events by severity, of the types that count in the health score.
    pub fn health_inputs(&self, sev: Severity) -> u64 {
        EventType::ALL
            .iter()
            .filter(|t| t.counts_in_health())
            .filter_map(|t| self.by_type_severity.get(t.index()).and_then(|r| r.get(sev.index())))
            .sum()
    }
}

impl EventWindow {
    /// About 3 MiB, allocated once.
    pub fn new() -> Self {
        Self { slots: (0..MINUTES).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect() }
    }

    pub fn record(&self, unix_ms: i64, kind: EventType, severity: Severity, test: bool, hits: u64) {
        let minute = minute_of(unix_ms);
        let Some(slot) = self.slots.get(slot_of(minute)) else { return };
        let col = if test { TEST_COL } else { kind.index() * Severity::ALL.len() + severity.index() };
        if let Some(w) = slot.get(col) {
            bump(w, minute);
        }
        if !test {
            if let Some(w) = slot.get(HITS_COL + kind.index()) {
                add(w, minute, hits);
            }
        }
    }

    pub fn counts_at(&self, now_ms: i64, hours: u32) -> EventCounts {
        let (lo, hi) = span(minute_of(now_ms), hours);
        self.counts_between(lo, hi)
    }

    /// Counts over the last `minutes` (1 to 7 days), for the alert rules' windows.
    pub fn counts_minutes_at(&self, now_ms: i64, minutes: u32) -> EventCounts {
        let (lo, hi) = span_minutes(minute_of(now_ms), minutes);
        self.counts_between(lo, hi)
    }

    fn counts_between(&self, lo: u32, hi: u32) -> EventCounts {
        let mut c = EventCounts::default();
        for s in self.slots.iter() {
            for kind in EventType::ALL {
                for sev in Severity::ALL {
                    let col = kind.index() * Severity::ALL.len() + sev.index();
                    if let (Some(w), Some(dst)) =
                        (s.get(col), c.by_type_severity.get_mut(kind.index()).and_then(|r| r.get_mut(sev.index())))
                    {
                        *dst += read(w, lo, hi);
                    }
                }
            }
            if let Some(w) = s.get(TEST_COL) {
                c.test += read(w, lo, hi);
            }
            for (i, dst) in c.hits.iter_mut().enumerate() {
                if let Some(w) = s.get(HITS_COL + i) {
                    *dst += read(w, lo, hi);
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests;
