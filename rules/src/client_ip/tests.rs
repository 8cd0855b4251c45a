use super::*;

fn tp() -> TrustedProxies {
    TrustedProxies::parse(["10.0.0.0/8", "192.168.1.1"]).unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn untrusted_peer_is_the_client_whatever_it_claims() {
    assert_eq!(tp().client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter()), ip("203.0.113.9"));
}

#[test]
fn walks_right_to_left_through_trusted_hops() {
    let t = tp();
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["6.6.6.6, 198.51.100.7, 10.1.1.1"].into_iter()), ip("198.51.100.7"));
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["6.6.6.6", "198.51.100.7"].into_iter()), ip("198.51.100.7"));
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["10.2.2.2"].into_iter()), ip("10.2.2.2"));
    assert_eq!(t.client_ip(ip("10.0.0.1"), std::iter::empty()), ip("10.0.0.1"));
    assert_eq!(t.client_ip(ip("::ffff:10.0.0.1"), ["198.51.100.7:443"].into_iter()), ip("198.51.100.7"));
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["[2001:db8::1]:8080"].into_iter()), ip("2001:db8::1"));
}

#[test]
fn garbage_stops_the_walk() {
    let t = tp();
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["6.6.6.6, not-an-ip, 10.3.3.3"].into_iter()), ip("10.3.3.3"));
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["6.6.6.6,"].into_iter()), ip("10.0.0.1"));
    assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
}

#[test]
fn ipv4_mapped_proxies_are_ipv4_proxies() {
    // Written either way, a proxy is the same host (the set folds IPv4-mapped networks).
    let t = TrustedProxies::parse(["::ffff:10.0.0.0/104"]).unwrap();
    assert!(t.contains(ip("10.1.2.3")));
    assert!(t.contains(ip("::ffff:10.1.2.3")));
    assert_eq!(t.client_ip(ip("10.0.0.1"), ["198.51.100.7"].into_iter()), ip("198.51.100.7"));
    assert!(!t.contains(ip("11.0.0.1")));
}
