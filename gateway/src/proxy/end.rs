//! The end of a request: an error answered (`fail_to_proxy`: its deny code, or nothing for a
//! client that went away), then metrics, counters and the access log line (`logging`).

use super::response::PII_WITHHELD;
use super::{new_request_id, send_deny, Ctx, Portcullis};
use crate::metrics::UpstreamError;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::{FailToProxy, Session};
use portcullis_rules::deny::{Deny, DenyCode};

/// The status recorded (metrics, access log, 5xx rate) for a request that got no response
/// because the client went away.
pub use crate::metrics::CLIENT_CLOSED;

impl Portcullis {
    /// `fail_to_proxy`: the error's deny code, and its answer when the client still reads one.
    pub(super) async fn failed(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
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
                ctx.verdict.fail("request_body_incomplete");
                Some(DenyCode::BadRequest)
            }
            (ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed, ErrorSource::Downstream) => {
                ctx.verdict.fail_unless_known(|| "client_closed".into());
                None
            }
            // The body's deadline (our check, or Pingora's read timeout armed with what was left).
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => {
                ctx.verdict.fail_unless_known(|| "body_deadline".into());
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
        ctx.verdict.answered(code, || e.etype().as_str().to_string().into());
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

    /// `logging`: metrics, the request counters, anomaly streaks, and the access log line.
    pub(super) fn finish(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // No response went out: the client went away (every other failure writes one). Counted as
        // 499, "client closed request" (nginx's), a 4xx: never a gateway error in the metrics, the
        // 5xx rate or the health score.
        // A lone interim head (`100 Continue`, then the client left) is no answer either.
        let status = crate::metrics::final_status(session.response_written().map(|r| r.status.as_u16()));
        let elapsed = ctx.started.elapsed();
        // A delivery the upstream did not take is not "seen": the sender's retry must pass.
        if let Some(claim) = ctx.webhook_claim.take() {
            if !(200..300).contains(&status) {
                self.shared.webhooks.replay.release(&claim);
                if let (true, Some(f)) = (ctx.webhook_fleet, &self.shared.fleet) {
                    crate::webhook_replay::fleet_release(f, claim);
                }
            }
        }
        // A 5xx is a failure unless it is the gateway's own deliberate answer (response_blocked,
        // maintenance, channel_disabled, store_unavailable): those never count in the 5xx rate,
        // the health score or the 5xx alarms. An upstream's own 5xx is a failure.
        let failure = (500..600).contains(&status) && ctx.verdict.code().is_none_or(DenyCode::is_failure);
        self.shared.metrics.observe_request(ctx.route, status, failure, elapsed);
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.shared.requests.record(crate::events::Finished { status, failure, elapsed_ms });
        if !ctx.rules.snapshot.anomaly.is_empty() {
            let route = self.route(ctx).map(|r| r.id.as_str());
            let rules = ctx.rules.snapshot.anomaly.rules();
            self.shared.anomaly.status(rules, route, ctx.identity.as_ref(), ctx.client_ip, status);
        }
        if !self.shared.config.access_log || !crate::access_log::enabled() {
            return;
        }
        let req = session.req_header();
        let identity = ctx.identity.as_ref();
        crate::access_log::write(&crate::access_log::Line {
            success: status != 0 && status < 400,
            duration_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            request_id: &ctx.request_id,
            method: req.method.as_str(),
            path: req.uri.path(),
            status,
            body_bytes: ctx.body_bytes,
            source_ip: ctx.client_ip,
            route: self.route(ctx).map_or("", |r| r.id.as_str()),
            upstream: ctx.backend,
            deny_code: ctx.verdict.code().map_or("", |d| d.as_str()),
            deny_reason: ctx.verdict.reason(),
            webhook_secret_id: ctx.webhook_secret.as_deref().unwrap_or(""),
            tenant_id: identity.and_then(|i| i.tenant.as_deref()).unwrap_or(""),
            user_id: identity.map_or("", |i| i.subject.as_str()),
            session_id: identity.and_then(|i| i.session.as_deref()).unwrap_or(""),
            error: e.map(|e| e.etype().as_str()).unwrap_or(""),
        });
    }
}
