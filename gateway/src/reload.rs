//! Rule files in, compiled snapshot out: the one reload function and its triggers.
//!
//! Every trigger — the directory watch, the checksum poll, SIGHUP, `POST /v1/rules/reload` and
//! the start itself — calls [`Rules::reload`]; `portcullis validate` calls [`load_dir`], the
//! same read-and-compile a reload runs. A reload that fails validation keeps the running
//! snapshot, answers with every error, emits `rules_reload_failed` and sets
//! `portcullis_rules_last_reload_success` to 0.
//!
//! Each request pins one snapshot ([`Rules::current`], an `ArcSwap` load) when it starts and
//! finishes on it; the next request on the same keep-alive connection pins whatever is current.

use crate::audit::{AuditAction, AuditEntry, AuditLog};
use crate::events::{EventBus, SecurityEvent};
use crate::metrics::{Declared, Def};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use portcullis_rules::rulefile::{self, AssetRef, Snapshot, SourceFile};
use portcullis_rules::verdict::{Action, EventType};
use portcullis_rules::yaml::ConfigError;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Most rule files read from one directory.
const MAX_FILES: usize = 1000;

/// Longest a burst of change events can postpone a reload.
const MAX_DEBOUNCE_WAIT: Duration = Duration::from_secs(2);

/// Errors kept in the `rules_reload_failed` event (all of them go to the log and the API answer).
const MAX_EVENT_ERRORS: usize = 20;

/// A compiled snapshot and when it went live.
pub struct Loaded {
    /// The rules.
    pub snapshot: Snapshot,
    /// When this snapshot was swapped in.
    pub loaded_at: SystemTime,
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change event in the rules directory.
    Watch,
    /// The periodic checksum poll.
    Poll,
    /// SIGHUP.
    Signal,
    /// `POST /v1/rules/reload`.
    Api,
}

impl Trigger {
    /// Name used in logs and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::Poll => "poll",
            Self::Signal => "sighup",
            Self::Api => "api",
        }
    }

    /// Watch and poll only reload content that changed; SIGHUP and the API always recompile.
    const fn forced(self) -> bool {
        matches!(self, Self::Signal | Self::Api)
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The files are what is running (or what already failed): nothing done.
    Unchanged {
        /// The running version.
        version: String,
    },
    /// A new snapshot is live.
    Applied {
        /// Its version.
        version: String,
        /// The version it replaced.
        previous: String,
    },
    /// Validation failed; the running snapshot stays.
    Failed {
        /// The running (kept) version.
        kept: String,
        /// Every error, `FILE:LINE: key.path: message`.
        errors: Vec<String>,
    },
}

/// The last reload attempt, for `GET /v1/rules`.
#[derive(Debug, Clone)]
pub struct LastAttempt {
    /// When.
    pub at: SystemTime,
    /// Which trigger.
    pub trigger: Trigger,
    /// Errors (empty on success).
    pub errors: Vec<String>,
}

/// A reload picked up from the files (watch, poll, SIGHUP) that changed something or failed, for
/// the audit log: old and new version, the files (name, hash) before and after, which changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReload {
    /// What started it.
    pub trigger: Trigger,
    /// True when the new rules are live; false when they failed validation (the old ones stay).
    pub applied: bool,
    /// `{"version", "files":[{"name","sha256"}]}` of the rules running before.
    pub old: Value,
    /// The same for the files read, with `changed` (names added, removed or edited) and, on
    /// failure, `errors` (how many).
    pub new: Value,
}

/// Writes a [`FileReload`] to the audit log (installed by the server).
pub type ReloadAuditor = Arc<dyn Fn(&FileReload) + Send + Sync>;

/// The live rules and the reload machinery.
pub struct Rules {
    /// Audits reloads from the files (API reloads are audited by the control endpoint).
    auditor: Mutex<Option<ReloadAuditor>>,
    dir: PathBuf,
    /// Route ids of the gateway config: rules naming another route are refused.
    routes: Vec<String>,
    /// The alert sinks of the config, which alert rules may name.
    sinks: Vec<String>,
    current: ArcSwap<Loaded>,
    events: Arc<EventBus>,
    /// Serialises reloads: one read-compile-swap at a time.
    reload_lock: Mutex<()>,
    /// Content version of the last files that failed, so the poll reports a broken file once.
    last_failed: Mutex<Option<String>>,
    last_attempt: Mutex<Option<LastAttempt>>,
    last_success: AtomicBool,
    last_reload_unix: AtomicU64,
    applied_total: AtomicU64,
    failed_total: AtomicU64,
}

/// Reads every rule file of `dir`: `*.yaml`/`*.yml`, not starting with `.` (hidden files,
/// editors' temp files, Kubernetes' `..data` directories), following symlinks, in name order.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<ConfigError>> {
    let shown = dir.display().to_string();
    let fail = |msg: String| vec![ConfigError::new(&shown, 0, "", msg)];
    let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read the rules directory: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("cannot list the rules directory: {e}")))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        names.push(name);
    }
    if names.len() > MAX_FILES {
        return Err(fail(format!("{} rule files; at most {MAX_FILES} are read", names.len())));
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let shown = path.display().to_string();
        // `metadata` follows symlinks: a dangling link or a directory named *.yaml is skipped
        // only if it is not a file; a file we cannot read is an error, never silently dropped.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(ConfigError::new(&shown, 0, "", format!("cannot read: {e}")));
                continue;
            }
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => files.push(SourceFile { name: shown, text }),
                Err(_) => errors.push(ConfigError::new(&shown, 0, "", "not UTF-8 text")),
            },
            Err(e) => errors.push(ConfigError::new(&shown, 0, "", format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Reads and compiles a rules directory against the gateway's route ids: exactly what every
/// reload and `portcullis validate` run.
pub fn load_dir(dir: &Path, routes: &[String], sinks: &[String]) -> Result<Snapshot, Vec<ConfigError>> {
    compile(dir, &read_dir(dir)?, routes, sinks)
}

fn compile(
    dir: &Path,
    files: &[SourceFile],
    routes: &[String],
    sinks: &[String],
) -> Result<Snapshot, Vec<ConfigError>> {
    let ids: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sinks: Vec<&str> = sinks.iter().map(String::as_str).collect();
    let resolve = |r: &AssetRef| resolve_asset(dir, r);
    rulefile::compile_with(files, &rulefile::Env { routes: Some(&ids), assets: Some(&resolve), sinks: Some(&sinks) })
}

/// Largest key file (JWKS, PEM, secret) a rule may name.
const MAX_ASSET_BYTES: u64 = 1024 * 1024;

/// Largest IP list file a rule may name: 1M CIDRs with Spamhaus-style comments fit in 40 MiB.
const MAX_LIST_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a key file (relative paths are relative to the rules directory) or an environment
/// variable named by a rule.
pub fn resolve_asset(dir: &Path, r: &AssetRef) -> Result<Vec<u8>, String> {
    match r {
        AssetRef::Env(var) => match std::env::var_os(var) {
            Some(v) if !v.is_empty() => Ok(v.into_encoded_bytes()),
            Some(_) => Err("it is empty".into()),
            None => Err("it is not set".into()),
        },
        AssetRef::File(name) => read_limited(&dir.join(name), MAX_ASSET_BYTES),
        AssetRef::List(name) => read_limited(&dir.join(name), MAX_LIST_BYTES),
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit {
        return Err(format!("{} bytes; the limit is {limit}", meta.len()));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// The modification time of a file a rule names (relative to the rules directory), if known.
fn modified(dir: &Path, name: &str) -> Option<SystemTime> {
    std::fs::metadata(dir.join(name)).and_then(|m| m.modified()).ok()
}

/// The directories holding the files the rules read (key files, lists), other than the rules
/// directory itself: the watch covers them too, so a feed edit is a reload within the debounce.
fn asset_dirs(dir: &Path, assets: &[AssetRef]) -> Vec<PathBuf> {
    let own = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out: Vec<PathBuf> = Vec::new();
    for a in assets {
        let (AssetRef::File(name) | AssetRef::List(name)) = a else { continue };
        let Some(parent) = dir.join(name).parent().map(Path::to_path_buf) else { continue };
        let Ok(real) = std::fs::canonicalize(&parent) else { continue };
        if real != own && !out.contains(&real) {
            out.push(real);
        }
    }
    out
}

const RULES_LAST_RELOAD_SUCCESS: Def<0> =
    Def::gauge("portcullis_rules_last_reload_success", "1 when the last rule reload succeeded.", []);
const RULES_LAST_RELOAD_TIMESTAMP_SECONDS: Def<0> =
    Def::gauge("portcullis_rules_last_reload_timestamp_seconds", "When the last reload ran.", []);
const RULES_RELOADS_TOTAL: Def<1> =
    Def::counter("portcullis_rules_reloads_total", "Rule reloads by result.", ["result"]);
const RULES_INFO: Def<2> = Def::gauge("portcullis_rules_info", "The running rules snapshot.", ["version", "rules"]);
const RULES_LIST_AGE_SECONDS: Def<1> = Def::gauge(
    "portcullis_rules_list_age_seconds",
    "Seconds since each IP list file was last modified (a stale feed grows old).",
    ["list"],
);
const RULES_LIST_ENTRIES: Def<1> =
    Def::gauge("portcullis_rules_list_entries", "Entries in each IP list file the running rules read.", ["list"]);
const RULES_LIST_RANGES: Def<1> =
    Def::gauge("portcullis_rules_list_ranges", "Disjoint address ranges of each IP list after merging.", ["list"]);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[
    &RULES_LAST_RELOAD_SUCCESS,
    &RULES_LAST_RELOAD_TIMESTAMP_SECONDS,
    &RULES_RELOADS_TOTAL,
    &RULES_INFO,
    &RULES_LIST_ENTRIES,
    &RULES_LIST_RANGES,
    &RULES_LIST_AGE_SECONDS,
];

impl Rules {
    /// Loads the rules at start. Invalid rules are fatal here: the gateway does not start on
    /// rules it cannot enforce.
    pub fn start(
        dir: &Path,
        routes: Vec<String>,
        sinks: Vec<String>,
        events: Arc<EventBus>,
    ) -> Result<Arc<Rules>, Vec<ConfigError>> {
        let snapshot = load_dir(dir, &routes, &sinks)?;
        let now = SystemTime::now();
        Ok(Arc::new(Rules {
            auditor: Mutex::new(None),
            dir: dir.to_path_buf(),
            routes,
            sinks,
            current: ArcSwap::from_pointee(Loaded { snapshot, loaded_at: now }),
            events,
            reload_lock: Mutex::new(()),
            last_failed: Mutex::new(None),
            last_attempt: Mutex::new(None),
            last_success: AtomicBool::new(true),
            last_reload_unix: AtomicU64::new(unix(now)),
            applied_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
        }))
    }

    /// Installs the auditor of reloads from the files.
    pub fn set_auditor(&self, auditor: ReloadAuditor) {
        *self.auditor.lock() = Some(auditor);
    }

    /// Audits a reload from the files (not API reloads: the control endpoint records those).
    fn audit_files(&self, trigger: Trigger, applied: bool, old: &Snapshot, new_files: &[(String, String)], new: Value) {
        if trigger == Trigger::Api {
            return;
        }
        let Some(auditor) = self.auditor.lock().clone() else { return };
        let before: Vec<(String, String)> = old.files.iter().map(|f| (f.name.clone(), f.sha256.clone())).collect();
        let mut changed: Vec<&str> = new_files
            .iter()
            .filter(|(n, h)| !before.iter().any(|(bn, bh)| bn == n && bh == h))
            .map(|(n, _)| n.as_str())
            .collect();
        changed
            .extend(before.iter().filter(|(n, _)| !new_files.iter().any(|(nn, _)| nn == n)).map(|(n, _)| n.as_str()));
        let list = |f: &[(String, String)]| -> Vec<Value> {
            f.iter().map(|(n, h)| json!({ "name": n, "sha256": h })).collect()
        };
        let mut new = new;
        if let Value::Object(o) = &mut new {
            o.insert("files".into(), json!(list(new_files)));
            o.insert("changed".into(), json!(changed));
        }
        auditor(&FileReload { trigger, applied, old: json!({ "version": old.version, "files": list(&before) }), new });
    }

    /// The snapshot a new request pins.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// The rules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last attempt (none before the first reload after start).
    pub fn last_attempt(&self) -> Option<LastAttempt> {
        self.last_attempt.lock().clone()
    }

    /// Whether the last reload succeeded.
    pub fn last_success(&self) -> bool {
        self.last_success.load(Relaxed)
    }

    /// The one reload function.
    pub fn reload(&self, trigger: Trigger) -> Reloaded {
        let _one_at_a_time = self.reload_lock.lock();
        let running = self.current.load();
        let kept = running.snapshot.version.clone();
        let files = read_dir(&self.dir);
        // The files' version, with the key files the running rules read re-read: a rotated JWKS
        // file is a change even though no rule file changed.
        let resolve = |r: &AssetRef| resolve_asset(&self.dir, r);
        let version_of_files =
            files.as_ref().ok().map(|f| rulefile::assets_version(f, &running.snapshot.assets, &resolve));
        if let (false, Some(version)) = (trigger.forced(), version_of_files.as_deref()) {
            if version == kept || self.last_failed.lock().as_deref() == Some(version) {
                return Reloaded::Unchanged { version: kept };
            }
        }
        let read: Vec<(String, String)> = files
            .as_ref()
            .map_or(Vec::new(), |f| f.iter().map(|s| (s.name.clone(), rulefile::file_sha256(&s.text))).collect());
        let result = files.and_then(|f| compile(&self.dir, &f, &self.routes, &self.sinks));
        let now = SystemTime::now();
        self.last_reload_unix.store(unix(now), Relaxed);
        match result {
            Ok(mut snapshot) => {
                // Unchanged rate limits keep their clients' state (shared with requests still
                // running on the old snapshot); changed ones start empty.
                let carried = snapshot.rate_limits.carry_over(&running.snapshot.rate_limits);
                let version = snapshot.version.clone();
                let rules = snapshot.rule_count();
                let files = snapshot.files.len();
                self.current.store(Arc::new(Loaded { snapshot, loaded_at: now }));
                *self.last_failed.lock() = None;
                *self.last_attempt.lock() = Some(LastAttempt { at: now, trigger, errors: Vec::new() });
                self.last_success.store(true, Relaxed);
                self.applied_total.fetch_add(1, Relaxed);
                tracing::info!(
                    event.action = "rules_reloaded",
                    trigger = trigger.as_str(),
                    rules.version = %version,
                    rules.previous = %kept,
                    rules.count = rules,
                    rules.files = files,
                    rate_limits.kept = carried.kept,
                    rate_limits.fresh = carried.fresh,
                    "rules reloaded"
                );
                self.audit_files(trigger, true, &running.snapshot, &read, json!({ "version": version }));
                Reloaded::Applied { version, previous: kept }
            }
            Err(errs) => {
                let errors: Vec<String> = errs.iter().map(ToString::to_string).collect();
                // A file that cannot even be read has no version: it is reported every time.
                *self.last_failed.lock() = version_of_files.clone();
                *self.last_attempt.lock() = Some(LastAttempt { at: now, trigger, errors: errors.clone() });
                self.last_success.store(false, Relaxed);
                self.failed_total.fetch_add(1, Relaxed);
                tracing::warn!(
                    event.action = "rules_reload_rejected",
                    trigger = trigger.as_str(),
                    rules.version = %kept,
                    error.count = errors.len(),
                    error.message = %errors.join("\n"),
                    "rule reload failed validation; the running rules stay"
                );
                let mut detail = Map::new();
                detail.insert("trigger".into(), json!(trigger.as_str()));
                detail.insert("error_count".into(), json!(errors.len()));
                detail.insert("errors".into(), json!(errors.iter().take(MAX_EVENT_ERRORS).collect::<Vec<_>>()));
                detail.insert("kept_version".into(), json!(kept));
                let tried = json!({ "version": version_of_files, "errors": errors.len() });
                self.audit_files(trigger, false, &running.snapshot, &read, tried);
                self.events.emit(SecurityEvent::system(
                    EventType::RulesReloadFailed,
                    Action::Rejected,
                    Some(&kept),
                    detail,
                ));
                Reloaded::Failed { kept, errors }
            }
        }
    }

    /// `GET /v1/rules`.
    pub fn describe(&self) -> Value {
        let cur = self.current();
        let s = &cur.snapshot;
        let files: Vec<Value> =
            s.files.iter().map(|f| json!({ "name": f.name, "sha256": f.sha256, "rules": f.rules })).collect();
        let rules: Vec<Value> = s
            .rules()
            .iter()
            .map(|r| json!({ "id": &*r.id, "kind": r.kind, "mode": r.mode.as_str(), "hash": r.hash, "file": r.file, "line": r.line }))
            .collect();
        let last = self.last_attempt().map(|a| {
            json!({
                "at": crate::clock::rfc3339(a.at),
                "trigger": a.trigger.as_str(),
                "success": a.errors.is_empty(),
                "errors": a.errors,
            })
        });
        let now = SystemTime::now();
        let lists: Vec<Value> = s
            .lists
            .iter()
            .map(|l| {
                let modified = modified(&self.dir, &l.name);
                json!({
                    "name": l.name,
                    "sha256": l.sha256,
                    "entries": l.entries,
                    "ranges": l.ranges,
                    "bytes_in_memory": l.heap_bytes,
                    "rules": l.rules.iter().map(|r| &**r).collect::<Vec<_>>(),
                    "modified": modified.map(crate::clock::rfc3339),
                    "age_seconds": modified.map(|m| now.duration_since(m).map_or(0, |d| d.as_secs())),
                })
            })
            .collect();
        json!({
            "version": s.version,
            "loaded_at": crate::clock::rfc3339(cur.loaded_at),
            "dir": self.dir.display().to_string(),
            "files": files,
            "lists": lists,
            "rules": rules,
            "rule_count": s.rule_count(),
            "last_reload": last,
        })
    }

    /// Prometheus lines for the reload state.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let cur = self.current();
        out.family(&RULES_LAST_RELOAD_SUCCESS).sample([], self.last_success());
        out.family(&RULES_LAST_RELOAD_TIMESTAMP_SECONDS).sample([], self.last_reload_unix.load(Relaxed));
        out.family(&RULES_RELOADS_TOTAL)
            .sample(["applied"], self.applied_total.load(Relaxed))
            .sample(["failed"], self.failed_total.load(Relaxed));
        out.family(&RULES_INFO).sample([&cur.snapshot.version, &cur.snapshot.rule_count().to_string()], 1_u64);
        if cur.snapshot.lists.is_empty() {
            return;
        }
        let now = SystemTime::now();
        type Gauge = (&'static Def<1>, fn(&rulefile::ListSummary) -> usize);
        let gauges: [Gauge; 2] = [(&RULES_LIST_ENTRIES, |l| l.entries), (&RULES_LIST_RANGES, |l| l.ranges)];
        for (def, value) in gauges {
            let mut f = out.family(def);
            for l in &cur.snapshot.lists {
                f.sample([&l.name], value(l));
            }
        }
        let mut f = out.family(&RULES_LIST_AGE_SECONDS);
        for l in &cur.snapshot.lists {
            if let Some(m) = modified(&self.dir, &l.name) {
                f.sample([&l.name], now.duration_since(m).map_or(0, |d| d.as_secs()));
            }
        }
    }

    /// Starts the watch-and-poll thread: a debounced watch on the directory (which sees
    /// Kubernetes' `..data` symlink swap and editors' rename-into-place), and a checksum poll as
    /// the backstop for events a watch misses (network file systems, a replaced directory).
    pub fn spawn_watcher(self: &Arc<Self>, watch: bool, debounce: Duration, poll: Duration) {
        let rules = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("rules-watch".into()).spawn(move || {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let mut watcher = if watch { start_watch(&rules.dir, &tx) } else { None };
            let mut last_poll = Instant::now();
            loop {
                // The directories of the list and key files the running rules read are watched too.
                if let Some(w) = watcher.as_mut() {
                    w.follow(asset_dirs(&rules.dir, &rules.current().snapshot.assets));
                }
                match rx.recv_timeout(poll.saturating_sub(last_poll.elapsed())) {
                    Ok(()) => {
                        // Debounce: wait for a quiet period, but never longer than the cap.
                        let first = Instant::now();
                        while first.elapsed() < MAX_DEBOUNCE_WAIT {
                            match rx.recv_timeout(debounce) {
                                Ok(()) => continue,
                                Err(_) => break,
                            }
                        }
                        rules.reload(Trigger::Watch);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        last_poll = Instant::now();
                        rules.reload(Trigger::Poll);
                        // A directory that was replaced (or appeared late) needs a new watch.
                        if watch && watcher.as_ref().is_none_or(|w| !w.still_valid()) {
                            watcher = start_watch(&rules.dir, &tx);
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                if last_poll.elapsed() >= poll {
                    last_poll = Instant::now();
                    rules.reload(Trigger::Poll);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rules watcher; SIGHUP and POST /v1/rules/reload still work");
        }
    }
}

/// A directory watch, remembering which directory inode it watches.
struct DirWatch {
    watcher: notify::RecommendedWatcher,
    dir: PathBuf,
    ino: Option<u64>,
    /// Other directories watched: those of the files the rules read.
    extra: Vec<PathBuf>,
}

impl DirWatch {
    /// Watches exactly `dirs` besides the rules directory (a directory that cannot be watched is
    /// left to the checksum poll).
    fn follow(&mut self, dirs: Vec<PathBuf>) {
        use notify::Watcher;
        if dirs == self.extra {
            return;
        }
        for gone in self.extra.iter().filter(|d| !dirs.contains(d)) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in dirs.iter().filter(|d| !self.extra.contains(d)) {
            if let Err(e) = self.watcher.watch(new, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(error = %e, dir = %new.display(), "cannot watch a list or key file directory; relying on the checksum poll");
            }
        }
        self.extra = dirs;
    }

    /// False once the path names another directory (deleted and recreated) or none.
    fn still_valid(&self) -> bool {
        inode(&self.dir).is_some() && inode(&self.dir) == self.ino
    }
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

fn start_watch(dir: &Path, tx: &std::sync::mpsc::Sender<()>) -> Option<DirWatch> {
    use notify::Watcher;
    let tx = tx.clone();
    let ino = inode(dir);
    let mut w = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the rules directory; relying on the checksum poll");
            return None;
        }
    };
    if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the rules directory; relying on the checksum poll");
        return None;
    }
    Some(DirWatch { watcher: w, dir: dir.to_path_buf(), ino, extra: Vec::new() })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Installs the rules' auditor: a reload picked up from the files (watch, poll, SIGHUP) that
/// applied new rules or failed is recorded as `rules.reload.file` (actor `rules:<trigger>`,
/// target `rules`, `old`/`new`: versions and file hashes, `new.changed`: the files that
/// changed), `ok` or `refused`. Not state-changing (never replayed). A record that cannot be
/// written is logged (the rules are the files' either way).
pub fn audit_file_reloads(rules: &Rules, log: &Arc<AuditLog>) {
    let log = Arc::downgrade(log);
    rules.set_auditor(Arc::new(move |r: &FileReload| {
        let Some(log) = log.upgrade() else { return };
        let actor = format!("rules:{}", r.trigger.as_str());
        let outcome = if r.applied { "ok" } else { "refused" };
        let entry = AuditEntry::new(AuditAction::RulesReloadFile, "rules", outcome, 0)
            .by(Some(&actor), None, None, "-")
            .values(r.old.clone(), r.new.clone());
        if let Err(e) = log.append(&entry) {
            tracing::error!(error = %e, "cannot audit a rules reload from the files");
        }
    }));
}
