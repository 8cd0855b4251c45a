//! The request head (`early_request_filter`): request id, client IP through the trusted proxies,
//! scheme, the h2 head checks, host, canonical path (what every rule matches and the upstream
//! gets), route, declared body size, method override. Decided once, before any check.

use super::{Ctx, Portcullis};
use crate::config::TrustInbound;
use crate::ids::new_request_id;
use http::{HeaderName, HeaderValue};
use pingora_core::Result;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use portcullis_rules::deny::{Deny, DenyCode};
use portcullis_rules::{canon, framing, overrides, request_id, routes};
use std::borrow::Cow;

/// Looked up on every request: parsed once here, not per lookup.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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
    /// Everything decided from the request head alone: request id, client IP, canonical path,
    /// route, declared body size. Returns the deny to send, if any.
    pub(super) fn inspect_head(&self, session: &mut Session, ctx: &mut Ctx) -> Option<Deny> {
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

#[cfg(test)]
mod tests;
