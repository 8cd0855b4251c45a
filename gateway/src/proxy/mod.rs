//! The one `ProxyHttp` implementation, split by phase. Each phase is a thin adapter: build a
//! borrowed view of the request once, run that phase's checks from `portcullis-rules`, apply the
//! verdict. This module holds the per-request state ([`Ctx`], with its one [`Verdict`]), the
//! deny writers, and the `ProxyHttp` impl, which only delegates:
//!
//! | phase | module |
//! |---|---|
//! | `early_request_filter` | [`head`]: request id, client IP, framing on h2, canonical path, route |
//! | `request_filter` | [`checks`]: maintenance, the snapshot's stage pipeline, channel switches |
//! | `request_body_filter` | [`body`]: body deadline and cap; a body read whole by a check |
//! | `upstream_peer` … `upstream_response_*` | [`upstream`]: peer, forwarded headers, deadlines |
//! | `response_filter`, `response_body_filter` | [`response`]: headers we add, PII scan |
//! | held responses | [`exchange`]: the gateway's own exchange with the upstream |
//! | `fail_to_proxy`, `logging` | [`end`]: errors answered, metrics, access log |
//!
//! See `docs/architecture.md` ("One request through the phases").

mod body;
mod checks;
mod end;
mod exchange;
mod head;
mod response;
mod upstream;

use crate::ids::new_request_id;
pub use end::CLIENT_CLOSED;
pub(crate) use upstream::response_head_bytes;

use crate::metrics::UpstreamError;
use crate::reload::Loaded;
use crate::state::Shared;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderName;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use portcullis_rules::deny::{render, Deny, DenyCode};
use portcullis_rules::identity::Identity;
use portcullis_rules::overrides;
use portcullis_rules::view::RequestView;
use portcullis_rules::webhook::replay::Claim;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// What was decided against the request, if anything: one value for the answer and the log.
    verdict: Verdict,
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
    /// (see [`body::read_body`]).
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
    /// The PII scan of a streamed response (see [`crate::pii_response`]).
    pii: Option<crate::pii_response::Streaming>,
    /// A scanned streamed response's head, and the scanned bytes of the chunk that stopped it:
    /// what [`ProxyHttp::fail_to_proxy`] writes before cutting the response when Pingora had
    /// not written them yet (see [`Portcullis::cut`]).
    pii_head: Option<Box<ResponseHeader>>,
    pii_tail: Option<Bytes>,
    /// The request goes out through the gateway's own exchange, not Pingora's (a body read
    /// whole that Pingora could not forward: see [`body::read_body`]).
    fetch_self: bool,
}

/// What the gateway decided against a request: one value, written by every phase that refuses or
/// fails it, read by the answer and the access log.
#[derive(Debug, Default)]
enum Verdict {
    /// Nothing so far.
    #[default]
    Pass,
    /// Refused from its head (`early_request_filter`); `request_filter` answers it (maintenance
    /// first).
    Pending(Deny),
    /// Failing with an error that `fail_to_proxy` answers (or the client went away): why, for
    /// the log. No deny code yet.
    Failing(Cow<'static, str>),
    /// Answered (or being answered) with a deny: its code, and why (for the log).
    Denied(DenyCode, Cow<'static, str>),
}

impl Verdict {
    /// Answered with `code`, for `reason`.
    fn deny(&mut self, code: DenyCode, reason: impl Into<Cow<'static, str>>) {
        *self = Verdict::Denied(code, reason.into());
    }

    /// Failing, for `reason` (a deny code already decided stays).
    fn fail(&mut self, reason: impl Into<Cow<'static, str>>) {
        match self {
            Verdict::Denied(_, r) => *r = reason.into(),
            other => *other = Verdict::Failing(reason.into()),
        }
    }

    /// Failing, for `reason` unless a reason is known already.
    fn fail_unless_known(&mut self, reason: impl FnOnce() -> Cow<'static, str>) {
        if matches!(self, Verdict::Pass | Verdict::Pending(_)) {
            *self = Verdict::Failing(reason());
        }
    }

    /// Answered with `code` by `fail_to_proxy`: the reason known so far, else `reason`.
    fn answered(&mut self, code: DenyCode, reason: impl FnOnce() -> Cow<'static, str>) {
        let why = match std::mem::take(self) {
            Verdict::Failing(r) | Verdict::Denied(_, r) => r,
            Verdict::Pass | Verdict::Pending(_) => reason(),
        };
        *self = Verdict::Denied(code, why);
    }

    /// The deny decided from the head, taken to be answered.
    fn take_pending(&mut self) -> Option<Deny> {
        match std::mem::take(self) {
            Verdict::Pending(d) => Some(d),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The deny code answered, if any.
    fn code(&self) -> Option<DenyCode> {
        match self {
            Verdict::Denied(c, _) => Some(*c),
            _ => None,
        }
    }

    /// Why, for the log (`""` when nothing was decided).
    fn reason(&self) -> &str {
        match self {
            Verdict::Failing(r) | Verdict::Denied(_, r) => r,
            Verdict::Pass | Verdict::Pending(_) => "",
        }
    }
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
async fn refuse(
    session: &mut Session,
    ctx: &mut Ctx,
    deny: &Deny,
    reason: impl Into<Cow<'static, str>>,
) -> Result<bool> {
    send_deny(session, &ctx.request_id, deny, true).await?;
    ctx.verdict.deny(deny.code, reason);
    Ok(true)
}

impl Portcullis {
    /// The borrowed view every check reads.
    fn view<'a>(
        &self,
        req: &'a RequestHeader,
        ctx: &'a Ctx,
        route: Option<&'a crate::config::Route>,
    ) -> RequestView<'a> {
        view_of(req, ctx.host.as_deref(), ctx.client_ip, route)
    }
}

/// The borrowed view every check reads, from the parts of [`Ctx`] it needs (so that the rest of
/// `Ctx` stays writable while the view lives).
fn view_of<'a>(
    req: &'a RequestHeader,
    host: Option<&'a str>,
    client_ip: Option<IpAddr>,
    route: Option<&'a crate::config::Route>,
) -> RequestView<'a> {
    RequestView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        host,
        route: route.map(|r| r.id.as_str()),
        channel: route.and_then(|r| r.channel.as_deref()),
        client_ip,
        headers: &req.headers,
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
            verdict: Verdict::Pass,
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
        if let Some(deny) = self.inspect_head(session, ctx) {
            ctx.verdict = Verdict::Pending(deny);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.request_phase(session, ctx).await
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.body_chunk(session, body, end_of_stream, ctx)
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
        self.upstream_response_head(session, resp, ctx)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
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
        self.failed(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.finish(session, e, ctx);
    }
}
