//! The response: the headers every proxied response gets, and the PII scan of a streamed
//! response on Pingora's path (`response_filter` / `response_body_filter`). The held path is
//! [`super::exchange`].

use super::{deny_response, Ctx, Portcullis};
use crate::reload::Loaded;
use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use portcullis_rules::pii::{PiiPolicy, Summary};

/// The error that ends a streamed response a PII rule cut short (see [`Portcullis::streamed_scan`]).
pub(super) const PII_WITHHELD: &str = "pii_withheld";

impl Portcullis {
    /// What every proxied response gets: `X-Request-Id`, and the rate-limit headers of a request
    /// that passed the limits.
    pub(super) fn decorate_response(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
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
    pub(super) fn pii_policy<'r>(&self, rules: &'r Loaded, ctx: &Ctx) -> Option<&'r PiiPolicy> {
        if rules.snapshot.pii.is_empty() || !self.shared.switches.flag(crate::switches::Flag::PiiScanning) {
            return None;
        }
        self.route_pii_policy(rules, ctx)
    }

    /// The PII policy of this request's route in its pinned rules, whatever the flag says now
    /// (a response whose scan started finishes it: the scanner holds bytes back).
    pub(super) fn route_pii_policy<'r>(&self, rules: &'r Loaded, ctx: &Ctx) -> Option<&'r PiiPolicy> {
        rules.snapshot.pii.for_route(self.route(ctx).map(|r| r.id.as_str()))
    }

    /// Response head of a streamed response on a scanned route (Pingora's path).
    pub(super) fn start_streamed_scan(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.rules.snapshot.pii.is_empty() {
            return Ok(());
        }
        let rules = ctx.rules.clone();
        let Some(policy) = self.pii_policy(&rules, ctx) else { return Ok(()) };
        ctx.pii = self.streamed_head(session, resp, ctx, policy)?;
        if matches!(ctx.pii, Some(crate::pii_response::Streaming::Scan { .. })) && policy.withholds_unscannable() {
            ctx.pii_head = Some(Box::new(resp.clone()));
        }
        Ok(())
    }

    /// Writes what a streamed response stopped by its scan still sends, without ending it: its
    /// head if Pingora had not written it, the scanned bytes of the chunk that stopped it. The
    /// connection is then closed: the client sees a body that ends early (no last chunk).
    pub(super) async fn cut(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
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

    /// Decides how a streamed response's body is scanned, and fixes the head for a body that will
    /// change (`None`: it passes unscanned). A body that cannot be scanned under a policy that
    /// redacts is withheld right here (the head is not sent yet): the head becomes the deny's.
    pub(super) fn streamed_head(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
        policy: &PiiPolicy,
    ) -> Result<Option<crate::pii_response::Streaming>> {
        let head_request = session.req_header().method == http::Method::HEAD;
        match crate::pii_response::plan(policy, head_request, resp) {
            crate::pii_response::Plan::Pass => {
                self.shared.pii.count(&policy.id, crate::pii_response::PASSED, 0);
                Ok(None)
            }
            crate::pii_response::Plan::Scan(encoding, events) => {
                let st = crate::pii_response::Streaming::new(policy, encoding, events);
                if policy.redacts() || st.sends_decoded() {
                    crate::pii_response::body_rewritten(resp, st.sends_decoded())?;
                    if resp.headers.get(http::header::TRANSFER_ENCODING).is_none() {
                        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                    }
                }
                Ok(Some(st))
            }
            crate::pii_response::Plan::Unscannable(encoding) => {
                let summary = policy.not_scanned("unsupported_encoding", Some(&encoding));
                self.report_pii(session, ctx, policy, &summary, 0);
                if !policy.withholds_unscannable() {
                    return Ok(None);
                }
                let deny = summary.finding.deny;
                let (head, body) = deny_response(&ctx.request_id, &deny)?;
                *resp = head;
                ctx.verdict.deny(deny.code, format!("{}:{}", deny.reason, policy.id));
                Ok(Some(crate::pii_response::Streaming::Withheld(Some(body))))
            }
        }
    }

    /// One body chunk of a streamed response through its scan.
    pub(super) fn streamed_scan(
        &self,
        session: &Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.pii.is_none() {
            return Ok(());
        }
        let rules = ctx.rules.clone();
        let Some(policy) = self.route_pii_policy(&rules, ctx) else { return Ok(()) };
        let Some(st) = ctx.pii.as_mut() else { return Ok(()) };
        let step = st.body(policy, body, end);
        if matches!(step, crate::pii_response::Step::Abort(_)) {
            // Pingora drops the chunk of a failed filter: `fail_to_proxy` writes it (see `cut`).
            ctx.pii_tail = body.take();
        }
        self.pii_step(session, ctx, policy, step)
    }

    /// Acts on what a streamed chunk led to: count and report; `Err` ends the response.
    pub(super) fn pii_step(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        policy: &PiiPolicy,
        step: crate::pii_response::Step,
    ) -> Result<()> {
        match step {
            crate::pii_response::Step::Go => {}
            crate::pii_response::Step::End(scan) => match policy.summary(&scan) {
                Some(summary) => self.report_pii(session, ctx, policy, &summary, scan.scanned),
                None => self.shared.pii.count(&policy.id, crate::pii_response::CLEAN, scan.scanned),
            },
            crate::pii_response::Step::Stopped(summary) => self.report_pii(session, ctx, policy, &summary, 0),
            crate::pii_response::Step::Abort(summary) => {
                self.report_pii(session, ctx, policy, &summary, 0);
                ctx.pii = None;
                ctx.verdict.deny(summary.finding.deny.code, format!("{}:{}", summary.finding.deny.reason, policy.id));
                let mut e = Error::explain(ErrorType::Custom(PII_WITHHELD), "the rest of the response is withheld");
                e.esource = ErrorSource::Internal;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Counts a scanned response and emits its `pii_leak_block` event (action from the summary,
    /// never a value).
    pub(super) fn report_pii(
        &self,
        session: &Session,
        ctx: &Ctx,
        policy: &PiiPolicy,
        summary: &Summary,
        scanned: usize,
    ) {
        self.shared.pii.count(&policy.id, crate::pii_response::result_label(summary.action), scanned);
        let req = session.req_header();
        let view = self.view(req, ctx, self.route(ctx));
        let mut ev = self.event_for(&view, ctx, &summary.finding);
        ev.action = summary.action;
        self.shared.events.emit(ev);
    }
}
