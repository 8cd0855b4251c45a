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
mod tests {
    use super::*;
    use crate::rulefile::{compile_with, Env, SourceFile};
    use crate::webhook::sign_standard_webhooks;
    use http::HeaderValue;
    use ring::hmac;

    const GH: &str = "github-secret-0123456789abcdef";
    const GH_OLD: &str = "github-previous-0123456789abcdef";
    const STRIPE: &str = "whsec_stripe0123456789abcdef0123";
    const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const STRIPE_OLD: &str = "whsec_stripe_previous_0123456789ab";
    const NOW: u64 = 1_800_000_000;

    fn resolver(r: &AssetRef) -> Result<Vec<u8>, String> {
        match r {
            AssetRef::Env(v) if v == "GH" => Ok(GH.as_bytes().to_vec()),
            AssetRef::File(f) if f == "gh-old.txt" => Ok(format!("{GH_OLD}\r\n").into_bytes()),
            AssetRef::Env(v) if v == "STRIPE" => Ok(STRIPE.as_bytes().to_vec()),
            AssetRef::Env(v) if v == "STRIPE_OLD" => Ok(STRIPE_OLD.as_bytes().to_vec()),
            AssetRef::Env(v) if v == "SW" => Ok(SW.as_bytes().to_vec()),
            AssetRef::Env(v) if v == "SHORT" => Ok(b"short".to_vec()),
            other => Err(format!("{other} is not set")),
        }
    }

    fn compile(rules: &str) -> Result<Webhooks, Vec<String>> {
        let routes = ["webhooks", "api"];
        let env = Env { routes: Some(&routes), assets: Some(&resolver), sinks: None };
        let text = format!("version: 1\nwebhooks:\n{rules}");
        compile_with(&[SourceFile::new("w.yaml", text)], &env)
            .map(|s| s.webhooks)
            .map_err(|e| e.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
    }

    fn one_error(rules: &str) -> String {
        let e = compile(rules).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
        hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
    }

    fn view<'a>(path: &'a str, route: Option<&'a str>, h: &'a HeaderMap) -> RequestView<'a> {
        RequestView { method: "POST", path, query: None, host: None, route, channel: None, client_ip: None, headers: h }
    }

    const RULES: &str = "  - id: gh
    routes: [webhooks]
    path_prefix: /webhooks/github
    provider: github
    secrets: [{id: current, env: GH}, {id: previous, file: gh-old.txt}]
  - id: stripe
    routes: [webhooks]
    path_prefix: /webhooks/stripe
    provider: stripe
    secrets: [{id: s1, env: STRIPE}]
    tolerance_seconds: 60
    max_body_bytes: 1000
  - id: sw
    routes: [webhooks]
    provider: standard_webhooks
    secrets: [{id: sw1, env: SW}]
";

    fn refused_reason(c: Checked) -> String {
        match c {
            Checked::Refused(f) => f.detail["reason"].as_str().unwrap().to_owned(),
            Checked::Accepted { .. } => panic!("accepted"),
        }
    }

    #[test]
    fn rules_are_found_by_route_and_prefix_ignoring_case() {
        let w = compile(RULES).unwrap();
        assert_eq!(w.len(), 3);
        let h = HeaderMap::new();
        let id = |p: &str, r: Option<&str>| w.for_request(&view(p, r, &h)).map(|r| r.id.to_string());
        assert_eq!(id("/webhooks/github", Some("webhooks")).as_deref(), Some("gh"));
        assert_eq!(id("/WebHooks/GitHub/x", Some("webhooks")).as_deref(), Some("gh"));
        assert_eq!(id("/webhooks/githubx", Some("webhooks")).as_deref(), Some("sw"), "segment boundary");
        assert_eq!(id("/webhooks/stripe", Some("webhooks")).as_deref(), Some("stripe"));
        assert_eq!(id("/webhooks/other", Some("webhooks")).as_deref(), Some("sw"), "the catch-all rule");
        assert_eq!(id("/webhooks/github", Some("api")), None);
        assert_eq!(id("/webhooks/github", None), None);
        let stripe = w.for_request(&view("/webhooks/stripe", Some("webhooks"), &h)).unwrap();
        assert_eq!(stripe.body_cap(262_144), 1000);
        assert_eq!(stripe.body_cap(500), 500);
        assert_eq!(stripe.provider(), "stripe");
    }

    #[test]
    fn github_rotation_names_the_matching_secret_and_replays_are_refused() {
        let w = compile(RULES).unwrap();
        let cache = ReplayCache::default();
        let rule = &w.rules[0];
        let body = br#"{"action":"opened"}"#;
        for (secret, id, delivery, body) in
            [(GH, "current", "d-1", &body[..]), (GH_OLD, "previous", "d-2", br#"{"action":"closed"}"#)]
        {
            let sig = format!("sha256={}", hmac_hex(secret.as_bytes(), body));
            let h = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", delivery)]);
            match rule.check(&h, body, NOW, &cache) {
                Checked::Accepted { secret_id, .. } => assert_eq!(secret_id, id),
                Checked::Refused(f) => panic!("{f:?}"),
            }
        }
        // The same delivery again, and the same signature under a new (unsigned) delivery id.
        let sig = format!("sha256={}", hmac_hex(GH.as_bytes(), body));
        let again = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "d-1")]);
        assert_eq!(refused_reason(rule.check(&again, body, NOW + 10, &cache)), "replayed");
        let renamed = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "d-999")]);
        assert_eq!(refused_reason(rule.check(&renamed, body, NOW + 10, &cache)), "replayed");
        // After the default window the delivery is accepted again.
        assert!(matches!(
            rule.check(&again, body, NOW + DEFAULT_REPLAY_WINDOW_SECONDS, &cache),
            Checked::Accepted { .. }
        ));
    }

    /// Accepts `first`, then expects every variant to verify (so it is a genuine re-spelling of
    /// the same signed delivery) and to be refused as `replayed`.
    fn assert_respellings_are_replays(rule: &WebhookRule, body: &[u8], first: &HeaderMap, variants: &[HeaderMap]) {
        let cache = ReplayCache::default();
        assert!(matches!(rule.check(first, body, NOW, &cache), Checked::Accepted { .. }), "{first:?}");
        for (i, h) in variants.iter().enumerate() {
            assert!(rule.verifier.verify(h, body, NOW + 1).is_ok(), "variant {i} must verify: {h:?}");
            assert_eq!(refused_reason(rule.check(h, body, NOW + 1, &cache)), "replayed", "variant {i}: {h:?}");
        }
    }

    #[test]
    fn replays_are_keyed_on_what_was_verified_not_on_header_spelling() {
        let w = compile(RULES).unwrap();
        // GitHub: hex case, a new (unsigned) delivery id, none at all, the old secret's MAC.
        let body = br#"{"action":"opened"}"#;
        let sig = hmac_hex(GH.as_bytes(), body);
        let first = headers(&[("x-hub-signature-256", &format!("sha256={sig}")), ("x-github-delivery", "d-1")]);
        let mixed: String =
            sig.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
        let old = hmac_hex(GH_OLD.as_bytes(), body);
        let variants = [
            headers(&[
                ("x-hub-signature-256", &format!("sha256={}", sig.to_uppercase())),
                ("x-github-delivery", "d-2"),
            ]),
            headers(&[("X-Hub-Signature-256", &format!("sha256={mixed}")), ("X-GitHub-Delivery", "d-3")]),
            headers(&[("x-hub-signature-256", &format!("sha256={sig}")), ("x-github-delivery", "d-4")]),
            headers(&[("x-hub-signature-256", &format!("sha256={sig}"))]),
            headers(&[("x-hub-signature-256", &format!("sha256={old}")), ("x-github-delivery", "d-5")]),
        ];
        assert_respellings_are_replays(&w.rules[0], body, &first, &variants);

        // Stripe, a body without `id`: reordered entries, added v0 / v1 entries, hex case, one of
        // two rotation signatures dropped.
        let rules = RULES
            .replace("secrets: [{id: s1, env: STRIPE}]", "secrets: [{id: s1, env: STRIPE}, {id: s0, env: STRIPE_OLD}]");
        let w = compile(&rules).unwrap();
        let body = br#"{"object":"event","type":"ping"}"#;
        let t = NOW.to_string();
        let msg = format!("{t}.{}", std::str::from_utf8(body).unwrap());
        let v1 = hmac_hex(STRIPE.as_bytes(), msg.as_bytes());
        let v1_old = hmac_hex(STRIPE_OLD.as_bytes(), msg.as_bytes());
        let zero = "0".repeat(64);
        let first = headers(&[("stripe-signature", &format!("t={t},v1={v1},v1={v1_old}"))]);
        let variants: Vec<HeaderMap> = [
            format!("v1={v1},t={t}"),
            format!("t={t},v1={v1},v0={zero}"),
            format!("t={t},v1={zero},v1={v1}"),
            format!("t={t},v1={}", v1.to_uppercase()),
            format!("t={t},v1={v1_old}"),
            format!("t={t},v1={v1},v1={v1}"),
            format!("t={t},v2=x,v1={v1}"),
        ]
        .iter()
        .map(|v| headers(&[("stripe-signature", v)]))
        .collect();
        assert_respellings_are_replays(&w.rules[1], body, &first, &variants);

        // Standard Webhooks: one signature added, entries reordered, double spaces, an unpadded
        // or base64url copy beside the real one, a `v1a` entry.
        let w = compile(RULES).unwrap();
        let body = b"{}";
        let signed = sign_standard_webhooks(SW, "msg_1", NOW, body).unwrap();
        let sig = signed[2].1.clone();
        let b64 = sig.strip_prefix("v1,").unwrap().to_owned();
        let other = format!("v1,{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]));
        let with_sig = |value: &str| {
            headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", &signed[1].1), ("webhook-signature", value)])
        };
        let first = with_sig(&sig);
        let url = b64.replace('+', "-").replace('/', "_");
        let variants: Vec<HeaderMap> = [
            format!("{sig} {other}"),
            format!("{other} {sig}"),
            format!("{sig}  {other}"),
            format!("v1,{} {sig}", b64.trim_end_matches('=')),
            format!("v1,{url} {sig}"),
            format!("v1a,abc {sig}"),
        ]
        .iter()
        .map(|v| with_sig(v))
        .collect();
        assert_respellings_are_replays(&w.rules[2], body, &first, &variants);

        // A genuinely different delivery is not a replay: other body, other signed id or time.
        let cache = ReplayCache::default();
        assert!(matches!(w.rules[2].check(&first, body, NOW, &cache), Checked::Accepted { .. }));
        let next = sign_standard_webhooks(SW, "msg_2", NOW, body).unwrap();
        let h = headers(&next.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        assert!(matches!(w.rules[2].check(&h, body, NOW, &cache), Checked::Accepted { .. }));
        let later = sign_standard_webhooks(SW, "msg_3", NOW + 1, b"[]").unwrap();
        let h = headers(&later.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        assert!(matches!(w.rules[2].check(&h, b"[]", NOW + 1, &cache), Checked::Accepted { .. }));
    }

    #[test]
    fn a_released_claim_lets_the_senders_retry_through() {
        let w = compile(RULES).unwrap();
        let cache = ReplayCache::default();
        let rule = &w.rules[2];
        let body = b"{}";
        let signed = sign_standard_webhooks(SW, "msg_1", NOW, body).unwrap();
        let h = headers(&signed.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        let Checked::Accepted { claim, .. } = rule.check(&h, body, NOW, &cache) else { panic!() };
        assert_eq!(refused_reason(rule.check(&h, body, NOW + 1, &cache)), "replayed", "in flight");
        cache.release(&claim); // the upstream answered 503
        assert!(matches!(rule.check(&h, body, NOW + 2, &cache), Checked::Accepted { .. }));
    }

    #[test]
    fn timestamped_claims_last_exactly_as_long_as_the_delivery_is_fresh() {
        let w = compile(RULES).unwrap();
        let cache = ReplayCache::default();
        let rule = &w.rules[1]; // stripe, tolerance 60
        let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let t = NOW.to_string();
        let sig = hmac_hex(STRIPE.as_bytes(), format!("{t}.{}", std::str::from_utf8(body).unwrap()).as_bytes());
        let h = headers(&[("stripe-signature", &format!("t={t},v1={sig}"))]);
        assert!(matches!(rule.check(&h, body, NOW + 60, &cache), Checked::Accepted { .. }), "fresh at +60");
        // A replay in the last fresh second is a replay, not a pass.
        assert_eq!(refused_reason(rule.check(&h, body, NOW + 60, &cache)), "replayed");
        assert_eq!(refused_reason(rule.check(&h, body, NOW + 61, &cache)), "stale_timestamp");
        // The detail names the secret and the (signed) event id, never a signature.
        let Checked::Refused(f) = rule.check(&h, body, NOW + 30, &cache) else { panic!() };
        assert_eq!(f.detail["secret_id"], "s1");
        assert_eq!(f.detail["delivery_id"], "evt_1");
        assert_eq!(f.detail["provider"], "stripe");
        assert_eq!(f.deny.code, DenyCode::InvalidSignature);
        assert!(!serde_json::to_string(&f.detail).unwrap().contains(&sig));
    }

    #[test]
    fn every_failure_reason_is_a_finding() {
        let w = compile(RULES).unwrap();
        let cache = ReplayCache::default();
        let gh = &w.rules[0];
        let body = b"payload";
        let ok = format!("sha256={}", hmac_hex(GH.as_bytes(), body));
        let cases = [
            (headers(&[]), "missing_signature"),
            (headers(&[("x-hub-signature-256", "sha1=abc")]), "malformed_signature"),
            (headers(&[("x-hub-signature-256", &ok), ("x-hub-signature-256", &ok)]), "malformed_signature"),
            (headers(&[("x-hub-signature-256", &format!("sha256={}", "0".repeat(64)))]), "bad_signature"),
        ];
        for (h, want) in cases {
            assert_eq!(refused_reason(gh.check(&h, body, NOW, &cache)), want);
        }
        // A signature made for another rule's secret is a bad signature here.
        let sw = &w.rules[2];
        let other = format!("sha256={}", hmac_hex(STRIPE.as_bytes(), body));
        assert_eq!(
            refused_reason(gh.check(&headers(&[("x-hub-signature-256", &other)]), body, NOW, &cache)),
            "bad_signature"
        );
        let signed = sign_standard_webhooks(SW, "m", NOW + 301, body).unwrap();
        let h = headers(&signed.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        assert_eq!(refused_reason(sw.check(&h, body, NOW, &cache)), "future_timestamp");
        assert!(cache.is_empty(), "refusals claim nothing");
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let base = "  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: GH}]\n";
        assert!(compile(base).is_ok());
        let cases = [
            ("  - id: w\n    provider: github\n    secrets: [{id: a, env: GH}]\n", "webhooks[0]: a webhook rule needs `path_prefix` (recommended) or `routes`"),
            ("  - id: w\n    routes: [nope]\n    provider: github\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].routes[0]: unknown route `nope`"),
            ("  - id: w\n    routes: [webhooks]\n    provider: gitlab\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].provider: unknown provider `gitlab`"),
            ("  - id: w\n    routes: [webhooks]\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].provider: a webhook rule needs a `provider`"),
            (&format!("{base}    tolerance_seconds: 60\n"), "webhooks[0].tolerance_seconds: github deliveries carry no signed timestamp"),
            ("  - id: w\n    routes: [webhooks]\n    provider: stripe\n    secrets: [{id: a, env: STRIPE}]\n    replay_window_seconds: 60\n", "webhooks[0].replay_window_seconds: stripe deliveries are signed with a timestamp"),
            ("  - id: w\n    routes: [webhooks]\n    provider: stripe\n    secrets: [{id: a, env: STRIPE}]\n    tolerance_seconds: 0\n", "webhooks[0].tolerance_seconds: 0 is out of range"),
            (&format!("{base}    max_body_bytes: 0\n"), "webhooks[0].max_body_bytes: 0 is out of range"),
            ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: GH, file: x}]\n", "webhooks[0].secrets[0]: a secret needs exactly one of `env` or `file`"),
            ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: SHORT}]\n", "webhooks[0].secrets[0]: webhook secret \"a\": 5 key bytes, at least 16 required"),
            ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: MISSING}]\n", "webhooks[0].secrets[0]: cannot read environment variable MISSING"),
            ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: GH}, {id: a, env: GH}]\n", "webhooks[0].secrets[1].id: duplicate secret id `a`"),
            ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: []\n", "webhooks[0].secrets: 0 secrets: 1 to 8"),
            ("  - id: w\n    routes: [webhooks]\n    provider: standard_webhooks\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].secrets[0]: webhook secret \"a\": not valid base64"),
            ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic: `provider: generic` needs a `generic:` mapping"),
            ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    generic: {header: 'bad header'}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic.header: `bad header` is not a header name"),
            ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    generic: {header: X_Sig}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic.header: `X_Sig` holds `_`: applications read it as `X-Sig`"),
            ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    generic: {header: x-sig, algorithm: md5}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic.algorithm: unknown algorithm `md5`"),
            ("  - id: w\n    routes: [webhooks]\n    provider: github\n    generic: {header: x-sig}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic: `generic` only goes with `provider: generic`"),
            (&format!("{base}    path_prefix: /webhooks/../admin\n"), "webhooks[0].path_prefix: `/webhooks/../admin` must be a canonical path"),
        ];
        for (rules, want) in cases {
            let got = one_error(rules);
            assert!(got.starts_with(want), "{rules}\n got: {got}\nwant: {want}");
            assert!(!got.contains(GH) && !got.contains(STRIPE), "no secret in errors: {got}");
        }
        // An inline secret is not a key at all.
        let e = compile("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, value: x}]\n")
            .unwrap_err();
        assert!(e[0].contains("unknown field `value`"), "{e:?}");
    }

    #[test]
    fn generic_schemes_compile_and_verify() {
        let rules = "  - id: g\n    routes: [webhooks]\n    provider: generic\n    generic: {header: x-signature, algorithm: sha512, encoding: base64, prefix: 'v1=', timestamp_header: x-timestamp}\n    secrets: [{id: a, env: GH}]\n    tolerance_seconds: 30\n";
        let w = compile(rules).unwrap();
        let rule = &w.rules[0];
        let body = b"hello";
        let t = NOW.to_string();
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, GH.as_bytes()), format!("{t}.hello").as_bytes());
        use base64::Engine as _;
        let sig = format!("v1={}", base64::engine::general_purpose::STANDARD.encode(mac.as_ref()));
        let h = headers(&[("x-signature", &sig), ("x-timestamp", &t)]);
        let cache = ReplayCache::default();
        assert!(matches!(rule.check(&h, body, NOW, &cache), Checked::Accepted { .. }));
        assert_eq!(refused_reason(rule.check(&h, body, NOW, &cache)), "replayed", "the exact signature again");
        assert_eq!(refused_reason(rule.check(&h, body, NOW + 31, &cache)), "stale_timestamp");
    }
}
