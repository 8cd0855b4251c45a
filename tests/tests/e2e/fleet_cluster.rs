//! Fleet mode on a Redis Cluster (`redis+cluster://`): three real `redis-server
//! --cluster-enabled yes` nodes on free ports, joined by `redis-cli --cluster create`. Every fleet
//! key carries the fleet id as a hash tag, so all of them live in one slot on one node: the
//! multi-key scripts (the counters, the audit list) run there and the instances meet on its
//! pub/sub, whichever seed nodes each was given (a dead seed is skipped).
use crate::common::*;
use crate::fleet::{fleet_id, free_port, put, routes, status, Redis};
use portcullis_tests::{wait_until, TempDir, Upstream};
use std::process::Command;
use std::time::Duration;

fn cluster_fleet(up: &Upstream, state: &std::path::Path, seeds: &str, id: &str) -> Cfg {
    Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(state)
        .extra(&format!("fleet:\n  redis_url: \"redis+cluster://{seeds}\"\n  id: {id}\n"))
}

/// Three masters on free ports, the slots spread over them, and with `replicas` one replica
/// each (six nodes; `redis-cli` without `-c`, so a command on the wrong node says MOVED).
fn start_cluster(dir: &TempDir, replicas: bool) -> Option<Vec<Redis>> {
    let mut nodes = Vec::new();
    for i in 0..if replicas { 6 } else { 3 } {
        let (port, bus) = (free_port(), free_port());
        let conf = dir.path().join(format!("nodes-{i}.conf"));
        let args = [
            "--port",
            &port.to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
            "--cluster-config-file",
            &conf.display().to_string(),
            "--cluster-node-timeout",
            "1000",
            "--dir",
            &dir.path().display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let cli = if replicas { vec![] } else { vec!["-c".to_string()] };
        nodes.push(Redis::spawn(port, args, [cli, vec!["-p".into(), port.to_string()]].concat(), &["PING"])?);
    }
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .args(if replicas { &["--cluster-replicas", "1"][..] } else { &[] })
        .arg("--cluster-yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        }),
        "the cluster never came up"
    );
    Some(nodes)
}

#[test]
fn two_instances_share_state_through_a_three_node_cluster_on_one_hash_slot() {
    let dir = TempDir::new("cluster");
    let Some(nodes) = start_cluster(&dir, false) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-cl-a"), TempDir::new("fleet-cl-b"));
    let id = format!("{}cl", fleet_id());
    // Different seeds (A's first one dead): they meet on the node that serves the fleet's slot.
    let a =
        cluster_fleet(&up, sa.path(), &format!("127.0.0.1:{},127.0.0.1:{}", free_port(), nodes[0].port), &id).start();
    let b = cluster_fleet(&up, sb.path(), &format!("127.0.0.1:{}", nodes[2].port), &id).start();

    assert_eq!(status(&b, "/api/whatsapp/x"), 200);
    let r = put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&b, "/api/whatsapp/x") == 503),
        "B still serves a channel A killed, through the cluster"
    );
    up.clear();
    assert_eq!(status(&b, "/api/whatsapp/y"), 503);
    assert!(up.requests_to("/api/whatsapp").is_empty());

    // The keys are tagged: the list is where the tag says, and the counting thread's multi-key
    // work (the live-instance set, the audit list's two-key script) ran on the same node.
    let tagged = |k: &str| format!("portcullis:{{{id}}}:{k}");
    assert!(nodes[1].cli(&["LRANGE", &tagged("ops"), "0", "-1"]).contains("channel:whatsapp"));
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            nodes[0].cli(&["ZCARD", &tagged("instances")]) == "2"
                && nodes[0].cli(&["LLEN", &tagged("audit")]).parse::<u64>().unwrap_or(0) >= 1
        }),
        "the counters' scripts did not run on the cluster"
    );
    // Every key of this fleet is on one node, and each carries the tag.
    let keys: Vec<String> = nodes.iter().map(|n| n.cli(&["KEYS", &format!("portcullis:*{id}*")])).collect();
    assert_eq!(keys.iter().filter(|k| !k.is_empty()).count(), 1, "the fleet's keys are spread: {keys:?}");
    for k in keys.iter().flat_map(|k| k.lines()) {
        assert!(k.starts_with(&format!("portcullis:{{{id}}}:")), "an untagged key: {k}");
    }

    // And back: a restore on B reaches A.
    let r = put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&a, "/api/whatsapp/x") == 200));
    for gw in [&a, &b] {
        assert_eq!(metric(gw, "portcullis_fleet_connected"), Some(1.0));
        assert!(!gw.output().contains("panicked"));
    }
}

/// The master of the fleet's slot dies: its replica is promoted by the cluster; meanwhile an
/// opening change is refused and a closing one applies on its instance; then both instances find
/// the new master through their seeds, the outage change is published there and followed.
#[test]
fn instances_follow_a_cluster_failover_of_the_fleets_slot() {
    let dir = TempDir::new("cluster-ha");
    let Some(mut nodes) = start_cluster(&dir, true) else { return };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            nodes.iter().filter(|n| n.cli(&["INFO", "replication"]).contains("master_link_status:up")).count() == 3
        }),
        "the replicas never synced"
    );
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-clha-a"), TempDir::new("fleet-clha-b"));
    let id = format!("{}clha", fleet_id());
    let seeds: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let a = cluster_fleet(&up, sa.path(), &seeds.join(","), &id).start();
    let b = cluster_fleet(&up, sb.path(), &seeds[3..].join(","), &id).start();
    let r = put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&b, "/api/whatsapp/x") == 503));

    // The node that holds the list (the others answer MOVED) is the slot's master.
    let ops = format!("portcullis:{{{id}}}:ops");
    let owner = nodes.iter().position(|n| n.cli(&["EXISTS", &ops]) == "1").expect("no node holds the list");
    assert_eq!(nodes[owner].cli(&["WAIT", "1", "2000"]), "1", "the replica did not acknowledge");
    let killed = std::time::Instant::now();
    nodes.remove(owner).stop();
    let r = put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#);
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("store_unavailable")), "{}", r.text());
    let r = put(&a, "/v1/switches/channels/email", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(false)), "{}", r.text());
    assert_eq!(status(&a, "/api/email/x"), 503);

    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(20), || status(&b, "/api/email/x") == 503),
        "B never learnt the kill A applied during the failover"
    );
    eprintln!("cluster failover: A's outage kill in force on B {:?} after the master died", killed.elapsed());
    assert_eq!(status(&b, "/api/whatsapp/x"), 503, "the failover reopened a channel");
    let promoted = nodes.iter().find(|n| n.cli(&["EXISTS", &ops]) == "1").expect("no node holds the list now");
    assert!(promoted.cli(&["ROLE"]).starts_with("master"));
    let list = promoted.cli(&["LRANGE", &ops, "0", "-1"]);
    assert!(list.contains("channel:whatsapp") && list.contains("channel:email"), "{list}");
    let r = put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&a, "/api/whatsapp/x") == 200));
    up.clear();
    assert_eq!(status(&b, "/api/email/y"), 503);
    assert!(up.requests_to("/api/email").is_empty());
}

/// `rediss+cluster://`: three nodes that speak TLS only (clients and the cluster bus), their
/// certificate naming 127.0.0.1 (the address the cluster announces); the instance asks a seed
/// over TLS and talks to the slot's master over TLS, trusting `redis_ca_file`.
#[test]
fn a_cluster_over_tls() {
    let pki = portcullis_tests::tls::Pki::new();
    let (cert, key) = pki.leaf("redis-ip", &["127.0.0.1"], 2);
    let f = |p: &std::path::Path| p.display().to_string();
    let dir = TempDir::new("cluster-tls");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let (port, bus) = (free_port(), free_port());
        let mut args = crate::fleet::tls_server_args(port, &cert, &key, &pki.ca(), false);
        args.extend(
            [
                "--tls-cluster",
                "yes",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
                "--cluster-config-file",
                &f(&dir.path().join(format!("nodes-{i}.conf"))),
                "--dir",
                &f(dir.path()),
            ]
            .map(String::from),
        );
        let cli = ["-c", "--tls", "--cacert", &f(&pki.ca()), "-h", "127.0.0.1", "-p", &port.to_string()]
            .map(String::from)
            .to_vec();
        let Some(n) = Redis::spawn(port, args, cli, &["PING"]) else { return };
        nodes.push(n);
    }
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &f(&pki.ca()), "--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .arg("--cluster-yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    }));

    let up = Upstream::start("app");
    let id = format!("{}clt", fleet_id());
    let (sa, sb) = (TempDir::new("fleet-clt-a"), TempDir::new("fleet-clt-b"));
    let start = |state: &std::path::Path, seed: u16| {
        Cfg::new(&[up.addr()])
            .routes(routes())
            .state_dir(state)
            .extra(&format!(
                "fleet:\n  redis_url: \"rediss+cluster://127.0.0.1:{seed}\"\n  id: {id}\n  redis_ca_file: \"{}\"\n",
                f(&pki.ca())
            ))
            .start()
    };
    let a = start(sa.path(), nodes[0].port);
    let b = start(sb.path(), nodes[1].port);
    let r = put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["fleet"]["published"].as_bool()), (200, Some(true)), "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&b, "/api/whatsapp/x") == 503));
    assert!(nodes[2].cli(&["LRANGE", &format!("portcullis:{{{id}}}:ops"), "0", "-1"]).contains("channel:whatsapp"));
}
