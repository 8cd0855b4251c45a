//! Rule files: the raw model, validation that reports every error of every file at once, and the
//! compiled, immutable [`Snapshot`] the gateway swaps in on reload.
//!
//! ```yaml
//! version: 1
//! firewall:
//!   - id: block-scanners
//!     match:
//!       headers:
//!         user-agent: '(?i)\bsqlmap/'
//! ```
//!
//! # Pipeline
//!
//! For each [`SourceFile`], in the order given: [`Doc::parse`], then [`Doc::deserialize`] into
//! `RawFile` (every shape error: unknown keys with did-you-mean, types, missing fields), then
//! each section's compile function, which reports semantic errors with [`Doc::error_at`] and a
//! precise key path (`firewall[1].match.path_regex`). A file with shape errors is not compiled
//! further, but every other file still is, so one run shows every mistake.
//!
//! # Adding a section
//!
//! One field in `RawFile` (an `Option<Vec<RawX>>` with `#[serde(default)]`), one compiled field
//! in [`Snapshot`], and one call in [`compile_with`] to the section's compile function. That
//! function is `compile_section` (rule registration with `Ctx::rule` for the keys every rule
//! shares — `id`, `mode`, `severity`, `description` — through the `RawRule` trait) plus the
//! section's own compiler of one rule, which validates through a `Checker` (errors at key paths
//! under `section[i]`, the `routes` filter, key files and secrets).
//!
//! # Versions and hashes
//!
//! The snapshot version is the first 16 hex digits of SHA-256 over every file's name and text
//! (length-prefixed), in the order given: any changed byte, renamed file or reordering changes
//! it. A rule's hash is the first 16 hex digits of SHA-256 over its kind and the JSON
//! serialization of its raw content: it depends on nothing but the rule itself, so state keyed by
//! `(id, hash)` (limiter buckets, quota counters, replay caches) survives a reload, a file rename
//! or a move within the file as long as the rule is unchanged. Optional keys that are absent are
//! left out of the serialization, so adding a new optional key to the schema later does not
//! change the hash of existing rules.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::alerts::{self, Alerts, RawAlertRule};
use crate::anomaly::{self, Anomalies, RawAnomaly};
use crate::autoblock::{self, AutoBlocks, RawAutoBlock};
use crate::firewall::{self, Firewall, RawFirewallRule};
use crate::identity::{self, Identities, RawIdentityRule};
use crate::ipset::IpSet;
use crate::limits::{self, quota::RawQuota, rate::RawRateLimit, Quotas, RateLimits};
use crate::pii::{self, Pii, RawPiiRule};
use crate::ssrf::{self, RawSsrfRule, Ssrf};
use crate::tenant::{self, RawTenantRule, TenantScope};
use crate::verdict::{Mode, Severity};
use crate::webhook::rules::{self as webhooks, RawWebhookRule, Webhooks};
use crate::yaml::{ConfigError, Doc};

/// The rule-file schema version this build understands (the required top-level `version` key).
pub const SCHEMA_VERSION: u32 = 1;

/// At most this many errors are returned by one compile (all files together), plus a last one
/// saying there were more.
pub const MAX_ERRORS: usize = 200;

/// Longest rule id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// One rule file as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Display path, used in error messages and in [`FileSummary::name`].
    pub name: String,
    /// The file's contents.
    pub text: String,
}

impl SourceFile {
    /// A source file from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile { name: name.into(), text: text.into() }
    }
}

/// Something a rule refers to outside the rule files: a key file or an environment variable
/// holding a secret. Compiling stays pure: the caller's [`Resolver`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AssetRef {
    /// A file, as written in the rule (relative paths are relative to the rules directory).
    File(String),
    /// An environment variable.
    Env(String),
    /// An IP list file (one address or CIDR per line, see [`crate::ipset::parse_list`]), as
    /// written in the rule: relative paths are relative to the rules directory. Separate from
    /// [`AssetRef::File`] because feeds are far larger than key files.
    List(String),
}

impl std::fmt::Display for AssetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssetRef::File(p) => write!(f, "file {p}"),
            AssetRef::Env(v) => write!(f, "environment variable {v}"),
            AssetRef::List(p) => write!(f, "list file {p}"),
        }
    }
}

/// Reads an [`AssetRef`]: the bytes, or a one-line reason.
pub type Resolver<'r> = dyn Fn(&AssetRef) -> Result<Vec<u8>, String> + Sync + 'r;

/// What rule files are checked against besides themselves.
#[derive(Clone, Copy, Default)]
pub struct Env<'a> {
    /// The route ids of `gateway.yaml`. When given, a rule naming any other route is an error
    /// (a typo would otherwise make the rule silently never match). `None` skips the check.
    pub routes: Option<&'a [&'a str]>,
    /// Reads key files and secrets named by rules. `None`: a rule naming one is an error.
    pub assets: Option<&'a Resolver<'a>>,
    /// The alert sinks of `gateway.yaml`. When given, an alert rule naming any other sink is an
    /// error (its alerts would reach nobody). `None` skips the check.
    pub sinks: Option<&'a [&'a str]>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("routes", &self.routes)
            .field("assets", &self.assets.is_some())
            .field("sinks", &self.sinks)
            .finish()
    }
}

/// One loaded file, for `GET /v1/rules` and `portcullis validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// Display path.
    pub name: String,
    /// First 16 hex digits of the SHA-256 of the file's text.
    pub sha256: String,
    /// Number of rules the file defines (all sections).
    pub rules: usize,
}

/// One IP list file the rules read, for `GET /v1/rules`, `/metrics` and `portcullis validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSummary {
    /// The path as written in the rules (relative to the rules directory).
    pub name: String,
    /// First 16 hex digits of the SHA-256 of the file's bytes.
    pub sha256: String,
    /// Entries (addresses and CIDRs) the file lists.
    pub entries: usize,
    /// Disjoint ranges after merging: what lookups and memory scale with.
    pub ranges: usize,
    /// Bytes held by the compiled index.
    pub heap_bytes: usize,
    /// The rules that reference it, in file order.
    pub rules: Vec<Arc<str>>,
}

/// At most this many bad lines are reported per list file.
pub const MAX_LIST_ERRORS: usize = 20;

/// A list file read during one compile: its summary, and its set (`None` when it failed).
#[derive(Debug)]
struct LoadedList {
    summary: ListSummary,
    set: Option<Arc<IpSet>>,
}

/// One compiled rule, for listing and for keying state that must survive reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule id (unique across all files).
    pub id: Arc<str>,
    /// The section it came from, e.g. `firewall`.
    pub kind: &'static str,
    /// `enforce` or `monitor`.
    pub mode: Mode,
    /// First 16 hex digits of the SHA-256 of the rule's kind and raw content.
    pub hash: String,
    /// The file it came from.
    pub file: String,
    /// The line of its `id` key.
    pub line: usize,
}

/// Every rule, compiled and immutable: the unit the gateway swaps on reload. `Send + Sync`.
#[derive(Debug)]
pub struct Snapshot {
    /// Content hash of every file (16 hex digits).
    pub version: String,
    /// The files, in the order given to [`compile`].
    pub files: Vec<FileSummary>,
    /// The request firewall.
    pub firewall: Firewall,
    /// How callers are identified, per route.
    pub identity: Identities,
    /// The tenant scope rules.
    pub tenant: TenantScope,
    /// Webhook signature verification, per route.
    pub webhooks: Webhooks,
    /// The rate limits, each with its limiter state (see [`RateLimits::carry_over`]).
    pub rate_limits: RateLimits,
    /// The quota rules (their counters are the gateway's [`limits::QuotaBook`]).
    pub quotas: Quotas,
    /// The PII policies for response bodies.
    pub pii: Pii,
    /// The SSRF guard.
    pub ssrf: Ssrf,
    /// The alert rules (evaluated by the gateway's alerting thread, never on the request path).
    pub alerts: Alerts,
    /// The automatic blocks (counted and acted on by the gateway's auto-block thread, never on
    /// the request path).
    pub auto_blocks: AutoBlocks,
    /// The anomaly zones (scored per request after identity, see [`anomaly`]).
    pub anomaly: Anomalies,
    /// Key files and secrets the rules read, in the order first read: a reload re-reads them to
    /// tell whether anything changed (see [`assets_version`]).
    pub assets: Vec<AssetRef>,
    /// The IP list files the rules read, in the order first read (each read and parsed once,
    /// however many rules name it).
    pub lists: Vec<ListSummary>,
    /// The request checks that have something to do, in order (see [`crate::pipeline`]).
    pub pipeline: crate::pipeline::Pipeline,
    rules: Vec<RuleInfo>,
    by_id: HashMap<Arc<str>, usize>,
}

impl Snapshot {
    /// No files, no rules; the version is the hash of nothing.
    pub fn empty() -> Snapshot {
        Snapshot {
            version: short_hex(Sha256::new()),
            files: Vec::new(),
            firewall: Firewall::default(),
            identity: Identities::default(),
            tenant: TenantScope::default(),
            webhooks: Webhooks::default(),
            rate_limits: RateLimits::default(),
            quotas: Quotas::default(),
            pii: Pii::default(),
            ssrf: Ssrf::default(),
            alerts: Alerts::default(),
            auto_blocks: AutoBlocks::default(),
            anomaly: Anomalies::default(),
            assets: Vec::new(),
            lists: Vec::new(),
            pipeline: crate::pipeline::Pipeline::default(),
            rules: Vec::new(),
            by_id: HashMap::new(),
        }
        .with_pipeline()
    }

    /// Builds [`Snapshot::pipeline`] from the compiled rules.
    fn with_pipeline(mut self) -> Snapshot {
        self.pipeline = crate::pipeline::Pipeline::build(&self);
        self
    }

    /// Number of rules across every file and section.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every rule, in file order then position within the file.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&RuleInfo> {
        self.by_id.get(id).and_then(|&i| self.rules.get(i))
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::empty()
    }
}

/// The top level of a rule file. Every section is optional; an unknown key is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a rule file: a mapping starting with `version: 1`")]
pub(crate) struct RawFile {
    version: u32,
    /// `firewall:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    firewall: Option<Vec<RawFirewallRule>>,
    /// `identity:`: how callers are identified on which routes.
    #[serde(default)]
    identity: Option<Vec<RawIdentityRule>>,
    /// `tenant_scope:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    tenant_scope: Option<Vec<RawTenantRule>>,
    /// `webhooks:`: signed deliveries, verified before anything is forwarded.
    #[serde(default)]
    webhooks: Option<Vec<RawWebhookRule>>,
    /// `rate_limits:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    rate_limits: Option<Vec<RawRateLimit>>,
    /// `quotas:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    quotas: Option<Vec<RawQuota>>,
    /// `pii:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    pii: Option<Vec<RawPiiRule>>,
    /// `ssrf:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    ssrf: Option<Vec<RawSsrfRule>>,
    /// `alerts:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    alerts: Option<Vec<RawAlertRule>>,
    /// `auto_blocks:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    auto_blocks: Option<Vec<RawAutoBlock>>,
    /// `anomaly:` with no entries (null) is the same as an empty list.
    #[serde(default)]
    anomaly: Option<Vec<RawAnomaly>>,
}

/// Compiles rule files without checking route ids. See [`compile_with`].
pub fn compile(files: &[SourceFile]) -> Result<Snapshot, Vec<ConfigError>> {
    compile_with(files, &Env::default())
}

/// Compiles rule files into a [`Snapshot`], or returns every error of every file, sorted by file
/// (in the order given) then line.
///
/// Zero files is valid and gives an empty snapshot with the same version as [`Snapshot::empty`].
pub fn compile_with(files: &[SourceFile], env: &Env<'_>) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut ids: HashMap<String, (String, usize)> = HashMap::new();
    let mut rules: Vec<RuleInfo> = Vec::new();
    let mut summaries = Vec::with_capacity(files.len());
    let mut fw = firewall::Builder::default();
    let mut idb = identity::Builder::default();
    let mut ts = Vec::new();
    let mut wh = Vec::new();
    let mut rl = Vec::new();
    let mut qb = Vec::new();
    let mut pb = pii::Builder::default();
    let mut sb = Vec::new();
    let mut al = Vec::new();
    let mut ab = Vec::new();
    let mut an = Vec::new();
    let mut assets: Vec<(AssetRef, [u8; 32])> = Vec::new();
    let mut lists: Vec<LoadedList> = Vec::new();

    for file in files {
        let before = rules.len();
        let doc = match Doc::parse(&file.name, &file.text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        if let Some(doc) = doc {
            // An unsupported version is reported alone: the rest of a file written for another
            // schema would only give confusing follow-up errors (unknown sections, ...).
            if let Some(v) = unsupported_version(&doc) {
                errors.push(doc.error_at(
                    "version",
                    format!("unsupported version {v}; this gateway supports version {SCHEMA_VERSION}"),
                ));
            } else {
                match doc.deserialize::<RawFile>() {
                    Ok(raw) => {
                        let mut ctx = Ctx {
                            doc: &doc,
                            env,
                            errors: &mut errors,
                            ids: &mut ids,
                            rules: &mut rules,
                            assets: &mut assets,
                            lists: &mut lists,
                        };
                        if raw.version != SCHEMA_VERSION {
                            // Not reached (see `unsupported_version`), but never accept another version.
                            let msg = format!(
                                "unsupported version {}; this gateway supports version {SCHEMA_VERSION}",
                                raw.version
                            );
                            ctx.error("version", msg);
                        }
                        firewall::compile(&mut ctx, "firewall", raw.firewall.unwrap_or_default(), &mut fw);
                        identity::compile(&mut ctx, "identity", raw.identity.unwrap_or_default(), &mut idb);
                        tenant::compile(&mut ctx, "tenant_scope", &raw.tenant_scope.unwrap_or_default(), &mut ts);
                        webhooks::compile(&mut ctx, "webhooks", &raw.webhooks.unwrap_or_default(), &mut wh);
                        limits::rate::compile(&mut ctx, "rate_limits", &raw.rate_limits.unwrap_or_default(), &mut rl);
                        limits::quota::compile(&mut ctx, "quotas", &raw.quotas.unwrap_or_default(), &mut qb);
                        pii::compile(&mut ctx, "pii", raw.pii.unwrap_or_default(), &mut pb);
                        ssrf::compile(&mut ctx, "ssrf", &raw.ssrf.unwrap_or_default(), &mut sb);
                        alerts::compile(&mut ctx, "alerts", &raw.alerts.unwrap_or_default(), &mut al);
                        autoblock::compile(&mut ctx, "auto_blocks", &raw.auto_blocks.unwrap_or_default(), &mut ab);
                        anomaly::compile(&mut ctx, "anomaly", &raw.anomaly.unwrap_or_default(), &mut an);
                    }
                    Err(e) => errors.extend(e),
                }
            }
        }
        summaries.push(FileSummary {
            name: file.name.clone(),
            sha256: file_sha256(&file.text),
            rules: rules.len() - before,
        });
    }

    if !errors.is_empty() {
        let order: HashMap<&str, usize> = files.iter().enumerate().rev().map(|(i, f)| (f.name.as_str(), i)).collect();
        errors.sort_by_key(|e| (order.get(e.file.as_str()).copied().unwrap_or(usize::MAX), e.line));
        if errors.len() > MAX_ERRORS {
            let total = errors.len();
            errors.truncate(MAX_ERRORS);
            if let Some(last) = errors.last() {
                let (file, line) = (last.file.clone(), last.line);
                errors.push(ConfigError::new(
                    &file,
                    line,
                    "",
                    format!("too many errors ({total}); fix these and run again"),
                ));
            }
        }
        return Err(errors);
    }
    let by_id = rules.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
    Ok(Snapshot {
        version: version_with(files, &assets),
        files: summaries,
        firewall: fw.build(),
        identity: idb.build(),
        tenant: TenantScope::new(ts),
        webhooks: Webhooks::new(wh),
        rate_limits: RateLimits::new(rl),
        quotas: Quotas::new(qb),
        pii: pb.build(),
        ssrf: Ssrf::new(sb),
        alerts: Alerts::new(al),
        auto_blocks: AutoBlocks::new(ab),
        anomaly: Anomalies::new(an),
        assets: assets.into_iter().map(|(r, _)| r).collect(),
        lists: lists.into_iter().map(|l| l.summary).collect(),
        pipeline: crate::pipeline::Pipeline::default(),
        rules,
        by_id,
    }
    .with_pipeline())
}

/// The version of files plus the assets they read: [`version_of`] when there are none, else the
/// hash of that and each asset's name and content hash.
fn version_with(files: &[SourceFile], assets: &[(AssetRef, [u8; 32])]) -> String {
    let base = version_of(files);
    if assets.is_empty() {
        return base;
    }
    let mut h = Sha256::new_with_prefix(base.as_bytes());
    for (r, digest) in assets {
        let name = r.to_string();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(digest);
    }
    short_hex(h)
}

/// The version `files` would compile to if the assets named by `assets` (a running snapshot's)
/// were read again now: how a reload tells that neither the rule files nor the key files they
/// name changed, without compiling. An asset that cannot be read hashes its error, so fixing it
/// is a change.
pub fn assets_version(files: &[SourceFile], assets: &[AssetRef], resolve: &Resolver<'_>) -> String {
    let read: Vec<(AssetRef, [u8; 32])> = assets
        .iter()
        .map(|r| {
            let digest = match resolve(r) {
                Ok(bytes) => Sha256::digest(&bytes).into(),
                Err(e) => Sha256::digest(format!("error: {e}").as_bytes()).into(),
            };
            (r.clone(), digest)
        })
        .collect();
    version_with(files, &read)
}

/// The top-level `version` when it is an integer other than [`SCHEMA_VERSION`]. A missing or
/// non-integer version is left to the full deserialization to report.
fn unsupported_version(doc: &Doc) -> Option<i64> {
    let value = doc.deserialize::<serde_json::Value>().ok()?;
    let v = value.get("version")?.as_i64()?;
    (v != i64::from(SCHEMA_VERSION)).then_some(v)
}

/// First 16 hex digits of SHA-256 over each file's name and text, each length-prefixed (u64
/// little-endian), in order.
/// The snapshot version the files would compile to, without compiling them: how a reload tells
/// that nothing changed.
pub fn version_of(files: &[SourceFile]) -> String {
    let mut h = Sha256::new();
    for file in files {
        for part in [file.name.as_bytes(), file.text.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    short_hex(h)
}

/// The keys every rule shares, borrowed from a raw rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Common<'r> {
    pub(crate) id: &'r str,
    pub(crate) mode: Mode,
    pub(crate) severity: Option<Severity>,
}

/// The validated common keys of one rule.
#[derive(Debug, Clone)]
pub(crate) struct RuleMeta {
    pub(crate) id: Arc<str>,
    pub(crate) mode: Mode,
    pub(crate) severity: Option<Severity>,
    /// The rule hash (also in its [`RuleInfo`]): with the id, the key of state that survives
    /// reloads.
    pub(crate) hash: String,
}

/// What a section's compile function gets: the file's document (for error positions), the
/// environment, and the run's shared state (errors, ids seen so far, rule list).
pub(crate) struct Ctx<'a> {
    doc: &'a Doc,
    env: &'a Env<'a>,
    errors: &'a mut Vec<ConfigError>,
    ids: &'a mut HashMap<String, (String, usize)>,
    rules: &'a mut Vec<RuleInfo>,
    assets: &'a mut Vec<(AssetRef, [u8; 32])>,
    lists: &'a mut Vec<LoadedList>,
}

impl<'a> Ctx<'a> {
    /// Records an error at a key path of the current file.
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.doc.error_at(path, message));
    }

    /// Reads a key file or secret named at `path` through the caller's resolver, recording it
    /// (with its content hash) for the snapshot version. Errors are recorded at `path`.
    pub(crate) fn asset(&mut self, path: &str, r: AssetRef) -> Option<Vec<u8>> {
        let Some(resolve) = self.env.assets else {
            self.error(path, format!("cannot read {r} here (no resolver for key files and secrets)"));
            return None;
        };
        let read = resolve(&r);
        let digest: [u8; 32] = match &read {
            Ok(bytes) => Sha256::digest(bytes).into(),
            Err(e) => Sha256::digest(format!("error: {e}").as_bytes()).into(),
        };
        if !self.assets.iter().any(|(a, _)| *a == r) {
            self.assets.push((r.clone(), digest));
        }
        match read {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.error(path, format!("cannot read {r}: {e}"));
                None
            }
        }
    }

    /// Reads and parses the IP list file `name` named at `path` by rule `rule`: once per compile,
    /// however many rules name it. Bad lines are recorded as errors at `FILE:LINE` of the list
    /// (the key path naming the rule that reads it), at most [`MAX_LIST_ERRORS`] per file.
    pub(crate) fn ip_list(&mut self, path: &str, name: &str, rule: &Arc<str>) -> Option<Arc<IpSet>> {
        if let Some(l) = self.lists.iter_mut().find(|l| l.summary.name == name) {
            l.summary.rules.push(rule.clone());
            return l.set.clone();
        }
        let bytes = self.asset(path, AssetRef::List(name.to_owned()))?;
        let mut summary = ListSummary {
            name: name.to_owned(),
            sha256: short_hex(Sha256::new_with_prefix(&bytes)),
            entries: 0,
            ranges: 0,
            heap_bytes: 0,
            rules: vec![rule.clone()],
        };
        let set = match crate::ipset::parse_list(&bytes, MAX_LIST_ERRORS) {
            Ok(parsed) => {
                summary.entries = parsed.entries;
                summary.ranges = parsed.set.ranges();
                summary.heap_bytes = parsed.set.heap_bytes();
                Some(Arc::new(parsed.set))
            }
            Err(bad) => {
                self.errors.extend(bad.into_iter().map(|e| ConfigError::new(name, e.line, path, e.message)));
                None
            }
        };
        self.lists.push(LoadedList { summary, set: set.clone() });
        set
    }

    /// The route ids rules may name, when known.
    pub(crate) fn routes(&self) -> Option<&'a [&'a str]> {
        self.env.routes
    }

    /// The alert sink names rules may name, when known.
    pub(crate) fn sinks(&self) -> Option<&'a [&'a str]> {
        self.env.sinks
    }

    /// Validates the common keys of the rule at `path` (e.g. `firewall[2]`), registers it in the
    /// rule list with its content hash, and returns its metadata. Errors (bad or duplicate id) are
    /// recorded; the returned metadata is then still usable for checking the rest of the rule.
    pub(crate) fn rule<R: Serialize>(
        &mut self,
        kind: &'static str,
        path: &str,
        common: Common<'_>,
        raw: &R,
    ) -> RuleMeta {
        let id_path = format!("{path}.id");
        let line = self.doc.line_of(&id_path);
        if let Err(why) = check_id(common.id) {
            self.error(&id_path, format!("`{}` is not a valid rule id: {why}", common.id));
        } else if let Some((file, first)) = self.ids.get(common.id) {
            let msg = format!("duplicate rule id `{}`: already defined at {file}:{first}", common.id);
            self.error(&id_path, msg);
        } else {
            self.ids.insert(common.id.to_owned(), (self.doc.file().to_owned(), line));
        }
        let id: Arc<str> = Arc::from(common.id);
        let hash = rule_hash(kind, raw);
        self.rules.push(RuleInfo {
            id: id.clone(),
            kind,
            mode: common.mode,
            hash: hash.clone(),
            file: self.doc.file().to_owned(),
            line,
        });
        RuleMeta { id, mode: common.mode, severity: common.severity, hash }
    }
}

/// Validates one rule of a section: records errors at key paths under the rule's base path
/// (`webhooks[2]`), remembering whether any was recorded. Shared by every section's compiler.
pub(crate) struct Checker<'c, 'a> {
    pub(crate) ctx: &'c mut Ctx<'a>,
    /// e.g. `webhooks[2]`
    base: String,
    /// No error recorded so far: the compiled rule is usable.
    pub(crate) ok: bool,
}

impl<'c, 'a> Checker<'c, 'a> {
    pub(crate) fn new(ctx: &'c mut Ctx<'a>, base: String) -> Self {
        Checker { ctx, base, ok: true }
    }

    /// The full key path of `key` (relative to the rule; empty: the rule itself).
    pub(crate) fn path(&self, key: &str) -> String {
        if key.is_empty() {
            self.base.clone()
        } else {
            format!("{}.{key}", self.base)
        }
    }

    /// Records an error at `key` (relative to the rule).
    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.ok = false;
        let path = self.path(key);
        self.ctx.error(&path, message);
    }

    /// The value, or the error recorded at `key`.
    pub(crate) fn result<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|msg| self.error(key, msg)).ok()
    }

    /// A rule's optional `routes` list: non-empty, each a known route.
    pub(crate) fn routes(&mut self, key: &str, list: Option<&Vec<String>>) -> Option<Box<[Box<str>]>> {
        let list = list?;
        if list.is_empty() {
            self.error(key, format!("`{key}` is empty: remove the key or list at least one route"));
        }
        let known = self.ctx.routes();
        let mut out = Vec::with_capacity(list.len());
        for (j, s) in list.iter().enumerate() {
            match check_route(s, known) {
                Ok(()) => out.push(Box::from(s.as_str())),
                Err(msg) => self.error(&format!("{key}[{j}]"), msg),
            }
        }
        Some(out.into_boxed_slice())
    }

    /// Reads a key file or secret through the caller's resolver (see [`Ctx::asset`]).
    pub(crate) fn asset(&mut self, key: &str, r: AssetRef) -> Option<Vec<u8>> {
        let path = self.path(key);
        let before = self.ctx.errors.len();
        let out = self.ctx.asset(&path, r);
        if self.ctx.errors.len() > before {
            self.ok = false;
        }
        out
    }
}

/// A raw rule's keys every rule shares.
pub(crate) trait RawRule: Serialize {
    fn common(&self) -> Common<'_>;
}

/// Compiles one section's list of one file: registers each rule (id, mode, severity, hash at
/// `section[i]`) and compiles it with a fresh [`Checker`]; a rule with any error is left out (its
/// errors are recorded).
pub(crate) fn compile_section<R: RawRule, T>(
    ctx: &mut Ctx<'_>,
    kind: &'static str,
    section: &str,
    raw: &[R],
    out: &mut Vec<T>,
    mut one: impl FnMut(&mut Checker<'_, '_>, RuleMeta, &R) -> Option<T>,
) {
    for (i, r) in raw.iter().enumerate() {
        let base = format!("{section}[{i}]");
        let meta = ctx.rule(kind, &base, r.common(), r);
        let mut c = Checker::new(&mut *ctx, base);
        if let Some(rule) = one(&mut c, meta, r) {
            if c.ok {
                out.push(rule);
            }
        }
    }
}

/// Whether a rule with this optional `routes` filter applies to a request matched to `route`
/// (a request with no route never matches a filter).
pub(crate) fn route_matches(routes: Option<&[Box<str>]>, route: Option<&str>) -> bool {
    match routes {
        None => true,
        Some(list) => route.is_some_and(|r| list.iter().any(|x| **x == *r)),
    }
}

/// A `routes` entry: non-empty, and one of the gateway's routes when those are known.
pub(crate) fn check_route(s: &str, known: Option<&[&str]>) -> Result<(), String> {
    if s.is_empty() {
        return Err("a route id cannot be empty".into());
    }
    match known {
        Some(known) if !known.contains(&s) => {
            let mut names: Vec<&str> = known.iter().copied().take(20).collect();
            if known.len() > 20 {
                names.push("…");
            }
            let list = if names.is_empty() { "(none)".to_string() } else { names.join(", ") };
            Err(format!("unknown route `{s}`; routes in the gateway config: {list}"))
        }
        _ => Ok(()),
    }
}

/// A key that is present must have a value: `null` is a type error, not `None`.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Longest regex pattern accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;

/// Limit on a compiled regex program, and on its lazy DFA cache, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Limit on the nesting depth of groups and repetitions in a regex.
pub const REGEX_NEST_LIMIT: u32 = 64;

/// Compiles a rule regex: bytes, Unicode off (ASCII-only `\d`, `\w`, `\s`, `\b`, `(?i)`; `\p{..}`
/// refused), bounded in pattern length, program size and nesting. The error is one line, meant to
/// follow `path: `.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    build_regex(pattern, false)
}

/// [`compile_regex`] for a regex on the request path: ASCII case-insensitive, like every other
/// path match (a `(?-i)` group in the pattern turns it off for that group).
pub(crate) fn compile_path_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    build_regex(pattern, true)
}

fn build_regex(pattern: &str, case_insensitive: bool) -> Result<regex::bytes::Regex, String> {
    if pattern.is_empty() {
        return Err("the pattern is empty (it would match everything)".into());
    }
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!("the pattern is {} bytes; the limit is {MAX_REGEX_LEN}", pattern.len()));
    }
    if enables_unicode(pattern) {
        return Err("`(?u)` (Unicode mode) is not available: rule regexes match bytes with Unicode off".into());
    }
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| regex_message(&e, pattern))
}

/// True when the pattern has a flag group that turns Unicode mode on (`(?u)`, `(?iu:…)`), which
/// `RegexBuilder::unicode(false)` alone does not prevent. Escapes are skipped; a literal `(?u)`
/// inside a character class is (conservatively) refused too.
fn enables_unicode(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            i += 2;
            continue;
        }
        if c == b'(' && b.get(i + 1) == Some(&b'?') {
            let flags: Vec<u8> =
                b.iter().skip(i + 2).take_while(|f| f.is_ascii_alphabetic() || **f == b'-').copied().collect();
            let end = b.get(i + 2 + flags.len());
            let enabled = flags.split(|&f| f == b'-').next().unwrap_or_default();
            if matches!(end, Some(b':' | b')')) && enabled.contains(&b'u') {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// One line out of a regex error. Syntax errors render over several lines (the pattern, a caret
/// line, then `error: …`): keep the `error:` line.
fn regex_message(e: &regex::Error, pattern: &str) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => format!(
            "the compiled regex exceeds the size limit of {limit} bytes (nested or large counted repetitions \
             like `{{1000}}` multiply its size)"
        ),
        other => {
            let text = other.to_string();
            let line = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .or_else(|| text.lines().map(str::trim).find(|l| !l.is_empty()))
                .unwrap_or("invalid regex");
            let mut msg = format!("invalid regex: {line}");
            if pattern.contains("\\p") || pattern.contains("\\P") {
                msg.push_str(
                    " (Unicode classes like `\\p{..}` are not available: rule regexes match bytes with Unicode off)",
                );
            }
            msg
        }
    }
}

/// `[a-z0-9][a-z0-9._-]{0,63}`.
fn check_id(id: &str) -> Result<(), &'static str> {
    const RULE: &str = "use 1 to 64 characters from `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit";
    let b = id.as_bytes();
    let first_ok = b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if first_ok && rest_ok && b.len() <= MAX_ID_LEN {
        Ok(())
    } else {
        Err(RULE)
    }
}

/// First 16 hex digits of SHA-256 over `kind`, a NUL, and the JSON of the raw rule.
pub(crate) fn rule_hash<R: Serialize>(kind: &str, raw: &R) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0u8]);
    // Serializing plain structs of strings, lists and string-keyed maps cannot fail; if it ever
    // did, the hash would still depend on the kind only, which merely resets state on reload.
    h.update(serde_json::to_vec(raw).unwrap_or_default());
    short_hex(h)
}

/// A rule file's hash as [`FileSummary::sha256`] shows it: the first 16 hex digits of the SHA-256
/// of its text.
pub fn file_sha256(text: &str) -> String {
    short_hex(Sha256::new_with_prefix(text.as_bytes()))
}

fn short_hex(h: Sha256) -> String {
    let digest = h.finalize();
    hex::encode(digest.get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
        list.iter().map(|(n, t)| SourceFile::new(*n, *t)).collect()
    }

    fn errs(list: &[(&str, &str)]) -> Vec<String> {
        compile(&files(list)).unwrap_err().iter().map(ToString::to_string).collect()
    }

    const FW: &str = "\
version: 1
firewall:
  - id: block-scanners
    description: Known attack tools
    match:
      headers:
        user-agent: '(?i)sqlmap'
  - id: block-net
    mode: monitor
    severity: critical
    match:
      client_ips: [203.0.113.0/24]
";

    #[test]
    fn compiles_and_lists_rules() {
        let snap = compile(&files(&[("a.yaml", FW)])).unwrap();
        assert_eq!(snap.rule_count(), 2);
        assert_eq!(snap.firewall.len(), 2);
        assert_eq!(snap.files.len(), 1);
        assert_eq!(snap.files[0].name, "a.yaml");
        assert_eq!(snap.files[0].rules, 2);
        assert_eq!(snap.files[0].sha256.len(), 16);
        assert_eq!(snap.version.len(), 16);
        let r = snap.rule("block-net").unwrap();
        assert_eq!((r.kind, r.mode, r.file.as_str(), r.line), ("firewall", Mode::Monitor, "a.yaml", 8));
        assert_eq!(snap.rule("block-scanners").unwrap().line, 3);
        assert_eq!(snap.rule("block-scanners").unwrap().mode, Mode::Enforce);
        assert!(snap.rule("nope").is_none());
        assert_eq!(snap.rules().iter().map(|r| &*r.id).collect::<Vec<_>>(), ["block-scanners", "block-net"]);
        assert!(snap.rules().iter().all(|r| r.hash.len() == 16 && r.hash.bytes().all(|c| c.is_ascii_hexdigit())));
    }

    #[test]
    fn zero_files_and_version_only_files_are_valid() {
        let snap = compile(&[]).unwrap();
        assert_eq!(snap.rule_count(), 0);
        assert!(snap.firewall.is_empty());
        assert_eq!(snap.version, Snapshot::empty().version);
        assert_eq!(snap.version, "e3b0c44298fc1c14"); // SHA-256 of nothing
        assert_eq!(Snapshot::default().version, snap.version);
        let snap = compile(&files(&[("a.yaml", "version: 1\n")])).unwrap();
        assert_eq!(snap.rule_count(), 0);
        assert_eq!(snap.files[0].rules, 0);
        assert_ne!(snap.version, Snapshot::empty().version);
        for text in ["version: 1\nfirewall: []\n", "version: 1\nfirewall:\n", "# comment\nversion: 1 # one\n"] {
            assert_eq!(compile(&files(&[("a.yaml", text)])).unwrap().rule_count(), 0, "{text}");
        }
    }

    #[test]
    fn version_errors() {
        assert_eq!(
            errs(&[("a.yaml", "version: 2\n")]),
            ["a.yaml:1: version: unsupported version 2; this gateway supports version 1"]
        );
        // Reported alone: further errors in a file written for another schema are noise.
        let future = "# v2\nversion: 2\nrate_limits: []\nfirewall:\n  - id: BAD\n";
        assert_eq!(
            errs(&[("a.yaml", future)]),
            ["a.yaml:2: version: unsupported version 2; this gateway supports version 1"]
        );
        let e = errs(&[("a.yaml", "version: 0\n"), ("b.yaml", "version: -3\n")]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].starts_with("b.yaml:1: version: unsupported version -3"), "{e:?}");
        assert_eq!(errs(&[("a.yaml", "firewall: []\n")]), ["a.yaml:1: (root): missing field `version`"]);
        let e = errs(&[("a.yaml", "version: one\n")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a.yaml:1: version: invalid type"), "{e:?}");
        // An empty file has no version either.
        for text in ["", "# nothing\n", "- a\n"] {
            let e = errs(&[("a.yaml", text)]);
            assert_eq!(e.len(), 1);
            assert!(e[0].ends_with("expected a rule file: a mapping starting with `version: 1`"), "{e:?}");
        }
    }

    #[test]
    fn unknown_top_level_key_has_did_you_mean() {
        let e = errs(&[("a.yaml", "version: 1\nfirewal: []\n")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a.yaml:2: firewal: unknown field `firewal`"), "{e:?}");
        assert!(e[0].contains("did you mean `firewall`"), "{e:?}");
    }

    #[test]
    fn unknown_rule_key_has_did_you_mean() {
        let text = "version: 1\nfirewall:\n  - id: a\n    mdoe: monitor\n    match: {methods: [GET]}\n";
        let e = errs(&[("a.yaml", text)]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a.yaml:4: firewall[0].mdoe: unknown field `mdoe`"), "{e:?}");
        assert!(e[0].contains("did you mean `mode`"), "{e:?}");
        let text = "version: 1\nfirewall:\n  - id: a\n    match: {method: [GET]}\n";
        let e = errs(&[("a.yaml", text)]);
        assert!(e[0].starts_with("a.yaml:4: firewall[0].match.method: unknown field `method`"), "{e:?}");
        assert!(e[0].contains("did you mean `methods`"), "{e:?}");
        let text =
            "version: 1\nfirewall:\n  - id: a\n    mode: block\n    severity: high\n    match: {methods: [GET]}\n";
        let e = errs(&[("a.yaml", text)]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("a.yaml:4: firewall[0].mode: unknown variant `block`"), "{e:?}");
        assert!(e[1].starts_with("a.yaml:5: firewall[0].severity: unknown variant `high`"), "{e:?}");
    }

    #[test]
    fn bad_ids() {
        for (id, ok) in [
            ("a", true),
            ("0", true),
            ("block-scanners.v2_x", true),
            (&"a".repeat(64), true),
            (&"a".repeat(65), false),
            ("Block", false),
            ("-a", false),
            (".a", false),
            ("a b", false),
            ("a/b", false),
            ("é", false),
            ("''", false),
        ] {
            let text = format!("version: 1\nfirewall:\n  - id: {id}\n    match: {{methods: [GET]}}\n");
            let r = compile(&files(&[("a.yaml", &text)]));
            assert_eq!(r.is_ok(), ok, "{id}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.len(), 1);
                assert_eq!((e[0].line, e[0].path.as_str()), (3, "firewall[0].id"));
                assert!(e[0].message.contains("is not a valid rule id"), "{}", e[0]);
            }
        }
        let e = errs(&[("a.yaml", "version: 1\nfirewall:\n  - match: {methods: [GET]}\n")]);
        assert_eq!(e, ["a.yaml:3: firewall[0]: missing field `id`"]);
    }

    #[test]
    fn duplicate_ids_within_and_across_files() {
        let a =
            "version: 1\nfirewall:\n  - id: x\n    match: {methods: [GET]}\n  - id: x\n    match: {methods: [PUT]}\n";
        assert_eq!(
            errs(&[("a.yaml", a)]),
            ["a.yaml:5: firewall[1].id: duplicate rule id `x`: already defined at a.yaml:3"]
        );
        let b =
            "version: 1\n\nfirewall:\n  - id: y\n    match: {methods: [GET]}\n  - id: x\n    match: {methods: [GET]}\n";
        assert_eq!(
            errs(&[("a.yaml", a), ("b.yaml", b)]),
            [
                "a.yaml:5: firewall[1].id: duplicate rule id `x`: already defined at a.yaml:3",
                "b.yaml:6: firewall[1].id: duplicate rule id `x`: already defined at a.yaml:3",
            ]
        );
    }

    #[test]
    fn every_file_reports_its_errors_in_one_run() {
        let shape = "version: 1\nfirewall:\n  - id: a\n    match: {methods: [GET]}\n    extra: 1\n";
        let semantic =
            "version: 1\nfirewall:\n  - id: b\n    match:\n      client_ips: [10.0.0.300]\n      path_regex: '('\n";
        let syntax = "version: 1\nfirewall: [\n";
        let fine = "version: 1\n";
        let e = compile(&files(&[("z.yaml", semantic), ("a.yaml", shape), ("m.yaml", syntax), ("ok.yaml", fine)]))
            .unwrap_err();
        let where_: Vec<(&str, usize, &str)> = e.iter().map(|e| (e.file.as_str(), e.line, e.path.as_str())).collect();
        assert_eq!(
            where_,
            [
                ("z.yaml", 5, "firewall[0].match.client_ips[0]"),
                ("z.yaml", 6, "firewall[0].match.path_regex"),
                ("a.yaml", 5, "firewall[0].extra"),
                ("m.yaml", 3, ""),
            ],
            "{e:?}"
        );
    }

    #[test]
    fn errors_are_capped() {
        let mut text = String::from("version: 1\nfirewall:\n  - id: r\n    match:\n      client_ips:\n");
        for _ in 0..500 {
            text.push_str("        - nope\n");
        }
        let e = compile(&files(&[("a.yaml", &text)])).unwrap_err();
        assert_eq!(e.len(), MAX_ERRORS + 1);
        assert_eq!(e[MAX_ERRORS].message, "too many errors (500); fix these and run again");
    }

    #[test]
    fn file_over_four_mib_is_refused() {
        let mut text = String::from("version: 1\n");
        while text.len() <= crate::yaml::MAX_INPUT_BYTES {
            text.push_str("# padding padding padding padding padding padding padding padding padding\n");
        }
        let e = compile(&files(&[("big.yaml", &text)])).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].file.as_str(), e[0].line), ("big.yaml", 1));
        assert!(e[0].message.contains("too large"), "{}", e[0]);
    }

    #[test]
    fn rule_hash_depends_on_content_only() {
        let rule = "  - id: r\n    match:\n      methods: [POST]\n      paths: [/admin]\n";
        let one = format!("version: 1\nfirewall:\n{rule}");
        let other =
            format!("# another file\nversion: 1\nfirewall:\n  - id: first\n    match: {{methods: [GET]}}\n{rule}");
        let a = compile(&files(&[("a.yaml", &one)])).unwrap();
        let b = compile(&files(&[("b.yaml", &other)])).unwrap();
        let (ha, hb) = (&a.rule("r").unwrap().hash, &b.rule("r").unwrap().hash);
        assert_eq!(ha, hb);
        // Flow style, key order and an explicit default mode are the same content.
        let flow = "version: 1\nfirewall:\n- {match: {paths: [/admin], methods: [POST]}, mode: enforce, id: r}\n";
        assert_eq!(&compile(&files(&[("c.yaml", flow)])).unwrap().rule("r").unwrap().hash, ha);
        // Any change to the rule changes the hash.
        for changed in [
            rule.replace("POST", "PUT"),
            rule.replace("/admin", "/admin2"),
            rule.replace("id: r", "id: r2"),
            rule.replace("    match", "    mode: monitor\n    match"),
            rule.replace("    match", "    severity: critical\n    match"),
        ] {
            let text = format!("version: 1\nfirewall:\n{changed}");
            let s = compile(&files(&[("a.yaml", &text)])).unwrap();
            assert_ne!(&s.rules()[0].hash, ha, "{changed}");
        }
    }

    #[test]
    fn snapshot_version_changes_with_any_byte() {
        let base = compile(&files(&[("a.yaml", FW)])).unwrap().version;
        assert_eq!(compile(&files(&[("a.yaml", FW)])).unwrap().version, base);
        let spaced = format!("{FW}\n");
        let commented = FW.replace("Known", "Known ");
        for list in [
            vec![("a.yaml", spaced.as_str())],
            vec![("a.yaml", commented.as_str())],
            vec![("b.yaml", FW)],
            vec![("a.yaml", FW), ("b.yaml", "version: 1\n")],
        ] {
            assert_ne!(compile(&files(&list)).unwrap().version, base, "{list:?}");
        }
        // Boundaries between name and text, and between files, cannot collide.
        let x = compile(&files(&[("a.yaml", "version: 1\n"), ("b.yaml", "version: 1\n")])).unwrap().version;
        let y = compile(&files(&[("b.yaml", "version: 1\n"), ("a.yaml", "version: 1\n")])).unwrap().version;
        assert_ne!(x, y);
        let p = version_of(&files(&[("ab", "c")]));
        assert_ne!(p, version_of(&files(&[("a", "bc")])));
        assert_ne!(p, version_of(&files(&[("a", ""), ("b", "c")])));
        assert_ne!(version_of(&files(&[("a", ""), ("", "")])), version_of(&files(&[("a", "")])));
    }

    #[test]
    fn routes_are_checked_when_known() {
        let text = "version: 1\nfirewall:\n  - id: a\n    match:\n      routes: [api, apx]\n";
        let routes = ["api", "webhooks"];
        let env = Env { routes: Some(&routes), assets: None, sinks: None };
        let e = compile_with(&files(&[("a.yaml", text)]), &env).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].path.as_str()), (5, "firewall[0].match.routes[1]"));
        assert!(e[0].message.contains("unknown route `apx`"), "{}", e[0]);
        assert!(e[0].message.contains("api, webhooks"), "{}", e[0]);
        assert!(compile(&files(&[("a.yaml", text)])).is_ok());
    }

    #[test]
    fn snapshot_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Snapshot>();
        assert_send_sync::<Arc<Snapshot>>();
    }
}
