//! The `webhooks:` section of a rule file: which routes take signed deliveries, from which
//! sender, with which secrets.
//!
//! ```yaml
//! webhooks:
//!   - id: stripe-events
//!     path_prefix: /webhooks/stripe    # and/or `routes: [webhooks]`
//!     provider: stripe                 # github | stripe | standard_webhooks | generic
//!     secrets:                         # 1 to 8; a signature from any of them passes
//!       - { id: 2026-11, env: STRIPE_WEBHOOK_SECRET }
//!       - { id: 2026-05, file: secrets/stripe-previous.txt }
//!     tolerance_seconds: 300           # timestamped schemes: 1 to 86400, default 300
//!     max_body_bytes: 1048576          # default: the route's max_body_bytes
//!     mode: enforce                    # or monitor
//! ```
//!
//! A rule applies to a request whose canonical path starts with `path_prefix` (segment-wise,
//! ignoring ASCII case) and, when `routes` is given, that was matched to one of those routes; at
//! least one of the two is required. Prefer `path_prefix` alone: it follows the path whatever
//! route serves it (routes, like every path match, ignore ASCII case, so `/WEBHOOKS/stripe`
//! takes the same route as `/webhooks/stripe`; a host-specific route may still take it), and an
//! application must not receive a delivery unverified. A request is verified by the first rule that applies, in file order (files
//! in name order). Its whole body is buffered, up to `max_body_bytes`, and checked before
//! anything — not even the request head — is sent upstream.
//!
//! # Keys
//!
//! * `provider` and, for `generic`, a `generic:` mapping: `header` (required), `algorithm`
//!   (`sha256`, the default, or `sha512`), `encoding` (`hex`, the default, or `base64`),
//!   `prefix` (literal text before the MAC, e.g. `sha256=`), `timestamp_header` (the MAC is then
//!   over `{timestamp}.{body}`).
//! * `secrets`: each with an `id` (named in events and metrics, never the secret) and exactly one
//!   of `env` (an environment variable) or `file` (relative to the rules directory; one trailing
//!   newline is dropped). Secrets are never written in the rule file. The secret's content is part
//!   of the rules version: changing the file (or the variable, on a restart or reload) is a
//!   change. Standard Webhooks secrets are `whsec_` + base64; Stripe's are used as given
//!   (`whsec_…`); GitHub's and generic ones are the text as bytes. At least 16 key bytes.
//! * `tolerance_seconds`: how far a signed timestamp may be from the gateway's clock, both ways
//!   (Stripe, Standard Webhooks, generic with `timestamp_header`; refused for the others, which
//!   sign no time).
//! * `replay_window_seconds`: for schemes with no signed timestamp (GitHub, generic without
//!   `timestamp_header`), how long an accepted delivery is remembered (default 3600, at most
//!   604800). For timestamped schemes the window is the tolerance and the key is refused.
//! * `max_body_bytes`: 1 to 67108864; the smaller of this and the route's cap applies.
//!
//! # Replays
//!
//! An accepted delivery claims its keys in the gateway's replay cache (see
//! [`super::replay`]). The keys are what was verified, never the text of a header: the SHA-256
//! of the exact signed message ([`super::Verified::content`]: GitHub the body, Stripe
//! `{t}.{body}`, Standard Webhooks `{id}.{timestamp}.{body}`, generic `[{timestamp}.]{body}`),
//! and the delivery id where the sender signed it (Standard Webhooks `webhook-id`; Stripe's event
//! `id` from the signed body). GitHub's `X-GitHub-Delivery` is not signed and is not a key. So a
//! replay is caught however its signature header is re-spelled: hex case, base64 variants,
//! whitespace, reordered or added entries (`v0=`, a second `v1`), a new unsigned delivery id.
//! Another delivery with either key before the claim expires is `replayed`. A timestamped
//! delivery's claim lasts until its timestamp plus the tolerance (after which it is stale
//! anyway); others for `replay_window_seconds`.

use super::replay::{Claim, ReplayCache};
use super::{Encoding, GenericScheme, MacAlg, Provider, Secret, Verifier, MAX_SECRETS};
use crate::canon;
use crate::deny::{Deny, DenyCode};
use crate::schema::{compile_section, present, route_matches, AssetRef, Checker, Common, Ctx, RawRule};
use crate::verdict::{EventType, Finding, Mode, Severity};
use crate::view::RequestView;
use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The rule kind, in `GET /v1/rules` and rule hashes.
pub const KIND: &str = "webhooks";
/// The event a refused delivery becomes.
pub const EVENT: EventType = EventType::WebhookInvalidSignature;
/// Default `tolerance_seconds`.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// Largest `tolerance_seconds`.
pub const MAX_TOLERANCE_SECONDS: u64 = 86_400;
/// Default `replay_window_seconds` (schemes without a signed timestamp).
pub const DEFAULT_REPLAY_WINDOW_SECONDS: u64 = 3600;
/// Largest `replay_window_seconds`.
pub const MAX_REPLAY_WINDOW_SECONDS: u64 = 7 * 86_400;
/// Largest `max_body_bytes`.
pub const MAX_BODY_MAX_BYTES: u64 = 64 << 20;
/// Longest delivery id copied into an event (it is sender-controlled for GitHub).
const MAX_DETAIL_ID: usize = 128;

/// One raw rule of the `webhooks:` list (serialized for the rule hash; absent keys skipped).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a webhooks rule: a mapping with `id`, `routes`, `provider` and `secrets`")]
pub(crate) struct RawWebhookRule {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    path_prefix: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    generic: Option<RawGeneric>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    secrets: Option<Vec<RawSecret>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    tolerance_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    replay_window_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a secret: a mapping with `id` and one of `env` or `file`")]
struct RawSecret {
    id: String,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a generic scheme: a mapping with `header`")]
struct RawGeneric {
    header: String,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    algorithm: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    timestamp_header: Option<String>,
}

/// Every compiled webhook rule, in order.
#[derive(Debug, Default)]
pub struct Webhooks {
    rules: Vec<WebhookRule>,
}

/// One compiled rule.
#[derive(Debug)]
pub struct WebhookRule {
    /// The rule id.
    pub id: Arc<str>,
    /// Enforce or monitor.
    pub mode: Mode,
    severity: Severity,
    routes: Option<Box<[Box<str>]>>,
    path_prefix: Option<Box<str>>,
    provider: &'static str,
    verifier: Verifier,
    /// For schemes with no signed timestamp: how long an accepted delivery is remembered.
    replay_window: Option<u64>,
    max_body_bytes: Option<u64>,
}

/// What [`WebhookRule::check`] decided.
#[derive(Debug)]
pub enum Checked {
    /// Verified and not a replay: forward it. The claim is released if the upstream does not
    /// take the delivery (see [`ReplayCache::release`]).
    Accepted {
        /// The secret whose MAC matched.
        secret_id: String,
        /// The replay-cache claim.
        claim: Claim,
    },
    /// Refused (or flagged, in monitor mode): the finding carries the reason.
    Refused(Box<Finding>),
}

impl Webhooks {
    pub(crate) fn new(rules: Vec<WebhookRule>) -> Self {
        Webhooks { rules }
    }

    /// No rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rule that verifies this request: the first whose routes and path prefix match.
    pub fn for_request(&self, view: &RequestView<'_>) -> Option<&WebhookRule> {
        self.rules.iter().find(|r| {
            route_matches(r.routes.as_deref(), view.route)
                && r.path_prefix.as_deref().is_none_or(|p| canon::has_prefix_ignore_case(view.path, p))
        })
    }
}

impl WebhookRule {
    /// The provider's name as written in rules (`github`, `stripe`, ...).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The body cap: the smaller of the rule's `max_body_bytes` and the route's.
    pub fn body_cap(&self, route_cap: u64) -> u64 {
        self.max_body_bytes.map_or(route_cap, |m| m.min(route_cap))
    }

    /// Verifies a delivery (headers and the whole raw body) at `now` (Unix seconds), then claims
    /// it in the replay cache. A refusal is a finding (`webhook_invalid_signature`, 401
    /// `invalid_signature`) whose `detail.reason` is one of `missing_signature`,
    /// `malformed_signature`, `bad_signature`, `stale_timestamp`, `future_timestamp` (see
    /// [`super::WebhookError`]) and `replayed`. The mode is applied by the caller
    /// ([`crate::verdict::Outcome::add`]); a refused delivery claims nothing.
    pub fn check(&self, headers: &HeaderMap, body: &[u8], now: u64, cache: &ReplayCache) -> Checked {
        let verified = match self.verifier.verify(headers, body, now) {
            Ok(v) => v,
            Err(e) => return Checked::Refused(Box::new(self.finding(e.as_str(), Map::new()))),
        };
        // Keyed on what was verified, never on header text: the signed content, and the delivery
        // id where the sender signed it (an unsigned id, GitHub's, is anyone's to change).
        let mut keys = Vec::with_capacity(2);
        keys.push(ReplayCache::key(&self.id, "content", &verified.content));
        if let Some(id) = verified.delivery_id.as_ref().filter(|_| self.verifier.provider.signs_delivery_id()) {
            keys.push(ReplayCache::key(&self.id, "id", id.as_bytes()));
        }
        // +1: a claim is held while `expires_at > now`, and a delivery is still fresh at exactly
        // `timestamp + tolerance`.
        let expires_at = match (verified.timestamp, self.replay_window) {
            (Some(ts), _) => ts.saturating_add(self.verifier.tolerance).saturating_add(1),
            (None, window) => now.saturating_add(window.unwrap_or(DEFAULT_REPLAY_WINDOW_SECONDS)),
        };
        let mut detail = Map::new();
        detail.insert("secret_id".into(), Value::String(verified.secret_id.clone()));
        if let Some(id) = &verified.delivery_id {
            let shown: String = id.chars().take(MAX_DETAIL_ID).collect();
            detail.insert("delivery_id".into(), Value::String(shown));
        }
        match cache.claim(&keys, expires_at, now) {
            Ok(claim) => Checked::Accepted { secret_id: verified.secret_id, claim },
            Err(_) => Checked::Refused(Box::new(self.finding("replayed", detail))),
        }
    }

    /// The refusal of a delivery another instance of the fleet accepted already (fleet mode's
    /// replay cache), as [`WebhookRule::check`] refuses a local replay.
    pub fn replayed_in_fleet(&self, secret_id: &str) -> Finding {
        let mut detail = Map::new();
        detail.insert("secret_id".into(), Value::String(secret_id.into()));
        detail.insert("fleet".into(), Value::Bool(true));
        self.finding("replayed", detail)
    }

    fn finding(&self, reason: &'static str, mut detail: Map<String, Value>) -> Finding {
        detail.insert("reason".into(), Value::String(reason.into()));
        detail.insert("provider".into(), Value::String(self.provider.into()));
        Finding {
            rule_id: self.id.clone(),
            mode: self.mode,
            event: EVENT,
            severity: self.severity,
            deny: Deny::new(DenyCode::InvalidSignature, reason),
            detail,
        }
    }
}

impl RawRule for RawWebhookRule {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: self.severity }
    }
}

/// Compiles the `webhooks:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawWebhookRule], out: &mut Vec<WebhookRule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| {
        compile_rule(c, meta.id, meta.mode, meta.severity.unwrap_or(EVENT.default_severity()), r)
    });
}

fn compile_rule(
    c: &mut Checker<'_, '_>,
    id: Arc<str>,
    mode: Mode,
    severity: Severity,
    r: &RawWebhookRule,
) -> Option<WebhookRule> {
    let routes = c.routes("routes", r.routes.as_ref());
    if routes.is_none() && r.path_prefix.is_none() {
        c.error("", "a webhook rule needs `path_prefix` (recommended) or `routes`: which requests must be signed");
    }
    let path_prefix = r.path_prefix.as_deref().and_then(|p| {
        let ok = p.starts_with('/') && canon::canonicalize(p.as_bytes()).is_ok_and(|canonical| canonical == p);
        if ok {
            Some(Box::from(p))
        } else {
            c.error(
                "path_prefix",
                format!("`{p}` must be a canonical path starting with `/` (no `..`, `//`, escapes)"),
            );
            None
        }
    });
    let (provider, name, timestamped) = provider(c, r)?;
    if let Some(t) = r.tolerance_seconds {
        if !timestamped {
            c.error(
                "tolerance_seconds",
                format!("{name} deliveries carry no signed timestamp: remove `tolerance_seconds`"),
            );
        } else if !(1..=MAX_TOLERANCE_SECONDS).contains(&t) {
            c.error("tolerance_seconds", format!("{t} is out of range: 1 to {MAX_TOLERANCE_SECONDS}"));
        }
    }
    if let Some(w) = r.replay_window_seconds {
        if timestamped {
            c.error(
                "replay_window_seconds",
                format!("{name} deliveries are signed with a timestamp: the replay window is `tolerance_seconds`"),
            );
        } else if !(1..=MAX_REPLAY_WINDOW_SECONDS).contains(&w) {
            c.error("replay_window_seconds", format!("{w} is out of range: 1 to {MAX_REPLAY_WINDOW_SECONDS}"));
        }
    }
    if let Some(m) = r.max_body_bytes {
        if !(1..=MAX_BODY_MAX_BYTES).contains(&m) {
            c.error("max_body_bytes", format!("{m} is out of range: 1 to {MAX_BODY_MAX_BYTES}"));
        }
    }
    let secrets = secrets(c, &provider, r.secrets.as_deref());
    let tolerance = r.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS);
    let verifier = match Verifier::new(provider, secrets, tolerance) {
        Ok(v) => v,
        Err(_) if !c.ok => return None,
        Err(e) => {
            c.error("secrets", e);
            return None;
        }
    };
    Some(WebhookRule {
        id,
        mode,
        severity,
        routes,
        path_prefix,
        provider: name,
        verifier,
        replay_window: (!timestamped).then(|| r.replay_window_seconds.unwrap_or(DEFAULT_REPLAY_WINDOW_SECONDS)),
        max_body_bytes: r.max_body_bytes,
    })
}

/// The provider, its name, and whether its deliveries carry a signed timestamp.
fn provider(c: &mut Checker<'_, '_>, r: &RawWebhookRule) -> Option<(Provider, &'static str, bool)> {
    const NAMES: &str = "github, stripe, standard_webhooks, generic";
    let Some(name) = r.provider.as_deref() else {
        c.error("provider", format!("a webhook rule needs a `provider`: one of {NAMES}"));
        return None;
    };
    if name != "generic" && r.generic.is_some() {
        c.error("generic", "`generic` only goes with `provider: generic`");
    }
    match name {
        "github" => Some((Provider::GitHub, "github", false)),
        "stripe" => Some((Provider::Stripe, "stripe", true)),
        "standard_webhooks" => Some((Provider::StandardWebhooks, "standard_webhooks", true)),
        "generic" => {
            let Some(g) = &r.generic else {
                c.error("generic", "`provider: generic` needs a `generic:` mapping with at least `header`");
                return None;
            };
            let scheme = generic(c, g)?;
            let timestamped = scheme.timestamp_header.is_some();
            Some((Provider::Generic(scheme), "generic", timestamped))
        }
        other => {
            c.error("provider", format!("unknown provider `{other}`: one of {NAMES}"));
            None
        }
    }
}

fn header_name(c: &mut Checker<'_, '_>, key: &str, text: &str) -> Option<HeaderName> {
    let name =
        c.result(key, HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("`{text}` is not a header name")))?;
    if let Some(why) = crate::overrides::rule_header_refusal(text) {
        c.error(key, why);
        return None;
    }
    if matches!(name.as_str(), "host" | "content-length" | "transfer-encoding" | "connection" | "content-type") {
        c.error(key, format!("`{text}` cannot carry a signature"));
        return None;
    }
    Some(name)
}

fn generic(c: &mut Checker<'_, '_>, g: &RawGeneric) -> Option<GenericScheme> {
    let header = header_name(c, "generic.header", &g.header);
    let timestamp_header = match &g.timestamp_header {
        Some(t) => Some(header_name(c, "generic.timestamp_header", t)?),
        None => None,
    };
    if header.is_some() && header == timestamp_header {
        c.error("generic.timestamp_header", "the timestamp and the signature need two different headers");
    }
    let algorithm = match g.algorithm.as_deref() {
        None | Some("sha256") => MacAlg::Sha256,
        Some("sha512") => MacAlg::Sha512,
        Some(other) => {
            c.error("generic.algorithm", format!("unknown algorithm `{other}`: sha256 or sha512 (HMAC)"));
            return None;
        }
    };
    let encoding = match g.encoding.as_deref() {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            c.error("generic.encoding", format!("unknown encoding `{other}`: hex or base64"));
            return None;
        }
    };
    if let Some(p) = &g.prefix {
        if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_graphic()) {
            c.error("generic.prefix", "a prefix is 1 to 64 visible ASCII characters");
        }
    }
    Some(GenericScheme { header: header?, algorithm, encoding, prefix: g.prefix.clone(), timestamp_header })
}

fn secrets(c: &mut Checker<'_, '_>, provider: &Provider, raw: Option<&[RawSecret]>) -> Vec<Secret> {
    let Some(raw) = raw else {
        c.error("secrets", "a webhook rule needs `secrets`: at least one, each from `env` or `file`");
        return Vec::new();
    };
    if raw.is_empty() || raw.len() > MAX_SECRETS {
        c.error("secrets", format!("{} secrets: 1 to {MAX_SECRETS} (several only while rotating)", raw.len()));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (j, s) in raw.iter().enumerate() {
        let key = format!("secrets[{j}]");
        let id_ok = !s.id.is_empty()
            && s.id.len() <= 64
            && s.id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            c.error(&format!("{key}.id"), "a secret id is 1 to 64 characters from `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`");
        } else if raw.iter().take(j).any(|o| o.id == s.id) {
            c.error(&format!("{key}.id"), format!("duplicate secret id `{}`", s.id));
        }
        let asset = match (&s.env, &s.file) {
            (Some(v), None) => AssetRef::Env(v.clone()),
            (None, Some(f)) => AssetRef::File(f.clone()),
            _ => {
                c.error(&key, "a secret needs exactly one of `env` or `file` (never the secret itself)");
                continue;
            }
        };
        let Some(bytes) = c.asset(&key, asset) else { continue };
        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        match Secret::new(provider, s.id.clone(), text) {
            Ok(secret) => out.push(secret),
            Err(e) => c.error(&key, e),
        }
    }
    out
}

#[cfg(test)]
mod tests;
