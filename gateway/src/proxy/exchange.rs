//! The gateway's own exchange with the upstream. The held path: on a route whose PII policy
//! blocks, the gateway fetches the response itself and decides before a byte of it leaves. Also
//! the way out for a request body read whole that Pingora cannot forward (a chunked body over
//! its 64 KiB retry buffer, read for a webhook signature or a tenant check): its response then
//! streams as on Pingora's path, scanned as the route's policy says.
//!
//! Why not Pingora's path: Pingora writes the response head to the client as soon as it has it
//! (after `response_filter`), before the first body chunk reaches `response_body_filter`, so a
//! response found to leak PII in its body could no longer be withheld: the client would already
//! have its status and headers (pingora issues #343, #106). Here the request goes out through
//! the gateway's own pooled connector (same backends, health, retries and timeouts as Pingora's
//! path), the response head and body (up to the policy's `max_body_bytes`, decoded if the
//! upstream compressed it anyway) are held, scanned, and only then is anything written: the
//! response, the redacted response, or 502 `response_blocked`.
//!
//! The request body is read whole first (up to the route's `max_body_bytes`, any framing), so a
//! stale pooled connection or a refused connect can be retried with the same bytes.

use super::body::{read_body, BodyRead};
use super::{refuse, Ctx, Portcullis};
use crate::metrics::UpstreamError;
use crate::pii_response::{self as pii, Plan};
use bytes::Bytes;
use pingora_core::protocols::http::v1::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use portcullis_rules::deny::{Deny, DenyCode};
use portcullis_rules::pii::{PiiAction, PiiPolicy};
use std::time::{Duration, Instant};

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded as they are.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// How many 1xx interim responses are skipped before the final one.
const MAX_INTERIM: usize = 8;

/// Bytes of a compressed body held beyond the cap while its decoded form is still under it.
const RAW_SLACK: usize = 64 * 1024;

/// Why the exchange did not produce a response.
enum Failed {
    /// No connection to any backend.
    Connect,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream's answer was not a usable HTTP response.
    Protocol,
    /// The upstream's response head is over `limits.max_response_header_bytes`.
    HeadTooLarge,
}

/// How the response head frames the body the client gets.
enum Framing {
    /// No body (HEAD, 204, 304): `Content-Length` stays as the upstream sent it.
    Bodiless,
    /// The whole body is known: its length.
    Length(usize),
    /// The body streams: the upstream's `Content-Length` when its bytes go out unchanged, else
    /// chunked.
    Stream,
}

/// The response held so far.
struct Held {
    head: ResponseHeader,
    /// The upstream's body bytes as received (at most the cap plus one chunk, or all of it).
    raw: Vec<u8>,
    /// The decoded body, when it was compressed.
    decoded: Option<Vec<u8>>,
    decoder: Option<crate::decode::Decoder>,
    /// The whole body was read.
    complete: bool,
}

impl Held {
    /// The bytes to scan (decoded when it was compressed).
    fn plain(&self) -> &[u8] {
        self.decoded.as_deref().unwrap_or(&self.raw)
    }
}

impl Portcullis {
    /// Forwards the request through the gateway's own connector and answers it: see the module
    /// documentation. Always answers (`Ok(true)`), unless writing to the client fails.
    pub(super) async fn exchange(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        policy: Option<&PiiPolicy>,
    ) -> Result<bool> {
        let route_cap = self.route(ctx).map_or(0, |r| r.max_body_bytes);
        let body = match ctx.replay_body.clone() {
            Some(b) => b,
            None if ctx.body_read => Bytes::new(),
            None => match read_body(session, ctx, route_cap, false, Instant::now() + self.body_time_left(ctx)).await? {
                BodyRead::Complete(b) => b,
                _ => {
                    let deny = Deny::new(DenyCode::PayloadTooLarge, "streamed_body_over_cap");
                    return refuse(session, ctx, &deny, deny.reason.to_string()).await;
                }
            },
        };
        ctx.body_bytes = body.len() as u64;
        let up = self.held_request(session, ctx, &body)?;

        let total = self.route(ctx).and_then(|r| self.shared.config.pools.get(r.pool)).map(|p| p.total_timeout);
        let left = |ctx: &Ctx| total.map_or(Duration::from_secs(3600), |t| t.saturating_sub(ctx.started.elapsed()));
        let fetched = match pingora_timeout::timeout(left(ctx), self.fetch_head(ctx, &up, &body)).await {
            Ok(r) => r,
            Err(_) => Err(Failed::Timeout),
        };
        let (mut upstream, peer) = match fetched {
            Ok(x) => x,
            Err(f) => return self.exchange_failed(session, ctx, f).await,
        };
        let Some(head) = upstream.resp_header().cloned() else {
            return self.exchange_failed(session, ctx, Failed::Protocol).await;
        };
        if super::response_head_bytes(&head) > self.shared.config.max_response_header_bytes {
            return self.exchange_failed(session, ctx, Failed::HeadTooLarge).await;
        }
        let head_request = session.req_header().method == http::Method::HEAD;
        let bodiless = head_request || matches!(head.status.as_u16(), 204 | 304);

        // Not held: the response streams, through the policy's scan if any.
        let policy = match policy {
            None => return self.relay(session, ctx, upstream, &peer, head, Bytes::new(), bodiless, None).await,
            Some(p) if !p.needs_buffering() => {
                let mut head = head;
                if let Plan::Unscannable(encoding) = pii::plan(p, head_request, &head) {
                    if p.withholds_unscannable() {
                        let summary = p.not_scanned("unsupported_encoding", Some(&encoding));
                        return self.withhold(session, ctx, p, &summary, 0).await;
                    }
                }
                let scan = self.streamed_head(session, &mut head, ctx, p)?.map(|st| (p, st));
                return self.relay(session, ctx, upstream, &peer, head, Bytes::new(), bodiless, scan).await;
            }
            Some(p) => p,
        };

        let encoding = match pii::plan(policy, head_request, &head) {
            Plan::Pass => {
                self.shared.pii.count(&policy.id, pii::PASSED, 0);
                return self.relay(session, ctx, upstream, &peer, head, Bytes::new(), bodiless, None).await;
            }
            Plan::Unscannable(encoding) => {
                let summary = policy.not_scanned("unsupported_encoding", Some(&encoding));
                return self.withhold(session, ctx, policy, &summary, 0).await;
            }
            // An event stream never ends: it is not held whole but relayed event by event, each
            // scanned before it goes out; an event to withhold ends the stream before it.
            Plan::Scan(_, true) => {
                let mut head = head;
                let scan = self.streamed_head(session, &mut head, ctx, policy)?.map(|st| (policy, st));
                return self.relay(session, ctx, upstream, &peer, head, Bytes::new(), bodiless, scan).await;
            }
            Plan::Scan(e, false) => e,
        };

        // Hold the body up to the cap (+1 byte, to know it is over).
        let cap = policy.max_body_bytes;
        let decoder = crate::decode::Decoder::new(encoding);
        let mut held =
            Held { head, raw: Vec::new(), decoded: decoder.is_some().then(Vec::new), decoder, complete: false };
        let read = pingora_timeout::timeout(left(ctx), async {
            loop {
                if held.plain().len() > cap || held.raw.len() > cap + RAW_SLACK {
                    return Ok(());
                }
                match upstream.read_body_bytes().await.map_err(Err)? {
                    None => {
                        held.complete = true;
                        return Ok(());
                    }
                    Some(chunk) => {
                        held.raw.extend_from_slice(&chunk);
                        if let (Some(d), Some(out)) = (held.decoder.as_mut(), held.decoded.as_mut()) {
                            if let Err(e) = d.push(&chunk, out) {
                                return Err(Ok(e));
                            }
                        }
                    }
                }
            }
        })
        .await;
        let decode_error = match read {
            Err(_) => return self.exchange_failed(session, ctx, Failed::Timeout).await,
            // The upstream's read timeout while the body is held: 504, as on Pingora's path.
            Ok(Err(Err(e))) if matches!(e.etype(), ErrorType::ReadTimedout) => {
                return self.exchange_failed(session, ctx, Failed::Timeout).await
            }
            Ok(Err(Err(_))) => return self.exchange_failed(session, ctx, Failed::Protocol).await,
            Ok(Err(Ok(e))) => Some(e),
            Ok(Ok(())) => None,
        };
        let decode_error = decode_error.or_else(|| {
            let (d, out) = (held.decoder.take()?, held.decoded.as_mut()?);
            if held.complete {
                d.finish(out).err()
            } else {
                held.decoder = Some(d);
                None
            }
        });
        if let Some(e) = decode_error {
            let summary = policy.not_scanned(e.as_str(), None);
            return self.withhold(session, ctx, policy, &summary, 0).await;
        }
        // Reading stopped on the compressed bytes while the decoded ones are still under the cap
        // (a stream that yields next to nothing): what follows could not be scanned as "the rest
        // of an oversized body" either.
        if !held.complete && held.plain().len() <= cap {
            let summary = policy.not_scanned(crate::decode::DecodeError::Corrupt.as_str(), None);
            return self.withhold(session, ctx, policy, &summary, 0).await;
        }

        let scan = policy.scan(held.plain());
        let summary = policy.summary(&scan);
        if scan.action == Some(PiiAction::Block) {
            if let Some(s) = &summary {
                return self.withhold(session, ctx, policy, s, scan.scanned).await;
            }
        }
        match &summary {
            Some(s) => self.report_pii(session, ctx, policy, s, scan.scanned),
            None => self.shared.pii.count(&policy.id, pii::CLEAN, scan.scanned),
        }

        // Send it: redacted (decoded, if it was compressed) when a value is to be masked, else
        // the upstream's bytes as they came.
        let mut head = std::mem::replace(&mut held.head, ResponseHeader::build(200, None)?);
        let redacting = scan.matches.iter().any(|m| m.action == PiiAction::Redact);
        if !redacting {
            return self.relay(session, ctx, upstream, &peer, head, held.raw.into(), false, None).await;
        }
        let decoded = held.decoded.is_some();
        pii::body_rewritten(&mut head, decoded)?;
        let mut out = Vec::with_capacity(held.plain().len() + 64);
        policy.redact(held.plain(), &scan, &mut out);
        if held.complete && !policy.cuts_at_cap(&scan) {
            return self.relay(session, ctx, upstream, &peer, head, out.into(), false, None).await;
        }
        // Over the cap with `scan_prefix`: the scanned part redacted, the rest as it comes
        // (decoded, if the part before was).
        let rest = held.decoder.take();
        self.relay_rest(session, ctx, upstream, head, out, rest).await
    }

    /// The upstream request head: the client's, with hop-by-hop headers gone (no upgrade: a
    /// held response is an ordinary one), every header change of Pingora's path, and the body
    /// framed by its length.
    fn held_request(&self, session: &Session, ctx: &Ctx, body: &Bytes) -> Result<RequestHeader> {
        let mut up = session.req_header().clone();
        up.set_version(http::Version::HTTP_11);
        let nominated: Vec<String> = up
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for h in nominated.iter().map(String::as_str).chain(HOP_BY_HOP.iter().copied()) {
            up.remove_header(h);
        }
        up.remove_header(&http::header::EXPECT);
        self.prepare_upstream_request(&mut up, ctx)?;
        if !body.is_empty() || up.headers.contains_key(http::header::CONTENT_LENGTH) {
            up.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        Ok(up)
    }

    /// Connects (next backend on a refused connect; a fresh connection when a pooled one turns
    /// out stale), sends the request and reads the final response head.
    async fn fetch_head(
        &self,
        ctx: &mut Ctx,
        up: &RequestHeader,
        body: &Bytes,
    ) -> std::result::Result<(HttpSession, Box<HttpPeer>), Failed> {
        let mut stale_retried = false;
        loop {
            let peer = self.select_peer(ctx).map_err(|_| Failed::Connect)?;
            let (mut h, reused) = match self.shared.connector.get_http_session(&*peer).await {
                Ok(x) => x,
                Err(e) => {
                    let timed_out = matches!(e.etype(), ErrorType::ConnectTimedout);
                    if self.connect_failed(&peer, ctx) {
                        continue;
                    }
                    return Err(if timed_out { Failed::Timeout } else { Failed::Connect });
                }
            };
            h.read_timeout = peer.options.read_timeout;
            h.write_timeout = peer.options.write_timeout;
            match send(&mut h, up, body).await {
                Ok(()) => return Ok((h, peer)),
                // A pooled connection the upstream closed meanwhile: once more on a new one.
                // (Not after a timeout: the upstream may have the request, and the deadline is
                // spent.)
                Err(e)
                    if reused
                        && !stale_retried
                        && !matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout) =>
                {
                    stale_retried = true
                }
                Err(e) => {
                    return Err(match e.etype() {
                        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failed::Timeout,
                        _ => Failed::Protocol,
                    })
                }
            }
        }
    }

    /// No response to relay: 502 `upstream_unavailable` or 504 `upstream_timeout`, as on
    /// Pingora's path.
    async fn exchange_failed(&self, session: &mut Session, ctx: &mut Ctx, f: Failed) -> Result<bool> {
        let (kind, code, reason) = match f {
            Failed::Connect => (UpstreamError::Connect, DenyCode::UpstreamUnavailable, "connect"),
            Failed::Timeout => (UpstreamError::Timeout, DenyCode::UpstreamTimeout, "timeout"),
            Failed::Protocol => (UpstreamError::Protocol, DenyCode::UpstreamUnavailable, "protocol"),
            Failed::HeadTooLarge => {
                (UpstreamError::Protocol, DenyCode::UpstreamUnavailable, "response_headers_too_large")
            }
        };
        ctx.upstream_error = Some(kind);
        self.shared.metrics.observe_upstream_error(ctx.route, kind);
        let deny = Deny::new(code, reason);
        refuse(session, ctx, &deny, format!("upstream_{reason}")).await
    }

    /// 502 `response_blocked`: nothing of the upstream's response, reported.
    async fn withhold(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        policy: &PiiPolicy,
        summary: &portcullis_rules::pii::Summary,
        scanned: usize,
    ) -> Result<bool> {
        self.report_pii(session, ctx, policy, summary, scanned);
        let deny = summary.finding.deny.clone();
        refuse(session, ctx, &deny, format!("{}:{}", deny.reason, policy.id)).await
    }

    /// Writes the response: `head` (hop-by-hop headers gone, ours added), `first` (the held
    /// bytes), then the rest of the upstream's body as it comes, through `scan` when streamed
    /// under a policy; the upstream connection goes back to the pool when its body was read to
    /// the end.
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        mut upstream: HttpSession,
        peer: &HttpPeer,
        mut head: ResponseHeader,
        first: Bytes,
        no_body: bool,
        mut scan: Option<(&PiiPolicy, pii::Streaming)>,
    ) -> Result<bool> {
        let complete = upstream.is_body_done() && scan.is_none();
        let framing = match (no_body, complete) {
            (true, _) => Framing::Bodiless,
            (false, true) => Framing::Length(first.len()),
            (false, false) => Framing::Stream,
        };
        self.response_head(&mut head, ctx, framing)?;
        session.write_response_header(Box::new(head), no_body).await?;
        if no_body {
            self.release(upstream, peer).await;
            return Ok(true);
        }
        put(session, first, complete).await?;
        if !complete {
            loop {
                let chunk = upstream.read_body_bytes().await?;
                let end = chunk.is_none();
                self.check_total_deadline(ctx)?;
                let mut body = chunk;
                if let Some((policy, st)) = scan.as_mut() {
                    let step = st.body(policy, &mut body, end);
                    if let Err(e) = self.pii_step(session, ctx, policy, step) {
                        // What was scanned before the stop goes out; the body is not ended.
                        put(session, body.unwrap_or_default(), false).await?;
                        return Err(e);
                    }
                }
                put(session, body.unwrap_or_default(), end).await?;
                if end {
                    break;
                }
            }
        }
        self.release(upstream, peer).await;
        Ok(true)
    }

    /// Over the cap with `scan_prefix`, after a redaction: the redacted part, then the rest
    /// unscanned (through the decoder when the part before was decoded).
    async fn relay_rest(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        mut upstream: HttpSession,
        mut head: ResponseHeader,
        first: Vec<u8>,
        mut decoder: Option<crate::decode::Decoder>,
    ) -> Result<bool> {
        self.response_head(&mut head, ctx, Framing::Stream)?;
        session.write_response_header(Box::new(head), false).await?;
        put(session, first.into(), false).await?;
        let undecodable = |e: crate::decode::DecodeError| Error::explain(ErrorType::InternalError, e.as_str());
        while let Some(chunk) = upstream.read_body_bytes().await? {
            self.check_total_deadline(ctx)?;
            let chunk = match decoder.as_mut() {
                None => chunk,
                Some(d) => {
                    let mut out = Vec::new();
                    d.push(&chunk, &mut out).map_err(undecodable)?;
                    out.into()
                }
            };
            put(session, chunk, false).await?;
        }
        let mut last = Vec::new();
        if let Some(d) = decoder {
            d.finish(&mut last).map_err(undecodable)?;
        }
        put(session, last.into(), true).await?;
        Ok(true)
    }

    /// The response head as the client gets it: hop-by-hop headers gone, framed, with our
    /// headers.
    fn response_head(&self, head: &mut ResponseHeader, ctx: &mut Ctx, framing: Framing) -> Result<()> {
        for h in HOP_BY_HOP {
            head.remove_header(*h);
        }
        match framing {
            Framing::Bodiless => {}
            Framing::Length(n) => {
                head.insert_header(http::header::CONTENT_LENGTH, n.to_string())?;
            }
            // Unchanged bytes: the upstream's length still holds.
            Framing::Stream if head.headers.contains_key(http::header::CONTENT_LENGTH) => {}
            Framing::Stream => {
                head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
        }
        self.decorate_response(head, ctx)
    }

    async fn release(&self, mut upstream: HttpSession, peer: &HttpPeer) {
        if upstream.is_body_done() {
            upstream.respect_keepalive();
            self.shared.connector.release_http_session(upstream, peer, peer.options.idle_timeout).await;
        }
    }
}

/// Writes body bytes to the client; an empty write only when it ends the body (an empty chunk
/// would end a chunked body early).
async fn put(session: &mut Session, bytes: Bytes, end: bool) -> Result<()> {
    if bytes.is_empty() && !end {
        return Ok(());
    }
    session.write_response_body((!bytes.is_empty()).then_some(bytes), end).await
}

/// Sends the request and reads the final (non-1xx) response head.
async fn send(h: &mut HttpSession, up: &RequestHeader, body: &Bytes) -> Result<()> {
    h.write_request_header(Box::new(up.clone())).await?;
    if !body.is_empty() {
        h.write_body(body).await?;
    }
    h.finish_body().await?;
    for _ in 0..MAX_INTERIM {
        h.read_response().await?;
        let interim = h.resp_header().is_some_and(|r| r.status.is_informational());
        if !interim {
            return Ok(());
        }
        if h.resp_header().is_some_and(|r| r.status == http::StatusCode::SWITCHING_PROTOCOLS) {
            break;
        }
    }
    Error::e_explain(ErrorType::InvalidHTTPHeader, "no final response from the upstream")
}
