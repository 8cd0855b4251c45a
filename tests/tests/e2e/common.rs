//! Shared helpers: the gateway binary, config builders, tokens.
use portcullis_tests::{Gateway, Upstream};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis-e2e");

pub const VIEWER: &str = "pcx_viewer_token_for_tests_0001";
pub const OPERATOR: &str = "pcx_operator_token_for_tests_0002";
pub const ADMIN: &str = "pcx_admin_token_for_tests_0003";

pub fn sha(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

/// The pieces of a test config; `yaml()` renders it.
pub struct Cfg {
    pub pools: Vec<(String, Vec<SocketAddr>, String)>,
    pub routes: String,
    pub extra: String,
    pub limits: String,
}

impl Cfg {
    /// One pool `app` with these backends and a catch-all route plus an `/api` route.
    pub fn new(backends: &[SocketAddr]) -> Cfg {
        Cfg {
            pools: vec![("app".into(), backends.to_vec(), "health_check: { kind: tcp, interval_ms: 200 }".into())],
            routes: "  - id: api\n    path_prefix: /api\n    upstream: app\n    max_body_bytes: 1024\n  - id: default\n    path_prefix: /\n    upstream: app\n".into(),
            extra: String::new(),
            limits: "  max_header_count: 50\n  max_header_bytes: 8192\n  header_timeout_ms: 1000\n".into(),
        }
    }

    pub fn pool(mut self, name: &str, backends: &[SocketAddr], settings: &str) -> Cfg {
        self.pools.push((name.into(), backends.to_vec(), settings.into()));
        self
    }

    pub fn pool_settings(mut self, settings: &str) -> Cfg {
        self.pools[0].2 = settings.into();
        self
    }

    pub fn routes(mut self, routes: &str) -> Cfg {
        self.routes = routes.into();
        self
    }

    pub fn extra(mut self, extra: &str) -> Cfg {
        self.extra.push_str(extra);
        self
    }

    pub fn yaml(&self) -> String {
        let mut pools = String::new();
        for (name, backends, settings) in &self.pools {
            let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
            pools.push_str(&format!("  {name}:\n    backends: [{}]\n", list.join(", ")));
            for line in settings.lines() {
                pools.push_str(&format!("    {line}\n"));
            }
        }
        format!(
            "version: 1\nlisten:\n  proxy: 127.0.0.1:0\n  control: 127.0.0.1:0\nserver:\n  threads: 2\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n  upgrade_sock: \"{{{{DIR}}}}/upgrade.sock\"\n  pid_file: \"{{{{DIR}}}}/portcullis.pid\"\nstate_dir: \"{{{{DIR}}}}/state\"\nlimits:\n{}upstreams:\n{pools}routes:\n{}control:\n  tokens:\n    - {{ name: v, role: viewer, sha256: \"{}\" }}\n    - {{ name: o, role: operator, sha256: \"{}\" }}\n    - {{ name: a, role: admin, sha256: \"{}\" }}\n{}",
            self.limits,
            self.routes,
            sha(VIEWER),
            sha(OPERATOR),
            sha(ADMIN),
            self.extra
        )
    }

    pub fn start(&self) -> Gateway {
        Gateway::start(BIN, &self.yaml())
    }
}

/// A gateway in front of one recording upstream with the default test config.
pub fn simple() -> (Upstream, Gateway) {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).start();
    (up, gw)
}
