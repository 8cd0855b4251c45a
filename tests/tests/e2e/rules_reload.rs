//! Rule files: enforced through the wire, hot-reloaded by watch, poll, SIGHUP and the control
//! endpoint; a broken file changes nothing but an error and an event.
use crate::common::*;
use portcullis_tests::{run_cli, wait_until, Client, Gateway, TempDir, Upstream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FAST: &str = "  debounce_ms: 50\n  poll_interval_ms: 500\n";

/// A valid rule file that blocks one path.
fn blocking(path: &str) -> String {
    format!(
        "version: 1\nfirewall:\n  - id: block-{}\n    match:\n      paths: [\"{path}\"]\n",
        path.trim_start_matches('/').replace('/', "-")
    )
}

/// An invalid rule file: the error is on line 6 (`firewall[0].match.client_ips[0]`).
const BROKEN: &str = "version: 1\nfirewall:\n  - id: broken\n    match:\n      client_ips:\n        - 300.1.2.3/8\n";

fn status(gw: &Gateway, path: &str) -> u16 {
    Client::new().get(&gw.url(path), &[]).status
}

fn rules_info(gw: &Gateway) -> serde_json::Value {
    control_get(gw, "/v1/rules", VIEWER).json()
}

#[test]
fn firewall_rules_enforce_and_monitor_through_the_wire() {
    let up = Upstream::start("app");
    let rules = "version: 1\nfirewall:\n  - id: scanners\n    match:\n      headers:\n        user-agent: '(?i)sqlmap'\n  - id: watch-admin\n    mode: monitor\n    match:\n      paths: [\"/api/admin\"]\n  - id: bad-range\n    match:\n      client_ips: [\"127.0.0.0/8\"]\n      paths: [\"/api/internal\"]\n";
    let gw = Cfg::new(&[up.addr()]).rule_file("fw.yaml", rules).start();
    let c = Client::new();

    let r = c.get(&gw.url("/api/orders"), &[("user-agent", "sqlmap/1.7")]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "forbidden");
    assert!(r.header("x-request-id").is_some());
    let r = c.get(&gw.url("/api/internal/x"), &[]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "ip_blocked");
    // Monitor: same detection, the request goes through.
    let r = c.get(&gw.url("/api/admin/users"), &[]);
    assert_eq!(r.status, 200);
    // Encoded forms reach the rule as the canonical path.
    let r = c.get(&gw.url("/api/%69nternal/x"), &[]);
    assert_eq!(r.status, 403, "percent-encoded letters are decoded before rules match");
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/api/admin/users".to_string()], "nothing blocked reached the upstream");
    assert_eq!(c.get(&gw.url("/api/orders"), &[("user-agent", "Mozilla/5.0")]).status, 200);

    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        control_get(&gw, "/v1/events?type=firewall_block", VIEWER).json()["events"].as_array().map_or(0, Vec::len) == 4
    }));
    let ev = control_get(&gw, "/v1/events?type=firewall_block", VIEWER).json();
    let events = ev["events"].as_array().unwrap();
    let flagged: Vec<_> = events.iter().filter(|e| e["action"] == "flagged").collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["mode"], "monitor");
    assert_eq!(flagged[0]["rule_id"], "watch-admin");
    assert_eq!(flagged[0]["path"], "/api/admin/users");
    let blocked: Vec<_> = events.iter().filter(|e| e["action"] == "blocked").collect();
    assert_eq!(blocked.len(), 3);
    assert!(blocked.iter().all(|e| e["mode"] == "enforce" && e["client_ip"] == "127.0.0.1"));
    assert!(blocked.iter().any(|e| e["rule_id"] == "scanners" && e["route"] == "api"));
    assert_eq!(blocked[0]["rules_version"], rules_info(&gw)["version"]);
}

#[test]
fn hot_reload_under_load_applies_every_valid_version_and_rejects_every_invalid_one() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).rules_opts(FAST).rule_file("live.yaml", &blocking("/api/v0")).start();
    let file = gw.dir().join("rules/live.yaml");
    assert_eq!(status(&gw, "/api/v0"), 403);

    // Load: two clients on keep-alive connections, continuously.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let url = gw.url("/api/steady");
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
            std::thread::spawn(move || {
                let c = Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match c.try_request("GET", &url, &[], None) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let mut slowest = Duration::ZERO;
    let mut last_valid = "/api/v0".to_string();
    for i in 1..=50 {
        let started = Instant::now();
        if i % 2 == 0 {
            let path = format!("/api/v{i}");
            let before = rules_info(&gw)["version"].clone();
            write_atomic(&file, &blocking(&path));
            // Watch the version, not the path: probing the path before the swap would reach
            // the upstream legitimately and blur what the upstream saw.
            assert!(
                wait_until(Duration::from_secs(10), Duration::from_millis(5), || rules_info(&gw)["version"] != before),
                "version {i} was never applied\n{}",
                gw.output()
            );
            assert_eq!(status(&gw, &path), 403, "live as soon as the version shows");
            assert_eq!(status(&gw, &last_valid), 200, "the previous version is gone");
            last_valid = path;
        } else {
            // A new broken version each time (a comment keeps each one distinct).
            write_atomic(&file, &format!("# attempt {i}\n{BROKEN}"));
            assert!(
                wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
                    let last = &rules_info(&gw)["last_reload"];
                    last["success"] == false
                        && last["errors"].as_array().is_some_and(|e| {
                            e.iter().any(|m| {
                                let m = m.as_str().unwrap_or("");
                                m.contains("live.yaml:7: firewall[0].match.client_ips[0]") && m.contains("300.1.2.3/8")
                            })
                        })
                }),
                "broken version {i} was not reported: {}",
                rules_info(&gw)
            );
            assert_eq!(status(&gw, &last_valid), 403, "the old rules still hold after a bad reload");
            assert_eq!(metric(&gw, "portcullis_rules_last_reload_success"), Some(0.0));
        }
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    eprintln!(
        "50 reloads under load: {} requests ok, {} failed, slowest change-to-live {:?}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        slowest
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during 50 reloads");
    assert!(ok.load(Ordering::Relaxed) > 50);
    assert_eq!(metric(&gw, "portcullis_rules_reloads_total{result=\"applied\"}"), Some(25.0));
    assert_eq!(metric(&gw, "portcullis_rules_reloads_total{result=\"failed\"}"), Some(25.0));
    let ev = control_get(&gw, "/v1/events?type=rules_reload_failed&limit=1000", VIEWER).json();
    assert_eq!(ev["events"].as_array().unwrap().len(), 25, "one event per rejected version");
    let e = &ev["events"][0];
    assert_eq!(e["severity"], "warning");
    assert_eq!(e["action"], "rejected");
    assert!(e["detail"]["errors"][0].as_str().unwrap().contains("client_ips[0]"));
    // A path reached the upstream only once its rule was replaced (the one check that it is now
    // open), never while it was blocked.
    let seen = up.requests();
    for i in (0..=50).step_by(2) {
        let path = format!("/api/v{i}");
        let n = seen.iter().filter(|r| r.path == path).count();
        assert_eq!(n, usize::from(i < 50), "{path} reached the upstream {n} times");
    }
}

/// Kubernetes mounts a ConfigMap as `..<timestamp>/` directories, a `..data` symlink to the
/// current one, and one symlink per key through `..data`; an update swaps `..data` atomically.
#[test]
fn kubernetes_configmap_symlink_swap() {
    fn publish(dir: &Path, generation: u32, text: &str) {
        let gen = dir.join(format!("..gen_{generation}"));
        std::fs::create_dir_all(&gen).unwrap();
        std::fs::write(gen.join("rules.yaml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..gen_{generation}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        if !dir.join("rules.yaml").exists() {
            std::os::unix::fs::symlink("..data/rules.yaml", dir.join("rules.yaml")).unwrap();
        }
    }
    let up = Upstream::start("app");
    let cm = TempDir::new("configmap");
    publish(cm.path(), 1, &blocking("/api/one"));
    let gw = Cfg::new(&[up.addr()])
        .rules_dir(cm.path())
        .rules_opts("  debounce_ms: 50\n  poll_interval_ms: 30000\n")
        .start();
    assert_eq!(status(&gw, "/api/one"), 403);
    assert_eq!(rules_info(&gw)["files"].as_array().unwrap().len(), 1, "..data and ..gen_* are not rule files");

    for g in 2..=6 {
        let path = format!("/api/gen{g}");
        let started = Instant::now();
        publish(cm.path(), g, &blocking(&path));
        // The poll is 30 s away: only the watch can make this pass.
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(10), || status(&gw, &path) == 403),
            "generation {g} not applied"
        );
        eprintln!("configmap generation {g} live after {:?}", started.elapsed());
    }
    publish(cm.path(), 7, BROKEN);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(20), || rules_info(&gw)["last_reload"]
        ["success"]
        == false));
    assert_eq!(status(&gw, "/api/gen6"), 403, "a broken ConfigMap keeps the running rules");
    publish(cm.path(), 8, &blocking("/api/gen8"));
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(10), || status(&gw, "/api/gen8") == 403));
    assert_eq!(status(&gw, "/api/gen6"), 200);
}

#[test]
fn sighup_and_the_control_endpoint_reload_and_report_every_error() {
    let up = Upstream::start("app");
    // No watch, and a poll far away: only SIGHUP and the API reload.
    let gw = Cfg::new(&[up.addr()])
        .rules_opts("  watch: false\n  poll_interval_ms: 600000\n")
        .rule_file("a.yaml", &blocking("/api/a"))
        .start();
    let v1 = rules_info(&gw)["version"].as_str().unwrap().to_string();
    std::fs::write(gw.dir().join("rules/a.yaml"), blocking("/api/b")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&gw, "/api/b"), 200, "not reloaded without a trigger");

    assert!(gw.signal("HUP"));
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(20), || status(&gw, "/api/b") == 403));
    assert!(gw.is_running(), "SIGHUP reloads, it never kills");
    let v2 = rules_info(&gw)["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert_eq!(rules_info(&gw)["last_reload"]["trigger"], "sighup");

    // Two broken files at once: every error comes back in the reload answer.
    std::fs::write(gw.dir().join("rules/a.yaml"), BROKEN).unwrap();
    std::fs::write(gw.dir().join("rules/b.yaml"), "version: 1\nfirewal: []\n").unwrap();
    std::fs::write(gw.dir().join("rules/c.yaml"), "version: 2\n").unwrap();
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], "invalid_rules");
    let errors: Vec<String> =
        body["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
    assert!(errors.iter().any(|e| e.contains("a.yaml:6: firewall[0].match.client_ips[0]")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("c.yaml:1: version")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("b.yaml:2: firewal") && e.contains("firewall")),
        "did-you-mean: {errors:?}"
    );
    assert_eq!(rules_info(&gw)["version"], v2.as_str(), "the running rules stay");
    assert_eq!(status(&gw, "/api/b"), 403);
    assert_eq!(metric(&gw, "portcullis_rules_last_reload_success"), Some(0.0));
    assert_eq!(control_post(&gw, "/v1/rules/reload", VIEWER).status, 403);
    assert_eq!(control_get(&gw, "/v1/rules/reload", OPERATOR).status, 405);
    assert_eq!(Client::new().post(&gw.control_url("/v1/rules/reload"), &[], "").status, 401);

    std::fs::remove_file(gw.dir().join("rules/b.yaml")).unwrap();
    std::fs::remove_file(gw.dir().join("rules/c.yaml")).unwrap();
    std::fs::write(gw.dir().join("rules/a.yaml"), blocking("/api/c")).unwrap();
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["changed"], true);
    assert_eq!(r.json()["previous"], v2.as_str());
    assert_eq!(status(&gw, "/api/c"), 403, "live when the answer arrives");
    assert_eq!(metric(&gw, "portcullis_rules_last_reload_success"), Some(1.0));
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.json()["changed"], false);
    let info = rules_info(&gw);
    assert_eq!(info["rules"][0]["id"], "block-api-c");
    assert_eq!(info["rules"][0]["hash"].as_str().unwrap().len(), 16);
    assert!(info["files"][0]["name"].as_str().unwrap().ends_with("rules/a.yaml"));
}

#[test]
fn validate_runs_the_reload_validation_and_run_refuses_bad_rules() {
    let up = Upstream::start("app");
    let dir = TempDir::new("validate-rules");
    let cfg = Cfg::new(&[up.addr()]);
    let yaml = cfg.yaml().replace("{{DIR}}", &dir.path().display().to_string());
    let path = dir.write("gateway.yaml", yaml);
    let p = path.to_str().unwrap();
    dir.write("rules/a.yaml", blocking("/api/a"));
    dir.write("rules/.a.yaml.swp", "garbage: [");
    dir.write("rules/notes.txt", "not a rule file");
    let (code, out, err) = run_cli(BIN, &["validate", "--config", p], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 rules, version "), "{out}");

    dir.write("rules/z.yaml", BROKEN);
    let (code, out, _) = run_cli(BIN, &["validate", "--config", p], &[]);
    assert_eq!(code, 1, "{out}");
    let shown = dir.path().join("rules/z.yaml").display().to_string();
    assert!(out.contains(&format!("{shown}:6: firewall[0].match.client_ips[0]")), "{out}");

    let r = Gateway::try_start_with(BIN, &cfg.yaml(), &[], &[("rules/z.yaml", BROKEN)]);
    let Err(e) = r else { panic!("the gateway does not start on rules it cannot enforce") };
    assert!(e.to_string().contains("client_ips[0]"), "{e}");

    // A missing rules directory is an error, not an empty rule set.
    let r = Gateway::try_start_with(BIN, &cfg.yaml(), &[], &[]);
    assert!(r.is_err());
}
