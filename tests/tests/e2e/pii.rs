//! PII scanning of responses through the wire: a real upstream serving realistic JSON (Turkish
//! names, order and reference numbers that are not PII, and checksum-valid IBAN, card and TCKN
//! where a test wants them), the real gateway, a real client.
//!
//! * held (`block` policies): a leaking response is answered 502 `response_blocked` with no byte
//!   of the upstream's (no status, no header, no body); a clean one passes byte for byte with
//!   its headers; redaction and monitoring on the same route; over the cap (fail closed, scan
//!   prefix); compressed despite `identity` (gzip, deflate, br decoded; zstd withheld); HEAD, 204,
//!   a POST body forwarded whole; keep-alive to the upstream; the upstream down; the flag.
//! * streamed (`redact`/`monitor` policies): values masked across read boundaries in a 300 KB
//!   body, length and digests dropped, compressed bodies decoded and redacted, a redacting
//!   stream cut at its cap, monitor passes every byte.
//!
//! Every case checks the `pii_leak_block` event: action, detector counts, never the value.
use crate::common::*;
use crate::identity::{events, wait_events};
use portcullis_tests::{encode_chunked, Client, Recorded, Reply, Upstream};
use std::io::Write;

const IBAN: &str = "TR330006100519786457841326";
const IBAN_PRINTED: &str = "TR33 0006 1005 1978 6457 8413 26";
const CARD: &str = "4111 1111 1111 1111";
const TCKN: &str = "10000000146";

const RULES: &str = r#"version: 1
pii:
  - id: held
    routes: [api]
    detectors: {iban: block, card: block, tckn: redact, email: monitor}
    exclude: {prefixes: [ORD-, REF-, SIP-], json_keys: [trace_id]}
    max_body_bytes: 65536
  - id: prefix
    routes: [prefix]
    detectors: {iban: block, tckn: redact}
    exclude: {prefixes: [ORD-, REF-, SIP-], json_keys: [trace_id]}
    max_body_bytes: 4096
    over_cap: scan_prefix
  - id: streamed
    routes: [stream]
    detectors: {tckn: redact, iban: redact, email: monitor}
    exclude: {prefixes: [ORD-, REF-, SIP-], json_keys: [trace_id]}
  - id: capped
    routes: [capped]
    detectors: {tckn: redact}
    exclude: {prefixes: [ORD-, REF-, SIP-], json_keys: [trace_id]}
    max_body_bytes: 4096
  - id: watch
    routes: [watch]
    detectors: {iban: monitor, tckn: monitor}
    exclude: {prefixes: [ORD-, REF-, SIP-], json_keys: [trace_id]}
webhooks:
  - id: hook
    path_prefix: /stream/hook
    provider: github
    secrets: [{id: s, env: PC_PII_HOOK}]
"#;

const HOOK_SECRET: &str = "pii-e2e-hook-secret-0123456789abcdef";

const ROUTES: &str = "  - { id: api, path_prefix: /api, upstream: app }
  - { id: prefix, path_prefix: /prefix, upstream: app }
  - { id: stream, path_prefix: /stream, upstream: app }
  - { id: capped, path_prefix: /capped, upstream: app }
  - { id: watch, path_prefix: /watch, upstream: app }
  - { id: default, path_prefix: /, upstream: app }
";

/// A realistic order list of about `bytes` bytes: names with non-ASCII letters, order and
/// reference numbers (11-digit ones included, which are not TCKNs behind their prefixes), trace
/// ids, amounts, timestamps; `leak` is put in the record at `at` (0..=1 of the body).
fn orders(bytes: usize, leak: Option<(&str, &str)>, at: f64) -> Vec<u8> {
    const NAMES: [&str; 6] =
        ["Çağrı Öztürk", "Şule Yılmaz", "İbrahim Güneş", "Ayşe Kılıç", "Zoë Brontë", "Jürgen Groß"];
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0usize;
    while len < bytes {
        let item = format!(
            r#"{{"order":"ORD-2024-{:011}","ref":"REF-{:08}","sip":"SIP-{}","customer":"{}","trace_id":"{:011}","amount":{}.{:02},"currency":"TRY","created":"2024-11-{:02}T10:{:02}:00Z","items":{}}}"#,
            10_000_000_000u64 + i as u64 * 7919,
            i * 31,
            4_000_000 + i,
            NAMES[i % NAMES.len()],
            20_000_000_000u64 + i as u64,
            100 + i * 3,
            i % 100,
            1 + i % 28,
            i % 60,
            1 + i % 5
        );
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    if let Some((key, value)) = leak {
        let at = ((items.len() - 1) as f64 * at) as usize;
        let item = &mut items[at];
        item.pop();
        item.push_str(&format!(r#","{key}":"{value}"}}"#));
    }
    format!(r#"{{"orders":[{}]}}"#, items.join(",")).into_bytes()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn brotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(b).unwrap();
    }
    out
}

fn json(body: Vec<u8>) -> Reply {
    Reply::status(200)
        .with_header("content-type", "application/json; charset=utf-8")
        .with_header("etag", "\"v1\"")
        .with_header("x-upstream", "yes")
        .with_header("set-cookie", "session=upstream-secret")
        .with_body(body)
}

/// The app: the path (after the route prefix) says what to serve.
fn app(r: &Recorded) -> Reply {
    let what = r.path.split('/').nth(2).unwrap_or("");
    let n: usize = r.query().and_then(|q| q.strip_prefix("n=")).and_then(|n| n.parse().ok()).unwrap_or(2000);
    match what {
        "clean" => json(orders(n, None, 0.5)),
        "iban" => json(orders(n, Some(("iban", IBAN_PRINTED)), 0.5)),
        "card" => json(orders(n, Some(("card", CARD)), 0.0)),
        "tckn" => json(orders(n, Some(("tckn", TCKN)), 0.5)),
        "email" => json(orders(n, Some(("email", "ayse.kilic@example.com.tr")), 0.5)),
        "iban-head" => json(orders(n, Some(("iban", IBAN)), 0.0)),
        "iban-tail" => json(orders(n, Some(("iban", IBAN)), 1.0)),
        "tckn-head" => json(orders(n, Some(("tckn", TCKN)), 0.0)),
        "gzip-clean" => json(gzip(&orders(n, None, 0.5))).with_header("content-encoding", "gzip"),
        "gzip-iban" => json(gzip(&orders(n, Some(("iban", IBAN)), 0.5))).with_header("content-encoding", "gzip"),
        "deflate-card" => {
            json(deflate(&orders(n, Some(("card", CARD)), 0.5))).with_header("content-encoding", "deflate")
        }
        "br-tckn" => json(brotli(&orders(n, Some(("tckn", TCKN)), 0.5))).with_header("content-encoding", "br"),
        "gzip-tckn" => json(gzip(&orders(n, Some(("tckn", TCKN)), 0.5))).with_header("content-encoding", "gzip"),
        "bad-gzip" => {
            json(b"\x1f\x8b\x08\x00garbage that is not deflate".to_vec()).with_header("content-encoding", "gzip")
        }
        "zstd" => json(b"(\xb5/\xfd not really zstd".to_vec()).with_header("content-encoding", "zstd"),
        "two-codings" => json(gzip(&orders(n, Some(("iban", IBAN)), 0.5)))
            .with_header("content-encoding", "identity")
            .with_header("content-encoding", "gzip"),
        "chunked-iban" => {
            // The upstream's own chunking puts the IBAN across two chunks.
            let body = orders(n, Some(("iban", IBAN)), 0.5);
            let cut = body.windows(IBAN.len()).position(|w| w == IBAN.as_bytes()).unwrap() + 10;
            json(encode_chunked(&body, cut)).with_header("transfer-encoding", "chunked")
        }
        "png" => Reply::status(200).with_header("content-type", "image/png").with_body(format!("PNG {IBAN}")),
        "nocontent" => Reply::status(204).with_header("x-upstream", "yes"),
        "echo" | "hook" => json(r.body.clone()),
        _ => Reply::status(404),
    }
}

fn cfg(up: &Upstream) -> Cfg {
    Cfg::new(&[up.addr()]).routes(ROUTES).rule_file("pii.yaml", RULES)
}

fn start(up: &Upstream) -> portcullis_tests::Gateway {
    cfg(up).start_env(&[("PC_PII_HOOK", HOOK_SECRET)])
}

fn pii_events(gw: &portcullis_tests::Gateway) -> Vec<serde_json::Value> {
    events(gw, "type=pii_leak_block&limit=500")
}

/// The newest event for this path (waits for it).
fn event_for(gw: &portcullis_tests::Gateway, path: &str, seen: usize) -> serde_json::Value {
    let evs = wait_events(gw, "type=pii_leak_block&limit=500", seen + 1);
    let ev = evs.iter().find(|e| e["path"] == path).cloned().unwrap_or_else(|| panic!("no event for {path}: {evs:?}"));
    let text = ev.to_string();
    for v in [IBAN, "0006 1005 1978", "1111 1111 1111", TCKN, "ayse.kilic"] {
        assert!(!text.contains(v), "a value in the event: {text}");
    }
    ev
}

#[test]
fn held_route_withholds_leaks_whole_and_passes_clean_responses_byte_for_byte() {
    let up = Upstream::with_fn("app", app);
    let gw = start(&up);
    let c = Client::new();

    // Clean: byte for byte, the upstream's headers with ours, identity asked, no range forwarded.
    let r = c.get(&gw.url("/api/clean"), &[("range", "bytes=0-10"), ("accept-encoding", "gzip, br")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, orders(2000, None, 0.5));
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    assert!(r.header("x-request-id").is_some());
    let seen = up.last().unwrap();
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(seen.header("range"), None);
    assert!(seen.header("x-request-id").is_some() && seen.header("x-forwarded-for").is_some());
    assert_eq!(pii_events(&gw).len(), 0, "a clean response is not an event");

    // IBAN (printed form) and card: withheld, nothing of the upstream's response.
    for (path, kind) in [("/api/iban", "iban"), ("/api/card", "card")] {
        let before = pii_events(&gw).len();
        let r = c.get(&gw.url(path), &[]);
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "response_blocked");
        assert_eq!(r.header("x-upstream"), None, "{path}: an upstream header leaked");
        assert_eq!(r.header("set-cookie"), None);
        assert_eq!(r.header("etag"), None);
        assert!(!r.text().contains("ORD-") && !r.text().contains("Çağrı"), "{path}: upstream body leaked");
        let ev = event_for(&gw, path, before);
        assert_eq!(ev["action"], "blocked");
        assert_eq!(ev["rule_id"], "held");
        assert_eq!(ev["route"], "api");
        assert_eq!(ev["detail"]["kinds"][kind], 1, "{ev}");
        assert!(ev["detail"]["sample"]["masked"].as_str().unwrap().contains('*'), "{ev}");
    }

    // TCKN on the same route: redacted, not blocked; the length is the new body's.
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/api/tckn"), &[]);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(!text.contains(TCKN) && text.contains(r#""tckn":"*******0146""#), "{}", &text[..200]);
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    assert_eq!(r.header("etag"), None, "the upstream's validator no longer describes the body");
    serde_json::from_slice::<serde_json::Value>(&r.body).expect("still JSON");
    let ev = event_for(&gw, "/api/tckn", before);
    assert_eq!((ev["action"].as_str(), ev["detail"]["kinds"]["tckn"].as_u64()), (Some("redacted"), Some(1)));
    // Email is monitored: passed as it is, flagged.
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/api/email"), &[]);
    assert_eq!(r.body, orders(2000, Some(("email", "ayse.kilic@example.com.tr")), 0.5));
    assert_eq!(event_for(&gw, "/api/email", before)["action"], "flagged");

    // Over the cap (64 KiB, fail closed): withheld even when clean.
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/api/clean?n=100000"), &[]);
    assert_eq!(r.status, 502);
    let ev = event_for(&gw, "/api/clean", before);
    assert_eq!((ev["action"].as_str(), ev["detail"]["over_cap"].as_str()), (Some("blocked"), Some("fail_closed")));
    // Just under the cap: passes whole.
    let r = c.get(&gw.url("/api/clean?n=60000"), &[]);
    assert_eq!((r.status, r.body.len()), (200, orders(60000, None, 0.5).len()));

    // Compressed despite `identity`: decoded to scan; a clean body goes out as the upstream
    // compressed it, a leak is withheld, a redaction goes out decoded.
    let r = c.get(&gw.url("/api/gzip-clean"), &[]);
    assert_eq!((r.status, r.header("content-encoding")), (200, Some("gzip")));
    assert_eq!(r.body, gzip(&orders(2000, None, 0.5)));
    for path in ["/api/gzip-iban", "/api/deflate-card"] {
        let r = c.get(&gw.url(path), &[]);
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.header("content-encoding"), None);
    }
    let r = c.get(&gw.url("/api/br-tckn"), &[]);
    assert_eq!((r.status, r.header("content-encoding")), (200, None));
    assert!(r.text().contains("*******0146") && !r.text().contains(TCKN));
    // What cannot be decoded is withheld: corrupt gzip, an unknown coding.
    for (path, reason) in [
        ("/api/bad-gzip", "decode_error"),
        ("/api/zstd", "unsupported_encoding"),
        ("/api/two-codings", "unsupported_encoding"),
    ] {
        let before = pii_events(&gw).len();
        let r = c.get(&gw.url(path), &[]);
        assert_eq!(r.status, 502, "{path}");
        let ev = event_for(&gw, path, before);
        assert_eq!(ev["detail"]["unscanned"], reason, "{ev}");
    }

    // The upstream's chunking splits the IBAN: still withheld.
    let r = c.get(&gw.url("/api/chunked-iban"), &[]);
    assert_eq!(r.status, 502);
    let r = c.get(&gw.url("/stream/chunked-iban"), &[]);
    assert!(
        r.text().contains("**********************1326") && !r.text().contains(IBAN),
        "streamed: masked across chunks"
    );

    // Not scanned: another content type, HEAD, 204.
    let r = c.get(&gw.url("/api/png"), &[]);
    assert_eq!((r.status, r.text().contains(IBAN)), (200, true));
    let r = c.request("HEAD", &gw.url("/api/iban"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("yes"));
    let r = c.get(&gw.url("/api/nocontent"), &[]);
    assert_eq!((r.status, r.header("x-upstream")), (204, Some("yes")));

    // A request body reaches the upstream whole (and the echo is scanned like any response).
    let body = orders(3000, None, 0.5);
    let r = c.post(&gw.url("/api/echo"), &[("content-type", "application/json")], &body);
    assert_eq!((r.status, &r.body), (200, &body));
    assert_eq!(up.last().unwrap().body, body);
    let r = c.post(&gw.url("/api/echo"), &[], format!(r#"{{"iban":"{IBAN}"}}"#));
    assert_eq!(r.status, 502, "an echoed IBAN is withheld too");
    // Chunked, 60 KB (the echo must stay under the rule's 64 KiB), with `Expect: 100-continue`:
    // read whole (any framing), sent with its length.
    let big = orders(60_000, None, 0.5);
    let mut wire =
        b"POST /api/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
            .to_vec();
    wire.extend_from_slice(&encode_chunked(&big, 7000));
    let raw = portcullis_tests::raw_exchange(gw.proxy_addr(), &wire, std::time::Duration::from_secs(5));
    let responses = portcullis_tests::parse_responses(&raw);
    let last = responses.last().unwrap();
    assert_eq!((responses[0].status, last.status), (100, 200), "{:?}", String::from_utf8_lossy(&raw[..200]));
    assert_eq!(last.body, big);
    let seen = up.last().unwrap();
    assert_eq!((seen.body.len(), seen.header("content-length")), (big.len(), Some(big.len().to_string().as_str())));
    assert_eq!((seen.header("transfer-encoding"), seen.header("expect")), (None, None));
    // Over the route's cap: 413, nothing sent.
    let n = up.count();
    let mut conn = portcullis_tests::RawConn::connect(gw.proxy_addr());
    conn.send(b"POST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2097152\r\n\r\nxxxx").unwrap();
    assert_eq!(conn.read_response(std::time::Duration::from_secs(5)).unwrap().status, 413);
    assert_eq!(up.count(), n);

    // The gateway's own upstream connections are kept alive and reused.
    let conns = up.connections();
    for _ in 0..10 {
        assert_eq!(c.get(&gw.url("/api/clean?n=100"), &[]).status, 200);
    }
    assert!(up.connections() <= conns + 1, "{} new upstream connections for 10 requests", up.connections() - conns);

    // Metrics.
    assert!(metric(&gw, "portcullis_pii_responses_total{rule=\"held\",result=\"blocked\"}").unwrap() >= 5.0);
    assert!(metric(&gw, "portcullis_pii_responses_total{rule=\"held\",result=\"clean\"}").unwrap() >= 10.0);
}

#[test]
fn held_route_scan_prefix_upstream_failures_and_the_flag() {
    let up = Upstream::with_fn("app", app);
    let gw = start(&up);
    let c = Client::new();

    // Over the 4 KiB cap with `scan_prefix`: a leak in the prefix is still withheld, a leak
    // after it passes (flagged: the rest went out unscanned); a redaction in the prefix goes
    // out, the rest follows as it came.
    let r = c.get(&gw.url("/prefix/iban-head?n=20000"), &[]);
    assert_eq!(r.status, 502);
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/prefix/iban-tail?n=20000"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, orders(20000, Some(("iban", IBAN)), 1.0));
    let ev = event_for(&gw, "/prefix/iban-tail", before);
    assert_eq!((ev["action"].as_str(), ev["detail"]["over_cap"].as_str()), (Some("flagged"), Some("scan_prefix")));
    let r = c.get(&gw.url("/prefix/tckn-head?n=20000"), &[]);
    assert_eq!(r.status, 200);
    let want = String::from_utf8(orders(20000, Some(("tckn", TCKN)), 0.0)).unwrap().replacen(TCKN, "*******0146", 1);
    assert_eq!(r.text(), want);
    assert_eq!(r.header("content-length"), None, "redacted and streamed: chunked");

    // The upstream down or hanging up: the usual answers, nothing half-sent.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let gw2 = Cfg::new(&[dead_addr])
        .pool_settings("")
        .routes(ROUTES)
        .rule_file("pii.yaml", RULES)
        .start_env(&[("PC_PII_HOOK", HOOK_SECRET)]);
    let r = c.get(&gw2.url("/api/clean"), &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("upstream_unavailable")));
    up.set_handler(std::sync::Arc::new(|_: &Recorded| Reply::hang_up()));
    let r = c.get(&gw.url("/api/clean"), &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("upstream_unavailable")));
    up.set_handler(std::sync::Arc::new(app));

    // The flag off: the leak passes (an emergency switch); on again: withheld.
    let flag = |on: bool| {
        let body = format!(r#"{{"enabled":{on},"reason":"e2e"}}"#);
        let auth = bearer(OPERATOR);
        let r = c.request(
            "PUT",
            &gw.control_url("/v1/flags/pii_scanning"),
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    flag(false);
    let r = c.get(&gw.url("/api/iban"), &[]);
    assert_eq!((r.status, r.text().contains(IBAN_PRINTED)), (200, true));
    assert_eq!(up.last().unwrap().header("accept-encoding"), None, "nothing asked of the upstream either");
    flag(true);
    assert_eq!(c.get(&gw.url("/api/iban"), &[]).status, 502);
}

#[test]
fn streamed_routes_redact_across_reads_decode_and_cut_at_the_cap() {
    let up = Upstream::with_fn("app", app);
    let gw = start(&up);
    let c = Client::new();

    // 300 KB, TCKNs and IBANs all through it (Pingora reads it in many pieces): every one
    // masked, nothing else changed, chunked, the upstream's validator gone.
    let mut body = String::from_utf8(orders(300_000, None, 0.5)).unwrap();
    let mut at = 1000;
    let mut n = 0;
    while at < body.len() {
        let i = body[at..].find(r#""customer""#).map(|i| at + i).unwrap();
        let v = if n % 2 == 0 { TCKN } else { IBAN };
        body.insert_str(i, &format!(r#""id":"{v}","#));
        n += 1;
        at = i + 4093;
    }
    let want = body.replace(TCKN, "*******0146").replace(IBAN, "**********************1326");
    let served = body.clone();
    up.set_handler(std::sync::Arc::new(move |r: &Recorded| {
        if r.path == "/stream/many" {
            json(served.clone().into_bytes())
        } else {
            app(r)
        }
    }));
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/stream/many"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.text() == want, "redacted body differs");
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert_eq!(r.header("accept-ranges"), Some("none"));
    let ev = event_for(&gw, "/stream/many", before);
    assert_eq!(ev["action"], "redacted");
    assert_eq!(ev["detail"]["kinds"]["tckn"].as_u64().unwrap() + ev["detail"]["kinds"]["iban"].as_u64().unwrap(), n);
    assert_eq!(up.last().unwrap().header("accept-encoding"), Some("identity"));

    // Clean: unchanged bytes (still chunked: the length cannot be promised before the end).
    let r = c.get(&gw.url("/stream/clean?n=50000"), &[]);
    assert_eq!(r.body, orders(50000, None, 0.5));

    // Compressed anyway: decoded and redacted, sent without its coding.
    let r = c.get(&gw.url("/stream/gzip-tckn?n=50000"), &[]);
    assert_eq!((r.status, r.header("content-encoding")), (200, None));
    assert_eq!(
        r.text(),
        String::from_utf8(orders(50000, Some(("tckn", TCKN)), 0.5)).unwrap().replace(TCKN, "*******0146")
    );
    // An unknown coding on a redacting route: withheld before the head went out.
    let r = c.get(&gw.url("/stream/zstd"), &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("response_blocked")));
    assert_eq!(r.header("x-upstream"), None);

    // A redacting stream over its cap (fail closed): cut there, the client sees a broken body.
    let before = pii_events(&gw).len();
    let r = c.try_request("GET", &gw.url("/capped/clean?n=20000"), &[], None);
    match r {
        Err(_) => {}
        Ok(r) => assert!(r.body.len() <= 4096 + 400, "{} bytes past a 4 KiB cap", r.body.len()),
    }
    let ev = event_for(&gw, "/capped/clean", before);
    assert_eq!(ev["action"], "blocked");

    // Monitor: every byte as the upstream sent it, compressed or not, flagged.
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/watch/iban"), &[]);
    assert_eq!(r.body, orders(2000, Some(("iban", IBAN_PRINTED)), 0.5));
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert_eq!(event_for(&gw, "/watch/iban", before)["action"], "flagged");
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/watch/gzip-tckn"), &[]);
    assert_eq!(
        (r.header("content-encoding"), r.body.clone()),
        (Some("gzip"), gzip(&orders(2000, Some(("tckn", TCKN)), 0.5)))
    );
    assert_eq!(event_for(&gw, "/watch/gzip-tckn", before)["detail"]["kinds"]["tckn"], 1);
    // A monitored body that cannot be decoded passes, flagged as unscanned.
    let before = pii_events(&gw).len();
    let r = c.get(&gw.url("/watch/bad-gzip"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(event_for(&gw, "/watch/bad-gzip", before)["detail"]["unscanned"], "decode_error");

    // A signed webhook with a chunked body over Pingora's 64 KiB replay buffer goes out through
    // the gateway's own exchange; its response still streams through the route's redaction.
    let body = orders(100_000, Some(("tckn", TCKN)), 0.5);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    let sig = hex::encode(ring::hmac::sign(&key, &body).as_ref());
    let mut wire = format!(
        "POST /stream/hook HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nx-github-delivery: d-1\r\nx-hub-signature-256: sha256={sig}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    wire.extend_from_slice(&encode_chunked(&body, 9000));
    let before = pii_events(&gw).len();
    let raw = portcullis_tests::raw_exchange(gw.proxy_addr(), &wire, std::time::Duration::from_secs(5));
    let r = portcullis_tests::parse_response(&raw).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&raw[..raw.len().min(400)]));
    assert_eq!(r.text(), String::from_utf8(body.clone()).unwrap().replace(TCKN, "*******0146"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(up.last().unwrap().body, body, "the upstream got the whole body");
    assert_eq!(event_for(&gw, "/stream/hook", before)["action"], "redacted");

    // A route with no policy is never touched.
    let r = c.get(&gw.url("/other/iban"), &[("accept-encoding", "gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().unwrap().header("accept-encoding"), Some("gzip"));
}
