//! The operator's verbs beyond the switches: listings (every tenant's quotas, revoked sessions,
//! blocks, suspensions, the allowlist), blocks of subjects and client addresses, tenant
//! suspension, identity allowlist entries, and the filtered, paged audit feed.
//!
//! Every change goes through the one control-plane transaction ([`transact`]): validate →
//! write-ahead audit record → apply → checkpoint `sessions.json` → answer → `switch_changed`
//! event. A crash after the record is replayed at the next start, like every other change.
//! In fleet mode these changes are shared through the fleet store like the switches (fleet.rs).

use super::{
    audit_unavailable, bad_query, decode_segment, fleet_unavailable, parse_body, Call, ControlApp, Handler, Mutating,
    OwnedCall,
};
use crate::audit::{AuditAction, AuditFilter};
use crate::clock::now_unix;
use crate::events::switch_changed_event;
use crate::sessions::{AllowEntry, Revocation, FOREVER};
use crate::switches::Change;
use crate::txn::{transact, Op, Plan, Refused, TxError};
use portcullis_rules::deny::{Deny, DenyCode};
use serde_json::{json, Value};

/// Longest block or suspension with an expiry: a year (without `ttl_seconds`: until lifted).
pub const MAX_TTL_SECONDS: u64 = 366 * 86_400;

/// Tenants `GET /v1/quotas` lists at most.
pub const MAX_QUOTA_TENANTS: usize = 1000;

/// The body of a block or a suspension: a reason is required, the expiry is optional.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    reason: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// The body of an allowlist addition (both optional).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowBody {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// What one operator change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subject,
    Address,
    Tenant,
    Allow,
}

/// `limit` of a listing (default 100, 1..=1000; no other parameter).
fn listing_limit(query: Option<&str>) -> Result<usize, String> {
    super::audit_limit(query)
}

impl ControlApp {
    /// The operator's handlers (see the module doc).
    pub(super) async fn operator(&self, h: Handler, call: &Call<'_>) -> Result<(u16, Value), Deny> {
        let now = now_unix();
        let sessions = &self.shared.sessions;
        match h {
            Handler::QuotaList => {
                let snapshot = &self.shared.rules.current().snapshot;
                let (tenants, truncated) = self.shared.limits.book.tenants(MAX_QUOTA_TENANTS);
                let list: Vec<Value> = tenants
                    .iter()
                    .map(|t| {
                        json!({
                            "tenant": t,
                            "suspended": sessions.is_suspended(t, now),
                            "quotas": snapshot.quotas.usage(&self.shared.limits.book, t, now),
                        })
                    })
                    .collect();
                Ok((
                    200,
                    json!({
                        "enforcement": self.shared.switches.flag(crate::switches::Flag::QuotaEnforcement),
                        "tenants": list,
                        "truncated": truncated,
                    }),
                ))
            }
            Handler::SessionList => {
                let limit = listing_limit(call.query).map_err(bad_query)?;
                let l = sessions.listing("revoked", "session", now, limit);
                Ok((200, json!({ "version": sessions.version(), "total": l["total"], "sessions": l["items"] })))
            }
            Handler::BlockList => {
                let limit = listing_limit(call.query).map_err(bad_query)?;
                let s = sessions.listing("subjects", "subject", now, limit);
                let a = sessions.listing("addresses", "address", now, limit);
                Ok((
                    200,
                    json!({
                        "version": sessions.version(),
                        "subjects": s["items"], "subjects_total": s["total"],
                        "addresses": a["items"], "addresses_total": a["total"],
                    }),
                ))
            }
            Handler::TenantList => {
                let limit = listing_limit(call.query).map_err(bad_query)?;
                let t = sessions.listing("tenants", "tenant", now, limit);
                Ok((200, json!({ "version": sessions.version(), "total": t["total"], "suspended": t["items"] })))
            }
            Handler::AllowList => Ok((
                200,
                json!({
                    "version": sessions.version(),
                    "entries": sessions.allowlist(),
                    "files": self.shared.rules.current().snapshot.identity.allowlists(),
                }),
            )),
            Handler::WhoAmI => Ok((200, json!({ "name": call.who, "role": call.role.as_str() }))),
            Handler::AuditPage => {
                let (filter, limit, fleet) = audit_query(call.query).map_err(bad_query)?;
                if fleet {
                    // Fleet mode's list of every instance's records (see fleet.rs): newest
                    // first, `limit` only.
                    if filter != AuditFilter::default() {
                        return Err(bad_query("scope=fleet takes only `limit`".into()));
                    }
                    let Some(f) = self.shared.fleet.clone() else {
                        return Err(bad_query("scope=fleet needs fleet mode (a `fleet:` section)".into()));
                    };
                    let records = tokio::task::spawn_blocking(move || f.audit(limit))
                        .await
                        .map_err(|_| Deny::new(DenyCode::Internal, "audit_task"))?
                        .map_err(fleet_unavailable)?;
                    return Ok((200, json!({ "scope": "fleet", "records": records, "next_before": null })));
                }
                let audit = self.shared.audit.clone();
                let page = tokio::task::spawn_blocking(move || audit.page(&filter, limit))
                    .await
                    .map_err(|_| Deny::new(DenyCode::Internal, "audit_task"))?
                    .map_err(|e| {
                        tracing::error!(error = %e, "cannot read the audit log");
                        Deny::new(DenyCode::Internal, "audit_read")
                    })?;
                Ok((200, json!({ "scope": "instance", "records": page.0, "next_before": page.1 })))
            }
            _ => {
                let shared = self.shared.clone();
                let owned = OwnedCall::of(call);
                tokio::task::spawn_blocking(move || ControlApp::new(shared).operator_change(h, &owned))
                    .await
                    .map_err(|_| Deny::new(DenyCode::Internal, "operator_task"))?
            }
        }
    }

    /// A block, an unblock, a suspension, a resumption, an allowlist addition or removal.
    fn operator_change(&self, h: Handler, call: &OwnedCall) -> Result<(u16, Value), Deny> {
        let (kind, action, on) = match h {
            Handler::SubjectBlock => (Kind::Subject, AuditAction::SubjectBlock, true),
            Handler::SubjectUnblock => (Kind::Subject, AuditAction::SubjectUnblock, false),
            Handler::AddressBlock => (Kind::Address, AuditAction::AddressBlock, true),
            Handler::AddressUnblock => (Kind::Address, AuditAction::AddressUnblock, false),
            Handler::TenantSuspend => (Kind::Tenant, AuditAction::TenantSuspend, true),
            Handler::TenantResume => (Kind::Tenant, AuditAction::TenantResume, false),
            Handler::AllowAdd => (Kind::Allow, AuditAction::AllowlistAdd, true),
            _ => (Kind::Allow, AuditAction::AllowlistRemove, false),
        };
        // The path's parameters, percent-decoded.
        let segs: Vec<&str> = call.path.split('/').collect();
        let (raw_kind, raw) = match kind {
            // /v1/blocks/subjects/{id}, /v1/blocks/addresses/{cidr}
            Kind::Subject | Kind::Address => ("", segs.get(4).copied().unwrap_or("")),
            // /v1/tenants/{tenant}/suspension
            Kind::Tenant => ("", segs.get(3).copied().unwrap_or("")),
            // /v1/allowlist/{kind}/{value}
            Kind::Allow => (segs.get(3).copied().unwrap_or(""), segs.get(4).copied().unwrap_or("")),
        };
        let decoded = decode_segment(raw);
        let shown = decoded.clone().unwrap_or_else(|| raw.to_string());
        let hint = match kind {
            Kind::Subject => format!("subject:{shown}"),
            Kind::Address => format!("address:{shown}"),
            Kind::Tenant => format!("tenant:{shown}"),
            Kind::Allow => format!("allow:{raw_kind}:{shown}"),
        };
        let m = Mutating::new(self, call, action, hint);
        let Some(value) = decoded else {
            return Err(m.refuse(
                Deny::new(DenyCode::BadRequest, "operator_target"),
                400,
                "the path parameter is not valid percent-encoded UTF-8".into(),
            ));
        };
        let now = now_unix();
        let bad = |why: String| m.refuse(Deny::new(DenyCode::BadRequest, "operator_body"), 400, why);
        // What the change sets: the entry (blocks and suspensions), the allowlist entry.
        let (entry, allow, reason) = match (kind, on) {
            (Kind::Allow, _) => {
                let body = if call.body.iter().all(u8::is_ascii_whitespace) {
                    AllowBody { label: None, reason: None }
                } else {
                    parse_body::<AllowBody>(&call.body).map_err(bad)?
                };
                for text in [&body.label, &body.reason].into_iter().flatten() {
                    check_text(text).map_err(bad)?;
                }
                let e = AllowEntry { at: now, actor: call.who.clone(), label: body.label, enabled: on };
                (None, Some(e), body.reason)
            }
            (_, true) => {
                let body = parse_body::<BlockBody>(&call.body).map_err(bad)?;
                check_text(&body.reason).map_err(bad)?;
                if body.reason.trim().is_empty() {
                    return Err(bad("reason: required (why is this blocked or suspended?)".into()));
                }
                let until = match body.ttl_seconds {
                    None => FOREVER,
                    Some(t) if (1..=MAX_TTL_SECONDS).contains(&t) => now.saturating_add(t),
                    Some(_) => return Err(bad(format!("ttl_seconds: 1 to {MAX_TTL_SECONDS}, or leave it out"))),
                };
                let r = Revocation { at: now, until, actor: call.who.clone(), reason: Some(body.reason.clone()) };
                (Some(r), None, Some(body.reason))
            }
            (_, false) => (None, None, m.reason("operator_body")?),
        };
        let sessions = &self.shared.sessions;
        // Fleet mode: published to every instance; an opening change (unblock, resume, an
        // active allowlist entry) is refused while the store is unreachable (see fleet.rs).
        let fleet = self.shared.fleet.as_deref();
        let (committed, published) = crate::fleet::run(fleet, action, || {
            transact(
                &*self.shared.audit,
                self.shared.state(),
                m.meta(),
                &m.target,
                Value::Null,
                action,
                || -> Result<Plan, Refused> {
                    let planned = match (kind, allow) {
                        (Kind::Subject, _) => sessions.plan_subject(&value, entry),
                        (Kind::Address, _) => sessions.plan_address(&value, entry),
                        (Kind::Tenant, _) => sessions.plan_tenant(&value, entry),
                        (Kind::Allow, Some(e)) => portcullis_rules::operator::allowlist_key(raw_kind, &value)
                            .and_then(|key| sessions.plan_allow(&key, e)),
                        (Kind::Allow, None) => Err("no allowlist entry".to_string()),
                    };
                    let (op, old) = planned.map_err(|why| Refused { status: 400, why })?;
                    let op = Op::Session(op);
                    if let Some(f) = fleet {
                        f.admit(&op).map_err(|why| Refused { status: 503, why })?;
                    }
                    Ok(Plan { action, op, old, reason: reason.clone() })
                },
            )
        });
        let c = match committed {
            Ok(c) => c,
            Err(TxError::Refused(r)) if r.status == 503 => return Err(fleet_unavailable(r.why)),
            Err(TxError::Refused(r)) => {
                return Err(Deny::new(DenyCode::BadRequest, "operator_target").with_details(vec![r.why]))
            }
            Err(TxError::Store(e)) => return Err(audit_unavailable(&e)),
        };
        let version = self.shared.rules.current().snapshot.version.clone();
        let change = Change { target: c.target.clone(), old: c.old.clone(), new: c.new.clone(), version: c.version };
        self.shared.events.emit(switch_changed_event(&change, &call.who, &version));
        tracing::info!(event.action = "control_mutation", action = action.as_str(), user.name = %call.who, http.request.id = %call.request_id, change.target = %c.target, "operator change");
        let mut body =
            json!({ "target": c.target, "changed": c.old != c.new, "old": c.old, "new": c.new, "version": c.version });
        if let Some(p) = published {
            body["fleet"] = p.to_json();
        }
        Ok((200, body))
    }
}

/// A reason or a label: the switches' rule (at most `MAX_REASON_CHARS` characters, no control
/// characters).
fn check_text(t: &str) -> Result<(), String> {
    crate::switches::check_reason(Some(t.to_string())).map(drop).map_err(|e| e.to_string())
}

/// The query of `GET /v1/audit`: `limit` (1..=1000, default 100), `actor`, `action`, `target`,
/// `outcome` (exact, or a prefix ending with `*`), `since`/`until` (RFC 3339, or Unix seconds),
/// `before` (a `seq`: the previous page's `next_before`), `scope` (`instance`, the default, or
/// `fleet`: the fleet store's list, fleet mode only). Values are percent-decoded.
pub(super) fn audit_query(query: Option<&str>) -> Result<(AuditFilter, usize, bool), String> {
    let mut f = AuditFilter::default();
    let mut limit = 100;
    let mut scope: Option<bool> = None;
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, raw) = kv.split_once('=').unwrap_or((kv, ""));
        let v = portcullis_rules::query::percent_decode(raw.replace('+', " ").as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b.into_owned()).ok())
            .ok_or_else(|| format!("`{k}`: not valid percent-encoded UTF-8"))?;
        let seen = match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=crate::audit::RECENT_MAX).contains(n))
                    .ok_or_else(|| format!("limit must be 1 to 1000, not `{v}`"))?;
                false
            }
            "actor" => f.actor.replace(v).is_some(),
            "action" => f.action.replace(v).is_some(),
            "target" => f.target.replace(v).is_some(),
            "outcome" => f.outcome.replace(v).is_some(),
            "since" => f.since.replace(parse_time(&v)?).is_some(),
            "until" => f.until.replace(parse_time(&v)?).is_some(),
            "scope" => match v.as_str() {
                "instance" => scope.replace(false).is_some(),
                "fleet" => scope.replace(true).is_some(),
                _ => return Err(format!("scope must be instance or fleet, not `{v}`")),
            },
            "before" => {
                f.before.replace(v.parse::<u64>().map_err(|_| format!("before must be a seq, not `{v}`"))?).is_some()
            }
            _ => {
                return Err(format!(
                "unknown parameter `{k}`; allowed: limit, actor, action, target, outcome, since, until, before, scope"
            ))
            }
        };
        if seen {
            return Err(format!("`{k}` given twice"));
        }
    }
    Ok((f, limit, scope.unwrap_or(false)))
}

/// RFC 3339 or Unix seconds, as Unix milliseconds.
fn parse_time(v: &str) -> Result<i64, String> {
    if let Ok(secs) = v.parse::<i64>() {
        return secs.checked_mul(1000).ok_or_else(|| format!("time out of range: `{v}`"));
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("a time is RFC 3339 (2026-01-30T09:00:00Z) or Unix seconds, not `{v}`"))
}

#[cfg(test)]
mod tests;
