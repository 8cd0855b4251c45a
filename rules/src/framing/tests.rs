use super::*;
use http::HeaderValue;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    m
}

fn reason(pairs: &[(&str, &str)]) -> String {
    check_map(&map(pairs), HeaderLimits::default(), true).unwrap_err().reason.into_owned()
}

#[test]
fn a_head_is_complete_at_its_blank_line_wherever_the_pieces_fall() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(head_complete(head, 0));
    for cut in 0..head.len() {
        assert!(!head_complete(&head[..cut], 0), "{cut}");
        // Already looked at up to `cut`, the rest arrives: still found.
        assert!(head_complete(head, cut), "{cut}");
    }
    assert!(head_complete(b"GET / HTTP/1.0\n\n", 0));
    assert!(head_complete(b"GET / HTTP/1.0\nHost: a\n\n", 5));
    assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0));
    assert!(!head_complete(b"GET / HTTP/1.1\r\n\rX: a\r\n", 0));
    assert!(!head_complete(b"\r\n\r\n", 10));
    // Empty lines alone are what httparse skips before a request line, not a head.
    assert!(!head_complete(b"\n\n", 0));
    assert!(!head_complete(b"\n", 0));
}

/// Found by the `framing` fuzz target (fuzz/corpus/framing/regress-lf-then-crlf): a header
/// line ended by a bare `\n` and then an empty `\r\n` line is a complete head to httparse
/// (so `check_head` accepts it), but `head_complete` waited for more bytes: the gateway
/// answered such a request with a header timeout instead of serving it.
#[test]
fn regression_fuzz_framing_lf_then_crlf_ends_the_head() {
    let l = HeaderLimits::default();
    for head in [
        &b"GET / HTTP/1.1\nHost: a\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.0\n\r\n",
        b"POST / HTTP/1.1\nHost: a\nContent-Length: 3\n\r\nabc",
    ] {
        assert!(check_head(head, l).is_ok(), "{:?}", String::from_utf8_lossy(head));
        assert!(head_complete(head, 0), "{:?}", String::from_utf8_lossy(head));
        for cut in 1..head.len() {
            if !head_complete(&head[..cut], 0) {
                assert!(head_complete(head, cut), "{:?} from {cut}", String::from_utf8_lossy(head));
            }
        }
    }
    // Still not complete without the empty line.
    assert!(!head_complete(b"GET / HTTP/1.1\nHost: a\r\n", 0));
    assert!(!head_complete(b"GET / HTTP/1.1\nHost: a\n\r", 0));
}

/// Found by the `framing` fuzz target (fuzz/corpus/framing/regress-only-empty-lines): empty
/// lines before the request line (which httparse skips, RFC 9112 §2.2) were taken for the
/// end of a head, so a keep-alive client's stray CRLFs between two requests got
/// `incomplete_request_head` (400, connection closed) instead of its next request served.
#[test]
fn regression_fuzz_framing_leading_empty_lines_are_not_a_head() {
    for stray in [&b"\r\n\r\n"[..], b"\n\n", b"\n\n\n\n\n", b"\r\n\n\r\n", b"\r\n\r\n\r\n"] {
        assert!(!head_complete(stray, 0), "{stray:?}");
        let mut full = stray.to_vec();
        full.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(head_complete(&full, 0), "{full:?}");
        assert!(head_complete(&full, stray.len()), "{full:?}");
        assert_eq!(check_head(&full, HeaderLimits::default()).unwrap(), BodyFraming::None);
    }
    // A head that ends right after the stray lines is found too.
    assert!(head_complete(b"\r\nGET / HTTP/1.0\n\n", 0));
    assert!(head_complete(b"\nGET / HTTP/1.0\n\r\n", 0));
}

#[test]
fn clean_requests_pass() {
    let ok = |p: &[(&str, &str)]| check_map(&map(p), HeaderLimits::default(), true).unwrap();
    assert_eq!(ok(&[("host", "a")]), BodyFraming::None);
    assert_eq!(ok(&[("host", "a"), ("content-length", "12")]), BodyFraming::Length(12));
    assert_eq!(ok(&[("host", "a"), ("transfer-encoding", "Chunked")]), BodyFraming::Chunked);
    assert_eq!(check_map(&map(&[]), HeaderLimits::default(), false).unwrap(), BodyFraming::None);
}

#[test]
fn smuggling_shapes_are_refused() {
    let h = ("host", "a");
    assert_eq!(
        reason(&[h, ("content-length", "5"), ("transfer-encoding", "chunked")]),
        "content_length_and_transfer_encoding"
    );
    assert_eq!(reason(&[h, ("content-length", "5"), ("content-length", "5")]), "duplicate_content_length");
    for bad_cl in ["", "-1", "+5", " 5", "5 ", "5,5", "0x10", "1e3", "9999999999999999"] {
        assert_eq!(reason(&[h, ("content-length", bad_cl)]), "malformed_content_length", "{bad_cl:?}");
    }
    for bad_te in ["chunked, identity", "identity", "xchunked", "chunked;q=1", "gzip, chunked", " chunked"] {
        let r = check_map(&map(&[h, ("transfer-encoding", bad_te)]), HeaderLimits::default(), true);
        // HeaderValue trims nothing, but " chunked" fails the exact comparison either way.
        assert!(r.is_err(), "{bad_te:?}");
    }
    assert_eq!(
        reason(&[h, ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")]),
        "unsupported_transfer_encoding"
    );
    assert_eq!(reason(&[("host", "a"), ("host", "b")]), "duplicate_host");
    assert_eq!(reason(&[]), "missing_host");
    let r = check_map(&map(&[("transfer-encoding", "chunked")]), HeaderLimits::default(), false);
    assert_eq!(r.unwrap_err().reason, "transfer_encoding_on_http10");
}

#[test]
fn raw_heads() {
    let l = HeaderLimits::default();
    assert_eq!(check_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", l).unwrap(), BodyFraming::None);
    assert_eq!(
        check_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", l)
            .unwrap_err()
            .reason,
        "content_length_and_transfer_encoding"
    );
    assert_eq!(check_head(b"GET / HTTP/1.0\r\n\r\n", l).unwrap(), BodyFraming::None);
    assert_eq!(check_head(b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", l).unwrap_err().reason, "malformed_request");
    assert_eq!(check_head(b"GET / HTTP/1.1\r\nHost: a\r\n", l).unwrap_err().reason, "incomplete_request_head");
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..300 {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(check_head(&many, l).unwrap_err().reason, "too_many_headers");
    assert_eq!(
        request_id_of_head(b"GET / HTTP/1.1\r\nX-Request-Id: abcdefgh-1\r\n\r\n").as_deref(),
        Some("abcdefgh-1")
    );
    assert_eq!(request_id_of_head(b"GET / HTTP/1.1\r\nX-Request-Id: bad id\r\n\r\n"), None);
}

#[test]
fn a_parsed_head_says_what_its_target_check_needs() {
    let l = HeaderLimits::default();
    let h = parse_head(b"POST /a?b HTTP/1.1\r\nX-A: 1\r\nHost: h.test\r\nContent-Length: 2\r\n\r\nhi", l).unwrap();
    assert_eq!(h, Head { framing: BodyFraming::Length(2), method: "POST", target: "/a?b", host: Some(&b"h.test"[..]) });
    let h = parse_head(b"GET http://a.test/x HTTP/1.0\r\n\r\n", l).unwrap();
    assert_eq!((h.method, h.target, h.host), ("GET", "http://a.test/x", None));
    // UTF-8 beyond ASCII reaches the target as sent; other bytes over 0x7f do not parse.
    assert_eq!(parse_head("GET /é HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(), l).unwrap().target, "/é");
    assert_eq!(parse_head(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", l).unwrap_err().reason, "malformed_request");
    // What check_head refuses, parse_head refuses the same way.
    for raw in [&b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..], b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n"]
    {
        assert_eq!(parse_head(raw, l).unwrap_err().reason, check_head(raw, l).unwrap_err().reason);
    }
}

#[test]
fn limits_hold() {
    let many: Vec<(String, String)> = (0..101).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let pairs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(reason(&pairs), "too_many_headers");
    let big = "v".repeat(40 * 1024);
    assert_eq!(reason(&[("host", "a"), ("x-big", &big)]), "headers_too_large");
}
