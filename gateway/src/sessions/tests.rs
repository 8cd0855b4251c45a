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
    let d = std::env::temp_dir().join(format!("pc-sessions-{tag}-{}-{}", std::process::id(), rand::random::<u64>()));
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
fn operator_blocks_suspensions_and_allowlist_persist_and_match() {
    let d = dir("op");
    let s = Sessions::load(&d).unwrap();
    let r = |until: u64| Revocation { at: 100, until, actor: "ops".into(), reason: Some("abuse".into()) };
    commit(&s, s.plan_address("203.0.113.77/24", Some(r(FOREVER)))).unwrap();
    commit(&s, s.plan_address("::ffff:198.51.100.9", Some(r(200)))).unwrap();
    commit(&s, s.plan_tenant("acme", Some(r(FOREVER)))).unwrap();
    let e = AllowEntry { at: 100, actor: "ops".into(), label: Some("Ops".into()), enabled: true };
    commit(&s, s.plan_allow("email:ops@acme.example", e)).unwrap();
    assert!(s.plan_address("not-an-ip", Some(r(FOREVER))).is_err());
    assert!(s.plan_address("10.0.0.0/33", Some(r(FOREVER))).is_err());
    assert!(s.plan_tenant("", Some(r(FOREVER))).is_err());
    let again = Sessions::load(&d).unwrap();
    let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(again.blocked_address(ip("203.0.113.1"), 150).as_deref(), Some("203.0.113.0/24"));
    assert_eq!(again.blocked_address(ip("::ffff:203.0.113.200"), 150).as_deref(), Some("203.0.113.0/24"));
    assert_eq!(again.blocked_address(ip("198.51.100.9"), 150).as_deref(), Some("198.51.100.9/32"));
    assert_eq!(again.blocked_address(ip("198.51.100.9"), 200), None, "expired");
    assert_eq!(again.blocked_address(ip("203.0.114.1"), 150), None);
    assert!(again.is_suspended("acme", u64::MAX - 1));
    assert!(!again.is_suspended("globex", 150));
    assert_eq!(again.allowlisted("email:ops@acme.example"), Some(true));
    assert_eq!(again.listing("addresses", "address", 150, 10)["total"], 2);
    assert_eq!(again.listing("addresses", "address", 250, 10)["total"], 1);
    assert_eq!(again.listing("tenants", "tenant", 150, 10)["items"][0]["until"], Value::Null);
    commit(&again, again.plan_address("203.0.113.0/24", None)).unwrap();
    commit(&again, again.plan_tenant("acme", None)).unwrap();
    assert_eq!(again.blocked_address(ip("203.0.113.1"), 150), None);
    assert!(!again.is_suspended("acme", 150));
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
