//! Inbound webhook signature verification: pure, over the request headers and the raw body.
//!
//! Every scheme is an HMAC (computed by `ring`, never by hand) over the raw body bytes, plus,
//! for the timestamped schemes, the timestamp (and the delivery id) the sender signed. The caller
//! must forward exactly the bytes it verified.
//!
//! # Schemes
//!
//! - **GitHub**: `X-Hub-Signature-256: sha256=<64 hex>`, HMAC-SHA256 over the body. The secret is
//!   the configured text as bytes. No timestamp is signed, so GitHub deliveries have no freshness
//!   bound here; replay protection keys on the signed body ([`Verified::content`]).
//!   `X-GitHub-Delivery` is **not** signed: it is reported for events only, never a replay key (an
//!   attacker replaying a captured delivery can change it). The legacy `X-Hub-Signature: sha1=…`
//!   is not accepted.
//! - **Stripe**: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, HMAC-SHA256 over
//!   `{t}.{body}` (the `t` text exactly as sent). Any `v1` matching any secret accepts; other
//!   schemes (`v0`, unknown keys) are ignored. The secret is the whole `whsec_…` string used as
//!   raw key bytes, as Stripe's SDKs do (it is *not* base64-decoded). The delivery id is the
//!   `id` member of the JSON body (the body is signed, so the id is too) when the body parses
//!   and `id` is a string.
//! - **Standard Webhooks**: `webhook-id`, `webhook-timestamp`, `webhook-signature` (a
//!   space-separated list of `v1,<base64>`; other versions such as the asymmetric `v1a` are
//!   ignored), HMAC-SHA256 over `{id}.{timestamp}.{body}`. The secret is `whsec_` + base64 of the
//!   key bytes. The delivery id is `webhook-id` (signed).
//! - **Generic**: as configured by [`GenericScheme`]: one header holding one signature, with an
//!   optional literal prefix, hex or base64, SHA-256 or SHA-512, and optionally a timestamp header
//!   whose value is signed as `{timestamp}.{body}`. The secret is the configured text as bytes.
//!
//! # Policy decisions
//!
//! - **Malformed vs bad.** A header that cannot be parsed into the scheme's structure is
//!   [`WebhookError::MalformedHeader`]: a required header sent more than once, over
//!   [`MAX_HEADER_BYTES`], not visible ASCII, without the scheme prefix (GitHub `sha1=…`, missing
//!   `sha256=`, empty), Stripe without `t` or without any `v1`, a `Stripe-Signature` item that is
//!   not `key=value`, a Standard Webhooks list without any `v1` entry, a timestamp that is not
//!   plain decimal digits, a `webhook-id` that is empty or contains `.` (the spec forbids it:
//!   it would make `{id}.{timestamp}` ambiguous), or more than [`MAX_SIGNATURES`] candidate
//!   signatures. A candidate signature that is present but is not the right MAC, including one
//!   that does not decode or decodes to the wrong length (truncated, `v1,` with nothing after it,
//!   `v1=bad_signature`), is simply a signature that does not match: if none matches, the result
//!   is [`WebhookError::BadSignature`]. This lets one undecodable entry sit beside a valid one.
//! - **Hex case.** Hex signatures are decoded case-insensitively (uppercase hex is accepted: the
//!   comparison is between decoded bytes, so case variants carry the same MAC and accepting them
//!   adds nothing an attacker can use). Prefixes are literal and case-sensitive: `SHA256=…` is
//!   malformed (GitHub always sends `sha256=`). Base64 is the standard alphabet with canonical
//!   padding, as Standard Webhooks senders produce.
//! - **Signature before time.** The MAC is checked first, then the timestamp: an unsigned request
//!   always gets `bad_signature`, so an attacker cannot probe the accepted clock window, and a
//!   genuine but late delivery is reported as `stale_timestamp` (an operational signal: sender
//!   retries or clock drift) rather than as a forgery.
//! - **Tolerance both ways.** A signed timestamp more than [`Verifier::tolerance`] seconds in the
//!   past is [`WebhookError::StaleTimestamp`], more than `tolerance` in the future
//!   [`WebhookError::FutureTimestamp`] (Stripe's SDK only bounds age; a gateway bounds both so a
//!   sender with a fast clock cannot mint deliveries that stay replayable for long). Exactly
//!   `tolerance` seconds either way is accepted.
//! - **Bounded work.** At most [`MAX_SIGNATURES`] candidate signatures per header (more is
//!   malformed) and at most [`MAX_SECRETS`] secrets (only the first ones are tried;
//!   [`Verifier::new`] refuses more). The MAC is computed once per secret and compared, in
//!   constant time (`subtle`), with each decoded candidate: at most `MAX_SECRETS` passes over the
//!   body whatever the header holds (`ring::hmac::verify` would recompute the MAC per candidate).
//! - **Rotation.** Several secrets may be active; [`Verified::secret_id`] names the one that
//!   matched, so events show when the old secret stops being used.

pub mod replay;
pub mod rules;

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use ring::hmac;
use subtle::ConstantTimeEq as _;

/// Longest accepted value of any header read here, in bytes (longer is malformed).
pub const MAX_HEADER_BYTES: usize = 4096;
/// Most candidate signatures considered in one header (more is malformed).
pub const MAX_SIGNATURES: usize = 10;
/// Most secrets tried for one delivery.
pub const MAX_SECRETS: usize = 8;
/// Shortest accepted secret, in key bytes (after base64 decoding for Standard Webhooks).
pub const MIN_SECRET_BYTES: usize = 16;

static GITHUB_SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
static GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
static STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
static SW_ID: HeaderName = HeaderName::from_static("webhook-id");
static SW_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static SW_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const WHSEC: &str = "whsec_";

/// Which signature scheme a webhook sender uses.
#[derive(Debug, Clone)]
pub enum Provider {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    GitHub,
    /// Stripe: `Stripe-Signature: t=…,v1=…` over `{t}.{body}`.
    Stripe,
    /// Standard Webhooks (Svix and others): `webhook-id`/`-timestamp`/`-signature`.
    StandardWebhooks,
    /// Any other single-header HMAC scheme.
    Generic(GenericScheme),
}

impl Provider {
    /// True when the delivery id [`Verified::delivery_id`] carries is covered by the MAC
    /// (Standard Webhooks `webhook-id`, Stripe's body `id`), so it may key the replay cache.
    pub const fn signs_delivery_id(&self) -> bool {
        matches!(self, Provider::Stripe | Provider::StandardWebhooks)
    }
}

/// A single-header HMAC scheme described by configuration.
#[derive(Debug, Clone)]
pub struct GenericScheme {
    /// Header carrying the signature (exactly one value, one signature).
    pub header: HeaderName,
    /// HMAC hash function.
    pub algorithm: MacAlg,
    /// How the MAC is written in the header.
    pub encoding: Encoding,
    /// Literal (case-sensitive) text before the encoded MAC, e.g. `sha256=`; required when set.
    pub prefix: Option<String>,
    /// When set, this header holds a Unix timestamp (decimal seconds) and the MAC is over
    /// `{timestamp}.{body}`; the timestamp is then bounded by [`Verifier::tolerance`].
    pub timestamp_header: Option<HeaderName>,
}

/// HMAC hash function of a [`GenericScheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlg {
    /// HMAC-SHA256 (32-byte MAC).
    Sha256,
    /// HMAC-SHA512 (64-byte MAC).
    Sha512,
}

impl MacAlg {
    fn ring(self) -> hmac::Algorithm {
        match self {
            MacAlg::Sha256 => hmac::HMAC_SHA256,
            MacAlg::Sha512 => hmac::HMAC_SHA512,
        }
    }

    const fn len(self) -> usize {
        match self {
            MacAlg::Sha256 => 32,
            MacAlg::Sha512 => 64,
        }
    }
}

/// How a [`GenericScheme`] writes the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, either case.
    Hex,
    /// Standard base64 alphabet with padding.
    Base64,
}

/// One active signing secret (several during a rotation). `id` is what events name; the key
/// bytes are never printed.
#[derive(Clone)]
pub struct Secret {
    /// Name of the secret in events and in [`Verified::secret_id`].
    pub id: String,
    key: Box<[u8]>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("id", &self.id).field("key", &"<redacted>").finish()
    }
}

impl Secret {
    /// Builds a secret from its configured text, for use with a [`Verifier`] of the same
    /// provider. GitHub and generic: the bytes as given. Stripe: the whole `whsec_…` string is the
    /// key (as Stripe's SDKs use it). Standard Webhooks: an optional `whsec_` prefix is stripped
    /// and the rest base64-decoded (error when it is not valid base64). The key must be at least
    /// [`MIN_SECRET_BYTES`] bytes (after decoding).
    pub fn new(provider: &Provider, id: impl Into<String>, text: &[u8]) -> Result<Secret, String> {
        let id = id.into();
        let key: Vec<u8> = match provider {
            Provider::GitHub | Provider::Stripe | Provider::Generic(_) => text.to_vec(),
            Provider::StandardWebhooks => {
                let b64 = text.strip_prefix(WHSEC.as_bytes()).unwrap_or(text);
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("webhook secret {id:?}: not valid base64 after `whsec_`: {e}"))?
            }
        };
        if key.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "webhook secret {id:?}: {} key bytes, at least {MIN_SECRET_BYTES} required",
                key.len()
            ));
        }
        Ok(Secret { id, key: key.into_boxed_slice() })
    }
}

/// Verifies deliveries from one sender.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The sender's scheme.
    pub provider: Provider,
    /// Active secrets, tried in order (only the first [`MAX_SECRETS`]).
    pub secrets: Vec<Secret>,
    /// Allowed clock skew for signed timestamps, both directions (past and future), seconds.
    pub tolerance: u64,
}

/// What a valid delivery proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Id of the secret whose MAC matched.
    pub secret_id: String,
    /// Delivery id: Standard Webhooks `webhook-id` (signed), Stripe event `id` from the JSON body
    /// (signed, as the body is), GitHub `X-GitHub-Delivery` (**not** signed: for events only, see
    /// [`Provider::signs_delivery_id`]), generic: `None`.
    pub delivery_id: Option<String>,
    /// The signed timestamp, for the schemes that sign one.
    pub timestamp: Option<u64>,
    /// SHA-256 of the exact message the MAC covers (GitHub: the body; Stripe: `{t}.{body}`;
    /// Standard Webhooks: `{id}.{timestamp}.{body}`; generic: `[{timestamp}.]{body}`). What the
    /// replay cache keys on: it identifies the signed content whatever the header's spelling
    /// (hex case, base64 variant, entry order, extra or missing candidate signatures, unsigned
    /// headers) and whichever secret matched.
    pub content: [u8; 32],
}

/// Why a delivery was refused; [`WebhookError::as_str`] gives stable snake_case names for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookError {
    /// A required header is absent (`missing_signature`).
    MissingHeader,
    /// A header is present but unparseable, duplicated or oversized (`malformed_signature`).
    MalformedHeader,
    /// No presented signature matches any secret (`bad_signature`).
    BadSignature,
    /// Valid signature, timestamp older than the tolerance (`stale_timestamp`).
    StaleTimestamp,
    /// Valid signature, timestamp further ahead than the tolerance (`future_timestamp`).
    FutureTimestamp,
    /// The verifier has no secret configured (`no_secrets`).
    NoSecrets,
}

impl WebhookError {
    /// Stable name for events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookError::MissingHeader => "missing_signature",
            WebhookError::MalformedHeader => "malformed_signature",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::StaleTimestamp => "stale_timestamp",
            WebhookError::FutureTimestamp => "future_timestamp",
            WebhookError::NoSecrets => "no_secrets",
        }
    }
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for WebhookError {}

/// A decoded candidate signature (at most 64 bytes).
struct Candidate {
    buf: [u8; 64],
    len: usize,
}

impl Candidate {
    /// Decodes `text`; `None` when it is not exactly a `want`-byte MAC in `encoding`.
    fn decode(text: &str, encoding: Encoding, want: usize) -> Option<Candidate> {
        let mut buf = [0u8; 64];
        let len = match encoding {
            Encoding::Hex => {
                hex::decode_to_slice(text, buf.get_mut(..want)?).ok()?;
                want
            }
            Encoding::Base64 => {
                // Anything longer than a 64-byte MAC's encoding cannot fit: refuse before decoding.
                if text.len() > 88 {
                    return None;
                }
                base64::engine::general_purpose::STANDARD.decode_slice(text, &mut buf).ok()?
            }
        };
        (len == want).then_some(Candidate { buf, len })
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The candidates of one header: `None` entries did not decode (they count but never match).
struct Candidates {
    list: Vec<Option<Candidate>>,
}

impl Candidates {
    fn new() -> Candidates {
        Candidates { list: Vec::new() }
    }

    fn push(&mut self, text: &str, encoding: Encoding, alg: MacAlg) -> Result<(), WebhookError> {
        if self.list.len() >= MAX_SIGNATURES {
            return Err(WebhookError::MalformedHeader);
        }
        self.list.push(Candidate::decode(text, encoding, alg.len()));
        Ok(())
    }
}

/// A parsed delivery, ready for the MAC check.
struct Parsed<'a> {
    alg: MacAlg,
    /// Message pieces, concatenated in order.
    message: [&'a [u8]; 5],
    candidates: Candidates,
    timestamp: Option<u64>,
    delivery_id: Option<String>,
}

impl Parsed<'_> {
    /// SHA-256 over the message exactly as signed (the pieces concatenated).
    fn content_digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for piece in self.message {
            h.update(piece);
        }
        h.finalize().into()
    }
}

/// The one value of a required header: missing, duplicated, oversized or non-ASCII are errors.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h str, WebhookError> {
    let mut all = headers.get_all(name).iter();
    let first = all.next().ok_or(WebhookError::MissingHeader)?;
    if all.next().is_some() || first.len() > MAX_HEADER_BYTES {
        return Err(WebhookError::MalformedHeader);
    }
    first.to_str().map_err(|_| WebhookError::MalformedHeader)
}

/// A Unix timestamp written as 1 to 20 plain decimal digits (no sign, no spaces).
fn parse_timestamp(text: &str) -> Result<u64, WebhookError> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::MalformedHeader);
    }
    text.parse().map_err(|_| WebhookError::MalformedHeader)
}

impl Verifier {
    /// Builds a verifier, refusing an empty secret list or more than [`MAX_SECRETS`] secrets.
    pub fn new(provider: Provider, secrets: Vec<Secret>, tolerance: u64) -> Result<Verifier, String> {
        if secrets.is_empty() {
            return Err("webhook verifier: no secret configured".into());
        }
        if secrets.len() > MAX_SECRETS {
            return Err(format!("webhook verifier: {} secrets, at most {MAX_SECRETS}", secrets.len()));
        }
        Ok(Verifier { provider, secrets, tolerance })
    }

    /// The header carrying the signature(s).
    pub fn signature_header(&self) -> &HeaderName {
        match &self.provider {
            Provider::GitHub => &GITHUB_SIGNATURE,
            Provider::Stripe => &STRIPE_SIGNATURE,
            Provider::StandardWebhooks => &SW_SIGNATURE,
            Provider::Generic(scheme) => &scheme.header,
        }
    }

    /// Verifies a delivery: headers and the raw body, at `now_unix` (seconds). Parses the
    /// headers, checks the MAC against every secret, then bounds the signed timestamp.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: u64) -> Result<Verified, WebhookError> {
        if self.secrets.is_empty() {
            return Err(WebhookError::NoSecrets);
        }
        let parsed = match &self.provider {
            Provider::GitHub => parse_github(headers, body)?,
            Provider::Stripe => parse_stripe(headers, body)?,
            Provider::StandardWebhooks => parse_standard(headers, body)?,
            Provider::Generic(scheme) => parse_generic(scheme, headers, body)?,
        };
        let secret_id = self.check_mac(&parsed)?;
        let content = parsed.content_digest();
        if let Some(ts) = parsed.timestamp {
            if now_unix > ts && now_unix - ts > self.tolerance {
                return Err(WebhookError::StaleTimestamp);
            }
            if ts > now_unix && ts - now_unix > self.tolerance {
                return Err(WebhookError::FutureTimestamp);
            }
        }
        let delivery_id = match self.provider {
            // The body is signed and now verified: its `id` is as trustworthy as the event.
            Provider::Stripe => stripe_event_id(body),
            _ => parsed.delivery_id,
        };
        Ok(Verified { secret_id, delivery_id, timestamp: parsed.timestamp, content })
    }

    /// One MAC per secret, compared in constant time with every decoded candidate.
    fn check_mac(&self, parsed: &Parsed<'_>) -> Result<String, WebhookError> {
        if parsed.candidates.list.iter().all(Option::is_none) {
            return Err(WebhookError::BadSignature);
        }
        for secret in self.secrets.iter().take(MAX_SECRETS) {
            let key = hmac::Key::new(parsed.alg.ring(), &secret.key);
            let mut ctx = hmac::Context::with_key(&key);
            for piece in parsed.message {
                ctx.update(piece);
            }
            let tag = ctx.sign();
            for candidate in parsed.candidates.list.iter().flatten() {
                if bool::from(tag.as_ref().ct_eq(candidate.bytes())) {
                    return Ok(secret.id.clone());
                }
            }
        }
        Err(WebhookError::BadSignature)
    }
}

fn parse_github<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Parsed<'a>, WebhookError> {
    let value = single(headers, &GITHUB_SIGNATURE)?;
    let sig = value.strip_prefix("sha256=").ok_or(WebhookError::MalformedHeader)?;
    let mut candidates = Candidates::new();
    candidates.push(sig, Encoding::Hex, MacAlg::Sha256)?;
    // Unsigned: anyone replaying a captured delivery can change it. Best effort for the cache.
    let delivery_id = single(headers, &GITHUB_DELIVERY).ok().filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Parsed { alg: MacAlg::Sha256, message: [body, b"", b"", b"", b""], candidates, timestamp: None, delivery_id })
}

fn parse_stripe<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Result<Parsed<'a>, WebhookError> {
    let value = single(headers, &STRIPE_SIGNATURE)?;
    let mut t: Option<&str> = None;
    let mut candidates = Candidates::new();
    for item in value.split(',') {
        let (key, val) = item.split_once('=').ok_or(WebhookError::MalformedHeader)?;
        match key {
            "t" if t.is_some() => return Err(WebhookError::MalformedHeader),
            "t" => t = Some(val),
            "v1" => candidates.push(val, Encoding::Hex, MacAlg::Sha256)?,
            _ => {} // v0 and future schemes: ignored.
        }
    }
    let t = t.ok_or(WebhookError::MalformedHeader)?;
    let timestamp = parse_timestamp(t)?;
    if candidates.list.is_empty() {
        return Err(WebhookError::MalformedHeader);
    }
    Ok(Parsed {
        alg: MacAlg::Sha256,
        message: [t.as_bytes(), b".", body, b"", b""],
        candidates,
        timestamp: Some(timestamp),
        delivery_id: None,
    })
}

/// The `id` member of a Stripe event body, when the body is JSON and `id` a string.
fn stripe_event_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Event>(body).ok()?.id? {
        serde_json::Value::String(id) => Some(id),
        _ => None,
    }
}

fn parse_standard<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Result<Parsed<'a>, WebhookError> {
    let id = single(headers, &SW_ID)?;
    let ts_text = single(headers, &SW_TIMESTAMP)?;
    let value = single(headers, &SW_SIGNATURE)?;
    if id.is_empty() || id.contains('.') {
        return Err(WebhookError::MalformedHeader);
    }
    let timestamp = parse_timestamp(ts_text)?;
    let mut candidates = Candidates::new();
    for entry in value.split(' ') {
        if let Some(("v1", sig)) = entry.split_once(',') {
            candidates.push(sig, Encoding::Base64, MacAlg::Sha256)?;
        }
    }
    if candidates.list.is_empty() {
        return Err(WebhookError::MalformedHeader);
    }
    Ok(Parsed {
        alg: MacAlg::Sha256,
        message: [id.as_bytes(), b".", ts_text.as_bytes(), b".", body],
        candidates,
        timestamp: Some(timestamp),
        delivery_id: Some(id.to_owned()),
    })
}

fn parse_generic<'a>(
    scheme: &GenericScheme,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> Result<Parsed<'a>, WebhookError> {
    let value = single(headers, &scheme.header)?;
    let sig = match &scheme.prefix {
        Some(prefix) => value.strip_prefix(prefix.as_str()).ok_or(WebhookError::MalformedHeader)?,
        None => value,
    };
    let mut candidates = Candidates::new();
    candidates.push(sig, scheme.encoding, scheme.algorithm)?;
    let (message, timestamp) = match &scheme.timestamp_header {
        Some(name) => {
            let text = single(headers, name)?;
            ([text.as_bytes(), b".", body, b"", b""], Some(parse_timestamp(text)?))
        }
        None => ([body, b"", b"", b"", b""], None),
    };
    Ok(Parsed { alg: scheme.algorithm, message, candidates, timestamp, delivery_id: None })
}

/// Outbound: the three Standard Webhooks headers for a delivery (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature: v1,<base64>`), signed with `secret` (a `whsec_…`
/// string, decoded as by [`Secret::new`]). Refuses an empty id or one containing `.`. Used by
/// alert sinks and by tests to produce valid deliveries.
pub fn sign_standard_webhooks(
    secret: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<[(&'static str, String); 3], String> {
    if id.is_empty() || id.contains('.') {
        return Err(format!("webhook id {id:?}: must be non-empty and must not contain '.'"));
    }
    let secret = Secret::new(&Provider::StandardWebhooks, "outbound", secret.as_bytes())?;
    let ts = timestamp.to_string();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.key);
    let mut ctx = hmac::Context::with_key(&key);
    for piece in [id.as_bytes(), b".", ts.as_bytes(), b".", body] {
        ctx.update(piece);
    }
    let sig = base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref());
    Ok([("webhook-id", id.to_owned()), ("webhook-timestamp", ts), ("webhook-signature", format!("v1,{sig}"))])
}

#[cfg(test)]
mod tests;
