//! Automatic blocks (the rules' `auto_blocks:`, `portcullis_rules::autoblock`): refusals are
//! counted per client address or subject, and a key that goes over its rule's threshold is
//! blocked for the rule's duration.
//!
//! - The event bus's tap hands each counted refusal (an enforced, non-test event of a type some
//!   rule counts) to this module's thread over a bounded queue: the request path never waits,
//!   and a full queue drops the hit (counted in `portcullis_auto_block_hits_dropped_total`).
//! - The block is the operator's block (`PUT /v1/blocks/addresses/…` / `…/subjects/…`) made by
//!   the rule: the same control-plane transaction (`txn::transact`, audited with the actor
//!   `auto_block:<rule id>` before it is in force), published to the fleet in fleet mode,
//!   announced with a `switch_changed` event, listed by `GET /v1/blocks`, lifted by `DELETE`,
//!   and it expires by itself.
//! - Not counted: refusals that carry out a block or suspension already decided
//!   (`detail.reason` `address_blocked`, `subject_blocked`, `tenant_suspended`).
//! - Never blocked: the rule's `exempt` CIDRs, the gateway's trusted proxies and the maintenance
//!   bypass CIDRs (counted as `exempt`). A key already blocked is not blocked again.
//! - Counts live in memory on this thread (bounded per rule; kept across a reload of an
//!   unchanged rule) and are per instance: in a fleet, each instance counts what it sees.

use crate::audit::AuditAction;
use crate::events::SecurityEvent;
use crate::metrics::{Declared, Def};
use crate::sessions::Revocation;
use crate::state::Shared;
use crate::txn::{transact, Meta, Op, Plan, Refused, TxError};
use parking_lot::Mutex;
use portcullis_rules::autoblock::{key_of, AutoBlockRule, BlockKey, Counter};
use portcullis_rules::verdict::{Action, EventType};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Hits queued for the thread at most.
const QUEUE: usize = 8192;
/// How often idle keys are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// One counted refusal.
struct Hit {
    kind: EventType,
    client_ip: Option<IpAddr>,
    subject: Option<String>,
    hits: u64,
}

/// What happened when a key went over a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Blocked,
    Monitor,
    Exempt,
    AlreadyBlocked,
    Failed,
}

impl Outcome {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Monitor => "monitor",
            Self::Exempt => "exempt",
            Self::AlreadyBlocked => "already_blocked",
            Self::Failed => "failed",
        }
    }
}

/// The automatic blocks' counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct AutoBlockStats {
    dropped: AtomicU64,
    outcomes: Mutex<BTreeMap<(String, Outcome), u64>>,
}

const AUTO_BLOCKS_TOTAL: Def<2> = Def::counter(
    "portcullis_auto_blocks_total",
    "Keys that went over an auto_blocks rule's threshold, by what was done: blocked, monitor (mode: monitor), exempt (trusted proxy, maintenance bypass or the rule's exempt list), already_blocked, failed (the audit log refused the change).",
    ["rule", "result"],
);
const AUTO_BLOCK_HITS_DROPPED_TOTAL: Def<0> = Def::counter(
    "portcullis_auto_block_hits_dropped_total",
    "Refusals not counted by the automatic blocks because their queue was full.",
    [],
);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&AUTO_BLOCKS_TOTAL, &AUTO_BLOCK_HITS_DROPPED_TOTAL];

impl AutoBlockStats {
    fn count(&self, rule: &str, o: Outcome) {
        *self.outcomes.lock().entry((rule.to_string(), o)).or_default() += 1;
    }

    /// `portcullis_auto_blocks_total{rule,result}` and the dropped hits.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&AUTO_BLOCKS_TOTAL);
        for ((rule, o), n) in self.outcomes.lock().iter() {
            f.sample([rule, o.as_str()], *n);
        }
        out.family(&AUTO_BLOCK_HITS_DROPPED_TOTAL).sample([], self.dropped.load(Ordering::Relaxed));
    }
}

/// Starts the thread and installs the event bus tap. The tap looks at the rules in force for
/// each event (one pointer load) and queues only what some rule counts.
pub fn start(shared: &Arc<Shared>) -> std::io::Result<()> {
    let (tx, rx) = sync_channel::<Hit>(QUEUE);
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new().name("auto-block".into()).spawn(move || run(&weak, &rx))?;
    let rules = shared.rules.clone();
    let stats = shared.auto_blocks.clone();
    let tap = move |ev: &SecurityEvent| tap(&rules, &stats, &tx, ev);
    shared.events.set_tap(Box::new(tap));
    Ok(())
}

fn tap(rules: &crate::reload::Rules, stats: &AutoBlockStats, tx: &SyncSender<Hit>, ev: &SecurityEvent) {
    if ev.test || ev.action != Action::Blocked {
        return;
    }
    if !rules.current().snapshot.auto_blocks.counts(ev.kind) {
        return;
    }
    // Refusals that carry out an operator's (or a rule's) own decision are not the client's
    // misbehaviour: a blocked address or subject retrying, a suspended tenant's callers.
    if let Some("address_blocked" | "tenant_suspended" | "subject_blocked") =
        ev.detail.get("reason").and_then(Value::as_str)
    {
        return;
    }
    let hit = Hit {
        kind: ev.kind,
        client_ip: ev.client_ip.as_deref().and_then(|s| s.parse().ok()),
        subject: ev.subject.clone(),
        hits: ev.hits(),
    };
    if let Err(TrySendError::Full(_)) = tx.try_send(hit) {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn run(shared: &Weak<Shared>, rx: &Receiver<Hit>) {
    // Counters per rule (id, hash): a reload that leaves a rule unchanged keeps its counts.
    let mut counters: HashMap<(Arc<str>, String), Counter> = HashMap::new();
    let mut last_sweep = std::time::Instant::now();
    loop {
        let hit = match rx.recv_timeout(SWEEP_EVERY) {
            Ok(h) => Some(h),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(sh) = shared.upgrade() else { return };
        let loaded = sh.rules.current();
        let rules = loaded.snapshot.auto_blocks.rules();
        let now = crate::switches::now_unix();
        if let Some(hit) = hit {
            for rule in rules.iter().filter(|r| r.types.contains(&hit.kind)) {
                let Some(key) = key_of(rule.key, hit.client_ip, hit.subject.as_deref()) else { continue };
                let c = counters.entry((rule.id.clone(), rule.hash.clone())).or_default();
                if c.add(&key, hit.hits, now, rule.window_secs, rule.above) {
                    let o = act(&sh, rule, &key, now);
                    sh.auto_blocks.count(&rule.id, o);
                }
            }
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = std::time::Instant::now();
            counters.retain(|(id, hash), c| match rules.iter().find(|r| r.id == *id && r.hash == *hash) {
                Some(r) => {
                    c.sweep(now, r.window_secs);
                    true
                }
                None => false,
            });
        }
    }
}

/// A key went over `rule`'s threshold: block it (or say why not).
fn act(sh: &Shared, rule: &AutoBlockRule, key: &str, now: u64) -> Outcome {
    let actor = format!("auto_block:{}", rule.id);
    let (action, target) = match rule.key {
        BlockKey::Address => {
            let Ok(ip) = key.parse::<IpAddr>() else { return Outcome::Failed };
            if rule.exempt.contains(ip) || sh.config.trusted_proxies.contains(ip) || sh.bypass.allows(Some(ip), None) {
                tracing::info!(rule = %rule.id, client.ip = %ip, "auto block: over the threshold but exempt (rule exempt list, trusted proxy or maintenance bypass)");
                return Outcome::Exempt;
            }
            if sh.sessions.blocked_address(ip, now).is_some() {
                return Outcome::AlreadyBlocked;
            }
            (AuditAction::AddressBlock, format!("address:{key}"))
        }
        BlockKey::Subject => {
            if sh.sessions.is_blocked(key, now) {
                return Outcome::AlreadyBlocked;
            }
            (AuditAction::SubjectBlock, format!("subject:{key}"))
        }
    };
    let types: Vec<&str> = rule.types.iter().map(|t| t.as_str()).collect();
    let reason = format!(
        "more than {} {} in {} (rule {})",
        rule.above,
        types.join("/"),
        portcullis_rules::alerts::show_secs(rule.window_secs),
        rule.id
    );
    if rule.mode == portcullis_rules::verdict::Mode::Monitor {
        tracing::warn!(rule = %rule.id, target = %target, reason = %reason, "auto block (monitor): would block");
        return Outcome::Monitor;
    }
    let entry = Revocation {
        at: now,
        until: now.saturating_add(rule.duration_secs),
        actor: actor.clone(),
        reason: Some(reason.clone()),
    };
    let meta = Meta { actor: Some(&actor), role: None, source_ip: None, request_id: "auto_block", status: 0 };
    // A block only closes: in fleet mode it is published (or kept pending in an outage).
    let (committed, _) = crate::fleet::run(sh.fleet.as_deref(), action, || {
        transact(&*sh.audit, sh.state(), meta, &target, Value::Null, action, || -> Result<Plan, Refused> {
            let planned = match rule.key {
                BlockKey::Address => sh.sessions.plan_address(key, Some(entry)),
                BlockKey::Subject => sh.sessions.plan_subject(key, Some(entry)),
            };
            let (op, old) = planned.map_err(|why| Refused { status: 400, why })?;
            Ok(Plan { action, op: Op::Session(op), old, reason: Some(reason.clone()) })
        })
    });
    match committed {
        Ok(c) => {
            let version = sh.rules.current().snapshot.version.clone();
            sh.events.emit(crate::control::switch_changed_event(&c.change(), &actor, &version));
            tracing::warn!(event.action = "auto_block", rule = %rule.id, change.target = %target, until = now.saturating_add(rule.duration_secs), "automatic block");
            Outcome::Blocked
        }
        Err(e) => {
            let e = match e {
                TxError::Refused(r) => r.why,
                TxError::Store(e) => format!("the audit log cannot be written: {e}"),
            };
            tracing::error!(error = %e, rule = %rule.id, change.target = %target, "automatic block failed");
            Outcome::Failed
        }
    }
}
