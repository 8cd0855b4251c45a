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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SessionState::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Sessions { live: ArcSwap::from_pointee(state), write: Mutex::new(()), dir: state_dir.to_path_buf() })
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

    /// Revokes a session (again: refreshes it).
    pub fn revoke(
        &self,
        session: &str,
        reason: Option<String>,
        actor: &str,
        now: u64,
    ) -> Result<SessionChange, String> {
        check_id(session)?;
        let entry = Revocation { at: now, until: now.saturating_add(REVOCATION_TTL), actor: actor.into(), reason };
        self.change(|s| put(&mut s.revoked, session, Some(entry), now))
    }

    /// Lifts a revocation.
    pub fn restore(&self, session: &str) -> Result<SessionChange, String> {
        check_id(session)?;
        self.change(|s| put(&mut s.revoked, session, None, 0))
    }

    /// Blocks a subject for `seconds`. An existing longer block is kept.
    pub fn block(
        &self,
        subject: &str,
        seconds: u64,
        reason: Option<String>,
        actor: &str,
        now: u64,
    ) -> Result<SessionChange, String> {
        check_id(subject)?;
        let until = now.saturating_add(seconds);
        self.change(|s| {
            let until = s.blocked.get(subject).map_or(until, |b| b.until.max(until));
            put(&mut s.blocked, subject, Some(Revocation { at: now, until, actor: actor.into(), reason }), now)
        })
    }

    /// Forgets revocations and blocks that ran out; returns how many (persisted when any).
    pub fn expire(&self, now: u64) -> Result<usize, String> {
        let cur = self.live.load();
        let stale = cur.revoked.values().chain(cur.blocked.values()).filter(|r| r.until <= now).count();
        if stale == 0 {
            return Ok(0);
        }
        self.change(|s| {
            s.revoked.retain(|_, r| r.until > now);
            s.blocked.retain(|_, r| r.until > now);
            (Value::Null, Value::Null)
        })?;
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

    /// Under the write lock: build the next state, persist it, then publish.
    fn change(&self, edit: impl FnOnce(&mut SessionState) -> (Value, Value)) -> Result<SessionChange, String> {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        let mut next = (*cur).clone();
        let (old, new) = edit(&mut next);
        next.version = cur.version.saturating_add(1);
        let mut body = serde_json::to_vec_pretty(&next).map_err(|e| e.to_string())?;
        body.push(b'\n');
        if let Err((e, renamed)) = crate::state::write_durably(&self.dir, STATE_FILE, &body) {
            if renamed {
                if let Ok(prev) = serde_json::to_vec_pretty(&*cur) {
                    let _ = crate::state::write_durably(&self.dir, STATE_FILE, &prev);
                }
            }
            return Err(e);
        }
        let version = next.version;
        self.live.store(Arc::new(next));
        Ok(SessionChange { old, new, version })
    }
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
        let c = s.revoke("s1", Some("stolen".into()), "alice", 100).unwrap();
        assert_eq!(c.old, Value::Null);
        assert_eq!(c.new["actor"], "alice");
        assert!(s.is_revoked("s1", 101));
        assert!(!s.is_revoked("s2", 101));
        // Survives a restart.
        let again = Sessions::load(&d).unwrap();
        assert!(again.is_revoked("s1", 101));
        assert!(!again.is_revoked("s1", 100 + REVOCATION_TTL));
        let c = again.restore("s1").unwrap();
        assert_eq!(c.new, Value::Null);
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
