//! Resolution (which candidates become matches), whole-body scanning, streaming, masking.
//!
//! Candidates are resolved leftmost first, then longest, then in detector order: a candidate
//! overlapping one already taken is dropped. Excluded candidates take their span too (and are
//! counted, not reported), so an excluded order number hides nothing inside it. Candidates inside
//! the value of an excluded JSON key are counted as excluded.
//!
//! The stream runs exactly this resolution over a sliding buffer: it generates candidates for
//! anchors at least [`LOOKAHEAD`] bytes behind the newest byte, resolves those starting at least
//! [`ANCHOR_BACK`] bytes further back (every candidate starting there is known by then), emits
//! the bytes up to that point (masked where a match is redacted) and keeps [`LOOKBEHIND`] bytes
//! of history. Hence [`HOLDBACK`]: the most the stream holds back beyond a match it is masking.

use std::sync::Arc;

use regex_automata::meta;

use super::detect::{Cand, Engine, ANCHOR_BACK, LOOKAHEAD, LOOKBEHIND};
use super::json::JsonTracker;
use super::{Mask, OverCap, PiiAction, PiiMatch, Sample, Scan};

/// The most bytes a [`StreamScanner`] holds back (not yet emitted) after a `push`, beyond the end
/// of a match it has started masking: the overlap window.
pub const HOLDBACK: usize = LOOKAHEAD + ANCHOR_BACK;

/// What replaces a redacted value with [`Mask::Token`].
pub const REDACTED_TOKEN: &[u8] = b"[REDACTED]";

/// Longest masked sample in a summary, in bytes (the end of the masked value is kept).
pub const MAX_SAMPLE_LEN: usize = 64;

/// Don't move the stream's buffer for less than this. Dropping history first walks the JSON
/// tracker over it (8 instructions a byte on order JSON); kept, the tracker only walks up to
/// the candidates, as a whole-body scan does: a 16 KiB response streamed cost 517k instructions
/// with 4 KiB here and ~385k with 64 KiB. The price: a streamed response keeps up to 64 KiB (plus
/// one read) of history.
pub(crate) const COMPACT_MIN: usize = 64 * 1024;

/// The configuration the engine scans with beyond detection.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) cap: usize,
    pub(crate) over_cap: OverCap,
    pub(crate) mask: Mask,
    /// The strongest action any detector of the policy has (after `mode: monitor`).
    pub(crate) strongest: Option<PiiAction>,
    /// Some detector redacts (after `mode: monitor`).
    pub(crate) redacts: bool,
}

/// The engine and its limits, shared by a policy and its streams.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
}

impl Shared {
    /// The JSON tracker is needed for key exclusions, and to quote a redacted bare JSON number.
    fn tracker(&self) -> Option<JsonTracker> {
        let keys = !self.engine.json_keys.is_empty();
        (keys || self.limits.redacts).then(|| JsonTracker::new(keys))
    }

    /// The action a scan that stopped at the cap adds.
    fn cap_action(&self, over_cap: bool) -> Option<PiiAction> {
        (over_cap && self.limits.over_cap == OverCap::FailClosed).then_some(self.limits.strongest).flatten()
    }

    /// Over the cap, the rest must not be sent.
    pub(crate) fn fails_closed(&self, over_cap: bool) -> bool {
        self.cap_action(over_cap) >= Some(PiiAction::Redact)
    }

    /// Scans `body` whole (its first `cap` bytes).
    pub(crate) fn scan(&self, body: &[u8]) -> Scan {
        let n = body.len().min(self.limits.cap);
        let hay = body.get(..n).unwrap_or_default();
        let mut cands = Vec::new();
        self.engine.builtins(hay, 0, 0, n, &mut cands);
        let mut at = 0;
        self.engine.customs(None, hay, 0, &mut at, n, &mut cands);
        cands.sort_unstable_by_key(Cand::order);
        let mut res = Resolver::new(self);
        res.take(self, hay, 0, &cands);
        let over = body.len() > n;
        res.finish(self, n, over)
    }

    /// Writes `body` with every match of `scan` whose action is `redact` masked. A body over the
    /// cap under `fail_closed` (with a policy that redacts or blocks) is written up to the cap
    /// only, as the stream does.
    pub(crate) fn redact(&self, body: &[u8], scan: &Scan, out: &mut Vec<u8>) {
        let body = if self.fails_closed(scan.over_cap) { body.get(..scan.scanned).unwrap_or(body) } else { body };
        let mut at = 0;
        for m in scan.matches.iter().filter(|m| m.action == PiiAction::Redact) {
            let (Some(before), Some(value)) = (body.get(at..m.start), body.get(m.start..m.end)) else { continue };
            out.extend_from_slice(before);
            write_mask(self.limits.mask, value, m.quote, out);
            at = m.end;
        }
        out.extend_from_slice(body.get(at..).unwrap_or_default());
    }
}

/// The resolution state: the end of the last span taken, the JSON tracker, the scan so far.
#[derive(Debug)]
struct Resolver {
    last_end: usize,
    json: Option<JsonTracker>,
    scan: Scan,
}

impl Resolver {
    fn new(shared: &Shared) -> Resolver {
        Resolver { last_end: 0, json: shared.tracker(), scan: Scan::default() }
    }

    /// Resolves `cands` (sorted by [`Cand::order`], starting after every earlier batch's).
    fn take(&mut self, shared: &Shared, hay: &[u8], base: usize, cands: &[Cand]) {
        let engine = &shared.engine;
        for c in cands {
            if c.start < self.last_end {
                continue;
            }
            self.last_end = c.end;
            if let Some(j) = &mut self.json {
                j.advance(hay, base, c.start, &engine.json_keys);
            }
            let skipped = !engine.json_keys.is_empty() && self.json.as_ref().is_some_and(JsonTracker::skipping);
            if c.excluded || skipped {
                self.scan.excluded += 1;
                continue;
            }
            let action = engine.action(c.kind);
            let quote =
                action == PiiAction::Redact && self.json.as_ref().is_some_and(|j| j.is_json() && !j.in_string());
            let value = hay.get(c.start - base..c.end - base).unwrap_or_default();
            if self.scan.sample.is_none() {
                let mut masked = Vec::with_capacity(value.len());
                last4(value, &mut masked);
                let cut = masked.len().saturating_sub(MAX_SAMPLE_LEN);
                let masked = String::from_utf8_lossy(masked.get(cut..).unwrap_or_default()).into_owned();
                self.scan.sample = Some(Sample { kind: c.kind, masked });
            }
            self.scan.matches.push(PiiMatch { kind: c.kind, start: c.start, end: c.end, action, quote });
        }
    }

    fn finish(mut self, shared: &Shared, scanned: usize, over_cap: bool) -> Scan {
        self.scan.scanned = scanned;
        self.scan.over_cap = over_cap;
        let found = self.scan.matches.iter().map(|m| m.action).max();
        self.scan.action = found.max(shared.cap_action(over_cap));
        self.scan
    }
}

/// The body went over the policy's `max_body_bytes` with `over_cap: fail_closed`: the gateway
/// must not send the rest (abort the response; what was emitted before is scanned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCapError;

impl std::fmt::Display for OverCapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response body over the PII scan cap (over_cap: fail_closed)")
    }
}

impl std::error::Error for OverCapError {}

/// Scans a body chunk by chunk and writes it out redacted, holding back at most [`HOLDBACK`]
/// bytes (plus the rest of a match being masked). The concatenation of everything written by
/// [`push`](StreamScanner::push) and [`finish`](StreamScanner::finish) is, for any chunking,
/// exactly what [`PiiPolicy::redact`](super::PiiPolicy::redact) writes for the whole body, and
/// the [`Scan`] returned by `finish` is exactly [`PiiPolicy::scan`](super::PiiPolicy::scan)'s.
pub struct StreamScanner {
    shared: Arc<Shared>,
    cache: Option<meta::Cache>,
    /// Bytes from absolute position `base` on: history (already emitted) and pending.
    buf: Vec<u8>,
    base: usize,
    /// Bytes accepted for scanning (at most the cap).
    total: usize,
    /// Built-in anchors before this have been looked at.
    scanned: usize,
    /// Where the custom regex search continues.
    custom_at: usize,
    /// Bytes before this have been written out.
    emitted: usize,
    /// Matches before this index have been written out.
    emitted_matches: usize,
    /// Candidates generated, not resolved yet.
    pending: Vec<Cand>,
    res: Resolver,
    /// The cap was crossed.
    over: bool,
}

impl std::fmt::Debug for StreamScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("total", &self.total)
            .field("emitted", &self.emitted)
            .field("held", &(self.base + self.buf.len() - self.emitted))
            .field("matches", &self.res.scan.matches.len())
            .field("over", &self.over)
            .finish()
    }
}

impl StreamScanner {
    pub(crate) fn new(shared: Arc<Shared>) -> StreamScanner {
        let cache = shared.engine.custom_re.as_ref().map(meta::Regex::create_cache);
        let res = Resolver::new(&shared);
        StreamScanner {
            shared,
            cache,
            buf: Vec::new(),
            base: 0,
            total: 0,
            scanned: 0,
            custom_at: 0,
            emitted: 0,
            emitted_matches: 0,
            pending: Vec::new(),
            res,
            over: false,
        }
    }

    /// Scans the next chunk and appends to `out` every byte it is sure about (redacted). Past
    /// the cap, bytes are passed through unscanned (`over_cap: scan_prefix`, or a policy that
    /// only monitors) or refused with [`OverCapError`] (`fail_closed`): nothing past the cap is
    /// written then, on this call or later ones.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), OverCapError> {
        let room = self.shared.limits.cap - self.total;
        let (now, rest) = chunk.split_at(room.min(chunk.len()));
        if !now.is_empty() {
            self.buf.extend_from_slice(now);
            self.total += now.len();
            self.step(false, out);
        }
        if rest.is_empty() {
            return Ok(());
        }
        if !self.over {
            // The scanned part ends at the cap, exactly as a whole-body scan of the first `cap`
            // bytes.
            self.step(true, out);
            self.over = true;
        }
        if self.shared.fails_closed(true) {
            return Err(OverCapError);
        }
        out.extend_from_slice(rest);
        Ok(())
    }

    /// Ends the body: writes what was held back and returns the scan of the whole body.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Scan {
        if !self.over {
            self.step(true, out);
        }
        let (shared, total, over) = (self.shared.clone(), self.total, self.over);
        self.res.finish(&shared, total, over)
    }

    /// Bytes pushed but not written out yet.
    pub fn held(&self) -> usize {
        self.base + self.buf.len() - self.emitted
    }

    /// Matches found so far (resolved, in body order).
    pub fn matches(&self) -> &[PiiMatch] {
        &self.res.scan.matches
    }

    fn step(&mut self, last: bool, out: &mut Vec<u8>) {
        let shared = &*self.shared;
        let engine = &shared.engine;
        let end = self.base + self.buf.len();
        let limit = if last { end } else { end.saturating_sub(LOOKAHEAD) };
        if limit > self.scanned {
            engine.builtins(&self.buf, self.base, self.scanned, limit, &mut self.pending);
            self.scanned = limit;
        }
        engine.customs(self.cache.as_mut(), &self.buf, self.base, &mut self.custom_at, limit, &mut self.pending);
        let commit = if last { end } else { limit.saturating_sub(ANCHOR_BACK) };

        self.pending.sort_unstable_by_key(Cand::order);
        let ready = self.pending.partition_point(|c| c.start < commit);
        if ready > 0 {
            self.res.take(shared, &self.buf, self.base, self.pending.get(..ready).unwrap_or_default());
            self.pending.drain(..ready);
        }

        for m in self.res.scan.matches.get(self.emitted_matches..).unwrap_or_default() {
            let (a, s, e) = (self.emitted - self.base, m.start - self.base, m.end - self.base);
            out.extend_from_slice(self.buf.get(a..s).unwrap_or_default());
            let value = self.buf.get(s..e).unwrap_or_default();
            if m.action == PiiAction::Redact {
                write_mask(shared.limits.mask, value, m.quote, out);
            } else {
                out.extend_from_slice(value);
            }
            self.emitted = m.end;
        }
        self.emitted_matches = self.res.scan.matches.len();
        if commit > self.emitted {
            out.extend_from_slice(self.buf.get(self.emitted - self.base..commit - self.base).unwrap_or_default());
            self.emitted = commit;
        }

        // History kept: what future anchors may look back at, and nothing not yet written.
        let keep = self.emitted.min(self.scanned).saturating_sub(LOOKBEHIND).max(self.base);
        let drop = keep - self.base;
        if drop >= COMPACT_MIN.max(self.buf.len() / 2) {
            if let Some(j) = &mut self.res.json {
                j.advance(&self.buf, self.base, keep, &engine.json_keys);
            }
            self.buf.drain(..drop);
            self.base = keep;
        }
    }
}

/// Writes the mask of `value`; `quote`: the value is a bare JSON number, write the mask as a
/// JSON string so the body stays valid JSON.
pub(crate) fn write_mask(mask: Mask, value: &[u8], quote: bool, out: &mut Vec<u8>) {
    if quote {
        out.push(b'"');
    }
    match mask {
        Mask::Last4 => last4(value, out),
        Mask::Token => out.extend_from_slice(REDACTED_TOKEN),
    }
    if quote {
        out.push(b'"');
    }
}

/// Same length as `value`: ASCII letters and digits become `*` except the last four, every
/// non-ASCII byte becomes `*`, ASCII punctuation and spaces stay (and a backslash keeps the byte
/// after it, so a JSON escape stays one).
pub(crate) fn last4(value: &[u8], out: &mut Vec<u8>) {
    let from = out.len();
    out.extend_from_slice(value);
    let Some(masked) = out.get_mut(from..) else { return };
    let mut kept = 0;
    for i in (0..masked.len()).rev() {
        let escaped = i > 0 && masked.get(i - 1) == Some(&b'\\');
        let Some(b) = masked.get_mut(i) else { continue };
        if escaped {
            continue;
        }
        if b.is_ascii_alphanumeric() {
            if kept < 4 {
                kept += 1;
            } else {
                *b = b'*';
            }
        } else if !b.is_ascii() {
            *b = b'*';
        }
    }
}

/// The oracle the streaming scanner is held to, shared by the unit tests and the `pii_stream`
/// fuzz target (`fuzz/`): a whole-body scan and redaction, and the same body streamed in given
/// chunks. For every body and every chunking the two must agree (scan and output).
impl super::PiiPolicy {
    /// [`PiiPolicy::scan`](super::PiiPolicy::scan) then [`PiiPolicy::redact`](super::PiiPolicy::redact)
    /// of the whole body: the scan and the redacted output.
    pub fn scan_whole(&self, body: &[u8]) -> (Scan, Vec<u8>) {
        let scan = self.scan(body);
        let mut out = Vec::new();
        self.redact(body, &scan, &mut out);
        (scan, out)
    }

    /// Streams `body` through a [`StreamScanner`], cut at `cuts` (positions; each is clamped to
    /// lie between the previous cut and the end, so any list is a valid chunking). Returns the
    /// scan, the output, and whether a push refused the rest ([`OverCapError`]).
    pub fn scan_chunked(&self, body: &[u8], cuts: &[usize]) -> (Scan, Vec<u8>, bool) {
        let mut s = self.stream();
        let mut out = Vec::new();
        let mut refused = false;
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&body.len())) {
            let c = c.clamp(at, body.len());
            if s.push(body.get(at..c).unwrap_or_default(), &mut out).is_err() {
                refused = true;
            }
            at = c;
        }
        let scan = s.finish(&mut out);
        (scan, out, refused)
    }
}
