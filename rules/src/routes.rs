//! Route matching: host and path prefix, on the canonical path only.
//!
//! The table is built once per config and is read-only afterwards. The most specific route wins:
//! an exact host beats a `*.suffix` wildcard (longer suffix first), which beats `*`; among routes
//! of the same host class the longest path prefix wins; ties go to the route listed first.
//! Prefixes match on segment boundaries, so `/admin` never matches `/administrator`, and ignoring
//! ASCII case (see [`crate::canon::has_prefix_ignore_case`]): many applications route `/API/x` like
//! `/api/x`, and a case variant must not fall to another route where the rules scoped to this
//! one (identity, tenant scope, firewall `routes`, channel switches) do not apply. The path
//! forwarded upstream keeps its case.
//!
//! Lookups go through an index built with the table: routes grouped by host pattern (exact hosts
//! in a hash map, `*.suffix` wildcards in another, probed once per dot of the request's host,
//! longest suffix first; then `*`), and within a group the prefixes sorted for a binary search at
//! each segment boundary of the path, longest first. The first group with a matching prefix
//! holds the winner. Cost: `O(dots in the host + segments in the path × log routes)`, whatever
//! the number of routes (benches/README.md, "Routes").

use std::collections::HashMap;

use crate::prefixes::Prefixes;

#[cfg(test)]
use crate::canon::has_prefix_ignore_case;

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host (`*`, or no `hosts:` key).
    Any,
    /// `*.example.com`: any subdomain of the suffix (not the bare suffix itself).
    Suffix(String),
    /// One exact host, lowercase, without port.
    Exact(String),
}

impl HostMatch {
    /// Parses a host pattern from config. Returns `None` for patterns that can never match.
    pub fn parse(pattern: &str) -> Option<Self> {
        let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        if p == "*" {
            return Some(Self::Any);
        }
        if let Some(rest) = p.strip_prefix("*.") {
            return valid_host(rest).then(|| Self::Suffix(format!(".{rest}")));
        }
        valid_host(&p).then_some(Self::Exact(p))
    }

    fn rank(&self, host: Option<&str>) -> Option<usize> {
        match (self, host) {
            (Self::Any, _) => Some(0),
            (Self::Suffix(s), Some(h)) => h.ends_with(s.as_str()).then_some(1 + s.len()),
            (Self::Exact(e), Some(h)) => (e == h).then_some(usize::MAX),
            _ => None,
        }
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':'))
}

/// Normalises a `Host` header value: lowercase, port and trailing dot removed. Returns `None`
/// when the value is not a plausible host (such a request only matches `*` routes).
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let rest = &raw[end + 1..];
        if !(rest.is_empty() || (rest.starts_with(':') && rest[1..].bytes().all(|b| b.is_ascii_digit()))) {
            return None;
        }
        &raw[..=end]
    } else {
        let h = match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        };
        // `:`, `[` or `]` left over are not a host (`a:1:2`, an unbracketed IPv6 address): taking
        // them as one would not even be stable (`a:1:2` → `a:1` → `a`).
        if h.contains([':', '[', ']']) {
            return None;
        }
        h
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    valid_host(&host).then_some(host)
}

/// One entry of the table.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// Host patterns; the route matches when any matches.
    pub hosts: Vec<HostMatch>,
    /// Canonical path prefix.
    pub prefix: String,
    /// What the route carries (the gateway's compiled route).
    pub value: T,
}

impl<T> Entry<T> {
    /// True when one of the entry's host patterns matches the normalised host (`None`: no
    /// usable `Host`, which only `*` matches), whichever route wins for it.
    pub fn matches_host(&self, host: Option<&str>) -> bool {
        self.hosts.iter().any(|h| h.rank(host).is_some())
    }
}

/// A compiled, read-only route table.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    index: Index,
}

/// The routes of one host group by path prefix (each prefix with the first route, in config
/// order, that has it), and the first route whose prefix is `/`.
#[derive(Debug, Clone, Default)]
struct Group {
    root: Option<usize>,
    items: Vec<(String, usize)>,
    prefixes: Prefixes<usize>,
}

impl Group {
    fn add(&mut self, prefix: &str, i: usize) {
        if prefix.trim_end_matches('/').is_empty() {
            self.root = Some(self.root.map_or(i, |r| r.min(i)));
        } else {
            self.items.push((prefix.to_string(), i));
        }
    }

    fn finish(&mut self) {
        self.prefixes = Prefixes::new(std::mem::take(&mut self.items), |first, later| *first = (*first).min(later));
    }

    /// The route with the longest prefix of `path`.
    fn find(&self, path: &str) -> Option<usize> {
        self.prefixes.matches(path).next().map(|(_, i)| *i).or(self.root)
    }
}

/// Route groups by host pattern.
#[derive(Debug, Clone, Default)]
struct Index {
    exact: HashMap<String, Group>,
    /// Keyed by the suffix with its leading dot (`.example.com`).
    suffix: HashMap<String, Group>,
    /// A suffix not starting with `.` (never made by [`HostMatch::parse`]): every byte position
    /// of the host is then probed, not only its dots.
    suffix_anywhere: bool,
    any: Group,
}

impl Index {
    fn new<T>(entries: &[Entry<T>]) -> Self {
        let mut ix = Index::default();
        for (i, e) in entries.iter().enumerate() {
            for h in &e.hosts {
                match h {
                    HostMatch::Any => ix.any.add(&e.prefix, i),
                    HostMatch::Exact(host) => ix.exact.entry(host.clone()).or_default().add(&e.prefix, i),
                    HostMatch::Suffix(sfx) => {
                        ix.suffix_anywhere |= !sfx.starts_with('.');
                        ix.suffix.entry(sfx.clone()).or_default().add(&e.prefix, i);
                    }
                }
            }
        }
        ix.any.finish();
        ix.exact.values_mut().for_each(Group::finish);
        ix.suffix.values_mut().for_each(Group::finish);
        ix
    }

    /// The winning route's index: the most specific host group with a matching prefix, the
    /// longest prefix within it.
    fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(h) = host {
            if let Some(i) = self.exact.get(h).and_then(|p| p.find(path)) {
                return Some(i);
            }
            if !self.suffix.is_empty() {
                // Longest suffix first: the leftmost start.
                let starts = h.char_indices().filter(|&(k, c)| self.suffix_anywhere || (c == '.' && k < h.len()));
                for (k, _) in starts {
                    let Some(sfx) = h.get(k..) else { continue };
                    if let Some(i) = self.suffix.get(sfx).and_then(|p| p.find(path)) {
                        return Some(i);
                    }
                }
            }
        }
        self.any.find(path)
    }
}

impl<T> RouteTable<T> {
    /// Builds the table and its index; order is config order (it breaks ties).
    pub fn new(entries: Vec<Entry<T>>) -> Self {
        let index = Index::new(&entries);
        Self { entries, index }
    }

    /// All entries in config order.
    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// The most specific route for a normalised host and a canonical path, with its index.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<(usize, &T)> {
        let i = self.index.find(host, path)?;
        self.entries.get(i).map(|e| (i, &e.value))
    }

    /// The linear scan [`RouteTable::find`] replaced: the oracle of the differential tests.
    #[cfg(test)]
    fn find_linear(&self, host: Option<&str>, path: &str) -> Option<(usize, &T)> {
        let mut best: Option<((usize, usize), usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(host_rank) = e.hosts.iter().filter_map(|h| h.rank(host)).max() else {
                continue;
            };
            if !has_prefix_ignore_case(path, &e.prefix) {
                continue;
            }
            let score = (host_rank, e.prefix.trim_end_matches('/').len());
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        let (_, i) = best?;
        self.entries.get(i).map(|e| (i, &e.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table() -> RouteTable<&'static str> {
        let any = || vec![HostMatch::Any];
        RouteTable::new(vec![
            Entry { hosts: any(), prefix: "/".into(), value: "default" },
            Entry { hosts: any(), prefix: "/api".into(), value: "api" },
            Entry { hosts: any(), prefix: "/api/webhooks/".into(), value: "webhooks" },
            Entry { hosts: vec![HostMatch::parse("admin.example.com").unwrap()], prefix: "/".into(), value: "admin" },
            Entry {
                hosts: vec![HostMatch::parse("*.example.com").unwrap()],
                prefix: "/api".into(),
                value: "tenant-api",
            },
            Entry { hosts: any(), prefix: "/api".into(), value: "shadowed" },
        ])
    }

    #[test]
    fn most_specific_wins() {
        let t = table();
        let f = |h: Option<&str>, p: &str| t.find(h, p).map(|(_, v)| *v);
        assert_eq!(f(None, "/"), Some("default"));
        assert_eq!(f(None, "/apix"), Some("default"));
        assert_eq!(f(None, "/api"), Some("api"));
        assert_eq!(f(None, "/api/x"), Some("api"));
        assert_eq!(f(None, "/api/webhooks"), Some("webhooks"));
        assert_eq!(f(None, "/api/webhooks/stripe"), Some("webhooks"));
        assert_eq!(f(Some("admin.example.com"), "/api/x"), Some("admin"));
        assert_eq!(f(Some("t1.example.com"), "/api/x"), Some("tenant-api"));
        assert_eq!(f(Some("t1.example.com"), "/other"), Some("default"));
        assert_eq!(f(Some("example.com"), "/api"), Some("api"));
        // Case variants match the same route: rules scoped to it cannot be sidestepped.
        assert_eq!(f(None, "/API/x"), Some("api"));
        assert_eq!(f(None, "/Api/WebHooks/stripe"), Some("webhooks"));
        assert_eq!(f(None, "/APIX"), Some("default"));
    }

    /// Hosts and prefixes drawn from small alphabets, so that collisions, nesting, case variants,
    /// shared prefixes and duplicate routes are frequent.
    fn arb_host() -> impl Strategy<Value = HostMatch> {
        prop_oneof![
            Just(HostMatch::Any),
            "[ab]{1,2}(\\.[ab]{1,2}){0,2}\\.test".prop_map(HostMatch::Exact),
            "[ab]{1,2}(\\.[ab]{1,2}){0,1}\\.test".prop_map(|s| HostMatch::Suffix(format!(".{s}"))),
        ]
    }

    fn arb_prefix() -> impl Strategy<Value = String> {
        "(/[aAbB%2]{1,3}){0,3}/?".prop_map(|s| if s.is_empty() { "/".to_string() } else { s })
    }

    fn arb_entries(max: usize) -> impl Strategy<Value = Vec<Entry<usize>>> {
        proptest::collection::vec((proptest::collection::vec(arb_host(), 1..3), arb_prefix()), 0..max).prop_map(|v| {
            v.into_iter().enumerate().map(|(i, (hosts, prefix))| Entry { hosts, prefix, value: i }).collect()
        })
    }

    fn arb_request_host() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[ab]{0,2}(\\.[ab]{1,2}){0,3}\\.test")
    }

    proptest! {
        /// The index picks exactly the route the linear scan picks.
        #[test]
        fn index_equals_linear_scan(
            entries in arb_entries(40),
            reqs in proptest::collection::vec((arb_request_host(), "(/[aAbB%2]{0,3}){1,5}/?"), 1..30),
        ) {
            let t = RouteTable::new(entries);
            for (host, path) in &reqs {
                prop_assert_eq!(t.find(host.as_deref(), path), t.find_linear(host.as_deref(), path), "{:?} {}", host, path);
            }
        }
    }

    /// 10,000 routes (a host and a prefix per tenant, wildcards, shared prefixes), each request
    /// answered as the linear scan answers it.
    #[test]
    fn ten_thousand_routes_equal_linear_scan() {
        let mut entries = Vec::new();
        for i in 0..10_000usize {
            let hosts = match i % 4 {
                0 => vec![HostMatch::Any],
                1 => vec![HostMatch::Exact(format!("t{}.example.com", i % 500))],
                2 => vec![HostMatch::Suffix(format!(".r{}.example.com", i % 50)), HostMatch::Any],
                _ => vec![HostMatch::Suffix(".example.com".into())],
            };
            let prefix = match i % 3 {
                0 => format!("/svc{i}/api"),
                1 => format!("/svc{}/", i % 100),
                _ => format!("/Svc{}/API/v{}", i % 1000, i % 7),
            };
            entries.push(Entry { hosts, prefix, value: i });
        }
        let t = RouteTable::new(entries);
        let mut checked = 0;
        for i in (0..12_000usize).step_by(7) {
            for host in [
                None,
                Some(format!("t{}.example.com", i % 600)),
                Some(format!("x.r{}.example.com", i % 60)),
                Some("example.com".to_string()),
                Some("other.test".to_string()),
            ] {
                for path in [
                    format!("/svc{i}/api"),
                    format!("/SVC{i}/Api/x"),
                    format!("/svc{}/x", i % 120),
                    format!("/svc{}/api/v{}/y", i % 1000, i % 8),
                    format!("/svc{i}/apix"),
                    "/".to_string(),
                ] {
                    assert_eq!(
                        t.find(host.as_deref(), &path),
                        t.find_linear(host.as_deref(), &path),
                        "{host:?} {path}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn entries_match_their_hosts_only() {
        let t = table();
        let admin = &t.entries()[3];
        assert!(admin.matches_host(Some("admin.example.com")));
        assert!(!admin.matches_host(Some("other.example.com")));
        assert!(!admin.matches_host(Some("admin.example.com.evil")));
        assert!(!admin.matches_host(None));
        let tenant = &t.entries()[4];
        assert!(tenant.matches_host(Some("t1.example.com")));
        assert!(!tenant.matches_host(Some("example.com")));
        assert!(t.entries()[0].matches_host(None));
        assert!(t.entries()[0].matches_host(Some("anything.test")));
    }

    #[test]
    fn hosts_normalise() {
        assert_eq!(normalize_host("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("evil.com/x"), None);
        assert_eq!(normalize_host("a@b"), None);
        assert_eq!(normalize_host("host:port"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(HostMatch::parse("*"), Some(HostMatch::Any));
    }

    /// Found by the `headers` fuzz target (fuzz/corpus/headers/regress-host-two-colons): a host
    /// with a colon left after the port was normalised to something that normalised again
    /// differently; an unbracketed IPv6 address came out as a fragment of itself.
    #[test]
    fn regression_fuzz_headers_host_with_colons_is_not_a_host() {
        for bad in [
            "a:1:2",
            "a:1:2:3",
            "::1",
            "2001:db8::1",
            "2001:db8::1:443",
            "a]:80",
            "a[b",
            ":80:80",
            "x.example.com:1:443",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
        // Brackets keep working, and every answer is a fixed point.
        for (raw, want) in [("[2001:db8::1]:443", "[2001:db8::1]"), ("[::1]", "[::1]"), ("Api.Test.:8080", "api.test")]
        {
            assert_eq!(normalize_host(raw).as_deref(), Some(want), "{raw:?}");
            assert_eq!(normalize_host(want).as_deref(), Some(want), "{want:?}");
        }
        assert_eq!(HostMatch::parse("bad/host"), None);
    }
}
