//! What every phase and the control endpoint share: the compiled config, the pools with their
//! health, the live rules, the event bus, the metrics and the runtime flags.

use crate::config::GatewayConfig;
use crate::events::{EventBus, RequestWindow};
use crate::metrics::Metrics;
use crate::reload::Rules;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;
use std::path::Path;
use std::sync::atomic::AtomicBool;
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
    /// Runtime flags.
    pub flags: Flags,
}

/// Runtime flags read by the checks at request time.
///
/// Initial state comes from the environment as operators already set it (`SAFE_TEST_MODE=true`).
#[derive(Debug, Default)]
pub struct Flags {
    /// `POST /v1/safe-test/{type}` is allowed only while this is on.
    pub safe_test_mode: AtomicBool,
}

impl Flags {
    /// Reads the initial state from the environment.
    pub fn from_env() -> Self {
        Self { safe_test_mode: AtomicBool::new(env_flag("SAFE_TEST_MODE").unwrap_or(false)) }
    }
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, case-insensitively; anything else is unset.
pub fn env_flag(name: &str) -> Option<bool> {
    let v = std::env::var(name).ok()?;
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => {
            tracing::warn!(variable = name, value = %v, "ignoring an environment flag that is not true/false");
            None
        }
    }
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

    /// True when every pool has at least one healthy backend.
    pub fn upstreams_ready(&self) -> bool {
        self.config.pools.iter().zip(&self.pools).all(|(_, lb)| {
            let set = lb.backends().get_backend();
            set.iter().any(|b| lb.backends().ready(b))
        })
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
