//! Building and running the Pingora server: listeners bound before start (so port 0 works and
//! the real addresses are known), pools with active health checks, the proxy behind a
//! request-head deadline, the control endpoint, signals.

use crate::audit::AuditLog;
use crate::config::{GatewayConfig, HealthCheck};
use crate::control::ControlApp;
use crate::events::{EventBus, RequestWindow};
use crate::ids::new_request_id;
use crate::metrics::Metrics;
use crate::proxy::Portcullis;
use crate::reload::{Rules, Trigger};
use crate::state::Shared;
use crate::switches::{Bypass, Switches};
use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Fds, ListenFds, RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service as Listening;
use pingora_core::services::Service;
use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;
use pingora_proxy::http_proxy;
use pingora_timeout::fast_timeout::fast_timeout;
use portcullis_rules::deny::{render, Deny, DenyCode};
use portcullis_rules::framing::{self, HeaderLimits};
use serde_json::Value;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Extra services to run beside the gateway (the demo application).
pub type Extra = Box<dyn pingora_core::services::ServiceWithDependents>;

/// Runs the gateway until SIGTERM/SIGINT/SIGQUIT. `upgrade`: take the listening sockets over
/// from the running instance (graceful upgrade) instead of binding.
pub fn run(cfg: GatewayConfig, upgrade: bool, extra: Vec<Extra>) -> Result<(), String> {
    let conf = ServerConf {
        threads: cfg.server.threads,
        work_stealing: cfg.server.work_stealing,
        grace_period_seconds: Some(cfg.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(cfg.server.graceful_shutdown_timeout_seconds),
        upgrade_sock: cfg.server.upgrade_sock.clone(),
        pid_file: cfg.server.pid_file.clone(),
        upstream_keepalive_pool_size: cfg.server.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    // Take SIGHUP over before anything else runs: its default action would kill the process.
    // A handler registered through tokio stays installed for the life of the process.
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
        let _ = rt.block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map(drop) });
    }
    // Events first (a failed rule load at start is itself reported through them), then the rules:
    // the gateway does not start on rules it cannot enforce.
    let events =
        EventBus::start(cfg.events.clone()).map_err(|e| format!("event store {}: {e}", cfg.events.dir.display()))?;
    let route_ids: Vec<String> = cfg.routes.entries().iter().map(|e| e.value.id.clone()).collect();
    let rules = Rules::start(&cfg.rules.dir, route_ids.clone(), cfg.alerting.sink_names(), events.clone())
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    rules.spawn_watcher(cfg.rules.watch, cfg.rules.debounce, cfg.rules.poll_interval);
    // Runtime state: a restart (even after kill -9) never reopens a killed channel.
    let mut channels: Vec<String> = cfg.routes.entries().iter().filter_map(|e| e.value.channel.clone()).collect();
    channels.sort();
    channels.dedup();
    let switches = Arc::new(
        Switches::load(&cfg.state_dir, &channels, &|k| std::env::var(k).ok())
            .map_err(|e| format!("switch state: {e}"))?,
    );
    let audit =
        Arc::new(AuditLog::open(&crate::audit::dir_for(&cfg.state_dir)).map_err(|e| format!("audit log: {e}"))?);
    let sessions =
        Arc::new(crate::sessions::Sessions::load(&cfg.state_dir).map_err(|e| format!("session state: {e}"))?);
    let tls = match &cfg.tls {
        Some(t) => Some(crate::tls::TlsState::start(t.clone(), events.clone()).map_err(|e| format!("tls: {e}"))?),
        None => None,
    };

    let opt = Opt { upgrade, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    // Bind first: the addresses we print are the ones we serve, even for port 0.
    let (proxy_key, proxy_fd) =
        prebind(cfg.proxy_addr, upgrade).map_err(|e| format!("proxy listener {}: {e}", cfg.proxy_addr))?;
    let (control_key, control_fd) =
        prebind(cfg.control_addr, upgrade).map_err(|e| format!("control listener {}: {e}", cfg.control_addr))?;

    let mut pools = Vec::new();
    for p in &cfg.pools {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(p.backends.iter().copied())
            .map_err(|e| format!("pool {}: {e}", p.name))?;
        match &p.health_check {
            HealthCheck::Tcp => {
                let mut hc = TcpHealthCheck::new();
                hc.consecutive_failure = p.consecutive_failure;
                hc.consecutive_success = p.consecutive_success;
                hc.peer_template.options.connection_timeout = Some(p.connect_timeout);
                lb.set_health_check(hc);
            }
            HealthCheck::Http { path, host } => {
                let mut hc = HttpHealthCheck::new(host, false);
                hc.consecutive_failure = p.consecutive_failure;
                hc.consecutive_success = p.consecutive_success;
                hc.peer_template.options.connection_timeout = Some(p.connect_timeout);
                hc.peer_template.options.read_timeout = Some(p.connect_timeout);
                let uri = path.parse::<http::Uri>().map_err(|e| format!("pool {} health path: {e}", p.name))?;
                hc.req.set_uri(uri);
                lb.set_health_check(Box::new(hc));
            }
        }
        lb.health_check_frequency = Some(p.health_interval);
        lb.parallel_health_check = true;
        let svc = background_service(&format!("health {}", p.name), lb);
        pools.push(svc.task());
        server.add_service(svc);
    }

    let cfg = Arc::new(cfg);
    let metrics = Metrics::new(route_ids, cfg.version.clone(), &crate::control::metric_families())?;
    let shared = Arc::new(Shared {
        metrics,
        config: cfg.clone(),
        pools,
        loaded_at: SystemTime::now(),
        rules: rules.clone(),
        events: events.clone(),
        requests: RequestWindow::new(),
        switches: switches.clone(),
        bypass: Bypass::new(cfg.maintenance_bypass_cidrs.clone(), cfg.maintenance_bypass_header.clone()),
        audit: audit.clone(),
        sessions,
        webhooks: crate::webhook_replay::WebhookState::default(),
        pii: crate::pii_response::PiiState::default(),
        connector: pingora_core::connectors::http::v1::Connector::new(None),
        limits: crate::limit_state::LimitState::load(&cfg.state_dir),
        fleet: match &cfg.fleet {
            Some(f) => Some(Arc::new(crate::fleet::Fleet::new(f, &cfg.state_dir)?)),
            None => None,
        },
        tls: tls.clone(),
        alerting: Arc::new(
            crate::alerting::Alerting::new(cfg.alerting.clone(), events.clone(), Some(&cfg.state_dir))
                .map_err(|e| format!("cannot start the alert sinks: {e}"))?,
        ),
        auto_blocks: Arc::default(),
        anomaly: crate::anomaly::AnomalyState::default(),
    });
    crate::alerting::Alerting::start(Arc::downgrade(&shared), cfg.alerting.evaluate_every)
        .map_err(|e| format!("cannot start the alert evaluator: {e}"))?;
    crate::auto_blocker::start(&shared).map_err(|e| format!("cannot start the automatic blocks: {e}"))?;

    // One state model: replay what the audit log (the write-ahead log) holds past the state
    // files, then follow what any other process sharing `state_dir` commits.
    crate::txn::recover(&*audit, shared.state(), &cfg.state_dir).map_err(|e| format!("state recovery: {e}"))?;
    crate::txn::follow(&audit, Arc::downgrade(&shared), Shared::state);
    crate::reload::audit_file_reloads(&rules, &audit);
    if let Some(fleet) = &shared.fleet {
        // Caught up with the fleet before serving when the store answers; with it down, the
        // last known state (the local files) is in force and the fleet thread keeps trying.
        match fleet.sync(&*shared) {
            Ok(n) => {
                tracing::info!(store = %cfg.fleet.as_ref().map_or("", |f| f.endpoint.as_str()), applied = n, "fleet mode: in sync with the fleet store")
            }
            // A store that answers but fails the TLS trust check is a configuration fault (wrong
            // `redis_ca_file`, a missing client certificate), not an outage: refused loudly.
            Err(e) if crate::fleet::tls_refused(&e) => {
                return Err(format!(
                    "fleet mode: the fleet store's TLS handshake failed ({e}): check fleet.redis_ca_file (the CA that signed the store's certificate, whose names must include the URL's host) and, if the store asks for one, fleet.redis_client_cert_file/redis_client_key_file"
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "fleet mode: the fleet store is unreachable at start; serving the last known state")
            }
        }
        fleet.start(Arc::downgrade(&shared)).map_err(|e| format!("cannot start the fleet thread: {e}"))?;
        crate::fleet_limits::start(fleet, Arc::downgrade(&shared))
            .map_err(|e| format!("cannot start the fleet counting thread: {e}"))?;
    }

    let mut proxy = http_proxy(&conf, Portcullis::new(shared.clone()));
    if tls.is_some() || cfg.h2c {
        proxy.h2_options = Some(h2_options(&cfg));
        // An HTTP/2 connection with no stream open is closed after the keep-alive timeout.
        let mut opts = pingora_core::apps::HttpServerOptions::default();
        opts.h2_idle_timeout = Some(Duration::from_secs(cfg.keepalive_timeout_seconds.max(1)));
        // Pingora's h2c switch is reached only from `HeadGuard::h2c`, with the whole preface
        // already read under the header deadline and put back (its own check has no deadline).
        opts.h2c = cfg.h2c;
        proxy.server_options = Some(opts);
    }
    let proxy = Arc::new(proxy);
    let guard = HeadGuard {
        proxy,
        header_timeout: cfg.header_timeout,
        header_limits: cfg.header_limits,
        keepalive: cfg.keepalive_timeout_seconds,
        max_head: cfg.header_limits.max_bytes.saturating_add(16 * 1024),
        h2c: cfg.h2c,
    };
    let mut proxy_svc = Listening::new("proxy".to_string(), guard);
    add_listener(&mut proxy_svc, &proxy_key, tls.as_deref(), true)?;
    server.add_service(PreBound {
        inner: proxy_svc,
        fds: proxy_fd.into_iter().map(|fd| (proxy_key.clone(), fd)).collect(),
        threads: None,
    });

    // The control listener gets the same head deadline and limits as the proxy (slowloris on
    // the control port would otherwise hold its single thread's connections forever).
    let control_guard = HeadGuard {
        proxy: Arc::new(ControlApp::new(shared.clone())),
        header_timeout: cfg.header_timeout,
        header_limits: cfg.header_limits,
        keepalive: cfg.keepalive_timeout_seconds,
        max_head: cfg.header_limits.max_bytes.saturating_add(16 * 1024),
        h2c: false,
    };
    let mut control_svc = Listening::new("control".to_string(), control_guard);
    add_listener(&mut control_svc, &control_key, tls.as_deref().filter(|t| t.config().control), false)?;
    server.add_service(PreBound {
        inner: control_svc,
        fds: control_fd.into_iter().map(|fd| (control_key.clone(), fd)).collect(),
        threads: Some(1),
    });

    server.add_service(background_service("signals", Signals { rules: rules.clone(), tls: tls.clone() }));
    if let Some(state) = &tls {
        server.add_service(background_service("tls-watch", crate::tls::TlsWatch { state: state.clone() }));
    }
    server.add_service(background_service("events", EventsDrain { events: events.clone() }));
    server.add_service(background_service("switch-ttl", SwitchTtl { shared: shared.clone() }));
    server.add_service(background_service("limits", LimitsTick { shared: shared.clone() }));
    server.add_service(background_service("state-follower", Follower { shared: shared.clone() }));
    for e in extra {
        server.add_boxed_service(e);
    }

    // Serving (an upgraded process has the sockets by now), before the listening line: whoever
    // sees it can rely on the PID file naming this process — `portcullis run --daemon` and the
    // service manager (systemd `PIDFile=`), which then follows the new process across an upgrade.
    let pid_file = PidFile::write(&cfg.server.pid_file);
    tracing::info!(
        proxy_addr = %proxy_key,
        control_addr = %control_key,
        config_version = %cfg.version,
        rules_version = %rules.current().snapshot.version,
        rules = rules.current().snapshot.rule_count(),
        routes = cfg.routes.entries().len(),
        pools = cfg.pools.len(),
        "listening"
    );
    server.run(RunArgs::default());
    drop(pid_file);
    tracing::info!("stopped");
    Ok(())
}

/// `server.pid_file` names the live process: written when this process starts serving (during a
/// graceful upgrade, the new process overwrites the old one's), removed at exit only if it still
/// names this process (the old process of an upgrade leaves the new one's alone).
struct PidFile {
    path: std::path::PathBuf,
    pid: String,
}

impl PidFile {
    fn write(path: &str) -> Option<PidFile> {
        let path = std::path::PathBuf::from(path);
        let pid = std::process::id().to_string();
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        let dir = if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir };
        match crate::durable::write_durably(dir, name, format!("{pid}\n").as_bytes()) {
            Ok(()) => Some(PidFile { path, pid }),
            Err((e, _)) => {
                tracing::warn!(error = %e, "cannot write the pid file");
                None
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == self.pid);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Keeps this process's state in step with changes another process sharing `state_dir` commits
/// (the other half of a graceful upgrade): every [`crate::txn::FOLLOW_INTERVAL`], one `stat` of
/// the audit log, and a catch-up when it grew.
struct Follower {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for Follower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(crate::txn::FOLLOW_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let shared = self.shared.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = shared.audit.follow() {
                    tracing::error!(error = %e, "cannot follow the audit log");
                }
            })
            .await;
        }
    }
}

/// Adds the listener for `key` to a service: plain TCP, or TLS terminated here when `tls` is set
/// (ALPN `h2` offered on the proxy listener when configured; client certificates when configured).
///
/// Plain TCP connections get no L4 read buffer. Pingora's default is a 64 KiB `BufReader` per
/// connection, allocated at accept and held for the connection's life: 79 KiB of resident memory
/// per idle keep-alive connection in all (`benches/load/idle_memory.py`). Nothing here reads in
/// small pieces that a buffer would batch: the head guard reads the head into its own buffer,
/// Pingora reads bodies into its own, and HTTP/2 (h2c) reads through `h2`'s codec buffer. TLS
/// keeps Pingora's default, which batches the TLS layer's small record reads.
fn add_listener<A>(
    svc: &mut Listening<A>,
    key: &str,
    tls: Option<&crate::tls::TlsState>,
    proxy: bool,
) -> Result<(), String> {
    match tls {
        None => svc.add_listener(plain_listener(key)),
        Some(t) => {
            let settings = t.listener_settings(proxy && t.config().h2, proxy)?;
            svc.add_tls_with_settings(key, None, settings);
        }
    }
    Ok(())
}

/// A plain TCP listener on `key`, without an L4 read buffer (see [`add_listener`]).
fn plain_listener(key: &str) -> ListenerConfig {
    ListenerConfig::tcp(key).l4_buffer(L4BufferSettings::default().read(0))
}

/// HTTP/2 limits (downstream): the header limits of HTTP/1.1 (as HPACK-decoded bytes), a bound on
/// concurrent streams, on streams reset before the application saw them (rapid reset,
/// CVE-2023-44487), on streams the server had to reset for errors, and on the send buffer.
/// CONTINUATION floods end at the header-list limit (the h2 crate counts CONTINUATION frames
/// against it); SETTINGS and PING floods are bounded by the h2 crate itself (one pending ACK
/// each: a peer that does not read its ACKs stalls only its own connection); empty DATA frames
/// by its budget of 100 per connection; refused streams count as error resets. Its per-frame
/// warnings are filtered in `logging`. All of it is tested on the wire in `e2e/h2_floods.rs`.
fn h2_options(cfg: &GatewayConfig) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut o = pingora_core::protocols::http::v2::server::H2Options::new();
    let header_bytes = u32::try_from(cfg.header_limits.max_bytes).unwrap_or(u32::MAX);
    o.max_header_list_size(header_bytes)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(H2_MAX_SEND_BUFFER)
        .max_frame_size(16 * 1024);
    o
}

/// Concurrent streams per HTTP/2 connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams reset by the client before they were accepted (rapid reset): over it, GOAWAY.
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server reset for the client's errors on one connection: over it, GOAWAY.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Bytes buffered per stream for sending.
pub const H2_MAX_SEND_BUFFER: usize = 400 * 1024;

/// Binds a listener now and returns its real address (the key Pingora looks fds up by) and fd.
/// During a graceful upgrade the old process hands its sockets over instead.
fn prebind(addr: SocketAddr, upgrade: bool) -> std::io::Result<(String, Option<RawFd>)> {
    if upgrade {
        return Ok((addr.to_string(), None));
    }
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    let real = l.local_addr()?;
    Ok((real.to_string(), Some(l.into_raw_fd())))
}

/// A listening service whose sockets were bound before the server started.
pub(crate) struct PreBound<S> {
    inner: S,
    fds: Vec<(String, RawFd)>,
    threads: Option<usize>,
}

/// Binds `addr` now and returns a listening service for `app` on it, with the real address.
pub(crate) fn prebound_service<A>(
    name: &str,
    app: A,
    addr: SocketAddr,
    threads: usize,
) -> std::io::Result<(PreBound<Listening<A>>, String)>
where
    A: ServerApp + Send + Sync + 'static,
{
    let (key, fd) = prebind(addr, false)?;
    let mut svc = Listening::new(name.to_string(), app);
    svc.add_listener(plain_listener(&key));
    Ok((
        PreBound { inner: svc, fds: fd.into_iter().map(|fd| (key.clone(), fd)).collect(), threads: Some(threads) },
        key,
    ))
}

#[async_trait]
impl<S: Service> Service for PreBound<S> {
    async fn start_service(&mut self, fds: Option<ListenFds>, shutdown: ShutdownWatch, listeners_per_fd: usize) {
        let table = fds.unwrap_or_else(|| Arc::new(parking_lot::Mutex::new(Fds::new())));
        {
            let mut t = table.lock();
            for (addr, fd) in self.fds.drain(..) {
                if t.get(&addr).is_none() {
                    t.add(addr, fd);
                }
            }
        }
        self.inner.start_service(Some(table), shutdown, listeners_per_fd).await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.threads.or_else(|| self.inner.threads())
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// A total deadline for receiving each request head (slowloris), ahead of Pingora's own parser
/// which only bounds each single read. The bytes read are handed to Pingora untouched.
struct HeadGuard<A> {
    proxy: Arc<A>,
    header_timeout: Duration,
    header_limits: HeaderLimits,
    keepalive: u64,
    max_head: usize,
    /// HTTP/2 by prior knowledge on a plain connection (`listen.h2c`).
    h2c: bool,
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4); its first 18 bytes read as a request
/// head (`PRI * HTTP/2.0`).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What reading a request head came to.
enum HeadRead {
    Complete,
    Closed,
    TimedOut,
    TooLarge,
}

async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    timer: &mut ReadTimer,
    idle: Duration,
    deadline: Duration,
    max: usize,
) -> HeadRead {
    match timer.run(idle, stream.read_buf(buf)).await {
        Some(Ok(n)) if n > 0 => {}
        _ => return HeadRead::Closed,
    }
    if framing::head_complete(buf, 0) {
        return HeadRead::Complete;
    }
    // The head came in pieces: from here on the header deadline runs.
    let start = Instant::now();
    let mut scanned = 0;
    loop {
        if scanned > 0 && framing::head_complete(buf, scanned) {
            return HeadRead::Complete;
        }
        scanned = buf.len();
        if buf.len() > max {
            return HeadRead::TooLarge;
        }
        let remaining = deadline.saturating_sub(start.elapsed());
        match timer.run(remaining, stream.read_buf(buf)).await {
            None => return HeadRead::TimedOut,
            Some(Ok(0)) | Some(Err(_)) => return HeadRead::Closed,
            Some(Ok(_)) => {}
        }
    }
}

/// The deadline of each read of a request head (the wait for its first byte, then the rest of a
/// head that came in pieces): one timer per connection, re-armed for each read, rather than a
/// timer registered and dropped per request (Pingora's `fast_timeout` cost ≈ 2.4k instructions
/// per request here; re-arming a tokio `Sleep` a fraction: benches/README.md, issue 18). Armed
/// only when the read is pending: bytes already there cost no timer at all. Between reads it may
/// still fire (a request that outlasts the allowance): a spurious wake-up of the connection's
/// task, and the next read re-arms it.
#[derive(Default)]
struct ReadTimer(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl ReadTimer {
    /// `read`'s output, or `None` when `limit` passed first.
    async fn run<F: Future>(&mut self, limit: Duration, read: F) -> Option<F::Output> {
        use std::task::Poll;
        let mut read = std::pin::pin!(read);
        let mut armed = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = read.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            let timer = match &mut self.0 {
                Some(t) => {
                    if !armed {
                        t.as_mut().reset(tokio::time::Instant::now() + limit);
                    }
                    t
                }
                None => self.0.insert(Box::pin(tokio::time::sleep(limit))),
            };
            armed = true;
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}

/// What Pingora would refuse itself with a bare answer, refused here as the gateway's: `CONNECT`
/// (405), and Pingora's own check of the request target's authority against `Host` (RFC 9112 §3.2.2: an
/// absolute-form target whose authority differs from `Host`, userinfo, several `Host` fields, an
/// ambiguous `CONNECT` target), run here on the raw head so that its refusal is the gateway's:
/// Pingora answers a bare 400 from inside its parser, before any `ProxyHttp` phase (no JSON body,
/// no request id, no access-log line).
///
/// `head` is what `framing::parse_head` read from `raw` (the head is parsed once for both checks,
/// on every request). The usual request (an origin-form target, one `Host` without userinfo:
/// framing refused several) passes Pingora's authority check by construction, so only whether
/// Pingora can build its head from the request line is left ([`pingora_builds`], no head
/// built). Any other form goes to [`target_authority_raw`], which builds the head as Pingora's
/// parser builds it and asks the very function that parser calls.
fn target_authority(head: &framing::Head<'_>, raw: &[u8]) -> Result<(), Deny> {
    match usual_target(head.method, head.target, head.host, false) {
        Some(verdict) => verdict,
        None => target_authority_raw(raw),
    }
}

/// The verdict on a request line whose answer needs no Pingora head: `CONNECT` (405), or an
/// origin-form target with at most one `Host` (`several_hosts`), that without userinfo
/// ([`pingora_builds`] decides). `None`: any other form, decided by building the head.
fn usual_target(method: &str, target: &str, host: Option<&[u8]>, several_hosts: bool) -> Option<Result<(), Deny>> {
    // Pingora refuses to proxy `CONNECT` with a bare 405 of its own: the same, as ours.
    if method == "CONNECT" {
        return Some(Err(Deny::new(DenyCode::MethodNotAllowed, "connect_method")));
    }
    if !target.starts_with('/') || several_hosts || host.is_some_and(|h| h.contains(&b'@')) {
        return None;
    }
    Some(if pingora_builds(method, target) {
        Ok(())
    } else {
        Err(Deny::new(DenyCode::BadRequest, "malformed_request"))
    })
}

/// Whether Pingora builds its request head from this method and origin-form target (what
/// `pingora_http::RequestHeader::build` can fail on there, without building one: it allocates
/// a header map and a case map): the method through `http::Method`, the target (less any
/// fragment, which Pingora drops first) through `http::uri::PathAndQuery`, as Pingora parses
/// them. httparse hands over UTF-8 only, which Pingora takes as is. The unit test
/// `the_cheap_target_check_agrees_with_building_the_head` holds the two together.
fn pingora_builds(method: &str, target: &str) -> bool {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    http::Method::from_bytes(method.as_bytes()).is_ok() && http::uri::PathAndQuery::try_from(target).is_ok()
}

/// [`target_authority`] on a raw head alone (parsed here): the forms other than the usual one.
/// A head httparse cannot parse as it is is left to Pingora (it may rewrite the request line
/// first).
fn target_authority_raw(raw: &[u8]) -> Result<(), Deny> {
    // Uninitialised slots, as in `framing::check_head`: zeroing 256 headers (8 KiB) cost more
    // than the parse (benches/README.md, issue 18 bypass fixes).
    let mut fields = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; framing::MAX_PARSED_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let escaped;
    let raw = match req.parse_with_uninit_headers(raw, &mut fields) {
        Ok(httparse::Status::Complete(_)) => raw,
        Ok(httparse::Status::Partial) => return Ok(()),
        // Pingora percent-encodes a few bytes of the target and parses again; what still does
        // not parse it answers with a bare 400: refuse it here instead.
        Err(httparse::Error::Token | httparse::Error::Version) => {
            escaped = escape_request_line(raw).ok_or_else(|| Deny::new(DenyCode::BadRequest, "malformed_request"))?;
            req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(&escaped, &mut fields) {
                Ok(httparse::Status::Complete(_)) => &escaped,
                _ => return Err(Deny::new(DenyCode::BadRequest, "malformed_request")),
            }
        }
        Err(_) => return Err(Deny::new(DenyCode::BadRequest, "malformed_request")),
    };
    let _ = raw;
    let (method, target) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
    let mut hosts = req.headers.iter().filter(|f| f.name.eq_ignore_ascii_case("host"));
    let (host, more) = (hosts.next(), hosts.next());
    if let Some(verdict) = usual_target(method, target, host.map(|h| h.value), more.is_some()) {
        return verdict;
    }
    let bad = || Deny::new(DenyCode::BadRequest, "target_authority");
    // Built as Pingora builds it: what fails here fails there, with a bare 400.
    let Ok(mut head) = pingora_http::RequestHeader::build(method, target.as_bytes(), None) else {
        return Err(Deny::new(DenyCode::BadRequest, "malformed_request"));
    };
    for f in req.headers.iter() {
        let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(f.name.as_bytes()), http::HeaderValue::from_bytes(f.value))
        else {
            return Err(Deny::new(DenyCode::BadRequest, "malformed_request"));
        };
        if head.append_header(name, value).is_err() {
            return Err(Deny::new(DenyCode::BadRequest, "malformed_request"));
        }
    }
    pingora_core::protocols::http::authority::validate_request_authority(&head).map_err(|_| bad())
}

/// Pingora's rewrite of a request line httparse refuses (`escape_illegal_request_line`, private
/// in pingora-core): in `METHOD TARGET HTTP/d[.d]` (the last such version on the first line),
/// the target's control bytes, non-ASCII bytes, space, `<`, `>` and `"` percent-encoded. `None`
/// when there is no such line or nothing to encode (Pingora then answers 400).
fn escape_request_line(raw: &[u8]) -> Option<Vec<u8>> {
    let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let line = raw.get(..line_end)?;
    let method = line.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
    if method == 0 || line.get(method) != Some(&b' ') {
        return None;
    }
    let start = method + 1;
    let end = (start + 1..line.len())
        .rev()
        .find(|&i| line.get(i..i + 6) == Some(b" HTTP/") && line.get(i + 6).is_some_and(u8::is_ascii_digit))?;
    let target = line.get(start..end)?;
    let mut out = Vec::with_capacity(raw.len() + 32);
    out.extend_from_slice(raw.get(..start)?);
    let mut changed = false;
    for &b in target {
        if !(0x20..0x7f).contains(&b) || matches!(b, b' ' | b'<' | b'>' | b'"') {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
            changed = true;
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(raw.get(end..)?);
    changed.then_some(out)
}

/// Writes a deny straight to a connection whose request never completed, then closes it.
async fn write_raw_deny(stream: &mut Stream, deny: &Deny, request_id: Option<String>) {
    let id = request_id.unwrap_or_else(new_request_id);
    let r = render(deny, &id);
    let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, deny.code.message());
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("x-request-id: {id}\r\nconnection: close\r\n\r\n"));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&bytes)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.flush()).await;
    tracing::info!(log.logger = "access", http.response.status_code = r.status, deny.code = deny.code.as_str(), deny.reason = %deny.reason, http.request.id = %id, "request head refused");
}

impl<A> HeadGuard<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// HTTP/2 by prior knowledge: the rest of the preface is read under the header deadline,
    /// everything read so far is put back, and Pingora's HTTP/2 server (with `h2_options`)
    /// takes the connection. Anything else that starts like the preface is refused.
    async fn h2c(self: &Arc<Self>, mut stream: Stream, mut buf: BytesMut, shutdown: &ShutdownWatch) -> Option<Stream> {
        let rest = async {
            while buf.len() < H2_PREFACE.len() {
                if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                    return false;
                }
            }
            true
        };
        let complete = matches!(fast_timeout(self.header_timeout, rest).await, Ok(true));
        if !complete || !buf.starts_with(H2_PREFACE) {
            write_raw_deny(&mut stream, &Deny::new(DenyCode::BadRequest, "malformed_request"), None).await;
            return None;
        }
        let Ok(mut plain) = stream.into_any().downcast::<pingora_core::protocols::l4::stream::Stream>() else {
            tracing::warn!("h2c: not a plain TCP connection; closed");
            return None;
        };
        plain.rewind(&buf);
        ServerApp::process_new(&self.proxy, plain, shutdown).await
    }
}

#[async_trait]
impl<A> ServerApp for HeadGuard<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        // HTTP/2 (ALPN `h2` on TLS): no raw HTTP/1 head to guard. Pingora's h2 server (with the
        // limits of `h2_options`) hands each stream to the proxy, whose checks run as on HTTP/1.1
        // (`Portcullis::inspect_head` applies the header limits and framing to the decoded map).
        if matches!(stream.selected_alpn_proto(), Some(pingora_core::protocols::ALPN::H2)) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut stream = stream;
        let mut settings = None;
        let mut idle = self.header_timeout;
        let mut timer = ReadTimer::default();
        let mut first = true;
        loop {
            let mut buf = BytesMut::with_capacity(4096);
            match read_head(&mut stream, &mut buf, &mut timer, idle, self.header_timeout, self.max_head).await {
                HeadRead::Complete if self.h2c && first && buf.starts_with(&H2_PREFACE[..18]) => {
                    return self.h2c(stream, buf, shutdown).await;
                }
                HeadRead::Complete => {
                    // Framing is judged on the raw head, before Pingora's parser: some ambiguous
                    // framings (CL + TE) would otherwise be dropped without an answer.
                    let checked =
                        framing::parse_head(&buf, self.header_limits).and_then(|head| target_authority(&head, &buf));
                    if let Err(deny) = checked {
                        let id = framing::request_id_of_head(&buf);
                        write_raw_deny(&mut stream, &deny, id).await;
                        return None;
                    }
                }
                HeadRead::Closed => return None,
                HeadRead::TimedOut => {
                    write_raw_deny(&mut stream, &Deny::new(DenyCode::RequestTimeout, "header_deadline"), None).await;
                    return None;
                }
                HeadRead::TooLarge => {
                    write_raw_deny(&mut stream, &Deny::new(DenyCode::BadRequest, "headers_too_large"), None).await;
                    return None;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(self.keepalive) });
            if let Some(s) = settings.take() {
                pingora_core::apps::HttpPersistentSettings::apply_to_session(s, &mut session);
            }
            session.set_pipelined_prefix(buf);
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            let (s, ps) = reused.consume();
            stream = s;
            settings = ps;
            idle = Duration::from_secs(self.keepalive.max(1));
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// SIGHUP must never kill the gateway: it is the rule-reload signal.
struct Signals {
    rules: Arc<Rules>,
    tls: Option<Arc<crate::tls::TlsState>>,
}

#[async_trait]
impl BackgroundService for Signals {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!(event.action = "sighup", "SIGHUP received: reloading rules (gateway.yaml changes need a restart or graceful upgrade)");
                    let rules = self.rules.clone();
                    let _ = tokio::task::spawn_blocking(move || rules.reload(Trigger::Signal)).await;
                    if let Some(tls) = self.tls.clone() {
                        let _ = tokio::task::spawn_blocking(move || tls.reload(crate::tls::TlsTrigger::Signal)).await;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// On shutdown, drains the event queues so nothing emitted before SIGTERM is lost.
struct EventsDrain {
    events: Arc<EventBus>,
}

#[async_trait]
impl BackgroundService for EventsDrain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        let events = self.events.clone();
        let _ = tokio::task::spawn_blocking(move || events.shutdown(Duration::from_secs(2))).await;
    }
}

/// Ends a maintenance whose `ttl_seconds` passed (the request path already ignores it), persists
/// that, audits it and emits `switch_changed`.
struct SwitchTtl {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for SwitchTtl {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let shared = self.shared.clone();
            let _ = tokio::task::spawn_blocking(move || SwitchTtl::tick(&shared)).await;
        }
    }
}

impl SwitchTtl {
    fn tick(shared: &Shared) {
        let now = crate::clock::now_unix();
        match crate::txn::housekeeping(&*shared.audit, || shared.sessions.expire(now)) {
            Ok(Err(e)) => tracing::error!(error = %e, "cannot forget expired session revocations"),
            Err(e) => tracing::error!(error = %e, "cannot enter the state store to forget expired revocations"),
            Ok(Ok(_)) => {}
        }
        if shared.switches.plan_expire(now).is_none() {
            return;
        }
        let request_id = new_request_id();
        let meta = crate::txn::Meta {
            actor: Some(crate::switches::TTL_ACTOR),
            role: None,
            source_ip: None,
            request_id: &request_id,
            status: 0,
        };
        let action = crate::audit::AuditAction::MaintenanceExpire;
        let committed = crate::txn::transact(
            &*shared.audit,
            shared.state(),
            meta,
            "maintenance",
            Value::Null,
            action,
            || -> Result<crate::txn::Plan, crate::txn::Refused> {
                // Planned again inside the transaction: another process may have ended it already.
                let (op, old) = shared
                    .switches
                    .plan_expire(now)
                    .ok_or(crate::txn::Refused { status: 409, why: "maintenance already ended".into() })?;
                Ok(crate::txn::Plan {
                    action,
                    op: crate::txn::Op::Switch(op),
                    old,
                    reason: Some("ttl_seconds elapsed".into()),
                })
            },
        );
        match committed {
            Ok(c) => {
                let version = shared.rules.current().snapshot.version.clone();
                shared.events.emit(crate::events::switch_changed_event(
                    &c.change(),
                    crate::switches::TTL_ACTOR,
                    &version,
                ));
                tracing::warn!(
                    event.action = "maintenance_expired",
                    version = c.version,
                    "maintenance mode ended by its ttl"
                );
            }
            Err(crate::txn::TxError::Refused(_)) => {}
            Err(crate::txn::TxError::Store(e)) => {
                tracing::error!(error = %e, "maintenance ttl passed but ending it could not be recorded; retrying");
            }
        }
    }
}

/// Once a second: the rate-limit and quota events of closed aggregation windows, and the quota
/// counters written when they changed; every 10 s, idle limiter keys forgotten. On shutdown, the
/// counters are written one last time (nothing counted before SIGTERM is lost).
struct LimitsTick {
    shared: Arc<Shared>,
}

impl LimitsTick {
    fn tick(shared: &Shared, sweep: bool) {
        let limits = &shared.limits;
        let summaries = limits.drain();
        if !summaries.is_empty() {
            let loaded = shared.rules.current();
            for s in &summaries {
                shared.events.emit(crate::limit_state::summary_event(s, &loaded.snapshot.version));
            }
        }
        if sweep {
            let _ = shared.rules.current().snapshot.rate_limits.sweep(limits.now().mono_ns);
        }
        // Inside the state store's lock: a quota reset another process commits is applied first.
        match crate::txn::housekeeping(&*shared.audit, || limits.persist()) {
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the quota counters (retried next second)"),
            Err(e) => tracing::error!(error = %e, "cannot enter the state store to write the quota counters"),
            Ok(Ok(_)) => {}
        }
    }
}

#[async_trait]
impl BackgroundService for LimitsTick {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sweep_in: u8 = 10;
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.changed() => true,
            };
            sweep_in -= 1;
            let sweep = sweep_in == 0;
            if sweep {
                sweep_in = 10;
            }
            let shared = self.shared.clone();
            let _ = tokio::task::spawn_blocking(move || LimitsTick::tick(&shared, sweep)).await;
            if stop {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
