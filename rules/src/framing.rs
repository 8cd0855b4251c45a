//! Request hygiene: framing that two HTTP parsers could read differently is refused.
//!
//! Request smuggling lives in the gap between how the gateway and the upstream frame a body. We
//! refuse every request whose framing is ambiguous instead of guessing: `Content-Length` together
//! with `Transfer-Encoding`, several or malformed `Content-Length`s, any `Transfer-Encoding` other
//! than exactly `chunked`, several `Host`s, and header sets over the configured limits.

use crate::deny::{Deny, DenyCode};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::HeaderMap;

/// Header limits from `gateway.yaml` (`limits:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Most header fields a request may carry.
    pub max_count: usize,
    /// Most bytes of all header names and values together (plus 4 per field for `: ` and CRLF).
    pub max_bytes: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self { max_count: 100, max_bytes: 32 * 1024 }
    }
}

/// The body length a request declares, once its framing was found unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

fn bad(reason: &'static str) -> Deny {
    Deny::new(DenyCode::BadRequest, reason)
}

/// Checks the request's header set given as `(name, value)` pairs in arrival order (names in
/// any case). `http11` is false for HTTP/1.0 (where `Host` is optional). Runs on the raw request
/// head, before Pingora's parser sees it, so every HTTP/1 request passes here exactly once.
pub fn check<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    limits: HeaderLimits,
    http11: bool,
) -> Result<BodyFraming, Deny> {
    check_fields(headers, limits, http11).map(|(framing, _)| framing)
}

/// [`check`], also returning the `Host` field's value when there is one (it allows at most one).
fn check_fields<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    limits: HeaderLimits,
    http11: bool,
) -> Result<(BodyFraming, Option<&'a [u8]>), Deny> {
    let (mut count, mut bytes) = (0usize, 0usize);
    let (mut hosts, mut host) = (0u32, None);
    let (mut te, mut te_count, mut cl, mut cl_count): (&[u8], u32, &[u8], u32) = (b"", 0, b"", 0);
    for (name, value) in headers {
        count += 1;
        bytes += name.len() + value.len() + 4;
        if name.eq_ignore_ascii_case(HOST.as_str().as_bytes()) {
            hosts += 1;
            host = Some(value);
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes()) {
            te = value;
            te_count += 1;
        } else if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
            cl = value;
            cl_count += 1;
        }
    }
    if count > limits.max_count {
        return Err(bad("too_many_headers"));
    }
    if bytes > limits.max_bytes {
        return Err(bad("headers_too_large"));
    }
    match hosts {
        0 if http11 => return Err(bad("missing_host")),
        1 if host.is_some_and(<[u8]>::is_empty) && http11 => return Err(bad("empty_host")),
        0 | 1 => {}
        _ => return Err(bad("duplicate_host")),
    }
    let framing = match (te_count, cl_count) {
        (0, 0) => Ok(BodyFraming::None),
        (_, 1..) if te_count > 0 => Err(bad("content_length_and_transfer_encoding")),
        (1, 0) if !te.eq_ignore_ascii_case(b"chunked") => Err(bad("unsupported_transfer_encoding")),
        (1, 0) if !http11 => Err(bad("transfer_encoding_on_http10")),
        (1, 0) => Ok(BodyFraming::Chunked),
        (_, 0) => Err(bad("unsupported_transfer_encoding")),
        (0, 1) => parse_content_length(cl).map(BodyFraming::Length).ok_or_else(|| bad("malformed_content_length")),
        _ => Err(bad("duplicate_content_length")),
    }?;
    Ok((framing, host))
}

/// Most header fields the raw-head parser accepts, whatever the configured limit.
pub const MAX_PARSED_HEADERS: usize = 256;

/// What a raw request head that passed [`check_head`] says, for the checks that follow it on
/// the same head (the gateway's request-target check), so that the head is parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// The body length the head declares.
    pub framing: BodyFraming,
    /// The request line's method, as sent.
    pub method: &'a str,
    /// The request line's target, as sent (httparse accepts UTF-8 beyond ASCII, nothing else).
    pub target: &'a str,
    /// The `Host` field's value, when there is one ([`check`] refuses several).
    pub host: Option<&'a [u8]>,
}

/// Parses a complete raw HTTP/1 request head (request line and headers, up to the blank line)
/// and runs [`check`] on it. A head `httparse` cannot parse is refused as `malformed_request`.
pub fn check_head(raw: &[u8], limits: HeaderLimits) -> Result<BodyFraming, Deny> {
    parse_head(raw, limits).map(|head| head.framing)
}

/// [`check_head`], returning what the head says ([`Head`]) for the checks that follow.
pub fn parse_head(raw: &[u8], limits: HeaderLimits) -> Result<Head<'_>, Deny> {
    // Uninitialised slots: zeroing 256 headers (8 KiB) on every request cost more than the parse.
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_PARSED_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(raw, &mut storage) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete_request_head")),
        Err(httparse::Error::TooManyHeaders) => return Err(bad("too_many_headers")),
        Err(_) => return Err(bad("malformed_request")),
    }
    let http11 = req.version == Some(1);
    let (framing, host) = check_fields(req.headers.iter().map(|h| (h.name.as_bytes(), h.value)), limits, http11)?;
    // A complete parse always has a method and a target.
    let (method, target) = (req.method.unwrap_or_default(), req.path.unwrap_or_default());
    Ok(Head { framing, method, target, host })
}

/// True when `buf` holds a complete request head: a line end (`\r\n` or a bare `\n`, as httparse
/// accepts both) followed by an empty line (`\r\n` or `\n`) ends at or after `from - 3`: the
/// head ends with `\n\n` or `\n\r\n` (which `\r\n\r\n` ends with), exactly where httparse
/// finds it complete. Empty lines before the request line are not a head (httparse skips them,
/// as RFC 9112 §2.2 asks). `from` is how much was already looked at, so a head arriving in pieces
/// is searched once.
pub fn head_complete(buf: &[u8], from: usize) -> bool {
    let lead = buf.iter().position(|&c| c != b'\r' && c != b'\n').unwrap_or(buf.len());
    let start = from.saturating_sub(3).max(lead);
    let Some(b) = buf.get(start..) else { return false };
    memchr::memchr_iter(b'\n', b).any(|i| match i.checked_sub(1).and_then(|j| b.get(j)) {
        Some(b'\n') => true,
        Some(b'\r') => i.checked_sub(2).and_then(|j| b.get(j)) == Some(&b'\n'),
        _ => false,
    })
}

/// The inbound `X-Request-Id` of a raw head, if it parses and is well formed (for answers sent
/// before Pingora has parsed the request).
pub fn request_id_of_head(raw: &[u8]) -> Option<String> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_PARSED_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    req.parse(raw).ok()?;
    let v = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("x-request-id"))?.value;
    crate::request_id::is_well_formed(v).then(|| String::from_utf8_lossy(v).into_owned())
}

/// [`check`] over an `http::HeaderMap`.
pub fn check_map(headers: &HeaderMap, limits: HeaderLimits, http11: bool) -> Result<BodyFraming, Deny> {
    check(headers.iter().map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())), limits, http11)
}

/// Strict `Content-Length`: 1 to 15 ASCII digits, nothing else (no sign, no space, no list).
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            h,
            Head { framing: BodyFraming::Length(2), method: "POST", target: "/a?b", host: Some(&b"h.test"[..]) }
        );
        let h = parse_head(b"GET http://a.test/x HTTP/1.0\r\n\r\n", l).unwrap();
        assert_eq!((h.method, h.target, h.host), ("GET", "http://a.test/x", None));
        // UTF-8 beyond ASCII reaches the target as sent; other bytes over 0x7f do not parse.
        assert_eq!(parse_head("GET /é HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(), l).unwrap().target, "/é");
        assert_eq!(parse_head(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", l).unwrap_err().reason, "malformed_request");
        // What check_head refuses, parse_head refuses the same way.
        for raw in
            [&b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..], b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n"]
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
}
