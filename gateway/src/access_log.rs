//! The access log line: one JSON object per request on stdout, the same keys in the same order
//! as every other log line (`timestamp`, `level`, `message`, the fields, `target`), written here
//! rather than through `tracing`'s JSON formatter.
//!
//! Why by hand (measured, benches/README.md "Access log"): the formatter collects the 21 fields
//! of a line into a `serde_json` map (an allocation per key and per value), formats each through
//! `Debug`/`Display`, and serialises the map: ≈ 43k instructions per request with the log on,
//! as much as the whole S3 rule set. Here the line is one `Vec` reused per thread, strings
//! escaped by `serde_json`, numbers by `itoa`, the timestamp's date and time
//! formatted once per second. The line is still written whole with one `write` on stdout's lock,
//! so it never interleaves with a `tracing` line, and nothing is buffered in the process (a
//! `kill -9` loses no written request).
//!
//! Whether the line is written still follows the log filter (`logging.level`, `PORTCULLIS_LOG`):
//! it is an INFO record of target `portcullis::proxy::end`, as it was.

use portcullis_rules::limits::quota::civil_from_days;
use std::cell::RefCell;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// The log target the line is filed under (filters name it; operators grep it).
pub const TARGET: &str = "portcullis::proxy::end";

/// What one access log line says. Empty strings are written as `""`, as before.
pub struct Line<'a> {
    pub success: bool,
    pub duration_ns: u64,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub body_bytes: u64,
    pub source_ip: Option<IpAddr>,
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    pub deny_code: &'a str,
    pub deny_reason: &'a str,
    pub webhook_secret_id: &'a str,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub error: &'a str,
}

/// Whether the log filter lets the access log's records through (cached per callsite by
/// `tracing`: a load and a compare).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

thread_local! {
    /// The line being built, reused (its capacity kept) from one request to the next.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// `YYYY-MM-DDTHH:MM:SS.` of the last second a line was written in.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// Writes `line` to stdout, one whole line in one write.
pub fn write(line: &Line<'_>) {
    BUF.with(|b| {
        let Ok(mut buf) = b.try_borrow_mut() else { return };
        buf.clear();
        render(&mut buf, line, SystemTime::now());
        let _ = std::io::stdout().lock().write_all(&buf);
    });
}

/// The line's bytes, newline included.
pub fn render(buf: &mut Vec<u8>, l: &Line<'_>, now: SystemTime) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"log.logger\":\"access\",\"event.kind\":\"event\",\"event.category\":\"web\",\"event.action\":\"request\",\"event.outcome\":\"");
    buf.extend_from_slice(if l.success { b"success" } else { b"failure" });
    buf.extend_from_slice(b"\",\"event.duration\":");
    number(buf, l.duration_ns);
    string_field(buf, "http.request.id", l.request_id);
    string_field(buf, "http.request.method", l.method);
    string_field(buf, "url.path", l.path);
    buf.extend_from_slice(b",\"http.response.status_code\":");
    number(buf, u64::from(l.status));
    buf.extend_from_slice(b",\"http.request.body.bytes\":");
    number(buf, l.body_bytes);
    buf.extend_from_slice(b",\"source.ip\":\"");
    if let Some(ip) = l.source_ip {
        let _ = write!(buf, "{ip}");
    }
    buf.extend_from_slice(b"\"");
    string_field(buf, "route", l.route);
    buf.extend_from_slice(b",\"upstream.address\":\"");
    if let Some(a) = l.upstream {
        let _ = write!(buf, "{a}");
    }
    buf.extend_from_slice(b"\"");
    string_field(buf, "deny.code", l.deny_code);
    string_field(buf, "deny.reason", l.deny_reason);
    string_field(buf, "webhook.secret_id", l.webhook_secret_id);
    string_field(buf, "tenant.id", l.tenant_id);
    string_field(buf, "user.id", l.user_id);
    string_field(buf, "session.id", l.session_id);
    string_field(buf, "error.message", l.error);
    buf.extend_from_slice(b",\"target\":\"");
    buf.extend_from_slice(TARGET.as_bytes());
    buf.extend_from_slice(b"\"}\n");
}

/// `,"key":"value"` with the value escaped as JSON (the key is ours, plain ASCII).
fn string_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    // Writing into a `Vec` cannot fail; serde_json escapes quotes, backslashes and controls.
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// A decimal number (`itoa`, without `fmt`).
fn number(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `v` in decimal, zero-padded to fill `out` (its high digits dropped if it does not fit).
fn fixed(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// RFC 3339 UTC with microseconds, as `tracing`'s formatter writes it: `2026-12-03T07:06:58.825807Z`.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else { return };
        if s.0 != secs {
            *s = (secs, date_time(secs));
        }
        buf.extend_from_slice(&s.1);
    });
    let mut six = [b'0'; 6];
    fixed(&mut six, u64::from(d.subsec_micros()));
    buf.extend_from_slice(&six);
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` of a time in seconds since the epoch.
fn date_time(secs: u64) -> [u8; 20] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.";
    for (range, v) in [
        (0..4, u64::try_from(year).unwrap_or(0)),
        (5..7, u64::from(month)),
        (8..10, u64::from(day)),
        (11..13, rem / 3600),
        (14..16, rem / 60 % 60),
        (17..19, rem % 60),
    ] {
        if let Some(slot) = out.get_mut(range) {
            fixed(slot, v);
        }
    }
    out
}

#[cfg(test)]
mod tests;
