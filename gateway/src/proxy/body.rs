//! The request body: its deadline, the route's cap on a streamed body, and the whole body read
//! before forwarding when a check needs it (`request_body_filter` and [`read_body`]).

use super::{Ctx, Portcullis};
use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::Session;
use portcullis_rules::deny::DenyCode;
use std::time::{Duration, Instant};

/// Size of Pingora's retry buffer (`BODY_BUF_LIMIT` in pingora-core), see [`read_body`].
const RETRY_BUFFER_BYTES: u64 = 64 * 1024;

impl Portcullis {
    /// `request_body_filter`: the body's deadline, the route's cap on a streamed body, and a body
    /// read whole before forwarding handed to Pingora.
    pub(super) fn body_chunk(
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
                ctx.verdict.deny(DenyCode::PayloadTooLarge, "streamed_body_over_cap");
                *body = None;
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the route's cap");
            }
        }
        Ok(())
    }

    /// Time left for the request body: the route's `body_timeout` and its pool's
    /// `total_timeout`, whichever ends first, both counted from the request's arrival.
    pub(super) fn body_time_left(&self, ctx: &Ctx) -> Duration {
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
    pub(super) fn arm_body_deadline(&self, session: &mut Session, ctx: &Ctx) {
        let req = session.req_header();
        if portcullis_rules::pii::upgrade_requested(req.method.as_str(), &req.headers).is_some() {
            return;
        }
        let left = self.body_time_left(ctx).max(Duration::from_millis(1));
        session.set_read_timeout(Some(left));
    }
}

/// The request body's deadline passed: a downstream read timeout, which `fail_to_proxy`
/// answers `408 request_timeout` (or cuts, once a response started). The upstream connection, if
/// one was opened, is closed, never pooled: it holds a partial request.
pub(super) fn body_deadline_error(ctx: &mut Ctx) -> Box<Error> {
    ctx.verdict.fail("body_deadline");
    let mut e = Error::explain(ErrorType::ReadTimedout, "request body not complete within its deadline");
    e.esource = ErrorSource::Downstream;
    e
}

/// What [`read_body`] got.
pub(super) enum BodyRead {
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
pub(super) async fn read_body(
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
