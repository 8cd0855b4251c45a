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
}

impl<T> RouteTable<T> {
    /// Builds the table; order is config order (it breaks ties).
    pub fn new(entries: Vec<Entry<T>>) -> Self {
        Self { entries }
    }

    /// All entries in config order.
    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// The most specific route for a normalised host and a canonical path, with its index.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<(usize, &T)> {
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
