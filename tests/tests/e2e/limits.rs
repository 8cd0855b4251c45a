//! Rate limits and quotas through the real gateway: a limit holds to within one request of its
//! rate over a measured window, per key type (client IP, tenant, header); 429 with `Retry-After`
//! and the IETF headers, nothing upstream; one event per key and window; the flag and monitor
//! mode; reload keeps an unchanged rule's state and resets a changed one; a flood of distinct
//! keys stays under the cap. Quotas count, warn at thresholds, enforce with 402 once the flag is
//! on, reset by hand (audited), and survive a restart.
use crate::common::*;
use crate::identity::{self, claims, events, get, rs256, start, wait_events};
use portcullis_tests::{Client, Upstream};
use std::time::{Duration, Instant};

fn flag(gw: &portcullis_tests::Gateway, name: &str, on: bool) {
    let auth = bearer(OPERATOR);
    let body = format!(r#"{{"enabled":{on},"reason":"e2e"}}"#);
    let r = Client::new().request(
        "PUT",
        &gw.control_url(&format!("/v1/flags/{name}")),
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

const LIMITS: &str = r#"rate_limits:
  - id: per-client
    routes: [default]
    key: [client_ip]
    rate: 5/1s
  - id: per-tenant
    routes: [business]
    key: [tenant]
    rate: 3/10s
  - id: per-header
    routes: [api]
    key: ["header:x-client"]
    rate: 2/10s
    max_keys: 500
  - id: watch
    mode: monitor
    routes: [api]
    key: [client_ip]
    rate: 1/10s
"#;

#[test]
fn limits_hold_per_key_with_headers_events_flag_and_monitor() {
    let up = Upstream::start("app");
    let gw = start(&identity::cfg(&up, LIMITS));
    let c = Client::new();

    // Client IP, 5/s: the burst passes with the draft headers, the next is refused.
    for i in 0..5 {
        let r = c.get(&gw.url("/x"), &[]);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("ratelimit-policy"), Some(r#""per-client";q=5;w=1"#));
        assert!(r.header("ratelimit").is_some_and(|v| v.starts_with(r#""per-client";r="#)), "{:?}", r.headers);
    }
    let before = up.count();
    let r = c.get(&gw.url("/x"), &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["code"], "rate_limited");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("ratelimit-policy"), Some(r#""per-client";q=5;w=1"#));
    assert!(r.header("ratelimit").is_some_and(|v| v.contains(";r=0")));
    assert_eq!(up.count(), before, "a refused request never reaches the upstream");

    // Over a measured window a limit lets through at most burst + rate × elapsed (+1 for the
    // request in flight at the edge), and close to that.
    std::thread::sleep(Duration::from_millis(1100));
    let start_at = Instant::now();
    let mut passed = 0u64;
    while start_at.elapsed() < Duration::from_secs(3) {
        if c.get(&gw.url("/y"), &[]).status == 200 {
            passed += 1;
        }
    }
    let elapsed = start_at.elapsed().as_secs_f64();
    let allowed = 5.0 + 5.0 * elapsed;
    assert!((passed as f64) <= allowed + 1.0, "passed {passed} in {elapsed:.2}s, allowed {allowed:.1}");
    assert!((passed as f64) >= allowed - 2.0, "passed {passed} in {elapsed:.2}s, allowed {allowed:.1}");

    // Tenant: tenants 12 and 73 have a bucket each.
    let t12 = rs256(claims("user-9", "12"));
    let t73 = rs256(claims("user-40", "73"));
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api/business/orders", &t12).status, 200);
    }
    assert_eq!(get(&gw, "/api/business/orders", &t12).status, 429);
    assert_eq!(get(&gw, "/api/business/orders", &t73).status, 200, "another tenant's bucket");
    // A bad token on a limited route is refused by identity, and still counted by the limit
    // keyed by tenant, as anonymous (per address): a credential guesser is limited too.
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.get(&gw.url("/api/business/orders"), &[("authorization", "Bearer nope")]).status);
    }
    assert_eq!(codes, [401, 401, 401, 429]);

    // Header key: each client id its own bucket; an absent header falls back to the address.
    let h =
        |id: &str| c.get(&gw.url("/api/orders"), &[("authorization", &identity::auth(&t12)), ("x-client", id)]).status;
    assert_eq!((h("a"), h("a"), h("a")), (200, 200, 429));
    assert_eq!(h("b"), 200);

    // Events: one per key per window, not one per refusal.
    for _ in 0..5 {
        assert_eq!(h("a"), 429);
    }
    let ev = wait_events(&gw, "type=rate_limit_hit&limit=100", 3);
    std::thread::sleep(Duration::from_millis(300));
    let ev_now = events(&gw, "type=rate_limit_hit&limit=100");
    assert_eq!(ev.len(), ev_now.len());
    let blocked: Vec<_> = ev_now.iter().filter(|e| e["action"] == "blocked").collect();
    let keys: Vec<&str> = blocked.iter().map(|e| e["detail"]["key"].as_str().unwrap()).collect();
    assert!(keys.iter().filter(|k| k.starts_with("header:x-client=")).count() == 1, "{keys:?}");
    assert!(keys.contains(&"tenant=12"), "{keys:?}");
    assert!(!ev_now.to_vec().iter().any(|e| e.to_string().contains("Bearer")), "no credential in events");
    // The monitor rule (1/10s per address on `api`) flagged without refusing anything.
    assert!(ev_now.iter().any(|e| e["rule_id"] == "watch" && e["action"] == "flagged"), "{ev_now:?}");

    // The runtime flag off: nothing is refused; on again: limits apply again.
    flag(&gw, "rate_limit", false);
    for _ in 0..10 {
        assert_eq!(c.get(&gw.url("/z"), &[]).status, 200);
    }
    flag(&gw, "rate_limit", true);
    let statuses: Vec<u16> = (0..8).map(|_| c.get(&gw.url("/z"), &[]).status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[test]
fn reload_keeps_unchanged_limits_resets_changed_ones_and_a_key_flood_stays_under_the_cap() {
    let up = Upstream::start("app");
    let rules = |rate: &str| {
        format!("rate_limits:\n  - id: slow\n    routes: [default]\n    key: [client_ip]\n    rate: {rate}\n  - id: flood\n    routes: [api]\n    key: [\"header:x-client\"]\n    rate: 1/1h\n    max_keys: 500\n")
    };
    let gw = start(&identity::cfg(&up, &rules("2/1h")));
    let c = Client::new();
    assert_eq!((c.get(&gw.url("/a"), &[]).status, c.get(&gw.url("/a"), &[]).status), (200, 200));
    assert_eq!(c.get(&gw.url("/a"), &[]).status, 429);

    let reload = || {
        let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
        assert_eq!(r.status, 200, "{}", r.text());
    };
    // An unrelated change (a comment in the file): the unchanged rule keeps its state.
    let path = gw.dir().join("rules/identity.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    write_atomic(&path, &format!("{text}\n# touched\n"));
    reload();
    assert_eq!(c.get(&gw.url("/a"), &[]).status, 429, "unchanged rule: still limited");
    // The rule changed: it starts empty.
    write_atomic(&path, &text.replace("rate: 2/1h", "rate: 3/1h"));
    reload();
    assert_eq!(c.get(&gw.url("/a"), &[]).status, 200, "changed rule: fresh state");

    // 3000 distinct client ids against a 500-key cap: memory stays bounded.
    let token = rs256(claims("user-9", "12"));
    let auth = identity::auth(&token);
    for i in 0..3000 {
        let id = format!("client-{i}");
        let r = c.get(&gw.url("/api/orders"), &[("authorization", &auth), ("x-client", &id)]);
        assert_eq!(r.status, 200, "a new key always gets its first request");
    }
    let keys = metric(&gw, "portcullis_rate_limit_keys").unwrap();
    // The cap rounds up to whole 8-key buckets (504), plus the other rule's one key.
    assert!(keys <= 504.0 + 1.0, "keys held: {keys}");
    let bytes = metric(&gw, "portcullis_rate_limit_bytes").unwrap();
    assert!(bytes < 200.0 * 1000.0, "limiter bytes: {bytes}");
}

const QUOTAS: &str = r#"quotas:
  - id: daily-business
    routes: [business]
    per: tenant
    limit: 5
    period: day
    thresholds: [60, 100]
"#;

#[test]
fn quotas_count_warn_enforce_reset_and_survive_a_restart() {
    let up = Upstream::start("app");
    let state = portcullis_tests::TempDir::new("quota-state");
    let cfg = identity::cfg(&up, QUOTAS).state_dir(state.path());
    let gw = start(&cfg);
    let t12 = rs256(claims("user-9", "12"));

    // Enforcement off (the default, the runbook's pilot): everything passes, thresholds warn.
    for _ in 0..7 {
        assert_eq!(get(&gw, "/api/business/orders", &t12).status, 200);
    }
    let usage = control_get(&gw, "/v1/quotas/12", VIEWER).json();
    assert_eq!(usage["enforcement"], false);
    assert_eq!(usage["quotas"][0]["used"], 7);
    assert_eq!(usage["quotas"][0]["limit"], 5);
    let ev = wait_events(&gw, "type=quota_exceeded", 2);
    let mut thresholds: Vec<u64> = ev.iter().map(|e| e["detail"]["threshold"].as_u64().unwrap()).collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, [60, 100]);
    assert!(ev.iter().all(|e| e["action"] == "flagged" && e["tenant"] == "12"));

    // Enforcement on: 402 with the reset time, nothing upstream; another tenant is unaffected.
    flag(&gw, "quota_enforcement", true);
    let before = up.count();
    let r = get(&gw, "/api/business/orders", &t12);
    assert_eq!(r.status, 402, "{}", r.text());
    assert_eq!(r.json()["code"], "quota_exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry));
    assert_eq!(up.count(), before);
    assert_eq!(get(&gw, "/api/business/orders", &rs256(claims("user-40", "73"))).status, 200);

    // Reset by hand: operator only, audited, then requests pass again.
    let c = Client::new();
    let url = gw.control_url("/v1/quotas/12/reset");
    assert_eq!(c.post(&url, &[("authorization", &bearer(VIEWER))], "").status, 403);
    let r = c.post(&url, &[("authorization", &bearer(OPERATOR))], r#"{"reason":"contract upgraded"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["old"][0]["used"], 7);
    assert_eq!(get(&gw, "/api/business/orders", &t12).status, 200);
    let audit = control_get(&gw, "/v1/audit?limit=10", ADMIN).json();
    assert!(
        audit["records"].as_array().unwrap().iter().any(|a| a["action"] == "quota.reset" && a["target"] == "quota:12"),
        "{audit}"
    );

    // Counted, then a graceful restart: the count is still there.
    assert_eq!(get(&gw, "/api/business/orders", &t12).status, 200);
    assert!(gw.signal("TERM"));
    gw.wait_exit(Duration::from_secs(15)).expect("exits");
    let file = std::fs::read_to_string(state.path().join("quotas.json")).unwrap();
    assert!(file.contains("daily-business"), "{file}");
    let gw = start(&cfg);
    let usage = control_get(&gw, "/v1/quotas/12", VIEWER).json();
    assert_eq!(usage["quotas"][0]["used"], 2, "{usage}");
    // The flag itself is persisted too: still enforcing after the restart.
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api/business/orders", &t12).status, 200);
    }
    assert_eq!(get(&gw, "/api/business/orders", &t12).status, 402);
}

#[test]
fn a_quota_reset_on_a_full_disk_is_refused_and_the_count_is_kept() {
    let up = Upstream::start("app");
    let base = portcullis_tests::TempDir::new("quota-full");
    let state = base.path().join("state");
    let Some(fs) = crate::state_model::TinyFs::mount(&state, "512k") else {
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    };
    let cfg = identity::cfg(&up, QUOTAS).state_dir(&state);
    let gw = start(&cfg);
    let t12 = rs256(claims("user-9", "12"));
    for _ in 0..7 {
        assert_eq!(get(&gw, "/api/business/orders", &t12).status, 200);
    }
    // The counters reach the disk (written once a second when they changed).
    assert!(portcullis_tests::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        std::fs::read_to_string(state.join("quotas.json")).is_ok_and(|t| t.contains("\"used\":7"))
    }));
    fs.fill();
    // Use up the slack of the audit file's last page: changes are refused once no record fits.
    let auth = bearer(OPERATOR);
    let reason = "r".repeat(400);
    let refused = (0..30).any(|i| {
        let body = format!(r#"{{"enabled":{},"reason":"{reason}"}}"#, i % 2 == 0);
        let r = Client::new().request(
            "PUT",
            &gw.control_url("/v1/flags/safe_test_mode"),
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        r.status == 500
    });
    assert!(refused, "the full disk never refused a change");
    let url = gw.control_url("/v1/quotas/12/reset");
    for _ in 0..3 {
        let r = Client::new().post(&url, &[("authorization", &auth)], format!(r#"{{"reason":"{reason}"}}"#));
        assert_eq!(r.status, 500, "a reset that cannot be recorded is refused: {}", r.text());
        assert!(r.text().contains("nothing was changed"), "{}", r.text());
        assert_eq!(control_get(&gw, "/v1/quotas/12", VIEWER).json()["quotas"][0]["used"], 7, "the count is kept");
    }
    fs.unfill();
    // After a crash and a restart: still the old count (nothing was reset, nothing to replay).
    assert!(gw.signal("KILL"));
    gw.wait_exit(Duration::from_secs(10));
    let gw = start(&cfg);
    assert_eq!(control_get(&gw, "/v1/quotas/12", VIEWER).json()["quotas"][0]["used"], 7);
    let url = gw.control_url("/v1/quotas/12/reset");
    let r = Client::new().post(&url, &[("authorization", &auth)], "");
    assert_eq!(r.status, 200, "with space again the reset goes through: {}", r.text());
    assert_eq!(control_get(&gw, "/v1/quotas/12", VIEWER).json()["quotas"][0]["used"], 0);
    // Recorded and written before the answer: a kill -9 right after it keeps the reset.
    assert!(gw.signal("KILL"));
    gw.wait_exit(Duration::from_secs(10));
    let gw = start(&cfg);
    assert_eq!(control_get(&gw, "/v1/quotas/12", VIEWER).json()["quotas"][0]["used"], 0);
    drop(gw);
    drop(fs);
}
