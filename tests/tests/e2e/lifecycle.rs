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
    assert!(gw.wait_for_log(|l| l.contains("sighup"), Duration::from_secs(5)));

    assert!(gw.signal("TERM"));
    let status = gw.wait_exit(Duration::from_secs(15)).expect("exits after SIGTERM");
    assert_eq!(exit_code(status), 0, "{}", gw.output());
}
