//! Towards the upstream: the peer (pool, health, retries), the request head it gets (spoofable
//! headers stripped, forwarding and identity headers set), and the checks on its response head
//! (deadline, unsolicited protocol switch, size).

use super::{Ctx, Portcullis};
use crate::metrics::UpstreamError;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use portcullis_rules::overrides;
use std::net::IpAddr;

/// An IP address as a header value, formatted without an intermediate `String`.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    // The longest textual IPv6 address is 45 bytes.
    let mut buf = [0u8; 48];
    let n = match ip {
        // IPv4 by hand: `fmt` machinery costs ten times more, on every request.
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = usize::from(octet < 100) + usize::from(octet < 10);
                for d in &digits[skip..] {
                    buf[n] = b'0' + d;
                    n += 1;
                }
            }
            n
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut w = &mut buf[..];
            match write!(w, "{ip}") {
                Ok(()) => 48 - w.len(),
                Err(_) => 0,
            }
        }
    };
    // An address is ASCII digits, dots, colons and hex: always a valid header value.
    HeaderValue::from_bytes(buf.get(..n).unwrap_or_default()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The size of a response head as it would be written: status line and `name: value\r\n` lines.
pub(crate) fn response_head_bytes(resp: &ResponseHeader) -> usize {
    let fields: usize = resp.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    fields + 16 + resp.status.canonical_reason().map_or(0, str::len)
}

/// RFC 7239 `Forwarded` for the upstream: `for` (the client IP we determined), `proto`, `host`.
/// `client` is the client's address with its header text (what `X-Forwarded-For` carries).
pub(super) fn forwarded_value(client: Option<(IpAddr, &HeaderValue)>, proto: &str, host: Option<&str>) -> HeaderValue {
    // Built as bytes with its final size (was `format!` over the address's `Display` and a
    // growing `String`: ≈ 1.5k instructions per request, benches/README.md issue 18).
    let host = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
    let mut v = Vec::with_capacity(40 + client.map_or(0, |(_, a)| a.len()) + host.map_or(0, str::len));
    match client {
        Some((IpAddr::V6(_), a)) => {
            v.extend_from_slice(b"for=\"[");
            v.extend_from_slice(a.as_bytes());
            v.extend_from_slice(b"]\";");
        }
        Some((IpAddr::V4(_), a)) => {
            v.extend_from_slice(b"for=");
            v.extend_from_slice(a.as_bytes());
            v.push(b';');
        }
        None => {}
    }
    v.extend_from_slice(b"proto=");
    v.extend_from_slice(proto.as_bytes());
    if let Some(h) = host {
        v.extend_from_slice(b";host=\"");
        v.extend_from_slice(h.as_bytes());
        v.push(b'"');
    }
    // Visible ASCII only (the address, our proto, a host checked above): always a valid value.
    HeaderValue::from_maybe_shared(Bytes::from(v)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Portcullis {
    /// `upstream_response_filter`: the total deadline, a switch of protocols nobody asked for,
    /// and the response head's size cap.
    pub(super) fn upstream_response_head(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.check_total_deadline(ctx)?;
        // A switch of protocols the client did not ask for (RFC 9110 §15.2.2: only to one its
        // `Upgrade` named): what follows would be relayed as opaque bytes, never scanned.
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
            && !session.req_header().headers.contains_key(http::header::UPGRADE)
        {
            ctx.upstream_error = Some(UpstreamError::Protocol);
            ctx.verdict.fail("unsolicited_101");
            let mut e = Error::explain(ErrorType::InvalidHTTPHeader, "101 to a request without Upgrade");
            e.esource = ErrorSource::Upstream;
            return Err(e);
        }
        self.check_response_head(resp, ctx)
    }

    /// The next backend of the route's pool (healthy, not failed yet for this request), with
    /// the pool's timeouts.
    pub(super) fn select_peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = self.route(ctx).ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let pool_cfg = self
            .shared
            .config
            .pools
            .get(route.pool)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no pool"))?;
        let lb =
            self.shared.pools.get(route.pool).ok_or_else(|| Error::explain(ErrorType::InternalError, "no pool"))?;
        let failed = &ctx.failed_backends;
        let backend = lb
            .select_with(b"", 256, |b, healthy| healthy && !b.addr.as_inet().is_some_and(|a| failed.contains(a)))
            .ok_or_else(|| {
                ctx.upstream_error = Some(UpstreamError::Connect);
                Error::explain(ErrorType::ConnectNoRoute, format!("no healthy backend in pool {}", pool_cfg.name))
            })?;
        ctx.backend = backend.addr.as_inet().copied();
        let mut peer = HttpPeer::new(backend.addr.clone(), false, String::new());
        peer.options.connection_timeout = Some(pool_cfg.connect_timeout);
        peer.options.total_connection_timeout = Some(pool_cfg.connect_timeout);
        peer.options.read_timeout = Some(pool_cfg.read_timeout.min(pool_cfg.total_timeout));
        peer.options.write_timeout = Some(pool_cfg.write_timeout);
        peer.options.idle_timeout = Some(pool_cfg.idle_timeout);
        Ok(Box::new(peer))
    }

    /// Records a backend that could not be connected to; true when the next one may be tried
    /// (nothing reached the upstream yet; once per backend, at most three).
    pub(super) fn connect_failed(&self, peer: &HttpPeer, ctx: &mut Ctx) -> bool {
        if let Some(a) = peer._address.as_inet() {
            ctx.failed_backends.push(*a);
        }
        let pool_size =
            self.route(ctx).and_then(|r| self.shared.config.pools.get(r.pool)).map_or(1, |p| p.backends.len());
        ctx.failed_backends.len() < pool_size.min(3)
    }

    /// What the upstream request head gets: client copies of forwarding, identity and internal
    /// headers removed, ours set; on a PII-scanned route, `identity` encoding and no ranges.
    pub(super) fn prepare_upstream_request(&self, up: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        // One look at each header the request carries (a handful) rather than a lookup per name
        // that must not pass (tens, almost never present). Identity headers: the client's copies
        // never reach the upstream, ours replace them. The body was read (and `Expect:
        // 100-continue` answered) here when `body_read`: the upstream gets it whole.
        let identity = ctx.rules.snapshot.identity.strip_headers();
        let allowed = self.route(ctx).map_or(&[][..], |r| r.allow_headers.as_slice());
        let doomed: Vec<HeaderName> = up
            .headers
            .keys()
            .filter(|h| self.strips(h, identity, allowed) || (ctx.body_read && *h == http::header::EXPECT))
            .cloned()
            .collect();
        for h in &doomed {
            up.remove_header(h);
        }
        if let Some(who) = &ctx.identity {
            if let Some(rule) = ctx.rules.snapshot.identity.for_route(self.route(ctx).map(|r| r.id.as_str())) {
                for (name, value) in rule.forward_headers(who) {
                    up.insert_header(name, value)?;
                }
            }
        }
        let client = ctx.client_ip.map(|ip| (ip, ip_header_value(ip)));
        if let Some((_, text)) = &client {
            up.insert_header("x-forwarded-for", text.clone())?;
            up.insert_header("x-real-ip", text.clone())?;
        }
        up.insert_header("x-forwarded-proto", HeaderValue::from_static(ctx.proto))?;
        if let Some(h) = &ctx.host {
            up.insert_header("x-forwarded-host", h.as_str())?;
        }
        up.insert_header(
            "forwarded",
            forwarded_value(client.as_ref().map(|(ip, text)| (*ip, text)), ctx.proto, ctx.host.as_deref()),
        )?;
        up.insert_header("x-request-id", ctx.request_id.as_str())?;
        if self.pii_policy(&ctx.rules, ctx).is_some() {
            crate::pii_response::request_headers(up)?;
        }
        Ok(())
    }

    /// Whether a request header is kept from the upstream: one we strip or set (forwarding,
    /// URL override, `strip_headers`, identity), a method override or a name with `_` (or any
    /// other character but letters, digits and `-`) the route does not allow, or such a spelling
    /// of one we strip (CGI, WSGI and PHP stacks merge `X_Tenant_Id` with `X-Tenant-Id`). Names
    /// are lowercase already; an ordinary name costs a byte scan, a comparison or two in the
    /// strip set, and the identity list's lookup.
    fn strips(&self, h: &HeaderName, identity: &[HeaderName], allowed: &[HeaderName]) -> bool {
        let name = h.as_str();
        if !overrides::is_alternate_spelling(name) {
            return self.strip.contains(h)
                || identity.contains(h)
                || (overrides::is_method_override(name) && !allowed.contains(h));
        }
        !allowed.contains(h) || self.strip.iter().chain(identity).any(|s| overrides::same_name(s.as_str(), name))
    }

    /// The upstream's response head over `limits.max_response_header_bytes`: refused (502
    /// `upstream_unavailable`, reason `response_headers_too_large`), nothing of it passed on.
    fn check_response_head(&self, resp: &ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let cap = self.shared.config.max_response_header_bytes;
        if response_head_bytes(resp) <= cap {
            return Ok(());
        }
        ctx.upstream_error = Some(UpstreamError::Protocol);
        ctx.verdict.fail("response_headers_too_large");
        let mut e = Error::explain(ErrorType::InvalidHTTPHeader, "upstream response head over the cap");
        e.esource = ErrorSource::Upstream;
        Err(e)
    }

    pub(super) fn check_total_deadline(&self, ctx: &mut Ctx) -> Result<()> {
        let total = self.route(ctx).and_then(|r| self.shared.config.pools.get(r.pool)).map(|p| p.total_timeout);
        match total {
            Some(t) if ctx.started.elapsed() > t => {
                ctx.upstream_error = Some(UpstreamError::Timeout);
                let mut e = Error::explain(ErrorType::ReadTimedout, "upstream total deadline passed");
                e.esource = ErrorSource::Upstream;
                Err(e)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
