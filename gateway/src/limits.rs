//! Rate-limit and quota state that outlives rule snapshots: the clock origin, the event
//! aggregator shared by both, and the quota book with its persistence
//! (`state_dir/quotas.json`). (Limiter buckets live in the compiled rules and are carried over by
//! the reload.)
//!
//! Quota counters are written by the `limits` background service once a second when they
//! changed (fsync + rename), and on graceful shutdown: a crash (`kill -9`, power loss) loses at
//! most the last second of counting; a SIGTERM loses nothing.

use crate::state::write_durably;
use parking_lot::Mutex;
use portcullis_rules::limits::{Aggregator, Now, QuotaBook, Summary};
use portcullis_rules::rulefile::Snapshot;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The quota counters' file in `state_dir`.
pub const QUOTA_FILE: &str = "quotas.json";

/// See the module doc.
#[derive(Debug)]
pub struct LimitState {
    /// Refusal events per key and window (rate limits and quotas).
    pub agg: Aggregator,
    /// The quota counters.
    pub book: QuotaBook,
    origin: Instant,
    dir: PathBuf,
    /// The book's generation last written (`None`: never).
    written: Mutex<Option<u64>>,
}

impl LimitState {
    /// Loads the quota counters from `dir/quotas.json` (absent: empty). A file that cannot be
    /// parsed is moved aside (`quotas.json.corrupt-<unix>`) and counting starts empty, logged as
    /// an error: quotas are billing, not protection, so a damaged file must not keep the gateway
    /// down.
    pub fn load(dir: &Path) -> LimitState {
        let path = dir.join(QUOTA_FILE);
        let book = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => QuotaBook::default(),
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "cannot read the quota counters: counting starts empty");
                QuotaBook::default()
            }
            Ok(text) => match QuotaBook::from_json(&text, portcullis_rules::limits::quota::DEFAULT_MAX_COUNTERS) {
                Ok(book) => book,
                Err(e) => {
                    let aside = dir.join(format!("{QUOTA_FILE}.corrupt-{}", crate::switches::now_unix()));
                    let moved = std::fs::rename(&path, &aside).is_ok();
                    tracing::error!(
                        error = %e,
                        file = %path.display(),
                        moved_to = %if moved { aside.display().to_string() } else { String::new() },
                        "the quota counters cannot be parsed: moved aside, counting starts empty"
                    );
                    QuotaBook::default()
                }
            },
        };
        LimitState {
            agg: Aggregator::default(),
            book,
            origin: Instant::now(),
            dir: dir.to_path_buf(),
            written: Mutex::new(None),
        }
    }

    /// The two clocks, read once per request.
    pub fn now(&self) -> Now {
        Now {
            mono_ns: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            unix_secs: crate::switches::now_unix(),
        }
    }

    /// Writes the counters when they changed since the last write. `Ok(true)`: written.
    pub fn persist(&self) -> Result<bool, String> {
        let mut written = self.written.lock();
        let generation = self.book.generation();
        if *written == Some(generation) {
            return Ok(false);
        }
        let mut body = self.book.to_json().into_bytes();
        body.push(b'\n');
        write_durably(&self.dir, QUOTA_FILE, &body).map_err(|(e, _)| e)?;
        *written = Some(generation);
        Ok(true)
    }

    /// Windows closed since the last call: one summary per key that was refused more than once.
    pub fn drain(&self) -> Vec<Summary> {
        self.agg.drain(self.now().mono_ns)
    }

    /// Prometheus text for limiter memory, quota book and aggregation.
    pub fn render_metrics(&self, snapshot: &Snapshot, out: &mut String) {
        use std::fmt::Write as _;
        let rl = &snapshot.rate_limits;
        let lines = [
            ("portcullis_rate_limit_keys", "gauge", "Clients (keys) remembered by every rate limit.", rl.keys() as u64),
            ("portcullis_rate_limit_bytes", "gauge", "Approximate bytes of limiter state.", rl.approx_bytes() as u64),
            ("portcullis_quota_counters", "gauge", "Quota counters held.", self.book.len() as u64),
            (
                "portcullis_quota_untracked_total",
                "counter",
                "Requests not counted because the quota book was full.",
                self.book.untracked(),
            ),
            (
                "portcullis_limit_events_aggregated_keys",
                "gauge",
                "Keys whose refusals are being aggregated.",
                self.agg.len() as u64,
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

/// The event of an aggregation window's summary: the rule's type, severity, mode and action,
/// `detail.aggregated: true` and `detail.count`; no request facts (it stands for many requests).
pub fn summary_event(s: &Summary, rules_version: &str) -> crate::events::SecurityEvent {
    let f = s.finding();
    let mut ev = crate::events::SecurityEvent::system(f.event, f.action(), Some(rules_version), f.detail.clone());
    ev.severity = f.severity;
    ev.mode = f.mode;
    ev.rule_id = Some(f.rule_id.to_string());
    ev
}
