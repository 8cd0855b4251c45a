//! The tamper-evident audit log: one JSON line per control-plane mutation (and per refused
//! attempt), each carrying the SHA-256 of the record before it, fsynced before the caller
//! acknowledges anything. See docs/audit.md.
//!
//! File: `<state_dir>/audit/audit.jsonl`. Record (keys in exactly this order, compact serde_json,
//! no whitespace, one line, `\n`-terminated):
//!
//! `{"seq":…,"time":…,"actor":…,"role":…,"source_ip":…,"request_id":…,"action":…,"target":…,
//! "old":…,"new":…,"reason":…,"outcome":…,"status":…,"prev":…,"hash":…}`
//!
//! The canonical form of a record is that same text without its last member, i.e. the line with
//! `,"hash":"<64 hex>"` removed before the final `}`; `hash` is the lowercase hex SHA-256 of those
//! bytes. The writer produces them with serde_json (fields serialised in declaration order); the
//! verifier hashes the bytes as stored, so it never depends on re-serialising (number formatting,
//! key order inside `old`/`new`).

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Name of the log file inside the audit directory.
pub const FILE_NAME: &str = "audit.jsonl";
/// `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most records [`AuditLog::recent`] returns, whatever the caller asks for.
pub const RECENT_MAX: usize = 1000;

/// Block size for reading the file backwards.
const BLOCK: u64 = 64 * 1024;
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;
const HASH_PREFIX: &[u8] = b",\"hash\":\"";

/// The audit directory under a gateway's `state_dir` (the log is `<this>/audit.jsonl`).
pub fn dir_for(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// What a record says was attempted: the typed form of the `action` field. Every control-plane
/// mutation names one; [`AuditAction::changes_state`] says which ones the state is replayed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// `switch.maintenance.set`: an operator (or containment) set maintenance mode.
    MaintenanceSet,
    /// `switch.maintenance.expire`: a maintenance ttl ran out.
    MaintenanceExpire,
    /// `switch.channel.set`: a channel kill switch.
    ChannelSet,
    /// `flag.set`: a runtime flag.
    FlagSet,
    /// `session.revoke`.
    SessionRevoke,
    /// `session.restore`.
    SessionRestore,
    /// `subject.block` (containment).
    SubjectBlock,
    /// `quota.reset`.
    QuotaReset,
    /// `rules.reload`.
    RulesReload,
    /// `safe_test`.
    SafeTest,
    /// `denied`: a control request refused before it reached a handler (401, 403, 405).
    Denied,
    /// `subject.unblock`: an operator lifted a subject block.
    SubjectUnblock,
    /// `address.block`: an operator blocked a client address or CIDR.
    AddressBlock,
    /// `address.unblock`.
    AddressUnblock,
    /// `tenant.suspend`: every request of or aimed at the tenant refused.
    TenantSuspend,
    /// `tenant.resume`.
    TenantResume,
    /// `allowlist.add`: an identity allowlist entry (email or domain) added or reactivated.
    AllowlistAdd,
    /// `allowlist.remove`: an allowlist entry deactivated (it overrides the rule file's lists).
    AllowlistRemove,
    /// `rules.reload.file`: rules picked up from the files (watch, SIGHUP), or a failed attempt.
    RulesReloadFile,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 19] = [
        AuditAction::MaintenanceSet,
        AuditAction::MaintenanceExpire,
        AuditAction::ChannelSet,
        AuditAction::FlagSet,
        AuditAction::SessionRevoke,
        AuditAction::SessionRestore,
        AuditAction::SubjectBlock,
        AuditAction::QuotaReset,
        AuditAction::RulesReload,
        AuditAction::SafeTest,
        AuditAction::Denied,
        AuditAction::SubjectUnblock,
        AuditAction::AddressBlock,
        AuditAction::AddressUnblock,
        AuditAction::TenantSuspend,
        AuditAction::TenantResume,
        AuditAction::AllowlistAdd,
        AuditAction::AllowlistRemove,
        AuditAction::RulesReloadFile,
    ];

    /// The `action` field's text.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::MaintenanceSet => "switch.maintenance.set",
            AuditAction::MaintenanceExpire => "switch.maintenance.expire",
            AuditAction::ChannelSet => "switch.channel.set",
            AuditAction::FlagSet => "flag.set",
            AuditAction::SessionRevoke => "session.revoke",
            AuditAction::SessionRestore => "session.restore",
            AuditAction::SubjectBlock => "subject.block",
            AuditAction::QuotaReset => "quota.reset",
            AuditAction::RulesReload => "rules.reload",
            AuditAction::SafeTest => "safe_test",
            AuditAction::Denied => "denied",
            AuditAction::SubjectUnblock => "subject.unblock",
            AuditAction::AddressBlock => "address.block",
            AuditAction::AddressUnblock => "address.unblock",
            AuditAction::TenantSuspend => "tenant.suspend",
            AuditAction::TenantResume => "tenant.resume",
            AuditAction::AllowlistAdd => "allowlist.add",
            AuditAction::AllowlistRemove => "allowlist.remove",
            AuditAction::RulesReloadFile => "rules.reload.file",
        }
    }

    /// The action a record's `action` field names, if this version knows it.
    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// True for the actions whose `ok` records carry a state change (the runtime state is
    /// replayed from them, see `txn`).
    pub const fn changes_state(self) -> bool {
        !matches!(
            self,
            AuditAction::RulesReload | AuditAction::RulesReloadFile | AuditAction::SafeTest | AuditAction::Denied
        )
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller supplies for one record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// The token's configured name, never the token; `None` when unauthenticated.
    pub actor: Option<&'a str>,
    /// The token's role (`viewer`, `operator`, `admin`), if authenticated.
    pub role: Option<&'a str>,
    /// The client's IP address.
    pub source_ip: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: &'a str,
    /// What was attempted (its `action` text: `switch.maintenance.set`, `rules.reload`, …).
    pub action: AuditAction,
    /// What it was attempted on, e.g. `maintenance`, `channel:whatsapp`, `/v1/flags/x`.
    pub target: &'a str,
    /// The value before (`null` when not applicable).
    pub old: Value,
    /// The value after, or the one requested when refused (`null` when not applicable).
    pub new: Value,
    /// The operator's stated reason, if any.
    pub reason: Option<&'a str>,
    /// `ok`, `refused` or `failed`.
    pub outcome: &'a str,
    /// The HTTP status answered.
    pub status: u16,
}

impl<'a> AuditEntry<'a> {
    /// A record of `action` on `target`, its `outcome` (`ok`, `refused`, `failed`) answered with
    /// `status` (0 when nobody is answered). Until said otherwise ([`AuditEntry::by`],
    /// [`AuditEntry::values`], [`AuditEntry::reason`]): nobody's (no actor, role or address;
    /// request id `-`), `old` and `new` `null`, no reason.
    pub fn new(action: AuditAction, target: &'a str, outcome: &'a str, status: u16) -> Self {
        AuditEntry {
            actor: None,
            role: None,
            source_ip: None,
            request_id: "-",
            action,
            target,
            old: Value::Null,
            new: Value::Null,
            reason: None,
            outcome,
            status,
        }
    }

    /// Who asked: the token's name and role, the client's address, the request's id.
    pub fn by(
        self,
        actor: Option<&'a str>,
        role: Option<&'a str>,
        source_ip: Option<&str>,
        request_id: &'a str,
    ) -> Self {
        AuditEntry { actor, role, source_ip: source_ip.map(str::to_owned), request_id, ..self }
    }

    /// The value before, and the value after (or the one requested when refused).
    pub fn values(self, old: Value, new: Value) -> Self {
        AuditEntry { old, new, ..self }
    }

    /// The stated reason (an operator's, or why it was refused).
    pub fn reason(self, reason: Option<&'a str>) -> Self {
        AuditEntry { reason, ..self }
    }
}

/// The record without its hash, in canonical field order (serde serialises struct fields in
/// declaration order, whatever serde_json's map features are).
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    actor: Option<&'a str>,
    role: Option<&'a str>,
    source_ip: Option<&'a str>,
    request_id: &'a str,
    action: &'a str,
    target: &'a str,
    old: &'a Value,
    new: &'a Value,
    reason: Option<&'a str>,
    outcome: &'a str,
    status: u16,
    prev: &'a str,
}

/// A stored record, parsed strictly (no unknown or duplicate fields) for its shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // every field is parsed to check the record's shape; only some are read
struct Stored {
    seq: u64,
    time: String,
    actor: Option<String>,
    role: Option<String>,
    source_ip: Option<String>,
    request_id: String,
    action: String,
    target: String,
    old: Value,
    new: Value,
    reason: Option<String>,
    outcome: String,
    status: u16,
    prev: String,
    hash: String,
}

/// What a line that checks out on its own says about the chain.
struct Checked {
    seq: u64,
    prev: String,
    hash: String,
}

/// Fault injection for the write path (only tests inject faults).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Write half the line, then fail.
    TornWrite,
    /// Write the whole line, then fail the fsync.
    Sync,
}

struct Inner {
    /// `None` after an I/O error: the next append reopens and re-checks the file.
    file: Option<File>,
    /// `<dir>/audit.lock`: `flock`ed for every append, by every process sharing the log.
    lock: File,
    /// Last committed record.
    seq: u64,
    last_hash: String,
    /// Length of the file up to the end of the last committed record.
    len: u64,
    /// Always `None` outside tests.
    fault: Option<Fault>,
}

/// What is done with records another process appended (the state is replayed from them).
pub type Applier = Arc<dyn Fn(&[Value]) + Send + Sync>;

/// The name of the lock file beside the log.
pub const LOCK_NAME: &str = "audit.lock";

/// The append-only, hash-chained, fsynced audit log. Cheap to share behind an `Arc`; appends are
/// serialised by an internal mutex and, across processes sharing the file (the old and the new
/// process of a graceful upgrade), by an exclusive `flock` on `audit.lock`. Before each append
/// the log reads what other processes appended since it last looked, checks that it continues
/// the chain, and hands it to the [`Applier`]: the chain never forks, and never locks out.
pub struct AuditLog {
    path: PathBuf,
    healthy: AtomicBool,
    inner: Mutex<Inner>,
    applier: parking_lot::RwLock<Option<Applier>>,
}

/// One exclusive section of the log (in-process mutex + cross-process `flock`), see
/// [`AuditLog::begin`]. Unlocked on drop.
pub struct AuditTxn<'a> {
    log: &'a AuditLog,
    inner: parking_lot::MutexGuard<'a, Inner>,
}

impl AuditTxn<'_> {
    /// Appends one record and fsyncs it before returning it (see [`AuditLog::append`]).
    pub fn append(&mut self, e: &AuditEntry<'_>) -> io::Result<Value> {
        let result = self.log.append_locked(&mut self.inner, e);
        self.log.note(&result, e);
        result
    }

    /// `seq` of the last record in the log.
    pub fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// The records with `seq > after`, oldest first (read backwards from the end of the log,
    /// stopping at the first one at or below `after`).
    pub fn records_after(&self, after: u64) -> io::Result<Vec<Value>> {
        if self.inner.seq <= after || self.inner.len == 0 {
            return Ok(Vec::new());
        }
        let file = File::open(&self.log.path)?;
        let want = usize::try_from(self.inner.seq - after).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(want.min(4096));
        for line in tail_lines(&file, self.inner.len, want)? {
            let v: Value =
                serde_json::from_slice(&line).map_err(|e| invalid_data(format!("unreadable audit record: {e}")))?;
            if v.get("seq").and_then(Value::as_u64).is_none_or(|s| s <= after) {
                break;
            }
            out.push(v);
        }
        out.reverse();
        Ok(out)
    }
}

impl Drop for AuditTxn<'_> {
    fn drop(&mut self) {
        let _ = self.inner.lock.unlock();
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).field("healthy", &self.healthy()).finish()
    }
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn now_rfc3339_ms() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl AuditLog {
    /// Opens (creating `dir` and the file if needed) `<dir>/audit.jsonl` and continues its chain
    /// from the last record. An incomplete final line (a write cut short by a crash: it was never
    /// acknowledged) is truncated away with a warning. A last record that does not parse or whose
    /// hash does not recompute fails the open: the gateway must not silently fork the chain.
    pub fn open(dir: &Path) -> io::Result<AuditLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let lock = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_NAME))?;
        // Another process (the other half of a graceful upgrade) may be appending right now.
        lock.lock()?;
        let unlock = Unlock(&lock);
        // Make the file's existence durable too.
        File::open(dir)?.sync_all()?;
        let mut len = meta.len();
        let cut = after_last_newline(&file, len)?;
        if cut < len {
            tracing::warn!(
                path = %path.display(),
                offset = cut,
                bytes = len - cut,
                "audit log: removing an incomplete final line (a write cut short by a crash, never acknowledged)"
            );
            file.set_len(cut)?;
            file.sync_all()?;
            len = cut;
        }
        let (seq, last_hash) = if len == 0 {
            (0, GENESIS.to_string())
        } else {
            let lines = tail_lines(&file, len, 1)?;
            let last = lines.first().map(Vec::as_slice).unwrap_or_default();
            let c = check_line(last).map_err(|reason| {
                invalid_data(format!(
                    "{}: the last record does not verify ({reason}); refusing to continue the chain \
                     (run `portcullis audit verify --file {}`)",
                    path.display(),
                    path.display()
                ))
            })?;
            (c.seq, c.hash)
        };
        drop(unlock);
        tracing::info!(path = %path.display(), records = seq, "audit log open");
        Ok(AuditLog {
            path,
            healthy: AtomicBool::new(true),
            inner: Mutex::new(Inner { file: Some(file), lock, seq, last_hash, len, fault: None }),
            applier: parking_lot::RwLock::new(None),
        })
    }

    /// What to do with records other processes append (replay them into the runtime state).
    /// Until one is set, they are only chained onto.
    pub fn set_applier(&self, applier: Applier) {
        *self.applier.write() = Some(applier);
    }

    /// Enters the log's exclusive section: this process's mutex, then the `flock` every process
    /// sharing the log takes; then catches up with what other processes appended (handed to the
    /// applier). Everything done with the returned guard is atomic with respect to every other
    /// writer of the log, in this process or another.
    pub fn begin(&self) -> io::Result<AuditTxn<'_>> {
        let inner = self.inner.lock();
        inner.lock.lock()?;
        let mut txn = AuditTxn { log: self, inner };
        let file = match self.sync_locked(&mut txn.inner) {
            Ok(f) => f,
            Err(e) => {
                self.healthy.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        txn.inner.file = Some(file);
        Ok(txn)
    }

    /// Catches up with other processes' appends when the file grew (no lock taken when it did
    /// not: one `stat`). For the follower that keeps a process's state in step between its own
    /// mutations.
    pub fn follow(&self) -> io::Result<()> {
        let committed = self.inner.lock().len;
        match fs::metadata(&self.path) {
            Ok(m) if m.len() == committed => Ok(()),
            _ => self.begin().map(drop),
        }
    }

    /// Appends one record and fsyncs it (`File::sync_data`) before returning it. Any error leaves
    /// the file as it was (a partly written line is truncated away), returns `Err` and marks the
    /// log unhealthy: the caller must then refuse the mutation (fail closed). A later successful
    /// append marks it healthy again.
    pub fn append(&self, e: &AuditEntry<'_>) -> io::Result<Value> {
        let mut txn = match self.begin() {
            Ok(t) => t,
            Err(err) => {
                let failed = Err(err);
                self.note(&failed, e);
                return failed;
            }
        };
        txn.append(e)
    }

    /// Health bookkeeping after an append.
    fn note(&self, result: &io::Result<Value>, e: &AuditEntry<'_>) {
        match result {
            Ok(_) => {
                if !self.healthy.swap(true, Ordering::SeqCst) {
                    tracing::info!(path = %self.path.display(), "audit log writable again");
                }
            }
            Err(err) => {
                self.healthy.store(false, Ordering::SeqCst);
                tracing::error!(
                    path = %self.path.display(),
                    error = %err,
                    action = e.action.as_str(),
                    change.target = e.target,
                    "audit log write failed: the mutation must be refused"
                );
            }
        }
    }

    fn append_locked(&self, inner: &mut Inner, e: &AuditEntry<'_>) -> io::Result<Value> {
        let mut file = match inner.file.take() {
            Some(f) => f,
            None => self.sync_locked(inner)?,
        };
        let seq = inner.seq + 1;
        let time = now_rfc3339_ms();
        let body = Body {
            seq,
            time: &time,
            actor: e.actor,
            role: e.role,
            source_ip: e.source_ip.as_deref(),
            request_id: e.request_id,
            action: e.action.as_str(),
            target: e.target,
            old: &e.old,
            new: &e.new,
            reason: e.reason,
            outcome: e.outcome,
            status: e.status,
            prev: &inner.last_hash,
        };
        let canonical = serde_json::to_string(&body).map_err(io::Error::other)?;
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        let head = canonical.strip_suffix('}').ok_or_else(|| io::Error::other("record is not a JSON object"))?;
        let mut line = String::with_capacity(canonical.len() + HASH_SUFFIX_LEN + 1);
        line.push_str(head);
        line.push_str(",\"hash\":\"");
        line.push_str(&hash);
        line.push_str("\"}\n");

        if let Err(err) = write_and_sync(&mut file, line.as_bytes(), inner.fault.take()) {
            // Undo a partly (or wholly) written line; if even that fails, the reopen on the next
            // append trims it (it holds no newline, or is checked otherwise).
            if file.set_len(inner.len).and_then(|()| file.sync_data()).is_err() {
                tracing::warn!(path = %self.path.display(), "audit log: cannot roll back a failed write yet");
            }
            return Err(err);
        }
        inner.file = Some(file);
        inner.len += line.len() as u64;
        inner.seq = seq;
        let mut v = serde_json::to_value(&body).map_err(io::Error::other)?;
        if let Value::Object(m) = &mut v {
            m.insert("hash".into(), Value::String(hash.clone()));
        }
        inner.last_hash = hash;
        Ok(v)
    }

    /// With the lock held: the file to append to, caught up with what other processes appended.
    /// The file at `path` must be the one this process committed to (or, after an error, end at
    /// the committed length with the last record this process knows); bytes beyond it must be
    /// whole records that continue the chain (they are chained onto and handed to the applier);
    /// a partial line at the end is a write cut short by a crash (its writer held the lock and is
    /// gone) and is trimmed. Anything else means someone else touched the file: refused.
    fn sync_locked(&self, inner: &mut Inner) -> io::Result<File> {
        let (file, reopened) = match inner.file.take() {
            Some(f) => (f, false),
            None => (OpenOptions::new().read(true).append(true).open(&self.path)?, true),
        };
        let held = file.metadata()?;
        if !held.is_file() {
            return Err(io::Error::other(format!("{} is not a regular file", self.path.display())));
        }
        if !reopened {
            let at_path = fs::metadata(&self.path)?;
            if held.nlink() == 0 || held.dev() != at_path.dev() || held.ino() != at_path.ino() {
                return Err(io::Error::other(format!("{} was removed or replaced while open", self.path.display())));
            }
        }
        let len = held.len();
        if len < inner.len {
            return Err(invalid_data(format!(
                "{} is shorter ({len} bytes) than what was committed ({} bytes): truncated or replaced; \
                 refusing to continue the chain",
                self.path.display(),
                inner.len
            )));
        }
        if reopened && inner.len > 0 {
            let lines = tail_lines(&file, inner.len, 1)?;
            let last = lines.first().map(Vec::as_slice).unwrap_or_default();
            match check_line(last) {
                Ok(c) if c.hash == inner.last_hash => {}
                _ => {
                    return Err(invalid_data(format!(
                        "{}: the last record is not the one this process wrote; refusing to continue the chain",
                        self.path.display()
                    )))
                }
            }
        }
        if len > inner.len {
            let whole = after_last_newline(&file, len)?.max(inner.len);
            let mut foreign = Vec::new();
            if whole > inner.len {
                let mut buf = vec![0u8; usize::try_from(whole - inner.len).map_err(io::Error::other)?];
                file.read_exact_at(&mut buf, inner.len)?;
                let (mut seq, mut hash) = (inner.seq, inner.last_hash.clone());
                for line in buf.strip_suffix(b"\n").unwrap_or(&buf).split(|&b| b == b'\n') {
                    let c = check_line(line).ok().filter(|c| c.seq == seq + 1 && c.prev == hash).ok_or_else(|| {
                        invalid_data(format!(
                            "{} holds records that do not continue the chain (seq {}); refusing to continue it \
                                 (run `portcullis audit verify --file {}`)",
                            self.path.display(),
                            seq + 1,
                            self.path.display()
                        ))
                    })?;
                    foreign.push(serde_json::from_slice::<Value>(line).map_err(io::Error::other)?);
                    (seq, hash) = (c.seq, c.hash);
                }
                inner.seq = seq;
                inner.last_hash = hash;
                inner.len = whole;
            }
            if len > whole {
                tracing::warn!(path = %self.path.display(), bytes = len - whole, "audit log: trimming a partly written line (a writer died mid-write; never acknowledged)");
                file.set_len(whole)?;
                file.sync_data()?;
            }
            if !foreign.is_empty() {
                tracing::info!(path = %self.path.display(), records = foreign.len(), seq = inner.seq, "audit log: following records another process appended");
                let applier = self.applier.read().clone();
                if let Some(apply) = applier {
                    apply(&foreign);
                }
            }
        }
        Ok(file)
    }

    /// Whether the last append succeeded (true after open). `/ready` reports it.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// The newest records, newest first, at most `limit` (capped at [`RECENT_MAX`]). Reads the
    /// file's tail backwards in blocks; never the whole file.
    pub fn recent(&self, limit: usize) -> io::Result<Vec<Value>> {
        let limit = limit.min(RECENT_MAX);
        // Include what another process (the other half of an upgrade) appended.
        let _ = self.follow();
        let end = self.inner.lock().len;
        let file = File::open(&self.path)?;
        tail_lines(&file, end, limit)?
            .iter()
            .map(|l| serde_json::from_slice(l).map_err(|e| invalid_data(format!("unreadable audit record: {e}"))))
            .collect()
    }

    /// `seq` of the last record this process knows of (its own, or another process's it has
    /// followed).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().seq
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    fn inject(&self, fault: Fault) {
        self.inner.lock().fault = Some(fault);
    }
}

/// Unlocks a `flock` when dropped (the open path's early returns).
struct Unlock<'a>(&'a File);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn write_and_sync(file: &mut File, line: &[u8], fault: Option<Fault>) -> io::Result<()> {
    match fault {
        Some(Fault::TornWrite) => {
            file.write_all(&line[..line.len() / 2])?;
            Err(io::Error::other("injected: torn write"))
        }
        Some(Fault::Sync) => {
            file.write_all(line)?;
            Err(io::Error::other("injected: fsync failed"))
        }
        None => {
            file.write_all(line)?;
            file.sync_data()
        }
    }
}

/// Offset just after the last `\n` in `file[..end]` (0 if there is none).
fn after_last_newline(file: &File, end: u64) -> io::Result<u64> {
    let mut pos = end;
    let mut buf = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        buf.resize((pos - start) as usize, 0);
        file.read_exact_at(&mut buf, start)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

/// The last `n` lines of `file[..end]` (which ends with `\n`), newest first, without their
/// newlines. Reads backwards in blocks.
fn tail_lines(file: &File, end: u64, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    scan_back(file, end, &mut |line| {
        out.push(line);
        out.len() < n
    })?;
    Ok(out)
}

/// Hands the lines of `file[..end]` to `visit`, the last first, until it returns false.
fn scan_back(file: &File, end: u64, visit: &mut dyn FnMut(Vec<u8>) -> bool) -> io::Result<()> {
    if end == 0 {
        return Ok(());
    }
    let mut pos = end - 1; // the final newline
    let mut carry: Vec<u8> = Vec::new(); // the start of the line being assembled has not been read yet
    loop {
        if pos == 0 {
            visit(carry);
            return Ok(());
        }
        let start = pos.saturating_sub(BLOCK);
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.read_exact_at(&mut chunk, start)?;
        let mut search_end = chunk.len();
        chunk.extend_from_slice(&carry);
        let mut seg_end = chunk.len();
        while let Some(i) = chunk[..search_end].iter().rposition(|&b| b == b'\n') {
            if !visit(chunk[i + 1..seg_end].to_vec()) {
                return Ok(());
            }
            seg_end = i;
            search_end = i;
        }
        chunk.truncate(seg_end);
        carry = chunk;
        pos = start;
    }
}

/// Which records `GET /v1/audit` returns: each given field must match (`target` and `action`
/// exactly, or as a prefix when they end with `*`), `since`/`until` bound `time` (Unix
/// milliseconds, inclusive), `before` pages: only records with a smaller `seq`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// The token name (`actor`).
    pub actor: Option<String>,
    /// The action (`session.revoke`, `address.*`).
    pub action: Option<String>,
    /// The target (`tenant:acme`, `subject:*`).
    pub target: Option<String>,
    /// `ok` or `refused`.
    pub outcome: Option<String>,
    /// Earliest `time`, Unix milliseconds.
    pub since: Option<i64>,
    /// Latest `time`, Unix milliseconds.
    pub until: Option<i64>,
    /// Only records with `seq` below this (the previous page's `next_before`).
    pub before: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, rec: &Value) -> bool {
        let field = |k: &str| rec.get(k).and_then(Value::as_str);
        let like = |want: &Option<String>, have: Option<&str>| match want {
            None => true,
            Some(w) => match w.strip_suffix('*') {
                Some(prefix) => have.is_some_and(|h| h.starts_with(prefix)),
                None => have == Some(w.as_str()),
            },
        };
        like(&self.actor, field("actor"))
            && like(&self.action, field("action"))
            && like(&self.target, field("target"))
            && like(&self.outcome, field("outcome"))
    }
}

/// A record's `time` in Unix milliseconds.
fn record_millis(rec: &Value) -> Option<i64> {
    let t = rec.get("time")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|d| d.timestamp_millis())
}

impl AuditLog {
    /// The newest records matching `f`, newest first, at most `limit` (capped at
    /// [`RECENT_MAX`]), and the `before` cursor of the next (older) page when there may be one.
    /// Reads the file backwards from the cursor and stops at `since`: any record of the log can be
    /// exported, page by page.
    pub fn page(&self, f: &AuditFilter, limit: usize) -> io::Result<(Vec<Value>, Option<u64>)> {
        let limit = limit.clamp(1, RECENT_MAX);
        let _ = self.follow();
        let end = self.inner.lock().len;
        let file = File::open(&self.path)?;
        let mut out = Vec::new();
        let mut bad = None;
        let mut more = false;
        scan_back(&file, end, &mut |line| {
            let rec: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(e) => {
                    bad = Some(invalid_data(format!("unreadable audit record: {e}")));
                    return false;
                }
            };
            let seq = rec.get("seq").and_then(Value::as_u64).unwrap_or(0);
            if f.before.is_some_and(|b| seq >= b) {
                return true;
            }
            let ms = record_millis(&rec);
            if let (Some(since), Some(ms)) = (f.since, ms) {
                if ms < since {
                    return false; // older records only from here on
                }
            }
            if f.until.is_some_and(|u| ms.is_some_and(|ms| ms > u)) || !f.matches(&rec) {
                return true;
            }
            if out.len() == limit {
                more = true;
                return false;
            }
            out.push(rec);
            true
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let next = if more { out.last().and_then(|r| r.get("seq")).and_then(Value::as_u64) } else { None };
        Ok((out, next))
    }
}

/// The line minus its `,"hash":"…"` member (still without the closing `}`), if it ends with one.
fn split_hash(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.len() <= HASH_SUFFIX_LEN {
        return None;
    }
    let (head, tail) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hex = tail.strip_prefix(HASH_PREFIX)?.strip_suffix(b"\"}")?;
    is_hex64(hex).then_some((head, hex))
}

fn is_hex64(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hex SHA-256 of a record's canonical form, given the line without its hash member.
fn hash_of_head(head: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(head);
    h.update(b"}");
    hex::encode(h.finalize())
}

/// Checks one line on its own: a well-formed record whose hash recomputes.
fn check_line(line: &[u8]) -> Result<Checked, String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    let stored: Stored = serde_json::from_slice(line).map_err(|e| format!("not a valid audit record: {e}"))?;
    let Some((head, _)) = split_hash(line) else {
        return Err("\"hash\" is not the record's last field as written by the gateway".into());
    };
    if !is_hex64(stored.prev.as_bytes()) {
        return Err("prev is not 64 lowercase hex digits".into());
    }
    let computed = hash_of_head(head);
    if computed != stored.hash {
        return Err(format!(
            "hash mismatch: the record was modified (stored {}…, computed {}…)",
            &stored.hash[..16.min(stored.hash.len())],
            &computed[..16]
        ));
    }
    Ok(Checked { seq: stored.seq, prev: stored.prev, hash: stored.hash })
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// 1-based line number of the first broken record; 0 when the file itself cannot be read.
    pub line: usize,
    /// The record's `seq`, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.seq) {
            (0, _) => write!(f, "{}", self.reason),
            (line, Some(seq)) => write!(f, "line {line} (seq {seq}): {}", self.reason),
            (line, None) => write!(f, "line {line}: {}", self.reason),
        }
    }
}

impl std::error::Error for VerifyError {}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Number of records.
    pub records: u64,
    /// Hash of the last record ([`GENESIS`] when there are none).
    pub last_hash: String,
}

/// Verifies the whole chain in `path`; returns the number of records.
pub fn verify(path: &Path) -> Result<u64, VerifyError> {
    verify_report(path).map(|s| s.records)
}

/// Verifies the whole chain in `path`, streaming: every line is a well-formed record, `seq` runs
/// 1, 2, 3 …, each `prev` is the previous record's `hash` (the first one's is [`GENESIS`]), and
/// every `hash` recomputes. Reports the first broken record.
pub fn verify_report(path: &Path) -> Result<VerifySummary, VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError {
        line: 0,
        seq: None,
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut records = 0u64;
    let mut line = 0usize;
    loop {
        buf.clear();
        let got = reader.read_until(b'\n', &mut buf).map_err(|e| VerifyError {
            line: 0,
            seq: None,
            reason: format!("cannot read {} at line {}: {e}", path.display(), line + 1),
        })?;
        if got == 0 {
            return Ok(VerifySummary { records, last_hash: prev });
        }
        line += 1;
        let broken = |seq: Option<u64>, reason: String| VerifyError { line, seq, reason };
        if buf.pop() != Some(b'\n') {
            return Err(broken(
                lenient_seq(&buf),
                "incomplete final line (no trailing newline): a write cut short by a crash, never \
                 acknowledged; the gateway removes it when it next opens the log"
                    .into(),
            ));
        }
        let c = check_line(&buf).map_err(|reason| broken(lenient_seq(&buf), reason))?;
        let expected = records + 1;
        if c.seq != expected {
            return Err(broken(
                Some(c.seq),
                format!("seq {} where {expected} was expected: records deleted, inserted or reordered", c.seq),
            ));
        }
        if c.prev != prev {
            let reason = if records == 0 {
                "prev is not the genesis value (64 zeros): records before it were deleted".to_string()
            } else {
                "prev is not the hash of the record before it: records deleted, inserted or reordered".to_string()
            };
            return Err(broken(Some(c.seq), reason));
        }
        prev = c.hash;
        records += 1;
    }
}

/// `seq` of a line that may not be a valid record, for error messages.
fn lenient_seq(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(line).ok()?.get("seq")?.as_u64()
}

#[cfg(test)]
mod tests;
