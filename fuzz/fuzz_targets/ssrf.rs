//! The SSRF guard's URL/host reader (`ssrf::parse_target`, `Policy::verdict`, `looks_like_url`):
//! no panic on any input, and the verdicts hang together: a value that passes has no internal
//! address or name; an allowlist only ever narrows what passes; a name is ASCII, lowercase,
//! without a trailing dot; and the rule, reading the value from a query parameter, reaches the
//! same verdict as the policy alone.
//!
//! Input: the whole input is the value (bytes that are not UTF-8 become U+FFFD, as the rule reads
//! them).
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use portcullis_rules::rulefile::{compile, SourceFile};
use portcullis_rules::ssrf::{ip_reason, looks_like_url, name_reason, parse_target, Host, Policy, Reason};
use portcullis_rules::tenant::BodyInput;
use portcullis_rules::verdict::Outcome;
use portcullis_rules::view::RequestView;
use std::sync::OnceLock;

struct Fixtures {
    default: Policy,
    allow: Policy,
    rules: portcullis_rules::rulefile::Snapshot,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let hosts = ["example.com", "*.partner.example", "bücher.example", "8.8.8.8"].map(String::from);
        let text = "version: 1\nssrf:\n  - id: r\n    params: [u]\n";
        Fixtures {
            default: Policy::default(),
            allow: Policy::new(Some(&hosts[..]), None).unwrap(),
            rules: compile(&[SourceFile::new("f.yaml", text)]).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let f = fixtures();
    let _ = looks_like_url(&value);

    let target = parse_target(&value);
    if let Ok(Some(t)) = &target {
        assert!(!t.scheme.is_empty() && !t.scheme.bytes().any(|b| b.is_ascii_uppercase()), "{t:?}");
        if let Some(Host::Name(n)) = &t.host {
            assert!(n.is_ascii() && !n.ends_with('.') && !n.bytes().any(|b| b.is_ascii_uppercase()), "{n:?}");
        }
    }

    let d = f.default.verdict(&value);
    let a = f.allow.verdict(&value);
    assert_ne!(d.refused, Some(Reason::HostNotAllowed), "no allowlist, yet host_not_allowed");
    if a.refused.is_none() {
        assert_eq!(d.refused, None, "the allowlist let {value:?} pass, the default refused it ({d:?})");
    }
    // What passes on its first reading has no internal target.
    if d.refused.is_none() {
        if let Ok(Some(t)) = &target {
            match &t.host {
                Some(Host::V4(ip)) => assert_eq!(ip_reason((*ip).into()), None, "{value:?}"),
                Some(Host::V6(ip)) => assert_eq!(ip_reason((*ip).into()), None, "{value:?}"),
                Some(Host::Name(n)) => assert_eq!(name_reason(n), None, "{value:?}"),
                None => {}
            }
        }
    }

    // Through the rule: the same value as a query parameter.
    let q: String = value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let q = format!("u={q}");
    let h = HeaderMap::new();
    let view = RequestView {
        method: "GET",
        path: "/",
        query: Some(&q),
        host: None,
        route: None,
        channel: None,
        client_ip: None,
        headers: &h,
    };
    let mut out = Outcome::default();
    let _ = f.rules.ssrf.check(&view, BodyInput::NotBuffered, &mut out);
    let got = out.deny.as_ref().map(|f| f.deny.reason.to_string());
    let want = d.refused.filter(|_| !value.is_empty()).map(|r| r.as_str().to_string());
    assert_eq!(got, want, "the rule and the policy disagree on {value:?}");
});
