//! The control-plane transaction: the one way runtime state changes.
//!
//! Switches, flags, maintenance, session revocations, blocked subjects and quota resets change
//! only through [`transact`]: **validate → write-ahead → apply → answer → event**.
//!
//! - *Validate*: the caller's plan runs against the live state, inside the store's exclusive
//!   section (so it sees every change any process committed before). A refusal is audited as
//!   `refused` and changes nothing: not a value, not a provenance, not a ttl, not a version.
//! - *Write-ahead*: the audit record **is** the change: its `action`, `target` and `new` say
//!   exactly what the state becomes ([`Op::from_record`]). It is appended and fsynced before
//!   anything else happens. If it cannot be written, nothing changed.
//! - *Apply*: the same [`State::apply`] that replay uses: publish to the request path, then
//!   checkpoint the store's file (`switches.json`, `sessions.json`, `quotas.json`, each with the
//!   `audit_seq` it includes). A checkpoint that fails is logged; the change stands, because its
//!   record is durable and [`recover`] replays every record past a file's `audit_seq` at start.
//!
//! A crash at any instant therefore leaves either the old state and no record (the record was
//! not complete: a partial last line is trimmed when the log is next opened), or the record and,
//! after the replay at the next start, the new state.
//!
//! Across processes (the old and the new process of a graceful upgrade share `state_dir`) the
//! store's exclusive section is a `flock`; on entering it a process first applies every record
//! another process appended (the [`StateStore`] catches up and hands them to the applier
//! installed by [`follow`]), and a background follower does the same every
//! [`FOLLOW_INTERVAL`] between mutations. The audit chain has one writer at a time and never
//! forks.
//!
//! [`StateStore`] is the seam: the local audit log implements it now; a fleet store (Redis) is
//! another implementation behind the same [`transact`].

use crate::audit::{AuditAction, AuditEntry, AuditLog, AuditTxn};
use crate::limit_state::LimitState;
use crate::sessions::{SessionOp, Sessions};
use crate::switches::{SwitchError, SwitchOp, Switches};
use serde_json::{json, Value};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often a process checks the store for changes another process committed.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// One change of runtime state: what a live mutation applies and what an `ok` audit record of a
/// state-changing action replays. One type, one apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Maintenance, a channel kill switch or a flag.
    Switch(SwitchOp),
    /// A session revocation, a subject or address block, a tenant suspension, an allowlist entry.
    Session(SessionOp),
    /// Every quota counter of a tenant back to 0 (`quota:<tenant>`).
    QuotaReset(String),
}

impl Op {
    /// The audit record's `target`.
    pub fn target(&self) -> String {
        match self {
            Op::Switch(s) => s.target(),
            Op::Session(s) => s.target(),
            Op::QuotaReset(t) => format!("quota:{t}"),
        }
    }

    /// The audit record's `new`.
    pub fn new_value(&self) -> Value {
        match self {
            Op::Switch(s) => s.new_value(),
            Op::Session(s) => s.new_value(),
            Op::QuotaReset(_) => json!({ "reset": true }),
        }
    }

    /// The op an audit record carries: `outcome: ok`, a state-changing action, a target and a
    /// `new` this version understands. Anything else carries none (refusals, reloads, safe tests,
    /// and actions of a newer version, which are logged and skipped).
    pub fn from_record(rec: &Value) -> Option<Op> {
        if rec.get("outcome").and_then(Value::as_str) != Some("ok") {
            return None;
        }
        let action = AuditAction::parse(rec.get("action")?.as_str()?)?;
        if !action.changes_state() {
            return None;
        }
        let target = rec.get("target")?.as_str()?;
        let new = rec.get("new")?;
        match action {
            AuditAction::MaintenanceSet
            | AuditAction::MaintenanceExpire
            | AuditAction::ChannelSet
            | AuditAction::FlagSet => SwitchOp::from_record(target, new).map(Op::Switch),
            AuditAction::SessionRevoke
            | AuditAction::SessionRestore
            | AuditAction::SubjectBlock
            | AuditAction::SubjectUnblock
            | AuditAction::AddressBlock
            | AuditAction::AddressUnblock
            | AuditAction::TenantSuspend
            | AuditAction::TenantResume
            | AuditAction::AllowlistAdd
            | AuditAction::AllowlistRemove => SessionOp::from_record(target, new).map(Op::Session),
            AuditAction::QuotaReset => target.strip_prefix("quota:").map(|t| Op::QuotaReset(t.to_string())),
            AuditAction::RulesReload | AuditAction::RulesReloadFile | AuditAction::SafeTest | AuditAction::Denied => {
                None
            }
        }
    }
}

/// The runtime state the control plane changes.
#[derive(Clone, Copy)]
pub struct State<'a> {
    /// Maintenance, channels, flags.
    pub switches: &'a Switches,
    /// Revocations and subject blocks.
    pub sessions: &'a Sessions,
    /// Quota counters.
    pub limits: &'a LimitState,
}

impl State<'_> {
    /// Applies a committed op whose audit record is `seq` (live, or replayed): in memory at once,
    /// then its store's file when `checkpoint`. Each store skips records it already includes.
    /// `Ok(version after)`, or `Err` when only the checkpoint failed.
    pub fn apply(&self, op: &Op, seq: u64, checkpoint: bool) -> Result<u64, String> {
        match op {
            Op::Switch(s) => self.switches.apply(s, seq, checkpoint),
            Op::Session(s) => self.sessions.apply(s, seq, checkpoint),
            Op::QuotaReset(t) => self.limits.apply_reset(t, seq, checkpoint),
        }
    }

    /// Replays records, oldest first; returns how many carried an op.
    pub fn replay(&self, records: &[Value], checkpoint: bool) -> usize {
        let mut applied = 0;
        for rec in records {
            let Some(seq) = rec.get("seq").and_then(Value::as_u64) else { continue };
            match Op::from_record(rec) {
                Some(op) => {
                    applied += 1;
                    if let Err(e) = self.apply(&op, seq, checkpoint) {
                        tracing::error!(error = %e, seq, change.target = %op.target(), "replayed change applied, but its state file could not be written");
                    }
                }
                None => {
                    let outcome = rec.get("outcome").and_then(Value::as_str);
                    let action = rec.get("action").and_then(Value::as_str).unwrap_or("");
                    if outcome == Some("ok") && AuditAction::parse(action).is_none() {
                        tracing::warn!(
                            seq,
                            action,
                            "an audit record of an action this version does not know: not replayed"
                        );
                    }
                }
            }
        }
        applied
    }

    /// The lowest audit position of the stores: records past it may need replaying.
    fn floor(&self) -> Option<u64> {
        [self.switches.audit_seq(), self.sessions.audit_seq(), self.limits.audit_seq()].into_iter().flatten().min()
    }
}

/// Where the control plane's changes are made durable and shared: an exclusive section across
/// every process sharing it, inside which what others committed is first applied (through the
/// applier), and a write-ahead log. The local audit log is one; a fleet store is another.
pub trait StateStore: Send + Sync {
    /// The exclusive section.
    type Txn<'a>: StoreTxn
    where
        Self: 'a;
    /// Enters the exclusive section, caught up with every change committed elsewhere.
    fn begin(&self) -> io::Result<Self::Txn<'_>>;
}

/// Inside the store's exclusive section.
pub trait StoreTxn {
    /// Appends a record durably (the write-ahead); returns it as stored (with its `seq`).
    fn append(&mut self, e: &AuditEntry<'_>) -> io::Result<Value>;
    /// The last record's `seq`.
    fn seq(&self) -> u64;
    /// The records past `after`, oldest first.
    fn records_after(&self, after: u64) -> io::Result<Vec<Value>>;
}

impl StateStore for AuditLog {
    type Txn<'a> = AuditTxn<'a>;
    fn begin(&self) -> io::Result<AuditTxn<'_>> {
        AuditLog::begin(self)
    }
}

impl StoreTxn for AuditTxn<'_> {
    fn append(&mut self, e: &AuditEntry<'_>) -> io::Result<Value> {
        AuditTxn::append(self, e)
    }
    fn seq(&self) -> u64 {
        AuditTxn::seq(self)
    }
    fn records_after(&self, after: u64) -> io::Result<Vec<Value>> {
        AuditTxn::records_after(self, after)
    }
}

/// Who asks, for the audit record.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// The token's name, `containment:<rule>`, `ttl`.
    pub actor: Option<&'a str>,
    /// The token's role.
    pub role: Option<&'a str>,
    /// The client's address.
    pub source_ip: Option<&'a str>,
    /// The request's id.
    pub request_id: &'a str,
    /// The status a success is answered with (0 when nobody is answered: ttl, containment).
    pub status: u16,
}

/// What a validated change will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The audit action.
    pub action: AuditAction,
    /// The change.
    pub op: Op,
    /// The entry before, for the record, the answer and the event.
    pub old: Value,
    /// The operator's reason.
    pub reason: Option<String>,
}

/// A committed change.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Its audit record's `seq`.
    pub seq: u64,
    /// The target.
    pub target: String,
    /// Before.
    pub old: Value,
    /// After.
    pub new: Value,
    /// The store's version after.
    pub version: u64,
}

impl Committed {
    /// As a switch [`Change`](crate::switches::Change), for events and answers.
    pub fn change(&self) -> crate::switches::Change {
        crate::switches::Change {
            target: self.target.clone(),
            old: self.old.clone(),
            new: self.new.clone(),
            version: self.version,
        }
    }
}

/// A refusal a plan returns: its status (for the audit record) and its message.
pub trait Refusal: fmt::Display {
    /// The HTTP status the caller answers.
    fn status(&self) -> u16;
}

/// A plain refusal: a status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// Why, for the caller and the audit record.
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl Refusal for Refused {
    fn status(&self) -> u16 {
        self.status
    }
}

/// The switches' refusals (unknown target, `If-Match`, invalid request, store).
impl Refusal for SwitchError {
    fn status(&self) -> u16 {
        match self {
            SwitchError::UnknownChannel { .. } | SwitchError::UnknownFlag { .. } => 404,
            SwitchError::Conflict { .. } => 412,
            SwitchError::Invalid(_) => 400,
            SwitchError::Persist(_) => 500,
            SwitchError::StoreUnavailable(_) => 503,
        }
    }
}

/// Why a transaction did not commit. Either way nothing changed.
#[derive(Debug)]
pub enum TxError<E> {
    /// The plan refused (validation, unknown target, `If-Match`); audited as `refused`.
    Refused(E),
    /// The store (the audit log) could not be entered or written.
    Store(io::Error),
}

/// The control-plane transaction. See the module doc. `refusal_new` is what the refused record
/// shows as requested (`null` when nothing is to show).
pub fn transact<S: StateStore, E: Refusal>(
    store: &S,
    state: State<'_>,
    meta: Meta<'_>,
    target_hint: &str,
    refusal_new: Value,
    action_hint: AuditAction,
    plan: impl FnOnce() -> Result<Plan, E>,
) -> Result<Committed, TxError<E>> {
    let mut txn = store.begin().map_err(TxError::Store)?;
    let plan = match plan() {
        Ok(p) => p,
        Err(e) => {
            let why = e.to_string();
            let refused = AuditEntry::new(action_hint, target_hint, "refused", e.status())
                .by(meta.actor, meta.role, meta.source_ip, meta.request_id)
                .values(Value::Null, refusal_new)
                .reason(Some(&why));
            if let Err(err) = txn.append(&refused) {
                tracing::error!(error = %err, "cannot audit a refused change");
            }
            return Err(TxError::Refused(e));
        }
    };
    let target = plan.op.target();
    let new = plan.op.new_value();
    let record = txn
        .append(
            &AuditEntry::new(plan.action, &target, "ok", meta.status)
                .by(meta.actor, meta.role, meta.source_ip, meta.request_id)
                .values(plan.old.clone(), new.clone())
                .reason(plan.reason.as_deref()),
        )
        .map_err(TxError::Store)?;
    let seq = record.get("seq").and_then(Value::as_u64).unwrap_or_else(|| txn.seq());
    let version = match state.apply(&plan.op, seq, true) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, seq, change.target = %target, "change committed (its audit record is durable) but its state file could not be written; it is replayed from the audit log at the next start");
            current_version(state, &plan.op)
        }
    };
    drop(txn);
    Ok(Committed { seq, target, old: plan.old, new, version })
}

fn current_version(state: State<'_>, op: &Op) -> u64 {
    match op {
        Op::Switch(_) => state.switches.snapshot().version,
        Op::Session(_) => state.sessions.version(),
        Op::QuotaReset(_) => state.limits.book.generation(),
    }
}

/// Runs `f` inside the store's exclusive section, caught up (housekeeping writes that must not
/// overwrite another process's newer files: expiring revocations, quota counters).
pub fn housekeeping<S: StateStore, T>(store: &S, f: impl FnOnce() -> T) -> io::Result<T> {
    let txn = store.begin()?;
    let out = f();
    drop(txn);
    Ok(out)
}

/// At start, inside the exclusive section: state files that predate `audit_seq` adopt the log's
/// position; every record past the lowest position is replayed (each store skipping what it
/// already has) and checkpointed; temporary files a crash left in `state_dir` are removed.
/// Returns how many records were replayed.
pub fn recover<S: StateStore>(store: &S, state: State<'_>, state_dir: &Path) -> io::Result<usize> {
    let txn = store.begin()?;
    let at = txn.seq();
    let floor = state.floor().unwrap_or(at);
    let legacy = [state.switches.audit_seq(), state.sessions.audit_seq(), state.limits.audit_seq()].contains(&None);
    // A store without a position (a file from before) is trusted as it is: replay skips it.
    state.switches.settle_audit_seq_if_none(at);
    state.sessions.settle_audit_seq_if_none(at);
    state.limits.settle_audit_seq_if_none(at);
    let floor = floor.min(state.floor().unwrap_or(at));
    let records = txn.records_after(floor)?;
    let replayed = state.replay(&records, false);
    if replayed > 0 {
        tracing::warn!(replayed, from_seq = floor + 1, to_seq = at, "state replayed from the audit log: changes recorded but not yet in the state files (a crash between the record and the file)");
    }
    if floor < at || legacy {
        // Every store now includes every record up to `at`.
        state.switches.settle_audit_seq(at);
        state.sessions.settle_audit_seq(at);
        state.limits.settle_audit_seq(at);
        for (file, r) in [
            ("switches.json", state.switches.checkpoint()),
            ("sessions.json", state.sessions.checkpoint()),
            ("quotas.json", state.limits.persist().map(drop)),
        ] {
            if let Err(e) = r {
                tracing::error!(error = %e, file, "cannot write a recovered state file (the audit log still holds the changes)");
            }
        }
    }
    crate::durable::clean_stray_tmp(state_dir);
    drop(txn);
    Ok(replayed)
}

/// Installs the applier: records other processes append are applied to this process's state
/// (in memory; their writer checkpointed them, and replay covers a writer that died first).
/// `state` says where the owner (the shared state, held weakly) keeps the runtime state.
pub fn follow<T: Send + Sync + 'static>(log: &AuditLog, owner: std::sync::Weak<T>, state: fn(&T) -> State<'_>) {
    log.set_applier(Arc::new(move |records: &[Value]| {
        if let Some(sh) = owner.upgrade() {
            let n = state(&sh).replay(records, false);
            if n > 0 {
                tracing::info!(changes = n, "applied changes another process committed");
            }
        }
    }));
}

#[cfg(test)]
mod tests;
