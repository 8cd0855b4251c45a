use super::*;
use serde_json::json;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "portcullis-audit-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn entry(n: u64) -> AuditEntry<'static> {
    AuditEntry::new(AuditAction::MaintenanceSet, "maintenance", "ok", 200)
        .by(Some("alice"), Some("operator"), Some("127.0.0.1"), "req-1")
        .values(
            json!({"enabled": false}),
            json!({"enabled": true, "retry_after": n, "ratio": 0.1, "note": "é \"quoted\"\n"}),
        )
        .reason(Some("deploy"))
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn append_then_verify_round_trip() {
    let d = TempDir::new("roundtrip");
    let log = AuditLog::open(&d.0).unwrap();
    assert_eq!(log.path(), d.0.join(FILE_NAME));
    assert_eq!(verify(log.path()), Ok(0));
    let r1 = log.append(&entry(1)).unwrap();
    let r2 = log.append(&entry(2)).unwrap();
    assert_eq!(r1["seq"], 1);
    assert_eq!(r1["prev"], GENESIS);
    assert_eq!(r2["seq"], 2);
    assert_eq!(r2["prev"], r1["hash"]);
    assert_eq!(r1["actor"], "alice");
    assert_eq!(r1["source_ip"], "127.0.0.1");
    assert_eq!(r1["status"], 200);
    let t = r1["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z') && t.len() == 24, "{t}");
    let s = verify_report(log.path()).unwrap();
    assert_eq!(s.records, 2);
    assert_eq!(s.last_hash, r2["hash"].as_str().unwrap());
    // The returned record is what was stored.
    let stored: Vec<Value> = lines(log.path()).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stored, vec![r1, r2]);
    assert!(log.healthy());
}

#[test]
fn canonical_form_is_the_documented_one() {
    let d = TempDir::new("canon");
    let log = AuditLog::open(&d.0).unwrap();
    let mut e = entry(1);
    e.actor = None;
    e.source_ip = None;
    e.reason = None;
    log.append(&e).unwrap();
    let line = lines(log.path()).remove(0);
    let keys = [
        "seq",
        "time",
        "actor",
        "role",
        "source_ip",
        "request_id",
        "action",
        "target",
        "old",
        "new",
        "reason",
        "outcome",
        "status",
        "prev",
        "hash",
    ];
    let mut at = 0;
    for k in keys {
        let p = line[at..].find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing or out of order"));
        at += p;
    }
    assert!(line.contains("\"actor\":null,") && line.contains("\"reason\":null,"), "{line}");
    assert!(!line.contains(": ") && !line.contains(", "), "compact: {line}");
    // hash = sha256(line without `,"hash":"…"` + "}")
    let (head, rest) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let expect = hex::encode(Sha256::digest(format!("{head}}}").as_bytes()));
    assert_eq!(rest, format!(",\"hash\":\"{expect}\"}}"));
}

#[test]
fn reopen_continues_the_chain() {
    let d = TempDir::new("reopen");
    {
        let log = AuditLog::open(&d.0).unwrap();
        log.append(&entry(1)).unwrap();
        log.append(&entry(2)).unwrap();
    }
    let log = AuditLog::open(&d.0).unwrap();
    let r3 = log.append(&entry(3)).unwrap();
    assert_eq!(r3["seq"], 3);
    assert_eq!(verify(log.path()), Ok(3));
}

#[test]
fn torn_last_line_is_repaired_at_open() {
    let d = TempDir::new("torn");
    let path = {
        let log = AuditLog::open(&d.0).unwrap();
        log.append(&entry(1)).unwrap();
        log.append(&entry(2)).unwrap();
        log.path().to_path_buf()
    };
    let good = fs::read(&path).unwrap();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":3,\"time\":\"2026-").unwrap();
    drop(f);
    let e = verify(&path).unwrap_err();
    assert_eq!((e.line, e.seq), (3, None), "{e}");
    assert!(e.reason.contains("incomplete final line"), "{e}");

    let log = AuditLog::open(&d.0).unwrap();
    assert_eq!(fs::read(&path).unwrap(), good);
    assert_eq!(log.append(&entry(3)).unwrap()["seq"], 3);
    assert_eq!(verify(&path), Ok(3));
}

#[test]
fn torn_only_line_is_repaired_to_an_empty_log() {
    let d = TempDir::new("torn-only");
    fs::write(d.0.join(FILE_NAME), b"{\"seq\":1,").unwrap();
    let log = AuditLog::open(&d.0).unwrap();
    assert_eq!(fs::metadata(log.path()).unwrap().len(), 0);
    assert_eq!(log.append(&entry(1)).unwrap()["prev"], GENESIS);
    assert_eq!(verify(log.path()), Ok(1));
}

#[test]
fn a_bad_last_record_fails_open() {
    let d = TempDir::new("bad-tail");
    {
        let log = AuditLog::open(&d.0).unwrap();
        log.append(&entry(1)).unwrap();
        log.append(&entry(2)).unwrap();
    }
    let path = d.0.join(FILE_NAME);
    let good = fs::read_to_string(&path).unwrap();
    // A complete line that is not a record.
    fs::write(&path, format!("{good}not json\n")).unwrap();
    let err = AuditLog::open(&d.0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("refusing to continue the chain"), "{err}");
    // An edited last record.
    fs::write(&path, good.replace("\"status\":200,\"prev\"", "\"status\":201,\"prev\"")).unwrap();
    assert!(AuditLog::open(&d.0).is_err());
    // An empty line.
    fs::write(&path, format!("{good}\n")).unwrap();
    assert!(AuditLog::open(&d.0).is_err());
    // Restored: fine again.
    fs::write(&path, &good).unwrap();
    assert_eq!(AuditLog::open(&d.0).unwrap().append(&entry(3)).unwrap()["seq"], 3);
}

#[test]
fn open_fails_when_the_file_path_is_a_directory() {
    let d = TempDir::new("isdir");
    fs::create_dir_all(d.0.join(FILE_NAME)).unwrap();
    assert!(AuditLog::open(&d.0).is_err());
    // A directory that cannot be created (its parent is a file).
    fs::write(d.0.join("file"), b"x").unwrap();
    assert!(AuditLog::open(&d.0.join("file").join("audit")).is_err());
}

#[test]
fn append_fails_closed_when_the_file_is_removed_and_recovers() {
    let d = TempDir::new("removed");
    let log = AuditLog::open(&d.0).unwrap();
    log.append(&entry(1)).unwrap();
    let path = log.path().to_path_buf();
    let backup = d.0.join("backup");
    fs::copy(&path, &backup).unwrap();

    // Deleted while open: records would go to an orphaned inode. Refused.
    fs::remove_file(&path).unwrap();
    assert!(log.append(&entry(2)).is_err());
    assert!(!log.healthy());
    // The file path is now a directory: still refused (a real OS error on reopen).
    fs::create_dir(&path).unwrap();
    assert!(log.append(&entry(2)).is_err());
    assert!(!log.healthy());
    // A file that is not ours (a different chain): refused.
    fs::remove_dir(&path).unwrap();
    let other = TempDir::new("removed-other");
    let o = AuditLog::open(&other.0).unwrap();
    let mut e = entry(1);
    e.actor = Some("mallory");
    o.append(&e).unwrap();
    fs::copy(o.path(), &path).unwrap();
    assert!(log.append(&entry(2)).is_err());
    assert!(!log.healthy());

    // Restored: healthy again, and the chain continues.
    fs::copy(&backup, &path).unwrap();
    let r = log.append(&entry(2)).unwrap();
    assert_eq!(r["seq"], 2);
    assert!(log.healthy());
    assert_eq!(verify(&path), Ok(2));
}

#[test]
fn append_refuses_a_file_changed_behind_its_back() {
    let d = TempDir::new("changed");
    let log = AuditLog::open(&d.0).unwrap();
    log.append(&entry(1)).unwrap();
    let path = log.path().to_path_buf();
    // A partial line (a writer killed mid-write while it held the lock): trimmed, the chain
    // continues.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":2,").unwrap();
    drop(f);
    assert_eq!(log.append(&entry(2)).unwrap()["seq"], 2);
    assert!(log.healthy());
    assert_eq!(verify(&path), Ok(2));
    // A whole line that does not continue the chain: refused, and stays refused.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"forged\":true}\n").unwrap();
    drop(f);
    assert!(log.append(&entry(3)).is_err());
    assert!(log.append(&entry(3)).is_err());
    assert!(!log.healthy());
}

#[test]
fn two_writers_on_one_file_form_one_chain_and_each_sees_the_others_records() {
    // The old and the new process of a graceful upgrade: two logs on one file.
    let d = TempDir::new("twowriters");
    let a = AuditLog::open(&d.0).unwrap();
    let b = AuditLog::open(&d.0).unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<u64>::new()));
    let s2 = seen.clone();
    b.set_applier(Arc::new(move |recs: &[Value]| {
        s2.lock().extend(recs.iter().filter_map(|r| r["seq"].as_u64()));
    }));
    assert_eq!(a.append(&entry(1)).unwrap()["seq"], 1);
    assert_eq!(b.append(&entry(2)).unwrap()["seq"], 2, "b chains onto a's record");
    assert_eq!(*seen.lock(), vec![1]);
    assert_eq!(a.append(&entry(3)).unwrap()["seq"], 3);
    a.append(&entry(4)).unwrap();
    b.follow().unwrap();
    assert_eq!(*seen.lock(), vec![1, 3, 4]);
    b.follow().unwrap();
    assert_eq!(*seen.lock(), vec![1, 3, 4], "nothing new: nothing applied twice");
    let t = b.begin().unwrap();
    assert_eq!(t.seq(), 4);
    let after: Vec<u64> = t.records_after(2).unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(after, vec![3, 4]);
    assert!(t.records_after(4).unwrap().is_empty());
    assert_eq!(t.records_after(0).unwrap().len(), 4);
    drop(t);
    // Interleaved from threads, too.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let hs: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|l| std::thread::spawn(move || (0..20).for_each(|i| drop(l.append(&entry(i)).unwrap()))))
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(verify(a.path()), Ok(44));
    assert!(a.healthy() && b.healthy());
}

#[test]
fn a_failed_write_or_fsync_is_rolled_back_and_refused() {
    let d = TempDir::new("fault");
    let log = AuditLog::open(&d.0).unwrap();
    log.append(&entry(1)).unwrap();
    let len = fs::metadata(log.path()).unwrap().len();
    for fault in [Fault::TornWrite, Fault::Sync] {
        log.inject(fault);
        let err = log.append(&entry(2)).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert!(!log.healthy(), "{fault:?}");
        assert_eq!(fs::metadata(log.path()).unwrap().len(), len, "{fault:?}: rolled back");
        assert_eq!(verify(log.path()), Ok(1));
    }
    assert_eq!(log.append(&entry(2)).unwrap()["seq"], 2);
    assert!(log.healthy());
    assert_eq!(verify(log.path()), Ok(2));
}

#[test]
fn append_is_durable_when_it_returns() {
    // The fsync path: what append acknowledged is in the file for any other reader at once.
    let d = TempDir::new("durable");
    let log = AuditLog::open(&d.0).unwrap();
    for i in 1..=5 {
        let r = log.append(&entry(i)).unwrap();
        let last = lines(log.path()).pop().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&last).unwrap(), r);
    }
}

#[test]
fn recent_is_newest_first_and_limited() {
    let d = TempDir::new("recent");
    let log = AuditLog::open(&d.0).unwrap();
    assert!(log.recent(10).unwrap().is_empty());
    for i in 1..=7 {
        log.append(&entry(i)).unwrap();
    }
    let seqs = |v: Vec<Value>| v.iter().map(|r| r["seq"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(seqs(log.recent(3).unwrap()), vec![7, 6, 5]);
    assert_eq!(seqs(log.recent(100).unwrap()), vec![7, 6, 5, 4, 3, 2, 1]);
    assert!(log.recent(0).unwrap().is_empty());
    // Survives a reopen (read from the file, not memory).
    drop(log);
    let log = AuditLog::open(&d.0).unwrap();
    assert_eq!(seqs(log.recent(2).unwrap()), vec![7, 6]);
}

#[test]
fn tail_reading_crosses_block_boundaries() {
    // Records bigger than a block, and many small ones.
    let d = TempDir::new("blocks");
    let log = AuditLog::open(&d.0).unwrap();
    let big = "x".repeat(BLOCK as usize + 1000);
    for i in 1..=3u64 {
        let mut e = entry(i);
        e.new = json!({ "blob": big, "i": i });
        log.append(&e).unwrap();
    }
    for i in 4..=2000 {
        log.append(&entry(i)).unwrap();
    }
    let r = log.recent(RECENT_MAX + 5).unwrap();
    assert_eq!(r.len(), RECENT_MAX);
    assert_eq!(r[0]["seq"], 2000);
    assert_eq!(r[RECENT_MAX - 1]["seq"], 2000 - RECENT_MAX as u64 + 1);
    let file = File::open(log.path()).unwrap();
    let len = file.metadata().unwrap().len();
    let all = tail_lines(&file, len, usize::MAX).unwrap();
    assert_eq!(all.len(), 2000);
    let first: Value = serde_json::from_slice(&all[1999]).unwrap();
    assert_eq!(first["new"]["blob"].as_str().unwrap().len(), big.len());
    assert_eq!(serde_json::from_slice::<Value>(&all[1997]).unwrap()["seq"], 3);
    drop(log);
    let log = AuditLog::open(&d.0).unwrap();
    assert_eq!(log.append(&entry(2001)).unwrap()["seq"], 2001);
    assert_eq!(verify(log.path()), Ok(2001));
}

#[test]
fn concurrent_appends_form_one_chain() {
    let d = TempDir::new("concurrent");
    let log = Arc::new(AuditLog::open(&d.0).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.append(&entry(i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(verify(log.path()), Ok(100));
}

/// Writes a 5-record log and returns its lines.
fn sample(d: &TempDir) -> Vec<String> {
    let log = AuditLog::open(&d.0).unwrap();
    for i in 1..=5 {
        log.append(&entry(i)).unwrap();
    }
    lines(log.path())
}

fn verify_lines(d: &TempDir, lines: &[String]) -> Result<u64, VerifyError> {
    let p = d.0.join("tampered.jsonl");
    fs::write(&p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    verify(&p)
}

#[test]
fn verify_catches_every_kind_of_tampering() {
    let d = TempDir::new("tamper");
    let good = sample(&d);
    assert_eq!(verify_lines(&d, &good), Ok(5));

    // Edit a field.
    let mut l = good.clone();
    l[2] = l[2].replace("\"actor\":\"alice\"", "\"actor\":\"bob\"");
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!((e.line, e.seq), (3, Some(3)), "{e}");
    assert!(e.reason.contains("hash mismatch"), "{e}");
    assert_eq!(e.to_string(), format!("line 3 (seq 3): {}", e.reason));

    // Delete a middle record.
    let mut l = good.clone();
    l.remove(2);
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!((e.line, e.seq), (3, Some(4)), "{e}");

    // Delete the first record.
    let e = verify_lines(&d, &good[1..]).unwrap_err();
    assert_eq!((e.line, e.seq), (1, Some(2)), "{e}");

    // Reorder.
    let mut l = good.clone();
    l.swap(1, 2);
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!((e.line, e.seq), (2, Some(3)), "{e}");

    // Truncation in the middle of a line, followed by later lines.
    let mut l = good.clone();
    l[1].truncate(40);
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!(e.line, 2, "{e}");

    // A forged record with a recomputed hash but a wrong prev.
    let mut forged: Value = serde_json::from_str(&good[3]).unwrap();
    forged["seq"] = json!(6);
    let mut l = good.clone();
    l.push(rehash(&forged));
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!((e.line, e.seq), (6, Some(6)), "{e}");
    assert!(e.reason.contains("prev"), "{e}");

    // A forged record with a recomputed hash and the right prev, renumbering the rest: caught at
    // the next record whose prev no longer matches.
    let mut forged: Value = serde_json::from_str(&good[2]).unwrap();
    forged["actor"] = json!("mallory");
    let mut l = good.clone();
    l[2] = rehash(&forged);
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!((e.line, e.seq), (4, Some(4)), "{e}");

    // Garbage, blank lines, unknown fields.
    let mut l = good.clone();
    l.insert(1, String::new());
    assert_eq!(verify_lines(&d, &l).unwrap_err().line, 2);
    let mut l = good.clone();
    l[0] = l[0].replacen('{', "{\"extra\":1,", 1);
    let e = verify_lines(&d, &l).unwrap_err();
    assert_eq!((e.line, e.seq), (1, Some(1)), "{e}");
    assert!(e.reason.contains("not a valid audit record"), "{e}");

    // Missing file.
    let e = verify(&d.0.join("nope")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.to_string().starts_with("cannot read"), "{e}");
}

/// Re-serialises a record in canonical order and recomputes its hash, as a forger would.
fn rehash(v: &Value) -> String {
    let s = |k: &str| v[k].as_str();
    let body = Body {
        seq: v["seq"].as_u64().unwrap(),
        time: s("time").unwrap(),
        actor: s("actor"),
        role: s("role"),
        source_ip: s("source_ip"),
        request_id: s("request_id").unwrap(),
        action: s("action").unwrap(),
        target: s("target").unwrap(),
        old: &v["old"],
        new: &v["new"],
        reason: s("reason"),
        outcome: s("outcome").unwrap(),
        status: v["status"].as_u64().unwrap() as u16,
        prev: s("prev").unwrap(),
    };
    let c = serde_json::to_string(&body).unwrap();
    let h = hex::encode(Sha256::digest(c.as_bytes()));
    format!("{},\"hash\":\"{h}\"}}", &c[..c.len() - 1])
}
