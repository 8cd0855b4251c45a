//! Fleet mode on a real `redis-server` (started here on a free port, no persistence): two gateway
//! processes with their own state directories share maintenance, channel switches, session
//! revocations and the operator's blocks, suspensions and allowlist entries through it; outages fail closed; a store restarted empty reopens nothing; a
//! tampered value is skipped.
use crate::common::*;
use portcullis_tests::{wait_until, Client, Gateway, TempDir, Upstream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn routes() -> &'static str {
    "  - id: whatsapp\n    path_prefix: /api/whatsapp\n    upstream: app\n    channel: whatsapp\n  - id: email\n    path_prefix: /api/email\n    upstream: app\n    channel: email\n  - id: api\n    path_prefix: /api\n    upstream: app\n"
}

pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
    /// `redis-cli`'s arguments before the command (the port; TLS files for a TLS server).
    cli: Vec<String>,
}

impl Redis {
    /// A fresh, empty redis-server; `None` (loudly) when it is not installed.
    pub(crate) fn start(port: Option<u16>) -> Option<Redis> {
        Redis::start_with_password(port, "")
    }

    /// [`Redis::start`] with `requirepass` (none when empty).
    pub(crate) fn start_with_password(port: Option<u16>, password: &str) -> Option<Redis> {
        let port = port.unwrap_or_else(free_port);
        let mut args = vec!["--port".to_string(), port.to_string()];
        if !password.is_empty() {
            args.extend(["--requirepass".to_string(), password.to_string()]);
        }
        let ping: Vec<&str> =
            if password.is_empty() { vec!["PING"] } else { vec!["-a", password, "--no-auth-warning", "PING"] };
        Redis::spawn(port, args, vec!["-p".into(), port.to_string()], &ping)
    }

    /// A fresh redis-server that speaks TLS only (`--port 0 --tls-port`), its certificate
    /// `pki.leaf("redis", ["localhost"])`; with `auth_clients` it asks for a client certificate
    /// signed by the same CA (mTLS). `redis-cli` talks to it with `pki.leaf("cli")`.
    pub(crate) fn start_tls(port: Option<u16>, pki: &portcullis_tests::tls::Pki, auth_clients: bool) -> Option<Redis> {
        let port = port.unwrap_or_else(free_port);
        let (cert, key) = pki.leaf("redis", &["localhost"], 2);
        let (cli_cert, cli_key) = pki.leaf("cli", &["cli"], 2);
        let f = |p: &std::path::Path| p.display().to_string();
        let args = tls_server_args(port, &cert, &key, &pki.ca(), auth_clients);
        let cli: Vec<String> = ["--tls", "--cacert", &f(&pki.ca()), "--cert", &f(&cli_cert), "--key", &f(&cli_key)]
            .map(String::from)
            .into_iter()
            .chain(["-h".into(), "localhost".into(), "-p".into(), port.to_string()])
            .collect();
        Redis::spawn(port, args, cli, &["PING"])
    }

    pub(crate) fn spawn(port: u16, args: Vec<String>, cli: Vec<String>, ping: &[&str]) -> Option<Redis> {
        if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
            eprintln!("!!!!! SKIPPED: redis-server is not installed (.ci/run installs it) !!!!!");
            return None;
        }
        let child = Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Redis { child, port, cli };
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || r.cli(ping) == "PONG"),
            "redis-server did not start"
        );
        Some(r)
    }

    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(&self.cli).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub(crate) fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn instance(up: &Upstream, state: &std::path::Path, redis: u16, fleet: &str) -> Gateway {
    Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(state)
        .extra(&format!("fleet:\n  redis_url: \"redis://127.0.0.1:{redis}\"\n  id: {fleet}\n"))
        .start()
}

/// redis-server's arguments for a TLS-only listener on `port` (no plaintext port).
pub(crate) fn tls_server_args(
    port: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
    auth_clients: bool,
) -> Vec<String> {
    let f = |p: &std::path::Path| p.display().to_string();
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &f(cert),
        "--tls-key-file",
        &f(key),
        "--tls-ca-cert-file",
        &f(ca),
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
    ]
    .map(String::from)
    .to_vec()
}

/// A port free a moment ago (for a server the test starts and may restart on the same port).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn put(gw: &Gateway, path: &str, body: &str) -> portcullis_tests::Resp {
    let auth = bearer(OPERATOR);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    Client::new().request("PUT", &gw.control_url(path), &headers, Some(body.as_bytes()))
}

pub(crate) fn status(gw: &Gateway, path: &str) -> u16 {
    Client::new().get(&gw.url(path), &[]).status
}

/// Polls until `gw` answers `path` with `want`; the time it took, or `None` after `limit`.
fn until_status(gw: &Gateway, path: &str, want: u16, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if status(gw, path) == want {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

pub(crate) fn fleet_id() -> String {
    format!("t{}", std::process::id())
}

#[test]
fn a_change_on_one_instance_is_in_force_on_the_other_within_a_second() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-a"), TempDir::new("fleet-b"));
    let a = instance(&up, sa.path(), redis.port, &fleet_id());
    let b = instance(&up, sb.path(), redis.port, &fleet_id());
    assert_eq!(status(&b, "/api/whatsapp/x"), 200);

    // Kill on A: acknowledged by the fleet store, refused by B within 1 s.
    let r = put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], true, "{}", r.text());
    let took = until_status(&b, "/api/whatsapp/x", 503, Duration::from_secs(1));
    eprintln!("fleet propagation (kill on A -> refused on B): {took:?}");
    assert!(took.is_some(), "B still serves a channel A killed after 1 s");
    up.clear();
    assert_eq!(status(&b, "/api/whatsapp/y"), 503);
    assert!(up.requests_to("/api/whatsapp").is_empty(), "the upstream received a killed channel's request");

    // Restore on B: A serves again within 1 s.
    assert_eq!(put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":true}"#).status, 200);
    let took = until_status(&a, "/api/whatsapp/x", 200, Duration::from_secs(1));
    eprintln!("fleet propagation (restore on B -> served on A): {took:?}");
    assert!(took.is_some());

    // Maintenance on B, off on A.
    assert_eq!(put(&b, "/v1/switches/maintenance", r#"{"enabled":true,"retry_after":60}"#).status, 200);
    let took = until_status(&a, "/api/orders", 503, Duration::from_secs(1));
    eprintln!("fleet propagation (maintenance on B -> on at A): {took:?}");
    assert!(took.is_some());
    assert_eq!(put(&a, "/v1/switches/maintenance", r#"{"enabled":false}"#).status, 200);
    assert!(until_status(&b, "/api/orders", 200, Duration::from_secs(1)).is_some());

    // Revoke on B: A has it within 1 s; restore on A: B drops it.
    let c = Client::new();
    let r = c.post(&b.control_url("/v1/sessions/sess-7/revoke"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || metric(&a, "portcullis_sessions_revoked")
        == Some(1.0)));
    let r = c.request(
        "DELETE",
        &a.control_url("/v1/sessions/sess-7/revoke"),
        &[("authorization", &bearer(OPERATOR))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || metric(&b, "portcullis_sessions_revoked")
        == Some(0.0)));
    // Both instances are alive and in sync.
    for gw in [&a, &b] {
        let v = control_get(gw, "/v1/switches", VIEWER).json();
        assert_eq!(v["fleet"]["connected"], true, "{v}");
        assert_eq!(v["channels"]["whatsapp"]["enabled"], true);
        assert!(
            wait_until(Duration::from_secs(3), Duration::from_millis(25), || {
                control_get(gw, "/v1/events?type=switch_changed", VIEWER).json()["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["detail"]["set_by"] == "fleet"))
            }),
            "no switch_changed event for a change applied from the fleet"
        );
    }
    assert!(metric(&a, "portcullis_fleet_connected") == Some(1.0));
    assert!(metric(&a, "portcullis_fleet_pending_changes") == Some(0.0));
}

#[test]
fn an_outage_fails_closed_closing_changes_apply_locally_opening_ones_are_503_and_an_empty_restart_reopens_nothing() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-oa"), TempDir::new("fleet-ob"));
    let id = format!("{}o", fleet_id());
    let a = instance(&up, sa.path(), redis.port, &id);
    let b = instance(&up, sb.path(), redis.port, &id);
    assert_eq!(put(&a, "/v1/switches/channels/email", r#"{"enabled":false}"#).status, 200);
    assert!(until_status(&b, "/api/email/x", 503, Duration::from_secs(1)).is_some());
    let c = Client::new();
    let r = c.post(&a.control_url("/v1/sessions/sess-9/revoke"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 200);

    // Redis dies.
    let port = redis.stop();
    std::thread::sleep(Duration::from_millis(700));
    // No 5xx storm; the killed channel stays killed on both.
    up.clear();
    for gw in [&a, &b] {
        for _ in 0..25 {
            assert_eq!(status(gw, "/api/orders"), 200);
        }
        assert_eq!(status(gw, "/api/email/x"), 503);
    }
    assert!(up.requests_to("/api/email").is_empty());
    assert_eq!(up.requests_to("/api/orders").len(), 50);

    // A closing change is applied on A at once, with a warning.
    let r = put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false, "{}", r.text());
    assert!(r.json()["fleet"]["warning"].as_str().is_some_and(|w| w.contains("this instance only")));
    assert_eq!(status(&a, "/api/whatsapp/x"), 503);
    let r = c.post(&b.control_url("/v1/sessions/sess-10/revoke"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false);
    // Opening changes (and flags) are refused with 503, nothing changed.
    for (gw, path, body) in [
        (&b, "/v1/switches/channels/email", r#"{"enabled":true}"#),
        (&a, "/v1/switches/channels/email", r#"{"enabled":true}"#),
        (&a, "/v1/switches/maintenance", r#"{"enabled":false}"#),
        (&b, "/v1/flags/pii_scanning", r#"{"enabled":false}"#),
    ] {
        let r = put(gw, path, body);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "store_unavailable", "{}", r.text());
    }
    let r = c.request(
        "DELETE",
        &a.control_url("/v1/sessions/sess-9/revoke"),
        &[("authorization", &bearer(OPERATOR))],
        None,
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(status(&a, "/api/email/x"), 503);
    assert_eq!(metric(&a, "portcullis_sessions_revoked"), Some(1.0));

    // Redis comes back EMPTY on the same port: the instances republish; nothing reopens, and
    // A's change from the outage reaches B.
    let redis = Redis::start(Some(port)).unwrap();
    let took = until_status(&b, "/api/whatsapp/x", 503, Duration::from_secs(3));
    eprintln!("fleet: pending change published after the store returned empty: {took:?}");
    assert!(took.is_some(), "A's outage change never reached B");
    for gw in [&a, &b] {
        assert_eq!(status(gw, "/api/email/x"), 503, "a killed channel reopened");
        assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || metric(
            gw,
            "portcullis_sessions_revoked"
        ) == Some(2.0)));
        assert_eq!(status(gw, "/api/orders"), 200);
    }
    assert_ne!(redis.cli(&["LLEN", &format!("portcullis:{id}:ops")]), "0", "republished");
    // The store is back: opening works again, fleet-wide.
    assert_eq!(put(&b, "/v1/switches/channels/email", r#"{"enabled":true}"#).status, 200);
    assert!(until_status(&a, "/api/email/x", 200, Duration::from_secs(1)).is_some());
}

#[test]
fn a_tampered_value_in_the_store_is_skipped_and_the_last_known_state_kept() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-ta"), TempDir::new("fleet-tb"));
    let id = format!("{}t", fleet_id());
    let a = instance(&up, sa.path(), redis.port, &id);
    let b = instance(&up, sb.path(), redis.port, &id);
    assert_eq!(put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#).status, 200);
    assert!(until_status(&b, "/api/whatsapp/x", 503, Duration::from_secs(1)).is_some());
    let ops = format!("portcullis:{id}:ops");
    let chan = format!("portcullis:{id}:changes");
    for bad in [
        "garbage",
        "{\"action\":\"switch.channel.set\",\"target\":\"channel:whatsapp\",\"new\":{\"enabled\":\"yes\"}}",
        "{\"action\":\"quota.reset\",\"target\":\"quota:t\",\"new\":{\"reset\":true}}",
        "{\"action\":\"flag.set\",\"target\":\"channel:whatsapp\",\"new\":{\"enabled\":true}}",
        "[1,2,3]",
        "{\"action\":\"switch.channel.set\",\"target\":\"flag:firewall\",\"new\":{\"enabled\":false}}",
        "{\"action\":\"switch.maintenance.set\",\"target\":\"maintenance\",\"new\":\"off\"}",
    ] {
        redis.cli(&["RPUSH", &ops, bad]);
        redis.cli(&["PUBLISH", &chan, "1"]);
    }
    std::thread::sleep(Duration::from_millis(800));
    for gw in [&a, &b] {
        assert!(gw.is_running());
        assert_eq!(status(gw, "/api/whatsapp/x"), 503, "a tampered value reopened the channel");
        assert_eq!(status(gw, "/api/orders"), 200);
    }
    // The list replaced by a value of another type: the store counts as unreachable.
    redis.cli(&["DEL", &ops]);
    redis.cli(&["SET", &ops, "not-a-list"]);
    redis.cli(&["PUBLISH", &chan, "1"]);
    std::thread::sleep(Duration::from_millis(800));
    for gw in [&a, &b] {
        assert!(gw.is_running());
        assert_eq!(status(gw, "/api/whatsapp/x"), 503);
    }
    let r = put(&a, "/v1/switches/channels/email", r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false, "{}", r.text());
}

#[test]
fn redis_down_at_start_serves_the_last_known_state_and_a_restart_keeps_what_is_not_yet_published() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-sa"), TempDir::new("fleet-sb"));
    let id = format!("{}s", fleet_id());
    let a = instance(&up, sa.path(), redis.port, &id);
    assert_eq!(put(&a, "/v1/switches/channels/email", r#"{"enabled":false}"#).status, 200);
    drop(a);
    let port = redis.stop();

    // A starts with Redis down: the last known state is in force.
    let a = instance(&up, sa.path(), port, &id);
    assert_eq!(status(&a, "/api/email/x"), 503, "a killed channel reopened at a start without Redis");
    assert_eq!(status(&a, "/api/orders"), 200);
    assert_eq!(control_get(&a, "/v1/switches", VIEWER).json()["fleet"]["connected"], false);
    // A closing change while down, then a restart before the store returns: it is kept.
    let r = put(&a, "/v1/switches/maintenance", r#"{"enabled":true,"retry_after":30}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false);
    drop(a);
    let a = instance(&up, sa.path(), port, &id);
    assert_eq!(status(&a, "/api/orders"), 503);
    assert_eq!(control_get(&a, "/v1/switches", VIEWER).json()["fleet"]["pending"], 1);

    // The store returns empty and a new instance B (empty state) joins first: A republishes what
    // it holds closed and its pending change; B ends up closed too.
    let _redis = Redis::start(Some(port)).unwrap();
    let b = instance(&up, sb.path(), port, &id);
    let took = until_status(&b, "/api/orders", 503, Duration::from_secs(3));
    eprintln!("fleet: A's outage change in force on B after the store returned: {took:?}");
    assert!(took.is_some(), "maintenance set during the outage never reached B");
    assert!(
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            let v = control_get(&b, "/v1/switches", VIEWER).json();
            v["channels"]["email"]["enabled"] == false && v["maintenance"]["enabled"] == true
        }),
        "B does not hold A's killed channel"
    );
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || control_get(&a, "/v1/switches", VIEWER)
        .json()["fleet"]["pending"]
        == 0));
}

#[test]
fn a_slow_store_costs_the_control_plane_its_budget_not_the_request_path() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-la"), TempDir::new("fleet-lb"));
    let id = format!("{}l", fleet_id());
    let a = instance(&up, sa.path(), redis.port, &id);
    let b = instance(&up, sb.path(), redis.port, &id);
    assert_eq!(put(&a, "/v1/switches/channels/email", r#"{"enabled":false}"#).status, 200);
    assert!(until_status(&b, "/api/email/x", 503, Duration::from_secs(1)).is_some());
    // Redis stops answering for 4 s.
    let port = redis.port.to_string();
    let sleeper = std::thread::spawn(move || {
        let _ = Command::new("redis-cli").args(["-p", &port, "DEBUG", "SLEEP", "4"]).output();
    });
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(status(&a, "/api/orders"), 200);
    }
    let proxied = t.elapsed();
    eprintln!("fleet: 20 proxied requests while Redis hangs: {proxied:?}");
    assert!(proxied < Duration::from_secs(2), "the request path waited for Redis: {proxied:?}");
    assert_eq!(status(&b, "/api/email/x"), 503);
    let t = Instant::now();
    let r = put(&b, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#);
    eprintln!("fleet: a closing change while Redis hangs answered in {:?}", t.elapsed());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false, "{}", r.text());
    assert_eq!(status(&b, "/api/whatsapp/x"), 503);
    let r = put(&b, "/v1/switches/channels/email", r#"{"enabled":true}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    sleeper.join().unwrap();
    // Once it answers again, B's change reaches A.
    let took = until_status(&a, "/api/whatsapp/x", 503, Duration::from_secs(3));
    eprintln!("fleet: change made during the hang in force on A after it: {took:?}");
    assert!(took.is_some());
    assert_eq!(status(&a, "/api/email/x"), 503);
}

#[test]
fn a_session_revoked_on_one_instance_is_refused_by_the_other_on_the_wire() {
    use crate::identity::{claims, get, rs256};
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-ra"), TempDir::new("fleet-rb"));
    let id = format!("{}r", fleet_id());
    let fleet = format!("fleet:\n  redis_url: \"redis://127.0.0.1:{}\"\n  id: {id}\n", redis.port);
    let a = crate::identity::start(&crate::identity::cfg(&up, "").state_dir(sa.path()).extra(&fleet));
    let b = crate::identity::start(&crate::identity::cfg(&up, "").state_dir(sb.path()).extra(&fleet));
    let (t9, t8) = (rs256(claims("user-9", "12")), rs256(claims("user-8", "12")));
    assert_eq!(get(&a, "/api/x", &t9).status, 200);
    let r = Client::new().post(
        &b.control_url("/v1/sessions/sess-user-9/revoke"),
        &[("authorization", &bearer(OPERATOR))],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], true);
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(5), || get(&a, "/api/x", &t9).status == 401));
    eprintln!("fleet propagation (revoke on B -> 401 on A): {:?}", t.elapsed());
    up.clear();
    for gw in [&a, &b] {
        assert_eq!(get(gw, "/api/x/1", &t9).status, 401);
        assert_eq!(get(gw, "/api/x/2", &t8).status, 200, "another session is unaffected");
    }
    let got = up.requests();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|r| r.header("x-portcullis-subject") == Some("user-8")),
        "the revoked session reached the upstream"
    );
}

#[test]
fn a_flapping_store_restarted_empty_each_time_loses_no_closing_change() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-fa"), TempDir::new("fleet-fb"));
    let id = format!("{}f", fleet_id());
    let a = instance(&up, sa.path(), redis.port, &id);
    let b = instance(&up, sb.path(), redis.port, &id);
    let mut port = redis.stop();
    let c = Client::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let r = match round {
            0 => put(&a, "/v1/switches/channels/whatsapp", r#"{"enabled":false}"#),
            1 => c.post(&b.control_url("/v1/sessions/sess-f1/revoke"), &[("authorization", &bearer(OPERATOR))], ""),
            _ => put(&a, "/v1/switches/maintenance", r#"{"enabled":true,"retry_after":30}"#),
        };
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(r.json()["fleet"]["published"], false, "round {round}");
        let back = Redis::start(Some(port)).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        port = back.stop();
    }
    let _redis = Redis::start(Some(port)).unwrap();
    assert!(until_status(&b, "/api/orders", 503, Duration::from_secs(3)).is_some(), "maintenance never reached B");
    for gw in [&a, &b] {
        assert!(wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            let v = control_get(gw, "/v1/switches", VIEWER).json();
            v["channels"]["whatsapp"]["enabled"] == false
                && v["maintenance"]["enabled"] == true
                && metric(gw, "portcullis_sessions_revoked") == Some(1.0)
                && v["fleet"]["pending"] == 0
        }));
    }
}

#[test]
fn a_fleet_section_that_cannot_be_honoured_stops_the_start_and_the_password_is_never_printed() {
    let up = Upstream::start("app");
    let base = || Cfg::new(&[up.addr()]).routes(routes());
    for (fleet, env, says) in [
        ("  redis_url: \"rediss://127.0.0.1:6390/#insecure\"\n  id: prod\n", vec![], "#insecure"),
        ("  redis_url: \"http://127.0.0.1:6390\"\n  id: prod\n", vec![], "redis://"),
        ("  redis_url: \"redis://127.0.0.1:6390\"\n  id: \"prod:x\"\n", vec![], "fleet.id"),
        (
            "  redis_url: \"redis://127.0.0.1:6390\"\n  id: prod\n  password_env: PC_FLEET_NOPE\n",
            vec![],
            "PC_FLEET_NOPE",
        ),
        (
            "  redis_url: \"redis://127.0.0.1:6390\"\n  id: prod\n  password_env: PC_FLEET_PW\n  password_file: /x\n",
            vec![("PC_FLEET_PW", "hunter2-secret")],
            "not both",
        ),
    ] {
        let c = base().extra(&format!("fleet:\n{fleet}"));
        let err = match Gateway::try_start_with(BIN, &c.yaml(), &env, &c.files()) {
            Ok(_) => panic!("started with {fleet}"),
            Err(e) => e,
        };
        assert!(err.status.is_some(), "{err}");
        assert!(err.output.contains(says), "{fleet}: {}", err.output);
        assert!(!err.output.contains("hunter2"), "the password was printed");
    }
    // A valid section with Redis unreachable starts (on the local state) and never prints the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = base().extra(&format!(
        "fleet:\n  redis_url: \"redis://127.0.0.1:{port}\"\n  id: prod\n  password_env: PC_FLEET_PW\n"
    ));
    let gw = Gateway::start_with(BIN, &c.yaml(), &[("PC_FLEET_PW", "hunter2-secret")], &c.files());
    assert_eq!(status(&gw, "/api/orders"), 200);
    assert_eq!(metric(&gw, "portcullis_fleet_connected"), Some(0.0));
    assert!(!gw.output().contains("hunter2"));
}

/// The operator's blocks, suspensions and allowlist entries are fleet state too: an address
/// blocked on A is refused by B on the wire; while the store is down a block still applies (on
/// this instance) and an unblock is refused; a store restarted empty gets the block back from
/// the instances, and B refuses it after all.
#[test]
fn operator_blocks_suspensions_and_allowlist_entries_hold_across_the_fleet() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-ba"), TempDir::new("fleet-bb"));
    let id = format!("{}b", fleet_id());
    let a = instance(&up, sa.path(), redis.port, &id);
    let b = instance(&up, sb.path(), redis.port, &id);
    let c = Client::new();
    let del = |gw: &Gateway, path: &str| {
        c.request(
            "DELETE",
            &gw.control_url(path),
            &[("authorization", &bearer(OPERATOR))],
            Some(br#"{"reason":"done"}"#),
        )
    };
    let get = |gw: &Gateway, path: &str| c.get(&gw.control_url(path), &[("authorization", &bearer(ADMIN))]);

    // Block the test client's own address on A: B refuses it within a second; nothing reaches
    // the upstream through either.
    let r = put(&a, "/v1/blocks/addresses/127.0.0.0%2F8", r#"{"reason":"credential stuffing"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], true, "{}", r.text());
    let took = until_status(&b, "/api/orders", 403, Duration::from_secs(1));
    eprintln!("fleet propagation (address block on A -> 403 on B): {took:?}");
    assert!(took.is_some(), "B never refused the blocked address");
    up.clear();
    for gw in [&a, &b] {
        let r = c.get(&gw.url("/api/orders"), &[]);
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("ip_blocked")));
    }
    assert_eq!(up.count(), 0);
    // B's record says where it came from.
    let rec = get(&b, "/v1/audit?action=address.block&actor=fleet").json();
    assert_eq!(rec["records"][0]["target"], "address:127.0.0.0/8", "{rec}");

    // A tenant suspension and an allowlist entry made on B are listed by A.
    let r = put(&b, "/v1/tenants/acme/suspension", r#"{"reason":"unpaid","ttl_seconds":3600}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request(
        "PUT",
        &b.control_url("/v1/allowlist/domain/Partner.Example"),
        &[("authorization", &bearer(ADMIN)), ("content-type", "application/json")],
        Some(br#"{"label":"pilot partner"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
        get(&a, "/v1/tenants").json()["suspended"][0]["tenant"] == "acme"
            && get(&a, "/v1/allowlist").json()["entries"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["value"] == "partner.example" && e["enabled"] == true))
    }));

    // Unblock on B: A serves again.
    let r = del(&b, "/v1/blocks/addresses/127.0.0.0%2F8");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(until_status(&a, "/api/orders", 200, Duration::from_secs(1)).is_some(), "A kept the lifted block");

    // The store dies: blocking still works on this instance (a closing change), lifting it or
    // resuming a tenant is refused with 503 and changes nothing.
    let port = redis.stop();
    std::thread::sleep(Duration::from_millis(700));
    let r = put(&a, "/v1/blocks/addresses/127.0.0.1", r#"{"reason":"during the outage"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], false, "{}", r.text());
    assert_eq!(status(&a, "/api/orders"), 403);
    assert_eq!(status(&b, "/api/orders"), 200, "B cannot know yet");
    for (gw, path) in [(&a, "/v1/blocks/addresses/127.0.0.1"), (&b, "/v1/tenants/acme/suspension")] {
        let r = del(gw, path);
        assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("store_unavailable")), "{path}: {}", r.text());
    }
    assert_eq!(status(&a, "/api/orders"), 403, "a refused unblock changed nothing");

    // The store returns empty: A publishes its outage block, both republish what they hold
    // closed; B refuses the address, and the suspension is still there.
    let _redis = Redis::start(Some(port)).unwrap();
    let took = until_status(&b, "/api/orders", 403, Duration::from_secs(3));
    eprintln!("fleet: outage address block published after the store returned empty: {took:?}");
    assert!(took.is_some(), "A's outage block never reached B");
    assert_eq!(get(&b, "/v1/tenants").json()["suspended"][0]["tenant"], "acme");
}
