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
mod tests {
    use super::*;
    use crate::rulefile::{compile, compile_with, Env, Snapshot, SourceFile};
    use crate::verdict::Action;
    use http::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn snap(rules: &str) -> Snapshot {
        let text = format!("version: 1\nfirewall:\n{rules}");
        match compile(&[SourceFile::new("fw.yaml", text)]) {
            Ok(s) => s,
            Err(e) => panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
        }
    }

    /// One rule `r` with the given `match` body (flow mapping).
    fn one(m: &str) -> Snapshot {
        snap(&format!("  - id: r\n    match: {m}\n"))
    }

    /// Errors of a one-rule file, as `LINE PATH: MESSAGE`.
    fn errors(rules: &str) -> Vec<String> {
        let text = format!("version: 1\nfirewall:\n{rules}");
        compile(&[SourceFile::new("fw.yaml", text)])
            .unwrap_err()
            .iter()
            .map(|e| format!("{} {}: {}", e.line, e.path, e.message))
            .collect()
    }

    struct Req {
        method: &'static str,
        path: String,
        query: Option<&'static str>,
        route: Option<&'static str>,
        ip: Option<IpAddr>,
        headers: HeaderMap,
    }

    fn req() -> Req {
        Req {
            method: "GET",
            path: "/api/business/42/orders".into(),
            query: None,
            route: Some("api"),
            ip: Some("192.0.2.10".parse().unwrap()),
            headers: HeaderMap::new(),
        }
    }

    impl Req {
        fn view(&self) -> RequestView<'_> {
            RequestView {
                method: self.method,
                path: &self.path,
                query: self.query,
                host: Some("app.example.com"),
                route: self.route,
                channel: None,
                client_ip: self.ip,
                headers: &self.headers,
            }
        }
        fn ip(mut self, ip: &str) -> Self {
            self.ip = Some(ip.parse().unwrap());
            self
        }
        fn header(mut self, name: &'static str, value: &[u8]) -> Self {
            self.headers.append(name, HeaderValue::from_bytes(value).unwrap());
            self
        }
        fn path(mut self, p: &str) -> Self {
            self.path = p.into();
            self
        }
    }

    fn run(s: &Snapshot, r: &Req) -> (ControlFlow<()>, Outcome) {
        let mut out = Outcome::default();
        let flow = s.firewall.check(&r.view(), &mut out);
        (flow, out)
    }

    fn hits(s: &Snapshot, r: &Req) -> bool {
        !run(s, r).1.is_clean()
    }

    #[test]
    fn enforce_denies_and_stops() {
        let s = snap("  - id: a\n    match: {methods: [DELETE]}\n  - id: b\n    match: {methods: [DELETE]}\n");
        let r = Req { method: "DELETE", ..req() };
        let (flow, out) = run(&s, &r);
        assert_eq!(flow, ControlFlow::Break(()));
        let f = out.deny.as_ref().unwrap();
        assert_eq!(&*f.rule_id, "a");
        assert_eq!(f.event, EventType::FirewallBlock);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.action(), Action::Blocked);
        assert_eq!(f.deny.code, DenyCode::Forbidden);
        assert_eq!(f.deny.reason, "firewall");
        assert_eq!(serde_json::Value::Object(f.detail.clone()), json!({"matched": ["method"]}));
        assert!(out.flagged.is_empty());
        let (flow, out) = run(&s, &req());
        assert_eq!(flow, ControlFlow::Continue(()));
        assert!(out.is_clean());
    }

    #[test]
    fn monitor_flags_and_continues_to_the_next_rule() {
        let s = snap(
            "  - id: watch\n    mode: monitor\n    severity: critical\n    match: {client_ips: [192.0.2.0/24]}\n\
             \x20 - id: block\n    match: {client_ips: [192.0.2.10]}\n\
             \x20 - id: never-reached\n    mode: monitor\n    match: {methods: [GET]}\n",
        );
        let (flow, out) = run(&s, &req());
        assert_eq!(flow, ControlFlow::Break(()));
        assert_eq!(out.flagged.len(), 1);
        let flagged = &out.flagged[0];
        assert_eq!((&*flagged.rule_id, flagged.mode, flagged.severity), ("watch", Mode::Monitor, Severity::Critical));
        assert_eq!(flagged.action(), Action::Flagged);
        assert_eq!(flagged.deny.code, DenyCode::IpBlocked);
        let deny = out.deny.as_ref().unwrap();
        assert_eq!((&*deny.rule_id, deny.deny.code), ("block", DenyCode::IpBlocked));
        assert_eq!(deny.deny.code.status(), 403);

        // Monitor only: everything is flagged, nothing is denied, the request goes on.
        let s = snap("  - id: a\n    mode: monitor\n    match: {methods: [GET]}\n  - id: b\n    mode: monitor\n    match: {routes: [api]}\n");
        let (flow, out) = run(&s, &req());
        assert_eq!(flow, ControlFlow::Continue(()));
        assert!(out.deny.is_none());
        assert_eq!(out.flagged.iter().map(|f| &*f.rule_id).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn client_ips() {
        let s = one("{client_ips: [203.0.113.0/24, 198.51.100.7, '2001:db8::/32']}");
        for (ip, hit) in [
            ("203.0.113.5", true),
            ("203.0.114.5", false),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            // IPv4-mapped IPv6 clients match IPv4 rules.
            ("::ffff:203.0.113.5", true),
            ("::ffff:198.51.100.7", true),
            ("::ffff:198.51.100.8", false),
            // IPv4-compatible (deprecated) form is not the same address.
            ("::203.0.113.5", false),
        ] {
            assert_eq!(hits(&s, &req().ip(ip)), hit, "{ip}");
        }
        // Unknown client IP never matches.
        assert!(!hits(&s, &Req { ip: None, ..req() }));
        // An IPv4-mapped rule network matches IPv4 clients too.
        let s = one("{client_ips: ['::ffff:203.0.113.0/120']}");
        assert!(hits(&s, &req().ip("203.0.113.9")));
        assert!(hits(&s, &req().ip("::ffff:203.0.113.9")));
        assert!(!hits(&s, &req().ip("203.0.112.9")));
        // Host bits in a CIDR are ignored.
        let s = one("{client_ips: [203.0.113.77/24]}");
        assert!(hits(&s, &req().ip("203.0.113.1")));
        let (_, out) = run(&s, &req().ip("203.0.113.1"));
        assert_eq!(out.deny.unwrap().detail["matched"], json!(["client_ip"]));
    }

    #[test]
    fn routes() {
        let s = one("{routes: [api, webhooks]}");
        assert!(hits(&s, &req()));
        assert!(hits(&s, &Req { route: Some("webhooks"), ..req() }));
        assert!(!hits(&s, &Req { route: Some("apix"), ..req() }));
        assert!(!hits(&s, &Req { route: Some("ap"), ..req() }));
        assert!(!hits(&s, &Req { route: None, ..req() }));
    }

    #[test]
    fn methods() {
        let s = one("{methods: [post, PUT]}");
        assert!(hits(&s, &Req { method: "POST", ..req() }));
        assert!(hits(&s, &Req { method: "PUT", ..req() }));
        // Compared case-insensitively: an upstream may upper-case it.
        assert!(hits(&s, &Req { method: "post", ..req() }));
        assert!(!hits(&s, &req()));
        assert!(!hits(&s, &Req { method: "POSTX", ..req() }));
    }

    #[test]
    fn paths_are_segment_prefixes_of_the_canonical_path() {
        let s = one("{paths: [/admin, /api/internal/]}");
        for (p, hit) in [
            ("/admin", true),
            ("/admin/", true),
            ("/admin/users", true),
            ("/administrator", false),
            ("/api/internal", true),
            ("/api/internal/x", true),
            ("/api/internals", false),
            ("/x/admin", false),
            // One case policy for every path match: ASCII case is ignored.
            ("/ADMIN", true),
            ("/Admin/users", true),
            ("/API/Internal/x", true),
            ("/api/INTERNAL", true),
            ("/Api/internal/", true),
            ("/ADMINISTRATOR", false),
            ("/API/INTERNALS", false),
        ] {
            assert_eq!(hits(&s, &req().path(p)), hit, "{p}");
        }
        // A rule written in upper case matches lower case too.
        let upper = one("{paths: [/API/Internal]}");
        for p in ["/api/internal", "/api/internal/x", "/API/INTERNAL/x"] {
            assert!(hits(&upper, &req().path(p)), "{p}");
        }
        assert!(!hits(&upper, &req().path("/api/internals")));
        // The view carries the canonical path: every encoded or dotted spelling of /admin arrives
        // as /admin (the gateway canonicalises once, before any check).
        for raw in ["/%61dmin", "/%61%64%6D%69%6E/x", "//admin", "/x/../admin", "/./admin/.", "/api/../admin"] {
            let canonical = canon::canonicalize(raw.as_bytes()).unwrap();
            assert!(hits(&s, &req().path(&canonical)), "{raw} -> {canonical}");
        }
    }

    #[test]
    fn path_regex() {
        let s = one(r"{path_regex: '^/api/[^/]+/export$'}");
        assert!(hits(&s, &req().path("/api/v1/export")));
        assert!(!hits(&s, &req().path("/api/v1/export/x")));
        assert!(!hits(&s, &req().path("/api/export")));
        // Case-insensitive, like every path match.
        for p in ["/API/v1/EXPORT", "/Api/V1/Export", "/api/X/export"] {
            assert!(hits(&s, &req().path(p)), "{p}");
        }
        // ... unless the pattern explicitly opts a group out.
        let exact = one(r"{path_regex: '^/api/[^/]+/(?-i:export)$'}");
        assert!(hits(&exact, &req().path("/API/x/export")));
        assert!(!hits(&exact, &req().path("/api/x/EXPORT")));
        let (_, out) = run(&s, &req().path("/api/v1/export"));
        assert_eq!(out.deny.unwrap().detail["matched"], json!(["path_regex"]));
        // Non-ASCII arrives percent-encoded in the canonical path.
        let s = one(r"{path_regex: '%C3%A9'}");
        let canonical = canon::canonicalize("/caf\u{e9}".as_bytes()).unwrap();
        assert!(hits(&s, &req().path(&canonical)));
    }

    #[test]
    fn headers() {
        let s = one(r"{headers: {User-Agent: '(?i)sqlmap|nikto'}}");
        assert!(hits(&s, &req().header("user-agent", b"sqlmap/1.8#stable")));
        assert!(hits(&s, &req().header("user-agent", b"Mozilla/5.00 (NIKTO/2.5)")));
        assert!(!hits(&s, &req().header("user-agent", b"curl/8.5")));
        // Missing header never matches.
        assert!(!hits(&s, &req()));
        // Repeated header: any value matches.
        let r = req().header("user-agent", b"curl/8.5").header("user-agent", b"sqlmap/1.8");
        assert!(hits(&s, &r));
        let (_, out) = run(&s, &r);
        // Criteria names only: never the header's value.
        assert_eq!(out.deny.as_ref().unwrap().detail["matched"], json!(["header:user-agent"]));
        assert!(!serde_json::to_string(&out.deny.unwrap().detail).unwrap().contains("sqlmap"));
        // Non-UTF-8 values are matched as bytes.
        let s = one(r"{headers: {x-probe: '\xff\xfe'}}");
        assert!(hits(&s, &req().header("x-probe", b"a\xff\xfeb")));
        assert!(!hits(&s, &req().header("x-probe", b"a\xffb")));
        let s = one(r"{headers: {x-probe: 'sqlmap'}}");
        assert!(hits(&s, &req().header("x-probe", b"\xc3(sqlmap\xff")));
        // Several headers: all must be present and match.
        let s = one(r"{headers: {x-a: '^1$', x-b: '^2$'}}");
        assert!(hits(&s, &req().header("x-a", b"1").header("x-b", b"2")));
        assert!(!hits(&s, &req().header("x-a", b"1")));
        assert!(!hits(&s, &req().header("x-a", b"1").header("x-b", b"3")));
        // Unicode is off: (?i) and \w are ASCII only; `.` matches any byte.
        let s = one(r"{headers: {x-a: '(?i)^\w+$'}}");
        assert!(hits(&s, &req().header("x-a", b"Ab_9")));
        assert!(!hits(&s, &req().header("x-a", "\u{e9}".as_bytes())));
        let s = one(r"{headers: {x-a: '^..$'}}");
        assert!(hits(&s, &req().header("x-a", "\u{e9}".as_bytes())));
    }

    #[test]
    fn query_regex_sees_raw_and_decoded_query() {
        let s = one(r"{query_regex: '(?i)union\s+select'}");
        for (q, hit) in [
            ("id=1 UNION SELECT 1", true),
            ("id=1%20union%20select%201", true),
            ("id=1+union+select+1", true),
            ("id=1%2520union%2520select", false), // decoded once, like the upstream does
            ("id=1&sort=name", false),
            ("id=%zzunion%09select", true),
        ] {
            assert_eq!(hits(&s, &Req { query: Some(q), ..req() }), hit, "{q}");
        }
        assert!(!hits(&s, &req()));
        let (_, out) = run(&s, &Req { query: Some("q=union+select+password"), ..req() });
        let detail = serde_json::to_string(&out.deny.unwrap().detail).unwrap();
        assert_eq!(detail, r#"{"matched":["query_regex"]}"#);
        assert_eq!(crate::query::decode_lenient(b"a=1&b=2"), None);
        assert_eq!(crate::query::decode_lenient(b"a%41+%4"), Some(b"aA %4".to_vec()));
        assert_eq!(crate::query::decode_lenient(b"%e9%"), Some(vec![0xe9, b'%']));
    }

    /// Issue 18 item 4: a rule on a parameter name sees every spelling an application reads as it.
    #[test]
    fn query_regex_sees_parameter_names_as_applications_read_them() {
        let s = one(r"{query_regex: '(^|&)debug='}");
        for q in ["debug=1", "x=1&DEBUG=1", "DeBuG=1", "debug%00x=1", "%64ebug=1", "+debug=1", "%20debug=1"] {
            assert!(hits(&s, &Req { query: Some(q), ..req() }), "{q}");
        }
        for q in ["xdebug=1", "debugx=1", "a=debug=1"] {
            assert!(!hits(&s, &Req { query: Some(q), ..req() }), "{q}");
        }
        let s = one(r"{query_regex: '(^|&)de_bug='}");
        for q in ["de.bug=1", "de+bug=1", "DE%20BUG=1", "de[bug=1", "de_bug%00=1"] {
            assert!(hits(&s, &Req { query: Some(q), ..req() }), "{q}");
        }
    }

    #[test]
    fn all_criteria_must_match() {
        let s = snap(
            "  - id: all\n    match:\n      client_ips: [192.0.2.0/24]\n      routes: [api]\n      methods: [POST]\n\
             \x20     paths: [/api]\n      path_regex: 'orders$'\n      headers: {x-a: 'yes'}\n      query_regex: 'dump'\n",
        );
        let full = || Req { method: "POST", query: Some("dump=1"), ..req() }.header("x-a", b"yes");
        let (_, out) = run(&s, &full());
        let deny = out.deny.unwrap();
        assert_eq!(deny.deny.code, DenyCode::IpBlocked);
        assert_eq!(
            deny.detail["matched"],
            json!(["client_ip", "route", "method", "path", "path_regex", "header:x-a", "query_regex"])
        );
        // Take away any one criterion: no match.
        assert!(!hits(&s, &full().ip("198.51.100.1")));
        assert!(!hits(&s, &Req { route: Some("web"), ..full() }));
        assert!(!hits(&s, &Req { method: "GET", ..full() }));
        assert!(!hits(&s, &full().path("/web/orders")));
        assert!(!hits(&s, &full().path("/api/orders/1")));
        assert!(!hits(&s, &Req { query: Some("x=1"), ..full() }));
        assert!(!hits(&s, &Req { method: "POST", query: Some("dump=1"), ..req() }.header("x-a", b"no")));
    }

    #[test]
    fn deny_code_depends_on_client_ips() {
        let s = one("{paths: [/admin]}");
        let (_, out) = run(&s, &req().path("/admin"));
        let d = out.deny.unwrap().deny;
        assert_eq!((d.code, d.code.as_str(), d.code.status()), (DenyCode::Forbidden, "forbidden", 403));
        let s = one("{client_ips: [192.0.2.10], paths: [/admin]}");
        let (_, out) = run(&s, &req().path("/admin"));
        assert_eq!(out.deny.unwrap().deny.code.as_str(), "ip_blocked");
    }

    fn err1(m: &str) -> String {
        let e = errors(&format!("  - id: r\n    match: {m}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap()
    }

    #[test]
    fn validation_errors_have_line_and_key_path() {
        assert_eq!(
            err1("{client_ips: [10.0.0.0/8, 10.0.0.300, '::1/64']}").split(": `").next().unwrap(),
            "4 firewall[0].match.client_ips[1]"
        );
        assert_eq!(
            errors("  - id: r\n    match:\n      client_ips:\n        - 10.0.0.0/33\n        - ok\n"),
            [
                "6 firewall[0].match.client_ips[0]: `10.0.0.0/33` is not an IP address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)",
                "7 firewall[0].match.client_ips[1]: `ok` is not an IP address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)",
            ]
        );
        assert_eq!(
            err1("{methods: [GET, 'GE T']}"),
            "4 firewall[0].match.methods[1]: `GE T` is not an HTTP method (a token like GET or POST)"
        );
        assert_eq!(
            err1("{methods: ['']}"),
            "4 firewall[0].match.methods[0]: `` is not an HTTP method (a token like GET or POST)"
        );
        assert_eq!(
            err1("{headers: {'bad header': x}}"),
            "4 firewall[0].match.headers.bad header: `bad header` is not a valid header name"
        );
        assert!(err1("{headers: {User_Agent: x}}").starts_with(
            "4 firewall[0].match.headers.User_Agent: `User_Agent` holds `_`: applications read it as `User-Agent`"
        ));
        assert_eq!(
            err1("{headers: {User-Agent: x, user-agent: y}}"),
            "4 firewall[0].match.headers.user-agent: header `user-agent` is listed twice (`User-Agent` and `user-agent`): names are case-insensitive"
        );
        assert_eq!(
            err1("{paths: [/a/../b]}"),
            "4 firewall[0].match.paths[0]: `/a/../b` is not canonical; did you mean `/b`?"
        );
        assert_eq!(
            err1("{paths: ['/%61dmin']}"),
            "4 firewall[0].match.paths[0]: `/%61dmin` is not canonical; did you mean `/admin`?"
        );
        assert_eq!(err1("{paths: [admin]}"), "4 firewall[0].match.paths[0]: `admin` must start with `/`");
        assert!(err1("{paths: [/]}").contains("`/` matches every path"));
        assert!(err1("{paths: ['/a/%2e%2e/%2e%2e/b']}")
            .starts_with("4 firewall[0].match.paths[0]: `/a/%2e%2e/%2e%2e/b` is not a valid path:"));
        assert!(err1("{routes: ['']}").ends_with("a route id cannot be empty"));
    }

    #[test]
    fn regex_errors() {
        let e = err1("{path_regex: '('}");
        assert!(e.starts_with("4 firewall[0].match.path_regex: invalid regex: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err1(r"{path_regex: '\p{L}'}");
        assert!(e.starts_with("4 firewall[0].match.path_regex: invalid regex: "), "{e}");
        assert!(e.contains("Unicode"), "{e}");
        let e = err1(r"{query_regex: '(a{1000}){1000}'}");
        assert!(e.starts_with("4 firewall[0].match.query_regex: the compiled regex exceeds the size limit"), "{e}");
        let e = err1(r"{query_regex: '(?:\w{1000}){1000}'}");
        assert!(e.contains("size limit"), "{e}");
        let e = err1(&format!("{{path_regex: '{}a{}'}}", "(".repeat(100), ")".repeat(100)));
        assert!(e.starts_with("4 firewall[0].match.path_regex: invalid regex: "), "{e}");
        let e = err1(&format!("{{path_regex: '{}'}}", "a".repeat(4097)));
        assert_eq!(e, "4 firewall[0].match.path_regex: the pattern is 4097 bytes; the limit is 4096");
        assert!(one(&format!("{{path_regex: '{}'}}", "a".repeat(4096))).firewall.len() == 1);
        let e = err1("{path_regex: ''}");
        assert_eq!(e, "4 firewall[0].match.path_regex: the pattern is empty (it would match everything)");
        let e = err1("{headers: {x-a: '[z-a]'}}");
        assert!(e.starts_with("4 firewall[0].match.headers.x-a: invalid regex: "), "{e}");
        // Unicode-mode only syntax is refused, ASCII classes are fine.
        for p in [r"(?u)\w", r"(?iu)x", r"(?u:\w)", r"a(?i)b(?su-x:c)"] {
            let e = err1(&format!("{{path_regex: '{p}'}}"));
            assert!(
                e.ends_with("`(?u)` (Unicode mode) is not available: rule regexes match bytes with Unicode off"),
                "{e}"
            );
        }
        for p in [r"(?-u)\w", r"(?i-u:x)", r"\(?u\)", r"(?P<u>x)", r"(?<u>x)", r"(?i)u"] {
            assert_eq!(one(&format!("{{path_regex: '{p}'}}")).firewall.len(), 1, "{p}");
        }
        assert_eq!(one(r"{path_regex: '(?i)^[[:alpha:]]\d\s\b'}").firewall.len(), 1);
    }

    #[test]
    fn empty_and_missing_criteria() {
        let msg = "`match` needs at least one criterion (a rule matching every request would block all traffic)";
        assert_eq!(errors("  - id: r\n    match: {}\n"), [format!("4 firewall[0].match: {msg}")]);
        assert_eq!(
            errors("  - id: r\n    mode: monitor\n"),
            ["3 firewall[0].match: a rule needs a `match` with at least one criterion"]
        );
        for key in ["client_ips", "routes", "methods", "paths"] {
            assert_eq!(
                err1(&format!("{{{key}: []}}")),
                format!("4 firewall[0].match.{key}: `{key}` is empty: remove the key or list at least one entry")
            );
        }
        assert_eq!(
            err1("{headers: {}}"),
            "4 firewall[0].match.headers: `headers` is empty: remove the key or name at least one header"
        );
        // A key with no value is an error, not an absent criterion (that would widen the rule).
        let e = errors("  - id: r\n    match:\n      client_ips:\n      paths: [/admin]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("5 firewall[0].match.client_ips: invalid type: null"), "{e:?}");
    }

    #[test]
    fn errors_in_several_rules_are_all_reported() {
        let e = errors(
            "  - id: Bad\n    match: {methods: ['?']}\n  - id: ok\n    match: {}\n  - id: fine\n    match: {client_ips: [x], paths: [y]}\n",
        );
        let paths: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "3 firewall[0].id",
                "4 firewall[0].match.methods[0]",
                "6 firewall[1].match",
                "8 firewall[2].match.client_ips[0]",
                "8 firewall[2].match.paths[0]",
            ]
        );
    }

    #[test]
    fn routes_checked_against_the_gateway() {
        let text = "version: 1\nfirewall:\n  - id: r\n    match: {routes: [api]}\n";
        let env = Env { routes: Some(&[]), assets: None, sinks: None };
        let e = compile_with(&[SourceFile::new("f.yaml", text)], &env).unwrap_err();
        assert_eq!(e[0].message, "unknown route `api`; routes in the gateway config: (none)");
    }

    #[test]
    fn shipped_rules_compile_and_match_only_attack_tools() {
        let text = include_str!("../../../config/rules/firewall.yaml");
        let s = compile(&[SourceFile::new("config/rules/firewall.yaml", text)]).unwrap();
        assert!(s.rule_count() >= 1);
        assert!(s.rules().iter().all(|r| r.mode == Mode::Enforce));
        for ua in [
            "sqlmap/1.8#stable (https://sqlmap.org)",
            "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:Port Check)",
            "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
            "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
            "Mozilla/5.0 zgrab/0.x",
        ] {
            let (flow, out) = run(&s, &req().header("user-agent", ua.as_bytes()));
            assert_eq!(flow, ControlFlow::Break(()), "{ua}");
            assert_eq!(out.deny.unwrap().deny.code, DenyCode::Forbidden);
        }
        for ua in [
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Wget/1.21",
            "PostmanRuntime/7.36",
            "nmap-fan-club-app/1.0",
        ] {
            assert!(!hits(&s, &req().header("user-agent", ua.as_bytes())), "{ua}");
        }
        assert!(!hits(&s, &req()));
    }

    fn outcome_ids(flow: ControlFlow<()>, out: &Outcome) -> (bool, Vec<String>, Option<String>) {
        let flagged = out.flagged.iter().map(|f| f.rule_id.to_string()).collect();
        (flow.is_break(), flagged, out.deny.as_ref().map(|f| f.rule_id.to_string()))
    }

    /// Both evaluations of one request.
    fn both(s: &Snapshot, r: &Req) -> [(bool, Vec<String>, Option<String>); 2] {
        let (mut a, mut b) = (Outcome::default(), Outcome::default());
        // The prefilter whatever the rule count (small sets are evaluated linearly).
        let index = Prefilter::new(&s.firewall.rules);
        let fa = s.firewall.check_with(&index, &r.view(), &mut a);
        let fb = s.firewall.check_linear(&r.view(), &mut b);
        [outcome_ids(fa, &a), outcome_ids(fb, &b)]
    }

    /// Rule bodies over small pools of values, every criterion kind and combinations of them.
    const BODIES: &[&str] = &[
        "{client_ips: [192.0.2.0/28, '2001:db8::/120']}",
        "{client_ips: ['::ffff:198.51.100.0/120']}",
        "{routes: [api]}",
        "{routes: [admin, api], methods: [DELETE]}",
        "{methods: [post, PUT]}",
        "{paths: [/api, /admin/x]}",
        "{paths: [/API/business/], methods: [GET]}",
        "{paths: [/admin]}",
        "{path_regex: '^/api/[^/]+/42'}",
        "{path_regex: '(?-i:/Admin)'}",
        "{headers: {user-agent: 'sqlmap|nikto'}}",
        "{headers: {user-agent: 'x', x-debug: '1'}}",
        "{headers: {x-debug: '^1$'}, routes: [api]}",
        "{query_regex: 'union\\s+select'}",
        "{query_regex: '^debug=1'}",
        "{query_regex: 'a=b', client_ips: [192.0.2.1]}",
        "{client_ips: [10.0.0.0/8], paths: [/api]}",
    ];

    fn arb_rules() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec((0..BODIES.len(), any::<bool>()), 1..24).prop_map(|v| {
            let mut text = String::new();
            for (i, (b, monitor)) in v.into_iter().enumerate() {
                let mode = if monitor { "monitor" } else { "enforce" };
                text.push_str(&format!("  - id: r{i}\n    mode: {mode}\n    match: {}\n", BODIES[b]));
            }
            text
        })
    }

    proptest::proptest! {
        /// The prefiltered evaluation gives exactly the findings, in order, and the stop of
        /// evaluating every rule in order.
        #[test]
        fn prefilter_equals_linear(
            rules in arb_rules(),
            method in proptest::sample::select(vec!["GET", "get", "POST", "DELETE", "PUT"]),
            path in proptest::sample::select(vec!["/api/business/42/orders", "/API/x", "/admin", "/Admin/x/y", "/admin/X", "/other", "/"]),
            query in proptest::option::of(proptest::sample::select(vec!["a=b", "union%20select", "DEBUG=1", "q=union+select", "x"])),
            route in proptest::option::of(proptest::sample::select(vec!["api", "admin", "other"])),
            ip in proptest::option::of(proptest::sample::select(vec!["192.0.2.1", "192.0.2.99", "::ffff:192.0.2.3", "2001:db8::5", "198.51.100.7", "10.1.1.1", "::ffff:10.0.0.1"])),
            ua in proptest::option::of(proptest::sample::select(vec!["sqlmap/1", "curl", "x"])),
            debug in proptest::option::of(proptest::sample::select(vec!["1", "0"])),
        ) {
            let s = snap(&rules);
            let mut r = Req { method, path: path.into(), query, route, ip: ip.map(|i| i.parse().unwrap()), headers: HeaderMap::new() };
            if let Some(ua) = ua {
                r = r.header("user-agent", ua.as_bytes());
            }
            if let Some(d) = debug {
                r = r.header("x-debug", d.as_bytes()).header("x-debug", b"2");
            }
            let [got, want] = both(&s, &r);
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// 10,000 rules of every kind: clean and matching requests give what the linear evaluation
    /// gives.
    #[test]
    fn ten_thousand_rules_equal_linear() {
        let mut text = String::new();
        for i in 0..10_000 {
            let m = match i % 8 {
                0 => format!("{{client_ips: [203.0.{}.0/24, '2001:db8:{i:x}::/48']}}", i % 256),
                1 => format!("{{routes: [api], methods: [DELETE], paths: [/del{i}]}}"),
                2 => format!("{{methods: [PUT], paths: [/admin{i}, /api/internal{i}]}}"),
                3 => format!("{{path_regex: '^/api/[^/]+/export{i}$'}}"),
                4 => format!("{{headers: {{user-agent: 'scanner{i}\\b'}}}}"),
                5 => format!("{{query_regex: 'sleep\\({i}\\)'}}"),
                6 => format!("{{routes: [api], headers: {{x-debug{i}: '.'}}}}"),
                _ => "{routes: [api], methods: [PATCH]}".to_string(),
            };
            let mode = if i % 3 == 0 { "monitor" } else { "enforce" };
            text.push_str(&format!("  - id: r{i}\n    mode: {mode}\n    match: {m}\n"));
        }
        let s = snap(&text);
        let clean = req().header("user-agent", b"Mozilla/5.0");
        assert_eq!(both(&s, &clean), [(false, vec![], None), (false, vec![], None)]);
        let cases = [
            req().ip("203.0.8.9"),
            req().ip("2001:db8:10::1"),
            Req { method: "PUT", ..req() }.path("/admin10/x"),
            req().path("/api/x/export3"),
            req().path("/api/x/export11"),
            req().header("user-agent", b"scanner12 scanner4 scanner20"),
            Req { query: Some("a=sleep(5)&b=sleep%2813%29"), ..req() },
            req().header("x-debug6", b"1"),
            Req { method: "PATCH", ..req() },
            Req { method: "delete", ..req() }.path("/DEL9"),
        ];
        for r in &cases {
            let [got, want] = both(&s, r);
            assert_eq!(got, want, "{} {:?}", r.path, r.query);
            assert!(!want.1.is_empty() || want.2.is_some(), "{} should match something", r.path);
        }
    }

    fn snap_with_lists(rules: &str, lists: &[(&str, &str)]) -> Result<Snapshot, Vec<String>> {
        let lists: Vec<(String, String)> = lists.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let resolver = move |r: &crate::rulefile::AssetRef| match r {
            crate::rulefile::AssetRef::List(name) => lists
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone().into_bytes())
                .ok_or("not found".to_string()),
            _ => Err("not a list".to_string()),
        };
        let env = Env { routes: None, assets: Some(&resolver), sinks: None };
        compile_with(&[SourceFile::new("fw.yaml", format!("version: 1\nfirewall:\n{rules}"))], &env)
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn client_ips_file() {
        let drop = "; Spamhaus DROP\n192.0.2.0/24 ; SBL1\n# v6\n2001:db8:bad::/48\n::ffff:198.51.100.0/120\n";
        let s = snap_with_lists(
            "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n\
             \x20 - id: both\n    mode: monitor\n    match: {client_ips: [203.0.113.5], client_ips_file: lists/drop.txt, methods: [POST]}\n",
            &[("lists/drop.txt", drop)],
        )
        .unwrap();
        assert_eq!(s.lists.len(), 1, "read once for two rules");
        let l = &s.lists[0];
        assert_eq!((l.name.as_str(), l.entries, l.ranges), ("lists/drop.txt", 3, 3));
        assert_eq!(l.rules.iter().map(|r| &**r).collect::<Vec<_>>(), ["drop", "both"]);
        assert!(s.assets.contains(&crate::rulefile::AssetRef::List("lists/drop.txt".into())));
        let (_, out) = run(&s, &req().ip("192.0.2.77"));
        assert_eq!(out.deny.as_ref().map(|d| (&*d.rule_id, d.deny.code)), Some(("drop", DenyCode::IpBlocked)));
        for member in ["::ffff:192.0.2.1", "2001:db8:bad:1::9", "198.51.100.3", "::ffff:198.51.100.3"] {
            assert!(hits(&s, &req().ip(member)), "{member}");
        }
        for other in ["192.0.3.1", "2001:db8:bae::1", "198.51.101.1"] {
            assert!(!hits(&s, &req().ip(other)), "{other}");
        }
        // Inline or file: either matches (the second rule, POST only).
        let (_, out) = run(&s, &Req { method: "POST", ..req() }.ip("203.0.113.5"));
        assert_eq!(out.flagged.iter().map(|f| &*f.rule_id).collect::<Vec<_>>(), ["both"]);
        // The list's content enters the version.
        let other = snap_with_lists(
            "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n",
            &[("lists/drop.txt", "10.0.0.0/8\n")],
        )
        .unwrap();
        let same = snap_with_lists(
            "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n",
            &[("lists/drop.txt", drop)],
        )
        .unwrap();
        assert_ne!(other.version, same.version);
    }

    #[test]
    fn client_ips_file_errors_name_file_and_line() {
        let e = snap_with_lists(
            "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n  - id: again\n    match: {client_ips_file: lists/drop.txt}\n",
            &[("lists/drop.txt", "192.0.2.0/24\n192.0.2.0/33 ; SBL2\n\nnot-an-ip\n")],
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "reported once, not per rule: {e:?}");
        assert!(e[0].starts_with("lists/drop.txt:2: firewall[0].match.client_ips_file: `192.0.2.0/33`"), "{e:?}");
        assert!(e[1].starts_with("lists/drop.txt:4: "), "{e:?}");
        let e = snap_with_lists("  - id: drop\n    match: {client_ips_file: lists/none.txt}\n", &[]).unwrap_err();
        assert_eq!(
            e,
            ["fw.yaml:4: firewall[0].match.client_ips_file: cannot read list file lists/none.txt: not found"]
        );
        let e = snap_with_lists("  - id: drop\n    match: {client_ips_file: ' '}\n", &[]).unwrap_err();
        assert!(e[0].contains("`client_ips_file` is empty"), "{e:?}");
        // No resolver (as in a bare compile): an error, never a rule that matches nothing.
        let e = errors("  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n");
        assert!(e[0].contains("cannot read list file lists/drop.txt"), "{e:?}");
    }

    #[test]
    fn firewall_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Firewall>();
    }

    proptest::proptest! {
        /// Whatever the request, checking never panics, and a finding's detail names criteria
        /// only (nothing from the request).
        #[test]
        fn check_never_panics_nor_leaks(
            method in "[A-Za-z]{0,8}",
            path in "/[a-z0-9/%._-]{0,40}",
            query in proptest::option::of("[ -~]{0,40}"),
            ua in proptest::collection::vec(0u8..=255, 0..40),
        ) {
            let s = snap(
                "  - id: a\n    mode: monitor\n    match: {query_regex: '.'}\n\
                 \x20 - id: b\n    mode: monitor\n    match: {headers: {user-agent: '.'}}\n\
                 \x20 - id: c\n    match: {methods: [GET], paths: [/a]}\n",
            );
            let mut r = Req { method: "GET", query: None, ..req() }.path(&path);
            let m: &'static str = Box::leak(method.into_boxed_str());
            r.method = m;
            r.query = query.map(|q| &*Box::leak(q.into_boxed_str()));
            if let Ok(v) = HeaderValue::from_bytes(&ua) {
                r.headers.insert("user-agent", v);
            }
            let (_, out) = run(&s, &r);
            for f in out.findings() {
                let matched = f.detail["matched"].as_array().unwrap();
                for name in matched {
                    let name = name.as_str().unwrap();
                    proptest::prop_assert!(
                        ["query_regex", "header:user-agent", "method", "path"].contains(&name),
                        "{}", name
                    );
                }
            }
        }
    }
}
