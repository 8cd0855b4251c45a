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
//! in [`Snapshot`], and one call in [`compile_with`] to the section's compile function, which
//! lives in the kind's own module and is written against [`crate::schema`] (`Ctx`, `Checker`,
//! `RawRule`, `compile_section`). This module assembles the kinds; the kinds never import it.
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

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::alerts::{self, Alerts, RawAlertRule};
use crate::anomaly::{self, Anomalies, RawAnomaly};
use crate::autoblock::{self, AutoBlocks, RawAutoBlock};
use crate::firewall::{self, Firewall, RawFirewallRule};
use crate::identity::{self, Identities, RawIdentityRule};
use crate::limits::{self, quota::RawQuota, rate::RawRateLimit, Quotas, RateLimits};
use crate::pii::{self, Pii, RawPiiRule};
use crate::schema::{short_hex, Ctx, LoadedList};
use crate::ssrf::{self, RawSsrfRule, Ssrf};
use crate::tenant::{self, RawTenantRule, TenantScope};
use crate::webhook::rules::{self as webhooks, RawWebhookRule, Webhooks};
use crate::yaml::{ConfigError, Doc};

// The schema's public names, where the gateway, tests, benches and fuzz targets have always
// found them.
pub use crate::schema::{
    AssetRef, Env, ListSummary, Resolver, RuleInfo, MAX_ID_LEN, MAX_LIST_ERRORS, MAX_REGEX_LEN, REGEX_NEST_LIMIT,
    REGEX_SIZE_LIMIT,
};

/// The rule-file schema version this build understands (the required top-level `version` key).
pub const SCHEMA_VERSION: u32 = 1;

/// At most this many errors are returned by one compile (all files together), plus a last one
/// saying there were more.
pub const MAX_ERRORS: usize = 200;

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
    /// Which of the request pipeline's stages this snapshot gives work: set on first use by
    /// `stages::pipeline` (which knows the stages; this module does not).
    pub(crate) active_stages: std::sync::OnceLock<u16>,
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
            active_stages: std::sync::OnceLock::new(),
            rules: Vec::new(),
            by_id: HashMap::new(),
        }
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
                        let mut ctx = Ctx::new(&doc, env, &mut errors, &mut ids, &mut rules, &mut assets, &mut lists);
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
        active_stages: std::sync::OnceLock::new(),
        rules,
        by_id,
    })
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

/// A rule file's hash as [`FileSummary::sha256`] shows it: the first 16 hex digits of the SHA-256
/// of its text.
pub fn file_sha256(text: &str) -> String {
    short_hex(Sha256::new_with_prefix(text.as_bytes()))
}

#[cfg(test)]
mod tests;
