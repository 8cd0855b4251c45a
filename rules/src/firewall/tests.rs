use super::*;
use crate::rulefile::{compile, compile_with, Env, Snapshot, SourceFile};
use crate::verdict::Action;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

fn snap(rules: &str) -> Snapshot {
    let text = format!("version: 1\nfirewall:\n{rules}");
    match compile(&[SourceFile::new("fw.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    }
}

/// One rule `r` with the given `match` body (flow mapping).
fn one(m: &str) -> Snapshot {
    snap(&format!("  - id: r\n    match: {m}\n"))
}

/// Errors of a one-rule file, as `LINE PATH: MESSAGE`.
fn errors(rules: &str) -> Vec<String> {
    let text = format!("version: 1\nfirewall:\n{rules}");
    compile(&[SourceFile::new("fw.yaml", text)])
        .unwrap_err()
        .iter()
        .map(|e| format!("{} {}: {}", e.line, e.path, e.message))
        .collect()
}

struct Req {
    method: &'static str,
    path: String,
    query: Option<&'static str>,
    route: Option<&'static str>,
    ip: Option<IpAddr>,
    headers: HeaderMap,
}

fn req() -> Req {
    Req {
        method: "GET",
        path: "/api/business/42/orders".into(),
        query: None,
        route: Some("api"),
        ip: Some("192.0.2.10".parse().unwrap()),
        headers: HeaderMap::new(),
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: self.method,
            path: &self.path,
            query: self.query,
            host: Some("app.example.com"),
            route: self.route,
            channel: None,
            client_ip: self.ip,
            headers: &self.headers,
        }
    }
    fn ip(mut self, ip: &str) -> Self {
        self.ip = Some(ip.parse().unwrap());
        self
    }
    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.headers.append(name, HeaderValue::from_bytes(value).unwrap());
        self
    }
    fn path(mut self, p: &str) -> Self {
        self.path = p.into();
        self
    }
}

fn run(s: &Snapshot, r: &Req) -> (ControlFlow<()>, Outcome) {
    let mut out = Outcome::default();
    let flow = s.firewall.check(&r.view(), &mut out);
    (flow, out)
}

fn hits(s: &Snapshot, r: &Req) -> bool {
    !run(s, r).1.is_clean()
}

#[test]
fn enforce_denies_and_stops() {
    let s = snap("  - id: a\n    match: {methods: [DELETE]}\n  - id: b\n    match: {methods: [DELETE]}\n");
    let r = Req { method: "DELETE", ..req() };
    let (flow, out) = run(&s, &r);
    assert_eq!(flow, ControlFlow::Break(()));
    let f = out.deny.as_ref().unwrap();
    assert_eq!(&*f.rule_id, "a");
    assert_eq!(f.event, EventType::FirewallBlock);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.action(), Action::Blocked);
    assert_eq!(f.deny.code, DenyCode::Forbidden);
    assert_eq!(f.deny.reason, "firewall");
    assert_eq!(serde_json::Value::Object(f.detail.clone()), json!({"matched": ["method"]}));
    assert!(out.flagged.is_empty());
    let (flow, out) = run(&s, &req());
    assert_eq!(flow, ControlFlow::Continue(()));
    assert!(out.is_clean());
}

#[test]
fn monitor_flags_and_continues_to_the_next_rule() {
    let s = snap(
        "  - id: watch\n    mode: monitor\n    severity: critical\n    match: {client_ips: [192.0.2.0/24]}\n\
             \x20 - id: block\n    match: {client_ips: [192.0.2.10]}\n\
             \x20 - id: never-reached\n    mode: monitor\n    match: {methods: [GET]}\n",
    );
    let (flow, out) = run(&s, &req());
    assert_eq!(flow, ControlFlow::Break(()));
    assert_eq!(out.flagged.len(), 1);
    let flagged = &out.flagged[0];
    assert_eq!((&*flagged.rule_id, flagged.mode, flagged.severity), ("watch", Mode::Monitor, Severity::Critical));
    assert_eq!(flagged.action(), Action::Flagged);
    assert_eq!(flagged.deny.code, DenyCode::IpBlocked);
    let deny = out.deny.as_ref().unwrap();
    assert_eq!((&*deny.rule_id, deny.deny.code), ("block", DenyCode::IpBlocked));
    assert_eq!(deny.deny.code.status(), 403);

    // Monitor only: everything is flagged, nothing is denied, the request goes on.
    let s = snap("  - id: a\n    mode: monitor\n    match: {methods: [GET]}\n  - id: b\n    mode: monitor\n    match: {routes: [api]}\n");
    let (flow, out) = run(&s, &req());
    assert_eq!(flow, ControlFlow::Continue(()));
    assert!(out.deny.is_none());
    assert_eq!(out.flagged.iter().map(|f| &*f.rule_id).collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn client_ips() {
    let s = one("{client_ips: [203.0.113.0/24, 198.51.100.7, '2001:db8::/32']}");
    for (ip, hit) in [
        ("203.0.113.5", true),
        ("203.0.114.5", false),
        ("198.51.100.7", true),
        ("198.51.100.8", false),
        ("2001:db8::1", true),
        ("2001:db9::1", false),
        // IPv4-mapped IPv6 clients match IPv4 rules.
        ("::ffff:203.0.113.5", true),
        ("::ffff:198.51.100.7", true),
        ("::ffff:198.51.100.8", false),
        // IPv4-compatible (deprecated) form is not the same address.
        ("::203.0.113.5", false),
    ] {
        assert_eq!(hits(&s, &req().ip(ip)), hit, "{ip}");
    }
    // Unknown client IP never matches.
    assert!(!hits(&s, &Req { ip: None, ..req() }));
    // An IPv4-mapped rule network matches IPv4 clients too.
    let s = one("{client_ips: ['::ffff:203.0.113.0/120']}");
    assert!(hits(&s, &req().ip("203.0.113.9")));
    assert!(hits(&s, &req().ip("::ffff:203.0.113.9")));
    assert!(!hits(&s, &req().ip("203.0.112.9")));
    // Host bits in a CIDR are ignored.
    let s = one("{client_ips: [203.0.113.77/24]}");
    assert!(hits(&s, &req().ip("203.0.113.1")));
    let (_, out) = run(&s, &req().ip("203.0.113.1"));
    assert_eq!(out.deny.unwrap().detail["matched"], json!(["client_ip"]));
}

#[test]
fn routes() {
    let s = one("{routes: [api, webhooks]}");
    assert!(hits(&s, &req()));
    assert!(hits(&s, &Req { route: Some("webhooks"), ..req() }));
    assert!(!hits(&s, &Req { route: Some("apix"), ..req() }));
    assert!(!hits(&s, &Req { route: Some("ap"), ..req() }));
    assert!(!hits(&s, &Req { route: None, ..req() }));
}

#[test]
fn methods() {
    let s = one("{methods: [post, PUT]}");
    assert!(hits(&s, &Req { method: "POST", ..req() }));
    assert!(hits(&s, &Req { method: "PUT", ..req() }));
    // Compared case-insensitively: an upstream may upper-case it.
    assert!(hits(&s, &Req { method: "post", ..req() }));
    assert!(!hits(&s, &req()));
    assert!(!hits(&s, &Req { method: "POSTX", ..req() }));
}

#[test]
fn paths_are_segment_prefixes_of_the_canonical_path() {
    let s = one("{paths: [/admin, /api/internal/]}");
    for (p, hit) in [
        ("/admin", true),
        ("/admin/", true),
        ("/admin/users", true),
        ("/administrator", false),
        ("/api/internal", true),
        ("/api/internal/x", true),
        ("/api/internals", false),
        ("/x/admin", false),
        // One case policy for every path match: ASCII case is ignored.
        ("/ADMIN", true),
        ("/Admin/users", true),
        ("/API/Internal/x", true),
        ("/api/INTERNAL", true),
        ("/Api/internal/", true),
        ("/ADMINISTRATOR", false),
        ("/API/INTERNALS", false),
    ] {
        assert_eq!(hits(&s, &req().path(p)), hit, "{p}");
    }
    // A rule written in upper case matches lower case too.
    let upper = one("{paths: [/API/Internal]}");
    for p in ["/api/internal", "/api/internal/x", "/API/INTERNAL/x"] {
        assert!(hits(&upper, &req().path(p)), "{p}");
    }
    assert!(!hits(&upper, &req().path("/api/internals")));
    // The view carries the canonical path: every encoded or dotted spelling of /admin arrives
    // as /admin (the gateway canonicalises once, before any check).
    for raw in ["/%61dmin", "/%61%64%6D%69%6E/x", "//admin", "/x/../admin", "/./admin/.", "/api/../admin"] {
        let canonical = canon::canonicalize(raw.as_bytes()).unwrap();
        assert!(hits(&s, &req().path(&canonical)), "{raw} -> {canonical}");
    }
}

#[test]
fn path_regex() {
    let s = one(r"{path_regex: '^/api/[^/]+/export$'}");
    assert!(hits(&s, &req().path("/api/v1/export")));
    assert!(!hits(&s, &req().path("/api/v1/export/x")));
    assert!(!hits(&s, &req().path("/api/export")));
    // Case-insensitive, like every path match.
    for p in ["/API/v1/EXPORT", "/Api/V1/Export", "/api/X/export"] {
        assert!(hits(&s, &req().path(p)), "{p}");
    }
    // ... unless the pattern explicitly opts a group out.
    let exact = one(r"{path_regex: '^/api/[^/]+/(?-i:export)$'}");
    assert!(hits(&exact, &req().path("/API/x/export")));
    assert!(!hits(&exact, &req().path("/api/x/EXPORT")));
    let (_, out) = run(&s, &req().path("/api/v1/export"));
    assert_eq!(out.deny.unwrap().detail["matched"], json!(["path_regex"]));
    // Non-ASCII arrives percent-encoded in the canonical path.
    let s = one(r"{path_regex: '%C3%A9'}");
    let canonical = canon::canonicalize("/caf\u{e9}".as_bytes()).unwrap();
    assert!(hits(&s, &req().path(&canonical)));
}

#[test]
fn headers() {
    let s = one(r"{headers: {User-Agent: '(?i)sqlmap|nikto'}}");
    assert!(hits(&s, &req().header("user-agent", b"sqlmap/1.8#stable")));
    assert!(hits(&s, &req().header("user-agent", b"Mozilla/5.00 (NIKTO/2.5)")));
    assert!(!hits(&s, &req().header("user-agent", b"curl/8.5")));
    // Missing header never matches.
    assert!(!hits(&s, &req()));
    // Repeated header: any value matches.
    let r = req().header("user-agent", b"curl/8.5").header("user-agent", b"sqlmap/1.8");
    assert!(hits(&s, &r));
    let (_, out) = run(&s, &r);
    // Criteria names only: never the header's value.
    assert_eq!(out.deny.as_ref().unwrap().detail["matched"], json!(["header:user-agent"]));
    assert!(!serde_json::to_string(&out.deny.unwrap().detail).unwrap().contains("sqlmap"));
    // Non-UTF-8 values are matched as bytes.
    let s = one(r"{headers: {x-probe: '\xff\xfe'}}");
    assert!(hits(&s, &req().header("x-probe", b"a\xff\xfeb")));
    assert!(!hits(&s, &req().header("x-probe", b"a\xffb")));
    let s = one(r"{headers: {x-probe: 'sqlmap'}}");
    assert!(hits(&s, &req().header("x-probe", b"\xc3(sqlmap\xff")));
    // Several headers: all must be present and match.
    let s = one(r"{headers: {x-a: '^1$', x-b: '^2$'}}");
    assert!(hits(&s, &req().header("x-a", b"1").header("x-b", b"2")));
    assert!(!hits(&s, &req().header("x-a", b"1")));
    assert!(!hits(&s, &req().header("x-a", b"1").header("x-b", b"3")));
    // Unicode is off: (?i) and \w are ASCII only; `.` matches any byte.
    let s = one(r"{headers: {x-a: '(?i)^\w+$'}}");
    assert!(hits(&s, &req().header("x-a", b"Ab_9")));
    assert!(!hits(&s, &req().header("x-a", "\u{e9}".as_bytes())));
    let s = one(r"{headers: {x-a: '^..$'}}");
    assert!(hits(&s, &req().header("x-a", "\u{e9}".as_bytes())));
}

#[test]
fn query_regex_sees_raw_and_decoded_query() {
    let s = one(r"{query_regex: '(?i)union\s+select'}");
    for (q, hit) in [
        ("id=1 UNION SELECT 1", true),
        ("id=1%20union%20select%201", true),
        ("id=1+union+select+1", true),
        ("id=1%2520union%2520select", false), // decoded once, like the upstream does
        ("id=1&sort=name", false),
        ("id=%zzunion%09select", true),
    ] {
        assert_eq!(hits(&s, &Req { query: Some(q), ..req() }), hit, "{q}");
    }
    assert!(!hits(&s, &req()));
    let (_, out) = run(&s, &Req { query: Some("q=union+select+password"), ..req() });
    let detail = serde_json::to_string(&out.deny.unwrap().detail).unwrap();
    assert_eq!(detail, r#"{"matched":["query_regex"]}"#);
    assert_eq!(crate::query::decode_lenient(b"a=1&b=2"), None);
    assert_eq!(crate::query::decode_lenient(b"a%41+%4"), Some(b"aA %4".to_vec()));
    assert_eq!(crate::query::decode_lenient(b"%e9%"), Some(vec![0xe9, b'%']));
}

/// Issue 18 item 4: a rule on a parameter name sees every spelling an application reads as it.
#[test]
fn query_regex_sees_parameter_names_as_applications_read_them() {
    let s = one(r"{query_regex: '(^|&)debug='}");
    for q in ["debug=1", "x=1&DEBUG=1", "DeBuG=1", "debug%00x=1", "%64ebug=1", "+debug=1", "%20debug=1"] {
        assert!(hits(&s, &Req { query: Some(q), ..req() }), "{q}");
    }
    for q in ["xdebug=1", "debugx=1", "a=debug=1"] {
        assert!(!hits(&s, &Req { query: Some(q), ..req() }), "{q}");
    }
    let s = one(r"{query_regex: '(^|&)de_bug='}");
    for q in ["de.bug=1", "de+bug=1", "DE%20BUG=1", "de[bug=1", "de_bug%00=1"] {
        assert!(hits(&s, &Req { query: Some(q), ..req() }), "{q}");
    }
}

#[test]
fn all_criteria_must_match() {
    let s = snap(
        "  - id: all\n    match:\n      client_ips: [192.0.2.0/24]\n      routes: [api]\n      methods: [POST]\n\
             \x20     paths: [/api]\n      path_regex: 'orders$'\n      headers: {x-a: 'yes'}\n      query_regex: 'dump'\n",
    );
    let full = || Req { method: "POST", query: Some("dump=1"), ..req() }.header("x-a", b"yes");
    let (_, out) = run(&s, &full());
    let deny = out.deny.unwrap();
    assert_eq!(deny.deny.code, DenyCode::IpBlocked);
    assert_eq!(
        deny.detail["matched"],
        json!(["client_ip", "route", "method", "path", "path_regex", "header:x-a", "query_regex"])
    );
    // Take away any one criterion: no match.
    assert!(!hits(&s, &full().ip("198.51.100.1")));
    assert!(!hits(&s, &Req { route: Some("web"), ..full() }));
    assert!(!hits(&s, &Req { method: "GET", ..full() }));
    assert!(!hits(&s, &full().path("/web/orders")));
    assert!(!hits(&s, &full().path("/api/orders/1")));
    assert!(!hits(&s, &Req { query: Some("x=1"), ..full() }));
    assert!(!hits(&s, &Req { method: "POST", query: Some("dump=1"), ..req() }.header("x-a", b"no")));
}

#[test]
fn deny_code_depends_on_client_ips() {
    let s = one("{paths: [/admin]}");
    let (_, out) = run(&s, &req().path("/admin"));
    let d = out.deny.unwrap().deny;
    assert_eq!((d.code, d.code.as_str(), d.code.status()), (DenyCode::Forbidden, "forbidden", 403));
    let s = one("{client_ips: [192.0.2.10], paths: [/admin]}");
    let (_, out) = run(&s, &req().path("/admin"));
    assert_eq!(out.deny.unwrap().deny.code.as_str(), "ip_blocked");
}

fn err1(m: &str) -> String {
    let e = errors(&format!("  - id: r\n    match: {m}\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

#[test]
fn validation_errors_have_line_and_key_path() {
    assert_eq!(
        err1("{client_ips: [10.0.0.0/8, 10.0.0.300, '::1/64']}").split(": `").next().unwrap(),
        "4 firewall[0].match.client_ips[1]"
    );
    assert_eq!(
        errors("  - id: r\n    match:\n      client_ips:\n        - 10.0.0.0/33\n        - ok\n"),
        [
            "6 firewall[0].match.client_ips[0]: `10.0.0.0/33` is not an IP address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)",
            "7 firewall[0].match.client_ips[1]: `ok` is not an IP address or CIDR (like 203.0.113.0/24 or 2001:db8::/32)",
        ]
    );
    assert_eq!(
        err1("{methods: [GET, 'GE T']}"),
        "4 firewall[0].match.methods[1]: `GE T` is not an HTTP method (a token like GET or POST)"
    );
    assert_eq!(
        err1("{methods: ['']}"),
        "4 firewall[0].match.methods[0]: `` is not an HTTP method (a token like GET or POST)"
    );
    assert_eq!(
        err1("{headers: {'bad header': x}}"),
        "4 firewall[0].match.headers.bad header: `bad header` is not a valid header name"
    );
    assert!(err1("{headers: {User_Agent: x}}").starts_with(
        "4 firewall[0].match.headers.User_Agent: `User_Agent` holds `_`: applications read it as `User-Agent`"
    ));
    assert_eq!(
        err1("{headers: {User-Agent: x, user-agent: y}}"),
        "4 firewall[0].match.headers.user-agent: header `user-agent` is listed twice (`User-Agent` and `user-agent`): names are case-insensitive"
    );
    assert_eq!(
        err1("{paths: [/a/../b]}"),
        "4 firewall[0].match.paths[0]: `/a/../b` is not canonical; did you mean `/b`?"
    );
    assert_eq!(
        err1("{paths: ['/%61dmin']}"),
        "4 firewall[0].match.paths[0]: `/%61dmin` is not canonical; did you mean `/admin`?"
    );
    assert_eq!(err1("{paths: [admin]}"), "4 firewall[0].match.paths[0]: `admin` must start with `/`");
    assert!(err1("{paths: [/]}").contains("`/` matches every path"));
    assert!(err1("{paths: ['/a/%2e%2e/%2e%2e/b']}")
        .starts_with("4 firewall[0].match.paths[0]: `/a/%2e%2e/%2e%2e/b` is not a valid path:"));
    assert!(err1("{routes: ['']}").ends_with("a route id cannot be empty"));
}

#[test]
fn regex_errors() {
    let e = err1("{path_regex: '('}");
    assert!(e.starts_with("4 firewall[0].match.path_regex: invalid regex: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = err1(r"{path_regex: '\p{L}'}");
    assert!(e.starts_with("4 firewall[0].match.path_regex: invalid regex: "), "{e}");
    assert!(e.contains("Unicode"), "{e}");
    let e = err1(r"{query_regex: '(a{1000}){1000}'}");
    assert!(e.starts_with("4 firewall[0].match.query_regex: the compiled regex exceeds the size limit"), "{e}");
    let e = err1(r"{query_regex: '(?:\w{1000}){1000}'}");
    assert!(e.contains("size limit"), "{e}");
    let e = err1(&format!("{{path_regex: '{}a{}'}}", "(".repeat(100), ")".repeat(100)));
    assert!(e.starts_with("4 firewall[0].match.path_regex: invalid regex: "), "{e}");
    let e = err1(&format!("{{path_regex: '{}'}}", "a".repeat(4097)));
    assert_eq!(e, "4 firewall[0].match.path_regex: the pattern is 4097 bytes; the limit is 4096");
    assert!(one(&format!("{{path_regex: '{}'}}", "a".repeat(4096))).firewall.len() == 1);
    let e = err1("{path_regex: ''}");
    assert_eq!(e, "4 firewall[0].match.path_regex: the pattern is empty (it would match everything)");
    let e = err1("{headers: {x-a: '[z-a]'}}");
    assert!(e.starts_with("4 firewall[0].match.headers.x-a: invalid regex: "), "{e}");
    // Unicode-mode only syntax is refused, ASCII classes are fine.
    for p in [r"(?u)\w", r"(?iu)x", r"(?u:\w)", r"a(?i)b(?su-x:c)"] {
        let e = err1(&format!("{{path_regex: '{p}'}}"));
        assert!(
            e.ends_with("`(?u)` (Unicode mode) is not available: rule regexes match bytes with Unicode off"),
            "{e}"
        );
    }
    for p in [r"(?-u)\w", r"(?i-u:x)", r"\(?u\)", r"(?P<u>x)", r"(?<u>x)", r"(?i)u"] {
        assert_eq!(one(&format!("{{path_regex: '{p}'}}")).firewall.len(), 1, "{p}");
    }
    assert_eq!(one(r"{path_regex: '(?i)^[[:alpha:]]\d\s\b'}").firewall.len(), 1);
}

#[test]
fn empty_and_missing_criteria() {
    let msg = "`match` needs at least one criterion (a rule matching every request would block all traffic)";
    assert_eq!(errors("  - id: r\n    match: {}\n"), [format!("4 firewall[0].match: {msg}")]);
    assert_eq!(
        errors("  - id: r\n    mode: monitor\n"),
        ["3 firewall[0].match: a rule needs a `match` with at least one criterion"]
    );
    for key in ["client_ips", "routes", "methods", "paths"] {
        assert_eq!(
            err1(&format!("{{{key}: []}}")),
            format!("4 firewall[0].match.{key}: `{key}` is empty: remove the key or list at least one entry")
        );
    }
    assert_eq!(
        err1("{headers: {}}"),
        "4 firewall[0].match.headers: `headers` is empty: remove the key or name at least one header"
    );
    // A key with no value is an error, not an absent criterion (that would widen the rule).
    let e = errors("  - id: r\n    match:\n      client_ips:\n      paths: [/admin]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("5 firewall[0].match.client_ips: invalid type: null"), "{e:?}");
}

#[test]
fn errors_in_several_rules_are_all_reported() {
    let e = errors(
        "  - id: Bad\n    match: {methods: ['?']}\n  - id: ok\n    match: {}\n  - id: fine\n    match: {client_ips: [x], paths: [y]}\n",
    );
    let paths: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "3 firewall[0].id",
            "4 firewall[0].match.methods[0]",
            "6 firewall[1].match",
            "8 firewall[2].match.client_ips[0]",
            "8 firewall[2].match.paths[0]",
        ]
    );
}

#[test]
fn routes_checked_against_the_gateway() {
    let text = "version: 1\nfirewall:\n  - id: r\n    match: {routes: [api]}\n";
    let env = Env { routes: Some(&[]), assets: None, sinks: None };
    let e = compile_with(&[SourceFile::new("f.yaml", text)], &env).unwrap_err();
    assert_eq!(e[0].message, "unknown route `api`; routes in the gateway config: (none)");
}

#[test]
fn shipped_rules_compile_and_match_only_attack_tools() {
    let text = include_str!("../../../config/rules/firewall.yaml");
    let s = compile(&[SourceFile::new("config/rules/firewall.yaml", text)]).unwrap();
    assert!(s.rule_count() >= 1);
    assert!(s.rules().iter().all(|r| r.mode == Mode::Enforce));
    for ua in [
        "sqlmap/1.8#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:Port Check)",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
        "Mozilla/5.0 zgrab/0.x",
    ] {
        let (flow, out) = run(&s, &req().header("user-agent", ua.as_bytes()));
        assert_eq!(flow, ControlFlow::Break(()), "{ua}");
        assert_eq!(out.deny.unwrap().deny.code, DenyCode::Forbidden);
    }
    for ua in [
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Wget/1.21",
        "PostmanRuntime/7.36",
        "nmap-fan-club-app/1.0",
    ] {
        assert!(!hits(&s, &req().header("user-agent", ua.as_bytes())), "{ua}");
    }
    assert!(!hits(&s, &req()));
}

fn outcome_ids(flow: ControlFlow<()>, out: &Outcome) -> (bool, Vec<String>, Option<String>) {
    let flagged = out.flagged.iter().map(|f| f.rule_id.to_string()).collect();
    (flow.is_break(), flagged, out.deny.as_ref().map(|f| f.rule_id.to_string()))
}

/// Both evaluations of one request.
fn both(s: &Snapshot, r: &Req) -> [(bool, Vec<String>, Option<String>); 2] {
    let (mut a, mut b) = (Outcome::default(), Outcome::default());
    // The prefilter whatever the rule count (small sets are evaluated linearly).
    let index = Prefilter::new(&s.firewall.rules);
    let fa = s.firewall.check_with(&index, &r.view(), &mut a);
    let fb = s.firewall.check_linear(&r.view(), &mut b);
    [outcome_ids(fa, &a), outcome_ids(fb, &b)]
}

/// Rule bodies over small pools of values, every criterion kind and combinations of them.
const BODIES: &[&str] = &[
    "{client_ips: [192.0.2.0/28, '2001:db8::/120']}",
    "{client_ips: ['::ffff:198.51.100.0/120']}",
    "{routes: [api]}",
    "{routes: [admin, api], methods: [DELETE]}",
    "{methods: [post, PUT]}",
    "{paths: [/api, /admin/x]}",
    "{paths: [/API/business/], methods: [GET]}",
    "{paths: [/admin]}",
    "{path_regex: '^/api/[^/]+/42'}",
    "{path_regex: '(?-i:/Admin)'}",
    "{headers: {user-agent: 'sqlmap|nikto'}}",
    "{headers: {user-agent: 'x', x-debug: '1'}}",
    "{headers: {x-debug: '^1$'}, routes: [api]}",
    "{query_regex: 'union\\s+select'}",
    "{query_regex: '^debug=1'}",
    "{query_regex: 'a=b', client_ips: [192.0.2.1]}",
    "{client_ips: [10.0.0.0/8], paths: [/api]}",
];

fn arb_rules() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec((0..BODIES.len(), any::<bool>()), 1..24).prop_map(|v| {
        let mut text = String::new();
        for (i, (b, monitor)) in v.into_iter().enumerate() {
            let mode = if monitor { "monitor" } else { "enforce" };
            text.push_str(&format!("  - id: r{i}\n    mode: {mode}\n    match: {}\n", BODIES[b]));
        }
        text
    })
}

proptest::proptest! {
    /// The prefiltered evaluation gives exactly the findings, in order, and the stop of
    /// evaluating every rule in order.
    #[test]
    fn prefilter_equals_linear(
        rules in arb_rules(),
        method in proptest::sample::select(vec!["GET", "get", "POST", "DELETE", "PUT"]),
        path in proptest::sample::select(vec!["/api/business/42/orders", "/API/x", "/admin", "/Admin/x/y", "/admin/X", "/other", "/"]),
        query in proptest::option::of(proptest::sample::select(vec!["a=b", "union%20select", "DEBUG=1", "q=union+select", "x"])),
        route in proptest::option::of(proptest::sample::select(vec!["api", "admin", "other"])),
        ip in proptest::option::of(proptest::sample::select(vec!["192.0.2.1", "192.0.2.99", "::ffff:192.0.2.3", "2001:db8::5", "198.51.100.7", "10.1.1.1", "::ffff:10.0.0.1"])),
        ua in proptest::option::of(proptest::sample::select(vec!["sqlmap/1", "curl", "x"])),
        debug in proptest::option::of(proptest::sample::select(vec!["1", "0"])),
    ) {
        let s = snap(&rules);
        let mut r = Req { method, path: path.into(), query, route, ip: ip.map(|i| i.parse().unwrap()), headers: HeaderMap::new() };
        if let Some(ua) = ua {
            r = r.header("user-agent", ua.as_bytes());
        }
        if let Some(d) = debug {
            r = r.header("x-debug", d.as_bytes()).header("x-debug", b"2");
        }
        let [got, want] = both(&s, &r);
        proptest::prop_assert_eq!(got, want);
    }
}

/// 10,000 rules of every kind: clean and matching requests give what the linear evaluation
/// gives.
#[test]
fn ten_thousand_rules_equal_linear() {
    let mut text = String::new();
    for i in 0..10_000 {
        let m = match i % 8 {
            0 => format!("{{client_ips: [203.0.{}.0/24, '2001:db8:{i:x}::/48']}}", i % 256),
            1 => format!("{{routes: [api], methods: [DELETE], paths: [/del{i}]}}"),
            2 => format!("{{methods: [PUT], paths: [/admin{i}, /api/internal{i}]}}"),
            3 => format!("{{path_regex: '^/api/[^/]+/export{i}$'}}"),
            4 => format!("{{headers: {{user-agent: 'scanner{i}\\b'}}}}"),
            5 => format!("{{query_regex: 'sleep\\({i}\\)'}}"),
            6 => format!("{{routes: [api], headers: {{x-debug{i}: '.'}}}}"),
            _ => "{routes: [api], methods: [PATCH]}".to_string(),
        };
        let mode = if i % 3 == 0 { "monitor" } else { "enforce" };
        text.push_str(&format!("  - id: r{i}\n    mode: {mode}\n    match: {m}\n"));
    }
    let s = snap(&text);
    let clean = req().header("user-agent", b"Mozilla/5.0");
    assert_eq!(both(&s, &clean), [(false, vec![], None), (false, vec![], None)]);
    let cases = [
        req().ip("203.0.8.9"),
        req().ip("2001:db8:10::1"),
        Req { method: "PUT", ..req() }.path("/admin10/x"),
        req().path("/api/x/export3"),
        req().path("/api/x/export11"),
        req().header("user-agent", b"scanner12 scanner4 scanner20"),
        Req { query: Some("a=sleep(5)&b=sleep%2813%29"), ..req() },
        req().header("x-debug6", b"1"),
        Req { method: "PATCH", ..req() },
        Req { method: "delete", ..req() }.path("/DEL9"),
    ];
    for r in &cases {
        let [got, want] = both(&s, r);
        assert_eq!(got, want, "{} {:?}", r.path, r.query);
        assert!(!want.1.is_empty() || want.2.is_some(), "{} should match something", r.path);
    }
}

fn snap_with_lists(rules: &str, lists: &[(&str, &str)]) -> Result<Snapshot, Vec<String>> {
    let lists: Vec<(String, String)> = lists.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let resolver = move |r: &crate::rulefile::AssetRef| match r {
        crate::rulefile::AssetRef::List(name) => {
            lists.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone().into_bytes()).ok_or("not found".to_string())
        }
        _ => Err("not a list".to_string()),
    };
    let env = Env { routes: None, assets: Some(&resolver), sinks: None };
    compile_with(&[SourceFile::new("fw.yaml", format!("version: 1\nfirewall:\n{rules}"))], &env)
        .map_err(|e| e.iter().map(ToString::to_string).collect())
}

#[test]
fn client_ips_file() {
    let drop = "; Spamhaus DROP\n192.0.2.0/24 ; SBL1\n# v6\n2001:db8:bad::/48\n::ffff:198.51.100.0/120\n";
    let s = snap_with_lists(
        "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n\
             \x20 - id: both\n    mode: monitor\n    match: {client_ips: [203.0.113.5], client_ips_file: lists/drop.txt, methods: [POST]}\n",
        &[("lists/drop.txt", drop)],
    )
    .unwrap();
    assert_eq!(s.lists.len(), 1, "read once for two rules");
    let l = &s.lists[0];
    assert_eq!((l.name.as_str(), l.entries, l.ranges), ("lists/drop.txt", 3, 3));
    assert_eq!(l.rules.iter().map(|r| &**r).collect::<Vec<_>>(), ["drop", "both"]);
    assert!(s.assets.contains(&crate::rulefile::AssetRef::List("lists/drop.txt".into())));
    let (_, out) = run(&s, &req().ip("192.0.2.77"));
    assert_eq!(out.deny.as_ref().map(|d| (&*d.rule_id, d.deny.code)), Some(("drop", DenyCode::IpBlocked)));
    for member in ["::ffff:192.0.2.1", "2001:db8:bad:1::9", "198.51.100.3", "::ffff:198.51.100.3"] {
        assert!(hits(&s, &req().ip(member)), "{member}");
    }
    for other in ["192.0.3.1", "2001:db8:bae::1", "198.51.101.1"] {
        assert!(!hits(&s, &req().ip(other)), "{other}");
    }
    // Inline or file: either matches (the second rule, POST only).
    let (_, out) = run(&s, &Req { method: "POST", ..req() }.ip("203.0.113.5"));
    assert_eq!(out.flagged.iter().map(|f| &*f.rule_id).collect::<Vec<_>>(), ["both"]);
    // The list's content enters the version.
    let other = snap_with_lists(
        "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n",
        &[("lists/drop.txt", "10.0.0.0/8\n")],
    )
    .unwrap();
    let same =
        snap_with_lists("  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n", &[("lists/drop.txt", drop)])
            .unwrap();
    assert_ne!(other.version, same.version);
}

#[test]
fn client_ips_file_errors_name_file_and_line() {
    let e = snap_with_lists(
        "  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n  - id: again\n    match: {client_ips_file: lists/drop.txt}\n",
        &[("lists/drop.txt", "192.0.2.0/24\n192.0.2.0/33 ; SBL2\n\nnot-an-ip\n")],
    )
    .unwrap_err();
    assert_eq!(e.len(), 2, "reported once, not per rule: {e:?}");
    assert!(e[0].starts_with("lists/drop.txt:2: firewall[0].match.client_ips_file: `192.0.2.0/33`"), "{e:?}");
    assert!(e[1].starts_with("lists/drop.txt:4: "), "{e:?}");
    let e = snap_with_lists("  - id: drop\n    match: {client_ips_file: lists/none.txt}\n", &[]).unwrap_err();
    assert_eq!(e, ["fw.yaml:4: firewall[0].match.client_ips_file: cannot read list file lists/none.txt: not found"]);
    let e = snap_with_lists("  - id: drop\n    match: {client_ips_file: ' '}\n", &[]).unwrap_err();
    assert!(e[0].contains("`client_ips_file` is empty"), "{e:?}");
    // No resolver (as in a bare compile): an error, never a rule that matches nothing.
    let e = errors("  - id: drop\n    match: {client_ips_file: lists/drop.txt}\n");
    assert!(e[0].contains("cannot read list file lists/drop.txt"), "{e:?}");
}

#[test]
fn firewall_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Firewall>();
}

proptest::proptest! {
    /// Whatever the request, checking never panics, and a finding's detail names criteria
    /// only (nothing from the request).
    #[test]
    fn check_never_panics_nor_leaks(
        method in "[A-Za-z]{0,8}",
        path in "/[a-z0-9/%._-]{0,40}",
        query in proptest::option::of("[ -~]{0,40}"),
        ua in proptest::collection::vec(0u8..=255, 0..40),
    ) {
        let s = snap(
            "  - id: a\n    mode: monitor\n    match: {query_regex: '.'}\n\
                 \x20 - id: b\n    mode: monitor\n    match: {headers: {user-agent: '.'}}\n\
                 \x20 - id: c\n    match: {methods: [GET], paths: [/a]}\n",
        );
        let mut r = Req { method: "GET", query: None, ..req() }.path(&path);
        let m: &'static str = Box::leak(method.into_boxed_str());
        r.method = m;
        r.query = query.map(|q| &*Box::leak(q.into_boxed_str()));
        if let Ok(v) = HeaderValue::from_bytes(&ua) {
            r.headers.insert("user-agent", v);
        }
        let (_, out) = run(&s, &r);
        for f in out.findings() {
            let matched = f.detail["matched"].as_array().unwrap();
            for name in matched {
                let name = name.as_str().unwrap();
                proptest::prop_assert!(
                    ["query_regex", "header:user-agent", "method", "path"].contains(&name),
                    "{}", name
                );
            }
        }
    }
}
