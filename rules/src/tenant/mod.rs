//! Tenant scoping: the `tenant_scope:` section of a rule file.
//!
//! ```yaml
//! tenant_scope:
//!   - id: tenant-in-path
//!     description: "business API: the tenant in the path is the caller's"
//!     mode: enforce                    # or monitor
//!     severity: critical               # default: cross_tenant_attempt's (critical)
//!     routes: [api]                    # optional
//!     target:                          # at least one source; every present source must agree
//!       path: "/api/business/{tenant}"
//!       query: tenant_id
//!       header: x-tenant-id
//!       body: /tenant_id
//!     body_max_bytes: 65536            # default and maximum: 65536
//!     cross_tenant_roles: [platform_admin]
//!     containment:                     # optional
//!       revoke_session: true
//!       block_subject_seconds: 900
//!       maintenance: true
//! ```
//!
//! A rule finds the tenant a request *targets* and compares it with the tenant of the verified
//! identity making it. Rules are evaluated in file order (files in name order); each violation
//! yields one [`EventType::CrossTenantAttempt`] finding, and the first `enforce` one stops the
//! request with 403 `tenant_mismatch`.
//!
//! # Keys
//!
//! * `id`, `description`, `mode`, `severity`: as for every rule (`severity` defaults to
//!   `critical`).
//! * `routes`: when given, the rule only applies to requests matched to one of these routes (a
//!   request with no route never matches). Route ids are checked against the gateway config.
//! * `target`: where the targeted tenant is read from. At least one source is required; when a
//!   request supplies several, they must all carry the same value.
//!   * `path`: a template on the canonical path (see [`crate::canon`]). `{tenant}` appears exactly
//!     once as a whole segment; `*` is any one (non-empty) segment; other segments are literals,
//!     written in canonical form, compared ASCII case-insensitively (an application that routes
//!     `/API/Business/…` like `/api/business/…` must not get it past the rule). The template
//!     matches as a prefix on segment boundaries: `/api/business/{tenant}` matches
//!     `/api/business/acme` and `/api/business/acme/orders/1`, and supplies no tenant for
//!     `/api/business` or `/api/business/`. The tenant segment is percent-decoded
//!     (`%C5%9Firket` is `şirket`, `acme%2Fx` is `acme/x`).
//!   * `query`: a query parameter name, written decoded. Every occurrence counts. Names are
//!     percent-decoded (`+` is a space) and folded the way lenient frameworks do, so that none
//!     of them reads a parameter the rule does not see ([`query::fold_name`]): cut at a NUL byte,
//!     case-insensitively, leading spaces dropped, `.`, space and an unclosed `[` equal to `_`
//!     (PHP), and `;` is a separator as well as `&` (Rack 2, older Python). A parameter written
//!     with array or map syntax (`tenant_id[]=…`, `tenant_id[x]=…`) cannot be read as one
//!     tenant: unparsable. Values are percent-decoded (`+` is a space).
//!   * `header`: a header name; every value of the header counts, as bytes (no decoding).
//!   * `body`: an RFC 6901 JSON pointer into a JSON request body (`""` is the whole body; `~0`
//!     and `~1` escape `~` and `/`; array indices are supported). The value must be a string or
//!     an integer (`73` reads as `"73"`). Object keys along the pointer are matched
//!     case-insensitively too (Go's `encoding/json` does), and a body with two keys that could be
//!     the same member is unparsable. Any non-empty body is parsed as JSON, whatever its
//!     `Content-Type`: scope such rules to JSON APIs with `routes`.
//! * `body_max_bytes`: how much of the body the gateway buffers for a `body` source (1 to
//!   65536, the default: the size of the buffer the gateway replays to the upstream; only valid
//!   with `target.body`). A larger body is a finding.
//! * `cross_tenant_roles`: an identity with any of these roles may target any tenant (it also
//!   needs no tenant of its own). Roles are compared exactly.
//! * `containment`: what the gateway does on an enforced finding of this rule, opt-in:
//!   `revoke_session`, `block_subject_seconds` (1 to 2592000: block the identity's subject that
//!   long) and `maintenance` (switch the gateway to maintenance mode). At least one action must be
//!   on.
//!
//! # Decisions (fail closed)
//!
//! A rule whose route filter passes reads every source. When no source supplies a value the rule
//! does not apply. Otherwise it yields a finding whose `reason` is, checked in this order:
//!
//! 1. `unparsable`: a value is empty, longer than 256 bytes, not UTF-8, holds an ASCII control
//!    character, or has a broken percent-escape (also in the name of a query parameter that
//!    could be the one); or the body is not JSON (duplicate object keys included, at any depth),
//!    or the pointer reaches something other than a string or an integer.
//! 2. `body_too_large`: the body is over `body_max_bytes`.
//! 3. `ambiguous`: the sources (or several occurrences in one source) carry different values.
//! 4. `no_identity`: the request is anonymous.
//! 5. (no finding: the identity has one of `cross_tenant_roles`.)
//! 6. `no_identity_tenant`: the identity has no tenant.
//! 7. `mismatch`: the identity's tenant is not the target, compared byte for byte (no Unicode
//!    normalisation: an NFC and an NFD spelling are different tenants).
//!
//! The finding's detail has `reason`, `target_tenant` (or `target_tenants`, the distinct values,
//! when ambiguous), `sources` (which of `path`, `query`, `header`, `body` supplied a value, and
//! the one at fault), `source` (for `unparsable` and `body_too_large`: the source at fault; its
//! raw bytes are never included), `tenant` and `subject` (the identity's, or null). Every string
//! is at most 256 bytes, and at most 8 values are listed.
#![deny(clippy::indexing_slicing)]

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use http::HeaderName;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::canon;
use crate::deny::{Deny, DenyCode};
use crate::query;
use crate::schema::{compile_section, present, route_matches, Checker, Common, Ctx, RawRule};
use crate::verdict::{EventType, Finding, Mode, Outcome, Severity};
use crate::view::RequestView;
use std::borrow::Cow;

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "tenant_scope";

/// The event every tenant-scope finding becomes.
pub const EVENT: EventType = EventType::CrossTenantAttempt;

/// Default of `body_max_bytes`.
pub const DEFAULT_BODY_MAX_BYTES: usize = 64 * 1024;

/// Largest `body_max_bytes` accepted.
pub const MAX_BODY_MAX_BYTES: usize = 64 * 1024;

/// Largest `containment.block_subject_seconds` accepted (30 days).
pub const MAX_BLOCK_SUBJECT_SECONDS: u64 = 30 * 24 * 3600;

/// Longest tenant value accepted from a request, and longest string in a finding's detail, in
/// bytes.
pub const MAX_TENANT_LEN: usize = 256;

/// At most this many distinct values are listed in an `ambiguous` finding's `target_tenants`.
const MAX_LISTED_VALUES: usize = 8;

/// Longest `target.query` name and `target.body` pointer accepted, in bytes.
const MAX_NAME_LEN: usize = 256;

/// One raw rule of the `tenant_scope:` list. Serialized (JSON) for the rule hash: absent optional
/// keys are skipped so that adding keys to the schema keeps existing hashes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a tenant_scope rule: a mapping with `id` and `target`")]
pub(crate) struct RawTenantRule {
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
    target: Option<RawTarget>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    body_max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    cross_tenant_roles: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    containment: Option<RawContainment>,
}

/// The sources of one rule. A key written with no value (`query:`) is an error, not an absent
/// source.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of tenant sources (`path`, `query`, `header`, `body`)")]
struct RawTarget {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of containment actions (`revoke_session`, `block_subject_seconds`, `maintenance`)"
)]
struct RawContainment {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    revoke_session: Option<bool>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    block_subject_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    maintenance: Option<bool>,
}

/// Who is asking: the verified identity's relevant parts (the gateway builds it from its
/// identity).
#[derive(Debug, Clone, Copy, Default)]
pub struct Principal<'a> {
    /// The identity's subject (user or client id), for the finding's detail.
    pub subject: Option<&'a str>,
    /// The identity's tenant; `None` when it has none.
    pub tenant: Option<&'a str>,
    /// The identity's roles.
    pub roles: &'a [String],
}

/// Containment actions of one rule: what the gateway does on an enforced finding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Containment {
    /// Revoke the identity's session.
    pub revoke_session: bool,
    /// Block the identity's subject for this many seconds.
    pub block_subject_seconds: Option<u64>,
    /// Switch the gateway to maintenance mode.
    pub maintenance: bool,
}

/// The request body, as far as the gateway read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyInput<'a> {
    /// The body was not buffered ([`TenantScope::body_needed`] said `None`): no body source.
    NotBuffered,
    /// The body exceeded the cap [`TenantScope::body_needed`] returned.
    TooLarge,
    /// The whole body (empty: no body, so no body source).
    Bytes(&'a [u8]),
}

/// The compiled tenant scope rules: immutable, `Send + Sync`, evaluated in file order.
#[derive(Debug, Default)]
pub struct TenantScope {
    rules: Vec<Rule>,
}

impl TenantScope {
    pub(crate) fn new(rules: Vec<Rule>) -> Self {
        TenantScope { rules }
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    id: Arc<str>,
    mode: Mode,
    severity: Severity,
    routes: Option<Box<[Box<str>]>>,
    path: Option<Vec<TemplateSeg>>,
    /// The configured name, folded (see [`query::fold_name`]).
    query: Option<Vec<u8>>,
    header: Option<HeaderName>,
    body: Option<Pointer>,
    body_max_bytes: usize,
    cross_tenant_roles: Vec<Box<str>>,
    containment: Option<Containment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSeg {
    Literal(Box<str>),
    Any,
    Tenant,
}

/// A parsed JSON pointer: each reference token unescaped, with its folded form.
#[derive(Debug)]
pub(crate) struct Pointer {
    tokens: Vec<(Box<str>, String)>,
}

/// The names of the sources, in evaluation order.
const PATH: &str = "path";
const QUERY: &str = "query";
const HEADER: &str = "header";
const BODY: &str = "body";

/// Why a rule yields a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Mismatch,
    Ambiguous,
    Unparsable,
    BodyTooLarge,
    NoIdentity,
    NoIdentityTenant,
}

impl Reason {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Mismatch => "mismatch",
            Self::Ambiguous => "ambiguous",
            Self::Unparsable => "unparsable",
            Self::BodyTooLarge => "body_too_large",
            Self::NoIdentity => "no_identity",
            Self::NoIdentityTenant => "no_identity_tenant",
        }
    }
}

/// What one source of one request supplied.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Absent,
    /// Distinct values, in order of appearance (at least one).
    Values(Vec<String>),
    Unparsable,
    TooLarge,
}

impl Source {
    fn push(&mut self, v: String) {
        match self {
            Source::Values(list) => {
                if !list.contains(&v) {
                    list.push(v);
                }
            }
            _ => *self = Source::Values(vec![v]),
        }
    }
}

/// The outcome of reading every source of one rule.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    None,
    /// Distinct values and the sources that supplied them.
    Found {
        values: Vec<String>,
        sources: Vec<&'static str>,
    },
    /// A source could not be read (`Unparsable` or `BodyTooLarge`); the sources read before it.
    Bad {
        reason: Reason,
        source: &'static str,
        sources: Vec<&'static str>,
    },
}

/// The request body parsed at most once per request, shared by the rules.
enum Parsed {
    NotYet,
    Json(Value),
    Invalid,
}

impl TenantScope {
    /// True when there is no tenant scope rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The largest `body_max_bytes` among the rules with a `body` source that apply to this
    /// request's route: the gateway buffers that much of the body (and passes
    /// [`BodyInput::TooLarge`] beyond it). `None`: no rule needs the body, the gateway streams it
    /// as usual.
    pub fn body_needed(&self, view: &RequestView<'_>) -> Option<usize> {
        self.rules.iter().filter(|r| r.body.is_some() && r.applies(view)).map(|r| r.body_max_bytes).max()
    }

    /// Evaluates every applicable rule in order. `who` is `None` for an anonymous request; `body`
    /// is what the gateway buffered when [`TenantScope::body_needed`] asked for it. Each
    /// violation adds one `cross_tenant_attempt` finding to `out`; returns `Break` as soon as
    /// [`Outcome::add`] does (an `enforce` rule matched): later checks must not run.
    pub fn check(
        &self,
        view: &RequestView<'_>,
        who: Option<&Principal<'_>>,
        body: BodyInput<'_>,
        out: &mut Outcome,
    ) -> ControlFlow<()> {
        let mut parsed = Parsed::NotYet;
        for rule in &self.rules {
            if !rule.applies(view) {
                continue;
            }
            let target = rule.target(view, body, &mut parsed);
            if let Some(f) = rule.decide(target, who) {
                out.add(f)?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Every tenant the request targets, as the applicable rules read it (each rule's sources,
    /// distinct values, in rule order). A source that cannot be read supplies nothing here: that
    /// is [`TenantScope::check`]'s finding. For the operator's tenant suspension
    /// ([`crate::operator`]), which refuses a request aimed at a suspended tenant.
    pub fn targets(&self, view: &RequestView<'_>, body: BodyInput<'_>) -> Vec<String> {
        let mut parsed = Parsed::NotYet;
        let mut out: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.applies(view)) {
            if let Target::Found { values, .. } = rule.target(view, body, &mut parsed) {
                for v in values {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    /// The containment configured for a rule id (for the gateway to act on a finding).
    pub fn containment(&self, rule_id: &str) -> Option<&Containment> {
        self.rules.iter().find(|r| &*r.id == rule_id).and_then(|r| r.containment.as_ref())
    }
}

impl Rule {
    fn applies(&self, view: &RequestView<'_>) -> bool {
        route_matches(self.routes.as_deref(), view.route)
    }

    /// Reads every source, in order: path, query, header, body.
    fn target(&self, view: &RequestView<'_>, body: BodyInput<'_>, parsed: &mut Parsed) -> Target {
        let mut values: Vec<String> = Vec::new();
        let mut sources: Vec<&'static str> = Vec::new();
        let reads = [
            (PATH, self.path.as_ref().map(|t| path_source(t, view.path))),
            (QUERY, self.query.as_ref().map(|name| query_source(name, view.query))),
            (HEADER, self.header.as_ref().map(|name| header_source(name, view.headers))),
        ];
        let body_read = std::iter::once_with(|| (BODY, self.body.as_ref().map(|p| body_source(p, body, parsed))));
        for (name, read) in reads.into_iter().chain(body_read) {
            match read {
                None | Some(Source::Absent) => {}
                Some(Source::Unparsable) => return Target::Bad { reason: Reason::Unparsable, source: name, sources },
                Some(Source::TooLarge) => return Target::Bad { reason: Reason::BodyTooLarge, source: name, sources },
                Some(Source::Values(list)) => {
                    sources.push(name);
                    for v in list {
                        if !values.contains(&v) {
                            values.push(v);
                        }
                    }
                }
            }
        }
        if values.is_empty() {
            Target::None
        } else {
            Target::Found { values, sources }
        }
    }

    fn decide(&self, target: Target, who: Option<&Principal<'_>>) -> Option<Finding> {
        let (values, sources) = match target {
            Target::None => return None,
            Target::Bad { reason, source, mut sources } => {
                sources.push(source);
                return Some(self.finding(reason, &[], &sources, Some(source), who));
            }
            Target::Found { values, sources } => (values, sources),
        };
        if values.len() > 1 {
            return Some(self.finding(Reason::Ambiguous, &values, &sources, None, who));
        }
        let Some(p) = who else {
            return Some(self.finding(Reason::NoIdentity, &values, &sources, None, who));
        };
        if p.roles.iter().any(|r| self.cross_tenant_roles.iter().any(|c| **c == **r)) {
            return None;
        }
        let Some(tenant) = p.tenant else {
            return Some(self.finding(Reason::NoIdentityTenant, &values, &sources, None, who));
        };
        if values.iter().all(|v| v.as_bytes() == tenant.as_bytes()) {
            return None;
        }
        Some(self.finding(Reason::Mismatch, &values, &sources, None, who))
    }

    fn finding(
        &self,
        reason: Reason,
        values: &[String],
        sources: &[&'static str],
        source: Option<&'static str>,
        who: Option<&Principal<'_>>,
    ) -> Finding {
        let mut detail = Map::new();
        detail.insert("reason".into(), reason.as_str().into());
        match values {
            [] => {}
            [one] => {
                detail.insert("target_tenant".into(), bounded(one).into());
            }
            many => {
                let list = many.iter().take(MAX_LISTED_VALUES).map(|v| Value::from(bounded(v))).collect();
                detail.insert("target_tenants".into(), Value::Array(list));
            }
        }
        detail.insert("sources".into(), Value::Array(sources.iter().map(|&s| Value::from(s)).collect()));
        if let Some(s) = source {
            detail.insert("source".into(), s.into());
        }
        let opt = |v: Option<&str>| v.map_or(Value::Null, |s| Value::from(bounded(s)));
        detail.insert("tenant".into(), opt(who.and_then(|p| p.tenant)));
        detail.insert("subject".into(), opt(who.and_then(|p| p.subject)));
        Finding {
            rule_id: self.id.clone(),
            mode: self.mode,
            event: EVENT,
            severity: self.severity,
            deny: Deny::new(DenyCode::TenantMismatch, reason.as_str()),
            detail,
        }
    }
}

/// At most [`MAX_TENANT_LEN`] bytes of `s`, cut on a character boundary.
fn bounded(s: &str) -> &str {
    let mut end = s.len().min(MAX_TENANT_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A decoded value as a tenant: 1 to [`MAX_TENANT_LEN`] bytes of UTF-8 without ASCII controls.
fn tenant_value(bytes: Vec<u8>) -> Option<String> {
    if bytes.is_empty() || bytes.len() > MAX_TENANT_LEN || bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The tenant segment of a canonical path under the template, percent-decoded.
fn path_source(template: &[TemplateSeg], path: &str) -> Source {
    let Some(rest) = path.strip_prefix('/') else { return Source::Absent };
    let mut segs = rest.split('/');
    let mut tenant = None;
    for t in template {
        let Some(seg) = segs.next() else { return Source::Absent };
        match t {
            TemplateSeg::Literal(l) if !l.eq_ignore_ascii_case(seg) => return Source::Absent,
            TemplateSeg::Literal(_) => {}
            TemplateSeg::Any if seg.is_empty() => return Source::Absent,
            TemplateSeg::Any => {}
            TemplateSeg::Tenant => tenant = Some(seg),
        }
    }
    match tenant {
        None | Some("") => Source::Absent,
        Some(seg) => match query::percent_decode(seg.as_bytes()).ok().map(Cow::into_owned).and_then(tenant_value) {
            Some(v) => Source::Values(vec![v]),
            None => Source::Unparsable,
        },
    }
}

/// Every occurrence of the parameter `want` (folded, see [`query::fold_name`]) in the raw query.
fn query_source(want: &[u8], query: Option<&str>) -> Source {
    let Some(query) = query else { return Source::Absent };
    let Ok(values) = query::lookup(query, want) else { return Source::Unparsable };
    let mut found = Source::Absent;
    for v in values {
        match tenant_value(v.into_owned()) {
            Some(v) => found.push(v),
            None => return Source::Unparsable,
        }
    }
    found
}

/// Every value of the header, as UTF-8.
fn header_source(name: &HeaderName, headers: &http::HeaderMap) -> Source {
    let mut found = Source::Absent;
    for v in headers.get_all(name) {
        match tenant_value(v.as_bytes().to_vec()) {
            Some(s) => found.push(s),
            None => return Source::Unparsable,
        }
    }
    found
}

fn body_source(pointer: &Pointer, body: BodyInput<'_>, parsed: &mut Parsed) -> Source {
    let bytes = match body {
        BodyInput::NotBuffered | BodyInput::Bytes([]) => return Source::Absent,
        BodyInput::TooLarge => return Source::TooLarge,
        BodyInput::Bytes(b) => b,
    };
    if matches!(parsed, Parsed::NotYet) {
        *parsed = match parse_strict(bytes) {
            Some(v) => Parsed::Json(v),
            None => Parsed::Invalid,
        };
    }
    let Parsed::Json(root) = parsed else { return Source::Unparsable };
    match resolve(root, pointer) {
        Err(()) => Source::Unparsable,
        Ok(None) => Source::Absent,
        Ok(Some(Value::String(s))) => match tenant_value(s.as_bytes().to_vec()) {
            Some(v) => Source::Values(vec![v]),
            None => Source::Unparsable,
        },
        Ok(Some(Value::Number(n))) if n.is_i64() || n.is_u64() => Source::Values(vec![n.to_string()]),
        Ok(Some(_)) => Source::Unparsable,
    }
}

/// Follows the pointer. Object members are looked up case-insensitively (Unicode simple folding,
/// as Go's `encoding/json` does); two members that could be the token are an error. `Ok(None)`:
/// the pointer does not resolve.
pub(crate) fn resolve<'v>(root: &'v Value, pointer: &Pointer) -> Result<Option<&'v Value>, ()> {
    let mut cur = root;
    for (token, folded) in &pointer.tokens {
        cur = match cur {
            Value::Object(map) => {
                let mut hits = map.iter().filter(|(k, _)| **k == **token || fold_key(k) == *folded);
                match (hits.next(), hits.next()) {
                    (None, _) => return Ok(None),
                    (Some((_, v)), None) => v,
                    (Some(_), Some(_)) => return Err(()),
                }
            }
            Value::Array(items) => {
                let Some(i) = array_index(token) else { return Ok(None) };
                match items.get(i) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
    }
    Ok(Some(cur))
}

/// RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let ok =
        token == "0" || (!token.starts_with('0') && !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        token.parse().ok()
    } else {
        None
    }
}

/// Case folding for JSON member names: upper then lower case, so `ſ` and `s`, `K` (Kelvin) and
/// `k` fold alike.
fn fold_key(k: &str) -> String {
    k.to_uppercase().to_lowercase()
}

/// Parses JSON, refusing duplicate object keys at any depth. `None`: not valid JSON (or a
/// duplicate key, or nesting deeper than serde_json's limit of 128).
pub(crate) fn parse_strict(bytes: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(v) = Strict::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

/// A JSON value whose objects have no duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            let Strict(v) = map.next_value()?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

impl RawRule for RawTenantRule {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: self.severity }
    }
}

/// Compiles the `tenant_scope:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawTenantRule], out: &mut Vec<Rule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| {
        let mut rc = RuleCompiler { c };
        Some(rc.rule(meta.id, meta.mode, meta.severity.unwrap_or(EVENT.default_severity()), r))
    });
}

/// Validates and compiles one rule, recording every error.
struct RuleCompiler<'r, 'c, 'a> {
    /// At `tenant_scope[i]`.
    c: &'r mut Checker<'c, 'a>,
}

impl RuleCompiler<'_, '_, '_> {
    /// The compiled rule; only meaningful when no error was recorded (`self.ok`).
    fn rule(&mut self, id: Arc<str>, mode: Mode, severity: Severity, r: &RawTenantRule) -> Rule {
        let routes = self.c.routes("routes", r.routes.as_ref());

        let mut path = None;
        let mut query = None;
        let mut header = None;
        let mut body = None;
        match &r.target {
            None => {
                self.c.error("target", "a rule needs a `target` with at least one source (path, query, header, body)")
            }
            Some(t) => {
                if t.path.is_none() && t.query.is_none() && t.header.is_none() && t.body.is_none() {
                    self.c.error("target", "`target` needs at least one source (path, query, header, body)");
                }
                if let Some(p) = &t.path {
                    path = self.c.result("target.path", parse_template(p));
                }
                if let Some(q) = &t.query {
                    query = self.c.result("target.query", check_query_name(q));
                }
                if let Some(h) = &t.header {
                    header = self.c.result("target.header", check_header_name(h));
                }
                if let Some(b) = &t.body {
                    body = self.c.result("target.body", parse_pointer(b));
                }
            }
        }

        let has_body = r.target.as_ref().is_some_and(|t| t.body.is_some());
        let body_max_bytes = match r.body_max_bytes {
            None => DEFAULT_BODY_MAX_BYTES,
            Some(_) if !has_body => {
                self.c.error("body_max_bytes", "`body_max_bytes` only applies to a `target.body` source: remove it");
                DEFAULT_BODY_MAX_BYTES
            }
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=MAX_BODY_MAX_BYTES).contains(&n) => n,
                _ => {
                    self.c.error(
                        "body_max_bytes",
                        format!("`body_max_bytes` must be between 1 and {MAX_BODY_MAX_BYTES}, got {n}"),
                    );
                    DEFAULT_BODY_MAX_BYTES
                }
            },
        };

        let mut cross_tenant_roles = Vec::new();
        if let Some(list) = &r.cross_tenant_roles {
            if list.is_empty() {
                self.c.error(
                    "cross_tenant_roles",
                    "`cross_tenant_roles` is empty: remove the key or list at least one role",
                );
            }
            for (j, role) in list.iter().enumerate() {
                if role.trim().is_empty() {
                    self.c.error(&format!("cross_tenant_roles[{j}]"), "a role cannot be empty");
                } else {
                    cross_tenant_roles.push(Box::from(role.as_str()));
                }
            }
        }

        let containment = r.containment.as_ref().and_then(|c| self.containment(c));

        Rule { id, mode, severity, routes, path, query, header, body, body_max_bytes, cross_tenant_roles, containment }
    }

    fn containment(&mut self, c: &RawContainment) -> Option<Containment> {
        let out = Containment {
            revoke_session: c.revoke_session.unwrap_or(false),
            block_subject_seconds: c.block_subject_seconds,
            maintenance: c.maintenance.unwrap_or(false),
        };
        if let Some(s) = out.block_subject_seconds {
            if !(1..=MAX_BLOCK_SUBJECT_SECONDS).contains(&s) {
                self.c.error(
                    "containment.block_subject_seconds",
                    format!(
                        "`block_subject_seconds` must be between 1 and {MAX_BLOCK_SUBJECT_SECONDS} (30 days), got {s}"
                    ),
                );
                return None;
            }
        }
        if !out.revoke_session && out.block_subject_seconds.is_none() && !out.maintenance {
            self.c.error("containment", "`containment` turns no action on: nothing to do; remove `containment`");
            return None;
        }
        Some(out)
    }
}

/// Parses and validates a `target.path` template.
fn parse_template(t: &str) -> Result<Vec<TemplateSeg>, String> {
    let Some(rest) = t.strip_prefix('/') else {
        return Err(format!("`{t}` must start with `/`"));
    };
    let mut segs = Vec::new();
    let mut tenants = 0;
    for seg in rest.split('/') {
        let s = match seg {
            "" => return Err(format!("`{t}` has an empty segment (`//` or a trailing `/`)")),
            "." | ".." => return Err(format!("`{t}` has a `{seg}` segment")),
            "{tenant}" => {
                tenants += 1;
                TemplateSeg::Tenant
            }
            "*" => TemplateSeg::Any,
            _ if seg.contains(['{', '}']) => {
                return Err(format!(
                    "`{t}`: `{seg}` is not a placeholder; the only one is `{{tenant}}`, as a whole segment"
                ))
            }
            _ if seg.contains('*') => {
                return Err(format!("`{t}`: `*` stands for a whole segment, not part of `{seg}`"));
            }
            _ => TemplateSeg::Literal(Box::from(seg)),
        };
        segs.push(s);
    }
    if tenants != 1 {
        return Err(format!("`{t}` must contain `{{tenant}}` exactly once as a whole segment (found {tenants})"));
    }
    // Literal segments must already be canonical: put a plain segment in each placeholder's place.
    let plain: Vec<&str> = segs
        .iter()
        .map(|s| match s {
            TemplateSeg::Literal(l) => l,
            TemplateSeg::Any | TemplateSeg::Tenant => "x",
        })
        .collect();
    let plain = format!("/{}", plain.join("/"));
    match canon::canonicalize(plain.as_bytes()) {
        Err(e) => Err(format!("`{t}` is not a valid path: {e}")),
        Ok(c) if c != plain => {
            // No `.`, `..` or empty segment: canonicalisation keeps the segment count.
            let fixed: Vec<&str> = c
                .trim_start_matches('/')
                .split('/')
                .zip(&segs)
                .map(|(canonical, s)| match s {
                    TemplateSeg::Literal(_) => canonical,
                    TemplateSeg::Any => "*",
                    TemplateSeg::Tenant => "{tenant}",
                })
                .collect();
            Err(format!("`{t}` is not canonical; did you mean `/{}`?", fixed.join("/")))
        }
        Ok(_) => Ok(segs),
    }
}

/// A `target.query` name, written decoded; returns it folded.
pub(crate) fn check_query_name(q: &str) -> Result<Vec<u8>, String> {
    if q.is_empty() {
        return Err("the query parameter name cannot be empty".into());
    }
    if q.len() > MAX_NAME_LEN {
        return Err(format!("the query parameter name is {} bytes; the limit is {MAX_NAME_LEN}", q.len()));
    }
    if let Some(c) = q.chars().find(|c| c.is_control() || c.is_whitespace() || "&=#+%".contains(*c)) {
        return Err(format!(
            "`{}` is not a valid query parameter name: {c:?} is not allowed (write the name decoded, \
             without `&`, `=`, `#`, `+`, `%`, spaces or control characters)",
            q.escape_debug()
        ));
    }
    Ok(query::fold_name(q.as_bytes()))
}

pub(crate) fn check_header_name(h: &str) -> Result<HeaderName, String> {
    if h.is_empty() {
        return Err("the header name cannot be empty".into());
    }
    if let Some(why) = crate::overrides::rule_header_refusal(h) {
        return Err(why);
    }
    HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("`{}` is not a valid header name", h.escape_debug()))
}

/// A `target.body` RFC 6901 JSON pointer.
pub(crate) fn parse_pointer(p: &str) -> Result<Pointer, String> {
    if p.len() > MAX_NAME_LEN {
        return Err(format!("the JSON pointer is {} bytes; the limit is {MAX_NAME_LEN}", p.len()));
    }
    if p.is_empty() {
        return Ok(Pointer { tokens: Vec::new() });
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!("`{p}` is not a JSON pointer: it must be empty or start with `/` (like `/tenant_id`)"));
    };
    let mut tokens = Vec::new();
    for raw in rest.split('/') {
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => return Err(format!("`{p}` is not a JSON pointer: `~` must be followed by `0` or `1`")),
                }
            } else {
                token.push(c);
            }
        }
        let folded = fold_key(&token);
        tokens.push((token.into_boxed_str(), folded));
    }
    Ok(Pointer { tokens })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
