//! The `pii:` section: raw rule-file model, validation, compilation into [`PiiPolicy`].

use std::collections::HashMap;
use std::sync::Arc;

use regex_automata::{meta, util::syntax, MatchKind};
use serde::{Deserialize, Serialize};

use super::detect::{Custom, Engine, MAX_CUSTOM_LEN, MAX_KEYWORD_LEN, MAX_PREFIX_LEN};
use super::json::{JsonKeys, MAX_KEY_LEN};
use super::scan::{Limits, Shared};
use super::{ContentType, Kind, Mask, OverCap, Pii, PiiAction, PiiPolicy, Validator, EVENT, KIND};
use crate::schema::{compile_regex, present, Checker, Common, Ctx, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT};
use crate::verdict::{Mode, Severity};

/// Default `max_body_bytes` (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Largest `max_body_bytes` accepted (16 MiB: a blocking policy buffers that much per response).
pub const MAX_MAX_BODY_BYTES: usize = 16 << 20;
/// Most custom detectors per rule.
pub const MAX_CUSTOM: usize = 32;
/// Most entries in each of `context`, `prefixes`, `allow_regex`, `json_keys`, `content_types`.
pub const MAX_LIST: usize = 64;
/// Longest custom detector name.
pub const MAX_NAME_LEN: usize = 32;

/// Content types scanned when `content_types` is not given.
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/*+json",
    "text/*",
    "application/xml",
    "application/*+xml",
    "application/x-www-form-urlencoded",
    // Line-delimited JSON (streamed APIs, exports) and JSON sequences.
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/json-seq",
    // Scripts carrying data (JSONP, inlined state).
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    // YAML and CSV exports.
    "application/yaml",
    "application/x-yaml",
    "application/*+yaml",
    "application/csv",
    // Batch and mixed responses carry parts of the types above.
    "multipart/*",
];

/// One raw rule of the `pii:` list (serialized for the rule hash; absent keys are skipped).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a pii rule: a mapping with `id` and `detectors` or `custom`")]
pub(crate) struct RawPiiRule {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    detectors: Option<RawDetectors>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    custom: Option<Vec<RawCustom>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    exclude: Option<RawExclude>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    mask: Option<Mask>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    over_cap: Option<OverCap>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    content_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    allow_upgrade: Option<bool>,
}

/// The built-in detectors and their actions; an absent detector is off.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of detectors (`iban`, `card`, `tckn`, `vkn`, `ssn`, `email`, `phone`) to an action"
)]
struct RawDetectors {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    iban: Option<PiiAction>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    card: Option<PiiAction>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    tckn: Option<PiiAction>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    vkn: Option<PiiAction>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    ssn: Option<PiiAction>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    email: Option<PiiAction>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    phone: Option<PiiAction>,
}

impl RawDetectors {
    /// In [`Kind::BUILTIN`] order.
    fn actions(&self) -> [Option<PiiAction>; 7] {
        [self.iban, self.card, self.tckn, self.vkn, self.ssn, self.email, self.phone]
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a custom detector: a mapping with `name`, `regex` and `action`")]
struct RawCustom {
    name: String,
    regex: String,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    validator: Option<Validator>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    context: Option<Vec<String>>,
    action: PiiAction,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of exclusions (`prefixes`, `allow_regex`, `json_keys`)")]
struct RawExclude {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    prefixes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    allow_regex: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    json_keys: Option<Vec<String>>,
}

/// Collects the policies of every file, in order, and what they cover (to refuse a rule that
/// can never apply).
#[derive(Debug, Default)]
pub(crate) struct Builder {
    policies: Vec<PiiPolicy>,
    /// The first rule without `routes`.
    catch_all: Option<Arc<str>>,
    /// Route → the first rule naming it.
    routes: HashMap<String, Arc<str>>,
}

impl Builder {
    pub(crate) fn build(self) -> Pii {
        Pii { policies: self.policies }
    }
}

/// Compiles the `pii:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: Vec<RawPiiRule>, out: &mut Builder) {
    for (i, r) in raw.iter().enumerate() {
        let base = format!("{section}[{i}]");
        let meta = ctx.rule(KIND, &base, Common { id: &r.id, mode: r.mode, severity: r.severity }, r);
        let mut c = RuleCompiler { c: Checker::new(&mut *ctx, base) };
        let severity = meta.severity.unwrap_or(EVENT.default_severity());
        let p = c.rule(meta.id.clone(), meta.hash, meta.mode, severity, r, out);
        if c.c.ok {
            match &p.routes {
                None => {
                    out.catch_all.get_or_insert_with(|| meta.id.clone());
                }
                Some(list) => {
                    for route in list {
                        out.routes.entry(route.to_string()).or_insert_with(|| meta.id.clone());
                    }
                }
            }
            out.policies.push(p);
        }
    }
}

struct RuleCompiler<'c, 'a> {
    /// At `pii[i]`.
    c: Checker<'c, 'a>,
}

impl RuleCompiler<'_, '_> {
    /// A list key that, when present, must have 1 to [`MAX_LIST`] entries.
    fn list_len(&mut self, key: &str, len: usize) {
        if len == 0 {
            self.c.error(key, format!("`{key}` is empty: remove the key or list at least one entry"));
        } else if len > MAX_LIST {
            self.c.error(key, format!("`{key}` has {len} entries; the limit is {MAX_LIST}"));
        }
    }

    fn rule(
        &mut self,
        id: Arc<str>,
        hash: String,
        mode: Mode,
        severity: Severity,
        r: &RawPiiRule,
        built: &Builder,
    ) -> PiiPolicy {
        let routes = self.routes(r, built);

        let monitor = |a: PiiAction| if mode == Mode::Monitor { PiiAction::Monitor } else { a };
        let mut builtin = [None; 7];
        if let Some(d) = &r.detectors {
            builtin = d.actions().map(|a| a.map(monitor));
            if builtin.iter().all(Option::is_none) {
                self.c.error("detectors", "`detectors` lists no detector: remove the key or name at least one");
            }
        }
        let (custom, custom_re) = match &r.custom {
            Some(list) => self.customs(list, monitor),
            None => (Vec::new(), None),
        };
        if r.detectors.is_none() && r.custom.is_none() {
            self.c.error("", "a pii rule needs `detectors`, `custom`, or both: it would detect nothing");
        }

        let mut prefixes = Vec::new();
        let mut allow = None;
        let mut json_keys = Vec::new();
        if let Some(x) = &r.exclude {
            if x.prefixes.is_none() && x.allow_regex.is_none() && x.json_keys.is_none() {
                self.c.error(
                    "exclude",
                    "`exclude` lists nothing: remove it or add `prefixes`, `allow_regex` or `json_keys`",
                );
            }
            if let Some(list) = &x.prefixes {
                self.list_len("exclude.prefixes", list.len());
                for (j, p) in list.iter().enumerate() {
                    if p.is_empty() || p.len() > MAX_PREFIX_LEN {
                        self.c.error(
                            &format!("exclude.prefixes[{j}]"),
                            format!("a prefix is 1 to {MAX_PREFIX_LEN} bytes, got {}", p.len()),
                        );
                    } else {
                        prefixes.push(Box::from(p.to_ascii_lowercase().as_bytes()));
                    }
                }
            }
            if let Some(list) = &x.allow_regex {
                self.list_len("exclude.allow_regex", list.len());
                let mut ok = true;
                for (j, pattern) in list.iter().enumerate() {
                    if let Err(msg) = compile_regex(pattern) {
                        self.c.error(&format!("exclude.allow_regex[{j}]"), msg);
                        ok = false;
                    }
                }
                if ok {
                    let set = regex::bytes::RegexSetBuilder::new(list)
                        .unicode(false)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .nest_limit(REGEX_NEST_LIMIT)
                        .build();
                    match set {
                        Ok(set) => allow = Some(set),
                        Err(e) => self.c.error("exclude.allow_regex", format!("the patterns together: {e}")),
                    }
                }
            }
            if let Some(list) = &x.json_keys {
                self.list_len("exclude.json_keys", list.len());
                for (j, k) in list.iter().enumerate() {
                    if k.is_empty() || k.len() > MAX_KEY_LEN {
                        self.c.error(
                            &format!("exclude.json_keys[{j}]"),
                            format!("a JSON key is 1 to {MAX_KEY_LEN} bytes, got {}", k.len()),
                        );
                    } else {
                        json_keys.push(Box::from(k.as_bytes()));
                    }
                }
            }
        }

        let max_body_bytes = match r.max_body_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=MAX_MAX_BODY_BYTES).contains(&n) => n,
                _ => {
                    self.c.error(
                        "max_body_bytes",
                        format!("`max_body_bytes` must be between 1 and {MAX_MAX_BODY_BYTES} (16 MiB), got {n}"),
                    );
                    DEFAULT_MAX_BODY_BYTES
                }
            },
        };

        let mut content_types = Vec::new();
        match &r.content_types {
            None => content_types.extend(DEFAULT_CONTENT_TYPES.iter().filter_map(|s| ContentType::parse(s).ok())),
            Some(list) => {
                self.list_len("content_types", list.len());
                for (j, s) in list.iter().enumerate() {
                    match ContentType::parse(s) {
                        Ok(ct) => content_types.push(ct),
                        Err(msg) => self.c.error(&format!("content_types[{j}]"), msg),
                    }
                }
            }
        }

        let mask = r.mask.unwrap_or(Mask::Last4);
        let over_cap = r.over_cap.unwrap_or(OverCap::FailClosed);
        let actions = || builtin.iter().flatten().chain(custom.iter().map(|c| &c.action)).copied();
        let strongest = actions().max();
        let redacts = actions().any(|a| a == PiiAction::Redact);
        let mut engine = Engine {
            builtin,
            custom,
            custom_re,
            prefixes,
            allow,
            json_keys: JsonKeys::new(json_keys),
            interesting: [false; 256],
            digit_mask: 0,
            at_mask: 0,
        };
        engine.compute_interesting();
        let limits = Limits { cap: max_body_bytes, over_cap, mask, strongest, redacts };
        PiiPolicy {
            id,
            hash,
            mode,
            severity,
            max_body_bytes,
            over_cap,
            mask,
            routes,
            content_types,
            allow_upgrade: r.allow_upgrade.unwrap_or(false),
            shared: Arc::new(Shared { engine, limits }),
        }
    }

    fn routes(&mut self, r: &RawPiiRule, built: &Builder) -> Option<Box<[Box<str>]>> {
        if let Some(first) = &built.catch_all {
            self.c.error(
                "",
                format!(
                    "this rule never applies: rule `{first}` before it has no `routes`, and the first pii rule \
                     matching a response's route is the one used; give `{first}` routes or move this rule first"
                ),
            );
        }
        let list = self.c.routes("routes", r.routes.as_ref())?;
        if built.catch_all.is_none() && !list.is_empty() && list.iter().all(|s| built.routes.contains_key(&**s)) {
            let taken: Vec<String> =
                list.iter().filter_map(|s| built.routes.get(&**s).map(|id| format!("`{s}` by `{id}`"))).collect();
            self.c.error(
                "routes",
                format!(
                    "this rule never applies: every route it names is taken by an earlier pii rule ({}); the \
                     first pii rule matching a response's route is the one used",
                    taken.join(", ")
                ),
            );
        }
        Some(list)
    }

    /// Validates the custom detectors and compiles their regexes into one (`None` when any is
    /// invalid: the rule is not kept then).
    fn customs(
        &mut self,
        list: &[RawCustom],
        monitor: impl Fn(PiiAction) -> PiiAction,
    ) -> (Vec<Custom>, Option<meta::Regex>) {
        if list.len() > MAX_CUSTOM {
            self.c.error("custom", format!("`custom` has {} detectors; the limit is {MAX_CUSTOM}", list.len()));
            return (Vec::new(), None);
        }
        if list.is_empty() {
            self.c.error("custom", "`custom` is empty: remove the key or define at least one detector");
            return (Vec::new(), None);
        }
        let syntax_cfg = syntax::Config::new().unicode(false).utf8(false).nest_limit(REGEX_NEST_LIMIT);
        let mut out = Vec::with_capacity(list.len());
        let mut patterns = Vec::with_capacity(list.len());
        for (j, c) in list.iter().enumerate() {
            let at = format!("custom[{j}]");
            if let Err(why) = check_name(&c.name) {
                self.c.error(&format!("{at}.name"), why);
            } else if list.iter().take(j).any(|o| o.name == c.name) {
                self.c.error(&format!("{at}.name"), format!("duplicate custom detector name `{}`", c.name));
            }
            match compile_regex(&c.regex) {
                Err(msg) => self.c.error(&format!("{at}.regex"), msg),
                Ok(_) => match syntax::parse_with(&c.regex, &syntax_cfg) {
                    Err(e) => self.c.error(&format!("{at}.regex"), format!("invalid regex: {e}")),
                    Ok(hir) => {
                        let props = hir.properties();
                        if props.minimum_len() == Some(0) {
                            self.c.error(&format!("{at}.regex"), "the pattern can match the empty string");
                        } else if props.maximum_len().is_none_or(|n| n > MAX_CUSTOM_LEN) {
                            self.c.error(
                                &format!("{at}.regex"),
                                format!(
                                    "the pattern can match more than {MAX_CUSTOM_LEN} bytes (`+`, `*` or `{{n,}}`): \
                                     bound every repetition, like `[0-9]{{6,12}}`; responses are scanned as a \
                                     stream and a match must fit its overlap window"
                                ),
                            );
                        } else if props.look_set().contains_anchor_haystack() {
                            self.c.error(
                                &format!("{at}.regex"),
                                "`^`, `$`, `\\A` and `\\z` would anchor to the whole body: use `\\b`, or \
                                 `(?m)^` / `(?m)$` for line starts and ends",
                            );
                        } else {
                            patterns.push(c.regex.as_str());
                        }
                    }
                },
            }
            let mut context = Vec::new();
            if let Some(words) = &c.context {
                self.list_len(&format!("{at}.context"), words.len());
                for (k, w) in words.iter().enumerate() {
                    if w.trim().is_empty() || w.len() > MAX_KEYWORD_LEN {
                        self.c.error(
                            &format!("{at}.context[{k}]"),
                            format!("a context keyword is 1 to {MAX_KEYWORD_LEN} bytes and not blank"),
                        );
                    } else {
                        context.push(Box::from(w.to_ascii_lowercase().as_bytes()));
                    }
                }
            }
            out.push(Custom {
                name: Box::from(c.name.as_str()),
                validator: c.validator.unwrap_or(Validator::None),
                context,
                action: monitor(c.action),
            });
        }
        if patterns.len() != list.len() {
            return (out, None);
        }
        let built = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .nfa_size_limit(Some(4 * REGEX_SIZE_LIMIT))
                    .dfa_size_limit(Some(4 * REGEX_SIZE_LIMIT))
                    .hybrid_cache_capacity(2 * REGEX_SIZE_LIMIT),
            )
            .syntax(syntax_cfg)
            .build_many(&patterns);
        match built {
            Ok(re) => (out, Some(re)),
            Err(e) => {
                self.c.error("custom", format!("the custom regexes together: {e}"));
                (out, None)
            }
        }
    }
}

/// `[a-z0-9][a-z0-9_-]{0,31}`, not a built-in detector's name.
fn check_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let first = b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest = b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'));
    if !first || !rest || b.len() > MAX_NAME_LEN {
        return Err(format!(
            "`{name}` is not a valid detector name: use 1 to {MAX_NAME_LEN} characters from `a-z`, `0-9`, `_`, `-`, \
             starting with a letter or digit"
        ));
    }
    if Kind::BUILTIN.iter().any(|k| k.builtin_name() == Some(name)) {
        return Err(format!("`{name}` is a built-in detector: name the custom one differently"));
    }
    Ok(())
}
