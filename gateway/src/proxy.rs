//! The one `ProxyHttp` implementation. Each phase is a thin adapter: build a borrowed view of the
//! request, run that stage's checks from `portcullis-rules`, apply the verdict.

mod exchange;

use crate::config::TrustInbound;
use crate::containment::anomaly_red;
use crate::events::{RequestFacts, SecurityEvent};
use crate::ids::new_request_id;
use crate::metrics::UpstreamError;
use crate::reload::Loaded;
use crate::state::Shared;
use crate::webhook_replay::FleetClaim;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use portcullis_rules::deny::{render, Deny, DenyCode};
use portcullis_rules::identity::{AuthInput, Authn, Identity};
use portcullis_rules::limits::{KeyInput, LimitCheck, Now};
use portcullis_rules::operator;
use portcullis_rules::pii::{PiiPolicy, Summary};
use portcullis_rules::tenant::{BodyInput, Principal};
use portcullis_rules::verdict::{EventType, Finding, Mode, Outcome};
use portcullis_rules::view::RequestView;
use portcullis_rules::webhook::replay::Claim;
use portcullis_rules::webhook::rules::Checked;
use portcullis_rules::{canon, framing, overrides, request_id, routes};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of Pingora's retry buffer (`BODY_BUF_LIMIT` in pingora-core), see [`read_body`].
const RETRY_BUFFER_BYTES: u64 = 64 * 1024;

/// The error that ends a streamed response a PII rule cut short (see [`Portcullis::streamed_scan`]).
const PII_WITHHELD: &str = "pii_withheld";

/// Looked up on every request: parsed once here, not per lookup.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Per-request state.
pub struct Ctx {
    started: Instant,
    /// The request id: kept from a well-formed inbound header, or generated.
    pub request_id: String,
    client_ip: Option<IpAddr>,
    /// The TCP peer is a trusted proxy (its identity headers are believed).
    peer_trusted: bool,
    host: Option<String>,
    /// The scheme the client used: `https` when TLS terminated here, believed from a trusted
    /// proxy's `X-Forwarded-Proto` otherwise (`http` by default).
    proto: &'static str,
    route: Option<usize>,
    /// A deny decided in `early_request_filter`, sent by `request_filter`.
    pending: Option<Deny>,
    /// The deny we answered with, if any (for logs).
    denied: Option<DenyCode>,
    denied_reason: Option<String>,
    body_bytes: u64,
    backend: Option<SocketAddr>,
    failed_backends: Vec<SocketAddr>,
    upstream_error: Option<UpstreamError>,
    /// The rules this request runs on, pinned when it started.
    pub rules: Arc<Loaded>,
    /// The verified caller, if the route has an identity rule and the caller presented a
    /// credential.
    pub identity: Option<Identity>,
    /// The whole request body, when a check read it before forwarding: what the upstream gets
    /// (see [`read_body`]).
    replay_body: Option<Bytes>,
    /// The body was read here before forwarding (an `Expect: 100-continue` was answered here).
    body_read: bool,
    /// The request body was read to its framed end (a framing error or an early close never sets it).
    body_done: bool,
    /// The request's `Content-Length`, when it has a valid one.
    declared_len: Option<u64>,
    /// An accepted webhook delivery's replay-cache claim: released unless the upstream answers
    /// 2xx, so the sender's retry is not refused as a replay.
    webhook_claim: Option<Claim>,
    /// The claim is held in the fleet's replay cache too.
    webhook_fleet: bool,
    /// The id of the secret that signed the delivery, for the access log.
    webhook_secret: Option<String>,
    /// `RateLimit-Policy` / `RateLimit` for a response that passed the limits.
    limit_headers: Vec<(&'static str, String)>,
    /// The deny is a rate-limit or quota refusal whose event the aggregator counted instead.
    deny_event_aggregated: bool,
    /// The PII scan of a streamed response (see [`crate::pii`]).
    pii: Option<crate::pii::Streaming>,
    /// A scanned streamed response's head, and the scanned bytes of the chunk that stopped it:
    /// what [`ProxyHttp::fail_to_proxy`] writes before cutting the response when Pingora had
    /// not written them yet (see [`Portcullis::cut`]).
    pii_head: Option<Box<ResponseHeader>>,
    pii_tail: Option<Bytes>,
    /// The request goes out through the gateway's own exchange, not Pingora's (a body read
    /// whole that Pingora could not forward: see [`read_body`]).
    fetch_self: bool,
}

/// The gateway's proxy logic.
pub struct Portcullis {
    shared: Arc<Shared>,
    /// Request headers that never reach the upstream, whatever the rules: the forwarding and
    /// URL-override headers (see [`overrides`]), the configured `strip_headers`, the maintenance
    /// bypass header. Matched in every spelling ([`overrides::same_name`]).
    strip: overrides::NameSet,
}

impl Portcullis {
    /// Builds the proxy over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        let config = &shared.config;
        let strip = overrides::FORWARDING
            .iter()
            .chain(overrides::URL_OVERRIDE)
            .map(|h| HeaderName::from_static(h))
            .chain(config.strip_headers.iter().cloned())
            .chain(config.maintenance_bypass_header.iter().filter_map(|(h, _)| HeaderName::try_from(h.as_str()).ok()))
            .collect();
        Self { shared, strip }
    }

    fn route<'a>(&'a self, ctx: &Ctx) -> Option<&'a crate::config::Route> {
        let i = ctx.route?;
        self.shared.config.routes.entries().get(i).map(|e| &e.value)
    }
}

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

/// A deny through the one renderer, with `X-Request-Id`: its head and body.
fn deny_response(request_id: &str, deny: &Deny) -> Result<(ResponseHeader, Bytes)> {
    let r = render(deny, request_id);
    let mut h = ResponseHeader::build(r.status, Some(r.headers.len() + 1))?;
    for (k, v) in r.headers {
        h.insert_header(k, v)?;
    }
    h.insert_header("x-request-id", request_id)?;
    Ok((h, Bytes::from(r.body)))
}

/// Writes a deny through the one renderer, with `X-Request-Id`.
pub async fn send_deny(session: &mut Session, request_id: &str, deny: &Deny, close: bool) -> Result<()> {
    let (h, body) = deny_response(request_id, deny)?;
    if close {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Answers a request with a deny (closing the connection) and records it for the access log.
async fn refuse(session: &mut Session, ctx: &mut Ctx, deny: &Deny, reason: String) -> Result<bool> {
    send_deny(session, &ctx.request_id, deny, true).await?;
    ctx.denied = Some(deny.code);
    ctx.denied_reason = Some(reason);
    Ok(true)
}

/// `https` when TLS terminated here; a trusted proxy's `X-Forwarded-Proto` (`http` or `https`
/// only) otherwise; else `http`.
fn forwarded_proto(session: &Session, peer_trusted: bool) -> &'static str {
    if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
        return "https";
    }
    if peer_trusted {
        let said = session.req_header().headers.get("x-forwarded-proto").map(HeaderValue::as_bytes);
        if said.is_some_and(|v| v.eq_ignore_ascii_case(b"https")) {
            return "https";
        }
    }
    "http"
}

/// RFC 7239 `Forwarded` for the upstream: `for` (the client IP we determined), `proto`, `host`.
fn forwarded_value(ip: Option<IpAddr>, proto: &str, host: Option<&str>) -> String {
    let mut v = match ip {
        Some(IpAddr::V4(a)) => format!("for={a};"),
        Some(IpAddr::V6(a)) => format!("for=\"[{a}]\";"),
        None => String::new(),
    };
    v.push_str("proto=");
    v.push_str(proto);
    if let Some(h) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
        v.push_str(";host=\"");
        v.push_str(h);
        v.push('"');
    }
    v
}

/// What the raw-head guard checks on HTTP/1.1, on an HTTP/2 request's decoded fields: header
/// count and size limits, a single non-empty `Host`, `CONNECT` refused, `Host` agreeing with
/// `:authority` (Pingora's own rule, RFC 9113 §8.3.1).
fn h2_head(req: &RequestHeader, limits: framing::HeaderLimits) -> Result<(), Deny> {
    if req.method == http::Method::CONNECT {
        return Err(Deny::new(DenyCode::MethodNotAllowed, "connect_method"));
    }
    framing::check_map(&req.headers, limits, false)?;
    pingora_core::protocols::http::authority::validate_request_authority(req)
        .map_err(|_| Deny::new(DenyCode::BadRequest, "target_authority"))
}

impl Portcullis {
    /// `fleet.webhook_replay_fallback: closed`.
    fn fleet_webhook_closed(&self) -> bool {
        self.shared.fleet.as_ref().is_some_and(|f| f.cfg.webhook_closed)
    }

    /// The fleet's replay cache did not answer: logged, counted by the caller, and one
    /// `fleet_store_unavailable` event a minute at most (`fallback`: `local` or `refused`).
    fn fleet_unavailable(&self, why: &str, fallback: &str, now: u64) {
        tracing::warn!(error = %why, fallback, "fleet webhook replay cache unreachable within its budget");
        if self.shared.fleet.as_ref().is_some_and(|f| f.unavailable_event_due(now)) {
            let mut detail = serde_json::Map::new();
            detail.insert("component".into(), "webhook_replay".into());
            detail.insert("fallback".into(), fallback.into());
            detail.insert("error".into(), why.chars().take(200).collect::<String>().into());
            let rules = self.shared.rules.current().snapshot.version.clone();
            self.shared.events.emit(SecurityEvent::system(
                EventType::FleetStoreUnavailable,
                portcullis_rules::verdict::Action::Flagged,
                Some(&rules),
                detail,
            ));
        }
    }
}

impl Portcullis {
    /// Everything decided from the request head alone: request id, client IP, canonical path,
    /// route, declared body size. Returns the deny to send, if any.
    fn inspect_head(&self, session: &mut Session, ctx: &mut Ctx) -> Option<Deny> {
        let cfg = &self.shared.config;
        let req = session.req_header();

        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.peer_trusted = peer.is_some_and(|p| cfg.trusted_proxies.contains(p));

        // An inbound id is kept only from whom the config trusts with it (by default a trusted
        // proxy): a client must not choose the id its events and logs are filed under.
        let keep_inbound = match cfg.request_id_trust {
            TrustInbound::TrustedProxies => ctx.peer_trusted,
            TrustInbound::Any => true,
            TrustInbound::Never => false,
        };
        // Headers looked up only when they may count (most requests: neither).
        let inbound = if keep_inbound { req.headers.get(X_REQUEST_ID) } else { None };
        ctx.request_id = match inbound {
            Some(v) if request_id::is_well_formed(v.as_bytes()) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            _ => new_request_id(),
        };
        ctx.client_ip = peer.map(|p| {
            if ctx.peer_trusted {
                let xff = req.headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok());
                cfg.trusted_proxies.client_ip(p, xff)
            } else {
                // An untrusted peer is the client whatever it forwarded (`client_ip` reads no value).
                cfg.trusted_proxies.client_ip(p, std::iter::empty())
            }
        });

        ctx.proto = forwarded_proto(session, ctx.peer_trusted);

        // Framing was already judged on the raw head (see `server::HeadGuard`); only the declared
        // length is needed here. HTTP/2 has no raw head: the same limits and checks run on the
        // decoded fields (pseudo-headers were validated by the h2 decoder).
        if session.is_http2() {
            if let Err(deny) = h2_head(req, cfg.header_limits) {
                return Some(deny);
            }
        }
        let declared =
            req.headers.get(http::header::CONTENT_LENGTH).and_then(|v| framing::parse_content_length(v.as_bytes()));
        ctx.declared_len = declared;

        // Host: the header, or the authority of an absolute-form target.
        ctx.host = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .and_then(routes::normalize_host);

        let canonical = match canon::canonicalize(req.uri.path().as_bytes()) {
            Ok(c) => c,
            Err(e) => return Some(Deny::new(DenyCode::BadRequest, e.as_str())),
        };
        let (route_index, route) = match cfg.routes.find(ctx.host.as_deref(), &canonical) {
            Some((i, r)) => (i, r),
            None => return Some(Deny::new(DenyCode::NotFound, "no_route")),
        };
        ctx.route = Some(route_index);
        if let Some(n) = declared {
            if n > route.max_body_bytes {
                return Some(Deny::new(DenyCode::PayloadTooLarge, "declared_length_over_cap"));
            }
        }

        // What the application will act on is what every rule sees: a `_method` query parameter
        // is refused; an allowed method-override header is applied (the rules and the upstream
        // see the method it names).
        if req.uri.query().is_some_and(overrides::query_overrides_method) {
            return Some(Deny::new(DenyCode::BadRequest, "method_override_parameter"));
        }
        let method = match overrides::method_override(
            route.method_override.iter().flat_map(|h| req.headers.get_all(h)).map(HeaderValue::as_bytes),
        ) {
            Ok(m) => m.and_then(|m| http::Method::from_bytes(m.as_bytes()).ok()).filter(|m| *m != req.method),
            Err(reason) => return Some(Deny::new(DenyCode::BadRequest, reason)),
        };

        // What every rule matched is what the upstream gets: the canonical path, query as sent.
        // An already-canonical origin-form target is forwarded untouched (no allocation).
        // (A borrowed result can still be shorter: `/a/b/..` → `/a/` is a prefix of its input.)
        // An HTTP/1.1 absolute-form target is kept verbatim by Pingora (its `uri` holds only the
        // path): it is rewritten too, so the upstream never gets an authority in the target.
        let unchanged = matches!(&canonical, Cow::Borrowed(c) if c.len() == req.uri.path().len());
        let origin_form = req.raw_path().first() == Some(&b'/');
        if !unchanged || !origin_form || req.uri.authority().is_some() {
            // A host carried only by the target (HTTP/2's `:authority` without a `Host` field, an
            // HTTP/1.0 absolute-form target) becomes the upstream's `Host` (RFC 9113 §8.3.1):
            // the origin-form target below drops it, and Pingora would then send `Host:` empty.
            let target_host = match req.headers.contains_key(http::header::HOST) {
                true => None,
                false => req.uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
                    let absolute = std::str::from_utf8(req.raw_path()).ok()?.parse::<http::Uri>().ok()?;
                    absolute.authority().map(|a| a.as_str().to_owned())
                }),
            };
            let target = match req.uri.query() {
                Some(q) => format!("{canonical}?{q}"),
                None => canonical.into_owned(),
            };
            match target.parse::<http::Uri>() {
                Ok(uri) => session.req_header_mut().set_uri(uri),
                Err(_) => return Some(Deny::new(DenyCode::BadRequest, "unparseable_target")),
            }
            if let Some(host) = target_host {
                if session.req_header_mut().insert_header(http::header::HOST, host).is_err() {
                    return Some(Deny::new(DenyCode::BadRequest, "target_authority"));
                }
            }
        }
        if let Some(m) = method {
            session.req_header_mut().set_method(m);
        }
        None
    }
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            client_ip: None,
            peer_trusted: false,
            host: None,
            proto: "http",
            route: None,
            pending: None,
            denied: None,
            denied_reason: None,
            body_bytes: 0,
            backend: None,
            failed_backends: Vec::new(),
            upstream_error: None,
            rules: self.shared.rules.current(),
            identity: None,
            replay_body: None,
            body_read: false,
            body_done: false,
            declared_len: None,
            webhook_claim: None,
            webhook_fleet: false,
            webhook_secret: None,
            limit_headers: Vec::new(),
            deny_event_aggregated: false,
            pii: None,
            pii_head: None,
            pii_tail: None,
            fetch_self: false,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        ctx.pending = self.inspect_head(session, ctx);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.arm_body_deadline(session, ctx);
        // Maintenance first: every proxied request, whatever it is, unless the team's bypass.
        if let Some(deny) = self.maintenance(session, ctx) {
            return refuse(session, ctx, &deny, deny.reason.to_string()).await;
        }
        // A refused request's body is never read (or only partly): every refusal closes the
        // connection so nothing of it is parsed as a next request.
        if let Some(deny) = ctx.pending.take() {
            return refuse(session, ctx, &deny, deny.reason.to_string()).await;
        }
        let outcome = self.request_checks(session, ctx).await?;
        if let Some(f) = &outcome.deny {
            return refuse(session, ctx, &f.deny, format!("{}:{}", f.deny.reason, f.rule_id)).await;
        }
        if let Some(deny) = ctx.pending.take() {
            return refuse(session, ctx, &deny, deny.reason.to_string()).await;
        }
        if self.channel_disabled(session, ctx) {
            let deny = Deny::new(DenyCode::ChannelDisabled, "channel_switch");
            return refuse(session, ctx, &deny, deny.reason.to_string()).await;
        }
        // A response that may have to be withheld whole is fetched here, not by Pingora (which
        // writes the response head before any body filter could decide); so is a request whose
        // body was read whole but cannot be handed to Pingora.
        if ctx.fetch_self || !ctx.rules.snapshot.pii.is_empty() {
            let rules = ctx.rules.clone();
            let policy = self.pii_policy(&rules, ctx);
            // After a protocol switch (WebSocket, h2c, a CONNECT tunnel) nothing is an HTTP
            // response a PII rule could scan: refused on its routes unless the rule allows it;
            // an allowed one takes Pingora's path (which relays upgrades), never the held one.
            if let Some(p) = policy {
                let req = session.req_header();
                if let Some(why) = portcullis_rules::pii::upgrade_requested(req.method.as_str(), &req.headers) {
                    if p.allow_upgrade {
                        return Ok(false);
                    }
                    let summary = p.upgrade_refused(why);
                    self.report_pii(session, ctx, p, &summary, 0);
                    let deny = summary.finding.deny;
                    return refuse(session, ctx, &deny, format!("{}:{}:{why}", deny.reason, p.id)).await;
                }
            }
            if ctx.fetch_self || policy.is_some_and(PiiPolicy::needs_buffering) {
                // Boxed: the held exchange's state is kilobytes, and Pingora boxes this filter's
                // future on every request (async_trait), moving all of it for requests that
                // never take this path (7.7k instructions per request in S2, benches/README.md).
                return Box::pin(self.exchange(session, ctx, policy)).await;
            }
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.body_done |= end_of_stream;
        // The body's deadline (see `arm_body_deadline`): a trickle that keeps every read under
        // the read timeout is still cut when the whole body is late; each read waits at most
        // what is left. (Not after a protocol switch: those bytes are a tunnel, not a body.)
        if !end_of_stream && !session.was_upgraded() {
            let left = self.body_time_left(ctx);
            if left.is_zero() {
                *body = None;
                return Err(body_deadline_error(ctx));
            }
            session.set_read_timeout(Some(left));
        }
        if let Some(full) = &ctx.replay_body {
            // Read whole before forwarding (see `read_body`): Pingora hands over its retry buffer
            // (the body's tail) at the end of the body; the upstream gets the whole body instead.
            // (Again on a retry to another backend.) An empty chunk is not sent.
            ctx.body_bytes = full.len() as u64;
            *body = Some(if end_of_stream { full.clone() } else { Bytes::new() });
            return Ok(());
        }
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            let cap = self.route(ctx).map_or(0, |r| r.max_body_bytes);
            if ctx.body_bytes > cap {
                ctx.denied = Some(DenyCode::PayloadTooLarge);
                ctx.denied_reason = Some("streamed_body_over_cap".into());
                *body = None;
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the route's cap");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.select_peer(ctx)
    }

    fn fail_to_connect(&self, _session: &mut Session, peer: &HttpPeer, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        if self.connect_failed(peer, ctx) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.prepare_upstream_request(up, ctx)
    }

    async fn upstream_response_filter(
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
            ctx.denied_reason = Some("unsolicited_101".into());
            let mut e = Error::explain(ErrorType::InvalidHTTPHeader, "101 to a request without Upgrade");
            e.esource = ErrorSource::Upstream;
            return Err(e);
        }
        self.check_response_head(resp, ctx)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        self.check_total_deadline(ctx).map(|()| None)
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        self.decorate_response(resp, ctx)?;
        self.start_streamed_scan(session, resp, ctx)
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        self.streamed_scan(session, body, end_of_stream, ctx).map(|()| None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(413), _) => Some(DenyCode::PayloadTooLarge),
            (ErrorType::Custom(PII_WITHHELD), _) => Some(DenyCode::ResponseBlocked),
            (ErrorType::HTTPStatus(s), _) if *s == 504 => Some(DenyCode::UpstreamTimeout),
            (ErrorType::HTTPStatus(s), _) if (400..500).contains(s) => Some(DenyCode::BadRequest),
            (
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
                ErrorSource::Upstream,
            ) => {
                ctx.upstream_error = Some(UpstreamError::Timeout);
                Some(DenyCode::UpstreamTimeout)
            }
            (
                ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::SocketError
                | ErrorType::BindError,
                _,
            ) => {
                ctx.upstream_error.get_or_insert(UpstreamError::Connect);
                Some(DenyCode::UpstreamUnavailable)
            }
            (_, ErrorSource::Upstream) => {
                ctx.upstream_error.get_or_insert(UpstreamError::Protocol);
                Some(DenyCode::UpstreamUnavailable)
            }
            // The client stopped sending in the middle of its body (closed, reset): a malformed
            // request, 400 if it still reads. Gone at any other point (waiting for the response,
            // or we could not write to it): no answer, counted as 499 (see `logging`).
            (ErrorType::ReadError | ErrorType::ConnectionClosed, ErrorSource::Downstream)
                if !ctx.body_done && !session.is_body_empty() =>
            {
                ctx.denied_reason = Some("request_body_incomplete".into());
                Some(DenyCode::BadRequest)
            }
            (ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed, ErrorSource::Downstream) => {
                ctx.denied_reason.get_or_insert_with(|| "client_closed".into());
                None
            }
            // The body's deadline (our check, or Pingora's read timeout armed with what was left).
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => {
                ctx.denied_reason.get_or_insert_with(|| "body_deadline".into());
                Some(DenyCode::RequestTimeout)
            }
            (_, ErrorSource::Downstream) => Some(DenyCode::BadRequest),
            _ => Some(DenyCode::Internal),
        };
        if let Some(kind) = ctx.upstream_error {
            self.shared.metrics.observe_upstream_error(ctx.route, kind);
        }
        let Some(code) = code else {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        };
        if ctx.request_id.is_empty() {
            ctx.request_id = new_request_id();
        }
        ctx.denied = Some(code);
        ctx.denied_reason.get_or_insert_with(|| e.etype().as_str().to_string());
        if matches!(e.etype(), ErrorType::Custom(PII_WITHHELD)) && ctx.pii_head.is_some() {
            // A streamed response stopped by its scan is cut, always: whether Pingora had
            // written its head yet depends on how the upstream's bytes were read.
            if let Err(we) = self.cut(session, ctx).await {
                tracing::debug!(error = %we, "could not write the cut response");
            }
        } else if session.response_written().is_none() {
            let deny = Deny::new(code, e.etype().as_str());
            if let Err(we) = send_deny(session, &ctx.request_id, &deny, true).await {
                tracing::debug!(error = %we, "could not write error response");
            }
        }
        FailToProxy { error_code: code.status(), can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // No response went out: the client went away (every other failure writes one). Counted as
        // 499, "client closed request" (nginx's), a 4xx: never a gateway error in the metrics, the
        // 5xx rate or the health score.
        let status = session.response_written().map_or(CLIENT_CLOSED, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        // A delivery the upstream did not take is not "seen": the sender's retry must pass.
        if let Some(claim) = ctx.webhook_claim.take() {
            if !(200..300).contains(&status) {
                self.shared.webhooks.replay.release(&claim);
                if let (true, Some(f)) = (ctx.webhook_fleet, &self.shared.fleet) {
                    crate::webhooks::fleet_release(f, claim);
                }
            }
        }
        // A 5xx is a failure unless it is the gateway's own deliberate answer (response_blocked,
        // maintenance, channel_disabled, store_unavailable): those never count in the 5xx rate,
        // the health score or the 5xx alarms. An upstream's own 5xx is a failure.
        let failure = (500..600).contains(&status) && ctx.denied.is_none_or(DenyCode::is_failure);
        self.shared.metrics.observe_request(ctx.route, status, failure, elapsed);
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.shared.requests.record(crate::events::Finished { status, failure, elapsed_ms });
        if !ctx.rules.snapshot.anomaly.is_empty() {
            let route = self.route(ctx).map(|r| r.id.as_str());
            let rules = ctx.rules.snapshot.anomaly.rules();
            self.shared.anomaly.status(rules, route, ctx.identity.as_ref(), ctx.client_ip, status);
        }
        if !self.shared.config.access_log {
            return;
        }
        let req = session.req_header();
        let route = self.route(ctx).map_or("", |r| r.id.as_str());
        tracing::info!(
            log.logger = "access",
            event.kind = "event",
            event.category = "web",
            event.action = "request",
            event.outcome = if status != 0 && status < 400 { "success" } else { "failure" },
            event.duration = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            http.request.id = %ctx.request_id,
            http.request.method = %req.method,
            url.path = %req.uri.path(),
            http.response.status_code = status,
            http.request.body.bytes = ctx.body_bytes,
            source.ip = ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
            route = route,
            upstream.address = ctx.backend.map(|b| b.to_string()).unwrap_or_default(),
            deny.code = ctx.denied.map_or("", |d| d.as_str()),
            deny.reason = ctx.denied_reason.as_deref().unwrap_or(""),
            webhook.secret_id = ctx.webhook_secret.as_deref().unwrap_or(""),
            tenant.id = ctx.identity.as_ref().and_then(|i| i.tenant.as_deref()).unwrap_or(""),
            user.id = ctx.identity.as_ref().map_or("", |i| i.subject.as_str()),
            session.id = ctx.identity.as_ref().and_then(|i| i.session.as_deref()).unwrap_or(""),
            error.message = e.map(|e| e.etype().as_str()).unwrap_or(""),
            "request"
        );
    }
}

impl Portcullis {
    /// The next backend of the route's pool (healthy, not failed yet for this request), with
    /// the pool's timeouts.
    fn select_peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
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
    fn connect_failed(&self, peer: &HttpPeer, ctx: &mut Ctx) -> bool {
        if let Some(a) = peer._address.as_inet() {
            ctx.failed_backends.push(*a);
        }
        let pool_size =
            self.route(ctx).and_then(|r| self.shared.config.pools.get(r.pool)).map_or(1, |p| p.backends.len());
        ctx.failed_backends.len() < pool_size.min(3)
    }

    /// What the upstream request head gets: client copies of forwarding, identity and internal
    /// headers removed, ours set; on a PII-scanned route, `identity` encoding and no ranges.
    fn prepare_upstream_request(&self, up: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
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
        if let Some(ip) = ctx.client_ip {
            let ip = ip_header_value(ip);
            up.insert_header("x-forwarded-for", ip.clone())?;
            up.insert_header("x-real-ip", ip)?;
        }
        up.insert_header("x-forwarded-proto", HeaderValue::from_static(ctx.proto))?;
        if let Some(h) = &ctx.host {
            up.insert_header("x-forwarded-host", h.as_str())?;
        }
        up.insert_header("forwarded", forwarded_value(ctx.client_ip, ctx.proto, ctx.host.as_deref()))?;
        up.insert_header("x-request-id", ctx.request_id.as_str())?;
        if self.pii_policy(&ctx.rules, ctx).is_some() {
            crate::pii::request_headers(up)?;
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

    /// What every proxied response gets: `X-Request-Id`, and the rate-limit headers of a request
    /// that passed the limits.
    fn decorate_response(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if ctx.proto == "https" {
            if let Some(hsts) = self.route(ctx).and_then(|r| r.hsts.clone()) {
                resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts)?;
            }
        }
        for (name, value) in ctx.limit_headers.drain(..) {
            resp.insert_header(name, value)?;
        }
        Ok(())
    }

    /// The PII policy of this request's route, when scanning is on.
    fn pii_policy<'r>(&self, rules: &'r Loaded, ctx: &Ctx) -> Option<&'r PiiPolicy> {
        if rules.snapshot.pii.is_empty() || !self.shared.switches.flag(crate::switches::Flag::PiiScanning) {
            return None;
        }
        self.route_pii_policy(rules, ctx)
    }

    /// The PII policy of this request's route in its pinned rules, whatever the flag says now
    /// (a response whose scan started finishes it: the scanner holds bytes back).
    fn route_pii_policy<'r>(&self, rules: &'r Loaded, ctx: &Ctx) -> Option<&'r PiiPolicy> {
        rules.snapshot.pii.for_route(self.route(ctx).map(|r| r.id.as_str()))
    }

    /// Response head of a streamed response on a scanned route (Pingora's path).
    fn start_streamed_scan(&self, session: &Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if ctx.rules.snapshot.pii.is_empty() {
            return Ok(());
        }
        let rules = ctx.rules.clone();
        let Some(policy) = self.pii_policy(&rules, ctx) else { return Ok(()) };
        ctx.pii = self.streamed_head(session, resp, ctx, policy)?;
        if matches!(ctx.pii, Some(crate::pii::Streaming::Scan { .. })) && policy.withholds_unscannable() {
            ctx.pii_head = Some(Box::new(resp.clone()));
        }
        Ok(())
    }

    /// Writes what a streamed response stopped by its scan still sends, without ending it: its
    /// head if Pingora had not written it, the scanned bytes of the chunk that stopped it. The
    /// connection is then closed: the client sees a body that ends early (no last chunk).
    async fn cut(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        session.set_keepalive(None);
        if let Some(head) = ctx.pii_head.take() {
            if session.response_written().is_none() {
                session.write_response_header(head, false).await?;
            }
        }
        if let Some(tail) = ctx.pii_tail.take().filter(|t| !t.is_empty()) {
            session.write_response_body(Some(tail), false).await?;
        }
        Ok(())
    }

    /// The upstream's response head over `limits.max_response_header_bytes`: refused (502
    /// `upstream_unavailable`, reason `response_headers_too_large`), nothing of it passed on.
    fn check_response_head(&self, resp: &ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let cap = self.shared.config.max_response_header_bytes;
        if response_head_bytes(resp) <= cap {
            return Ok(());
        }
        ctx.upstream_error = Some(UpstreamError::Protocol);
        ctx.denied_reason = Some("response_headers_too_large".into());
        let mut e = Error::explain(ErrorType::InvalidHTTPHeader, "upstream response head over the cap");
        e.esource = ErrorSource::Upstream;
        Err(e)
    }

    /// Decides how a streamed response's body is scanned, and fixes the head for a body that will
    /// change (`None`: it passes unscanned). A body that cannot be scanned under a policy that
    /// redacts is withheld right here (the head is not sent yet): the head becomes the deny's.
    fn streamed_head(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
        policy: &PiiPolicy,
    ) -> Result<Option<crate::pii::Streaming>> {
        let head_request = session.req_header().method == http::Method::HEAD;
        match crate::pii::plan(policy, head_request, resp) {
            crate::pii::Plan::Pass => {
                self.shared.pii.count(&policy.id, crate::pii::PASSED, 0);
                Ok(None)
            }
            crate::pii::Plan::Scan(encoding, events) => {
                let st = crate::pii::Streaming::new(policy, encoding, events);
                if policy.redacts() || st.sends_decoded() {
                    crate::pii::body_rewritten(resp, st.sends_decoded())?;
                    if resp.headers.get(http::header::TRANSFER_ENCODING).is_none() {
                        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                    }
                }
                Ok(Some(st))
            }
            crate::pii::Plan::Unscannable(encoding) => {
                let summary = policy.not_scanned("unsupported_encoding", Some(&encoding));
                self.report_pii(session, ctx, policy, &summary, 0);
                if !policy.withholds_unscannable() {
                    return Ok(None);
                }
                let deny = summary.finding.deny;
                let (head, body) = deny_response(&ctx.request_id, &deny)?;
                *resp = head;
                ctx.denied = Some(deny.code);
                ctx.denied_reason = Some(format!("{}:{}", deny.reason, policy.id));
                Ok(Some(crate::pii::Streaming::Withheld(Some(body))))
            }
        }
    }

    /// One body chunk of a streamed response through its scan.
    fn streamed_scan(&self, session: &Session, body: &mut Option<Bytes>, end: bool, ctx: &mut Ctx) -> Result<()> {
        if ctx.pii.is_none() {
            return Ok(());
        }
        let rules = ctx.rules.clone();
        let Some(policy) = self.route_pii_policy(&rules, ctx) else { return Ok(()) };
        let Some(st) = ctx.pii.as_mut() else { return Ok(()) };
        let step = st.body(policy, body, end);
        if matches!(step, crate::pii::Step::Abort(_)) {
            // Pingora drops the chunk of a failed filter: `fail_to_proxy` writes it (see `cut`).
            ctx.pii_tail = body.take();
        }
        self.pii_step(session, ctx, policy, step)
    }

    /// Acts on what a streamed chunk led to: count and report; `Err` ends the response.
    fn pii_step(&self, session: &Session, ctx: &mut Ctx, policy: &PiiPolicy, step: crate::pii::Step) -> Result<()> {
        match step {
            crate::pii::Step::Go => {}
            crate::pii::Step::End(scan) => match policy.summary(&scan) {
                Some(summary) => self.report_pii(session, ctx, policy, &summary, scan.scanned),
                None => self.shared.pii.count(&policy.id, crate::pii::CLEAN, scan.scanned),
            },
            crate::pii::Step::Stopped(summary) => self.report_pii(session, ctx, policy, &summary, 0),
            crate::pii::Step::Abort(summary) => {
                self.report_pii(session, ctx, policy, &summary, 0);
                ctx.pii = None;
                ctx.denied = Some(summary.finding.deny.code);
                ctx.denied_reason = Some(format!("{}:{}", summary.finding.deny.reason, policy.id));
                let mut e = Error::explain(ErrorType::Custom(PII_WITHHELD), "the rest of the response is withheld");
                e.esource = ErrorSource::Internal;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Counts a scanned response and emits its `pii_leak_block` event (action from the summary,
    /// never a value).
    fn report_pii(&self, session: &Session, ctx: &Ctx, policy: &PiiPolicy, summary: &Summary, scanned: usize) {
        self.shared.pii.count(&policy.id, crate::pii::result_label(summary.action), scanned);
        let req = session.req_header();
        let view = self.view(req, ctx, self.route(ctx));
        let mut ev = self.event_for(&view, ctx, &summary.finding);
        ev.action = summary.action;
        self.shared.events.emit(ev);
    }
}

impl Portcullis {
    /// Maintenance mode, unless the client is in a bypass CIDR or sends the bypass secret.
    fn maintenance(&self, session: &Session, ctx: &Ctx) -> Option<Deny> {
        let retry_after = self.shared.switches.maintenance(crate::switches::now_unix())?;
        let header = self
            .shared
            .config
            .maintenance_bypass_header
            .as_ref()
            .map(|(name, _)| name.as_str())
            .and_then(|h| session.req_header().headers.get(h));
        if self.shared.bypass.allows(ctx.client_ip, header.map(|v| v.as_bytes())) {
            return None;
        }
        Some(Deny::new(DenyCode::Maintenance, "maintenance_mode").retry_after(retry_after))
    }

    /// The matched route's channel is switched off. Defence in depth: the canonical path is also
    /// compared, ignoring ASCII case, with the prefixes of every route whose channel is off **and
    /// whose hosts include the request's host**, so no spelling reaches a killed channel's path
    /// through another route of the same host (e.g. a host-specific catch-all that outranks it),
    /// while a channel scoped to `admin.example.com` leaves every other host alone.
    fn channel_disabled(&self, session: &Session, ctx: &Ctx) -> bool {
        let sw = &self.shared.switches;
        if !sw.any_channel_off() {
            return false;
        }
        if let Some(ch) = self.route(ctx).and_then(|r| r.channel.as_deref()) {
            if !sw.channel_enabled(ch) {
                return true;
            }
        }
        let path = session.req_header().uri.path();
        let host = ctx.host.as_deref();
        self.shared.config.routes.entries().iter().any(|e| {
            e.value.channel.as_deref().is_some_and(|ch| !sw.channel_enabled(ch))
                && e.matches_host(host)
                && canon::has_prefix_ignore_case(path, &e.prefix)
        })
    }

    /// The rule checks of the pinned snapshot, in order: firewall, identity, rate limits, webhook
    /// signature, SSRF guard, tenant scope, quotas (last: only what passed everything is counted). Every check
    /// pushes findings
    /// into one `Outcome`, which applies each rule's mode: the first enforcing finding stops the
    /// chain. Each finding becomes one event; an enforced cross-tenant attempt also triggers its
    /// rule's containment. A body the checks need is read whole first: nothing is forwarded
    /// before every check has passed.
    async fn request_checks(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        let rules = ctx.rules.clone();
        let snapshot = &rules.snapshot;
        let sw = &self.shared.switches;
        let tenant_on = !snapshot.tenant.is_empty() && sw.flag(crate::switches::Flag::TenantScope);
        let webhooks_on = !snapshot.webhooks.is_empty() && sw.flag(crate::switches::Flag::WebhookVerification);
        let limits_on = !snapshot.rate_limits.is_empty() && sw.flag(crate::switches::Flag::RateLimit);
        let ssrf_on = !snapshot.ssrf.is_empty();
        let operator_on = self.shared.sessions.any_operator_block();
        if (snapshot.firewall.is_empty() || !sw.flag(crate::switches::Flag::Firewall))
            && !operator_on
            && snapshot.identity.is_empty()
            && !tenant_on
            && !webhooks_on
            && !limits_on
            && !ssrf_on
            && snapshot.quotas.is_empty()
            && snapshot.anomaly.is_empty()
        {
            return Ok(outcome);
        }
        let route = self.route(ctx);
        let now = crate::switches::now_unix();
        let lnow = self.shared.limits.now();

        // 1. Firewall, identity and rate limits: the request head only. Then what the body
        // checks need.
        let (limit_headers, deny_aggregated);
        let (mut flow, identity, webhook, tenant_cap, ssrf_cap) = {
            let req = session.req_header();
            let view = self.view(req, ctx, route);
            let head = self.head_checks(&view, ctx, now, limits_on.then_some(lnow), &mut outcome);
            let (flow, identity) = (head.flow, head.identity);
            limit_headers = head.limit_headers;
            deny_aggregated = head.aggregated;
            let go = flow.is_continue();
            let webhook = if go && webhooks_on { snapshot.webhooks.for_request(&view) } else { None };
            let tenant_cap = if go && tenant_on { snapshot.tenant.body_needed(&view) } else { None };
            let ssrf_cap = if go && ssrf_on { snapshot.ssrf.body_needed(&view) } else { None };
            (flow, identity, webhook, tenant_cap, ssrf_cap)
        };
        ctx.identity = identity;
        ctx.limit_headers = limit_headers;
        ctx.deny_event_aggregated = deny_aggregated;
        let route_cap = route.map_or(0, |r| r.max_body_bytes);
        let webhook_cap = webhook.map(|w| w.body_cap(route_cap));
        let body = match webhook_cap.max(tenant_cap.max(ssrf_cap).map(|c| c as u64)) {
            // Never more than the route takes (the streaming cap check does not see this body).
            Some(cap) => {
                let deadline = Instant::now() + self.body_time_left(ctx);
                Some(read_body(session, ctx, cap.min(route_cap), true, deadline).await?)
            }
            None => None,
        };

        // 2. The webhook signature, over the raw bytes.
        if let Some(rule) = webhook {
            match &body {
                Some(BodyRead::Complete(b) | BodyRead::NotReplayable(b)) => {
                    let hooks = &self.shared.webhooks;
                    match rule.check(&session.req_header().headers, b, now, &hooks.replay) {
                        Checked::Accepted { secret_id, claim } => {
                            // Fleet mode: another instance may have accepted it (see webhooks.rs).
                            let fleet = match &self.shared.fleet {
                                None => FleetClaim::Claimed,
                                Some(f) => crate::webhooks::fleet_claim(f, &claim, now).await,
                            };
                            match fleet {
                                FleetClaim::Replayed => {
                                    hooks.replay.release(&claim);
                                    hooks.count(&rule.id, "replayed", &secret_id);
                                    flow = outcome.add(rule.replayed_in_fleet(&secret_id));
                                }
                                FleetClaim::Unavailable(why) if self.fleet_webhook_closed() => {
                                    hooks.replay.release(&claim);
                                    hooks.count(&rule.id, "fleet_store_unavailable", &secret_id);
                                    self.fleet_unavailable(&why, "refused", now);
                                    ctx.pending = Some(
                                        Deny::new(DenyCode::StoreUnavailable, "webhook_replay_store")
                                            .with_details(vec!["the fleet's replay cache is unreachable: deliveries are refused until it is back (fleet.webhook_replay_fallback: closed)".into()]),
                                    );
                                    flow = ControlFlow::Break(());
                                }
                                other => {
                                    if let FleetClaim::Unavailable(why) = other {
                                        self.fleet_unavailable(&why, "local", now);
                                    } else {
                                        ctx.webhook_fleet = self.shared.fleet.is_some();
                                    }
                                    hooks.count(&rule.id, crate::webhooks::ACCEPTED, &secret_id);
                                    ctx.webhook_claim = Some(claim);
                                    ctx.webhook_secret = Some(secret_id);
                                }
                            }
                        }
                        Checked::Refused(f) => {
                            let detail = |k: &str| f.detail.get(k).and_then(|v| v.as_str()).unwrap_or("");
                            hooks.count(&rule.id, detail("reason"), detail("secret_id"));
                            flow = outcome.add(*f);
                        }
                    }
                }
                // Over the cap (declared, or found while reading), or not replayable: 413.
                _ => {
                    ctx.pending = Some(Deny::new(DenyCode::PayloadTooLarge, "webhook_body_over_cap"));
                    flow = ControlFlow::Break(());
                }
            }
        }

        // 3. The SSRF guard: query parameters, headers, form and JSON body fields.
        if flow.is_continue() && ssrf_on {
            let req = session.req_header();
            let view = self.view(req, ctx, route);
            flow = snapshot.ssrf.check(&view, body_input(body.as_ref(), ssrf_cap), &mut outcome);
        }

        // 4. Operator's tenant suspensions (the identity's tenant, every tenant targeted), then
        // tenant scope.
        if flow.is_continue() && self.shared.sessions.any_suspended() {
            let req = session.req_header();
            let view = self.view(req, ctx, route);
            let input = match (&body, tenant_cap) {
                (Some(BodyRead::Complete(b) | BodyRead::NotReplayable(b)), Some(cap)) if b.len() <= cap => {
                    BodyInput::Bytes(b)
                }
                _ => BodyInput::NotBuffered,
            };
            let targets = snapshot.tenant.targets(&view, input);
            let sessions = &self.shared.sessions;
            let identity_tenant = ctx.identity.as_ref().and_then(|i| i.tenant.as_deref());
            if let Some((t, what)) =
                operator::first_suspended(identity_tenant, &targets, &|t| sessions.is_suspended(t, now))
            {
                flow = outcome.add(operator::tenant_suspended(t, what));
            }
        }
        if flow.is_continue() && tenant_on {
            let req = session.req_header();
            let view = self.view(req, ctx, route);
            let input = body_input(body.as_ref(), tenant_cap);
            let who = ctx.identity.as_ref().map(|i| Principal {
                subject: Some(i.subject.as_str()),
                tenant: i.tenant.as_deref(),
                roles: &i.roles,
            });
            flow = snapshot.tenant.check(&view, who.as_ref(), input, &mut outcome);
        }

        // 5. Quotas, last: only a request every other check let through is counted.
        if flow.is_continue() && !snapshot.quotas.is_empty() {
            let req = session.req_header();
            let view = self.view(req, ctx, route);
            let input = KeyInput { view: &view, identity: ctx.identity.as_ref() };
            let enforcement = sw.flag(crate::switches::Flag::QuotaEnforcement);
            let limits = &self.shared.limits;
            let check = snapshot.quotas.check(&limits.book, &input, lnow, enforcement, &limits.agg);
            let (mut headers, mut aggregated) = (Vec::new(), false);
            let _ = apply_limits(check, &mut outcome, &mut headers, &mut aggregated);
            ctx.limit_headers.extend(headers);
            ctx.deny_event_aggregated |= aggregated;
        }

        // 6. Anomaly zones, on what every check let through: amber waits, red revokes.
        let mut delay = None;
        if outcome.deny.is_none() && ctx.pending.is_none() && !snapshot.anomaly.is_empty() {
            let v = self.shared.anomaly.score(
                snapshot.anomaly.rules(),
                route.map(|r| r.id.as_str()),
                session.req_header().uri.path(),
                ctx.identity.as_ref(),
                ctx.client_ip,
                crate::fleet_limits::unix_ms(),
            );
            if !v.flagged.is_empty() {
                let req = session.req_header();
                let view = self.view(req, ctx, route);
                for f in &v.flagged {
                    // Amber lets the request through (delayed): `flagged`, whatever the mode.
                    let mut ev = self.event_for(&view, ctx, f);
                    ev.action = portcullis_rules::verdict::Action::Flagged;
                    self.shared.events.emit(ev);
                }
            }
            if let Some((mut f, plan)) = v.red {
                if let Some(plan) = plan {
                    let who = ctx.identity.as_ref();
                    anomaly_red(&self.shared, &mut f, plan, who, &ctx.request_id, ctx.client_ip, now).await;
                }
                let _ = outcome.add(f);
            }
            delay = v.delay;
        }

        if !outcome.is_clean() {
            let req = session.req_header();
            let view = self.view(req, ctx, route);
            let containment = self.contain(&outcome, ctx, now).await;
            self.emit_findings(&view, ctx, &outcome, containment);
        }
        // Amber: the request waits on a timer before it is forwarded (a bounded number at once).
        if let (Some(d), None) = (delay, &outcome.deny) {
            if let Some(_slot) = self.shared.anomaly.slot() {
                tokio::time::sleep(d).await;
            }
        }
        // A body partly consumed by a check cannot be forwarded whole, even if only a monitor
        // rule looked at it: refuse it rather than send the upstream a truncated body. One read
        // whole that Pingora cannot forward goes out through the gateway's own exchange.
        if outcome.deny.is_none() && ctx.pending.is_none() {
            match body {
                Some(BodyRead::StreamedTooLarge) => {
                    ctx.pending = Some(Deny::new(DenyCode::PayloadTooLarge, "body_over_check_cap"));
                }
                Some(BodyRead::NotReplayable(b)) => {
                    ctx.replay_body = Some(b);
                    ctx.fetch_self = true;
                }
                _ => {}
            }
        }
        Ok(outcome)
    }

    /// The borrowed view every check reads.
    fn view<'a>(
        &self,
        req: &'a RequestHeader,
        ctx: &'a Ctx,
        route: Option<&'a crate::config::Route>,
    ) -> RequestView<'a> {
        RequestView {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query(),
            host: ctx.host.as_deref(),
            route: route.map(|r| r.id.as_str()),
            channel: route.and_then(|r| r.channel.as_deref()),
            client_ip: ctx.client_ip,
            headers: &req.headers,
        }
    }

    /// Firewall, identity, then rate limits: the flow, and the caller when one is verified.
    /// Rate limits (when `limits` is given) run before an authentication failure is answered, so
    /// a client guessing credentials is limited like any other (keyed as anonymous).
    fn head_checks(&self, view: &RequestView<'_>, ctx: &Ctx, now: u64, limits: Option<Now>, out: &mut Outcome) -> Head {
        let snapshot = &ctx.rules.snapshot;
        let mut head =
            Head { flow: ControlFlow::Break(()), identity: None, limit_headers: Vec::new(), aggregated: false };
        // The operator's address blocks hold whatever the firewall flag says.
        if let Some(block) = view.client_ip.and_then(|ip| self.shared.sessions.blocked_address(ip, now)) {
            if out.add(operator::address_blocked(&block)).is_break() {
                return head;
            }
        }
        if !snapshot.firewall.is_empty() && self.shared.switches.flag(crate::switches::Flag::Firewall) {
            if let ControlFlow::Break(()) = snapshot.firewall.check(view, out) {
                return head;
            }
        }
        let sessions = &self.shared.sessions;
        let revoked = |s: &str| sessions.is_revoked(s, now);
        let blocked = |s: &str| sessions.is_blocked(s, now);
        let allowlisted = |k: &str| sessions.allowlisted(k);
        let input = AuthInput {
            view,
            peer_trusted: ctx.peer_trusted,
            now_unix: now,
            revoked: &revoked,
            blocked: &blocked,
            allowlisted: &allowlisted,
        };
        let (who, failed) = match snapshot.identity.authenticate(&input) {
            Authn::Verified(who) => (Some(who), None),
            Authn::Failed(f) => (None, Some(f)),
            Authn::NotConfigured | Authn::Anonymous => (None, None),
        };
        if let Some(lnow) = limits {
            let key = KeyInput { view, identity: who.as_ref() };
            let fleet = self.shared.fleet.as_deref().map(|f| (&f.rates, crate::fleet_limits::unix_ms()));
            let check = snapshot.rate_limits.check_fleet(&key, lnow, &self.shared.limits.agg, fleet);
            if apply_limits(check, out, &mut head.limit_headers, &mut head.aggregated).is_break() {
                return head;
            }
        }
        if let Some(f) = failed {
            head.flow = out.add(*f);
            return head;
        }
        head.flow = ControlFlow::Continue(());
        head.identity = who;
        head
    }

    /// Runs the containment of an enforced cross-tenant finding's rule: revoke the session, block
    /// the subject, switch maintenance on; each persisted, audited and evented before the deny is
    /// answered. Returns what was done, for the finding's event.
    async fn contain(&self, outcome: &Outcome, ctx: &Ctx, now: u64) -> Vec<serde_json::Value> {
        let Some(f) = outcome.deny.as_ref().filter(|f| f.event == EventType::CrossTenantAttempt) else {
            return Vec::new();
        };
        let Some(plan) = ctx.rules.snapshot.tenant.containment(&f.rule_id).cloned() else {
            return Vec::new();
        };
        let job = crate::containment::Job {
            shared: self.shared.clone(),
            plan,
            rule_id: f.rule_id.to_string(),
            actor: "containment",
            reason: crate::containment::REASON,
            session: ctx.identity.as_ref().and_then(|i| i.session.clone()),
            subject: ctx.identity.as_ref().map(|i| i.subject.clone()),
            request_id: ctx.request_id.clone(),
            client_ip: ctx.client_ip,
            now,
        };
        tokio::task::spawn_blocking(move || job.run()).await.unwrap_or_default()
    }

    /// One security event per finding (see [`Portcullis::event_for`]).
    fn emit_findings(&self, view: &RequestView<'_>, ctx: &Ctx, outcome: &Outcome, containment: Vec<serde_json::Value>) {
        for f in outcome.findings() {
            if ctx.deny_event_aggregated && is_the_deny(f, outcome) {
                continue; // counted by the aggregator; its window's summary reports it
            }
            let mut ev = self.event_for(view, ctx, f);
            if !containment.is_empty() && is_the_deny(f, outcome) {
                ev.detail.insert("containment".into(), serde_json::Value::Array(containment.clone()));
            }
            self.shared.events.emit(ev);
        }
    }

    /// The event of a finding; the core, not the check, builds it, from the same view the checks
    /// read and the verified identity.
    fn event_for(&self, view: &RequestView<'_>, ctx: &Ctx, f: &Finding) -> SecurityEvent {
        let who = ctx.identity.as_ref();
        let detail_str = |k: &str| f.detail.get(k).and_then(|v| v.as_str());
        let facts = RequestFacts {
            request_id: &ctx.request_id,
            client_ip: view.client_ip,
            method: view.method,
            path: view.path,
            route: view.route,
            channel: view.channel,
            tenant: who.and_then(|i| i.tenant.as_deref()).or_else(|| detail_str("tenant")),
            target_tenant: detail_str("target_tenant"),
            subject: who.map(|i| i.subject.as_str()).or_else(|| detail_str("subject")),
        };
        let mut ev = SecurityEvent::from_finding(f, &facts, &ctx.rules.snapshot.version);
        // The session the request ran under (an identity failure's finding names it already):
        // the runbook's way from an event to the session's whole request history.
        if let Some(session) = who.and_then(|i| i.session.as_deref()) {
            ev.detail.entry("session").or_insert_with(|| session.into());
        }
        ev
    }

    /// Time left for the request body: the route's `body_timeout` and its pool's
    /// `total_timeout`, whichever ends first, both counted from the request's arrival.
    fn body_time_left(&self, ctx: &Ctx) -> Duration {
        let Some(route) = self.route(ctx) else {
            return Duration::from_millis(crate::config::DEFAULT_BODY_TIMEOUT_MS).saturating_sub(ctx.started.elapsed());
        };
        let total = self.shared.config.pools.get(route.pool).map_or(route.body_timeout, |p| p.total_timeout);
        route.body_timeout.min(total).saturating_sub(ctx.started.elapsed())
    }

    /// Bounds the first read of the request body by the body's deadline (Pingora's read timeout
    /// is per read: 60 s by default, restarted by every byte). `request_body_filter` then
    /// shortens it after each chunk, and [`read_body`] applies the same deadline. A request
    /// that switches protocols is left alone: what follows its head is a tunnel.
    fn arm_body_deadline(&self, session: &mut Session, ctx: &Ctx) {
        let req = session.req_header();
        if portcullis_rules::pii::upgrade_requested(req.method.as_str(), &req.headers).is_some() {
            return;
        }
        let left = self.body_time_left(ctx).max(Duration::from_millis(1));
        session.set_read_timeout(Some(left));
    }

    fn check_total_deadline(&self, ctx: &mut Ctx) -> Result<()> {
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

/// What the head checks decided.
struct Head {
    flow: ControlFlow<()>,
    /// The verified caller.
    identity: Option<Identity>,
    /// Rate-limit headers for a passing response.
    limit_headers: Vec<(&'static str, String)>,
    /// The deny is a rate-limit refusal whose event the aggregator counted.
    aggregated: bool,
}

/// Merges a rate-limit or quota answer into the request's outcome: its flagged findings, its
/// refusal (whose event may be left to the aggregator), and the headers for a passing response.
fn apply_limits(
    check: LimitCheck,
    out: &mut Outcome,
    headers: &mut Vec<(&'static str, String)>,
    deny_aggregated: &mut bool,
) -> ControlFlow<()> {
    for f in check.outcome.flagged {
        let _ = out.add(f);
    }
    if let Some(deny) = check.outcome.deny {
        *deny_aggregated = !check.deny_event;
        return out.add(deny);
    }
    headers.extend(check.headers);
    ControlFlow::Continue(())
}

/// The body as a check with this cap sees it: not buffered for it, too large for it, or whole.
fn body_input(body: Option<&BodyRead>, cap: Option<usize>) -> BodyInput<'_> {
    match (body, cap) {
        (None, _) | (_, None) => BodyInput::NotBuffered,
        (Some(BodyRead::Complete(b) | BodyRead::NotReplayable(b)), Some(cap)) if b.len() <= cap => BodyInput::Bytes(b),
        (Some(_), Some(_)) => BodyInput::TooLarge,
    }
}

fn is_the_deny(f: &Finding, outcome: &Outcome) -> bool {
    f.mode == Mode::Enforce && outcome.deny.as_ref().is_some_and(|d| std::ptr::eq(d, f))
}

/// The status recorded (metrics, access log, 5xx rate) for a request that got no response
/// because the client went away.
pub const CLIENT_CLOSED: u16 = 499;

/// The request body's deadline passed: a downstream read timeout, which `fail_to_proxy`
/// answers `408 request_timeout` (or cuts, once a response started). The upstream connection, if
/// one was opened, is closed, never pooled: it holds a partial request.
fn body_deadline_error(ctx: &mut Ctx) -> Box<Error> {
    ctx.denied_reason = Some("body_deadline".into());
    let mut e = Error::explain(ErrorType::ReadTimedout, "request body not complete within its deadline");
    e.esource = ErrorSource::Downstream;
    e
}

/// What [`read_body`] got.
enum BodyRead {
    /// The whole body (possibly empty), also in `Ctx::replay_body` when not empty.
    Complete(Bytes),
    /// `Content-Length` says it is over the cap: nothing was read, it can still stream.
    DeclaredTooLarge,
    /// It turned out over the cap while reading: part of it is consumed and cannot be forwarded.
    StreamedTooLarge,
    /// Read whole, but Pingora cannot hand it to the upstream: a chunked body over its 64 KiB
    /// retry buffer (see [`read_body`]). The gateway's own exchange sends it.
    NotReplayable(Bytes),
}

/// Reads the whole request body before anything is forwarded, up to `cap` bytes, answering an
/// `Expect: 100-continue` first. `replay`: Pingora will forward the request (see below); else the
/// gateway sends the body itself (`exchange`) and the body can have any framing.
///
/// How the body then reaches the upstream: Pingora forwards a body that was already read only
/// through its retry buffer (64 KiB, filled by every read once enabled): when it is not empty,
/// Pingora passes it once through `request_body_filter` at the end of the body, which replaces it
/// with the whole body kept in `Ctx::replay_body`. So the buffer only has to hold the body's
/// tail, untruncated: it is enabled once what is left to read fits in it. With a
/// `Content-Length` that is always possible (a read returns at most 64 KiB); a chunked body has
/// no known length, so the buffer is on from the start and such a body over 64 KiB is
/// [`BodyRead::NotReplayable`]: the gateway then sends the request itself (`exchange`).
///
/// The whole body must arrive before `deadline` (see `Portcullis::body_time_left`): past it,
/// a downstream `ReadTimedout`, answered `408 request_timeout`; nothing was forwarded.
async fn read_body(
    session: &mut Session,
    ctx: &mut Ctx,
    cap: u64,
    replay: bool,
    deadline: Instant,
) -> Result<BodyRead> {
    let req = session.req_header();
    let declared = ctx.declared_len;
    if declared.is_some_and(|n| n > cap) {
        return Ok(BodyRead::DeclaredTooLarge);
    }
    let expect_continue =
        req.headers.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    ctx.body_read = true;
    if expect_continue {
        session.as_mut().write_continue_response().await.map_err(|e| e.into_down())?;
    }
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(declared.unwrap_or(0).min(cap)).unwrap_or(0));
    loop {
        if replay && declared.is_none_or(|n| n.saturating_sub(buf.len() as u64) <= RETRY_BUFFER_BYTES) {
            session.enable_retry_buffering();
        }
        // The whole body within its deadline, not each read: a trickle is cut too.
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match pingora_timeout::timeout(left, session.read_request_body()).await {
            // The client's framing (bad chunk, early close): the client's error, answered 400 by
            // `fail_to_proxy`, never a gateway 5xx. A read timeout is the deadline's, 408.
            Ok(r) => r.map_err(|e| e.into_down())?,
            Err(_) => return Err(body_deadline_error(ctx)),
        };
        match chunk {
            None => {
                ctx.body_done = true;
                break;
            }
            Some(c) if (buf.len() + c.len()) as u64 > cap => return Ok(BodyRead::StreamedTooLarge),
            Some(c) => buf.extend_from_slice(&c),
        }
    }
    if buf.is_empty() || !replay {
        return Ok(BodyRead::Complete(buf.freeze()));
    }
    if session.as_ref().get_retry_buffer().is_none() {
        return Ok(BodyRead::NotReplayable(buf.freeze()));
    }
    let body = buf.freeze();
    ctx.replay_body = Some(body.clone());
    Ok(BodyRead::Complete(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2_req(method: &str, authority: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/api/x", None).unwrap();
        r.set_uri(format!("https://{authority}/api/x").parse::<http::Uri>().unwrap());
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn h2_heads_get_the_http1_head_checks() {
        let limits = framing::HeaderLimits { max_count: 5, max_bytes: 300 };
        let reason = |r: &RequestHeader| h2_head(r, limits).err().map(|d| d.reason.to_string());
        assert_eq!(reason(&h2_req("GET", "a.test", &[])), None);
        assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "a.test")])), None);
        assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "A.test")])).as_deref(), Some("target_authority"));
        assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "u@a.test")])).as_deref(), Some("target_authority"));
        assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "b.test")])).as_deref(), Some("target_authority"));
        assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "a.test:8443")])).as_deref(), Some("target_authority"));
        assert_eq!(
            reason(&h2_req("GET", "a.test", &[("host", "a.test"), ("host", "a.test")])).as_deref(),
            Some("duplicate_host")
        );
        let many: Vec<(&str, &str)> = ["a", "b", "c", "d", "e", "f"].iter().map(|k| (*k, "v")).collect();
        assert_eq!(reason(&h2_req("GET", "a.test", &many)).as_deref(), Some("too_many_headers"));
        let big = "v".repeat(400);
        assert_eq!(reason(&h2_req("GET", "a.test", &[("x", big.as_str())])).as_deref(), Some("headers_too_large"));
        assert_eq!(h2_head(&h2_req("CONNECT", "a.test", &[]), limits).unwrap_err().code, DenyCode::MethodNotAllowed);
    }

    #[test]
    fn forwarded_is_rfc_7239() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_value(Some(v4), "https", Some("a.test")), "for=192.0.2.7;proto=https;host=\"a.test\"");
        assert_eq!(forwarded_value(Some(v6), "http", None), "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(forwarded_value(None, "http", Some("bad\"host")), "proto=http");
    }

    #[test]
    fn client_addresses_become_the_same_text_as_display() {
        let ips = [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.200.7",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ];
        for ip in ips {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(ip).to_str().unwrap(), ip.to_string());
        }
        for a in 0..=255u8 {
            let ip = IpAddr::from([a, 255 - a, a / 3, 7]);
            assert_eq!(ip_header_value(ip).to_str().unwrap(), ip.to_string());
        }
    }
}
