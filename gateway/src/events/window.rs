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
    let m = u64::from(minute);
    let mut cur = word.load(Relaxed);
    loop {
        let tag = cur >> 32;
        let new = if tag == m {
            if cur & COUNT_MASK == COUNT_MASK {
                return; // saturated
            }
            cur + 1
        } else if tag < m {
            (m << 32) | 1
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
    let minutes = hours.clamp(1, MAX_HOURS) * 60;
    (now_minute.saturating_sub(minutes - 1), now_minute)
}

/// Per-minute request and 5xx counts for the last 7 days, for the summary's 5xx rate and the
/// health score. Recording is two compare-and-swaps at most: no lock, no allocation.
pub struct RequestWindow {
    /// `[requests, 5xx]` per minute slot.
    slots: Box<[[AtomicU64; 2]]>,
}

impl Default for RequestWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RequestWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (r, e) = self.totals(1);
        f.debug_struct("RequestWindow").field("last_hour_requests", &r).field("last_hour_5xx", &e).finish()
    }
}

impl RequestWindow {
    /// An empty window covering 7 days (one allocation of about 160 KiB).
    pub fn new() -> Self {
        Self { slots: (0..MINUTES).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect() }
    }

    /// Counts a finished request with its response status (0 when none was sent).
    pub fn record(&self, status: u16) {
        self.record_at(super::now_ms(), status);
    }

    pub(crate) fn record_at(&self, unix_ms: i64, status: u16) {
        let minute = minute_of(unix_ms);
        if let Some(slot) = self.slots.get(slot_of(minute)) {
            bump(&slot[0], minute);
            if (500..600).contains(&status) {
                bump(&slot[1], minute);
            }
        }
    }

    /// `(requests, 5xx responses)` over the last `hours` (at minute resolution, capped at 168).
    pub fn totals(&self, hours: u32) -> (u64, u64) {
        self.totals_at(super::now_ms(), hours)
    }

    pub(crate) fn totals_at(&self, now_ms: i64, hours: u32) -> (u64, u64) {
        let (lo, hi) = span(minute_of(now_ms), hours);
        self.slots.iter().fold((0, 0), |(r, e), s| (r + read(&s[0], lo, hi), e + read(&s[1], lo, hi)))
    }
}

/// Columns of an event slot: one per (type, severity), then test events.
const EVENT_COLS: usize = EventType::ALL.len() * Severity::ALL.len() + 1;
const TEST_COL: usize = EVENT_COLS - 1;

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
}

impl EventWindow {
    /// About 3 MiB, allocated once.
    pub fn new() -> Self {
        Self { slots: (0..MINUTES).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect() }
    }

    pub fn record(&self, unix_ms: i64, kind: EventType, severity: Severity, test: bool) {
        let minute = minute_of(unix_ms);
        let col = if test { TEST_COL } else { kind.index() * Severity::ALL.len() + severity.index() };
        if let Some(w) = self.slots.get(slot_of(minute)).and_then(|s| s.get(col)) {
            bump(w, minute);
        }
    }

    pub fn counts_at(&self, now_ms: i64, hours: u32) -> EventCounts {
        let (lo, hi) = span(minute_of(now_ms), hours);
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
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_769_796_000_000; // 2026-01-30T18:00:00Z

    #[test]
    fn counts_requests_and_5xx_per_window() {
        let w = RequestWindow::new();
        for status in [200, 404, 500, 503, 502, 0, 599, 600] {
            w.record_at(T0, status);
        }
        assert_eq!(w.totals_at(T0, 1), (8, 4));
        // Two hours earlier: in a 3-hour window, not in a 1-hour one.
        w.record_at(T0 - 2 * 3_600_000, 500);
        assert_eq!(w.totals_at(T0, 1), (8, 4));
        assert_eq!(w.totals_at(T0, 3), (9, 5));
        // 59 minutes earlier is inside the hour, 60 minutes earlier is not.
        w.record_at(T0 - 59 * 60_000, 200);
        w.record_at(T0 - 60 * 60_000, 200);
        assert_eq!(w.totals_at(T0, 1), (9, 4));
    }

    #[test]
    fn a_reused_slot_forgets_last_week_and_caps_at_seven_days() {
        let w = RequestWindow::new();
        let week = 7 * 24 * 3_600_000;
        w.record_at(T0 - week, 500);
        assert_eq!(w.totals_at(T0 - week, 1), (1, 1));
        // Same slot, one week later: the old count is gone.
        w.record_at(T0, 200);
        assert_eq!(w.totals_at(T0, 1), (1, 0));
        assert_eq!(w.totals_at(T0, 10_000), (1, 0));
        // A late record for the older minute does not disturb the newer one.
        w.record_at(T0 - week, 500);
        assert_eq!(w.totals_at(T0, 168), (1, 0));
        // The oldest minute of a 168-hour window still counts.
        let w = RequestWindow::new();
        w.record_at(T0 - week + 60_000, 200);
        assert_eq!(w.totals_at(T0, 168), (1, 0));
        assert_eq!(w.totals_at(T0, 500), (1, 0));
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let w = std::sync::Arc::new(RequestWindow::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.record_at(T0, if i % 10 == 0 { 500 } else { 200 });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.totals_at(T0, 1), (40_000, 4_000));
    }

    #[test]
    fn event_window_counts_by_type_and_severity_and_tests_apart() {
        let w = EventWindow::new();
        w.record(T0, EventType::AuthFailure, Severity::Warning, false);
        w.record(T0, EventType::AuthFailure, Severity::Critical, false);
        w.record(T0 - 30 * 60_000, EventType::CrossTenantAttempt, Severity::Critical, false);
        w.record(T0, EventType::CrossTenantAttempt, Severity::Critical, true);
        w.record(T0 - 5 * 3_600_000, EventType::RateLimitHit, Severity::Info, false);
        let c = w.counts_at(T0, 1);
        assert_eq!(c.total(), 3);
        assert_eq!(c.test, 1);
        assert_eq!(c.by_type(EventType::AuthFailure), 2);
        assert_eq!(c.by_type(EventType::CrossTenantAttempt), 1);
        assert_eq!(c.by_severity(Severity::Critical), 2);
        assert_eq!(c.by_severity(Severity::Info), 0);
        assert_eq!(w.counts_at(T0, 6).by_severity(Severity::Info), 1);
    }
}
