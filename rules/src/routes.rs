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
mod tests;
