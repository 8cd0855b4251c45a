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
    /// Rule files, relative to the gateway's temp dir (`rules/…`).
    pub rule_files: Vec<(String, String)>,
    /// More keys under `rules:` (indented two spaces), e.g. `  poll_interval_ms: 300\n`.
    pub rules_opts: String,
    /// `rules.dir` (default: the gateway's temp dir's `rules/`).
    pub rules_dir: String,
    /// `state_dir` (default: the gateway's temp dir's `state/`): share it to restart on the same state.
    pub state_dir: String,
}

/// The smallest valid rule file.
pub const EMPTY_RULES: &str = "version: 1\n";

impl Cfg {
    /// One pool `app` with these backends and a catch-all route plus an `/api` route.
    pub fn new(backends: &[SocketAddr]) -> Cfg {
        Cfg {
            pools: vec![("app".into(), backends.to_vec(), "health_check: { kind: tcp, interval_ms: 200 }".into())],
            routes: "  - id: api\n    path_prefix: /api\n    upstream: app\n    max_body_bytes: 1024\n  - id: default\n    path_prefix: /\n    upstream: app\n".into(),
            extra: String::new(),
            limits: "  max_header_count: 50\n  max_header_bytes: 8192\n  header_timeout_ms: 1000\n".into(),
            rule_files: vec![("rules/base.yaml".into(), EMPTY_RULES.into())],
            rules_opts: String::new(),
            rules_dir: "{{DIR}}/rules".into(),
            state_dir: "{{DIR}}/state".into(),
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

    /// Adds (or replaces) a rule file `rules/<name>`.
    pub fn rule_file(mut self, name: &str, text: &str) -> Cfg {
        let key = format!("rules/{name}");
        self.rule_files.retain(|(k, _)| *k != key);
        self.rule_files.push((key, text.into()));
        self
    }

    pub fn rules_dir(mut self, dir: &std::path::Path) -> Cfg {
        self.rules_dir = dir.display().to_string();
        self
    }

    pub fn state_dir(mut self, dir: &std::path::Path) -> Cfg {
        self.state_dir = dir.display().to_string();
        self
    }

    pub fn rules_opts(mut self, opts: &str) -> Cfg {
        self.rules_opts.push_str(opts);
        self
    }

    /// The extra files to write beside the config (the rule files).
    pub fn files(&self) -> Vec<(&str, &str)> {
        self.rule_files.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
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
            "version: 1\nlisten:\n  proxy: 127.0.0.1:0\n  control: 127.0.0.1:0\nserver:\n  threads: 2\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n  upgrade_sock: \"{{{{DIR}}}}/upgrade.sock\"\n  pid_file: \"{{{{DIR}}}}/portcullis.pid\"\nstate_dir: \"{}\"\nrules:\n  dir: \"{}\"\n{}limits:\n{}upstreams:\n{pools}routes:\n{}control:\n  tokens:\n    - {{ name: v, role: viewer, sha256: \"{}\" }}\n    - {{ name: o, role: operator, sha256: \"{}\" }}\n    - {{ name: a, role: admin, sha256: \"{}\" }}\n{}",
            self.state_dir,
            self.rules_dir,
            self.rules_opts,
            self.limits,
            self.routes,
            sha(VIEWER),
            sha(OPERATOR),
            sha(ADMIN),
            self.extra
        )
    }

    pub fn start(&self) -> Gateway {
        Gateway::start_with(BIN, &self.yaml(), &[], &self.files())
    }

    pub fn start_env(&self, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with(BIN, &self.yaml(), env, &self.files())
    }
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `GET` on the control endpoint with a token.
pub fn control_get(gw: &Gateway, path: &str, token: &str) -> portcullis_tests::Resp {
    portcullis_tests::Client::new().get(&gw.control_url(path), &[("authorization", &bearer(token))])
}

/// `POST` on the control endpoint with a token and no body.
pub fn control_post(gw: &Gateway, path: &str, token: &str) -> portcullis_tests::Resp {
    portcullis_tests::Client::new().post(&gw.control_url(path), &[("authorization", &bearer(token))], "")
}

/// The value of one Prometheus sample (exact series text, e.g. `x_total{a="b"}`), if present.
pub fn metric(gw: &Gateway, series: &str) -> Option<f64> {
    let text = portcullis_tests::Client::new().get(&gw.control_url("/metrics"), &[]).text();
    text.lines().find_map(|l| {
        l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
    })
}

/// Writes a file atomically (temp file in the same directory, then rename), as editors and
/// config tools do.
pub fn write_atomic(path: &std::path::Path, text: &str) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A gateway in front of one recording upstream with the default test config.
pub fn simple() -> (Upstream, Gateway) {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).start();
    (up, gw)
}
