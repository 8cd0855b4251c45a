//! The client's IP: the socket peer, unless the peer is a trusted proxy.
//!
//! When the peer is trusted, `X-Forwarded-For` is walked right to left, skipping trusted
//! addresses; the first untrusted address is the client. A malformed entry stops the walk and the
//! last trusted hop is used: we never believe anything to the left of garbage. An untrusted peer's
//! `X-Forwarded-For` is ignored entirely (it is spoofable).

use crate::ipset::{IpSet, IpSetBuilder};
use std::net::IpAddr;

pub use crate::ipset::parse_net;

/// The configured `trusted_proxies`: an [`IpSet`] (IPv4-mapped networks and addresses folded to
/// IPv4).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: IpSet,
}

impl TrustedProxies {
    /// Parses CIDRs (a bare address means a single host). Returns the bad entries on error.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, Vec<String>> {
        let mut nets = IpSetBuilder::default();
        let mut bad = Vec::new();
        for s in items {
            match parse_net(s) {
                Some(n) => nets.push(n),
                None => bad.push(s.to_string()),
            }
        }
        if bad.is_empty() {
            Ok(Self { nets: nets.build() })
        } else {
            Err(bad)
        }
    }

    /// True when `ip` lies in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.contains(ip)
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Resolves the client IP from the peer and every `X-Forwarded-For` value in order.
    pub fn client_ip<'a>(&self, peer: IpAddr, xff: impl DoubleEndedIterator<Item = &'a str>) -> IpAddr {
        let mut current = canonical(peer);
        if !self.contains(current) {
            return current;
        }
        for value in xff.rev() {
            for item in value.rsplit(',') {
                match parse_forwarded_ip(item) {
                    Some(ip) if self.contains(ip) => current = ip,
                    Some(ip) => return ip,
                    None => return current,
                }
            }
        }
        current
    }
}

/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` element: an address, optionally `[v6]` or `v4:port`.
fn parse_forwarded_ip(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = item.strip_prefix('[') {
        let (v6, _) = rest.split_once(']')?;
        return v6.parse::<IpAddr>().ok().map(canonical);
    }
    let (v4, port) = item.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests;
