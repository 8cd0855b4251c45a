//! A small incremental JSON tracker: which bytes are inside strings, and which belong to the
//! value of an excluded key. Lenient (it never rejects: it follows quotes, escapes, and around
//! keys `:`, `,`, `{` and brackets), and its whole state is a few fields, so it gives the same
//! answer whatever the chunking.
//!
//! Most of the time it only tracks quotes, a whole stretch at a time (a stretch without a
//! backslash ends inside a string when it holds an odd number of quotes: a vectorised `memchr`
//! and quote count), up to the next place a listed key appears as `"key"` (found with `memmem`). There it follows strings one by one: a
//! string is a key when the last byte before it that is not whitespace is `{` or `,` and a `:`
//! follows it; after a listed key it follows the structure byte by byte until the value ends.
//!
//! A body is JSON when its first byte that is not whitespace or a UTF-8 BOM byte is `{` or `[`
//! (whatever the `Content-Type` says: a JSON body labelled `text/plain` is still tracked, and a
//! `text/plain` body starting with `[INFO]` is tracked too, harmlessly: exclusions only ever
//! apply after a string exactly equal to a listed key followed by `:`).
//!
//! Keys are compared byte for byte as written between the quotes (no unescaping: a key written
//! with `\u` escapes is not excluded, which errs on the side of scanning).

/// Longest key compared, in bytes; longer keys never match.
pub(crate) const MAX_KEY_LEN: usize = 128;

/// The listed keys, and a substring finder for each one written as a JSON string (`"key"`).
#[derive(Debug, Default)]
pub(crate) struct JsonKeys {
    keys: Vec<Box<[u8]>>,
    quoted: Vec<Box<[u8]>>,
    finders: Vec<memmem::Finder<'static>>,
}

impl JsonKeys {
    pub(crate) fn new(keys: Vec<Box<[u8]>>) -> JsonKeys {
        let quoted: Vec<Box<[u8]>> = keys.iter().map(|k| [&b"\""[..], k, b"\""].concat().into_boxed_slice()).collect();
        let finders = quoted.iter().map(|q| memmem::Finder::new(q).into_owned()).collect();
        JsonKeys { keys, quoted, finders }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Where the `k`-th key may be written as a string in `bytes` at or after `from`: a whole
    /// occurrence of `"key"`, or a tail of `bytes` that is the start of one (too short to tell);
    /// `usize::MAX` for neither.
    fn next_at(&self, k: usize, bytes: &[u8], from: usize) -> usize {
        let (Some(f), Some(q)) = (self.finders.get(k), self.quoted.get(k)) else { return usize::MAX };
        let rest = bytes.get(from..).unwrap_or_default();
        if let Some(at) = f.find(rest) {
            return from + at;
        }
        let tail_from = rest.len().saturating_sub(q.len() - 1);
        (tail_from..rest.len())
            .find(|&t| rest.get(t..).is_some_and(|tail| q.starts_with(tail)))
            .map_or(usize::MAX, |t| from + t)
    }
}

use memchr::memmem;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A high bit in every byte of `x` that is zero (and maybe in bytes above the first such one:
/// only the lowest set bit is exact).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The first `a` or `b` in `s`: a word at a time for the first 64 bytes (JSON tokens are short),
/// then `memchr2`.
#[inline]
fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut i = 0;
    for w in s.chunks_exact(8) {
        let Ok(w) = <[u8; 8]>::try_from(w) else { break };
        let x = u64::from_le_bytes(w);
        let m = zero_bytes(x ^ (ONES * u64::from(a))) | zero_bytes(x ^ (ONES * u64::from(b)));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
        if i == 64 {
            return memchr::memchr2(a, b, s.get(i..)?).map(|k| k + i);
        }
    }
    s.get(i..)?.iter().position(|&c| c == a || c == b).map(|k| k + i)
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Only whitespace so far.
    Unknown,
    Json,
    NotJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    /// The excluded value is a string: until it closes.
    Str,
    /// The excluded value is an object or array: until its brackets balance (`depth`).
    Container,
    /// The excluded value is a number or literal: until a delimiter.
    Scalar,
}

#[derive(Debug, Clone)]
pub(crate) struct JsonTracker {
    /// Absolute position: bytes before it have been consumed.
    pos: usize,
    body: Body,
    in_str: bool,
    esc: bool,
    /// Bracket depth within a skipped container.
    depth: u32,
    /// Whether keys are captured at all (exclusions configured).
    want_keys: bool,
    /// The last byte outside strings that is not whitespace (`"` after a string).
    last: u8,
    /// The current string is being captured: it could be a listed key.
    capturing: bool,
    /// The captured string, up to `MAX_KEY_LEN + 1` bytes.
    key: Vec<u8>,
    /// A listed key just closed: a `:` next makes its value excluded.
    after_key: bool,
    /// An excluded key and its `:` were seen; the value has not started.
    pending: bool,
    skip: Skip,
    /// Per listed key, where it may next appear in the bytes being consumed.
    next_key: Vec<usize>,
}

impl JsonTracker {
    pub(crate) fn new(want_keys: bool) -> JsonTracker {
        JsonTracker {
            pos: 0,
            body: Body::Unknown,
            in_str: false,
            esc: false,
            depth: 0,
            want_keys,
            last: 0,
            capturing: false,
            key: Vec::new(),
            after_key: false,
            pending: false,
            skip: Skip::None,
            next_key: Vec::new(),
        }
    }

    /// True once the body is known to be JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.body == Body::Json
    }

    /// Inside a JSON string at the current position.
    pub(crate) fn in_string(&self) -> bool {
        self.body == Body::Json && self.in_str
    }

    /// The byte at the current position belongs to the value of an excluded key.
    pub(crate) fn skipping(&self) -> bool {
        self.body == Body::Json && (self.pending || self.skip != Skip::None)
    }

    /// Consumes `hay` (whose first byte is at absolute position `base`) up to absolute position
    /// `to`. Positions already consumed are ignored; `to` past the end of `hay` stops at its end.
    pub(crate) fn advance(&mut self, hay: &[u8], base: usize, to: usize, jk: &JsonKeys) {
        let keys = jk.keys.as_slice();
        if to <= self.pos {
            return;
        }
        let (Some(from), Some(end)) = (self.pos.checked_sub(base), to.checked_sub(base)) else {
            // Not reached: the caller keeps every byte not consumed yet.
            self.pos = to;
            return;
        };
        let end = end.min(hay.len());
        let Some(bytes) = hay.get(from..end) else {
            self.pos = to;
            return;
        };
        self.pos = to;
        let mut i = 0;
        if self.body == Body::Unknown {
            let Some(k) = bytes.iter().position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0xEF | 0xBB | 0xBF))
            else {
                return;
            };
            self.body = if matches!(bytes.get(k), Some(b'{' | b'[')) { Body::Json } else { Body::NotJson };
            i = k;
        }
        if self.body == Body::NotJson {
            return;
        }
        // Where each listed key may next appear as a string: the word-at-a-time path stops
        // before it.
        self.next_key.clear();
        if self.want_keys {
            self.next_key.extend((0..jk.keys.len()).map(|k| jk.next_at(k, bytes, i)));
        }
        while i < bytes.len() {
            if !self.esc && !self.capturing && !self.pending && !self.after_key && self.skip == Skip::None {
                let mut stop = usize::MAX;
                for (k, at) in self.next_key.iter_mut().enumerate() {
                    if *at < i {
                        *at = jk.next_at(k, bytes, i);
                    }
                    stop = stop.min(*at);
                }
                i = self.fast(bytes, i, stop);
                if i >= bytes.len() {
                    break;
                }
            }
            let rest = bytes.get(i..).unwrap_or_default();
            if self.in_str {
                i += self.string_bytes(rest, keys);
            } else if self.pending || self.skip != Skip::None || self.after_key {
                if let Some(&b) = rest.first() {
                    self.structural(b, keys);
                }
                i += 1;
            } else {
                // Outside strings, nothing to follow but where the next string starts and the
                // last significant byte before it.
                let Some(k) = find2(rest, b'"', b'"') else {
                    if let Some(&b) = rest.iter().rev().find(|&&b| !is_ws(b)) {
                        self.last = b;
                    }
                    break;
                };
                let gap = rest.get(..k).unwrap_or_default();
                if let Some(&b) = gap.iter().rev().find(|&&b| !is_ws(b)) {
                    self.last = b;
                }
                self.open_string();
                i += k + 1;
            }
        }
    }

    /// Strings and nothing else, up to `stop` (where a listed key may start) or the first
    /// backslash before it, whichever comes first: returns where it stopped. Whether that point
    /// is inside a string is the parity of the quotes before it (no backslash, so no escaped
    /// quote): one vectorised `memchr` for the backslash and one vectorised count of quotes.
    /// (Eight bytes at a time in SWAR, the tracker cost ~111k instructions on 16 KiB of order
    /// JSON; this way ~42k, most of it the key search.)
    fn fast(&mut self, bytes: &[u8], start: usize, stop: usize) -> usize {
        let span = bytes.get(start..stop.min(bytes.len())).unwrap_or_default();
        let n = memchr::memchr(b'\\', span).unwrap_or(span.len());
        let span = span.get(..n).unwrap_or_default();
        self.in_str ^= memchr::memchr_iter(b'"', span).count() % 2 == 1;
        let i = start + n;
        if i > start && !self.in_str {
            if let Some(&b) = bytes.get(start..i).and_then(|s| s.iter().rev().find(|&&b| !is_ws(b))) {
                self.last = b;
            }
        }
        i
    }

    fn open_string(&mut self) {
        self.in_str = true;
        self.key.clear();
        self.capturing = self.want_keys && self.skip == Skip::None && matches!(self.last, b'{' | b',');
        if self.pending {
            self.pending = false;
            self.skip = Skip::Str;
        }
    }

    /// Consumes string contents at the start of `rest`; returns how many bytes.
    fn string_bytes(&mut self, rest: &[u8], keys: &[Box<[u8]>]) -> usize {
        if self.esc {
            self.esc = false;
            if let Some(&b) = rest.first() {
                self.capture(&[b], keys);
            }
            return 1;
        }
        match find2(rest, b'"', b'\\') {
            None => {
                self.capture(rest, keys);
                rest.len()
            }
            Some(k) => {
                self.capture(rest.get(..k).unwrap_or_default(), keys);
                if rest.get(k) == Some(&b'\\') {
                    self.capture(b"\\", keys);
                    self.esc = true;
                } else {
                    self.in_str = false;
                    self.last = b'"';
                    if self.skip == Skip::Str {
                        self.skip = Skip::None;
                    } else if self.capturing {
                        self.after_key = self.key.len() <= MAX_KEY_LEN && keys.iter().any(|k| **k == *self.key);
                    }
                    self.capturing = false;
                }
                k + 1
            }
        }
    }

    fn capture(&mut self, part: &[u8], keys: &[Box<[u8]>]) {
        if !self.capturing || part.is_empty() {
            return;
        }
        if self.key.is_empty() {
            // Most strings cannot be a listed key: check the first byte.
            let first = part.first().copied();
            if !keys.iter().any(|k| k.first().copied() == first) {
                self.capturing = false;
                return;
            }
        }
        let room = (MAX_KEY_LEN + 1).saturating_sub(self.key.len());
        if room == 0 {
            self.capturing = false;
            return;
        }
        self.key.extend_from_slice(part.get(..room.min(part.len())).unwrap_or_default());
    }

    /// One byte outside strings while a listed key, its value or a skipped value is in progress.
    fn structural(&mut self, b: u8, _keys: &[Box<[u8]>]) {
        if is_ws(b) {
            if self.skip == Skip::Scalar {
                self.skip = Skip::None;
            }
            return;
        }
        let after_key = std::mem::replace(&mut self.after_key, false);
        let last = std::mem::replace(&mut self.last, b);
        match b {
            b'"' => {
                // `open_string` reads the byte before the string.
                self.last = last;
                self.open_string();
            }
            b'{' | b'[' => {
                if self.pending {
                    self.pending = false;
                    self.skip = Skip::Container;
                    self.depth = 0;
                }
                if self.skip == Skip::Container {
                    self.depth = self.depth.saturating_add(1);
                }
            }
            b'}' | b']' => match self.skip {
                Skip::Container => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.skip = Skip::None;
                    }
                }
                Skip::Scalar => self.skip = Skip::None,
                _ => self.pending = false,
            },
            b':' => self.pending = after_key && self.skip == Skip::None,
            b',' => match self.skip {
                Skip::Scalar => self.skip = Skip::None,
                Skip::None => self.pending = false,
                _ => {}
            },
            _ => {
                if self.pending {
                    self.pending = false;
                    self.skip = Skip::Scalar;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
