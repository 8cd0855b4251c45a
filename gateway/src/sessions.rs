//! Revoked sessions and blocked subjects: what `POST /v1/sessions/{id}/revoke` and tenant-scope
//! containment write, and what every authenticated request on a route with an identity rule reads.
//!
//! Same durability as the switches: one mutex for changes, each written to
//! `<state_dir>/sessions.json` (temp file, fsync, rename, fsync of the directory) before it is
//! published and acknowledged; the request path reads an immutable snapshot behind an `ArcSwap`
//! (no lock). A revocation lasts [`REVOCATION_TTL`] (longer than any session a sane issuer hands
//! out) and is then forgotten; a subject block lasts what the rule said. At most [`MAX_ENTRIES`]
//! of each are kept: when full, expired entries go first, then the oldest. A corrupt state file
//! stops the start: silently un-revoking sessions is worse than not starting.
//!
//! The operator's own blocks live here too, with the same durability and replay: blocked client
//! addresses/CIDRs (at most [`MAX_ADDRESS_BLOCKS`]: every request is matched against them),
//! suspended tenants and identity allowlist entries (at most [`MAX_OPERATOR_ENTRIES`] each).

use crate::metrics::{Declared, Def};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The state file's name under `state_dir`.
pub const STATE_FILE: &str = "sessions.json";

/// How long a revocation is kept: 30 days.
pub const REVOCATION_TTL: u64 = 30 * 86_400;

/// Most revoked sessions (and, separately, blocked subjects) kept.
pub const MAX_ENTRIES: usize = 100_000;

/// Longest session id or subject accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Most blocked client addresses/CIDRs kept.
pub const MAX_ADDRESS_BLOCKS: usize = 4096;

/// Most suspended tenants, and most allowlist entries, kept.
pub const MAX_OPERATOR_ENTRIES: usize = 10_000;

/// `until` of a block or suspension without an expiry.
pub const FOREVER: u64 = u64::MAX;

/// One identity allowlist entry an operator added (`enabled`) or deactivated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// When (unix seconds).
    pub at: u64,
    /// Who: a control token's name.
    pub actor: String,
    /// The operator's label (who this is, which organisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// True: allowed; false: deactivated (refused even if the rule file lists it).
    pub enabled: bool,
}

/// One revoked session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When (unix seconds).
    pub at: u64,
    /// When it is forgotten (unix seconds).
    pub until: u64,
    /// Who: a control token's name, or `containment:<rule id>`.
    pub actor: String,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionState {
    /// Bumped by every change.
    pub version: u64,
    /// Session id → revocation.
    pub revoked: BTreeMap<String, Revocation>,
    /// Subject → block (same shape: `until` is when the block ends).
    pub blocked: BTreeMap<String, Revocation>,
    /// Client address or CIDR (canonical, e.g. `203.0.113.0/24`, `192.0.2.7/32`) → block.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, Revocation>,
    /// Tenant → suspension (`until`: when it ends; [`FOREVER`]: until resumed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, Revocation>,
    /// `email:<address>` / `domain:<name>` → the operator's allowlist entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allowlist: BTreeMap<String, AllowEntry>,
    /// `seq` of the last audit record this state includes (see `SwitchState::audit_seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// One change, as applied live and replayed from its audit record (`target` + `new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// `session:<id>`: revoked (`Some`) or restored (`None`).
    Session(String, Option<Revocation>),
    /// `subject:<id>`: blocked (`Some`) or unblocked (`None`).
    Subject(String, Option<Revocation>),
    /// `address:<cidr>`: blocked (`Some`) or unblocked (`None`).
    Address(String, Option<Revocation>),
    /// `tenant:<name>`: suspended (`Some`) or resumed (`None`).
    Tenant(String, Option<Revocation>),
    /// `allow:<key>`: an allowlist entry added or deactivated.
    Allow(String, AllowEntry),
}

impl SessionOp {
    /// The audit record's `target`.
    pub fn target(&self) -> String {
        match self {
            SessionOp::Session(id, _) => format!("session:{id}"),
            SessionOp::Subject(id, _) => format!("subject:{id}"),
            SessionOp::Address(id, _) => format!("address:{id}"),
            SessionOp::Tenant(id, _) => format!("tenant:{id}"),
            SessionOp::Allow(key, _) => format!("allow:{key}"),
        }
    }

    /// The audit record's `new`.
    pub fn new_value(&self) -> Value {
        match self {
            SessionOp::Session(_, r)
            | SessionOp::Subject(_, r)
            | SessionOp::Address(_, r)
            | SessionOp::Tenant(_, r) => r.as_ref().map_or(Value::Null, |r| json!(r)),
            SessionOp::Allow(_, e) => json!(e),
        }
    }

    /// The op an audit record's `target` and `new` describe.
    pub fn from_record(target: &str, new: &Value) -> Option<SessionOp> {
        if let Some(key) = target.strip_prefix("allow:") {
            let e = serde_json::from_value::<AllowEntry>(new.clone()).ok()?;
            return Some(SessionOp::Allow(key.to_string(), e));
        }
        let entry = if new.is_null() { None } else { Some(serde_json::from_value::<Revocation>(new.clone()).ok()?) };
        let (kind, id) = target.split_once(':')?;
        let id = id.to_string();
        match kind {
            "session" => Some(SessionOp::Session(id, entry)),
            "subject" => Some(SessionOp::Subject(id, entry)),
            "address" => Some(SessionOp::Address(id, entry)),
            "tenant" => Some(SessionOp::Tenant(id, entry)),
            _ => None,
        }
    }
}

/// What a change did, for the audit record and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    /// The entry before (`null` if none).
    pub old: Value,
    /// The entry after (`null` if removed).
    pub new: Value,
    /// State version after the change.
    pub version: u64,
}

/// The live revocation list and subject blocks.
pub struct Sessions {
    live: ArcSwap<SessionState>,
    /// The blocked addresses parsed (network, until, key), published with `live`.
    nets: ArcSwap<Vec<(ipnet::IpNet, u64, String)>>,
    write: Mutex<()>,
    dir: PathBuf,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.live.load();
        f.debug_struct("Sessions").field("revoked", &s.revoked.len()).field("blocked", &s.blocked.len()).finish()
    }
}

/// A session id or subject from a path or a rule: 1..=256 bytes, no control characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(format!("an id is 1 to {MAX_ID_LEN} bytes without control characters"));
    }
    Ok(())
}

const SESSIONS_REVOKED: Def<0> = Def::gauge("portcullis_sessions_revoked", "Revoked sessions remembered.", []);
const SUBJECTS_BLOCKED: Def<0> = Def::gauge("portcullis_subjects_blocked", "Subjects blocked by containment.", []);
const ADDRESSES_BLOCKED: Def<0> =
    Def::gauge("portcullis_addresses_blocked", "Client addresses/CIDRs blocked by an operator.", []);
const TENANTS_SUSPENDED: Def<0> = Def::gauge("portcullis_tenants_suspended", "Tenants suspended by an operator.", []);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&SESSIONS_REVOKED, &SUBJECTS_BLOCKED, &ADDRESSES_BLOCKED, &TENANTS_SUSPENDED];

impl Sessions {
    /// Loads `<state_dir>/sessions.json` (absent: empty). A file that cannot be read or parsed
    /// is an error.
    pub fn load(state_dir: &Path) -> Result<Sessions, String> {
        let path = state_dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<SessionState>(&bytes).map_err(|e| {
                format!("{} is corrupt ({e}); fix or move it aside (it lists revoked sessions)", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                SessionState { audit_seq: Some(0), ..SessionState::default() }
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let nets = ArcSwap::from_pointee(parse_nets(&state));
        Ok(Sessions { live: ArcSwap::from_pointee(state), nets, write: Mutex::new(()), dir: state_dir.to_path_buf() })
    }

    /// The live state.
    pub fn snapshot(&self) -> std::sync::Arc<SessionState> {
        self.live.load_full()
    }

    /// True when the session is revoked (and the revocation has not run out).
    pub fn is_revoked(&self, session: &str, now: u64) -> bool {
        let s = self.live.load();
        !s.revoked.is_empty() && s.revoked.get(session).is_some_and(|r| r.until > now)
    }

    /// True when the subject is blocked now.
    pub fn is_blocked(&self, subject: &str, now: u64) -> bool {
        let s = self.live.load();
        !s.blocked.is_empty() && s.blocked.get(subject).is_some_and(|r| r.until > now)
    }

    /// The blocked address or CIDR `ip` is in now, if any (IPv4-mapped IPv6 as IPv4).
    pub fn blocked_address(&self, ip: std::net::IpAddr, now: u64) -> Option<String> {
        let nets = self.nets.load();
        if nets.is_empty() {
            return None;
        }
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        nets.iter().find(|(n, until, _)| *until > now && n.contains(&ip)).map(|(_, _, k)| k.clone())
    }

    /// True when the tenant is suspended now.
    pub fn is_suspended(&self, tenant: &str, now: u64) -> bool {
        let s = self.live.load();
        !s.tenants.is_empty() && s.tenants.get(tenant).is_some_and(|r| r.until > now)
    }

    /// True when an address is blocked or a tenant suspended (the request path skips the checks
    /// otherwise).
    pub fn any_operator_block(&self) -> bool {
        let s = self.live.load();
        !s.addresses.is_empty() || !s.tenants.is_empty()
    }

    /// True when any tenant is suspended (the request path skips the lookups otherwise).
    pub fn any_suspended(&self) -> bool {
        !self.live.load().tenants.is_empty()
    }

    /// The operator's allowlist decision for a key (`email:…`, `domain:…`): `Some(enabled)`.
    pub fn allowlisted(&self, key: &str) -> Option<bool> {
        let s = self.live.load();
        if s.allowlist.is_empty() {
            return None;
        }
        s.allowlist.get(key).map(|e| e.enabled)
    }

    /// Plans an operator's subject block until `entry.until` (exactly: a shorter one replaces a
    /// longer one), or lifting it (`None`).
    pub fn plan_subject(&self, subject: &str, entry: Option<Revocation>) -> Result<(SessionOp, Value), String> {
        check_id(subject)?;
        let old = self.live.load().blocked.get(subject).map_or(Value::Null, |r| json!(r));
        Ok((SessionOp::Subject(subject.to_string(), entry), old))
    }

    /// Plans blocking (`Some`) or unblocking a client address or CIDR, given as an address or
    /// `addr/len` (its canonical network is the key).
    pub fn plan_address(&self, raw: &str, entry: Option<Revocation>) -> Result<(SessionOp, Value), String> {
        let key = canonical_net(raw)?;
        let cur = self.live.load();
        if entry.is_some() && !cur.addresses.contains_key(&key) && cur.addresses.len() >= MAX_ADDRESS_BLOCKS {
            return Err(format!("at most {MAX_ADDRESS_BLOCKS} address blocks: lift some, or block a wider CIDR"));
        }
        let old = cur.addresses.get(&key).map_or(Value::Null, |r| json!(r));
        Ok((SessionOp::Address(key, entry), old))
    }

    /// Plans suspending (`Some`) or resuming a tenant.
    pub fn plan_tenant(&self, tenant: &str, entry: Option<Revocation>) -> Result<(SessionOp, Value), String> {
        check_id(tenant)?;
        let cur = self.live.load();
        if entry.is_some() && !cur.tenants.contains_key(tenant) && cur.tenants.len() >= MAX_OPERATOR_ENTRIES {
            return Err(format!("at most {MAX_OPERATOR_ENTRIES} suspended tenants"));
        }
        let old = cur.tenants.get(tenant).map_or(Value::Null, |r| json!(r));
        Ok((SessionOp::Tenant(tenant.to_string(), entry), old))
    }

    /// Plans an allowlist entry (`key` from `portcullis_rules::operator::allowlist_key`).
    pub fn plan_allow(&self, key: &str, entry: AllowEntry) -> Result<(SessionOp, Value), String> {
        let cur = self.live.load();
        if !cur.allowlist.contains_key(key) && cur.allowlist.len() >= MAX_OPERATOR_ENTRIES {
            return Err(format!("at most {MAX_OPERATOR_ENTRIES} allowlist entries"));
        }
        let old = cur.allowlist.get(key).map_or(Value::Null, |e| json!(e));
        Ok((SessionOp::Allow(key.to_string(), entry), old))
    }

    /// Plans revoking a session (again: refreshes it). `(op, old)`.
    pub fn plan_revoke(
        &self,
        session: &str,
        reason: Option<String>,
        actor: &str,
        now: u64,
    ) -> Result<(SessionOp, Value), String> {
        check_id(session)?;
        let entry = Revocation { at: now, until: now.saturating_add(REVOCATION_TTL), actor: actor.into(), reason };
        let old = self.live.load().revoked.get(session).map_or(Value::Null, |r| json!(r));
        Ok((SessionOp::Session(session.to_string(), Some(entry)), old))
    }

    /// Plans lifting a revocation.
    pub fn plan_restore(&self, session: &str) -> Result<(SessionOp, Value), String> {
        check_id(session)?;
        let old = self.live.load().revoked.get(session).map_or(Value::Null, |r| json!(r));
        Ok((SessionOp::Session(session.to_string(), None), old))
    }

    /// Plans blocking a subject for `seconds`. An existing longer block is kept.
    pub fn plan_block(
        &self,
        subject: &str,
        seconds: u64,
        reason: Option<String>,
        actor: &str,
        now: u64,
    ) -> Result<(SessionOp, Value), String> {
        check_id(subject)?;
        let cur = self.live.load();
        let old = cur.blocked.get(subject);
        let until = old.map_or(now.saturating_add(seconds), |b| b.until.max(now.saturating_add(seconds)));
        let entry = Revocation { at: now, until, actor: actor.into(), reason };
        Ok((SessionOp::Subject(subject.to_string(), Some(entry)), old.map_or(Value::Null, |r| json!(r))))
    }

    /// Applies a committed op (its audit record is `seq`; one the state already includes changes
    /// nothing) and, with `checkpoint`, writes `sessions.json`. Returns the version after; `Err`
    /// when the checkpoint failed (the op is applied: its audit record is durable).
    pub fn apply(&self, op: &SessionOp, seq: u64, checkpoint: bool) -> Result<u64, String> {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        if cur.audit_seq.is_some_and(|a| seq <= a) {
            return Ok(cur.version);
        }
        let mut next = (*cur).clone();
        let now = crate::clock::now_unix();
        match op {
            SessionOp::Session(id, e) => put(&mut next.revoked, id, e.clone(), now),
            SessionOp::Subject(id, e) => put(&mut next.blocked, id, e.clone(), now),
            SessionOp::Address(id, e) => put(&mut next.addresses, id, e.clone(), now),
            SessionOp::Tenant(id, e) => put(&mut next.tenants, id, e.clone(), now),
            SessionOp::Allow(key, e) => {
                next.allowlist.insert(key.clone(), e.clone());
                (Value::Null, Value::Null)
            }
        };
        next.version = cur.version.saturating_add(1);
        next.audit_seq = Some(seq);
        self.install(next, checkpoint)
    }

    /// The state's version.
    pub fn version(&self) -> u64 {
        self.live.load().version
    }

    /// `seq` of the last audit record the live state includes (`None`: a file from before).
    pub fn audit_seq(&self) -> Option<u64> {
        self.live.load().audit_seq
    }

    /// Records that the live state includes every audit record up to `seq`. Never moves it back.
    pub fn settle_audit_seq(&self, seq: u64) {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        if cur.audit_seq.is_none_or(|a| a < seq) {
            self.live.store(Arc::new(SessionState { audit_seq: Some(seq), ..(*cur).clone() }));
        }
    }

    /// Adopts `seq` as the position of a state file that predates `audit_seq`.
    pub fn settle_audit_seq_if_none(&self, seq: u64) {
        if self.audit_seq().is_none() {
            self.settle_audit_seq(seq);
        }
    }

    /// Writes the live state to `sessions.json`.
    pub fn checkpoint(&self) -> Result<(), String> {
        let _guard = self.write.lock();
        write(&self.dir, &self.live.load())
    }

    /// With the write lock held: publish, then write when asked.
    fn install(&self, next: SessionState, checkpoint: bool) -> Result<u64, String> {
        let version = next.version;
        let written = if checkpoint { write(&self.dir, &next) } else { Ok(()) };
        self.nets.store(Arc::new(parse_nets(&next)));
        self.live.store(Arc::new(next));
        written.map(|()| version)
    }

    /// Forgets revocations and blocks that ran out; returns how many (persisted when any). Not
    /// an audited change (nothing an operator decided changes); call it inside the control-plane
    /// lock (`txn::housekeeping`) so that it never writes over another process's newer file.
    pub fn expire(&self, now: u64) -> Result<usize, String> {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        let stale = cur
            .revoked
            .values()
            .chain(cur.blocked.values())
            .chain(cur.addresses.values())
            .chain(cur.tenants.values())
            .filter(|r| r.until <= now)
            .count();
        if stale == 0 {
            return Ok(0);
        }
        let mut next = (*cur).clone();
        next.revoked.retain(|_, r| r.until > now);
        next.blocked.retain(|_, r| r.until > now);
        next.addresses.retain(|_, r| r.until > now);
        next.tenants.retain(|_, r| r.until > now);
        next.version = cur.version.saturating_add(1);
        self.install(next, true)?;
        Ok(stale)
    }

    /// `{"revoked": n, "blocked": [{subject, until}]}` for listings.
    pub fn view(&self, now: u64) -> Value {
        let s = self.live.load();
        let blocked: Vec<Value> = s
            .blocked
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(k, b)| json!({ "subject": k, "until": b.until, "actor": b.actor }))
            .collect();
        json!({ "version": s.version, "revoked": s.revoked.len(), "blocked": blocked })
    }

    /// Entries in force now of one map (`revoked`, `subjects`, `addresses`, `tenants`), the
    /// newest first, at most `limit`: `{"total": n, "<key_name>s": [{<key_name>, at, until,
    /// actor, reason}]}` (`until` is `null` for no expiry).
    pub fn listing(&self, which: &str, key_name: &str, now: u64, limit: usize) -> Value {
        let s = self.live.load();
        let map = match which {
            "revoked" => &s.revoked,
            "subjects" => &s.blocked,
            "addresses" => &s.addresses,
            _ => &s.tenants,
        };
        let mut live: Vec<(&String, &Revocation)> = map.iter().filter(|(_, r)| r.until > now).collect();
        live.sort_by(|a, b| b.1.at.cmp(&a.1.at).then_with(|| a.0.cmp(b.0)));
        let total = live.len();
        let items: Vec<Value> = live
            .into_iter()
            .take(limit)
            .map(|(k, r)| {
                let mut v = json!({
                    "at": r.at,
                    "until": (r.until != FOREVER).then_some(r.until),
                    "actor": r.actor,
                    "reason": r.reason,
                });
                v[key_name] = json!(k);
                v
            })
            .collect();
        json!({ "total": total, "items": items })
    }

    /// The operator's allowlist entries, newest first: `[{kind, value, label, enabled, at, actor}]`.
    pub fn allowlist(&self) -> Vec<Value> {
        let s = self.live.load();
        let mut all: Vec<(&String, &AllowEntry)> = s.allowlist.iter().collect();
        all.sort_by(|a, b| b.1.at.cmp(&a.1.at).then_with(|| a.0.cmp(b.0)));
        all.into_iter()
            .map(|(k, e)| {
                let (kind, value) = k.split_once(':').unwrap_or(("", k));
                json!({ "kind": kind, "value": value, "label": e.label, "enabled": e.enabled, "at": e.at, "actor": e.actor })
            })
            .collect()
    }

    /// Prometheus gauges.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let s = self.live.load();
        out.family(&SESSIONS_REVOKED).sample([], s.revoked.len());
        out.family(&SUBJECTS_BLOCKED).sample([], s.blocked.len());
        out.family(&ADDRESSES_BLOCKED).sample([], s.addresses.len());
        out.family(&TENANTS_SUSPENDED).sample([], s.tenants.len());
    }
}

/// `raw` (an address or `addr/len`) as its canonical network: host bits cleared, IPv4-mapped
/// IPv6 as IPv4, a bare address as `/32` or `/128`.
pub fn canonical_net(raw: &str) -> Result<String, String> {
    let net = portcullis_rules::client_ip::parse_net(raw)
        .ok_or_else(|| format!("`{}` is not an IP address or CIDR", raw.chars().take(64).collect::<String>()))?;
    Ok(portcullis_rules::ipset::unmap_net(net).to_string())
}

/// The blocked addresses of a state, parsed (keys were canonicalised when planned).
fn parse_nets(state: &SessionState) -> Vec<(ipnet::IpNet, u64, String)> {
    state
        .addresses
        .iter()
        .filter_map(|(k, r)| k.parse::<ipnet::IpNet>().ok().map(|n| (n, r.until, k.clone())))
        .collect()
}

/// Writes the state durably to `<dir>/sessions.json`.
fn write(dir: &Path, state: &SessionState) -> Result<(), String> {
    let mut body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    body.push(b'\n');
    crate::durable::write_durably(dir, STATE_FILE, &body).map_err(|(e, _)| e)
}

/// Sets or removes `key` in a bounded map; returns (old, new) as JSON. When the map is full,
/// entries that ran out go first, then the one that runs out soonest.
fn put(map: &mut BTreeMap<String, Revocation>, key: &str, entry: Option<Revocation>, now: u64) -> (Value, Value) {
    let old = map.get(key).map_or(Value::Null, |r| json!(r));
    let new = entry.as_ref().map_or(Value::Null, |r| json!(r));
    match entry {
        None => {
            map.remove(key);
        }
        Some(e) => {
            if !map.contains_key(key) && map.len() >= MAX_ENTRIES {
                map.retain(|_, r| r.until > now);
                if map.len() >= MAX_ENTRIES {
                    if let Some(first) = map.iter().min_by_key(|(_, r)| r.until).map(|(k, _)| k.clone()) {
                        tracing::warn!(evicted = %first, "session state full: forgetting the entry that expires first");
                        map.remove(&first);
                    }
                }
            }
            map.insert(key.to_owned(), e);
        }
    }
    (old, new)
}

#[cfg(test)]
mod tests;
