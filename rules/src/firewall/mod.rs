//! The request firewall: the `firewall:` section of a rule file.
//!
//! ```yaml
//! firewall:
//!   - id: block-scanners
//!     mode: enforce            # or monitor
//!     severity: warning        # default: firewall_block's (warning)
//!     match:
//!       client_ips: ["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"]
//!       client_ips_file: lists/drop.txt   # one address or CIDR per line (FireHOL, Spamhaus DROP)
//!       routes: [api, webhooks]
//!       methods: [POST, PUT]
//!       paths: ["/admin", "/api/internal"]
//!       path_regex: '^/api/[^/]+/export$'
//!       headers:
//!         user-agent: '(?i)sqlmap|nikto'
//!       query_regex: '(?i)union\s+select'
//! ```
//!
//! Within a list any entry may match (OR); every key of `match` must match (AND). Rules are
//! evaluated in file order (files in name order); each matching rule yields a
//! [`EventType::FirewallBlock`] finding, and the first `enforce` one stops the request
//! (403 `ip_blocked` when the rule names client IPs, else 403 `forbidden`).
//!
//! What each criterion sees:
//!
//! * `client_ips`: the client IP resolved through the trusted proxies; IPv4-mapped IPv6 clients
//!   (`::ffff:203.0.113.5`) are matched as the IPv4 address (and IPv4-mapped rule networks as
//!   IPv4 networks). An unknown client IP never matches. `client_ips_file` names a list file
//!   (relative to the rules directory; [`crate::ipset::parse_list`] for the format); with
//!   `client_ips` too, an address in either matches. Both compile to an [`IpSet`]: a lookup is a
//!   binary search, whatever the list's size.
//! * `routes`: the matched route's id. No route never matches.
//! * `methods`: the request method, compared case-insensitively (an upstream that upper-cases
//!   `post` must not let it past a `POST` rule).
//! * `paths` (segment-boundary prefixes) and `path_regex`: the **canonical** path (see
//!   [`crate::canon`]): `/%61dmin`, `//admin` and `/x/../admin` all arrive as `/admin`;
//!   non-unreserved bytes stay percent-encoded in uppercase hex (`%20`). Both ignore ASCII case,
//!   like every path match (routes, tenant templates, webhooks, channel switches): `paths:
//!   [/api/internal]` matches `/API/Internal/x`, and `path_regex` is compiled case-insensitive.
//! * `headers`: each value of the named header, as bytes (non-UTF-8 included); a header sent
//!   several times matches if any value matches; a missing header never matches.
//! * `query_regex`: the raw query string (without `?`), and, when it holds `%` or `+`, also its
//!   percent-decoded form (`+` as space), so `union%20select` and `union+select` are caught by
//!   `union\s+select`. No query string never matches.
//!
//! A clean request (no rule matches) costs no allocation, except one for decoding a query that
//! holds `%` or `+` when a rule with `query_regex` gets that far.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::ipset::{IpSet, IpSetBuilder};
use http::HeaderName;
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use crate::canon;
use crate::deny::{Deny, DenyCode};
use crate::schema::{check_route, compile_path_regex, compile_regex, present, Common, Ctx};
use crate::verdict::{EventType, Finding, Mode, Outcome, Severity};
use crate::view::RequestView;

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "firewall";

/// The event every firewall finding becomes.
pub const EVENT: EventType = EventType::FirewallBlock;

/// One raw rule of the `firewall:` list. Serialized (JSON) for the rule hash: absent optional
/// keys are skipped so that adding keys to the schema keeps existing hashes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a firewall rule: a mapping with `id` and `match`")]
pub(crate) struct RawFirewallRule {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    matches: Option<RawMatch>,
}

/// The criteria of one rule. A key written with no value (`client_ips:`) is an error, not an
/// absent criterion: silently dropping it would widen the rule.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of match criteria")]
struct RawMatch {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    client_ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    client_ips_file: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    paths: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    path_regex: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    query_regex: Option<String>,
}

/// The compiled firewall: immutable, `Send + Sync`, evaluated in file order.
#[derive(Debug, Default)]
pub struct Firewall {
    rules: Vec<Rule>,
    /// Built from [`PREFILTER_FROM`] rules on: below that, one rule after another is cheaper
    /// than the regex-set passes (benches/README.md, "Firewall at scale").
    index: Option<Prefilter>,
}

/// Rule count from which the firewall is prefiltered rather than evaluated rule by rule.
const PREFILTER_FROM: usize = 32;

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    mode: Mode,
    severity: Severity,
    code: DenyCode,
    /// The inline `client_ips` and the `client_ips_file` set: an address in any matches.
    client_ips: Option<Vec<Arc<IpSet>>>,
    routes: Option<Vec<Box<str>>>,
    methods: Option<Vec<Box<str>>>,
    paths: Option<Vec<Box<str>>>,
    path_regex: Option<Regex>,
    headers: Vec<(HeaderName, Regex)>,
    query_regex: Option<Regex>,
    /// `{"matched": [criteria names]}`, built once; cloned into each finding.
    detail: serde_json::Map<String, serde_json::Value>,
}

impl Firewall {
    /// Evaluates every rule in order against the request. Each matching rule adds a
    /// `firewall_block` finding to `out`; returns `Break` as soon as [`Outcome::add`] does (an
    /// `enforce` rule matched): later checks must not run.
    ///
    /// Only the rules the [`Prefilter`] names as candidates are evaluated (each has a necessary
    /// criterion that holds for this request), in rule order: the findings and the stop are
    /// those of evaluating every rule in order.
    pub fn check(&self, view: &RequestView<'_>, out: &mut Outcome) -> ControlFlow<()> {
        match &self.index {
            Some(index) => self.check_with(index, view, out),
            None => self.check_linear(view, out),
        }
    }

    fn check_with(&self, index: &Prefilter, view: &RequestView<'_>, out: &mut Outcome) -> ControlFlow<()> {
        let client_ip = view.client_ip.map(|ip| ip.to_canonical());
        let mut query = Query { raw: view.query, decoded: None, folded: None };
        let mut hits = Vec::new();
        let mut sources = Sources::default();
        index.candidates(view, &mut query, &mut hits);
        index.sources(view, client_ip, &hits, &mut sources);
        let mut heads = sources.slices();
        // A k-way merge of the sorted candidate lists: each rule once, in rule order.
        while let Some(next) = heads.iter().filter_map(|h| h.first()).min().copied() {
            for h in heads.iter_mut() {
                if h.first() == Some(&next) {
                    *h = h.get(1..).unwrap_or_default();
                }
            }
            let Some(rule) = self.rules.get(next as usize) else { continue };
            if rule.matches(view, client_ip, &mut query) {
                out.add(rule.finding())?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Every rule, in order: for small rule sets, and the oracle of the differential tests.
    fn check_linear(&self, view: &RequestView<'_>, out: &mut Outcome) -> ControlFlow<()> {
        let client_ip = view.client_ip.map(|ip| ip.to_canonical());
        let mut query = Query { raw: view.query, decoded: None, folded: None };
        for rule in &self.rules {
            if rule.matches(view, client_ip, &mut query) {
                out.add(rule.finding())?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there is no firewall rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The query string, and its percent-decoded and name-folded forms computed at most once per
/// request.
struct Query<'q> {
    raw: Option<&'q str>,
    /// `None`: not computed yet; `Some(None)`: nothing to decode.
    decoded: Option<Option<Vec<u8>>>,
    /// `None`: not computed yet; `Some(None)`: the same as the raw query.
    folded: Option<Option<Vec<u8>>>,
}

impl Query<'_> {
    /// The forms a `query_regex` is tried on: raw, decoded, names folded.
    fn forms(&mut self) -> [Option<&[u8]>; 3] {
        let Some(raw) = self.raw else { return [None, None, None] };
        self.decoded.get_or_insert_with(|| crate::query::decode_lenient(raw.as_bytes()));
        self.folded.get_or_insert_with(|| crate::query::fold_names(raw));
        [
            Some(raw.as_bytes()),
            self.decoded.as_ref().and_then(|d| d.as_deref()),
            self.folded.as_ref().and_then(|f| f.as_deref()),
        ]
    }

    fn is_match(&mut self, re: &Regex) -> bool {
        let Some(raw) = self.raw else { return false };
        if re.is_match(raw.as_bytes()) {
            return true;
        }
        let decoded = self.decoded.get_or_insert_with(|| crate::query::decode_lenient(raw.as_bytes()));
        if decoded.as_deref().is_some_and(|d| re.is_match(d)) {
            return true;
        }
        // Parameter names as applications read them (`DEBUG=1`, `de.bug=1`, `debug%00x=1`).
        let folded = self.folded.get_or_insert_with(|| crate::query::fold_names(raw));
        folded.as_deref().is_some_and(|f| re.is_match(f))
    }
}

impl Rule {
    /// All criteria must match; cheapest first.
    fn matches(&self, v: &RequestView<'_>, client_ip: Option<IpAddr>, query: &mut Query<'_>) -> bool {
        if let Some(routes) = &self.routes {
            if !v.route.is_some_and(|r| routes.iter().any(|x| **x == *r)) {
                return false;
            }
        }
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m.eq_ignore_ascii_case(v.method)) {
                return false;
            }
        }
        if let Some(sets) = &self.client_ips {
            if !client_ip.is_some_and(|ip| sets.iter().any(|s| s.contains(ip))) {
                return false;
            }
        }
        if let Some(paths) = &self.paths {
            if !paths.iter().any(|p| canon::has_prefix_ignore_case(v.path, p)) {
                return false;
            }
        }
        if let Some(re) = &self.path_regex {
            if !re.is_match(v.path.as_bytes()) {
                return false;
            }
        }
        for (name, re) in &self.headers {
            if !v.headers.get_all(name).iter().any(|value| re.is_match(value.as_bytes())) {
                return false;
            }
        }
        if let Some(re) = &self.query_regex {
            if !query.is_match(re) {
                return false;
            }
        }
        true
    }

    fn finding(&self) -> Finding {
        Finding {
            rule_id: self.id.clone(),
            mode: self.mode,
            event: EVENT,
            severity: self.severity,
            deny: Deny::new(self.code, "firewall"),
            detail: self.detail.clone(),
        }
    }
}

/// Collects the compiled rules of every file.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    rules: Vec<Rule>,
}

impl Builder {
    pub(crate) fn build(self) -> Firewall {
        let index = (self.rules.len() >= PREFILTER_FROM).then(|| Prefilter::new(&self.rules));
        Firewall { rules: self.rules, index }
    }
}

/// The criterion a rule is looked up by: one that must hold for the rule to match, chosen from
/// the most selective kind the rule has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Paths,
    PathRegex,
    QueryRegex,
    Header,
    ClientIp,
    Route,
    Method,
    /// Not indexable (a regex set that would not build): always a candidate.
    Always,
}

fn anchor(r: &Rule) -> Anchor {
    if r.paths.is_some() {
        Anchor::Paths
    } else if r.path_regex.is_some() {
        Anchor::PathRegex
    } else if r.query_regex.is_some() {
        Anchor::QueryRegex
    } else if !r.headers.is_empty() {
        Anchor::Header
    } else if r.client_ips.is_some() {
        Anchor::ClientIp
    } else if r.routes.is_some() {
        Anchor::Route
    } else if r.methods.is_some() {
        Anchor::Method
    } else {
        Anchor::Always
    }
}

/// Rule indices, sorted.
type Ids = Vec<u32>;

/// One `RegexSet` over the anchoring regexes of several rules: pattern `k` is rule `rules[k]`'s.
#[derive(Debug)]
struct RuleSet {
    set: regex::bytes::RegexSet,
    rules: Ids,
}

impl RuleSet {
    /// Builds the set with the flags the rules' regexes were compiled with; `None` when it would
    /// exceed the limits (the rules are then always candidates).
    fn new(patterns: Vec<(&str, u32)>, case_insensitive: bool) -> Option<Self> {
        if patterns.is_empty() {
            return None;
        }
        let limit = crate::schema::REGEX_SIZE_LIMIT.saturating_mul(patterns.len()).min(MAX_SET_BYTES);
        let set = regex::bytes::RegexSetBuilder::new(patterns.iter().map(|(p, _)| *p))
            .unicode(false)
            .case_insensitive(case_insensitive)
            .size_limit(limit)
            .dfa_size_limit(SET_DFA_BYTES)
            .nest_limit(crate::schema::REGEX_NEST_LIMIT)
            .build()
            .ok()?;
        Some(RuleSet { set, rules: patterns.into_iter().map(|(_, i)| i).collect() })
    }

    /// The rules whose pattern matches `hay`, appended to `hits` as one sorted list (nothing
    /// allocated when none does, the clean case).
    fn hits(&self, hay: &[u8], hits: &mut Vec<Ids>) {
        if !self.set.is_match(hay) {
            return;
        }
        let found: Ids = self.set.matches(hay).iter().filter_map(|k| self.rules.get(k).copied()).collect();
        hits.push(found);
    }
}

/// Largest compiled program of one prefilter regex set.
const MAX_SET_BYTES: usize = 256 << 20;

/// The lazy DFA cache of one prefilter regex set.
const SET_DFA_BYTES: usize = 8 << 20;

/// Which rules can match a request, without evaluating them one by one: each rule is filed under
/// its [`Anchor`]; a request collects the rules whose anchor holds (a hash lookup for routes, a
/// short scan of the distinct methods, a binary search per path segment for literal `paths`,
/// one [`IpSet`] lookup in the union of the anchored rules' sets, one `RegexSet` pass over the
/// path, the query forms and each header named by a rule). Those candidates are then evaluated
/// in full, in rule order.
#[derive(Debug, Default)]
struct Prefilter {
    always: Ids,
    routes: std::collections::HashMap<Box<str>, Ids>,
    methods: Vec<(Box<str>, Ids)>,
    paths: crate::prefixes::Prefixes<Ids>,
    ips: Option<(IpSet, Ids)>,
    path_set: Option<RuleSet>,
    query_set: Option<RuleSet>,
    headers: Vec<(HeaderName, RuleSet)>,
}

impl Prefilter {
    fn new(rules: &[Rule]) -> Self {
        let mut p = Prefilter::default();
        let mut paths: Vec<(String, Ids)> = Vec::new();
        let mut ip_rules: Vec<(u32, &[Arc<IpSet>])> = Vec::new();
        let mut path_res: Vec<(&str, u32)> = Vec::new();
        let mut query_res: Vec<(&str, u32)> = Vec::new();
        let mut header_res: Vec<(&HeaderName, Vec<(&str, u32)>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else {
                p.always.push(u32::MAX);
                continue;
            };
            match anchor(r) {
                Anchor::Paths => {
                    for prefix in r.paths.iter().flatten() {
                        paths.push((prefix.to_string(), vec![i]));
                    }
                }
                Anchor::PathRegex => path_res.extend(r.path_regex.iter().map(|re| (re.as_str(), i))),
                Anchor::QueryRegex => query_res.extend(r.query_regex.iter().map(|re| (re.as_str(), i))),
                Anchor::Header => {
                    if let Some((name, re)) = r.headers.first() {
                        match header_res.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, v)) => v.push((re.as_str(), i)),
                            None => header_res.push((name, vec![(re.as_str(), i)])),
                        }
                    }
                }
                Anchor::ClientIp => ip_rules.push((i, r.client_ips.as_deref().unwrap_or_default())),
                Anchor::Route => {
                    for route in r.routes.iter().flatten() {
                        let ids = p.routes.entry(route.clone()).or_default();
                        if ids.last() != Some(&i) {
                            ids.push(i);
                        }
                    }
                }
                Anchor::Method => {
                    for m in r.methods.iter().flatten() {
                        match p.methods.iter_mut().find(|(x, _)| x == m) {
                            Some((_, ids)) if ids.last() == Some(&i) => {}
                            Some((_, ids)) => ids.push(i),
                            None => p.methods.push((m.clone(), vec![i])),
                        }
                    }
                }
                Anchor::Always => p.always.push(i),
            }
        }
        p.paths = crate::prefixes::Prefixes::new(paths, |first, later| {
            for i in later {
                if first.last() != Some(&i) {
                    first.push(i);
                }
            }
        });
        if !ip_rules.is_empty() {
            let ids: Ids = ip_rules.iter().map(|(i, _)| *i).collect();
            let mut distinct: Vec<&Arc<IpSet>> = Vec::new();
            for s in ip_rules.iter().flat_map(|(_, sets)| sets.iter()) {
                if !distinct.iter().any(|d| Arc::ptr_eq(d, s)) {
                    distinct.push(s);
                }
            }
            p.ips = Some((IpSet::union(distinct.into_iter().map(|s| &**s)), ids));
        }
        // A regex set that does not build leaves its rules always candidates (still correct).
        let fallback = |p: &mut Prefilter, res: &[(&str, u32)]| p.always.extend(res.iter().map(|(_, i)| *i));
        p.path_set = RuleSet::new(path_res.clone(), true);
        if p.path_set.is_none() {
            fallback(&mut p, &path_res);
        }
        p.query_set = RuleSet::new(query_res.clone(), false);
        if p.query_set.is_none() {
            fallback(&mut p, &query_res);
        }
        for (name, res) in header_res {
            match RuleSet::new(res.clone(), false) {
                Some(set) => p.headers.push((name.clone(), set)),
                None => fallback(&mut p, &res),
            }
        }
        p.always.sort_unstable();
        p
    }

    /// The candidate lists that need computing (regex set hits), appended to `hits`.
    fn candidates(&self, v: &RequestView<'_>, query: &mut Query<'_>, hits: &mut Vec<Ids>) {
        if let Some(set) = &self.path_set {
            set.hits(v.path.as_bytes(), hits);
        }
        if let Some(set) = &self.query_set {
            for form in query.forms().into_iter().flatten() {
                set.hits(form, hits);
            }
        }
        for (name, set) in &self.headers {
            for value in v.headers.get_all(name) {
                set.hits(value.as_bytes(), hits);
            }
        }
    }

    /// Every candidate list for the request: the static ones its route, method, path and client
    /// address select, and the regex set `hits`.
    fn sources<'s>(&'s self, v: &RequestView<'_>, client_ip: Option<IpAddr>, hits: &'s [Ids], out: &mut Sources<'s>) {
        out.push(&self.always);
        if let Some(ids) = v.route.and_then(|r| self.routes.get(r)) {
            out.push(ids);
        }
        if let Some((_, ids)) = self.methods.iter().find(|(m, _)| m.eq_ignore_ascii_case(v.method)) {
            out.push(ids);
        }
        for (_, ids) in self.paths.matches(v.path) {
            out.push(ids);
        }
        if let (Some((set, ids)), Some(ip)) = (&self.ips, client_ip) {
            if set.contains(ip) {
                out.push(ids);
            }
        }
        for h in hits {
            out.push(h);
        }
    }
}

/// Candidate lists of one request: up to 8 without allocating, more spill to the heap.
#[derive(Default)]
struct Sources<'s> {
    fixed: [&'s [u32]; 8],
    n: usize,
    spill: Vec<&'s [u32]>,
}

impl<'s> Sources<'s> {
    fn push(&mut self, ids: &'s [u32]) {
        if ids.is_empty() {
            return;
        }
        match self.fixed.get_mut(self.n) {
            Some(slot) => {
                *slot = ids;
                self.n += 1;
            }
            None => self.spill.push(ids),
        }
    }

    /// All lists, as mutable heads for the merge.
    fn slices(self) -> SourceHeads<'s> {
        SourceHeads { fixed: self.fixed, n: self.n, spill: self.spill }
    }
}

/// The heads of the candidate lists during the merge.
struct SourceHeads<'s> {
    fixed: [&'s [u32]; 8],
    n: usize,
    spill: Vec<&'s [u32]>,
}

impl<'s> SourceHeads<'s> {
    fn iter(&self) -> impl Iterator<Item = &&'s [u32]> {
        self.fixed.iter().take(self.n).chain(self.spill.iter())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut &'s [u32]> {
        self.fixed.iter_mut().take(self.n).chain(self.spill.iter_mut())
    }
}

/// Compiles the `firewall:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: Vec<RawFirewallRule>, out: &mut Builder) {
    for (i, r) in raw.iter().enumerate() {
        let path = format!("{section}[{i}]");
        let meta = ctx.rule(KIND, &path, Common { id: &r.id, mode: r.mode, severity: r.severity }, r);
        let mut c = RuleCompiler { ctx: &mut *ctx, base: format!("{path}.match"), ok: true };
        if let Some(rule) = c.rule(meta.id, meta.mode, meta.severity, r.matches.as_ref()) {
            out.rules.push(rule);
        }
    }
}

/// Validates and compiles the `match` of one rule, recording every error.
struct RuleCompiler<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    /// `firewall[i].match`
    base: String,
    ok: bool,
}

impl RuleCompiler<'_, '_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.ok = false;
        self.ctx.error(path, message);
    }

    fn rule(&mut self, id: Arc<str>, mode: Mode, severity: Option<Severity>, raw: Option<&RawMatch>) -> Option<Rule> {
        let Some(raw) = raw else {
            let base = self.base.clone();
            self.error(&base, "a rule needs a `match` with at least one criterion");
            return None;
        };
        let RawMatch { client_ips, client_ips_file, routes, methods, paths, path_regex, headers, query_regex } = raw;
        let criteria = [
            client_ips.is_some() || client_ips_file.is_some(),
            routes.is_some(),
            methods.is_some(),
            paths.is_some(),
            path_regex.is_some(),
            headers.is_some(),
            query_regex.is_some(),
        ];
        if !criteria.contains(&true) {
            let base = self.base.clone();
            self.error(
                &base,
                "`match` needs at least one criterion (a rule matching every request would block all traffic)",
            );
        }
        let mut matched: Vec<serde_json::Value> = Vec::new();

        let inline = self.list("client_ips", client_ips, |s| {
            crate::ipset::parse_net(s)
                .ok_or_else(|| format!("`{s}` is not an IP address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)"))
        });
        let mut client_ips: Option<Vec<Arc<IpSet>>> = inline.map(|nets| {
            let mut b = IpSetBuilder::default();
            nets.into_iter().for_each(|n| b.push(n));
            vec![Arc::new(b.build())]
        });
        if let Some(name) = client_ips_file {
            let p = format!("{}.client_ips_file", self.base);
            if name.trim().is_empty() {
                self.error(&p, "`client_ips_file` is empty: name a list file (relative to the rules directory)");
            } else if let Some(set) = self.ctx.ip_list(&p, name, &id) {
                client_ips.get_or_insert_with(Vec::new).push(set);
            } else {
                self.ok = false;
            }
        }
        if client_ips.is_some() {
            matched.push("client_ip".into());
        }

        let known = self.ctx.routes();
        let routes = self.list("routes", routes, |s| check_route(s, known).map(|()| Box::from(s)));
        if routes.is_some() {
            matched.push("route".into());
        }

        let methods = self.list("methods", methods, |s| {
            if !s.is_empty() && s.bytes().all(is_tchar) {
                Ok(Box::from(s.to_ascii_uppercase()))
            } else {
                Err(format!("`{s}` is not an HTTP method (a token like GET or POST)"))
            }
        });
        if methods.is_some() {
            matched.push("method".into());
        }

        let paths = self.list("paths", paths, |s| check_path(s).map(|()| Box::from(s)));
        if paths.is_some() {
            matched.push("path".into());
        }

        let path_regex = self.regex("path_regex", path_regex.as_deref(), compile_path_regex);
        if path_regex.is_some() {
            matched.push("path_regex".into());
        }

        let mut compiled_headers = Vec::new();
        if let Some(map) = headers {
            let hp = format!("{}.headers", self.base);
            if map.is_empty() {
                self.error(&hp, "`headers` is empty: remove the key or name at least one header");
            }
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for (name, pattern) in map {
                let p = format!("{hp}.{name}");
                let lower = name.to_ascii_lowercase();
                let Ok(header) = HeaderName::from_bytes(lower.as_bytes()) else {
                    self.error(&p, format!("`{name}` is not a valid header name"));
                    continue;
                };
                if let Some(why) = crate::overrides::rule_header_refusal(name) {
                    self.error(&p, why);
                    continue;
                }
                if let Some(first) = seen.insert(lower.clone(), name) {
                    self.error(
                        &p,
                        format!(
                            "header `{lower}` is listed twice (`{first}` and `{name}`): names are case-insensitive"
                        ),
                    );
                    continue;
                }
                match compile_regex(pattern) {
                    Ok(re) => {
                        matched.push(format!("header:{lower}").into());
                        compiled_headers.push((header, re));
                    }
                    Err(msg) => self.error(&p, msg),
                }
            }
        }

        let query_regex = self.regex("query_regex", query_regex.as_deref(), compile_regex);
        if query_regex.is_some() {
            matched.push("query_regex".into());
        }

        if !self.ok {
            return None;
        }
        let mut detail = serde_json::Map::new();
        detail.insert("matched".into(), serde_json::Value::Array(matched));
        Some(Rule {
            id,
            mode,
            severity: severity.unwrap_or(EVENT.default_severity()),
            code: if client_ips.is_some() { DenyCode::IpBlocked } else { DenyCode::Forbidden },
            client_ips,
            routes,
            methods,
            paths,
            path_regex,
            headers: compiled_headers,
            query_regex,
            detail,
        })
    }

    /// A list criterion: `None` when absent; an error when empty; each entry converted by `f`,
    /// errors recorded at `key[j]`.
    fn list<T>(
        &mut self,
        key: &str,
        items: &Option<Vec<String>>,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let items = items.as_ref()?;
        let p = format!("{}.{key}", self.base);
        if items.is_empty() {
            self.error(&p, format!("`{key}` is empty: remove the key or list at least one entry"));
        }
        let mut out = Vec::with_capacity(items.len());
        for (j, s) in items.iter().enumerate() {
            match f(s) {
                Ok(v) => out.push(v),
                Err(msg) => self.error(&format!("{p}[{j}]"), msg),
            }
        }
        Some(out)
    }

    fn regex(&mut self, key: &str, pattern: Option<&str>, compile: fn(&str) -> Result<Regex, String>) -> Option<Regex> {
        let pattern = pattern?;
        match compile(pattern) {
            Ok(re) => Some(re),
            Err(msg) => {
                let p = format!("{}.{key}", self.base);
                self.error(&p, msg);
                None
            }
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A `paths` entry must be an already-canonical absolute path, and not `/` (which matches every
/// path: leave `paths` out instead).
fn check_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("`{s}` must start with `/`"));
    }
    match canon::canonicalize(s.as_bytes()) {
        Err(e) => Err(format!("`{s}` is not a valid path: {e}")),
        Ok(c) if c != s => Err(format!("`{s}` is not canonical; did you mean `{c}`?")),
        Ok(_) if s.trim_end_matches('/').is_empty() => {
            Err("`/` matches every path: leave `paths` out to match any path".to_string())
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
