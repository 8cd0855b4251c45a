use super::*;

/// The verdict on a raw head alone, and (when framing accepts the head, as it must before
/// the guard asks) the same from the head framing parsed: the two never differ.
fn verdict(head: &str) -> Result<(), (u16, String)> {
    let of = |r: Result<(), Deny>| r.map_err(|d| (d.code.status(), d.reason.to_string()));
    let raw = of(target_authority_raw(head.as_bytes()));
    if let Ok(parsed) = framing::parse_head(head.as_bytes(), HeaderLimits::default()) {
        assert_eq!(of(target_authority(&parsed, head.as_bytes())), raw, "{head:?}");
    }
    raw
}

/// `pingora_builds` answers as building Pingora's head does, for every byte in the path and
/// in the query of an origin-form target, fragments, UTF-8, the length limit, and methods.
#[test]
fn the_cheap_target_check_agrees_with_building_the_head() {
    let builds = |m: &str, t: &str| pingora_http::RequestHeader::build(m, t.as_bytes(), None).is_ok();
    let mut targets: Vec<String> = Vec::new();
    for b in 0u8..0x80 {
        let c = char::from(b);
        targets.extend([format!("/a{c}b"), format!("/a?q={c}"), format!("/a#{c}"), format!("/{c}")]);
    }
    targets.extend(["/", "/é?é=é", "/a?b?c", "/a#b#c", "/a%zz", "/?", "/#", "/a?#"].map(String::from));
    for n in [65_533, 65_534, 65_535, 70_000] {
        targets.extend([format!("/{}", "a".repeat(n - 1)), format!("/{}#frag", "a".repeat(n - 1))]);
    }
    let mut refused = 0;
    for t in &targets {
        for m in ["GET", "POST", "PURGE", "M-SEARCH", "VERY-LONG-EXTENSION-METHOD"] {
            assert_eq!(pingora_builds(m, t), builds(m, t), "{m} {t:?}");
        }
        refused += usize::from(!builds("GET", t));
    }
    assert!(refused > 10, "the refusals are exercised too ({refused})");
}

#[test]
fn what_pingora_would_refuse_bare_is_refused_here_and_nothing_else() {
    let refused = [
        ("GET http://a.example/x HTTP/1.1\r\nhost: b.example\r\n\r\n", 400),
        ("GET http://a.example:8080/x HTTP/1.1\r\nhost: a.example\r\n\r\n", 400),
        ("GET http://u@a.example/x HTTP/1.1\r\nhost: a.example\r\n\r\n", 400),
        ("GET /x HTTP/1.1\r\nhost: u@a.example\r\n\r\n", 400),
        ("GET /x HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400),
        ("GET http://[::1/x HTTP/1.1\r\nhost: a\r\n\r\n", 400),
        ("GET /x\"<> HTTP/1.1\r\nhost: a\r\n\r\n", 400),
        ("CONNECT a.example:443 HTTP/1.1\r\nhost: a.example:443\r\n\r\n", 405),
    ];
    for (head, status) in refused {
        assert_eq!(verdict(head).map_err(|(s, _)| s), Err(status), "{head:?}");
    }
    for head in [
        "GET /x HTTP/1.1\r\nhost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\n\r\n",
        "GET http://a.example/x HTTP/1.1\r\nhost: a.example\r\n\r\n",
        "GET http://a.example/x HTTP/1.1\r\n\r\n",
        "GET /x|y{z} HTTP/1.1\r\nhost: a\r\n\r\n",
        "GET /x\"y HTTP/1.1\r\nhost: a\r\n\r\n",
        "connect /x HTTP/1.1\r\nhost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\nhost: a\r\n",
    ] {
        assert_eq!(verdict(head), Ok(()), "{head:?}");
    }
    assert_eq!(escape_request_line(b"GET /a b HTTP/1.1\r\n\r\n"), Some(b"GET /a%20b HTTP/1.1\r\n\r\n".to_vec()));
    assert_eq!(escape_request_line(b"GET /a HTTP/1.1\r\n\r\n"), None);
}
