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
