//! The control endpoint: probes without a token, `/v1` with bearer tokens and roles.
use crate::common::*;
use portcullis_tests::Client;

#[test]
fn probes_need_no_token() {
    let (_up, gw) = simple();
    let c = Client::new();
    let h = c.get(&gw.control_url("/health"), &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    assert!(h.json()["timestamp"].as_str().unwrap().ends_with('Z'));
    let m = c.get(&gw.control_url("/metrics"), &[]);
    assert_eq!(m.status, 200);
    assert!(m.text().contains("portcullis_build_info"));
    c.get(&gw.url("/x"), &[]);
    // Metrics are recorded in the logging phase, just after the response went out.
    portcullis_tests::wait_until(std::time::Duration::from_secs(5), std::time::Duration::from_millis(20), || {
        c.get(&gw.control_url("/metrics"), &[]).text().contains("status_class=\"2xx\"} 1")
    });
    let m = c.get(&gw.control_url("/metrics"), &[]).text();
    assert!(m.contains("portcullis_requests_total{route=\"default\",status_class=\"2xx\"} 1"), "{m}");
    assert!(m.contains("portcullis_request_duration_seconds_count{route=\"default\"} 1"), "{m}");
    assert_eq!(c.post(&gw.control_url("/health"), &[], "").status, 405);
}

#[test]
fn the_proxy_port_does_not_serve_control() {
    let (up, gw) = simple();
    let r = Client::new().get(&gw.url("/metrics"), &[]);
    assert_eq!(r.json()["upstream"], "app", "the proxy forwards /metrics to the application");
    assert_eq!(up.count(), 1);
    assert_ne!(gw.proxy_addr(), gw.control_addr());
}

#[test]
fn tokens_and_roles() {
    let (_up, gw) = simple();
    let c = Client::new();
    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(bearer);
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        c.get(&gw.control_url(path), &headers)
    };

    let r = get("/v1/rules", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthenticated");
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(get("/v1/rules", Some("pcx_wrong")).status, 401);
    assert_eq!(c.get(&gw.control_url("/v1/rules"), &[("authorization", VIEWER)]).status, 401, "scheme required");
    assert_eq!(c.get(&gw.control_url("/v1/rules"), &[("authorization", &format!("Basic {VIEWER}"))]).status, 401);
    assert_eq!(get("/v1/rules", Some(&VIEWER[..VIEWER.len() - 1])).status, 401, "prefix of a token");

    for t in [VIEWER, OPERATOR, ADMIN] {
        let r = get("/v1/rules", Some(t));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["version"].as_str().unwrap().len() == 16);
    }
    assert_eq!(get("/v1/tokens", Some(VIEWER)).status, 403);
    assert_eq!(get("/v1/tokens", Some(OPERATOR)).status, 403);
    let r = get("/v1/tokens", Some(ADMIN));
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(&sha(ADMIN)), "hashes are never served");

    let put = |path: &str, token: &str| {
        c.request("PUT", &gw.control_url(path), &[("authorization", &bearer(token))], Some(b"{\"enabled\":true}"))
    };
    let r = put("/v1/switches/maintenance", VIEWER);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "forbidden");
    assert_eq!(put("/v1/switches/maintenance", OPERATOR).status, 200);
    // A quota reset needs the operator role; reading usage, a viewer.
    let r = c.post(&gw.control_url("/v1/quotas/acme/reset"), &[("authorization", &bearer(VIEWER))], "");
    assert_eq!(r.status, 403);
    assert_eq!(get("/v1/quotas/acme", Some(VIEWER)).status, 200);

    let r = get("/v1/switches/maintenance", Some(OPERATOR));
    assert_eq!(r.status, 405, "a mutation sent as GET");
    assert_eq!(r.header("allow"), Some("PUT"));
    assert_eq!(get("/v1/switches/maintenance", None).status, 401, "no token comes before method");
    assert_eq!(get("/v1/nothing-here", Some(ADMIN)).status, 404);
    assert!(
        gw.wait_for_log(|l| l.contains("control_denied") && l.contains("\"role\""), std::time::Duration::from_secs(5))
    );
    assert!(!gw.output().contains(VIEWER), "tokens never reach the logs");
}

/// Issue 18 item 9: every body is one JSON object with the type's known keys, or 400 — never a
/// positional array, a wrong type, a repeated key, trailing bytes or non-UTF-8 — and a refused
/// body changes nothing.
#[test]
fn bodies_are_json_objects_with_known_keys_or_400() {
    let (up, gw) = simple();
    let c = Client::new();
    let auth = bearer(OPERATOR);
    let version = || control_get(&gw, "/v1/switches", VIEWER).json()["version"].clone();
    let before = version();
    let bad: &[&[u8]] = &[
        b"[false, \"reason\"]",
        b"[true]",
        b"[true, 3600, \"r\", 60]",
        b" [true]",
        b"true",
        b"null",
        b"\"enabled\"",
        b"",
        b"{}",
        b"{\"enabled\":\"true\"}",
        b"{\"enabled\":1}",
        b"{\"enabled\":null}",
        b"{\"enabled\":[true]}",
        b"{\"enabled\":{\"x\":true}}",
        b"{\"enabled\":true,\"enabled\":false}",
        b"{\"enabled\":false,\"enabled\":true}",
        b"{\"enabled\":true,\"extra\":1}",
        b"{\"Enabled\":true}",
        b"{\"enabled\":true} x",
        b"{\"enabled\":true}{}",
        b"{\"enabled\":true},",
        b"{\"enabled\":true,\"reason\":\"\xff\xfe\"}",
        b"\xef\xbb\xbf{\"enabled\":true}",
        b"\xff{\"enabled\":true}",
        b"{\"enabled\":true,\"reason\":[\"a\"]}",
        b"{\"enabled\":true,\"reason\":5}",
    ];
    for path in ["/v1/switches/maintenance", "/v1/switches/channels/email", "/v1/flags/rate_limit"] {
        for body in bad {
            let r = c.request("PUT", &gw.control_url(path), &[("authorization", &auth)], Some(body));
            assert_eq!(r.status, 400, "{path} {}: {}", String::from_utf8_lossy(body), r.text());
            assert_eq!(r.json()["code"], "bad_request", "{}", r.text());
            assert!(!r.json()["errors"][0].as_str().unwrap_or("").is_empty(), "a clear reason: {}", r.text());
        }
    }
    let r = c.request(
        "PUT",
        &gw.control_url("/v1/switches/maintenance"),
        &[("authorization", &auth)],
        Some(b"{\"enabled\":true,\"retry_after\":\"60\"}"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Optional-body endpoints: empty is fine, anything but an object of known keys is not.
    for body in [&b"[\"reason\"]"[..], b"\"why\"", b"{\"reason\":\"a\",\"reason\":\"b\"}", b"{\"why\":1}", b"{} {}"] {
        let r = c.post(&gw.control_url("/v1/sessions/sess-1/revoke"), &[("authorization", &auth)], body);
        assert_eq!(r.status, 400, "{}: {}", String::from_utf8_lossy(body), r.text());
        let r = c.post(&gw.control_url("/v1/quotas/acme/reset"), &[("authorization", &auth)], body);
        assert_eq!(r.status, 400, "{}: {}", String::from_utf8_lossy(body), r.text());
    }
    // Nothing changed: same switch state, the session is not revoked, traffic flows.
    assert_eq!(version(), before);
    let s = control_get(&gw, "/v1/sessions", VIEWER).text();
    assert!(!s.contains("sess-1"), "{s}");
    assert_eq!(c.get(&gw.url("/x"), &[]).status, 200);
    assert_eq!(up.count(), 1);
    // A body over the control cap: 413 with a JSON error (or, when the client is still sending
    // as the gateway answers and closes, a broken pipe), and no change.
    let huge = format!("{{\"enabled\":false,\"reason\":\"{}\"}}", "a".repeat(128 * 1024));
    let put = c.try_request(
        "PUT",
        &gw.control_url("/v1/flags/rate_limit"),
        &[("authorization", &auth)],
        Some(huge.as_bytes()),
    );
    if let Ok(r) = put {
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.json()["code"], "payload_too_large");
    }
    assert_eq!(version(), before);
    // The well-formed body still works.
    let r = c.request(
        "PUT",
        &gw.control_url("/v1/flags/rate_limit"),
        &[("authorization", &auth)],
        Some(b" {\"enabled\":true, \"reason\":\"ok\"} \n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Issue 18 item 9: the `Bearer` scheme is case-insensitive (RFC 7235), as on the proxy port;
/// the token itself is exact.
#[test]
fn bearer_scheme_is_case_insensitive_and_the_token_exact() {
    let (_up, gw) = simple();
    let c = Client::new();
    for auth in [
        format!("Bearer {VIEWER}"),
        format!("bearer {VIEWER}"),
        format!("BEARER {VIEWER}"),
        format!("BeArEr {VIEWER}"),
        format!("Bearer   {VIEWER}"),
        format!("Bearer {VIEWER} "),
    ] {
        let r = c.get(&gw.control_url("/v1/rules"), &[("authorization", &auth)]);
        assert_eq!(r.status, 200, "{auth:?}: {}", r.text());
    }
    for auth in [
        format!("Bearer {}", VIEWER.to_uppercase()),
        format!("Bearer{VIEWER}"),
        format!("Bearerx {VIEWER}"),
        format!("Bearer {VIEWER} extra"),
        format!("Token {VIEWER}"),
        "Bearer ".to_string(),
        "bearer".to_string(),
    ] {
        let r = c.get(&gw.control_url("/v1/rules"), &[("authorization", &auth)]);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
    }
}
