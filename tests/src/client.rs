//! A plain HTTP/1.1 client over ureq 2: no redirects, bounded timeouts, 4xx/5xx are normal
//! responses.

use std::io::Read;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as the client saw it: the same type the raw-TCP helpers parse (one response type
/// for every test).
pub type Resp = crate::raw::RawResp;

/// HTTP client. Cheap to clone (connection pool shared between clones).
#[derive(Clone, Debug)]
pub struct Client {
    agent: ureq::Agent,
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
        Client { agent: b.build() }
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
