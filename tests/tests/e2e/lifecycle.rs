//! Signals: SIGHUP never kills, SIGTERM drains and exits cleanly.
use crate::common::*;
use portcullis_tests::{exit_code, Client};
use std::time::Duration;

#[test]
fn sighup_does_not_kill_and_sigterm_exits_cleanly() {
    let (_up, gw) = simple();
    let c = Client::new();
    assert!(gw.signal("HUP"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(gw.is_running(), "SIGHUP killed the gateway: {}", gw.output());
    assert_eq!(c.get(&gw.url("/x"), &[]).status, 200);
    // A signal sent in the instant before the handler is installed is lost (not fatal: the
    // gateway runs on, checked above); on a loaded machine, send it again until it is logged.
    let logged = (0..10).any(|_| {
        gw.wait_for_log(|l| l.contains("sighup"), Duration::from_millis(500)) || {
            gw.signal("HUP");
            false
        }
    });
    assert!(logged || gw.wait_for_log(|l| l.contains("sighup"), Duration::from_secs(1)), "{}", gw.output());
    assert!(gw.is_running());

    assert!(gw.signal("TERM"));
    let status = gw.wait_exit(Duration::from_secs(15)).expect("exits after SIGTERM");
    assert_eq!(exit_code(status), 0, "{}", gw.output());
}

#[test]
fn sigquit_hands_the_listeners_to_an_upgraded_process() {
    let up = portcullis_tests::Upstream::start("app");
    let cfg = Cfg::new(&[up.addr()]);
    let old = cfg.start();
    let c = Client::new();
    assert_eq!(c.get(&old.url("/before"), &[]).status, 200);

    // The new process is configured with the addresses the old one really serves, and the old
    // one's upgrade socket; it waits for the sockets, so SIGQUIT the old one meanwhile.
    let yaml = cfg
        .yaml()
        .replace("proxy: 127.0.0.1:0", &format!("proxy: {}", old.proxy_addr()))
        .replace("control: 127.0.0.1:0", &format!("control: {}", old.control_addr()))
        .replace("\"{{DIR}}/upgrade.sock\"", &format!("\"{}/upgrade.sock\"", old.dir().display()));
    let old_pid = old.pid();
    let quitter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        std::process::Command::new("kill").args(["-s", "QUIT", &old_pid.to_string()]).status().unwrap();
    });
    let new = portcullis_tests::Gateway::try_start_subcommand(BIN, "run --upgrade", &yaml, &[], &cfg.files())
        .unwrap_or_else(|e| panic!("{e}\n--- old ---\n{}", old.output()));
    quitter.join().unwrap();
    assert_eq!(new.proxy_addr(), old.proxy_addr());
    let status = old.wait_exit(Duration::from_secs(20)).expect("the old process drains and exits");
    assert_eq!(exit_code(status), 0);
    let r = c.get(&format!("http://{}/after", new.proxy_addr()), &[]);
    assert_eq!(r.status, 200, "the new process serves on the same address");
    assert!(new.is_running());
    assert_eq!(up.requests().iter().filter(|r| r.path == "/after").count(), 1);
}
