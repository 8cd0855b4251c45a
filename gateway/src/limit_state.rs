//! Rate-limit and quota state that outlives rule snapshots: the clock origin, the event
//! aggregator shared by both, and the quota book with its persistence
//! (`state_dir/quotas.json`). (Limiter buckets live in the compiled rules and are carried over by
//! the reload.)
//!
//! Quota counters are written by the `limits` background service once a second when they
//! changed (fsync + rename), and on graceful shutdown: a crash (`kill -9`, power loss) loses at
//! most the last second of counting; a SIGTERM loses nothing.

use crate::durable::write_durably;
use crate::metrics::{Declared, Def};
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
    /// The book's generation and audit position last written (`None`: never).
    written: Mutex<Option<(u64, Option<u64>)>>,
    /// `seq` of the last audit record (a quota reset) the book includes; `None`: a file from
    /// before it was recorded (trusted as it is). Written into `quotas.json` as `audit_seq`.
    audit_seq: Mutex<Option<u64>>,
}

const RATE_LIMIT_KEYS: Def<0> =
    Def::gauge("portcullis_rate_limit_keys", "Clients (keys) remembered by every rate limit.", []);
const RATE_LIMIT_BYTES: Def<0> = Def::gauge("portcullis_rate_limit_bytes", "Approximate bytes of limiter state.", []);
const QUOTA_COUNTERS: Def<0> = Def::gauge("portcullis_quota_counters", "Quota counters held.", []);
const QUOTA_UNTRACKED_TOTAL: Def<0> =
    Def::counter("portcullis_quota_untracked_total", "Requests not counted because the quota book was full.", []);
const LIMIT_EVENTS_AGGREGATED_KEYS: Def<0> =
    Def::gauge("portcullis_limit_events_aggregated_keys", "Keys whose refusals are being aggregated.", []);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] =
    &[&RATE_LIMIT_KEYS, &RATE_LIMIT_BYTES, &QUOTA_COUNTERS, &QUOTA_UNTRACKED_TOTAL, &LIMIT_EVENTS_AGGREGATED_KEYS];

impl LimitState {
    /// Loads the quota counters from `dir/quotas.json` (absent: empty). A file that cannot be
    /// parsed is moved aside (`quotas.json.corrupt-<unix>`) and counting starts empty, logged as
    /// an error: quotas are billing, not protection, so a damaged file must not keep the gateway
    /// down.
    pub fn load(dir: &Path) -> LimitState {
        let path = dir.join(QUOTA_FILE);
        let mut audit_seq = None;
        let book = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                audit_seq = Some(0);
                QuotaBook::default()
            }
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "cannot read the quota counters: counting starts empty");
                QuotaBook::default()
            }
            Ok(text) => match split_audit_seq(&text).and_then(|(seq, book)| {
                QuotaBook::from_json(&book, portcullis_rules::limits::quota::DEFAULT_MAX_COUNTERS).map(|b| (seq, b))
            }) {
                Ok((seq, book)) => {
                    audit_seq = seq;
                    book
                }
                Err(e) => {
                    let aside = dir.join(format!("{QUOTA_FILE}.corrupt-{}", crate::clock::now_unix()));
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
            audit_seq: Mutex::new(audit_seq),
        }
    }

    /// `seq` of the last audit record the book includes.
    pub fn audit_seq(&self) -> Option<u64> {
        *self.audit_seq.lock()
    }

    /// Records that the book includes every audit record up to `seq`. Never moves it back.
    pub fn settle_audit_seq(&self, seq: u64) {
        let mut a = self.audit_seq.lock();
        if a.is_none_or(|a| a < seq) {
            *a = Some(seq);
        }
    }

    /// Adopts `seq` as the position of a file that predates `audit_seq`.
    pub fn settle_audit_seq_if_none(&self, seq: u64) {
        let mut a = self.audit_seq.lock();
        if a.is_none() {
            *a = Some(seq);
        }
    }

    /// Applies a committed quota reset (audit record `seq`; one the book already includes does
    /// nothing): every counter of the tenant back to 0, then, with `checkpoint`, `quotas.json`
    /// written at once. Returns the book's generation; `Err` when only the write failed.
    pub fn apply_reset(&self, tenant: &str, seq: u64, checkpoint: bool) -> Result<u64, String> {
        {
            let mut a = self.audit_seq.lock();
            if a.is_some_and(|a| seq <= a) {
                return Ok(self.book.generation());
            }
            self.book.reset(tenant);
            *a = Some(seq);
        }
        if checkpoint {
            self.persist()?;
        }
        Ok(self.book.generation())
    }

    /// The two clocks, read once per request.
    pub fn now(&self) -> Now {
        Now {
            mono_ns: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            unix_secs: crate::clock::now_unix(),
        }
    }

    /// Writes the counters when they changed since the last write. `Ok(true)`: written.
    pub fn persist(&self) -> Result<bool, String> {
        let mut written = self.written.lock();
        let generation = (self.book.generation(), self.audit_seq());
        if *written == Some(generation) {
            return Ok(false);
        }
        let mut body = with_audit_seq(self.book.to_json(), generation.1).into_bytes();
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
    pub fn render_metrics(&self, snapshot: &Snapshot, out: &mut crate::metrics::Scrape) {
        let rl = &snapshot.rate_limits;
        out.family(&RATE_LIMIT_KEYS).sample([], rl.keys());
        out.family(&RATE_LIMIT_BYTES).sample([], rl.approx_bytes());
        out.family(&QUOTA_COUNTERS).sample([], self.book.len());
        out.family(&QUOTA_UNTRACKED_TOTAL).sample([], self.book.untracked());
        out.family(&LIMIT_EVENTS_AGGREGATED_KEYS).sample([], self.agg.len());
    }
}

/// The book's JSON with `"audit_seq":N` as its first member (the book's own format does not know
/// it; [`split_audit_seq`] takes it out again).
fn with_audit_seq(book: String, seq: Option<u64>) -> String {
    match (seq, book.strip_prefix('{')) {
        (Some(seq), Some(rest)) if rest.trim_start().starts_with('}') => format!("{{\"audit_seq\":{seq}}}"),
        (Some(seq), Some(rest)) => format!("{{\"audit_seq\":{seq},{rest}"),
        _ => book,
    }
}

/// `(audit_seq, the book's own JSON)` of a `quotas.json`.
fn split_audit_seq(text: &str) -> Result<(Option<u64>, String), String> {
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a quota book: {e}"))?;
    let seq = match v.as_object_mut().and_then(|o| o.remove("audit_seq")) {
        None => None,
        Some(s) => Some(s.as_u64().ok_or("`audit_seq` must be a non-negative integer")?),
    };
    Ok((seq, v.to_string()))
}

/// The event of an aggregation window's summary: the rule's type, severity, mode and action,
/// `detail.aggregated: true` and `detail.count`; no request facts (it stands for many requests).
pub fn summary_event(s: &Summary, rules_version: &str) -> crate::events::SecurityEvent {
    let f = s.finding();
    let mut ev = crate::events::SecurityEvent::system(f.event, f.action(), Some(rules_version), f.detail.clone());
    ev.severity = f.severity;
    ev.mode = f.mode;
    ev.rule_id = Some(f.rule_id.to_string());
    // A flood from one address stays attributed to it (top threats, `GET /v1/events`).
    ev.client_ip = s.client_ip.map(|ip| ip.to_string());
    ev
}
