//! IP/CIDR sets: the one compiled index every client-address match uses (firewall `client_ips`
//! and list files, the maintenance bypass CIDRs, the trusted proxies).
//!
//! Networks are turned into inclusive address ranges, sorted and merged (overlapping or adjacent
//! ranges become one), kept in two arrays per family (range starts, range ends); a lookup is a
//! binary search for the last start at or below the address and one comparison with that range's
//! end: `O(log n)`, no allocation, no hashing. Merging means a set's size is the number of
//! disjoint ranges, not of entries written: a feed listing a /16 and the /24s inside it costs one
//! range.
//!
//! Memory: 8 bytes per merged IPv4 range, 32 bytes per merged IPv6 range (plus `Vec` slack of at
//! most the same again while building; none once built). Lookups at 1M ranges, compile of 1M
//! entries: benches/README.md ("IP sets").
//!
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is one spelling of an IPv4 host: a looked-up address in
//! that form is matched as the IPv4 address, and a network lying wholly inside `::ffff:0:0/96`
//! (`::ffff:203.0.113.0/120`) is stored as the IPv4 network it denotes. A wider IPv6 network
//! (`::/0`, `::/80`) stays an IPv6 network: it never matches an IPv4 client.

use ipnet::{IpNet, Ipv4Net};
use std::net::IpAddr;

/// A compiled, immutable set of IPv4 and IPv6 networks. `Send + Sync`; cheap to share in an
/// `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

/// Disjoint, non-adjacent inclusive ranges sorted by start: `starts[i]..=ends[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges<T> {
    starts: Vec<T>,
    ends: Vec<T>,
}

impl<T: Copy + Ord> Ranges<T> {
    fn contains(&self, x: T) -> bool {
        // Number of starts <= x; the candidate range is the one before that point.
        let i = self.starts.partition_point(|&s| s <= x);
        match i.checked_sub(1).and_then(|j| self.ends.get(j)) {
            Some(&end) => x <= end,
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

/// Sorts and merges ranges; `next` is `end + 1` unless `end` is the family's last address.
fn merge<T: Copy + Ord>(mut v: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Ranges<T> {
    v.sort_unstable();
    let mut starts = Vec::with_capacity(v.len());
    let mut ends: Vec<T> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if let Some(last) = ends.last_mut() {
            // Overlapping or adjacent to the previous range: extend it.
            if next(*last).is_none_or(|n| s <= n) {
                if e > *last {
                    *last = e;
                }
                continue;
            }
        }
        starts.push(s);
        ends.push(e);
    }
    starts.shrink_to_fit();
    ends.shrink_to_fit();
    Ranges { starts, ends }
}

impl IpSet {
    /// Builds the set from networks (host bits are ignored: `10.1.2.3/8` is `10.0.0.0/8`).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut b = IpSetBuilder::default();
        for n in nets {
            b.push(n);
        }
        b.build()
    }

    /// True when `ip` lies in one of the set's networks (IPv4-mapped IPv6 matched as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    /// True when the set holds no network.
    pub fn is_empty(&self) -> bool {
        self.v4.starts.is_empty() && self.v6.starts.is_empty()
    }

    /// Number of disjoint ranges after merging (IPv4 plus IPv6): what lookups and memory scale with.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The union of several sets (ranges re-merged).
    pub fn union<'s>(sets: impl IntoIterator<Item = &'s IpSet>) -> IpSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for s in sets {
            v4.extend(s.v4.starts.iter().copied().zip(s.v4.ends.iter().copied()));
            v6.extend(s.v6.starts.iter().copied().zip(s.v6.ends.iter().copied()));
        }
        IpSet { v4: merge(v4, |x| x.checked_add(1)), v6: merge(v6, |x| x.checked_add(1)) }
    }

    /// Bytes held by the index (the arrays' capacity).
    pub fn heap_bytes(&self) -> usize {
        (self.v4.starts.capacity() + self.v4.ends.capacity()) * 4
            + (self.v6.starts.capacity() + self.v6.ends.capacity()) * 16
    }
}

/// Collects networks, then sorts and merges them once ([`IpSetBuilder::build`]).
#[derive(Debug, Default)]
pub struct IpSetBuilder {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSetBuilder {
    /// Adds one network (an IPv4-mapped IPv6 network is folded to IPv4, see the module docs).
    pub fn push(&mut self, net: IpNet) {
        match unmap_net(net) {
            IpNet::V4(n) => self.v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(n) => self.v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
        }
    }

    /// Entries pushed so far.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts and merges into the compiled set.
    pub fn build(self) -> IpSet {
        IpSet { v4: merge(self.v4, |x| x.checked_add(1)), v6: merge(self.v6, |x| x.checked_add(1)) }
    }
}

/// Parses a CIDR or a bare address (a single host), trimming surrounding whitespace.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An IPv4-mapped IPv6 network (`::ffff:203.0.113.0/120`) as the IPv4 network it denotes, since
/// addresses are matched in canonical (IPv4) form; every other network unchanged, host bits
/// cleared.
pub fn unmap_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.network().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
            if let Ok(n) = Ipv4Net::new(v4, len) {
                return IpNet::V4(n.trunc());
            }
        }
    }
    net.trunc()
}

/// Longest line of a list file, in bytes (a CIDR with a comment is far shorter).
pub const MAX_LIST_LINE: usize = 1024;

/// One bad line of a list file: its 1-based number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// 1-based line number.
    pub line: usize,
    /// One-line reason.
    pub message: String,
}

/// A parsed list file: the set, and how many entries it listed.
#[derive(Debug, Clone, Default)]
pub struct ParsedList {
    /// The compiled set.
    pub set: IpSet,
    /// Entries (non-comment lines) in the file.
    pub entries: usize,
}

/// Parses a list file: one IP address or CIDR per line. Blank lines are skipped; `#` starts a
/// comment anywhere on a line (FireHOL, most feeds); so does `;` (Spamhaus DROP:
/// `192.0.2.0/24 ; SBL123`). A UTF-8 byte order mark and `\r\n` line ends are accepted. Every bad
/// line is reported (at most `max_errors`, the last error then saying how many more there are):
/// a feed with one bad line is refused whole, never half-applied.
pub fn parse_list(bytes: &[u8], max_errors: usize) -> Result<ParsedList, Vec<ListError>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut b = IpSetBuilder::default();
    let mut errors = Vec::new();
    let mut bad = 0usize;
    for (i, raw) in bytes.split(|&c| c == b'\n').enumerate() {
        let line = i + 1;
        let problem = match parse_list_line(raw) {
            Ok(Some(net)) => {
                b.push(net);
                continue;
            }
            Ok(None) => continue,
            Err(why) => why,
        };
        bad += 1;
        if errors.len() < max_errors {
            errors.push(ListError { line, message: problem });
        }
    }
    if bad > errors.len() {
        if let Some(last) = errors.last_mut() {
            last.message.push_str(&format!(" (and {} more bad lines)", bad - max_errors));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let entries = b.len();
    Ok(ParsedList { set: b.build(), entries })
}

/// One line: `Ok(None)` for a blank or comment line.
fn parse_list_line(raw: &[u8]) -> Result<Option<IpNet>, String> {
    if raw.len() > MAX_LIST_LINE {
        return Err(format!("the line is {} bytes; the limit is {MAX_LIST_LINE}", raw.len()));
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err("not UTF-8 text".into());
    };
    let body = text.split(['#', ';']).next().unwrap_or_default().trim();
    if body.is_empty() {
        return Ok(None);
    }
    parse_net(body).map(Some).ok_or_else(|| {
        let shown: String = body.chars().take(60).collect();
        format!("`{shown}` is not an IP address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)")
    })
}

#[cfg(test)]
mod tests;
