//! The SSRF guard through the real gateway: every payload of the corpus
//! (rules/testdata/ssrf.txt) sent in a query parameter, a form field, a JSON member and a
//! header; the refused ones answered 403 `ssrf_blocked` with nothing at the upstream, the
//! allowed ones forwarded unchanged; `ssrf_block` events that name the parameter and the reason,
//! never the URL; monitor mode and `scan: all_urls`.
use crate::common::*;
use portcullis_rules::ssrf;
use portcullis_tests::{parse_response, raw_exchange, wait_until, Gateway, Upstream};
use serde_json::json;
use std::time::Duration;

const ROUTES: &str = "  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: partner\n    path_prefix: /partner\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n";

const RULES: &str = r#"version: 1
ssrf:
  - id: ssrf-default
    routes: [api]
    params: [url]
    fields: [url]
    headers: [x-target-url]
  - id: ssrf-allowlist
    routes: [partner]
    params: [url]
    fields: [url]
    headers: [x-target-url]
    allow_hosts: [example.com, "*.partner.example", bücher.example]
  - id: ssrf-scan
    routes: [default]
    mode: monitor
    scan: all_urls
"#;

fn start(up: &Upstream) -> Gateway {
    Cfg::new(&[up.addr()]).routes(ROUTES).rule_file("ssrf.yaml", RULES).start()
}

/// `(route prefix, expected, value)` for every case of the corpus.
fn corpus() -> Vec<(&'static str, &'static str, String)> {
    ssrf::corpus().into_iter().map(|c| (if c.allowlist { "/partner" } else { "/api" }, c.expected, c.value)).collect()
}

/// Every byte but the unreserved ones percent-encoded.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request over a fresh connection: the status and the deny code (if any).
fn send(gw: &Gateway, head: &str, extra_headers: &[u8], body: &[u8]) -> (u16, Option<String>) {
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(extra_headers);
    req.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    let resp = portcullis_tests::exchange(gw.proxy_addr(), &req, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no response to {head}"));
    let code = (resp.status == 403).then(|| resp.json()["code"].as_str().unwrap_or_default().to_string());
    (resp.status, code)
}

#[test]
fn every_payload_of_the_corpus_in_every_place_is_refused_or_forwarded_unchanged() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let cases = corpus();
    assert!(cases.len() > 150);
    let mut refused = 0;
    let mut wrong = Vec::new();
    for (prefix, expected, value) in &cases {
        let json_body = serde_json::to_vec(&json!({"url": value, "note": "x"})).unwrap();
        let form_body = format!("note=x&url={}", encode(value));
        let q = encode(value);
        // A header value is ASCII without line breaks, and HTTP drops the spaces around it.
        let header_ok = value.is_ascii() && !value.contains(['\r', '\n']);
        let mut header = b"X-Target-Url: ".to_vec();
        header.extend_from_slice(value.as_bytes());
        header.extend_from_slice(b"\r\n");
        let places: [(&str, String, Vec<u8>, Vec<u8>); 4] = [
            ("query", format!("GET {prefix}/fetch?a=1&url={q} HTTP/1.1\r\nHost: app\r\n"), Vec::new(), Vec::new()),
            (
                "form",
                format!(
                    "POST {prefix}/fetch HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                ),
                Vec::new(),
                form_body.into_bytes(),
            ),
            (
                "json",
                format!("POST {prefix}/fetch HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n"),
                Vec::new(),
                json_body,
            ),
            ("header", format!("GET {prefix}/fetch HTTP/1.1\r\nHost: app\r\n"), header, Vec::new()),
        ];
        for (place, head, extra, body) in places {
            if place == "header" && !header_ok {
                continue;
            }
            up.clear();
            let (status, code) = send(&gw, &head, &extra, &body);
            let seen = up.requests();
            if *expected == "pass" {
                let ok = status == 200
                    && seen.len() == 1
                    && match place {
                        "query" => seen[0].query() == Some(&format!("a=1&url={q}")),
                        "header" => seen[0].header("x-target-url").map(str::as_bytes) == Some(value.trim().as_bytes()),
                        _ => seen[0].body == body,
                    };
                if !ok {
                    wrong.push(format!(
                        "{place} {prefix} {value:?}: expected pass, got {status} {code:?}, upstream saw {}",
                        seen.len()
                    ));
                }
            } else {
                refused += 1;
                if status != 403 || code.as_deref() != Some("ssrf_blocked") || !seen.is_empty() {
                    wrong.push(format!(
                        "{place} {prefix} {value:?}: expected 403 ssrf_blocked ({expected}), got {status} {code:?}, upstream saw {}",
                        seen.len()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));

    // Every refusal is one event; the counter has them all.
    let series = "portcullis_security_events_total{type=\"ssrf_block\",severity=\"warning\",mode=\"enforce\"}";
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || metric(&gw, series) == Some(refused as f64));
    assert_eq!(metric(&gw, series), Some(refused as f64));

    // A clean request still passes afterwards.
    up.clear();
    assert_eq!(send(&gw, "GET /api/fetch?url=https%3A%2F%2Fexample.com%2F HTTP/1.1\r\nHost: app\r\n", b"", b"").0, 200);
    assert_eq!(up.count(), 1);
}

#[test]
fn the_event_names_the_parameter_and_the_reason_never_the_url() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let secret = "s3cr3t-pw";
    let (status, code) = send(
        &gw,
        &format!(
            "GET /api/fetch?url=http%3A%2F%2Fadmin%3A{secret}%40169.254.169.254%2Flatest HTTP/1.1\r\nHost: app\r\n"
        ),
        b"",
        b"",
    );
    assert_eq!((status, code.as_deref()), (403, Some("ssrf_blocked")));
    let body = serde_json::to_vec(&json!({"url": format!("gopher://{secret}@127.0.0.1:6379/_FLUSHALL")})).unwrap();
    let head = "POST /api/fetch HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n";
    assert_eq!(send(&gw, head, b"", &body).0, 403);
    assert_eq!(up.count(), 0);

    let evs = wait_events(&gw, "type=ssrf_block", 2);
    assert_eq!(evs.len(), 2, "{evs:?}");
    let by_source = |s: &str| evs.iter().find(|e| e["detail"]["source"] == s).unwrap().clone();
    let q = by_source("query");
    assert_eq!(q["type"], "ssrf_block");
    assert_eq!(q["action"], "blocked");
    assert_eq!(q["severity"], "warning");
    assert_eq!(q["rule_id"], "ssrf-default");
    assert_eq!(q["route"], "api");
    assert_eq!(q["path"], "/api/fetch");
    assert_eq!(q["test"], false);
    assert_eq!(
        q["detail"],
        json!({"reason": "metadata", "source": "query", "param": "url", "scheme": "http", "host_class": "ipv4"})
    );
    let j = by_source("json");
    assert_eq!(
        j["detail"],
        json!({"reason": "scheme_not_allowed", "source": "json", "param": "url", "scheme": "gopher", "host_class": "ipv4"})
    );
    // Nowhere: not in the events, not in the logs.
    let all = serde_json::to_string(&evs).unwrap();
    let logs = gw.logs().join("\n");
    for leak in [secret, "169.254.169.254", "127.0.0.1:6379", "FLUSHALL"] {
        assert!(!all.contains(leak), "event leaks {leak}: {all}");
        assert!(!logs.contains(leak), "log leaks {leak}");
    }
}

#[test]
fn monitor_mode_scan_forwards_and_flags_nested_json_and_any_parameter() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let body = br#"{"profile": {"avatars": ["https://cdn.example/a.png", "http://[::ffff:169.254.169.254]/latest"]}, "id": 2130706433}"#;
    let head = "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Type: text/plain\r\n";
    assert_eq!(send(&gw, head, b"", body).0, 200);
    assert_eq!(up.last().unwrap().body, body, "monitor: forwarded byte for byte");
    assert_eq!(send(&gw, "GET /page?next=%2F%2F0x7f.1%2Fadmin&id=0 HTTP/1.1\r\nHost: app\r\n", b"", b"").0, 200);
    // Not URL-looking: no event.
    assert_eq!(send(&gw, "GET /page?id=0&n=2130706433&q=hello HTTP/1.1\r\nHost: app\r\n", b"", b"").0, 200);
    assert_eq!(up.count(), 3);
    let evs = wait_events(&gw, "type=ssrf_block", 2);
    assert_eq!(evs.len(), 2, "{evs:?}");
    let mut seen: Vec<(String, String, String)> = evs
        .iter()
        .map(|e| {
            assert_eq!(e["action"], "flagged");
            assert_eq!(e["mode"], "monitor");
            let d = &e["detail"];
            (
                d["source"].as_str().unwrap().into(),
                d["param"].as_str().unwrap().into(),
                d["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("json".into(), "/profile/avatars/1".into(), "metadata".into()),
            ("query".into(), "next".into(), "loopback".into())
        ]
    );
}

#[test]
fn a_body_over_the_rules_cap_is_refused_unread_and_chunked_bodies_are_read() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let head = "POST /api/fetch HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n";
    let big = format!(r#"{{"url": "https://example.com", "pad": "{}"}}"#, "x".repeat(70_000));
    assert_eq!(send(&gw, head, b"", big.as_bytes()), (403, Some("ssrf_blocked".into())));
    let chunked = |body: &str| {
        format!(
            "POST /api/fetch HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    let raw = raw_exchange(gw.proxy_addr(), chunked(r#"{"url":"http://0x7f.1/"}"#).as_bytes(), Duration::from_secs(5));
    assert_eq!(parse_response(&raw).unwrap().status, 403);
    assert_eq!(up.count(), 0);
    let raw =
        raw_exchange(gw.proxy_addr(), chunked(r#"{"url":"https://example.com/"}"#).as_bytes(), Duration::from_secs(5));
    assert_eq!(parse_response(&raw).unwrap().status, 200);
    assert_eq!(up.last().unwrap().body, br#"{"url":"https://example.com/"}"#);
    let evs = wait_events(&gw, "type=ssrf_block", 2);
    let mut reasons: Vec<&str> = evs.iter().map(|e| e["detail"]["reason"].as_str().unwrap()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["body_too_large", "loopback"]);
}

fn wait_events(gw: &Gateway, query: &str, n: usize) -> Vec<serde_json::Value> {
    crate::identity::wait_events(gw, query, n)
}
