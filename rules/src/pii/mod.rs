//! PII in response bodies: the `pii:` section of a rule file, and the pure detection, exclusion
//! and redaction engine the gateway runs on upstream responses.
//!
//! ```yaml
//! pii:
//!   - id: no-pii-leaks
//!     description: "KVKK: no identity, card or bank numbers leave the API"
//!     mode: enforce                  # or monitor: report only, never block or redact
//!     severity: warning              # default: pii_leak_block's (warning)
//!     routes: [api]                  # optional; default: every route
//!     detectors:                     # built-in detectors and their action; absent = off
//!       iban: block
//!       card: block
//!       tckn: redact
//!       vkn: redact
//!       ssn: redact
//!       email: monitor
//!       phone: redact
//!     custom:                        # optional, at most 32
//!       - name: employee-id
//!         regex: '\bEMP-[0-9]{6}\b'  # bytes, Unicode off, at most 128 bytes long
//!         validator: luhn            # optional: luhn | card | iban | mod97 | tckn | vkn | ssn | none
//!         context: [employee, personel]   # optional: a keyword must be near
//!         action: redact
//!     exclude:                       # optional
//!       prefixes: [SIP-, REF-, ORD-]
//!       allow_regex: ['^5105[ -]?1051[ -]?0510[ -]?5100$', '@example\.com$']
//!       json_keys: [order_id, trace_id]
//!     mask: last4                    # or token
//!     max_body_bytes: 1048576        # default 1 MiB, at most 16 MiB
//!     over_cap: fail_closed          # or scan_prefix
//!     content_types: [application/json, 'application/*+json', 'text/*', application/xml,
//!                     'application/*+xml', application/x-www-form-urlencoded]   # part of the default
//!     allow_upgrade: false           # default: WebSocket / h2c / any upgrade and CONNECT refused
//! ```
//!
//! # Which rule applies
//!
//! One policy per response: the first `pii` rule (files in name order, then position) whose
//! `routes` include the response's route, or that has no `routes`. A rule that can never apply
//! (an earlier rule has no `routes`, or takes every route it names) is a validation error.
//!
//! # Detectors
//!
//! Every detector works on bytes (UTF-8 or any ASCII-compatible encoding; a UTF-16 body is not
//! scanned meaningfully) and validates its candidates; a value must stand alone: the bytes right
//! before and after a digit-based value are not letters, digits or `_` (so `REF1234567890123456`
//! and hex ids are not candidates), and not a decimal point followed by a digit (`0.12345678950`
//! is a number). `\n`, `\t`, `\r` escapes of a JSON string count as separators.
//!
//! * `iban`: country code (upper case) of the IBAN registry, two check digits, that country's
//!   length and BBAN structure (digits / letters / alphanumerics per position), ISO 7064 mod
//!   97-10; electronic form (`TR330006100519786457841326`) or printed in groups of four separated
//!   by one space (`TR33 0006 1005 1978 6457 8413 26`).
//! * `card`: 13 to 19 digits, contiguous or with one separator throughout (space or `-`) in
//!   groups of four (the last shorter) or 4-6-5 / 4-6-4; an issuer prefix with a length that
//!   issuer uses (Visa, Mastercard incl. 2-series, Amex, Discover, UnionPay, JCB, Diners, Maestro,
//!   Mir, Troy, RuPay) and the Luhn check. A Luhn-valid number with no card prefix is not a card.
//! * `tckn`: Turkish identity number, 11 contiguous digits, first non-zero, both check digits.
//! * `vkn`: Turkish tax number, 10 contiguous digits with a valid check digit, **and** one of the
//!   keywords `vkn`, `vergi`, `tax` within 48 bytes before or after (any random 10-digit number
//!   passes the check digit one time in ten, timestamps included).
//! * `ssn`: US Social Security number, area not 000, 666 or 900–999, group not 00, serial not
//!   0000. `123-45-6789` on its own; `123 45 6789` and `123456789` only with one of the keywords
//!   `ssn`, `social security`, `social_security`, `socialsecurity` within 48 bytes.
//! * `email`: `local@domain.tld`: a local part of letters, digits, `._%+-` and non-ASCII bytes
//!   (at most its last 64 bytes are taken), a domain of at least two labels, a top-level domain
//!   of two or more letters (or IDN). `icon@2x.png` (image file names) is not an address.
//! * `phone`: E.164 (`+` and 8–15 digits; `+90` must be followed by 10 digits starting 2–5,
//!   `+1` by a NANP number), Turkish national (`0` + 2–5 + 9 digits: `05321234567`,
//!   `0532 123 45 67`, `(0532) 123 45 67`), or 10 digits grouped with the first group of three
//!   (`532 123 45 67`, `(555) 123-4567`, `555.123.4567`), and `1-800-555-1234`. Separators: one
//!   space, `-` or `.`; at most one group in parentheses. Contiguous 10-digit numbers are not
//!   phones (too many ids look like that).
//! * custom: a byte regex (Unicode off; bounded: it cannot match more than 128 bytes nor the
//!   empty string, and cannot use whole-body anchors `^ $ \A \z`), an optional validator run on
//!   the match (`luhn`, `card`, `tckn`, `vkn`, `ssn` on its digits; `iban`, `mod97` on its letters
//!   and digits), optional context keywords (as for `vkn`). The regex's matches are taken
//!   leftmost-first and non-overlapping: write `\b` around it so that a failed validation does
//!   not hide a shifted match.
//!
//! Where candidates overlap, the leftmost wins, then the longest, then detector order (built-in
//! ones in the order above, then custom ones in theirs).
//!
//! # Exclusions
//!
//! * `prefixes`: a value right after one of these (ASCII case-insensitively), or after one and a
//!   run of at most 32 digits and separators (space `-` `/` `.` `#` `:`), is not PII:
//!   `SIP-12345678950`, `ORD-2024-12345678950`, `REF- 4111 1111 1111 1111`, `sip-2024/0001 …`.
//! * `allow_regex`: a value the regex matches (searched in the value itself, `^`/`$` anchor to
//!   it) is not PII.
//! * `json_keys`: in a JSON body, values (strings, numbers, whole objects and arrays) of these
//!   keys, at any depth, are not scanned for PII. Keys compare byte for byte as written.
//!
//! An excluded value is counted (`excluded` in the event), never reported or redacted, and still
//! takes its span: nothing inside an excluded order number is reported as something else.
//!
//! # Actions and masks
//!
//! `block` (the response is withheld: 502 `response_blocked`; the gateway buffers the body to
//! decide), `redact` (the value is masked, streaming), `monitor` (reported only); the strongest
//! action among a response's matches decides ([`Scan::action`]). `mode: monitor` turns every
//! action into `monitor`. `mask: last4` keeps the last four letters or digits and
//! writes `*` over the others (punctuation and spaces stay: `**** **** **** 1111`, same length);
//! `mask: token` writes `[REDACTED]`. A redacted bare JSON number (`{"tckn": 10000000146}`) is
//! written as a string (`"*******0146"`) so the body stays JSON.
//!
//! # Caps and content types
//!
//! At most `max_body_bytes` of a body are scanned. Past that, `over_cap: fail_closed` withholds
//! the response (a blocking policy: 502; a redacting one: the stream is cut at the cap) and
//! `scan_prefix` scans the first `max_body_bytes` and passes the rest unscanned. Only responses
//! whose media type matches `content_types` are scanned (`type/subtype`, `type/*`,
//! `type/*+suffix`, `*/*`; parameters ignored, case-insensitive); a response with no
//! `Content-Type`, with several, or with one that is not a well-formed media type is scanned
//! ([`PiiPolicy::body_kind`]). `text/event-stream` is scanned event by event
//! ([`EventScanner`]): each event whole, written out at its blank line.
//!
//! # Design
//!
//! * Built-in detectors run in one hand-written pass (`detect`): it jumps eight bytes at a time
//!   (SWAR) to the next digit or `@`, classifies each digit group by its neighbours (a letter
//!   before it: not a candidate, unless two capitals start an IBAN; a decimal point: a fraction)
//!   and tries only the detectors whose shape fits, reading a bounded window; validators run only
//!   on those candidates, and context keywords are searched once per byte for the whole pass.
//! * Custom detectors are compiled together into one multi-pattern lazy-DFA regex
//!   (`regex-automata`'s meta engine, with its literal prefilters), run as one more pass (only
//!   when the rule has custom detectors). Both passes are linear in the body.
//! * Every candidate depends only on the bytes within a bounded window around the byte where the
//!   scanner found it (at most 160 bytes before, 320 after), and resolution (leftmost, longest,
//!   detector order; excluded candidates take their span) runs in body order. So the stream
//!   (`scan`) only generates candidates for bytes at least 320 bytes behind the newest one,
//!   resolves those starting 64 bytes further back, writes the body out to there, and keeps 160
//!   bytes of history: whole-body and streaming results are the same for any chunking (tested
//!   with property tests over random bodies and chunkings), and the stream never holds back
//!   more than [`HOLDBACK`] (384) bytes.
//! * The JSON tracker (`json`) follows strings eight bytes at a time (quote parity), finds
//!   listed keys written as `"key"` with `memmem`, and follows the structure byte by byte only
//!   from a listed key to the end of its value. It runs only when the rule has `json_keys` or
//!   redacts (to quote a masked bare number), and only up to the last candidate in a whole-body
//!   scan.
//!
//! # For the gateway
//!
//! 1. `Pii::for_route(route)`: no policy, no scanning. `PiiPolicy::scans_content_type(ct)`:
//!    else pass the response through. The engine scans the bytes it is given: decode a
//!    `Content-Encoding` first (or ask the upstream for `identity`), never scan compressed bytes.
//! 2. `needs_buffering()`: hold the headers, buffer up to `max_body_bytes + 1` bytes, then
//!    `scan(body)`: `action == Some(Block)` (a match, or over the cap with `fail_closed`) → 502
//!    `response_blocked`; otherwise send `redact(body, &scan)` (and, over the cap with
//!    `scan_prefix`, the rest of the body unchanged).
//! 3. Otherwise `stream()`: `push` each chunk, send what it appends, `finish` at the end of the
//!    body. `push` returning `OverCapError` means: abort the response, send nothing more.
//! 4. `redacts()`: drop `Content-Length` (the body may change length) and any body digest.
//! 5. `summary(&scan)`: the event (`None`: nothing to report); use `Summary::action`.
#![deny(clippy::indexing_slicing)]

mod config;
mod detect;
mod events;
mod json;
mod scan;
mod validate;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::deny::{Deny, DenyCode};
use crate::schema::route_matches;
use crate::verdict::{Action, EventType, Finding, Mode, Severity};

pub(crate) use config::{compile, Builder, RawPiiRule};
pub use config::{
    DEFAULT_CONTENT_TYPES, DEFAULT_MAX_BODY_BYTES, MAX_CUSTOM, MAX_LIST, MAX_MAX_BODY_BYTES, MAX_NAME_LEN,
};
pub use detect::{CONTEXT_WINDOW, MAX_CUSTOM_LEN, MAX_KEYWORD_LEN, MAX_PREFIX_LEN, PREFIX_GAP};
pub use events::{EventScanner, EventWithheld};
pub use scan::{OverCapError, StreamScanner, HOLDBACK, MAX_SAMPLE_LEN, REDACTED_TOKEN};

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "pii";

/// The event every PII finding becomes.
pub const EVENT: EventType = EventType::PiiLeakBlock;

/// A detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// IBAN.
    Iban,
    /// Payment card number.
    Card,
    /// Turkish identity number (T.C. Kimlik No).
    Tckn,
    /// Turkish tax number (Vergi Kimlik No).
    Vkn,
    /// US Social Security number.
    Ssn,
    /// Email address.
    Email,
    /// Phone number.
    Phone,
    /// The policy's custom detector with this index ([`PiiPolicy::kind_name`] names it).
    Custom(u8),
}

impl Kind {
    /// The built-in detectors, in resolution order.
    pub const BUILTIN: [Kind; 7] = [Kind::Iban, Kind::Card, Kind::Tckn, Kind::Vkn, Kind::Ssn, Kind::Email, Kind::Phone];

    /// The rule-file name of a built-in detector.
    pub const fn builtin_name(self) -> Option<&'static str> {
        Some(match self {
            Kind::Iban => "iban",
            Kind::Card => "card",
            Kind::Tckn => "tckn",
            Kind::Vkn => "vkn",
            Kind::Ssn => "ssn",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Custom(_) => return None,
        })
    }

    /// Position in [`Kind::BUILTIN`] (custom detectors: 7 and up).
    const fn index(self) -> usize {
        match self {
            Kind::Iban => 0,
            Kind::Card => 1,
            Kind::Tckn => 2,
            Kind::Vkn => 3,
            Kind::Ssn => 4,
            Kind::Email => 5,
            Kind::Phone => 6,
            Kind::Custom(i) => 7 + i as usize,
        }
    }
}

/// What happens to a response with a match, ordered `monitor < redact < block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Reported only.
    Monitor,
    /// Masked in the response, reported.
    Redact,
    /// The response is withheld (502 `response_blocked`), reported.
    Block,
}

impl PiiAction {
    /// `monitor`, `redact` or `block`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Redact => "redact",
            Self::Block => "block",
        }
    }

    /// The event action this becomes: `flagged`, `redacted`, `blocked`.
    pub const fn event_action(self) -> Action {
        match self {
            Self::Monitor => Action::Flagged,
            Self::Redact => Action::Redacted,
            Self::Block => Action::Blocked,
        }
    }
}

/// How a redacted value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// `*` over every letter and digit but the last four; punctuation and spaces stay; same
    /// length.
    Last4,
    /// `[REDACTED]`.
    Token,
}

/// What to do with a body longer than `max_body_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverCap {
    /// Withhold it (when the policy blocks or redacts anything).
    FailClosed,
    /// Scan the first `max_body_bytes`, pass the rest unscanned.
    ScanPrefix,
}

impl OverCap {
    /// `fail_closed` or `scan_prefix`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail_closed",
            Self::ScanPrefix => "scan_prefix",
        }
    }
}

/// A custom detector's validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// No check.
    None,
    /// Luhn over the match's digits.
    Luhn,
    /// Card prefix, length and Luhn over the match's digits.
    Card,
    /// A full IBAN check over the match's letters and digits.
    Iban,
    /// ISO 7064 mod 97-10 over the match's letters and digits (two letters, two digits, rest).
    Mod97,
    /// TCKN check digits (exactly 11 digits).
    Tckn,
    /// VKN check digit (exactly 10 digits).
    Vkn,
    /// SSN structure (exactly 9 digits).
    Ssn,
}

/// A `content_types` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContentType {
    Any,
    /// `text/*`
    Type(Box<str>),
    /// `application/*+json`
    Suffix(Box<str>, Box<str>),
    /// `application/json`
    Exact(Box<str>, Box<str>),
}

impl ContentType {
    fn parse(s: &str) -> Result<ContentType, String> {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$&^_.+-".contains(&c))
        };
        let bad = || {
            format!(
                "`{s}` is not a media type pattern: write `type/subtype`, `type/*`, `type/*+suffix` or `*/*` in lower \
                 case, without parameters"
            )
        };
        let (t, sub) = s.split_once('/').ok_or_else(bad)?;
        match (t, sub) {
            ("*", "*") => Ok(ContentType::Any),
            (t, "*") if token(t) => Ok(ContentType::Type(t.into())),
            (t, sub) if token(t) && sub.strip_prefix("*+").is_some_and(token) => {
                Ok(ContentType::Suffix(t.into(), sub.trim_start_matches("*+").into()))
            }
            (t, sub) if token(t) && token(sub) => Ok(ContentType::Exact(t.into(), sub.into())),
            _ => Err(bad()),
        }
    }

    fn matches(&self, t: &str, sub: &str) -> bool {
        match self {
            ContentType::Any => true,
            ContentType::Type(x) => **x == *t,
            ContentType::Suffix(x, suffix) => {
                **x == *t && sub.len() > suffix.len() + 1 && sub.ends_with(&**suffix) && {
                    let cut = sub.len() - suffix.len() - 1;
                    sub.get(cut..cut + 1) == Some("+")
                }
            }
            ContentType::Exact(x, y) => **x == *t && **y == *sub,
        }
    }
}

/// How a response body is scanned, from its `Content-Type` ([`PiiPolicy::body_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Not scanned: a media type the policy does not list.
    Pass,
    /// Scanned as one body (streamed with the overlap window, or held whole).
    Body,
    /// `text/event-stream`: scanned event by event, each written out when complete.
    EventStream,
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// The `type/subtype` of a `Content-Type` field value (RFC 9110 §8.3.1), lower-cased, when the
/// whole value is well formed: `type "/" subtype *( OWS ";" OWS [ name "=" value ] )` with token
/// type, subtype and names, and token or quoted-string values; surrounding spaces and tabs
/// allowed. Anything else (empty, no `/`, a comma-separated list, a control byte, a non-ASCII
/// byte, an unterminated quote) is `None`: the caller cannot know what a client makes of it.
pub fn media_type(value: &[u8]) -> Option<(String, String)> {
    let ows = |b: &[u8], mut i: usize| {
        while b.get(i).is_some_and(|&c| c == b' ' || c == b'\t') {
            i += 1;
        }
        i
    };
    let token = |b: &[u8], i: usize| {
        let mut j = i;
        while b.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        j
    };
    let v = value;
    let mut i = ows(v, 0);
    let t_end = token(v, i);
    if t_end == i || v.get(t_end) != Some(&b'/') {
        return None;
    }
    let t = v.get(i..t_end)?;
    let s_start = t_end + 1;
    let s_end = token(v, s_start);
    if s_end == s_start {
        return None;
    }
    let sub = v.get(s_start..s_end)?;
    i = ows(v, s_end);
    while i < v.len() {
        if v.get(i) != Some(&b';') {
            return None;
        }
        i = ows(v, i + 1);
        if i == v.len() || v.get(i) == Some(&b';') {
            continue; // an empty parameter
        }
        let n_end = token(v, i);
        if n_end == i || v.get(n_end) != Some(&b'=') {
            return None;
        }
        i = n_end + 1;
        if v.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match v.get(i) {
                    None => return None,
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let escaped = v.get(i + 1)?;
                        if !(*escaped == b'\t' || (0x20..0x7f).contains(escaped)) {
                            return None;
                        }
                        i += 2;
                    }
                    Some(&c) if c == b'\t' || (0x20..0x7f).contains(&c) => i += 1,
                    Some(_) => return None,
                }
            }
            i += 1;
        } else {
            let v_end = token(v, i);
            if v_end == i {
                return None;
            }
            i = v_end;
        }
        i = ows(v, i);
    }
    let lower = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase();
    Some((lower(t), lower(sub)))
}

/// Whether a request asks for a protocol switch or a tunnel, after which the bytes exchanged
/// are no HTTP response a PII rule could scan: the `CONNECT` method (any case), any `Upgrade`
/// field (WebSocket, `h2c`, any token, even empty), or `upgrade` among the `Connection` field's
/// tokens (any case, anywhere in the list, in any of several fields). Returns what was seen:
/// `connect`, `upgrade` or `connection_upgrade`.
pub fn upgrade_requested(method: &str, headers: &http::HeaderMap) -> Option<&'static str> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Some("connect");
    }
    if headers.contains_key(http::header::UPGRADE) {
        return Some("upgrade");
    }
    let asks = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().split(|&c| c == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade")));
    asks.then_some("connection_upgrade")
}

/// Every compiled `pii` rule, in order. Immutable, `Send + Sync`.
#[derive(Debug, Default)]
pub struct Pii {
    policies: Vec<PiiPolicy>,
}

impl Pii {
    /// True when there is no `pii` rule.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Every policy, in order.
    pub fn policies(&self) -> &[PiiPolicy] {
        &self.policies
    }

    /// The policy for a response on this route: the first rule whose `routes` include it, or
    /// that has no `routes` (a response with no route only gets the latter).
    pub fn for_route(&self, route: Option<&str>) -> Option<&PiiPolicy> {
        self.policies.iter().find(|p| route_matches(p.routes.as_deref(), route))
    }
}

/// One compiled `pii` rule. Cheap to share: the engine is behind an `Arc`, and a
/// [`StreamScanner`] holds its own reference (it borrows nothing).
#[derive(Debug)]
pub struct PiiPolicy {
    /// The rule id.
    pub id: Arc<str>,
    /// The rule hash (as in [`crate::schema::RuleInfo::hash`]).
    pub hash: String,
    /// `enforce`, or `monitor` (every action is then `monitor`).
    pub mode: Mode,
    /// The severity of this rule's events.
    pub severity: Severity,
    /// How much of a body is scanned.
    pub max_body_bytes: usize,
    /// What happens past `max_body_bytes`.
    pub over_cap: OverCap,
    /// How redacted values are written.
    pub mask: Mask,
    /// `allow_upgrade: true`: protocol upgrades (WebSocket, `h2c`, any `Upgrade`) and `CONNECT`
    /// pass on this rule's routes, their bytes unscanned; else they are refused (see
    /// [`upgrade_requested`]).
    pub allow_upgrade: bool,
    routes: Option<Box<[Box<str>]>>,
    content_types: Vec<ContentType>,
    shared: Arc<scan::Shared>,
}

/// One match: a detector's validated value at `start..end` of the body (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiMatch {
    /// The detector.
    pub kind: Kind,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// The detector's action (after `mode: monitor`).
    pub action: PiiAction,
    /// Redacted as a JSON string (a bare JSON number).
    quote: bool,
}

/// A masked example of one match for the event: never more than the last four letters or digits
/// of the value, at most [`MAX_SAMPLE_LEN`] bytes (the end of the masked value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The detector.
    pub kind: Kind,
    /// The value masked with `last4` (ASCII).
    pub masked: String,
}

/// The result of scanning one body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every match, in body order, non-overlapping.
    pub matches: Vec<PiiMatch>,
    /// Validated values not reported because an exclusion applied.
    pub excluded: usize,
    /// Bytes scanned (at most `max_body_bytes`).
    pub scanned: usize,
    /// The body was longer than `max_body_bytes`: the rest was not scanned.
    pub over_cap: bool,
    /// The strongest action of the matches, or of `over_cap: fail_closed` (the strongest the
    /// policy has) when the body was over the cap; `None`: nothing to do or report.
    pub action: Option<PiiAction>,
    /// The first match, masked.
    pub sample: Option<Sample>,
}

impl Scan {
    /// Matches per detector, in detector order.
    pub fn counts(&self) -> Vec<(Kind, usize)> {
        let mut out: Vec<(Kind, usize)> = Vec::new();
        for m in &self.matches {
            match out.iter_mut().find(|(k, _)| *k == m.kind) {
                Some((_, n)) => *n += 1,
                None => out.push((m.kind, 1)),
            }
        }
        out.sort_unstable();
        out
    }
}

/// What the gateway reports for one response: the event action and the finding (rule, mode,
/// severity, deny, detail). `finding.action()` follows the rule's mode only; use `action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `blocked`, `redacted` or `flagged`.
    pub action: Action,
    /// The `pii_leak_block` finding.
    pub finding: Finding,
}

impl PiiPolicy {
    /// Whether a response with this `Content-Type` header value is scanned (see
    /// [`PiiPolicy::body_kind`]; `None`: no `Content-Type`).
    pub fn scans_content_type(&self, content_type: Option<&str>) -> bool {
        self.body_kind(content_type.map(str::as_bytes)) != BodyKind::Pass
    }

    /// How a response body with these `Content-Type` fields is scanned. Fails closed: the body
    /// is scanned unless exactly one field names, unambiguously, a media type the policy does
    /// not list. No field, several fields (whatever they say: a client and the gateway could
    /// each believe a different one), or one that is not a well-formed media type (empty,
    /// `json`, `text`, a list, bad parameters, bytes that are not visible ASCII) → scanned as a
    /// body. `text/event-stream` (when listed, as `text/*` is by default) → scanned per event
    /// ([`PiiPolicy::events`]). Type and subtype compare ASCII case-insensitively; parameters
    /// are ignored once they parse.
    pub fn body_kind<'a>(&self, content_types: impl IntoIterator<Item = &'a [u8]>) -> BodyKind {
        let mut fields = content_types.into_iter();
        let (Some(one), None) = (fields.next(), fields.next()) else { return BodyKind::Body };
        let Some((t, sub)) = media_type(one) else { return BodyKind::Body };
        if !self.content_types.iter().any(|p| p.matches(&t, &sub)) {
            return BodyKind::Pass;
        }
        if t == "text" && sub == "event-stream" {
            BodyKind::EventStream
        } else {
            BodyKind::Body
        }
    }

    /// A scanner for one `text/event-stream` body: each event scanned whole and written out as
    /// soon as it is complete (see [`EventScanner`]).
    pub fn events(&self) -> EventScanner {
        EventScanner::new(self.shared.clone())
    }

    /// True when some detector blocks: the gateway must hold the response (headers and body, up
    /// to `max_body_bytes`) and decide with [`PiiPolicy::scan`] before sending anything.
    pub fn needs_buffering(&self) -> bool {
        self.shared.limits.strongest == Some(PiiAction::Block)
    }

    /// True when some detector redacts: the body may change (length included), so the gateway
    /// drops `Content-Length` (and any body digest) from the response.
    pub fn redacts(&self) -> bool {
        self.shared.limits.redacts
    }

    /// The name of a detector: a built-in name, or the custom detector's.
    pub fn kind_name(&self, kind: Kind) -> &str {
        match kind {
            Kind::Custom(i) => self.shared.engine.custom.get(usize::from(i)).map_or("custom", |c| &c.name),
            k => k.builtin_name().unwrap_or("custom"),
        }
    }

    /// Scans a whole body (its first `max_body_bytes`; `over_cap` says whether there was more).
    pub fn scan(&self, body: &[u8]) -> Scan {
        self.shared.scan(body)
    }

    /// Appends `body` to `out` with every `redact` match of `scan` (from [`PiiPolicy::scan`] of
    /// the same body) masked; other matches are left as they are. Past the cap, the rest is
    /// appended unchanged (`scan_prefix`) or not at all (`fail_closed`).
    pub fn redact(&self, body: &[u8], scan: &Scan, out: &mut Vec<u8>) {
        self.shared.redact(body, scan, out);
    }

    /// True when, for this scan, nothing after `scan.scanned` bytes may be sent.
    pub fn cuts_at_cap(&self, scan: &Scan) -> bool {
        self.shared.fails_closed(scan.over_cap)
    }

    /// A streaming scanner for one response body.
    pub fn stream(&self) -> StreamScanner {
        StreamScanner::new(self.shared.clone())
    }

    /// The event for a scan, or `None` when there is nothing to report. The detail holds the
    /// action, the count per detector, how many values were excluded, the bytes scanned, whether
    /// the body was over the cap, and at most one masked sample; never a value.
    ///
    /// A body over the cap with `over_cap: scan_prefix` and nothing found in the scanned part is
    /// still reported (`flagged`, reason `over_cap`): the rest went out unscanned.
    pub fn summary(&self, scan: &Scan) -> Option<Summary> {
        let action = scan.action.or(scan.over_cap.then_some(PiiAction::Monitor))?;
        let mut detail = Map::new();
        detail.insert("action".into(), Value::from(action.event_action().as_str()));
        let mut kinds = Map::new();
        for (k, n) in scan.counts() {
            kinds.insert(self.kind_name(k).to_owned(), Value::from(n));
        }
        detail.insert("kinds".into(), Value::Object(kinds));
        detail.insert("matches".into(), Value::from(scan.matches.len()));
        detail.insert("excluded".into(), Value::from(scan.excluded));
        detail.insert("scanned_bytes".into(), Value::from(scan.scanned));
        if scan.over_cap {
            detail.insert("over_cap".into(), Value::from(self.over_cap.as_str()));
        }
        if let Some(s) = &scan.sample {
            let mut sample = Map::new();
            sample.insert("kind".into(), Value::from(self.kind_name(s.kind)));
            sample.insert("masked".into(), Value::from(s.masked.as_str()));
            detail.insert("sample".into(), Value::Object(sample));
        }
        let reason = if scan.matches.is_empty() { "over_cap" } else { "pii" };
        Some(self.summary_of(action, reason, detail))
    }

    /// What a response this policy applies to but whose body could not be scanned becomes
    /// (`why`: `unsupported_encoding`, `decode_error`, `upgrade`): withheld when the policy
    /// blocks or redacts anything (`blocked`: nothing unscanned goes out where a value would
    /// have been withheld or masked), passed and `flagged` when it only monitors.
    pub fn not_scanned(&self, why: &str, encoding: Option<&str>) -> Summary {
        let action = if self.withholds_unscannable() { PiiAction::Block } else { PiiAction::Monitor };
        let mut detail = Map::new();
        detail.insert("action".into(), Value::from(action.event_action().as_str()));
        detail.insert("unscanned".into(), Value::from(why));
        if let Some(e) = encoding {
            // Bounded: a header value is not an event field.
            let e: String = e.chars().take(64).collect();
            detail.insert("content_encoding".into(), Value::from(e));
        }
        self.summary_of(action, why, detail)
    }

    /// True when a response that cannot be scanned must be withheld (see
    /// [`PiiPolicy::not_scanned`]).
    pub fn withholds_unscannable(&self) -> bool {
        self.shared.limits.strongest >= Some(PiiAction::Redact)
    }

    /// A request for a protocol upgrade or a tunnel refused on this rule's route (`why` from
    /// [`upgrade_requested`]): 403 `forbidden`, reported as `blocked` with `unscanned: upgrade`
    /// (whatever the rule's actions: the bytes after an upgrade could not be scanned at all).
    pub fn upgrade_refused(&self, why: &'static str) -> Summary {
        let mut detail = Map::new();
        detail.insert("action".into(), Value::from(Action::Blocked.as_str()));
        detail.insert("unscanned".into(), Value::from("upgrade"));
        detail.insert("upgrade".into(), Value::from(why));
        let mut s = self.summary_of(PiiAction::Block, "upgrade", detail);
        s.finding.deny = Deny::new(DenyCode::Forbidden, "upgrade_on_pii_route");
        s
    }

    fn summary_of(&self, action: PiiAction, reason: &str, detail: Map<String, Value>) -> Summary {
        Summary {
            action: action.event_action(),
            finding: Finding {
                rule_id: self.id.clone(),
                mode: self.mode,
                event: EVENT,
                severity: self.severity,
                deny: Deny::new(DenyCode::ResponseBlocked, reason.to_owned()),
                detail,
            },
        }
    }
}
