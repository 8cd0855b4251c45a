//! Receivers for the alert sinks: a real HTTP receiver (webhook, Slack and PagerDuty shapes all
//! arrive as POSTs) and a real SMTP server (aiosmtpd from PyPI, with STARTTLS and AUTH), each on
//! 127.0.0.1 with a port picked at start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the HTTP receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub answered: u16,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct State {
    got: Mutex<Vec<Received>>,
    /// The status to answer with (200 by default).
    status: AtomicU16,
    /// Answer `fail_status` to this many requests first.
    fail_first: AtomicUsize,
}

/// An HTTP receiver recording every request; answers 200 unless told otherwise.
pub struct HttpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
}

impl HttpReceiver {
    /// Starts on 127.0.0.1, port 0.
    pub fn start() -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::SeqCst);
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        HttpReceiver { addr, state }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every further request with `status`.
    pub fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Answer the next `n` requests with 503 (then the usual status).
    pub fn fail_next(&self, n: usize) {
        self.state.fail_first.store(n, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// Requests to `path` answered 2xx.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path && (200..300).contains(&r.answered)).collect()
    }

    /// Waits until `pred` holds for the accepted requests to `path`.
    pub fn wait(&self, path: &str, timeout: Duration, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.accepted(path);
            if pred(&got) || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(conn: TcpStream, st: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(write_half) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    let mut out = write_half;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let failing = st.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let status = if failing { 503 } else { st.status.load(Ordering::SeqCst) };
        st.got.lock().unwrap().push(Received { path, headers, body, answered: status });
        let resp = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}");
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The aiosmtpd server: STARTTLS required (the certificate given), AUTH PLAIN/LOGIN for one
/// user, every accepted message appended to a JSON-lines file.
const SMTP_SERVER: &str = r#"
import asyncio, json, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, cert, key, user, password, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        rec = {"from": envelope.mail_from, "to": envelope.rcpt_tos,
               "data": envelope.content.decode("utf-8", "replace"),
               "tls": session.ssl is not None, "authenticated": bool(session.authenticated)}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
               authenticator=auth, auth_require_tls=True, auth_required=True, server_hostname="localhost")
c.start()
print("READY", flush=True)
sys.stdin.read()
"#;

/// A real SMTP server (aiosmtpd) on 127.0.0.1 requiring STARTTLS and AUTH.
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    child: Child,
    out: PathBuf,
}

impl SmtpServer {
    /// Starts aiosmtpd with this certificate and one user; waits until it accepts connections.
    pub fn start(dir: &Path, cert: &Path, key: &Path, user: &str, password: &str) -> SmtpServer {
        let port = crate::free_dead_addr().port();
        let out = dir.join("smtp-received.jsonl");
        let mut child = Command::new("python3")
            .args(["-c", SMTP_SERVER, &port.to_string()])
            .arg(cert)
            .arg(key)
            .args([user, password])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd; .ci/run does)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert_eq!(line.trim(), "READY", "aiosmtpd did not start (is it installed? python3 -m pip install aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd is not listening on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpServer { port, child, out }
    }

    /// Every message received, oldest first: `{from, to, data, tls, authenticated}`.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `pred` holds for the messages.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if pred(&got) || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
