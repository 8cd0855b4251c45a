//! Every response Portcullis produces itself: one typed reason, one renderer.
//!
//! A deny is a value, not an error. Checks return a [`Deny`]; the gateway hands it to
//! [`render`] and writes what comes back. Nothing else in the code base builds an error body.

use std::borrow::Cow;

/// The stable, machine-readable code of a deny. Scripts match on [`DenyCode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyCode {
    /// Ambiguous or malformed request (framing, path encoding, header limits).
    BadRequest,
    /// Request body over the route's cap.
    PayloadTooLarge,
    /// No route matches the request's host and path.
    NotFound,
    /// Slow or incomplete request headers.
    RequestTimeout,
    /// Maintenance mode is on.
    Maintenance,
    /// The route's channel is switched off.
    ChannelDisabled,
    /// No or invalid credentials.
    Unauthenticated,
    /// A revoked or expired session.
    SessionExpired,
    /// The caller's role is too weak (control endpoint).
    Forbidden,
    /// The identity's tenant is not the resource's tenant.
    TenantMismatch,
    /// The client IP is blocked.
    IpBlocked,
    /// The identity's tenant, or the tenant the request targets, is suspended by an operator.
    TenantSuspended,
    /// An SSRF target was found in the request.
    SsrfBlocked,
    /// Webhook signature missing, invalid, stale or replayed.
    InvalidSignature,
    /// Rate limit hit.
    RateLimited,
    /// Quota exhausted while enforcement is on.
    QuotaExceeded,
    /// Upstream response withheld for PII.
    ResponseBlocked,
    /// Upstream unreachable.
    UpstreamUnavailable,
    /// Upstream timed out.
    UpstreamTimeout,
    /// Method not allowed on this control path.
    MethodNotAllowed,
    /// The control endpoint knows the path, but the feature is not built yet.
    NotImplemented,
    /// The request conflicts with the current state (e.g. a safe test while safe-test mode is
    /// off).
    Conflict,
    /// Rule files failed validation (control endpoint reload); the errors are in the body.
    InvalidRules,
    /// `If-Match` names a state version that is no longer current (control endpoint).
    PreconditionFailed,
    /// The fleet store (Redis) is unreachable and the control change would open something
    /// (restore a channel, maintenance off, lift a block, a flag): refused until it is back.
    StoreUnavailable,
    /// A bug or an unexpected failure inside the gateway; fail closed.
    Internal,
}

impl DenyCode {
    /// The stable code string of the contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::NotFound => "not_found",
            Self::RequestTimeout => "request_timeout",
            Self::Maintenance => "maintenance",
            Self::ChannelDisabled => "channel_disabled",
            Self::Unauthenticated => "unauthenticated",
            Self::SessionExpired => "session_expired",
            Self::Forbidden => "forbidden",
            Self::TenantMismatch => "tenant_mismatch",
            Self::IpBlocked => "ip_blocked",
            Self::TenantSuspended => "tenant_suspended",
            Self::SsrfBlocked => "ssrf_blocked",
            Self::InvalidSignature => "invalid_signature",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::ResponseBlocked => "response_blocked",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotImplemented => "not_implemented",
            Self::Conflict => "conflict",
            Self::InvalidRules => "invalid_rules",
            Self::PreconditionFailed => "precondition_failed",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal_error",
        }
    }

    /// The HTTP status this code is answered with.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated | Self::SessionExpired | Self::InvalidSignature => 401,
            Self::QuotaExceeded => 402,
            Self::Forbidden | Self::TenantMismatch | Self::IpBlocked | Self::TenantSuspended | Self::SsrfBlocked => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::Conflict => 409,
            Self::PreconditionFailed => 412,
            Self::InvalidRules => 422,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::NotImplemented => 501,
            Self::ResponseBlocked | Self::UpstreamUnavailable => 502,
            Self::Maintenance | Self::ChannelDisabled | Self::StoreUnavailable => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    /// Whether a response with this code is a failure to serve the request (the upstream could
    /// not be reached or answered too late, or the gateway failed) rather than the gateway's own
    /// deliberate answer. Deliberate answers — `response_blocked` (502), `maintenance`,
    /// `channel_disabled`, `store_unavailable` (503), every 4xx — are decisions an operator or a
    /// rule made: they never count in the 5xx failure rate, the health score or the 5xx alarms.
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Internal | Self::UpstreamUnavailable | Self::UpstreamTimeout)
    }

    /// The default human message.
    pub const fn message(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::PayloadTooLarge => "Payload too large",
            Self::NotFound => "Not found",
            Self::RequestTimeout => "Request timeout",
            Self::Maintenance => "Scheduled maintenance",
            Self::ChannelDisabled => "Channel temporarily disabled",
            Self::Unauthenticated => "Authentication required",
            Self::SessionExpired => "Session expired",
            Self::Forbidden => "Forbidden",
            Self::TenantMismatch => "Forbidden",
            Self::IpBlocked => "Forbidden",
            Self::TenantSuspended => "Forbidden",
            Self::SsrfBlocked => "Forbidden",
            Self::InvalidSignature => "Invalid signature",
            Self::RateLimited => "Too many requests",
            Self::QuotaExceeded => "Quota exceeded",
            Self::ResponseBlocked => "Response blocked",
            Self::UpstreamUnavailable => "Upstream unavailable",
            Self::UpstreamTimeout => "Upstream timed out",
            Self::MethodNotAllowed => "Method not allowed",
            Self::NotImplemented => "Not implemented",
            Self::Conflict => "Conflict with the current state",
            Self::InvalidRules => "Rule files failed validation",
            Self::StoreUnavailable => "The fleet store is unavailable",
            Self::PreconditionFailed => "State changed since you read it",
            Self::Internal => "Internal error",
        }
    }
}

/// A decision to answer the request ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// The stable code.
    pub code: DenyCode,
    /// Why, for logs and events (never sent to the client): e.g. `cl_and_te`, `encoded_slash`.
    pub reason: Cow<'static, str>,
    /// Seconds, sent as `Retry-After` and `retryAfter`.
    pub retry_after: Option<u64>,
    /// Extra response headers (e.g. `Allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
    /// Messages for the caller, sent as `"errors": [...]` (control endpoint: validation errors,
    /// bad query parameters). Never set on proxy denies: they must not explain themselves.
    pub details: Vec<String>,
}

impl Deny {
    /// A deny with a code and an internal reason.
    pub fn new(code: DenyCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self { code, reason: reason.into(), retry_after: None, headers: Vec::new(), details: Vec::new() }
    }

    /// Adds messages for the caller (`"errors"` in the body).
    #[must_use]
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    /// Adds `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// What to write back: status, headers (besides `X-Request-Id`, which the gateway adds to every
/// response), and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// HTTP status.
    pub status: u16,
    /// Response headers, including `Content-Type` and `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The one renderer: `{"error","code","request_id"[,"retryAfter"][,"errors"]}` per the contract.
pub fn render(deny: &Deny, request_id: &str) -> Rendered {
    let mut body = serde_json::json!({
        "error": deny.code.message(),
        "code": deny.code.as_str(),
        "request_id": request_id,
    });
    let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(4 + deny.headers.len());
    if let Some(secs) = deny.retry_after {
        body["retryAfter"] = serde_json::Value::from(secs);
        headers.push(("retry-after", secs.to_string()));
    }
    if !deny.details.is_empty() {
        body["errors"] = serde_json::Value::from(deny.details.clone());
    }
    let body = body.to_string().into_bytes();
    headers.push(("content-type", "application/json".to_string()));
    headers.push(("content-length", body.len().to_string()));
    headers.push(("cache-control", "no-store".to_string()));
    headers.extend(deny.headers.iter().cloned());
    Rendered { status: deny.code.status(), headers, body }
}

#[cfg(test)]
mod tests;
