//! What every phase and the control endpoint share: the compiled config, the pools with their
//! health, the live rules, the event bus, the metrics, the switches and the audit log.

use crate::audit::AuditLog;
use crate::config::GatewayConfig;
use crate::events::{EventBus, RequestWindow};
use crate::metrics::Metrics;
use crate::reload::Rules;
use crate::sessions::Sessions;
use crate::switches::{Bypass, Switches};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// Shared, read-only after start (atomics inside).
pub struct Shared {
    /// The validated config.
    pub config: Arc<GatewayConfig>,
    /// One load balancer per pool, same order as `config.pools`.
    pub pools: Vec<Arc<LoadBalancer<RoundRobin>>>,
    /// Counters.
    pub metrics: Metrics,
    /// When the config was loaded.
    pub loaded_at: SystemTime,
    /// The live rules snapshot and its reload machinery.
    pub rules: Arc<Rules>,
    /// Security events: sinks, store, queries.
    pub events: Arc<EventBus>,
    /// Requests and 5xx per minute, for `/v1/summary`.
    pub requests: RequestWindow,
    /// Maintenance mode, channel kill switches and runtime flags (persisted, audited).
    pub switches: Arc<Switches>,
    /// Who passes while maintenance is on.
    pub bypass: Bypass,
    /// The tamper-evident audit log of the control plane.
    pub audit: Arc<AuditLog>,
    /// Revoked sessions and blocked subjects (persisted).
    pub sessions: Arc<Sessions>,
    /// The webhook replay cache and delivery counters (outlive rule snapshots).
    pub webhooks: crate::webhook_replay::WebhookState,
    /// Quota counters, the limit events' aggregator and the clock origin.
    pub limits: crate::limit_state::LimitState,
    /// PII scanning counters.
    pub pii: crate::pii_response::PiiState,
    /// The gateway's own upstream connections (pooled, keep-alive), for the responses it fetches
    /// itself: those a PII rule may withhold whole (see `proxy::exchange`).
    pub connector: pingora_core::connectors::http::v1::Connector,
    /// Fleet mode's shared store (`None`: one instance, local files only).
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Certificates in service when the gateway terminates TLS.
    pub tls: Option<Arc<crate::tls::TlsState>>,
    /// Alert rule states, sinks and the digest (evaluated on their own thread).
    pub alerting: Arc<crate::alerting::Alerting>,
    /// The automatic blocks' counters (the blocks are made on their own thread).
    pub auto_blocks: Arc<crate::autoblock::AutoBlockStats>,
    /// The anomaly rules' scores and counters (scored on the request path).
    pub anomaly: crate::anomaly::AnomalyState,
}

impl Shared {
    /// `(pool, backend, healthy)` for every backend.
    pub fn backend_health(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        for (cfg, lb) in self.config.pools.iter().zip(&self.pools) {
            for b in lb.backends().get_backend().iter() {
                out.push((cfg.name.clone(), b.addr.to_string(), lb.backends().ready(b)));
            }
        }
        out
    }

    /// The runtime state the control plane changes, for [`crate::txn::transact`].
    pub fn state(&self) -> crate::txn::State<'_> {
        crate::txn::State { switches: &self.switches, sessions: &self.sessions, limits: &self.limits }
    }

    /// True when every pool has at least one healthy backend.
    pub fn upstreams_ready(&self) -> bool {
        self.pool_health().iter().all(|(_, healthy)| *healthy)
    }

    /// Each pool's name, and whether it has at least one healthy backend.
    pub fn pool_health(&self) -> Vec<(&str, bool)> {
        self.config
            .pools
            .iter()
            .zip(&self.pools)
            .map(|(p, lb)| {
                let set = lb.backends().get_backend();
                (p.name.as_str(), set.iter().any(|b| lb.backends().ready(b)))
            })
            .collect()
    }
}

impl crate::alerting::Sources for Shared {
    fn alerting(&self) -> &crate::alerting::Alerting {
        &self.alerting
    }
    fn events(&self) -> &EventBus {
        &self.events
    }
    fn requests(&self) -> &RequestWindow {
        &self.requests
    }
    fn rules(&self) -> &Rules {
        &self.rules
    }
}

impl crate::fleet::Local for Shared {
    fn audit_log(&self) -> &AuditLog {
        &self.audit
    }
    fn runtime(&self) -> crate::txn::State<'_> {
        self.state()
    }
    fn event_bus(&self) -> &EventBus {
        &self.events
    }
    fn live_rules(&self) -> &Rules {
        &self.rules
    }
}

/// True when `dir` exists (or can be created) and a file can be written and removed in it.
pub fn dir_writable(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".ready-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"ok").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
