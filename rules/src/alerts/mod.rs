//! Alert rules: the `alerts:` section of a rule file, and the pure state machine that turns a
//! measured value into "fire", "resolve" or nothing.
//!
//! ```yaml
//! alerts:
//!   - id: firewall-spike
//!     description: "runbook: FIREWALL_BLOCK > 10 in 1 hour: block the IP range, investigate"
//!     severity: critical                 # default: warning
//!     mode: enforce                      # monitor: evaluated and shown in metrics, never sent
//!     metric: events                     # events | health_score | error_rate_5xx | latency_p99
//!     events:                            # metric `events` only; every key optional
//!       types: [firewall_block]          # any spelling EventType::parse accepts
//!       severities: [warning, critical]
//!       tenants: ["73"]                  # the event's tenant or target tenant
//!       routes: [api]
//!     above: 10                          # or `below:` (exactly one)
//!     window: 1h                         # 1m to 168h
//!     for: 0s                            # the condition must hold this long (default 0s)
//!     cooldown: 15m                      # at most one notification per cooldown (default 15m)
//!     resolve: true                      # send a resolve notification when it clears (default)
//!     min_requests: 20                   # error_rate_5xx / latency_p99: fewer requests never fire
//!     labels: { runbook: "3.1" }         # copied into every notification
//!     sinks: [oncall-email]              # default: every configured sink
//! ```
//!
//! # Metrics
//!
//! * `events`: hits of matching events in the window, test events excluded. A hit is one refused
//!   or flagged request: an aggregated rate-limit or quota summary event counts as the number of
//!   refusals it stands for (`detail.count`), every other event as one.
//! * `health_score`: the health score (0–100) over the window.
//! * `error_rate_5xx`: failed responses (upstream errors, timeouts, the gateway's own failures)
//!   as a percentage of every response in the window; the gateway's deliberate 5xx answers
//!   (`response_blocked`, `maintenance`, `channel_disabled`, `store_unavailable`) are not
//!   failures ([`crate::deny::DenyCode::is_failure`]).
//! * `latency_p99`: the 99th percentile of request durations in the window, in milliseconds
//!   (the upper bound of its histogram bucket).
//!
//! Compiling is pure; measuring and delivering are the gateway's (`gateway/src/alerting/`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::rate::period_secs;
use crate::schema::{compile_section, present, Checker, Common, Ctx, RawRule, RuleMeta};
use crate::verdict::{EventType, Mode, Severity};

/// The section's rule kind.
pub const KIND: &str = "alerts";

/// Longest `window`: the per-minute counters keep 7 days.
pub const MAX_WINDOW_SECS: u64 = 168 * 3600;
/// Longest `for` and `cooldown`.
pub const MAX_HOLD_SECS: u64 = 7 * 24 * 3600;
/// Default `cooldown`.
pub const DEFAULT_COOLDOWN_SECS: u64 = 15 * 60;
/// Default `min_requests` of the request metrics (the health score's own floor).
pub const DEFAULT_MIN_REQUESTS: u64 = 20;
/// Most labels per rule, and the longest label name / value.
pub const MAX_LABELS: usize = 16;
const MAX_LABEL_LEN: usize = 256;
/// Longest sink name.
pub const MAX_SINK_NAME: usize = 64;

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Hits of matching events.
    Events,
    /// The health score.
    HealthScore,
    /// Failed responses, percent.
    #[serde(rename = "error_rate_5xx")]
    ErrorRate5xx,
    /// p99 request duration, milliseconds.
    LatencyP99,
}

impl MetricKind {
    /// Every metric.
    pub const ALL: [MetricKind; 4] =
        [MetricKind::Events, MetricKind::HealthScore, MetricKind::ErrorRate5xx, MetricKind::LatencyP99];

    /// The name rules use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::HealthScore => "health_score",
            Self::ErrorRate5xx => "error_rate_5xx",
            Self::LatencyP99 => "latency_p99",
        }
    }

    /// The unit of values and thresholds, for notifications.
    pub const fn unit(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::HealthScore => "points",
            Self::ErrorRate5xx => "%",
            Self::LatencyP99 => "ms",
        }
    }
}

/// Which events a rule of metric `events` counts. Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Event types.
    pub types: Vec<EventType>,
    /// Severities.
    pub severities: Vec<Severity>,
    /// The event's tenant or target tenant.
    pub tenants: Vec<Box<str>>,
    /// The event's route.
    pub routes: Vec<Box<str>>,
}

impl EventFilter {
    /// Whether an event with these facts is counted.
    pub fn matches(
        &self,
        kind: EventType,
        severity: Severity,
        tenant: Option<&str>,
        target_tenant: Option<&str>,
        route: Option<&str>,
    ) -> bool {
        let listed = |list: &[Box<str>], v: Option<&str>| v.is_some_and(|v| list.iter().any(|x| **x == *v));
        (self.types.is_empty() || self.types.contains(&kind))
            && (self.severities.is_empty() || self.severities.contains(&severity))
            && (self.tenants.is_empty() || listed(&self.tenants, tenant) || listed(&self.tenants, target_tenant))
            && (self.routes.is_empty() || listed(&self.routes, route))
    }

    /// True when only per-type counters are needed (no severity, tenant or route filter): the
    /// gateway then reads its exact per-minute counters instead of scanning stored events.
    pub fn by_type_only(&self) -> bool {
        self.severities.is_empty() && self.tenants.is_empty() && self.routes.is_empty()
    }
}

/// The condition's direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    /// Holds when the value is greater than the threshold.
    Above(f64),
    /// Holds when the value is less than the threshold.
    Below(f64),
}

impl Comparison {
    /// Whether `value` crosses the threshold.
    pub fn holds(self, value: f64) -> bool {
        match self {
            Self::Above(t) => value > t,
            Self::Below(t) => value < t,
        }
    }

    /// The threshold.
    pub fn threshold(self) -> f64 {
        match self {
            Self::Above(t) | Self::Below(t) => t,
        }
    }

    /// `above` or `below`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Above(_) => "above",
            Self::Below(_) => "below",
        }
    }
}

/// One compiled alert rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// The rule id.
    pub id: Arc<str>,
    /// The rule hash: an unchanged rule keeps its whole state across a reload.
    pub hash: String,
    /// What the rule is for (the runbook's action), shown in notifications.
    pub description: Option<String>,
    /// The alert's severity.
    pub severity: Severity,
    /// `monitor`: evaluated and shown, never sent.
    pub mode: Mode,
    /// What is measured.
    pub metric: MetricKind,
    /// For `events`: which events.
    pub events: EventFilter,
    /// The condition.
    pub cmp: Comparison,
    /// The window the value is measured over.
    pub window_secs: u64,
    /// How long the condition must hold before the alert fires.
    pub for_secs: u64,
    /// At most one notification per cooldown.
    pub cooldown_secs: u64,
    /// Send a resolve notification when the condition clears.
    pub resolve: bool,
    /// Fewest requests in the window for the request metrics to be judged.
    pub min_requests: u64,
    /// Copied into every notification.
    pub labels: BTreeMap<String, String>,
    /// The sinks it goes to; `None`: every configured sink.
    pub sinks: Option<Vec<Box<str>>>,
}

impl AlertRule {
    /// The de-duplication key of the rule's notifications (PagerDuty's `dedup_key`, the
    /// webhook's `dedup_key`): stable across reloads and restarts.
    pub fn dedup_key(&self) -> String {
        format!("portcullis/{}", self.id)
    }

    /// Whether a notification of this rule goes to the sink named `sink`.
    pub fn sends_to(&self, sink: &str) -> bool {
        self.sinks.as_ref().is_none_or(|l| l.iter().any(|s| **s == *sink))
    }
}

/// Every alert rule of a snapshot, in file order.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    rules: Vec<AlertRule>,
}

impl Alerts {
    /// The rules.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        Alerts { rules }
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every sink name some rule lists (for checking them against the configured sinks).
    pub fn sink_names(&self) -> impl Iterator<Item = (&AlertRule, &str)> {
        self.rules.iter().flat_map(|r| r.sinks.iter().flatten().map(move |s| (r, &**s)))
    }
}

/// What a step of the state machine decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// The condition has held for `for`: notify (`value` is the measured value).
    Fire {
        /// The measured value.
        value: f64,
        /// When the condition started holding (Unix ms).
        since_ms: i64,
    },
    /// The condition holds again within the cooldown of the last notification: no
    /// notification (counted), and no resolve notification for this episode either.
    Suppressed {
        /// The measured value.
        value: f64,
    },
    /// A notified alert's condition cleared.
    Resolve {
        /// The value now (`None`: not enough data to judge, e.g. no traffic).
        value: Option<f64>,
        /// When it fired (Unix ms).
        fired_ms: i64,
    },
}

/// One rule's state: pending, firing, when it last notified. Keyed by rule id in the gateway;
/// a reload keeps it whole for an unchanged rule ([`AlertState::carried_to`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// The rule hash this state was built under.
    pub hash: String,
    /// Since when the condition holds, waiting for `for`.
    pub pending_since_ms: Option<i64>,
    /// When the current episode fired (notified or suppressed).
    pub firing_since_ms: Option<i64>,
    /// The current episode was notified (so its resolve is sent).
    pub notified: bool,
    /// When the last fire notification went out: the cooldown runs from here.
    pub last_notified_ms: Option<i64>,
    /// The last measured value (not persisted: measured again at the next evaluation).
    #[serde(skip)]
    pub last_value: Option<f64>,
}

impl AlertState {
    /// A fresh state for a rule.
    pub fn new(rule: &AlertRule) -> Self {
        AlertState { hash: rule.hash.clone(), ..AlertState::default() }
    }

    /// Whether the alert is firing now.
    pub fn firing(&self) -> bool {
        self.firing_since_ms.is_some()
    }

    /// The state a reloaded rule starts with. Unchanged rule (same hash): everything. Changed
    /// rule (same id): the firing episode and the cooldown, so a reload never re-pages for an
    /// alert already sent and a firing alert still resolves; only a pending `for` restarts.
    pub fn carried_to(&self, rule: &AlertRule) -> Self {
        if self.hash == rule.hash {
            return self.clone();
        }
        AlertState {
            hash: rule.hash.clone(),
            pending_since_ms: None,
            firing_since_ms: self.firing_since_ms,
            notified: self.notified,
            last_notified_ms: self.last_notified_ms,
            last_value: self.last_value,
        }
    }

    /// One evaluation at `now_ms` with the measured `value` (`None`: not enough data, which
    /// never holds).
    pub fn step(&mut self, rule: &AlertRule, value: Option<f64>, now_ms: i64) -> Option<Transition> {
        self.last_value = value;
        let holding = value.filter(|v| rule.cmp.holds(*v));
        let Some(v) = holding else {
            self.pending_since_ms = None;
            let fired = self.firing_since_ms.take()?;
            let notified = std::mem::take(&mut self.notified);
            return (notified && rule.resolve).then_some(Transition::Resolve { value, fired_ms: fired });
        };
        if self.firing_since_ms.is_some() {
            return None;
        }
        let since = *self.pending_since_ms.get_or_insert(now_ms);
        let held_ms = now_ms.saturating_sub(since);
        if held_ms < secs_ms(rule.for_secs) {
            return None;
        }
        self.pending_since_ms = None;
        self.firing_since_ms = Some(now_ms);
        let cooled = self.last_notified_ms.is_none_or(|t| now_ms.saturating_sub(t) >= secs_ms(rule.cooldown_secs));
        self.notified = cooled;
        if cooled {
            self.last_notified_ms = Some(now_ms);
            Some(Transition::Fire { value: v, since_ms: since })
        } else {
            Some(Transition::Suppressed { value: v })
        }
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// One raw rule of the `alerts:` list. Serialized (JSON) for the rule hash; absent optional keys
/// are skipped.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an alert rule: a mapping with `id`, `metric`, `above` or `below`, `window`")]
pub(crate) struct RawAlertRule {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    metric: Option<MetricKind>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    events: Option<RawEventFilter>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    above: Option<f64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    below: Option<f64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    window: Option<String>,
    #[serde(default, rename = "for", deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    hold: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    cooldown: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    resolve: Option<bool>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    min_requests: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    sinks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an event filter: a mapping of `types`, `severities`, `tenants`, `routes`")]
struct RawEventFilter {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    severities: Option<Vec<Severity>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    tenants: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
}

impl RawRule for RawAlertRule {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: self.severity }
    }
}

/// Compiles the `alerts:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawAlertRule], out: &mut Vec<AlertRule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| Some(one(c, meta, r)));
}

/// A duration key (`30s`, `5m`, `1h`) in `min..=max` seconds; `default` when absent (an error
/// recorded and `default` returned when out of range or unreadable).
pub(crate) fn duration(
    c: &mut Checker<'_, '_>,
    key: &str,
    v: Option<&String>,
    default: u64,
    min: u64,
    max: u64,
) -> u64 {
    let Some(s) = v else { return default };
    match period_secs(s.trim()) {
        Some(Some(secs)) if (min..=max).contains(&secs) => secs,
        Some(_) => {
            c.error(key, format!("`{s}` is out of range: {} to {}", show_secs(min), show_secs(max)));
            default
        }
        None => {
            c.error(key, format!("`{}` is not a duration: write <n><unit> like `30s`, `5m` or `1h`", s.escape_debug()));
            default
        }
    }
}

/// A duration as rules write it: `1h`, `15m`, `90s`.
pub fn show_secs(s: u64) -> String {
    if s > 0 && s.rem_euclid(3600) == 0 {
        format!("{}h", s / 3600)
    } else if s > 0 && s.rem_euclid(60) == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn one(c: &mut Checker<'_, '_>, meta: RuleMeta, r: &RawAlertRule) -> AlertRule {
    let metric = match r.metric {
        Some(m) => m,
        None if r.events.is_some() => MetricKind::Events,
        None => {
            c.error("metric", "a rule needs a `metric`: events, health_score, error_rate_5xx or latency_p99");
            MetricKind::Events
        }
    };
    let events = match (&r.events, metric) {
        (Some(f), MetricKind::Events) => filter(c, f),
        (Some(_), m) => {
            c.error("events", format!("`events` filters only apply to `metric: events`, not `{}`", m.as_str()));
            EventFilter::default()
        }
        (None, _) => EventFilter::default(),
    };
    let cmp = match (r.above, r.below) {
        (Some(t), None) => Comparison::Above(t),
        (None, Some(t)) => Comparison::Below(t),
        (Some(_), Some(_)) => {
            c.error("below", "give `above` or `below`, not both");
            Comparison::Above(0.0)
        }
        (None, None) => {
            c.error("", "a rule needs a threshold: `above: <n>` or `below: <n>`");
            Comparison::Above(0.0)
        }
    };
    let key = if r.above.is_some() { "above" } else { "below" };
    let t = cmp.threshold();
    let (lo, hi) = match metric {
        MetricKind::Events => (0.0, 1e12),
        MetricKind::HealthScore | MetricKind::ErrorRate5xx => (0.0, 100.0),
        MetricKind::LatencyP99 => (0.0, 3_600_000.0),
    };
    if !t.is_finite() || t < lo || t > hi {
        c.error(key, format!("the threshold of `{}` must be between {lo} and {hi}, got {t}", metric.as_str()));
    }
    let window_secs = match &r.window {
        Some(_) => duration(c, "window", r.window.as_ref(), 3600, 60, MAX_WINDOW_SECS),
        None => {
            c.error("window", "a rule needs a `window` (1m to 168h), e.g. `window: 1h`");
            3600
        }
    };
    let for_secs = duration(c, "for", r.hold.as_ref(), 0, 0, MAX_HOLD_SECS);
    let cooldown_secs = duration(c, "cooldown", r.cooldown.as_ref(), DEFAULT_COOLDOWN_SECS, 0, MAX_HOLD_SECS);
    if r.min_requests.is_some() && !matches!(metric, MetricKind::ErrorRate5xx | MetricKind::LatencyP99) {
        c.error("min_requests", "`min_requests` only applies to `error_rate_5xx` and `latency_p99`");
    }
    let labels = r.labels.clone().unwrap_or_default();
    if labels.len() > MAX_LABELS {
        c.error("labels", format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in &labels {
        if k.is_empty()
            || k.len() > MAX_LABEL_LEN
            || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            c.error(&format!("labels.{k}"), "a label name is 1 to 256 characters of [A-Za-z0-9_.-]");
        }
        if v.len() > MAX_LABEL_LEN || v.chars().any(char::is_control) {
            c.error(&format!("labels.{k}"), "a label value is at most 256 characters, no control characters");
        }
    }
    let sinks = r.sinks.as_ref().map(|list| {
        if list.is_empty() {
            c.error("sinks", "`sinks` is empty: remove the key (every sink) or name at least one");
        }
        let mut out: Vec<Box<str>> = Vec::with_capacity(list.len());
        for (j, s) in list.iter().enumerate() {
            if s.is_empty() || s.len() > MAX_SINK_NAME {
                c.error(&format!("sinks[{j}]"), format!("a sink name is 1 to {MAX_SINK_NAME} characters"));
            } else if out.iter().any(|x| **x == **s) {
                c.error(&format!("sinks[{j}]"), format!("`{s}` is listed twice"));
            } else if let Some(known) = c.ctx.sinks() {
                if known.contains(&s.as_str()) {
                    out.push(Box::from(s.as_str()));
                } else {
                    let list = if known.is_empty() { "(none)".to_owned() } else { known.join(", ") };
                    c.error(&format!("sinks[{j}]"), format!("unknown sink `{s}`; sinks in the gateway config: {list}"));
                }
            } else {
                out.push(Box::from(s.as_str()));
            }
        }
        out
    });
    AlertRule {
        id: meta.id,
        hash: meta.hash,
        description: r.description.clone(),
        severity: meta.severity.unwrap_or(Severity::Warning),
        mode: meta.mode,
        metric,
        events,
        cmp,
        window_secs,
        for_secs,
        cooldown_secs,
        resolve: r.resolve.unwrap_or(true),
        min_requests: r.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
        labels,
        sinks,
    }
}

fn filter(c: &mut Checker<'_, '_>, f: &RawEventFilter) -> EventFilter {
    let mut out = EventFilter::default();
    for (j, t) in f.types.iter().flatten().enumerate() {
        match EventType::parse(t) {
            Some(k) if out.types.contains(&k) => {
                c.error(&format!("events.types[{j}]"), format!("`{t}` is listed twice"))
            }
            Some(k) => out.types.push(k),
            None => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                c.error(
                    &format!("events.types[{j}]"),
                    format!("unknown event type `{t}`; known: {}", known.join(", ")),
                );
            }
        }
    }
    out.severities = f.severities.clone().unwrap_or_default();
    for (j, v) in f.tenants.iter().flatten().enumerate() {
        if v.is_empty() {
            c.error(&format!("events.tenants[{j}]"), "a tenant cannot be empty");
        } else {
            out.tenants.push(Box::from(v.as_str()));
        }
    }
    if let Some(list) = c.routes("events.routes", f.routes.as_ref()) {
        out.routes = list.into_vec();
    }
    out
}

#[cfg(test)]
mod tests;
