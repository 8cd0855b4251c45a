//! Trust roots for the alert sinks' outbound TLS (HTTPS webhooks, SMTP STARTTLS / implicit TLS):
//! the system store, plus a sink's `ca_file`.

use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// The certificates of a PEM file (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The system's trust roots and the extra CA file's certificates, DER. System certificates that
/// do not load are skipped (a broken store must not stop alerts to a sink with its own CA).
pub fn roots(ca_file: Option<&Path>) -> Vec<CertificateDer<'static>> {
    let mut out = rustls_native_certs::load_native_certs().unwrap_or_default();
    if let Some(p) = ca_file {
        match read_ca_file(p) {
            Ok(c) => out.extend(c),
            Err(e) => tracing::error!(error = %e, "alert sink CA file"),
        }
    }
    out
}

/// A rustls client config trusting `roots` (ring, TLS 1.2 and 1.3).
pub fn client_config(roots: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    let _ = store.add_parsable_certificates(roots.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client config: {e}"))?;
    Ok(Arc::new(builder.with_root_certificates(store).with_no_client_auth()))
}
