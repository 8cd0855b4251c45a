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
