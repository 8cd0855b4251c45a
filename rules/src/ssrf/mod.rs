//! The SSRF guard: the `ssrf:` section of a rule file.
//!
//! ```yaml
//! ssrf:
//!   - id: webhook-target
//!     mode: enforce                    # or monitor
//!     severity: warning                # default: ssrf_block's (warning)
//!     routes: [api]                    # optional
//!     params: [url, callback]          # query parameters
//!     fields: [url, /hooks/0/target]   # form fields / top-level JSON members; JSON pointers
//!     headers: [x-callback-url]
//!     allow_hosts: [hooks.example.com, "*.partner.example"]   # optional: only these pass
//!     schemes: [http, https]           # default
//!     body_max_bytes: 65536            # default and maximum
//!   - id: scan-everything
//!     routes: [proxy-api]
//!     scan: all_urls                   # every query, form and JSON value that looks like a URL
//! ```
//!
//! A rule reads every value of the named places and refuses one that names a target an attacker
//! could use to reach inside: an address in a private, loopback, link-local (cloud metadata),
//! unique-local, CGNAT, reserved, documentation, benchmarking, multicast or broadcast range, a
//! known metadata or loopback host name, a scheme other than `schemes`, a host outside
//! `allow_hosts` when the rule has one, or a value that cannot be read as a URL or host at all.
//! Each refusal is one [`EventType::SsrfBlock`] finding; the first `enforce` one stops the request
//! with 403 `ssrf_blocked`.
//!
//! # How a value is read ([`parse_target`])
//!
//! The way a fetching client reads it (the WHATWG URL standard, through the `url` crate, which
//! browsers' and most HTTP libraries' parsers follow):
//!
//! * leading and trailing spaces and C0 controls are dropped, tabs and newlines removed;
//! * `scheme:rest` is a URL, unless `rest` is a port (`localhost:8080` is a host and port); for
//!   `http`, `https`, `ws`, `wss`, `ftp` any number of `/` and `\` follow the scheme
//!   (`http:\\host`, `http:/host`, `http:host` all name `host`);
//! * `//host` and `\\host` are scheme-relative (read as `http:`); a value starting with one `/`,
//!   `?` or `#` is a relative reference: no host, nothing to check;
//! * anything else is a bare host, as an application that prepends `http://` reads it:
//!   `169.254.169.254/latest`, `127.1:80`;
//! * the host is the part after the **last** `@` (`http://good@169.254.169.254`), is
//!   percent-decoded (`%31%32%37.0.0.1`), mapped and converted to ASCII by IDNA/UTS 46 (fullwidth
//!   `１２７．０．０．１`, circled digits, upper case), and read as an IPv4 address whenever its
//!   last label is a number: decimal, octal, hex and shortened forms (`2130706433`, `017700000001`,
//!   `0x7f.1`, `127.1`, `0`), with a trailing dot or not;
//! * IPv6 literals are read in brackets, with a zone id (`[fe80::1%25eth0]`) dropped, and bare
//!   (`::1`); IPv4-mapped, -compatible, -translated, NAT64 and 6to4 addresses are judged by the
//!   IPv4 address they carry;
//! * a value with `%` left after that is decoded again, up to twice, as an application that
//!   decodes once more would: a refusal of a decoded form refuses the value.
//!
//! Host names are **not resolved** (no DNS on the request path): a name passes unless it is a
//! loopback name (`localhost`, `*.localhost`) or a known metadata name
//! (`metadata.google.internal`, `metadata.goog`, ...), or the rule has `allow_hosts` (then only
//! those pass). A name that resolves to an internal address (`127.0.0.1.nip.io`, or DNS
//! rebinding: public at check time, internal at fetch time) is not caught without
//! `allow_hosts`: see docs/rules.md.
//!
//! The finding's detail never holds the value (a URL may carry credentials) nor the host: only
//! `reason`, `source` (`query`, `form`, `json`, `header`; `body` when the body is over the
//! rule's cap), `param` (the name or JSON pointer, at most 64 printable ASCII bytes), `scheme`
//! and `host_class` (`ipv4`, `ipv6`, `name`), each `null` when unknown.
#![deny(clippy::indexing_slicing)]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;
use std::sync::Arc;

use http::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::deny::{Deny, DenyCode};
use crate::query;
use crate::schema::{compile_section, present, route_matches, Checker, Common, Ctx, RawRule};
use crate::tenant::{self, BodyInput, Pointer};
use crate::verdict::{EventType, Finding, Mode, Outcome, Severity};
use crate::view::RequestView;

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "ssrf";

/// The event every SSRF finding becomes.
pub const EVENT: EventType = EventType::SsrfBlock;

/// Default and largest `body_max_bytes`.
pub const MAX_BODY_MAX_BYTES: usize = 64 * 1024;

/// Longest value inspected; a longer one is refused (`too_long`).
pub const MAX_VALUE_LEN: usize = 8192;

/// Longest `param` in a finding's detail.
const MAX_PARAM_LEN: usize = 64;

/// Schemes allowed when a rule has no `schemes`.
const DEFAULT_SCHEMES: [&str; 2] = ["http", "https"];

/// Schemes whose URL has an authority however many slashes follow (WHATWG "special" schemes
/// other than `file`).
const SPECIAL: [&str; 5] = ["http", "https", "ws", "wss", "ftp"];

/// Schemes a `scan: all_urls` rule treats as a URL even without `//`.
const FETCHABLE: [&str; 16] = [
    "http", "https", "ws", "wss", "ftp", "file", "gopher", "dict", "ldap", "ldaps", "tftp", "sftp", "smb", "netdoc",
    "jar", "telnet",
];

/// One raw rule of the `ssrf:` list. Serialized (JSON) for the rule hash: absent optional keys
/// are skipped so that adding keys to the schema keeps existing hashes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an ssrf rule: a mapping with `id` and where to look (`params`, `fields`, `headers` or `scan`)"
)]
pub(crate) struct RawSsrfRule {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    params: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    scan: Option<Scan>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    allow_hosts: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    schemes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    body_max_bytes: Option<u64>,
}

/// `scan:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scan {
    /// Every query, form and JSON value that looks like a URL or an address.
    AllUrls,
}

/// Why a value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A cloud metadata address or name (`169.254.169.254`, `fd00:ec2::254`,
    /// `100.100.100.200`, `metadata.google.internal`, ...).
    Metadata,
    /// `127.0.0.0/8`, `::1`, `localhost`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `100.64.0.0/10` (carrier-grade NAT).
    Cgnat,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// Any other special-purpose range, and every IPv6 address outside `2000::/3`.
    Reserved,
    /// A scheme the rule does not allow (`file:`, `gopher:`, ...).
    Scheme,
    /// The rule has `allow_hosts` and the host is not one of them.
    HostNotAllowed,
    /// The value cannot be read as a URL or host (a client might still read it some way).
    Unparsable,
    /// Longer than [`MAX_VALUE_LEN`].
    TooLong,
    /// The body is over the rule's `body_max_bytes`.
    BodyTooLarge,
}

impl Reason {
    /// The `reason` of the finding's detail.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::UniqueLocal => "unique_local",
            Self::Cgnat => "cgnat",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
            Self::Scheme => "scheme_not_allowed",
            Self::HostNotAllowed => "host_not_allowed",
            Self::Unparsable => "unparsable",
            Self::TooLong => "too_long",
            Self::BodyTooLarge => "body_too_large",
        }
    }

    /// Every reason.
    pub const ALL: [Reason; 17] = [
        Self::Metadata,
        Self::Loopback,
        Self::Private,
        Self::LinkLocal,
        Self::UniqueLocal,
        Self::Cgnat,
        Self::Unspecified,
        Self::Multicast,
        Self::Broadcast,
        Self::Documentation,
        Self::Benchmarking,
        Self::Reserved,
        Self::Scheme,
        Self::HostNotAllowed,
        Self::Unparsable,
        Self::TooLong,
        Self::BodyTooLarge,
    ];

    /// Parses [`Reason::as_str`].
    pub fn parse(s: &str) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A target's host, as a client would connect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 address, however it was spelled.
    V4(Ipv4Addr),
    /// An IPv6 address (zone id dropped).
    V6(Ipv6Addr),
    /// A domain name: ASCII (IDNA), lowercase, without a trailing dot.
    Name(String),
}

impl Host {
    /// `ipv4`, `ipv6` or `name`.
    pub const fn class(&self) -> &'static str {
        match self {
            Host::V4(_) => "ipv4",
            Host::V6(_) => "ipv6",
            Host::Name(_) => "name",
        }
    }
}

/// A value read as a fetch target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme, lowercase (`http` for a bare host or a scheme-relative URL).
    pub scheme: String,
    /// The host; `None` for a URL without one (`file:///etc/passwd`, `mailto:x`).
    pub host: Option<Host>,
}

/// Reads a value the way a fetching client would (see the module documentation). `Ok(None)`: a
/// relative reference or an empty value, no host to check. `Err(())`: not readable as a URL or
/// host.
#[allow(clippy::result_unit_err)]
pub fn parse_target(value: &str) -> Result<Option<Target>, ()> {
    let v = value.trim_matches(|c: char| c <= ' ');
    let v: Cow<'_, str> = if v.contains(['\t', '\n', '\r']) {
        Cow::Owned(v.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect())
    } else {
        Cow::Borrowed(v)
    };
    if v.is_empty() || v.starts_with(['?', '#']) {
        return Ok(None);
    }
    if let Some(ip) = bare_ipv6(&v) {
        return Ok(Some(Target { scheme: "http".into(), host: Some(Host::V6(ip)) }));
    }
    let slashes = v.chars().take_while(|c| matches!(c, '/' | '\\')).count();
    let text: Cow<'_, str> = match split_scheme(&v) {
        Some((_, rest)) if !is_port(rest) => Cow::Borrowed(&*v),
        _ if slashes >= 2 => Cow::Owned(format!("http:{v}")),
        _ if slashes == 1 => return Ok(None),
        _ => Cow::Owned(format!("http://{v}")),
    };
    let url = parse_url(&text).ok_or(())?;
    let scheme = url.scheme().to_ascii_lowercase();
    let host = match url.host() {
        None => None,
        Some(url::Host::Ipv4(a)) => Some(Host::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(Host::V6(a)),
        // Special schemes: already IDNA-mapped and IPv4-checked. Others (an opaque host): read it
        // as an `http` host would be, since that is what a client library may well do.
        Some(url::Host::Domain(d)) if SPECIAL.contains(&scheme.as_str()) => Some(Host::Name(name_of(d)?)),
        Some(url::Host::Domain(d)) => host_of(d).ok(),
    };
    Ok(Some(Target { scheme, host }))
}

/// `Url::parse`, retried without an IPv6 zone id (`[fe80::1%25eth0]`, `[fe80::1%eth0]`), which
/// the standard refuses but curl and the socket APIs accept.
fn parse_url(text: &str) -> Option<url::Url> {
    if let Ok(u) = url::Url::parse(text) {
        return Some(u);
    }
    let open = text.find('[')?;
    let close = open + text.get(open..)?.find(']')?;
    let pct = open + text.get(open..close)?.find('%')?;
    let stripped = format!("{}{}", text.get(..pct)?, text.get(close..)?);
    url::Url::parse(&stripped).ok()
}

/// A bare IPv6 address (`::1`, `fe80::1%eth0`): no brackets, so no port.
fn bare_ipv6(v: &str) -> Option<Ipv6Addr> {
    if !v.contains(':') || !v.bytes().all(|b| b.is_ascii_hexdigit() || b":.%".contains(&b) || b.is_ascii_alphanumeric())
    {
        return None;
    }
    let addr = v.split('%').next().unwrap_or(v);
    addr.parse().ok()
}

/// `scheme` and what follows the `:`, when `v` starts with a URL scheme.
fn split_scheme(v: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = v.split_once(':')?;
    let mut b = scheme.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    ok.then_some((scheme, rest))
}

/// Whether what follows `host:` is a port (digits, then the end or a path, query or fragment).
fn is_port(rest: &str) -> bool {
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    rest.get(..end).is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// A domain from the `url` crate: lowercase ASCII already; one trailing dot dropped; an empty
/// label elsewhere is not a name a resolver accepts.
fn name_of(d: &str) -> Result<String, ()> {
    let n = d.strip_suffix('.').unwrap_or(d);
    if n.is_empty() || n.split('.').any(str::is_empty) {
        return Err(());
    }
    Ok(n.to_ascii_lowercase())
}

/// A host string read as a special-scheme host is: percent-decoded, IDNA, IPv4 forms.
fn host_of(h: &str) -> Result<Host, ()> {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let addr = inner.split('%').next().unwrap_or(inner);
        return addr.parse().map(Host::V6).map_err(|_| ());
    }
    match url::Host::parse(h).map_err(|_| ())? {
        url::Host::Ipv4(a) => Ok(Host::V4(a)),
        url::Host::Ipv6(a) => Ok(Host::V6(a)),
        url::Host::Domain(d) => name_of(&d).map(Host::Name),
    }
}

/// Why an address is not a target, if it is not.
pub fn ip_reason(ip: IpAddr) -> Option<Reason> {
    match ip {
        IpAddr::V4(a) => v4_reason(a),
        IpAddr::V6(a) => v6_reason(a),
    }
}

fn v4_reason(a: Ipv4Addr) -> Option<Reason> {
    let n = u32::from(a);
    let in_net = |net: [u8; 4], len: u32| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        n & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    const METADATA: [[u8; 4]; 3] = [[169, 254, 169, 254], [169, 254, 170, 2], [100, 100, 100, 200]];
    if METADATA.iter().any(|m| a.octets() == *m) {
        return Some(Reason::Metadata);
    }
    let table: [([u8; 4], u32, Reason); 17] = [
        ([0, 0, 0, 0], 8, Reason::Unspecified),
        ([10, 0, 0, 0], 8, Reason::Private),
        ([100, 64, 0, 0], 10, Reason::Cgnat),
        ([127, 0, 0, 0], 8, Reason::Loopback),
        ([169, 254, 0, 0], 16, Reason::LinkLocal),
        ([172, 16, 0, 0], 12, Reason::Private),
        ([192, 0, 0, 0], 24, Reason::Reserved),
        ([192, 0, 2, 0], 24, Reason::Documentation),
        ([192, 31, 196, 0], 24, Reason::Reserved),
        ([192, 52, 193, 0], 24, Reason::Reserved),
        ([192, 88, 99, 0], 24, Reason::Reserved),
        ([192, 168, 0, 0], 16, Reason::Private),
        ([198, 18, 0, 0], 15, Reason::Benchmarking),
        ([198, 51, 100, 0], 24, Reason::Documentation),
        ([203, 0, 113, 0], 24, Reason::Documentation),
        ([224, 0, 0, 0], 4, Reason::Multicast),
        ([255, 255, 255, 255], 32, Reason::Broadcast),
    ];
    if let Some((_, _, r)) = table.iter().find(|(net, len, _)| in_net(*net, *len)) {
        return Some(*r);
    }
    in_net([240, 0, 0, 0], 4).then_some(Reason::Reserved)
}

fn v6_reason(a: Ipv6Addr) -> Option<Reason> {
    let s = a.segments();
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    let embedded = Ipv4Addr::from((u32::from(s6) << 16) | u32::from(s7));
    if a == Ipv6Addr::UNSPECIFIED {
        return Some(Reason::Unspecified);
    }
    if a == Ipv6Addr::LOCALHOST {
        return Some(Reason::Loopback);
    }
    if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Reason::Metadata);
    }
    // ::ffff:a.b.c.d (mapped): the IPv4 address itself.
    if [s0, s1, s2, s3, s4] == [0; 5] && s5 == 0xffff {
        return v4_reason(embedded);
    }
    // ::a.b.c.d (compatible, deprecated) and ::ffff:0:a.b.c.d (translated): never a real host.
    if [s0, s1, s2, s3, s4, s5] == [0; 6] || ([s0, s1, s2, s3] == [0; 4] && s4 == 0xffff && s5 == 0) {
        return Some(v4_reason(embedded).unwrap_or(Reason::Reserved));
    }
    // NAT64 (64:ff9b::/96): the IPv4 address it reaches.
    if [s0, s1, s2, s3, s4, s5] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(embedded);
    }
    // 6to4 (2002::/16): the IPv4 address in bits 16..48.
    if s0 == 0x2002 {
        return v4_reason(Ipv4Addr::from((u32::from(s1) << 16) | u32::from(s2)));
    }
    let in_net = |net: u128, len: u32| {
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
        u128::from(a) & mask == net & mask
    };
    let table: [(u128, u32, Reason); 10] = [
        (0x0064_ff9b_0001 << 80, 48, Reason::Reserved),
        (0x0100 << 112, 64, Reason::Reserved),
        (0x2001_0db8 << 96, 32, Reason::Documentation),
        (0x2001 << 112, 23, Reason::Reserved),
        (0x3fff << 112, 20, Reason::Documentation),
        (0x5f00 << 112, 16, Reason::Reserved),
        (0xfc00 << 112, 7, Reason::UniqueLocal),
        (0xfe80 << 112, 10, Reason::LinkLocal),
        (0xfec0 << 112, 10, Reason::Reserved),
        (0xff00 << 112, 8, Reason::Multicast),
    ];
    if let Some((_, _, r)) = table.iter().find(|(net, len, _)| in_net(*net, *len)) {
        return Some(*r);
    }
    // Only global unicast (2000::/3) is routable on the internet.
    (!in_net(0x2000 << 112, 3)).then_some(Reason::Reserved)
}

/// Host names that are internal without any DNS lookup.
const METADATA_NAMES: [&str; 6] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Why a host name is not a target, if it is not (no DNS: names only).
pub fn name_reason(name: &str) -> Option<Reason> {
    if name == "localhost" || name.ends_with(".localhost") {
        return Some(Reason::Loopback);
    }
    if METADATA_NAMES.contains(&name) || name.ends_with(".metadata.google.internal") {
        return Some(Reason::Metadata);
    }
    None
}

/// Whether a `scan: all_urls` rule inspects the value: it has a scheme followed by `/` or `\`, or
/// a fetchable scheme (`http:`, `file:`, `gopher:`, ...); starts with two slashes; or is an
/// address or a loopback or metadata name (with a port or path or not): `127.1`, `[::1]`,
/// `169.254.169.254/latest`, `localhost:8080`. A bare number (`2130706433`, `0`) is not: too many
/// ids look like it; name the parameter in `params` to have it read as a host.
pub fn looks_like_url(value: &str) -> bool {
    let v = value.trim_matches(|c: char| c <= ' ');
    if v.len() < 2 {
        return false;
    }
    if let Some((scheme, rest)) = split_scheme(v) {
        if rest.starts_with(['/', '\\']) || FETCHABLE.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return true;
        }
    }
    if v.starts_with("//") || v.starts_with("\\\\") || v.starts_with("/\\") || v.starts_with("\\/") {
        return true;
    }
    if v.starts_with('[') {
        return v.contains(']');
    }
    if bare_ipv6(v).is_some() {
        return true;
    }
    let end = v.find(['/', '\\', '?', '#']).unwrap_or(v.len());
    let hostport = v.get(..end).unwrap_or(v);
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => hostport,
    };
    if host.is_empty() || host.bytes().any(|c| c == b'@' || c == b' ') {
        return false;
    }
    let numeric = host.contains('.') && host.bytes().all(|c| c.is_ascii_hexdigit() || matches!(c, b'.' | b'x' | b'X'));
    if numeric || !host.is_ascii() {
        if let Ok(url::Host::Ipv4(_)) = url::Host::parse(host) {
            return true;
        }
    }
    let lower = host.to_ascii_lowercase();
    name_reason(lower.strip_suffix('.').unwrap_or(&lower)).is_some()
}

/// One `allow_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    Exact(Host),
    /// `*.example.com`: any name ending in `.example.com` (not `example.com` itself).
    Suffix(String),
}

/// What a rule lets through: its schemes and its host allowlist.
#[derive(Debug, Clone)]
pub struct Policy {
    schemes: Vec<Box<str>>,
    allow: Option<Vec<Allow>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { schemes: DEFAULT_SCHEMES.iter().map(|s| Box::from(*s)).collect(), allow: None }
    }
}

/// The verdict on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Why it is refused; `None`: it passes.
    pub refused: Option<Reason>,
    /// The scheme it was read with, when it could be read.
    pub scheme: Option<String>,
    /// `ipv4`, `ipv6` or `name`, when it has a host.
    pub host_class: Option<&'static str>,
}

impl Verdict {
    fn pass() -> Verdict {
        Verdict { refused: None, scheme: None, host_class: None }
    }
}

impl Policy {
    /// A policy from `allow_hosts` and `schemes` entries (as written in a rule), or the first
    /// error as `(key path relative to the rule, message)`.
    pub fn new(allow_hosts: Option<&[String]>, schemes: Option<&[String]>) -> Result<Policy, (String, String)> {
        let mut p = Policy::default();
        if let Some(list) = schemes {
            if list.is_empty() {
                return Err(("schemes".into(), "`schemes` is empty: remove the key or list at least one".into()));
            }
            p.schemes.clear();
            for (j, s) in list.iter().enumerate() {
                let ok = split_scheme(&format!("{s}:")).is_some_and(|(sc, _)| sc.len() == s.len());
                if !ok {
                    return Err((format!("schemes[{j}]"), format!("`{s}` is not a URL scheme (like `https`)")));
                }
                p.schemes.push(Box::from(s.to_ascii_lowercase()));
            }
        }
        if let Some(list) = allow_hosts {
            if list.is_empty() {
                return Err((
                    "allow_hosts".into(),
                    "`allow_hosts` is empty: it would refuse every target; remove the key or list hosts".into(),
                ));
            }
            let mut allow = Vec::with_capacity(list.len());
            for (j, s) in list.iter().enumerate() {
                allow.push(allow_entry(s).map_err(|m| (format!("allow_hosts[{j}]"), m))?);
            }
            p.allow = Some(allow);
        }
        Ok(p)
    }

    /// The verdict on one value, read as [`parse_target`] reads it, and once or twice more
    /// percent-decoded when it still holds `%` (an application may decode it again): a refusal
    /// of a decoded form (other than `unparsable`) refuses the value, and names the value's
    /// reason when the value itself was only `unparsable` (`http%3A%2F%2F127.0.0.1`).
    pub fn verdict(&self, value: &str) -> Verdict {
        let first = self.judge(value);
        if first.refused.is_some_and(|r| r != Reason::Unparsable) {
            return first;
        }
        let mut cur = Cow::Borrowed(value);
        for _ in 0..2 {
            if !cur.contains('%') {
                break;
            }
            let Some(decoded) = query::decode_lenient(cur.as_bytes()) else { break };
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            let v = self.judge(&decoded);
            if v.refused.is_some_and(|r| r != Reason::Unparsable) {
                return v;
            }
            cur = Cow::Owned(decoded);
        }
        first
    }

    fn judge(&self, value: &str) -> Verdict {
        let refuse = |r, scheme: Option<String>, host: Option<&Host>| Verdict {
            refused: Some(r),
            scheme,
            host_class: host.map(Host::class),
        };
        if value.len() > MAX_VALUE_LEN {
            return refuse(Reason::TooLong, None, None);
        }
        let target = match parse_target(value) {
            Err(()) => return refuse(Reason::Unparsable, None, None),
            Ok(None) => return Verdict::pass(),
            Ok(Some(t)) => t,
        };
        let scheme = Some(bounded_scheme(&target.scheme));
        if !self.schemes.iter().any(|s| **s == *target.scheme) {
            return refuse(Reason::Scheme, scheme, target.host.as_ref());
        }
        let Some(host) = &target.host else {
            return refuse(Reason::Unparsable, scheme, None);
        };
        let why = match host {
            Host::V4(a) => v4_reason(*a),
            Host::V6(a) => v6_reason(*a),
            Host::Name(n) => name_reason(n),
        };
        if let Some(r) = why {
            return refuse(r, scheme, Some(host));
        }
        if let Some(allow) = &self.allow {
            if !allow.iter().any(|a| allows(a, host)) {
                return refuse(Reason::HostNotAllowed, scheme, Some(host));
            }
        }
        Verdict { refused: None, scheme, host_class: Some(host.class()) }
    }
}

fn bounded_scheme(s: &str) -> String {
    s.chars().take(16).collect()
}

fn allows(a: &Allow, host: &Host) -> bool {
    match (a, host) {
        (Allow::Exact(Host::V6(x)), Host::V6(y)) => x.to_canonical() == y.to_canonical(),
        (Allow::Exact(Host::V4(x)), Host::V6(y)) => y.to_ipv4_mapped() == Some(*x),
        (Allow::Exact(x), y) => x == y,
        (Allow::Suffix(sfx), Host::Name(n)) => {
            n.len() > sfx.len() + 1
                && n.ends_with(sfx.as_str())
                && n.as_bytes().get(n.len() - sfx.len() - 1) == Some(&b'.')
        }
        (Allow::Suffix(_), _) => false,
    }
}

/// One `allow_hosts` entry: a host name (written in Unicode or ASCII), `*.` and a name, or a
/// public address. Internal addresses and names cannot be allowed.
fn allow_entry(s: &str) -> Result<Allow, String> {
    let bad =
        || format!("`{s}` is not a host name or address (like `api.example.com`, `*.example.com` or `192.0.2.1`)");
    if s.is_empty() || s.contains(['/', '\\', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    let (wild, rest) = match s.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let host = match bare_ipv6(rest) {
        Some(a) => Host::V6(a),
        None => host_of(rest).map_err(|()| bad())?,
    };
    let why = match &host {
        Host::V4(a) => v4_reason(*a),
        Host::V6(a) => v6_reason(*a),
        Host::Name(n) => name_reason(n),
    };
    if let Some(r) = why {
        return Err(format!(
            "`{s}` is an internal target ({}): an allowlist cannot open it; an internal service is not an SSRF \
             target to allow",
            r.as_str()
        ));
    }
    match (wild, host) {
        (false, h) => Ok(Allow::Exact(h)),
        (true, Host::Name(n)) => Ok(Allow::Suffix(n)),
        (true, _) => Err(format!("`{s}`: `*.` only goes with a host name")),
    }
}

/// The compiled SSRF rules: immutable, `Send + Sync`, evaluated in file order.
#[derive(Debug, Default)]
pub struct Ssrf {
    rules: Vec<Rule>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    id: Arc<str>,
    mode: Mode,
    severity: Severity,
    routes: Option<Box<[Box<str>]>>,
    /// Query parameter names as written, and folded (see [`query::fold_name`]).
    params: Vec<(Box<str>, Vec<u8>)>,
    fields: Vec<Field>,
    headers: Vec<HeaderName>,
    scan: bool,
    policy: Policy,
    body_max_bytes: usize,
}

/// A `fields` entry.
#[derive(Debug)]
struct Field {
    /// As written, for the finding.
    name: Box<str>,
    /// A form field name (folded), for a plain name; `None` for a JSON pointer.
    form: Option<Vec<u8>>,
    /// The JSON member it reads (a plain name is the top-level member).
    pointer: Pointer,
}

/// Where a refused value was found.
struct Hit {
    reason: Reason,
    source: &'static str,
    param: String,
    scheme: Option<String>,
    host_class: Option<&'static str>,
}

/// The request body read at most once per request, shared by the rules.
enum Body {
    NotYet,
    Absent,
    TooLarge,
    Json(Value),
    /// Looks like JSON (`{` or `[`) but is not (or has a duplicate member).
    BadJson,
    Form(String),
}

impl Ssrf {
    pub(crate) fn new(rules: Vec<Rule>) -> Self {
        Ssrf { rules }
    }

    /// True when there is no SSRF rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The largest `body_max_bytes` among the rules with `fields` or `scan` that apply to this
    /// request's route: the gateway buffers that much of the body. `None`: no rule reads it.
    pub fn body_needed(&self, view: &RequestView<'_>) -> Option<usize> {
        self.rules
            .iter()
            .filter(|r| (r.scan || !r.fields.is_empty()) && r.applies(view))
            .map(|r| r.body_max_bytes)
            .max()
    }

    /// Evaluates every applicable rule in order; each adds at most one `ssrf_block` finding (its
    /// first refused value) to `out`. Returns `Break` as soon as [`Outcome::add`] does.
    pub fn check(&self, view: &RequestView<'_>, body: BodyInput<'_>, out: &mut Outcome) -> ControlFlow<()> {
        let mut parsed = Body::NotYet;
        for rule in &self.rules {
            if !rule.applies(view) {
                continue;
            }
            if let Some(hit) = rule.first_hit(view, body, &mut parsed) {
                out.add(rule.finding(hit))?;
            }
        }
        ControlFlow::Continue(())
    }
}

impl Rule {
    fn applies(&self, view: &RequestView<'_>) -> bool {
        route_matches(self.routes.as_deref(), view.route)
    }

    fn hit(&self, source: &'static str, param: &str, value: &str) -> Option<Hit> {
        let v = self.policy.verdict(value);
        v.refused.map(|reason| Hit {
            reason,
            source,
            param: printable(param),
            scheme: v.scheme,
            host_class: v.host_class,
        })
    }

    fn first_hit(&self, view: &RequestView<'_>, body: BodyInput<'_>, parsed: &mut Body) -> Option<Hit> {
        // Query parameters.
        if let Some(q) = view.query {
            for (name, folded) in &self.params {
                match query::lookup(q, folded) {
                    Err(query::Unreadable) => return Some(unreadable("query", name)),
                    Ok(values) => {
                        for v in values {
                            if let Some(h) = self.hit("query", name, &String::from_utf8_lossy(&v)) {
                                return Some(h);
                            }
                        }
                    }
                }
            }
            if self.scan {
                if let Some(h) = self.scan_form("query", q) {
                    return Some(h);
                }
            }
        }
        // Headers.
        for name in &self.headers {
            for v in view.headers.get_all(name) {
                if let Some(h) = self.hit("header", name.as_str(), &String::from_utf8_lossy(v.as_bytes())) {
                    return Some(h);
                }
            }
        }
        // The body.
        if self.fields.is_empty() && !self.scan {
            return None;
        }
        if matches!(parsed, Body::NotYet) {
            *parsed = read_body(body);
        }
        match parsed {
            Body::NotYet | Body::Absent => None,
            Body::TooLarge => Some(unreadable_as(Reason::BodyTooLarge, "body", "")),
            Body::BadJson => Some(unreadable("json", "")),
            Body::Form(text) => {
                for f in &self.fields {
                    let Some(folded) = &f.form else { continue };
                    match query::lookup(text, folded) {
                        Err(query::Unreadable) => return Some(unreadable("form", &f.name)),
                        Ok(values) => {
                            for v in values {
                                if let Some(h) = self.hit("form", &f.name, &String::from_utf8_lossy(&v)) {
                                    return Some(h);
                                }
                            }
                        }
                    }
                }
                if self.scan {
                    return self.scan_form("form", text);
                }
                None
            }
            Body::Json(root) => {
                for f in &self.fields {
                    match tenant::resolve(root, &f.pointer) {
                        Err(()) => return Some(unreadable("json", &f.name)),
                        Ok(None) => {}
                        Ok(Some(v)) => {
                            let mut found = None;
                            walk(v, &mut String::new(), 0, &mut |_, s| {
                                found = self.hit("json", &f.name, s);
                                found.is_some()
                            });
                            if found.is_some() {
                                return found;
                            }
                        }
                    }
                }
                if self.scan {
                    let mut found = None;
                    walk(root, &mut String::new(), 0, &mut |path, s| {
                        if looks_like_url(s) {
                            found = self.hit("json", path, s);
                        }
                        found.is_some()
                    });
                    return found;
                }
                None
            }
        }
    }

    /// Every value of an `application/x-www-form-urlencoded` text (a query or a form body) that
    /// looks like a URL. Names and values are decoded leniently (a broken escape stays as it is).
    fn scan_form(&self, source: &'static str, text: &str) -> Option<Hit> {
        for piece in text.split(['&', ';']) {
            let (name, value) = piece.split_once('=').unwrap_or(("", piece));
            let value = query::decode_lenient(value.as_bytes()).map_or(Cow::Borrowed(value.as_bytes()), Cow::Owned);
            let value = String::from_utf8_lossy(&value);
            if looks_like_url(&value) {
                let name = query::decode_lenient(name.as_bytes()).map_or(Cow::Borrowed(name.as_bytes()), Cow::Owned);
                if let Some(h) = self.hit(source, &String::from_utf8_lossy(&name), &value) {
                    return Some(h);
                }
            }
        }
        None
    }

    fn finding(&self, hit: Hit) -> Finding {
        let mut detail = Map::new();
        detail.insert("reason".into(), hit.reason.as_str().into());
        detail.insert("source".into(), hit.source.into());
        detail.insert("param".into(), hit.param.into());
        detail.insert("scheme".into(), hit.scheme.map_or(Value::Null, Value::from));
        detail.insert("host_class".into(), hit.host_class.map_or(Value::Null, Value::from));
        Finding {
            rule_id: self.id.clone(),
            mode: self.mode,
            event: EVENT,
            severity: self.severity,
            deny: Deny::new(DenyCode::SsrfBlocked, hit.reason.as_str()),
            detail,
        }
    }
}

fn unreadable(source: &'static str, param: &str) -> Hit {
    unreadable_as(Reason::Unparsable, source, param)
}

fn unreadable_as(reason: Reason, source: &'static str, param: &str) -> Hit {
    Hit { reason, source, param: printable(param), scheme: None, host_class: None }
}

/// At most [`MAX_PARAM_LEN`] bytes of printable ASCII (anything else is `?`): the name is the
/// client's, and goes into logs.
fn printable(s: &str) -> String {
    s.chars().take(MAX_PARAM_LEN).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

fn read_body(body: BodyInput<'_>) -> Body {
    let bytes = match body {
        BodyInput::NotBuffered | BodyInput::Bytes([]) => return Body::Absent,
        BodyInput::TooLarge => return Body::TooLarge,
        BodyInput::Bytes(b) => b,
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        return tenant::parse_strict(bytes).map_or(Body::BadJson, Body::Json);
    }
    Body::Form(String::from_utf8_lossy(bytes).into_owned())
}

/// Calls `f(pointer, string)` for every string in `v` (object members and array items, at any
/// depth), until it returns true. `path` is the RFC 6901 pointer of `v`.
fn walk(v: &Value, path: &mut String, depth: usize, f: &mut dyn FnMut(&str, &str) -> bool) -> bool {
    match v {
        Value::String(s) => f(path, s),
        Value::Array(items) if depth < 128 => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push('/');
            path.push_str(&i.to_string());
            let stop = walk(item, path, depth + 1, f);
            path.truncate(len);
            stop
        }),
        Value::Object(map) if depth < 128 => map.iter().any(|(k, item)| {
            let len = path.len();
            path.push('/');
            path.push_str(&k.replace('~', "~0").replace('/', "~1"));
            let stop = walk(item, path, depth + 1, f);
            path.truncate(len);
            stop
        }),
        _ => false,
    }
}

impl RawRule for RawSsrfRule {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: self.severity }
    }
}

/// Compiles the `ssrf:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawSsrfRule], out: &mut Vec<Rule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| {
        Some(rule(c, meta.id, meta.mode, meta.severity.unwrap_or(EVENT.default_severity()), r))
    });
}

/// Validates and compiles one rule, recording every error (the rule is only used when none was).
fn rule(c: &mut Checker<'_, '_>, id: Arc<str>, mode: Mode, severity: Severity, r: &RawSsrfRule) -> Rule {
    let routes = c.routes("routes", r.routes.as_ref());
    if r.params.is_none() && r.fields.is_none() && r.headers.is_none() && r.scan.is_none() {
        c.error("", "a rule needs somewhere to look: `params`, `fields`, `headers` or `scan: all_urls`");
    }
    let nonempty = |c: &mut Checker<'_, '_>, key: &str, list: &Option<Vec<String>>| {
        if list.as_ref().is_some_and(Vec::is_empty) {
            c.error(key, format!("`{key}` is empty: remove the key or list at least one name"));
        }
    };
    nonempty(c, "params", &r.params);
    nonempty(c, "fields", &r.fields);
    nonempty(c, "headers", &r.headers);

    let mut params = Vec::new();
    for (j, p) in r.params.iter().flatten().enumerate() {
        if let Some(folded) = c.result(&format!("params[{j}]"), tenant::check_query_name(p)) {
            params.push((Box::from(p.as_str()), folded));
        }
    }
    let mut fields = Vec::new();
    for (j, f) in r.fields.iter().flatten().enumerate() {
        let key = format!("fields[{j}]");
        let field = if f.starts_with('/') {
            c.result(&key, tenant::parse_pointer(f)).map(|pointer| Field {
                name: Box::from(f.as_str()),
                form: None,
                pointer,
            })
        } else {
            let form = c.result(&key, tenant::check_query_name(f));
            let escaped = format!("/{}", f.replace('~', "~0").replace('/', "~1"));
            let pointer = c.result(&key, tenant::parse_pointer(&escaped));
            form.zip(pointer).map(|(form, pointer)| Field { name: Box::from(f.as_str()), form: Some(form), pointer })
        };
        fields.extend(field);
    }
    let mut headers = Vec::new();
    for (j, h) in r.headers.iter().flatten().enumerate() {
        if let Some(name) = c.result(&format!("headers[{j}]"), tenant::check_header_name(h)) {
            headers.push(name);
        }
    }
    let policy = match Policy::new(r.allow_hosts.as_deref(), r.schemes.as_deref()) {
        Ok(p) => p,
        Err((key, msg)) => {
            c.error(&key, msg);
            Policy::default()
        }
    };
    let reads_body = r.fields.is_some() || r.scan.is_some();
    let body_max_bytes = match r.body_max_bytes {
        None => MAX_BODY_MAX_BYTES,
        Some(_) if !reads_body => {
            c.error("body_max_bytes", "`body_max_bytes` only applies with `fields` or `scan`: remove it");
            MAX_BODY_MAX_BYTES
        }
        Some(n) => match usize::try_from(n) {
            Ok(n) if (1..=MAX_BODY_MAX_BYTES).contains(&n) => n,
            _ => {
                c.error(
                    "body_max_bytes",
                    format!("`body_max_bytes` must be between 1 and {MAX_BODY_MAX_BYTES}, got {n}"),
                );
                MAX_BODY_MAX_BYTES
            }
        },
    };
    Rule {
        id,
        mode,
        severity,
        routes,
        params,
        fields,
        headers,
        scan: r.scan == Some(Scan::AllUrls),
        policy,
        body_max_bytes,
    }
}

/// The payload corpus `rules/testdata/ssrf.txt`: every case with the verdict it must get (the
/// table test here and the e2e test, which sends each through the gateway, both read it).
pub const CORPUS: &str = include_str!("../../testdata/ssrf.txt");

/// The `allow_hosts` of the corpus's `@policy allowlist` cases.
pub const CORPUS_ALLOW_HOSTS: [&str; 3] = ["example.com", "*.partner.example", "bücher.example"];

/// One case of [`CORPUS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Judged with [`CORPUS_ALLOW_HOSTS`] (else with a rule's defaults).
    pub allowlist: bool,
    /// `pass` or a [`Reason::as_str`].
    pub expected: &'static str,
    /// The value, `{TAB}` and `{SP}` replaced.
    pub value: String,
}

/// The cases of [`CORPUS`], in order.
pub fn corpus() -> Vec<Case> {
    let mut allowlist = false;
    let mut out = Vec::new();
    for line in CORPUS.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(p) = line.strip_prefix("@policy ") {
            allowlist = p.trim() == "allowlist";
            continue;
        }
        if let Some((expected, value)) = line.split_once(' ') {
            out.push(Case { allowlist, expected, value: value.replace("{TAB}", "\t").replace("{SP}", " ") });
        }
    }
    out
}

#[cfg(test)]
mod tests;
