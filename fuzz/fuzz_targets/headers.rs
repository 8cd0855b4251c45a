//! Header-value normalisers: `routes::normalize_host` (idempotent, lowercase, no port, no
//! trailing dot), `request_id::is_well_formed`, `framing::parse_content_length` (against a naive
//! reference) and `client_ip::TrustedProxies::client_ip` over `X-Forwarded-For` values (the answer
//! is the peer or one of the listed addresses; an untrusted peer is always the answer).
//!
//! Input: any bytes; as text (lossy) it is the Host value, the request id, the Content-Length
//! value, and the `X-Forwarded-For` values (one per line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::client_ip::TrustedProxies;
use portcullis_rules::framing::parse_content_length;
use portcullis_rules::request_id::is_well_formed;
use portcullis_rules::routes::normalize_host;
use std::net::IpAddr;
use std::sync::OnceLock;

fn proxies() -> &'static TrustedProxies {
    static P: OnceLock<TrustedProxies> = OnceLock::new();
    P.get_or_init(|| {
        TrustedProxies::parse(["10.0.0.0/8", "192.168.1.1", "2001:db8::/32", "::ffff:172.16.0.0/108"])
            .expect("fixture parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some(h) = normalize_host(&text) {
        assert!(!h.is_empty() && h.len() <= 253, "host length {h:?}");
        assert_eq!(h, h.to_ascii_lowercase(), "not lowercase");
        assert!(!h.ends_with('.'), "trailing dot {h:?}");
        assert_eq!(normalize_host(&h).as_deref(), Some(h.as_str()), "normalize_host not idempotent on {text:?}");
    }

    if is_well_formed(data) {
        assert!((8..=128).contains(&data.len()));
        assert!(data.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)));
    }

    let want = (!data.is_empty() && data.len() <= 15 && data.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(data).ok()?.parse::<u64>().ok())
        .flatten();
    assert_eq!(parse_content_length(data), want, "Content-Length {text:?}");

    let xff: Vec<&str> = text.lines().collect();
    let listed: Vec<String> = xff.iter().flat_map(|v| v.split(',')).map(|s| s.trim().to_owned()).collect();
    for peer in ["10.1.2.3", "203.0.113.9", "::ffff:10.0.0.1", "2001:db8::7"] {
        let peer: IpAddr = peer.parse().expect("fixture parses");
        let got = proxies().client_ip(peer, xff.iter().copied());
        let canonical_peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        if !proxies().contains(peer) {
            assert_eq!(got, canonical_peer, "untrusted peer's X-Forwarded-For believed");
            continue;
        }
        // Something in the list (in one of its spellings: bare, `[v6]:port`, `v4:port`), or the peer.
        let spells = |item: &str| -> bool {
            let inner = item.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(v6, _)| v6);
            let no_port = item.rsplit_once(':').map(|(a, _)| a);
            [Some(item), inner, no_port].into_iter().flatten().filter_map(|s| s.parse::<IpAddr>().ok()).any(|ip| {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                ip == got
            })
        };
        assert!(got == canonical_peer || listed.iter().any(|i| spells(i)), "client {got} appears nowhere in {xff:?}");
    }
});
