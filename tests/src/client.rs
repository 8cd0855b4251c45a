//! The test client: HTTP/1.1 over ureq 2 (no redirects, bounded timeouts, 4xx/5xx are normal
//! responses), or HTTP/2 by prior knowledge over the `h2` crate when the suite runs in h2 mode
//! (`PORTCULLIS_E2E_HTTP=h2`, see [`crate::h2_mode`]) and the URL is a gateway's h2c proxy
//! listener. Everything else (control listener, upstreams) stays HTTP/1.1.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as the client saw it: the same type the raw-TCP helpers parse (one response type
/// for every test).
pub type Resp = crate::raw::RawResp;

/// HTTP client. Cheap to clone (connection pool shared between clones).
#[derive(Clone, Debug)]
pub struct Client {
    agent: ureq::Agent,
    timeout: Duration,
    /// h2 mode: HTTP/2 connections to gateways, shared between clones like ureq's pool; `None`
    /// for a client that never reuses connections.
    h2: Option<Arc<over_h2::Pool>>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// No redirects, 10 s connect and overall timeouts, keep-alive pool.
    pub fn new() -> Client {
        Client::build(DEFAULT_TIMEOUT, true)
    }

    /// Like [`Client::new`] with another overall timeout (e.g. slow-upstream tests).
    pub fn with_timeout(timeout: Duration) -> Client {
        Client::build(timeout, true)
    }

    /// A client that never reuses connections (one TCP connection per request).
    pub fn no_keepalive() -> Client {
        Client::build(DEFAULT_TIMEOUT, false)
    }

    fn build(timeout: Duration, pool: bool) -> Client {
        let mut b =
            ureq::AgentBuilder::new().redirects(0).timeout_connect(DEFAULT_TIMEOUT.min(timeout)).timeout(timeout);
        if !pool {
            b = b.max_idle_connections(0).max_idle_connections_per_host(0);
        }
        Client { agent: b.build(), timeout, h2: pool.then(Arc::default) }
    }

    /// GET; panics on transport errors.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", url, headers, None)
    }

    /// POST with a body (`content-length` framing); panics on transport errors.
    pub fn post(&self, url: &str, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Resp {
        self.request("POST", url, headers, Some(body.as_ref()))
    }

    /// Any method; panics on transport errors (connection refused, timeout, truncated body…).
    pub fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        self.try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Any method; `Err` describes a transport error. 4xx/5xx are `Ok`.
    pub fn try_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        if crate::h2_mode() {
            let parsed = url::Url::parse(url).map_err(|e| format!("{method} {url}: bad URL: {e}"))?;
            let addr = parsed.socket_addrs(|| None).ok().and_then(|a| a.first().copied());
            if let Some(addr) = addr.filter(|a| crate::gateway::is_h2c_proxy(*a)) {
                // The same target ureq sends: the URL's normalised path and query.
                let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
                let authority = format!("{}:{}", parsed.host_str().unwrap_or_default(), addr.port());
                let req = over_h2::head(method, &authority, target, headers, true, body.map(<[u8]>::len))
                    .map_err(|e| format!("{method} {url} (HTTP/2): {e}"))?;
                return over_h2::send(self.h2.as_deref(), self.timeout, addr, req, body)
                    .map_err(|e| format!("{method} {url} (HTTP/2): {e}"));
            }
        }
        let mut req = self.agent.request(method, url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(format!("{method} {url}: transport error: {t}")),
        };
        let status = resp.status();
        let reason = resp.status_text().to_string();
        let version = u8::from(resp.http_version() != "HTTP/1.0");
        let mut names: Vec<String> = Vec::new();
        for n in resp.headers_names() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let mut out_headers = Vec::new();
        for n in names {
            for v in resp.all(&n) {
                out_headers.push((n.clone(), v.to_string()));
            }
        }
        let mut body = Vec::new();
        resp.into_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("{method} {url}: reading body after status {status}: {e}"))?;
        Ok(Resp { status, reason, version, headers: out_headers, body })
    }
}

/// HTTP/2 with prior knowledge: like ureq's pool, a keep-alive client keeps one connection per
/// gateway (multiplexed by its clones), a `no_keepalive` client opens one per request.
mod over_h2 {
    use super::Resp;
    use bytes::Bytes;
    use http::{HeaderName, HeaderValue};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    type Send = ::h2::client::SendRequest<Bytes>;
    type Conns = Vec<(SocketAddr, Send)>;

    /// Fields an HTTP/2 client cannot send (RFC 9113 §8.2.2): a test that sets one is h1-only
    /// (`portcullis_tests::h1_only`).
    const CONNECTION_SPECIFIC: [&str; 5] =
        ["connection", "transfer-encoding", "keep-alive", "upgrade", "proxy-connection"];

    /// Open connections (their drivers run on `rt`, one worker thread, so PINGs and GOAWAYs are
    /// handled between requests too).
    #[derive(Default)]
    pub(super) struct Pool {
        inner: Mutex<(Option<Arc<tokio::runtime::Runtime>>, Conns)>,
    }

    impl std::fmt::Debug for Pool {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let n = self.inner.lock().unwrap_or_else(PoisonError::into_inner).1.len();
            f.debug_struct("Pool").field("connections", &n).finish()
        }
    }

    fn runtime() -> Result<Arc<tokio::runtime::Runtime>, String> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map(Arc::new)
            .map_err(|e| format!("tokio runtime: {e}"))
    }

    impl Pool {
        fn runtime(&self) -> Result<Arc<tokio::runtime::Runtime>, String> {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(rt) = &g.0 {
                return Ok(Arc::clone(rt));
            }
            let rt = runtime()?;
            g.0 = Some(Arc::clone(&rt));
            Ok(rt)
        }

        fn take(&self, addr: SocketAddr) -> Option<Send> {
            let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            g.1.iter().find(|(a, _)| *a == addr).map(|(_, s)| s.clone())
        }

        fn put(&self, addr: SocketAddr, send: Send) {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            g.1.retain(|(a, _)| *a != addr);
            g.1.push((addr, send));
        }

        fn evict(&self, addr: SocketAddr) {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner).1.retain(|(a, _)| *a != addr);
        }
    }

    /// How an exchange failed: before the gateway can have seen the request (retried once on a
    /// fresh connection when the connection was a pooled one, as ureq does), or after.
    enum Failure {
        Stale(String),
        Other(String),
    }

    /// The head of an HTTP/2 request: `:authority` is `authority` unless `host_is_authority` and
    /// the test set a `Host` (it then becomes `:authority`, as curl and browsers do); with
    /// `host_is_authority` false a `Host` is sent as a field beside `:authority` (what an
    /// absolute-form HTTP/1.1 target with a `Host` header is on h2). `Err`: the request cannot be
    /// expressed over HTTP/2 (a connection-specific field, a target `http::Uri` refuses…).
    pub(super) fn head(
        method: &str,
        authority: &str,
        target: &str,
        headers: &[(&str, &str)],
        host_is_authority: bool,
        body_len: Option<usize>,
    ) -> Result<http::Request<()>, String> {
        let mut authority = authority.to_string();
        let mut fields = http::HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header name {k:?}: {e}"))?;
            if CONNECTION_SPECIFIC.contains(&name.as_str()) {
                return Err(format!(
                    "`{k}` is connection-specific: an HTTP/2 client cannot send it (mark the test h1_only)"
                ));
            }
            if host_is_authority && name == http::header::HOST {
                authority = (*v).to_string();
                continue;
            }
            let value = HeaderValue::from_bytes(v.as_bytes()).map_err(|e| format!("header {k}: {v:?}: {e}"))?;
            fields.append(name, value);
        }
        if let Some(n) = body_len {
            if !fields.contains_key(http::header::CONTENT_LENGTH) {
                fields.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(target)
            .build()
            .map_err(|e| format!("request URI http://{authority}{target}: {e}"))?;
        let mut req = http::Request::new(());
        *req.method_mut() = http::Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        *req.uri_mut() = uri;
        *req.headers_mut() = fields;
        Ok(req)
    }

    /// Sends `req` (and `body`) to `addr`: on a pooled connection (retried once on a fresh one if
    /// that was stale), else a fresh one.
    pub(super) fn send(
        pool: Option<&Pool>,
        timeout: Duration,
        addr: SocketAddr,
        req: http::Request<()>,
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let body = body.map(Bytes::copy_from_slice);
        let rt = match pool {
            Some(p) => p.runtime()?,
            None => runtime()?,
        };
        let (parts, ()) = req.into_parts();
        rt.block_on(async move {
            let attempt = |send: Send| exchange(send, http::Request::from_parts(parts.clone(), ()), body.clone());
            let run = async {
                if let Some(send) = pool.and_then(|p| p.take(addr)) {
                    match attempt(send).await {
                        Ok(r) => return Ok(r),
                        Err(Failure::Other(e)) => return Err(e),
                        Err(Failure::Stale(_)) => {
                            if let Some(p) = pool {
                                p.evict(addr);
                            }
                        }
                    }
                }
                let send = connect(addr).await?;
                if let Some(p) = pool {
                    p.put(addr, send.clone());
                }
                attempt(send).await.map_err(|(Failure::Stale(e) | Failure::Other(e))| e)
            };
            tokio::time::timeout(timeout, run)
                .await
                .unwrap_or_else(|_| Err(format!("no complete response within {timeout:?}")))
        })
    }

    async fn connect(addr: SocketAddr) -> Result<Send, String> {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let (send, conn) = ::h2::client::handshake(tcp).await.map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn exchange(send: Send, req: http::Request<()>, body: Option<Bytes>) -> Result<Resp, Failure> {
        let mut send = send.ready().await.map_err(|e| Failure::Stale(format!("h2 connection: {e}")))?;
        let (resp, mut stream) =
            send.send_request(req, body.is_none()).map_err(|e| Failure::Stale(format!("sending headers: {e}")))?;
        // A gateway that answers early (413) may reset the stream before taking the whole body:
        // the response tells.
        let sent = match body {
            Some(b) => stream.send_data(b, true).map_err(|e| format!("sending body: {e}")),
            None => Ok(()),
        };
        let resp = resp.await.map_err(|e| {
            let refused = e.reason() == Some(::h2::Reason::REFUSED_STREAM);
            let msg = match &sent {
                Err(s) => format!("awaiting response: {e} ({s})"),
                Ok(()) => format!("awaiting response: {e}"),
            };
            if refused || e.is_go_away() || e.is_io() {
                Failure::Stale(msg)
            } else {
                Failure::Other(msg)
            }
        })?;
        let (parts, mut recv) = resp.into_parts();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk =
                chunk.map_err(|e| Failure::Other(format!("reading body after status {}: {e}", parts.status)))?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        Ok(Resp {
            status: parts.status.as_u16(),
            reason: parts.status.canonical_reason().unwrap_or_default().to_string(),
            version: 2,
            headers,
            body: out,
        })
    }
}

/// One whole HTTP/1.1 request written as bytes (head, then a `Content-Length` body if any) on a
/// fresh connection, and its parsed response (`None`: no parsable answer) — `raw_exchange` then
/// `parse_response`. In h2 mode towards a gateway's h2c listener, the SAME request over HTTP/2:
/// the method, the target as `:path` byte for byte (no URL normalisation: `..`, `%2e`, `;` reach
/// the gateway as in the request line; an absolute-form target gives `:authority`, and a `Host`
/// header then stays a field beside it, else `Host` is `:authority`), the other fields and the
/// body. `Connection: close` (this helper's one request per connection) is dropped; a request
/// HTTP/2 cannot express (another connection-specific field, chunked framing) fails the test:
/// that test is HTTP/1.1 wire framing, keep it on `raw_exchange` or mark it `h1_only`. A stream
/// the gateway resets, like a connection it closes, is `None`. For the suites' requests that are
/// about what is sent, not about HTTP/1.1 framing.
pub fn exchange(addr: SocketAddr, wire: &[u8], timeout: Duration) -> Option<Resp> {
    if !crate::h2_mode() || !crate::gateway::is_h2c_proxy(addr) {
        return crate::raw::parse_response(&crate::raw::raw_exchange(addr, wire, timeout));
    }
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    let head_len = match req.parse(wire) {
        Ok(httparse::Status::Complete(n)) => n,
        other => {
            panic!("exchange: not one whole HTTP/1.1 request head ({other:?}): {:?}", String::from_utf8_lossy(wire))
        }
    };
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let mut headers = Vec::new();
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).into_owned();
        if h.name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            continue;
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            panic!("exchange over HTTP/2: `{}: {value}` is HTTP/1.1 framing (mark the test h1_only)", h.name);
        }
        headers.push((h.name.to_string(), value));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let body = &wire[head_len..];
    let absolute = ["http://", "https://"].iter().find_map(|scheme| {
        target.get(..scheme.len()).filter(|p| p.eq_ignore_ascii_case(scheme)).map(|_| &target[scheme.len()..])
    });
    let (authority, path, host_is_authority) = match absolute {
        Some(rest) => {
            let (auth, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
            (auth.to_string(), path, false)
        }
        None => (addr.to_string(), target, true),
    };
    let req = over_h2::head(method, &authority, path, &headers, host_is_authority, None)
        .unwrap_or_else(|e| panic!("exchange over HTTP/2: {method} {target}: {e}"));
    let body = (!body.is_empty()).then_some(body);
    match over_h2::send(None, timeout, addr, req, body) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("exchange over HTTP/2: {method} {target}: no response: {e}");
            None
        }
    }
}
