//! The one path canonicaliser.
//!
//! Every rule matches the canonical path and the canonical path is what is forwarded upstream, so
//! the canonical form must leave no room for an upstream to read the path differently than we do.
//! Anything an upstream could plausibly decode, strip or normalise into something else is either
//! normalised here (so both sides see the same bytes) or refused with a [`CanonError`] (HTTP 400).
//!
//! The principle: after canonicalisation nothing remains that a common application stack
//! (Tomcat/Spring, Jetty, Express, Rack/Rails, Django, Werkzeug, PHP, ASP.NET/IIS, Go net/http,
//! nginx as a second hop) decodes into a path delimiter or a dot segment, or removes from the
//! path. The table of which stack decodes what is in `docs/rules.md` ("How application stacks
//! read a path"); `rules/tests/canon_stacks.rs` implements each stack's routing view from that
//! table and checks that every view of every canonical path has the canonical path's segments.
//!
//! The canonical form is plain ASCII:
//!
//! * it starts with `/`, has no empty segment except an optional trailing one (`//` is merged)
//!   and no `.`/`..` segment (RFC 3986 §5.2.4, but `..` above the root is refused, not clamped);
//! * unreserved characters (`A-Z a-z 0-9 - . _ ~`) are never percent-encoded;
//! * every other percent-escape is in uppercase hex; non-ASCII is valid UTF-8, percent-encoded;
//! * bytes outside RFC 3986 `pchar` that are harmless (space, `"`, `<`, `{`, …) are encoded;
//! * no `;`, `?`, `#`, `\`, NUL or control byte, raw or encoded (`%3B`, `%3F`, `%23`, `%5C`, …),
//!   and no `%2F`: each is a delimiter to some stack (path parameters, query, fragment, Windows
//!   separator, C string end, segment);
//! * no segment a stack removes or rewrites: `..` above the root, a trailing `.` or space
//!   (Windows), `::$DATA` (NTFS streams), `(S(x))` (ASP.NET cookieless sessions);
//! * nothing a second decode would change (`%252e`, `%25u002e`), no overlong or invalid UTF-8,
//!   no character that Unicode normalisation or Windows best-fit maps to path syntax.
//!
//! [`canonicalize`] is idempotent and returns [`Cow::Borrowed`] (no allocation) when the input is
//! already canonical; otherwise it allocates exactly once.
//!
//! Case: the canonical path keeps the case it was sent in, and every path match in the rules
//! ignores ASCII case ([`has_prefix_ignore_case`], case-insensitive path regexes): many stacks
//! route `/ADMIN` like `/admin`, and a rule must not be sidestepped by a case variant.
//!
//! Known limits (deliberately accepted): IIS 8.3 short names (`/ADMINI~1`) are not detected,
//! Unicode letters that merely *look* like ASCII letters outside the fullwidth block
//! (mathematical alphanumerics, ligatures, `ſ`, Kelvin sign) are accepted, and `+` is not a
//! space (no common stack decodes `+` in the path).
#![deny(clippy::indexing_slicing)]

use crate::query::hex_val;
use std::borrow::Cow;
use std::fmt;

/// The longest raw path accepted, and the longest canonical path produced, in bytes.
pub const MAX_PATH_LEN: usize = 8192;

/// Why a path was refused. Every variant maps to HTTP 400 `bad_request` in the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanonError {
    /// The target does not start with `/` (absolute-form, authority-form, `*`, empty).
    NotOriginForm,
    /// Longer than [`MAX_PATH_LEN`], before or after canonicalisation.
    TooLong,
    /// `%` not followed by two hex digits (this includes IIS-style `%u002e`).
    BadPercentEncoding,
    /// `%2F`: an upstream that decodes it would see a segment boundary we did not.
    EncodedSlash,
    /// `%5C`: a backslash is a separator on Windows upstreams.
    EncodedBackslash,
    /// A raw `\`.
    Backslash,
    /// A NUL byte, raw or `%00`.
    Nul,
    /// A control character other than NUL: raw or encoded C0 (0x01-0x1F), DEL, or C1 (U+0080-U+009F).
    ControlCharacter,
    /// `%25` followed by something a second decode would turn into a character (`%252e`, or
    /// IIS-style `%25u002e`), in the input or in what decoding produced (`%25%32%65` → `%252e`).
    DoubleEncoding,
    /// Non-ASCII bytes that are not well-formed UTF-8 (including surrogates and > U+10FFFF).
    InvalidUtf8,
    /// An overlong UTF-8 encoding (`%C0%AE` is a `.` to a lenient decoder).
    OverlongEncoding,
    /// A character that some upstream may turn into path syntax (`/ \ . % ? # ; :`) or plain
    /// ASCII through NFKC/NFC normalisation or Windows "best-fit" mapping:
    ///
    /// * U+037E Greek question mark (canonically `;`, so even NFC);
    /// * U+2024 one dot leader `.`, U+2025 two dot leader `..`, U+2026 ellipsis `...`;
    /// * U+2044 fraction slash, U+2215 division slash, U+2216 set minus, U+29F5 reverse solidus
    ///   operator, U+29F8 big solidus, U+29F9 big reverse solidus (best-fit `/` and `\`);
    /// * U+2047..U+2049 `??`, `?!`, `!?`;
    /// * U+2A74 `::=`;
    /// * U+2100 `a/c`, U+2101 `a/s`, U+2105 `c/o`, U+2106 `c/u`;
    /// * U+2488..U+249B digit full stop (`1.` … `20.`), U+1F100..U+1F10A digit full stop / comma;
    /// * U+33C2 `a.m.`, U+33C7 `Co.`, U+33D8 `p.m.`;
    /// * U+FE10..U+FE19 vertical forms (`,` `:` `;` `!` `?` `...`), U+FE30 vertical two dot leader;
    /// * U+FE50..U+FE6B small form variants (U+FE52 `.`, U+FE68 `\`, U+FE6A `%`, U+FE56 `?` …);
    /// * U+FF01..U+FF5E the whole fullwidth ASCII block: U+FF0F `/`, U+FF3C `\`, U+FF0E `.`,
    ///   U+FF05 `%`, and fullwidth letters (`ａｄｍｉｎ` is `admin` after NFKC or IIS best-fit).
    ///
    /// Not included: the ideographic full stops U+3002/U+FF61 (only IDNA maps them to `.`), space
    /// look-alikes (NBSP, U+2000..U+200A, U+3000), invisible characters, and letter look-alikes
    /// outside the fullwidth block.
    Confusable,
    /// A raw `;`: Tomcat/Jetty-style path parameters (`/admin;x/`, `..;/`) hide segments.
    PathParameter,
    /// `%3B`, an encoded `;`: a stack that percent-decodes before it strips path parameters
    /// (Jetty, Spring's decoded servlet path) reads `/x/..%3B/admin` as `/x/../admin`.
    EncodedSemicolon,
    /// `?` or `#` in the path, raw or encoded (`%3F`, `%23`): a hop that decodes the path and
    /// parses it again as a target (an nginx `proxy_pass` built from `$uri`) ends the path there.
    QueryDelimiter,
    /// An ASP.NET cookieless-session segment, `(S(x))`, `(A(x)F(y))` (encoded parentheses
    /// included): ASP.NET removes it from the path before routing, so `/(S(x))/admin` is `/admin`.
    CookielessSession,
    /// A `..` segment that would climb above the root.
    DotDotAboveRoot,
    /// A segment ending in `.` or space that is not `.`/`..`: Windows strips them (`/admin.`).
    TrailingDotOrSpace,
    /// An NTFS alternate data stream suffix (`::$DATA`, `:$i30:$INDEX_ALLOCATION`): IIS serves
    /// the main file or directory under a name no rule matches.
    NtfsStream,
}

impl CanonError {
    /// A stable snake_case reason, for logs, metrics and the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOriginForm => "not_origin_form",
            Self::TooLong => "too_long",
            Self::BadPercentEncoding => "bad_percent_encoding",
            Self::EncodedSlash => "encoded_slash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::Backslash => "backslash",
            Self::Nul => "nul",
            Self::ControlCharacter => "control_character",
            Self::DoubleEncoding => "double_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::OverlongEncoding => "overlong_encoding",
            Self::Confusable => "confusable",
            Self::PathParameter => "path_parameter",
            Self::EncodedSemicolon => "encoded_semicolon",
            Self::QueryDelimiter => "query_delimiter",
            Self::CookielessSession => "cookieless_session",
            Self::DotDotAboveRoot => "dot_dot_above_root",
            Self::TrailingDotOrSpace => "trailing_dot_or_space",
            Self::NtfsStream => "ntfs_stream",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::NotOriginForm => "request target is not an origin-form path",
            Self::TooLong => "path is too long",
            Self::BadPercentEncoding => "malformed percent-encoding in path",
            Self::EncodedSlash => "encoded slash (%2F) in path",
            Self::EncodedBackslash => "encoded backslash (%5C) in path",
            Self::Backslash => "backslash in path",
            Self::Nul => "NUL byte in path",
            Self::ControlCharacter => "control character in path",
            Self::DoubleEncoding => "double percent-encoding in path",
            Self::InvalidUtf8 => "invalid UTF-8 in path",
            Self::OverlongEncoding => "overlong UTF-8 encoding in path",
            Self::Confusable => "character that normalises to path syntax in path",
            Self::PathParameter => "path parameter (;) in path",
            Self::EncodedSemicolon => "encoded semicolon (%3B) in path",
            Self::QueryDelimiter => "'?' or '#' (raw or encoded) in path",
            Self::CookielessSession => "ASP.NET cookieless-session segment in path",
            Self::DotDotAboveRoot => "'..' climbs above the root",
            Self::TrailingDotOrSpace => "path segment ends in a dot or space",
            Self::NtfsStream => "NTFS alternate data stream in path",
        }
    }
}

impl fmt::Display for CanonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for CanonError {}

/// Canonicalise the path part (no query, no fragment) of an origin-form request target.
///
/// Returns [`Cow::Borrowed`] when `raw` is already canonical (or a prefix of it is the answer,
/// e.g. `/a/.` → `/a/`), otherwise one allocation. The result is idempotent:
/// `canonicalize(canonicalize(x)?.as_bytes()) == Ok(Cow::Borrowed(canonicalize(x)?))`.
pub fn canonicalize(raw: &[u8]) -> Result<Cow<'_, str>, CanonError> {
    if raw.first() != Some(&b'/') {
        return Err(CanonError::NotOriginForm);
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(CanonError::TooLong);
    }
    let mut out = Out::new(raw);
    let mut i = 0;
    // Invariant at the top of the loop: `raw[i] == b'/'`.
    while i < raw.len() {
        if !out.ends_with_slash() {
            out.copy(i, i + 1);
        }
        let seg_start = out.len();
        let mut flags = SegFlags::default();
        i = segment(raw, i + 1, &mut out, &mut flags)?;
        end_segment(&mut out, seg_start, flags)?;
    }
    out.finish()
}

/// True when `path` (canonical) is `prefix` or lies below it on a segment boundary.
///
/// Prefix `/api` matches `/api`, `/api/`, `/api/x` but not `/apix`; prefix `/` or `` matches
/// every path; a prefix ending in `/` matches paths starting with it and the prefix without its
/// slash (`/api/` matches `/api`). Trailing slashes of the prefix are all ignored.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    let base = prefix.trim_end_matches('/');
    if base.is_empty() {
        return true;
    }
    match path.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// [`has_prefix`], ignoring ASCII case: for checks that must not be sidestepped by an
/// application that routes paths case-insensitively.
pub fn has_prefix_ignore_case(path: &str, prefix: &str) -> bool {
    let base = prefix.trim_end_matches('/');
    if base.is_empty() {
        return true;
    }
    match path.get(..base.len()) {
        Some(head) if head.eq_ignore_ascii_case(base) => matches!(path.as_bytes().get(base.len()), None | Some(b'/')),
        _ => false,
    }
}

/// The output, lazily materialised: while `buf` is `None` the output is `raw[..len]`.
struct Out<'a> {
    raw: &'a [u8],
    buf: Option<Vec<u8>>,
    len: usize,
}

impl<'a> Out<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Self { raw, buf: None, len: 0 }
    }

    fn len(&self) -> usize {
        match &self.buf {
            Some(b) => b.len(),
            None => self.len,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.buf {
            Some(b) => b,
            None => self.raw.get(..self.len).unwrap_or_default(),
        }
    }

    fn ends_with_slash(&self) -> bool {
        self.bytes().last() == Some(&b'/')
    }

    /// Switches to an owned buffer (once), sized so it never reallocates.
    fn owned(&mut self) -> &mut Vec<u8> {
        let (raw, len) = (self.raw, self.len);
        self.buf.get_or_insert_with(|| {
            // Each raw byte yields at most 3 output bytes, and only bytes that get encoded yield
            // more than they take (an escape yields 1 or 3 for 3): this bound is never exceeded.
            let grow = raw.iter().filter(|&&b| matches!(class(b), Class::High | Class::Encode)).count();
            let mut v = Vec::with_capacity(raw.len() + 2 * grow);
            v.extend_from_slice(raw.get(..len).unwrap_or_default());
            v
        })
    }

    /// Emits `raw[start..end]` unchanged.
    fn copy(&mut self, start: usize, end: usize) {
        if self.buf.is_none() && start == self.len {
            self.len = end;
            return;
        }
        let raw = self.raw;
        self.owned().extend_from_slice(raw.get(start..end).unwrap_or_default());
    }

    /// Emits `canon`, the canonical form of `raw[start..end]`.
    fn emit(&mut self, start: usize, end: usize, canon: &[u8]) {
        if self.buf.is_none() && start == self.len && self.raw.get(start..end) == Some(canon) {
            self.len = end;
            return;
        }
        self.owned().extend_from_slice(canon);
    }

    fn truncate(&mut self, n: usize) {
        match &mut self.buf {
            Some(b) => b.truncate(n),
            None => self.len = self.len.min(n),
        }
    }

    fn finish(self) -> Result<Cow<'a, str>, CanonError> {
        if self.len() > MAX_PATH_LEN {
            return Err(CanonError::TooLong);
        }
        // Only ASCII is ever emitted, so neither conversion can fail.
        match self.buf {
            None => std::str::from_utf8(self.raw.get(..self.len).unwrap_or_default())
                .map(Cow::Borrowed)
                .map_err(|_| CanonError::InvalidUtf8),
            Some(v) => String::from_utf8(v).map(Cow::Owned).map_err(|_| CanonError::InvalidUtf8),
        }
    }
}

/// What the segment being emitted contains, so the end-of-segment checks only scan when needed.
#[derive(Default)]
struct SegFlags {
    /// Emitted a `%25`.
    percent: bool,
    /// Emitted a `:` or `%3A`.
    colon: bool,
    /// Emitted a `(` or `%28`.
    paren: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `pchar` minus `%`, `;`, `:` and `(`: unreserved, sub-delims, `@`. Emitted as is.
    Safe,
    /// `:`, emitted as is, but noted for the NTFS stream check.
    Colon,
    /// `(`, emitted as is, but noted for the cookieless-session check.
    Paren,
    Slash,
    Percent,
    /// Printable ASCII outside `pchar`: emitted percent-encoded.
    Encode,
    Semicolon,
    /// `?` and `#`: they can only be in a path given to [`canonicalize`] directly (on the wire
    /// they end the path), and a re-parsing hop would end the path there.
    Query,
    Backslash,
    Nul,
    Control,
    High,
}

fn class(b: u8) -> Class {
    // `u8` always indexes a 256-entry table: the fallback is never taken and compiles away.
    CLASSES.get(usize::from(b)).copied().unwrap_or(Class::High)
}

// Evaluated at compile time: an out-of-bounds index here is a build error, not a runtime panic.
#[allow(clippy::indexing_slicing)]
const CLASSES: [Class; 256] = {
    let mut table = [Class::Encode; 256];
    let mut b: u8 = 0;
    loop {
        table[b as usize] = class_of(b);
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

const fn class_of(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => Class::Safe,
        b'-' | b'.' | b'_' | b'~' => Class::Safe,
        b'!' | b'$' | b'&' | b'\'' | b')' | b'*' | b'+' | b',' | b'=' | b'@' => Class::Safe,
        b':' => Class::Colon,
        b'(' => Class::Paren,
        b'?' | b'#' => Class::Query,
        b'/' => Class::Slash,
        b'%' => Class::Percent,
        b';' => Class::Semicolon,
        b'\\' => Class::Backslash,
        0 => Class::Nul,
        0x01..=0x1F | 0x7F => Class::Control,
        0x80..=0xFF => Class::High,
        // space " < > [ ] ^ ` { | }
        _ => Class::Encode,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The byte encoded by the escape `%XX` starting at `raw[i]`.
fn escape_at(raw: &[u8], i: usize) -> Option<u8> {
    let hi = hex_val(*raw.get(i + 1)?)?;
    let lo = hex_val(*raw.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

fn pct(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digit = |n: u8| HEX.get(usize::from(n & 0xF)).copied().unwrap_or(b'0');
    [b'%', digit(b >> 4), digit(b)]
}

/// Emits one segment starting at `raw[i]`; returns the index of the next `/` or the end.
fn segment(raw: &[u8], mut i: usize, out: &mut Out<'_>, flags: &mut SegFlags) -> Result<usize, CanonError> {
    while let Some(&b) = raw.get(i) {
        match class(b) {
            Class::Safe | Class::Colon | Class::Paren => {
                let start = i;
                while let Some(&c) = raw.get(i) {
                    match class(c) {
                        Class::Safe => {}
                        Class::Colon => flags.colon = true,
                        Class::Paren => flags.paren = true,
                        _ => break,
                    }
                    i += 1;
                }
                out.copy(start, i);
            }
            Class::Slash => return Ok(i),
            Class::Encode => {
                out.emit(i, i + 1, &pct(b));
                i += 1;
            }
            Class::Percent => {
                let v = escape_at(raw, i).ok_or(CanonError::BadPercentEncoding)?;
                match v {
                    0x80..=0xFF => {
                        i = non_ascii(raw, i, out)?;
                        continue;
                    }
                    b'/' => return Err(CanonError::EncodedSlash),
                    b'\\' => return Err(CanonError::EncodedBackslash),
                    b';' => return Err(CanonError::EncodedSemicolon),
                    b'?' | b'#' => return Err(CanonError::QueryDelimiter),
                    0 => return Err(CanonError::Nul),
                    0x01..=0x1F | 0x7F => return Err(CanonError::ControlCharacter),
                    v if is_unreserved(v) => out.emit(i, i + 3, &[v]),
                    v => {
                        flags.percent |= v == b'%';
                        flags.colon |= v == b':';
                        flags.paren |= v == b'(';
                        out.emit(i, i + 3, &pct(v));
                    }
                }
                i += 3;
            }
            Class::High => i = non_ascii(raw, i, out)?,
            Class::Semicolon => return Err(CanonError::PathParameter),
            Class::Query => return Err(CanonError::QueryDelimiter),
            Class::Backslash => return Err(CanonError::Backslash),
            Class::Nul => return Err(CanonError::Nul),
            Class::Control => return Err(CanonError::ControlCharacter),
        }
    }
    Ok(i)
}

/// A byte of a non-ASCII run at `raw[i]`: raw, or a `%XX` escape. Returns it and the next index.
fn read_byte(raw: &[u8], i: usize) -> Option<(u8, usize)> {
    match *raw.get(i)? {
        b'%' => escape_at(raw, i).map(|v| (v, i + 3)),
        b => Some((b, i + 1)),
    }
}

/// Decodes one UTF-8 character (raw and/or percent-encoded bytes) at `raw[start]`, validates it
/// and emits it percent-encoded. Returns the index after it.
fn non_ascii(raw: &[u8], start: usize, out: &mut Out<'_>) -> Result<usize, CanonError> {
    let (lead, mut i) = read_byte(raw, start).ok_or(CanonError::InvalidUtf8)?;
    // Decode leniently, with the historical 5- and 6-byte forms, so that overlong encodings are
    // recognised as such before the strict checks.
    let (continuations, min) = match lead {
        0xC0..=0xDF => (1, 0x80),
        0xE0..=0xEF => (2, 0x800),
        0xF0..=0xF7 => (3, 0x1_0000),
        0xF8..=0xFB => (4, 0x20_0000),
        0xFC..=0xFD => (5, 0x400_0000),
        _ => return Err(CanonError::InvalidUtf8),
    };
    let mut cp = u32::from(lead & (0x7F >> (continuations + 1)));
    for _ in 0..continuations {
        match read_byte(raw, i) {
            Some((c @ 0x80..=0xBF, next)) => {
                cp = cp << 6 | u32::from(c & 0x3F);
                i = next;
            }
            _ => return Err(CanonError::InvalidUtf8),
        }
    }
    if cp < min {
        return Err(CanonError::OverlongEncoding);
    }
    let ch = char::from_u32(cp).filter(|_| continuations <= 3).ok_or(CanonError::InvalidUtf8)?;
    if ('\u{80}'..='\u{9F}').contains(&ch) {
        return Err(CanonError::ControlCharacter);
    }
    if is_confusable(ch) {
        return Err(CanonError::Confusable);
    }
    let mut utf8 = [0u8; 4];
    let mut enc = [0u8; 12];
    let bytes = ch.encode_utf8(&mut utf8).as_bytes();
    for (slot, &b) in enc.chunks_exact_mut(3).zip(bytes) {
        slot.copy_from_slice(&pct(b));
    }
    out.emit(start, i, enc.get(..bytes.len() * 3).unwrap_or_default());
    Ok(i)
}

/// See [`CanonError::Confusable`] for what is in the list and why.
fn is_confusable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x037E
            | 0x2024..=0x2026
            | 0x2044
            | 0x2047..=0x2049
            | 0x2100
            | 0x2101
            | 0x2105
            | 0x2106
            | 0x2215
            | 0x2216
            | 0x2488..=0x249B
            | 0x29F5
            | 0x29F8
            | 0x29F9
            | 0x2A74
            | 0x33C2
            | 0x33C7
            | 0x33D8
            | 0xFE10..=0xFE19
            | 0xFE30
            | 0xFE50..=0xFE6B
            | 0xFF01..=0xFF5E
            | 0x1F100..=0x1F10A
    )
}

/// Applies dot-segment removal and the whole-segment checks to the segment emitted at `seg_start`.
fn end_segment(out: &mut Out<'_>, seg_start: usize, flags: SegFlags) -> Result<(), CanonError> {
    let seg = out.bytes().get(seg_start..).unwrap_or_default();
    match seg {
        b"" => Ok(()),
        b"." => {
            out.truncate(seg_start);
            Ok(())
        }
        b".." => {
            // `out[seg_start - 1]` is the slash before `..`; drop the segment before it.
            let parent = seg_start.checked_sub(1).and_then(|end| out.bytes().get(..end));
            match parent.and_then(|p| p.iter().rposition(|&b| b == b'/')) {
                Some(slash) => {
                    out.truncate(slash + 1);
                    Ok(())
                }
                None => Err(CanonError::DotDotAboveRoot),
            }
        }
        _ => {
            if flags.percent && has_double_encoding(seg) {
                return Err(CanonError::DoubleEncoding);
            }
            if flags.colon && has_ntfs_stream(seg) {
                return Err(CanonError::NtfsStream);
            }
            if flags.paren && is_cookieless_session(seg) {
                return Err(CanonError::CookielessSession);
            }
            if seg.ends_with(b".") || seg.ends_with(b"%20") {
                return Err(CanonError::TrailingDotOrSpace);
            }
            Ok(())
        }
    }
}

/// `%25` followed by two hex digits, or by `u` and four hex digits (IIS `%uXXXX`), in emitted
/// (canonical) text.
fn has_double_encoding(seg: &[u8]) -> bool {
    let is_hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
    seg.windows(3).enumerate().any(|(k, w)| {
        if w != b"%25" {
            return false;
        }
        let at = |n: usize| seg.get(k + 3 + n);
        (is_hex(at(0)) && is_hex(at(1))) || (matches!(at(0), Some(b'u' | b'U')) && (1..=4).all(|n| is_hex(at(n))))
    })
}

/// `:` followed by `$`, counting `%3A` and `%24` (an upstream decodes them), in emitted text.
fn has_ntfs_stream(seg: &[u8]) -> bool {
    let mut prev_colon = false;
    let mut k = 0;
    while let Some(&b) = seg.get(k) {
        let (c, len) = match b {
            b'%' => (escape_at(seg, k).unwrap_or(b'%'), 3),
            b => (b, 1),
        };
        if prev_colon && c == b'$' {
            return true;
        }
        prev_colon = c == b':';
        k += len;
    }
    false
}

/// `(`, an ASCII letter, `(` … `))`, counting `%28` and `%29` (an upstream decodes them), in
/// emitted text: the shape of ASP.NET's cookieless-session data (`(S(id))`, `(A(x)F(y))`).
fn is_cookieless_session(seg: &[u8]) -> bool {
    let mut decoded = [0u8; 3];
    let mut n = 0;
    let mut last = [0u8; 2];
    let mut k = 0;
    while let Some(&b) = seg.get(k) {
        let (c, len) = match b {
            b'%' => (escape_at(seg, k).unwrap_or(b'%'), 3),
            b => (b, 1),
        };
        if let Some(slot) = decoded.get_mut(n) {
            *slot = c;
            n += 1;
        }
        last = [last[1], c];
        k += len;
    }
    n == 3 && matches!(decoded, [b'(', l, b'('] if l.is_ascii_alphabetic()) && last == *b"))"
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
