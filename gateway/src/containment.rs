//! Automatic containment of a cross-tenant attempt: what a tenant-scope rule's `containment`
//! asks for, done before the attacker's 403 is answered.
//!
//! Each action goes through the control-plane transaction like its operator counterpart
//! (`txn::transact`: audited with the actor `containment:<rule id>` before it is in force) and is
//! announced with a `switch_changed` event; the `cross_tenant_attempt` event lists what was done.
//! An action whose audit record cannot be written is not taken (logged as an error, `failed` in
//! the event): no change is ever in force without its record. The attacker's request is still
//! refused with 403 either way. The same job carries out an anomaly rule's red zone
//! ([`anomaly_red`]: actor `anomaly:<rule id>`, reason `anomaly_red`; the scores are `crate::anomaly`'s).

use crate::audit::AuditAction;
use crate::state::Shared;
use crate::switches::MaintenanceChange;
use crate::txn::{transact, Meta, Op, Plan, Refused, TxError};
use portcullis_rules::identity::Identity;
use portcullis_rules::tenant::Containment;
use portcullis_rules::verdict::Finding;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;

/// One containment run (owned: it runs on a blocking thread).
pub struct Job {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// What the rule asks for.
    pub plan: Containment,
    /// The rule.
    pub rule_id: String,
    /// Who acts, audited as `<actor>:<rule id>` (`containment`, `anomaly`).
    pub actor: &'static str,
    /// The reason every audit record and event of the run carries.
    pub reason: &'static str,
    /// The attacker's session, if the identity has one.
    pub session: Option<String>,
    /// The attacker's subject, if identified.
    pub subject: Option<String>,
    /// The request that triggered it.
    pub request_id: String,
    /// Its client IP.
    pub client_ip: Option<IpAddr>,
    /// Now (unix seconds).
    pub now: u64,
}

/// The reason every cross-tenant containment audit record and event carries.
pub const REASON: &str = "cross_tenant_attempt";

impl Job {
    /// Runs every action the plan names; returns one JSON entry per action attempted.
    pub fn run(self) -> Vec<Value> {
        let actor = format!("{}:{}", self.actor, self.rule_id);
        let mut done = Vec::new();
        let sh = &self.shared;
        if self.plan.revoke_session {
            match &self.session {
                None => done.push(json!({ "action": "revoke_session", "result": "skipped", "why": "no session id" })),
                Some(sid) => done.push(self.act(AuditAction::SessionRevoke, &format!("session:{sid}"), &actor, || {
                    sh.sessions
                        .plan_revoke(sid, Some(self.reason.into()), &actor, self.now)
                        .map(|(op, old)| (Op::Session(op), old))
                })),
            }
        }
        if let Some(seconds) = self.plan.block_subject_seconds {
            match &self.subject {
                None => done.push(json!({ "action": "block_subject", "result": "skipped", "why": "no subject" })),
                Some(sub) => done.push(self.act(AuditAction::SubjectBlock, &format!("subject:{sub}"), &actor, || {
                    sh.sessions
                        .plan_block(sub, seconds, Some(self.reason.into()), &actor, self.now)
                        .map(|(op, old)| (Op::Session(op), old))
                })),
            }
        }
        if self.plan.maintenance {
            if sh.switches.maintenance(self.now).is_some() {
                done.push(json!({ "action": "maintenance", "result": "already_on" }));
            } else {
                let change = MaintenanceChange {
                    enabled: true,
                    retry_after: None,
                    reason: Some(format!("{} (rule {})", self.reason, self.rule_id)),
                    ttl_seconds: None,
                };
                done.push(self.act(AuditAction::MaintenanceSet, "maintenance", &actor, || {
                    sh.switches
                        .plan_maintenance(change, &actor, None)
                        .map(|(op, old)| (Op::Switch(op), old))
                        .map_err(|e| e.to_string())
                }));
            }
        }
        done
    }

    /// One action through the control-plane transaction (audited before it is in force), then
    /// announced; the entry for the cross-tenant event.
    fn act(
        &self,
        action: AuditAction,
        target: &str,
        actor: &str,
        plan: impl FnOnce() -> Result<(Op, Value), String>,
    ) -> Value {
        let sh = &self.shared;
        let ip = self.client_ip.map(|ip| ip.to_string());
        let meta =
            Meta { actor: Some(actor), role: None, source_ip: ip.as_deref(), request_id: &self.request_id, status: 0 };
        // Containment only closes: in fleet mode it is published (or kept pending in an outage).
        let (committed, _) = crate::fleet::run(sh.fleet.as_deref(), action, || {
            transact(&*sh.audit, sh.state(), meta, target, Value::Null, action, || -> Result<Plan, Refused> {
                let (op, old) = plan().map_err(|why| Refused { status: 400, why })?;
                Ok(Plan { action, op, old, reason: Some(self.reason.into()) })
            })
        });
        let c = match committed {
            Ok(c) => c,
            Err(e) => {
                let e = match e {
                    TxError::Refused(r) => r.why,
                    TxError::Store(e) => format!("the audit log cannot be written: {e}"),
                };
                tracing::error!(error = %e, action = action.as_str(), target, "containment action failed");
                return json!({ "action": action.as_str(), "target": target, "result": "failed" });
            }
        };
        let version = sh.rules.current().snapshot.version.clone();
        sh.events.emit(crate::events::switch_changed_event(&c.change(), actor, &version));
        tracing::warn!(event.action = self.actor, action = action.as_str(), target, rule = %self.rule_id, "containment action taken");
        json!({ "action": action.as_str(), "target": target, "result": "done" })
    }
}

/// Runs an anomaly rule's red zone plan through the audited containment path; the `detail.action` it comes to.
pub async fn anomaly_red(
    sh: &Arc<Shared>,
    f: &mut Finding,
    plan: Containment,
    who: Option<&Identity>,
    request_id: &str,
    ip: Option<IpAddr>,
    now: u64,
) {
    let job = Job {
        shared: sh.clone(),
        plan: plan.clone(),
        rule_id: f.rule_id.to_string(),
        actor: "anomaly",
        reason: "anomaly_red",
        session: who.and_then(|i| i.session.clone()),
        subject: who.map(|i| i.subject.clone()),
        request_id: request_id.to_string(),
        client_ip: ip,
        now,
    };
    let done = tokio::task::spawn_blocking(move || job.run()).await.unwrap_or_default();
    let ok = |v: &serde_json::Value| v.get("result").and_then(|r| r.as_str()) == Some("done");
    let action = match done.first() {
        Some(v) if ok(v) && plan.revoke_session => "session_revoked",
        Some(v) if ok(v) => "subject_blocked",
        Some(v) if v.get("result").and_then(|r| r.as_str()) == Some("skipped") => "none",
        _ => "failed",
    };
    f.detail.insert("action".into(), action.into());
    f.detail.insert("containment".into(), serde_json::Value::Array(done));
}
