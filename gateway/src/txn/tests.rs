use super::*;
use crate::switches::{MaintenanceChange, Source, SwitchError};
use std::path::PathBuf;

struct Fixture {
    dir: PathBuf,
    log: AuditLog,
    switches: Switches,
    sessions: Sessions,
    limits: LimitState,
}

impl Fixture {
    fn open(dir: &Path, env: &[(&str, &str)]) -> Fixture {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let f = Fixture {
            dir: dir.to_path_buf(),
            log: AuditLog::open(&crate::audit::dir_for(dir)).unwrap(),
            switches: Switches::load(dir, &["whatsapp".to_string(), "email".to_string()], &get).unwrap(),
            sessions: Sessions::load(dir).unwrap(),
            limits: LimitState::load(dir),
        };
        recover(&f.log, f.state(), dir).unwrap();
        f
    }

    fn state(&self) -> State<'_> {
        State { switches: &self.switches, sessions: &self.sessions, limits: &self.limits }
    }

    fn channel(&self, name: &str, enabled: bool) -> Result<Committed, TxError<SwitchError>> {
        let meta = Meta { actor: Some("ops"), role: Some("operator"), source_ip: None, request_id: "r", status: 200 };
        let target = format!("channel:{name}");
        transact(&self.log, self.state(), meta, &target, Value::Null, AuditAction::ChannelSet, || {
            let (op, old) = self.switches.plan_channel(name, enabled, None, "ops", None)?;
            Ok(Plan { action: AuditAction::ChannelSet, op: Op::Switch(op), old, reason: None })
        })
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pc-txn-{tag}-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(crate::audit::dir_for(dir).join(crate::audit::FILE_NAME))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_commit_is_recorded_then_applied_then_checkpointed_with_its_seq() {
    let d = tmp("commit");
    let f = Fixture::open(&d, &[]);
    let c = f.channel("whatsapp", false).unwrap();
    assert_eq!((c.seq, c.version), (1, 1));
    assert!(!f.switches.channel_enabled("whatsapp"));
    let recs = records(&d);
    assert_eq!(recs.len(), 1);
    assert_eq!(
        Op::from_record(&recs[0]),
        Some(Op::Switch(SwitchOp::from_record("channel:whatsapp", &recs[0]["new"]).unwrap()))
    );
    let file: Value = serde_json::from_slice(&std::fs::read(d.join("switches.json")).unwrap()).unwrap();
    assert_eq!(file["audit_seq"], 1);
    assert_eq!(file["version"], 1);
}

#[test]
fn a_refused_plan_is_audited_and_changes_nothing() {
    let d = tmp("refused");
    let f = Fixture::open(&d, &[]);
    assert!(matches!(f.channel("nope", false), Err(TxError::Refused(SwitchError::UnknownChannel { .. }))));
    let recs = records(&d);
    assert_eq!(recs[0]["outcome"], "refused");
    assert_eq!(recs[0]["status"], 404);
    assert_eq!(Op::from_record(&recs[0]), None);
    assert_eq!(f.switches.snapshot().version, 0);
    assert!(!d.join("switches.json").exists());
}

#[test]
fn an_unwritable_audit_log_refuses_and_nothing_changes_not_even_provenance_or_ttl() {
    let d = tmp("auditfail");
    let f = Fixture::open(&d, &[("WHATSAPP_ENABLED", "false")]);
    let meta = Meta { actor: Some("ops"), role: None, source_ip: None, request_id: "r", status: 200 };
    let on = MaintenanceChange { enabled: true, ttl_seconds: Some(600), ..Default::default() };
    transact(&f.log, f.state(), meta, "maintenance", Value::Null, AuditAction::MaintenanceSet, || {
        let (op, old) = f.switches.plan_maintenance(on, "ops", None)?;
        Ok::<_, SwitchError>(Plan { action: AuditAction::MaintenanceSet, op: Op::Switch(op), old, reason: None })
    })
    .unwrap();
    let before = f.switches.snapshot();
    let file = std::fs::read(d.join("switches.json")).unwrap();
    // The audit log is replaced behind the gateway's back: every append is refused.
    let path = crate::audit::dir_for(&d).join(crate::audit::FILE_NAME);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(matches!(f.channel("whatsapp", true), Err(TxError::Store(_))));
    let off = MaintenanceChange::default();
    let r = transact(&f.log, f.state(), meta, "maintenance", Value::Null, AuditAction::MaintenanceSet, || {
        let (op, old) = f.switches.plan_maintenance(off, "ops", None)?;
        Ok::<_, SwitchError>(Plan { action: AuditAction::MaintenanceSet, op: Op::Switch(op), old, reason: None })
    });
    assert!(matches!(r, Err(TxError::Store(_))));
    assert_eq!(*f.switches.snapshot(), *before, "version, provenance and ttl unchanged");
    assert_eq!(f.switches.snapshot().channels["whatsapp"].source, Source::Environment);
    assert!(f.switches.snapshot().maintenance.expires_at.is_some());
    assert_eq!(std::fs::read(d.join("switches.json")).unwrap(), file);
}

#[test]
fn a_crash_between_the_record_and_the_state_file_is_replayed_at_start() {
    let d = tmp("crash");
    {
        let f = Fixture::open(&d, &[]);
        f.channel("email", false).unwrap();
        // The record of the next change is durable, its state file write never happened.
        let (op, old) = f.switches.plan_channel("whatsapp", false, None, "ops", None).unwrap();
        f.log
            .append(
                &AuditEntry::new(AuditAction::ChannelSet, &op.target(), "ok", 200)
                    .by(Some("ops"), None, None, "r")
                    .values(old, op.new_value()),
            )
            .unwrap();
        let (op, _) = f.sessions.plan_revoke("sess-1", None, "ops", 100).unwrap();
        let mut t = f.log.begin().unwrap();
        let target = op.target();
        let mut e = AuditEntry::new(AuditAction::SessionRevoke, &target, "ok", 200)
            .by(Some("ops"), None, None, "r")
            .values(Value::Null, op.new_value());
        t.append(&e).unwrap();
        e.outcome = "refused";
        e.target = "session:never";
        t.append(&e).unwrap();
    }
    let f = Fixture::open(&d, &[]);
    assert!(!f.switches.channel_enabled("email"));
    assert!(!f.switches.channel_enabled("whatsapp"), "replayed");
    assert_eq!(f.switches.snapshot().version, 2);
    assert!(f.sessions.is_revoked("sess-1", 101), "replayed");
    assert!(!f.sessions.is_revoked("never", 101), "a refusal is not replayed");
    let file: Value = serde_json::from_slice(&std::fs::read(d.join("switches.json")).unwrap()).unwrap();
    assert_eq!(file["audit_seq"], 4, "checkpointed after the replay");
    // A second start replays nothing more (no double version bump).
    drop(f);
    let f = Fixture::open(&d, &[]);
    assert_eq!(f.switches.snapshot().version, 2);
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn another_process_s_changes_are_followed() {
    let d = tmp("follow");
    let a = Fixture::open(&d, &[]);
    let b = Fixture::open(&d, &[]);
    let b = Arc::new(b);
    let bw = Arc::downgrade(&b);
    b.log.set_applier(Arc::new(move |recs: &[Value]| {
        if let Some(b) = bw.upgrade() {
            b.state().replay(recs, false);
        }
    }));
    a.channel("whatsapp", false).unwrap();
    assert!(b.switches.channel_enabled("whatsapp"));
    b.log.follow().unwrap();
    assert!(!b.switches.channel_enabled("whatsapp"), "followed");
    // b's next change builds on a's: one version sequence, one chain.
    let c = b.channel("email", false).unwrap();
    assert_eq!((c.seq, c.version), (2, 2));
    assert_eq!(crate::audit::verify(&crate::audit::dir_for(&d).join(crate::audit::FILE_NAME)), Ok(2));
    let file: Value = serde_json::from_slice(&std::fs::read(d.join("switches.json")).unwrap()).unwrap();
    assert_eq!(file["channels"]["whatsapp"]["enabled"], false, "b's file keeps a's change");
}

#[test]
fn a_quota_reset_is_replayed_only_past_the_book_s_position() {
    let d = tmp("quota");
    let f = Fixture::open(&d, &[]);
    f.limits.apply_reset("t1", 5, true).unwrap();
    assert_eq!(f.limits.audit_seq(), Some(5));
    let text = std::fs::read_to_string(d.join(crate::limit_state::QUOTA_FILE)).unwrap();
    assert!(text.starts_with("{\"audit_seq\":5,"), "{text}");
    let again = LimitState::load(&d);
    assert_eq!(again.audit_seq(), Some(5));
    let _ = std::fs::remove_dir_all(&d);
}
