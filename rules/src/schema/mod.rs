//! The rule-file schema every rule kind compiles against: what a section's compiler gets
//! (`Ctx`: the file, the environment, the run's errors, ids, rule list, assets and lists), how
//! one rule is validated (`Checker`: errors at key paths under `section[i]`, rendered
//! `FILE:LINE: key.path: message`), the keys every rule shares (`RawRule`, `Common`,
//! `RuleMeta`), and the shared helpers (`compile_section`, the `routes` filter, rule regexes in
//! [`pattern`], rule ids and hashes).
//!
//! The one-way graph: every rule kind (`firewall`, `identity`, `tenant`, …) imports this module;
//! this module imports none of them. What assembles every kind into a compiled
//! [`Snapshot`](crate::rulefile::Snapshot) is [`crate::rulefile`], above the kinds.
//!
//! # A kind's compiler
//!
//! A section's compile function is `compile_section` (rule registration with `Ctx::rule` for the
//! keys every rule shares — `id`, `mode`, `severity`, `description` — through the `RawRule`
//! trait) plus the section's own compiler of one rule, which validates through a `Checker`
//! (errors at key paths under `section[i]`, the `routes` filter, key files and secrets).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::ipset::IpSet;
use crate::verdict::{Mode, Severity};
use crate::yaml::{ConfigError, Doc};

pub mod pattern;

pub(crate) use pattern::{compile_path_regex, compile_regex};
pub use pattern::{MAX_REGEX_LEN, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT};

/// Longest rule id, in bytes.
pub const MAX_ID_LEN: usize = 64;

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
pub(crate) struct LoadedList {
    pub(crate) summary: ListSummary,
    pub(crate) set: Option<Arc<IpSet>>,
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

/// A raw rule's keys every rule shares.
pub(crate) trait RawRule: Serialize {
    fn common(&self) -> Common<'_>;
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
    /// The context of one file of a compile run: the file's document, the environment, and the
    /// run's shared state (errors, ids seen so far with their `FILE:LINE`, the rule list, assets
    /// read, IP lists read), all owned by the caller ([`crate::rulefile::compile_with`]).
    pub(crate) fn new(
        doc: &'a Doc,
        env: &'a Env<'a>,
        errors: &'a mut Vec<ConfigError>,
        ids: &'a mut HashMap<String, (String, usize)>,
        rules: &'a mut Vec<RuleInfo>,
        assets: &'a mut Vec<(AssetRef, [u8; 32])>,
        lists: &'a mut Vec<LoadedList>,
    ) -> Self {
        Ctx { doc, env, errors, ids, rules, assets, lists }
    }

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

/// The first 16 hex digits of a finished SHA-256.
pub(crate) fn short_hex(h: Sha256) -> String {
    let digest = h.finalize();
    hex::encode(digest.get(..8).unwrap_or_default())
}
