use super::*;
use proptest::prelude::*;

fn set(items: &[&str]) -> IpSet {
    IpSet::new(items.iter().map(|s| parse_net(s).unwrap()))
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn members_and_neighbours() {
    let s = set(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "0.0.0.0/32", "255.255.255.255"]);
    for yes in ["10.0.0.0", "10.255.255.255", "192.0.2.7", "2001:db8::", "2001:db8:ffff::1", "0.0.0.0"] {
        assert!(s.contains(ip(yes)), "{yes}");
    }
    assert!(s.contains(ip("255.255.255.255")));
    for no in ["9.255.255.255", "11.0.0.0", "192.0.2.6", "192.0.2.8", "2001:db9::", "2001:db7:ffff::", "::"] {
        assert!(!s.contains(ip(no)), "{no}");
    }
    assert!(!IpSet::default().contains(ip("10.0.0.1")));
    assert!(IpSet::default().is_empty());
}

#[test]
fn ranges_merge() {
    // Nested, overlapping, adjacent: one range each family.
    let s = set(&["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8", "12.0.0.0/7", "::/1", "8000::/1"]);
    assert_eq!(s.ranges(), 2);
    assert!(s.contains(ip("13.255.255.255")));
    assert!(!s.contains(ip("14.0.0.0")));
    assert!(s.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    // Whole spaces, at the top edge.
    let all = set(&["0.0.0.0/0", "::/0"]);
    assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("::1")));
    assert_eq!(all.ranges(), 2);
}

#[test]
fn ipv4_mapped_is_ipv4() {
    let s = set(&["192.0.2.0/24", "::ffff:198.51.100.0/120"]);
    assert!(s.contains(ip("::ffff:192.0.2.9")));
    assert!(s.contains(ip("198.51.100.9")));
    assert!(s.contains(ip("::ffff:198.51.100.9")));
    assert!(!s.contains(ip("::ffff:192.0.3.9")));
    // A wide IPv6 network is IPv6 only.
    let wide = set(&["::/0"]);
    assert!(!wide.contains(ip("192.0.2.1")));
    assert!(!wide.contains(ip("::ffff:192.0.2.1")));
    assert!(wide.contains(ip("2001:db8::1")));
    // Host bits are cleared.
    assert!(set(&["10.1.2.3/8"]).contains(ip("10.200.0.1")));
}

#[test]
fn list_formats() {
    let text = "\u{feff}# FireHOL level1\r\n\
            ; Spamhaus DROP List 2026/01/01\n\
            1.10.16.0/20 ; SBL256894\n\
            \n   \t\n\
            2.56.192.0/22 # comment\r\n\
            203.0.113.7\n\
            2001:db8:dead::/48\n\
            ::ffff:198.51.100.0/120";
    let l = parse_list(text.as_bytes(), 20).unwrap();
    assert_eq!(l.entries, 5);
    assert!(l.set.contains(ip("1.10.31.255")));
    assert!(l.set.contains(ip("2.56.195.1")));
    assert!(l.set.contains(ip("203.0.113.7")));
    assert!(l.set.contains(ip("2001:db8:dead:1::1")));
    assert!(l.set.contains(ip("198.51.100.200")));
    assert!(!l.set.contains(ip("1.10.32.0")));
    assert_eq!(parse_list(b"", 20).unwrap().entries, 0);
}

#[test]
fn list_errors_name_every_bad_line() {
    let text = b"10.0.0.0/8\n10.0.0.0/33\nhello\n\n1.2.3.4 5.6.7.8\n1.2.3.4/24/1\n\xff\xfe\n";
    let e = parse_list(text, 20).unwrap_err();
    let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 5, 6, 7]);
    assert!(e[0].message.contains("`10.0.0.0/33`"), "{e:?}");
    assert!(e[4].message.contains("UTF-8"));
    let long = format!("1.2.3.4 #{}", "x".repeat(2000));
    assert!(parse_list(long.as_bytes(), 20).unwrap_err()[0].message.contains("limit"));
    // Capped, with a count of the rest.
    let many = "bad\n".repeat(50);
    let e = parse_list(many.as_bytes(), 3).unwrap_err();
    assert_eq!(e.len(), 3);
    assert!(e[2].message.ends_with("(and 47 more bad lines)"), "{}", e[2].message);
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(a.into(), l).unwrap()).trunc()),
        // Clustered so that v4 neighbours and overlaps are frequent.
        (0u32..4096, 20u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new((0x0a00_0000 + (a << 4)).into(), l).unwrap()).trunc()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::V6(ipnet::Ipv6Net::new(a.into(), l).unwrap()).trunc()),
        (any::<u32>(), 96u8..=128).prop_map(|(a, l)| {
            let v6 = std::net::Ipv4Addr::from(a).to_ipv6_mapped();
            IpNet::V6(ipnet::Ipv6Net::new(v6, l).unwrap())
        }),
    ]
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
        (0u32..65536).prop_map(|a| IpAddr::V4((0x0a00_0000 + a).into())),
        any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
        any::<u32>().prop_map(|a| IpAddr::V6(std::net::Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
}

#[test]
fn union_is_either() {
    let a = set(&["10.0.0.0/24", "2001:db8::/64"]);
    let b = set(&["10.0.1.0/24", "192.0.2.1"]);
    let u = IpSet::union([&a, &b]);
    assert_eq!(u.ranges(), 3, "10.0.0.0/24 and 10.0.1.0/24 merge");
    for x in ["10.0.0.1", "10.0.1.255", "192.0.2.1", "2001:db8::5"] {
        assert!(u.contains(ip(x)), "{x}");
    }
    assert!(!u.contains(ip("10.0.2.0")));
    assert!(IpSet::union([]).is_empty());
}

proptest! {
    /// The index answers exactly what a linear scan of the folded networks answers.
    #[test]
    fn same_as_linear_scan(nets in proptest::collection::vec(arb_net(), 0..60), ips in proptest::collection::vec(arb_ip(), 1..40)) {
        let s = IpSet::new(nets.iter().copied());
        let folded: Vec<IpNet> = nets.iter().map(|n| unmap_net(*n)).collect();
        for ip in ips {
            let c = ip.to_canonical();
            let want = folded.iter().any(|n| n.contains(&c));
            prop_assert_eq!(s.contains(ip), want, "{}", ip);
        }
    }
}
