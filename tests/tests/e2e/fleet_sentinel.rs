//! Fleet mode through Redis Sentinel (`redis+sentinel://`): a real master, a replica and a
//! `redis-server --sentinel` monitoring them, all started here on free ports. Two instances share
//! state through the master the Sentinel names; the master is killed: an opening change is
//! refused meanwhile, a closing one applies on its instance at once; the Sentinel promotes the
//! replica and both instances reconnect to it, publish what was applied meanwhile and follow each
//! other again.
use crate::common::*;
use crate::fleet::{fleet_id, free_port, put, routes, status, Redis};
use portcullis_tests::{wait_until, TempDir, Upstream};
use std::time::{Duration, Instant};

fn sentinel_fleet(up: &Upstream, state: &std::path::Path, sentinel: u16, id: &str) -> Cfg {
    Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(state)
        .extra(&format!("fleet:\n  redis_url: \"redis+sentinel://127.0.0.1:{sentinel}/fleet-master\"\n  id: {id}\n"))
}

fn cli_for(port: u16) -> Vec<String> {
    vec!["-p".into(), port.to_string()]
}

#[test]
fn instances_follow_a_sentinel_failover_and_closing_changes_apply_meanwhile() {
    let (mp, rp, sp) = (free_port(), free_port(), free_port());
    let Some(master) = Redis::start(Some(mp)) else { return };
    let replica = Redis::spawn(
        rp,
        ["--port", &rp.to_string(), "--replicaof", "127.0.0.1", &mp.to_string()].map(String::from).to_vec(),
        cli_for(rp),
        &["PING"],
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            replica.cli(&["INFO", "replication"]).contains("master_link_status:up")
        }),
        "the replica never synced"
    );
    let dir = TempDir::new("sentinel");
    let conf = dir.write(
        "sentinel.conf",
        format!(
            "sentinel monitor fleet-master 127.0.0.1 {mp} 1\nsentinel down-after-milliseconds fleet-master 500\nsentinel failover-timeout fleet-master 3000\n"
        ),
    );
    let sentinel = Redis::spawn(
        sp,
        [&conf.display().to_string(), "--sentinel", "--port", &sp.to_string()].map(String::from).to_vec(),
        cli_for(sp),
        &["PING"],
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            sentinel.cli(&["SENTINEL", "replicas", "fleet-master"]).contains(&rp.to_string())
        }),
        "the Sentinel never saw the replica"
    );

    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-sn-a"), TempDir::new("fleet-sn-b"));
    let id = format!("{}sn", fleet_id());
    let a = sentinel_fleet(&up, sa.path(), sp, &id).start();
    let b = sentinel_fleet(&up, sb.path(), sp, &id).start();

    // Through the master the Sentinel names: kill on A, refused by B within a second.
    let r = put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&b, "/api/whatsapp/x") == 503));
    assert!(master.cli(&["LRANGE", &format!("portcullis:{id}:ops"), "0", "-1"]).contains("channel:whatsapp"));
    assert_eq!(master.cli(&["WAIT", "1", "2000"]), "1", "the replica did not acknowledge the change");

    // The master dies. Before the Sentinel promotes anyone: an opening change is refused, a
    // closing one applies on its instance at once (with the warning).
    let killed = Instant::now();
    master.stop();
    let r = put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#);
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("store_unavailable")), "{}", r.text());
    let r = put(&a, "/v1/switches/channels/email", r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false, "{}", r.text());
    assert_eq!(status(&a, "/api/email/x"), 503);

    // The Sentinel promotes the replica; both instances find it through the Sentinel, A publishes
    // the kill it applied meanwhile, B follows it; nothing reopened on the way.
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            sentinel.cli(&["SENTINEL", "get-master-addr-by-name", "fleet-master"]).ends_with(&rp.to_string())
        }),
        "the Sentinel did not fail over"
    );
    eprintln!("sentinel failover took {:?}", killed.elapsed());
    let took = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(10), || status(&b, "/api/email/x") == 503),
        "B never learnt the kill A applied during the failover"
    );
    eprintln!("after the failover, A's outage kill in force on B in {:?}", took.elapsed());
    assert_eq!(status(&b, "/api/whatsapp/x"), 503, "the failover reopened a channel");
    let ops = replica.cli(&["LRANGE", &format!("portcullis:{id}:ops"), "0", "-1"]);
    assert!(ops.contains("channel:whatsapp") && ops.contains("channel:email"), "the new master's list: {ops}");
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        metric(&a, "portcullis_fleet_connected") == Some(1.0) && metric(&b, "portcullis_fleet_connected") == Some(1.0)
    }));

    // And they follow each other again: a restore on B reaches A.
    let r = put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&a, "/api/whatsapp/x") == 200));
    up.clear();
    assert_eq!(status(&a, "/api/email/y"), 503);
    assert_eq!(status(&b, "/api/email/y"), 503);
    assert!(up.requests_to("/api/email").is_empty(), "the upstream received a killed channel's request");
}

#[test]
fn a_sentinel_that_does_not_know_the_master_is_a_store_down_not_a_crash() {
    let sp = free_port();
    let dir = TempDir::new("sentinel-empty");
    let conf = dir.write("sentinel.conf", "");
    let Some(sentinel) = Redis::spawn(
        sp,
        [&conf.display().to_string(), "--sentinel", "--port", &sp.to_string()].map(String::from).to_vec(),
        cli_for(sp),
        &["PING"],
    ) else {
        return;
    };
    let up = Upstream::start("app");
    let state = TempDir::new("fleet-sn-none");
    // Sentinels that do not know the master, one that does not answer at all, and garbage in
    // their place: the instance starts on its local state, refuses opening changes, applies
    // closing ones, and says the store is down.
    let dead = free_port();
    let gw = Cfg::new(&[up.addr()]).routes(routes()).state_dir(state.path()).extra(&format!(
        "fleet:\n  redis_url: \"redis+sentinel://127.0.0.1:{dead},127.0.0.1:{sp}/fleet-master\"\n  id: {}\n",
        fleet_id()
    ));
    let gw = gw.start();
    assert_eq!(status(&gw, "/api/whatsapp/x"), 200);
    assert_eq!(metric(&gw, "portcullis_fleet_connected"), Some(0.0));
    let r = put(&gw, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    let r = put(&gw, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(false)), "{}", r.text());
    assert_eq!(status(&gw, "/api/whatsapp/x"), 503);
    assert!(gw.output().contains("does not know a master fleet-master"), "{}", gw.output());
    assert!(!gw.output().contains("panicked"));
    drop(sentinel);
}

/// A Sentinel with its own `requirepass` in front of a master with another: the URL's (or
/// `password_env`'s) password is the master's, `sentinel_password_env` the Sentinels'. Without
/// the latter the store is down (the instance serves its local state); neither password is ever
/// printed; a Sentinel password without a Sentinel URL is a configuration error.
#[test]
fn the_sentinels_and_the_master_have_their_own_passwords() {
    let (mp, sp) = (free_port(), free_port());
    let Some(master) = Redis::start_with_password(Some(mp), "master-pw-9") else { return };
    let dir = TempDir::new("sentinel-auth");
    let conf = dir.write(
        "sentinel.conf",
        format!(
            "requirepass sentinel-pw-7\nsentinel monitor fleet-master 127.0.0.1 {mp} 1\nsentinel auth-pass fleet-master master-pw-9\n"
        ),
    );
    let sentinel = Redis::spawn(
        sp,
        [&conf.display().to_string(), "--sentinel", "--port", &sp.to_string()].map(String::from).to_vec(),
        ["-a", "sentinel-pw-7", "--no-auth-warning", "-p", &sp.to_string()].map(String::from).to_vec(),
        &["PING"],
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        sentinel.cli(&["SENTINEL", "get-master-addr-by-name", "fleet-master"]).ends_with(&mp.to_string())
    }));
    let up = Upstream::start("app");
    let id = format!("{}sa", fleet_id());
    let env = [("PC_MASTER_PW", "master-pw-9"), ("PC_SENTINEL_PW", "sentinel-pw-7")];
    let fleet = |extra: &str| {
        format!(
            "fleet:\n  redis_url: \"redis+sentinel://127.0.0.1:{sp}/fleet-master\"\n  id: {id}\n  password_env: PC_MASTER_PW\n{extra}"
        )
    };

    let (s1, s2) = (TempDir::new("fleet-sa-1"), TempDir::new("fleet-sa-2"));
    let without = Cfg::new(&[up.addr()]).routes(routes()).state_dir(s1.path()).extra(&fleet("")).start_env(&env);
    let with = Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(s2.path())
        .extra(&fleet("  sentinel_password_env: PC_SENTINEL_PW\n"))
        .start_env(&env);
    assert_eq!(metric(&without, "portcullis_fleet_connected"), Some(0.0));
    assert_eq!(status(&without, "/api/whatsapp/x"), 200, "serves its local state");
    let r = put(&with, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    let list =
        master.cli(&["-a", "master-pw-9", "--no-auth-warning", "LRANGE", &format!("portcullis:{id}:ops"), "0", "-1"]);
    assert!(list.contains("channel:whatsapp"), "{list}");
    for gw in [&without, &with] {
        let out = gw.output();
        assert!(!out.contains("master-pw-9") && !out.contains("sentinel-pw-7"), "a password was printed: {out}");
    }

    let state = TempDir::new("fleet-sa-3");
    let c = Cfg::new(&[up.addr()]).routes(routes()).state_dir(state.path()).extra(&format!(
        "fleet:\n  redis_url: \"redis://127.0.0.1:{mp}\"\n  id: {id}\n  sentinel_password_env: PC_SENTINEL_PW\n"
    ));
    let err = match portcullis_tests::Gateway::try_start_with(BIN, &c.yaml(), &env, &c.files()) {
        Ok(_) => panic!("started with a Sentinel password and no Sentinel"),
        Err(e) => e,
    };
    assert!(err.output.contains("fleet.sentinel_password_env") && err.output.contains("needs a redis+sentinel://"));
}

/// `rediss+sentinel://`: a Sentinel and a master that speak TLS only (no plaintext port), the
/// Sentinel reaching the master over TLS too; the instance asks the Sentinel over TLS and the
/// master it names (by IP: the certificate names 127.0.0.1) over TLS, trusting `redis_ca_file`.
/// With another CA the start is refused as for `rediss://`.
#[test]
fn sentinel_and_master_over_tls() {
    let pki = portcullis_tests::tls::Pki::new();
    let (mp, sp) = (free_port(), free_port());
    let (cert, key) = pki.leaf("redis-ip", &["127.0.0.1"], 2);
    let f = |p: &std::path::Path| p.display().to_string();
    let tls = format!(
        "tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
        f(&cert),
        f(&key),
        f(&pki.ca())
    );
    let dir = TempDir::new("sentinel-tls");
    let mconf = dir.write("master.conf", format!("port 0\ntls-port {mp}\n{tls}"));
    let cli = |port: u16| {
        ["--tls", "--cacert", &f(&pki.ca()), "-h", "127.0.0.1", "-p", &port.to_string()].map(String::from).to_vec()
    };
    let Some(master) = Redis::spawn(mp, vec![f(&mconf)], cli(mp), &["PING"]) else { return };
    let sconf = dir.write(
        "sentinel.conf",
        format!("port 0\ntls-port {sp}\n{tls}sentinel monitor fleet-master 127.0.0.1 {mp} 1\n"),
    );
    let sentinel = Redis::spawn(sp, vec![f(&sconf), "--sentinel".into()], cli(sp), &["PING"]).unwrap();
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        sentinel.cli(&["SENTINEL", "get-master-addr-by-name", "fleet-master"]).ends_with(&mp.to_string())
    }));

    let up = Upstream::start("app");
    let id = format!("{}st", fleet_id());
    let fleet = |ca: &std::path::Path| {
        format!(
            "fleet:\n  redis_url: \"rediss+sentinel://127.0.0.1:{sp}/fleet-master\"\n  id: {id}\n  redis_ca_file: \"{}\"\n",
            ca.display()
        )
    };
    let state = TempDir::new("fleet-st");
    let gw = Cfg::new(&[up.addr()]).routes(routes()).state_dir(state.path()).extra(&fleet(&pki.ca())).start();
    let r = put(&gw, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(master.cli(&["LRANGE", &format!("portcullis:{id}:ops"), "0", "-1"]).contains("channel:whatsapp"));

    let other = portcullis_tests::tls::Pki::new();
    let state = TempDir::new("fleet-st-bad");
    let c = Cfg::new(&[up.addr()]).routes(routes()).state_dir(state.path()).extra(&fleet(&other.ca()));
    let err = match portcullis_tests::Gateway::try_start_with(BIN, &c.yaml(), &[], &c.files()) {
        Ok(_) => panic!("started trusting another CA"),
        Err(e) => e,
    };
    assert!(err.output.contains("TLS handshake failed"), "{}", err.output);
}
