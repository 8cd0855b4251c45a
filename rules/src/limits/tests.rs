//! Section-level tests: compile from YAML, check requests, reloads, persistence, floods.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::deny::DenyCode;
use crate::identity::{AuthMethod, Identity};
use crate::rulefile::{compile, compile_with, Env, Snapshot, SourceFile};
use crate::verdict::{Action, EventType, Mode, Severity};

const SEC: u64 = 1_000_000_000;

fn snap(text: &str) -> Snapshot {
    match compile(&[SourceFile::new("limits.yaml", format!("version: 1\n{text}"))]) {
        Ok(s) => s,
        Err(e) => panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    }
}

/// Every error as `line path: message`.
fn errors(text: &str) -> Vec<String> {
    compile(&[SourceFile::new("limits.yaml", format!("version: 1\n{text}"))])
        .unwrap_err()
        .iter()
        .map(|e| format!("{} {}: {}", e.line, e.path, e.message))
        .collect()
}

fn err1(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

struct Req {
    route: Option<&'static str>,
    ip: Option<IpAddr>,
    headers: HeaderMap,
    identity: Option<Identity>,
}

fn req(ip: &str) -> Req {
    Req { route: Some("api"), ip: Some(ip.parse().unwrap()), headers: HeaderMap::new(), identity: None }
}

impl Req {
    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.headers.append(name, HeaderValue::from_bytes(value).unwrap());
        self
    }
    fn route(mut self, r: Option<&'static str>) -> Self {
        self.route = r;
        self
    }
    fn who(mut self, method: AuthMethod, subject: &str, tenant: Option<&str>, credential: Option<&str>) -> Self {
        self.identity = Some(Identity {
            rule_id: Arc::from("id-rule"),
            method,
            subject: subject.into(),
            tenant: tenant.map(Into::into),
            roles: Vec::new(),
            session: None,
            email: None,
            credential: credential.map(Into::into),
        });
        self
    }
    fn tenant(self, tenant: &str, subject: &str) -> Self {
        self.who(AuthMethod::Jwt, subject, Some(tenant), Some("https://issuer"))
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: "GET",
            path: "/api/x",
            query: None,
            host: Some("app.example.com"),
            route: self.route,
            channel: None,
            client_ip: self.ip,
            headers: &self.headers,
        }
    }
    /// Runs `f` with this request's key input.
    fn with<T>(&self, f: impl FnOnce(&KeyInput<'_>) -> T) -> T {
        let view = self.view();
        f(&KeyInput { view: &view, identity: self.identity.as_ref() })
    }
    fn key(&self, rule: &LimitRule) -> Vec<u8> {
        let mut buf = vec![0xAA; 3];
        assert!(self.with(|i| rule.key(i, &mut buf)));
        buf
    }
    fn rate(&self, s: &Snapshot, now: u64, agg: &Aggregator) -> LimitCheck {
        self.with(|i| s.rate_limits.check(i, Now { mono_ns: now, unix_secs: 0 }, agg))
    }
    fn quota(&self, s: &Snapshot, book: &QuotaBook, unix: u64, enforcement: bool, agg: &Aggregator) -> LimitCheck {
        self.with(|i| s.quotas.check(book, i, Now { mono_ns: unix * SEC, unix_secs: unix }, enforcement, agg))
    }
}

const RUNBOOK: &str = "\
rate_limits:
  - id: per-client
    description: the runbook's 100 requests per 60 s per client
    key: [client_ip]
    rate: 100/60s
";

// ---------------------------------------------------------------------------------------------
// Compiling

#[test]
fn compiles_every_key_with_defaults() {
    let s = snap(
        "\
rate_limits:
  - id: per-client
    key: [client_ip]
    rate: 100/60s
  - id: per-tenant
    mode: monitor
    severity: warning
    routes: [api, admin]
    key: [tenant, header:X-Client-Id]
    rate: 10/s
    burst: 20
    max_keys: 5000
    ipv6_prefix: 48
quotas:
  - id: monthly
    routes: [api]
    per: subject
    limit: 100000
    period: month
    utc_offset: '+03:00'
    thresholds: [100, 80]
  - id: hourly
    limit: 5
    period: hour
",
    );
    assert_eq!(s.rule_count(), 4);
    let kinds: Vec<(&str, &str)> = s.rules().iter().map(|r| (&*r.id, r.kind)).collect();
    assert_eq!(
        kinds,
        [("per-client", "rate_limits"), ("per-tenant", "rate_limits"), ("monthly", "quotas"), ("hourly", "quotas")]
    );
    let rl = s.rate_limits.rules();
    assert_eq!(rl.len(), 2);
    assert_eq!((rl[0].mode(), rl[0].key_parts()), (Mode::Enforce, &[KeyPart::ClientIp][..]));
    let g = rl[0].store().gcra();
    assert_eq!((g.limit(), g.burst(), g.interval_ns()), (100, 100, 600_000_000));
    assert_eq!(rl[0].store().max_keys(), gcra::DEFAULT_MAX_KEYS);
    assert_eq!(rl[0].policy(), "\"per-client\";q=100;w=60");
    assert_eq!(rl[0].hash(), s.rule("per-client").unwrap().hash);
    assert_eq!(rl[1].mode(), Mode::Monitor);
    assert_eq!(rl[1].key_parts()[1], KeyPart::Header(http::HeaderName::from_static("x-client-id")));
    let g = rl[1].store().gcra();
    assert_eq!((g.limit(), g.burst(), g.interval_ns()), (10, 20, 100_000_000));
    assert_eq!(rl[1].store().max_keys(), 5000);
    assert_eq!(rl[1].policy(), "\"per-tenant\";q=10;w=1");

    let q = s.quotas.rules();
    assert_eq!(q.len(), 2);
    assert_eq!((q[0].per(), q[0].limit(), q[0].period()), (Per::Subject, 100_000, Period::Month));
    assert_eq!((q[0].utc_offset_secs(), q[0].thresholds()), (10_800, &[80, 100][..]));
    assert_eq!(q[0].hash(), s.rule("monthly").unwrap().hash);
    assert_eq!((q[1].per(), q[1].period(), q[1].utc_offset_secs()), (Per::Tenant, Period::Hour, 0));
    assert_eq!(q[1].thresholds(), quota::DEFAULT_THRESHOLDS);
    assert!(Snapshot::empty().rate_limits.is_empty() && Snapshot::empty().quotas.is_empty());
    // Empty sections.
    assert_eq!(snap("rate_limits: []\nquotas:\n").rule_count(), 0);
}

#[test]
fn rates_parse() {
    for (s, v) in [
        ("100/60s", (100, 60)),
        ("10/s", (10, 1)),
        ("1000/1h", (1000, 3600)),
        ("5/2m", (5, 120)),
        (" 7 / 24h ", (7, 86_400)),
        ("1/86400s", (1, 86_400)),
    ] {
        assert_eq!(rate::parse_rate(s), Ok(v), "{s}");
    }
    for s in ["100", "100/", "/60s", "100/60", "100/60d", "0/s", "-1/s", "1.5/s", "100/0s", "1/25h", "1/ms", "x/s"] {
        assert!(rate::parse_rate(s).is_err(), "{s}");
    }
}

#[test]
fn rate_limit_errors_name_their_key() {
    let rule = |extra: &str| format!("rate_limits:\n  - id: r\n    key: [client_ip]\n    rate: 10/s\n{extra}");
    let e = err1("rate_limits:\n  - id: r\n    key: [client_ip]\n    rate: 10/d\n");
    assert!(e.starts_with("5 rate_limits[0].rate: `10/d` is not a rate"), "{e}");
    let e = err1("rate_limits:\n  - id: r\n    key: [client_ip]\n    rate: 10/48h\n");
    assert!(e.contains("rate_limits[0].rate: the period must be between 1s and 24h"), "{e}");
    let e = err1(&rule("    burst: 0\n"));
    assert_eq!(e, "6 rate_limits[0].burst: `burst` must be between 1 and 1000000, got 0");
    let e = err1(&rule("    max_keys: 0\n"));
    assert_eq!(e, "6 rate_limits[0].max_keys: `max_keys` must be between 1 and 10000000, got 0");
    let e = err1(&rule("    ipv6_prefix: 0\n"));
    assert_eq!(e, "6 rate_limits[0].ipv6_prefix: `ipv6_prefix` must be between 1 and 128, got 0");
    let e = err1(&rule("    ipv6_prefix: 129\n"));
    assert!(e.starts_with("6 rate_limits[0].ipv6_prefix:"), "{e}");
    let e = err1(&rule("    routes: []\n"));
    assert!(e.starts_with("6 rate_limits[0].routes: `routes` is empty"), "{e}");
    let e = err1("rate_limits:\n  - id: r\n    key: [client_ip, tenant, ip]\n    rate: 10/s\n");
    assert!(e.starts_with("4 rate_limits[0].key[2]: unknown key part `ip`"), "{e}");
    let e = err1("rate_limits:\n  - id: r\n    key: [tenant, tenant]\n    rate: 10/s\n");
    assert_eq!(e, "4 rate_limits[0].key[1]: `tenant` is listed twice");
    let e = errors("rate_limits:\n  - id: r\n    key: ['header:', 'header:x y']\n    rate: 10/s\n");
    assert_eq!(
        e,
        [
            "4 rate_limits[0].key[0]: `header:` needs a header name, like `header:x-client-id`",
            "4 rate_limits[0].key[1]: `x y` is not a valid header name",
        ]
    );
    let e = err1("rate_limits:\n  - id: r\n    key: ['header:X_Client']\n    rate: 10/s\n");
    assert!(e.starts_with("4 rate_limits[0].key[0]: `X_Client` holds `_`: applications read it as `X-Client`"), "{e}");
    let e = err1("rate_limits:\n  - id: r\n    key: []\n    rate: 10/s\n");
    assert!(e.starts_with("4 rate_limits[0].key: `key` is empty"), "{e}");
    // Shape errors come from the deserializer, with did-you-mean.
    let e = err1("rate_limits:\n  - id: r\n    keys: [client_ip]\n    rate: 10/s\n");
    assert!(e.starts_with("4 rate_limits[0].keys: unknown field `keys`") && e.contains("`key`"), "{e}");
    let e = err1("rate_limits:\n  - id: r\n    key: [client_ip]\n");
    assert!(e.contains("missing field `rate`"), "{e}");
    let e = err1("rate_limits:\n  - id: r\n    key: client_ip\n    rate: 10/s\n");
    assert!(e.starts_with("4 rate_limits[0].key: invalid type"), "{e}");
    let e = err1(&rule("    burst:\n"));
    assert!(e.starts_with("6 rate_limits[0].burst: invalid type: null"), "{e}");
    // Every error of a rule at once, and ids are shared with other sections.
    let e = errors(
        "firewall:\n  - id: r\n    match: {methods: [GET]}\nrate_limits:\n  - id: r\n    key: [nope]\n    rate: 0/s\n    burst: 0\n",
    );
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e[0].starts_with("6 rate_limits[0].id: duplicate rule id `r`"), "{e:?}");
}

#[test]
fn routes_are_checked_against_the_gateway() {
    let text = "version: 1\nrate_limits:\n  - id: r\n    routes: [api, apx]\n    key: [client_ip]\n    rate: 1/s\n\
                quotas:\n  - id: q\n    routes: [nope]\n    limit: 1\n    period: day\n";
    let routes = ["api", "admin"];
    let e = compile_with(&[SourceFile::new("a.yaml", text)], &Env { routes: Some(&routes), assets: None, sinks: None })
        .unwrap_err();
    let at: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(at, [(4, "rate_limits[0].routes[1]"), (9, "quotas[0].routes[0]")]);
    assert!(e[0].message.contains("unknown route `apx`"), "{}", e[0]);
}

#[test]
fn quota_errors_name_their_key() {
    let q = |extra: &str| format!("quotas:\n  - id: q\n    limit: 10\n    period: month\n{extra}");
    let e = err1("quotas:\n  - id: q\n    limit: 0\n    period: month\n");
    assert!(e.starts_with("4 quotas[0].limit: `limit` must be between 1 and"), "{e}");
    let e = err1("quotas:\n  - id: q\n    limit: 10\n    period: week\n");
    assert!(e.starts_with("5 quotas[0].period: unknown variant `week`"), "{e}");
    let e = err1(&q("    per: user\n"));
    assert!(e.starts_with("6 quotas[0].per: unknown variant `user`"), "{e}");
    let e = err1(&q("    utc_offset: Europe/Istanbul\n"));
    assert!(e.starts_with("6 quotas[0].utc_offset: `Europe/Istanbul` is not a UTC offset"), "{e}");
    let e = err1(&q("    utc_offset: '+15:00'\n"));
    assert!(e.starts_with("6 quotas[0].utc_offset: `+15:00` is out of range"), "{e}");
    let e = errors(&q("    thresholds: [0, 80, 80, 101]\n"));
    assert_eq!(
        e,
        [
            "6 quotas[0].thresholds[0]: a threshold is a percentage between 1 and 100, got 0",
            "6 quotas[0].thresholds[2]: 80 is listed twice",
            "6 quotas[0].thresholds[3]: a threshold is a percentage between 1 and 100, got 101",
        ]
    );
    let e = err1("quotas:\n  - id: q\n    limit: 10\n");
    assert!(e.contains("missing field `period`"), "{e}");
    // `thresholds: []`: no notices.
    assert!(snap(&q("    thresholds: []\n")).quotas.rules()[0].thresholds().is_empty());
}

#[test]
fn rule_hashes_cover_every_key() {
    let base = "rate_limits:\n  - id: r\n    key: [client_ip]\n    rate: 100/60s\n";
    let h = snap(base).rule("r").unwrap().hash.clone();
    assert_eq!(
        snap("rate_limits:\n- {rate: 100/60s, id: r, key: [client_ip], mode: enforce}\n").rule("r").unwrap().hash,
        h
    );
    for changed in [
        base.replace("100/60s", "100/1m"),
        base.replace("client_ip", "tenant"),
        format!("{base}    burst: 100\n"),
        format!("{base}    max_keys: 10\n"),
        format!("{base}    mode: monitor\n"),
        format!("{base}    description: x\n"),
    ] {
        assert_ne!(snap(&changed).rule("r").unwrap().hash, h, "{changed}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn keys_are_tagged_length_prefixed_and_hash_alike() {
    let s = snap("rate_limits:\n  - {id: r, key: [tenant, subject], rate: 1/s}\n");
    let rule = &s.rate_limits.rules()[0];
    let ab_c = req("203.0.113.1").tenant("ab", "c");
    let a_bc = req("203.0.113.1").tenant("a", "bc");
    assert_ne!(ab_c.key(rule), a_bc.key(rule));
    assert_eq!(ab_c.key(rule), req("198.51.100.1").tenant("ab", "c").key(rule), "the IP is not part of this key");
    // The streamed hash equals the hash of the buffer.
    for r in [&ab_c, &a_bc] {
        let key = r.key(rule);
        assert_eq!(r.with(|i| rule.key_hash(i)), rule.store().hash(&key));
    }
    // Off-route: the rule does not apply and writes nothing.
    let s = snap("rate_limits:\n  - {id: r, routes: [admin], key: [client_ip], rate: 1/s}\n");
    let mut buf = vec![1, 2, 3];
    assert!(!req("203.0.113.1").with(|i| s.rate_limits.rules()[0].key(i, &mut buf)));
    assert!(buf.is_empty());
}

#[test]
fn client_ip_keys_by_address_and_ipv6_network() {
    let s = snap(
        "rate_limits:\n  - {id: r, key: [client_ip], rate: 1/s}\n  - {id: s, key: [client_ip], rate: 1/s, ipv6_prefix: 128}\n",
    );
    let (r64, r128) = (&s.rate_limits.rules()[0], &s.rate_limits.rules()[1]);
    assert_ne!(req("203.0.113.1").key(r64), req("203.0.113.2").key(r64));
    assert_eq!(req("203.0.113.1").key(r64), req("::ffff:203.0.113.1").key(r64), "IPv4-mapped is IPv4");
    // One /64 is one client by default: rotating the interface id does not help.
    assert_eq!(req("2001:db8:1:2::1").key(r64), req("2001:db8:1:2:ffff:ffff:ffff:ffff").key(r64));
    assert_ne!(req("2001:db8:1:2::1").key(r64), req("2001:db8:1:3::1").key(r64));
    assert_ne!(req("2001:db8:1:2::1").key(r128), req("2001:db8:1:2::2").key(r128));
    let agg = Aggregator::default();
    assert_eq!(req("2001:db8:1:2::1").with(|i| r64.label(i, &agg)), "client_ip=2001:db8:1:2::/64");
    assert_eq!(req("2001:db8:1:2::1").with(|i| r128.label(i, &agg)), "client_ip=2001:db8:1:2::1");
    assert_eq!(req("203.0.113.9").with(|i| r64.label(i, &agg)), "client_ip=203.0.113.9");
}

#[test]
fn absent_parts_fall_back_to_the_client_ip() {
    let s = snap("rate_limits:\n  - {id: r, key: [tenant], rate: 1/s}\n  - {id: k, key: [api_key], rate: 1/s}\n");
    let (by_tenant, by_key) = (&s.rate_limits.rules()[0], &s.rate_limits.rules()[1]);
    let anon1 = req("203.0.113.1");
    let anon2 = req("203.0.113.2");
    // Anonymous callers are limited per address, not in one shared bucket, and never like a
    // tenant.
    assert_ne!(anon1.key(by_tenant), anon2.key(by_tenant));
    assert_eq!(anon1.key(by_tenant), req("203.0.113.1").key(by_tenant));
    assert_ne!(anon1.key(by_tenant), req("203.0.113.1").tenant("acme", "u").key(by_tenant));
    // An identity without a tenant also falls back.
    let platform = req("203.0.113.1").who(AuthMethod::Jwt, "admin", None, None);
    assert_eq!(platform.key(by_tenant), anon1.key(by_tenant));
    // api_key is the API key's id, and only for API-key authentication.
    let k1 = req("203.0.113.1").who(AuthMethod::ApiKey, "svc", Some("acme"), Some("key-1"));
    let k1b = req("198.51.100.7").who(AuthMethod::ApiKey, "svc2", Some("other"), Some("key-1"));
    let k2 = req("203.0.113.1").who(AuthMethod::ApiKey, "svc", Some("acme"), Some("key-2"));
    assert_eq!(k1.key(by_key), k1b.key(by_key));
    assert_ne!(k1.key(by_key), k2.key(by_key));
    let jwt = req("203.0.113.1").who(AuthMethod::Jwt, "svc", Some("acme"), Some("key-1"));
    assert_eq!(jwt.key(by_key), anon1.key(by_key), "a JWT's issuer is not an API key");
    let agg = Aggregator::default();
    assert_eq!(k1.with(|i| by_key.label(i, &agg)), "api_key=key-1");
    assert_eq!(anon1.with(|i| by_tenant.label(i, &agg)), "tenant=(none), client_ip=203.0.113.1");
    // No client IP either: one shared bucket (not reachable through the gateway).
    let mut noip = req("203.0.113.1");
    noip.ip = None;
    let mut noip2 = req("203.0.113.2");
    noip2.ip = None;
    assert_eq!(noip.key(by_tenant), noip2.key(by_tenant));
    assert_eq!(noip.with(|i| by_tenant.label(i, &agg)), "tenant=(none), client_ip=(unknown)");
}

#[test]
fn header_keys_cap_their_length_and_never_show_values() {
    let s = snap("rate_limits:\n  - {id: r, key: ['header:x-client'], rate: 1/s}\n");
    let rule = &s.rate_limits.rules()[0];
    let a = req("203.0.113.1").header("x-client", b"alpha");
    let b = req("203.0.113.2").header("x-client", b"alpha");
    let c = req("203.0.113.1").header("x-client", b"beta");
    assert_eq!(a.key(rule), b.key(rule));
    assert_ne!(a.key(rule), c.key(rule));
    // Every value counts, in order.
    let two = req("203.0.113.1").header("x-client", b"a").header("x-client", b"b");
    let joined = req("203.0.113.1").header("x-client", b"a, b");
    assert_eq!(two.key(rule), joined.key(rule));
    assert_ne!(two.key(rule), req("203.0.113.1").header("x-client", b"b").header("x-client", b"a").key(rule));
    // Absent: per address. Empty: a value.
    assert_ne!(req("203.0.113.1").key(rule), req("203.0.113.2").key(rule));
    assert_ne!(req("203.0.113.1").header("x-client", b"").key(rule), req("203.0.113.1").key(rule));
    // A 1 MiB header keys in at most 256 bytes plus the tags; length still counts.
    let huge = vec![b'x'; 1 << 20];
    let big = req("203.0.113.1").header("x-client", &huge);
    let key = big.key(rule);
    assert!(key.len() <= rate::MAX_KEY_PART_LEN + 16, "{}", key.len());
    let mut longer = huge.clone();
    longer.push(b'x');
    assert_ne!(key, req("203.0.113.1").header("x-client", &longer).key(rule));
    let mut same_prefix = huge.clone();
    *same_prefix.last_mut().unwrap() = b'y';
    assert_eq!(key, req("203.0.113.1").header("x-client", &same_prefix).key(rule), "documented: prefix + length");
    // The label is a keyed hash and a length, never the value.
    let agg = Aggregator::default();
    let secret = req("203.0.113.1").header("x-client", b"sk_live_0123456789");
    let label = secret.with(|i| rule.label(i, &agg));
    assert!(label.starts_with("header:x-client=#") && label.ends_with("(18 bytes)"), "{label}");
    assert!(!label.contains("sk_live"), "{label}");
    assert_eq!(req("203.0.113.1").with(|i| rule.label(i, &agg)), "header:x-client=(none), client_ip=203.0.113.1");
}

// ---------------------------------------------------------------------------------------------
// Checking requests

#[test]
fn runbook_limit_allows_100_then_429s_with_headers() {
    let s = snap(RUNBOOK);
    let agg = Aggregator::default();
    let r = req("203.0.113.7");
    let t = 10 * SEC;
    for i in 0..100u64 {
        let c = r.rate(&s, t, &agg);
        assert!(c.outcome.is_clean(), "{i}");
        assert_eq!(
            c.headers,
            [
                ("ratelimit-policy", "\"per-client\";q=100;w=60".to_string()),
                (
                    "ratelimit",
                    format!("\"per-client\";r={};t={}", 99 - i, (i + 1) * 6 / 10 + u64::from((i + 1) * 6 % 10 != 0))
                ),
            ]
        );
    }
    let c = r.rate(&s, t, &agg);
    assert!(c.headers.is_empty());
    assert!(c.deny_event);
    let f = c.outcome.deny.as_ref().unwrap();
    assert_eq!(
        (&*f.rule_id, f.event, f.severity, f.action()),
        ("per-client", EventType::RateLimitHit, Severity::Info, Action::Blocked)
    );
    assert_eq!(f.deny.code, DenyCode::RateLimited);
    assert_eq!(f.deny.code.status(), 429);
    assert_eq!(f.deny.retry_after, Some(1));
    assert_eq!(
        f.deny.headers,
        [
            ("ratelimit-policy", "\"per-client\";q=100;w=60".to_string()),
            ("ratelimit", "\"per-client\";r=0;t=60".to_string())
        ]
    );
    assert_eq!(f.detail["key"], "client_ip=203.0.113.7");
    assert_eq!(f.detail["rate"], "100/60s");
    assert_eq!(f.detail["burst"], 100);
    assert_eq!(f.detail["retry_after"], 1);
    let rendered = crate::deny::render(&f.deny, "rid");
    assert!(rendered.headers.contains(&("retry-after", "1".to_string())));
    assert!(rendered.headers.contains(&("ratelimit", "\"per-client\";r=0;t=60".to_string())));
    // Other clients are unaffected; this one gets one more 0.6 s later.
    assert!(req("203.0.113.8").rate(&s, t, &agg).outcome.is_clean());
    assert!(r.rate(&s, t + 600_000_000, &agg).outcome.is_clean());
}

#[test]
fn refusals_are_aggregated_per_key_and_window() {
    let s = snap("rate_limits:\n  - {id: r, key: [client_ip], rate: 1/60s}\n");
    let agg = Aggregator::new(60, 1000);
    let a = req("203.0.113.1");
    let b = req("203.0.113.2");
    assert!(a.rate(&s, SEC, &agg).outcome.is_clean());
    assert!(b.rate(&s, SEC, &agg).outcome.is_clean());
    let first = a.rate(&s, 2 * SEC, &agg);
    assert!(first.deny_event && first.outcome.deny.is_some());
    for i in 0..500 {
        let c = a.rate(&s, 2 * SEC + i, &agg);
        assert!(c.outcome.deny.is_some(), "still refused");
        assert!(!c.deny_event, "but no event");
        assert_eq!(c.outcome.deny.unwrap().detail["aggregated"], true);
    }
    assert!(b.rate(&s, 3 * SEC, &agg).deny_event, "another key has its own event");
    let sums = agg.drain(70 * SEC);
    assert_eq!(sums.len(), 1);
    assert_eq!((sums[0].key_label.as_str(), sums[0].count), ("client_ip=203.0.113.1", 500));
    let f = sums[0].finding();
    assert_eq!((f.event, f.action(), &*f.rule_id), (EventType::RateLimitHit, Action::Blocked, "r"));
}

#[test]
fn monitor_flags_without_blocking_and_adds_no_headers() {
    let s = snap("rate_limits:\n  - {id: m, mode: monitor, key: [client_ip], rate: 2/60s}\n");
    let agg = Aggregator::default();
    let r = req("203.0.113.1");
    assert!(r.rate(&s, SEC, &agg).outcome.is_clean());
    assert!(r.rate(&s, SEC, &agg).outcome.is_clean());
    let c = r.rate(&s, SEC, &agg);
    assert!(c.outcome.deny.is_none() && c.headers.is_empty());
    assert_eq!(c.outcome.flagged.len(), 1);
    let f = &c.outcome.flagged[0];
    assert_eq!((f.mode, f.action(), f.event), (Mode::Monitor, Action::Flagged, EventType::RateLimitHit));
    // Aggregated like refusals: the next ones in the window are counted, not listed.
    let c = r.rate(&s, SEC + 1, &agg);
    assert!(c.outcome.is_clean());
    // And it behaves like enforce would: a would-be refusal is not counted.
    assert!(r.rate(&s, SEC + 30 * SEC, &agg).outcome.is_clean());
    assert_eq!(agg.drain(100 * SEC)[0].count, 1);
}

#[test]
fn the_strictest_limit_wins_and_refused_requests_are_not_counted() {
    let s = snap(
        "\
rate_limits:
  - {id: per-ip, key: [client_ip], rate: 3/60s}
  - {id: per-tenant, key: [tenant], rate: 10/10s}
  - {id: admin-only, routes: [admin], key: [client_ip], rate: 1/h}
",
    );
    let agg = Aggregator::default();
    let r = req("203.0.113.1").tenant("acme", "u1");
    let t = SEC;
    // The most constraining policy's headers: per-ip has fewer left.
    let c = r.rate(&s, t, &agg);
    assert_eq!(c.headers[1].1, "\"per-ip\";r=2;t=20");
    r.rate(&s, t, &agg);
    r.rate(&s, t, &agg);
    let c = r.rate(&s, t, &agg);
    let f = c.outcome.deny.unwrap();
    assert_eq!(&*f.rule_id, "per-ip");
    assert_eq!(f.deny.retry_after, Some(20));
    // The refusal did not use up the tenant's budget: 7 more from other addresses pass.
    for i in 0..7 {
        let other = req(&format!("198.51.100.{i}")).tenant("acme", "u");
        assert!(other.rate(&s, t, &agg).outcome.is_clean(), "{i}");
    }
    let c = req("198.51.100.99").tenant("acme", "u").rate(&s, t, &agg);
    assert_eq!(&*c.outcome.deny.unwrap().rule_id, "per-tenant");
    // When two refuse, the later retry is given: per-ip says 20 s, per-tenant 1 s.
    let c = r.rate(&s, t, &agg);
    let f = c.outcome.deny.unwrap();
    assert_eq!((&*f.rule_id, f.deny.retry_after), ("per-ip", Some(20)));
    // A rule on another route never applies.
    let admin = req("203.0.113.50").route(Some("admin"));
    assert!(admin.rate(&s, t, &agg).outcome.is_clean());
    assert_eq!(admin.rate(&s, t, &agg).outcome.deny.unwrap().rule_id.as_ref(), "admin-only");
    assert!(req("203.0.113.51").route(None).rate(&s, t, &agg).outcome.is_clean());
}

#[test]
fn flood_of_unique_addresses_stays_under_the_cap() {
    let s = snap("rate_limits:\n  - {id: r, key: [client_ip], rate: 100/60s, max_keys: 2000}\n");
    let agg = Aggregator::default();
    let store = s.rate_limits.rules()[0].store();
    let cap_bytes = store.approx_bytes() + store.capacity() * 16;
    // A limited client.
    let victim = req("192.0.2.1");
    for _ in 0..100 {
        victim.rate(&s, SEC, &agg);
    }
    assert!(victim.rate(&s, SEC, &agg).outcome.deny.is_some());
    // 150k random-looking source addresses.
    for i in 0u32..150_000 {
        let ip = IpAddr::from((i.wrapping_mul(2_654_435_761)).to_be_bytes());
        let mut r = req("0.0.0.0");
        r.ip = Some(ip);
        r.rate(&s, SEC + u64::from(i), &agg);
    }
    assert!(
        store.len() <= store.capacity() && store.capacity() <= 2000 + 8 * 8,
        "{} / {}",
        store.len(),
        store.capacity()
    );
    assert!(s.rate_limits.approx_bytes() <= cap_bytes);
    assert!(victim.rate(&s, SEC + 150_000, &agg).outcome.deny.is_some(), "the flood did not free the limited client");
    // After they all went idle, a sweep gives the memory back.
    let before = s.rate_limits.approx_bytes();
    assert!(s.rate_limits.sweep(200 * SEC) > 1000);
    assert_eq!(s.rate_limits.keys(), 0);
    assert!(s.rate_limits.approx_bytes() < before / 4);
}

// ---------------------------------------------------------------------------------------------
// Reloads

#[test]
fn reload_keeps_unchanged_rules_and_resets_changed_ones() {
    let text = "\
rate_limits:
  - {id: a, key: [client_ip], rate: 1/60s}
  - {id: b, key: [client_ip], rate: 1/60s}
  - {id: c, key: [client_ip], rate: 1/60s}
";
    let agg = Aggregator::default();
    let r = req("203.0.113.1");
    let old = snap(text);
    assert!(r.rate(&old, SEC, &agg).outcome.is_clean());
    assert!(r.rate(&old, SEC, &agg).outcome.deny.is_some());
    // b changes (rate), c is renamed, a moves to another file unchanged (only reformatted).
    let new_text =
        "rate_limits:\n  - {id: b, key: [client_ip], rate: 2/60s}\n  - {id: c2, key: [client_ip], rate: 1/60s}\n";
    let a_file = "version: 1\nrate_limits:\n  - id: a\n    rate: 1/60s\n    key: [client_ip]\n";
    let mut new = compile(&[
        SourceFile::new("other.yaml", a_file),
        SourceFile::new("limits.yaml", format!("version: 1\n{new_text}")),
    ])
    .unwrap();
    assert_eq!(new.rate_limits.carry_over(&old.rate_limits), CarryOver { kept: 1, fresh: 2 });
    let ids = |c: &LimitCheck| c.outcome.deny.as_ref().map(|f| f.rule_id.to_string());
    let c = r.rate(&new, SEC, &agg);
    assert_eq!(ids(&c).as_deref(), Some("a"), "a kept its state; b and c2 start fresh");
    // Same state object: the old snapshot's in-flight requests count in it too.
    assert!(std::ptr::eq(new.rate_limits.rules()[0].store(), old.rate_limits.rules()[0].store()));
    // Reloading identical files keeps everything.
    let mut again = snap(text);
    assert_eq!(again.rate_limits.carry_over(&old.rate_limits), CarryOver { kept: 3, fresh: 0 });
    assert!(r.rate(&again, SEC, &agg).outcome.deny.is_some());
}

// ---------------------------------------------------------------------------------------------
// Quotas

/// 2026-01-30T18:00:00Z
const JAN30: u64 = 1_769_796_000;
const FEB1: u64 = 1_769_904_000;

#[test]
fn quota_counts_notifies_each_threshold_once_and_resets_at_the_month() {
    assert_eq!(quota::rfc3339(JAN30 as i64), "2026-01-30T18:00:00Z");
    assert_eq!(quota::rfc3339(FEB1 as i64), "2026-02-01T00:00:00Z");
    let s = snap("quotas:\n  - {id: monthly, limit: 10, period: month}\n");
    let book = QuotaBook::default();
    let agg = Aggregator::default();
    let r = req("203.0.113.1").tenant("acme", "u1");
    let mut notices = Vec::new();
    for i in 1..=12u64 {
        let c = r.quota(&s, &book, JAN30 + i, false, &agg);
        assert!(c.outcome.deny.is_none());
        for f in &c.outcome.flagged {
            assert_eq!(
                (f.event, f.action(), f.severity),
                (EventType::QuotaExceeded, Action::Flagged, Severity::Warning)
            );
            notices.push((i, f.detail["threshold"].as_u64().unwrap(), f.detail["used"].as_u64().unwrap()));
        }
    }
    assert_eq!(notices, [(8, 80, 8), (9, 90, 9), (10, 100, 10)]);
    let c = r.quota(&s, &book, JAN30 + 20, false, &agg);
    assert!(c.outcome.is_clean(), "no event per request past the limit with enforcement off");
    let u = s.quotas.usage(&book, "acme", JAN30 + 20);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].used, u[0].limit, u[0].remaining, u[0].resets_at), (13, 10, 0, FEB1 as i64));
    assert_eq!(u[0].resets_at_utc, "2026-02-01T00:00:00Z");
    // A new month starts at 0 and notifies again.
    let c = r.quota(&s, &book, FEB1, false, &agg);
    assert!(c.outcome.is_clean());
    assert_eq!(s.quotas.usage(&book, "acme", FEB1)[0].used, 1);
    // Another tenant has its own counter; anonymous requests are not counted.
    assert!(req("203.0.113.1").tenant("other", "u1").quota(&s, &book, FEB1, true, &agg).outcome.is_clean());
    assert!(req("203.0.113.1").quota(&s, &book, FEB1, true, &agg).outcome.is_clean());
    assert_eq!(book.len(), 2);
}

#[test]
fn quota_enforcement_refuses_with_402_until_the_reset() {
    let s = snap("quotas:\n  - {id: q, limit: 3, period: day, utc_offset: '+03:00', thresholds: [100]}\n");
    let book = QuotaBook::default();
    let agg = Aggregator::default();
    let r = req("203.0.113.1").tenant("acme", "u1");
    for _ in 0..3 {
        assert!(r.quota(&s, &book, JAN30, true, &agg).outcome.deny.is_none());
    }
    let c = r.quota(&s, &book, JAN30, true, &agg);
    let f = c.outcome.deny.as_ref().unwrap();
    assert!(c.deny_event);
    assert_eq!((f.deny.code, f.deny.code.status(), f.action()), (DenyCode::QuotaExceeded, 402, Action::Blocked));
    // 18:00Z is 21:00 at +03:00: the day resets at 21:00Z, in 3 hours.
    assert_eq!(f.deny.retry_after, Some(3 * 3600));
    assert_eq!(f.detail["resets_at_utc"], "2026-01-30T21:00:00Z");
    assert_eq!(f.detail["used"], 3);
    assert_eq!(
        f.deny.headers,
        [("ratelimit-policy", "\"q\";q=3;w=86400".to_string()), ("ratelimit", "\"q\";r=0;t=10800".to_string())]
    );
    // Refused requests are not counted, and their events are aggregated.
    for _ in 0..5 {
        let c = r.quota(&s, &book, JAN30 + 1, true, &agg);
        assert!(c.outcome.deny.is_some() && !c.deny_event);
    }
    assert_eq!(s.quotas.usage(&book, "acme", JAN30)[0].used, 3);
    // Enforcement off: counted and passed.
    assert!(r.quota(&s, &book, JAN30 + 2, false, &agg).outcome.deny.is_none());
    assert_eq!(s.quotas.usage(&book, "acme", JAN30)[0].used, 4);
    // At the reset, allowed again.
    assert!(r.quota(&s, &book, JAN30 + 3 * 3600, true, &agg).outcome.deny.is_none());
    // A manual reset too.
    assert!(r.quota(&s, &book, JAN30 + 3 * 3600 + 1, true, &agg).outcome.is_clean());
    assert!(r.quota(&s, &book, JAN30 + 3 * 3600 + 2, true, &agg).outcome.flagged.len() == 1);
    assert!(r.quota(&s, &book, JAN30 + 3 * 3600 + 3, true, &agg).outcome.deny.is_some());
    assert_eq!(book.reset("acme"), 1);
    assert_eq!(book.reset("acme"), 0);
    assert!(r.quota(&s, &book, JAN30 + 3 * 3600 + 4, true, &agg).outcome.deny.is_none());
}

#[test]
fn monitor_quota_never_refuses() {
    let s = snap("quotas:\n  - {id: q, mode: monitor, limit: 1, period: hour, thresholds: []}\n");
    let book = QuotaBook::default();
    let agg = Aggregator::default();
    let r = req("203.0.113.1").tenant("acme", "u1");
    assert!(r.quota(&s, &book, JAN30, true, &agg).outcome.is_clean());
    let c = r.quota(&s, &book, JAN30, true, &agg);
    assert!(c.outcome.deny.is_none());
    assert_eq!(c.outcome.flagged.len(), 1);
    assert_eq!(c.outcome.flagged[0].action(), Action::Flagged);
    assert_eq!(s.quotas.usage(&book, "acme", JAN30)[0].used, 2, "monitor counts on");
}

#[test]
fn per_subject_quotas_and_reset_per_tenant() {
    let s = snap("quotas:\n  - {id: q, per: subject, limit: 2, period: day}\n  - {id: t, limit: 100, period: day}\n");
    let book = QuotaBook::default();
    let agg = Aggregator::default();
    let u1 = req("203.0.113.1").tenant("acme", "u1");
    let u2 = req("203.0.113.1").tenant("acme", "u2");
    for r in [&u1, &u1, &u2] {
        assert!(r.quota(&s, &book, JAN30, true, &agg).outcome.deny.is_none());
    }
    assert_eq!(&*u1.quota(&s, &book, JAN30, true, &agg).outcome.deny.unwrap().rule_id, "q");
    assert!(u2.quota(&s, &book, JAN30, true, &agg).outcome.deny.is_none());
    let usage = s.quotas.usage(&book, "acme", JAN30);
    let lines: Vec<(&str, Option<&str>, u64)> =
        usage.iter().map(|u| (u.rule.as_str(), u.subject.as_deref(), u.used)).collect();
    assert_eq!(lines, [("q", Some("u1"), 2), ("q", Some("u2"), 2), ("t", None, 4)]);
    let json = serde_json::to_value(&usage[0]).unwrap();
    assert_eq!(json["per"], "subject");
    assert_eq!(json["period"], "day");
    assert_eq!(book.reset("acme"), 3);
    assert!(s.quotas.usage(&book, "acme", JAN30).iter().all(|u| u.used == 0));
}

#[test]
fn raising_a_limit_mid_month_keeps_the_usage() {
    let book = QuotaBook::default();
    let agg = Aggregator::default();
    let r = req("203.0.113.1").tenant("acme", "u1");
    let old = snap("quotas:\n  - {id: q, limit: 10, period: month}\n");
    for _ in 0..10 {
        r.quota(&old, &book, JAN30, true, &agg);
    }
    assert!(r.quota(&old, &book, JAN30, true, &agg).outcome.deny.is_some());
    let new = snap("quotas:\n  - {id: q, limit: 20, period: month}\n");
    assert_ne!(old.rule("q").unwrap().hash, new.rule("q").unwrap().hash);
    let c = r.quota(&new, &book, JAN30, true, &agg);
    assert!(c.outcome.deny.is_none());
    assert_eq!(s_used(&new, &book), 11);
    // 11/20 is under 80 %: the thresholds are armed again and fire at 16.
    let mut crossed = Vec::new();
    for _ in 0..9 {
        for f in r.quota(&new, &book, JAN30, true, &agg).outcome.flagged {
            crossed.push(f.detail["threshold"].as_u64().unwrap());
        }
    }
    assert_eq!(crossed, [80, 90, 100]);
    // A changed period restarts the counter.
    let daily = snap("quotas:\n  - {id: q, limit: 20, period: day}\n");
    assert!(r.quota(&daily, &book, JAN30, true, &agg).outcome.deny.is_none());
    assert_eq!(s_used(&daily, &book), 1);
}

fn s_used(s: &Snapshot, book: &QuotaBook) -> u64 {
    s.quotas.usage(book, "acme", JAN30)[0].used
}

#[test]
fn book_round_trips_through_json_and_rejects_corruption() {
    let s = snap("quotas:\n  - {id: q, limit: 5, period: month}\n  - {id: p, per: subject, limit: 5, period: day}\n");
    let book = QuotaBook::default();
    let agg = Aggregator::default();
    let g0 = book.generation();
    for (t, u) in [("acme", "u1"), ("acme", "u1"), ("acme", "u2"), ("şirket", "kullanıcı"), ("a:b", "1:c")] {
        req("203.0.113.1").tenant(t, u).quota(&s, &book, JAN30, false, &agg);
    }
    assert!(book.generation() > g0);
    let json = book.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format"], "portcullis.quotas");
    assert_eq!(v["version"], 1);
    assert_eq!(v["counters"].as_array().unwrap().len(), 7);
    let back = QuotaBook::from_json(&json, 1000).unwrap();
    assert_eq!(back.to_json(), json);
    assert_eq!(s.quotas.usage(&back, "acme", JAN30), s.quotas.usage(&book, "acme", JAN30));
    assert_eq!(s.quotas.usage(&back, "a:b", JAN30)[1].subject.as_deref(), Some("1:c"));
    // Thresholds already reported are not reported again after a restart.
    let ten = snap("quotas:\n  - {id: q, limit: 10, period: month}\n");
    let rule = &ten.quotas.rules()[0];
    let book = QuotaBook::default();
    let crossed: Vec<Option<u8>> = (0..8).map(|_| book.record(rule, "t", None, JAN30, true).crossed).collect();
    assert_eq!(crossed.last(), Some(&Some(80)));
    let back = QuotaBook::from_json(&book.to_json(), 1000).unwrap();
    assert_eq!(back.record(rule, "t", None, JAN30, true).crossed, Some(90));
    // Unchanged book, unchanged generation.
    let g = back.generation();
    let _ = back.to_json();
    assert_eq!(back.generation(), g);

    let bad = [
        ("", "not a quota book"),
        ("{", "not a quota book"),
        ("[]", "not a quota book"),
        (r#"{"format":"x","version":1,"counters":[]}"#, "format `x`"),
        (r#"{"format":"portcullis.quotas","version":2,"counters":[]}"#, "version 2"),
        (r#"{"format":"portcullis.quotas","version":1,"counters":[],"extra":1}"#, "unknown field"),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"q","tenant":"t","period_start":5,"resets_at":5,"used":1}]}"#,
            "counters[0]: `period_start`",
        ),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"","tenant":"t","period_start":1,"resets_at":5,"used":1}]}"#,
            "`rule`",
        ),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"q","tenant":"","period_start":1,"resets_at":5,"used":1}]}"#,
            "`tenant`",
        ),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"q","tenant":"t","subject":"","period_start":1,"resets_at":5,"used":1}]}"#,
            "`subject`",
        ),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"q","tenant":"t","period_start":1,"resets_at":5,"used":-1}]}"#,
            "not a quota book",
        ),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"q","tenant":"t","period_start":1,"resets_at":5,"used":1,"notified":101}]}"#,
            "`notified`",
        ),
        (
            r#"{"format":"portcullis.quotas","version":1,"counters":[{"rule":"q","tenant":"t","period_start":1,"resets_at":5,"used":1},{"rule":"q","tenant":"t","period_start":1,"resets_at":5,"used":2}]}"#,
            "counters[1]: duplicate",
        ),
    ];
    for (text, why) in bad {
        match QuotaBook::from_json(text, 1000) {
            Ok(_) => panic!("accepted {text}"),
            Err(e) => assert!(e.contains(why), "{text}: {e}"),
        }
    }
    let e = QuotaBook::from_json(&json, 1).unwrap_err();
    assert!(e.contains("more counters than fit"), "{e}");
}

#[test]
fn a_full_book_fails_open_and_says_so() {
    let s = snap("quotas:\n  - {id: q, limit: 1, period: hour}\n");
    let book = QuotaBook::new(16); // one counter per shard
    let agg = Aggregator::default();
    let rule = &s.quotas.rules()[0];
    let mut untracked = 0;
    for i in 0..200 {
        let o = book.record(rule, &format!("t{i}"), None, JAN30, true);
        if o.untracked {
            untracked += 1;
            assert!(!o.counted && o.used == 0);
        }
    }
    assert!(book.len() <= 16);
    assert_eq!(book.untracked(), untracked);
    assert!(untracked >= 184);
    // The next hour, finished counters make room again.
    let o = book.record(rule, "fresh", None, JAN30 + 3600, true);
    assert!(!o.untracked && o.counted);
    // A tracked tenant that is over its quota is still refused while the book is full.
    let full = QuotaBook::new(16);
    assert!(full.record(rule, "t", None, JAN30, true).counted);
    assert!(req("203.0.113.1").tenant("t", "u").quota(&s, &full, JAN30, true, &agg).outcome.deny.is_some());
}

#[test]
fn record_reports_outcomes() {
    let s = snap("quotas:\n  - {id: q, limit: 2, period: month, thresholds: [50, 100]}\n");
    let book = QuotaBook::default();
    let rule = &s.quotas.rules()[0];
    let o = book.record(rule, "t", None, JAN30, true);
    assert_eq!(
        o,
        QuotaOutcome {
            used: 1,
            limit: 2,
            period_start: 1_767_225_600, // 2026-01-01
            resets_at: FEB1 as i64,
            crossed: Some(50),
            exhausted: false,
            counted: true,
            untracked: false,
        }
    );
    let o = book.record(rule, "t", None, JAN30, true);
    assert_eq!((o.used, o.crossed, o.exhausted), (2, Some(100), false));
    let o = book.record(rule, "t", None, JAN30, true);
    assert_eq!((o.used, o.crossed, o.exhausted, o.counted), (2, None, true, false));
    let o = book.record(rule, "t", None, JAN30, false);
    assert_eq!((o.used, o.crossed, o.exhausted, o.counted), (3, None, true, true));
    assert_eq!(book.peek(rule, "t", None, JAN30), 3);
    assert_eq!(book.peek(rule, "t", None, FEB1), 0);
    // The clock stepping back into the previous month does not wipe the counter.
    let o = book.record(rule, "t", None, FEB1, true);
    assert_eq!(o.used, 1);
    let o = book.record(rule, "t", None, FEB1 - 10, true);
    assert_eq!((o.used, o.resets_at), (2, 1_772_323_200)); // still February's counter
}

#[test]
fn refunds_reach_every_rule_also_past_the_128th() {
    let mut text = String::from("rate_limits:\n");
    for i in 0..130 {
        text.push_str(&format!("  - {{id: r{i}, key: [client_ip], rate: 100/60s}}\n"));
    }
    text.push_str("  - {id: tight, key: [client_ip], rate: 1/60s}\n");
    let s = snap(&text);
    let agg = Aggregator::default();
    let r = req("203.0.113.1");
    assert!(r.rate(&s, SEC, &agg).outcome.is_clean());
    assert_eq!(&*r.rate(&s, SEC, &agg).outcome.deny.unwrap().rule_id, "tight");
    for rule in [0, 127, 128, 129] {
        let rule = &s.rate_limits.rules()[rule];
        let d = rule.store().check(&r.key(rule), SEC);
        assert_eq!(d.remaining, 98, "{}: the refused request was refunded", rule.id());
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet budgets (fleet.rs) through the section's check

fn fleet_rate(r: &Req, s: &Snapshot, f: &FleetShares, now: u64, unix: u64, agg: &Aggregator) -> LimitCheck {
    r.with(|i| s.rate_limits.check_fleet(i, Now { mono_ns: now, unix_secs: unix }, agg, Some((f, unix * 1000 + 10))))
}

#[test]
fn the_fleet_budget_refuses_past_the_share_and_refunds_the_local_bucket() {
    let s = snap("rate_limits:\n  - id: ten\n    key: [client_ip]\n    rate: 10/1s\n  - id: wide\n    key: [client_ip]\n    rate: 1000/1s\n");
    let agg = Aggregator::default();
    let f = FleetShares::new(Fallback::Share);
    f.set_instances(2);
    f.set_connected(true);
    let r = req("192.0.2.7");
    // The share of a new window: 5 of 10; the sixth is refused by the fleet budget with 429 and
    // `Retry-After` until the window ends.
    for i in 0..5 {
        assert!(fleet_rate(&r, &s, &f, i * 1000, 100, &agg).outcome.deny.is_none(), "request {i}");
    }
    let c = fleet_rate(&r, &s, &f, 6000, 100, &agg);
    let deny = c.outcome.deny.expect("refused by the fleet budget");
    assert_eq!(deny.deny.code, DenyCode::RateLimited);
    assert_eq!(deny.deny.retry_after, Some(1));
    // Refused: the local buckets were refunded (5 counted of 10, not 6), and the other rule's
    // fleet take was given back.
    let h = r.with(|i| s.rate_limits.rules()[0].key_hash(i));
    assert_eq!(s.rate_limits.rules()[0].store().check_hash(h, 6000).remaining, 4, "5 counted + this one");
    let items = f.plan(100_050);
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.charge == 5), "{items:?}");
    // Another client has its own budget; a new window gives a new share.
    assert!(fleet_rate(&req("192.0.2.8"), &s, &f, 7000, 100, &agg).outcome.deny.is_none());
    assert!(fleet_rate(&r, &s, &f, 8000, 101, &agg).outcome.deny.is_none());
    // The key is the same on every instance (no per-process seed).
    let a = r.with(|i| s.rate_limits.rules()[0].fleet_key(i));
    let b = r.with(|i| s.rate_limits.rules()[0].fleet_key(i));
    assert_eq!(a, b);
    assert_eq!(a, FleetShares::key("ten", s.rate_limits.rules()[0].hash(), &r.key(&s.rate_limits.rules()[0])[..]));
}

/// `cargo test -p portcullis-rules --release fleet_budget_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn fleet_budget_cost() {
    let s = snap("rate_limits:\n  - id: per-client\n    key: [client_ip]\n    rate: 1000000/1s\n");
    let agg = Aggregator::default();
    let f = FleetShares::new(Fallback::Share);
    f.set_connected(true);
    let reqs: Vec<Req> = (0..1024).map(|i| req(&format!("10.0.{}.{}", i / 256, i % 256))).collect();
    let n = 300_000u64;
    for fleet in [false, true] {
        let t = std::time::Instant::now();
        for j in 0..n {
            let r = &reqs[(j % 1024) as usize];
            let now = Now { mono_ns: j * 1000, unix_secs: 1 };
            let c = r.with(|i| s.rate_limits.check_fleet(i, now, &agg, fleet.then_some((&f, 1000))));
            std::hint::black_box(c);
        }
        eprintln!("fleet budget {fleet}: {:.0} ns per limited request", t.elapsed().as_nanos() as f64 / n as f64);
    }
}
