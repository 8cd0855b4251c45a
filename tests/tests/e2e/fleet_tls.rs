//! Fleet mode over TLS (`rediss://`) against a real `redis-server` that listens on a TLS port
//! only (no plaintext port at all), its certificates made here with openssl: two instances share
//! state through it, with and without a client certificate (mTLS); a store whose certificate the
//! configured CA does not vouch for, whose name is not the URL's host, or that refuses our
//! certificate stops the start with a message that says what to check; TLS files that cannot be
//! honoured are configuration errors.
use crate::common::*;
use crate::fleet::{fleet_id, put, routes, status, Redis};
use portcullis_tests::tls::Pki;
use portcullis_tests::{wait_until, Gateway, TempDir, Upstream};
use std::time::Duration;

fn tls_fleet(up: &Upstream, state: &std::path::Path, url: &str, id: &str, tls: &str) -> Cfg {
    Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(state)
        .extra(&format!("fleet:\n  redis_url: \"{url}\"\n  id: {id}\n{tls}"))
}

fn ca_line(pki: &Pki) -> String {
    format!("  redis_ca_file: \"{}\"\n", pki.ca().display())
}

/// Kill on A → B refuses within a second (nothing reaches the upstream); the change is in the
/// store's list; the store restarted empty on the same TLS port → both reconnect over TLS and
/// republish, and B still refuses.
fn share_a_kill_switch(redis: Redis, a: &Gateway, b: &Gateway, up: &Upstream, id: &str) -> Redis {
    assert_eq!(status(b, "/api/whatsapp/x"), 200);
    let r = put(a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], true, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(b, "/api/whatsapp/x") == 503),
        "B still serves a channel A killed over the TLS store"
    );
    up.clear();
    assert_eq!(status(b, "/api/whatsapp/y"), 503);
    assert!(up.requests_to("/api/whatsapp").is_empty());
    assert_eq!(metric(a, "portcullis_fleet_connected"), Some(1.0));
    let ops = redis.cli(&["LRANGE", &format!("portcullis:{id}:ops"), "0", "-1"]);
    assert!(ops.contains("channel:whatsapp"), "the store's list: {ops}");
    redis
}

#[test]
fn two_instances_share_state_over_rediss_with_the_configured_ca() {
    let pki = Pki::new();
    let Some(redis) = Redis::start_tls(None, &pki, false) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-tls-a"), TempDir::new("fleet-tls-b"));
    let id = format!("{}tls", fleet_id());
    let url = format!("rediss://localhost:{}", redis.port);
    let a = tls_fleet(&up, sa.path(), &url, &id, &ca_line(&pki)).start();
    let b = tls_fleet(&up, sb.path(), &url, &id, &ca_line(&pki)).start();
    let redis = share_a_kill_switch(redis, &a, &b, &up, &id);

    // The store restarts empty on the same TLS port: the instances reconnect (a new TLS
    // handshake each) and republish; nothing reopens, and a restore on B reaches A again.
    let port = redis.stop();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(status(&b, "/api/whatsapp/x"), 503, "the store's outage reopened the channel");
    let redis = Redis::start_tls(Some(port), &pki, false).unwrap();
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            redis.cli(&["LRANGE", &format!("portcullis:{id}:ops"), "0", "-1"]).contains("channel:whatsapp")
        }),
        "the instances did not republish to the restarted TLS store"
    );
    assert_eq!(status(&a, "/api/whatsapp/x"), 503);
    assert_eq!(put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#).status, 200);
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || status(&a, "/api/whatsapp/x") == 200));
    for gw in [&a, &b] {
        assert!(!gw.output().contains("panicked"), "{}", gw.output());
    }
}

#[test]
fn a_store_that_asks_for_a_client_certificate_gets_the_configured_one() {
    let pki = Pki::new();
    let Some(redis) = Redis::start_tls(None, &pki, true) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-mtls-a"), TempDir::new("fleet-mtls-b"));
    let id = format!("{}mtls", fleet_id());
    let url = format!("rediss://localhost:{}", redis.port);
    let (cert, key) = pki.leaf("gateway", &["gateway"], 2);
    let tls = format!(
        "{}  redis_client_cert_file: \"{}\"\n  redis_client_key_file: \"{}\"\n",
        ca_line(&pki),
        cert.display(),
        key.display()
    );
    let a = tls_fleet(&up, sa.path(), &url, &id, &tls).start();
    let b = tls_fleet(&up, sb.path(), &url, &id, &tls).start();
    let _redis = share_a_kill_switch(redis, &a, &b, &up, &id);
}

#[test]
fn a_store_the_tls_settings_do_not_trust_or_that_refuses_us_stops_the_start() {
    let pki = Pki::new();
    let other = Pki::new();
    let Some(redis) = Redis::start_tls(None, &pki, true) else { return };
    let up = Upstream::start("app");
    let port = redis.port;
    let (cert, key) = pki.leaf("gateway", &["gateway"], 2);
    let (stranger, stranger_key) = other.leaf("gateway", &["gateway"], 2);
    let client = |c: &std::path::Path, k: &std::path::Path| {
        format!("  redis_client_cert_file: \"{}\"\n  redis_client_key_file: \"{}\"\n", c.display(), k.display())
    };
    for (what, url, tls) in [
        ("another CA", format!("rediss://localhost:{port}"), format!("{}{}", ca_line(&other), client(&cert, &key))),
        ("the system's roots", format!("rediss://localhost:{port}"), client(&cert, &key)),
        (
            "a host the certificate does not name",
            format!("rediss://127.0.0.1:{port}"),
            format!("{}{}", ca_line(&pki), client(&cert, &key)),
        ),
        ("no client certificate", format!("rediss://localhost:{port}"), ca_line(&pki)),
        (
            "a client certificate of another CA",
            format!("rediss://localhost:{port}"),
            format!("{}{}", ca_line(&pki), client(&stranger, &stranger_key)),
        ),
    ] {
        let state = TempDir::new("fleet-tls-bad");
        let c = tls_fleet(&up, state.path(), &url, &fleet_id(), &tls);
        let err = match Gateway::try_start_with(BIN, &c.yaml(), &[], &c.files()) {
            Ok(_) => panic!("{what}: started"),
            Err(e) => e,
        };
        assert!(err.status.is_some(), "{what}: {err}");
        assert!(err.output.contains("TLS handshake failed"), "{what}: {}", err.output);
        assert!(err.output.contains("fleet.redis_ca_file"), "{what}: {}", err.output);
        assert!(!err.output.contains("panicked"), "{what}: {}", err.output);
    }
    // Nothing of theirs reached the store.
    assert_eq!(redis.cli(&["DBSIZE"]), "0");
}

#[test]
fn tls_files_that_cannot_be_honoured_are_configuration_errors() {
    let pki = Pki::new();
    let other = Pki::new();
    let up = Upstream::start("app");
    let (cert, key) = pki.leaf("gateway", &["gateway"], 2);
    let (_, other_key) = other.leaf("gateway", &["gateway"], 2);
    let garbage = pki.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let url = "rediss://localhost:6390";
    let f = |p: &std::path::Path| p.display().to_string();
    for (url, tls, says) in [
        ("redis://localhost:6390", format!("  redis_ca_file: \"{}\"\n", f(&pki.ca())), "fleet.redis_ca_file"),
        (
            "redis://localhost:6390",
            format!("  redis_client_cert_file: \"{}\"\n  redis_client_key_file: \"{}\"\n", f(&cert), f(&key)),
            "needs a rediss://",
        ),
        (url, format!("  redis_ca_file: \"{}\"\n", f(&garbage)), "no certificate"),
        (url, "  redis_ca_file: /nonexistent/ca.pem\n".to_string(), "cannot read"),
        (url, format!("  redis_client_cert_file: \"{}\"\n", f(&cert)), "fleet.redis_client_key_file"),
        (url, format!("  redis_client_key_file: \"{}\"\n", f(&key)), "fleet.redis_client_cert_file"),
        (
            url,
            format!("  redis_client_cert_file: \"{}\"\n  redis_client_key_file: \"{}\"\n", f(&cert), f(&other_key)),
            "does not match",
        ),
        (
            url,
            format!("  redis_client_cert_file: \"{}\"\n  redis_client_key_file: \"{}\"\n", f(&cert), f(&cert)),
            "no private key",
        ),
        ("rediss://localhost:6390/#insecure", String::new(), "#insecure"),
    ] {
        let state = TempDir::new("fleet-tls-cfg");
        let c = tls_fleet(&up, state.path(), url, "prod", &tls);
        let err = match Gateway::try_start_with(BIN, &c.yaml(), &[], &c.files()) {
            Ok(_) => panic!("started with {tls}"),
            Err(e) => e,
        };
        assert!(err.status.is_some(), "{err}");
        assert!(err.output.contains(says), "{tls}: {}", err.output);
    }
}

/// Webhook replays over a TLS store within the default 5 ms budget, with `closed` fallback (a
/// delivery the fleet cache cannot be asked about is refused): a new TLS connection does not fit
/// that budget in every build, so the counting thread keeps connections open ahead of need; every
/// delivery is claimed fleet-wide, and its replay to the other instance is refused.
#[test]
fn webhook_replays_are_claimed_over_tls_within_the_default_budget() {
    use crate::webhooks::{github, post, GH};
    let pki = Pki::new();
    let Some(redis) = Redis::start_tls(None, &pki, false) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-tlsw-a"), TempDir::new("fleet-tlsw-b"));
    let id = format!("{}tlsw", fleet_id());
    let url = format!("rediss://localhost:{}", redis.port);
    let start = |state: &std::path::Path| {
        tls_fleet(&up, state, &url, &id, &format!("{}  webhook_replay_fallback: closed\n", ca_line(&pki)))
            .rule_file("fleet.yaml", &format!("version: 1\n{}", crate::fleet_limits::HOOKS))
            .start_env(&[("PC_GH", GH), ("PC_SW", crate::webhooks::SW)])
    };
    let (a, b) = (start(sa.path()), start(sb.path()));
    // The counting thread opens each instance's replay-cache connections ahead of need, off the
    // request path, within the fleet's 500 ms budget; a delivery in the first milliseconds after
    // start would race that (it did on a loaded CI machine). After it, every claim must fit the
    // default 5 ms budget, which a TLS connect on the request path (about 5 ms) would not.
    std::thread::sleep(Duration::from_millis(1_500));
    for n in 0..6 {
        let body = format!("{{\"n\":{n}}}");
        let h = github(GH, body.as_bytes(), &format!("d-{n}"));
        let (first, second) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = post(first, "/api/hooks/github", &h, body.as_bytes());
        assert_eq!(r.status, 200, "delivery {n}: {}", r.text());
        let r = post(second, "/api/hooks/github", &h, body.as_bytes());
        assert_eq!(r.status, 401, "replay {n} to the other instance: {}", r.text());
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(up.requests_to("/api/hooks/github").len(), 6);
    assert_eq!(redis.cli(&["KEYS", &format!("portcullis:{id}:wh:*")]).lines().count(), 6);
}
