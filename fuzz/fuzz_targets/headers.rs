//! Header-value normalisers: `routes::normalize_host` (idempotent, lowercase, no port, no
//! trailing dot), `request_id::is_well_formed`, `framing::parse_content_length` (against a naive
//! reference) and `client_ip::TrustedProxies::client_ip` over `X-Forwarded-For` values (the answer
//! is the peer or one of the listed addresses; an untrusted peer is always the answer); and the
//! header-name spellings of `overrides` (`same_name`, `is_alternate_spelling`, `odd_character`,
//! `rule_header_refusal`, `is_method_override`, `is_always_stripped`, `method_override`): the
//! documented normalisation, and no spelling of a header the gateway strips that is not itself
//! stripped.
//!
//! Input: any bytes; as text (lossy) it is the Host value, the request id, the Content-Length
//! value, and the `X-Forwarded-For` values (one per line); its first three lines are header names
//! and its lines method-override values; its bytes also respell one of the always-stripped
//! headers (the first byte picks it, each next byte changes one of its characters).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::client_ip::TrustedProxies;
use portcullis_rules::framing::parse_content_length;
use portcullis_rules::overrides::{
    is_alternate_spelling, is_always_stripped, is_method_override, method_override, odd_character, rule_header_refusal,
    same_name, FORWARDING, METHOD_OVERRIDE, URL_OVERRIDE,
};
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

/// The normalisation `same_name` documents: ASCII case ignored, every byte but a letter or a
/// digit read as `-` (per byte: header names are ASCII, `http` refuses any other).
fn cgi_name(name: &str) -> Vec<u8> {
    name.bytes().map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_lowercase() } else { b'-' }).collect()
}

/// The methods a method-override header may name (docs/configuration.md).
const OVERRIDABLE: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One of the headers always stripped (or a method override), picked by `data[0]`, respelled by
/// the next bytes: a letter's case flipped by the low bit, a `-` replaced by the byte when it is
/// ASCII but not a letter or digit (`_`, `.`, `~`, …).
fn respelled(data: &[u8]) -> Option<(&'static str, String)> {
    let all: Vec<&'static str> = FORWARDING.iter().chain(URL_OVERRIDE).chain(METHOD_OVERRIDE).copied().collect();
    let (&pick, changes) = data.split_first()?;
    let h = all[usize::from(pick) % all.len()];
    let spelled = h
        .bytes()
        .enumerate()
        .map(|(i, c)| match (c, changes.get(i)) {
            (b'-', Some(&b)) if b.is_ascii() && !b.is_ascii_alphanumeric() => char::from(b),
            (c, Some(&b)) if b & 1 == 1 => char::from(c.to_ascii_uppercase()),
            (c, _) => char::from(c),
        })
        .collect();
    Some((h, spelled))
}

/// The header-name properties of one name.
fn one_name(a: &str) {
    assert!(same_name(a, a), "same_name not reflexive on {a:?}");
    let odd = a.bytes().any(|b| !(b.is_ascii_alphanumeric() || b == b'-'));
    assert_eq!(is_alternate_spelling(a), odd, "is_alternate_spelling({a:?})");
    assert_eq!(odd_character(a), a.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')));
    assert_eq!(is_method_override(a), METHOD_OVERRIDE.contains(&a.to_ascii_lowercase().as_str()), "{a:?}");
    if is_method_override(a) {
        assert!(!odd, "a method override is an ordinary name");
    }
    // Every spelling of a method override that is not one is an alternate spelling (stripped
    // unless a route allows that very name).
    if METHOD_OVERRIDE.iter().any(|m| same_name(m, a)) && !is_method_override(a) {
        assert!(odd, "{a:?} is a spelling of a method override but neither one nor an alternate spelling");
    }
    let stripped = FORWARDING.iter().chain(URL_OVERRIDE).any(|h| cgi_name(h) == cgi_name(a));
    assert_eq!(is_always_stripped(a), stripped, "is_always_stripped({a:?})");
    match rule_header_refusal(a) {
        None => assert!(!odd || http::HeaderName::from_bytes(a.as_bytes()).is_err(), "{a:?} not refused"),
        Some(why) => {
            assert!(odd && http::HeaderName::from_bytes(a.as_bytes()).is_ok(), "{a:?} refused: {why}");
            // The name it suggests instead is the ordinary spelling of the same name.
            let suggested = why.rsplit_once("write `").and_then(|(_, s)| s.strip_suffix('`')).expect("a suggestion");
            assert!(same_name(a, suggested) && !is_alternate_spelling(suggested), "{a:?}: {why}");
            assert_eq!(suggested, suggested.to_ascii_lowercase());
            assert!(http::HeaderName::from_bytes(suggested.as_bytes()).is_ok(), "{a:?}: {why}");
        }
    }
}

/// `overrides`: the header-name spellings and the method-override values.
fn header_names(data: &[u8], text: &str) {
    let mut lines = text.lines();
    let names: Vec<&str> = (0..3).map(|_| lines.next().unwrap_or("")).collect();
    let (a, b, c) = (names[0], names[1], names[2]);
    for n in &names {
        one_name(n);
    }
    assert_eq!(same_name(a, b), same_name(b, a), "same_name not symmetric on {a:?} {b:?}");
    assert_eq!(same_name(a, b), cgi_name(a) == cgi_name(b), "same_name({a:?}, {b:?}) vs reference");
    if same_name(a, b) && same_name(b, c) {
        assert!(same_name(a, c), "same_name not transitive on {a:?} {b:?} {c:?}");
    }
    // Two names a CGI/WSGI/PHP stack merges are the same header, or one of them holds an odd
    // character (and is stripped by default).
    if same_name(a, b) && !a.eq_ignore_ascii_case(b) {
        assert!(is_alternate_spelling(a) || is_alternate_spelling(b), "{a:?} and {b:?} merge unseen");
    }

    // An alternate spelling of a header the gateway always strips is always stripped too, in
    // any case (the gateway sees names lowercased).
    if let Some((h, spelled)) = respelled(data) {
        one_name(&spelled);
        assert!(same_name(h, &spelled), "{spelled:?} is not a spelling of {h}");
        if !spelled.eq_ignore_ascii_case(h) {
            assert!(is_alternate_spelling(&spelled), "{spelled:?} respells {h} unseen");
        }
        if !METHOD_OVERRIDE.contains(&h) {
            assert!(is_always_stripped(&spelled), "{spelled:?}, a spelling of {h}, is not always stripped");
            assert!(is_always_stripped(&spelled.to_ascii_lowercase()), "{spelled:?}");
            assert!(!is_method_override(&spelled));
        } else {
            assert_eq!(is_method_override(&spelled), !is_alternate_spelling(&spelled), "{spelled:?}");
        }
    }

    // Method-override values (one per line): `Ok(None)` for none; one known method (trimmed,
    // any case) everywhere is that method; two known methods are ambiguous; anything else is
    // refused.
    let values: Vec<&[u8]> = data.split(|&b| b == b'\n').take(64).collect();
    let known: Vec<Option<&str>> = values
        .iter()
        .map(|v| OVERRIDABLE.iter().copied().find(|m| m.as_bytes().eq_ignore_ascii_case(v.trim_ascii())))
        .collect();
    let got = method_override(values.iter().copied());
    match got {
        Ok(None) => assert!(values.is_empty()),
        Ok(Some(m)) => assert!(known.iter().all(|k| *k == Some(m)), "{values:?} is {m}"),
        Err("ambiguous_method_override") => {
            let mut k = known.iter().flatten();
            let first = k.next().expect("a method");
            assert!(k.any(|m| m != first), "{values:?} ambiguous");
        }
        Err("bad_method_override") => assert!(known.contains(&None), "{values:?} refused"),
        Err(other) => panic!("method_override: unexpected {other}"),
    }
    if known.iter().all(Option::is_some) && !values.is_empty() {
        assert!(got.is_ok() || got == Err("ambiguous_method_override"), "{values:?}: {got:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    header_names(data, &text);

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
