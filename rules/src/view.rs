//! The borrowed view of a request every request-phase check reads. Built once per phase by the
//! Pingora glue; checks never see Pingora's `Session`.

use std::net::IpAddr;

/// A request as the checks see it. `path` is the canonical path: the one every rule matches and
/// the one forwarded upstream.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Canonical path (see [`crate::canon`]).
    pub path: &'a str,
    /// Raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// Normalised host (lowercase, no port), if any.
    pub host: Option<&'a str>,
    /// Id of the matched route.
    pub route: Option<&'a str>,
    /// The route's channel.
    pub channel: Option<&'a str>,
    /// Client IP, resolved through the trusted proxies.
    pub client_ip: Option<IpAddr>,
    /// Request headers as received (minus nothing: stripping happens upstream-side).
    pub headers: &'a http::HeaderMap,
}
