//! One-shot commands: validate and token new.
use crate::common::*;
use portcullis_tests::{run_cli, TempDir, Upstream};

#[test]
fn validate_accepts_a_good_config() {
    let up = Upstream::start("app");
    let dir = TempDir::new("validate-ok");
    let yaml = Cfg::new(&[up.addr()]).yaml().replace("{{DIR}}", &dir.path().display().to_string());
    let path = dir.write("gateway.yaml", yaml);
    dir.write("rules/base.yaml", EMPTY_RULES);
    let (code, out, err) = run_cli(BIN, &["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 0 rules, version "), "{out}");
}

#[test]
fn validate_reports_every_error_with_file_line_and_key() {
    let dir = TempDir::new("validate-bad");
    let yaml = "version: 1\nlisten:\n  proxy: 127.0.0.1:0\nupstreams:\n  app:\n    backends: [\"127.0.0.1:1\"]\n    conect_timeout_ms: 5\nroutes:\n  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: other\n    path_prefx: /\n    upstream: app\nlogging:\n  levle: debug\n";
    let path = dir.write("gateway.yaml", yaml);
    let p = path.to_str().unwrap();
    let (code, out, err) = run_cli(BIN, &["validate", "--config", p], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("{p}:7: upstreams.app.conect_timeout_ms: unknown field")), "{out}");
    assert!(out.contains(&format!("{p}:13: routes[1].path_prefx: unknown field")), "{out}");
    assert!(out.contains(&format!("{p}:16: logging.levle: unknown field")), "{out}");
    assert!(out.contains("connect_timeout_ms"), "did-you-mean: {out}");

    let (code, out, _) = run_cli(BIN, &["validate", "--config", "/nonexistent/gateway.yaml"], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("/nonexistent/gateway.yaml"), "{out}");

    // `run` refuses a broken config the same way and never starts.
    let (code, _, err) = run_cli(BIN, &["run", "--config", p], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("routes[1].path_prefx"), "{err}");
}

#[test]
fn shipped_configs_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (code, out, err) =
        run_cli(BIN, &["validate", "--config", root.join("config/gateway.yaml").to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn token_new_prints_a_token_and_its_hash() {
    let (code, out, _) = run_cli(BIN, &["token", "new", "--role", "operator", "--name", "alice"], &[]);
    assert_eq!(code, 0);
    let token = out.lines().next().unwrap().rsplit(' ').next().unwrap();
    assert!(token.starts_with("pcx_") && token.len() == 68, "{out}");
    assert!(out.contains(&sha(token)), "{out}");
    assert!(out.contains("role: operator"));
    let (code, _, _) = run_cli(BIN, &["token", "new", "--role", "root", "--name", "x"], &[]);
    assert_ne!(code, 0);
}

#[test]
fn validate_accepts_pii_rules_and_reports_their_mistakes() {
    let up = Upstream::start("app");
    let dir = TempDir::new("validate-pii");
    let yaml = Cfg::new(&[up.addr()]).yaml().replace("{{DIR}}", &dir.path().display().to_string());
    let path = dir.write("gateway.yaml", yaml);
    dir.write("rules/base.yaml", "version: 1\npii:\n  - id: no-cards\n    detectors: {card: block}\n");
    let (code, out, err) = run_cli(BIN, &["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 rules"), "{out}");
    dir.write("rules/base.yaml", "version: 1\npii:\n  - id: no-cards\n    detectors: {card: shred}\n");
    let (code, out, err) = run_cli(BIN, &["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("base.yaml:4: pii[0].detectors.card"), "{out}");
}
