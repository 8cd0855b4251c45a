//! IP list files (issue 25): a firewall rule's `client_ips_file`, edited live like a threat feed
//! is: an address added is refused within the reload debounce (the watch follows the list's
//! directory; the checksum poll is set far off so only the watch can do it), removed is served
//! again, a malformed line keeps the running list and names `FILE:LINE`. Clients are told apart
//! by `X-Forwarded-For` from the trusted local proxy (which the trusted-proxy set, the same
//! `IpSet`, decides); the upstream's record shows what got through.
use crate::common::*;
use portcullis_tests::{wait_until, Client, Gateway, Upstream};
use std::time::{Duration, Instant};

/// Debounce 50 ms; the poll a minute away, so a change seen within seconds came from the watch.
const WATCH_ONLY: &str = "  debounce_ms: 50\n  poll_interval_ms: 60000\n";

const RULES: &str = "version: 1\nfirewall:\n  - id: feed\n    match:\n      client_ips_file: lists/feed.txt\n";

const FEED: &str = "; Spamhaus DROP List (test)\n192.0.2.0/24 ; SBL1\n# v6\n2001:db8:bad::/48\n";

fn start(up: &Upstream) -> Gateway {
    Cfg::new(&[up.addr()])
        .rules_opts(WATCH_ONLY)
        .extra("trusted_proxies: [\"127.0.0.1/32\"]\n")
        .rule_file("feed.yaml", RULES)
        .rule_file("lists/feed.txt", FEED)
        .start()
}

/// Status of a request from `client` (via the trusted proxy), with a marker path.
fn from(gw: &Gateway, client: &str, marker: &str) -> u16 {
    Client::new().get(&gw.url(&format!("/api/{marker}")), &[("x-forwarded-for", client)]).status
}

fn seen(up: &Upstream, marker: &str) -> usize {
    up.requests_to(&format!("/api/{marker}")).len()
}

fn rules_info(gw: &Gateway) -> serde_json::Value {
    control_get(gw, "/v1/rules", VIEWER).json()
}

#[test]
fn feed_edited_live_refuses_added_addresses_and_serves_removed_ones() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let feed = gw.dir().join("rules/lists/feed.txt");

    // Members in every spelling: IPv4, IPv4-mapped IPv6, IPv6; neighbours are served.
    for (client, marker) in [("192.0.2.9", "m1"), ("::ffff:192.0.2.10", "m2"), ("2001:db8:bad:1::9", "m3")] {
        let r = Client::new().get(&gw.url(&format!("/api/{marker}")), &[("x-forwarded-for", client)]);
        assert_eq!(r.status, 403, "{client}: {}", r.text());
        assert_eq!(r.json()["code"], "ip_blocked");
        assert_eq!(seen(&up, marker), 0, "{client} reached the upstream");
    }
    for (client, marker) in [("192.0.3.9", "n1"), ("2001:db8:bae::1", "n2"), ("198.51.100.7", "n3")] {
        assert_eq!(from(&gw, client, marker), 200, "{client}");
        assert_eq!(seen(&up, marker), 1);
    }

    let info = rules_info(&gw);
    let list = &info["lists"][0];
    assert_eq!(list["name"], "lists/feed.txt");
    assert_eq!(list["entries"], 2);
    assert_eq!(list["rules"], serde_json::json!(["feed"]));
    assert!(list["age_seconds"].as_u64().is_some(), "{list}");
    assert_eq!(metric(&gw, "portcullis_rules_list_entries{list=\"lists/feed.txt\"}"), Some(2.0));
    assert!(metric(&gw, "portcullis_rules_list_age_seconds{list=\"lists/feed.txt\"}").is_some());

    // Added: 198.51.100.0/24 and a v6 host. Refused within the debounce (plus the reload).
    let version = info["version"].clone();
    let edited = Instant::now();
    write_atomic(&feed, &format!("{FEED}198.51.100.0/24 ; SBL2\n2001:db8:1::7\n"));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || rules_info(&gw)["version"] != version),
        "the list edit was not picked up by the watch\n{}",
        gw.output()
    );
    let took = edited.elapsed();
    assert!(took < Duration::from_secs(3), "applied after {took:?}");
    assert_eq!(from(&gw, "198.51.100.7", "a1"), 403);
    assert_eq!(from(&gw, "::ffff:198.51.100.8", "a2"), 403);
    assert_eq!(from(&gw, "2001:db8:1::7", "a3"), 403);
    assert_eq!(from(&gw, "2001:db8:1::8", "a4"), 200, "a host entry is one address");
    assert_eq!(seen(&up, "a1") + seen(&up, "a2") + seen(&up, "a3"), 0, "refused requests reached the upstream");
    assert_eq!(metric(&gw, "portcullis_rules_list_entries{list=\"lists/feed.txt\"}"), Some(4.0));

    // Removed (edited in place, not renamed): served again.
    let version = rules_info(&gw)["version"].clone();
    std::fs::write(&feed, "192.0.2.0/24\n").unwrap();
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || rules_info(&gw)["version"] != version));
    assert_eq!(from(&gw, "198.51.100.7", "r1"), 200);
    assert_eq!(from(&gw, "2001:db8:bad::1", "r2"), 200);
    assert_eq!(from(&gw, "192.0.2.1", "r3"), 403);
    assert_eq!((seen(&up, "r1"), seen(&up, "r2"), seen(&up, "r3")), (1, 1, 0));
}

#[test]
fn malformed_list_line_keeps_the_running_list_and_names_file_and_line() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let feed = gw.dir().join("rules/lists/feed.txt");
    let version = rules_info(&gw)["version"].clone();

    // Line 5 is bad; the good line 6 must not be half-applied.
    write_atomic(&feed, &format!("{FEED}198.51.100.0/33\n203.0.113.0/24\n"));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || !rules_info(&gw)["last_reload"].is_null()),
        "no reload after the edit\n{}",
        gw.output()
    );
    let info = rules_info(&gw);
    assert_eq!(info["version"], version, "the running rules stay");
    assert_eq!(info["last_reload"]["success"], false);
    let errors = info["last_reload"]["errors"].to_string();
    assert!(errors.contains("lists/feed.txt:5: firewall[0].match.client_ips_file: `198.51.100.0/33`"), "{errors}");
    assert_eq!(metric(&gw, "portcullis_rules_last_reload_success"), Some(0.0));
    assert_eq!(from(&gw, "192.0.2.1", "k1"), 403, "the old list still blocks");
    assert_eq!(from(&gw, "203.0.113.1", "k2"), 200, "nothing of the bad file is applied");
    assert_eq!((seen(&up, "k1"), seen(&up, "k2")), (0, 1));

    // The reload answer names it too; several bad lines are all named.
    write_atomic(&feed, "192.0.2.0/24\nnot-an-ip\n10.0.0.0/8 extra\n\u{0}\n");
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    let body = r.text();
    for want in ["lists/feed.txt:2:", "lists/feed.txt:3:", "lists/feed.txt:4:"] {
        assert!(body.contains(want), "{want} missing from {body}");
    }
    assert_eq!(rules_info(&gw)["version"], version);

    // A missing list is named as well, and the old list still holds.
    std::fs::remove_file(&feed).unwrap();
    let body = control_post(&gw, "/v1/rules/reload", OPERATOR).text();
    assert!(body.contains("cannot read list file lists/feed.txt"), "{body}");
    assert_eq!(from(&gw, "2001:db8:bad::2", "k3"), 403);

    // Fixed: applied.
    write_atomic(&feed, "203.0.113.0/24\n");
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || rules_info(&gw)["version"] != version));
    assert_eq!(from(&gw, "203.0.113.1", "f1"), 403);
    assert_eq!(from(&gw, "192.0.2.1", "f2"), 200);
    assert_eq!((seen(&up, "f1"), seen(&up, "f2")), (0, 1));
}

#[test]
fn a_list_that_does_not_parse_stops_the_start_with_file_and_line() {
    let up = Upstream::start("app");
    let cfg =
        Cfg::new(&[up.addr()]).rule_file("feed.yaml", RULES).rule_file("lists/feed.txt", "192.0.2.0/24\n192.0.2.300\n");
    let err = match Gateway::try_start_with(BIN, &cfg.yaml(), &[], &cfg.files()) {
        Ok(_) => panic!("started on a list it cannot parse"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("lists/feed.txt:2:"), "{err}");
}
