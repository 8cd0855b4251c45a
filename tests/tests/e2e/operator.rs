//! The operator's verbs through the real gateway: address/CIDR and subject blocks, tenant
//! suspension (by identity and by every target source), the identity allowlist at runtime, each
//! audited, each surviving `kill -9`; listings (quotas of every tenant, sessions, blocks,
//! tenants); the audit feed filtered and paged past 1000 records; `GET /` as JSON index and
//! console; 403s naming the role; file reloads audited; access-log and event identity fields.
use crate::common::*;
use crate::identity::{self, auth, claims, get, rs256, start, wait_events};
use portcullis_tests::{wait_until, Client, Gateway, Resp, TempDir, Upstream};
use serde_json::{json, Value};
use std::time::Duration;

const TENANT_RULE: &str = r#"tenant_scope:
  - id: tenant-in-path
    target:
      path: "/api/business/{tenant}"
      query: tenant_id
      header: x-tenant-id
    cross_tenant_roles: [platform_admin]
"#;

fn call(gw: &Gateway, method: &str, path: &str, token: &str, body: Option<&str>) -> Resp {
    Client::new().request(
        method,
        &gw.control_url(path),
        &[("authorization", &bearer(token)), ("content-type", "application/json")],
        body.map(str::as_bytes),
    )
}

fn put(gw: &Gateway, path: &str, token: &str, body: &str) -> Resp {
    call(gw, "PUT", path, token, Some(body))
}

fn delete(gw: &Gateway, path: &str, token: &str) -> Resp {
    call(gw, "DELETE", path, token, None)
}

fn audit(gw: &Gateway, query: &str) -> Vec<Value> {
    let r = control_get(gw, &format!("/v1/audit?{query}"), ADMIN);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["records"].as_array().cloned().unwrap_or_default()
}

fn admin_claims(sub: &str) -> Value {
    let mut c = claims(sub, "1");
    c["roles"] = json!(["platform_admin"]);
    c
}

#[test]
fn address_and_subject_blocks_refuse_with_stable_codes_are_audited_and_survive_kill_9() {
    let up = Upstream::start("app");
    let state = TempDir::new("operator-blocks");
    let c = identity::cfg(&up, "").state_dir(state.path());
    let gw = start(&c);
    let anon = Client::new();
    assert_eq!(anon.get(&gw.url("/public"), &[]).status, 200);

    // A viewer cannot block; the 403 names the role needed.
    let r = put(&gw, "/v1/blocks/addresses/127.0.0.1", VIEWER, r#"{"reason":"x"}"#);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("`operator` role"), "{}", r.text());

    // Bad input: refused with 400, audited as refused, nothing blocked.
    for (path, body) in [
        ("/v1/blocks/addresses/not-an-ip", r#"{"reason":"x"}"#),
        ("/v1/blocks/addresses/10.0.0.0%2F33", r#"{"reason":"x"}"#),
        ("/v1/blocks/addresses/%zz", r#"{"reason":"x"}"#),
        ("/v1/blocks/addresses/127.0.0.1", r#"{}"#),
        ("/v1/blocks/addresses/127.0.0.1", r#"{"reason":"  "}"#),
        ("/v1/blocks/addresses/127.0.0.1", r#"{"reason":"x","ttl_seconds":0}"#),
        ("/v1/blocks/addresses/127.0.0.1", r#"{"reason":"x","ttl_seconds":99999999999}"#),
        ("/v1/blocks/addresses/127.0.0.1", r#"{"reason":"x","why":1}"#),
        ("/v1/blocks/addresses/127.0.0.1", r#"["x", 60]"#),
        ("/v1/blocks/addresses/127.0.0.1", "{\"reason\":\"a\u{7}b\"}"),
        ("/v1/blocks/subjects/%0a", r#"{"reason":"x"}"#),
    ] {
        let r = put(&gw, path, OPERATOR, body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
    }
    assert_eq!(anon.get(&gw.url("/public"), &[]).status, 200, "nothing was blocked");
    let refused = audit(&gw, "action=address.block&outcome=refused");
    assert!(refused.len() >= 9, "{refused:?}");

    // A CIDR (host bits given, stored as its network) blocks the test client's own address.
    let r = put(&gw, "/v1/blocks/addresses/127.1.2.3%2F8", OPERATOR, r#"{"reason":"credential stuffing"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "address:127.0.0.0/8");
    up.clear();
    for path in ["/public", "/api/x", "/nowhere?q=1"] {
        let r = anon.get(&gw.url(path), &[]);
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json()["code"], "ip_blocked");
    }
    // Even with a valid identity, and with the firewall flag off.
    assert_eq!(put(&gw, "/v1/flags/firewall", OPERATOR, r#"{"enabled":false}"#).status, 200);
    assert_eq!(get(&gw, "/api/x", &rs256(claims("user-9", "12"))).status, 403);
    assert_eq!(up.count(), 0, "nothing blocked reached the upstream");
    let ev = wait_events(&gw, "type=firewall_block", 1);
    assert!(ev.iter().any(|e| e["detail"]["reason"] == "address_blocked" && e["detail"]["block"] == "127.0.0.0/8"));
    let blocks = control_get(&gw, "/v1/blocks", VIEWER).json();
    assert_eq!(blocks["addresses"][0]["address"], "127.0.0.0/8");
    assert_eq!(blocks["addresses"][0]["reason"], "credential stuffing");
    assert_eq!(blocks["addresses"][0]["until"], Value::Null);

    // kill -9: the block holds after a restart on the same state.
    drop(gw);
    let gw = start(&c);
    assert_eq!(anon.get(&gw.url("/public"), &[]).status, 403);
    let r = delete(&gw, "/v1/blocks/addresses/127.0.0.0%2F8", OPERATOR);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(anon.get(&gw.url("/public"), &[]).status, 200);

    // The IPv4-mapped spelling of the same address, with an expiry: runs out by itself.
    let r = put(&gw, "/v1/blocks/addresses/%3A%3Affff%3A127.0.0.1", OPERATOR, r#"{"reason":"r","ttl_seconds":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "address:127.0.0.1/32");
    assert_eq!(anon.get(&gw.url("/public"), &[]).status, 403);
    assert!(wait_until(Duration::from_secs(4), Duration::from_millis(100), || anon
        .get(&gw.url("/public"), &[])
        .status
        == 200));

    // A subject block: the identity's requests look like an expired session.
    let token = rs256(claims("user-9", "12"));
    let r = put(&gw, "/v1/blocks/subjects/user-9", OPERATOR, r#"{"reason":"automated agent","ttl_seconds":3600}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    up.clear();
    let r = get(&gw, "/api/x", &token);
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("session_expired")));
    assert_eq!(get(&gw, "/api/x", &rs256(claims("user-8", "12"))).status, 200, "another subject passes");
    assert_eq!(up.count(), 1);
    drop(gw);
    let gw = start(&c);
    assert_eq!(get(&gw, "/api/x", &token).status, 401, "the block survived kill -9");
    let listed = control_get(&gw, "/v1/blocks", VIEWER).json();
    assert_eq!(listed["subjects"][0]["subject"], "user-9");
    assert_eq!(delete(&gw, "/v1/blocks/subjects/user-9", OPERATOR).status, 200);
    assert_eq!(get(&gw, "/api/x", &token).status, 200);

    // Every change audited, with its actor and reason.
    let recs = audit(&gw, "outcome=ok&target=address:*");
    let actions: Vec<&str> = recs.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["address.block", "address.unblock", "address.block"], "newest first");
    assert_eq!(recs[2]["reason"], "credential stuffing");
    assert_eq!(recs[2]["actor"], "o");
    let subj = audit(&gw, "target=subject%3Auser-9&outcome=ok");
    assert_eq!(
        subj.iter().map(|r| r["action"].as_str().unwrap()).collect::<Vec<_>>(),
        ["subject.unblock", "subject.block"]
    );
    assert_eq!(
        portcullis_tests::run_cli(
            BIN,
            &["audit", "verify", "--file", &format!("{}/audit/audit.jsonl", state.path().display())],
            &[]
        )
        .0,
        0
    );
}

#[test]
fn a_suspended_tenant_is_refused_by_identity_and_by_every_target_source_and_stays_so_after_kill_9() {
    let up = Upstream::start("app");
    let state = TempDir::new("operator-tenants");
    let c = identity::cfg(&up, TENANT_RULE).state_dir(state.path());
    let gw = start(&c);
    let mine = rs256(claims("user-9", "12"));
    let root = rs256(admin_claims("root"));
    assert_eq!(get(&gw, "/api/business/12/orders", &mine).status, 200);

    let r = put(&gw, "/v1/tenants/12/suspension", OPERATOR, r#"{"reason":"cross-tenant probe under investigation"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "tenant:12");
    up.clear();
    // The tenant's own identity, anywhere.
    for path in ["/api/business/12/orders", "/api/orders"] {
        let r = get(&gw, path, &mine);
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("tenant_suspended")), "{path}");
    }
    // Someone else (who may cross tenants) aimed at the tenant: path, encoded path, query, header.
    for (path, hdr) in [
        ("/api/business/12/orders", None),
        ("/api/business/%31%32/orders", None),
        ("/api/orders?tenant_id=12", None),
        ("/api/orders?tenant_id=%31%32", None),
        ("/api/orders", Some("12")),
    ] {
        let mut h = vec![("authorization".to_string(), auth(&root))];
        if let Some(t) = hdr {
            h.push(("x-tenant-id".into(), t.into()));
        }
        let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let r = Client::new().get(&gw.url(path), &hv);
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("tenant_suspended")), "{path} {hdr:?}");
    }
    assert_eq!(up.count(), 0, "nothing of or for the suspended tenant reached the upstream");
    // Other tenants are untouched; a look-alike is another tenant.
    assert_eq!(get(&gw, "/api/business/7/orders", &rs256(claims("user-3", "7"))).status, 200);
    assert_eq!(get(&gw, "/api/business/120/orders", &root).status, 200);
    let ev = wait_events(&gw, "type=firewall_block&limit=50", 7);
    assert!(ev.iter().all(|e| e["detail"]["reason"] == "tenant_suspended" && e["detail"]["tenant"] == "12"));
    assert!(ev.iter().any(|e| e["detail"]["matched"] == "identity" && e["detail"]["session"] == "sess-user-9"));
    assert!(ev.iter().any(|e| e["detail"]["matched"] == "target"));
    let t = control_get(&gw, "/v1/tenants", VIEWER).json();
    assert_eq!(t["suspended"][0]["tenant"], "12");

    drop(gw);
    let gw = start(&c);
    assert_eq!(get(&gw, "/api/orders", &mine).status, 403, "still suspended after kill -9");
    assert_eq!(delete(&gw, "/v1/tenants/12/suspension", OPERATOR).status, 200);
    assert_eq!(get(&gw, "/api/orders", &mine).status, 200);
    let recs = audit(&gw, "target=tenant%3A12");
    assert_eq!(
        recs.iter().map(|r| r["action"].as_str().unwrap()).collect::<Vec<_>>(),
        ["tenant.resume", "tenant.suspend"]
    );
}

#[test]
fn allowlist_entries_are_added_and_deactivated_at_runtime_by_admins_and_persist() {
    let up = Upstream::start("app");
    let state = TempDir::new("operator-allow");
    let allow = "    allow:\n      emails: [user-9@acme.example, user-8@acme.example]\n";
    let c = identity::cfg(&up, allow).state_dir(state.path());
    let gw = start(&c);
    let nine = rs256(claims("user-9", "12"));
    let five = rs256(claims("user-5", "12"));
    assert_eq!(get(&gw, "/api/x", &nine).status, 200);
    assert_eq!(get(&gw, "/api/x", &five).status, 403);

    // Admin only.
    let r = put(&gw, "/v1/allowlist/email/user-5@acme.example", OPERATOR, r#"{"label":"x"}"#);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("`admin` role"));
    for path in [
        "/v1/allowlist/user/x",
        "/v1/allowlist/email/not-an-email",
        "/v1/allowlist/domain/a@b",
        "/v1/allowlist/email/%zz",
    ] {
        assert_eq!(put(&gw, path, ADMIN, "").status, 400, "{path}");
    }
    // Add an address (any case), and deactivate one the rule file lists.
    let r = put(&gw, "/v1/allowlist/email/User-5@ACME.example", ADMIN, r#"{"label":"contractor"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "allow:email:user-5@acme.example");
    assert_eq!(get(&gw, "/api/x", &five).status, 200);
    let r =
        call(&gw, "DELETE", "/v1/allowlist/email/user-9@acme.example", ADMIN, Some(r#"{"reason":"automated agent"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&gw, "/api/x", &nine);
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("forbidden")));
    // A whole domain: its other addresses in, the deactivated one still out.
    assert_eq!(get(&gw, "/api/x", &rs256(claims("user-7", "12"))).status, 403);
    assert_eq!(put(&gw, "/v1/allowlist/domain/acme.example", ADMIN, "").status, 200);
    assert_eq!(get(&gw, "/api/x", &rs256(claims("user-7", "12"))).status, 200);
    assert_eq!(get(&gw, "/api/x", &nine).status, 403, "the more specific entry decides");

    let list = control_get(&gw, "/v1/allowlist", VIEWER).json();
    assert_eq!(list["entries"].as_array().unwrap().len(), 3);
    assert_eq!(list["files"][0]["emails"][0], "user-9@acme.example");

    drop(gw);
    let gw = start(&c);
    assert_eq!(get(&gw, "/api/x", &five).status, 200, "kept across kill -9");
    assert_eq!(get(&gw, "/api/x", &nine).status, 403);
    assert_eq!(get(&gw, "/api/x", &rs256(claims("user-8", "12"))).status, 200, "the file's own entries still count");
    let recs = audit(&gw, "action=allowlist.*&outcome=ok");
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[1]["reason"], "automated agent");
    assert_eq!(recs[2]["new"]["label"], "contractor");
}

#[test]
fn listings_index_and_role_naming_403s() {
    let (_up, gw) = simple();
    // The index: JSON for clients, the console for browsers; no token needed for either.
    let c = Client::new();
    let idx = c.get(&gw.control_url("/"), &[("accept", "application/json")]);
    assert_eq!(idx.status, 200);
    let eps = idx.json()["endpoints"].as_array().cloned().unwrap();
    for (m, p, role) in [
        ("GET", "/v1/quotas", "viewer"),
        ("PUT", "/v1/blocks/addresses/{id}", "operator"),
        ("PUT", "/v1/tenants/{id}/suspension", "operator"),
        ("PUT", "/v1/allowlist/{id}/{id}", "admin"),
        ("GET", "/v1/audit", "admin"),
    ] {
        assert!(eps.iter().any(|e| e["method"] == m && e["path"] == p && e["role"] == role), "{m} {p}");
    }
    let page = c.get(&gw.control_url("/"), &[("accept", "text/html,application/xhtml+xml")]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<script src=\"/console.js\">"));
    let csp = page.header("content-security-policy").unwrap_or_default().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("set-cookie"), None);
    assert_eq!(c.get(&gw.control_url("/console.js"), &[]).status, 200);
    assert_eq!(c.post(&gw.control_url("/"), &[], "").status, 405);
    assert_eq!(c.get(&gw.control_url("/console.js.map"), &[]).status, 404);

    // Listings, for a viewer.
    for (path, key) in [
        ("/v1/quotas", "tenants"),
        ("/v1/sessions", "sessions"),
        ("/v1/blocks", "addresses"),
        ("/v1/tenants", "suspended"),
        ("/v1/allowlist", "entries"),
    ] {
        let r = control_get(&gw, path, VIEWER);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.json()[key].is_array(), "{path}: {}", r.text());
    }
    assert_eq!(control_get(&gw, "/v1/whoami", VIEWER).json(), json!({"name": "v", "role": "viewer"}));
    assert_eq!(control_get(&gw, "/v1/sessions?limit=0", VIEWER).status, 400);
    assert_eq!(control_get(&gw, "/v1/blocks?x=1", VIEWER).status, 400);
    // A 403 names the role needed and the token's own.
    let r = control_get(&gw, "/v1/audit", OPERATOR);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0], "this needs the `admin` role; the token `o` has `operator`");
}

#[test]
fn the_audit_feed_filters_and_pages_past_the_last_1000_records() {
    let (_up, gw) = simple();
    // 1100 refused attempts by the viewer (each audited), then a few changes by the operator.
    let c = Client::new();
    for i in 0..1100 {
        let r = c.request(
            "PUT",
            &gw.control_url(&format!("/v1/flags/f{i}")),
            &[("authorization", &bearer(VIEWER))],
            Some(b"{}"),
        );
        assert_eq!(r.status, 403);
        // Under the control listener's per-source rate limit (500 per second).
        std::thread::sleep(Duration::from_millis(3));
    }
    let before_ops = chrono_now();
    for on in [false, true] {
        let r =
            put(&gw, "/v1/switches/channels/whatsapp", OPERATOR, &format!(r#"{{"enabled":{on},"reason":"drill"}}"#));
        assert!(r.status == 200 || r.status == 404, "{}", r.text());
    }
    assert_eq!(put(&gw, "/v1/flags/rate_limit", OPERATOR, r#"{"enabled":false,"reason":"drill"}"#).status, 200);

    // Every record, page by page, newest first, no gaps, no repeats.
    let mut all = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let q = format!("limit=1000{}", before.map(|b| format!("&before={b}")).unwrap_or_default());
        let r = control_get(&gw, &format!("/v1/audit?{q}"), ADMIN).json();
        all.extend(r["records"].as_array().cloned().unwrap());
        match r["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.len() > 1100);
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "contiguous, newest first");
    assert_eq!(*seqs.last().unwrap(), 1);

    // Filters.
    let denied = audit(&gw, "actor=v&action=denied&limit=1000");
    assert_eq!(denied.len(), 1000);
    assert!(denied.iter().all(|r| r["actor"] == "v" && r["status"] == 403));
    let flags = audit(&gw, "target=PUT%20%2Fv1%2Fflags%2Ff10*&limit=1000");
    assert_eq!(flags.len(), 111, "f10, f100..f109 and f1000..f1099");
    let ops = audit(&gw, &format!("actor=o&since={before_ops}"));
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(audit(&gw, "actor=o&until=1000").len(), 0, "nothing before 1970 + 1000 s");
    assert_eq!(audit(&gw, "action=flag.set&outcome=ok")[0]["target"], "flag:rate_limit");
    for bad in ["limit=1001", "since=yesterday", "before=x", "actor=a&actor=b", "color=red", "target=%ff"] {
        assert_eq!(control_get(&gw, &format!("/v1/audit?{bad}"), ADMIN).status, 400, "{bad}");
    }
}

/// Now, Unix seconds, a second early (the records' clock and ours).
fn chrono_now() -> u64 {
    identity::now() - 1
}

#[test]
fn rule_changes_from_files_are_audited_with_versions_and_hashes() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).rules_opts("  debounce_ms: 50\n  poll_interval_ms: 300\n").start();
    let before = control_get(&gw, "/v1/rules", VIEWER).json()["version"].as_str().unwrap().to_string();
    // A new file picked up by the watch.
    write_atomic(
        &gw.dir().join("rules/fw.yaml"),
        "version: 1\nfirewall:\n  - id: block-admin\n    match:\n      paths: [\"/admin\"]\n",
    );
    let found =
        |action_outcome: (&str, &str)| audit(&gw, &format!("action={}&outcome={}", action_outcome.0, action_outcome.1));
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(100), || !found(("rules.reload.file", "ok"))
        .is_empty()));
    let rec = &found(("rules.reload.file", "ok"))[0];
    assert_eq!(rec["old"]["version"], before.as_str());
    assert_ne!(rec["new"]["version"], before.as_str());
    assert!(rec["actor"].as_str().unwrap().starts_with("rules:"));
    let changed = rec["new"]["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].as_str().unwrap().ends_with("fw.yaml"));
    let files = rec["new"]["files"].as_array().unwrap();
    assert!(files.iter().all(|f| f["sha256"].as_str().unwrap().len() == 16));
    // A broken edit is recorded as refused (the old rules stay), with the file's new hash.
    write_atomic(&gw.dir().join("rules/fw.yaml"), "version: 1\nfirewall:\n  - id: [\n");
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(100), || !found((
        "rules.reload.file",
        "refused"
    ))
    .is_empty()));
    let bad = &found(("rules.reload.file", "refused"))[0];
    assert_eq!(bad["new"]["errors"].as_u64().map(|n| n > 0), Some(true));
    // SIGHUP with the file fixed.
    write_atomic(&gw.dir().join("rules/fw.yaml"), "version: 1\n");
    assert!(gw.signal("HUP"));
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(100), || found(("rules.reload.file", "ok"))
        .iter()
        .any(|r| r["actor"] == "rules:sighup" || r["new"]["files"].as_array().is_some_and(|f| f.len() == 2))));
}

#[test]
fn access_log_lines_carry_the_identity_and_switch_change_lines_one_target() {
    let up = Upstream::start("app");
    let gw = start(&identity::cfg(&up, ""));
    assert_eq!(get(&gw, "/api/x", &rs256(claims("user-9", "12"))).status, 200);
    assert!(gw.wait_for_log(
        |l| l.contains("\"log.logger\":\"access\"") && l.contains("sess-user-9"),
        Duration::from_secs(5)
    ));
    let line = gw.json_logs().into_iter().find(|l| l["log.logger"] == "access" && l["url.path"] == "/api/x").unwrap();
    assert_eq!(
        (line["tenant.id"].as_str(), line["user.id"].as_str(), line["session.id"].as_str()),
        (Some("12"), Some("user-9"), Some("sess-user-9"))
    );

    let r = put(&gw, "/v1/switches/channels/whatsapp", OPERATOR, r#"{"enabled":false}"#);
    let _ = r;
    assert_eq!(put(&gw, "/v1/flags/rate_limit", OPERATOR, r#"{"enabled":false}"#).status, 200);
    assert_eq!(put(&gw, "/v1/blocks/subjects/u1", OPERATOR, r#"{"reason":"x"}"#).status, 200);
    assert!(gw.wait_for_log(|l| l.contains("operator change"), Duration::from_secs(5)));
    for msg in ["switch changed", "operator change"] {
        let raw = gw.logs().into_iter().find(|l| l.contains(msg)).unwrap();
        assert_eq!(raw.matches("\"target\":").count(), 1, "one `target` key (the logger's): {raw}");
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert!(v["change.target"].as_str().is_some_and(|t| t.contains(':')), "{raw}");
    }
}

#[test]
fn portcullis_status_shows_health_switches_upstreams_and_critical_events() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes(
        "  - id: whatsapp\n    path_prefix: /api/whatsapp\n    upstream: app\n    channel: whatsapp\n  - id: default\n    path_prefix: /\n    upstream: app\n",
    ).start();
    assert_eq!(put(&gw, "/v1/switches/channels/whatsapp", OPERATOR, r#"{"enabled":false}"#).status, 200);
    let url = gw.control_url("");
    let (code, out, err) = portcullis_tests::run_cli(BIN, &["status", "--url", &url], &[("PORTCULLIS_TOKEN", VIEWER)]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "ready:      yes",
        "health:     ",
        "maintenance: off",
        "whatsapp=OFF",
        "rate_limit=on",
        "upstream app: ",
        "last critical events (24 h): none",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(!out.contains(VIEWER) && !err.contains(VIEWER), "the token is never printed");
    // Without a token: readiness only. A wrong token, or nothing listening: exit 1.
    let (code, out, _) = portcullis_tests::run_cli(BIN, &["status", "--url", &url], &[("PORTCULLIS_TOKEN", "")]);
    assert_eq!(code, 0);
    assert!(out.contains("ready:") && out.contains("PORTCULLIS_TOKEN") && !out.contains("channels:"), "{out}");
    let (code, _, err) =
        portcullis_tests::run_cli(BIN, &["status", "--url", &url], &[("PORTCULLIS_TOKEN", "pcx_wrong")]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, err) = portcullis_tests::run_cli(BIN, &["status", "--url", &format!("http://127.0.0.1:{port}")], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
}
