//! Candidate generation: the hand-written byte scanner for the built-in detectors, the one
//! multi-pattern regex pass for custom detectors, context keywords and the value-level
//! exclusions (prefixes, allow regexes).
//!
//! Every candidate is a pure function of the bytes within a bounded window around its
//! *anchor* (the byte where the scanner finds it): at most [`LOOKBEHIND`] bytes before and
//! [`LOOKAHEAD`] bytes after, and it starts at most [`ANCHOR_BACK`] bytes before its anchor. That
//! is what makes streaming equal to whole-body scanning: the stream only looks at an anchor once
//! `LOOKAHEAD` bytes past it have arrived (or the body ended), and keeps `LOOKBEHIND` bytes of
//! history. Reads outside the buffer are only possible at the true start or end of the body,
//! where they see "no byte" (a boundary).

use regex_automata::{meta, Input};

use super::json::JsonKeys;
use super::validate;
use super::{Kind, PiiAction, Validator};

/// Bytes before an anchor a detector may read (email local part and the exclusion prefixes and
/// context keywords before it).
pub(crate) const LOOKBEHIND: usize = 160;
/// Bytes from an anchor a detector may read (an email domain is at most 253 bytes; custom
/// matches at most [`MAX_CUSTOM_LEN`] plus the context window).
pub(crate) const LOOKAHEAD: usize = 320;
/// Greatest distance from a candidate's start to its anchor (the email local part).
pub(crate) const ANCHOR_BACK: usize = EMAIL_LOCAL_MAX;

/// Longest match a custom detector's regex may produce, in bytes.
pub const MAX_CUSTOM_LEN: usize = 128;
/// Context keywords are looked for within this many bytes before a candidate's start and after
/// its end.
pub const CONTEXT_WINDOW: usize = 48;
/// Longest context keyword, in bytes.
pub const MAX_KEYWORD_LEN: usize = 32;
/// Longest exclusion prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 32;
/// An exclusion prefix may be separated from the value by up to this many bytes of digits and
/// separators (`ORD-2024-12345678950`).
pub const PREFIX_GAP: usize = 32;

const EMAIL_LOCAL_MAX: usize = 64;
const EMAIL_DOMAIN_MAX: usize = 253;
/// Longest phone candidate, in bytes.
const PHONE_SPAN_MAX: usize = 32;
/// Most digits in a phone number (E.164: 15).
const PHONE_DIGITS_MAX: usize = 15;

/// Built-in context keywords (ASCII, lower case; matched ASCII case-insensitively, not preceded
/// by a letter).
pub(crate) const VKN_KEYWORDS: &[&[u8]] = &[b"vkn", b"vergi", b"tax"];
pub(crate) const SSN_KEYWORDS: &[&[u8]] = &[b"ssn", b"social security", b"social_security", b"socialsecurity"];

/// One candidate: a span of the body (absolute positions) a detector recognised and validated.
/// `excluded` candidates (prefix or allow regex) still claim their span, so nothing inside an
/// excluded order number is reported as something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cand {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) kind: Kind,
    pub(crate) excluded: bool,
}

impl Cand {
    /// Resolution order: leftmost first, then longest, then detector order.
    pub(crate) fn order(&self) -> (usize, std::cmp::Reverse<usize>, Kind) {
        (self.start, std::cmp::Reverse(self.end), self.kind)
    }
}

/// A custom detector.
#[derive(Debug)]
pub(crate) struct Custom {
    pub(crate) name: Box<str>,
    pub(crate) validator: Validator,
    /// Lower-cased keywords; empty: no context required.
    pub(crate) context: Vec<Box<[u8]>>,
    pub(crate) action: PiiAction,
}

/// Everything a policy scans with. Immutable, shared (`Arc`) between a policy and its streams.
#[derive(Debug)]
pub(crate) struct Engine {
    /// The action of each built-in detector, in [`Kind::BUILTIN`] order; `None`: off.
    pub(crate) builtin: [Option<PiiAction>; 7],
    pub(crate) custom: Vec<Custom>,
    /// All custom regexes as one multi-pattern regex (pattern `i` is `custom[i]`).
    pub(crate) custom_re: Option<meta::Regex>,
    /// Lower-cased.
    pub(crate) prefixes: Vec<Box<[u8]>>,
    pub(crate) allow: Option<regex::bytes::RegexSet>,
    pub(crate) json_keys: JsonKeys,
    /// Bytes that start a built-in anchor: digits (when a digit detector is on), `@` (email).
    pub(crate) interesting: [bool; 256],
    /// All ones when digits (`@`) are anchors, for the word-at-a-time skip.
    pub(crate) digit_mask: u64,
    pub(crate) at_mask: u64,
}

#[inline]
fn at(hay: &[u8], i: usize) -> u8 {
    hay.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 (a boundary) at the start.
#[inline]
fn before(hay: &[u8], i: usize, k: usize) -> u8 {
    i.checked_sub(k).map_or(0, |j| at(hay, j))
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the run of ASCII digits from `i`: eight bytes at a time (SWAR), then byte by byte
/// for the last few.
#[inline]
fn digit_run_end(hay: &[u8], i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut q = i;
    while let Some(w) = hay.get(q..q + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let x = u64::from_le_bytes(w);
        // Per byte: not zero unless the byte is `0`–`9` (high nibble 3, low nibble plus 6 below
        // 16); no carry crosses a byte.
        let other = ((x & (ONES * 0xF0)) ^ (ONES * 0x30)) | (((x & (ONES * 0x0F)) + ONES * 0x06) & (ONES * 0x10));
        let nonzero = (((other & (ONES * 0x7F)) + ONES * 0x7F) | other) & (ONES * 0x80);
        if nonzero != 0 {
            return q + (nonzero.trailing_zeros() / 8) as usize;
        }
        q += 8;
    }
    q + hay.get(q..).map_or(0, |s| s.iter().take_while(|b| b.is_ascii_digit()).count())
}

/// A digit-based value may end here: the next byte is not a letter, digit or `_`, and not a
/// decimal point followed by a digit.
#[inline]
fn right_ok(hay: &[u8], end: usize) -> bool {
    let b = at(hay, end);
    !(is_word(b) || (b == b'.' && at(hay, end + 1).is_ascii_digit()))
}

/// Digit values of `bytes`, skipping non-digits, into `buf`; the count (at most
/// `buf.len()`, `None` when there are more).
fn digits_into(bytes: &[u8], buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            *buf.get_mut(n)? = b - b'0';
            n += 1;
        }
    }
    Some(n)
}

/// Keyword search around a candidate: a keyword starting within [`CONTEXT_WINDOW`] bytes before
/// `start` or after `end`, matched ASCII case-insensitively, not preceded by an ASCII letter.
pub(crate) fn near_keyword<K: AsRef<[u8]>>(hay: &[u8], start: usize, end: usize, keywords: &[K]) -> bool {
    let lo = start.saturating_sub(CONTEXT_WINDOW);
    let hi = (end + CONTEXT_WINDOW).min(hay.len());
    (lo..hi).any(|q| keyword_at(hay, q, keywords))
}

/// A keyword starts at `q`: matched ASCII case-insensitively, not preceded by a letter.
#[inline]
fn keyword_at<K: AsRef<[u8]>>(hay: &[u8], q: usize, keywords: &[K]) -> bool {
    if before(hay, q, 1).is_ascii_alphabetic() {
        return false;
    }
    let (first, second) = (at(hay, q).to_ascii_lowercase(), at(hay, q + 1).to_ascii_lowercase());
    keywords.iter().any(|kw| {
        let kw = kw.as_ref();
        kw.first() == Some(&first)
            && kw.get(1).is_none_or(|b| b.to_ascii_lowercase() == second)
            && hay.get(q..q + kw.len()).is_some_and(|w| w.eq_ignore_ascii_case(kw))
    })
}

/// [`near_keyword`] for windows that only move forward (the built-in detectors' candidates, in
/// anchor order): each byte is looked at once, and the keyword starts found are kept until the
/// windows have passed them. Same answers as `near_keyword`.
struct KeywordScan<'k, K> {
    keywords: &'k [K],
    /// Lower-cased first bytes of the keywords.
    first: [bool; 256],
    /// Positions before this have been searched (from `floor` on).
    done: usize,
    /// No window may start before this (hits before it were dropped).
    floor: usize,
    hits: Vec<usize>,
}

impl<'k, K: AsRef<[u8]>> KeywordScan<'k, K> {
    fn new(keywords: &'k [K]) -> Self {
        let mut first = [false; 256];
        for kw in keywords {
            if let Some(&b) = kw.as_ref().first() {
                for c in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                    if let Some(slot) = first.get_mut(usize::from(c)) {
                        *slot = true;
                    }
                }
            }
        }
        KeywordScan { keywords, first, done: 0, floor: 0, hits: Vec::new() }
    }

    fn near(&mut self, hay: &[u8], start: usize, end: usize) -> bool {
        let lo = start.saturating_sub(CONTEXT_WINDOW);
        let hi = (end + CONTEXT_WINDOW).min(hay.len());
        if lo < self.floor {
            return near_keyword(hay, start, end, self.keywords);
        }
        if self.done < lo {
            self.done = lo;
        }
        for q in self.done..hi {
            if self.first.get(usize::from(at(hay, q))) == Some(&true) && keyword_at(hay, q, self.keywords) {
                self.hits.push(q);
            }
        }
        self.done = self.done.max(hi);
        let dead = self.hits.partition_point(|&h| h < lo);
        if dead > 16 {
            self.hits.drain(..dead);
            self.floor = lo;
        }
        self.hits.iter().any(|&h| (lo..hi).contains(&h))
    }
}

/// The keyword scans of one pass of the built-in detectors.
struct Contexts<'k> {
    vkn: KeywordScan<'k, &'static [u8]>,
    ssn: KeywordScan<'k, &'static [u8]>,
}

impl Engine {
    pub(crate) fn action(&self, kind: Kind) -> PiiAction {
        match kind {
            Kind::Custom(i) => self.custom.get(usize::from(i)).map_or(PiiAction::Monitor, |c| c.action),
            k => self.builtin.get(k.index()).copied().flatten().unwrap_or(PiiAction::Monitor),
        }
    }

    #[inline]
    #[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
    fn is_interesting(&self, b: u8) -> bool {
        self.interesting[usize::from(b)]
    }

    /// The first byte of `s` that may anchor a built-in candidate (a digit, when a digit-based
    /// detector is on; `@`, when email is): eight bytes at a time (SWAR), then byte by byte for
    /// the last few.
    #[inline]
    fn next_anchor(&self, s: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut i = 0;
        for w in s.chunks_exact(8) {
            let Ok(w) = <[u8; 8]>::try_from(w) else { break };
            let x = u64::from_le_bytes(w);
            // A byte `^ b'0'` below 10 is a digit; a byte `^ b'@'` equal to 0 is `@`. A borrow
            // can only mark bytes above a true hit, so the lowest marked byte is the first hit.
            let t = x ^ (ONES * 0x30);
            let digit = t.wrapping_sub(ONES * 10) & !t & HIGH;
            let a = x ^ (ONES * 0x40);
            let at = a.wrapping_sub(ONES) & !a & HIGH;
            let m = (digit & self.digit_mask) | (at & self.at_mask);
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        s.get(i..)?.iter().position(|&b| self.is_interesting(b)).map(|k| i + k)
    }

    fn on(&self, kind: Kind) -> bool {
        self.builtin.get(kind.index()).is_some_and(Option::is_some)
    }

    pub(crate) fn compute_interesting(&mut self) {
        let digits =
            [Kind::Iban, Kind::Card, Kind::Tckn, Kind::Vkn, Kind::Ssn, Kind::Phone].iter().any(|&k| self.on(k));
        let email = self.on(Kind::Email);
        self.interesting = std::array::from_fn(|b| (digits && (0x30..=0x39).contains(&b)) || (email && b == 0x40));
        self.digit_mask = if digits { u64::MAX } else { 0 };
        self.at_mask = if email { u64::MAX } else { 0 };
    }

    /// The value-level exclusions: a listed prefix right before the value (or before the run of
    /// digits and separators leading up to it), or an allow regex matching the value.
    pub(crate) fn excluded(&self, hay: &[u8], start: usize, end: usize) -> bool {
        self.prefix_excluded(hay, start)
            || self.allow.as_ref().is_some_and(|set| hay.get(start..end).is_some_and(|v| set.is_match(v)))
    }

    fn prefix_excluded(&self, hay: &[u8], start: usize) -> bool {
        if self.prefixes.is_empty() {
            return false;
        }
        let lo = start.saturating_sub(PREFIX_GAP);
        let mut q = start;
        while q > lo && matches!(before(hay, q, 1), b'0'..=b'9' | b' ' | b'-' | b'/' | b'.' | b'#' | b':') {
            q -= 1;
        }
        (q..=start).any(|r| {
            self.prefixes
                .iter()
                .any(|p| r.checked_sub(p.len()).and_then(|s| hay.get(s..r)).is_some_and(|w| w.eq_ignore_ascii_case(p)))
        })
    }

    fn push(&self, hay: &[u8], base: usize, start: usize, end: usize, kind: Kind, out: &mut Vec<Cand>) {
        let excluded = self.excluded(hay, start, end);
        out.push(Cand { start: start + base, end: end + base, kind, excluded });
    }

    /// Built-in candidates anchored in `[from, limit)` (absolute) of `hay`, whose first byte is
    /// at absolute position `base`.
    pub(crate) fn builtins(&self, hay: &[u8], base: usize, from: usize, limit: usize, out: &mut Vec<Cand>) {
        let (Some(mut i), Some(lim)) = (from.checked_sub(base), limit.checked_sub(base)) else {
            return;
        };
        let lim = lim.min(hay.len());
        let mut ctx = Contexts { vkn: KeywordScan::new(VKN_KEYWORDS), ssn: KeywordScan::new(SSN_KEYWORDS) };
        while i < lim {
            let Some(k) = self.next_anchor(hay.get(i..lim).unwrap_or_default()) else { break };
            i += k;
            if at(hay, i) == b'@' {
                self.email(hay, base, i, out);
                i += 1;
                continue;
            }
            let run_end = digit_run_end(hay, i);
            if !before(hay, i, 1).is_ascii_digit() {
                self.digit_group(hay, base, i, run_end, &mut ctx, out);
            }
            i = run_end;
        }
    }

    /// A run of digits starting at `i` (not preceded by a digit), ending at `run_end`.
    fn digit_group(
        &self,
        hay: &[u8],
        base: usize,
        i: usize,
        run_end: usize,
        ctx: &mut Contexts<'_>,
        out: &mut Vec<Cand>,
    ) {
        let prev = before(hay, i, 1);
        let next = at(hay, run_end);
        // Most numbers: short and alone. Not after a capital (an IBAN's country code, handled
        // below), every path drops them: answered first (a few instructions on each of the
        // ~1650 digit runs in 16 KiB of order JSON).
        let short_alone = run_end - i < 9 && !matches!(next, b' ' | b'-' | b'.' | b')') && !matches!(prev, b'+' | b'(');
        if short_alone && !prev.is_ascii_uppercase() {
            return;
        }
        if is_word(prev) && !(matches!(prev, b'n' | b't' | b'r') && before(hay, i, 2) == b'\\') {
            // `TR33…`: two capitals right before, and a boundary before them.
            if prev.is_ascii_uppercase()
                && before(hay, i, 2).is_ascii_uppercase()
                && !is_word(before(hay, i, 3))
                && self.on(Kind::Iban)
            {
                self.iban(hay, base, i - 2, out);
            }
            return;
        }
        if prev == b'.' && before(hay, i, 2).is_ascii_digit() {
            return; // the fraction of a decimal number
        }
        if short_alone {
            return;
        }
        let r = run_end - i;
        let joined = matches!(next, b' ' | b'-' | b'.' | b')') && {
            let n2 = at(hay, run_end + 1);
            n2.is_ascii_digit() || (next == b' ' && n2 == b'(')
        };
        let d0 = at(hay, i) - b'0';
        if self.on(Kind::Phone) {
            // National forms start with a group of 1 (`0 532…`, `1-800…`), 3 (`532 123…`),
            // 4 (`0532 …`) or 11 (`05321234567`) digits.
            let national = match r {
                1 => joined && d0 <= 1,
                3 => joined && d0 >= 2,
                4 => joined && d0 == 0,
                11 => d0 == 0,
                _ => false,
            };
            match prev {
                b'+' | b'(' => self.phone(hay, base, i - 1, out),
                _ if national => self.phone(hay, base, i, out),
                _ => {}
            }
        }
        if r > 19 || (r < 9 && !joined) {
            return;
        }
        if r >= 9 && right_ok(hay, run_end) {
            let mut d = [0u8; 19];
            let Some(n) = hay.get(i..run_end).and_then(|s| digits_into(s, &mut d)) else { return };
            let d = d.get(..n).unwrap_or_default();
            let hit = match n {
                9 => self.on(Kind::Ssn) && validate::ssn(d) && ctx.ssn.near(hay, i, run_end),
                10 => self.on(Kind::Vkn) && validate::vkn(d) && ctx.vkn.near(hay, i, run_end),
                11 => self.on(Kind::Tckn) && validate::tckn(d),
                _ => false,
            };
            if hit {
                let kind = [Kind::Ssn, Kind::Vkn, Kind::Tckn].get(n - 9).copied().unwrap_or(Kind::Tckn);
                self.push(hay, base, i, run_end, kind, out);
            }
            if n >= 13 && self.on(Kind::Card) && validate::card(d) {
                self.push(hay, base, i, run_end, Kind::Card, out);
            }
        }
        if matches!(next, b' ' | b'-') && at(hay, run_end + 1).is_ascii_digit() {
            if r == 4 && self.on(Kind::Card) {
                let p4 = hay.get(i..run_end).unwrap_or_default().iter().fold(0, |a, &b| a * 10 + u32::from(b - b'0'));
                if validate::iin_possible(p4) {
                    self.grouped_card(hay, base, i, run_end, next, out);
                }
            }
            if r == 3 && self.on(Kind::Ssn) {
                self.grouped_ssn(hay, base, i, run_end, next, ctx, out);
            }
        }
    }

    /// `4111 1111 1111 1111`, `3782-822463-10005`: one separator throughout; groups of four with
    /// a shorter last group, or 4-6-5 / 4-6-4. The longest valid reading wins.
    fn grouped_card(&self, hay: &[u8], base: usize, i: usize, first_end: usize, sep: u8, out: &mut Vec<Cand>) {
        let mut d = [0u8; 19];
        let mut n = 0;
        for &b in hay.get(i..first_end).unwrap_or_default() {
            if let Some(slot) = d.get_mut(n) {
                *slot = b - b'0';
                n += 1;
            }
        }
        let mut sizes = [4usize; 6];
        let mut groups = 1;
        let mut q = first_end;
        let mut best = None;
        while at(hay, q) == sep && at(hay, q + 1).is_ascii_digit() && groups < sizes.len() {
            let gs = q + 1;
            let ge = digit_run_end(hay, gs);
            let g = ge - gs;
            if g > 6 || n + g > 19 {
                break;
            }
            for &b in hay.get(gs..ge).unwrap_or_default() {
                if let Some(slot) = d.get_mut(n) {
                    *slot = b - b'0';
                    n += 1;
                }
            }
            if let Some(s) = sizes.get_mut(groups) {
                *s = g;
            }
            groups += 1;
            q = ge;
            let shape = sizes.get(..groups).unwrap_or_default();
            let ok_shape = match shape {
                [4, 6, 5] | [4, 6, 4] => true,
                [init @ .., last] => init.iter().all(|&s| s == 4) && (1..=4).contains(last),
                [] => false,
            };
            if n >= 13 && ok_shape && right_ok(hay, q) && validate::card(d.get(..n).unwrap_or_default()) {
                best = Some(q);
            }
        }
        if let Some(end) = best {
            self.push(hay, base, i, end, Kind::Card, out);
        }
    }

    /// `123-45-6789` (no keyword needed) or `123 45 6789` (keyword needed).
    #[allow(clippy::too_many_arguments)]
    fn grouped_ssn(
        &self,
        hay: &[u8],
        base: usize,
        i: usize,
        first_end: usize,
        sep: u8,
        ctx: &mut Contexts<'_>,
        out: &mut Vec<Cand>,
    ) {
        let g2 = first_end + 1;
        let g2_end = digit_run_end(hay, g2);
        let g3 = g2_end + 1;
        let g3_end = digit_run_end(hay, g3);
        if g2_end - g2 != 2 || at(hay, g2_end) != sep || g3_end.saturating_sub(g3) != 4 || !right_ok(hay, g3_end) {
            return;
        }
        let mut d = [0u8; 9];
        let ok = hay.get(i..g3_end).and_then(|s| digits_into(s, &mut d)) == Some(9) && validate::ssn(&d);
        if ok && (sep == b'-' || ctx.ssn.near(hay, i, g3_end)) {
            self.push(hay, base, i, g3_end, Kind::Ssn, out);
        }
    }

    /// A phone number starting at `p` (`+`, `(` or a digit). Groups of digits separated by one
    /// space, dash or dot, with at most one parenthesised group; every group end is a possible
    /// end, the longest valid one wins.
    fn phone(&self, hay: &[u8], base: usize, p: usize, out: &mut Vec<Cand>) {
        let mut q = p;
        let intl = at(hay, q) == b'+';
        if intl {
            q += 1;
        }
        let mut in_paren = false;
        let mut paren_used = false;
        if at(hay, q) == b'(' {
            in_paren = true;
            paren_used = true;
            q += 1;
        }
        let mut d = [0u8; PHONE_DIGITS_MAX];
        let mut n = 0;
        let mut sizes = [0usize; 8];
        let mut groups = 0;
        let mut best = None;
        loop {
            let gs = q;
            let ge = digit_run_end(hay, gs);
            let g = ge - gs;
            if g == 0 || n + g > PHONE_DIGITS_MAX || groups >= sizes.len() || ge - p > PHONE_SPAN_MAX {
                break;
            }
            for &b in hay.get(gs..ge).unwrap_or_default() {
                if let Some(slot) = d.get_mut(n) {
                    *slot = b - b'0';
                    n += 1;
                }
            }
            if let Some(s) = sizes.get_mut(groups) {
                *s = g;
            }
            groups += 1;
            q = ge;
            if in_paren {
                if at(hay, q) != b')' {
                    break;
                }
                q += 1;
                in_paren = false;
                match (at(hay, q), at(hay, q + 1)) {
                    (b' ' | b'-', c) if c.is_ascii_digit() => q += 1,
                    (c, _) if c.is_ascii_digit() => {}
                    _ => break,
                }
                continue;
            }
            let digits = d.get(..n).unwrap_or_default();
            if phone_valid(digits, sizes.get(..groups).unwrap_or_default(), intl) && right_ok(hay, q) {
                best = Some(q);
            }
            match (at(hay, q), at(hay, q + 1), at(hay, q + 2)) {
                (b' ' | b'-' | b'.', c, _) if c.is_ascii_digit() => q += 1,
                (b' ', b'(', c) if !paren_used && c.is_ascii_digit() => {
                    q += 2;
                    in_paren = true;
                    paren_used = true;
                }
                (b'(', c, _) if !paren_used && c.is_ascii_digit() => {
                    q += 1;
                    in_paren = true;
                    paren_used = true;
                }
                _ => break,
            }
        }
        if let Some(end) = best {
            self.push(hay, base, p, end, Kind::Phone, out);
        }
    }

    /// An IBAN whose country code starts at `s`: electronic (`TR330006…`) or printed in groups
    /// of four separated by one space (`TR33 0006 1005 …`).
    fn iban(&self, hay: &[u8], base: usize, s: usize, out: &mut Vec<Cand>) {
        let Some(&(_, len, _)) = hay.get(s..s + 2).and_then(validate::iban_country) else { return };
        let len = usize::from(len);
        let alnum = |b: u8| b.is_ascii_digit() || b.is_ascii_uppercase();
        let mut buf = [0u8; validate::IBAN_MAX_LEN];
        let mut n = 0;
        let mut q = s;
        let mut take = |b: u8, n: &mut usize| -> bool {
            match buf.get_mut(*n) {
                Some(slot) => {
                    *slot = b;
                    *n += 1;
                    true
                }
                None => false,
            }
        };
        // The country code and the check digits (checked by the caller).
        for _ in 0..4 {
            if !take(at(hay, q), &mut n) {
                return;
            }
            q += 1;
        }
        if at(hay, q) == b' ' && alnum(at(hay, q + 1)) {
            while n < len {
                if at(hay, q) != b' ' {
                    return;
                }
                q += 1;
                let gs = q;
                while q - gs < 4 && alnum(at(hay, q)) {
                    q += 1;
                }
                let g = q - gs;
                if g == 0 || n + g > len || (g < 4 && n + g < len) {
                    return;
                }
                for &b in hay.get(gs..q).unwrap_or_default() {
                    if !take(b, &mut n) {
                        return;
                    }
                }
            }
        } else {
            while n < len && alnum(at(hay, q)) {
                if !take(at(hay, q), &mut n) {
                    return;
                }
                q += 1;
            }
        }
        if n == len && !is_word(at(hay, q)) && validate::iban(buf.get(..n).unwrap_or_default()) {
            self.push(hay, base, s, q, Kind::Iban, out);
        }
    }

    /// An email address around the `@` at `a`.
    fn email(&self, hay: &[u8], base: usize, a: usize, out: &mut Vec<Cand>) {
        let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80;
        let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80;
        let mut s = a;
        while s > a.saturating_sub(EMAIL_LOCAL_MAX) && local(before(hay, s, 1)) {
            s -= 1;
        }
        // `\nahmet@…` inside a JSON string: the `n` belongs to the escape.
        if before(hay, s, 1) == b'\\' && matches!(at(hay, s), b'n' | b't' | b'r') {
            s += 1;
        }
        while s < a && at(hay, s) == b'.' {
            s += 1;
        }
        if s >= a || before(hay, a, 1) == b'.' {
            return;
        }
        let mut q = a + 1;
        let mut labels = 1;
        let mut label_start = q;
        loop {
            let b = at(hay, q);
            if domain(b) {
                q += 1;
            } else if b == b'.' && q > label_start && domain(at(hay, q + 1)) {
                q += 1;
                labels += 1;
                label_start = q;
            } else {
                break;
            }
            if q - (a + 1) > EMAIL_DOMAIN_MAX {
                return;
            }
        }
        if labels < 2 || q == label_start {
            return;
        }
        let tld = hay.get(label_start..q).unwrap_or_default();
        let tld_ok = (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
            || tld.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
            || tld.iter().any(|&b| b >= 0x80);
        // `icon@2x.png`: asset names, not addresses.
        let file = [&b"png"[..], b"jpg", b"jpeg", b"gif", b"svg", b"webp"].iter().any(|e| tld.eq_ignore_ascii_case(e));
        if tld_ok && !file {
            self.push(hay, base, s, q, Kind::Email, out);
        }
    }

    /// Custom matches starting in `[*at, limit)` (absolute): the multi-pattern regex's leftmost-
    /// first, non-overlapping matches, continuing from `*at`, which is advanced past them (and
    /// to at least `limit`).
    pub(crate) fn customs(
        &self,
        mut cache: Option<&mut meta::Cache>,
        hay: &[u8],
        base: usize,
        at_pos: &mut usize,
        limit: usize,
        out: &mut Vec<Cand>,
    ) {
        let Some(re) = &self.custom_re else {
            *at_pos = (*at_pos).max(limit);
            return;
        };
        // Matches come in order: one memoised keyword scan per detector with context.
        let mut contexts: Vec<KeywordScan<'_, Box<[u8]>>> =
            self.custom.iter().map(|c| KeywordScan::new(c.context.as_slice())).collect();
        while *at_pos < limit {
            let Some(from) = at_pos.checked_sub(base).filter(|&f| f <= hay.len()) else { break };
            let input = Input::new(hay).range(from..);
            let found = match cache.as_deref_mut() {
                Some(c) => re.search_with(c, &input),
                None => re.search(&input),
            };
            let Some(m) = found.filter(|m| m.start() + base < limit) else { break };
            let idx = m.pattern().as_usize();
            if let (Some(c), Some(value), Ok(k)) = (self.custom.get(idx), hay.get(m.range()), u8::try_from(idx)) {
                let mut context = || contexts.get_mut(idx).is_some_and(|k| k.near(hay, m.start(), m.end()));
                if validator_ok(c.validator, value) && (c.context.is_empty() || context()) {
                    self.push(hay, base, m.start(), m.end(), Kind::Custom(k), out);
                }
            }
            // Patterns never match the empty string (refused when compiled).
            *at_pos = (m.end() + base).max(*at_pos + 1);
        }
        *at_pos = (*at_pos).max(limit);
    }
}

/// Whether the digits read so far (in groups of `sizes`) make a phone number: see the module doc
/// of [`super`] for the accepted forms.
fn phone_valid(d: &[u8], sizes: &[usize], intl: bool) -> bool {
    let n = d.len();
    let (d0, d1, d2) = (at(d, 0), at(d, 1), at(d, 2));
    if intl {
        return match (d0, d1) {
            (0, _) => false,
            (9, 0) => n == 12 && (2..=5).contains(&d2),
            (1, _) => n == 11 && d1 >= 2,
            _ => (8..=PHONE_DIGITS_MAX).contains(&n),
        };
    }
    match (n, d0) {
        // Turkish national: 0 + area code (2xx–4xx landline, 5xx mobile) + 7 digits.
        (11, 0) => (2..=5).contains(&d1),
        // NANP 1-NXX-NXX-XXXX.
        (11, 1) => sizes == [1, 3, 3, 4] && d1 >= 2,
        // Ten digits, grouped: (532) 123 45 67, 555-123-4567, 212 444 55 66.
        (10, 2..=9) => sizes.len() >= 3 && sizes.first() == Some(&3) && sizes.iter().all(|&s| s <= 4),
        _ => false,
    }
}

/// A custom detector's optional validator over its matched value.
pub(crate) fn validator_ok(v: Validator, value: &[u8]) -> bool {
    let mut d = [0u8; MAX_CUSTOM_LEN];
    let n = digits_into(value, &mut d);
    let d = n.and_then(|n| d.get(..n)).unwrap_or_default();
    match v {
        Validator::None => true,
        Validator::Luhn => d.len() >= 2 && validate::luhn(d),
        Validator::Card => validate::card(d),
        Validator::Tckn => validate::tckn(d),
        Validator::Vkn => validate::vkn(d),
        Validator::Ssn => validate::ssn(d),
        Validator::Iban | Validator::Mod97 => {
            let mut s = [0u8; validate::IBAN_MAX_LEN];
            let mut k = 0;
            for &b in value {
                if b.is_ascii_alphanumeric() {
                    let Some(slot) = s.get_mut(k) else { return false };
                    *slot = b.to_ascii_uppercase();
                    k += 1;
                }
            }
            let s = s.get(..k).unwrap_or_default();
            match v {
                Validator::Iban => validate::iban(s),
                _ => {
                    s.get(..2).is_some_and(|c| c.iter().all(u8::is_ascii_uppercase))
                        && s.get(2..4).is_some_and(|c| c.iter().all(u8::is_ascii_digit))
                        && validate::mod97(s)
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
