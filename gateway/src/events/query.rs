//! The control endpoints' logic: query-string parsing, the event query, the summary, top
//! threats and the health score.

use super::window::{EventCounts, RequestTotals, MAX_HOURS};
use super::{format_time_ms, SecurityEvent};
use portcullis_rules::verdict::{EventType, Severity};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Longest `hours` any endpoint accepts (one year).
pub const MAX_QUERY_HOURS: u32 = 8760;
/// Default `hours` of every endpoint.
pub const DEFAULT_HOURS: u32 = 24;
/// Largest `limit` of `GET /v1/events`.
pub const MAX_EVENTS_LIMIT: usize = 1000;
/// Default `limit` of `GET /v1/events`.
pub const DEFAULT_EVENTS_LIMIT: usize = 100;
/// Largest `limit` of `GET /v1/top-threats`.
pub const MAX_THREATS_LIMIT: usize = 100;
/// Default `limit` of `GET /v1/top-threats`.
pub const DEFAULT_THREATS_LIMIT: usize = 10;

/// The filters of `GET /v1/events?type=&severity=&hours=&limit=&tenant=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Types to return; empty means every type.
    pub kinds: Vec<EventType>,
    /// Severities to return; empty means every severity.
    pub severities: Vec<Severity>,
    /// How far back to look (1..=8760, default 24).
    pub hours: u32,
    /// Most events returned (1..=1000, default 100).
    pub limit: usize,
    /// Only events whose `tenant` or `target_tenant` is this.
    pub tenant: Option<String>,
}

impl Default for EventQuery {
    fn default() -> Self {
        Self {
            kinds: Vec::new(),
            severities: Vec::new(),
            hours: DEFAULT_HOURS,
            limit: DEFAULT_EVENTS_LIMIT,
            tenant: None,
        }
    }
}

impl EventQuery {
    /// Parses the query string (without `?`). `type` and `severity` take comma lists (and may
    /// repeat) in any spelling [`EventType::parse`] accepts; values are percent-decoded (`+` is a
    /// space); an empty value means "not given". An unknown parameter, a repeated scalar or a
    /// bad value is an error naming the parameter (the endpoint answers 400).
    pub fn parse(query_string: Option<&str>) -> Result<EventQuery, String> {
        let mut q = EventQuery::default();
        let mut seen = Seen::default();
        for (key, value) in pairs(query_string)? {
            match key.as_str() {
                "type" => {
                    for item in list(&value) {
                        let t = EventType::parse(item).ok_or_else(|| {
                            format!(
                                "type: unknown event type {item:?} (known: {})",
                                names(EventType::ALL.map(EventType::as_str))
                            )
                        })?;
                        if !q.kinds.contains(&t) {
                            q.kinds.push(t);
                        }
                    }
                }
                "severity" => {
                    for item in list(&value) {
                        let s = Severity::parse(item).ok_or_else(|| {
                            format!("severity: unknown severity {item:?} (known: critical, warning, info)")
                        })?;
                        if !q.severities.contains(&s) {
                            q.severities.push(s);
                        }
                    }
                }
                "hours" => seen.number(&mut q.hours, "hours", &value, MAX_QUERY_HOURS)?,
                "limit" => seen.number(&mut q.limit, "limit", &value, MAX_EVENTS_LIMIT)?,
                "tenant" => {
                    seen.once("tenant")?;
                    q.tenant = Some(value).filter(|v| !v.is_empty());
                }
                other => return Err(unknown(other, "type, severity, hours, limit, tenant")),
            }
        }
        Ok(q)
    }

    /// True when `ev` passes the type, severity and tenant filters (not the time window).
    pub fn matches(&self, ev: &SecurityEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&ev.kind))
            && (self.severities.is_empty() || self.severities.contains(&ev.severity))
            && self.tenant.as_deref().is_none_or(|t| ev.involves_tenant(t))
    }
}

/// The parameters of `GET /v1/summary?hours=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryQuery {
    /// The window (1..=8760, default 24; counts cover at most 168).
    pub hours: u32,
}

impl SummaryQuery {
    /// Parses the query string, with the rules of [`EventQuery::parse`].
    pub fn parse(query_string: Option<&str>) -> Result<SummaryQuery, String> {
        let mut q = SummaryQuery { hours: DEFAULT_HOURS };
        let mut seen = Seen::default();
        for (key, value) in pairs(query_string)? {
            match key.as_str() {
                "hours" => seen.number(&mut q.hours, "hours", &value, MAX_QUERY_HOURS)?,
                other => return Err(unknown(other, "hours")),
            }
        }
        Ok(q)
    }
}

/// The parameters of `GET /v1/top-threats?hours=&limit=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopThreatsQuery {
    /// The window (1..=8760, default 24).
    pub hours: u32,
    /// Entries per list (1..=100, default 10).
    pub limit: usize,
}

impl TopThreatsQuery {
    /// Parses the query string, with the rules of [`EventQuery::parse`].
    pub fn parse(query_string: Option<&str>) -> Result<TopThreatsQuery, String> {
        let mut q = TopThreatsQuery { hours: DEFAULT_HOURS, limit: DEFAULT_THREATS_LIMIT };
        let mut seen = Seen::default();
        for (key, value) in pairs(query_string)? {
            match key.as_str() {
                "hours" => seen.number(&mut q.hours, "hours", &value, MAX_QUERY_HOURS)?,
                "limit" => seen.number(&mut q.limit, "limit", &value, MAX_THREATS_LIMIT)?,
                other => return Err(unknown(other, "hours, limit")),
            }
        }
        Ok(q)
    }
}

#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn once(&mut self, name: &'static str) -> Result<(), String> {
        if self.0.contains(&name) {
            return Err(format!("{name}: given more than once"));
        }
        self.0.push(name);
        Ok(())
    }

    /// Sets `*field` from a non-empty `value` in `1..=max`; a second occurrence is an error.
    fn number<T>(&mut self, field: &mut T, name: &'static str, value: &str, max: T) -> Result<(), String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + From<u8>,
    {
        self.once(name)?;
        if value.is_empty() {
            return Ok(());
        }
        let min = T::from(1);
        match value.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => {
                *field = n;
                Ok(())
            }
            _ => Err(format!("{name}: must be an integer from {min} to {max}, got {value:?}")),
        }
    }
}

fn unknown(name: &str, known: &str) -> String {
    format!("unknown parameter {name:?} (known: {known})")
}

fn names<const N: usize>(all: [&str; N]) -> String {
    all.join(", ")
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Splits and percent-decodes a query string into `(key, value)` pairs; empty segments are
/// skipped, a key without `=` has an empty value.
fn pairs(query_string: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let qs = query_string.unwrap_or("");
    let qs = qs.strip_prefix('?').unwrap_or(qs);
    let mut out = Vec::new();
    for seg in qs.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        let key = decode(k).map_err(|e| format!("parameter name {k:?}: {e}"))?;
        let value = decode(v).map_err(|e| format!("{key}: {e}"))?;
        out.push((key, value));
    }
    Ok(out)
}

/// Percent-decodes one component (`+` is a space); the result must be UTF-8.
fn decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(h), Some(l)) => out.push(u8::try_from(h * 16 + l).unwrap_or(0)),
                    _ => return Err("bad percent-encoding".to_owned()),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_owned())
}

/// The body of `GET /v1/events`: `{"events":[…]}`, in the order given.
pub fn events_body(events: &[Arc<SecurityEvent>]) -> Value {
    let list: Vec<Value> = events.iter().filter_map(|e| serde_json::to_value(&**e).ok()).collect();
    json!({ "events": list })
}

/// The health score, 0–100: 100 minus penalties for critical, warning and info events and for
/// the 5xx failure rate (see `docs/events.md` "Health score").
///
/// - critical: 35 per event;
/// - warning: `10 × log2(1 + n)`, at most 40;
/// - info: `2 × log2(1 + n)`, at most 10;
/// - 5xx: `6 × (5xx failure rate in percent)`, at most 50, only with at least 20 requests;
///
/// clamped to 0..=100 and rounded to the nearest integer (halves up). The inputs are chosen by
/// [`health_of`]: which events and which 5xx count.
pub fn health_score(critical: u64, warning: u64, info: u64, requests: u64, errors_5xx: u64) -> u8 {
    let critical_penalty = 35.0 * critical as f64;
    let warning_penalty = (10.0 * (1.0 + warning as f64).log2()).min(40.0);
    let info_penalty = (2.0 * (1.0 + info as f64).log2()).min(10.0);
    let error_penalty = if requests >= MIN_REQUESTS_FOR_5XX {
        let percent = errors_5xx as f64 * 100.0 / requests as f64;
        (6.0 * percent).min(50.0)
    } else {
        0.0
    };
    let score = (100.0 - critical_penalty - warning_penalty - info_penalty - error_penalty).clamp(0.0, 100.0);
    score.round() as u8
}

/// The health score of a window: the events of the types that count
/// ([`EventType::counts_in_health`]: not the operator's own switch flips, not the alerting
/// pipeline's delivery reports; test events never), and the 5xx *failures* (upstream errors and
/// timeouts, the gateway's own failures), never the gateway's deliberate 502/503 answers.
pub(crate) fn health_of(counts: &EventCounts, requests: &RequestTotals) -> u8 {
    health_score(
        counts.health_inputs(Severity::Critical),
        counts.health_inputs(Severity::Warning),
        counts.health_inputs(Severity::Info),
        requests.requests,
        requests.failures,
    )
}

/// Fewest requests in the window for the 5xx rate to count in the health score.
pub const MIN_REQUESTS_FOR_5XX: u64 = 20;

/// The operator band of a score: `healthy` (≥ 85), `watch` (< 85), `investigate` (< 70),
/// `page` (< 50).
pub const fn health_status(score: u8) -> &'static str {
    match score {
        0..=49 => "page",
        50..=69 => "investigate",
        70..=84 => "watch",
        _ => "healthy",
    }
}

/// The body of `GET /v1/summary`.
pub(crate) fn summary_body(now_ms: i64, hours: u32, counts: &EventCounts, requests: &RequestTotals) -> Value {
    let covered = hours.min(MAX_HOURS);
    let since = format_time_ms(now_ms - i64::from(covered) * 3_600_000);
    let by_type: Map<String, Value> =
        EventType::ALL.iter().map(|t| (t.as_str().to_owned(), Value::from(counts.by_type(*t)))).collect();
    let hits_by_type: Map<String, Value> =
        EventType::ALL.iter().map(|t| (t.as_str().to_owned(), Value::from(counts.hits(*t)))).collect();
    let by_severity: Map<String, Value> =
        Severity::ALL.iter().rev().map(|s| (s.as_str().to_owned(), Value::from(counts.by_severity(*s)))).collect();
    let rate = requests.failure_percent() / 100.0;
    let score = health_of(counts, requests);
    json!({
        "window_hours": hours,
        "since": since,
        "events": {
            "total": counts.total(),
            "by_type": by_type,
            "hits_by_type": hits_by_type,
            "by_severity": by_severity,
            "test_events": counts.test,
            "window_hours_covered": covered,
        },
        "requests": {
            "total": requests.requests,
            "errors_5xx": requests.failures,
            "error_rate_5xx": rate,
            "responses_5xx": requests.responses_5xx,
            "gateway_answers_5xx": requests.deliberate_5xx(),
            "p99_ms": requests.p99_ms(),
            "window_hours_covered": covered,
        },
        "health_score": score,
        "health_status": health_status(score),
        "health_inputs": {
            "critical": counts.health_inputs(Severity::Critical),
            "warning": counts.health_inputs(Severity::Warning),
            "info": counts.health_inputs(Severity::Info),
            "requests": requests.requests,
            "errors_5xx": requests.failures,
            "excluded_types": EventType::ALL.iter().filter(|t| !t.counts_in_health()).map(|t| t.as_str()).collect::<Vec<_>>(),
        },
    })
}

#[derive(Default)]
struct Threat<'a> {
    events: u64,
    hits: u64,
    types: [u64; EventType::ALL.len()],
    last_ms: i64,
    last_seen: &'a str,
}

fn rank<'a>(map: HashMap<&'a str, Threat<'a>>, key: &str, limit: usize) -> Vec<Value> {
    let mut v: Vec<(&str, Threat<'_>)> = map.into_iter().collect();
    v.sort_by(|a, b| {
        (b.1.hits.cmp(&a.1.hits))
            .then(b.1.events.cmp(&a.1.events))
            .then(b.1.last_ms.cmp(&a.1.last_ms))
            .then(a.0.cmp(b.0))
    });
    v.truncate(limit);
    v.into_iter()
        .map(|(name, t)| {
            let types: Map<String, Value> = EventType::ALL
                .iter()
                .zip(t.types)
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.as_str().to_owned(), Value::from(n)))
                .collect();
            let mut o = Map::new();
            o.insert(key.to_owned(), Value::from(name));
            o.insert("events".to_owned(), Value::from(t.events));
            o.insert("hits".to_owned(), Value::from(t.hits));
            o.insert("types".to_owned(), Value::Object(types));
            o.insert("last_seen".to_owned(), Value::from(t.last_seen));
            Value::Object(o)
        })
        .collect()
}

/// The body of `GET /v1/top-threats`, from the events of the window (newest or oldest first,
/// any order). Test events are excluded. `complete` says whether the in-memory index still
/// reaches back to the start of the window.
pub(crate) fn top_threats_body(
    now_ms: i64,
    hours: u32,
    limit: usize,
    events: &[Arc<SecurityEvent>],
    complete: bool,
) -> Value {
    let mut ips: HashMap<&str, Threat<'_>> = HashMap::new();
    let mut subjects: HashMap<&str, Threat<'_>> = HashMap::new();
    for ev in events.iter().filter(|e| !e.test) {
        for (map, key) in [(&mut ips, ev.client_ip.as_deref()), (&mut subjects, ev.subject.as_deref())] {
            let Some(key) = key else { continue };
            let t = map.entry(key).or_default();
            t.events += 1;
            t.hits += ev.hits();
            if let Some(n) = t.types.get_mut(ev.kind.index()) {
                *n += 1;
            }
            if t.last_seen.is_empty() || ev.unix_ms() > t.last_ms {
                t.last_ms = ev.unix_ms();
                t.last_seen = &ev.time;
            }
        }
    }
    json!({
        "window_hours": hours,
        "since": format_time_ms(now_ms - i64::from(hours) * 3_600_000),
        "client_ips": rank(ips, "ip", limit),
        "subjects": rank(subjects, "subject", limit),
        "complete": complete,
    })
}

#[cfg(test)]
mod tests;
