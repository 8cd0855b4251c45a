//! One state model across processes and crashes (issue 17): every change is its audit record
//! (write-ahead), two processes sharing `state_dir` (a graceful upgrade) see one state and one
//! audit chain, `kill -9` at any instant leaves the old state without a record or the new state
//! with it, a refused change changes nothing, stray temp files are removed at start.
use crate::common::*;
use portcullis_tests::{run_cli, wait_until, Client, Gateway, TempDir, Upstream};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn routes() -> &'static str {
    "  - id: whatsapp\n    path_prefix: /api/whatsapp\n    upstream: app\n    channel: whatsapp\n  - id: email\n    path_prefix: /api/email\n    upstream: app\n    channel: email\n  - id: default\n    path_prefix: /\n    upstream: app\n"
}

fn cfg(up: &Upstream, state: &Path) -> Cfg {
    Cfg::new(&[up.addr()]).routes(routes()).state_dir(state)
}

fn put(gw_control: &str, path: &str, token: &str, body: &str) -> portcullis_tests::Resp {
    let auth = bearer(token);
    Client::new().request(
        "PUT",
        &format!("{gw_control}{path}"),
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        Some(body.as_bytes()),
    )
}

fn ctl(gw: &Gateway) -> String {
    format!("http://{}", gw.control_addr())
}

fn audit_path(state: &Path) -> std::path::PathBuf {
    state.join("audit").join("audit.jsonl")
}

fn records(state: &Path) -> Vec<Value> {
    std::fs::read_to_string(audit_path(state))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(state: &Path) {
    let (code, out, err) = run_cli(BIN, &["audit", "verify", "--file", audit_path(state).to_str().unwrap()], &[]);
    assert_eq!(code, 0, "audit verify: {out}{err}");
}

fn switches(gw: &Gateway) -> Value {
    let r = control_get(gw, "/v1/switches", VIEWER);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let r = Client::new().get(&gw.control_url("/metrics"), &[]);
    r.text().lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn two_processes_on_one_state_dir_see_one_state_and_one_chain() {
    // What the window of a graceful upgrade is, made deterministic: two live processes.
    let up = Upstream::start("app");
    let state = TempDir::new("two-procs");
    let c = cfg(&up, state.path());
    let a = c.start();
    let b = c.start();
    let client = Client::new();
    assert_eq!(client.get(&b.url("/api/whatsapp/x"), &[]).status, 200);

    // A kills the channel: B enforces it within the follow interval.
    assert_eq!(put(&ctl(&a), "/v1/switches/channels/whatsapp", OPERATOR, r#"{"enabled":false}"#).status, 200);
    assert!(
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || client
            .get(&b.url("/api/whatsapp/x"), &[])
            .status
            == 503),
        "B still serves a channel A killed"
    );
    // A revokes a session: B's state has it.
    let r = client.post(&a.control_url("/v1/sessions/sess-42/revoke"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || metric(
        &b,
        "portcullis_sessions_revoked"
    ) == Some(1.0)));
    // Unauthenticated calls on both (audited as refusals) do not lock either out.
    for gw in [&a, &b] {
        assert_eq!(client.get(&gw.control_url("/v1/switches"), &[]).status, 401);
    }
    // B changes next: it builds on A's version; then A again on B's.
    let r = put(&ctl(&b), "/v1/switches/channels/email", OPERATOR, r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let r = put(&ctl(&a), "/v1/switches/maintenance", OPERATOR, r#"{"enabled":true,"ttl_seconds":3600}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 3);
    assert!(wait_until(Duration::from_secs(2), Duration::from_millis(20), || switches(&b)["version"] == 3));
    let sb = switches(&b);
    assert_eq!(sb["channels"]["whatsapp"]["enabled"], false);
    assert_eq!(sb["channels"]["email"]["enabled"], false);
    assert_eq!(sb["maintenance"]["enabled"], true);
    assert!(sb["maintenance"]["expires_at"].is_string());
    verify(state.path());
    // One chain: every record once, in order.
    let seqs: Vec<u64> = records(state.path()).iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // /ready stays green on both.
    for gw in [&a, &b] {
        assert_eq!(client.get(&gw.control_url("/ready"), &[]).status, 200);
    }
}

#[test]
fn graceful_upgrade_under_control_traffic_loses_nothing_and_locks_nothing() {
    let up = Upstream::start("app");
    let state = TempDir::new("upgrade-state");
    let c = cfg(&up, state.path());
    let old = c.start();
    let client = Client::new();
    let yaml = c
        .yaml()
        .replace("proxy: 127.0.0.1:0", &format!("proxy: {}", old.proxy_addr()))
        .replace("control: 127.0.0.1:0", &format!("control: {}", old.control_addr()))
        .replace("\"{{DIR}}/upgrade.sock\"", &format!("\"{}/upgrade.sock\"", old.dir().display()))
        .replace("\"{{DIR}}/portcullis.pid\"", &format!("\"{}/portcullis.pid\"", old.dir().display()));
    let pid_file = old.dir().join("portcullis.pid");
    let names = |pid: u32| std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim() == pid.to_string());
    let old_named = names(old.pid());
    let control = ctl(&old);
    let old_pid = old.pid();
    let ctl2 = control.clone();
    let quitter = std::thread::spawn(move || {
        // The new process has read the state and waits for the listeners; the old one still
        // serves alone: kill a channel, revoke a session, and send an unauthenticated call.
        std::thread::sleep(Duration::from_millis(1200));
        let killed = put(&ctl2, "/v1/switches/channels/whatsapp", OPERATOR, r#"{"enabled":false}"#).status;
        let revoked = Client::new()
            .post(&format!("{ctl2}/v1/sessions/s-window/revoke"), &[("authorization", &bearer(OPERATOR))], "")
            .status;
        let anonymous = Client::new().get(&format!("{ctl2}/v1/switches"), &[]).status;
        std::thread::sleep(Duration::from_millis(300));
        std::process::Command::new("kill").args(["-s", "QUIT", &old_pid.to_string()]).status().unwrap();
        (killed, revoked, anonymous)
    });
    let new = Gateway::try_start_subcommand(BIN, "run --upgrade", &yaml, &[], &c.files())
        .unwrap_or_else(|e| panic!("{e}\n--- old ---\n{}", old.output()));
    let (killed, revoked, anonymous) = quitter.join().unwrap();
    assert_eq!((killed, revoked, anonymous), (200, 200, 401));
    // The window: both processes run. Whichever answers, each change is acknowledged after its
    // record is durable, and must be in force in the new process.
    let mut acked = 0;
    while old.is_running() && acked < 40 {
        let body = if acked % 2 == 0 { r#"{"enabled":false}"# } else { r#"{"enabled":true}"# };
        let r = put(&control, "/v1/switches/channels/email", OPERATOR, body);
        if r.status == 200 {
            acked += 1;
        }
        let _ = client.get(&format!("{control}/v1/flags"), &[]); // unauthenticated: 401, audited
        let _ = client.post(
            &format!("{control}/v1/sessions/s-{acked}/revoke"),
            &[("authorization", &bearer(OPERATOR))],
            "",
        );
    }
    old.wait_exit(Duration::from_secs(20)).expect("the old process drains and exits");
    // After the old process exited: the new one has every change, and keeps working.
    let r = client.get(&new.url("/api/whatsapp/x"), &[]);
    assert_eq!(r.status, 503, "a channel killed during the upgrade is killed in the new process");
    let s = switches(&new);
    let last_email = records(state.path())
        .iter()
        .rev()
        .find(|r| r["target"] == "channel:email" && r["outcome"] == "ok")
        .map(|r| r["new"]["enabled"].clone());
    assert_eq!(Some(s["channels"]["email"]["enabled"].clone()), last_email);
    let file: Value = serde_json::from_slice(&std::fs::read(state.path().join("switches.json")).unwrap()).unwrap();
    assert_eq!(file["channels"]["whatsapp"]["enabled"], false);
    assert!(metric(&new, "portcullis_sessions_revoked").is_some_and(|n| n >= 1.0), "the revocation is in force");
    for i in 0..3 {
        let body = if i % 2 == 0 { r#"{"enabled":true}"# } else { r#"{"enabled":false}"# };
        let r = put(&ctl(&new), "/v1/switches/channels/whatsapp", OPERATOR, body);
        assert_eq!(r.status, 200, "mutations keep working after the upgrade: {}", r.text());
    }
    assert_eq!(client.get(&new.control_url("/ready"), &[]).status, 200);
    verify(state.path());
    assert!(old_named, "the pid file named the running process");
    assert!(names(new.pid()), "the pid file names the live process, not the old one (or nothing)");
}

#[test]
fn kill_9_at_random_instants_leaves_every_change_with_its_record_and_every_record_applied() {
    let up = Upstream::start("app");
    let state = TempDir::new("kill9-state");
    let c = cfg(&up, state.path());
    for i in 0..30u64 {
        let gw = c.start();
        // Every record's change is in force: the state equals the replay of the log.
        let recs = records(state.path());
        let s = switches(&gw);
        let ok: Vec<&Value> = recs.iter().filter(|r| r["outcome"] == "ok").collect();
        assert_eq!(s["version"].as_u64().unwrap(), ok.len() as u64, "iteration {i}: one version per record");
        for ch in ["whatsapp", "email"] {
            let want = ok
                .iter()
                .rev()
                .find(|r| r["target"] == format!("channel:{ch}"))
                .map_or(Value::Bool(true), |r| r["new"]["enabled"].clone());
            assert_eq!(s["channels"][ch]["enabled"], want, "iteration {i}: {ch}");
        }
        // No temp file a previous kill left is still there.
        let own = format!(".{}.tmp", gw.pid());
        let strays: Vec<String> = std::fs::read_dir(state.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") && !n.ends_with(&own))
            .collect();
        assert!(strays.is_empty(), "iteration {i}: {strays:?}");
        verify(state.path());
        // Mutations in flight, then kill -9 at a pseudo-random instant.
        let control = ctl(&gw);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut acked = Vec::new();
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                let ch = if n.is_multiple_of(3) { "email" } else { "whatsapp" };
                let body = format!("{{\"enabled\":{},\"reason\":\"it-{i}-{n}\"}}", (n / 2).is_multiple_of(2));
                let auth = bearer(OPERATOR);
                let r = Client::new().try_request(
                    "PUT",
                    &format!("{control}/v1/switches/channels/{ch}"),
                    &[("authorization", auth.as_str()), ("content-type", "application/json")],
                    Some(body.as_bytes()),
                );
                if r.is_ok_and(|r| r.status == 200) {
                    acked.push(format!("it-{i}-{n}"));
                }
                n += 1;
            }
            acked
        });
        std::thread::sleep(Duration::from_millis(20 + (i * 37) % 180));
        assert!(gw.signal("KILL"));
        gw.wait_exit(Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let acked = writer.join().unwrap();
        // Every acknowledged change has its record.
        let recs = records(state.path());
        for reason in &acked {
            assert!(
                recs.iter().any(|r| r["reason"] == reason.as_str() && r["outcome"] == "ok"),
                "iteration {i}: {reason} acknowledged without a record"
            );
        }
    }
}

#[test]
fn stray_temp_files_are_removed_at_start() {
    let up = Upstream::start("app");
    let state = TempDir::new("stray-state");
    std::fs::create_dir_all(state.path()).unwrap();
    // What kill -9 between the write and the rename leaves: temp files of dead pids.
    for n in [".switches.json.4194321.tmp", ".sessions.json.4194322.tmp", ".quotas.json.4194323.tmp"] {
        std::fs::write(state.path().join(n), b"{partial").unwrap();
    }
    let gw = cfg(&up, state.path()).start();
    // (The live gateway's own in-flight writes are not strays.)
    let own = format!(".{}.tmp", gw.pid());
    let left: Vec<String> = std::fs::read_dir(state.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && !n.ends_with(&own))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(put(&ctl(&gw), "/v1/switches/channels/email", OPERATOR, r#"{"enabled":false}"#).status, 200);
}

/// A tiny tmpfs at `dir` (root only); `None` when it cannot be mounted.
pub struct TinyFs(std::path::PathBuf);

impl TinyFs {
    pub fn mount(dir: &Path, size: &str) -> Option<TinyFs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str()?])
            .status()
            .ok()?
            .success();
        ok.then(|| TinyFs(dir.to_path_buf()))
    }

    /// Fills the filesystem (a file grown until ENOSPC).
    pub fn fill(&self) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    pub fn unfill(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").args(["-l", self.0.to_str().unwrap_or("")]).status();
    }
}

#[test]
fn a_change_refused_on_a_full_disk_changes_nothing() {
    let up = Upstream::start("app");
    let base = TempDir::new("fulldisk");
    let state = base.path().join("state");
    let Some(fs) = TinyFs::mount(&state, "512k") else {
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    };
    let c = cfg(&up, &state);
    let gw = c.start_env(&[("WHATSAPP_ENABLED", "false")]);
    let control = ctl(&gw);
    let r = put(&control, "/v1/switches/maintenance", OPERATOR, r#"{"enabled":true,"ttl_seconds":3600}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    fs.fill();
    // Long reasons: once the slack of the files' last pages is used up, no record fits. Every
    // refused attempt must leave everything exactly as it was.
    let reason = "r".repeat(400);
    let mut refused = 0;
    let mut last = switches(&gw);
    for i in 0..30 {
        let (path, body) = match i % 3 {
            0 => ("/v1/switches/channels/whatsapp", format!("{{\"enabled\":{},\"reason\":\"{reason}\"}}", i % 2 == 0)),
            1 => ("/v1/switches/maintenance", format!("{{\"enabled\":false,\"reason\":\"{reason}\"}}")),
            _ => ("/v1/flags/rate_limit", format!("{{\"enabled\":false,\"reason\":\"{reason}\"}}")),
        };
        let before = switches(&gw);
        let file = std::fs::read(state.join("switches.json")).unwrap();
        let r = put(&control, path, OPERATOR, &body);
        if r.status == 200 {
            continue;
        }
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        assert!(r.text().contains("nothing was changed"), "{}", r.text());
        let after = switches(&gw);
        assert_eq!(after, before, "{path}: version, provenance, ttl and value unchanged");
        assert_eq!(std::fs::read(state.join("switches.json")).unwrap(), file);
        last = after;
        refused += 1;
        if refused == 6 {
            break;
        }
    }
    assert!(refused >= 3, "the full disk refused {refused} changes");
    assert_eq!(Client::new().get(&gw.control_url("/ready"), &[]).status, 503, "the audit log cannot be written");
    fs.unfill();
    verify(&state);
    // Restarted on the same state: exactly what was acknowledged, nothing refused.
    assert!(gw.signal("KILL"));
    gw.wait_exit(Duration::from_secs(10));
    let gw = c.start_env(&[("WHATSAPP_ENABLED", "false")]);
    let s = switches(&gw);
    assert_eq!(s["version"], last["version"]);
    assert_eq!(s["channels"], last["channels"]);
    assert_eq!(s["flags"], last["flags"]);
    drop(gw);
    drop(fs);
}

#[test]
fn an_unauthenticated_flood_costs_one_audit_record_per_source_and_minute() {
    let up = Upstream::start("app");
    let state = TempDir::new("flood-state");
    let yaml = cfg(&up, state.path())
        .yaml()
        .replace("control:\n  tokens:", "control:\n  max_requests_per_second: 20\n  tokens:");
    let gw = Gateway::start_with(BIN, &yaml, &[], &cfg(&up, state.path()).files());
    let client = Client::new();
    let before = records(state.path()).len();
    let long = "a".repeat(2000);
    let (mut unauthenticated, mut limited) = (0u64, 0u64);
    for i in 0..2000 {
        let r = client.get(&gw.control_url(&format!("/v1/{long}/{i}")), &[("authorization", "Bearer wrong")]);
        match r.status {
            401 => unauthenticated += 1,
            429 => {
                limited += 1;
                assert_eq!(r.header("retry-after"), Some("1"));
            }
            s => panic!("{s}"),
        }
    }
    assert!(limited > 0, "the control listener rate-limits a flood from one source");
    assert_eq!(metric(&gw, "portcullis_control_rate_limited_total"), Some(limited as f64));
    let recs = records(state.path());
    // One record for the first refusal of the minute (two if the minute turned during the flood).
    let added = &recs[before..];
    assert!((1..=2).contains(&added.len()), "{} records for 2000 refusals", added.len());
    for r in added {
        assert_eq!(r["action"], "denied");
        assert_eq!(r["status"], 401);
        assert!(r["target"].as_str().unwrap().chars().count() <= 129, "target capped");
    }
    assert_eq!(metric(&gw, "portcullis_control_unauthenticated_total"), Some(unauthenticated as f64));
    // Probes are not rate-limited, and stay green.
    assert_eq!(client.get(&gw.control_url("/ready"), &[]).status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    // Authenticated refusals and mutations are still recorded one by one.
    assert_eq!(put(&ctl(&gw), "/v1/switches/channels/email", VIEWER, r#"{"enabled":false}"#).status, 403);
    assert_eq!(put(&ctl(&gw), "/v1/switches/channels/email", OPERATOR, r#"{"enabled":false}"#).status, 200);
    assert_eq!(records(state.path()).len(), recs.len() + 2);
    verify(state.path());
}

#[test]
fn the_control_listener_has_a_header_deadline() {
    // Slowloris on the control port: a head that never completes is cut at the deadline (1 s in
    // the test config), and the listener keeps answering others meanwhile.
    use std::io::{Read as _, Write as _};
    let up = Upstream::start("app");
    let state = TempDir::new("ctl-slow");
    let gw = cfg(&up, state.path()).start();
    let mut slow = std::net::TcpStream::connect(gw.control_addr()).unwrap();
    slow.write_all(b"GET /v1/switches HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(Client::new().get(&gw.control_url("/health"), &[]).status, 200);
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
}
