//! Framing attacks sent as raw bytes: refused with 400, nothing forwarded, the gateway still
//! serves a clean request afterwards.
use crate::common::*;
use portcullis_tests::{parse_response, parse_status, raw_exchange, slow_send, Client};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn refused(raw: &[u8]) {
    let (up, gw) = simple();
    let resp = raw_exchange(gw.proxy_addr(), raw, T);
    let parsed = parse_response(&resp).unwrap_or_else(|| {
        panic!("no response to {:?}: {:?}", String::from_utf8_lossy(raw), String::from_utf8_lossy(&resp))
    });
    assert_eq!(parsed.status, 400, "{:?} -> {}", String::from_utf8_lossy(raw), String::from_utf8_lossy(&resp));
    // Our JSON body when we are the ones refusing (Pingora's own parser may refuse first with an empty body).
    if !parsed.body.is_empty() {
        assert_eq!(parsed.json()["code"], "bad_request");
    }
    assert_eq!(up.count(), 0, "forwarded: {:?}", up.requests());
    assert_eq!(Client::new().get(&gw.url("/after"), &[]).status, 200, "gateway still serves");
    assert_eq!(up.count(), 1);
}

#[test]
fn content_length_with_transfer_encoding() {
    refused(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn transfer_encoding_with_content_length_reversed_order() {
    refused(b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n");
}

#[test]
fn duplicate_content_length() {
    refused(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc");
}

#[test]
fn conflicting_content_length() {
    refused(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc");
}

#[test]
fn malformed_content_length() {
    for cl in ["-1", "+3", "3x", "0x3", "3, 3", "99999999999999999999"] {
        let req = format!("POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nabc");
        refused(req.as_bytes());
    }
}

#[test]
fn obfuscated_transfer_encoding() {
    for te in ["chunked, identity", "xchunked", "identity", "chunked\x0b"] {
        let req = format!("POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        refused(req.as_bytes());
    }
}

#[test]
fn duplicate_or_missing_host() {
    refused(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    refused(b"GET /x HTTP/1.1\r\n\r\n");
}

#[test]
fn too_many_headers() {
    let mut req = b"GET /x HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..60 {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    refused(&req);
}

#[test]
fn headers_too_large() {
    let big = "v".repeat(9000);
    refused(format!("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let huge = "v".repeat(40_000);
    refused(format!("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {huge}\r\n\r\n").as_bytes());
}

#[test]
fn slowloris_headers_hit_the_total_deadline() {
    let (up, gw) = simple();
    // 1 s header deadline in the test config; drip one byte every 100 ms (each read is quick, so
    // a per-read timeout would never fire).
    let req = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let (sent, resp, closed) = slow_send(gw.proxy_addr(), req, 1, Duration::from_millis(100), Duration::from_secs(8));
    assert!(closed, "the gateway closed the connection");
    assert!(sent < req.len(), "closed before the head completed ({sent} of {} bytes)", req.len());
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(parse_status(&resp), Some(408), "{}", String::from_utf8_lossy(&resp));
    assert_eq!(up.count(), 0);
    assert_eq!(Client::new().get(&gw.url("/after"), &[]).status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let (up, gw) = simple();
    let (first, mut conn) =
        portcullis_tests::raw_exchange_keep_open(gw.proxy_addr(), b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n", T);
    assert_eq!(parse_status(&first), Some(200));
    conn.send(b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let second = conn.read_response(T).expect("second response on the same connection");
    assert_eq!(second.status, 200);
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/one", "/two"]);
}

/// Malformed request bodies, issue 18 item 7. Each is one member of the class "the client's body
/// framing is broken": (name, bytes after the head, how it ends).
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut ext = b"5;".to_vec();
    ext.extend(std::iter::repeat_n(b'a', 100 * 1024));
    ext.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let mut long_trailer = b"5\r\nhello\r\n0\r\nX-Pad: ".to_vec();
    long_trailer.extend(std::iter::repeat_n(b'p', 100 * 1024));
    long_trailer.extend_from_slice(b"\r\n\r\n");
    let mut size_line = vec![b'0'; 100 * 1024];
    size_line.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    // (name, body, half-close after sending)
    vec![
        ("bad chunk-size hex", b"zz\r\nhello\r\n0\r\n\r\n".to_vec(), false),
        ("signed chunk size", b"+5\r\nhello\r\n0\r\n\r\n".to_vec(), false),
        ("0x chunk size", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec(), false),
        ("chunk size overflow", b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_vec(), false),
        ("missing CRLF after chunk data", b"5\r\nhelloXX5\r\nhello\r\n0\r\n\r\n".to_vec(), false),
        ("chunk longer than its size", b"3\r\nhello\r\n0\r\n\r\n".to_vec(), false),
        ("chunk extension abuse", ext, false),
        ("over-long chunk-size line", size_line, false),
        ("oversized trailer", long_trailer, false),
        ("bare LF ending a trailer", b"5\r\nhello\r\n0\r\nX: 1\n\r\n".to_vec(), false),
        ("bare LF ending the trailers", b"5\r\nhello\r\n0\r\nX: 1\r\n\n".to_vec(), false),
        ("bare CR in a trailer", b"5\r\nhello\r\n0\r\nX: 1\rZ\r\n\r\n".to_vec(), false),
        ("bare LF after the last chunk", b"5\r\nhello\r\n0\r\n\n".to_vec(), false),
        ("bare LF line endings", b"5\nhello\n0\n\n".to_vec(), false),
        ("truncated chunk then close", b"5\r\nhel".to_vec(), true),
        ("no terminating chunk then close", b"5\r\nhello\r\n".to_vec(), true),
        ("bad trailer end then close", b"5\r\nhello\r\n0\r\nX-T: 1\r\n".to_vec(), true),
    ]
}

const HOOK_SECRET: &str = "framing-hook-secret-0123456789abcdef";

/// One upstream; `/api` streams its body (no body check), `/hooks` is a webhook route (the whole
/// body is read and verified before anything is forwarded).
fn body_routes() -> (portcullis_tests::Upstream, portcullis_tests::Gateway) {
    let up = portcullis_tests::Upstream::start("app");
    let rules = "version: 1\nwebhooks:\n  - id: hooks\n    path_prefix: /hooks\n    provider: github\n    secrets: [{id: a, env: PC_HOOK}]\n";
    let gw = Cfg::new(&[up.addr()]).rule_file("hooks.yaml", rules).start_env(&[("PC_HOOK", HOOK_SECRET)]);
    (up, gw)
}

fn send_body(gw: &portcullis_tests::Gateway, path: &str, framing: &str, body: &[u8], half_close: bool) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\n{framing}\r\nX-Hub-Signature-256: sha256={}\r\n\r\n",
        "0".repeat(64)
    )
    .into_bytes();
    raw.extend_from_slice(body);
    if half_close {
        portcullis_tests::raw_exchange_half_close(gw.proxy_addr(), &raw, T)
    } else {
        raw_exchange(gw.proxy_addr(), &raw, T)
    }
}

/// No request of the test got a 5xx, in the metrics or in the summary's 5xx rate (the health
/// score's input).
fn assert_no_gateway_errors(gw: &portcullis_tests::Gateway) {
    let text = Client::new().get(&gw.control_url("/metrics"), &[]).text();
    for line in text.lines().filter(|l| l.starts_with("portcullis_requests_total")) {
        assert!(!line.contains("5xx") || line.ends_with(" 0"), "a client's malformed body counted as 5xx: {line}");
    }
    let s = control_get(gw, "/v1/summary?hours=1", VIEWER).json();
    assert_eq!(s["requests"]["errors_5xx"], 0, "{s}");
}

#[test]
fn malformed_bodies_on_a_body_checked_route_are_400_and_nothing_reaches_the_upstream() {
    let (up, gw) = body_routes();
    for (name, body, half_close) in malformed_bodies() {
        let resp = send_body(&gw, "/hooks/x", "Transfer-Encoding: chunked", &body, half_close);
        let parsed = parse_response(&resp)
            .unwrap_or_else(|| panic!("{name}: no response: {:?}", String::from_utf8_lossy(&resp)));
        assert_eq!(parsed.status, 400, "{name}: {}", String::from_utf8_lossy(&resp));
        assert_eq!(parsed.json()["code"], "bad_request", "{name}");
        assert_eq!(up.heads(), 0, "{name}: the upstream got something: {:?}", up.requests());
    }
    // A body shorter than its Content-Length, then the client's half-close.
    for (declared, sent) in [(10, &b"hello"[..]), (1, b""), (65536, b"x")] {
        let resp = send_body(&gw, "/hooks/x", &format!("Content-Length: {declared}"), sent, true);
        assert_eq!(parse_status(&resp), Some(400), "CL {declared}: {}", String::from_utf8_lossy(&resp));
        assert_eq!(up.heads(), 0);
    }
    // A client that goes away for good in the middle of its body gets no answer, and is no
    // gateway error either.
    let mut conn = portcullis_tests::RawConn::connect(gw.proxy_addr());
    conn.send(b"POST /hooks/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc").unwrap();
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(up.heads(), 0);
    // The gateway still serves, and counted none of this as its own failure.
    assert_eq!(Client::new().get(&gw.url("/after"), &[]).status, 200);
    assert_eq!(up.count(), 1);
    assert_no_gateway_errors(&gw);
}

#[test]
fn malformed_bodies_on_a_streamed_route_are_400_and_the_upstream_never_gets_a_complete_request() {
    let (up, gw) = body_routes();
    for (name, body, half_close) in malformed_bodies() {
        let resp = send_body(&gw, "/api/x", "Transfer-Encoding: chunked", &body, half_close);
        let parsed = parse_response(&resp)
            .unwrap_or_else(|| panic!("{name}: no response: {:?}", String::from_utf8_lossy(&resp)));
        assert!(parsed.status == 400 || parsed.status == 413, "{name}: {}", String::from_utf8_lossy(&resp));
        // As documented: the head (and body bytes before the error) may have gone out, the
        // request is never completed upstream.
        assert_eq!(up.count(), 0, "{name}: the upstream got a complete request: {:?}", up.requests());
    }
    for (declared, sent) in [(10, &b"hello"[..]), (1, b""), (1000, b"x")] {
        let resp = send_body(&gw, "/api/x", &format!("Content-Length: {declared}"), sent, true);
        assert_eq!(parse_status(&resp), Some(400), "CL {declared}: {}", String::from_utf8_lossy(&resp));
        assert_eq!(up.count(), 0);
    }
    assert_eq!(Client::new().get(&gw.url("/after"), &[]).status, 200);
    assert_eq!(up.count(), 1);
    assert_no_gateway_errors(&gw);
}

/// What Pingora tolerates and re-frames: chunk extensions, a trailer line without a colon,
/// whitespace after the chunk size. The body is forwarded re-chunked, extensions and trailers
/// dropped (documented): the upstream sees exactly the de-chunked body and nothing else.
#[test]
fn chunk_extensions_and_trailers_are_dropped_never_forwarded() {
    let (up, gw) = body_routes();
    for body in [
        &b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n"[..],
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"5;a=b\r\nhello\r\n0;x\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\t;x\r\nhello\r\n0\r\n\r\n",
    ] {
        let what = String::from_utf8_lossy(body);
        let before = up.count();
        assert_eq!(
            parse_status(&send_body(&gw, "/api/x", "Transfer-Encoding: chunked", body, false)),
            Some(200),
            "{what}"
        );
        let got = up.requests().into_iter().nth(before).unwrap();
        assert_eq!(got.body, b"hello", "{what}");
        assert!(
            got.header("x-trailer").is_none() && got.header("no colon here").is_none(),
            "{what}: {:?}",
            got.headers
        );
        // On a body-checked route it is verified like any body (here: a wrong signature, 401).
        assert_eq!(parse_status(&send_body(&gw, "/hooks/x", "Transfer-Encoding: chunked", body, false)), Some(401));
        assert_eq!(up.count(), before + 1, "{what}");
    }
    assert_no_gateway_errors(&gw);
}

/// A head whose lines end in a bare LF and that is closed by an empty CRLF line is complete to
/// httparse (and to Pingora's parser): it is served at once and forwarded whole, not held until
/// the header deadline (1 s here) and answered 408. Found by the `framing` fuzz target.
#[test]
fn lf_lines_closed_by_a_crlf_blank_line_are_served_at_once() {
    let (up, gw) = simple();
    let heads: [&[u8]; 4] = [
        b"GET /lf0 HTTP/1.1\nHost: a\n\r\n",
        b"GET /lf1 HTTP/1.1\r\nHost: a\n\r\n",
        b"GET /lf2 HTTP/1.1\nHost: a\nX-A: b\n\r\n",
        b"POST /lf3 HTTP/1.1\nHost: a\nContent-Length: 3\n\r\nabc",
    ];
    for (i, head) in heads.iter().enumerate() {
        let started = Instant::now();
        let mut conn = portcullis_tests::RawConn::connect(gw.proxy_addr());
        conn.send(head).unwrap();
        let resp =
            conn.read_response(T).unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(head)));
        assert_eq!(resp.status, 200, "{:?} -> {resp:?}", String::from_utf8_lossy(head));
        assert!(started.elapsed() < Duration::from_millis(900), "held {:?}", started.elapsed());
        let got = up.last().expect("forwarded");
        assert_eq!(got.path, format!("/lf{i}"));
        if i == 3 {
            assert_eq!((got.method.as_str(), &got.body[..]), ("POST", &b"abc"[..]));
        }
    }
    assert_eq!(up.count(), heads.len());
}

/// Empty lines a keep-alive client sends between two requests (RFC 9112 §2.2: a server should
/// ignore them), arriving on their own: the next request is served, not refused as an incomplete
/// head. Found by the `framing` fuzz target.
#[test]
fn stray_empty_lines_before_a_request_are_skipped() {
    let (up, gw) = simple();
    let strays: [&[u8]; 3] = [b"\r\n\r\n", b"\n\n", b"\r\n\n\r\n"];
    for (i, stray) in strays.iter().enumerate() {
        let mut conn = portcullis_tests::RawConn::connect(gw.proxy_addr());
        conn.send(stray).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        conn.send(format!("GET /s{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).unwrap();
        let resp = conn.read_response(T).unwrap_or_else(|| panic!("no response after {stray:?}"));
        assert_eq!(resp.status, 200, "{stray:?} -> {resp:?}");
        assert_eq!(up.last().expect("forwarded").path, format!("/s{i}"));
    }
    assert_eq!(up.count(), strays.len());
}
