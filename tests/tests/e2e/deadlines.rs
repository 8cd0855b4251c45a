//! Request-body deadlines (issue 19): a body that trickles in (every read well under the read
//! timeout) or stalls is cut when the whole body is late — `408 request_timeout` when nothing was
//! answered yet — and the upstream connection it held is closed. On a streamed route (Pingora
//! forwards as it reads), on a body-checked route (a webhook signature: the body is read whole
//! first), and by the pool's `total_timeout_ms` when the route sets no body deadline. A slow
//! client that finishes within the deadline still passes, whole.
use crate::common::Cfg;
use portcullis_tests::{parse_status, slow_send_after, wait_until, Gateway, Upstream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GH: &str = "gh-secret-for-deadline-tests-0001";

const ROUTES: &str = "  - id: slow
    path_prefix: /slow
    upstream: app
    max_body_bytes: 1048576
    body_timeout_ms: 1000
  - id: hooks
    path_prefix: /hooks
    upstream: app
    max_body_bytes: 1048576
    body_timeout_ms: 1000
  - id: total
    path_prefix: /total
    upstream: short
    max_body_bytes: 1048576
  - id: default
    path_prefix: /
    upstream: app
    max_body_bytes: 1048576
    body_timeout_ms: 4000
";

const HOOK_RULES: &str = "version: 1
webhooks:
  - id: gh
    path_prefix: /hooks
    provider: github
    secrets: [{id: current, env: PC_GH}]
";

fn start(up: &Upstream) -> Gateway {
    Cfg::new(&[up.addr()])
        .pool("short", &[up.addr()], "health_check: { kind: tcp, interval_ms: 200 }\ntotal_timeout_ms: 1000")
        .routes(ROUTES)
        .rule_file("hooks.yaml", HOOK_RULES)
        .start_env(&[("PC_GH", GH)])
}

/// A request head announcing 100000 body bytes (`Content-Length`), or a chunked one.
fn head(path: &str, chunked: bool) -> Vec<u8> {
    let framing = if chunked { "Transfer-Encoding: chunked" } else { "Content-Length: 100000" };
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: sha256=00\r\n{framing}\r\n\r\n"
    )
    .into_bytes()
}

/// Trickles a body (5 bytes every 100 ms: 50 B/s, 2000 s for the whole body) and returns
/// `(status, seconds until the gateway answered or closed, bytes sent)`.
fn trickle(addr: std::net::SocketAddr, path: &str, chunked: bool) -> (Option<u16>, f64, usize) {
    let body = if chunked { b"5\r\nhello\r\n".repeat(10_000) } else { vec![b'a'; 100_000] };
    let t = Instant::now();
    let (sent, got, closed) =
        slow_send_after(addr, &head(path, chunked), &body, 5, Duration::from_millis(100), Duration::from_secs(8));
    assert!(closed, "{path}: the gateway never closed a trickling body's connection");
    (parse_status(&got), t.elapsed().as_secs_f64(), sent)
}

#[test]
fn trickling_and_stalled_bodies_are_cut_at_the_deadline_and_the_upstream_connections_released() {
    let up = Arc::new(Upstream::start("app"));
    let gw = start(&up);
    let addr = gw.proxy_addr();

    // Several trickling clients at once on the streamed route: while they trickle, each holds an
    // upstream connection (Pingora forwards as it reads); at the deadline all are answered 408
    // and every upstream connection is closed.
    let clients: Vec<_> =
        (0..4).map(|i| std::thread::spawn(move || trickle(addr, &format!("/slow/{i}"), i % 2 == 1))).collect();
    assert!(
        wait_until(Duration::from_millis(900), Duration::from_millis(20), || up.open_connections() >= 4),
        "the trickling requests should be streaming upstream (open: {})",
        up.open_connections()
    );
    for c in clients {
        let (status, secs, sent) = c.join().unwrap();
        assert_eq!(status, Some(408), "streamed route");
        assert!(secs < 3.0, "cut after {secs:.1}s, deadline 1s");
        assert!(sent < 1_000, "sent {sent} bytes");
    }
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || up.open_connections() == 0),
        "the upstream connections of cut requests must be closed, {} still open",
        up.open_connections()
    );
    assert_eq!(up.count_to("/slow"), 0, "no complete request reached the upstream");

    // A body-checked route (the webhook signature is checked over the whole body before
    // anything is forwarded): cut at the deadline, the upstream never contacted.
    let before = up.heads();
    for chunked in [false, true] {
        let (status, secs, _) = trickle(addr, "/hooks/push", chunked);
        assert_eq!(status, Some(408), "body-checked route, chunked: {chunked}");
        assert!(secs < 3.0, "cut after {secs:.1}s");
    }
    assert_eq!(up.heads(), before, "nothing of a body read for a check reached the upstream");

    // No body deadline on the route: the pool's total_timeout_ms (1 s) bounds the exchange,
    // body included.
    let (status, secs, _) = trickle(addr, "/total/x", false);
    assert_eq!(status, Some(408), "total_timeout_ms bounds the body");
    assert!(secs < 3.0, "cut after {secs:.1}s");

    // A body that stops altogether (the head, then part of the body, then nothing): Pingora's
    // per-read timeout (60 s) would wait; the deadline does not.
    for path in ["/slow/stall", "/hooks/stall"] {
        let mut conn = portcullis_tests::RawConn::connect(addr);
        let t = Instant::now();
        conn.send(&head(path, false)).unwrap();
        conn.send(b"{\"a\":").unwrap();
        let r = conn.read_response(Duration::from_secs(5)).expect("an answer to a stalled body");
        assert_eq!(r.status, 408, "{path}");
        assert_eq!(r.json()["code"], "request_timeout", "{path}");
        assert!(t.elapsed() < Duration::from_secs(3), "{path}: cut after {:?}", t.elapsed());
    }
    assert!(wait_until(Duration::from_secs(3), Duration::from_millis(20), || up.open_connections() == 0));
    let deadline_logs = gw.logs().iter().filter(|l| l.contains("body_deadline")).count();
    assert!(deadline_logs >= 6, "the access log names the deadline ({deadline_logs} lines)");

    // A slow-ish client under the deadline (2000 bytes in 20 pieces over ~1 s, deadline 4 s):
    // passes, and the upstream gets every byte.
    let body = vec![b'z'; 2000];
    let h = b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n";
    let (_, got, _) = slow_send_after(addr, h, &body, 100, Duration::from_millis(50), Duration::from_secs(8));
    assert_eq!(parse_status(&got), Some(200), "{}", String::from_utf8_lossy(&got));
    let last = up.last().unwrap();
    assert_eq!((last.path.as_str(), last.body.len()), ("/ok", 2000));
}

/// Connections that never send a byte (documented in configuration.md, `limits`): closed
/// silently after `header_timeout_ms` (1 s here), no upstream connection; between requests on a
/// keep-alive connection, after `keepalive_timeout_seconds` (1 s here), also silently.
#[test]
fn idle_connections_are_closed_silently_at_their_deadline() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).start();
    let conns: Vec<_> = (0..3).map(|_| portcullis_tests::RawConn::connect(gw.proxy_addr())).collect();
    let t = Instant::now();
    for mut c in conns {
        assert!(c.wait_closed(Duration::from_secs(4)), "an idle connection is closed");
        assert!(c.buffered().is_empty(), "silently: {:?}", String::from_utf8_lossy(c.buffered()));
    }
    let secs = t.elapsed().as_secs_f64();
    assert!((0.8..3.5).contains(&secs), "closed after {secs:.1}s (header_timeout_ms 1000)");
    assert_eq!(up.heads(), 0, "nothing reached the upstream");

    // After one request, the keep-alive allowance.
    let gw = Cfg::new(&[up.addr()]);
    let gw = Cfg { limits: format!("{}  keepalive_timeout_seconds: 1\n", gw.limits), ..gw }.start();
    let mut c = portcullis_tests::RawConn::connect(gw.proxy_addr());
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response(Duration::from_secs(3)).expect("a response").status, 200);
    let t = Instant::now();
    assert!(c.wait_closed(Duration::from_secs(4)), "an idle keep-alive connection is closed");
    assert!(t.elapsed() < Duration::from_secs(3), "after {:?}", t.elapsed());
}

/// A connection keeps one read timer, re-armed for each wait for a request head (server.rs
/// `ReadTimer`): each wait gets its whole allowance from when it began, never what an earlier
/// wait left, and a wait ends at its own deadline. Members: a request after most of the first
/// wait's allowance, then one after most of the second's (past the first wait's deadline: a
/// timer not re-armed would have closed the connection), then the idle close. And a pipelined
/// pair (configuration.md, "HTTP/1.1 pipelining"): the first answered, the connection closed,
/// nothing of the second forwarded.
#[test]
fn each_wait_for_a_request_head_gets_its_whole_allowance() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]);
    let gw = Cfg { limits: format!("{}  keepalive_timeout_seconds: 1\n", gw.limits), ..gw }.start();
    let mut c = portcullis_tests::RawConn::connect(gw.proxy_addr());
    // First wait: `header_timeout_ms` (1 s); the timer is made here (the read was pending).
    std::thread::sleep(Duration::from_millis(700));
    c.send(b"GET /w1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response(Duration::from_secs(3)).expect("a response").status, 200);
    // Second wait: 0.7 s more, 1.4 s after the timer was first armed.
    std::thread::sleep(Duration::from_millis(700));
    c.send(b"GET /w2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response(Duration::from_secs(3)).expect("the re-armed wait was not cut").status, 200);
    let t = Instant::now();
    assert!(c.wait_closed(Duration::from_secs(4)), "the last wait still ends at its deadline");
    let idle = t.elapsed();
    assert!((Duration::from_millis(700)..Duration::from_secs(3)).contains(&idle), "closed after {idle:?}");

    // Pipelined: the first request is answered, then the connection closes unread.
    let mut c = portcullis_tests::RawConn::connect(gw.proxy_addr());
    c.send(b"GET /w3 HTTP/1.1\r\nHost: t\r\n\r\nGET /w4 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response(Duration::from_secs(3)).expect("a response").status, 200);
    assert!(c.wait_closed(Duration::from_secs(2)), "closed after the first pipelined response");
    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/w1", "/w2", "/w3"], "nothing of the pipelined request was forwarded");
}
