//! The event bus: inline counters, and one bounded queue + thread per sink.

use super::query::{summary_body, top_threats_body, EventQuery};
use super::sinks::{run, FileSink, Index, IndexSink, LogSink, Msg, SinkKind, SinkStats};
use super::store::{self, FileStore};
use super::window::{EventCounts, EventWindow, RequestWindow};
use super::{now_ms, EventsConfig, SecurityEvent};
use crate::metrics::{Declared, Def};
use parking_lot::{Mutex, RwLock};
use portcullis_rules::verdict::{EventType, Mode, Severity};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MODES: [Mode; 2] = [Mode::Enforce, Mode::Monitor];
const COUNTERS: usize = EventType::ALL.len() * Severity::ALL.len() * MODES.len();

fn counter_index(kind: EventType, severity: Severity, mode: Mode) -> usize {
    let m = match mode {
        Mode::Enforce => 0,
        Mode::Monitor => 1,
    };
    (kind.index() * Severity::ALL.len() + severity.index()) * MODES.len() + m
}

/// What the store held at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Events read from the JSONL files.
    pub read: u64,
    /// Of those, the newest kept in the in-memory index.
    pub kept: usize,
    /// Lines that did not parse and were skipped.
    pub skipped_lines: u64,
    /// Store paths that are not regular files (a FIFO, a directory) and were not read.
    pub skipped_files: u64,
}

/// Fans events out to the counters and the log, file and index sinks. Never blocks the emitter.
pub struct EventBus {
    cfg: EventsConfig,
    /// One queue per running sink.
    senders: Vec<(SinkKind, SyncSender<Msg>)>,
    /// Per-sink counters, indexed like [`SinkKind::ALL`].
    stats: [Arc<SinkStats>; 3],
    /// `portcullis_security_events_total` by (type, severity, mode).
    counters: Box<[AtomicU64]>,
    /// Test events by type.
    test_counters: [AtomicU64; EventType::ALL.len()],
    /// Per-minute counts for the summary.
    window: EventWindow,
    index: Arc<Index>,
    closed: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    loaded: LoadReport,
    /// Sees every event as it is emitted (the automatic blocks: `crate::autoblock`). Set once at
    /// start; must not block (it hands off to its own thread).
    tap: std::sync::OnceLock<Tap>,
}

/// A function that sees every event as it is emitted ([`EventBus::set_tap`]).
pub type Tap = Box<dyn Fn(&SecurityEvent) + Send + Sync>;

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("cfg", &self.cfg)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

const SECURITY_EVENTS_TOTAL: Def<3> = Def::counter(
    "portcullis_security_events_total",
    "Security events by type, severity and mode (test events included).",
    ["type", "severity", "mode"],
);
const SECURITY_TEST_EVENTS_TOTAL: Def<1> = Def::counter(
    "portcullis_security_test_events_total",
    "Synthetic events from POST /v1/safe-test, by type.",
    ["type"],
);
const EVENTS_DROPPED_TOTAL: Def<1> = Def::counter(
    "portcullis_events_dropped_total",
    "Security events a sink lost (queue full, write error, shut down).",
    ["sink"],
);
const EVENTS_WRITTEN_TOTAL: Def<1> = Def::counter(
    "portcullis_events_written_total",
    "Security events a sink handled (file: flushed to the OS).",
    ["sink"],
);
const EVENTS_STORE_SKIPPED_LINES: Def<0> = Def::gauge(
    "portcullis_events_store_skipped_lines",
    "Unparseable lines skipped when the events store was read at start.",
    [],
);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[
    &SECURITY_EVENTS_TOTAL,
    &SECURITY_TEST_EVENTS_TOTAL,
    &EVENTS_DROPPED_TOTAL,
    &EVENTS_WRITTEN_TOTAL,
    &EVENTS_STORE_SKIPPED_LINES,
];

impl EventBus {
    /// Creates `cfg.dir`, re-reads the JSONL store (rotated files oldest first, then the current
    /// one) keeping the newest `memory_events` in the index and counting every event into the
    /// summary window, skipping unparseable lines and non-regular files (one warning), checks that
    /// the store is writable, then starts one thread per sink.
    pub fn start(cfg: EventsConfig) -> std::io::Result<Arc<EventBus>> {
        std::fs::create_dir_all(&cfg.dir)?;
        let window = EventWindow::new();
        let loaded = store::load(&cfg.dir, cfg.memory_events, |ev| {
            window.record(ev.unix_ms(), ev.kind, ev.severity, ev.test, ev.hits());
        })?;
        let report = LoadReport {
            read: loaded.read,
            kept: loaded.events.len(),
            skipped_lines: loaded.skipped_lines,
            skipped_files: loaded.skipped_files,
        };
        if report.skipped_lines > 0 || report.skipped_files > 0 {
            tracing::warn!(
                target: "portcullis::security",
                {
                    event.kind = "event",
                    event.action = "events_store_loaded",
                    events.read = report.read,
                    events.skipped_lines = report.skipped_lines,
                    events.skipped_files = report.skipped_files,
                    dir = %cfg.dir.display(),
                },
                "security events store: skipped unparseable lines or non-regular files"
            );
        }

        let mut file_store = FileStore::new(cfg.dir.clone(), cfg.max_file_bytes, cfg.max_files);
        file_store.open_if_regular()?;
        let mut file_store = Some(file_store);

        let index =
            Arc::new(Index { ring: RwLock::new(trim(loaded.events, cfg.memory_events)), capacity: cfg.memory_events });
        let stats: [Arc<SinkStats>; 3] = Default::default();
        let cap = cfg.queue_capacity.max(1);
        let mut senders = Vec::with_capacity(3);
        let mut threads = Vec::with_capacity(3);
        for kind in SinkKind::ALL {
            if kind == SinkKind::Log && !cfg.log {
                continue;
            }
            let (tx, rx) = sync_channel::<Msg>(cap);
            let st = stats[kind as usize].clone();
            let builder = std::thread::Builder::new().name(format!("events-{}", kind.as_str()));
            let handle = match kind {
                SinkKind::Log => builder.spawn(move || run(&rx, &mut LogSink { stats: st }))?,
                SinkKind::Index => {
                    let index = index.clone();
                    builder.spawn(move || run(&rx, &mut IndexSink { index, stats: st }))?
                }
                SinkKind::File => {
                    let Some(fs) = file_store.take() else { continue };
                    builder.spawn(move || run(&rx, &mut FileSink::new(fs, st)))?
                }
            };
            senders.push((kind, tx));
            threads.push(handle);
        }

        Ok(Arc::new(EventBus {
            cfg,
            senders,
            stats,
            counters: (0..COUNTERS).map(|_| AtomicU64::new(0)).collect(),
            test_counters: Default::default(),
            window,
            index,
            closed: AtomicBool::new(false),
            threads: Mutex::new(threads),
            loaded: report,
            tap: std::sync::OnceLock::new(),
        }))
    }

    /// The configuration the bus runs with.
    pub fn config(&self) -> &EventsConfig {
        &self.cfg
    }

    /// What the store held at start.
    pub fn load_report(&self) -> LoadReport {
        self.loaded
    }

    /// Publishes an event. Never blocks and never does I/O: counts it (atomics), then offers it
    /// to each sink's bounded queue; a full queue drops it for that sink and counts the drop.
    /// After [`EventBus::shutdown`] every sink counts it as dropped.
    pub fn emit(&self, ev: SecurityEvent) {
        if self.closed.load(Ordering::Acquire) {
            for s in &self.stats {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if let Some(c) = self.counters.get(counter_index(ev.kind, ev.severity, ev.mode)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if ev.test {
            if let Some(c) = self.test_counters.get(ev.kind.index()) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.window.record(ev.unix_ms(), ev.kind, ev.severity, ev.test, ev.hits());
        if let Some(tap) = self.tap.get() {
            tap(&ev);
        }
        let ev = Arc::new(ev);
        for (kind, tx) in &self.senders {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(Msg::Event(ev.clone())) {
                self.stat(*kind).dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Installs the tap (once; `false` when one is already set).
    pub fn set_tap(&self, tap: Tap) -> bool {
        self.tap.set(tap).is_ok()
    }

    fn stat(&self, kind: SinkKind) -> &SinkStats {
        &self.stats[kind as usize]
    }

    /// Events the sink (`log`, `file` or `index`) has dropped so far.
    pub fn dropped_total(&self, sink: &str) -> Option<u64> {
        SinkKind::ALL.iter().find(|k| k.as_str() == sink).map(|k| self.stat(*k).dropped.load(Ordering::Relaxed))
    }

    /// Events the sink (`log`, `file` or `index`) has handled so far (file: flushed to the OS).
    pub fn written_total(&self, sink: &str) -> Option<u64> {
        SinkKind::ALL.iter().find(|k| k.as_str() == sink).map(|k| self.stat(*k).written.load(Ordering::Relaxed))
    }

    /// Events in the index matching `q` within its window, newest first, at most `q.limit`.
    pub fn query(&self, q: &EventQuery) -> Vec<Arc<SecurityEvent>> {
        self.query_at(now_ms(), q)
    }

    pub(crate) fn query_at(&self, now_ms: i64, q: &EventQuery) -> Vec<Arc<SecurityEvent>> {
        let cutoff = now_ms - i64::from(q.hours) * 3_600_000;
        let ring = self.index.ring.read();
        ring.iter().rev().filter(|e| e.unix_ms() >= cutoff && q.matches(e)).take(q.limit).cloned().collect()
    }

    /// The body of `GET /v1/summary?hours=`: event counts by type and severity (test events
    /// apart), request totals and 5xx rate from `window`, the health score and its band. Counts
    /// come from per-minute counters covering at most 168 hours, exact however many events the
    /// index holds.
    pub fn summary(&self, hours: u32, window: &RequestWindow) -> serde_json::Value {
        self.summary_at(now_ms(), hours, window)
    }

    pub(crate) fn summary_at(&self, now_ms: i64, hours: u32, window: &RequestWindow) -> serde_json::Value {
        let counts = self.window.counts_at(now_ms, hours);
        summary_body(now_ms, hours, &counts, &window.totals_at(now_ms, hours))
    }

    /// Event counts (by type and severity, hits by type) over the last `minutes`, from the exact
    /// per-minute counters: what the alert rules and the health score read.
    pub(crate) fn counts_minutes(&self, now_ms: i64, minutes: u32) -> EventCounts {
        self.window.counts_minutes_at(now_ms, minutes)
    }

    /// Hits of the stored events since `cutoff_ms` that `keep` accepts (test events excluded),
    /// and whether the index still reaches back that far. For alert rules that filter by
    /// severity, tenant or route (the per-minute counters only split by type and severity).
    pub(crate) fn hits_since(&self, cutoff_ms: i64, keep: impl Fn(&SecurityEvent) -> bool) -> (u64, bool) {
        let ring = self.index.ring.read();
        let complete = ring.len() < self.index.capacity || ring.front().is_some_and(|e| e.unix_ms() < cutoff_ms);
        let n = ring
            .iter()
            .rev()
            .take_while(|e| e.unix_ms() >= cutoff_ms)
            .filter(|e| !e.test && keep(e))
            .map(|e| e.hits())
            .sum();
        (n, complete)
    }

    /// The body of `GET /v1/top-threats?hours=&limit=`: client IPs and subjects ranked by
    /// events (then most recent), with their types; test events excluded. Read from the
    /// in-memory index; `complete: false` says the index no longer reaches back to the window's
    /// start.
    pub fn top_threats(&self, hours: u32, limit: usize) -> serde_json::Value {
        self.top_threats_at(now_ms(), hours, limit)
    }

    pub(crate) fn top_threats_at(&self, now_ms: i64, hours: u32, limit: usize) -> serde_json::Value {
        let cutoff = now_ms - i64::from(hours) * 3_600_000;
        let (events, complete) = {
            let ring = self.index.ring.read();
            let complete = ring.len() < self.index.capacity || ring.front().is_some_and(|e| e.unix_ms() < cutoff);
            let events: Vec<Arc<SecurityEvent>> = ring.iter().filter(|e| e.unix_ms() >= cutoff).cloned().collect();
            (events, complete)
        };
        top_threats_body(now_ms, hours, limit, &events, complete)
    }

    /// Appends the pipeline's Prometheus text: events by type, severity and mode (every
    /// non-zero series, and every type at its default severity and `enforce` even at 0), test
    /// events by type, and per-sink written and dropped counts.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&SECURITY_EVENTS_TOTAL);
        for kind in EventType::ALL {
            for sev in Severity::ALL.iter().rev() {
                for mode in MODES {
                    let v = self.counters.get(counter_index(kind, *sev, mode)).map_or(0, |c| c.load(Ordering::Relaxed));
                    let always = *sev == kind.default_severity() && mode == Mode::Enforce;
                    if v > 0 || always {
                        f.sample([kind.as_str(), sev.as_str(), mode.as_str()], v);
                    }
                }
            }
        }
        let mut f = out.family(&SECURITY_TEST_EVENTS_TOTAL);
        for kind in EventType::ALL {
            f.sample([kind.as_str()], self.test_counters.get(kind.index()).map_or(0, |c| c.load(Ordering::Relaxed)));
        }
        let mut f = out.family(&EVENTS_DROPPED_TOTAL);
        for k in SinkKind::ALL {
            f.sample([k.as_str()], self.stat(k).dropped.load(Ordering::Relaxed));
        }
        let mut f = out.family(&EVENTS_WRITTEN_TOTAL);
        for k in SinkKind::ALL {
            f.sample([k.as_str()], self.stat(k).written.load(Ordering::Relaxed));
        }
        out.family(&EVENTS_STORE_SKIPPED_LINES).sample([], self.loaded.skipped_lines);
    }

    /// Waits until every event emitted before the call has been handled by every sink and the
    /// file is flushed to the OS. False on timeout (a stuck sink) or when a sink thread is gone
    /// while the bus is still open. Not for the request path: it sleeps while a queue is full.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = sync_channel::<()>(self.senders.len());
        let mut expected = 0;
        for (_, s) in &self.senders {
            match send_until(s, || Msg::Flush(tx.clone()), deadline) {
                Sent::Yes => expected += 1,
                Sent::Gone => {
                    if !self.closed.load(Ordering::Acquire) {
                        return false;
                    }
                }
                Sent::TimedOut => return false,
            }
        }
        drop(tx);
        (0..expected).all(|_| rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok())
    }

    /// Stops accepting events (later emits are dropped and counted), lets every sink drain its
    /// queue and flush, and joins the sink threads. A sink still busy at the deadline is left
    /// to finish on its own. Idempotent.
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.closed.store(true, Ordering::Release);
        for (_, s) in &self.senders {
            let _ = send_until(s, || Msg::Stop, deadline);
        }
        let mut threads = self.threads.lock();
        loop {
            let (done, busy): (Vec<_>, Vec<_>) = threads.drain(..).partition(JoinHandle::is_finished);
            for t in done {
                let _ = t.join();
            }
            *threads = busy;
            if threads.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn trim(mut events: VecDeque<Arc<SecurityEvent>>, keep: usize) -> VecDeque<Arc<SecurityEvent>> {
    while events.len() > keep {
        events.pop_front();
    }
    events
}

enum Sent {
    Yes,
    Gone,
    TimedOut,
}

/// Offers a control message until it fits in the queue or the deadline passes.
fn send_until(tx: &SyncSender<Msg>, msg: impl Fn() -> Msg, deadline: Instant) -> Sent {
    loop {
        match tx.try_send(msg()) {
            Ok(()) => return Sent::Yes,
            Err(TrySendError::Disconnected(_)) => return Sent::Gone,
            Err(TrySendError::Full(_)) => {
                if Instant::now() >= deadline {
                    return Sent::TimedOut;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
