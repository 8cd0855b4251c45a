use super::*;
use proptest::prelude::*;

fn table() -> RouteTable<&'static str> {
    let any = || vec![HostMatch::Any];
    RouteTable::new(vec![
        Entry { hosts: any(), prefix: "/".into(), value: "default" },
        Entry { hosts: any(), prefix: "/api".into(), value: "api" },
        Entry { hosts: any(), prefix: "/api/webhooks/".into(), value: "webhooks" },
        Entry { hosts: vec![HostMatch::parse("admin.example.com").unwrap()], prefix: "/".into(), value: "admin" },
        Entry { hosts: vec![HostMatch::parse("*.example.com").unwrap()], prefix: "/api".into(), value: "tenant-api" },
        Entry { hosts: any(), prefix: "/api".into(), value: "shadowed" },
    ])
}

#[test]
fn most_specific_wins() {
    let t = table();
    let f = |h: Option<&str>, p: &str| t.find(h, p).map(|(_, v)| *v);
    assert_eq!(f(None, "/"), Some("default"));
    assert_eq!(f(None, "/apix"), Some("default"));
    assert_eq!(f(None, "/api"), Some("api"));
    assert_eq!(f(None, "/api/x"), Some("api"));
    assert_eq!(f(None, "/api/webhooks"), Some("webhooks"));
    assert_eq!(f(None, "/api/webhooks/stripe"), Some("webhooks"));
    assert_eq!(f(Some("admin.example.com"), "/api/x"), Some("admin"));
    assert_eq!(f(Some("t1.example.com"), "/api/x"), Some("tenant-api"));
    assert_eq!(f(Some("t1.example.com"), "/other"), Some("default"));
    assert_eq!(f(Some("example.com"), "/api"), Some("api"));
    // Case variants match the same route: rules scoped to it cannot be sidestepped.
    assert_eq!(f(None, "/API/x"), Some("api"));
    assert_eq!(f(None, "/Api/WebHooks/stripe"), Some("webhooks"));
    assert_eq!(f(None, "/APIX"), Some("default"));
}

/// Hosts and prefixes drawn from small alphabets, so that collisions, nesting, case variants,
/// shared prefixes and duplicate routes are frequent.
fn arb_host() -> impl Strategy<Value = HostMatch> {
    prop_oneof![
        Just(HostMatch::Any),
        "[ab]{1,2}(\\.[ab]{1,2}){0,2}\\.test".prop_map(HostMatch::Exact),
        "[ab]{1,2}(\\.[ab]{1,2}){0,1}\\.test".prop_map(|s| HostMatch::Suffix(format!(".{s}"))),
    ]
}

fn arb_prefix() -> impl Strategy<Value = String> {
    "(/[aAbB%2]{1,3}){0,3}/?".prop_map(|s| if s.is_empty() { "/".to_string() } else { s })
}

fn arb_entries(max: usize) -> impl Strategy<Value = Vec<Entry<usize>>> {
    proptest::collection::vec((proptest::collection::vec(arb_host(), 1..3), arb_prefix()), 0..max)
        .prop_map(|v| v.into_iter().enumerate().map(|(i, (hosts, prefix))| Entry { hosts, prefix, value: i }).collect())
}

fn arb_request_host() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[ab]{0,2}(\\.[ab]{1,2}){0,3}\\.test")
}

proptest! {
    /// The index picks exactly the route the linear scan picks.
    #[test]
    fn index_equals_linear_scan(
        entries in arb_entries(40),
        reqs in proptest::collection::vec((arb_request_host(), "(/[aAbB%2]{0,3}){1,5}/?"), 1..30),
    ) {
        let t = RouteTable::new(entries);
        for (host, path) in &reqs {
            prop_assert_eq!(t.find(host.as_deref(), path), t.find_linear(host.as_deref(), path), "{:?} {}", host, path);
        }
    }
}

/// 10,000 routes (a host and a prefix per tenant, wildcards, shared prefixes), each request
/// answered as the linear scan answers it.
#[test]
fn ten_thousand_routes_equal_linear_scan() {
    let mut entries = Vec::new();
    for i in 0..10_000usize {
        let hosts = match i % 4 {
            0 => vec![HostMatch::Any],
            1 => vec![HostMatch::Exact(format!("t{}.example.com", i % 500))],
            2 => vec![HostMatch::Suffix(format!(".r{}.example.com", i % 50)), HostMatch::Any],
            _ => vec![HostMatch::Suffix(".example.com".into())],
        };
        let prefix = match i % 3 {
            0 => format!("/svc{i}/api"),
            1 => format!("/svc{}/", i % 100),
            _ => format!("/Svc{}/API/v{}", i % 1000, i % 7),
        };
        entries.push(Entry { hosts, prefix, value: i });
    }
    let t = RouteTable::new(entries);
    let mut checked = 0;
    for i in (0..12_000usize).step_by(7) {
        for host in [
            None,
            Some(format!("t{}.example.com", i % 600)),
            Some(format!("x.r{}.example.com", i % 60)),
            Some("example.com".to_string()),
            Some("other.test".to_string()),
        ] {
            for path in [
                format!("/svc{i}/api"),
                format!("/SVC{i}/Api/x"),
                format!("/svc{}/x", i % 120),
                format!("/svc{}/api/v{}/y", i % 1000, i % 8),
                format!("/svc{i}/apix"),
                "/".to_string(),
            ] {
                assert_eq!(t.find(host.as_deref(), &path), t.find_linear(host.as_deref(), &path), "{host:?} {path}");
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn entries_match_their_hosts_only() {
    let t = table();
    let admin = &t.entries()[3];
    assert!(admin.matches_host(Some("admin.example.com")));
    assert!(!admin.matches_host(Some("other.example.com")));
    assert!(!admin.matches_host(Some("admin.example.com.evil")));
    assert!(!admin.matches_host(None));
    let tenant = &t.entries()[4];
    assert!(tenant.matches_host(Some("t1.example.com")));
    assert!(!tenant.matches_host(Some("example.com")));
    assert!(t.entries()[0].matches_host(None));
    assert!(t.entries()[0].matches_host(Some("anything.test")));
}

#[test]
fn hosts_normalise() {
    assert_eq!(normalize_host("Example.COM:8080").as_deref(), Some("example.com"));
    assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
    assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
    assert_eq!(normalize_host("evil.com/x"), None);
    assert_eq!(normalize_host("a@b"), None);
    assert_eq!(normalize_host("host:port"), None);
    assert_eq!(normalize_host(""), None);
    assert_eq!(HostMatch::parse("*"), Some(HostMatch::Any));
}

/// Found by the `headers` fuzz target (fuzz/corpus/headers/regress-host-two-colons): a host
/// with a colon left after the port was normalised to something that normalised again
/// differently; an unbracketed IPv6 address came out as a fragment of itself.
#[test]
fn regression_fuzz_headers_host_with_colons_is_not_a_host() {
    for bad in
        ["a:1:2", "a:1:2:3", "::1", "2001:db8::1", "2001:db8::1:443", "a]:80", "a[b", ":80:80", "x.example.com:1:443"]
    {
        assert_eq!(normalize_host(bad), None, "{bad:?}");
    }
    // Brackets keep working, and every answer is a fixed point.
    for (raw, want) in [("[2001:db8::1]:443", "[2001:db8::1]"), ("[::1]", "[::1]"), ("Api.Test.:8080", "api.test")] {
        assert_eq!(normalize_host(raw).as_deref(), Some(want), "{raw:?}");
        assert_eq!(normalize_host(want).as_deref(), Some(want), "{want:?}");
    }
    assert_eq!(HostMatch::parse("bad/host"), None);
}
