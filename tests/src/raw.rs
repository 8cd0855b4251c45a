//! Raw TCP helpers for attacks an HTTP client cannot express (smuggling, malformed framing,
//! slowloris), plus a lenient HTTP/1.x response parser.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RESPONSE_HEADERS: usize = 256;

/// One parsed HTTP/1.x response.
#[derive(Clone, PartialEq, Eq)]
pub struct RawResp {
    pub status: u16,
    pub reason: String,
    /// Minor version: `1` for HTTP/1.1, `0` for HTTP/1.0; `2` for a response over HTTP/2.
    pub version: u8,
    /// Names lowercased, in order, values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked framing removed).
    pub body: Vec<u8>,
}

impl RawResp {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_header_all(&self.headers, name)
    }

    /// Body as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON; panics (showing the body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("response body is not JSON ({e}): status {} body {:?}", self.status, self.text())
        })
    }
}

impl std::fmt::Debug for RawResp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResp")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("version", &self.version)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

pub(crate) fn find_header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// Status code of the first response in `bytes` (only the status line must be present).
/// Note that this is `100` if the first response is a `100 Continue`.
pub fn parse_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.")?;
    let rest = rest.get(1..)?; // minor version digit
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The first complete response in `bytes` (bytes read until the peer closed: a body without
/// Content-Length or chunked framing extends to the end). `None` if incomplete or malformed.
/// Interim `1xx` responses count as responses: use [`parse_responses`] to see all of them.
pub fn parse_response(bytes: &[u8]) -> Option<RawResp> {
    match parse_one(bytes, true, false) {
        Parsed::Done(resp, _) => Some(resp),
        _ => None,
    }
}

/// Like [`parse_response`] for the answer to a `HEAD` request (never a body).
pub fn parse_response_to_head(bytes: &[u8]) -> Option<RawResp> {
    match parse_one(bytes, true, true) {
        Parsed::Done(resp, _) => Some(resp),
        _ => None,
    }
}

/// Every complete response in `bytes`, in order (pipelining / smuggling checks: "did the client
/// receive two responses?"). Stops at the first incomplete or malformed one.
pub fn parse_responses(bytes: &[u8]) -> Vec<RawResp> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_one(&bytes[pos..], true, false) {
            Parsed::Done(resp, used) => {
                out.push(resp);
                pos += used.max(1);
            }
            _ => break,
        }
    }
    out
}

pub(crate) enum Parsed {
    Incomplete,
    Invalid,
    Done(RawResp, usize),
}

/// Parses one response at the start of `bytes`. `eof`: no more bytes will come (a body without
/// framing ends at the end of `bytes`). `head`: the request was HEAD (no body).
pub(crate) fn parse_one(bytes: &[u8], eof: bool, head: bool) -> Parsed {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    let head_len = match config.parse_response(&mut resp, bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(_) => return Parsed::Invalid,
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let mut out = RawResp {
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        version: resp.version.unwrap_or(1),
        headers,
        body: Vec::new(),
    };
    let rest = &bytes[head_len..];
    if head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Parsed::Done(out, head_len);
    }
    if is_chunked(&out.headers) {
        return match decode_chunked(rest) {
            Ok(Some((body, used))) => {
                out.body = body;
                Parsed::Done(out, head_len + used)
            }
            Ok(None) => {
                if eof {
                    Parsed::Invalid
                } else {
                    Parsed::Incomplete
                }
            }
            Err(_) => Parsed::Invalid,
        };
    }
    if let Some(cl) = find_header(&out.headers, "content-length") {
        let Ok(len) = cl.trim().parse::<usize>() else {
            return Parsed::Invalid;
        };
        if rest.len() < len {
            return if eof { Parsed::Invalid } else { Parsed::Incomplete };
        }
        out.body = rest[..len].to_vec();
        return Parsed::Done(out, head_len + len);
    }
    if eof {
        out.body = rest.to_vec();
        Parsed::Done(out, bytes.len())
    } else {
        Parsed::Incomplete
    }
}

/// Whether the last transfer-coding of the (combined) Transfer-Encoding headers is `chunked`.
/// `body` in chunked framing, `piece` bytes per chunk (at least 1), with the last chunk.
pub fn encode_chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(body.len() + body.len() / piece.max(1) * 8 + 5);
    for part in body.chunks(piece.max(1)) {
        wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

pub(crate) fn is_chunked(headers: &[(String, String)]) -> bool {
    let all = find_header_all(headers, "transfer-encoding");
    all.iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// Decodes a chunked body at the start of `bytes`. `Ok(None)`: incomplete. `Ok(Some((body,
/// consumed)))`: complete, including the trailer section. `Err`: malformed framing.
pub(crate) fn decode_chunked(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    const MAX_LINE: usize = 8192;
    let mut pos = 0;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    loop {
        let Some(line_len) = find_crlf(&bytes[pos..]) else {
            if bytes.len() - pos > MAX_LINE {
                return Err("chunk-size line too long".into());
            }
            return Ok(None);
        };
        let line = &bytes[pos..pos + line_len];
        let size_part = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size_str =
            std::str::from_utf8(size_part).map_err(|_| "non-ascii chunk size".to_string())?.trim_matches([' ', '\t']);
        if size_str.is_empty() || size_str.len() > 15 || !size_str.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("bad chunk size {size_str:?}"));
        }
        let size = usize::from_str_radix(size_str, 16).map_err(|e| e.to_string())?;
        pos += line_len + 2;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            loop {
                let Some(l) = find_crlf(&bytes[pos..]) else {
                    return Ok(None);
                };
                pos += l + 2;
                if l == 0 {
                    break;
                }
            }
            let total = spans.iter().map(|s| s.1).sum();
            let mut body = Vec::with_capacity(total);
            for (start, len) in spans {
                body.extend_from_slice(&bytes[start..start + len]);
            }
            return Ok(Some((body, pos)));
        }
        if bytes.len() < pos + size + 2 {
            return Ok(None);
        }
        spans.push((pos, size));
        pos += size;
        if &bytes[pos..pos + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += 2;
    }
}

/// Result of one read attempt.
enum ReadOutcome {
    Data,
    Eof,
    Timeout,
}

/// A raw client connection that keeps what it has read, so several responses can be read from
/// it one after another (pipelining, smuggling follow-ups).
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    /// Connects (5 s timeout); panics on failure.
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Connects (5 s timeout).
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(RawConn { stream, buf: Vec::new(), eof: false })
    }

    /// Writes all of `bytes`. Errors (e.g. the peer already closed) are returned, not panicked.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes: shuts down the write direction (the peer reads EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Bytes read so far and not yet consumed by `read_response*`.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Whether EOF (or a reset) was seen.
    pub fn peer_closed(&self) -> bool {
        self.eof
    }

    fn read_some(&mut self, deadline: Instant) -> ReadOutcome {
        if self.eof {
            return ReadOutcome::Eof;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // A socket read timeout can wake a little before `Instant`'s deadline (seen on a busy
            // VM): only the deadline itself ends the wait.
            let now = Instant::now();
            if now >= deadline {
                return ReadOutcome::Timeout;
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(wait)).is_err() {
                self.eof = true;
                return ReadOutcome::Eof;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return ReadOutcome::Eof;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return ReadOutcome::Data;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(_) => {
                    // Reset / aborted: the peer is gone.
                    self.eof = true;
                    return ReadOutcome::Eof;
                }
            }
        }
    }

    fn read_response_inner(&mut self, timeout: Duration, head: bool) -> Option<(RawResp, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            match parse_one(&self.buf, self.eof, head) {
                Parsed::Done(resp, used) => {
                    let raw: Vec<u8> = self.buf.drain(..used).collect();
                    return Some((resp, raw));
                }
                Parsed::Invalid => return None,
                Parsed::Incomplete => {}
            }
            match self.read_some(deadline) {
                ReadOutcome::Data => {}
                ReadOutcome::Eof => {
                    // One last parse with eof semantics.
                    return match parse_one(&self.buf, true, head) {
                        Parsed::Done(resp, used) => {
                            let raw: Vec<u8> = self.buf.drain(..used).collect();
                            Some((resp, raw))
                        }
                        _ => None,
                    };
                }
                ReadOutcome::Timeout => return None,
            }
        }
    }

    /// Reads until one complete response is available (consuming it) or until `timeout`, EOF or
    /// malformed data (→ `None`; what was read stays in [`RawConn::buffered`]).
    pub fn read_response(&mut self, timeout: Duration) -> Option<RawResp> {
        self.read_response_inner(timeout, false).map(|(r, _)| r)
    }

    /// [`RawConn::read_response`] for the answer to a `HEAD` request.
    pub fn read_response_to_head(&mut self, timeout: Duration) -> Option<RawResp> {
        self.read_response_inner(timeout, true).map(|(r, _)| r)
    }

    /// Reads until the peer closes or `timeout` passes; returns (and consumes) everything
    /// buffered.
    pub fn read_until_close(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while let ReadOutcome::Data = self.read_some(deadline) {}
        std::mem::take(&mut self.buf)
    }

    /// Reads until what is buffered contains `needle` (`true`), or the peer closes or `timeout`
    /// passes (`false`). Nothing is consumed.
    pub fn read_until_contains(&mut self, needle: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !needle.is_empty() && self.buf.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            match self.read_some(deadline) {
                ReadOutcome::Data => {}
                ReadOutcome::Eof | ReadOutcome::Timeout => {
                    return !needle.is_empty() && self.buf.windows(needle.len()).any(|w| w == needle)
                }
            }
        }
    }

    /// Waits up to `timeout` for the peer to close (EOF or reset). Data that arrives meanwhile
    /// is buffered. `true` if the peer closed.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_some(deadline) {
                ReadOutcome::Data => {}
                ReadOutcome::Eof => return true,
                ReadOutcome::Timeout => return false,
            }
        }
    }
}

/// Connects to `addr`, writes `bytes`, then reads until the peer closes or `timeout` passes and
/// returns everything received. The write half stays open (some servers abort a request whose
/// client half-closed), so send `Connection: close` if you want the peer to close promptly,
/// otherwise this waits the full `timeout` on a keep-alive connection.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut conn = RawConn::connect(addr);
    let _ = conn.send(bytes);
    conn.read_until_close(timeout)
}

/// Like [`raw_exchange`] but shuts down the write half after sending.
pub fn raw_exchange_half_close(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut conn = RawConn::connect(addr);
    let _ = conn.send(bytes);
    conn.shutdown_write();
    conn.read_until_close(timeout)
}

/// Connects, writes `bytes`, reads until ONE complete response has arrived (or EOF / `timeout`)
/// and returns the raw bytes of that response (everything received if none completed) together
/// with the still-open connection, e.g. to send a follow-up request and see whether a smuggled
/// request answers it.
pub fn raw_exchange_keep_open(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> (Vec<u8>, RawConn) {
    let mut conn = RawConn::connect(addr);
    let _ = conn.send(bytes);
    match conn.read_response_inner(timeout, false) {
        Some((_, raw)) => (raw, conn),
        None => {
            let raw = std::mem::take(&mut conn.buf);
            (raw, conn)
        }
    }
}

/// Slowloris: sends `bytes` in pieces of `chunk` bytes with `pause` between them, stopping early
/// when the peer closes (or resets) the connection or `overall_timeout` passes. After everything
/// is sent, keeps reading until the peer closes or `overall_timeout`.
/// Returns `(bytes_sent, everything_received, closed_by_peer)`.
pub fn slow_send(
    addr: SocketAddr,
    bytes: &[u8],
    chunk: usize,
    pause: Duration,
    overall_timeout: Duration,
) -> (usize, Vec<u8>, bool) {
    slow_send_after(addr, &[], bytes, chunk, pause, overall_timeout)
}

/// Like [`slow_send`], but `head` goes out at once first (a request head sent whole, its body
/// trickled): `bytes_sent` counts `bytes` only.
pub fn slow_send_after(
    addr: SocketAddr,
    head: &[u8],
    bytes: &[u8],
    chunk: usize,
    pause: Duration,
    overall_timeout: Duration,
) -> (usize, Vec<u8>, bool) {
    let deadline = Instant::now() + overall_timeout;
    let mut conn = RawConn::connect(addr);
    if !head.is_empty() && conn.send(head).is_err() {
        return (0, std::mem::take(&mut conn.buf), true);
    }
    let chunk = chunk.max(1);
    let mut sent = 0;
    while sent < bytes.len() {
        if Instant::now() >= deadline {
            let received = std::mem::take(&mut conn.buf);
            return (sent, received, false);
        }
        let end = (sent + chunk).min(bytes.len());
        if conn.send(&bytes[sent..end]).is_err() {
            conn.eof = true;
            break;
        }
        sent = end;
        if sent == bytes.len() {
            break;
        }
        // Pause, but notice a close (or a response) while pausing.
        let pause_end = (Instant::now() + pause).min(deadline);
        while let ReadOutcome::Data = conn.read_some(pause_end) {}
        if conn.eof {
            break;
        }
    }
    if !conn.eof {
        while let ReadOutcome::Data = conn.read_some(deadline) {}
    }
    let closed = conn.eof;
    (sent, std::mem::take(&mut conn.buf), closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 403 Forbidden\r\n"), Some(403));
        assert_eq!(parse_status(b"HTTP/1.0 200"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status(b"garbage"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
                    5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello world");
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.header("X-A"), Some("1"));
        // Incomplete chunked framing is not a response.
        assert!(parse_response(&raw[..raw.len() - 4]).is_none());
        match parse_one(&raw[..raw.len() - 4], false, false) {
            Parsed::Incomplete => {}
            _ => panic!("expected incomplete"),
        }
    }

    #[test]
    fn content_length_and_pipelined() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
                    HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let all = parse_responses(raw);
        assert_eq!(all.iter().map(|r| r.status).collect::<Vec<_>>(), vec![100, 200, 404]);
        assert_eq!(all[1].body, b"abc");
        assert_eq!(parse_status(raw), Some(100));
    }

    #[test]
    fn body_until_eof_and_no_body_statuses() {
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil-eof").unwrap();
        assert_eq!(r.version, 0);
        assert_eq!(r.body, b"until-eof");
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert!(r.body.is_empty());
        let r = parse_response_to_head(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n").unwrap();
        assert!(r.body.is_empty());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort").is_none());
    }

    #[test]
    fn chunked_decoder_errors() {
        assert!(decode_chunked(b"zz\r\n").is_err());
        assert!(decode_chunked(b"3\r\nabcX\r\n").is_err());
        assert_eq!(decode_chunked(b"3\r\nab").unwrap(), None);
        assert_eq!(decode_chunked(b"0\r\n\r\nrest").unwrap(), Some((Vec::new(), 5)));
    }
}
