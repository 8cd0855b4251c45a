//! Routes, pools, round robin, failover, timeouts, request ids, header stripping and XFF trust,
//! body caps.
use crate::common::*;
use portcullis_tests::{free_dead_addr, wait_until, Client, Reply, Upstream};
use std::time::Duration;

#[test]
fn routes_by_prefix_and_host_to_their_pools() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Upstream::start("c");
    let gw = Cfg::new(&[a.addr()])
        .pool("other", &[b.addr()], "")
        .pool("admin", &[c.addr()], "")
        .routes(
            "  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: other\n    path_prefix: /\n    upstream: other\n  - id: admin\n    hosts: [admin.example.com]\n    path_prefix: /\n    upstream: admin\n",
        )
        .start();
    let client = Client::new();
    let r = client.get(&gw.url("/api/orders?x=1"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["upstream"], "a");
    assert_eq!(a.last().unwrap().target, "/api/orders?x=1");
    assert_eq!(client.get(&gw.url("/apiary"), &[]).json()["upstream"], "b");
    assert_eq!(client.get(&gw.url("/"), &[]).json()["upstream"], "b");
    let r = client.get(&gw.url("/api/x"), &[("host", "ADMIN.example.com:8080")]);
    assert_eq!(r.json()["upstream"], "c", "exact host beats any-host");
}

#[test]
fn unmatched_request_is_404_json_and_not_forwarded() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes("  - id: api\n    path_prefix: /api\n    upstream: app\n").start();
    let r = Client::new().get(&gw.url("/admin"), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(up.count(), 0);
}

#[test]
fn round_robin_spreads_requests_across_backends() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = Cfg::new(&[a.addr(), b.addr()]).start();
    let client = Client::new();
    for _ in 0..10 {
        assert_eq!(client.get(&gw.url("/x"), &[]).status, 200);
    }
    assert_eq!(a.count() + b.count(), 10);
    assert!(a.count() >= 3 && b.count() >= 3, "a={} b={}", a.count(), b.count());
}

#[test]
fn fails_over_to_the_healthy_backend() {
    let live = Upstream::start("live");
    let dead = free_dead_addr();
    let gw = Cfg::new(&[dead, live.addr()]).start();
    let client = Client::new();
    // Before and after the health check notices: every request succeeds (connect retry, then skip).
    for _ in 0..8 {
        let r = client.get(&gw.url("/x"), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["upstream"], "live");
    }
    assert_eq!(live.count(), 8);
    let health = client.get(&gw.control_url("/v1/upstreams"), &[("authorization", &format!("Bearer {VIEWER}"))]);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let v =
                client.get(&gw.control_url("/v1/upstreams"), &[("authorization", &format!("Bearer {VIEWER}"))]).json();
            v["pools"][0]["backends"].as_array().unwrap().iter().any(|b| b["healthy"] == false)
        }),
        "{}",
        health.text()
    );
}

#[test]
/// Readiness is the gateway's own (issue 19): every backend down is seen by every pod at once,
/// and a probe failing on it would take the whole fleet out of its Service. `/ready` stays 200
/// and reports the pool as information; upstream health has its own metric and endpoint.
fn all_backends_down_is_502_and_still_ready_with_upstream_health_reported_apart() {
    let up = Upstream::start("alive");
    let gw = Cfg::new(&[free_dead_addr()])
        .pool("other", &[up.addr()], "health_check: { kind: tcp, interval_ms: 200 }")
        .start();
    let client = Client::new();
    let r = client.get(&gw.url("/x"), &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["code"], "upstream_unavailable");
    assert!(r.header("x-request-id").is_some());
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(100), || client
        .get(&gw.control_url("/metrics"), &[])
        .text()
        .contains("portcullis_upstream_healthy{upstream=\"app\"} 0")));
    let ready = client.get(&gw.control_url("/ready"), &[]);
    assert_eq!(ready.status, 200, "{}", ready.text());
    let ready = ready.json();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["upstreams"], false);
    assert_eq!(ready["checks"]["state"], true);
    let metrics = client.get(&gw.control_url("/metrics"), &[]).text();
    assert!(metrics.contains("portcullis_upstream_healthy{upstream=\"other\"} 1"), "{metrics}");
    assert!(metrics.contains("portcullis_ready 1"), "{metrics}");
    let pools = client.get(&gw.control_url("/v1/upstreams"), &[("authorization", &format!("Bearer {VIEWER}"))]).json();
    assert_eq!(pools["pools"][0]["name"], "app");
    assert_eq!(pools["pools"][0]["backends"][0]["healthy"], false);
    assert!(metrics.contains("portcullis_upstream_errors_total{route=\"default\",kind=\"connect\"}"), "{metrics}");
}

#[test]
fn ready_recovers_when_a_backend_comes_back() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).start();
    let client = Client::new();
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(50), || client
        .get(&gw.control_url("/ready"), &[])
        .status
        == 200));
}

#[test]
fn slow_upstream_is_504_upstream_timeout() {
    let up = Upstream::with_fn("slow", |_| Reply::text(200, "late").with_delay(Duration::from_secs(3)));
    let gw = Cfg::new(&[up.addr()])
        .pool_settings("health_check: { kind: tcp, interval_ms: 1000 }\nread_timeout_ms: 300\ntotal_timeout_ms: 2000")
        .start();
    let started = std::time::Instant::now();
    let r = Client::new().get(&gw.url("/x"), &[]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn request_ids_are_generated_kept_or_replaced_and_forwarded() {
    let (up, gw) = simple();
    let client = Client::new();
    let r = client.get(&gw.url("/x"), &[]);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(up.last().unwrap().header("x-request-id"), Some(id.as_str()));

    // A client's own id is not kept by default (only a trusted proxy's, see
    // `spellings::inbound_request_ids_are_kept_only_from_whom_the_config_trusts`).
    let r = client.get(&gw.url("/x"), &[("x-request-id", "client-trace-0001")]);
    let got = r.header("x-request-id").unwrap();
    assert_ne!(got, "client-trace-0001");
    assert_eq!(got.len(), 32);
    assert_eq!(up.last().unwrap().header("x-request-id"), Some(got));

    for bad in ["short", "has spaces in it", "quote\"inside\"id", &"x".repeat(200)] {
        let r = client.get(&gw.url("/x"), &[("x-request-id", bad)]);
        let got = r.header("x-request-id").unwrap();
        assert_ne!(got, bad);
        assert_eq!(got.len(), 32);
        assert_eq!(up.last().unwrap().header("x-request-id"), Some(got));
    }
    // ids are time-ordered
    let a = client.get(&gw.url("/x"), &[]).header("x-request-id").unwrap().to_string();
    std::thread::sleep(Duration::from_millis(3));
    let b = client.get(&gw.url("/x"), &[]).header("x-request-id").unwrap().to_string();
    assert!(a < b);
    // and carried on our own responses, and in the access log
    let r = client.get(&gw.url("/a%2Fb"), &[]);
    assert_eq!(r.status, 400);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(r.json()["request_id"], id.as_str());
    assert!(
        gw.wait_for_log(
            |l| l.contains(id.as_str()) && l.contains("\"http.response.status_code\":400"),
            Duration::from_secs(5)
        ),
        "{}",
        gw.output()
    );
}

#[test]
fn spoofable_headers_are_stripped_and_ours_set() {
    let (up, gw) = simple();
    let r = Client::new().get(
        &gw.url("/x"),
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-host", "evil.example"),
            ("x-user-id", "admin"),
            ("X-Tenant-Id", "73"),
        ],
    );
    assert_eq!(r.status, 200);
    let got = up.last().unwrap();
    assert_eq!(got.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(got.header("x-real-ip"), Some("127.0.0.1"));
    // The client's `Forwarded` never passes; ours says what the gateway saw (RFC 7239).
    let fwd = got.header_all("forwarded");
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert!(fwd[0].starts_with("for=127.0.0.1;proto=http;host=") && !fwd[0].contains("1.2.3.4"), "{fwd:?}");
    assert_ne!(got.header("x-forwarded-host"), Some("evil.example"));
    assert_eq!(got.header("x-user-id"), None);
    assert_eq!(got.header("x-tenant-id"), None);
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).extra("trusted_proxies: [\"127.0.0.0/8\"]\n").start();
    let client = Client::new();
    client.get(&gw.url("/x"), &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 127.0.0.2")]);
    assert_eq!(up.last().unwrap().header_all("x-forwarded-for"), vec!["198.51.100.7"]);
    client.get(&gw.url("/x"), &[("x-forwarded-for", "6.6.6.6, garbage")]);
    assert_eq!(up.last().unwrap().header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn body_caps_hold_on_declared_and_streamed_bodies() {
    let (up, gw) = simple();
    let client = Client::new();
    let ok = vec![b'a'; 1024];
    let r = client.post(&gw.url("/api/upload"), &[], &ok);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().unwrap().body, ok);

    let before = up.count();
    let r = client.post(&gw.url("/api/upload"), &[], vec![b'a'; 1025]);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "payload_too_large");
    assert_eq!(up.count(), before, "a declared oversize body is refused before anything is forwarded");

    // Chunked: no declared length, refused while streaming.
    let mut req = b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'b'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = portcullis_tests::raw_exchange(gw.proxy_addr(), &req, Duration::from_secs(5));
    assert_eq!(portcullis_tests::parse_status(&resp), Some(413), "{}", String::from_utf8_lossy(&resp));
    assert!(up.requests().iter().all(|r| r.body.len() <= 1024), "the upstream never got a complete oversize body");
    assert_eq!(client.get(&gw.url("/x"), &[]).status, 200);
}

#[test]
fn upstream_connections_are_kept_alive() {
    let (up, gw) = simple();
    let client = Client::new();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/x"), &[]).status, 200);
    }
    let conns: std::collections::HashSet<u64> = up.requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(conns.len(), 1, "three sequential requests share one upstream connection");
}

/// A `Host` with a colon left after its port, or a stray bracket, is not a host name: it takes
/// only routes open to any host, never a `*.suffix` or exact-host route its tail happens to match
/// (`x:1.example.com:80` was read as host `x:1.example.com`). Found by the `headers` fuzz target.
#[test]
fn a_host_with_stray_colons_or_brackets_takes_only_any_host_routes() {
    let any = Upstream::start("any");
    let suffix = Upstream::start("suffix");
    let gw = Cfg::new(&[any.addr()])
        .pool("suffix", &[suffix.addr()], "")
        .routes("  - id: tenants\n    hosts: ['*.example.com']\n    path_prefix: /\n    upstream: suffix\n  - id: default\n    path_prefix: /\n    upstream: app\n")
        .start();
    let send = |host: &str| {
        let raw = format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = portcullis_tests::raw_exchange(gw.proxy_addr(), raw.as_bytes(), Duration::from_secs(5));
        portcullis_tests::parse_response(&resp).unwrap_or_else(|| panic!("no response for {host:?}"))
    };
    for host in ["x:1.example.com:80", "x:1.example.com:1:443", "x]y.example.com", "x[1.example.com:443"] {
        let r = send(host);
        assert_eq!(r.status, 200, "{host:?}: {r:?}");
        assert_eq!(r.json()["upstream"], "any", "{host:?} took the *.example.com route");
    }
    assert_eq!(suffix.count(), 0);
    // A well-formed host still takes it.
    assert_eq!(send("t1.example.com:8443").json()["upstream"], "suffix");
    assert_eq!(suffix.count(), 1);
}
