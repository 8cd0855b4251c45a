//! Security events: emitted by the core, queryable by every filter, counted, persisted across a
//! restart, rotated, never blocking a request, never carrying a secret.
use crate::common::*;
use portcullis_tests::{wait_until, Client, TempDir, Upstream};
use std::time::Duration;

/// Blocks requests whose user agent says `evil`; flags `/api/watched` (monitor).
const RULES: &str = "version: 1\nfirewall:\n  - id: evil-agent\n    match:\n      headers:\n        user-agent: evil\n  - id: watched\n    mode: monitor\n    severity: info\n    match:\n      paths: [\"/api/watched\"]\n";

fn events(gw: &portcullis_tests::Gateway, query: &str) -> Vec<serde_json::Value> {
    let r = control_get(gw, &format!("/v1/events{query}"), VIEWER);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"].as_array().cloned().unwrap_or_default()
}

fn wait_events(gw: &portcullis_tests::Gateway, query: &str, n: usize) -> Vec<serde_json::Value> {
    wait_until(Duration::from_secs(10), Duration::from_millis(25), || events(gw, query).len() >= n);
    events(gw, query)
}

#[test]
fn events_are_queryable_by_every_filter_counted_and_survive_a_restart() {
    let up = Upstream::start("app");
    let state = TempDir::new("events-state");
    let cfg = Cfg::new(&[up.addr()]).state_dir(state.path()).rule_file("fw.yaml", RULES);
    let gw = cfg.start();
    let c = Client::new();
    for i in 0..3 {
        assert_eq!(c.get(&gw.url(&format!("/api/x{i}")), &[("user-agent", "evil")]).status, 403);
    }
    assert_eq!(c.get(&gw.url("/api/watched"), &[]).status, 200);
    let all = wait_events(&gw, "", 4);
    assert_eq!(all.len(), 4);
    // Newest first.
    assert_eq!(all[0]["path"], "/api/watched");
    assert!(all.windows(2).all(|w| w[0]["time"].as_str() >= w[1]["time"].as_str()));
    // Every contract field is present.
    for key in [
        "id",
        "time",
        "type",
        "severity",
        "mode",
        "action",
        "request_id",
        "client_ip",
        "method",
        "path",
        "route",
        "channel",
        "tenant",
        "target_tenant",
        "subject",
        "rule_id",
        "rules_version",
        "test",
        "detail",
    ] {
        assert!(all[0].get(key).is_some(), "missing {key}: {}", all[0]);
    }
    assert_eq!(all[0]["severity"], "info", "a rule may override the type's default severity");
    assert_eq!(all[1]["severity"], "warning");
    assert_eq!(all[1]["test"], false);

    assert_eq!(events(&gw, "?type=firewall_block").len(), 4);
    assert_eq!(events(&gw, "?type=FIREWALL-BLOCK").len(), 4, "the runbook's spellings are accepted");
    assert_eq!(events(&gw, "?type=auth_failure").len(), 0);
    assert_eq!(events(&gw, "?severity=warning").len(), 3);
    assert_eq!(events(&gw, "?severity=info").len(), 1);
    assert_eq!(events(&gw, "?severity=critical").len(), 0);
    assert_eq!(events(&gw, "?type=firewall_block,auth_failure&severity=warning,info").len(), 4);
    assert_eq!(events(&gw, "?hours=1").len(), 4);
    let one = events(&gw, "?limit=1");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["id"], all[0]["id"]);
    assert_eq!(events(&gw, "?tenant=12").len(), 0);
    for bad in ["?type=nonsense", "?severity=high", "?hours=0", "?limit=100000", "?colour=red", "?hours=abc"] {
        let r = control_get(&gw, &format!("/v1/events{bad}"), VIEWER);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["code"], "bad_request");
        assert!(!r.json()["errors"][0].as_str().unwrap_or("").is_empty(), "{bad}: the error says why");
    }
    assert_eq!(Client::new().get(&gw.control_url("/v1/events"), &[]).status, 401);

    // The request id ties an event to the access log and the client's response.
    let r = c.get(&gw.url("/api/y"), &[("user-agent", "evil")]);
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        events(&gw, "?limit=1")[0]["request_id"] == id.as_str()
    }));

    // Counted.
    let series = "portcullis_security_events_total{type=\"firewall_block\",severity=\"warning\",mode=\"enforce\"}";
    assert_eq!(metric(&gw, series), Some(4.0));
    assert_eq!(
        metric(&gw, "portcullis_security_events_total{type=\"firewall_block\",severity=\"info\",mode=\"monitor\"}"),
        Some(1.0)
    );

    // Summary and top threats.
    let s = control_get(&gw, "/v1/summary?hours=24", VIEWER).json();
    assert_eq!(s["events"]["by_type"]["firewall_block"], 5, "{s}");
    assert_eq!(s["events"]["by_severity"]["warning"], 4, "{s}");
    assert_eq!(s["events"]["by_type"]["cross_tenant_attempt"], 0, "every type is listed");
    assert!(s["requests"]["total"].as_u64().unwrap() >= 5, "{s}");
    let score = s["health_score"].as_u64().unwrap();
    assert!(score < 100 && score > 50, "four warnings lower the score: {s}");
    assert_eq!(control_get(&gw, "/v1/summary?limit=3", VIEWER).status, 400, "summary takes hours only");
    let t = control_get(&gw, "/v1/top-threats?hours=24&limit=5", VIEWER).json();
    assert_eq!(t["client_ips"][0]["ip"], "127.0.0.1", "{t}");
    assert_eq!(t["client_ips"][0]["events"], 5, "{t}");
    assert_eq!(t["client_ips"][0]["types"]["firewall_block"], 5, "{t}");

    // Restart on the same state dir: the events are still there.
    let before: Vec<serde_json::Value> = events(&gw, "?limit=1000");
    assert!(gw.signal("TERM"));
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some());
    let gw2 = cfg.start();
    let after = events(&gw2, "?limit=1000");
    assert_eq!(after.len(), before.len(), "every event survives the restart");
    assert_eq!(after[0]["id"], before[0]["id"]);
    let s = control_get(&gw2, "/v1/summary", VIEWER).json();
    assert_eq!(s["events"]["by_type"]["firewall_block"], 5, "{s}");
    let file = std::fs::read_to_string(state.path().join("events/events.jsonl")).unwrap();
    assert_eq!(file.lines().count(), 5);
}

#[test]
fn safe_test_needs_the_flag_and_goes_through_every_sink() {
    let up = Upstream::start("app");
    let cfg = Cfg::new(&[up.addr()]);
    let gw = cfg.start();
    let r = control_post(&gw, "/v1/safe-test/auth_failure", OPERATOR);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["code"], "conflict");
    assert!(events(&gw, "").is_empty());
    drop(gw);

    let gw = cfg.start_env(&[("SAFE_TEST_MODE", "true")]);
    assert_eq!(control_post(&gw, "/v1/safe-test/auth_failure", VIEWER).status, 403);
    assert_eq!(control_get(&gw, "/v1/safe-test/auth_failure", OPERATOR).status, 405);
    let r = control_post(&gw, "/v1/safe-test/nonsense", OPERATOR);
    assert_eq!(r.status, 400);
    assert!(r.json()["errors"][0].as_str().unwrap().contains("cross_tenant_attempt"), "lists the known types");
    // The runbook's spelling.
    let r = control_post(&gw, "/v1/safe-test/auth-failure", OPERATOR);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["event"]["id"].as_str().unwrap().to_string();
    // Queryable as soon as the answer arrives.
    let ev = events(&gw, "?type=auth_failure");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["id"], id.as_str());
    assert_eq!(ev[0]["test"], true);
    assert_eq!(ev[0]["severity"], "warning");
    // Through every sink: the JSON log, the file, the counter.
    assert!(gw.wait_for_log(|l| l.contains(&id) && l.contains("\"alert\""), Duration::from_secs(5)), "{}", gw.output());
    let file = std::fs::read_to_string(gw.dir().join("state/events/events.jsonl")).unwrap();
    assert!(file.contains(&id));
    assert_eq!(
        metric(&gw, "portcullis_security_events_total{type=\"auth_failure\",severity=\"warning\",mode=\"enforce\"}"),
        Some(1.0)
    );
    // A test event does not lower the health score.
    let s = control_get(&gw, "/v1/summary", VIEWER).json();
    assert_eq!(s["health_score"], 100, "{s}");
    let r = control_post(&gw, "/v1/safe-test/cross_tenant_attempt", OPERATOR);
    assert_eq!(r.json()["event"]["severity"], "critical");
}

#[test]
fn events_never_contain_tokens_secrets_or_query_strings() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).rule_file("fw.yaml", RULES).start();
    let secrets = ["sk_live_SECRETBEARER", "SECRETCOOKIE42", "SECRETQUERY77", "SECRETAPIKEY99", "SECRETBASIC55"];
    let r = Client::new().get(
        &gw.url(&format!("/api/orders?token={}&x=1", secrets[2])),
        &[
            ("user-agent", "evil"),
            ("authorization", &format!("Bearer {}", secrets[0])),
            ("cookie", &format!("session={}", secrets[1])),
            ("x-api-key", secrets[3]),
            ("proxy-authorization", &format!("Basic {}", secrets[4])),
        ],
    );
    assert_eq!(r.status, 403);
    let ev = wait_events(&gw, "", 1);
    assert_eq!(ev[0]["path"], "/api/orders", "the path, never the query string");
    gw.wait_for_log(|l| l.contains("\"alert\""), Duration::from_secs(5));
    let api = control_get(&gw, "/v1/events", VIEWER).text();
    let file = std::fs::read_to_string(gw.dir().join("state/events/events.jsonl")).unwrap();
    let logs = gw.output();
    for s in secrets {
        assert!(!api.contains(s), "{s} in the API: {api}");
        assert!(!file.contains(s), "{s} in the event file");
        assert!(!logs.contains(s), "{s} in the logs");
    }
    assert!(!logs.contains(VIEWER) && !logs.contains(OPERATOR));
}

#[test]
fn a_stuck_sink_drops_and_counts_and_requests_do_not_wait() {
    let up = Upstream::start("app");
    let state = TempDir::new("stuck-sink");
    std::fs::create_dir_all(state.path().join("events")).unwrap();
    // The file sink's target is a FIFO nobody reads: its writer blocks forever, like a hung disk.
    let fifo = state.path().join("events/events.jsonl");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let gw = Cfg::new(&[up.addr()])
        .state_dir(state.path())
        .rule_file("fw.yaml", RULES)
        .extra("events:\n  queue_capacity: 4\n")
        .start();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/api/flood");
            std::thread::spawn(move || {
                let c = Client::new();
                (0..50).filter(|_| c.get(&url, &[("user-agent", "evil")]).status == 403).count()
            })
        })
        .collect();
    let denied: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(denied, 200, "every request was answered while the sink hung");
    assert_eq!(Client::new().get(&gw.url("/api/fine"), &[]).status, 200);
    let dropped = metric(&gw, "portcullis_events_dropped_total{sink=\"file\"}").unwrap_or(0.0);
    assert!(dropped > 0.0, "drops are counted: {dropped}");
    // The other sinks keep working: the index still answers queries.
    assert!(!wait_events(&gw, "?limit=1", 1).is_empty());
    assert_eq!(
        metric(&gw, "portcullis_security_events_total{type=\"firewall_block\",severity=\"warning\",mode=\"enforce\"}"),
        Some(200.0),
        "the counter counts every event, dropped by a sink or not"
    );
    // Unblock the writer so the gateway can shut down cleanly.
    let _reader = std::fs::File::open(&fifo);
}

#[test]
fn rotation_keeps_the_configured_retention_and_the_newest_events() {
    let up = Upstream::start("app");
    let state = TempDir::new("rotation");
    let cfg = Cfg::new(&[up.addr()])
        .state_dir(state.path())
        .rule_file("fw.yaml", RULES)
        .extra("events:\n  max_file_bytes: 4096\n  max_files: 2\n");
    let gw = cfg.start();
    let c = Client::new();
    for i in 0..60 {
        c.get(&gw.url(&format!("/api/r{i}")), &[("user-agent", "evil")]);
    }
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
        events(&gw, "?limit=1").first().is_some_and(|e| e["path"] == "/api/r59")
    }));
    // SIGTERM drains the sinks before exit.
    assert!(gw.signal("TERM"));
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some());
    let dir = state.path().join("events");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["events.jsonl", "events.jsonl.1", "events.jsonl.2"], "retention: current + 2");
    for n in &names {
        assert!(std::fs::metadata(dir.join(n)).unwrap().len() <= 4096, "{n} over the size cap");
    }
    let gw = cfg.start();
    let ev = events(&gw, "?limit=1000");
    assert!(!ev.is_empty() && ev.len() < 60, "older events rotated out: {}", ev.len());
    assert_eq!(ev[0]["path"], "/api/r59", "the newest event survives rotation and restart");
}
