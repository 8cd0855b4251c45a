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
mod tests;
