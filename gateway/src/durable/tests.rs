use super::*;

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pc-durable-{tag}-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn tmp_names_round_trip() {
    assert_eq!(tmp_pid(&tmp_name("switches.json", 42)), Some(42));
    assert_eq!(tmp_pid(".quotas.json.7.tmp"), Some(7));
    for not in ["switches.json", ".switches.json.tmp", ".x.abc.tmp", "x.1.tmp", ".ready-probe-1", ".a.1.tmpx"] {
        assert_eq!(tmp_pid(not), None, "{not}");
    }
}

#[test]
fn stray_temp_files_of_dead_processes_and_our_pid_are_removed() {
    let d = dir("stray");
    write_durably(&d, "switches.json", b"{}").unwrap();
    // A pid that cannot be running (above pid_max), our own pid, and a live one (pid 1).
    let dead = tmp_name("switches.json", 4_194_304 + 17);
    let ours = tmp_name("sessions.json", std::process::id());
    let live = tmp_name("quotas.json", 1);
    for n in [&dead, &ours, &live] {
        std::fs::write(d.join(n), b"partial").unwrap();
    }
    let mut removed = clean_stray_tmp(&d);
    removed.sort();
    let mut want = vec![dead.clone(), ours.clone()];
    want.sort();
    assert_eq!(removed, want);
    assert!(d.join(&live).exists(), "a live process's temp file is left alone");
    assert!(d.join("switches.json").exists());
    let _ = std::fs::remove_dir_all(&d);
}
