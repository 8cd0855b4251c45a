//! `ipset::parse_list` (threat-feed list files, issue 25) over any bytes: no panic; errors are
//! bounded and name real lines; and an accepted list's set answers exactly as a linear scan over
//! its lines would, probed at every listed network's first and last address and their
//! neighbours (a merge or range error in the sorted-range index shows up as a disagreement).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::ipset::{parse_list, parse_net, unmap_net};
use std::net::IpAddr;

const MAX_ERRORS: usize = 10;

/// The neighbours of an address (one below, one above), where they exist.
fn around(ip: IpAddr) -> Vec<IpAddr> {
    match ip {
        IpAddr::V4(v) => {
            let n = u32::from(v);
            [n.checked_sub(1), Some(n), n.checked_add(1)].into_iter().flatten().map(|x| IpAddr::V4(x.into())).collect()
        }
        IpAddr::V6(v) => {
            let n = u128::from(v);
            [n.checked_sub(1), Some(n), n.checked_add(1)].into_iter().flatten().map(|x| IpAddr::V6(x.into())).collect()
        }
    }
}

/// An address as the set compares it: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&c| c == b'\n').count();
    let parsed = match parse_list(data, MAX_ERRORS) {
        Err(errors) => {
            assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS, "{} errors", errors.len());
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
            }
            return;
        }
        Ok(p) => p,
    };
    // The oracle: every line's network, as the parser reads a line (comments after # or ;).
    let text = String::from_utf8_lossy(data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data)).into_owned();
    let nets: Vec<_> = text
        .split('\n')
        .filter_map(|l| parse_net(l.split(['#', ';']).next().unwrap_or_default().trim()))
        .map(unmap_net)
        .collect();
    assert_eq!(nets.len(), parsed.entries, "entries counted");
    let listed = |ip: IpAddr| nets.iter().any(|n| n.contains(&canonical(ip)));
    for n in nets.iter().take(64) {
        for probe in around(n.network()).into_iter().chain(around(n.broadcast())) {
            assert_eq!(parsed.set.contains(probe), listed(probe), "{probe} against {n}");
        }
    }
});
