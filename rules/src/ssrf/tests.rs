#![allow(clippy::indexing_slicing)]

use super::*;
use crate::rulefile::{compile, compile_with, Env, Snapshot, SourceFile};
use crate::verdict::Action;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::json;

fn allowlist() -> Policy {
    let hosts: Vec<String> = CORPUS_ALLOW_HOSTS.map(String::from).to_vec();
    Policy::new(Some(&hosts[..]), None).unwrap()
}

#[test]
fn the_corpus() {
    let cases = corpus();
    assert!(cases.len() > 150, "{}", cases.len());
    let (default, allow) = (Policy::default(), allowlist());
    let mut wrong = Vec::new();
    for Case { allowlist, expected, value } in &cases {
        let p = if *allowlist { &allow } else { &default };
        let got = p.verdict(value).refused.map_or("pass", Reason::as_str);
        if got != *expected {
            wrong.push(format!("{allowlist}: {value:?}: expected {expected}, got {got} ({:?})", parse_target(value)));
        }
        assert!(*expected == "pass" || Reason::parse(expected).is_some(), "unknown reason {expected}");
    }
    assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn parse_target_reads_hosts_as_clients_do() {
    let host = |v: &str| parse_target(v).unwrap().unwrap().host.unwrap();
    for v in ["http://0x7f.1/", "2130706433", "http://017700000001", "127.1", "http://127.0.0.1./", "[::ffff:7f00:1]"] {
        let h = host(v);
        assert!(h == Host::V4(Ipv4Addr::LOCALHOST) || h == Host::V6("::ffff:127.0.0.1".parse().unwrap()), "{v}: {h:?}");
    }
    assert_eq!(host("http://ExAmple.COM./x"), Host::Name("example.com".into()));
    assert_eq!(host("https://bücher.example/"), Host::Name("xn--bcher-kva.example".into()));
    assert_eq!(host("http://good@evil.example:81/"), Host::Name("evil.example".into()));
    assert_eq!(parse_target("").unwrap(), None);
    assert_eq!(parse_target("   ").unwrap(), None);
    assert_eq!(parse_target("/a/b").unwrap(), None);
    assert_eq!(parse_target("\\a").unwrap(), None);
    let t = parse_target("file:///etc/passwd").unwrap().unwrap();
    assert_eq!((t.scheme.as_str(), t.host), ("file", None));
    assert_eq!(parse_target("gopher://127.1:70/x").unwrap().unwrap().host, Some(Host::V4(Ipv4Addr::LOCALHOST)));
    assert!(parse_target("http://[::1").is_err());
}

/// Every spelling of every IPv4 address (dotted, one number in decimal, hex and octal, hex and
/// octal parts, shortened forms, a trailing dot, mapped into IPv6) is judged as the address.
#[test]
fn every_ipv4_spelling_gets_the_addresss_verdict() {
    let p = Policy::default();
    let reason = |v: &str| p.verdict(v).refused;
    let check = |n: u32| {
        let a = Ipv4Addr::from(n);
        let [b0, b1, b2, b3] = a.octets();
        let want = v4_reason(a);
        let low16 = n & 0xffff;
        let low24 = n & 0xff_ffff;
        for s in [
            format!("{a}"),
            format!("{n}"),
            format!("0x{n:x}"),
            format!("0{n:o}"),
            format!("0x{b0:x}.0x{b1:x}.0x{b2:x}.0x{b3:x}"),
            format!("0{b0:o}.0{b1:o}.0{b2:o}.0{b3:o}"),
            format!("{b0}.{b1}.{low16}"),
            format!("{b0}.{low24}"),
            format!("{a}."),
            format!("[::ffff:{a}]"),
            format!("http://user@{a}:8080/x"),
            format!("http:\\\\{a}\\x"),
        ] {
            assert_eq!(reason(&s), want, "{s} ({a})");
        }
    };
    for n in [0x7f00_0001, 0xa9fe_a9fe, 0x0a00_0001, 0x0808_0808, 0x6464_64c8, 0, u32::MAX, 0xc0a8_0101] {
        check(n);
    }
    proptest!(ProptestConfig::with_cases(300), |(n in any::<u32>())| check(n));
}

#[test]
fn ranges() {
    let r = |s: &str| ip_reason(s.parse().unwrap());
    assert_eq!(r("8.8.8.8"), None);
    assert_eq!(r("1.1.1.1"), None);
    assert_eq!(r("172.15.255.255"), None);
    assert_eq!(r("172.32.0.0"), None);
    assert_eq!(r("100.63.255.255"), None);
    assert_eq!(r("100.128.0.0"), None);
    assert_eq!(r("169.253.255.255"), None);
    assert_eq!(r("223.255.255.255"), None);
    assert_eq!(r("2606:4700::1"), None);
    assert_eq!(r("2a00:1450::1"), None);
    assert_eq!(r("::ffff:8.8.8.8"), None);
    assert_eq!(r("172.16.0.0"), Some(Reason::Private));
    assert_eq!(r("127.255.255.255"), Some(Reason::Loopback));
    assert_eq!(r("::ffff:0:7f00:1"), Some(Reason::Loopback));
    assert_eq!(r("::ffff:0:808:808"), Some(Reason::Reserved));
    assert_eq!(r("64:ff9b:1::1"), Some(Reason::Reserved));
    assert_eq!(r("100::1"), Some(Reason::Reserved));
    assert_eq!(r("fec0::1"), Some(Reason::Reserved));
    assert_eq!(r("3fff::1"), Some(Reason::Documentation));
    assert_eq!(r("fd00:ec2::254"), Some(Reason::Metadata));
    assert_eq!(r("fd00:ec2::253"), Some(Reason::UniqueLocal));
    assert_eq!(r("febf::1"), Some(Reason::LinkLocal));
    assert_eq!(r("::2"), Some(Reason::Unspecified));
    assert_eq!(r("::8.8.8.8"), Some(Reason::Reserved));
    assert_eq!(r("1::"), Some(Reason::Reserved));
    assert_eq!(r("e000::"), Some(Reason::Reserved));
}

#[test]
fn long_values_schemes_and_allowlist_entries() {
    let p = Policy::default();
    let long = format!("https://example.com/{}", "a".repeat(MAX_VALUE_LEN));
    assert_eq!(p.verdict(&long).refused, Some(Reason::TooLong));
    assert_eq!(p.verdict("wss://example.com/").refused, Some(Reason::Scheme));
    let ws = Policy::new(None, Some(&["wss".to_string(), "HTTPS".to_string()][..])).unwrap();
    assert_eq!(ws.verdict("wss://example.com/").refused, None);
    assert_eq!(ws.verdict("https://example.com/").refused, None);
    assert_eq!(ws.verdict("http://example.com/").refused, Some(Reason::Scheme));
    // A bare host is read as http: not allowed by a rule without http.
    assert_eq!(ws.verdict("example.com").refused, Some(Reason::Scheme));
    for bad in [
        "127.0.0.1",
        "localhost",
        "metadata.google.internal",
        "[::1]",
        "*.localhost",
        "10.1.2.3",
        "a b",
        "",
        "*.8.8.8.8",
        "http://x",
    ] {
        assert!(Policy::new(Some(&[bad.to_string()][..]), None).is_err(), "{bad}");
    }
    assert!(Policy::new(Some(&[][..]), None).is_err());
    assert!(Policy::new(None, Some(&["ht tp".to_string()][..])).is_err());
    let ip = Policy::new(Some(&["8.8.8.8".to_string(), "2606:4700::1111".to_string()][..]), None).unwrap();
    assert_eq!(ip.verdict("http://134744072/").refused, None);
    assert_eq!(ip.verdict("http://[::ffff:8.8.8.8]/").refused, None);
    assert_eq!(ip.verdict("http://[2606:4700:0::1111]/").refused, None);
    assert_eq!(ip.verdict("http://8.8.4.4/").refused, Some(Reason::HostNotAllowed));
    // The detail's scheme and host class.
    let v = p.verdict("HTTP://user:pw@169.254.169.254/");
    assert_eq!((v.scheme.as_deref(), v.host_class), (Some("http"), Some("ipv4")));
}

#[test]
fn what_scan_mode_treats_as_a_url() {
    for yes in [
        "http://x",
        "HTTPS://x",
        "http:\\\\x",
        "gopher:x",
        "file:/etc/passwd",
        "custom://x",
        "//x",
        "\\\\x",
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "169.254.169.254/latest",
        "10.0.0.1:8080",
        "[::1]",
        "[::1]:80/x",
        "::1",
        "fe80::1%eth0",
        "localhost",
        "localhost:3000",
        "metadata.google.internal",
        "１２７.０.０.１",
    ] {
        assert!(looks_like_url(yes), "{yes}");
    }
    for no in [
        "",
        "x",
        "0",
        "2130706433",
        "42",
        "hello world",
        "a@b.example",
        "2024-01-01",
        "1.5",
        "12:30",
        "note: x",
        "/path",
    ] {
        let got = looks_like_url(no);
        // `1.5` is an IPv4 address to a URL parser (1.0.0.5): reading it as one is fine.
        if no != "1.5" {
            assert!(!got, "{no}");
        }
    }
}

// ---- The rule section, through compile and check. ----

fn snap(rules: &str) -> Snapshot {
    let text = format!("version: 1\nssrf:\n{rules}");
    match compile(&[SourceFile::new("ssrf.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    }
}

fn errors(rules: &str) -> Vec<String> {
    let text = format!("version: 1\nssrf:\n{rules}");
    compile(&[SourceFile::new("ssrf.yaml", text)])
        .unwrap_err()
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect()
}

struct Req {
    query: Option<String>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    too_large: bool,
    route: Option<&'static str>,
}

fn req() -> Req {
    Req { query: None, headers: HeaderMap::new(), body: None, too_large: false, route: Some("api") }
}

impl Req {
    fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
    fn header(mut self, name: &'static str, v: &str) -> Self {
        self.headers.append(name, HeaderValue::from_str(v).unwrap());
        self
    }
    fn body(mut self, b: &str) -> Self {
        self.body = Some(b.as_bytes().to_vec());
        self
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: "POST",
            path: "/api/hooks",
            query: self.query.as_deref(),
            host: Some("app.example.com"),
            route: self.route,
            channel: None,
            client_ip: None,
            headers: &self.headers,
        }
    }
    fn input(&self) -> BodyInput<'_> {
        match (&self.body, self.too_large) {
            (_, true) => BodyInput::TooLarge,
            (Some(b), _) => BodyInput::Bytes(b),
            (None, _) => BodyInput::NotBuffered,
        }
    }
}

fn run(s: &Snapshot, r: &Req) -> (ControlFlow<()>, Outcome) {
    let mut out = Outcome::default();
    let flow = s.ssrf.check(&r.view(), r.input(), &mut out);
    (flow, out)
}

/// The deny's detail, or `None` when the request passes.
fn denied(s: &Snapshot, r: &Req) -> Option<Value> {
    let (flow, out) = run(s, r);
    assert_eq!(flow.is_break(), out.deny.is_some());
    out.deny.map(|f| {
        assert_eq!(f.deny.code, DenyCode::SsrfBlocked);
        assert_eq!(f.event, EventType::SsrfBlock);
        assert_eq!(f.deny.reason, f.detail["reason"].as_str().unwrap());
        Value::Object(f.detail)
    })
}

const PARAMS: &str =
    "  - id: hooks\n    params: [url, callback]\n    fields: [url, /hooks/target]\n    headers: [x-callback-url]\n";

#[test]
fn query_params_every_occurrence_and_spelling() {
    let s = snap(PARAMS);
    assert_eq!(denied(&s, &req().query("url=https%3A%2F%2Fexample.com%2F&x=http://127.0.0.1")), None);
    assert_eq!(
        denied(&s, &req().query("url=http%3A%2F%2F169.254.169.254%2Flatest")),
        Some(json!({"reason": "metadata", "source": "query", "param": "url", "scheme": "http", "host_class": "ipv4"}))
    );
    for q in [
        "url=https://example.com&url=http://127.1",
        "URL=http://127.1",
        "u%72l=http://127.1",
        "callback=http://127.1",
        "x=1;url=http://127.1",
        "url=http://127.1%00",
        "url=http:%2F%2F127.1",
        "url%00x=http://127.1",
    ] {
        let d = denied(&s, &req().query(q)).unwrap_or_else(|| panic!("{q} passed"));
        assert!(["loopback", "unparsable"].contains(&d["reason"].as_str().unwrap()), "{q}: {d}");
    }
    // Array syntax and broken escapes on the name cannot be read as one value: refused.
    for q in ["url[]=https://example.com", "url[0]=x", "ur%zzl=x", "url=%zz"] {
        assert_eq!(denied(&s, &req().query(q)).unwrap()["reason"], "unparsable", "{q}");
    }
}

#[test]
fn headers_form_and_json_fields() {
    let s = snap(PARAMS);
    let d = denied(&s, &req().header("x-callback-url", "http://[::1]/")).unwrap();
    assert_eq!(
        d,
        json!({"reason": "loopback", "source": "header", "param": "x-callback-url", "scheme": "http", "host_class": "ipv6"})
    );
    assert_eq!(denied(&s, &req().header("x-callback-url", "https://example.com/")), None);
    assert_eq!(denied(&s, &req().header("x-other", "http://127.1/")), None);

    // Form body.
    assert_eq!(denied(&s, &req().body("url=https%3A%2F%2Fexample.com&n=1")), None);
    let d = denied(&s, &req().body("a=1&URL=http%3A%2F%2F10.0.0.1%2F")).unwrap();
    assert_eq!(
        (d["source"].as_str(), d["param"].as_str(), d["reason"].as_str()),
        (Some("form"), Some("url"), Some("private"))
    );

    // JSON body: a plain name is the top-level member (case-insensitively), a pointer anything;
    // a string anywhere inside an array or object there counts.
    assert_eq!(denied(&s, &req().body(r#"{"url": "https://example.com", "other": "http://127.1"}"#)), None);
    for b in [
        r#"{"url": "http://127.1"}"#,
        r#"{"URL": "http://127.1"}"#,
        r#" {"url": ["https://example.com", "http://127.1"]}"#,
        r#"{"url": {"primary": "http://127.1"}}"#,
        r#"{"hooks": {"target": "http://127.1"}}"#,
        r#"{"hooks": {"target": ["x", {"deep": "\\\\127.0.0.1"}]}}"#,
        r#"{"url": "http:\/\/127.1"}"#,
        r#"{"url": "http://\u0031\u0032\u0037.1"}"#,
    ] {
        let d = denied(&s, &req().body(b)).unwrap_or_else(|| panic!("{b} passed"));
        assert_eq!((d["source"].as_str(), d["reason"].as_str()), (Some("json"), Some("loopback")), "{b}");
    }
    // Duplicate members (parsers disagree on which wins), invalid JSON, an over-cap body.
    for b in [
        r#"{"url": "https://example.com", "url": "http://127.1"}"#,
        r#"{"url": "https://example.com", "URL": "x"}"#,
        r#"{"url": "#,
    ] {
        assert_eq!(denied(&s, &req().body(b)).unwrap()["reason"], "unparsable", "{b}");
    }
    let mut big = req();
    big.too_large = true;
    assert_eq!(denied(&s, &big).unwrap()["reason"], "body_too_large");
    // Numbers, nulls and empty bodies hold no target.
    assert_eq!(denied(&s, &req().body(r#"{"url": 2130706433, "hooks": null}"#)), None);
    assert_eq!(denied(&s, &req().body("")), None);
}

#[test]
fn the_detail_never_holds_the_value_or_the_host() {
    let s = snap(PARAMS);
    for (r, secret) in [
        (req().query("url=http%3A%2F%2Fadmin%3As3cr3t%40169.254.169.254%2F"), "s3cr3t"),
        (req().header("x-callback-url", "http://token-abc@metadata.google.internal/"), "token-abc"),
        (req().body(r#"{"url": "gopher://key-xyz@127.0.0.1:6379/_"}"#), "key-xyz"),
    ] {
        let d = denied(&s, &r).unwrap().to_string();
        for leak in [secret, "169.254", "metadata.google", "127.0.0.1", "6379"] {
            assert!(!d.contains(leak), "{d} leaks {leak}");
        }
    }
    // An attacker's parameter name is bounded and printable.
    let s = snap("  - id: all\n    scan: all_urls\n");
    let name = format!("{}%0A%1B", "n".repeat(100));
    let d = denied(&s, &req().query(&format!("{name}=http://127.1"))).unwrap();
    let p = d["param"].as_str().unwrap();
    assert!(p.len() <= 64 && p.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{p:?}");
}

#[test]
fn scan_mode_and_allowlist() {
    let s = snap("  - id: all\n    scan: all_urls\n");
    assert_eq!(denied(&s, &req().query("id=0&n=2130706433&q=hello&next=https://example.com")), None);
    assert_eq!(denied(&s, &req().body(r#"{"a": [1, "x", {"b": "https://example.com"}], "c": "10 apples"}"#)), None);
    let d = denied(&s, &req().query("a=1&redirect=http%3A%2F%2F127.1")).unwrap();
    assert_eq!((d["param"].as_str(), d["reason"].as_str()), (Some("redirect"), Some("loopback")));
    let d = denied(&s, &req().body(r#"{"a": [1, {"b~c/d": "169.254.169.254/latest"}]}"#)).unwrap();
    assert_eq!((d["param"].as_str(), d["reason"].as_str()), (Some("/a/1/b~0c~1d"), Some("metadata")));
    let d = denied(&s, &req().body("x=1&target=file%3A%2F%2F%2Fetc%2Fpasswd")).unwrap();
    assert_eq!((d["source"].as_str(), d["reason"].as_str()), (Some("form"), Some("scheme_not_allowed")));
    // Headers are only read when named: Referer and Origin carry the gateway's own URL.
    assert_eq!(denied(&s, &req().header("referer", "http://localhost:8080/")), None);

    let s = snap("  - id: out\n    params: [url]\n    allow_hosts: [example.com, '*.example.org']\n");
    assert_eq!(denied(&s, &req().query("url=https://EXAMPLE.com./x")), None);
    assert_eq!(denied(&s, &req().query("url=https://a.b.example.org/")), None);
    let d = denied(&s, &req().query("url=https://ex%D0%B0mple.com/")).unwrap();
    assert_eq!((d["reason"].as_str(), d["host_class"].as_str()), (Some("host_not_allowed"), Some("name")));
    assert_eq!(denied(&s, &req().query("url=https://example.org/")).unwrap()["reason"], "host_not_allowed");
    assert_eq!(denied(&s, &req().query("url=http://127.1/")).unwrap()["reason"], "loopback");
}

#[test]
fn monitor_routes_order_and_body_needs() {
    let s = snap(
        "  - id: watch\n    mode: monitor\n    severity: critical\n    scan: all_urls\n    body_max_bytes: 100\n  - id: api-only\n    routes: [api]\n    params: [url]\n",
    );
    let (flow, out) = run(&s, &req().query("url=http://10.1.1.1"));
    assert!(flow.is_break());
    assert_eq!(out.flagged.len(), 1);
    assert_eq!(out.flagged[0].action(), Action::Flagged);
    assert_eq!(out.flagged[0].severity, Severity::Critical);
    assert_eq!(&*out.flagged[0].rule_id, "watch");
    assert_eq!(out.deny.as_ref().map(|f| &*f.rule_id), Some("api-only"));
    let mut other = req().query("url=http://10.1.1.1");
    other.route = Some("web");
    let (flow, out) = run(&s, &other);
    assert!(flow.is_continue());
    assert_eq!(out.flagged.len(), 1);
    assert!(out.deny.is_none());
    // Only body rules that apply ask for the body; the largest cap wins.
    assert_eq!(s.ssrf.body_needed(&req().view()), Some(100));
    let s = snap("  - id: q\n    params: [url]\n  - id: f\n    routes: [api]\n    fields: [url]\n");
    assert_eq!(s.ssrf.body_needed(&req().view()), Some(MAX_BODY_MAX_BYTES));
    assert_eq!(s.ssrf.body_needed(&other.view()), None);
    assert_eq!(s.ssrf.len(), 2);
    assert!(!s.ssrf.is_empty());
}

#[test]
fn compile_errors() {
    let cases = [
        ("  - id: a\n", "ssrf[0]: a rule needs somewhere to look"),
        ("  - id: a\n    params: []\n", "ssrf[0].params: `params` is empty"),
        ("  - id: a\n    params: ['a&b']\n", "ssrf[0].params[0]: `a&b` is not a valid query parameter name"),
        ("  - id: a\n    fields: ['/a/~2']\n", "ssrf[0].fields[0]: `/a/~2` is not a JSON pointer"),
        ("  - id: a\n    headers: ['bad header']\n", "ssrf[0].headers[0]: "),
        ("  - id: a\n    scan: everything\n", "ssrf[0].scan: unknown variant `everything`"),
        (
            "  - id: a\n    params: [u]\n    allow_hosts: [localhost]\n",
            "ssrf[0].allow_hosts[0]: `localhost` is an internal target (loopback)",
        ),
        ("  - id: a\n    params: [u]\n    allow_hosts: []\n", "ssrf[0].allow_hosts: `allow_hosts` is empty"),
        ("  - id: a\n    params: [u]\n    schemes: ['h t']\n", "ssrf[0].schemes[0]: `h t` is not a URL scheme"),
        (
            "  - id: a\n    params: [u]\n    body_max_bytes: 10\n",
            "ssrf[0].body_max_bytes: `body_max_bytes` only applies",
        ),
        (
            "  - id: a\n    fields: [u]\n    body_max_bytes: 70000\n",
            "ssrf[0].body_max_bytes: `body_max_bytes` must be between 1 and 65536",
        ),
        ("  - id: a\n    params: [u]\n    mode: block\n", "ssrf[0].mode: unknown variant `block`"),
        ("  - id: a\n    parms: [u]\n", "ssrf[0].parms: unknown field `parms`"),
    ];
    for (rules, want) in cases {
        let e = errors(rules);
        assert!(e.iter().any(|m| m.starts_with(want)), "{rules}: {e:?}");
    }
    let routes = ["api"];
    let env = Env { routes: Some(&routes), assets: None, sinks: None };
    let text = "version: 1\nssrf:\n  - id: a\n    routes: [apx]\n    params: [u]\n";
    let e = compile_with(&[SourceFile::new("s.yaml", text)], &env).unwrap_err();
    assert_eq!(e[0].path, "ssrf[0].routes[0]");
    // Listed with its kind.
    let s = snap(PARAMS);
    assert_eq!(s.rule("hooks").map(|r| r.kind), Some("ssrf"));
}

proptest! {
    /// Any mix of URL syntax: no panic, an allowlist only narrows what passes, and what passes
    /// has no internal target.
    #[test]
    fn arbitrary_values_hang_together(v in "[a-fA-F0-9xX:/\\\\@.%\\[\\]#?_ lhtpsocmg-]{0,40}") {
        let d = Policy::default().verdict(&v);
        let a = allowlist().verdict(&v);
        let _ = looks_like_url(&v);
        prop_assert_ne!(d.refused, Some(Reason::HostNotAllowed));
        if a.refused.is_none() {
            prop_assert_eq!(d.refused, None);
        }
        if d.refused.is_none() {
            if let Ok(Some(Target { host: Some(h), .. })) = parse_target(&v) {
                let why = match &h {
                    Host::V4(ip) => ip_reason((*ip).into()),
                    Host::V6(ip) => ip_reason((*ip).into()),
                    Host::Name(n) => name_reason(n),
                };
                prop_assert_eq!(why, None, "{:?} passed as {:?}", v, h);
            }
        }
    }
}
