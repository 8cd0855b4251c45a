//! TLS termination on the proxy (and optionally the control) listener, through Pingora's rustls
//! backend: the `tls:` section of `gateway.yaml`, certificates chosen by SNI with a default,
//! hot reload (file poll and SIGHUP; a broken pair keeps the one in service and says why),
//! client-certificate verification (its CA bundle reloaded the same way), and the certificate
//! checks `validate` runs.
//!
//! rustls rather than BoringSSL/OpenSSL: pure Rust on the `ring` crate the gateway already uses
//! for signatures (no C toolchain, no second crypto library to patch), memory-safe parsing of
//! handshakes, and the speed of BoringSSL on the suites allowed here. FIPS would need BoringSSL.

use crate::events::{EventBus, SecurityEvent};
use crate::metrics::{Declared, Def};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use pingora_core::listeners::tls::TlsSettings;
use portcullis_rules::verdict::{Action, EventType};
use portcullis_rules::yaml::{ConfigError, Doc};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Deserialize;
use serde_json::{json, Map};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `tls:` in `gateway.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    certificates: Vec<RawCert>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    h2: Option<bool>,
    #[serde(default)]
    control: Option<bool>,
    #[serde(default)]
    watch_interval_ms: Option<u64>,
    #[serde(default)]
    expiry_warning_days: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCert {
    cert: String,
    key: String,
    #[serde(default)]
    names: Vec<String>,
}

/// One certificate/key pair as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// PEM certificate chain, end-entity first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// SNI names this pair serves; empty: the DNS names of its certificate.
    pub names: Vec<String>,
}

/// The compiled `tls:` section.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Pairs in order; the first is the default (no SNI, or an SNI no pair serves).
    pub certificates: Vec<CertSpec>,
    /// CA bundle: when set, every client must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Offer `h2` by ALPN (with `http/1.1`).
    pub h2: bool,
    /// The control listener terminates TLS too (same certificates, `http/1.1` only).
    pub control: bool,
    /// How often the files are checked for changes.
    pub watch_interval: Duration,
    /// An event (and a warning) once a certificate is this close to its expiry.
    pub expiry_warning: Duration,
}

/// Compiles `tls:`, checking every pair (readable, key matches, not expired, names covered).
pub(crate) fn compile(doc: &Doc, raw: RawTls, base: &Path, errs: &mut Vec<ConfigError>) -> TlsConfig {
    let path = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    if raw.certificates.is_empty() {
        errs.push(doc.error_at("tls.certificates", "at least one certificate is needed (the first is the default)"));
    }
    let now = chrono::Utc::now().timestamp();
    let mut certificates = Vec::new();
    for (i, c) in raw.certificates.into_iter().enumerate() {
        let spec = CertSpec {
            cert: path(&c.cert),
            key: path(&c.key),
            names: c.names.iter().map(|n| n.trim().to_ascii_lowercase()).collect(),
        };
        match load_pair(&spec, now) {
            Ok(_) => {}
            Err(e) => errs.push(doc.error_at(&format!("tls.certificates[{i}]"), e)),
        }
        certificates.push(spec);
    }
    let client_ca = raw.client_ca.map(|p| {
        let p = path(&p);
        if let Err(e) = client_roots(&p) {
            errs.push(doc.error_at("tls.client_ca", e));
        }
        p
    });
    let interval = raw.watch_interval_ms.unwrap_or(2000);
    if interval < 100 {
        errs.push(doc.error_at("tls.watch_interval_ms", "must be at least 100"));
    }
    TlsConfig {
        certificates,
        client_ca,
        h2: raw.h2.unwrap_or(true),
        control: raw.control.unwrap_or(false),
        watch_interval: Duration::from_millis(interval.max(100)),
        expiry_warning: Duration::from_secs(raw.expiry_warning_days.unwrap_or(21).saturating_mul(86_400)),
    }
}

/// A pair loaded and checked, ready to serve.
#[derive(Debug, Clone)]
pub struct CertPair {
    key: Arc<CertifiedKey>,
    /// Lowercase names it serves (configured, else the certificate's DNS names).
    names: Vec<String>,
    /// The certificate's notAfter, Unix seconds.
    pub not_after: i64,
}

/// Makes ring the process's rustls provider (once; later calls are no-ops). Every TLS client and
/// server built through rustls's process default (the fleet's `rediss://` client builds its config
/// that way) then works even if a second provider's feature were ever compiled in, where rustls
/// would otherwise refuse to pick one and panic.
pub fn install_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn read_pem(path: &Path) -> Result<Vec<rustls_pemfile::Item>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    rustls_pemfile::read_all(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    read_pem(path)?
        .into_iter()
        .find_map(|i| match i {
            rustls_pemfile::Item::Pkcs8Key(k) => Some(PrivateKeyDer::from(k)),
            rustls_pemfile::Item::Pkcs1Key(k) => Some(PrivateKeyDer::from(k)),
            rustls_pemfile::Item::Sec1Key(k) => Some(PrivateKeyDer::from(k)),
            _ => None,
        })
        .ok_or_else(|| format!("{}: no private key in the file", path.display()))
}

/// Checks a client certificate pair (the fleet's mTLS to Redis): a chain and a key that parse,
/// and the key is the certificate's. No name or validity check: the server judges those.
pub fn check_client_pair(cert: &Path, key: &Path) -> Result<(), String> {
    let chain = crate::alerting::tls::read_ca_file(cert)?;
    let key_der = read_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: unusable private key: {e}", key.display()))?;
    CertifiedKey::new(chain, signing)
        .keys_match()
        .map_err(|e| format!("{} and {}: the key does not match the certificate ({e})", key.display(), cert.display()))
}

/// Loads a pair and checks it: a chain and a key that parse, the key is the certificate's, the
/// certificate is valid now, and its names cover the configured ones.
pub fn load_pair(spec: &CertSpec, now: i64) -> Result<CertPair, String> {
    let chain: Vec<CertificateDer<'static>> = read_pem(&spec.cert)?
        .into_iter()
        .filter_map(|i| match i {
            rustls_pemfile::Item::X509Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let Some(leaf) = chain.first().cloned() else {
        return Err(format!("{}: no certificate in the file", spec.cert.display()));
    };
    let key = read_key(&spec.key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", spec.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!("{} and {}: the key does not match the certificate ({e})", spec.key.display(), spec.cert.display())
    })?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("{}: unparseable certificate: {e}", spec.cert.display()))?;
    let validity = parsed.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if now >= not_after {
        return Err(format!("{}: expired at {}", spec.cert.display(), validity.not_after));
    }
    if now < not_before {
        return Err(format!("{}: not valid before {}", spec.cert.display(), validity.not_before));
    }
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = parsed.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                sans.push(d.to_ascii_lowercase());
            }
        }
    }
    if sans.is_empty() {
        return Err(format!("{}: the certificate has no DNS subject alternative name", spec.cert.display()));
    }
    let uncovered: Vec<&str> =
        spec.names.iter().filter(|n| !sans.iter().any(|s| name_matches(s, n))).map(String::as_str).collect();
    if !uncovered.is_empty() {
        return Err(format!(
            "{}: its subject alternative names ({}) do not cover {}",
            spec.cert.display(),
            sans.join(", "),
            uncovered.join(", ")
        ));
    }
    let names = if spec.names.is_empty() { sans } else { spec.names.clone() };
    Ok(CertPair { key: Arc::new(certified), names, not_after })
}

/// Whether a certificate/config name (`example.com`, `*.example.com`) covers a host name: a
/// wildcard covers exactly one leftmost label.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| {
            !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(suffix)
        }),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

fn client_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for item in read_pem(path)? {
        if let rustls_pemfile::Item::X509Certificate(c) = item {
            roots.add(c).map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in the file", path.display()));
    }
    Ok(roots)
}

/// The client-certificate verifier of a CA bundle (every client must present a certificate).
fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots(path)?), provider())
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The client CA in service, replaced by reloads: each handshake verifies with the bundle last
/// loaded and checked. No CA names are sent as hints (rustls borrows them from the verifier for
/// the handshake, which a swap could not honour): an empty list asks the client for its
/// certificate whichever CA issued it (RFC 8446 section 4.2.4, RFC 5246 section 7.4.4).
#[derive(Debug)]
struct ReloadableClientCa {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
}

impl ClientCertVerifier for ReloadableClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current.load().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current.load().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current.load().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The pairs in service, in configured order (index 0 is the default).
#[derive(Debug, Default)]
pub struct CertStore {
    pairs: Vec<CertPair>,
}

impl CertStore {
    /// The pair for an SNI name: an exact name first, then a wildcard, then the default.
    pub fn pick(&self, sni: Option<&str>) -> Option<&CertPair> {
        if let Some(host) = sni {
            let exact =
                self.pairs.iter().find(|p| p.names.iter().any(|n| !n.starts_with("*.") && name_matches(n, host)));
            if let Some(p) = exact.or_else(|| self.pairs.iter().find(|p| p.names.iter().any(|n| name_matches(n, host))))
            {
                return Some(p);
            }
        }
        self.pairs.first()
    }
}

#[derive(Debug)]
struct SniResolver {
    store: Arc<ArcSwap<CertStore>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.load().pick(hello.server_name()).map(|p| p.key.clone())
    }
}

/// Why the certificates were (re)loaded.
#[derive(Debug, Clone, Copy)]
pub enum TlsTrigger {
    /// The files changed on disk.
    Watch,
    /// SIGHUP.
    Signal,
}

/// The live certificates, their reloads, expiry warnings and metrics.
pub struct TlsState {
    cfg: TlsConfig,
    store: Arc<ArcSwap<CertStore>>,
    events: Arc<EventBus>,
    /// What each pair's files looked like when last read (so a poll re-reads only on change).
    seen: Mutex<Vec<u64>>,
    /// The client CA in service (with `tls.client_ca`), and what its file looked like when read.
    client_ca: Option<Arc<ReloadableClientCa>>,
    ca_seen: Mutex<u64>,
    /// Certificates (by notAfter and index) whose expiry warning was already sent.
    warned: Mutex<HashSet<(usize, i64)>>,
    reloads_ok: std::sync::atomic::AtomicU64,
    reloads_failed: std::sync::atomic::AtomicU64,
}

fn fingerprint(paths: &[&Path]) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in paths {
        match std::fs::read(p) {
            Ok(b) => h.update(&b),
            Err(_) => h.update(b"\0unreadable"),
        }
        h.update(b"\0");
    }
    let d = h.finalize();
    d.iter().take(8).fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

const TLS_CERTIFICATE_NOT_AFTER_SECONDS: Def<1> = Def::gauge(
    "portcullis_tls_certificate_not_after_seconds",
    "Expiry (notAfter, Unix seconds) of each certificate in service.",
    ["cert"],
);
const TLS_RELOADS_TOTAL: Def<1> =
    Def::counter("portcullis_tls_reloads_total", "Certificate reloads by result.", ["result"]);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&TLS_CERTIFICATE_NOT_AFTER_SECONDS, &TLS_RELOADS_TOTAL];

impl TlsState {
    /// Loads every pair (the gateway does not start on a pair it cannot serve).
    pub fn start(cfg: TlsConfig, events: Arc<EventBus>) -> Result<Arc<TlsState>, String> {
        install_provider();
        let now = chrono::Utc::now().timestamp();
        let mut pairs = Vec::new();
        let mut seen = Vec::new();
        for spec in &cfg.certificates {
            seen.push(fingerprint(&[&spec.cert, &spec.key]));
            pairs.push(load_pair(spec, now)?);
        }
        let ca_seen = cfg.client_ca.as_deref().map(|p| fingerprint(&[p])).unwrap_or(0);
        let client_ca = match &cfg.client_ca {
            Some(p) => Some(Arc::new(ReloadableClientCa { current: ArcSwap::from_pointee(client_verifier(p)?) })),
            None => None,
        };
        let state = Arc::new(TlsState {
            cfg,
            store: Arc::new(ArcSwap::from_pointee(CertStore { pairs })),
            events,
            seen: Mutex::new(seen),
            client_ca,
            ca_seen: Mutex::new(ca_seen),
            warned: Mutex::new(HashSet::new()),
            reloads_ok: Default::default(),
            reloads_failed: Default::default(),
        });
        state.warn_expiring(now);
        Ok(state)
    }

    /// The compiled section.
    pub fn config(&self) -> &TlsConfig {
        &self.cfg
    }

    /// Pingora listener settings: TLS 1.2 and 1.3 only (Pingora's rustls backend), the `ring`
    /// provider's suites (AEAD only: AES-GCM and ChaCha20-Poly1305, ECDHE key exchange), our SNI
    /// resolver, ALPN, client certificates when configured. Session resumption: rustls' defaults
    /// (an in-memory session cache, TLS 1.3 tickets).
    pub fn listener_settings(&self, h2: bool, mtls: bool) -> Result<TlsSettings, String> {
        let mut s = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
        s.set_cert_resolver(Arc::new(SniResolver { store: self.store.clone() }));
        if h2 {
            s.enable_h2();
        } else {
            s.set_alpn(pingora_core::protocols::ALPN::H1);
        }
        if let (true, Some(ca)) = (mtls, &self.client_ca) {
            s.set_client_cert_verifier(ca.clone());
        }
        Ok(s)
    }

    /// Re-reads the pairs and the client CA whose files changed (`Watch`) or all of them
    /// (`Signal`). A pair or CA bundle that fails its checks keeps the one in service; each
    /// failure is an event saying why.
    pub fn reload(&self, trigger: TlsTrigger) {
        let now = chrono::Utc::now().timestamp();
        let current = self.store.load_full();
        let mut pairs = current.pairs.clone();
        let mut changed = false;
        let mut seen = self.seen.lock();
        for (i, spec) in self.cfg.certificates.iter().enumerate() {
            let fp = fingerprint(&[&spec.cert, &spec.key]);
            let unchanged = seen.get(i) == Some(&fp);
            if unchanged && matches!(trigger, TlsTrigger::Watch) {
                continue;
            }
            if let Some(s) = seen.get_mut(i) {
                *s = fp;
            }
            match load_pair(spec, now) {
                Ok(p) => {
                    if let Some(slot) = pairs.get_mut(i) {
                        *slot = p;
                        changed = true;
                    }
                    self.reloads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(event.action = "tls_reload", cert = %spec.cert.display(), ?trigger, "certificate loaded");
                }
                Err(e) => self.refused(&[("cert", &spec.cert), ("key", &spec.key)], &e, trigger),
            }
        }
        drop(seen);
        if changed {
            self.store.store(Arc::new(CertStore { pairs }));
        }
        self.reload_client_ca(trigger);
        self.warn_expiring(now);
    }

    /// Re-reads the client CA bundle (when its file changed, or on `Signal`).
    fn reload_client_ca(&self, trigger: TlsTrigger) {
        let (Some(path), Some(ca)) = (&self.cfg.client_ca, &self.client_ca) else { return };
        let fp = fingerprint(&[path]);
        {
            let mut seen = self.ca_seen.lock();
            if *seen == fp && matches!(trigger, TlsTrigger::Watch) {
                return;
            }
            *seen = fp;
        }
        match client_verifier(path) {
            Ok(v) => {
                ca.current.store(Arc::new(v));
                self.reloads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(event.action = "tls_reload", client_ca = %path.display(), ?trigger, "client CA loaded");
            }
            Err(e) => self.refused(&[("client_ca", path)], &e, trigger),
        }
    }

    /// A reload refused: counted, logged, and a `tls_reload_failed` event naming the files.
    fn refused(&self, files: &[(&str, &Path)], error: &str, trigger: TlsTrigger) {
        self.reloads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let names: Vec<String> = files.iter().map(|(_, p)| p.display().to_string()).collect();
        tracing::warn!(event.action = "tls_reload_failed", files = %names.join(", "), error = %error, "TLS reload refused: what is in service stays");
        let mut detail = Map::new();
        for ((field, _), name) in files.iter().zip(names) {
            detail.insert((*field).into(), json!(name));
        }
        detail.insert("error".into(), json!(error));
        detail.insert("trigger".into(), json!(format!("{trigger:?}").to_ascii_lowercase()));
        self.events.emit(SecurityEvent::system(EventType::TlsReloadFailed, Action::Rejected, None, detail));
    }

    /// One event (and a warning) per certificate entering its expiry window.
    fn warn_expiring(&self, now: i64) {
        let window = i64::try_from(self.cfg.expiry_warning.as_secs()).unwrap_or(i64::MAX);
        let store = self.store.load();
        let mut warned = self.warned.lock();
        for (i, p) in store.pairs.iter().enumerate() {
            if p.not_after.saturating_sub(now) > window || !warned.insert((i, p.not_after)) {
                continue;
            }
            let cert = self.cfg.certificates.get(i).map(|s| s.cert.display().to_string()).unwrap_or_default();
            tracing::warn!(event.action = "tls_certificate_expiring", cert = %cert, not_after = p.not_after, "certificate expires soon");
            let mut detail = Map::new();
            detail.insert("cert".into(), json!(cert));
            detail.insert("not_after".into(), json!(crate::events::format_time_ms(p.not_after.saturating_mul(1000))));
            detail.insert("days_left".into(), json!(p.not_after.saturating_sub(now) / 86_400));
            self.events.emit(SecurityEvent::system(EventType::TlsCertificateExpiring, Action::Flagged, None, detail));
        }
    }

    /// `portcullis_tls_certificate_not_after_seconds{cert}` and reload counters.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&TLS_CERTIFICATE_NOT_AFTER_SECONDS);
        let store = self.store.load();
        for (i, p) in store.pairs.iter().enumerate() {
            let cert = self.cfg.certificates.get(i).map(|s| s.cert.display().to_string()).unwrap_or_default();
            f.sample([&cert], p.not_after);
        }
        let ok = self.reloads_ok.load(std::sync::atomic::Ordering::Relaxed);
        let failed = self.reloads_failed.load(std::sync::atomic::Ordering::Relaxed);
        out.family(&TLS_RELOADS_TOTAL).sample(["ok"], ok).sample(["failed"], failed);
    }
}

/// Polls the certificate files (the watch) and checks expiry windows.
pub struct TlsWatch {
    /// The live state.
    pub state: Arc<TlsState>,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for TlsWatch {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(self.state.cfg.watch_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let state = self.state.clone();
                    let _ = tokio::task::spawn_blocking(move || state.reload(TlsTrigger::Watch)).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
