//! `gateway.yaml`: the raw model (every struct `deny_unknown_fields`), validation that collects
//! every error with file, line and key path, and the compiled form the proxy runs on.

use portcullis_rules::client_ip::TrustedProxies;
use portcullis_rules::framing::HeaderLimits;
use portcullis_rules::routes::{Entry, HostMatch, RouteTable};
use portcullis_rules::yaml::{ConfigError, Doc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Identity headers an upstream may trust; stripped from every inbound request by default.
pub const DEFAULT_STRIP_HEADERS: &[&str] = &[
    "x-user-id",
    "x-user-email",
    "x-user-roles",
    "x-tenant-id",
    "x-session-id",
    "x-authenticated-user",
    "x-portcullis-identity",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    version: u32,
    listen: RawListen,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    strip_headers: Option<Vec<String>>,
    #[serde(default)]
    limits: RawLimits,
    upstreams: BTreeMap<String, RawUpstream>,
    routes: Vec<RawRoute>,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    maintenance: RawMaintenance,
    #[serde(default)]
    request_id: RawRequestId,
    /// TLS termination (gateway/src/tls.rs).
    #[serde(default)]
    tls: Option<crate::tls::RawTls>,
    #[serde(default)]
    fleet: Option<RawFleet>,
    /// Where alerts go (gateway/src/alerting/config.rs); when they fire is the rule files'.
    #[serde(default)]
    alerting: crate::alerting::RawAlerting,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    redis_url: String,
    id: String,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    rate_limit_fallback: Option<String>,
    #[serde(default)]
    webhook_replay_fallback: Option<String>,
    #[serde(default)]
    webhook_replay_budget_ms: Option<u64>,
    /// `rediss://` only: the CA the store's certificate must chain to (default: the system's).
    #[serde(default)]
    redis_ca_file: Option<String>,
    /// `rediss://` only: a client certificate and key for a store that asks for one (mTLS).
    #[serde(default)]
    redis_client_cert_file: Option<String>,
    #[serde(default)]
    redis_client_key_file: Option<String>,
    /// `redis+sentinel://` only: the Sentinels' own password (`requirepass` in sentinel.conf).
    #[serde(default)]
    sentinel_password_env: Option<String>,
    #[serde(default)]
    sentinel_password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequestId {
    #[serde(default)]
    trust_inbound: TrustInbound,
}

/// Whose inbound `X-Request-Id` is kept (a well-formed one; anything else is replaced).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustInbound {
    /// Only from a peer in `trusted_proxies` (the default): a client cannot choose the id its
    /// events and logs are filed under.
    #[default]
    TrustedProxies,
    /// From any client (the behaviour before this option).
    Any,
    /// Never: every request gets a generated id.
    Never,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    #[serde(default)]
    bypass_cidrs: Vec<String>,
    bypass_header: Option<RawBypassHeader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBypassHeader {
    name: String,
    sha256: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: Option<String>,
    watch: Option<bool>,
    debounce_ms: Option<u64>,
    poll_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    max_file_bytes: Option<u64>,
    max_files: Option<usize>,
    memory_events: Option<usize>,
    queue_capacity: Option<usize>,
    log: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    proxy: String,
    #[serde(default)]
    control: Option<String>,
    #[serde(default)]
    h2c: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    threads: Option<usize>,
    work_stealing: Option<bool>,
    grace_period_seconds: Option<u64>,
    graceful_shutdown_timeout_seconds: Option<u64>,
    upgrade_sock: Option<String>,
    pid_file: Option<String>,
    upstream_keepalive_pool_size: Option<usize>,
}

/// Default `limits.body_timeout_ms`: the whole request body within 30 s of the request's head.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;

/// Default `limits.max_response_header_bytes` (64 KiB).
pub const DEFAULT_MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;
/// Largest `limits.max_response_header_bytes` (Pingora refuses heads over 1 MiB anyway).
pub const MAX_RESPONSE_HEADER_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_header_count: Option<usize>,
    max_header_bytes: Option<usize>,
    max_response_header_bytes: Option<usize>,
    header_timeout_ms: Option<u64>,
    keepalive_timeout_seconds: Option<u64>,
    max_body_bytes: Option<u64>,
    body_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    backends: Vec<String>,
    #[serde(default)]
    health_check: RawHealthCheck,
    connect_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    write_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum HealthKind {
    #[default]
    Tcp,
    Http,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    #[serde(default)]
    kind: HealthKind,
    path: Option<String>,
    host: Option<String>,
    interval_ms: Option<u64>,
    consecutive_failure: Option<usize>,
    consecutive_success: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    id: String,
    #[serde(default)]
    hosts: Vec<String>,
    path_prefix: String,
    upstream: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    body_timeout_ms: Option<u64>,
    #[serde(default)]
    allow_headers: Vec<String>,
    /// `Strict-Transport-Security` value sent on this route's responses over https.
    #[serde(default)]
    hsts: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    max_requests_per_second: Option<u32>,
    /// Accept tokens over plain HTTP on a non-loopback control address (a trusted network).
    #[serde(default)]
    allow_plaintext_tokens: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: Role,
    sha256: String,
}

/// Default of `control.max_requests_per_second`.
pub const DEFAULT_CONTROL_RATE_PER_SECOND: u32 = 500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Option<String>,
    access_log: Option<bool>,
}

/// A control-endpoint role. Ordered: each role can do everything the one before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Also flips switches, reloads rules, revokes sessions, fires safe tests.
    Operator,
    /// Also manages tokens and reads the audit log.
    Admin,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// How a pool probes its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// A TCP connect.
    Tcp,
    /// `GET path` with `Host: host`, healthy on a 2xx.
    Http {
        /// Path probed.
        path: String,
        /// Host header sent.
        host: String,
    },
}

/// A compiled upstream pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Backend addresses.
    pub backends: Vec<SocketAddr>,
    /// Probe kind.
    pub health_check: HealthCheck,
    /// How often probes run.
    pub health_interval: Duration,
    /// Failed probes before a backend is marked down.
    pub consecutive_failure: usize,
    /// Successful probes before a backend is marked up again.
    pub consecutive_success: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout on the upstream connection (time to first byte and between bytes).
    pub read_timeout: Duration,
    /// Per-write timeout on the upstream connection.
    pub write_timeout: Duration,
    /// Deadline for the whole upstream exchange, from the request's arrival.
    pub total_timeout: Duration,
    /// How long an idle upstream keep-alive connection is kept in the pool.
    pub idle_timeout: Duration,
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route id (the `route` label in metrics and logs).
    pub id: String,
    /// Index of its pool in [`GatewayConfig::pools`].
    pub pool: usize,
    /// Channel for kill switches.
    pub channel: Option<String>,
    /// Body cap in bytes.
    pub max_body_bytes: u64,
    /// Deadline for the whole request body, from the request's arrival (its head read): a body
    /// still arriving then is answered `408 request_timeout` (or cut, once a response started),
    /// and its upstream connection closed. Never later than the pool's `total_timeout`.
    pub body_timeout: Duration,
    /// Headers stripped by default that this route forwards (lowercase): method-override headers
    /// (applied, see [`portcullis_rules::overrides`]) and names with `_` (or another character
    /// but letters, digits and `-`).
    pub allow_headers: Vec<http::HeaderName>,
    /// The method-override headers among `allow_headers`.
    pub method_override: Vec<http::HeaderName>,
    /// `Strict-Transport-Security` for this route's responses when the client used https.
    pub hsts: Option<http::HeaderValue>,
}

/// A control token, stored only as the SHA-256 of the token.
#[derive(Debug, Clone)]
pub struct Token {
    /// Who holds it (audit and logs).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
}

/// Pingora server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Tokio work stealing between those threads.
    pub work_stealing: bool,
    /// SIGTERM: how long listeners stay closed while in-flight requests finish.
    pub grace_period_seconds: u64,
    /// Then: how long runtimes get to stop.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Unix socket for SIGQUIT graceful upgrade.
    pub upgrade_sock: String,
    /// PID file.
    pub pid_file: String,
    /// Upstream keep-alive connections kept in the pool.
    pub upstream_keepalive_pool_size: usize,
}

/// Where the rule files are and how changes to them are picked up.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// The rules directory (every `*.yaml`/`*.yml` not starting with `.`).
    pub dir: PathBuf,
    /// Watch the directory for changes (inotify); the checksum poll runs regardless.
    pub watch: bool,
    /// Quiet time after the last change event before reloading.
    pub debounce: Duration,
    /// Checksum poll interval: the backstop when watch events are missed.
    pub poll_interval: Duration,
}

/// The validated, compiled gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Path of the file it came from.
    pub path: PathBuf,
    /// Content hash (first 16 hex digits of SHA-256 of the file).
    pub version: String,
    /// Proxy listener address (port 0 allowed).
    pub proxy_addr: SocketAddr,
    /// Control listener address (port 0 allowed).
    pub control_addr: SocketAddr,
    /// Cleartext HTTP/2 by prior knowledge on the (plain) proxy listener, beside HTTP/1.1.
    pub h2c: bool,
    /// Server settings.
    pub server: ServerSettings,
    /// Where runtime state lives.
    pub state_dir: PathBuf,
    /// Fleet mode: the shared Redis store (`None`: this instance alone, local files only).
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// Proxies whose `X-Forwarded-For` we believe.
    pub trusted_proxies: TrustedProxies,
    /// Header names stripped from inbound requests.
    pub strip_headers: Vec<http::HeaderName>,
    /// Header count and size limits.
    pub header_limits: HeaderLimits,
    /// Largest upstream response head passed on (status line and fields, bytes): over it, 502.
    pub max_response_header_bytes: usize,
    /// Total deadline for receiving a request's headers.
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a client keep-alive connection.
    pub keepalive_timeout_seconds: u64,
    /// Pools, in name order.
    pub pools: Vec<Pool>,
    /// Routes.
    pub routes: RouteTable<Route>,
    /// Control tokens.
    pub tokens: Vec<Token>,
    /// Control requests accepted per source address and second (probes exempt).
    pub control_rate_per_second: u32,
    /// Log level filter (`info`, `debug`, or an `EnvFilter` directive).
    pub log_level: String,
    /// One access-log line per request.
    pub access_log: bool,
    /// Rule files.
    pub rules: RulesSettings,
    /// Security-event sinks and store (under `state_dir/events`).
    pub events: crate::events::EventsConfig,
    /// Who may pass while maintenance mode is on: CIDRs, and a secret header (SHA-256 of the
    /// value, compared in constant time).
    pub maintenance_bypass_cidrs: Vec<ipnet::IpNet>,
    /// `(lowercase header name, sha256 of the secret)`.
    pub maintenance_bypass_header: Option<(String, [u8; 32])>,
    /// Whose inbound `X-Request-Id` is kept.
    pub request_id_trust: TrustInbound,
    /// TLS termination on the proxy (and optionally control) listener; `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Alert sinks, retries and the daily digest.
    pub alerting: crate::alerting::AlertingConfig,
}

fn ms(v: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(v.unwrap_or(default))
}

/// Loads and validates a gateway config file. Every error is returned, each with file and line.
pub fn load(path: &Path) -> Result<GatewayConfig, Vec<ConfigError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError { file: file.clone(), line: 0, path: String::new(), message: format!("cannot read: {e}") }]
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_with_env(&file, &text, &base, &|k| std::env::var(k).ok()).map(|mut c| {
        c.path = path.to_path_buf();
        c
    })
}

/// Parses and validates config text; relative paths resolve against `base`.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<GatewayConfig, Vec<ConfigError>> {
    parse_with_env(file, text, base, &|_| None)
}

/// Environment variables that override where the gateway writes, so one config file serves
/// every deployment (the image, the systemd unit, a checkout): `(variable, config key)`. Each
/// must be an absolute path.
pub const PATH_OVERRIDES: [(&str, &str); 3] = [
    ("PORTCULLIS_STATE_DIR", "state_dir"),
    ("PORTCULLIS_PID_FILE", "server.pid_file"),
    ("PORTCULLIS_UPGRADE_SOCK", "server.upgrade_sock"),
];

/// [`parse`], with the [`PATH_OVERRIDES`] read through `env`.
pub fn parse_with_env(
    file: &str,
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, Vec<ConfigError>> {
    let doc = Doc::parse(file, text)?;
    let mut raw: RawGateway = doc.deserialize()?;
    let mut errs = Vec::new();
    for (var, key) in PATH_OVERRIDES {
        let Some(v) = env(var).filter(|v| !v.is_empty()) else { continue };
        if !Path::new(&v).is_absolute() {
            errs.push(doc.error_at(key, format!("{var}=`{v}` overrides it and must be an absolute path")));
            continue;
        }
        match key {
            "state_dir" => raw.state_dir = Some(v),
            "server.pid_file" => raw.server.pid_file = Some(v),
            _ => raw.server.upgrade_sock = Some(v),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    compile(&doc, raw, text, base)
}

fn compile(doc: &Doc, raw: RawGateway, text: &str, base: &Path) -> Result<GatewayConfig, Vec<ConfigError>> {
    let mut errs = Vec::new();
    let mut err = |path: &str, msg: String| errs.push(doc.error_at(path, msg));

    if raw.version != 1 {
        err("version", format!("unsupported version {}, expected 1", raw.version));
    }
    let addr = |s: &str, path: &str, err: &mut dyn FnMut(&str, String)| -> SocketAddr {
        s.parse().unwrap_or_else(|_| {
            err(path, format!("`{s}` is not an address like 127.0.0.1:8080"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    };
    let proxy_addr = addr(&raw.listen.proxy, "listen.proxy", &mut err);
    let control_addr = addr(raw.listen.control.as_deref().unwrap_or("127.0.0.1:9090"), "listen.control", &mut err);
    if proxy_addr == control_addr && proxy_addr.port() != 0 {
        err("listen.control", "the control listener must not share the proxy's address".into());
    }

    let trusted_proxies = TrustedProxies::parse(raw.trusted_proxies.iter().map(String::as_str)).unwrap_or_else(|bad| {
        for b in bad {
            let i = raw.trusted_proxies.iter().position(|x| *x == b).unwrap_or(0);
            err(&format!("trusted_proxies[{i}]"), format!("`{b}` is not a CIDR or IP address"));
        }
        TrustedProxies::default()
    });

    let strip_headers: Vec<http::HeaderName> = raw
        .strip_headers
        .unwrap_or_else(|| DEFAULT_STRIP_HEADERS.iter().map(|s| s.to_string()).collect())
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let name = http::HeaderName::from_bytes(h.trim().as_bytes()).ok();
            if name.is_none() {
                err(&format!("strip_headers[{i}]"), format!("`{h}` is not a header name"));
            }
            name
        })
        .collect();

    let default_body = raw.limits.max_body_bytes.unwrap_or(1024 * 1024);
    let header_limits = HeaderLimits {
        max_count: raw.limits.max_header_count.unwrap_or(100),
        max_bytes: raw.limits.max_header_bytes.unwrap_or(32 * 1024),
    };
    if header_limits.max_count == 0 || header_limits.max_count > portcullis_rules::framing::MAX_PARSED_HEADERS {
        err("limits.max_header_count", format!("must be 1 to {}", portcullis_rules::framing::MAX_PARSED_HEADERS));
    }
    if header_limits.max_bytes < 256 {
        err("limits.max_header_bytes", "must be at least 256".into());
    }
    let max_response_header_bytes = raw.limits.max_response_header_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_HEADER_BYTES);
    if !(1024..=MAX_RESPONSE_HEADER_BYTES).contains(&max_response_header_bytes) {
        err("limits.max_response_header_bytes", format!("must be 1024 to {MAX_RESPONSE_HEADER_BYTES}"));
    }
    let default_body_timeout = ms(raw.limits.body_timeout_ms, DEFAULT_BODY_TIMEOUT_MS);
    if default_body_timeout.is_zero() {
        err("limits.body_timeout_ms", "must be greater than 0".into());
    }
    let header_timeout = ms(raw.limits.header_timeout_ms, 10_000);
    if header_timeout.is_zero() {
        err("limits.header_timeout_ms", "must be greater than 0".into());
    }

    if raw.upstreams.is_empty() {
        err("upstreams", "at least one upstream pool is required".into());
    }
    let mut pools = Vec::new();
    for (name, u) in &raw.upstreams {
        let p = format!("upstreams.{name}");
        if u.backends.is_empty() {
            err(&format!("{p}.backends"), "at least one backend is required".into());
        }
        let backends = u
            .backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b.parse::<SocketAddr>() {
                Ok(a) if a.port() != 0 => Some(a),
                _ => {
                    err(&format!("{p}.backends[{i}]"), format!("`{b}` is not an address like 10.0.0.5:8080"));
                    None
                }
            })
            .collect();
        let hc = &u.health_check;
        let health_check = match hc.kind {
            HealthKind::Tcp => {
                if hc.path.is_some() || hc.host.is_some() {
                    err(&format!("{p}.health_check"), "path and host only apply to kind: http".into());
                }
                HealthCheck::Tcp
            }
            HealthKind::Http => {
                let path = hc.path.clone().unwrap_or_else(|| "/health".into());
                if !path.starts_with('/') {
                    err(&format!("{p}.health_check.path"), "must start with /".into());
                }
                HealthCheck::Http { path, host: hc.host.clone().unwrap_or_else(|| "localhost".into()) }
            }
        };
        let pool = Pool {
            name: name.clone(),
            backends,
            health_check,
            health_interval: ms(hc.interval_ms, 5_000),
            consecutive_failure: hc.consecutive_failure.unwrap_or(1).max(1),
            consecutive_success: hc.consecutive_success.unwrap_or(1).max(1),
            connect_timeout: ms(u.connect_timeout_ms, 2_000),
            read_timeout: ms(u.read_timeout_ms, 30_000),
            write_timeout: ms(u.write_timeout_ms, 30_000),
            total_timeout: ms(u.total_timeout_ms, 60_000),
            idle_timeout: ms(u.idle_timeout_ms, 60_000),
        };
        for (k, d) in [
            ("connect_timeout_ms", pool.connect_timeout),
            ("read_timeout_ms", pool.read_timeout),
            ("write_timeout_ms", pool.write_timeout),
            ("total_timeout_ms", pool.total_timeout),
            ("health_check.interval_ms", pool.health_interval),
        ] {
            if d.is_zero() {
                err(&format!("{p}.{k}"), "must be greater than 0".into());
            }
        }
        pools.push(pool);
    }

    let mut entries = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    if raw.routes.is_empty() {
        err("routes", "at least one route is required".into());
    }
    for (i, r) in raw.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if r.id.is_empty() || !r.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            err(&format!("{p}.id"), "must be non-empty [A-Za-z0-9_-]".into());
        }
        if !seen_ids.insert(r.id.clone()) {
            err(&format!("{p}.id"), format!("duplicate route id `{}`", r.id));
        }
        match portcullis_rules::canon::canonicalize(r.path_prefix.as_bytes()) {
            Ok(c) if c == r.path_prefix => {}
            Ok(c) => err(&format!("{p}.path_prefix"), format!("not canonical, write it as `{c}`")),
            Err(e) => err(&format!("{p}.path_prefix"), format!("not a valid path: {e}")),
        }
        let pool = pools.iter().position(|pl| pl.name == r.upstream).unwrap_or_else(|| {
            let known: Vec<&str> = pools.iter().map(|pl| pl.name.as_str()).collect();
            err(&format!("{p}.upstream"), format!("unknown upstream `{}`; known: {}", r.upstream, known.join(", ")));
            0
        });
        let mut hosts = Vec::new();
        for (j, h) in r.hosts.iter().enumerate() {
            match HostMatch::parse(h) {
                Some(m) => hosts.push(m),
                None => err(&format!("{p}.hosts[{j}]"), format!("`{h}` is not a host, `*.suffix` or `*`")),
            }
        }
        if r.hosts.is_empty() {
            hosts.push(HostMatch::Any);
        }
        if let Some(c) = &r.channel {
            if c.is_empty()
                || !c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                err(&format!("{p}.channel"), "must be lowercase [a-z0-9_-]".into());
            }
        }
        if r.body_timeout_ms == Some(0) {
            err(&format!("{p}.body_timeout_ms"), "must be greater than 0".into());
        }
        let mut allow_headers: Vec<http::HeaderName> = Vec::new();
        for (j, h) in r.allow_headers.iter().enumerate() {
            let at = format!("{p}.allow_headers[{j}]");
            let Ok(name) = http::HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()) else {
                err(&at, format!("`{h}` is not a header name"));
                continue;
            };
            if let Some(why) = not_allowable(name.as_str(), &strip_headers, raw.maintenance.bypass_header.as_ref()) {
                err(&at, format!("`{h}` cannot be allowed: {why}"));
            } else if allow_headers.contains(&name) {
                err(&at, format!("`{h}` is listed twice"));
            } else {
                allow_headers.push(name);
            }
        }
        let hsts = r.hsts.as_deref().and_then(|v| {
            let ok = v.trim_start().to_ascii_lowercase().starts_with("max-age=");
            match http::HeaderValue::from_str(v.trim()) {
                Ok(h) if ok => Some(h),
                _ => {
                    err(&format!("{p}.hsts"), format!("`{v}` is not a Strict-Transport-Security value (`max-age=<seconds>[; includeSubDomains][; preload]`)"));
                    None
                }
            }
        });
        entries.push(Entry {
            hosts,
            prefix: r.path_prefix.clone(),
            value: Route {
                id: r.id.clone(),
                pool,
                channel: r.channel.clone(),
                max_body_bytes: r.max_body_bytes.unwrap_or(default_body),
                body_timeout: r.body_timeout_ms.map_or(default_body_timeout, Duration::from_millis),
                method_override: allow_headers
                    .iter()
                    .filter(|h| portcullis_rules::overrides::is_method_override(h.as_str()))
                    .cloned()
                    .collect(),
                allow_headers,
                hsts,
            },
        });
    }

    let mut tokens = Vec::new();
    for (i, t) in raw.control.tokens.iter().enumerate() {
        let p = format!("control.tokens[{i}]");
        let mut h = [0u8; 32];
        if hex::decode_to_slice(t.sha256.trim(), &mut h).is_err() {
            err(&format!("{p}.sha256"), "must be 64 hex digits (run `portcullis token new`)".into());
        }
        if tokens.iter().any(|x: &Token| x.sha256 == h) {
            err(&format!("{p}.sha256"), "duplicate token hash".into());
        }
        tokens.push(Token { name: t.name.clone(), role: t.role, sha256: h });
    }

    let control_rate_per_second = raw.control.max_requests_per_second.unwrap_or(DEFAULT_CONTROL_RATE_PER_SECOND);
    if control_rate_per_second == 0 {
        err("control.max_requests_per_second", "must be at least 1".into());
    }

    let threads = raw.server.threads.unwrap_or(2);
    if threads == 0 {
        err("server.threads", "must be at least 1".into());
    }
    let resolve = |p: &str| {
        let pb = PathBuf::from(p);
        if pb.is_absolute() {
            pb
        } else {
            base.join(pb)
        }
    };
    let log_level = raw.logging.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        err("logging.level", format!("`{log_level}` is not a level or filter directive"));
    }

    let rules = RulesSettings {
        dir: resolve(raw.rules.dir.as_deref().unwrap_or("rules")),
        watch: raw.rules.watch.unwrap_or(true),
        debounce: ms(raw.rules.debounce_ms, 200),
        poll_interval: ms(raw.rules.poll_interval_ms, 2_000),
    };
    if rules.poll_interval < Duration::from_millis(100) {
        err("rules.poll_interval_ms", "must be at least 100".into());
    }
    if rules.debounce > Duration::from_secs(10) {
        err("rules.debounce_ms", "must be at most 10000".into());
    }
    let state_dir = resolve(raw.state_dir.as_deref().unwrap_or("var/state"));
    let defaults = crate::events::EventsConfig::default();
    let events = crate::events::EventsConfig {
        dir: state_dir.join("events"),
        max_file_bytes: raw.events.max_file_bytes.unwrap_or(defaults.max_file_bytes),
        max_files: raw.events.max_files.unwrap_or(defaults.max_files),
        memory_events: raw.events.memory_events.unwrap_or(defaults.memory_events),
        queue_capacity: raw.events.queue_capacity.unwrap_or(defaults.queue_capacity),
        log: raw.events.log.unwrap_or(defaults.log),
    };
    if events.max_file_bytes < 4096 {
        err("events.max_file_bytes", "must be at least 4096".into());
    }
    if events.memory_events == 0 || events.memory_events > 10_000_000 {
        err("events.memory_events", "must be 1 to 10000000".into());
    }
    if events.queue_capacity == 0 || events.queue_capacity > 1_000_000 {
        err("events.queue_capacity", "must be 1 to 1000000".into());
    }

    let mut maintenance_bypass_cidrs = Vec::new();
    for (i, c) in raw.maintenance.bypass_cidrs.iter().enumerate() {
        match portcullis_rules::ipset::parse_net(c) {
            Some(n) => maintenance_bypass_cidrs.push(n.trunc()),
            None => err(&format!("maintenance.bypass_cidrs[{i}]"), format!("`{c}` is not a CIDR or IP address")),
        }
    }
    let maintenance_bypass_header = raw.maintenance.bypass_header.as_ref().and_then(|h| {
        let name = h.name.trim().to_ascii_lowercase();
        let mut hash = [0u8; 32];
        let mut ok = true;
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            err("maintenance.bypass_header.name", format!("`{}` is not a header name", h.name));
            ok = false;
        }
        if hex::decode_to_slice(h.sha256.trim(), &mut hash).is_err() {
            err("maintenance.bypass_header.sha256", "must be 64 hex digits: the SHA-256 of the secret".into());
            ok = false;
        }
        ok.then_some((name, hash))
    });

    let fleet = raw.fleet.as_ref().and_then(|f| {
        match crate::fleet::FleetConfig::from_parts(
            &f.redis_url,
            &f.id,
            f.password_env.as_deref(),
            f.password_file.as_deref().map(&resolve),
        )
        .and_then(|c| {
            c.with_options(
                f.instance_id.as_deref(),
                f.rate_limit_fallback.as_deref(),
                f.webhook_replay_fallback.as_deref(),
                f.webhook_replay_budget_ms,
            )
        })
        .and_then(|c| {
            c.with_tls(
                f.redis_ca_file.as_deref().map(&resolve),
                f.redis_client_cert_file.as_deref().map(&resolve),
                f.redis_client_key_file.as_deref().map(&resolve),
            )
        })
        .and_then(|c| {
            c.with_sentinel_password(
                f.sentinel_password_env.as_deref(),
                f.sentinel_password_file.as_deref().map(&resolve),
            )
        }) {
            Ok(c) => Some(c),
            Err((field, why)) => {
                err(&format!("fleet.{field}"), why);
                None
            }
        }
    });
    let tls = raw.tls.map(|t| crate::tls::compile(doc, t, base, &mut errs));
    if raw.listen.h2c && tls.is_some() {
        errs.push(doc.error_at("listen.h2c", "h2c is for a plain listener: with `tls`, HTTP/2 is offered by ALPN"));
    }
    let alerting = crate::alerting::config::compile(doc, raw.alerting, base, &mut errs);
    // Bearer tokens in cleartext over a network: refused unless the control listener is on
    // loopback, terminates TLS, or the operator says the network is trusted.
    let control_tls = tls.as_ref().is_some_and(|t| t.control);
    if !raw.control.tokens.is_empty()
        && !control_addr.ip().is_loopback()
        && !control_tls
        && !raw.control.allow_plaintext_tokens
    {
        errs.push(doc.error_at(
            "listen.control",
            format!(
                "control tokens would travel in plain HTTP on {control_addr}: set `tls.control: true`, bind to loopback, or set `control.allow_plaintext_tokens: true` on a trusted network"
            ),
        ));
    }

    if !errs.is_empty() {
        errs.sort_by_key(|e| e.line);
        return Err(errs);
    }
    use sha2::Digest;
    let version = hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8]);
    Ok(GatewayConfig {
        path: PathBuf::new(),
        version,
        proxy_addr,
        control_addr,
        h2c: raw.listen.h2c,
        server: ServerSettings {
            threads,
            work_stealing: raw.server.work_stealing.unwrap_or(true),
            grace_period_seconds: raw.server.grace_period_seconds.unwrap_or(5),
            graceful_shutdown_timeout_seconds: raw.server.graceful_shutdown_timeout_seconds.unwrap_or(5),
            upgrade_sock: raw.server.upgrade_sock.unwrap_or_else(|| "/tmp/portcullis_upgrade.sock".into()),
            pid_file: raw.server.pid_file.unwrap_or_else(|| "/tmp/portcullis.pid".into()),
            upstream_keepalive_pool_size: raw.server.upstream_keepalive_pool_size.unwrap_or(128),
        },
        state_dir,
        fleet,
        trusted_proxies,
        strip_headers,
        header_limits,
        max_response_header_bytes,
        header_timeout,
        keepalive_timeout_seconds: raw.limits.keepalive_timeout_seconds.unwrap_or(60),
        pools,
        routes: RouteTable::new(entries),
        tokens,
        control_rate_per_second,
        log_level,
        access_log: raw.logging.access_log.unwrap_or(true),
        rules,
        events,
        maintenance_bypass_cidrs,
        maintenance_bypass_header,
        request_id_trust: raw.request_id.trust_inbound,
        tls,
        alerting,
    })
}

/// Why a route may not forward this (lowercase) header, if it may not: only headers stripped by
/// default for being ambiguous can be allowed, never a spelling of one stripped for safety.
fn not_allowable(name: &str, strip: &[http::HeaderName], bypass: Option<&RawBypassHeader>) -> Option<String> {
    use portcullis_rules::overrides;
    if overrides::is_always_stripped(name) {
        return Some(
            "forwarding and URL/host-override headers are always stripped (the application would act on \
             an address, path or host no rule saw)"
                .into(),
        );
    }
    if let Some(s) = strip.iter().find(|s| overrides::same_name(s.as_str(), name)) {
        return Some(format!("it is a spelling of `{s}`, in `strip_headers`"));
    }
    if bypass.is_some_and(|b| overrides::same_name(b.name.trim(), name)) {
        return Some("it is a spelling of the maintenance bypass header".into());
    }
    if overrides::is_method_override(name) || overrides::is_alternate_spelling(name) {
        return None;
    }
    Some(
        "it is not stripped by default: only method-override headers and names with `_` (or another \
         character but letters, digits and `-`) need allowing"
            .into(),
    )
}

#[cfg(test)]
mod tests;
