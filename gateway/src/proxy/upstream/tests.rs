use super::*;

/// `forwarded_value` as the request path calls it: with the address's header text.
fn fwd(ip: Option<IpAddr>, proto: &str, host: Option<&str>) -> HeaderValue {
    let text = ip.map(ip_header_value);
    forwarded_value(ip.zip(text.as_ref()), proto, host)
}

#[test]
fn forwarded_is_rfc_7239() {
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(fwd(Some(v4), "https", Some("a.test")), "for=192.0.2.7;proto=https;host=\"a.test\"");
    assert_eq!(fwd(Some(v6), "http", None), "for=\"[2001:db8::1]\";proto=http");
    assert_eq!(fwd(None, "http", Some("bad\"host")), "proto=http");
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(
        fwd(Some(mapped), "https", Some("b.test:8443")),
        "for=\"[::ffff:192.0.2.1]\";proto=https;host=\"b.test:8443\""
    );
    assert_eq!(fwd(Some(v4), "http", Some("caf\u{e9}.test")), "for=192.0.2.7;proto=http");
    assert_eq!(fwd(Some(v4), "http", Some("a\\b")), "for=192.0.2.7;proto=http");
}

#[test]
fn client_addresses_become_the_same_text_as_display() {
    let ips = [
        "0.0.0.0",
        "1.2.3.4",
        "9.10.99.100",
        "127.0.0.1",
        "255.255.255.255",
        "10.0.200.7",
        "::1",
        "2001:db8::8a2e:370:7334",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    ];
    for ip in ips {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_header_value(ip).to_str().unwrap(), ip.to_string());
    }
    for a in 0..=255u8 {
        let ip = IpAddr::from([a, 255 - a, a / 3, 7]);
        assert_eq!(ip_header_value(ip).to_str().unwrap(), ip.to_string());
    }
}
