//! Anomaly zones (issue 23): a JWT session walking `/api/rto/{id}` in order goes amber (delayed,
//! still forwarded, `anomaly_amber`), then red (its session revoked through the audited path,
//! 401 `session_expired` as any revoked session, `anomaly_red`, nothing more at the upstream),
//! while another session from the same address and user-agent browsing normally is neither
//! delayed nor refused. Monitor mode changes nothing on the wire; an exempt subject is never
//! scored; malformed rules are refused with FILE:LINE errors.
use crate::common::*;
use crate::identity::{cfg, claims, get, rs256, start, wait_events};
use portcullis_tests::{Gateway, Upstream};
use std::time::{Duration, Instant};

const DELAY_MS: u64 = 600;

fn rules(mode: &str) -> String {
    format!(
        "version: 1\nanomaly:\n  - id: rto-enum\n    mode: {mode}\n    key: session\n    routes: [api]\n    features:\n      sequential: {{ weight: 3, window: 1m, min_run: 3 }}\n      velocity: {{ weight: 3, window: 1m, max_requests: 8 }}\n    amber: 3\n    red: 6\n    amber_delay_ms: {DELAY_MS}\n    exempt: {{ subjects: [svc-report] }}\n"
    )
}

fn gateway(up: &Upstream, mode: &str) -> Gateway {
    start(&cfg(up, "").rule_file("anomaly.yaml", &rules(mode)))
}

fn token(sub: &str, sid: &str) -> String {
    let mut c = claims(sub, "12");
    c["sid"] = sid.into();
    rs256(c)
}

/// One request; its status and how long it took.
fn timed(gw: &Gateway, path: &str, tok: &str) -> (u16, Duration) {
    let t = Instant::now();
    let r = get(gw, path, tok);
    (r.status, t.elapsed())
}

#[test]
fn an_enumerating_session_goes_amber_then_red_and_a_normal_session_is_untouched() {
    let up = Upstream::start("app");
    let gw = gateway(&up, "enforce");
    let walker = token("user-9", "sess-walk");
    let other = token("user-9", "sess-browse");

    // Green: three ids in order (two steps) are not an enumeration yet.
    for id in 1001..=1003 {
        let (s, t) = timed(&gw, &format!("/api/rto/{id}"), &walker);
        assert_eq!(s, 200);
        assert!(t < Duration::from_millis(DELAY_MS / 2), "green was delayed: {t:?}");
    }
    // Amber: the third step. Delayed, still forwarded.
    for id in 1004..=1008 {
        let (s, t) = timed(&gw, &format!("/api/rto/{id}"), &walker);
        assert_eq!(s, 200, "amber still passes");
        assert!(t >= Duration::from_millis(DELAY_MS), "amber was not delayed: {t:?}");
        assert_eq!(up.requests_to(&format!("/api/rto/{id}")).len(), 1, "the upstream got {id}");
    }
    // Another session of the same user, address and user-agent, browsing normally meanwhile.
    for p in ["/api/orders", "/api/profile", "/api/orders/77", "/api/invoices"] {
        let (s, t) = timed(&gw, p, &other);
        assert_eq!(s, 200);
        assert!(t < Duration::from_millis(DELAY_MS / 2), "{p} of the other session was delayed: {t:?}");
    }
    let amber = wait_events(&gw, "type=anomaly_amber", 5);
    let ev = &amber[0];
    assert_eq!((ev["action"].as_str(), ev["rule_id"].as_str()), (Some("flagged"), Some("rto-enum")), "{ev}");
    assert_eq!(ev["detail"]["zone"], "amber", "{ev}");
    assert_eq!(ev["detail"]["key"], "session", "{ev}");
    assert_eq!(ev["detail"]["delay_ms"], DELAY_MS, "{ev}");
    assert!(ev["detail"]["features"]["sequential"].as_f64() >= Some(3.0), "{ev}");
    assert!(amber.iter().all(|e| e["detail"]["session"] == "sess-walk"), "only the walker: {amber:?}");
    assert!(!ev.to_string().contains(&walker), "never the token");

    // Red: the ninth request in the minute adds velocity. Answered as a revoked session.
    up.clear();
    let r = get(&gw, "/api/rto/1009", &walker);
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("session_expired")), "{}", r.text());
    let red = wait_events(&gw, "type=anomaly_red", 1);
    let ev = &red[0];
    assert_eq!((ev["severity"].as_str(), ev["action"].as_str()), (Some("critical"), Some("blocked")), "{ev}");
    assert_eq!(ev["detail"]["action"], "session_revoked", "{ev}");
    assert_eq!(ev["detail"]["score"], 6, "{ev}");
    assert_eq!(ev["detail"]["session"], "sess-walk", "{ev}");
    let audit = control_get(&gw, "/v1/audit?action=session.revoke", ADMIN).json();
    let rec = &audit["records"][0];
    assert_eq!(rec["actor"], "anomaly:rto-enum", "{audit}");
    assert_eq!(rec["target"], "session:sess-walk", "{audit}");
    assert_eq!(rec["outcome"], "ok", "{audit}");
    // The session stays revoked, on any path; the upstream saw nothing after red.
    for p in ["/api/rto/1010", "/api/orders"] {
        let r = get(&gw, p, &walker);
        assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("session_expired")), "{p}");
    }
    assert_eq!(up.count(), 0, "the upstream saw a request after red: {:?}", up.requests());
    // The other session is served as before.
    assert_eq!(get(&gw, "/api/orders", &other).status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(metric(&gw, "portcullis_anomaly_total{rule=\"rto-enum\",zone=\"amber\"}"), Some(5.0));
    assert_eq!(metric(&gw, "portcullis_anomaly_total{rule=\"rto-enum\",zone=\"red\"}"), Some(1.0));
    // The operator restores the session (a false positive): it works again.
    let auth = bearer(OPERATOR);
    let r = portcullis_tests::Client::new().request(
        "DELETE",
        &gw.control_url("/v1/sessions/sess-walk/revoke"),
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        Some(br#"{"reason":"false positive"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&gw, "/api/rto/1", &walker).status, 200, "restored, scored from nothing");
}

#[test]
fn monitor_mode_changes_nothing_on_the_wire_and_an_exempt_subject_is_never_scored() {
    let up = Upstream::start("app");
    let gw = gateway(&up, "monitor");
    let walker = token("user-9", "sess-walk");
    for id in 2001..=2012 {
        let (s, t) = timed(&gw, &format!("/api/rto/{id}"), &walker);
        assert_eq!(s, 200, "monitor never refuses");
        assert!(t < Duration::from_millis(DELAY_MS / 2), "monitor never delays: {t:?}");
    }
    assert_eq!(up.requests_to("/api/rto/").len(), 12, "every request reached the upstream");
    let red = wait_events(&gw, "type=anomaly_red", 1);
    assert_eq!((red[0]["mode"].as_str(), red[0]["action"].as_str()), (Some("monitor"), Some("flagged")));
    assert_eq!(red[0]["detail"]["action"], "none");
    let amber = wait_events(&gw, "type=anomaly_amber", 1);
    assert_eq!(amber[0]["detail"]["delay_ms"], 0);
    let audit = control_get(&gw, "/v1/audit?action=session.revoke", ADMIN).json();
    assert_eq!(audit["records"].as_array().map(Vec::len), Some(0), "{audit}");

    // An exempt service account walking ids on an enforcing rule: never scored.
    let up = Upstream::start("app");
    let gw = gateway(&up, "enforce");
    let svc = token("svc-report", "sess-svc");
    for id in 1..=15 {
        let (s, t) = timed(&gw, &format!("/api/rto/{id}"), &svc);
        assert_eq!(s, 200);
        assert!(t < Duration::from_millis(DELAY_MS / 2), "an exempt subject was delayed: {t:?}");
    }
    assert_eq!(up.requests_to("/api/rto/").len(), 15);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(crate::identity::events(&gw, "type=anomaly_amber").len(), 0);
    assert_eq!(metric(&gw, "portcullis_anomaly_total{rule=\"rto-enum\",zone=\"amber\"}"), None);
}

#[test]
fn malformed_anomaly_rules_are_refused_with_file_and_line() {
    let up = Upstream::start("app");
    let gw = gateway(&up, "enforce");
    std::fs::write(
        gw.dir().join("rules/anomaly.yaml"),
        "version: 1\nanomaly:\n  - id: bad\n    key: session\n    features:\n      sequential: { weight: 3, window: 3h, min_run: 1 }\n      timing: { weight: 1, intervals: 8, max_cv: 2 }\n    amber: 4\n    red: 2\n    amber_delay_ms: 99999\n",
    )
    .unwrap();
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.status, 422, "{}", r.text());
    let errors: Vec<String> =
        r.json()["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap_or("").to_string()).collect();
    for want in [
        "anomaly.yaml:6: anomaly[0].features.sequential.window",
        "anomaly.yaml:6: anomaly[0].features.sequential.min_run",
        "anomaly.yaml:7: anomaly[0].features.timing.max_cv",
        "anomaly.yaml:9: anomaly[0].red",
        "anomaly.yaml:10: anomaly[0].amber_delay_ms",
    ] {
        assert!(errors.iter().any(|e| e.contains(want)), "{want} missing: {errors:?}");
    }
    // The running rules stay: the walk is still scored.
    let walker = token("user-9", "sess-x");
    for id in 1..=3 {
        assert_eq!(get(&gw, &format!("/api/rto/{id}"), &walker).status, 200);
    }
    let (_, t) = timed(&gw, "/api/rto/4", &walker);
    assert!(t >= Duration::from_millis(DELAY_MS), "the old rule no longer runs: {t:?}");
}

#[test]
fn a_subject_rule_blocks_the_subject_on_red_and_an_address_rule_scores_auth_failure_streaks() {
    let up = Upstream::start("app");
    let rules = format!(
        "version: 1\nanomaly:\n  - id: wide\n    key: subject\n    routes: [api]\n    features:\n      breadth: {{ weight: 5, window: 1m, max_groups: 4 }}\n    amber: 4\n    red: 5\n  - id: stuffing\n    key: address\n    routes: [api]\n    features:\n      auth_failures: {{ weight: 2, streak: 3 }}\n    amber: 2\n    red: 50\n    amber_delay_ms: {DELAY_MS}\n"
    );
    let gw = start(&cfg(&up, "").rule_file("anomaly.yaml", &rules));

    // An address whose last three answers were 401 gets in with a valid token: amber (delayed).
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api/orders", "not-a-token").status, 401);
    }
    let carol = token("carol", "sess-c1");
    let (s, t) = timed(&gw, "/api/orders", &carol);
    assert_eq!(s, 200);
    assert!(t >= Duration::from_millis(DELAY_MS), "the streak was not scored: {t:?}");
    let amber = wait_events(&gw, "type=anomaly_amber", 1);
    assert_eq!(amber[0]["rule_id"], "stuffing");
    assert_eq!(amber[0]["detail"]["features"]["auth_failures"], 3.0, "{}", amber[0]);
    // A 200 ends the streak.
    let (_, t) = timed(&gw, "/api/orders", &carol);
    assert!(t < Duration::from_millis(DELAY_MS / 2), "{t:?}");

    // One subject reaching into five endpoint groups (across two sessions) goes red: the
    // subject is blocked, every session of it refused, nothing more reaches the upstream.
    let (a, b) = (token("dave", "sess-d1"), token("dave", "sess-d2"));
    for p in ["/api/a", "/api/b", "/api/c"] {
        assert_eq!(get(&gw, p, &a).status, 200);
    }
    assert_eq!(get(&gw, "/api/d", &b).status, 200);
    up.clear();
    let r = get(&gw, "/api/e", &b);
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("session_expired")));
    let red = wait_events(&gw, "type=anomaly_red", 1);
    assert_eq!(
        (red[0]["detail"]["action"].as_str(), red[0]["subject"].as_str()),
        (Some("subject_blocked"), Some("dave"))
    );
    let audit = control_get(&gw, "/v1/audit?action=subject.block", ADMIN).json();
    assert_eq!(audit["records"][0]["actor"], "anomaly:wide", "{audit}");
    assert_eq!(get(&gw, "/api/a", &a).status, 401, "the other session of the subject");
    assert_eq!(get(&gw, "/api/a", &token("dave", "sess-d3")).status, 401, "a new session");
    assert_eq!(up.count(), 0);
    assert_eq!(get(&gw, "/api/a", &carol).status, 200, "another subject is served");
}
