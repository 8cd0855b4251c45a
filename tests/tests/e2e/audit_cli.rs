//! `portcullis audit verify`: a log written by the library, copies tampered with in every way the
//! chain must catch (edit, delete, reorder, forged records), each reported at the right line.
use crate::common::BIN;
use portcullis::audit::{AuditAction, AuditEntry, AuditLog};
use portcullis_tests::{run_cli, TempDir};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Writes a five-record log under `<dir>/state/audit` (what a gateway with `state_dir: state`
/// writes) and returns its lines.
fn write_log(dir: &TempDir) -> (PathBuf, Vec<String>) {
    let log = AuditLog::open(&dir.path().join("state/audit")).unwrap();
    let actions = [
        (AuditAction::MaintenanceSet, "maintenance", "ok", 200),
        (AuditAction::ChannelSet, "channel:whatsapp", "ok", 200),
        (AuditAction::Denied, "/v1/flags/rate_limit", "refused", 403),
        (AuditAction::RulesReload, "rules", "ok", 200),
        (AuditAction::SafeTest, "cross_tenant_attempt", "ok", 200),
    ];
    for (i, (action, target, outcome, status)) in actions.into_iter().enumerate() {
        let request_id = format!("req-{i}");
        let entry = AuditEntry::new(action, target, outcome, status)
            .by(Some("alice"), Some("operator"), Some("127.0.0.1"), &request_id)
            .values(serde_json::json!({"enabled": false}), serde_json::json!({"enabled": true}))
            .reason(Some("incident 42"));
        log.append(&entry).unwrap();
    }
    let path = log.path().to_path_buf();
    let lines = std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect();
    (path, lines)
}

/// Recomputes a record's hash as docs/audit.md describes it (a forger who knows the format):
/// SHA-256 of the line without its `,"hash":"…"` member.
fn rehash(line: &str) -> String {
    let head = &line[..line.len() - r#","hash":""#.len() - 64 - r#""}"#.len()];
    let hash = hex::encode(Sha256::digest(format!("{head}}}").as_bytes()));
    format!("{head},\"hash\":\"{hash}\"}}")
}

fn verify_file(path: &Path) -> (i32, String, String) {
    run_cli(BIN, &["audit", "verify", "--file", path.to_str().unwrap()], &[])
}

/// Writes `lines` to a copy and verifies it; returns (exit code, stdout).
fn verify_copy(dir: &TempDir, name: &str, lines: &[String]) -> (i32, String) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (code, out, err) = verify_file(&dir.write(name, text));
    (code, format!("{out}{err}"))
}

#[test]
fn audit_verify_accepts_an_intact_log_from_the_config_or_a_file() {
    let dir = TempDir::new("audit-ok");
    let (path, lines) = write_log(&dir);
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let expect = format!("ok: 5 records, chain intact, last hash {}", &last["hash"].as_str().unwrap()[..16]);

    // Default location: <state_dir>/audit/audit.jsonl, state_dir relative to the config file.
    let yaml = "version: 1\nlisten:\n  proxy: 127.0.0.1:0\nstate_dir: state\nupstreams:\n  app:\n    backends: [\"127.0.0.1:1\"]\nroutes:\n  - id: default\n    path_prefix: /\n    upstream: app\n";
    let config = dir.write("gateway.yaml", yaml);
    let (code, out, err) = run_cli(BIN, &["audit", "verify", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), expect);

    let (code, out, err) = verify_file(&path);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), expect);
    let (code, out) = verify_copy(&dir, "copy.jsonl", &lines);
    assert_eq!(code, 0, "{out}");

    // Empty log: nothing to break.
    let (code, out, err) = verify_file(&dir.write("empty.jsonl", ""));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 0 records"), "{out}");
}

#[test]
fn audit_verify_names_the_first_broken_record() {
    let dir = TempDir::new("audit-tamper");
    let (_, good) = write_log(&dir);
    let broken = |lines: &[String], name: &str, prefix: &str, reason: &str| {
        let (code, out) = verify_copy(&dir, name, lines);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.starts_with(prefix), "{name}: want {prefix:?}, got {out}");
        assert!(out.contains(reason), "{name}: want {reason:?} in {out}");
    };

    // Edit a field (the stored hash no longer matches).
    let mut l = good.clone();
    l[2] = l[2].replace("\"status\":403", "\"status\":200").replace("\"refused\"", "\"ok\"");
    broken(&l, "edit.jsonl", "broken: line 3 (seq 3): ", "hash mismatch");

    // Delete a middle record.
    let mut l = good.clone();
    l.remove(2);
    broken(&l, "delete.jsonl", "broken: line 3 (seq 4): ", "expected");

    // Swap two records.
    let mut l = good.clone();
    l.swap(1, 2);
    broken(&l, "swap.jsonl", "broken: line 2 (seq 3): ", "expected");

    // Append a forged record: next seq, recomputed hash, but a prev that is not the last hash.
    let mut l = good.clone();
    l.push(rehash(&l[3].replace("\"seq\":4,", "\"seq\":6,")));
    broken(&l, "forged.jsonl", "broken: line 6 (seq 6): ", "prev");

    // Edit a record and recompute its hash: the next record's prev gives it away.
    let mut l = good.clone();
    l[2] = rehash(&l[2].replace("\"alice\"", "\"mallory\""));
    broken(&l, "rehashed.jsonl", "broken: line 4 (seq 4): ", "prev");

    // Cut a record in half in the middle of the file.
    let mut l = good.clone();
    l[1].truncate(60);
    broken(&l, "cut.jsonl", "broken: line 2", "not a valid audit record");

    // The untouched original still verifies.
    let (code, out) = verify_copy(&dir, "again.jsonl", &good);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn audit_verify_fails_on_an_unreadable_log() {
    let dir = TempDir::new("audit-missing");
    let missing = dir.path().join("nope.jsonl");
    let (code, out, err) = verify_file(&missing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("cannot read") && out.contains("nope.jsonl"), "{out}{err}");
    // A directory is no log either.
    let (code, out, err) = verify_file(dir.path());
    assert_eq!(code, 1, "{out}{err}");
    // A config that does not load: its errors, exit 1.
    let (code, out, err) = run_cli(BIN, &["audit", "verify", "--config", "/nonexistent/gateway.yaml"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("/nonexistent/gateway.yaml"), "{out}{err}");
}
