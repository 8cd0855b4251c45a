//! The security-event pipeline: one [`SecurityEvent`] type, and an [`EventBus`] that fans every
//! event out to non-blocking sinks.
//!
//! - **Counters** (Prometheus, and a per-minute window for `/v1/summary`): atomics updated inline
//!   by [`EventBus::emit`], no lock, no allocation.
//! - **log** sink: one ECS-style JSON line per event through `tracing` (target
//!   `portcullis::security`).
//! - **file** sink: append-only JSONL at `<dir>/events.jsonl`, size-based rotation, re-read at
//!   start so nothing is lost on restart.
//! - **index** sink: a bounded in-memory ring that [`EventBus::query`] and
//!   [`EventBus::top_threats`] read.
//!
//! Every sink has its own bounded queue and thread: `emit` never blocks and never does I/O on
//! the caller's thread; a full queue drops the event for that sink and counts it
//! (`portcullis_events_dropped_total{sink}`).
//!
//! Events never carry secrets, tokens or raw PII: `detail` holds kinds, counts, reasons and masked
//! samples at most, and [`RequestFacts`] has a path but no query string.

mod bus;
mod query;
mod sinks;
mod store;
mod window;

#[cfg(test)]
mod tests;

pub use bus::{EventBus, LoadReport, Tap, METRICS};
pub(crate) use query::health_of;
pub use query::{
    events_body, health_score, health_status, EventQuery, SummaryQuery, TopThreatsQuery, DEFAULT_EVENTS_LIMIT,
    DEFAULT_HOURS, DEFAULT_THREATS_LIMIT, MAX_EVENTS_LIMIT, MAX_QUERY_HOURS, MAX_THREATS_LIMIT, MIN_REQUESTS_FOR_5XX,
};
pub use window::{Finished, RequestTotals, RequestWindow, LATENCY_BOUNDS_MS};

use chrono::{DateTime, SecondsFormat, Utc};
use portcullis_rules::verdict::{Action, EventType, Finding, Mode, Severity};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// Where and how the event pipeline stores and buffers events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Directory of the JSONL store (`events.jsonl` and its rotated files). Created at start.
    pub dir: PathBuf,
    /// Size at which `events.jsonl` is rotated (default 64 MiB).
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one (default 5).
    pub max_files: usize,
    /// Events kept in the in-memory index for queries (default 100 000).
    pub memory_events: usize,
    /// Capacity of each sink's queue (default 8192). A full queue drops (and counts) the event.
    pub queue_capacity: usize,
    /// Whether the log sink writes one JSON log line per event (default true).
    pub log: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/state/events"),
            max_file_bytes: 64 * 1024 * 1024,
            max_files: 5,
            memory_events: 100_000,
            queue_capacity: 8192,
            log: true,
        }
    }
}

/// One security event, exactly the contract's fields. Absent values serialize as `null`, never
/// omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEvent")]
pub struct SecurityEvent {
    /// Time-ordered 32-hex id (48 bits of Unix milliseconds, 80 random bits).
    pub id: String,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-01-30T18:00:00.123Z`.
    pub time: String,
    /// The contract's event type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Severity (the type's default unless the rule overrides it).
    pub severity: Severity,
    /// The rule's mode (`enforce` for system events).
    pub mode: Mode,
    /// What happened to the request or operation.
    pub action: Action,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// The client IP (after trusted-proxy resolution).
    pub client_ip: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Canonical path, never the query string.
    pub path: Option<String>,
    /// Matched route id.
    pub route: Option<String>,
    /// Channel (kill-switch name) of the route.
    pub channel: Option<String>,
    /// The caller's tenant.
    pub tenant: Option<String>,
    /// The tenant the request reached for.
    pub target_tenant: Option<String>,
    /// The authenticated subject (user or key id), never a credential.
    pub subject: Option<String>,
    /// The rule that produced the event.
    pub rule_id: Option<String>,
    /// The rules snapshot version in force.
    pub rules_version: Option<String>,
    /// True for synthetic events from `POST /v1/safe-test/{type}`.
    pub test: bool,
    /// Kinds, counts, reasons, masked samples: never secrets or raw PII.
    pub detail: Map<String, Value>,
    /// Unix milliseconds of `time`, for window filtering; recomputed from `time` on load.
    #[serde(skip)]
    unix_ms: i64,
}

/// The serialized form, for loading: `unix_ms` is recomputed from `time`, which must parse.
#[derive(Deserialize)]
struct RawEvent {
    id: String,
    time: String,
    #[serde(rename = "type")]
    kind: EventType,
    severity: Severity,
    mode: Mode,
    action: Action,
    request_id: Option<String>,
    client_ip: Option<String>,
    method: Option<String>,
    path: Option<String>,
    route: Option<String>,
    channel: Option<String>,
    tenant: Option<String>,
    target_tenant: Option<String>,
    subject: Option<String>,
    rule_id: Option<String>,
    rules_version: Option<String>,
    #[serde(default)]
    test: bool,
    #[serde(default)]
    detail: Map<String, Value>,
}

impl TryFrom<RawEvent> for SecurityEvent {
    type Error = String;

    fn try_from(r: RawEvent) -> Result<Self, String> {
        let unix_ms = parse_time_ms(&r.time).ok_or_else(|| format!("time: not RFC 3339: {:?}", r.time))?;
        Ok(Self {
            id: r.id,
            time: r.time,
            kind: r.kind,
            severity: r.severity,
            mode: r.mode,
            action: r.action,
            request_id: r.request_id,
            client_ip: r.client_ip,
            method: r.method,
            path: r.path,
            route: r.route,
            channel: r.channel,
            tenant: r.tenant,
            target_tenant: r.target_tenant,
            subject: r.subject,
            rule_id: r.rule_id,
            rules_version: r.rules_version,
            test: r.test,
            detail: r.detail,
            unix_ms,
        })
    }
}

/// What the proxy knows about the request an event is about. Borrowed: building it allocates
/// nothing. There is deliberately no query string: events carry the canonical path only.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The request id (`X-Request-Id`).
    pub request_id: &'a str,
    /// The client IP.
    pub client_ip: Option<IpAddr>,
    /// HTTP method.
    pub method: &'a str,
    /// Canonical path, never the query.
    pub path: &'a str,
    /// Matched route id.
    pub route: Option<&'a str>,
    /// Channel of the route.
    pub channel: Option<&'a str>,
    /// The caller's tenant.
    pub tenant: Option<&'a str>,
    /// The tenant the request reached for.
    pub target_tenant: Option<&'a str>,
    /// The authenticated subject.
    pub subject: Option<&'a str>,
}

/// The note put in every safe-test event's detail.
pub const SAFE_TEST_NOTE: &str = "synthetic event from POST /v1/safe-test";

impl SecurityEvent {
    /// A bare event stamped now with a fresh id: no request facts, no rule, empty detail.
    pub fn new(kind: EventType, severity: Severity, mode: Mode, action: Action) -> Self {
        Self::at(now_ms(), kind, severity, mode, action)
    }

    /// A bare event stamped at `unix_ms`.
    pub(crate) fn at(unix_ms: i64, kind: EventType, severity: Severity, mode: Mode, action: Action) -> Self {
        let id_ms = u64::try_from(unix_ms).unwrap_or(0);
        Self {
            id: portcullis_rules::request_id::format_id(id_ms, rand::random::<u128>()),
            time: format_time_ms(unix_ms),
            kind,
            severity,
            mode,
            action,
            request_id: None,
            client_ip: None,
            method: None,
            path: None,
            route: None,
            channel: None,
            tenant: None,
            target_tenant: None,
            subject: None,
            rule_id: None,
            rules_version: None,
            test: false,
            detail: Map::new(),
            unix_ms,
        }
    }

    /// The event a rule's finding becomes, with the request's facts. The action is the
    /// finding's (`blocked` or `flagged`); a caller that redacted sets `action` afterwards.
    pub fn from_finding(f: &Finding, facts: &RequestFacts<'_>, rules_version: &str) -> Self {
        let mut ev = Self::new(f.event, f.severity, f.mode, f.action());
        ev.rule_id = Some(f.rule_id.to_string());
        ev.rules_version = Some(rules_version.to_owned());
        ev.detail = f.detail.clone();
        ev.set_facts(facts);
        ev
    }

    /// An event about the gateway itself (reload failed, switch changed): the type's default
    /// severity, mode `enforce`, no request facts.
    pub fn system(kind: EventType, action: Action, rules_version: Option<&str>, detail: Map<String, Value>) -> Self {
        let mut ev = Self::new(kind, kind.default_severity(), Mode::Enforce, action);
        ev.rules_version = rules_version.map(str::to_owned);
        ev.detail = detail;
        ev
    }

    /// A synthetic event for `POST /v1/safe-test/{type}`: `test: true`, rule `safe-test`, the
    /// type's default severity and usual action, `detail` naming who asked (a token's name,
    /// never the token).
    pub fn safe_test(kind: EventType, rules_version: Option<&str>, requested_by: &str) -> Self {
        let mut ev = Self::new(kind, kind.default_severity(), Mode::Enforce, default_action(kind));
        ev.test = true;
        ev.rule_id = Some("safe-test".to_owned());
        ev.rules_version = rules_version.map(str::to_owned);
        ev.detail.insert("requested_by".to_owned(), Value::String(requested_by.to_owned()));
        ev.detail.insert("note".to_owned(), Value::String(SAFE_TEST_NOTE.to_owned()));
        ev
    }

    /// Copies the request's facts into the event (the path only, never a query).
    pub fn set_facts(&mut self, facts: &RequestFacts<'_>) {
        let opt = |s: Option<&str>| s.map(str::to_owned);
        self.request_id = Some(facts.request_id.to_owned()).filter(|s| !s.is_empty());
        self.client_ip = facts.client_ip.map(|ip| ip.to_string());
        self.method = Some(facts.method.to_owned()).filter(|s| !s.is_empty());
        // Defence in depth: a caller that passed a raw target still never leaks its query.
        let path = facts.path.split(['?', '#']).next().unwrap_or("");
        self.path = Some(path.to_owned()).filter(|s| !s.is_empty());
        self.route = opt(facts.route);
        self.channel = opt(facts.channel);
        self.tenant = opt(facts.tenant);
        self.target_tenant = opt(facts.target_tenant);
        self.subject = opt(facts.subject);
    }

    /// The refused or flagged requests the event stands for: an aggregated rate-limit or quota
    /// summary (`detail.aggregated: true`) counts its `detail.count`, every other event 1.
    pub fn hits(&self) -> u64 {
        let aggregated = self.detail.get("aggregated").and_then(Value::as_bool) == Some(true);
        match self.detail.get("count").and_then(Value::as_u64) {
            Some(n) if aggregated => n.max(1),
            _ => 1,
        }
    }

    /// Unix milliseconds of [`SecurityEvent::time`].
    pub fn unix_ms(&self) -> i64 {
        self.unix_ms
    }

    /// True when `tenant` is the event's tenant or its target tenant.
    pub fn involves_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref() == Some(tenant) || self.target_tenant.as_deref() == Some(tenant)
    }
}

/// The action a type's events usually carry (used for safe tests).
pub const fn default_action(kind: EventType) -> Action {
    match kind {
        EventType::RulesReloadFailed | EventType::TlsReloadFailed => Action::Rejected,
        EventType::TlsCertificateExpiring | EventType::FleetStoreUnavailable | EventType::AlertDeliveryFailed => {
            Action::Flagged
        }
        EventType::SwitchChanged => Action::Changed,
        // Latency injected, the request went through.
        EventType::AnomalyAmber => Action::Flagged,
        _ => Action::Blocked,
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 UTC with milliseconds and `Z`.
pub(crate) fn format_time_ms(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses any RFC 3339 time into Unix milliseconds.
pub(crate) fn parse_time_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

/// The `switch_changed` event for a change (operator or ttl): one builder for both.
pub fn switch_changed_event(change: &crate::switches::Change, who: &str, rules_version: &str) -> SecurityEvent {
    let mut detail = Map::new();
    detail.insert("target".into(), Value::from(change.target.as_str()));
    detail.insert("old".into(), change.old.clone());
    detail.insert("new".into(), change.new.clone());
    detail.insert("set_by".into(), Value::from(who));
    detail.insert("version".into(), Value::from(change.version));
    SecurityEvent::system(EventType::SwitchChanged, Action::Changed, Some(rules_version), detail)
}
