//! The automatic blocks' thread (the rules' `auto_blocks:`, see `crate::autoblock` for what
//! they do): the event bus's tap queues each counted refusal, this thread counts them per key and
//! blocks a key that goes over its rule's threshold through the one control-plane transaction.
//! It reads the shared state, so it sits above it in the module graph; the counters it keeps for
//! `/metrics` are `crate::autoblock::AutoBlockStats`.

use crate::audit::AuditAction;
use crate::autoblock::{AutoBlockStats, Outcome};
use crate::events::SecurityEvent;
use crate::sessions::Revocation;
use crate::state::Shared;
use crate::txn::{transact, Meta, Op, Plan, Refused, TxError};
use portcullis_rules::autoblock::{key_of, AutoBlockRule, BlockKey, Counter};
use portcullis_rules::verdict::{Action, EventType};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
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
        stats.dropped();
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
        let now = crate::clock::now_unix();
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
            sh.events.emit(crate::events::switch_changed_event(&c.change(), &actor, &version));
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
