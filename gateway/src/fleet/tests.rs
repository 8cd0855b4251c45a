use super::*;

#[test]
fn config_is_validated_and_the_password_never_printed() {
    let c = FleetConfig::from_parts("redis://u:pw@127.0.0.1:6390/2", "prod-1", None, None).unwrap();
    assert_eq!((c.endpoint.as_str(), c.id.as_str()), ("127.0.0.1:6390", "prod-1"));
    std::env::set_var("PC_FLEET_TEST_PW", "s3cret");
    let c = FleetConfig::from_parts("redis://127.0.0.1:6390", "p", Some("PC_FLEET_TEST_PW"), None).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
    for (url, id, field) in [
        ("rediss://127.0.0.1:6390/#insecure", "p", "redis_url"),
        ("unix:///run/redis.sock", "p", "redis_url"),
        ("http://127.0.0.1:6390", "p", "redis_url"),
        ("redis://127.0.0.1:6390", "", "id"),
        ("redis://127.0.0.1:6390", "a b", "id"),
        ("redis://127.0.0.1:6390", "a:b", "id"),
        ("redis://127.0.0.1:6390", &"x".repeat(65), "id"),
    ] {
        assert_eq!(FleetConfig::from_parts(url, id, None, None).unwrap_err().0, field, "{url} {id}");
    }
    assert_eq!(
        FleetConfig::from_parts("redis://127.0.0.1:1", "p", Some("PC_FLEET_TEST_UNSET_VAR"), None).unwrap_err().0,
        "password_env"
    );
}

#[test]
fn sentinel_and_cluster_urls_name_their_nodes_credentials_and_db() {
    let c =
        FleetConfig::from_parts("redis+sentinel://u:pw@s1:26380,s2,[::1]:5/prod-master/3", "p", None, None).unwrap();
    assert_eq!(
        c.topology,
        Topology::Sentinel(vec!["s1:26380".into(), "s2:26379".into(), "[::1]:5".into()], "prod-master".into())
    );
    assert_eq!(c.url, "redis://u:pw@sentinel-master/3");
    assert!(c.tls.is_none());
    assert_eq!(c.endpoint, "master prod-master of sentinel s1:26380,s2:26379,[::1]:5");
    let c = FleetConfig::from_parts("rediss+sentinel://s1/m", "p", None, None).unwrap();
    assert_eq!((c.url.as_str(), c.tls.is_some()), ("rediss://sentinel-master/", true));
    let c = FleetConfig::from_parts("redis+cluster://u:pw@n1:7000,n2", "p", None, None).unwrap();
    assert_eq!(c.topology, Topology::Cluster(vec!["n1:7000".into(), "n2:6379".into()]));
    assert_eq!((c.url.as_str(), c.endpoint.as_str()), ("redis://u:pw@cluster-node/", "cluster n1:7000,n2:6379"));
    assert!(FleetConfig::from_parts("rediss+cluster://n1/0", "p", None, None).unwrap().tls.is_some());
    for bad in [
        "redis+sentinel://s1",
        "redis+sentinel://s1/",
        "redis+sentinel:///m",
        "redis+sentinel://s1,/m",
        "redis+sentinel://s1:notaport/m",
        "redis+sentinel://s1/m a",
        "redis+sentinel://s1/m/x",
        "redis+sentinel://s1/m/0/1",
        "http+sentinel://s1/m",
        "valkey+sentinel://s1/m",
        "redis+cluster://n1/3",
        "redis+cluster://n1,,n2",
        "redis+cluster://n1:x",
        "rediss+cluster://",
    ] {
        assert_eq!(FleetConfig::from_parts(bad, "p", None, None).unwrap_err().0, "redis_url", "{bad}");
    }
}

/// What one new connection costs (connect, TLS handshake, `HELLO`/`AUTH` setup): run against
/// a live store, `PC_FLEET_COST_URL=rediss://localhost:6380 PC_FLEET_COST_CA=ca.pem cargo test
/// -p portcullis --lib fleet_connect_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn fleet_connect_cost() {
    let url = std::env::var("PC_FLEET_COST_URL").unwrap();
    let ca = std::env::var("PC_FLEET_COST_CA").ok().map(PathBuf::from);
    let cfg = FleetConfig::from_parts(&url, "cost", None, None).unwrap().with_tls(ca, None, None).unwrap();
    let dir = std::env::temp_dir().join(format!("pc-fleet-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fleet = Fleet::new(&cfg, &dir).unwrap();
    let mut took: Vec<Duration> = (0..50)
        .map(|_| {
            let t = std::time::Instant::now();
            let mut c = fleet.target.open(Duration::from_secs(2)).unwrap();
            redis::cmd("PING").query::<String>(&mut c).unwrap();
            t.elapsed()
        })
        .collect();
    took.sort();
    eprintln!("{url}: new connection + PING, median {:?}, p90 {:?}", took[25], took[45]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_slot_master_is_read_from_cluster_slots_and_garbage_is_none() {
    use redis::Value::{Array, BulkString, Int};
    let node = |h: &str, p: i64| Array(vec![BulkString(h.into()), Int(p), BulkString(b"id".to_vec())]);
    let slots = vec![
        Array(vec![Int(0), Int(5460), node("10.0.0.1", 7000)]),
        Array(vec![Int(5461), Int(16383), node("10.0.0.2", 7001), node("10.0.0.3", 7002)]),
    ];
    assert_eq!(slot_master(&slots, 0), Some(("10.0.0.1".into(), 7000)));
    assert_eq!(slot_master(&slots, 9000), Some(("10.0.0.2".into(), 7001)));
    assert_eq!(slot_master(&slots, 16384), None);
    for bad in [
        vec![Int(1)],
        vec![Array(vec![Int(0), Int(16383)])],
        vec![Array(vec![Int(0), Int(16383), node("", 1)])],
        vec![Array(vec![Int(0), Int(16383), node("?", 1)])],
        vec![Array(vec![Int(0), Int(16383), node("h", 70000)])],
        vec![Array(vec![Int(0), Int(16383), node("h", -1)])],
        vec![Array(vec![BulkString(b"0".to_vec()), Int(16383), node("h", 1)])],
        vec![Array(vec![Int(0), Int(16383), Array(vec![])])],
    ] {
        assert_eq!(slot_master(&bad, 1), None, "{bad:?}");
    }
}

#[test]
fn entries_round_trip_and_tampered_ones_are_refused() {
    let op =
        Op::Switch(SwitchOp::Channel("sms".into(), crate::switches::Toggle { enabled: false, ..Default::default() }));
    let e = entry_of(&op).unwrap().to_string();
    assert_eq!(parse_entry(e.as_bytes()), Some((AuditAction::ChannelSet, op.clone())));
    let q = entry_of(&Op::QuotaReset("t".into())).unwrap().to_string();
    assert_eq!(parse_entry(q.as_bytes()), Some((AuditAction::QuotaReset, Op::QuotaReset("t".into()))));
    // The operator's changes: every kind round-trips, with its own action.
    let r = crate::sessions::Revocation { at: 1, until: 2, actor: "x".into(), reason: Some("abuse".into()) };
    let allow = |on: bool| crate::sessions::AllowEntry { at: 1, actor: "x".into(), label: None, enabled: on };
    for (op, action) in [
        (SessionOp::Subject("u".into(), Some(r.clone())), AuditAction::SubjectBlock),
        (SessionOp::Subject("u".into(), None), AuditAction::SubjectUnblock),
        (SessionOp::Address("192.0.2.0/24".into(), Some(r.clone())), AuditAction::AddressBlock),
        (SessionOp::Address("2001:db8::/32".into(), None), AuditAction::AddressUnblock),
        (SessionOp::Tenant("acme".into(), Some(r.clone())), AuditAction::TenantSuspend),
        (SessionOp::Tenant("acme".into(), None), AuditAction::TenantResume),
        (SessionOp::Allow("email:a@example.com".into(), allow(true)), AuditAction::AllowlistAdd),
        (SessionOp::Allow("domain:example.com".into(), allow(false)), AuditAction::AllowlistRemove),
    ] {
        let op = Op::Session(op);
        let e = entry_of(&op).unwrap().to_string();
        assert_eq!(parse_entry(e.as_bytes()), Some((action, op)), "{e}");
    }
    for bad in [
        br#"{"action":"address.block","target":"address:192.0.2.7/24","new":{"at":1,"until":2,"actor":"x"}}"#,
        &br#"{"action":"address.block","target":"address:not-an-ip","new":{"at":1,"until":2,"actor":"x"}}"#[..],
        br#"{"action":"address.unblock","target":"address:192.0.2.0/24","new":{"at":1,"until":2,"actor":"x"}}"#,
        br#"{"action":"tenant.suspend","target":"tenant:","new":{"at":1,"until":2,"actor":"x"}}"#,
        br#"{"action":"allowlist.add","target":"allow:email:NotAnEmail","new":{"at":1,"actor":"x","enabled":true}}"#,
        br#"{"action":"allowlist.add","target":"allow:domain:Example.com","new":{"at":1,"actor":"x","enabled":true}}"#,
        br#"{"action":"allowlist.remove","target":"allow:domain:example.com","new":{"at":1,"actor":"x","enabled":true}}"#,
        br#"{"action":"subject.block","target":"subject:u","new":null}"#,
    ] {
        assert_eq!(parse_entry(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    for bad in [
        &b"garbage"[..],
        b"",
        b"[]",
        b"null",
        br#"{"action":"switch.channel.set","target":"channel:sms","new":{"enabled":"no"}}"#,
        br#"{"action":"quota.reset","target":"channel:t","new":{"reset":true}}"#,
        br#"{"action":"rules.reload","target":"channel:sms","new":{}}"#,
        br#"{"action":"flag.set","target":"channel:sms","new":{"enabled":true}}"#,
        br#"{"action":"session.revoke","target":"session:","new":{"at":1,"until":2,"actor":"x"}}"#,
        br#"{"action":"nuke","target":"maintenance","new":{}}"#,
        br#"{"action":"switch.channel.set","target":"flag:firewall","new":{"enabled":false}}"#,
        br#"{"action":"switch.maintenance.expire","target":"maintenance","new":{"enabled":false}}"#,
        br#"{"action":"session.revoke","target":"session:a\u0000b","new":{"at":1,"until":2,"actor":"x"}}"#,
        br#"{"action":"subject.block","target":"maintenance","new":null}"#,
    ] {
        assert_eq!(parse_entry(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(parse_entry(format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_ENTRY)).as_bytes()), None);
}

#[test]
fn fold_keeps_the_last_change_per_target_and_skips_garbage() {
    let ch = |n: &str, on: bool| {
        entry_of(&Op::Switch(SwitchOp::Channel(
            n.into(),
            crate::switches::Toggle { enabled: on, ..Default::default() },
        )))
        .unwrap()
        .to_string()
        .into_bytes()
    };
    let f = fold(&[ch("a", false), b"{oops".to_vec(), ch("b", false), ch("a", true), ch("a", false)]);
    assert_eq!(f.len(), 2);
    assert!(matches!(&f[0].1, Op::Switch(SwitchOp::Channel(n, t)) if n == "a" && !t.enabled));
    assert!(matches!(&f[1].1, Op::Switch(SwitchOp::Channel(n, t)) if n == "b" && !t.enabled));
}

#[test]
fn opening_changes_need_the_store_and_closing_ones_do_not() {
    use crate::sessions::Revocation;
    use crate::switches::{Maintenance, Toggle};
    let t = |on: bool| Toggle { enabled: on, ..Default::default() };
    let r = Revocation { at: 1, until: 2, actor: "x".into(), reason: None };
    let m = |on: bool| Maintenance { enabled: on, ..Default::default() };
    let allow = |on: bool| crate::sessions::AllowEntry { at: 1, actor: "x".into(), label: None, enabled: on };
    for (op, needs) in [
        (Op::Switch(SwitchOp::Channel("a".into(), t(false))), false),
        (Op::Switch(SwitchOp::Channel("a".into(), t(true))), true),
        (Op::Switch(SwitchOp::Maintenance(m(true))), false),
        (Op::Switch(SwitchOp::Maintenance(m(false))), true),
        (Op::Switch(SwitchOp::Flag("x".into(), t(false))), true),
        (Op::Session(SessionOp::Session("s".into(), Some(r.clone()))), false),
        (Op::Session(SessionOp::Session("s".into(), None)), true),
        (Op::Session(SessionOp::Subject("u".into(), Some(r.clone()))), false),
        (Op::Session(SessionOp::Subject("u".into(), None)), true),
        (Op::Session(SessionOp::Address("192.0.2.0/24".into(), Some(r.clone()))), false),
        (Op::Session(SessionOp::Address("192.0.2.0/24".into(), None)), true),
        (Op::Session(SessionOp::Tenant("acme".into(), Some(r))), false),
        (Op::Session(SessionOp::Tenant("acme".into(), None)), true),
        (Op::Session(SessionOp::Allow("domain:example.com".into(), allow(true))), true),
        (Op::Session(SessionOp::Allow("domain:example.com".into(), allow(false))), false),
        (Op::QuotaReset("t".into()), true),
    ] {
        assert_eq!(needs_store(&op), needs, "{op:?}");
    }
}
