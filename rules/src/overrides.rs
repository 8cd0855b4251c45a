//! What an application may act on instead of what the rules saw: request headers that override
//! the method, the URL or the host, and header names spelled with `_` for `-`.
//!
//! * **Forwarding and URL/host overrides** ([`FORWARDING`], [`URL_OVERRIDE`]): the gateway sets
//!   its own forwarding headers; a client's `X-Original-URL`, `X-Rewrite-URL`,
//!   `X-Forwarded-Uri`, … would make the application act on a path or host no rule saw. Always
//!   stripped; no route may allow them.
//! * **Method overrides** ([`METHOD_OVERRIDE`]): `X-HTTP-Method-Override: DELETE` on a POST makes
//!   many frameworks act on DELETE while every rule saw POST. Stripped unless a route allows one;
//!   on such a route the gateway *applies* it ([`method_override`]): the request's method becomes
//!   the header's before any rule runs, so the rules and the upstream see the same method. A
//!   `_method` query parameter (Laravel, Rack and Express middlewares) is refused
//!   ([`query_overrides_method`]).
//! * **Alternate spellings**: CGI, WSGI and PHP stacks turn `X-Tenant-Id` and `X_Tenant_Id`
//!   (Apache's CGI variables also `X.Tenant.Id`) into the same variable (`HTTP_X_TENANT_ID`). A
//!   header whose name holds anything but letters, digits and `-` is stripped unless a route
//!   allows it, and even then never when it is a spelling ([`same_name`]) of a header the
//!   gateway strips.

use crate::query;

/// Headers a client must never be able to set for the upstream: the gateway sets its own (or
/// none), and applications trust them for the client's address, scheme, host and prefix.
pub const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-forwarded",
    "forwarded-for",
    "x-original-forwarded-for",
    "cf-connecting-ip",
    "fastly-client-ip",
];

/// Headers some server, framework or proxy reads as the request's "real" URL, path or host:
/// always stripped.
pub const URL_OVERRIDE: &[&str] = &[
    "x-original-url",
    "x-original-uri",
    "x-original-path",
    "x-rewrite-url",
    "x-rewrite-uri",
    "x-override-url",
    "x-forwarded-uri",
    "x-forwarded-url",
    "x-forwarded-path",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-request-uri",
    "request-uri",
    "x-original-host",
    "x-host",
    "x-http-host-override",
];

/// Headers frameworks read as the request's "real" method: stripped unless a route allows them
/// (and then applied, see [`method_override`]).
pub const METHOD_OVERRIDE: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// The methods a method-override header may name.
const OVERRIDABLE: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// True when two header names are the same to a CGI/WSGI/PHP stack: ASCII case ignored, and
/// `_` (or any other character that is not a letter, a digit or `-`: Apache's CGI variables turn
/// every one into `_`) equal to `-`. No allocation.
pub fn same_name(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { b'-' };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// The first character of a header name that is not a letter, a digit or `-` (`_`, `.`, `~`, …),
/// if any: a name holding one is an alternate spelling some stacks merge with another header
/// (`X_Tenant_Id` and `X.Tenant.Id` are both `HTTP_X_TENANT_ID` to CGI, WSGI or PHP).
pub fn odd_character(name: &str) -> Option<char> {
    name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
}

/// True when a header name is an alternate spelling (see [`odd_character`]).
pub fn is_alternate_spelling(name: &str) -> bool {
    // Asked about every header of every request: a table lookup per byte (the predicate per
    // byte cost three times as much: benches/README.md, issue 18).
    !name.bytes().all(|b| ORDINARY[usize::from(b)])
}

/// `ORDINARY[b]`: `b` is a letter, a digit or `-` (a byte of an ordinary header-name spelling).
const ORDINARY: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric() || b == b'-' as usize;
        b += 1;
    }
    table
};

/// Why a rule may not read a header whose name is an alternate spelling, if so: such a name
/// never reaches the upstream (unless a route allows it), and the spelling CGI, WSGI and PHP
/// applications read as the same variable is the hyphenated one, which the rule would not see.
/// (`None` for a name that is not a header name at all: the caller says so.)
pub fn rule_header_refusal(name: &str) -> Option<String> {
    let c = odd_character(name)?;
    http::HeaderName::from_bytes(name.as_bytes()).ok()?;
    let hyphenated: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    Some(format!(
        "`{name}` holds `{c}`: applications read it as `{hyphenated}`, which this rule would not see; write `{}`",
        hyphenated.to_ascii_lowercase()
    ))
}

/// True when the name is one of [`METHOD_OVERRIDE`] (any case).
pub fn is_method_override(name: &str) -> bool {
    METHOD_OVERRIDE.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// True when the name is always stripped: one of [`FORWARDING`] or [`URL_OVERRIDE`], in any
/// spelling.
pub fn is_always_stripped(name: &str) -> bool {
    FORWARDING.iter().chain(URL_OVERRIDE).any(|h| same_name(h, name))
}

/// A set of header names that answers [`NameSet::contains`] with a comparison or two: the names
/// are kept by length, and a name's length picks the few it can equal. The gateway asks it about
/// every header of every request (the strip list holds some forty names, and a plain list cost
/// forty comparisons per header: benches/README.md, issue 18).
#[derive(Debug, Clone, Default)]
pub struct NameSet {
    /// Every name, in the order given (duplicates kept once).
    all: Vec<http::HeaderName>,
    /// `by_len[n]`: the names of `n` bytes.
    by_len: Vec<Vec<http::HeaderName>>,
}

impl NameSet {
    /// True when `name` is one of the set's names (exactly: header names are lowercase).
    pub fn contains(&self, name: &http::HeaderName) -> bool {
        self.by_len.get(name.as_str().len()).is_some_and(|same_len| same_len.contains(name))
    }

    /// Every name, in the order given.
    pub fn iter(&self) -> std::slice::Iter<'_, http::HeaderName> {
        self.all.iter()
    }
}

impl FromIterator<http::HeaderName> for NameSet {
    fn from_iter<I: IntoIterator<Item = http::HeaderName>>(names: I) -> Self {
        let mut set = NameSet::default();
        for name in names {
            if set.contains(&name) {
                continue;
            }
            let n = name.as_str().len();
            if set.by_len.len() <= n {
                set.by_len.resize_with(n + 1, Vec::new);
            }
            if let Some(same_len) = set.by_len.get_mut(n) {
                same_len.push(name.clone());
            }
            set.all.push(name);
        }
        set
    }
}

/// The method a request's allowed method-override header values name: `Ok(None)` when there is
/// none, the method (uppercase) when every value names the same one of GET, HEAD, POST, PUT,
/// PATCH, DELETE, OPTIONS (ASCII case ignored, surrounding whitespace trimmed), else
/// `Err(reason)`: two different methods are ambiguous, anything else is not a method to act on.
pub fn method_override<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<&'static str>, &'static str> {
    let mut found: Option<&'static str> = None;
    for v in values {
        let v = v.trim_ascii();
        let m = OVERRIDABLE.iter().find(|m| m.as_bytes().eq_ignore_ascii_case(v)).ok_or("bad_method_override")?;
        match found {
            Some(f) if f != *m => return Err("ambiguous_method_override"),
            _ => found = Some(m),
        }
    }
    Ok(found)
}

/// True when the query has a `_method` parameter as some application stack reads it (see
/// [`query::fold_name`]), or one that cannot be read. Cheap on queries that cannot hold one: only
/// a name holding `%` or `method` (any case) can fold to `_method` (a request target is ASCII),
/// and only then is the query decoded.
pub fn query_overrides_method(q: &str) -> bool {
    const WANT: &[u8] = b"_method";
    let suspect = q.split(['&', ';']).any(|piece| {
        let name = piece.split_once('=').map_or(piece, |(n, _)| n);
        name.contains('%') || name.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"method"))
    });
    suspect && query::lookup(q, WANT).map_or(true, |v| !v.is_empty())
}

#[cfg(test)]
mod tests;
