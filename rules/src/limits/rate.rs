//! The `rate_limits:` section: compiled rules, key extraction, and the per-request check.
//! Documented in the parent module ([`crate::limits`]).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::aggregate::{Aggregator, Emit, Origin};
use super::fleet::{FleetKey, FleetShares};
use super::gcra::{Gcra, LimitDecision, LimiterStore, DEFAULT_MAX_KEYS, MAX_MAX_KEYS};
use super::{KeyInput, LimitCheck, Now};
use crate::deny::{Deny, DenyCode};
use crate::identity::AuthMethod;
use crate::schema::{compile_section, present, route_matches, Checker, Common, Ctx, RawRule};
use crate::verdict::{EventType, Finding, Mode, Severity};
use crate::view::RequestView;

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "rate_limits";

/// The event every rate-limit finding becomes.
pub const EVENT: EventType = EventType::RateLimitHit;

/// Longest part of a key that is kept, in bytes: a longer value (a huge header) counts by its
/// first 256 bytes and its full length.
pub const MAX_KEY_PART_LEN: usize = 256;

/// Most parts in one `key`.
pub const MAX_KEY_PARTS: usize = 8;

/// Largest `rate` count.
pub const MAX_COUNT: u64 = 1_000_000_000;

/// Longest `rate` period, in seconds (one day: longer windows are quotas).
pub const MAX_PERIOD_SECS: u64 = 86_400;

/// Largest `burst`.
pub const MAX_BURST: u64 = 1_000_000;

/// Default of `ipv6_prefix`: an IPv6 client is limited by its /64 (one subscriber's network),
/// not by one of its 2⁶⁴ addresses.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Longest value shown in an event's key label, in bytes.
const MAX_LABEL_VALUE: usize = 64;

/// One raw rule of the `rate_limits:` list. Serialized (JSON) for the rule hash: absent optional
/// keys are skipped so that adding keys to the schema keeps existing hashes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a rate_limits rule: a mapping with `id`, `key` and `rate`")]
pub(crate) struct RawRateLimit {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    key: Vec<String>,
    rate: String,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    max_keys: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    ipv6_prefix: Option<u8>,
}

/// One part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client IP (resolved through the trusted proxies); IPv6 by its `ipv6_prefix` network.
    ClientIp,
    /// The identity's tenant.
    Tenant,
    /// The identity's subject.
    Subject,
    /// The API key's id (the identity's `credential` when it authenticated with an API key).
    ApiKey,
    /// Every value of a request header, joined with `, `.
    Header(HeaderName),
}

impl KeyPart {
    fn parse(s: &str) -> Result<KeyPart, String> {
        match s {
            "client_ip" => Ok(KeyPart::ClientIp),
            "tenant" => Ok(KeyPart::Tenant),
            "subject" => Ok(KeyPart::Subject),
            "api_key" => Ok(KeyPart::ApiKey),
            _ => match s.strip_prefix("header:") {
                Some("") => Err("`header:` needs a header name, like `header:x-client-id`".into()),
                Some(h) => match crate::overrides::rule_header_refusal(h) {
                    Some(why) => Err(why),
                    None => HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                        .map(KeyPart::Header)
                        .map_err(|_| format!("`{}` is not a valid header name", h.escape_debug())),
                },
                None => Err(format!(
                    "unknown key part `{}`; use client_ip, tenant, subject, api_key or header:<name>",
                    s.escape_debug()
                )),
            },
        }
    }

    /// The name as written in a rule.
    pub fn name(&self) -> String {
        match self {
            KeyPart::ClientIp => "client_ip".into(),
            KeyPart::Tenant => "tenant".into(),
            KeyPart::Subject => "subject".into(),
            KeyPart::ApiKey => "api_key".into(),
            KeyPart::Header(h) => format!("header:{h}"),
        }
    }
}

/// One compiled rate-limit rule, with its limiter state.
#[derive(Debug)]
pub struct LimitRule {
    id: Arc<str>,
    hash: Box<str>,
    mode: Mode,
    routes: Option<Box<[Box<str>]>>,
    key: Vec<KeyPart>,
    ipv6_prefix: u8,
    rate: Box<str>,
    store: Arc<LimiterStore>,
    /// The rate's count and period (seconds): the fleet budget per window.
    count: u64,
    period_secs: u64,
    /// `"id";q=100;w=60`
    policy: Box<str>,
    origin: Arc<Origin>,
}

/// Where a key is written: a buffer ([`LimitRule::key`]) or straight into the store's hasher.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct HashSink<H: Hasher>(H);

impl<H: Hasher> Sink for HashSink<H> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

impl Sink for sha2::Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        sha2::Digest::update(self, bytes);
    }
}

// Tags of the key encoding: every part starts with one, so no two different requests write the
// same bytes unless they have the same key.
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;
const IPV4: u8 = 4;
const IPV6: u8 = 6;
const NO_IP: u8 = 0;

/// The client IP as the key sees it: IPv4-mapped IPv6 as IPv4, IPv6 cut to the prefix.
#[derive(Clone, Copy)]
enum MaskedIp {
    V4([u8; 4]),
    V6([u8; 16], u8),
}

fn mask_ip(ip: IpAddr, prefix: u8) -> MaskedIp {
    match ip.to_canonical() {
        IpAddr::V4(v4) => MaskedIp::V4(v4.octets()),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix >= 128 { u128::MAX } else { !(u128::MAX >> prefix) };
            MaskedIp::V6((bits & mask).to_be_bytes(), prefix.min(128))
        }
    }
}

impl std::fmt::Display for MaskedIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskedIp::V4(b) => write!(f, "{}", std::net::Ipv4Addr::from(*b)),
            MaskedIp::V6(b, 128) => write!(f, "{}", std::net::Ipv6Addr::from(*b)),
            MaskedIp::V6(b, p) => write!(f, "{}/{p}", std::net::Ipv6Addr::from(*b)),
        }
    }
}

/// One part's value in a request: bytes, or absent.
enum Value<'a> {
    Bytes(&'a [u8]),
    /// Header values (at least one), joined with `, ` as the key sees them.
    Header(http::header::GetAll<'a, http::HeaderValue>),
    Absent,
}

impl LimitRule {
    /// The rule id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The rule hash (see [`crate::rulefile`]): with the id, what decides whether the limiter
    /// state survives a reload.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `enforce` or `monitor`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The key parts.
    pub fn key_parts(&self) -> &[KeyPart] {
        &self.key
    }

    /// The limiter state (for metrics: `len`, `approx_bytes`).
    pub fn store(&self) -> &LimiterStore {
        &self.store
    }

    /// The `RateLimit-Policy` item of this rule: `"id";q=<count>;w=<period seconds>`.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// Whether the rule applies to the request's route.
    pub fn applies(&self, view: &RequestView<'_>) -> bool {
        route_matches(self.routes.as_deref(), view.route)
    }

    /// Writes the request's key into `buf` (cleared first) and returns true, or returns false
    /// when the rule does not apply to the request's route. Each part is tagged and
    /// length-prefixed, so `("a", "bc")` and `("ab", "c")` differ; a part longer than
    /// [`MAX_KEY_PART_LEN`] counts by its first bytes and its length; an absent part is replaced
    /// by the client IP (see the module doc).
    pub fn key(&self, input: &KeyInput<'_>, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if !self.applies(input.view) {
            return false;
        }
        self.write_key(input, buf);
        true
    }

    /// The store's hash of the request's key, without building it: the same as
    /// `store().hash(key)` for the bytes [`LimitRule::key`] writes.
    pub fn key_hash(&self, input: &KeyInput<'_>) -> u64 {
        let mut sink = HashSink(self.store.hasher());
        self.write_key(input, &mut sink);
        sink.0.finish()
    }

    /// The key's fleet-wide name (see [`super::fleet`]): the same on every instance.
    pub fn fleet_key(&self, input: &KeyInput<'_>) -> FleetKey {
        let mut h = super::fleet::key_hasher(&self.id, &self.hash);
        self.write_key(input, &mut h);
        super::fleet::finish(h)
    }

    fn value<'a>(&self, part: &'a KeyPart, input: &KeyInput<'a>) -> Value<'a> {
        let id = input.identity;
        let bytes = |s: Option<&'a str>| s.map_or(Value::Absent, |s| Value::Bytes(s.as_bytes()));
        match part {
            KeyPart::ClientIp => Value::Absent, // written by `write_ip`, never asked for
            KeyPart::Tenant => bytes(id.and_then(|i| i.tenant.as_deref())),
            KeyPart::Subject => bytes(id.map(|i| i.subject.as_str())),
            KeyPart::ApiKey => {
                bytes(id.filter(|i| i.method == AuthMethod::ApiKey).and_then(|i| i.credential.as_deref()))
            }
            KeyPart::Header(name) => {
                let all = input.view.headers.get_all(name);
                if all.iter().next().is_some() {
                    Value::Header(all)
                } else {
                    Value::Absent
                }
            }
        }
    }

    fn write_key(&self, input: &KeyInput<'_>, sink: &mut impl Sink) {
        let ip = input.view.client_ip.map(|ip| mask_ip(ip, self.ipv6_prefix));
        for part in &self.key {
            if *part == KeyPart::ClientIp {
                write_ip(ip, sink);
                continue;
            }
            match self.value(part, input) {
                Value::Bytes(b) => {
                    sink.put(&[PRESENT]);
                    sink.put(&(b.len() as u64).to_le_bytes());
                    sink.put(b.get(..MAX_KEY_PART_LEN).unwrap_or(b));
                }
                Value::Header(all) => {
                    let total: usize = all.iter().map(|v| v.len() + 2).sum::<usize>().saturating_sub(2);
                    sink.put(&[PRESENT]);
                    sink.put(&(total as u64).to_le_bytes());
                    let mut left = MAX_KEY_PART_LEN;
                    for (i, v) in all.iter().enumerate() {
                        for piece in [if i == 0 { &b""[..] } else { b", " }, v.as_bytes()] {
                            let n = piece.len().min(left);
                            sink.put(piece.get(..n).unwrap_or_default());
                            left -= n;
                        }
                    }
                }
                Value::Absent => {
                    sink.put(&[ABSENT]);
                    write_ip(ip, sink);
                }
            }
        }
    }

    /// The key as events show it: never a secret. IPs as addresses (IPv6 as the limited
    /// network), tenant, subject and API key id as they are (cut at 64 bytes), header values as
    /// a keyed hash and their length. An absent part shows `(none)`, and the client IP it
    /// fell back to is added.
    pub fn label(&self, input: &KeyInput<'_>, agg: &Aggregator) -> String {
        let ip = input.view.client_ip.map(|ip| mask_ip(ip, self.ipv6_prefix));
        let mut out = String::new();
        let mut fell_back = false;
        for part in &self.key {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", part.name());
            if *part == KeyPart::ClientIp {
                push_ip(&mut out, ip);
                continue;
            }
            match self.value(part, input) {
                Value::Bytes(b) => {
                    let s = String::from_utf8_lossy(b.get(..MAX_LABEL_VALUE).unwrap_or(b));
                    out.push_str(&s);
                    if b.len() > MAX_LABEL_VALUE {
                        out.push('…');
                    }
                }
                Value::Header(all) => {
                    let joined = join_header(all);
                    let _ = write!(out, "#{:016x} ({} bytes)", agg.label_hash(&joined), joined.len());
                }
                Value::Absent => {
                    out.push_str("(none)");
                    fell_back = true;
                }
            }
        }
        if fell_back && !self.key.contains(&KeyPart::ClientIp) {
            out.push_str(", client_ip=");
            push_ip(&mut out, ip);
        }
        out
    }

    /// The `RateLimit-Policy` and `RateLimit` headers for a decision of this rule.
    pub fn headers(&self, d: &LimitDecision) -> Vec<(&'static str, String)> {
        vec![
            ("ratelimit-policy", self.policy.to_string()),
            ("ratelimit", format!("\"{}\";r={};t={}", self.id, d.remaining, d.reset_after_secs)),
        ]
    }

    fn finding(&self, d: &LimitDecision, label: Option<String>, agg: &Aggregator) -> Finding {
        let mut deny = Deny::new(DenyCode::RateLimited, "rate_limit").retry_after(d.retry_after_secs);
        for (name, value) in self.headers(d) {
            deny = deny.with_header(name, value);
        }
        let mut detail = Map::new();
        match label {
            Some(label) => {
                detail.insert("key".into(), json!(label));
                detail.insert("key_parts".into(), json!(self.key.iter().map(KeyPart::name).collect::<Vec<_>>()));
                detail.insert("rate".into(), json!(self.rate));
                detail.insert("burst".into(), json!(self.store.gcra().burst()));
                detail.insert("retry_after".into(), json!(d.retry_after_secs));
                detail.insert("aggregation_window_secs".into(), json!(agg.window_secs()));
            }
            None => {
                detail.insert("aggregated".into(), json!(true));
            }
        }
        Finding {
            rule_id: self.id.clone(),
            mode: self.mode,
            event: EVENT,
            severity: self.origin.severity,
            deny,
            detail,
        }
    }

    /// Reports a refusal to the aggregator; the finding, with a full detail when its event is
    /// due.
    fn refusal(&self, d: &LimitDecision, h: u64, input: &KeyInput<'_>, now: u64, agg: &Aggregator) -> (Finding, bool) {
        let mut label = None;
        let emit = agg.hit_from(&self.origin, h, input.view.client_ip, now, || {
            let l = self.label(input, agg);
            label = Some(l.clone());
            l
        });
        let first = emit == Emit::First;
        let label = if first { Some(label.unwrap_or_else(|| self.label(input, agg))) } else { None };
        (self.finding(d, label, agg), first)
    }
}

/// Every value of a header, joined with `, `.
fn join_header(all: http::header::GetAll<'_, http::HeaderValue>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in all.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn write_ip(ip: Option<MaskedIp>, sink: &mut impl Sink) {
    match ip {
        Some(MaskedIp::V4(b)) => {
            sink.put(&[IPV4]);
            sink.put(&b);
        }
        Some(MaskedIp::V6(b, _)) => {
            sink.put(&[IPV6]);
            sink.put(&b);
        }
        None => sink.put(&[NO_IP]),
    }
}

fn push_ip(out: &mut String, ip: Option<MaskedIp>) {
    match ip {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push_str("(unknown)"),
    }
}

/// How many limiter stores a reload kept and started fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarryOver {
    /// Rules whose id and hash were unchanged: their state was kept.
    pub kept: usize,
    /// New or changed rules: they start empty.
    pub fresh: usize,
}

/// The compiled `rate_limits:` rules of a snapshot, each with its limiter state. `Send + Sync`.
#[derive(Debug, Default)]
pub struct RateLimits {
    rules: Vec<LimitRule>,
}

impl RateLimits {
    pub(crate) fn new(rules: Vec<LimitRule>) -> Self {
        RateLimits { rules }
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[LimitRule] {
        &self.rules
    }

    /// Takes over the limiter state of every rule of `previous` (the running snapshot) whose id
    /// and hash are unchanged; other rules keep their fresh, empty state. Call it once per
    /// reload on the new snapshot before publishing it: requests still running on the old
    /// snapshot then share the very same state.
    pub fn carry_over(&mut self, previous: &RateLimits) -> CarryOver {
        let old: HashMap<(&str, &str), &Arc<LimiterStore>> =
            previous.rules.iter().map(|r| ((&*r.id, &*r.hash), &r.store)).collect();
        let mut c = CarryOver::default();
        for r in &mut self.rules {
            match old.get(&(&*r.id, &*r.hash)) {
                Some(store) => {
                    r.store = Arc::clone(store);
                    c.kept += 1;
                }
                None => c.fresh += 1,
            }
        }
        c
    }

    /// Runs every rule that applies to the request, at `now.mono_ns` (also the aggregator's
    /// clock). See the module doc for how several rules combine. Requests
    /// that pass and that an `enforce` rule applied to get that rule's `RateLimit-Policy` /
    /// `RateLimit` headers in [`LimitCheck::headers`] (the most constraining rule's: fewest
    /// remaining, then latest reset); a refused one carries them in its deny.
    pub fn check(&self, input: &KeyInput<'_>, now: Now, agg: &Aggregator) -> LimitCheck {
        self.check_fleet(input, now, agg, None)
    }

    /// [`RateLimits::check`] with the fleet budget of every rule (fleet mode, see
    /// [`super::fleet`]; with the Unix time in milliseconds): a request the local bucket allows
    /// is also taken from the key's fleet share; a refusal there is the rule's refusal (429,
    /// `Retry-After` until the window ends).
    pub fn check_fleet(
        &self,
        input: &KeyInput<'_>,
        now_both: Now,
        agg: &Aggregator,
        fleet: Option<(&FleetShares, u64)>,
    ) -> LimitCheck {
        let now = now_both.mono_ns;
        let (fleet, unix_ms) = (fleet.map(|f| f.0), fleet.map_or(0, |f| f.1));
        let mut taken: Vec<FleetKey> = Vec::new();
        let mut out = LimitCheck::default();
        if self.rules.is_empty() {
            return out;
        }
        // The rules that counted the request, to refund them if another refuses it: a bit per
        // rule (no allocation on the common path), a list past the 128th rule.
        let mut counted_bits: u128 = 0;
        let mut counted_more: Vec<(&LimitRule, u64)> = Vec::new();
        let mut refused: Option<(&LimitRule, u64, LimitDecision)> = None;
        let mut tightest: Option<(&LimitRule, LimitDecision)> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.applies(input.view) {
                continue;
            }
            let h = rule.key_hash(input);
            let mut d = rule.store.check_hash(h, now);
            if let (true, Some(f)) = (d.allowed, fleet) {
                let fk = rule.fleet_key(input);
                match f.take(fk, rule.count, rule.period_secs, unix_ms) {
                    Ok(()) => taken.push(fk),
                    Err(retry) => {
                        // The fleet's budget for this window is spent: this rule refuses.
                        rule.store.refund(h, now);
                        d = LimitDecision {
                            allowed: false,
                            limit: d.limit,
                            remaining: 0,
                            reset_after_secs: d.reset_after_secs.max(retry),
                            retry_after_secs: retry,
                        };
                    }
                }
            }
            match (d.allowed, rule.mode) {
                (true, mode) => {
                    match u32::try_from(i).ok().and_then(|i| 1u128.checked_shl(i)) {
                        Some(bit) => counted_bits |= bit,
                        None => counted_more.push((rule, h)),
                    }
                    let tighter = |t: &LimitDecision| {
                        (d.remaining, Reverse(d.reset_after_secs)) < (t.remaining, Reverse(t.reset_after_secs))
                    };
                    if mode == Mode::Enforce && tightest.as_ref().is_none_or(|(_, t)| tighter(t)) {
                        tightest = Some((rule, d));
                    }
                }
                (false, Mode::Monitor) => {
                    let (finding, due) = rule.refusal(&d, h, input, now, agg);
                    if due {
                        let _ = out.outcome.add(finding);
                    }
                }
                (false, Mode::Enforce) => {
                    // The request passes only when every limit allows it: the latest retry wins.
                    if refused.as_ref().is_none_or(|(_, _, x)| d.retry_after_secs > x.retry_after_secs) {
                        refused = Some((rule, h, d));
                    }
                }
            }
        }
        if let Some((rule, h, d)) = refused {
            // A refused request is not counted by the limits that allowed it.
            for (i, r) in self.rules.iter().enumerate().take(128) {
                if counted_bits & (1u128 << i) != 0 {
                    r.store.refund(r.key_hash(input), now);
                }
            }
            for (r, kh) in counted_more {
                r.store.refund(kh, now);
            }
            if let Some(f) = fleet {
                for fk in taken {
                    f.refund(fk, unix_ms);
                }
            }
            let (finding, due) = rule.refusal(&d, h, input, now, agg);
            out.deny_event = due;
            let _ = out.outcome.add(finding);
        } else if let Some((rule, d)) = tightest {
            out.headers = rule.headers(&d);
        }
        out
    }

    /// Clears expired keys of every rule (see [`LimiterStore::sweep`]); returns how many.
    pub fn sweep(&self, now: u64) -> usize {
        self.rules.iter().map(|r| r.store.sweep(now)).sum()
    }

    /// Keys held by every rule.
    pub fn keys(&self) -> usize {
        self.rules.iter().map(|r| r.store.len()).sum()
    }

    /// Bytes held by every rule's limiter state.
    pub fn approx_bytes(&self) -> usize {
        self.rules.iter().map(|r| r.store.approx_bytes()).sum()
    }
}

impl RawRule for RawRateLimit {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: self.severity }
    }
}

/// Compiles the `rate_limits:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawRateLimit], out: &mut Vec<LimitRule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| {
        let routes = c.routes("routes", r.routes.as_ref());
        let key = key_parts(c, &r.key);
        let rate = c.result("rate", parse_rate(&r.rate));
        let burst = match (r.burst, rate) {
            (Some(b), _) if !(1..=MAX_BURST).contains(&b) => {
                c.error("burst", format!("`burst` must be between 1 and {MAX_BURST}, got {b}"));
                None
            }
            (Some(b), _) => Some(b),
            (None, Some((count, _))) => Some(count.min(MAX_BURST)),
            (None, None) => None,
        };
        let max_keys = match r.max_keys {
            None => DEFAULT_MAX_KEYS,
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=MAX_MAX_KEYS).contains(&n) => n,
                _ => {
                    c.error("max_keys", format!("`max_keys` must be between 1 and {MAX_MAX_KEYS}, got {n}"));
                    DEFAULT_MAX_KEYS
                }
            },
        };
        let ipv6_prefix = r.ipv6_prefix.unwrap_or(DEFAULT_IPV6_PREFIX);
        if !(1..=128).contains(&ipv6_prefix) {
            c.error("ipv6_prefix", format!("`ipv6_prefix` must be between 1 and 128, got {ipv6_prefix}"));
        }
        let gcra = match (rate, burst) {
            (Some((count, secs)), Some(burst)) => {
                let g = Gcra::new(count, secs * 1_000_000_000, burst);
                if g.is_none() {
                    c.error("burst", format!("`burst` {burst} is too large for the rate `{}`", r.rate));
                }
                g
            }
            _ => None,
        };
        if let (true, Some(gcra), Some((count, secs))) = (c.ok, gcra, rate) {
            let severity = meta.severity.unwrap_or(EVENT.default_severity());
            return Some(LimitRule {
                policy: format!("\"{}\";q={count};w={secs}", meta.id).into(),
                origin: Arc::new(Origin { rule_id: meta.id.clone(), event: EVENT, mode: meta.mode, severity }),
                id: meta.id,
                hash: meta.hash.into(),
                mode: meta.mode,
                routes,
                key,
                ipv6_prefix,
                rate: format!("{count}/{secs}s").into(),
                store: Arc::new(LimiterStore::new(gcra, max_keys)),
                count,
                period_secs: secs,
            });
        }
        None
    });
}

/// The `key` list: one or more distinct parts.
fn key_parts(c: &mut Checker<'_, '_>, parts: &[String]) -> Vec<KeyPart> {
    if parts.is_empty() {
        c.error("key", "`key` is empty: list one or more of client_ip, tenant, subject, api_key, header:<name>");
    }
    if parts.len() > MAX_KEY_PARTS {
        c.error("key", format!("`key` has {} parts; at most {MAX_KEY_PARTS}", parts.len()));
    }
    let mut out: Vec<KeyPart> = Vec::with_capacity(parts.len());
    for (j, s) in parts.iter().enumerate() {
        match KeyPart::parse(s) {
            Ok(p) if out.contains(&p) => c.error(&format!("key[{j}]"), format!("`{s}` is listed twice")),
            Ok(p) => out.push(p),
            Err(msg) => c.error(&format!("key[{j}]"), msg),
        }
    }
    out
}

/// `100/60s`, `10/s`, `1000/1h`: (count, period seconds).
pub(crate) fn parse_rate(s: &str) -> Result<(u64, u64), String> {
    let bad = || {
        format!(
            "`{}` is not a rate: write <requests>/<period>, like `100/60s`, `10/s` or `1000/1h` (units s, m, h)",
            s.escape_debug()
        )
    };
    let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
    let count = count.trim();
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = count.parse().map_err(|_| bad())?;
    let period = period.trim();
    let secs = period_secs(period).ok_or_else(bad)?;
    if count == 0 || count > MAX_COUNT {
        return Err(format!("the request count must be between 1 and {MAX_COUNT}, got {count}"));
    }
    let secs = secs.filter(|s| (1..=MAX_PERIOD_SECS).contains(s)).ok_or_else(|| {
        format!("the period must be between 1s and 24h, got `{period}` (longer windows are `quotas`)")
    })?;
    Ok((count, secs))
}

/// A period written `<n><unit>` with unit `s`, `m` or `h` (`n` may be left out: `s` is `1s`):
/// `None` when it is not written that way, `Some(None)` when the seconds overflow.
pub(crate) fn period_secs(period: &str) -> Option<Option<u64>> {
    let digits = period.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = period.split_at(digits);
    let n: u64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    Some(n.checked_mul(unit_secs))
}
