//! Automatic containment of a cross-tenant attempt: what a tenant-scope rule's `containment`
//! asks for, done before the attacker's 403 is answered.
//!
//! Each action is persisted like its operator counterpart (fsync), written to the audit log with
//! the actor `containment:<rule id>`, and announced with a `switch_changed` event; the
//! `cross_tenant_attempt` event lists what was done. Containment fails safe: an action whose
//! audit record cannot be written stays in force (logged as an error) — undoing a protective
//! action because the audit disk is full would help the attacker, not the operator.

use crate::audit::AuditEntry;
use crate::state::Shared;
use crate::switches::{Change, MaintenanceChange};
use portcullis_rules::tenant::Containment;
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

/// The reason every containment audit record and event carries.
const REASON: &str = "cross_tenant_attempt";

impl Job {
    /// Runs every action the plan names; returns one JSON entry per action attempted.
    pub fn run(self) -> Vec<Value> {
        let actor = format!("containment:{}", self.rule_id);
        let mut done = Vec::new();
        let sh = &self.shared;
        if self.plan.revoke_session {
            match &self.session {
                None => done.push(json!({ "action": "revoke_session", "result": "skipped", "why": "no session id" })),
                Some(sid) => {
                    let r = sh.sessions.revoke(sid, Some(REASON.into()), &actor, self.now);
                    done.push(self.record("session.revoke", &format!("session:{sid}"), &actor, r));
                }
            }
        }
        if let Some(seconds) = self.plan.block_subject_seconds {
            match &self.subject {
                None => done.push(json!({ "action": "block_subject", "result": "skipped", "why": "no subject" })),
                Some(sub) => {
                    let r = sh.sessions.block(sub, seconds, Some(REASON.into()), &actor, self.now);
                    done.push(self.record("subject.block", &format!("subject:{sub}"), &actor, r));
                }
            }
        }
        if self.plan.maintenance {
            if sh.switches.maintenance(self.now).is_some() {
                done.push(json!({ "action": "maintenance", "result": "already_on" }));
            } else {
                let change = MaintenanceChange {
                    enabled: true,
                    retry_after: None,
                    reason: Some(format!("{REASON} (rule {})", self.rule_id)),
                    ttl_seconds: None,
                };
                let r = sh
                    .switches
                    .set_maintenance(change, &actor, None)
                    .map_err(|e| e.to_string())
                    .map(|c: Change| crate::sessions::SessionChange { old: c.old, new: c.new, version: c.version });
                done.push(self.record("switch.maintenance.set", "maintenance", &actor, r));
            }
        }
        done
    }

    /// Audits and announces one action; the entry for the cross-tenant event.
    fn record(
        &self,
        action: &str,
        target: &str,
        actor: &str,
        result: Result<crate::sessions::SessionChange, String>,
    ) -> Value {
        let sh = &self.shared;
        let change = match result {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, action, target, "containment action failed");
                return json!({ "action": action, "target": target, "result": "failed" });
            }
        };
        let entry = AuditEntry {
            actor: Some(actor),
            role: None,
            source_ip: self.client_ip.map(|ip| ip.to_string()),
            request_id: &self.request_id,
            action,
            target,
            old: change.old.clone(),
            new: change.new.clone(),
            reason: Some(REASON),
            outcome: "ok",
            status: 0,
        };
        if let Err(e) = sh.audit.append(&entry) {
            tracing::error!(error = %e, action, target, "cannot audit a containment action; it stays in force");
        }
        let version = sh.rules.current().snapshot.version.clone();
        let ev = crate::control::switch_changed_event(
            &Change { target: target.to_owned(), old: change.old, new: change.new, version: change.version },
            actor,
            &version,
        );
        sh.events.emit(ev);
        tracing::warn!(event.action = "containment", action, target, rule = %self.rule_id, "containment action taken");
        json!({ "action": action, "target": target, "result": "done" })
    }
}
