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
}

impl SessionOp {
    /// The audit record's `target`.
    pub fn target(&self) -> String {
        match self {
            SessionOp::Session(id, _) => format!("session:{id}"),
            SessionOp::Subject(id, _) => format!("subject:{id}"),
        }
    }

    /// The audit record's `new`.
    pub fn new_value(&self) -> Value {
        match self {
            SessionOp::Session(_, r) | SessionOp::Subject(_, r) => r.as_ref().map_or(Value::Null, |r| json!(r)),
        }
    }

    /// The op an audit record's `target` and `new` describe.
    pub fn from_record(target: &str, new: &Value) -> Option<SessionOp> {
        let entry = if new.is_null() { None } else { Some(serde_json::from_value::<Revocation>(new.clone()).ok()?) };
        if let Some(id) = target.strip_prefix("session:") {
            return Some(SessionOp::Session(id.to_string(), entry));
        }
        target.strip_prefix("subject:").map(|id| SessionOp::Subject(id.to_string(), entry))
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
        Ok(Sessions { live: ArcSwap::from_pointee(state), write: Mutex::new(()), dir: state_dir.to_path_buf() })
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
        let now = crate::switches::now_unix();
        match op {
            SessionOp::Session(id, e) => put(&mut next.revoked, id, e.clone(), now),
            SessionOp::Subject(id, e) => put(&mut next.blocked, id, e.clone(), now),
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
        self.live.store(Arc::new(next));
        written.map(|()| version)
    }

    /// Forgets revocations and blocks that ran out; returns how many (persisted when any). Not
    /// an audited change (nothing an operator decided changes); call it inside the control-plane
    /// lock (`txn::housekeeping`) so that it never writes over another process's newer file.
    pub fn expire(&self, now: u64) -> Result<usize, String> {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        let stale = cur.revoked.values().chain(cur.blocked.values()).filter(|r| r.until <= now).count();
        if stale == 0 {
            return Ok(0);
        }
        let mut next = (*cur).clone();
        next.revoked.retain(|_, r| r.until > now);
        next.blocked.retain(|_, r| r.until > now);
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

    /// Prometheus gauges.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = self.live.load();
        let _ = writeln!(out, "# HELP portcullis_sessions_revoked Revoked sessions remembered.");
        let _ = writeln!(out, "# TYPE portcullis_sessions_revoked gauge");
        let _ = writeln!(out, "portcullis_sessions_revoked {}", s.revoked.len());
        let _ = writeln!(out, "# HELP portcullis_subjects_blocked Subjects blocked by containment.");
        let _ = writeln!(out, "# TYPE portcullis_subjects_blocked gauge");
        let _ = writeln!(out, "portcullis_subjects_blocked {}", s.blocked.len());
    }
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
mod tests {
    use super::*;

    /// Plan + apply with the next audit position, as `txn::transact` does.
    fn commit(s: &Sessions, planned: Result<(SessionOp, Value), String>) -> Result<(Value, Value), String> {
        let (op, old) = planned?;
        let seq = s.audit_seq().unwrap_or(0) + 1;
        s.apply(&op, seq, true)?;
        Ok((old, op.new_value()))
    }

    impl Sessions {
        fn revoke(&self, id: &str, reason: Option<String>, actor: &str, now: u64) -> Result<(Value, Value), String> {
            commit(self, self.plan_revoke(id, reason, actor, now))
        }
        fn restore(&self, id: &str) -> Result<(Value, Value), String> {
            commit(self, self.plan_restore(id))
        }
        fn block(
            &self,
            id: &str,
            secs: u64,
            reason: Option<String>,
            actor: &str,
            now: u64,
        ) -> Result<(Value, Value), String> {
            commit(self, self.plan_block(id, secs, reason, actor, now))
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pc-sessions-{tag}-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn revoke_restore_persist_and_expire() {
        let d = dir("rr");
        let s = Sessions::load(&d).unwrap();
        assert!(!s.is_revoked("s1", 100));
        let (old, new) = s.revoke("s1", Some("stolen".into()), "alice", 100).unwrap();
        assert_eq!(old, Value::Null);
        assert_eq!(new["actor"], "alice");
        assert!(s.is_revoked("s1", 101));
        assert!(!s.is_revoked("s2", 101));
        // Survives a restart.
        let again = Sessions::load(&d).unwrap();
        assert!(again.is_revoked("s1", 101));
        assert!(!again.is_revoked("s1", 100 + REVOCATION_TTL));
        let (_, new) = again.restore("s1").unwrap();
        assert_eq!(new, Value::Null);
        assert!(!Sessions::load(&d).unwrap().is_revoked("s1", 101));
        // Blocks run out; a shorter block does not shorten a longer one.
        again.block("u", 60, None, "containment:r", 100).unwrap();
        again.block("u", 10, None, "containment:r", 100).unwrap();
        assert!(again.is_blocked("u", 159));
        assert!(!again.is_blocked("u", 160));
        assert_eq!(again.expire(160).unwrap(), 1);
        assert_eq!(again.expire(160).unwrap(), 0);
        assert!(Sessions::load(&d).unwrap().live.load().blocked.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_ids_and_corrupt_files_are_refused() {
        let d = dir("bad");
        let s = Sessions::load(&d).unwrap();
        assert!(s.revoke("", None, "a", 1).is_err());
        assert!(s.revoke("a\nb", None, "a", 1).is_err());
        assert!(s.revoke(&"x".repeat(MAX_ID_LEN + 1), None, "a", 1).is_err());
        std::fs::write(d.join(STATE_FILE), b"{not json").unwrap();
        assert!(Sessions::load(&d).unwrap_err().contains("corrupt"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_map_forgets_the_soonest_to_expire() {
        let mut m = BTreeMap::new();
        for i in 0..MAX_ENTRIES {
            m.insert(format!("k{i}"), Revocation { at: 0, until: 1000 + i as u64, actor: "a".into(), reason: None });
        }
        put(&mut m, "new", Some(Revocation { at: 0, until: 5000, actor: "a".into(), reason: None }), 10);
        assert_eq!(m.len(), MAX_ENTRIES);
        assert!(!m.contains_key("k0"));
        assert!(m.contains_key("new"));
    }
}
