//! Maintenance mode, channel kill switches and runtime flags through the real control listener
//! and the real proxy: effective on the next request, persisted before acknowledged, audited.
use crate::common::*;
use portcullis_tests::{wait_until, Client, Gateway, TempDir, Upstream};
use std::time::Duration;

const BYPASS_SECRET: &str = "let-me-in-0123456789";

fn routes() -> &'static str {
    "  - id: whatsapp\n    path_prefix: /api/whatsapp\n    upstream: app\n    channel: whatsapp\n  - id: email\n    path_prefix: /api/email\n    upstream: app\n    channel: email\n  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n"
}

fn cfg(up: &Upstream, state: &std::path::Path) -> Cfg {
    Cfg::new(&[up.addr()]).routes(routes()).state_dir(state).extra(&format!(
        "trusted_proxies: [\"127.0.0.1/32\"]\nmaintenance:\n  bypass_cidrs: [\"192.0.2.0/24\"]\n  bypass_header: {{ name: x-portcullis-bypass, sha256: \"{}\" }}\n",
        sha(BYPASS_SECRET)
    ))
}

fn put(gw: &Gateway, path: &str, token: &str, body: &str, if_match: Option<&str>) -> portcullis_tests::Resp {
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if let Some(v) = if_match {
        headers.push(("if-match", v));
    }
    Client::new().request("PUT", &gw.control_url(path), &headers, Some(body.as_bytes()))
}

fn switches(gw: &Gateway) -> serde_json::Value {
    let r = control_get(gw, "/v1/switches", VIEWER);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn maintenance_stops_every_proxied_request_on_the_next_request_and_the_team_can_bypass() {
    let up = Upstream::start("app");
    let state = TempDir::new("maint");
    let gw = cfg(&up, state.path()).start();
    let c = Client::new();
    assert_eq!(c.get(&gw.url("/api/orders"), &[]).status, 200);

    let r = put(
        &gw,
        "/v1/switches/maintenance",
        OPERATOR,
        r#"{"enabled":true,"retry_after":600,"reason":"cross-tenant incident"}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    up.clear();
    let r = c.get(&gw.url("/api/orders"), &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("600"));
    let body = r.json();
    assert_eq!(body["code"], "maintenance");
    assert_eq!(body["error"], "Scheduled maintenance");
    assert_eq!(body["retryAfter"], 600);
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(c.post(&gw.url("/webhooks/x"), &[], "{}").status, 503);
    assert_eq!(up.count(), 0, "nothing reached the upstream");

    // The bypass header lets the team verify a fix; a wrong secret does not.
    assert_eq!(c.get(&gw.url("/api/orders"), &[("x-portcullis-bypass", BYPASS_SECRET)]).status, 200);
    assert_eq!(c.get(&gw.url("/api/orders"), &[("x-portcullis-bypass", "let-me-in")]).status, 503);
    assert_eq!(up.count(), 1);
    assert!(up.last().unwrap().header("x-portcullis-bypass").is_none(), "the bypass secret is not forwarded");
    // The bypass CIDR, for a client behind the trusted proxy (127.0.0.1 here); another client is
    // still held, and so is a bypass address the client claims for itself behind a spoofed hop.
    assert_eq!(c.get(&gw.url("/api/orders"), &[("x-forwarded-for", "192.0.2.7")]).status, 200);
    assert_eq!(c.get(&gw.url("/api/orders"), &[("x-forwarded-for", "198.51.100.7")]).status, 503);
    assert_eq!(c.get(&gw.url("/api/orders"), &[("x-forwarded-for", "192.0.2.7, 198.51.100.7")]).status, 503);
    assert_eq!(up.count(), 2);

    // The control listener is never affected.
    assert_eq!(c.get(&gw.control_url("/health"), &[]).status, 200);
    let s = switches(&gw);
    assert_eq!(s["maintenance"]["enabled"], true);
    assert_eq!(s["maintenance"]["set_by"], "o");
    assert_eq!(s["maintenance"]["reason"], "cross-tenant incident");
    assert!(s["maintenance"]["set_at"].as_str().is_some());

    let r = put(&gw, "/v1/switches/maintenance", OPERATOR, r#"{"enabled":false,"reason":"fixed"}"#, None);
    assert_eq!(r.status, 200);
    assert_eq!(c.get(&gw.url("/api/orders"), &[]).status, 200);

    // switch_changed events and the gauge.
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(25), || {
        control_get(&gw, "/v1/events?type=switch_changed", VIEWER).json()["events"].as_array().map_or(0, Vec::len) == 2
    }));
    assert_eq!(metric(&gw, "portcullis_maintenance_mode"), Some(0.0));
}

#[test]
fn maintenance_ttl_ends_a_forgotten_maintenance() {
    let up = Upstream::start("app");
    let state = TempDir::new("maint-ttl");
    let gw = cfg(&up, state.path()).start();
    let r = put(&gw, "/v1/switches/maintenance", OPERATOR, r#"{"enabled":true,"ttl_seconds":1}"#, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(Client::new().get(&gw.url("/api/x"), &[]).status, 503);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || Client::new()
        .get(&gw.url("/api/x"), &[])
        .status
        == 200));
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(50), || switches(&gw)["maintenance"]["source"]
        == "expired"));
}

/// Every form that canonicalises into the killed channel's routes, and the forms the
/// canonicaliser refuses: 503 or 400, and the upstream receives nothing.
const KILLED_FORMS: &[&str] = &[
    "/api/whatsapp/messages",
    "/api/whatsapp",
    "/api//whatsapp/messages",
    "//api/whatsapp/messages",
    "/api/./whatsapp/messages",
    "/api/x/../whatsapp/messages",
    "/api/whatsapp/./messages",
    "/%61pi/whatsapp/messages",
    "/api/%77hatsapp/messages",
    "/api/%77%68%61%74%73%61%70%70/messages",
    "/API/WHATSAPP/messages",
    "/api/WhatsApp/messages",
    "/api/whatsapp%2Fmessages",
    "/api/whatsapp%2fmessages",
    "/api%2Fwhatsapp/messages",
    "/api/whatsapp;x/messages",
    "/api;/whatsapp/messages",
    "/api/whatsapp%00/messages",
    "/api/whatsapp./messages",
    "/api/whatsapp%20/messages",
    "/api/%2e/whatsapp/messages",
    "/api/%252e/whatsapp/messages",
    "/api/whatsapp%5cmessages",
    "/api/%ef%bc%8fwhatsapp/messages",
    "/api/x/%2e%2e/whatsapp/messages",
];

#[test]
fn a_killed_channel_is_unreachable_by_every_encoding_and_other_channels_stay_up() {
    let up = Upstream::start("app");
    let state = TempDir::new("kill");
    let gw = cfg(&up, state.path()).start();
    let r = put(&gw, "/v1/switches/channels/whatsapp", OPERATOR, r#"{"enabled":false,"reason":"PII spike"}"#, None);
    assert_eq!(r.status, 200, "{}", r.text());
    up.clear();
    let mut failures = Vec::new();
    for form in KILLED_FORMS {
        for req in [
            format!("GET {form} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            format!("POST {form} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"),
            format!("GET http://a{form} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        ] {
            let status =
                portcullis_tests::exchange(gw.proxy_addr(), req.as_bytes(), Duration::from_secs(5)).map(|r| r.status);
            if !matches!(status, Some(503) | Some(400)) {
                failures.push(format!("{form}: {status:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "reached past the kill switch: {failures:#?}");
    assert_eq!(
        up.count(),
        0,
        "the upstream received nothing: {:?}",
        up.requests().iter().map(|r| r.target.clone()).collect::<Vec<_>>()
    );
    let r = Client::new().get(&gw.url("/api/whatsapp/messages"), &[]);
    assert_eq!(r.json()["code"], "channel_disabled");
    assert!(r.header("retry-after").is_none());

    // Other channels and routes are untouched.
    assert_eq!(Client::new().get(&gw.url("/api/email/send"), &[]).status, 200);
    assert_eq!(Client::new().get(&gw.url("/api/orders"), &[]).status, 200);
    assert_eq!(metric(&gw, "portcullis_channel_enabled{channel=\"whatsapp\"}"), Some(0.0));
    assert_eq!(metric(&gw, "portcullis_channel_enabled{channel=\"email\"}"), Some(1.0));

    let r = put(&gw, "/v1/switches/channels/whatsapp", OPERATOR, r#"{"enabled":true}"#, None);
    assert_eq!(r.status, 200);
    assert_eq!(Client::new().get(&gw.url("/api/whatsapp/messages"), &[]).status, 200);

    let r = put(&gw, "/v1/switches/channels/telegram", OPERATOR, r#"{"enabled":false}"#, None);
    assert_eq!(r.status, 404);
    assert!(r.json()["errors"][0].as_str().unwrap().contains("whatsapp"), "lists the known channels: {}", r.text());
    let version = switches(&gw)["version"].clone();
    for unknown in ["turbo", "Rate_limit", "rate-limit", "RATE_LIMIT", "rate_limit_", "rate_limit%20"] {
        let r = put(&gw, &format!("/v1/flags/{unknown}"), OPERATOR, r#"{"enabled":false}"#, None);
        assert_eq!(r.status, 404, "{unknown}");
        let why = r.json()["errors"][0].as_str().unwrap().to_string();
        assert!(why.contains("unknown flag") && why.contains("rate_limit"), "{unknown}: {why}");
    }
    assert_eq!(switches(&gw)["version"], version, "an unknown flag changes nothing");
    assert_eq!(switches(&gw)["flags"]["rate_limit"]["enabled"], true);
    for bad in [r#"{"enabled":"no"}"#, "not json", r#"{"enabled":false,"extra":1}"#, "{}"] {
        assert_eq!(put(&gw, "/v1/switches/channels/email", OPERATOR, bad, None).status, 400, "{bad}");
    }
}

/// A channel on a host-scoped route (`hosts: [admin.test]`, `path_prefix: /`) is killed for that
/// host only; on its own host every spelling is refused, and a killed route's path cannot be
/// reached through another route of the same host either.
#[test]
fn a_host_scoped_channel_is_killed_on_its_hosts_only() {
    let up = Upstream::start("app");
    let state = TempDir::new("kill-host");
    let routes = "  - id: admin\n    hosts: [admin.test]\n    path_prefix: /\n    upstream: app\n    channel: admin\n  - id: chat\n    hosts: [\"*.test\"]\n    path_prefix: /api/chat\n    upstream: app\n    channel: chat\n  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n";
    let gw = Cfg::new(&[up.addr()]).routes(routes).state_dir(state.path()).start();
    let status = |host: &str, target: &str| {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        portcullis_tests::exchange(gw.proxy_addr(), req.as_bytes(), Duration::from_secs(5)).map(|r| r.status)
    };
    let r = put(&gw, "/v1/switches/channels/admin", OPERATOR, r#"{"enabled":false,"reason":"admin incident"}"#, None);
    assert_eq!(r.status, 200, "{}", r.text());
    up.clear();

    // The admin host: every spelling of every path is refused, nothing reaches the upstream.
    let mut failures = Vec::new();
    for host in ["admin.test", "ADMIN.test", "admin.test:8080", "admin.test.", "Admin.Test."] {
        for target in [
            "/",
            "/users",
            "/api/orders",
            "/%61pi/orders",
            "//users",
            "/x/../users",
            "/API/Chat/x",
            "/x/..%3B/users",
            "/users%2Fx",
            "/(S(x))/users",
            "http://admin.test/users",
        ] {
            let got = status(host, target);
            if !matches!(got, Some(503 | 400)) {
                failures.push(format!("{host} {target}: {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "reached the killed admin host: {failures:#?}");
    assert_eq!(up.count(), 0, "{:?}", up.requests().iter().map(|r| r.target.clone()).collect::<Vec<_>>());

    // Every other host is untouched.
    for (host, target) in [
        ("other.test", "/users"),
        ("app.example", "/"),
        ("app.example", "/api/orders"),
        ("x.admin.test", "/users"),
        ("admin.test.example", "/users"),
    ] {
        assert_eq!(status(host, target), Some(200), "{host} {target}");
    }
    assert_eq!(up.count(), 5);

    // Restore admin, kill chat (`*.test`, /api/chat). On admin.test the exact-host route outranks
    // chat, yet chat's path stays unreachable there; a host outside *.test is not chat's.
    assert_eq!(put(&gw, "/v1/switches/channels/admin", OPERATOR, r#"{"enabled":true}"#, None).status, 200);
    assert_eq!(put(&gw, "/v1/switches/channels/chat", OPERATOR, r#"{"enabled":false}"#, None).status, 200);
    up.clear();
    for (host, target) in [
        ("admin.test", "/api/chat/x"),
        ("admin.test", "/API/CHAT"),
        ("admin.test", "/api/x/../chat/x"),
        ("admin.test", "/api/%63hat/x"),
        ("x.test", "/api/chat/x"),
        ("x.test", "/Api/Chat/x"),
    ] {
        assert_eq!(status(host, target), Some(503), "{host} {target}");
    }
    assert_eq!(up.count(), 0);
    assert_eq!(status("admin.test", "/users"), Some(200));
    assert_eq!(status("app.example", "/api/chat/x"), Some(200));
    assert_eq!(up.count(), 2);
}

#[test]
fn state_survives_restart_and_kill_9_and_wins_over_the_environment() {
    let up = Upstream::start("app");
    let state = TempDir::new("persist");
    let c = cfg(&up, state.path());
    // Environment as initial state, exactly as operators set it.
    let env = [("WHATSAPP_ENABLED", "false"), ("MAINTENANCE_MODE", "false"), ("SAFE_TEST_MODE", "true")];
    let gw = c.start_env(&env);
    assert_eq!(Client::new().get(&gw.url("/api/whatsapp/x"), &[]).status, 503);
    let s = switches(&gw);
    assert_eq!(s["channels"]["whatsapp"]["source"], "environment");
    assert_eq!(s["flags"]["safe_test_mode"]["enabled"], true);

    assert_eq!(put(&gw, "/v1/switches/channels/email", OPERATOR, r#"{"enabled":false}"#, None).status, 200);
    assert_eq!(put(&gw, "/v1/switches/maintenance", OPERATOR, r#"{"enabled":true}"#, None).status, 200);
    assert_eq!(put(&gw, "/v1/flags/rate_limit", OPERATOR, r#"{"enabled":false}"#, None).status, 200);
    // kill -9: no chance to flush anything; the answer came after the fsync.
    assert!(gw.signal("KILL"));
    gw.wait_exit(Duration::from_secs(10));

    // The environment says maintenance off, email unset: the operator's changes win.
    let gw = c.start_env(&env);
    let r = Client::new().get(&gw.url("/api/email/x"), &[]);
    assert_eq!(r.status, 503, "maintenance is still on after kill -9");
    let s = switches(&gw);
    assert_eq!(s["maintenance"]["enabled"], true);
    assert_eq!(s["maintenance"]["source"], "operator");
    assert_eq!(s["channels"]["email"]["enabled"], false);
    assert_eq!(s["flags"]["rate_limit"]["enabled"], false);
    assert_eq!(put(&gw, "/v1/switches/maintenance", OPERATOR, r#"{"enabled":false}"#, None).status, 200);
    assert_eq!(Client::new().get(&gw.url("/api/email/x"), &[]).json()["code"], "channel_disabled");
    assert!(gw.signal("TERM"));
    gw.wait_exit(Duration::from_secs(20));
    let gw = c.start();
    assert_eq!(Client::new().get(&gw.url("/api/orders"), &[]).status, 200);
    assert_eq!(Client::new().get(&gw.url("/api/email/x"), &[]).status, 503, "a restart never reopens a killed channel");
}

#[test]
fn roles_concurrency_and_the_audit_trail() {
    let up = Upstream::start("app");
    let state = TempDir::new("audit");
    let gw = cfg(&up, state.path()).start();
    assert_eq!(put(&gw, "/v1/switches/maintenance", VIEWER, r#"{"enabled":true}"#, None).status, 403);
    assert_eq!(put(&gw, "/v1/switches/maintenance", "pcx_nope", r#"{"enabled":true}"#, None).status, 401);
    assert_eq!(control_get(&gw, "/v1/switches/maintenance", OPERATOR).status, 405);
    assert_eq!(Client::new().get(&gw.url("/api/x"), &[]).status, 200, "refused changes changed nothing");

    // Optimistic concurrency: two operators read version v; the second write is refused.
    let v = switches(&gw)["version"].as_u64().unwrap().to_string();
    let r = control_get(&gw, "/v1/switches", VIEWER);
    assert_eq!(r.header("etag"), Some(format!("\"{v}\"").as_str()), "the version is the ETag");
    let r = put(&gw, "/v1/switches/channels/email", OPERATOR, r#"{"enabled":false}"#, Some(&v));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = put(&gw, "/v1/switches/channels/email", ADMIN, r#"{"enabled":true}"#, Some(&v));
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["code"], "precondition_failed");
    assert_eq!(switches(&gw)["channels"]["email"]["enabled"], false, "the stale write did not land");
    let quoted = format!("\"{}\"", switches(&gw)["version"]);
    assert_eq!(put(&gw, "/v1/switches/channels/email", ADMIN, r#"{"enabled":true}"#, Some(&quoted)).status, 200);

    // The audit log has every mutation and every refusal, and its chain verifies.
    assert_eq!(control_get(&gw, "/v1/audit?limit=50", OPERATOR).status, 403);
    let r = control_get(&gw, "/v1/audit?limit=50", ADMIN);
    assert_eq!(r.status, 200, "{}", r.text());
    let records = r.json()["records"].as_array().cloned().unwrap();
    let outcomes: Vec<(String, u64)> = records
        .iter()
        .map(|r| (r["outcome"].as_str().unwrap_or("").to_string(), r["status"].as_u64().unwrap_or(0)))
        .collect();
    for status in [401, 403, 405, 412] {
        assert!(outcomes.iter().any(|(o, s)| o == "refused" && *s == status), "{status} audited: {outcomes:?}");
    }
    assert_eq!(outcomes.iter().filter(|(o, s)| o == "ok" && *s == 200).count(), 2, "{outcomes:?}");
    let text = r.text();
    assert!(!text.contains(OPERATOR) && !text.contains(ADMIN) && !text.contains("pcx_nope"), "never the token");
    assert!(records.iter().any(|r| r["actor"] == "o" && r["target"] == "channel:email"));
    let log = state.path().join("audit/audit.jsonl");
    let (code, out, _) = portcullis_tests::run_cli(BIN, &["audit", "verify", "--file", log.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn no_unaudited_change_stays_in_force() {
    let up = Upstream::start("app");
    let state = TempDir::new("audit-broken");
    let gw = cfg(&up, state.path()).start();
    assert_eq!(Client::new().get(&gw.control_url("/ready"), &[]).status, 200);
    // Someone moves the audit log away under the running gateway: the chain cannot continue.
    let log = state.path().join("audit/audit.jsonl");
    std::fs::rename(&log, state.path().join("audit/moved.jsonl")).unwrap();
    let r = put(&gw, "/v1/switches/maintenance", OPERATOR, r#"{"enabled":true,"reason":"x"}"#, None);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("nothing was changed"), "{}", r.text());
    let s = switches(&gw);
    assert_eq!(s["maintenance"]["enabled"], false, "the change never happened");
    assert_eq!(s["version"], 0, "not even the version moved");
    assert_eq!(Client::new().get(&gw.url("/api/orders"), &[]).status, 200);
    let ready = Client::new().get(&gw.control_url("/ready"), &[]);
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["audit"], false);
}
