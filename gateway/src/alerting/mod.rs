//! Alerts that reach people (issue 20): the evaluator of the rule files' `alerts:` section, the
//! sinks that deliver (Standard Webhooks-signed webhook, Slack, PagerDuty Events v2, e-mail over
//! SMTP), the daily digest, and the safe tests that prove the path.
//!
//! The evaluator runs on its own thread, never on the request path: every
//! `alerting.evaluate_every_ms` it reads the per-minute counters the request path already keeps
//! (events by type and severity, hits, requests, 5xx failures, latency buckets) — or, for a rule
//! filtering by severity, tenant or route, the in-memory event index — and steps each rule's
//! state machine ([`portcullis_rules::alerts::AlertState`]). A fire or resolve becomes one
//! notification per sink, queued without waiting ([`sinks`]).
//!
//! State is keyed by rule id and survives rule reloads: an unchanged rule keeps everything, a
//! changed one keeps its firing episode and cooldown (a reload never re-pages). It survives a
//! restart too: every change of a rule's state (and the next digest time) is written to
//! `<state_dir>/alerts.json` (durably, on the evaluator thread) and read at start, so a restart
//! or `kill -9` neither pages again for an alert already sent nor forgets to resolve it, and a
//! digest due while the gateway was down is sent at start.

pub mod config;
mod digest;
pub mod message;
mod sinks;
pub mod tls;

pub use config::{AlertingConfig, RawAlerting};

use crate::events::{format_time_ms, now_ms, EventBus, RequestWindow, SecurityEvent};
use crate::metrics::{Declared, Def};
use crate::reload::Rules;
use message::{events_query, Alert, Message, Status};
use parking_lot::Mutex;
use portcullis_rules::alerts::{AlertRule, AlertState, MetricKind, Transition};
use portcullis_rules::verdict::{EventType, Mode, Severity};
use serde_json::{json, Value};
use sinks::{Outcome, Sink, SinkStats};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// What alerting reads of the running gateway: its alert states, its events, its requests per
/// minute and its rules. Implemented by the shared state (`state::Shared`), which sits above
/// alerting in the module graph (docs/architecture.md).
pub trait Sources {
    /// The alert states, sinks and digest.
    fn alerting(&self) -> &Alerting;
    /// The event bus (counts, queries, hits).
    fn events(&self) -> &EventBus;
    /// Requests and 5xx per minute.
    fn requests(&self) -> &RequestWindow;
    /// The live rules.
    fn rules(&self) -> &Rules;
}

impl<T: Sources + ?Sized> Sources for Arc<T> {
    fn alerting(&self) -> &Alerting {
        (**self).alerting()
    }
    fn events(&self) -> &EventBus {
        (**self).events()
    }
    fn requests(&self) -> &RequestWindow {
        (**self).requests()
    }
    fn rules(&self) -> &Rules {
        (**self).rules()
    }
}

/// Per-rule counters and state.
#[derive(Debug, Default)]
struct RuleEntry {
    state: AlertState,
    severity: Option<Severity>,
    fired: u64,
    resolved: u64,
    suppressed: u64,
}

/// The alerting runtime: rule states, sinks, the digest schedule.
pub struct Alerting {
    cfg: AlertingConfig,
    sinks: Vec<Sink>,
    rules: Mutex<HashMap<Arc<str>, RuleEntry>>,
    events: Arc<EventBus>,
    evaluations: AtomicU64,
    digests_sent: AtomicU64,
    /// Unix ms of the next digest (0: none configured).
    next_digest_ms: AtomicU64,
    /// Where the state is kept (`<state_dir>`), and the last text written there.
    state_dir: Option<std::path::PathBuf>,
    saved: Mutex<String>,
}

/// The file in `state_dir` that keeps the rule states and the next digest time.
pub const STATE_FILE: &str = "alerts.json";

/// What [`STATE_FILE`] holds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    rules: std::collections::BTreeMap<String, AlertState>,
    #[serde(default)]
    next_digest_ms: u64,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting").field("sinks", &self.sinks).finish_non_exhaustive()
    }
}

/// What `POST /v1/safe-test/{name}` can ask of the alerting path besides an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeTest {
    /// One test notification to every sink (whatever its `min_severity`): proves each one.
    Sinks,
    /// A test notification from every health-score rule.
    Health,
    /// A test notification from every 5xx-rate rule.
    ErrorRate,
    /// A test notification from every p99-latency rule.
    Latency,
    /// The daily digest, now.
    Digest,
}

impl SafeTest {
    /// Every kind, for error messages.
    pub const ALL: [SafeTest; 5] =
        [SafeTest::Sinks, SafeTest::Health, SafeTest::ErrorRate, SafeTest::Latency, SafeTest::Digest];

    /// The path segment: `alert_sinks`, `alert_health`, `alert_5xx`, `alert_p99`, `digest`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sinks => "alert_sinks",
            Self::Health => "alert_health",
            Self::ErrorRate => "alert_5xx",
            Self::Latency => "alert_p99",
            Self::Digest => "digest",
        }
    }

    /// Parses a path segment (`-` and `_` alike, any case).
    pub fn parse(s: &str) -> Option<SafeTest> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How long a safe test waits for its deliveries before answering.
const SAFE_TEST_WAIT: Duration = Duration::from_secs(10);

const HEALTH_SCORE: Def<1> = Def::gauge(
    "portcullis_health_score",
    "The health score (0-100) over the window (docs/events.md \"Health score\": operator switch flips and the gateway's deliberate 5xx answers never lower it).",
    ["window"],
);
const ALERT_FIRING: Def<2> = Def::gauge(
    "portcullis_alert_firing",
    "Whether an alert rule's condition holds now (1) or not (0).",
    ["rule", "severity"],
);
const ALERT_TRANSITIONS_TOTAL: Def<2> = Def::counter(
    "portcullis_alert_transitions_total",
    "Alert rule transitions: fired (notified), resolved (notified), suppressed (within the cooldown).",
    ["rule", "transition"],
);
const ALERT_DELIVERIES_TOTAL: Def<3> = Def::counter(
    "portcullis_alert_deliveries_total",
    "Alert notifications per sink: delivered, failed (after retries), dropped (queue full).",
    ["sink", "type", "result"],
);
const ALERT_EVALUATIONS_TOTAL: Def<0> =
    Def::counter("portcullis_alert_evaluations_total", "Alert rule evaluation rounds.", []);
const ALERT_DIGESTS_TOTAL: Def<0> = Def::counter("portcullis_alert_digests_total", "Daily digests sent.", []);
const ALERT_DELIVERY_ATTEMPTS_TOTAL: Def<1> = Def::counter(
    "portcullis_alert_delivery_attempts_total",
    "Tries to deliver alert notifications, retries included.",
    ["sink"],
);
const ALERT_DELIVERY_RETRIES_TOTAL: Def<1> =
    Def::counter("portcullis_alert_delivery_retries_total", "Tries that failed and were scheduled again.", ["sink"]);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[
    &HEALTH_SCORE,
    &ALERT_FIRING,
    &ALERT_TRANSITIONS_TOTAL,
    &ALERT_DELIVERIES_TOTAL,
    &ALERT_DELIVERY_ATTEMPTS_TOTAL,
    &ALERT_DELIVERY_RETRIES_TOTAL,
    &ALERT_EVALUATIONS_TOTAL,
    &ALERT_DIGESTS_TOTAL,
];

impl Alerting {
    /// Starts one delivery thread per sink. The evaluator starts with [`Alerting::start`].
    /// `state_dir`: where the rule states are kept across restarts (`None`: in memory only).
    pub fn new(
        cfg: AlertingConfig,
        events: Arc<EventBus>,
        state_dir: Option<&std::path::Path>,
    ) -> std::io::Result<Alerting> {
        let mut sinks = Vec::with_capacity(cfg.sinks.len());
        for s in &cfg.sinks {
            sinks.push(Sink::start(s.clone(), cfg.retry, cfg.queue_capacity, events.clone())?);
        }
        let saved = state_dir.map(load_state).unwrap_or_default();
        let mut next = u64::try_from(cfg.digest.as_ref().map_or(0, |d| digest::next_at(d, now_ms()))).unwrap_or(0);
        // A digest that fell due while the gateway was down goes out at the first evaluation.
        if next > 0 && saved.next_digest_ms > 0 {
            next = next.min(saved.next_digest_ms);
        }
        let rules = saved
            .rules
            .into_iter()
            .map(|(id, state)| (Arc::from(id.as_str()), RuleEntry { state, ..RuleEntry::default() }))
            .collect();
        Ok(Alerting {
            cfg,
            sinks,
            rules: Mutex::new(rules),
            events,
            evaluations: AtomicU64::new(0),
            digests_sent: AtomicU64::new(0),
            next_digest_ms: AtomicU64::new(next),
            state_dir: state_dir.map(std::path::Path::to_path_buf),
            saved: Mutex::new(String::new()),
        })
    }

    /// Writes the rule states and the next digest time when they changed since the last write.
    /// A failed write is logged and retried at the next evaluation.
    fn save(&self) {
        let Some(dir) = &self.state_dir else { return };
        let saved = Saved {
            rules: self.rules.lock().iter().map(|(id, e)| (id.to_string(), e.state.clone())).collect(),
            next_digest_ms: self.next_digest_ms.load(Relaxed),
        };
        let Ok(text) = serde_json::to_string(&saved) else { return };
        let mut last = self.saved.lock();
        if *last == text {
            return;
        }
        match crate::durable::write_durably(dir, STATE_FILE, text.as_bytes()) {
            Ok(()) => *last = text,
            Err((e, _)) => tracing::error!(error = %e, "cannot write the alert states; retried at the next evaluation"),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AlertingConfig {
        &self.cfg
    }

    /// Starts the evaluator thread. It holds the shared state weakly and ends with it.
    pub fn start<S: Sources + Send + Sync + 'static>(shared: Weak<S>, every: Duration) -> std::io::Result<()> {
        std::thread::Builder::new().name("alerts".into()).spawn(move || loop {
            std::thread::sleep(every);
            let Some(shared) = shared.upgrade() else { return };
            let now = now_ms();
            shared.alerting().evaluate(&*shared, now);
            shared.alerting().digest_if_due(&*shared, now);
            shared.alerting().save();
        })?;
        Ok(())
    }

    /// One evaluation of every rule at `now`: reconciles the states with the rules in force
    /// (reload), measures, steps, and queues the notifications.
    pub fn evaluate(&self, shared: &dyn Sources, now: i64) {
        let loaded = shared.rules().current();
        let rules = loaded.snapshot.alerts.rules();
        let mut notes = Vec::new();
        {
            let mut map = self.rules.lock();
            let mut next: HashMap<Arc<str>, RuleEntry> = HashMap::with_capacity(rules.len());
            for r in rules {
                let mut e = map.remove(&r.id).unwrap_or_default();
                e.state = if e.state.hash.is_empty() { AlertState::new(r) } else { e.state.carried_to(r) };
                e.severity = Some(r.severity);
                let value = measure(shared, r, now);
                match e.state.step(r, value, now) {
                    Some(Transition::Fire { value, since_ms }) => {
                        e.fired += 1;
                        notes.push((r.clone(), Status::Firing, Some(value), Some(since_ms)));
                    }
                    Some(Transition::Resolve { value, fired_ms }) => {
                        e.resolved += 1;
                        notes.push((r.clone(), Status::Resolved, value, Some(fired_ms)));
                    }
                    Some(Transition::Suppressed { value }) => {
                        e.suppressed += 1;
                        tracing::info!(event.action = "alert_suppressed", rule = %r.id, value, "alert condition holds again within its cooldown: not notified");
                    }
                    None => {}
                }
                next.insert(r.id.clone(), e);
            }
            *map = next;
        }
        self.evaluations.fetch_add(1, Relaxed);
        for (rule, status, value, since) in notes {
            tracing::warn!(event.action = "alert", rule = %rule.id, status = status.as_str(), severity = rule.severity.as_str(), value, threshold = rule.cmp.threshold(), "alert {}", status.as_str());
            if rule.mode == Mode::Monitor {
                continue; // evaluated and shown, never sent
            }
            let alert = self.alert(&rule, status, false, value, since, now);
            self.dispatch(&Arc::new(Message::Alert(alert)), Some(&rule), None);
        }
    }

    fn alert(
        &self,
        rule: &AlertRule,
        status: Status,
        test: bool,
        value: Option<f64>,
        since: Option<i64>,
        now: i64,
    ) -> Alert {
        let query = events_query(rule);
        Alert {
            id: crate::ids::new_request_id(),
            status,
            test,
            rule_id: rule.id.to_string(),
            severity: rule.severity,
            description: rule.description.clone(),
            metric: rule.metric,
            comparison: rule.cmp.as_str(),
            threshold: rule.cmp.threshold(),
            value,
            window_secs: rule.window_secs,
            since: since.map(format_time_ms),
            at: format_time_ms(now),
            labels: rule.labels.clone(),
            dedup_key: rule.dedup_key(),
            events_url: self.cfg.links_base_url.as_ref().map(|b| format!("{b}{query}")),
            events_query: query,
        }
    }

    /// Queues a message for every sink that takes it (the rule's `sinks:`, the sink's
    /// `min_severity`); returns the sink names.
    fn dispatch(
        &self,
        msg: &Arc<Message>,
        rule: Option<&AlertRule>,
        done: Option<&std::sync::mpsc::SyncSender<Outcome>>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sinks {
            if rule.is_some_and(|r| !r.sends_to(&s.cfg.name)) || !s.accepts(msg) {
                continue;
            }
            s.send(msg.clone(), done.cloned());
            out.push(s.cfg.name.clone());
        }
        out
    }

    /// A safe test's event went out: every `events` rule whose types include it sends a test
    /// notification (no state, no cooldown). Returns `[{rule_id, sinks}]`.
    pub fn test_event(&self, shared: &dyn Sources, ev: &SecurityEvent) -> Value {
        let loaded = shared.rules().current();
        let now = now_ms();
        let mut out = Vec::new();
        for r in loaded.snapshot.alerts.rules() {
            let types = &r.events.types;
            if r.metric != MetricKind::Events
                || !(types.is_empty() || types.contains(&ev.kind))
                || r.mode == Mode::Monitor
            {
                continue;
            }
            let alert = self.alert(r, Status::Firing, true, Some(1.0), Some(ev.unix_ms()), now);
            let sinks = self.dispatch(&Arc::new(Message::Alert(alert)), Some(r), None);
            out.push(json!({ "rule_id": &*r.id, "severity": r.severity.as_str(), "sinks": sinks }));
        }
        Value::Array(out)
    }

    /// `POST /v1/safe-test/{alert_sinks|alert_health|alert_5xx|alert_p99|digest}`: sends, waits
    /// (at most 10 s) for every delivery's outcome, and answers with them. Blocking: call it on
    /// a blocking thread.
    pub fn safe_test(&self, shared: &dyn Sources, kind: SafeTest, who: &str) -> Value {
        let now = now_ms();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Outcome>(1024);
        let mut sent: Vec<(String, String)> = Vec::new(); // (what, sink)
        match kind {
            SafeTest::Sinks => {
                for s in &self.sinks {
                    let rule = test_rule(who);
                    let alert = self.alert(&rule, Status::Firing, true, Some(1.0), Some(now), now);
                    s.send(Arc::new(Message::Alert(alert)), Some(tx.clone()));
                    sent.push((rule.id.to_string(), s.cfg.name.clone()));
                }
            }
            SafeTest::Health | SafeTest::ErrorRate | SafeTest::Latency => {
                let metric = match kind {
                    SafeTest::Health => MetricKind::HealthScore,
                    SafeTest::ErrorRate => MetricKind::ErrorRate5xx,
                    _ => MetricKind::LatencyP99,
                };
                let loaded = shared.rules().current();
                for r in loaded.snapshot.alerts.rules().iter().filter(|r| r.metric == metric && r.mode == Mode::Enforce)
                {
                    // A value just past the threshold, as if it had been measured.
                    let value = match r.cmp {
                        portcullis_rules::alerts::Comparison::Above(t) => t + 1.0,
                        portcullis_rules::alerts::Comparison::Below(t) => (t - 1.0).max(0.0),
                    };
                    let alert = self.alert(r, Status::Firing, true, Some(value), Some(now), now);
                    for s in self.dispatch(&Arc::new(Message::Alert(alert)), Some(r), Some(&tx)) {
                        sent.push((r.id.to_string(), s));
                    }
                }
            }
            SafeTest::Digest => {
                for s in self.send_digest(shared, now, Some(&tx)) {
                    sent.push(("digest".into(), s));
                }
            }
        }
        drop(tx);
        let deadline = std::time::Instant::now() + SAFE_TEST_WAIT;
        let mut results: HashMap<String, Vec<Value>> = HashMap::new();
        for _ in 0..sent.len() {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok((sink, r)) => results.entry(sink).or_default().push(match r {
                    Ok(attempts) => json!({ "delivered": true, "attempts": attempts }),
                    Err(reason) => json!({ "delivered": false, "reason": reason }),
                }),
                Err(_) => break,
            }
        }
        let deliveries: Vec<Value> = sent
            .iter()
            .map(|(what, sink)| {
                let r = results.get_mut(sink).and_then(|v| if v.is_empty() { None } else { Some(v.remove(0)) });
                let mut o = r.unwrap_or_else(|| json!({ "delivered": false, "reason": "pending (still retrying)" }));
                o["sink"] = json!(sink);
                o["alert"] = json!(what);
                o
            })
            .collect();
        let all = !deliveries.is_empty() && deliveries.iter().all(|d| d["delivered"] == true);
        json!({ "test": kind.as_str(), "delivered": all, "deliveries": deliveries })
    }

    fn digest_if_due(&self, shared: &dyn Sources, now: i64) {
        let Some(d) = &self.cfg.digest else { return };
        let due = i64::try_from(self.next_digest_ms.load(Relaxed)).unwrap_or(i64::MAX);
        if now < due {
            return;
        }
        self.next_digest_ms.store(u64::try_from(digest::next_at(d, now)).unwrap_or(0), Relaxed);
        self.send_digest(shared, now, None);
    }

    fn send_digest(
        &self,
        shared: &dyn Sources,
        now: i64,
        done: Option<&std::sync::mpsc::SyncSender<Outcome>>,
    ) -> Vec<String> {
        let firing: Vec<Value> = {
            let map = self.rules.lock();
            let mut v: Vec<Value> = map
                .iter()
                .filter(|(_, e)| e.state.firing())
                .map(|(id, e)| json!({ "rule_id": &**id, "severity": e.severity.map_or("", Severity::as_str) }))
                .collect();
            v.sort_by(|a, b| a["rule_id"].as_str().cmp(&b["rule_id"].as_str()));
            v
        };
        let zone = self.cfg.digest.as_ref().map_or("UTC", |d| d.zone_name.as_str());
        let body = digest::build(shared, now, firing);
        let title = format!("[Portcullis] daily digest {} ({zone})", digest::local_date(self.cfg.digest.as_ref(), now));
        let msg = Arc::new(Message::Digest { id: crate::ids::new_request_id(), title, body });
        let wanted = self.cfg.digest.as_ref().and_then(|d| d.sinks.clone());
        let mut out = Vec::new();
        for s in &self.sinks {
            let listed = wanted.as_ref().is_none_or(|w| w.contains(&s.cfg.name));
            if listed && s.accepts(&msg) {
                s.send(msg.clone(), done.cloned());
                out.push(s.cfg.name.clone());
            }
        }
        self.digests_sent.fetch_add(1, Relaxed);
        out
    }

    /// Prometheus text: the health score, every rule's firing state and notification counts,
    /// every sink's deliveries.
    pub fn render_metrics(&self, shared: &dyn Sources, out: &mut crate::metrics::Scrape) {
        let now = now_ms();
        let mut f = out.family(&HEALTH_SCORE);
        for (label, minutes) in [("1h", 60), ("24h", 1440)] {
            f.sample([label], health(shared, now, minutes));
        }
        let map = self.rules.lock();
        let mut ids: Vec<&Arc<str>> = map.keys().collect();
        ids.sort();
        let mut f = out.family(&ALERT_FIRING);
        for id in &ids {
            if let Some(e) = map.get(*id) {
                f.sample([id, e.severity.map_or("", Severity::as_str)], e.state.firing());
            }
        }
        let mut f = out.family(&ALERT_TRANSITIONS_TOTAL);
        for id in &ids {
            if let Some(e) = map.get(*id) {
                for (what, n) in [("fired", e.fired), ("resolved", e.resolved), ("suppressed", e.suppressed)] {
                    f.sample([id, what], n);
                }
            }
        }
        drop(map);
        let mut f = out.family(&ALERT_DELIVERIES_TOTAL);
        for s in &self.sinks {
            for (what, c) in
                [("delivered", &s.stats.delivered), ("failed", &s.stats.failed), ("dropped", &s.stats.dropped)]
            {
                f.sample([&s.cfg.name, s.cfg.kind.as_str(), what], c.load(Relaxed));
            }
        }
        let per_sink: [(&Def<1>, StatOf); 2] =
            [(&ALERT_DELIVERY_ATTEMPTS_TOTAL, |s| &s.attempts), (&ALERT_DELIVERY_RETRIES_TOTAL, |s| &s.retries)];
        for (def, counter) in per_sink {
            let mut f = out.family(def);
            for s in &self.sinks {
                f.sample([&s.cfg.name], counter(&s.stats).load(Relaxed));
            }
        }
        out.family(&ALERT_EVALUATIONS_TOTAL).sample([], self.evaluations.load(Relaxed));
        out.family(&ALERT_DIGESTS_TOTAL).sample([], self.digests_sent.load(Relaxed));
    }

    /// The events bus the sinks report failures to.
    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }
}

/// Reads one counter of a sink's stats.
type StatOf = fn(&SinkStats) -> &AtomicU64;

/// The rule a sink test notification is about.
/// The saved states in `dir`; none (logged) when the file is missing or unreadable.
fn load_state(dir: &std::path::Path) -> Saved {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "the saved alert states cannot be read: starting without them");
            Saved::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the saved alert states cannot be read: starting without them");
            Saved::default()
        }
    }
}

fn test_rule(who: &str) -> AlertRule {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("requested_by".to_owned(), who.to_owned());
    AlertRule {
        id: Arc::from("safe-test"),
        hash: String::new(),
        description: Some("Test notification from POST /v1/safe-test/alert_sinks: this sink works.".into()),
        severity: Severity::Critical,
        mode: Mode::Enforce,
        metric: MetricKind::Events,
        events: portcullis_rules::alerts::EventFilter::default(),
        cmp: portcullis_rules::alerts::Comparison::Above(0.0),
        window_secs: 60,
        for_secs: 0,
        cooldown_secs: 0,
        resolve: false,
        min_requests: 0,
        labels,
        sinks: None,
    }
}

fn minutes(secs: u64) -> u32 {
    u32::try_from(secs.div_ceil(60)).unwrap_or(u32::MAX).max(1)
}

/// The health score over the last `minutes`.
fn health(shared: &dyn Sources, now: i64, minutes: u32) -> u8 {
    let counts = shared.events().counts_minutes(now, minutes);
    let requests = shared.requests().totals_minutes_at(now, minutes);
    crate::events::health_of(&counts, &requests)
}

/// A rule's value now (`None`: not enough data to judge).
fn measure(shared: &dyn Sources, r: &AlertRule, now: i64) -> Option<f64> {
    let m = minutes(r.window_secs);
    match r.metric {
        MetricKind::Events if r.events.by_type_only() => {
            let c = shared.events().counts_minutes(now, m);
            let types: &[EventType] = if r.events.types.is_empty() { &EventType::ALL } else { &r.events.types };
            Some(types.iter().map(|t| c.hits(*t)).sum::<u64>() as f64)
        }
        MetricKind::Events => {
            let cutoff = now - i64::from(m) * 60_000;
            let f = &r.events;
            let (n, _complete) = shared.events().hits_since(cutoff, |e| {
                f.matches(e.kind, e.severity, e.tenant.as_deref(), e.target_tenant.as_deref(), e.route.as_deref())
            });
            Some(n as f64)
        }
        MetricKind::HealthScore => Some(f64::from(health(shared, now, m))),
        MetricKind::ErrorRate5xx => {
            let t = shared.requests().totals_minutes_at(now, m);
            (t.requests >= r.min_requests.max(1)).then(|| t.failure_percent())
        }
        MetricKind::LatencyP99 => {
            let t = shared.requests().totals_minutes_at(now, m);
            if t.requests < r.min_requests.max(1) {
                return None;
            }
            t.p99_ms().map(|ms| ms as f64)
        }
    }
}
