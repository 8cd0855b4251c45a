//! PII scanning of upstream responses: what the proxy phases need around the pure engine
//! ([`portcullis_rules::pii`]). Two paths, chosen per response by the route's policy:
//!
//! * **held** (the policy blocks something): the gateway fetches the response itself
//!   (`proxy::exchange`), holds its head and body up to the cap, and decides before a byte
//!   leaves — Pingora writes a response head before the first body filter runs, so a response
//!   that may have to be withheld cannot take Pingora's path;
//! * **streamed** (the policy only redacts or monitors): Pingora's path, each body chunk through
//!   [`Streaming`], holding back at most the engine's overlap window.
//!
//! Both ask the upstream for `identity` encoding and no ranges ([`request_headers`]), decide
//! from the response head whether and how to scan ([`plan`]), and decode a body compressed
//! anyway ([`crate::decode`]).

use crate::decode::{DecodeError, Decoder, Encoding};
use crate::metrics::{Declared, Def};
use bytes::Bytes;
use parking_lot::Mutex;
use pingora_http::{RequestHeader, ResponseHeader};
use portcullis_rules::pii::{BodyKind, EventScanner, OverCapError, PiiAction, PiiPolicy, Scan, StreamScanner, Summary};
use portcullis_rules::verdict::Action;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Response headers that describe the exact bytes of the upstream's body: dropped when the body
/// sent is not those bytes (redacted, or decoded).
const BODY_DIGEST_HEADERS: &[&str] = &["etag", "content-md5", "digest", "content-digest", "repr-digest"];

/// What the gateway asks the upstream for on a scanned route: an uncompressed body (nothing to
/// decode, nothing to trust a decoder with) and the whole of it (a range could cut a value in
/// two, and a redacted body has other offsets anyway).
pub fn request_headers(up: &mut RequestHeader) -> pingora_core::Result<()> {
    up.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    up.remove_header(&http::header::RANGE);
    up.remove_header(&http::header::IF_RANGE);
    Ok(())
}

/// How to treat one response under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not scanned: no body (HEAD, 1xx, 204, 304, `Content-Length: 0`) or a content type the
    /// policy does not scan.
    Pass,
    /// Scan the body, decoding it first unless `Identity`; `events`: a `text/event-stream`,
    /// scanned event by event.
    Scan(Encoding, bool),
    /// Scannable content the gateway cannot decode (an unknown or stacked `Content-Encoding`).
    Unscannable(String),
}

/// Decides from the response head (and whether the request was a HEAD).
pub fn plan(policy: &PiiPolicy, head_request: bool, resp: &ResponseHeader) -> Plan {
    let status = resp.status.as_u16();
    let no_body = head_request
        || resp.status.is_informational()
        || status == 204
        || status == 304
        || resp.headers.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
    if no_body {
        return Plan::Pass;
    }
    // Every `Content-Type` field: none, several or a malformed one is scanned.
    let kind = policy.body_kind(resp.headers.get_all(http::header::CONTENT_TYPE).iter().map(|v| v.as_bytes()));
    if kind == BodyKind::Pass {
        return Plan::Pass;
    }
    let events = kind == BodyKind::EventStream;
    // Several `Content-Encoding` fields are one list of codings (`identity` then `gzip` is gzip):
    // only a single one is decoded.
    let mut codings = resp.headers.get_all(http::header::CONTENT_ENCODING).iter();
    let ce = codings.next().map(|v| v.as_bytes());
    match Encoding::parse(ce).filter(|_| codings.next().is_none()) {
        Some(e) => Plan::Scan(e, events),
        None => {
            let all = resp.headers.get_all(http::header::CONTENT_ENCODING).iter();
            Plan::Unscannable(all.map(|v| String::from_utf8_lossy(v.as_bytes())).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The response's body will not be the upstream's bytes: its length, digests and validators go,
/// ranges are off; `decoded`: it is no longer compressed either.
pub fn body_rewritten(resp: &mut ResponseHeader, decoded: bool) -> pingora_core::Result<()> {
    resp.remove_header(&http::header::CONTENT_LENGTH);
    for h in BODY_DIGEST_HEADERS {
        resp.remove_header(*h);
    }
    if decoded {
        resp.remove_header(&http::header::CONTENT_ENCODING);
    }
    resp.insert_header(http::header::ACCEPT_RANGES, "none")?;
    Ok(())
}

/// One streamed response's scan (the `redact`/`monitor` path).
#[derive(Debug)]
pub enum Streaming {
    /// Each chunk through the decoder (if any) and the scanner.
    Scan {
        /// Taken by the end of the body.
        scanner: Option<Scanner>,
        decoder: Option<Box<Decoder>>,
        /// Send what the scanner writes (decoded, redacted); else the upstream's bytes as they
        /// came (a compressed body under a policy that only monitors).
        send_scanned: bool,
    },
    /// A monitored body that could not be decoded: the rest passes unscanned.
    Stopped,
    /// The response head was replaced by a deny: its body goes out with the first chunk, the
    /// upstream's body is dropped.
    Withheld(Option<Bytes>),
}

/// The scanner of a streamed body.
#[derive(Debug)]
pub enum Scanner {
    /// One body, with the overlap window.
    Body(Box<StreamScanner>),
    /// A `text/event-stream`, event by event (each written out when complete).
    Events(Box<EventScanner>),
}

impl Scanner {
    fn held(&self) -> usize {
        match self {
            Scanner::Body(s) => s.held(),
            Scanner::Events(s) => s.held(),
        }
    }
}

/// What a body chunk led to.
#[derive(Debug)]
pub enum Step {
    /// Go on.
    Go,
    /// The end of the body: its scan, to count and report.
    End(Scan),
    /// A monitored body stopped being scanned (it could not be decoded): report this, go on.
    Stopped(Summary),
    /// Stop the response here: nothing more may be sent (a redacting policy over its cap with
    /// `fail_closed`, or a body it cannot decode). Report this.
    Abort(Summary),
}

impl Streaming {
    /// Starts scanning a response with this encoding (`events`: a `text/event-stream`, scanned
    /// event by event). A compressed body is sent decoded when the policy may change or withhold
    /// it (it redacts or blocks), else as the upstream sent it.
    pub fn new(policy: &PiiPolicy, encoding: Encoding, events: bool) -> Streaming {
        let decoder = Decoder::new(encoding).map(Box::new);
        let send_scanned = decoder.is_none() || policy.redacts() || policy.needs_buffering();
        let scanner =
            if events { Scanner::Events(Box::new(policy.events())) } else { Scanner::Body(Box::new(policy.stream())) };
        Streaming::Scan { scanner: Some(scanner), decoder, send_scanned }
    }

    /// True when the body sent is the decoded one (its `Content-Encoding` must go).
    pub fn sends_decoded(&self) -> bool {
        matches!(self, Streaming::Scan { decoder: Some(_), send_scanned: true, .. })
    }

    /// Filters one body chunk in place.
    pub fn body(&mut self, policy: &PiiPolicy, body: &mut Option<Bytes>, end: bool) -> Step {
        match self {
            Streaming::Withheld(deny) => {
                *body = deny.take();
                Step::Go
            }
            Streaming::Stopped => Step::Go,
            Streaming::Scan { scanner, decoder, send_scanned } => {
                let input = body.take().unwrap_or_default();
                let mut decoded = Vec::new();
                let mut failed = None;
                let plain: &[u8] = match decoder.as_mut() {
                    None => &input,
                    Some(d) => {
                        let mut r = d.push(&input, &mut decoded);
                        if end && r.is_ok() {
                            if let Some(d) = decoder.take() {
                                r = (*d).finish(&mut decoded);
                            }
                        }
                        failed = r.err();
                        &decoded
                    }
                };
                let Some(sc) = scanner.as_mut() else {
                    *body = Some(input);
                    return Step::Go;
                };
                // What this chunk writes: at most what was held back, the chunk, and a little for
                // masks that quote a bare number (growing it would copy the whole chunk again).
                let mut out = Vec::with_capacity(sc.held() + plain.len() + 64);
                let pushed = match sc {
                    Scanner::Body(b) => b.push(plain, &mut out).map_err(|OverCapError| ()),
                    Scanner::Events(e) => e.push(plain, &mut out).map_err(|_| ()),
                };
                if pushed.is_err() {
                    // Nothing past the cap, or from the withheld event on; what was written
                    // before was scanned.
                    let scan = scanner.take().map(|s| match s {
                        Scanner::Body(b) => (*b).finish(&mut Vec::new()),
                        Scanner::Events(e) => (*e).into_scan(),
                    });
                    let summary = scan.and_then(|s| policy.summary(&s));
                    *body = (*send_scanned && !out.is_empty()).then(|| Bytes::from(out));
                    let mut s = summary.unwrap_or_else(|| policy.not_scanned("over_cap", None));
                    // The rest is withheld, whatever the values masked before.
                    s.action = Action::Blocked;
                    s.finding.detail.insert("action".into(), Action::Blocked.as_str().into());
                    return Step::Abort(s);
                }
                if let Some(e) = failed {
                    return self.decode_failed(policy, body, input, out, e);
                }
                let scan = if end {
                    match scanner.take() {
                        Some(Scanner::Body(b)) => Some((*b).finish(&mut out)),
                        Some(Scanner::Events(mut e)) => {
                            if e.finish(&mut out).is_err() {
                                let mut s = policy
                                    .summary(&(*e).into_scan())
                                    .unwrap_or_else(|| policy.not_scanned("over_cap", None));
                                s.action = Action::Blocked;
                                s.finding.detail.insert("action".into(), Action::Blocked.as_str().into());
                                *body = (*send_scanned && !out.is_empty()).then(|| Bytes::from(out));
                                return Step::Abort(s);
                            }
                            Some((*e).into_scan())
                        }
                        None => None,
                    }
                } else {
                    None
                };
                *body = Some(if *send_scanned { Bytes::from(out) } else { input });
                match scan {
                    Some(s) => Step::End(s),
                    None => Step::Go,
                }
            }
        }
    }

    fn decode_failed(
        &mut self,
        policy: &PiiPolicy,
        body: &mut Option<Bytes>,
        input: Bytes,
        out: Vec<u8>,
        e: DecodeError,
    ) -> Step {
        let summary = policy.not_scanned(e.as_str(), None);
        if let Streaming::Scan { send_scanned: true, .. } = self {
            // The client gets decoded, redacted bytes: what decoded before the error is sent,
            // then the response stops.
            *body = (!out.is_empty()).then(|| Bytes::from(out));
            return Step::Abort(summary);
        }
        // Monitor: the upstream's bytes go on as they are, unscanned.
        *body = Some(input);
        *self = Streaming::Stopped;
        Step::Stopped(summary)
    }
}

/// Scanning counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct PiiState {
    /// `(rule, result)` → responses; result ∈ clean, flagged, redacted, blocked, passed (not
    /// scanned: content type or no body).
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
    scanned_bytes: AtomicU64,
}

/// Result label of a scanned response with nothing to report.
pub const CLEAN: &str = "clean";
/// Result label of a response not scanned (no body, content type not scanned).
pub const PASSED: &str = "passed";

/// The result label of a reported response.
pub fn result_label(action: Action) -> &'static str {
    match action {
        Action::Blocked => "blocked",
        Action::Redacted => "redacted",
        _ => "flagged",
    }
}

/// The label for a scan's action (`None`: clean).
pub fn action_label(a: Option<PiiAction>) -> &'static str {
    a.map_or(CLEAN, |a| result_label(a.event_action()))
}

const PII_RESPONSES_TOTAL: Def<2> = Def::counter(
    "portcullis_pii_responses_total",
    "Responses on routes with a pii rule, by rule and result (clean, flagged, redacted, blocked, passed: not scanned).",
    ["rule", "result"],
);
const PII_SCANNED_BYTES_TOTAL: Def<0> =
    Def::counter("portcullis_pii_scanned_bytes_total", "Response body bytes scanned for PII.", []);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&PII_RESPONSES_TOTAL, &PII_SCANNED_BYTES_TOTAL];

impl PiiState {
    /// Counts one response.
    pub fn count(&self, rule: &str, result: &'static str, scanned: usize) {
        *self.counts.lock().entry((rule.to_owned(), result)).or_default() += 1;
        self.scanned_bytes.fetch_add(scanned as u64, Ordering::Relaxed);
    }

    /// Prometheus families.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&PII_RESPONSES_TOTAL);
        for ((rule, result), n) in self.counts.lock().iter() {
            f.sample([rule, result], *n);
        }
        out.family(&PII_SCANNED_BYTES_TOTAL).sample([], self.scanned_bytes.load(Ordering::Relaxed));
    }
}
