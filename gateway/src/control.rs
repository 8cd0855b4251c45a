//! The control endpoint: its own listener, `/health`, `/ready`, `/metrics` without a token, and
//! `/v1/*` behind bearer tokens stored as SHA-256 hashes with roles.
//!
//! Order of answers for `/v1`: no or unknown token → 401; unknown path → 404; wrong method →
//! 405 (with `Allow`); role too weak → 403. Every refusal is logged with the caller's token name
//! (never the token).

use crate::audit::{AuditAction, AuditEntry};
use crate::clock::{now_unix, rfc3339};
use crate::config::Role;
use crate::events::{events_body, switch_changed_event, EventQuery, SecurityEvent, SummaryQuery, TopThreatsQuery};
use crate::ids::new_request_id;
use crate::metrics::{Declared, Def, Scrape};
use crate::reload::{Reloaded, Trigger};
use crate::state::{dir_writable, Shared};
use crate::switches::{etag, parse_if_match, Change, MaintenanceChange, SwitchError};
use crate::txn::{transact, Meta, Op, Plan, Refusal as _, Refused, TxError};
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use portcullis_rules::deny::{render, Deny, DenyCode};
use portcullis_rules::verdict::EventType;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

mod console;
mod ops;

/// Largest control request body read.
const MAX_BODY: usize = 64 * 1024;

/// What a `/v1` endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Rules,
    RulesReload,
    Events,
    Summary,
    TopThreats,
    SafeTest,
    Switches,
    Maintenance,
    Channel,
    Flag,
    Upstreams,
    Tokens,
    SessionRevoke,
    SessionRestore,
    QuotaUsage,
    QuotaReset,
    // The operator's verbs (control/ops.rs).
    QuotaList,
    SessionList,
    BlockList,
    SubjectBlock,
    SubjectUnblock,
    AddressBlock,
    AddressUnblock,
    TenantList,
    TenantSuspend,
    TenantResume,
    AllowList,
    AllowAdd,
    AllowRemove,
    AuditPage,
    WhoAmI,
}

/// The `/v1` routing table: (method, path pattern, role, handler). `{}` matches one segment.
const ENDPOINTS: &[(&str, &str, Role, Handler)] = &[
    ("GET", "/v1/rules", Role::Viewer, Handler::Rules),
    ("GET", "/v1/upstreams", Role::Viewer, Handler::Upstreams),
    ("GET", "/v1/tokens", Role::Admin, Handler::Tokens),
    ("POST", "/v1/rules/reload", Role::Operator, Handler::RulesReload),
    ("GET", "/v1/switches", Role::Viewer, Handler::Switches),
    ("PUT", "/v1/switches/maintenance", Role::Operator, Handler::Maintenance),
    ("PUT", "/v1/switches/channels/{}", Role::Operator, Handler::Channel),
    ("PUT", "/v1/flags/{}", Role::Operator, Handler::Flag),
    ("GET", "/v1/events", Role::Viewer, Handler::Events),
    ("GET", "/v1/summary", Role::Viewer, Handler::Summary),
    ("GET", "/v1/top-threats", Role::Viewer, Handler::TopThreats),
    ("POST", "/v1/safe-test/{}", Role::Operator, Handler::SafeTest),
    ("POST", "/v1/sessions/{}/revoke", Role::Operator, Handler::SessionRevoke),
    ("DELETE", "/v1/sessions/{}/revoke", Role::Operator, Handler::SessionRestore),
    ("GET", "/v1/quotas/{}", Role::Viewer, Handler::QuotaUsage),
    ("POST", "/v1/quotas/{}/reset", Role::Operator, Handler::QuotaReset),
    // The operator's verbs (control/ops.rs).
    ("GET", "/v1/whoami", Role::Viewer, Handler::WhoAmI),
    ("GET", "/v1/audit", Role::Admin, Handler::AuditPage),
    ("GET", "/v1/quotas", Role::Viewer, Handler::QuotaList),
    ("GET", "/v1/sessions", Role::Viewer, Handler::SessionList),
    ("GET", "/v1/blocks", Role::Viewer, Handler::BlockList),
    ("PUT", "/v1/blocks/subjects/{}", Role::Operator, Handler::SubjectBlock),
    ("DELETE", "/v1/blocks/subjects/{}", Role::Operator, Handler::SubjectUnblock),
    ("PUT", "/v1/blocks/addresses/{}", Role::Operator, Handler::AddressBlock),
    ("DELETE", "/v1/blocks/addresses/{}", Role::Operator, Handler::AddressUnblock),
    ("GET", "/v1/tenants", Role::Viewer, Handler::TenantList),
    ("PUT", "/v1/tenants/{}/suspension", Role::Operator, Handler::TenantSuspend),
    ("DELETE", "/v1/tenants/{}/suspension", Role::Operator, Handler::TenantResume),
    ("GET", "/v1/allowlist", Role::Viewer, Handler::AllowList),
    ("PUT", "/v1/allowlist/{}/{}", Role::Admin, Handler::AllowAdd),
    ("DELETE", "/v1/allowlist/{}/{}", Role::Admin, Handler::AllowRemove),
];

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("{}"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Longest `target` a refusal's audit record keeps of the request line (the rest is cut).
pub const MAX_REFUSAL_TARGET_CHARS: usize = 128;
/// Sources whose unauthenticated refusals are aggregated at once (more share one entry, `*`).
const MAX_REFUSAL_SOURCES: usize = 10_000;

/// Unauthenticated refusals, aggregated per source address and minute: the first one of each
/// (source, minute) is audited, with how many the source sent in its last audited minute after
/// that one; the rest are only counted. A flood of 401s costs O(1) records per source and minute.
#[derive(Debug, Default)]
struct Refusals {
    by_source: parking_lot::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// Every unauthenticated refusal, audited or not.
    total: std::sync::atomic::AtomicU64,
}

impl Refusals {
    /// `Some(suppressed)` when this refusal is to be audited (`suppressed`: the source's refusals
    /// not audited since its last audited one); `None` when it is only counted.
    fn admit(&self, source: &str, minute: u64) -> Option<u64> {
        let mut m = self.by_source.lock();
        if m.len() >= MAX_REFUSAL_SOURCES && !m.contains_key(source) {
            m.retain(|_, (mi, _)| *mi == minute);
        }
        let key = if m.len() >= MAX_REFUSAL_SOURCES && !m.contains_key(source) { "*" } else { source };
        let e = m.entry(key.to_string()).or_insert((u64::MAX, 0));
        if e.0 == minute {
            e.1 += 1;
            None
        } else {
            let suppressed = e.1;
            *e = (minute, 0);
            Some(suppressed)
        }
    }
}

/// The control listener's per-source rate limit (fixed one-second windows).
#[derive(Debug, Default)]
struct Throttle {
    by_source: parking_lot::Mutex<std::collections::HashMap<String, (u64, u32)>>,
    /// Requests refused with 429.
    limited: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// True when the source may send one more request in this second (at most `limit` per
    /// second: `control.max_requests_per_second`; beyond, `429` before the token is looked at).
    fn allow(&self, source: &str, second: u64, limit: u32) -> bool {
        let mut m = self.by_source.lock();
        if m.len() >= MAX_REFUSAL_SOURCES && !m.contains_key(source) {
            m.retain(|_, (s, _)| *s == second);
        }
        let key = if m.len() >= MAX_REFUSAL_SOURCES && !m.contains_key(source) { "*" } else { source };
        let e = m.entry(key.to_string()).or_insert((second, 0));
        if e.0 != second {
            *e = (second, 0);
        }
        e.1 = e.1.saturating_add(1);
        let ok = e.1 <= limit;
        if !ok {
            self.limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    }
}

/// `s` cut to at most `max` characters (an ellipsis marks the cut).
fn cap_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// The control application.
pub struct ControlApp {
    shared: Arc<Shared>,
    refusals: Refusals,
    throttle: Throttle,
}

const BACKEND_HEALTHY: Def<2> =
    Def::gauge("portcullis_backend_healthy", "1 when the backend passes its health check.", ["pool", "backend"]);
const UPSTREAM_HEALTHY: Def<1> =
    Def::gauge("portcullis_upstream_healthy", "1 when the pool has a healthy backend.", ["upstream"]);
const READY: Def<0> = Def::gauge("portcullis_ready", "1 when /ready answers 200.", []);
const CONTROL_UNAUTHENTICATED_TOTAL: Def<0> = Def::counter(
    "portcullis_control_unauthenticated_total",
    "Control requests refused with 401 (audited once per source and minute).",
    [],
);
const CONTROL_RATE_LIMITED_TOTAL: Def<0> = Def::counter(
    "portcullis_control_rate_limited_total",
    "Control requests refused with 429 (per-source rate limit).",
    [],
);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] =
    &[&BACKEND_HEALTHY, &UPSTREAM_HEALTHY, &READY, &CONTROL_UNAUTHENTICATED_TOTAL, &CONTROL_RATE_LIMITED_TOTAL];

/// Every family `/metrics` reads from state at scrape, from each module that adds some: registered
/// once, with the recorded ones, when the config loads ([`crate::metrics::Metrics::new`] refuses a
/// name twice).
pub fn metric_families() -> Vec<&'static dyn Declared> {
    [
        METRICS,
        crate::switches::METRICS,
        crate::sessions::METRICS,
        crate::fleet::METRICS,
        crate::webhook_replay::METRICS,
        crate::pii_response::METRICS,
        crate::limit_state::METRICS,
        crate::reload::METRICS,
        crate::events::METRICS,
        crate::alerting::METRICS,
        crate::autoblock::METRICS,
        crate::anomaly::METRICS,
        crate::tls::METRICS,
    ]
    .concat()
}

impl ControlApp {
    /// Over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared, refusals: Refusals::default(), throttle: Throttle::default() }
    }

    /// The token's holder, comparing against every configured hash in constant time.
    fn authenticate(&self, header: Option<&[u8]>) -> Option<(&str, Role)> {
        let token = portcullis_rules::identity::bearer_token(header?)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in &self.shared.config.tokens {
            if bool::from(t.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some((t.name.as_str(), t.role));
            }
        }
        found
    }

    fn ready(&self) -> (bool, Value) {
        let upstreams = self.shared.upstreams_ready();
        let state = dir_writable(&self.shared.config.state_dir);
        // Rules are always loaded (the gateway does not start without them); a failed reload
        // keeps the running snapshot and does not make the instance unready.
        // The audit log refusing writes blocks every mutation (fail closed): not ready.
        // (`state` already probes the directory the audit log lives in.)
        let audit = self.shared.audit.healthy();
        // Upstream health is information here, never readiness: readiness is about this
        // instance. When every backend of a pool is down, every gateway pod sees it at once; a
        // probe that failed on it would take the whole fleet out of its Service, and the clients'
        // answers from `502 upstream_unavailable` to connection refused. Upstream health has its
        // own endpoint (`/v1/upstreams`) and metrics (`portcullis_upstream_healthy`).
        let checks = json!({ "rules": true, "upstreams": upstreams, "state": state, "audit": audit });
        (state && audit, checks)
    }

    fn metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut s = Scrape::new();
        let mut f = s.family(&BACKEND_HEALTHY);
        for (pool, backend, healthy) in self.shared.backend_health() {
            f.sample([&pool, &backend], healthy);
        }
        let mut f = s.family(&UPSTREAM_HEALTHY);
        for (pool, healthy) in self.shared.pool_health() {
            f.sample([pool], healthy);
        }
        let (ready, _) = self.ready();
        s.family(&READY).sample([], ready);
        s.family(&CONTROL_UNAUTHENTICATED_TOTAL).sample([], self.refusals.total.load(Relaxed));
        s.family(&CONTROL_RATE_LIMITED_TOTAL).sample([], self.throttle.limited.load(Relaxed));
        self.shared.switches.render_metrics(now_unix(), &mut s);
        self.shared.sessions.render_metrics(&mut s);
        if let Some(f) = &self.shared.fleet {
            f.render_metrics(&mut s);
        }
        self.shared.webhooks.render_metrics(&mut s);
        self.shared.pii.render_metrics(&mut s);
        self.shared.limits.render_metrics(&self.shared.rules.current().snapshot, &mut s);
        self.shared.rules.render_metrics(&mut s);
        self.shared.events.render_metrics(&mut s);
        self.shared.alerting.render_metrics(&self.shared, &mut s);
        self.shared.auto_blocks.render_metrics(&mut s);
        self.shared.anomaly.render_metrics(&mut s);
        if let Some(tls) = &self.shared.tls {
            tls.render_metrics(&mut s);
        }
        self.shared.metrics.render(s)
    }

    /// Runs an authorised `/v1` request. `Err` is a deny rendered by the one renderer.
    async fn handle(&self, h: Handler, call: &Call<'_>) -> Result<(u16, Value), Deny> {
        let cfg = &self.shared.config;
        match h {
            Handler::Rules => Ok((200, self.shared.rules.describe())),
            Handler::RulesReload => {
                let rules = self.shared.rules.clone();
                let done = tokio::task::spawn_blocking(move || rules.reload(Trigger::Api))
                    .await
                    .map_err(|_| Deny::new(DenyCode::Internal, "reload_task"))?;
                tracing::info!(event.action = "control_mutation", action = "rules_reload", user.name = call.who, http.request.id = call.request_id, result = ?done, "rules reload requested");
                let (outcome, status, new) = match &done {
                    Reloaded::Applied { version, .. } | Reloaded::Unchanged { version } => ("ok", 200, json!(version)),
                    Reloaded::Failed { errors, .. } => ("failed", 422, json!({ "errors": errors.len() })),
                };
                self.audit_off_thread(OwnedEntry {
                    actor: Some(call.who.to_owned()),
                    role: Some(call.role.as_str().to_owned()),
                    source_ip: call.source_ip.map(str::to_owned),
                    request_id: call.request_id.to_owned(),
                    action: AuditAction::RulesReload,
                    target: "rules".into(),
                    old: Value::Null,
                    new,
                    reason: None,
                    outcome,
                    status,
                })
                .await;
                match done {
                    Reloaded::Applied { version, previous } => Ok((
                        200,
                        json!({ "changed": version != previous, "version": version, "previous": previous, "loaded_at": rfc3339(self.shared.rules.current().loaded_at) }),
                    )),
                    Reloaded::Unchanged { version } => Ok((200, json!({ "changed": false, "version": version }))),
                    Reloaded::Failed { errors, .. } => {
                        Err(Deny::new(DenyCode::InvalidRules, "reload_failed").with_details(errors))
                    }
                }
            }
            Handler::Events => {
                let q = EventQuery::parse(call.query).map_err(bad_query)?;
                Ok((200, events_body(&self.shared.events.query(&q))))
            }
            Handler::Summary => {
                let q = SummaryQuery::parse(call.query).map_err(bad_query)?;
                Ok((200, per_instance(self.shared.events.summary(q.hours, &self.shared.requests))))
            }
            Handler::TopThreats => {
                let q = TopThreatsQuery::parse(call.query).map_err(bad_query)?;
                Ok((200, per_instance(self.shared.events.top_threats(q.hours, q.limit))))
            }
            Handler::SafeTest => {
                let name = call.path.rsplit('/').next().unwrap_or("");
                // An event type, or one of the alerting path's own tests (alert_sinks, ...).
                let kind = EventType::parse(name);
                let alert_test = crate::alerting::SafeTest::parse(name);
                if kind.is_none() && alert_test.is_none() {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    let alerts: Vec<&str> = crate::alerting::SafeTest::ALL.iter().map(|t| t.as_str()).collect();
                    return Err(Deny::new(DenyCode::BadRequest, "safe_test_type").with_details(vec![format!(
                        "unknown event type `{name}`; known: {}; alerting tests: {}",
                        known.join(", "),
                        alerts.join(", ")
                    )]));
                }
                if !self.shared.switches.flag(crate::switches::Flag::SafeTestMode) {
                    return Err(Deny::new(DenyCode::Conflict, "safe_test_mode_off").with_details(vec![
                        "safe_test_mode is off: PUT /v1/flags/safe_test_mode {\"enabled\":true}, or start with SAFE_TEST_MODE=true".into(),
                    ]));
                }
                let version = self.shared.rules.current().snapshot.version.clone();
                let event = kind.map(|kind| SecurityEvent::safe_test(kind, Some(&version), call.who));
                let (target, new) = match (&event, alert_test) {
                    (Some(e), _) => (format!("event:{}", e.kind.as_str()), json!(e.id)),
                    (None, t) => (format!("alert:{}", t.map_or("", |t| t.as_str())), Value::Null),
                };
                if !self
                    .audit_off_thread(OwnedEntry {
                        actor: Some(call.who.to_owned()),
                        role: Some(call.role.as_str().to_owned()),
                        source_ip: call.source_ip.map(str::to_owned),
                        request_id: call.request_id.to_owned(),
                        action: AuditAction::SafeTest,
                        target: target.clone(),
                        old: Value::Null,
                        new,
                        reason: None,
                        outcome: "ok",
                        status: 202,
                    })
                    .await
                {
                    return Err(Deny::new(DenyCode::Internal, "audit_unavailable"));
                }
                let Some(event) = event else {
                    // The alerting path's own test: answered once every delivery is done (or 10 s).
                    let shared = self.shared.clone();
                    let who = call.who.to_owned();
                    let test = alert_test.unwrap_or(crate::alerting::SafeTest::Sinks);
                    let body = tokio::task::spawn_blocking(move || shared.alerting.safe_test(&shared, test, &who))
                        .await
                        .unwrap_or(Value::Null);
                    tracing::info!(event.action = "control_mutation", action = "safe_test", user.name = call.who, http.request.id = call.request_id, target = %target, "safe test of the alerting path");
                    return Ok((202, body));
                };
                let id = event.id.clone();
                let kind = event.kind;
                let alerts = self.shared.alerting.test_event(&self.shared, &event);
                let body = json!({ "emitted": true, "event": &event, "alerts": alerts });
                self.shared.events.emit(event);
                // Answer once the event is in every sink, so the operator's next query sees it.
                let events = self.shared.events.clone();
                let flushed =
                    tokio::task::spawn_blocking(move || events.flush(Duration::from_secs(2))).await.unwrap_or(false);
                tracing::info!(event.action = "control_mutation", action = "safe_test", user.name = call.who, http.request.id = call.request_id, event.id = %id, event.type = kind.as_str(), flushed, "safe test event emitted");
                Ok((202, body))
            }
            Handler::Switches => {
                let mut body = self.shared.switches.view(now_unix());
                if let Some(f) = &self.shared.fleet {
                    body["fleet"] = f.view();
                }
                Ok((200, body))
            }
            Handler::Maintenance | Handler::Channel | Handler::Flag => {
                // Every mutation fsyncs: on a blocking thread, never on the runtime's.
                let shared = self.shared.clone();
                let owned = OwnedCall::of(call);
                tokio::task::spawn_blocking(move || ControlApp::new(shared).mutate(h, &owned.call()))
                    .await
                    .map_err(|_| Deny::new(DenyCode::Internal, "switch_task"))?
            }
            Handler::SessionRevoke | Handler::SessionRestore => {
                let shared = self.shared.clone();
                let owned = OwnedCall::of(call);
                tokio::task::spawn_blocking(move || {
                    ControlApp::new(shared).session(h == Handler::SessionRevoke, &owned)
                })
                .await
                .map_err(|_| Deny::new(DenyCode::Internal, "session_task"))?
            }
            Handler::Upstreams => {
                let pools: Vec<Value> = cfg
                    .pools
                    .iter()
                    .map(|p| {
                        let backends: Vec<Value> = self
                            .shared
                            .backend_health()
                            .into_iter()
                            .filter(|(pool, _, _)| *pool == p.name)
                            .map(|(_, b, healthy)| json!({ "address": b, "healthy": healthy }))
                            .collect();
                        json!({ "name": p.name, "backends": backends })
                    })
                    .collect();
                Ok((200, json!({ "pools": pools })))
            }
            Handler::Tokens => {
                let tokens: Vec<Value> =
                    cfg.tokens.iter().map(|t| json!({ "name": t.name, "role": t.role.as_str() })).collect();
                Ok((200, json!({ "tokens": tokens })))
            }
            Handler::QuotaUsage => {
                let tenant = path_tenant(call.path).ok_or_else(|| {
                    Deny::new(DenyCode::BadRequest, "tenant")
                        .with_details(vec!["the tenant is not valid percent-encoded UTF-8".into()])
                })?;
                let snapshot = &self.shared.rules.current().snapshot;
                let usage = snapshot.quotas.usage(&self.shared.limits.book, &tenant, now_unix());
                Ok((
                    200,
                    json!({
                        "tenant": tenant,
                        "enforcement": self.shared.switches.flag(crate::switches::Flag::QuotaEnforcement),
                        "quotas": usage,
                    }),
                ))
            }
            Handler::QuotaReset => {
                let shared = self.shared.clone();
                let owned = OwnedCall::of(call);
                tokio::task::spawn_blocking(move || ControlApp::new(shared).quota_reset(&owned))
                    .await
                    .map_err(|_| Deny::new(DenyCode::Internal, "quota_task"))?
            }
            _ => self.operator(h, call).await,
        }
    }
}

/// An audit entry that owns its fields, to be written on a blocking thread.
struct OwnedEntry {
    actor: Option<String>,
    role: Option<String>,
    source_ip: Option<String>,
    request_id: String,
    action: AuditAction,
    target: String,
    old: Value,
    new: Value,
    reason: Option<String>,
    outcome: &'static str,
    status: u16,
}

impl OwnedEntry {
    fn entry(&self) -> AuditEntry<'_> {
        AuditEntry::new(self.action, &self.target, self.outcome, self.status)
            .by(self.actor.as_deref(), self.role.as_deref(), self.source_ip.as_deref(), &self.request_id)
            .values(self.old.clone(), self.new.clone())
            .reason(self.reason.as_deref())
    }
}

impl ControlApp {
    /// Appends one audit record on a blocking thread (it fsyncs, and may wait for the store's
    /// lock): never on the runtime's thread. False when it could not be written.
    async fn audit_off_thread(&self, e: OwnedEntry) -> bool {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || ControlApp::new(shared).audit(&e.entry())).await.unwrap_or(false)
    }

    /// Appends one audit record; false (and an error log) when it could not be written.
    fn audit(&self, e: &AuditEntry<'_>) -> bool {
        match self.shared.audit.append(e) {
            Ok(_) => true,
            Err(err) => {
                tracing::error!(error = %err, action = e.action.as_str(), change.target = e.target, "cannot write the audit log");
                false
            }
        }
    }

    /// A switch or flag change: parse, apply (persisted with fsync), audit (fsynced) and only then
    /// acknowledge. If the audit record cannot be written the change is reverted and refused:
    /// no unaudited mutation stays in force.
    fn mutate(&self, h: Handler, call: &Call<'_>) -> Result<(u16, Value), Deny> {
        let name = call.path.rsplit('/').next().unwrap_or("").to_string();
        let (target, action) = match h {
            Handler::Maintenance => ("maintenance".to_string(), AuditAction::MaintenanceSet),
            Handler::Channel => (format!("channel:{name}"), AuditAction::ChannelSet),
            _ => (format!("flag:{name}"), AuditAction::FlagSet),
        };
        let requested: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
        let refuse = |deny: Deny, status: u16, why: String| -> Deny {
            self.audit(
                &AuditEntry::new(action, &target, "refused", status)
                    .by(Some(call.who), Some(call.role.as_str()), call.source_ip, call.request_id)
                    .values(Value::Null, requested.clone())
                    .reason(Some(&why)),
            );
            deny.with_details(vec![why])
        };
        let if_match = match call.if_match.map(parse_if_match) {
            None => None,
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(refuse(Deny::new(DenyCode::BadRequest, "if_match"), 400, e)),
        };
        let mutation = match h {
            Handler::Maintenance => parse_body::<MaintenanceChange>(call.body).map(Mutation::Maintenance),
            Handler::Channel => parse_body::<ToggleBody>(call.body).map(|b| Mutation::Channel {
                name: name.clone(),
                enabled: b.enabled,
                reason: b.reason,
            }),
            _ => parse_body::<ToggleBody>(call.body).map(|b| Mutation::Flag {
                name: name.clone(),
                enabled: b.enabled,
                reason: b.reason,
            }),
        }
        .map_err(|e| refuse(Deny::new(DenyCode::BadRequest, "switch_body"), 400, e))?;
        let sw = &self.shared.switches;
        let reason = match &mutation {
            Mutation::Maintenance(m) => m.reason.clone(),
            Mutation::Channel { reason, .. } | Mutation::Flag { reason, .. } => reason.clone(),
        };
        let meta = Meta {
            actor: Some(call.who),
            role: Some(call.role.as_str()),
            source_ip: call.source_ip,
            request_id: call.request_id,
            status: 200,
        };
        let fleet = self.shared.fleet.as_deref();
        let (committed, published) = crate::fleet::run(fleet, action, || {
            transact(
                &*self.shared.audit,
                self.shared.state(),
                meta,
                &target,
                requested,
                action,
                || -> Result<Plan, SwitchError> {
                    let (op, old) = match mutation {
                        Mutation::Maintenance(m) => sw.plan_maintenance(m, call.who, if_match),
                        Mutation::Channel { name, enabled, reason } => {
                            sw.plan_channel(&name, enabled, reason, call.who, if_match)
                        }
                        Mutation::Flag { name, enabled, reason } => {
                            sw.plan_flag(&name, enabled, reason, call.who, if_match)
                        }
                    }?;
                    let op = Op::Switch(op);
                    if let Some(f) = fleet {
                        f.admit(&op).map_err(SwitchError::StoreUnavailable)?;
                    }
                    Ok(Plan { action, op, old, reason: reason.clone() })
                },
            )
        });
        let change = match committed {
            Ok(c) => c.change(),
            Err(TxError::Refused(e)) => {
                let code = match e.status() {
                    404 => DenyCode::NotFound,
                    412 => DenyCode::PreconditionFailed,
                    400 => DenyCode::BadRequest,
                    503 => DenyCode::StoreUnavailable,
                    _ => DenyCode::Internal,
                };
                return Err(Deny::new(code, "switch").with_details(vec![e.to_string()]));
            }
            Err(TxError::Store(e)) => return Err(audit_unavailable(&e)),
        };
        self.switch_changed(&change, call.who);
        tracing::info!(event.action = "control_mutation", action = action.as_str(), user.name = call.who, http.request.id = call.request_id, change.target = %change.target, version = change.version, "switch changed");
        let mut body =
            json!({ "version": change.version, "target": change.target, "old": change.old, "new": change.new });
        body["etag"] = json!(etag(change.version));
        if let Some(p) = published {
            body["fleet"] = p.to_json();
        }
        Ok((200, body))
    }

    /// `POST /v1/sessions/{id}/revoke` (revoke) and `DELETE` (restore): persisted (fsync), then
    /// audited; if the audit record cannot be written the change is undone and refused. The id is
    /// the path segment, percent-decoded.
    fn session(&self, revoke: bool, call: &OwnedCall) -> Result<(u16, Value), Deny> {
        let action = if revoke { AuditAction::SessionRevoke } else { AuditAction::SessionRestore };
        let raw = call.path.strip_prefix("/v1/sessions/").and_then(|p| p.strip_suffix("/revoke")).unwrap_or("");
        let decoded = decode_segment(raw);
        let m = Mutating::new(self, call, action, format!("session:{}", decoded.as_deref().unwrap_or(raw)));
        let target = &m.target;
        let Some(id) = decoded else {
            return Err(m.refuse(
                Deny::new(DenyCode::BadRequest, "session_id"),
                400,
                "the session id is not valid percent-encoded UTF-8".into(),
            ));
        };
        let reason = m.reason("session_body")?;
        let sessions = &self.shared.sessions;
        let now = now_unix();
        let kind = if revoke { AuditAction::SessionRevoke } else { AuditAction::SessionRestore };
        let fleet = self.shared.fleet.as_deref();
        let (committed, published) = crate::fleet::run(fleet, kind, || {
            transact(
                &*self.shared.audit,
                self.shared.state(),
                m.meta(),
                target,
                Value::Null,
                kind,
                || -> Result<Plan, Refused> {
                    let planned = if revoke {
                        sessions.plan_revoke(&id, reason.clone(), &call.who, now)
                    } else {
                        sessions.plan_restore(&id)
                    };
                    let (op, old) = planned.map_err(|why| Refused { status: 400, why })?;
                    let op = Op::Session(op);
                    if let Some(f) = fleet {
                        f.admit(&op).map_err(|why| Refused { status: 503, why })?;
                    }
                    Ok(Plan { action: kind, op, old, reason: reason.clone() })
                },
            )
        });
        let change = match committed {
            Ok(c) => c,
            Err(TxError::Refused(r)) if r.status == 503 => return Err(fleet_unavailable(r.why)),
            Err(TxError::Refused(r)) => {
                return Err(Deny::new(DenyCode::BadRequest, "session_id").with_details(vec![r.why]))
            }
            Err(TxError::Store(e)) => return Err(audit_unavailable(&e)),
        };
        let version = self.shared.rules.current().snapshot.version.clone();
        let ev = switch_changed_event(
            &Change {
                target: target.clone(),
                old: change.old.clone(),
                new: change.new.clone(),
                version: change.version,
            },
            &call.who,
            &version,
        );
        self.shared.events.emit(ev);
        tracing::info!(event.action = "control_mutation", action = action.as_str(), user.name = %call.who, http.request.id = %call.request_id, change.target = %target, "session state changed");
        let mut body = json!({ "session": id, "revoked": revoke, "changed": change.old != change.new, "old": change.old, "new": change.new, "version": change.version });
        if let Some(p) = published {
            body["fleet"] = p.to_json();
        }
        Ok((200, body))
    }

    /// `POST /v1/quotas/{tenant}/reset`: audited first (a reset cannot be undone), then every
    /// counter of the tenant (its subjects' included) starts again at 0, written to disk at once
    /// and announced with `switch_changed`.
    fn quota_reset(&self, call: &OwnedCall) -> Result<(u16, Value), Deny> {
        let action = AuditAction::QuotaReset;
        let raw = call.path.strip_prefix("/v1/quotas/").and_then(|p| p.strip_suffix("/reset")).unwrap_or("");
        let tenant = decode_segment(raw);
        let m = Mutating::new(self, call, action, format!("quota:{}", tenant.as_deref().unwrap_or(raw)));
        let target = &m.target;
        let Some(tenant) = tenant else {
            return Err(m.refuse(
                Deny::new(DenyCode::BadRequest, "tenant"),
                400,
                "the tenant is not valid percent-encoded UTF-8".into(),
            ));
        };
        let reason = m.reason("quota_body")?;
        let loaded = self.shared.rules.current();
        let limits = &self.shared.limits;
        let now = now_unix();
        let old = json!(loaded.snapshot.quotas.usage(&limits.book, &tenant, now));
        let counters = old.as_array().map_or(0, Vec::len);
        // Fleet mode: every instance resets (and the fleet's counters go); refused while the
        // store is unreachable, since a reset gives quota back.
        let fleet = self.shared.fleet.as_deref();
        if let Some(Err(why)) = fleet.map(|f| f.admit(&Op::QuotaReset(tenant.clone()))) {
            return Err(m.refuse(Deny::new(DenyCode::StoreUnavailable, "fleet_store"), 503, why));
        }
        let (committed, published) = crate::fleet::run(fleet, action, || {
            transact(
                &*self.shared.audit,
                self.shared.state(),
                m.meta(),
                target,
                Value::Null,
                AuditAction::QuotaReset,
                || -> Result<Plan, Refused> {
                    Ok(Plan {
                        action: AuditAction::QuotaReset,
                        op: Op::QuotaReset(tenant.clone()),
                        old: old.clone(),
                        reason: reason.clone(),
                    })
                },
            )
        });
        let (new, version) = match committed {
            Ok(c) => (c.new, c.version),
            Err(TxError::Refused(r)) => return Err(Deny::new(DenyCode::BadRequest, "tenant").with_details(vec![r.why])),
            Err(TxError::Store(e)) => return Err(audit_unavailable(&e)),
        };
        let change = Change { target: target.clone(), old: old.clone(), new, version };
        self.shared.events.emit(switch_changed_event(&change, &call.who, &loaded.snapshot.version));
        tracing::info!(event.action = "control_mutation", action = action.as_str(), user.name = %call.who, http.request.id = %call.request_id, change.target = %target, "quota reset");
        let mut body = json!({ "tenant": tenant, "reset": true, "counters": counters, "old": old });
        if let Some(p) = published {
            body["fleet"] = p.to_json();
        }
        Ok((200, body))
    }

    /// The `switch_changed` event (info).
    fn switch_changed(&self, change: &Change, who: &str) {
        let version = self.shared.rules.current().snapshot.version.clone();
        self.shared.events.emit(switch_changed_event(change, who, &version));
    }
}

/// The tenant of `/v1/quotas/{tenant}[/…]`, percent-decoded; `None` when not UTF-8.
fn path_tenant(path: &str) -> Option<String> {
    decode_segment(path.strip_prefix("/v1/quotas/")?.split('/').next()?)
}

/// A path segment, percent-decoded; `None` when empty, badly escaped or not UTF-8.
fn decode_segment(raw: &str) -> Option<String> {
    let bytes = portcullis_rules::query::percent_decode(raw.as_bytes()).ok()?;
    String::from_utf8(bytes.into_owned()).ok().filter(|t| !t.is_empty())
}

/// One mutation by one caller on one target: its audit records and its refusals.
struct Mutating<'a> {
    app: &'a ControlApp,
    call: &'a OwnedCall,
    action: AuditAction,
    target: String,
}

impl<'a> Mutating<'a> {
    fn new(app: &'a ControlApp, call: &'a OwnedCall, action: AuditAction, target: String) -> Self {
        Mutating { app, call, action, target }
    }

    /// Appends the audit record; false when it could not be written.
    fn audit(&self, outcome: &str, status: u16, old: Value, new: Value, reason: Option<&str>) -> bool {
        self.app.audit(
            &AuditEntry::new(self.action, &self.target, outcome, status)
                .by(
                    Some(&self.call.who),
                    Some(self.call.role.as_str()),
                    self.call.source_ip.as_deref(),
                    &self.call.request_id,
                )
                .values(old, new)
                .reason(reason),
        )
    }

    /// Who asks, for [`transact`].
    fn meta(&self) -> Meta<'_> {
        Meta {
            actor: Some(&self.call.who),
            role: Some(self.call.role.as_str()),
            source_ip: self.call.source_ip.as_deref(),
            request_id: &self.call.request_id,
            status: 200,
        }
    }

    /// A refusal, audited (`refused`), with `why` for the caller.
    fn refuse(&self, deny: Deny, status: u16, why: String) -> Deny {
        self.audit("refused", status, Value::Null, Value::Null, Some(&why));
        deny.with_details(vec![why])
    }

    /// The optional `{"reason":"…"}` body (at most `MAX_REASON_CHARS`); a bad one is refused with
    /// 400 and `code_reason` as the deny's reason.
    fn reason(&self, code_reason: &'static str) -> Result<Option<String>, Deny> {
        if self.call.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let reason = parse_body::<ReasonBody>(&self.call.body)
            .map_err(|e| self.refuse(Deny::new(DenyCode::BadRequest, code_reason), 400, e))?
            .reason;
        if reason.as_ref().is_some_and(|r| r.chars().count() > crate::switches::MAX_REASON_CHARS) {
            let why = format!("reason: at most {} characters", crate::switches::MAX_REASON_CHARS);
            return Err(self.refuse(Deny::new(DenyCode::BadRequest, code_reason), 400, why));
        }
        Ok(reason)
    }
}
/// Summary, health score and top threats are this instance's (its events, its requests), in
/// fleet mode too: the answer says so (`"scope": "instance"`).
fn per_instance(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("scope".into(), json!("instance"));
    }
    v
}

/// `limit` of a listing (default 100, 1..=1000); no other parameter.
fn audit_limit(query: Option<&str>) -> Result<usize, String> {
    let mut limit = 100;
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("limit", v)) => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("limit must be 1 to 1000, not `{v}`"))?;
            }
            _ => return Err(format!("unknown parameter `{kv}`; allowed: limit")),
        }
    }
    Ok(limit)
}

/// `503 store_unavailable`: the fleet store could not be asked (the change, or the fleet's list).
fn fleet_unavailable(why: String) -> Deny {
    Deny::new(DenyCode::StoreUnavailable, "fleet_store").with_details(vec![why])
}

/// An authorised control request.
struct Call<'a> {
    path: &'a str,
    query: Option<&'a str>,
    who: &'a str,
    role: Role,
    request_id: &'a str,
    body: &'a [u8],
    if_match: Option<&'a str>,
    source_ip: Option<&'a str>,
}

/// A [`Call`] that can move to a blocking thread.
struct OwnedCall {
    path: String,
    query: Option<String>,
    who: String,
    role: Role,
    request_id: String,
    body: Vec<u8>,
    if_match: Option<String>,
    source_ip: Option<String>,
}

impl OwnedCall {
    fn of(c: &Call<'_>) -> Self {
        OwnedCall {
            path: c.path.to_owned(),
            query: c.query.map(str::to_owned),
            who: c.who.to_owned(),
            role: c.role,
            request_id: c.request_id.to_owned(),
            body: c.body.to_vec(),
            if_match: c.if_match.map(str::to_owned),
            source_ip: c.source_ip.map(str::to_owned),
        }
    }

    /// Borrowed again, on the blocking thread.
    fn call(&self) -> Call<'_> {
        Call {
            path: &self.path,
            query: self.query.as_deref(),
            who: &self.who,
            role: self.role,
            request_id: &self.request_id,
            body: &self.body,
            if_match: self.if_match.as_deref(),
            source_ip: self.source_ip.as_deref(),
        }
    }
}

/// The answer when the audit log (the write-ahead log of every change) cannot be written.
fn audit_unavailable(e: &std::io::Error) -> Deny {
    Deny::new(DenyCode::Internal, "audit_unavailable")
        .with_details(vec![format!("the audit log cannot be written ({e}): nothing was changed")])
}

/// A request body: one JSON object (not an array, even though serde's derives would read one
/// positionally), UTF-8, only the type's known keys (every body type denies unknown fields), each
/// at most once and of its type, nothing after it. Anything else is the caller's 400, with this
/// text as its detail.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|_| "invalid body: not UTF-8".to_string())?;
    if !text.trim_start().starts_with('{') {
        return Err("invalid body: must be a JSON object".into());
    }
    serde_json::from_str::<T>(text).map_err(|e| format!("invalid body: {e}"))
}

/// The optional body of a session revocation.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// What a switch mutation asks for.
enum Mutation {
    Maintenance(MaintenanceChange),
    Channel { name: String, enabled: bool, reason: Option<String> },
    Flag { name: String, enabled: bool, reason: Option<String> },
}

/// The body of `PUT /v1/switches/channels/{name}` and `PUT /v1/flags/{name}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ToggleBody {
    enabled: bool,
    #[serde(default)]
    reason: Option<String>,
}

fn bad_query(msg: String) -> Deny {
    Deny::new(DenyCode::BadRequest, "query").with_details(vec![msg])
}

/// Builds a control response. A header the builder refuses (it cannot happen with our static
/// names and ASCII values) fails closed as a bare 500, never as an empty 200.
fn response(status: u16, headers: &[(&str, &str)], body: Vec<u8>, request_id: &str) -> Response<Vec<u8>> {
    let mut b = Response::builder().status(status).header("x-request-id", request_id);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.header("content-length", body.len()).body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn json_response(status: u16, body: &Value, request_id: &str) -> Response<Vec<u8>> {
    let headers = [("content-type", "application/json"), ("cache-control", "no-store")];
    response(status, &headers, body.to_string().into_bytes(), request_id)
}

fn control_deny(deny: &Deny, request_id: &str) -> Response<Vec<u8>> {
    let r = render(deny, request_id);
    // The renderer already sets content-length; `response` sets it from the body itself.
    let headers: Vec<(&str, &str)> =
        r.headers.iter().filter(|(k, _)| *k != "content-length").map(|(k, v)| (*k, v.as_str())).collect();
    response(r.status, &headers, r.body, request_id)
}

#[async_trait]
impl ServeHttp for ControlApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request_id = new_request_id();
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_owned);
        let auth = req.headers.get("authorization").map(|v| v.as_bytes().to_vec());
        let accept = req.headers.get("accept").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

        let if_match = req.headers.get("if-match").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let source_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string());

        // Read (bounded): mutations parse it, and the connection can be reused.
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > MAX_BODY {
                session.set_keepalive(None);
                return control_deny(&Deny::new(DenyCode::PayloadTooLarge, "control_body"), &request_id);
            }
            body.extend_from_slice(&chunk);
        }

        match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/health") => {
                return json_response(
                    200,
                    &json!({ "status": "ok", "timestamp": rfc3339(std::time::SystemTime::now()) }),
                    &request_id,
                )
            }
            ("GET" | "HEAD", "/ready") => {
                let (ok, checks) = self.ready();
                return json_response(
                    if ok { 200 } else { 503 },
                    &json!({ "ready": ok, "checks": checks }),
                    &request_id,
                );
            }
            ("GET" | "HEAD", "/metrics") => {
                let body = self.metrics().into_bytes();
                return response(200, &[("content-type", crate::metrics::CONTENT_TYPE)], body, &request_id);
            }
            (_, "/health" | "/ready" | "/metrics") => {
                return control_deny(
                    &Deny::new(DenyCode::MethodNotAllowed, "method").with_header("allow", "GET, HEAD"),
                    &request_id,
                )
            }
            _ => {}
        }
        let limit = self.shared.config.control_rate_per_second;
        if !self.throttle.allow(source_ip.as_deref().unwrap_or("-"), now_unix(), limit) {
            session.set_keepalive(None);
            return control_deny(
                &Deny::new(DenyCode::RateLimited, "control_rate").with_header("retry-after", "1"),
                &request_id,
            );
        }
        if let Some(r) = console::serve(&method, &path, accept.as_deref(), &request_id) {
            return r;
        }
        if !path.starts_with("/v1/") {
            return control_deny(&Deny::new(DenyCode::NotFound, "control_path"), &request_id);
        }

        let refused = |actor: Option<&str>, role: Option<Role>, status: u16, why: &str| OwnedEntry {
            actor: actor.map(str::to_owned),
            role: role.map(|r| r.as_str().to_owned()),
            source_ip: source_ip.clone(),
            request_id: request_id.clone(),
            action: AuditAction::Denied,
            target: cap_chars(&format!("{method} {path}"), MAX_REFUSAL_TARGET_CHARS),
            old: Value::Null,
            new: Value::Null,
            reason: Some(why.to_owned()),
            outcome: "refused",
            status,
        };
        let Some((who, role)) = self.authenticate(auth.as_deref()) else {
            self.refusals.total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let minute = now_unix() / 60;
            if let Some(suppressed) = self.refusals.admit(source_ip.as_deref().unwrap_or("-"), minute) {
                let mut e = refused(None, None, 401, "unauthenticated");
                e.new = json!({ "suppressed": suppressed });
                self.audit_off_thread(e).await;
            }
            tracing::warn!(event.action = "control_denied", reason = "unauthenticated", http.request.method = %method, url.path = %path, http.request.id = %request_id, "control request refused");
            return control_deny(
                &Deny::new(DenyCode::Unauthenticated, "control_token")
                    .with_header("www-authenticate", "Bearer realm=\"portcullis\""),
                &request_id,
            );
        };
        let candidates: Vec<_> = ENDPOINTS.iter().filter(|(_, p, _, _)| pattern_matches(p, &path)).collect();
        if candidates.is_empty() {
            return control_deny(&Deny::new(DenyCode::NotFound, "control_path"), &request_id);
        }
        let Some(&&(_, _, needed, handler)) = candidates.iter().find(|(m, _, _, _)| *m == method) else {
            let allow: Vec<&str> = candidates.iter().map(|(m, _, _, _)| *m).collect();
            self.audit_off_thread(refused(Some(who), Some(role), 405, "method")).await;
            tracing::warn!(event.action = "control_denied", reason = "method", user.name = who, http.request.method = %method, url.path = %path, http.request.id = %request_id, "control request refused");
            return control_deny(
                &Deny::new(DenyCode::MethodNotAllowed, "method").with_header("allow", allow.join(", ")),
                &request_id,
            );
        };
        if role < needed {
            self.audit_off_thread(refused(Some(who), Some(role), 403, "role")).await;
            tracing::warn!(event.action = "control_denied", reason = "role", user.name = who, user.roles = role.as_str(), needed = needed.as_str(), http.request.method = %method, url.path = %path, http.request.id = %request_id, "control request refused");
            let why = format!("this needs the `{}` role; the token `{who}` has `{}`", needed.as_str(), role.as_str());
            return control_deny(&Deny::new(DenyCode::Forbidden, "role").with_details(vec![why]), &request_id);
        }
        let call = Call {
            path: &path,
            query: query.as_deref(),
            who,
            role,
            request_id: &request_id,
            body: &body,
            if_match: if_match.as_deref(),
            source_ip: source_ip.as_deref(),
        };
        match self.handle(handler, &call).await {
            Ok((status, body)) => {
                // The switch state's version as an ETag, for If-Match.
                let version = match handler {
                    Handler::Switches | Handler::Maintenance | Handler::Channel | Handler::Flag => {
                        body.get("version").and_then(Value::as_u64)
                    }
                    _ => None,
                };
                match version {
                    Some(v) => {
                        let tag = etag(v);
                        let headers = [
                            ("content-type", "application/json"),
                            ("cache-control", "no-store"),
                            ("etag", tag.as_str()),
                        ];
                        response(status, &headers, body.to_string().into_bytes(), &request_id)
                    }
                    None => json_response(status, &body, &request_id),
                }
            }
            Err(deny) => {
                // Switch changes and reloads audit their own refusals; any other refused
                // mutation (a safe test while the flag is off, an unknown type) is audited here.
                let audits_itself =
                    matches!(handler, Handler::Maintenance | Handler::Channel | Handler::Flag | Handler::RulesReload);
                if method != "GET" && !audits_itself {
                    self.audit_off_thread(refused(Some(who), Some(role), deny.code.status(), deny.code.as_str())).await;
                }
                control_deny(&deny, &request_id)
            }
        }
    }
}

#[cfg(test)]
mod tests;
