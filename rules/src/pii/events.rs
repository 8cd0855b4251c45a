//! `text/event-stream` bodies (server-sent events), scanned event by event.
//!
//! An event ends at an empty line (RFC: lines end with CRLF, LF or CR; an event is dispatched
//! at the blank line). A client never joins two events into one value, so a value cannot span
//! an event boundary: each event is scanned whole, on its own, and written out (masked where
//! needed) the moment its blank line arrives. Nothing is held back beyond the event being
//! received, so a clean event reaches the client as soon as the upstream sent it, however long
//! the stream stays open.
//!
//! * An event with a `block` match (or over the cap under `fail_closed` when the policy redacts
//!   or blocks) stops the stream: nothing of it or after it is written ([`EventWithheld`]);
//!   what was written before was scanned.
//! * `max_body_bytes` applies to each event, not to the stream. An event longer than that
//!   without its blank line: under `scan_prefix` (or a policy that only monitors) its first
//!   `max_body_bytes` are scanned and written (masked), the rest of that event passes unscanned
//!   up to its blank line (reported with `over_cap`), and the next event is scanned again.
//! * What is left at the end of the body (an event without its blank line) is scanned too.

use std::sync::Arc;

use super::scan::Shared;
use super::{PiiAction, Scan};

/// An event stream stopped: an event had to be withheld (a `block` match, or over the cap
/// under `fail_closed`). Nothing more may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWithheld;

impl std::fmt::Display for EventWithheld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event of the stream is withheld: the stream ends before it")
    }
}

impl std::error::Error for EventWithheld {}

/// Scans a `text/event-stream` body event by event (see the module documentation). The
/// [`Scan`] of the whole stream ([`EventScanner::scan`]) adds up every event's: matches (at
/// their offsets in the stream), exclusions, bytes scanned; `over_cap` when an event was over
/// the cap; the strongest action.
#[derive(Debug)]
pub struct EventScanner {
    shared: Arc<Shared>,
    /// The event being received (not written yet).
    buf: Vec<u8>,
    /// Offset of `buf` in the stream.
    base: usize,
    /// The next byte starts a line.
    line_start: bool,
    /// The last byte was a CR (a LF right after it ends the same line).
    prev_cr: bool,
    /// The current event went over the cap: the rest of it passes unscanned.
    passthrough: bool,
    /// An event was withheld: nothing more is written.
    stopped: bool,
    scan: Scan,
}

impl EventScanner {
    pub(crate) fn new(shared: Arc<Shared>) -> EventScanner {
        EventScanner {
            shared,
            buf: Vec::new(),
            base: 0,
            line_start: true,
            prev_cr: false,
            passthrough: false,
            stopped: false,
            scan: Scan::default(),
        }
    }

    /// Bytes received but not written yet (the event being received).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// The scan of the stream so far.
    pub fn scan(&self) -> &Scan {
        &self.scan
    }

    /// Takes the next chunk: appends to `out` every event it completes (masked where needed).
    /// `Err`: an event is withheld; nothing of it was written, and nothing will be.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), EventWithheld> {
        if self.stopped {
            return Err(EventWithheld);
        }
        let cap = self.shared.limits.cap;
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.passthrough {
                let (end, found) = match self.boundary(rest) {
                    Some(i) => (i, true),
                    None => (rest.len(), false),
                };
                let (now, later) = rest.split_at(end);
                out.extend_from_slice(now);
                self.base += now.len();
                self.passthrough = !found;
                rest = later;
                continue;
            }
            // One byte past the cap is enough to know the event is over it.
            let room = (cap + 1).saturating_sub(self.buf.len());
            let window = rest.get(..room.min(rest.len())).unwrap_or(rest);
            match self.boundary(window) {
                Some(i) => {
                    let (event, later) = rest.split_at(i);
                    self.buf.extend_from_slice(event);
                    rest = later;
                    self.event(out)?;
                }
                None => {
                    self.buf.extend_from_slice(window);
                    rest = rest.get(window.len()..).unwrap_or_default();
                    if self.buf.len() > cap {
                        self.event(out)?;
                        self.passthrough = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the body: scans and writes what is left (an event without its blank line).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EventWithheld> {
        if self.stopped {
            return Err(EventWithheld);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.event(out)
    }

    /// The scan of the whole stream (after [`EventScanner::finish`], or after a stop).
    pub fn into_scan(self) -> Scan {
        self.scan
    }

    /// Follows lines through `bytes`: the index just past the blank line that ends an event
    /// (with the LF of a CRLF when it is there), or `None` (the state then covers all of
    /// `bytes`).
    fn boundary(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            i += 1;
            if self.prev_cr && b == b'\n' {
                // The LF of a CRLF: the line already ended at the CR.
                self.prev_cr = false;
                continue;
            }
            self.prev_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                if self.line_start {
                    if self.prev_cr && bytes.get(i) == Some(&b'\n') {
                        i += 1;
                        self.prev_cr = false;
                    }
                    return Some(i);
                }
                self.line_start = true;
            } else {
                self.line_start = false;
            }
        }
        None
    }

    /// Scans the event in `buf` (or its first `cap` bytes), writes it or stops.
    fn event(&mut self, out: &mut Vec<u8>) -> Result<(), EventWithheld> {
        let shared = &*self.shared;
        let scan = shared.scan(&self.buf);
        let withhold = scan.action == Some(PiiAction::Block) || shared.fails_closed(scan.over_cap);
        if !withhold {
            shared.redact(&self.buf, &scan, out);
        }
        self.add(scan);
        self.base += self.buf.len();
        self.buf.clear();
        if withhold {
            self.stopped = true;
            return Err(EventWithheld);
        }
        Ok(())
    }

    fn add(&mut self, s: Scan) {
        let base = self.base;
        let total = &mut self.scan;
        total.matches.extend(s.matches.into_iter().map(|mut m| {
            m.start += base;
            m.end += base;
            m
        }));
        total.excluded += s.excluded;
        total.scanned += s.scanned;
        total.over_cap |= s.over_cap;
        total.action = total.action.max(s.action);
        if total.sample.is_none() {
            total.sample = s.sample;
        }
    }
}
