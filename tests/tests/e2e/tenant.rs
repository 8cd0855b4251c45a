//! Tenant scope through the real gateway: the tenant matrix, every encoding of a foreign tenant
//! in the path refused with nothing at the upstream, the JSON body variant forwarded byte for
//! byte when it passes, monitor mode, unicode tenant ids, and automatic containment.
use crate::common::*;
use crate::identity::{self, auth, claims, get, rs256, start, wait_events};
use portcullis_tests::{parse_response, raw_exchange, Client, RawConn, TempDir, Upstream};
use serde_json::json;
use std::time::Duration;

const TENANT_RULE: &str = r#"tenant_scope:
  - id: tenant-in-path
    target:
      path: "/api/business/{tenant}"
      query: tenant_id
      body: /tenant_id
    cross_tenant_roles: [platform_admin]
"#;

fn admin_claims() -> serde_json::Value {
    let mut c = claims("root", "1");
    c["roles"] = json!(["platform_admin"]);
    c
}

#[test]
fn the_tenant_matrix() {
    let up = Upstream::start("app");
    let gw = start(&identity::cfg(&up, TENANT_RULE));
    let mine = rs256(claims("user-9", "12"));
    let c = Client::new();

    // Own tenant passes, in the path, the query, or both agreeing.
    assert_eq!(get(&gw, "/api/business/12/orders", &mine).status, 200);
    assert_eq!(get(&gw, "/api/business/12/orders?tenant_id=12", &mine).status, 200);
    assert_eq!(get(&gw, "/api/business/12", &mine).status, 200);
    // Not a tenant-scoped request at all.
    assert_eq!(get(&gw, "/api/orders", &mine).status, 200);
    let passed = up.count();

    // Another tenant: 403, critical event, nothing upstream.
    let r = get(&gw, "/api/business/73/orders", &mine);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "tenant_mismatch");
    assert_eq!(get(&gw, "/api/orders?tenant_id=73", &mine).status, 403);
    // Ambiguous: path and query disagree; query given twice.
    assert_eq!(get(&gw, "/api/business/12/orders?tenant_id=73", &mine).status, 403);
    assert_eq!(get(&gw, "/api/orders?tenant_id=12&tenant_id=73", &mine).status, 403);
    assert_eq!(get(&gw, "/api/orders?tenant_id=%zz", &mine).status, 403);
    // An identity without a tenant, and no identity at all (a route without an identity rule).
    let no_tenant = rs256({
        let mut c = claims("svc", "x");
        c.as_object_mut().unwrap().remove("tenant_id");
        c
    });
    assert_eq!(get(&gw, "/api/business/12", &no_tenant).status, 403);
    assert_eq!(c.get(&gw.url("/other?tenant_id=12"), &[]).status, 403);
    assert_eq!(up.count(), passed, "no refused request reached the upstream");

    // The admin role crosses tenants.
    assert_eq!(get(&gw, "/api/business/73/orders", &rs256(admin_claims())).status, 200);

    let ev = wait_events(&gw, "type=cross_tenant_attempt&limit=50", 7);
    assert_eq!(ev.len(), 7);
    let first = ev.iter().find(|e| e["path"] == "/api/business/73/orders").unwrap();
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["action"], "blocked");
    assert_eq!(first["tenant"], "12");
    assert_eq!(first["target_tenant"], "73");
    assert_eq!(first["subject"], "user-9");
    assert_eq!(first["route"], "business");
    assert_eq!(first["rule_id"], "tenant-in-path");
    let mut reasons: Vec<&str> = ev.iter().map(|e| e["detail"]["reason"].as_str().unwrap()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["ambiguous", "ambiguous", "mismatch", "mismatch", "no_identity", "no_identity_tenant", "unparsable"]
    );
    // The runbook's query: every critical event.
    let crit = control_get(&gw, "/v1/events?severity=critical", VIEWER).json();
    assert_eq!(crit["events"].as_array().unwrap().len(), 7);
}

#[test]
fn every_encoding_of_a_foreign_tenant_in_the_path_is_refused_and_nothing_reaches_the_upstream() {
    let up = Upstream::start("app");
    let gw = start(&identity::cfg(&up, TENANT_RULE));
    let token = rs256(claims("user-9", "12"));
    assert_eq!(get(&gw, "/api/business/12/x", &token).status, 200);
    up.clear();
    let targets = [
        "/api/business/73/orders",
        "/api/business/%37%33/orders",
        "/API/business/73/orders",
        "/api/BUSINESS/73",
        "/api//business/73/orders",
        "/api/./business/73/orders",
        "/api/x/../business/73/orders",
        "/api/%62usiness/73/orders",
        "/api/business/73%2F..%2F12/orders",
        "/api/business/12%2F..%2F73",
        "/api/business/%2E%2E/73/orders",
        "/api/business/73;12/orders",
        "/api/business/73%00/orders",
        "/api/business/73%20/orders",
        "/api/business/12/../73/orders",
        "/api/business/12/%2e%2e/73/orders",
        "/api/business/./73",
        "/api/business/73#12",
        "/api/business/%u0037%u0033",
    ];
    for t in targets {
        let req =
            format!("GET {t} HTTP/1.1\r\nHost: app\r\nAuthorization: {}\r\nConnection: close\r\n\r\n", auth(&token));
        let resp = portcullis_tests::exchange(gw.proxy_addr(), req.as_bytes(), Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{t}: no response"));
        let forwarded: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
        up.clear();
        match resp.status {
            400 | 403 | 404 => assert!(forwarded.is_empty(), "{t}: refused, yet the upstream got {forwarded:?}"),
            // Passed: only because it canonicalised to something that is not tenant 73's (e.g.
            // `/api/business/%2E%2E/73/orders` is `/api/73/orders`), and that is what was forwarded.
            _ => {
                assert_eq!(forwarded.len(), 1, "{t}");
                let p = forwarded[0].to_ascii_lowercase();
                assert!(!p.contains("business/73") && !p.contains("business/%37"), "{t} reached the upstream as {p}");
            }
        }
    }
}

#[test]
fn the_body_field_variant_and_monitor_mode() {
    let up = Upstream::start("app");
    let monitor = r#"tenant_scope:
  - id: tenant-in-body
    routes: [business]
    target:
      body: /data/tenant_id
  - id: tenant-header-watch
    mode: monitor
    target:
      header: x-tenant-id
"#;
    let gw = start(&identity::cfg(&up, monitor));
    let token = rs256(claims("user-9", "12"));
    let c = Client::new();
    let post = |body: &str| {
        c.post(
            &gw.url("/api/business/orders"),
            &[("authorization", &auth(&token)), ("content-type", "application/json")],
            body,
        )
    };
    let own = r#"{"data": {"tenant_id": "12", "item": "x"}, "note": "şirket"}"#;
    assert_eq!(post(own).status, 200);
    assert_eq!(up.last().unwrap().body, own.as_bytes(), "forwarded byte for byte");
    assert_eq!(post(r#"{"data": {"tenant_id": 12}}"#).status, 200, "numeric tenant ids compare as text");
    up.clear();
    for bad in [
        r#"{"data": {"tenant_id": "73"}}"#,
        r#"{"data": {"tenant_id": "12", "tenant_id": "73"}}"#,
        r#"{"data": {"tenant_id": null}}"#,
        r#"{"data": {"tenant_id": ["12"]}}"#,
        r#"{"data": {"tenant_id": "12"}"#,
    ] {
        let r = post(bad);
        assert_eq!(r.status, 403, "{bad}: {}", r.text());
    }
    // Over the rule's body cap (64 KiB by default). Decided on the declared length, before the
    // body is read: sent over a raw connection, as a client writing the whole body would race the
    // refusal's close (broken pipe) on a busy machine.
    let big = format!(r#"{{"data": {{"tenant_id": "12"}}, "pad": "{}"}}"#, "x".repeat(70_000));
    let mut conn = RawConn::connect(gw.proxy_addr());
    let head = format!(
        "POST /api/business/orders HTTP/1.1\r\nHost: app\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        auth(&token),
        big.len()
    );
    conn.send(head.as_bytes()).unwrap();
    let _ = conn.send(&big.as_bytes()[..1000]);
    assert_eq!(conn.read_response(Duration::from_secs(5)).unwrap().status, 403);
    // Chunked bodies are read the same way.
    let chunked = |body: &str| {
        format!(
            "POST /api/business/orders HTTP/1.1\r\nHost: app\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            auth(&token),
            body.len()
        )
    };
    let raw =
        raw_exchange(gw.proxy_addr(), chunked(r#"{"data":{"tenant_id":"73"}}"#).as_bytes(), Duration::from_secs(5));
    assert_eq!(parse_response(&raw).unwrap().status, 403);
    assert_eq!(up.count(), 0, "no refused body reached the upstream");
    let raw =
        raw_exchange(gw.proxy_addr(), chunked(r#"{"data":{"tenant_id":"12"}}"#).as_bytes(), Duration::from_secs(5));
    assert_eq!(parse_response(&raw).unwrap().status, 200);
    assert_eq!(up.last().unwrap().body, br#"{"data":{"tenant_id":"12"}}"#);

    // Monitor mode: forwarded, flagged.
    up.clear();
    let r = c.get(&gw.url("/api/orders"), &[("authorization", &auth(&token)), ("x-tenant-id", "73")]);
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    let ev = wait_events(&gw, "type=cross_tenant_attempt&limit=50", 8);
    let flagged: Vec<_> = ev.iter().filter(|e| e["action"] == "flagged").collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["mode"], "monitor");
    assert_eq!(flagged[0]["rule_id"], "tenant-header-watch");
    assert_eq!(flagged[0]["target_tenant"], "73");
}

#[test]
fn unicode_tenant_ids_compare_exactly() {
    let up = Upstream::start("app");
    let gw = start(&identity::cfg(&up, TENANT_RULE));
    let token = rs256(claims("user-9", "şirket"));
    assert_eq!(get(&gw, "/api/business/%C5%9Firket/orders", &token).status, 200);
    assert_eq!(up.last().unwrap().header("x-portcullis-tenant"), Some("şirket"));
    for other in ["/api/business/sirket", "/api/business/%C5%9FIRKET", "/api/business/s%CC%A7irket"] {
        assert_eq!(get(&gw, other, &token).status, 403, "{other}");
    }
}

#[test]
fn containment_revokes_the_session_blocks_the_subject_and_stops_the_pilot() {
    let up = Upstream::start("app");
    let state = TempDir::new("contain");
    let rule = r#"tenant_scope:
  - id: tenant-in-path
    target:
      path: "/api/business/{tenant}"
    containment:
      revoke_session: true
      block_subject_seconds: 600
      maintenance: true
"#;
    let gw = start(&identity::cfg(&up, rule).state_dir(state.path()));
    let token = rs256(claims("user-9", "12"));
    assert_eq!(get(&gw, "/api/business/12/orders", &token).status, 200);
    let r = get(&gw, "/api/business/73/orders", &token);
    assert_eq!(r.status, 403);
    // Everything happened before the 403 was answered.
    let r = get(&gw, "/api/business/12/orders", &token);
    assert_eq!(r.status, 503, "maintenance is on: {}", r.text());
    let sw = control_get(&gw, "/v1/switches", VIEWER).json();
    assert_eq!(sw["maintenance"]["enabled"], true);
    assert_eq!(sw["maintenance"]["set_by"], "containment:tenant-in-path");
    // Lift maintenance: the session is still revoked, and a fresh session of the same subject is blocked.
    let r = Client::new().request(
        "PUT",
        &gw.control_url("/v1/switches/maintenance"),
        &[("authorization", &bearer(OPERATOR)), ("content-type", "application/json")],
        Some(br#"{"enabled":false,"reason":"investigated"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&gw, "/api/business/12/orders", &token);
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("session_expired")));
    let mut fresh = claims("user-9", "12");
    fresh["sid"] = json!("another-session");
    assert_eq!(get(&gw, "/api/business/12/orders", &rs256(fresh)).status, 401);
    // Others are unaffected.
    assert_eq!(get(&gw, "/api/business/13/orders", &rs256(claims("user-10", "13"))).status, 200);

    let audit = control_get(&gw, "/v1/audit", ADMIN).json();
    let recs: Vec<_> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "containment:tenant-in-path")
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recs.len(), 3, "{recs:?}");
    for a in ["session.revoke", "subject.block", "switch.maintenance.set"] {
        assert!(recs.iter().any(|r| r == a), "{a} in {recs:?}");
    }
    let ev = wait_events(&gw, "type=cross_tenant_attempt", 1);
    let done = ev[0]["detail"]["containment"].as_array().unwrap();
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|d| d["result"] == "done"), "{done:?}");
    let changed = wait_events(&gw, "type=switch_changed", 3);
    assert!(changed.iter().any(|e| e["detail"]["target"] == "session:sess-user-9"));
    // The revocation survives a restart.
    drop(gw);
    let gw = start(&identity::cfg(&up, rule).state_dir(state.path()));
    assert_eq!(get(&gw, "/api/business/12/orders", &token).status, 401);
}

#[test]
fn a_monitor_body_rule_never_forwards_a_truncated_body() {
    let up = Upstream::start("app");
    let rule = "tenant_scope:\n  - id: body-watch\n    mode: monitor\n    routes: [business]\n    target: { body: /tenant_id }\n    body_max_bytes: 1024\n";
    let gw = start(&identity::cfg(&up, rule));
    let token = rs256(claims("user-9", "12"));
    let big = format!(r#"{{"tenant_id":"12","pad":"{}"}}"#, "x".repeat(4000));
    // Declared over the cap: nothing read, streamed whole, flagged.
    let r = Client::new().post(
        &gw.url("/api/business/orders"),
        &[("authorization", &auth(&token)), ("content-type", "application/json")],
        &big,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().unwrap().body, big.as_bytes());
    // Chunked, found over the cap while reading: refused, nothing forwarded.
    up.clear();
    let req = format!(
        "POST /api/business/orders HTTP/1.1\r\nHost: app\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        auth(&token),
        big.len()
    );
    let raw = raw_exchange(gw.proxy_addr(), req.as_bytes(), Duration::from_secs(5));
    let resp = parse_response(&raw).unwrap();
    assert_eq!(resp.status, 413);
    assert_eq!(up.count(), 0);
    let ev = wait_events(&gw, "type=cross_tenant_attempt", 2);
    assert!(ev.iter().all(|e| e["action"] == "flagged" && e["detail"]["reason"] == "body_too_large"));
}
