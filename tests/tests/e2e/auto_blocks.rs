//! Automatic blocks (issue 23): a scanner's refusals, counted per client address, block it for
//! the rule's duration through the operator's audited path — the upstream then sees nothing from
//! it, other clients are served, the block is listed, liftable and expires by itself. Trusted
//! proxies, the maintenance bypass and a rule's exempt list are never blocked; a monitor rule
//! and safe-test events block nothing. Clients are told apart by `X-Forwarded-For` from the
//! trusted local proxy.
use crate::common::*;
use portcullis_tests::{wait_until, Client, Gateway, Upstream};
use std::time::Duration;

const SQLMAP: &str = "sqlmap/1.8#stable (https://sqlmap.org)";

fn rules(mode: &str, duration: &str) -> String {
    format!(
        "version: 1\nfirewall:\n  - id: tools\n    match:\n      headers:\n        user-agent: '(?i)sqlmap/'\nauto_blocks:\n  - id: scanner\n    mode: {mode}\n    events: [firewall_block]\n    above: 3\n    window: 1m\n    block: address\n    duration: {duration}\n    exempt: [198.18.0.0/15]\n"
    )
}

fn start(up: &Upstream, rules: &str) -> Gateway {
    Cfg::new(&[up.addr()])
        .extra("trusted_proxies: [\"127.0.0.1/32\"]\nmaintenance:\n  bypass_cidrs: [\"192.0.2.0/24\"]\n")
        .rule_file("auto.yaml", rules)
        .start()
}

/// A request from `client` (via the trusted proxy); `ua` sets the User-Agent.
fn from(gw: &Gateway, client: &str, path: &str, ua: Option<&str>) -> portcullis_tests::Resp {
    let mut h = vec![("x-forwarded-for", client)];
    if let Some(ua) = ua {
        h.push(("user-agent", ua));
    }
    Client::new().get(&gw.url(path), &h)
}

/// Four sqlmap requests from `client`: each refused by the firewall (over the threshold of 3).
fn scan(gw: &Gateway, client: &str) {
    for i in 0..4 {
        let r = from(gw, client, &format!("/api/scan{i}"), Some(SQLMAP));
        assert_eq!(r.status, 403, "{client}: {}", r.text());
    }
}

#[test]
fn a_scanner_is_blocked_then_served_again_when_the_block_expires() {
    let up = Upstream::start("app");
    let gw = start(&up, &rules("enforce", "3s"));
    // Three refusals are not over the threshold: a clean request still passes.
    for i in 0..3 {
        assert_eq!(from(&gw, "203.0.113.66", &format!("/api/s{i}"), Some(SQLMAP)).status, 403);
    }
    assert_eq!(from(&gw, "203.0.113.66", "/api/still-ok", None).status, 200);
    // The fourth is: the address is blocked, whatever it sends next.
    assert_eq!(from(&gw, "203.0.113.66", "/api/s3", Some(SQLMAP)).status, 403);
    assert!(
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            from(&gw, "203.0.113.66", "/api/probe", None).json()["code"] == "ip_blocked"
        }),
        "the scanner was never blocked"
    );
    up.clear();
    let r = from(&gw, "203.0.113.66", "/api/clean", None);
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("ip_blocked")));
    assert_eq!(up.requests_to("/api/clean").len(), 0, "a blocked scanner reached the upstream");
    // Its refusals while blocked are not counted again (nor are a suspended tenant's).
    for i in 0..12 {
        assert_eq!(from(&gw, "203.0.113.66", &format!("/api/again{i}"), Some(SQLMAP)).status, 403);
    }
    // Another client is served.
    assert_eq!(from(&gw, "203.0.113.67", "/api/neighbour", None).status, 200);
    assert_eq!(up.requests_to("/api/neighbour").len(), 1);

    // Listed like an operator's block, made by the rule, and audited as such.
    let blocks = control_get(&gw, "/v1/blocks", VIEWER).json();
    assert_eq!(blocks["addresses_total"], 1, "{blocks}");
    assert!(blocks.to_string().contains("203.0.113.66/32"), "{blocks}");
    assert!(blocks.to_string().contains("auto_block:scanner"), "{blocks}");
    let audit = control_get(&gw, "/v1/audit?action=address.block", ADMIN).json();
    let rec = &audit["records"][0];
    assert_eq!(rec["actor"], "auto_block:scanner", "{audit}");
    assert_eq!(rec["target"], "address:203.0.113.66/32", "{audit}");
    assert_eq!(rec["outcome"], "ok");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(metric(&gw, "portcullis_auto_blocks_total{rule=\"scanner\",result=\"blocked\"}"), Some(1.0));
    assert_eq!(metric(&gw, "portcullis_auto_blocks_total{rule=\"scanner\",result=\"already_blocked\"}"), None);
    let ev = control_get(&gw, "/v1/events?type=switch_changed", VIEWER).json();
    assert!(ev.to_string().contains("auto_block:scanner"), "{ev}");

    // It expires by itself.
    assert!(
        wait_until(Duration::from_secs(6), Duration::from_millis(100), || from(
            &gw,
            "203.0.113.66",
            "/api/later",
            None
        )
        .status
            == 200),
        "the block never expired"
    );
}

#[test]
fn an_operator_lifts_an_automatic_block_and_a_new_crossing_blocks_again() {
    let up = Upstream::start("app");
    let gw = start(&up, &rules("enforce", "1h"));
    scan(&gw, "203.0.113.70");
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || from(
        &gw,
        "203.0.113.70",
        "/api/x",
        None
    )
    .status
        == 403));
    // The operator lifts it.
    let auth = bearer(OPERATOR);
    let r = Client::new().request(
        "DELETE",
        &gw.control_url("/v1/blocks/addresses/203.0.113.70"),
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        Some(br#"{"reason":"false positive"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(from(&gw, "203.0.113.70", "/api/after-lift", None).status, 200);
    assert_eq!(up.requests_to("/api/after-lift").len(), 1);
    let audit = control_get(&gw, "/v1/audit?action=address.unblock", ADMIN).json();
    assert_eq!(audit["records"][0]["actor"], "o", "{audit}");
    // The counts were cleared by the first crossing: it takes a new one to block again.
    scan(&gw, "203.0.113.70");
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || from(
        &gw,
        "203.0.113.70",
        "/api/y",
        None
    )
    .status
        == 403));
    assert_eq!(metric(&gw, "portcullis_auto_blocks_total{rule=\"scanner\",result=\"blocked\"}"), Some(2.0));
}

#[test]
fn trusted_proxies_the_maintenance_bypass_exempt_ranges_monitor_rules_and_safe_tests_are_never_blocked() {
    let up = Upstream::start("app");
    let gw = start(&up, &rules("enforce", "1h"));
    // The trusted proxy itself (no forwarded address), a maintenance-bypass client, an exempt one.
    for _ in 0..4 {
        assert_eq!(Client::new().get(&gw.url("/api/p"), &[("user-agent", SQLMAP)]).status, 403);
    }
    scan(&gw, "192.0.2.10");
    scan(&gw, "198.18.0.9");
    // Safe-test firewall events carry no client to block and are never counted.
    let auth = bearer(OPERATOR);
    for _ in 0..5 {
        Client::new().post(&gw.control_url("/v1/safe-test/firewall_block"), &[("authorization", auth.as_str())], "");
    }
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || metric(
        &gw,
        "portcullis_auto_blocks_total{rule=\"scanner\",result=\"exempt\"}"
    ) == Some(3.0)));
    std::thread::sleep(Duration::from_millis(300));
    for client in ["192.0.2.10", "198.18.0.9"] {
        assert_eq!(from(&gw, client, "/api/ok", None).status, 200, "{client} was blocked");
    }
    assert_eq!(Client::new().get(&gw.url("/api/ok"), &[]).status, 200, "the trusted proxy was blocked");
    assert_eq!(metric(&gw, "portcullis_auto_blocks_total{rule=\"scanner\",result=\"blocked\"}"), None);

    // A monitor rule: counted, logged, nothing blocked.
    let up = Upstream::start("app");
    let gw = start(&up, &rules("monitor", "1h"));
    scan(&gw, "203.0.113.80");
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || metric(
        &gw,
        "portcullis_auto_blocks_total{rule=\"scanner\",result=\"monitor\"}"
    ) == Some(1.0)));
    assert_eq!(from(&gw, "203.0.113.80", "/api/ok", None).status, 200);
    assert_eq!(control_get(&gw, "/v1/blocks", VIEWER).json()["addresses_total"], 0);
}

#[test]
fn a_bad_auto_blocks_section_is_refused_with_every_error_and_the_running_rules_stay() {
    let up = Upstream::start("app");
    let gw = start(&up, &rules("enforce", "1h"));
    let bad = "version: 1\nauto_blocks:\n  - id: a\n    events: [switch_changed]\n    above: 0\n    window: 10x\n    block: subject\n    duration: 99999d\n    exempt: [nope]\n";
    write_atomic(&gw.dir().join("rules/auto.yaml"), bad);
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert!(r.status >= 400, "{}", r.text());
    let out = r.text();
    for want in ["auto.yaml", "auto_blocks[0].events[0]", "above", "window", "duration", "exempt[0]"] {
        assert!(out.contains(want), "{want} missing in {out}");
    }
    // The running rules stay: the scanner is still blocked.
    scan(&gw, "203.0.113.90");
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || from(
        &gw,
        "203.0.113.90",
        "/api/x",
        None
    )
    .status
        == 403));
}
