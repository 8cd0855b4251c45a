//! The sinks: each a bounded queue drained by its own thread.

use super::store::FileStore;
use super::SecurityEvent;
use parking_lot::RwLock;
use portcullis_rules::verdict::Severity;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What travels on a sink's queue.
pub(crate) enum Msg {
    /// An event to handle.
    Event(Arc<SecurityEvent>),
    /// Make everything before this durable (file: flushed to the OS), then answer.
    Flush(SyncSender<()>),
    /// Handle what is queued, flush, and end the thread.
    Stop,
}

/// The sinks, in the order of their counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkKind {
    Log,
    File,
    Index,
}

impl SinkKind {
    pub const ALL: [SinkKind; 3] = [SinkKind::Log, SinkKind::File, SinkKind::Index];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::File => "file",
            Self::Index => "index",
        }
    }
}

/// A sink's counters.
#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    /// Events the sink handled successfully (file: flushed to the OS).
    pub written: AtomicU64,
    /// Events lost to this sink: queue full, bus shut down, or a write error.
    pub dropped: AtomicU64,
}

/// The in-memory index the query functions read.
pub(crate) struct Index {
    pub ring: RwLock<VecDeque<Arc<SecurityEvent>>>,
    pub capacity: usize,
}

/// A sink's work, driven by [`run`] on its own thread.
pub(crate) trait Sink {
    /// Handles a batch of events, in queue order.
    fn handle(&mut self, batch: Vec<Arc<SecurityEvent>>);
    /// Called whenever the queue is momentarily empty, before answering a `Flush`, and at the
    /// end: the file sink flushes here.
    fn idle(&mut self) {}
}

/// Longest batch handed to a sink at once.
const BATCH: usize = 256;

/// Receives until the queue disconnects or a `Stop` arrives, handing events to the sink in
/// batches and calling `idle` whenever the queue is momentarily empty.
pub(crate) fn run(rx: &Receiver<Msg>, sink: &mut impl Sink) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else { break };
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Event(ev) => {
                    batch.push(ev);
                    if batch.len() >= BATCH {
                        sink.handle(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    }
                }
                Msg::Flush(reply) => {
                    // Everything queued before the marker is in `batch` or handled already.
                    sink.handle(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    sink.idle();
                    let _ = reply.try_send(());
                }
                Msg::Stop => stop = true,
            }
            next = rx.try_recv().ok();
        }
        sink.handle(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
        sink.idle();
    }
    // Stopped: whatever raced in behind the marker is still handled.
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Event(ev) => batch.push(ev),
            Msg::Flush(reply) => {
                let _ = reply.try_send(());
            }
            Msg::Stop => {}
        }
    }
    sink.handle(batch);
    sink.idle();
}

/// The index sink: appends to the ring under a brief write lock, evicting the oldest.
pub(crate) struct IndexSink {
    pub index: Arc<Index>,
    pub stats: Arc<SinkStats>,
}

impl Sink for IndexSink {
    fn handle(&mut self, batch: Vec<Arc<SecurityEvent>>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let cap = self.index.capacity;
        {
            let mut ring = self.index.ring.write();
            for ev in batch {
                if cap == 0 {
                    break;
                }
                if ring.len() >= cap {
                    ring.pop_front();
                }
                ring.push_back(ev);
            }
        }
        self.stats.written.fetch_add(n, Relaxed);
    }
}

/// Logs an error at most once a minute, with how many were suppressed since.
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn error(&mut self, what: &str, err: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
            self.suppressed += 1;
            return;
        }
        tracing::error!(
            target: "portcullis::security",
            {
                event.kind = "event",
                event.action = "events_store_error",
                error.message = %err,
                suppressed = self.suppressed,
            },
            "security events file: {what} failed; the events are counted as dropped"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// The file sink: one JSON line per event, flushed whenever the queue is momentarily empty.
/// `written` counts lines flushed to the OS; a failed write or flush counts the lines it lost
/// as dropped, and the file is reopened on the next event.
pub(crate) struct FileSink {
    store: FileStore,
    stats: Arc<SinkStats>,
    /// Lines appended since the last successful flush.
    pending: u64,
    errors: RateLimitedLog,
    line: Vec<u8>,
}

impl FileSink {
    pub fn new(store: FileStore, stats: Arc<SinkStats>) -> Self {
        Self { store, stats, pending: 0, errors: RateLimitedLog { last: None, suppressed: 0 }, line: Vec::new() }
    }
}

impl Sink for FileSink {
    fn handle(&mut self, batch: Vec<Arc<SecurityEvent>>) {
        for ev in batch {
            self.line.clear();
            if let Err(e) = serde_json::to_writer(&mut self.line, &*ev) {
                self.stats.dropped.fetch_add(1, Relaxed);
                self.errors.error("serialize", &e);
                continue;
            }
            match self.store.append(&self.line) {
                Ok(()) => self.pending += 1,
                Err(e) => {
                    // The buffered lines were discarded with the writer.
                    self.stats.dropped.fetch_add(std::mem::take(&mut self.pending) + 1, Relaxed);
                    self.errors.error("write", &e);
                }
            }
        }
    }

    fn idle(&mut self) {
        match self.store.flush() {
            Ok(()) => {
                self.stats.written.fetch_add(std::mem::take(&mut self.pending), Relaxed);
            }
            Err(e) => {
                self.stats.dropped.fetch_add(std::mem::take(&mut self.pending), Relaxed);
                self.errors.error("flush", &e);
            }
        }
    }
}

/// ECS `event.severity`: info 1, warning 2, critical 3.
pub(crate) const fn ecs_severity(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Warning => 2,
        Severity::Critical => 3,
    }
}

/// The log sink: one ECS-style JSON line per event (warn for warning and critical, info
/// otherwise), target `portcullis::security`.
pub(crate) struct LogSink {
    pub stats: Arc<SinkStats>,
}

impl Sink for LogSink {
    fn handle(&mut self, batch: Vec<Arc<SecurityEvent>>) {
        let n = batch.len() as u64;
        for ev in batch {
            log_event(&ev);
        }
        self.stats.written.fetch_add(n, Relaxed);
    }
}

macro_rules! security_log {
    ($level:ident, $ev:expr, $detail:expr) => {
        tracing::$level!(
            target: "portcullis::security",
            {
                event.kind = "alert",
                event.category = "intrusion_detection",
                event.action = $ev.kind.as_str(),
                event.id = $ev.id.as_str(),
                event.created = $ev.time.as_str(),
                event.severity = ecs_severity($ev.severity),
                portcullis.severity = $ev.severity.as_str(),
                portcullis.mode = $ev.mode.as_str(),
                portcullis.action = $ev.action.as_str(),
                rule.id = $ev.rule_id.as_deref(),
                rule.ruleset = $ev.rules_version.as_deref(),
                source.ip = $ev.client_ip.as_deref(),
                http.request.id = $ev.request_id.as_deref(),
                http.request.method = $ev.method.as_deref(),
                url.path = $ev.path.as_deref(),
                route = $ev.route.as_deref(),
                channel = $ev.channel.as_deref(),
                tenant = $ev.tenant.as_deref(),
                target_tenant = $ev.target_tenant.as_deref(),
                user.id = $ev.subject.as_deref(),
                portcullis.test = $ev.test,
                portcullis.detail = $detail.as_str(),
            },
            "security event"
        )
    };
}

fn log_event(ev: &SecurityEvent) {
    let detail = serde_json::to_string(&ev.detail).unwrap_or_else(|_| "{}".to_owned());
    if ev.severity >= Severity::Warning {
        security_log!(warn, ev, detail);
    } else {
        security_log!(info, ev, detail);
    }
}

#[cfg(test)]
mod tests;
