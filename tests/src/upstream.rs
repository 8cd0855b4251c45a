//! A real HTTP/1.1 origin server that records every request it receives.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::raw::{decode_chunked, find_header, find_header_all, is_chunked};
use crate::util::wait_until;

const MAX_HEADERS: usize = 128;
const MAX_HEAD_BYTES: usize = 1024 * 1024;
/// A connection idle (or stuck mid-request) this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the upstream received: one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Raw request target as received, e.g. `/a%2Fb?x=1`.
    pub target: String,
    /// `target` before the first `?`.
    pub path: String,
    /// Minor HTTP version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    /// Names lowercased, in order of arrival, values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// Body, chunked framing removed.
    pub body: Vec<u8>,
    /// Which TCP connection (1, 2, …, per upstream) carried the request.
    pub conn_id: u64,
}

impl Recorded {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_header_all(&self.headers, name)
    }

    /// Query string (after the first `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Body as lossy UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the upstream answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Sent as given. `content-length` is added unless a `content-length` or `transfer-encoding`
    /// header is present (or the status has no body: 1xx, 204, 304).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waited before sending anything.
    pub delay: Duration,
    /// Close the connection after this reply (adds `connection: close` unless a `connection`
    /// header is given).
    pub close: bool,
    /// If set, these exact bytes are written instead of a response built from the other fields
    /// (malformed upstream responses). Empty + `close` = hang up without answering.
    pub raw: Option<Vec<u8>>,
    /// More bytes written after the response (head and body, or `raw`), each after its delay
    /// and flushed on its own: a body that streams (server-sent events). When each was written
    /// is in [`Upstream::parts_sent`].
    pub parts: Vec<(Duration, Vec<u8>)>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            close: false,
            raw: None,
            parts: Vec::new(),
        }
    }
}

impl Reply {
    /// Empty body with the given status.
    pub fn status(status: u16) -> Reply {
        Reply { status, ..Reply::default() }
    }

    /// JSON body, `content-type: application/json`.
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
            ..Reply::default()
        }
    }

    /// Text body, `content-type: text/plain; charset=utf-8`.
    pub fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
            ..Reply::default()
        }
    }

    /// Exact bytes on the wire (see [`Reply::raw`]); the connection is closed afterwards.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply { raw: Some(bytes.into()), close: true, ..Reply::default() }
    }

    /// Close the connection without sending anything.
    pub fn hang_up() -> Reply {
        Reply::raw(Vec::new())
    }

    /// Adds a header (kept in order; duplicates allowed).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Waits `delay` before sending anything.
    pub fn with_delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// A response head with no body framing (the body ends when the connection closes),
    /// followed by `parts`, each written `delay` after the one before (see [`Reply::parts`]).
    pub fn streamed(head: &str, parts: Vec<(Duration, Vec<u8>)>) -> Reply {
        Reply { parts, ..Reply::raw(head.as_bytes().to_vec()) }
    }

    /// Closes the connection after the reply.
    pub fn with_close(mut self) -> Reply {
        self.close = true;
        self
    }
}

/// Request handler of an [`Upstream`].
pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Registry {
    stopped: bool,
    streams: HashMap<u64, TcpStream>,
}

struct Shared {
    name: String,
    handler: RwLock<Handler>,
    requests: Mutex<Vec<Recorded>>,
    registry: Mutex<Registry>,
    stop: AtomicBool,
    next_conn: AtomicU64,
    /// Request heads received, complete requests or not.
    heads: AtomicU64,
    parts_sent: Mutex<Vec<(u64, Instant)>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A recording HTTP/1.1 origin on 127.0.0.1 (random port). Thread per connection, keep-alive,
/// Content-Length and chunked request bodies. Dropping it stops accepting and closes all
/// connections.
pub struct Upstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("name", &self.shared.name).field("addr", &self.addr).finish()
    }
}

/// The default handler: 200 with `{"upstream": name, "method": …, "path": <raw target>}`.
pub fn default_handler(name: &str) -> Handler {
    let name = name.to_string();
    Arc::new(move |r: &Recorded| {
        Reply::json(200, serde_json::json!({"upstream": name, "method": r.method, "path": r.target}))
    })
}

impl Upstream {
    /// Starts an upstream with the default handler (see [`default_handler`]).
    pub fn start(name: &str) -> Upstream {
        Upstream::with_handler(name, default_handler(name))
    }

    /// Starts an upstream answering with `handler`.
    pub fn with_handler(name: &str, handler: Handler) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream on 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream local_addr");
        listener.set_nonblocking(true).expect("upstream listener non-blocking");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            handler: RwLock::new(handler),
            requests: Mutex::new(Vec::new()),
            registry: Mutex::new(Registry::default()),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            heads: AtomicU64::new(0),
            parts_sent: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("upstream-{name}-accept"))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn upstream accept thread");
        Upstream { shared, addr, accept_thread: Some(accept_thread) }
    }

    /// Starts an upstream answering with a closure.
    pub fn with_fn(name: &str, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Upstream {
        Upstream::with_handler(name, Arc::new(f))
    }

    /// Replaces the handler (takes effect for the next request), e.g. to make a backend start
    /// failing and later recover.
    pub fn set_handler(&self, handler: Handler) {
        *self.shared.handler.write().unwrap_or_else(PoisonError::into_inner) = handler;
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:PORT"`, for configs.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT{path}` (direct, bypassing the gateway).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request received so far (including health-check probes), in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Requests whose path starts with `path_prefix`.
    pub fn requests_to(&self, path_prefix: &str) -> Vec<Recorded> {
        lock(&self.shared.requests).iter().filter(|r| r.path.starts_with(path_prefix)).cloned().collect()
    }

    /// Requests whose path is not exactly `path` (e.g. `requests_excluding("/health")`).
    pub fn requests_excluding(&self, path: &str) -> Vec<Recorded> {
        lock(&self.shared.requests).iter().filter(|r| r.path != path).cloned().collect()
    }

    /// Number of requests received (including health-check probes).
    pub fn count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Number of requests whose path starts with `path_prefix`.
    pub fn count_to(&self, path_prefix: &str) -> usize {
        lock(&self.shared.requests).iter().filter(|r| r.path.starts_with(path_prefix)).count()
    }

    /// Forgets recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Waits until at least `n` requests were received (any path). `false` on timeout.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(5), || self.count() >= n)
    }

    /// Waits until at least `n` requests to paths starting with `path_prefix` were received.
    pub fn wait_for_count_to(&self, path_prefix: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(5), || self.count_to(path_prefix) >= n)
    }

    /// Waits until `pred` holds for the recorded requests. `false` on timeout.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Recorded]) -> bool) -> bool {
        wait_until(timeout, Duration::from_millis(5), || pred(&lock(&self.shared.requests)))
    }

    /// The most recent request.
    pub fn last(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().cloned()
    }

    /// The most recent request whose path is not exactly `path` (skip health checks).
    pub fn last_excluding(&self, path: &str) -> Option<Recorded> {
        lock(&self.shared.requests).iter().rev().find(|r| r.path != path).cloned()
    }

    /// Number of TCP connections accepted so far (including bare TCP health probes).
    pub fn connections(&self) -> u64 {
        self.shared.next_conn.load(Ordering::SeqCst) - 1
    }

    /// Request heads received, including those of requests whose body never completed (which
    /// [`Upstream::requests`] does not record): 0 means nothing of any request arrived.
    pub fn heads(&self) -> u64 {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// When each [`Reply::parts`] piece was written (flushed), in order, over every reply:
    /// the connection ([`Recorded::conn_id`]) and the instant.
    pub fn parts_sent(&self) -> Vec<(u64, Instant)> {
        lock(&self.shared.parts_sent).clone()
    }

    /// Number of currently open connections.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.registry).streams.len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let mut reg = lock(&self.shared.registry);
            reg.stopped = true;
            for s in reg.streams.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
            reg.streams.clear();
        }
        if let Some(t) = self.accept_thread.take() {
            // The accept loop polls the stop flag every few ms.
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                {
                    let mut reg = lock(&shared.registry);
                    if reg.stopped {
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    if let Ok(clone) = stream.try_clone() {
                        reg.streams.insert(id, clone);
                    }
                }
                let conn_shared = Arc::clone(shared);
                let spawned =
                    thread::Builder::new().name(format!("upstream-{}-conn{id}", shared.name)).spawn(move || {
                        serve_conn(&conn_shared, stream, id);
                        lock(&conn_shared.registry).streams.remove(&id);
                    });
                if spawned.is_err() {
                    lock(&shared.registry).streams.remove(&id);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A request head, owned.
struct Head {
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, String)>,
}

enum HeadError {
    /// Connection closed (or idle timeout) before any byte of a new request.
    Closed,
    /// Unusable request: answer with this status and close.
    Bad(u16),
}

/// Reads into `buf` until the connection closes / times out (`false`) or bytes arrive (`true`).
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, HeadError> {
    loop {
        // Ignore empty lines before a request line (RFC 9112 §2.2).
        let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        buf.drain(..skip);
        if !buf.is_empty() {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut storage);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head {
                        method: req.method.unwrap_or("").to_string(),
                        target: req.path.unwrap_or("").to_string(),
                        version: req.version.unwrap_or(1),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                            .collect(),
                    };
                    buf.drain(..n);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD_BYTES {
                        return Err(HeadError::Bad(431));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Bad(431)),
                Err(_) => return Err(HeadError::Bad(400)),
            }
        }
        let was_empty = buf.is_empty();
        if !read_more(stream, buf) {
            return Err(if was_empty { HeadError::Closed } else { HeadError::Bad(400) });
        }
    }
}

fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &Head) -> Result<Vec<u8>, &'static str> {
    let expects_continue =
        find_header(&head.headers, "expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    let has_te = find_header(&head.headers, "transfer-encoding").is_some();
    if has_te {
        if !is_chunked(&head.headers) {
            return Err("transfer-encoding without final chunked");
        }
        if expects_continue && buf.is_empty() {
            let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        loop {
            match decode_chunked(buf) {
                Ok(Some((body, used))) => {
                    buf.drain(..used);
                    return Ok(body);
                }
                Ok(None) => {
                    if !read_more(stream, buf) {
                        return Err("connection closed inside chunked body");
                    }
                }
                Err(_) => return Err("malformed chunked body"),
            }
        }
    }
    let lengths = find_header_all(&head.headers, "content-length");
    let Some(first) = lengths.first() else {
        return Ok(Vec::new());
    };
    let len: usize = first.trim().parse().map_err(|_| "bad content-length")?;
    if lengths.iter().any(|l| l.trim() != first.trim()) {
        return Err("conflicting content-length headers");
    }
    if len > 0 && expects_continue && buf.len() < len {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    while buf.len() < len {
        if !read_more(stream, buf) {
            return Err("connection closed inside body");
        }
    }
    Ok(buf.drain(..len).collect())
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn build_response(reply: &Reply, is_head: bool, keep_alive: bool, http10: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status)).into_bytes();
    let has = |n: &str| reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    for (k, v) in &reply.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    let bodyless = (100..200).contains(&reply.status) || reply.status == 204 || reply.status == 304;
    if !bodyless && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("content-length: {}\r\n", reply.body.len()).as_bytes());
    }
    if !has("connection") {
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    if !is_head && !bodyless {
        out.extend_from_slice(&reply.body);
    }
    out
}

/// Sleeps `d` in small slices, returning early (`false`) if the upstream stops.
fn sleep_unless_stopped(shared: &Shared, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if shared.stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Closes gracefully: FIN first, then drain briefly so unread input does not turn into a RST
/// that could destroy the response in flight.
fn close_gracefully(stream: &mut TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn serve_conn(shared: &Shared, mut stream: TcpStream, conn_id: u64) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let mut buf: Vec<u8> = Vec::new();
    while !shared.stopped() {
        let head = match read_head(&mut stream, &mut buf) {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::Bad(status)) => {
                let reply = Reply::text(status, "upstream: unparsable request");
                let _ = stream.write_all(&build_response(&reply, false, false, false));
                close_gracefully(&mut stream);
                return;
            }
        };
        shared.heads.fetch_add(1, Ordering::SeqCst);
        let body = match read_body(&mut stream, &mut buf, &head) {
            Ok(b) => b,
            Err(msg) => {
                let reply = Reply::text(400, &format!("upstream: {msg}"));
                let _ = stream.write_all(&build_response(&reply, false, false, false));
                close_gracefully(&mut stream);
                return;
            }
        };
        let path = head.target.split_once('?').map_or(head.target.as_str(), |(p, _)| p).to_string();
        let rec = Recorded {
            method: head.method,
            target: head.target,
            path,
            version: head.version,
            headers: head.headers,
            body,
            conn_id,
        };
        lock(&shared.requests).push(rec.clone());
        let handler = Arc::clone(&shared.handler.read().unwrap_or_else(PoisonError::into_inner));
        let reply = std::panic::catch_unwind(AssertUnwindSafe(|| handler(&rec)))
            .unwrap_or_else(|_| Reply::text(500, "upstream handler panicked"));
        if !reply.delay.is_zero() && !sleep_unless_stopped(shared, reply.delay) {
            return;
        }
        let conn_hdr = rec.header("connection").unwrap_or("").to_ascii_lowercase();
        let client_close = if rec.version == 0 {
            !conn_hdr.contains("keep-alive")
        } else {
            conn_hdr.split(',').any(|t| t.trim() == "close")
        };
        let keep_alive = !reply.close && !client_close;
        let bytes = match &reply.raw {
            Some(raw) => raw.clone(),
            None => build_response(&reply, rec.method.eq_ignore_ascii_case("HEAD"), keep_alive, rec.version == 0),
        };
        if stream.write_all(&bytes).and_then(|()| stream.flush()).is_err() {
            return;
        }
        for (delay, part) in &reply.parts {
            if !sleep_unless_stopped(shared, *delay) {
                return;
            }
            if stream.write_all(part).and_then(|()| stream.flush()).is_err() {
                return;
            }
            lock(&shared.parts_sent).push((conn_id, Instant::now()));
        }
        if !keep_alive {
            close_gracefully(&mut stream);
            return;
        }
    }
}
