//! Caller identity: the `identity:` section of a rule file.
//!
//! ```yaml
//! identity:
//!   - id: api-auth
//!     routes: [api]                 # required: the routes this rule identifies callers on
//!     optional: false               # default: credentials required (401 without)
//!     mode: enforce                 # monitor: failures are flagged, the request goes on anonymous
//!     jwt:
//!       header: authorization       # default; `Bearer <token>`
//!       leeway_seconds: 30          # clock skew on exp/nbf (default 30, at most 300)
//!       claims: { subject: sub, tenant: tenant_id, roles: roles, session: sid, email: email }
//!       issuers:
//!         - issuer: https://auth.example.com/
//!           algorithm: RS256        # pinned: HS256 | RS256 | ES256
//!           audiences: [portcullis]
//!           jwks_file: keys/auth-jwks.json     # relative to the rules directory
//!         - issuer: internal
//!           algorithm: HS256
//!           keys: [{ kid: h1, secret_env: PORTCULLIS_JWT_SECRET }]
//!     api_keys:
//!       header: x-api-key           # and/or `query: api_key`
//!       keys:
//!         - { id: acme-batch, sha256: "<64 hex>", tenant: acme, subject: svc-acme-batch, roles: [service] }
//!     trusted_header:               # only believed from a trusted proxy (gateway.yaml trusted_proxies)
//!       subject: x-auth-user
//!       tenant: x-auth-tenant
//!       roles: x-auth-roles         # comma-separated
//!     allow:                        # the magic-link allowlist
//!       emails: [ops@acme.example]
//!       email_domains: [acme.example]
//!     forward:                      # headers the upstream gets (defaults shown in FORWARD_DEFAULTS)
//!       tenant: x-tenant-id
//! ```
//!
//! One rule per route. On a route with a rule, the caller presents at most one kind of
//! credential: a trusted-proxy header set (from a trusted peer, it wins over the rest, which an
//! auth proxy may pass along), else a bearer token or an API key (both at once: refused as
//! ambiguous). The result is a verified [`Identity`] or one `auth_failure` finding with a stable
//! `reason` (never the credential itself):
//!
//! | reason | answer |
//! |---|---|
//! | `missing_credentials`, `ambiguous_credentials`, `malformed_credentials`, `untrusted_identity_header`, `unknown_api_key`, `invalid_claims`, the JWT reasons of [`jwt::JwtError`] except `expired` | 401 `unauthenticated` |
//! | `expired`, `session_revoked`, `subject_blocked` | 401 `session_expired` (identical: the caller learns nothing) |
//! | `not_allowlisted` | 403 `forbidden` (the body any refused account gets) |
//!
//! Identity values (subject, tenant, roles, session, email) must be 1 to 256 bytes without
//! control characters (roles also without `,`), since they are forwarded in headers; a token
//! carrying anything else is refused as `invalid_claims`. Client copies of every forwarded header
//! (and of the trusted-proxy headers) are stripped on every route before the upstream sees them.

pub mod der;
pub mod jwt;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::deny::{Deny, DenyCode};
use crate::schema::{AssetRef, Common, Ctx};
use crate::verdict::{EventType, Finding, Mode, Severity};
use crate::view::RequestView;
use jwt::{Alg, Issuer, JwtError, Verifier, VerifyingKey};

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "identity";

/// The event every identity finding becomes.
pub const EVENT: EventType = EventType::AuthFailure;

/// Longest identity value (subject, tenant, a role, session id, email), in bytes.
pub const MAX_VALUE_LEN: usize = 256;

/// Most roles one identity may carry.
pub const MAX_ROLES: usize = 64;

/// Longest API key accepted, in bytes.
pub const MAX_API_KEY_LEN: usize = 512;

/// Most leeway a rule may allow on `exp`/`nbf`, seconds.
pub const MAX_LEEWAY: u64 = 300;

/// The upstream headers an identity is forwarded in, unless a rule's `forward` renames them:
/// (field, header).
pub const FORWARD_DEFAULTS: [(&str, &str); 6] = [
    ("subject", "x-portcullis-subject"),
    ("tenant", "x-portcullis-tenant"),
    ("roles", "x-portcullis-roles"),
    ("session", "x-portcullis-session"),
    ("email", "x-portcullis-email"),
    ("method", "x-portcullis-auth-method"),
];

/// Headers an identity may not be forwarded in.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "authorization",
    "cookie",
    "forwarded",
    "x-real-ip",
    "x-request-id",
];

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A verified JWT bearer token.
    Jwt,
    /// An API key.
    ApiKey,
    /// Headers set by a trusted auth proxy.
    TrustedHeader,
}

impl AuthMethod {
    /// Lowercase name (events, the forwarded method header).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::TrustedHeader => "trusted_header",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity rule that verified it.
    pub rule_id: Arc<str>,
    /// How.
    pub method: AuthMethod,
    /// The subject (user or service id).
    pub subject: String,
    /// The caller's tenant, if it has one.
    pub tenant: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Session id, if any (what `/v1/sessions/{id}/revoke` revokes).
    pub session: Option<String>,
    /// Email, if any.
    pub email: Option<String>,
    /// Which credential: the API key's id, or the JWT's issuer (and `kid`). Never a secret.
    pub credential: Option<String>,
}

/// What authentication needs besides the request view.
pub struct AuthInput<'a> {
    /// The request.
    pub view: &'a RequestView<'a>,
    /// Whether the TCP peer is a trusted proxy (only then are trusted headers believed).
    pub peer_trusted: bool,
    /// Now, for `exp`/`nbf`.
    pub now_unix: u64,
    /// Whether a session id is revoked.
    pub revoked: &'a dyn Fn(&str) -> bool,
    /// Whether a subject is blocked (containment, or an operator).
    pub blocked: &'a dyn Fn(&str) -> bool,
    /// The operator's allowlist entries, by key (`email:<address>`, `domain:<name>`, lower case,
    /// see [`crate::operator::allowlist_key`]): `Some(true)` added, `Some(false)` deactivated,
    /// `None` no entry. Consulted on routes whose rule has an `allow:` list.
    pub allowlisted: &'a dyn Fn(&str) -> Option<bool>,
}

/// The answer of [`Identities::authenticate`].
#[derive(Debug)]
pub enum Authn {
    /// No identity rule covers the request's route.
    NotConfigured,
    /// The rule is `optional` and the caller presented no credential.
    Anonymous,
    /// A verified identity.
    Verified(Identity),
    /// Refused (or, in monitor mode, flagged): an `auth_failure` finding.
    Failed(Box<Finding>),
}

/// Every identity rule, by route. Immutable, `Send + Sync`.
#[derive(Debug, Default)]
pub struct Identities {
    rules: Vec<IdentityRule>,
    by_route: HashMap<Box<str>, usize>,
    strip: Vec<HeaderName>,
}

/// One compiled identity rule.
#[derive(Debug)]
pub struct IdentityRule {
    id: Arc<str>,
    mode: Mode,
    severity: Severity,
    optional: bool,
    jwt: Option<JwtConfig>,
    api_keys: Option<ApiKeys>,
    trusted: Option<Trusted>,
    allow: Option<Allow>,
    /// (field, header) for each forwarded field, in [`FORWARD_DEFAULTS`] order.
    forward: Vec<(&'static str, HeaderName)>,
}

#[derive(Debug)]
struct JwtConfig {
    header: HeaderName,
    verifier: Verifier,
    claims: Claims,
    leeway: u64,
    cache: TokenCache,
}

/// Tokens verified before, by SHA-256 of the token, with the identity they gave and the window
/// they are valid in: a public-key signature check (RS256 ≈ 23 µs, ES256 ≈ 54 µs) is done once per
/// token, not once per request. Lives in the snapshot, so a reload (new keys, new claim names)
/// starts it empty. Bounded: [`CACHE_SHARDS`] × [`CACHE_SHARD_ENTRIES`]; a full shard drops what
/// expired, then everything. Revocation, blocks and the allowlist are checked on every request,
/// after it.
///
/// Refused tokens are remembered too, apart (so a flood of bad tokens never evicts good ones):
/// [`CACHE_SHARDS`] × [`FAILED_SHARD_ENTRIES`] entries, a full shard is emptied. Every refusal
/// that cannot change while the snapshot stands is kept (a bad signature, an unknown key, bad
/// claims, and `expired`, which stays so); `not_yet_valid` is not. A token sent again costs one
/// lookup, not a signature check.
#[derive(Debug)]
struct TokenCache {
    shards: Vec<std::sync::Mutex<HashMap<[u8; 32], Cached>>>,
    failed: Vec<std::sync::Mutex<HashMap<[u8; 32], Failure>>>,
}

/// Shards of the token cache (one lock each).
pub const CACHE_SHARDS: usize = 16;

/// Entries per shard.
pub const CACHE_SHARD_ENTRIES: usize = 1024;

/// Refused tokens remembered per shard.
pub const FAILED_SHARD_ENTRIES: usize = 256;

#[derive(Debug, Clone)]
struct Cached {
    identity: Identity,
    /// `nbf - leeway` (0 without `nbf`).
    from: u64,
    /// `exp + leeway`: expired from then on.
    until: u64,
}

impl TokenCache {
    fn new() -> Self {
        TokenCache {
            shards: (0..CACHE_SHARDS).map(|_| std::sync::Mutex::new(HashMap::new())).collect(),
            failed: (0..CACHE_SHARDS).map(|_| std::sync::Mutex::new(HashMap::new())).collect(),
        }
    }

    /// How a token was refused before, if it was.
    fn failed(&self, key: &[u8; 32]) -> Option<Failure> {
        let shard = self.failed.get(usize::from(key[0]) % CACHE_SHARDS)?.lock().ok()?;
        shard.get(key).cloned()
    }

    fn put_failed(&self, key: [u8; 32], failure: &Failure) {
        let Some(Ok(mut shard)) = self.failed.get(usize::from(key[0]) % CACHE_SHARDS).map(|m| m.lock()) else {
            return;
        };
        if shard.len() >= FAILED_SHARD_ENTRIES {
            shard.clear();
        }
        shard.insert(key, failure.clone());
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&std::sync::Mutex<HashMap<[u8; 32], Cached>>> {
        self.shards.get(usize::from(key[0]) % CACHE_SHARDS)
    }

    fn get(&self, key: &[u8; 32]) -> Option<Cached> {
        let shard = self.shard(key)?.lock().ok()?;
        shard.get(key).cloned()
    }

    fn put(&self, key: [u8; 32], entry: Cached, now: u64) {
        let Some(Ok(mut shard)) = self.shard(&key).map(|m| m.lock()) else { return };
        if shard.len() >= CACHE_SHARD_ENTRIES {
            shard.retain(|_, c| c.until > now);
            if shard.len() >= CACHE_SHARD_ENTRIES {
                shard.clear();
            }
        }
        shard.insert(key, entry);
    }
}

#[derive(Debug)]
struct Claims {
    subject: String,
    tenant: String,
    roles: String,
    session: String,
    email: String,
}

#[derive(Debug)]
struct ApiKeys {
    header: Option<HeaderName>,
    /// The query parameter's name, folded ([`crate::query::fold_name`]).
    query: Option<Vec<u8>>,
    keys: Vec<ApiKey>,
}

#[derive(Debug)]
struct ApiKey {
    id: String,
    sha256: [u8; 32],
    tenant: Option<String>,
    subject: String,
    roles: Vec<String>,
}

#[derive(Debug)]
struct Trusted {
    subject: HeaderName,
    tenant: Option<HeaderName>,
    roles: Option<HeaderName>,
    session: Option<HeaderName>,
    email: Option<HeaderName>,
}

#[derive(Debug)]
struct Allow {
    emails: Vec<String>,
    domains: Vec<String>,
}

impl Identities {
    /// True when no rule is defined.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rule covering a route.
    pub fn for_route(&self, route: Option<&str>) -> Option<&IdentityRule> {
        let i = *self.by_route.get(route?)?;
        self.rules.get(i)
    }

    /// Headers removed from every upstream request, on every route: every forwarded identity
    /// header (the defaults and every rule's), and every trusted-proxy input header.
    pub fn strip_headers(&self) -> &[HeaderName] {
        &self.strip
    }

    /// The rule files' allowlists: `[{rule, routes, emails, email_domains}]` (`GET /v1/allowlist`).
    pub fn allowlists(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for (n, r) in self.rules.iter().enumerate() {
            if let Some(a) = &r.allow {
                let mut routes: Vec<&str> = self.by_route.iter().filter(|(_, i)| **i == n).map(|(k, _)| &**k).collect();
                routes.sort_unstable();
                out.push(serde_json::json!({ "rule": &*r.id, "routes": routes, "emails": a.emails, "email_domains": a.domains }));
            }
        }
        out
    }

    /// Establishes the caller's identity on the request's route.
    pub fn authenticate(&self, input: &AuthInput<'_>) -> Authn {
        match self.for_route(input.view.route) {
            None => Authn::NotConfigured,
            Some(rule) => rule.authenticate(input),
        }
    }
}

/// A failure before anything is known about the caller.
#[derive(Debug, Clone)]
struct Failure {
    reason: &'static str,
    method: Option<AuthMethod>,
    credential: Option<String>,
    subject: Option<String>,
    session: Option<String>,
}

impl Failure {
    fn new(reason: &'static str) -> Self {
        Failure { reason, method: None, credential: None, subject: None, session: None }
    }

    fn by(mut self, method: AuthMethod) -> Self {
        self.method = Some(method);
        self
    }
}

impl From<JwtError> for Failure {
    fn from(e: JwtError) -> Self {
        Failure::new(e.as_str()).by(AuthMethod::Jwt)
    }
}

impl IdentityRule {
    /// The rule id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The headers (name, value) that carry a verified identity upstream. A value is left out
    /// when the identity has none (no tenant, no roles, ...).
    pub fn forward_headers(&self, who: &Identity) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.forward.len());
        for (field, name) in &self.forward {
            let value: Option<String> = match *field {
                "subject" => Some(who.subject.clone()),
                "tenant" => who.tenant.clone(),
                "roles" => (!who.roles.is_empty()).then(|| who.roles.join(",")),
                "session" => who.session.clone(),
                "email" => who.email.clone(),
                "method" => Some(who.method.as_str().to_owned()),
                _ => None,
            };
            // Values were checked (no control characters) when the identity was built.
            if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
                out.push((name.clone(), v));
            }
        }
        out
    }

    fn authenticate(&self, input: &AuthInput<'_>) -> Authn {
        match self.verify(input) {
            Ok(None) => Authn::Anonymous,
            Ok(Some(who)) => Authn::Verified(who),
            Err(f) => Authn::Failed(Box::new(self.finding(f))),
        }
    }

    fn verify(&self, input: &AuthInput<'_>) -> Result<Option<Identity>, Failure> {
        let Some(who) = self.credential(input)? else {
            return if self.optional { Ok(None) } else { Err(Failure::new("missing_credentials")) };
        };
        let fail = |reason: &'static str| Failure {
            reason,
            method: Some(who.method),
            credential: who.credential.clone(),
            subject: Some(who.subject.clone()),
            session: who.session.clone(),
        };
        if who.session.as_deref().is_some_and(|s| (input.revoked)(s)) {
            return Err(fail("session_revoked"));
        }
        if (input.blocked)(&who.subject) {
            return Err(fail("subject_blocked"));
        }
        if let Some(allow) = &self.allow {
            if !who.email.as_deref().is_some_and(|e| allow.permits(e, input.allowlisted)) {
                return Err(fail("not_allowlisted"));
            }
        }
        Ok(Some(who))
    }

    /// The one credential presented, verified; `None` when there is none.
    fn credential(&self, input: &AuthInput<'_>) -> Result<Option<Identity>, Failure> {
        let headers = input.view.headers;
        if let Some(t) = &self.trusted {
            if headers.contains_key(&t.subject) {
                if !input.peer_trusted {
                    return Err(Failure::new("untrusted_identity_header").by(AuthMethod::TrustedHeader));
                }
                return self.read_trusted(t, input).map(Some);
            }
        }
        let bearer = match &self.jwt {
            Some(j) => one_header(headers, &j.header).map_err(|r| Failure::new(r).by(AuthMethod::Jwt))?,
            None => None,
        };
        let key = match &self.api_keys {
            Some(k) => k.presented(input.view).map_err(|r| Failure::new(r).by(AuthMethod::ApiKey))?,
            None => None,
        };
        match (bearer, key) {
            (Some(_), Some(_)) => Err(Failure::new("ambiguous_credentials")),
            (Some(raw), None) => self.verify_jwt(raw, input.now_unix).map(Some),
            (None, Some(raw)) => self.verify_api_key(&raw).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A bearer token: from the cache of verified tokens when it was seen before (the time window
    /// re-checked), else fully verified and cached.
    fn verify_jwt(&self, raw: &[u8], now: u64) -> Result<Identity, Failure> {
        let Some(j) = &self.jwt else { return Err(Failure::new("missing_credentials")) };
        let token = bearer_token(raw).ok_or_else(|| Failure::new("malformed_credentials").by(AuthMethod::Jwt))?;
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge.into());
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = j.cache.get(&key) {
            if now >= hit.until {
                return Err(JwtError::Expired.into());
            }
            if now < hit.from {
                return Err(JwtError::NotYetValid.into());
            }
            return Ok(hit.identity);
        }
        if let Some(failure) = j.cache.failed(&key) {
            return Err(failure);
        }
        // A refusal that stays true for this snapshot is remembered: the same bad token again
        // costs a lookup, not a signature check.
        let remember = |f: Failure| {
            if f.reason != JwtError::NotYetValid.as_str() {
                j.cache.put_failed(key, &f);
            }
            f
        };
        let claims = j.verifier.verify(token, now).map_err(|e| remember(e.into()))?;
        let identity = self.identity_of(j, &claims).map_err(remember)?;
        // `verify` checked both are numbers (or absent, for nbf); whole seconds, rounded inwards.
        let secs = |k: &str| claims.get(k).and_then(serde_json::Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0);
        if let Some(exp) = secs("exp") {
            let until = (exp.floor() as u64).saturating_add(j.leeway);
            let from = secs("nbf").map_or(0, |n| (n.ceil() as u64).saturating_sub(j.leeway));
            j.cache.put(key, Cached { identity: identity.clone(), from, until }, now);
        }
        Ok(identity)
    }

    /// The identity a verified token's claims give.
    fn identity_of(
        &self,
        j: &JwtConfig,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Identity, Failure> {
        let issuer = claims.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
        let invalid = || Failure {
            reason: "invalid_claims",
            method: Some(AuthMethod::Jwt),
            credential: Some(truncate(issuer)),
            subject: None,
            session: None,
        };
        let subject = match claims.get(&j.claims.subject).and_then(scalar) {
            Some(s) if valid_value(&s) => s,
            Some(_) => return Err(invalid()),
            None => return Err(Failure { reason: "missing_subject", ..invalid() }),
        };
        let opt = |name: &str| -> Result<Option<String>, Failure> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => match scalar(v) {
                    Some(s) if valid_value(&s) => Ok(Some(s)),
                    _ => Err(invalid()),
                },
            }
        };
        let roles = match claims.get(&j.claims.roles) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => {
                let mut roles = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(r) if valid_role(r) => roles.push(r.to_owned()),
                        _ => return Err(invalid()),
                    }
                }
                roles
            }
            Some(serde_json::Value::String(s)) => split_roles(s).ok_or_else(invalid)?,
            Some(_) => return Err(invalid()),
        };
        if roles.len() > MAX_ROLES {
            return Err(invalid());
        }
        Ok(Identity {
            rule_id: self.id.clone(),
            method: AuthMethod::Jwt,
            subject,
            tenant: opt(&j.claims.tenant)?,
            roles,
            session: opt(&j.claims.session)?,
            email: opt(&j.claims.email)?,
            credential: Some(truncate(issuer)),
        })
    }

    fn verify_api_key(&self, raw: &[u8]) -> Result<Identity, Failure> {
        let Some(k) = &self.api_keys else { return Err(Failure::new("missing_credentials")) };
        let unknown = || Failure::new("unknown_api_key").by(AuthMethod::ApiKey);
        if raw.is_empty() || raw.len() > MAX_API_KEY_LEN {
            return Err(unknown());
        }
        let digest: [u8; 32] = Sha256::digest(raw).into();
        // Compare against every key, in constant time each, without stopping at a match.
        let mut found: Option<&ApiKey> = None;
        for key in &k.keys {
            if bool::from(key.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some(key);
            }
        }
        let key = found.ok_or_else(unknown)?;
        Ok(Identity {
            rule_id: self.id.clone(),
            method: AuthMethod::ApiKey,
            subject: key.subject.clone(),
            tenant: key.tenant.clone(),
            roles: key.roles.clone(),
            session: None,
            email: None,
            credential: Some(key.id.clone()),
        })
    }

    fn read_trusted(&self, t: &Trusted, input: &AuthInput<'_>) -> Result<Identity, Failure> {
        let headers = input.view.headers;
        let bad = |reason: &'static str| Failure::new(reason).by(AuthMethod::TrustedHeader);
        let text = |name: &HeaderName| -> Result<Option<String>, Failure> {
            match one_header(headers, name).map_err(bad)? {
                None => Ok(None),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(s) if valid_value(s.trim()) => Ok(Some(s.trim().to_owned())),
                    _ => Err(bad("invalid_claims")),
                },
            }
        };
        let subject = text(&t.subject)?.ok_or_else(|| bad("missing_subject"))?;
        let opt = |h: &Option<HeaderName>| h.as_ref().map_or(Ok(None), text);
        let roles = match opt(&t.roles)? {
            None => Vec::new(),
            Some(s) => split_roles(&s).ok_or_else(|| bad("invalid_claims"))?,
        };
        Ok(Identity {
            rule_id: self.id.clone(),
            method: AuthMethod::TrustedHeader,
            subject,
            tenant: opt(&t.tenant)?,
            roles,
            session: opt(&t.session)?,
            email: opt(&t.email)?,
            credential: None,
        })
    }

    fn finding(&self, f: Failure) -> Finding {
        let code = match f.reason {
            "expired" | "session_revoked" | "subject_blocked" => DenyCode::SessionExpired,
            "not_allowlisted" => DenyCode::Forbidden,
            _ => DenyCode::Unauthenticated,
        };
        let mut deny = Deny::new(code, f.reason);
        if code.status() == 401 {
            deny = deny.with_header("www-authenticate", "Bearer");
        }
        let mut detail = serde_json::Map::new();
        detail.insert("reason".into(), f.reason.into());
        if let Some(m) = f.method {
            detail.insert("method".into(), m.as_str().into());
        }
        for (k, v) in [("credential", f.credential), ("subject", f.subject), ("session", f.session)] {
            if let Some(v) = v {
                detail.insert(k.into(), truncate(&v).into());
            }
        }
        Finding { rule_id: self.id.clone(), mode: self.mode, event: EVENT, severity: self.severity, deny, detail }
    }
}

impl ApiKeys {
    /// The key the request presents, from the header or the query parameter (both: ambiguous).
    fn presented(&self, view: &RequestView<'_>) -> Result<Option<Vec<u8>>, &'static str> {
        let from_header = match &self.header {
            Some(h) => one_header(view.headers, h)?.map(|v| v.trim_ascii().to_vec()),
            None => None,
        };
        let from_query = match (&self.query, view.query) {
            (Some(name), Some(q)) => {
                let mut vals = crate::query::lookup(q, name).map_err(|_| "malformed_credentials")?;
                match vals.len() {
                    0 => None,
                    1 => vals.pop().map(|v| v.into_owned()),
                    _ => return Err("ambiguous_credentials"),
                }
            }
            _ => None,
        };
        match (from_header, from_query) {
            (Some(_), Some(_)) => Err("ambiguous_credentials"),
            (h, q) => Ok(h.or(q)),
        }
    }
}

impl Allow {
    /// Whether `email` may sign in. The more specific entry decides, the operator's before the
    /// file's at the same level: the operator's entry for the address, the file's address list,
    /// the operator's entry for the domain, the file's domain list.
    fn permits(&self, email: &str, operator: &dyn Fn(&str) -> Option<bool>) -> bool {
        let email = email.trim();
        if let Some(ok) = operator(&format!("email:{}", email.to_ascii_lowercase())) {
            return ok;
        }
        if self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
            return true;
        }
        match email.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                if let Some(ok) = operator(&format!("domain:{}", domain.to_ascii_lowercase())) {
                    return ok;
                }
                self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            }
            _ => false,
        }
    }
}

/// The single value of a header: `Ok(None)` when absent, `Err` when sent more than once.
fn one_header<'h>(headers: &'h http::HeaderMap, name: &HeaderName) -> Result<Option<&'h [u8]>, &'static str> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v.as_bytes())),
        (Some(_), Some(_)) => Err("ambiguous_credentials"),
    }
}

/// `Bearer <token>` (scheme case-insensitive, as RFC 7235 says, one or more spaces), the token
/// without spaces. Anything else: `None`. The one parser of bearer credentials: the proxy's
/// identity stage and the control endpoint both use it.
pub fn bearer_token(raw: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start();
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// A claim value as text: strings as they are, integers in decimal (numeric tenant ids).
fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// 1..=256 bytes, no control characters: safe to forward in a header.
fn valid_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE_LEN && !s.chars().any(char::is_control)
}

fn valid_role(s: &str) -> bool {
    valid_value(s) && !s.contains(',') && s.trim() == s
}

/// A role list written as one string: comma- or space-separated (OAuth `scope` style).
fn split_roles(s: &str) -> Option<Vec<String>> {
    let roles: Vec<String> = s.split([',', ' ']).map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned).collect();
    (roles.len() <= MAX_ROLES && roles.iter().all(|r| valid_role(r))).then_some(roles)
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_VALUE_LEN {
        return s.to_owned();
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Raw model and compilation.

/// One raw rule of the `identity:` list. Serialized (JSON) for the rule hash.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an identity rule: a mapping with `id`, `routes` and a credential kind")]
pub(crate) struct RawIdentityRule {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    routes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwt: Option<RawJwt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_keys: Option<RawApiKeys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trusted_header: Option<RawTrusted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow: Option<RawAllow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forward: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `issuers`")]
struct RawJwt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leeway_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claims: Option<BTreeMap<String, String>>,
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an issuer: a mapping with `issuer`, `algorithm` and keys")]
struct RawIssuer {
    issuer: String,
    algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audiences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<RawKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwks_file: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a key: `pem`, `pem_file`, `secret_env` or `secret_file`, with an optional `kid`"
)]
struct RawKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pem_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_file: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `keys` and `header` and/or `query`")]
struct RawApiKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    keys: Vec<RawApiKey>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an API key: `id`, `sha256`, `subject`, optional `tenant` and `roles`")]
struct RawApiKey {
    id: String,
    sha256: String,
    subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "header names: `subject` and optional `tenant`, `roles`, `session`, `email`")]
struct RawTrusted {
    subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `emails` and/or `email_domains`")]
struct RawAllow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    emails: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_domains: Option<Vec<String>>,
}

/// Collects the compiled rules of every file.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    rules: Vec<IdentityRule>,
    by_route: HashMap<Box<str>, usize>,
    /// Route → the rule id that claimed it (for the duplicate error).
    claimed: HashMap<String, String>,
}

impl Builder {
    pub(crate) fn build(self) -> Identities {
        let mut strip: Vec<HeaderName> = Vec::new();
        let mut add = |h: &HeaderName| {
            if !strip.contains(h) {
                strip.push(h.clone());
            }
        };
        for (_, name) in FORWARD_DEFAULTS {
            add(&HeaderName::from_static(name));
        }
        for r in &self.rules {
            r.forward.iter().for_each(|(_, h)| add(h));
            if let Some(t) = &r.trusted {
                add(&t.subject);
                [&t.tenant, &t.roles, &t.session, &t.email].into_iter().flatten().for_each(&mut add);
            }
        }
        Identities { rules: self.rules, by_route: self.by_route, strip }
    }
}

/// Compiles the `identity:` list of one file.
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: Vec<RawIdentityRule>, out: &mut Builder) {
    for (i, r) in raw.iter().enumerate() {
        let path = format!("{section}[{i}]");
        let meta = ctx.rule(KIND, &path, Common { id: &r.id, mode: r.mode, severity: r.severity }, r);
        let mut c = Compiler { ctx: &mut *ctx, ok: true };
        let rule = c.rule(&path, meta.id.clone(), meta.mode, meta.severity.unwrap_or(EVENT.default_severity()), r);
        let routes = c.routes(&path, &r.routes, &out.claimed);
        if let (Some(rule), true) = (rule, c.ok) {
            let index = out.rules.len();
            for route in routes {
                out.claimed.insert(route.clone(), meta.id.to_string());
                out.by_route.insert(route.into_boxed_str(), index);
            }
            out.rules.push(rule);
        }
    }
}

struct Compiler<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    ok: bool,
}

impl Compiler<'_, '_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.ok = false;
        self.ctx.error(path, message);
    }

    /// The rule's routes, each known and not claimed by another identity rule.
    fn routes(&mut self, path: &str, routes: &[String], claimed: &HashMap<String, String>) -> Vec<String> {
        if routes.is_empty() {
            self.error(&format!("{path}.routes"), "name at least one route");
        }
        let known = self.ctx.routes();
        let mut out: Vec<String> = Vec::new();
        for (j, route) in routes.iter().enumerate() {
            let at = format!("{path}.routes[{j}]");
            if let Err(e) = crate::schema::check_route(route, known) {
                self.error(&at, e);
            } else if let Some(other) = claimed.get(route) {
                self.error(&at, format!("route `{route}` already has identity rule `{other}`; one rule per route"));
            } else if out.contains(route) {
                self.error(&at, format!("route `{route}` is listed twice"));
            } else {
                out.push(route.clone());
            }
        }
        out
    }

    fn rule(
        &mut self,
        path: &str,
        id: Arc<str>,
        mode: Mode,
        severity: Severity,
        r: &RawIdentityRule,
    ) -> Option<IdentityRule> {
        if r.jwt.is_none() && r.api_keys.is_none() && r.trusted_header.is_none() {
            self.error(path, "an identity rule needs at least one of `jwt`, `api_keys`, `trusted_header`");
        }
        let jwt = r.jwt.as_ref().and_then(|j| self.jwt(&format!("{path}.jwt"), j));
        let api_keys = r.api_keys.as_ref().and_then(|k| self.api_keys(&format!("{path}.api_keys"), k));
        let trusted = r.trusted_header.as_ref().and_then(|t| self.trusted(&format!("{path}.trusted_header"), t));
        let allow = r.allow.as_ref().and_then(|a| self.allow(&format!("{path}.allow"), a));
        let forward = self.forward(&format!("{path}.forward"), r.forward.as_ref());
        Some(IdentityRule { id, mode, severity, optional: r.optional, jwt, api_keys, trusted, allow, forward })
    }

    fn header(&mut self, path: &str, name: &str) -> Option<HeaderName> {
        if let Some(why) = crate::overrides::rule_header_refusal(name) {
            self.error(path, why);
            return None;
        }
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.error(path, format!("`{name}` is not a valid header name"));
                None
            }
        }
    }

    fn jwt(&mut self, path: &str, j: &RawJwt) -> Option<JwtConfig> {
        let header = match &j.header {
            Some(h) => self.header(&format!("{path}.header"), h)?,
            None => http::header::AUTHORIZATION,
        };
        let leeway = j.leeway_seconds.unwrap_or(30);
        if leeway > MAX_LEEWAY {
            self.error(&format!("{path}.leeway_seconds"), format!("at most {MAX_LEEWAY} seconds"));
        }
        let mut claims = Claims {
            subject: "sub".into(),
            tenant: "tenant".into(),
            roles: "roles".into(),
            session: "sid".into(),
            email: "email".into(),
        };
        for (k, v) in j.claims.iter().flatten() {
            let at = format!("{path}.claims.{k}");
            if v.is_empty() {
                self.error(&at, "the claim name is empty");
                continue;
            }
            match k.as_str() {
                "subject" => claims.subject.clone_from(v),
                "tenant" => claims.tenant.clone_from(v),
                "roles" => claims.roles.clone_from(v),
                "session" => claims.session.clone_from(v),
                "email" => claims.email.clone_from(v),
                other => self.error(
                    &at,
                    format!(
                        "unknown field `{other}`, expected one of `subject`, `tenant`, `roles`, `session`, `email`"
                    ),
                ),
            }
        }
        if j.issuers.is_empty() {
            self.error(&format!("{path}.issuers"), "name at least one issuer");
        }
        let mut issuers = Vec::with_capacity(j.issuers.len());
        for (i, raw) in j.issuers.iter().enumerate() {
            let at = format!("{path}.issuers[{i}]");
            if j.issuers.iter().take(i).any(|o| o.issuer == raw.issuer) {
                self.error(&format!("{at}.issuer"), format!("issuer `{}` is listed twice", raw.issuer));
            }
            if let Some(iss) = self.issuer(&at, raw, leeway) {
                issuers.push(iss);
            }
        }
        Some(JwtConfig { header, verifier: Verifier { issuers }, claims, leeway, cache: TokenCache::new() })
    }

    fn issuer(&mut self, path: &str, raw: &RawIssuer, leeway: u64) -> Option<Issuer> {
        if raw.issuer.is_empty() {
            self.error(&format!("{path}.issuer"), "the issuer is empty");
        }
        let Some(alg) = Alg::parse(&raw.algorithm) else {
            self.error(
                &format!("{path}.algorithm"),
                format!("unknown algorithm `{}`: use HS256, RS256 or ES256 (`none` is never accepted)", raw.algorithm),
            );
            return None;
        };
        let mut keys: Vec<VerifyingKey> = Vec::new();
        for (k, key) in raw.keys.iter().flatten().enumerate() {
            if let Some(v) = self.key(&format!("{path}.keys[{k}]"), alg, key) {
                keys.push(v);
            }
        }
        if let Some(file) = &raw.jwks_file {
            let at = format!("{path}.jwks_file");
            if let Some(bytes) = self.ctx.asset(&at, AssetRef::File(file.clone())) {
                match std::str::from_utf8(&bytes)
                    .map_err(|_| "not UTF-8".to_owned())
                    .and_then(|t| jwt::parse_jwks(t, alg))
                {
                    Ok(mut ks) => keys.append(&mut ks),
                    Err(e) => self.error(&at, format!("{file}: {e}")),
                }
            }
        }
        if raw.keys.is_none() && raw.jwks_file.is_none() {
            self.error(path, "an issuer needs `keys` or `jwks_file`");
        }
        let audiences = raw.audiences.clone().unwrap_or_default();
        if audiences.iter().any(String::is_empty) {
            self.error(&format!("{path}.audiences"), "an audience is empty");
        }
        Some(Issuer { issuer: raw.issuer.clone(), alg, keys, audiences, leeway })
    }

    fn key(&mut self, path: &str, alg: Alg, k: &RawKey) -> Option<VerifyingKey> {
        let sources = [k.pem.is_some(), k.pem_file.is_some(), k.secret_env.is_some(), k.secret_file.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            self.error(path, "give exactly one of `pem`, `pem_file`, `secret_env`, `secret_file`");
            return None;
        }
        let kid = k.kid.clone();
        let result = if let Some(pem) = &k.pem {
            jwt::VerifyingKey::from_pem(kid, alg, pem)
        } else if let Some(file) = &k.pem_file {
            let bytes = self.ctx.asset(&format!("{path}.pem_file"), AssetRef::File(file.clone()))?;
            match String::from_utf8(bytes) {
                Ok(pem) => jwt::VerifyingKey::from_pem(kid, alg, &pem),
                Err(_) => Err(format!("{file} is not UTF-8 PEM text")),
            }
        } else {
            if alg != Alg::Hs256 {
                self.error(path, format!("{} verifies with a public key: give `pem` or `pem_file`", alg.as_str()));
                return None;
            }
            let (r, at) = match (&k.secret_env, &k.secret_file) {
                (Some(v), _) => (AssetRef::Env(v.clone()), format!("{path}.secret_env")),
                (_, Some(f)) => (AssetRef::File(f.clone()), format!("{path}.secret_file")),
                _ => return None,
            };
            let mut secret = self.ctx.asset(&at, r)?;
            // A secret file usually ends with a newline the secret does not have.
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            jwt::VerifyingKey::hmac(kid, &secret)
        };
        match result {
            Ok(key) => Some(key),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    fn api_keys(&mut self, path: &str, k: &RawApiKeys) -> Option<ApiKeys> {
        if k.header.is_none() && k.query.is_none() {
            self.error(path, "say where the key is: `header` and/or `query`");
        }
        let header = match &k.header {
            Some(h) => Some(self.header(&format!("{path}.header"), h)?),
            None => None,
        };
        if k.query.as_deref().is_some_and(str::is_empty) {
            self.error(&format!("{path}.query"), "the parameter name is empty");
        }
        if k.keys.is_empty() {
            self.error(&format!("{path}.keys"), "list at least one key");
        }
        let mut keys = Vec::with_capacity(k.keys.len());
        for (i, raw) in k.keys.iter().enumerate() {
            let at = format!("{path}.keys[{i}]");
            let Ok(bytes) = hex::decode(raw.sha256.trim()) else {
                self.error(&format!("{at}.sha256"), "not hex: give the SHA-256 of the key as 64 hex digits");
                continue;
            };
            let Ok(sha256) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                self.error(&format!("{at}.sha256"), "give the SHA-256 of the key as 64 hex digits");
                continue;
            };
            if keys.iter().any(|o: &ApiKey| o.sha256 == sha256) {
                self.error(&format!("{at}.sha256"), "the same key hash is listed twice");
            }
            if raw.id.is_empty() || keys.iter().any(|o: &ApiKey| o.id == raw.id) {
                self.error(&format!("{at}.id"), format!("key id `{}` is empty or listed twice", raw.id));
            }
            if !valid_value(&raw.subject) {
                self.error(&format!("{at}.subject"), "1 to 256 bytes, no control characters");
            }
            if raw.tenant.as_deref().is_some_and(|t| !valid_value(t)) {
                self.error(&format!("{at}.tenant"), "1 to 256 bytes, no control characters");
            }
            let roles = raw.roles.clone().unwrap_or_default();
            if !roles.iter().all(|r| valid_role(r)) {
                self.error(&format!("{at}.roles"), "each role: 1 to 256 bytes, no control characters, no `,`");
            }
            keys.push(ApiKey {
                id: raw.id.clone(),
                sha256,
                tenant: raw.tenant.clone(),
                subject: raw.subject.clone(),
                roles,
            });
        }
        let query = k.query.as_deref().map(|q| crate::query::fold_name(q.as_bytes()));
        Some(ApiKeys { header, query, keys })
    }

    fn trusted(&mut self, path: &str, t: &RawTrusted) -> Option<Trusted> {
        let opt = |c: &mut Self, key: &str, v: &Option<String>| -> Option<Option<HeaderName>> {
            match v {
                None => Some(None),
                Some(h) => c.header(&format!("{path}.{key}"), h).map(Some),
            }
        };
        Some(Trusted {
            subject: self.header(&format!("{path}.subject"), &t.subject)?,
            tenant: opt(self, "tenant", &t.tenant)?,
            roles: opt(self, "roles", &t.roles)?,
            session: opt(self, "session", &t.session)?,
            email: opt(self, "email", &t.email)?,
        })
    }

    fn allow(&mut self, path: &str, a: &RawAllow) -> Option<Allow> {
        let emails = a.emails.clone().unwrap_or_default();
        let domains: Vec<String> =
            a.email_domains.iter().flatten().map(|d| d.trim_start_matches('@').to_owned()).collect();
        if emails.is_empty() && domains.is_empty() {
            self.error(path, "list `emails` and/or `email_domains` (an empty allowlist would refuse everyone)");
        }
        for (i, e) in emails.iter().enumerate() {
            if !e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()) {
                self.error(&format!("{path}.emails[{i}]"), format!("`{e}` is not an email address"));
            }
        }
        for (i, d) in domains.iter().enumerate() {
            if d.is_empty() || d.contains('@') || d.contains(' ') {
                self.error(&format!("{path}.email_domains[{i}]"), format!("`{d}` is not a domain"));
            }
        }
        Some(Allow { emails, domains })
    }

    fn forward(&mut self, path: &str, f: Option<&BTreeMap<String, String>>) -> Vec<(&'static str, HeaderName)> {
        let mut out = Vec::with_capacity(FORWARD_DEFAULTS.len());
        for (field, default) in FORWARD_DEFAULTS {
            let name = f.and_then(|m| m.get(field)).map_or(default, String::as_str);
            let at = format!("{path}.{field}");
            if let Some(h) = self.header(&at, name) {
                if RESERVED_HEADERS.contains(&h.as_str()) || h.as_str().starts_with("x-forwarded-") {
                    self.error(
                        &at,
                        format!("`{h}` is set by the gateway or the client for another purpose; pick another name"),
                    );
                } else if out.iter().any(|(_, o)| *o == h) {
                    self.error(&at, format!("`{h}` already carries another field"));
                } else {
                    out.push((field, h));
                }
            }
        }
        for k in f.into_iter().flat_map(|m| m.keys()) {
            if !FORWARD_DEFAULTS.iter().any(|(field, _)| field == k) {
                self.error(
                    &format!("{path}.{k}"),
                    format!("unknown field `{k}`, expected one of `subject`, `tenant`, `roles`, `session`, `email`, `method`"),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
