//! End-to-end harness for Portcullis: a real recording upstream, the real gateway as a child
//! process, a real HTTP client and raw TCP helpers, all on 127.0.0.1 port 0.
//!
//! Every blocking wait has a timeout, so a broken gateway fails a test instead of hanging CI.
//!
//! ```ignore
//! use portcullis_tests::*;
//! use std::time::Duration;
//!
//! let up = Upstream::start("app");
//! // `{{DIR}}` in the config (and in extra files) becomes the gateway's temp dir.
//! let config = format!("# … real config …\n# upstream at {}\n# state in {{{{DIR}}}}/state\n", up.host_port());
//! let gw = Gateway::start(env!("CARGO_BIN_EXE_portcullis-e2e"), &config);
//! let resp = Client::new().get(&gw.url("/hello?x=1"), &[("x-probe", "1")]);
//! assert_eq!(resp.status, 200);
//! assert!(up.wait_for_count_to("/hello", 1, Duration::from_secs(5)));
//! assert_eq!(up.last_excluding("/health").unwrap().target, "/hello?x=1");
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alerts;
mod client;
mod gateway;
pub mod jwt;
mod raw;
pub mod tls;
mod upstream;
mod util;

pub use client::{exchange, Client, Resp};
pub use gateway::{
    exit_code, json_field, json_str, parse_json_line, parse_listening_line, run_cli, run_cli_with, Gateway, LogLine,
    Pipe, StartError, CLI_TIMEOUT, DIR_PLACEHOLDER, START_TIMEOUT,
};
pub use raw::{
    encode_chunked, parse_response, parse_response_to_head, parse_responses, parse_status, raw_exchange,
    raw_exchange_half_close, raw_exchange_keep_open, slow_send, slow_send_after, RawConn, RawResp,
};
pub use upstream::{default_handler, Handler, Recorded, Reply, Upstream};
pub use util::{free_dead_addr, locate_bin, wait_until, TempDir};

/// Whether the suites run over HTTP/2: `PORTCULLIS_E2E_HTTP=h2` (read once). Then every gateway
/// [`Gateway`] starts on a plain listener gets `listen.h2c: true`, and [`Client`] speaks HTTP/2
/// with prior knowledge to those proxy listeners (control listener, upstreams and the raw-socket
/// helpers stay HTTP/1.1).
pub fn h2_mode() -> bool {
    static MODE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| std::env::var("PORTCULLIS_E2E_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("h2")))
}

/// For a test (or a case) that only means something over HTTP/1.1, e.g. it sends a
/// connection-specific field an HTTP/2 client cannot send: `true` in h2 mode, after printing
/// the reason, so the test returns early — `if h1_only("sends Transfer-Encoding") { return; }`.
pub fn h1_only(why: &str) -> bool {
    if h2_mode() {
        eprintln!("h2 mode: skipped, HTTP/1.1 only: {why}");
    }
    h2_mode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn upstream_records_get_with_default_handler() {
        let up = Upstream::start("alpha");
        let c = Client::new();
        let r = c.get(&up.url("/a%2Fb?x=1"), &[("X-Test", "v1"), ("x-test", "v2")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json(), serde_json::json!({"upstream": "alpha", "method": "GET", "path": "/a%2Fb?x=1"}));
        let rec = up.last().unwrap();
        assert_eq!(rec.method, "GET");
        assert_eq!(rec.target, "/a%2Fb?x=1");
        assert_eq!(rec.path, "/a%2Fb");
        assert_eq!(rec.query(), Some("x=1"));
        assert_eq!(rec.header("X-TEST"), Some("v1"));
        assert_eq!(rec.header_all("x-test"), vec!["v1", "v2"]);
        assert!(rec.headers.iter().all(|(k, _)| k == &k.to_ascii_lowercase()));
        assert_eq!(rec.header("host"), Some(up.host_port().as_str()));
        assert!(rec.body.is_empty());
        assert_eq!(up.count(), 1);
        assert_eq!(up.connections(), 1);
        up.clear();
        assert_eq!(up.count(), 0);
        assert!(up.last().is_none());
    }

    #[test]
    fn upstream_records_post_with_content_length() {
        let up = Upstream::start("beta");
        let body = vec![b'z'; 200_000];
        let r = Client::new().post(&up.url("/upload"), &[("content-type", "x/y")], &body);
        assert_eq!(r.status, 200);
        let rec = up.last().unwrap();
        assert_eq!(rec.method, "POST");
        assert_eq!(rec.header("content-length"), Some("200000"));
        assert_eq!(rec.body, body);
    }

    #[test]
    fn upstream_decodes_chunked_body() {
        let up = Upstream::start("gamma");
        let req = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                    4\r\nWiki\r\n5;name=v\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let out = raw_exchange(up.addr(), req, T);
        let resp = parse_response(&out).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("close"));
        let rec = up.last().unwrap();
        assert_eq!(rec.body, b"Wikipedia");
        assert_eq!(rec.header("transfer-encoding"), Some("chunked"));
    }

    #[test]
    fn upstream_keep_alive_two_requests_one_connection() {
        let up = Upstream::start("delta");
        let mut conn = RawConn::connect(up.addr());
        conn.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r1 = conn.read_response(T).unwrap();
        assert_eq!(r1.json()["path"], "/one");
        conn.send(b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        let r2 = conn.read_response(T).unwrap();
        assert_eq!(r2.json()["path"], "/two");
        // Pipelined: two requests in one write.
        conn.send(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(conn.read_response(T).unwrap().json()["path"], "/p1");
        assert_eq!(conn.read_response(T).unwrap().json()["path"], "/p2");
        let reqs = up.requests();
        assert_eq!(reqs.len(), 4);
        assert!(reqs.iter().all(|r| r.conn_id == reqs[0].conn_id));
        assert_eq!(reqs[1].body, b"abc");
        assert_eq!(up.connections(), 1);
        assert!(!conn.wait_closed(Duration::from_millis(100)));
    }

    #[test]
    fn upstream_delay_and_custom_handler() {
        let up = Upstream::with_fn("eps", |r| {
            if r.path == "/slow" {
                Reply::text(503, "slow").with_delay(Duration::from_millis(300))
            } else {
                Reply::json(201, serde_json::json!({"ok": true})).with_header("x-up", "1")
            }
        });
        let c = Client::new();
        let start = Instant::now();
        let r = c.get(&up.url("/slow"), &[]);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "slow");
        let r = c.get(&up.url("/fast"), &[]);
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-up"), Some("1"));
        // A client with a short timeout gives up on the delayed reply.
        let quick = Client::with_timeout(Duration::from_millis(100));
        assert!(quick.try_request("GET", &up.url("/slow"), &[], None).is_err());
        // The handler can be swapped at runtime.
        up.set_handler(Arc::new(|_| Reply::status(418)));
        assert_eq!(c.get(&up.url("/fast"), &[]).status, 418);
    }

    #[test]
    fn upstream_recorded_before_delayed_reply() {
        let up = Upstream::with_fn("slow", |_| Reply::status(200).with_delay(Duration::from_secs(30)));
        let addr = up.addr();
        let t = std::thread::spawn(move || {
            raw_exchange(addr, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(10))
        });
        assert!(up.wait_for_count(1, T));
        // Dropping the upstream closes the connection promptly despite the pending delay.
        let start = Instant::now();
        drop(up);
        let out = t.join().unwrap();
        assert!(out.is_empty());
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn upstream_health_filters_and_bare_tcp() {
        let up = Upstream::start("h");
        // A bare TCP connect (TCP health check) must not disturb anything.
        drop(std::net::TcpStream::connect(up.addr()).unwrap());
        let c = Client::new();
        c.get(&up.url("/health"), &[]);
        c.get(&up.url("/api/x"), &[]);
        c.get(&up.url("/health"), &[]);
        assert_eq!(up.count(), 3);
        assert_eq!(up.requests_to("/api").len(), 1);
        assert_eq!(up.count_to("/health"), 2);
        assert_eq!(up.requests_excluding("/health").len(), 1);
        assert_eq!(up.last_excluding("/health").unwrap().path, "/api/x");
        assert!(up.wait_for_count_to("/health", 2, T));
        assert!(!up.wait_for_count(4, Duration::from_millis(50)));
        assert!(up.wait_for(T, |rs| rs.iter().any(|r| r.path == "/api/x")));
        assert!(wait_until(T, Duration::from_millis(5), || up.connections() >= 2));
    }

    #[test]
    fn upstream_head_close_raw_and_hang_up() {
        let up = Upstream::with_fn("misc", |r| match r.path.as_str() {
            "/close" => Reply::text(200, "bye").with_close(),
            "/raw" => Reply::raw(&b"HTTP/1.1 200 OK\r\nX-Bad: a\r\nContent-Length: 2\r\n\r\nhi"[..]),
            "/hangup" => Reply::hang_up(),
            _ => Reply::text(200, "body"),
        });
        // HEAD: content-length of the body but no body.
        let mut conn = RawConn::connect(up.addr());
        conn.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = conn.read_response_to_head(T).unwrap();
        assert_eq!(r.header("content-length"), Some("4"));
        conn.send(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = conn.read_response(T).unwrap();
        assert_eq!(r.text(), "bye");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(conn.wait_closed(T));

        let out = raw_exchange(up.addr(), b"GET /raw HTTP/1.1\r\nHost: x\r\n\r\n", T);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nX-Bad: a\r\nContent-Length: 2\r\n\r\nhi".to_vec());
        let out = raw_exchange(up.addr(), b"GET /hangup HTTP/1.1\r\nHost: x\r\n\r\n", T);
        assert!(out.is_empty());
        // Garbage gets a 400 and a close.
        let out = raw_exchange(up.addr(), b"NOT HTTP AT ALL\r\n\r\n", T);
        assert_eq!(parse_status(&out), Some(400));
        assert_eq!(up.count(), 4);
    }

    #[test]
    fn upstream_expect_continue() {
        let up = Upstream::start("cont");
        let mut conn = RawConn::connect(up.addr());
        conn.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").unwrap();
        let interim = conn.read_response(T).unwrap();
        assert_eq!(interim.status, 100);
        conn.send(b"hello").unwrap();
        assert_eq!(conn.read_response(T).unwrap().status, 200);
        assert_eq!(up.last().unwrap().body, b"hello");
    }

    #[test]
    fn raw_exchange_variants() {
        let up = Upstream::start("raw");
        // Keep-alive request without Connection: close: raw_exchange returns at the timeout.
        let start = Instant::now();
        let out = raw_exchange(up.addr(), b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_millis(200));
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(parse_response(&out).unwrap().status, 200);
        // Half-close: the upstream answers, then sees EOF and closes.
        let out = raw_exchange_half_close(up.addr(), b"GET /hc HTTP/1.1\r\nHost: x\r\n\r\n", T);
        assert_eq!(parse_response(&out).unwrap().json()["path"], "/hc");
        // Keep open: first response bytes, then the connection is still usable.
        let (first, mut conn) = raw_exchange_keep_open(up.addr(), b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n", T);
        assert_eq!(parse_response(&first).unwrap().json()["path"], "/first");
        conn.send(b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let rest = conn.read_until_close(T);
        let all = parse_responses(&rest);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].json()["path"], "/second");
    }

    #[test]
    fn slow_send_detects_peer_close() {
        // A server that reads 10 bytes then closes.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 10];
            s.read_exact(&mut b).unwrap();
            drop(s);
        });
        let (sent, _resp, closed) =
            slow_send(addr, &[b'a'; 1000], 5, Duration::from_millis(20), Duration::from_secs(10));
        server.join().unwrap();
        assert!(closed);
        assert!((10..1000).contains(&sent), "sent {sent}");

        // Against the upstream: the full request goes through slowly and is answered.
        let up = Upstream::start("slowloris");
        let req = b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let (sent, resp, closed) = slow_send(up.addr(), req, 7, Duration::from_millis(5), Duration::from_secs(10));
        assert_eq!(sent, req.len());
        assert!(closed);
        assert_eq!(parse_response(&resp).unwrap().json()["path"], "/s");

        // Overall timeout stops sending.
        let (sent, _, closed) =
            slow_send(up.addr(), &[b'G'; 100], 1, Duration::from_millis(50), Duration::from_millis(200));
        assert!(!closed);
        assert!(sent < 100);
    }

    #[test]
    fn client_does_not_follow_redirects_and_reports_transport_errors() {
        let up = Upstream::with_fn("redir", |_| Reply::status(302).with_header("location", "/elsewhere"));
        let r = Client::new().get(&up.url("/"), &[]);
        assert_eq!(r.status, 302);
        assert_eq!(r.header("Location"), Some("/elsewhere"));
        assert_eq!(up.count(), 1);
        let dead = free_dead_addr();
        let err = Client::new().try_request("GET", &format!("http://{dead}/"), &[], None).unwrap_err();
        assert!(err.contains("transport"), "{err}");
        let r = Client::no_keepalive().request("PUT", &up.url("/p"), &[], Some(b"xyz"));
        assert_eq!(r.status, 302);
        assert_eq!(up.last().unwrap().body, b"xyz");
    }

    #[test]
    fn listening_line_parsing() {
        let nested = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening","proxy_addr":"127.0.0.1:1234","control_addr":"127.0.0.1:5678"},"target":"portcullis"}"#;
        let (p, c) = parse_listening_line(nested).unwrap();
        assert_eq!(p.port(), 1234);
        assert_eq!(c.unwrap().port(), 5678);
        let flat = r#"{"message":"listening","proxy_addr":"127.0.0.1:1","control_addr":"127.0.0.1:2","x":1}"#;
        assert!(parse_listening_line(flat).is_some());
        assert!(parse_listening_line(r#"{"message":"starting"}"#).is_none());
        assert!(parse_listening_line("listening on 127.0.0.1:80").is_none());
        assert!(parse_listening_line(r#"{"message":"listening","proxy_addr":"nope"}"#).is_none());
    }

    /// A fake gateway: `sh run --config <path>` runs the extra file `run` in the temp dir.
    fn fake_gateway(script: &str, env: &[(&str, &str)]) -> Result<Gateway, StartError> {
        // SIGHUP back to its default first: a shell cannot trap a signal ignored on entry, and
        // tests run under `nohup` inherit an ignored SIGHUP (the real gateway installs its own
        // handler whatever it inherited).
        Gateway::try_start_subcommand(
            "/usr/bin/env",
            "--default-signal=HUP /bin/sh run",
            "state_dir: \"{{DIR}}/state\"\n",
            env,
            &[("run", script), ("rules/r.yaml", "dir: {{DIR}}\n")],
        )
    }

    #[test]
    fn gateway_process_lifecycle() {
        let script = r#"
[ "$1" = "--config" ] || exit 9
[ -f "$2" ] || exit 8
# Traps first: the test signals as soon as it has read the listening line.
trap 'echo "{\"message\":\"got hup\"}"' HUP
trap 'echo bye; exit 3' TERM
echo "plain text line"
echo "to stderr $MY_VAR" >&2
echo '{"level":"INFO","fields":{"message":"listening","proxy_addr":"127.0.0.1:1111","control_addr":"127.0.0.1:2222"}}'
while true; do sleep 0.05; done
"#;
        let gw = fake_gateway(script, &[("MY_VAR", "hello")]).unwrap();
        assert_eq!(gw.proxy_addr().port(), 1111);
        assert_eq!(gw.control_addr().port(), 2222);
        assert_eq!(gw.url("/x"), "http://127.0.0.1:1111/x");
        assert_eq!(gw.control_url("/m"), "http://127.0.0.1:2222/m");
        assert!(gw.is_running());
        let dir = gw.dir().to_path_buf();
        let cfg = std::fs::read_to_string(gw.config_path()).unwrap();
        assert_eq!(cfg, format!("state_dir: \"{}/state\"\n", dir.display()));
        let rules = std::fs::read_to_string(dir.join("rules/r.yaml")).unwrap();
        assert_eq!(rules, format!("dir: {}\n", dir.display()));
        assert!(gw.wait_for_log(|l| l == "to stderr hello", T));
        assert!(gw.logs().iter().any(|l| l == "plain text line"));
        assert_eq!(gw.json_logs().len(), 1);
        let mark = gw.log_mark();
        assert!(gw.signal("HUP"));
        let v = gw.wait_for_json_log(|v| json_str(v, "message") == Some("got hup"), T).unwrap();
        assert_eq!(v["message"], "got hup");
        assert!(gw.wait_for_log_since(mark, |l| l.contains("got hup"), T));
        assert!(!gw.wait_for_log_since(gw.log_mark(), |l| l.contains("got hup"), Duration::from_millis(50)));
        assert!(gw.wait_exit(Duration::from_millis(50)).is_none());
        assert!(gw.signal("SIGTERM"));
        let status = gw.wait_exit(T).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(!gw.is_running());
        assert!(gw.logs().iter().any(|l| l == "bye"));
        drop(gw);
        assert!(!dir.exists());
    }

    #[test]
    fn gateway_killed_on_drop() {
        let gw =
            fake_gateway("echo '{\"message\":\"listening\",\"proxy_addr\":\"127.0.0.1:1\"}'\nexec sleep 30\n", &[])
                .unwrap();
        assert!(gw.try_control_addr().is_none());
        let pid = gw.pid();
        let start = Instant::now();
        drop(gw);
        assert!(start.elapsed() < Duration::from_secs(5));
        // The process is gone (reaped): kill -0 fails.
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(!alive);
    }

    #[test]
    fn gateway_start_failure_reports_output() {
        let err = fake_gateway("echo 'config error: bad key' >&2\nexit 2\n", &[]).unwrap_err();
        assert_eq!(err.status.unwrap().code(), Some(2));
        assert!(err.output.contains("[err] config error: bad key"), "{}", err.output);
        assert!(err.to_string().contains("exited"));
        let caught = std::panic::catch_unwind(|| {
            Gateway::start_with("/bin/sh", "x: 1\n", &[], &[("run", "echo oops; exit 1\n")])
        });
        let msg = caught.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("[out] oops"), "{msg}");
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn gateway_drop_while_panicking_dumps_output() {
        let _gw = fake_gateway(
            "echo '{\"message\":\"listening\",\"proxy_addr\":\"127.0.0.1:1\"}'\necho last-words\nexec sleep 30\n",
            &[],
        )
        .unwrap();
        panic!("boom");
    }

    #[test]
    fn cli_runs() {
        let (code, out, err) = run_cli("/bin/sh", &["-c", "echo hi $V; echo e >&2; exit 4"], &[("V", "x")]);
        assert_eq!(code, 4);
        assert_eq!(out, "hi x\n");
        assert_eq!(err, "e\n");
        let (code, out, _) =
            run_cli_with("/bin/sh", &["-c", "cat; pwd"], &[], Some(std::path::Path::new("/")), Some(b"in\n"));
        assert_eq!(code, 0);
        assert_eq!(out, "in\n/\n");
        let (code, _, _) = run_cli("/bin/sh", &["-c", "kill -9 $$"], &[]);
        assert_eq!(code, 137);
    }
}
