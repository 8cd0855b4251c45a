//! The configuration loader: YAML text in, serde-deserialized Rust types out, and **every** error
//! at once, each rendered as `FILE:LINE: key.path: message`.
//!
//! `portcullis validate` and every rule reload run this; an operator fixing a config at 3 a.m.
//! wants all the mistakes in one run, each pointing at a line and a key path.
//!
//! # How it works
//!
//! 1. [`Doc::parse`] checks the input size ([`MAX_INPUT_BYTES`]) and a cheap conservative bound on
//!    block nesting, then runs saphyr's (recursive) loader on a dedicated thread with a large stack,
//!    and converts the marked tree into a small owned tree that remembers the line of every node
//!    and key. Aliases, anchors, unknown tags, non-string keys, duplicate keys and nesting deeper
//!    than [`MAX_DEPTH`] are recorded as errors ("problems") and the offending node is left out;
//!    `parse` itself fails only on input that is not one readable YAML document (syntax error,
//!    too large, several documents).
//! 2. [`Doc::deserialize`] runs a serde `Deserializer` over that tree, collecting errors instead of
//!    stopping at the first one:
//!    * unknown keys are checked against the struct's field list before the struct sees them (so
//!      `deny_unknown_fields` never fires) and all of them are reported, with a did-you-mean;
//!    * type and range errors on a value are recorded where they are found and a placeholder value
//!      is handed to the visitor, so deserialization simply continues;
//!    * errors only a visitor can detect (a missing field, an unknown enum variant, a failed
//!      `FromStr`, a custom validation) abort serde's call chain. The error is recorded, the node
//!      it belongs to is marked, and deserialization is re-run from the top, this time leaving the
//!      marked node out: a bad sequence element or map entry is skipped, a bad struct field is not
//!      handed to the struct (whose "missing field" complaint about it is then suppressed, as is any
//!      other follow-up error of a value built from placeholders or with parts left out).
//!
//!    Errors are de-duplicated across passes and returned sorted by line.
//!
//! Known limits: serde structs report only their *first* missing required field per run; every
//! struct is treated as `deny_unknown_fields` (unless it uses `flatten`); a `#[serde(other)]` enum
//! variant works, but YAML merge keys (`<<`) do not, since anchors and aliases are refused.
#![deny(clippy::indexing_slicing)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, ScanError, YamlData};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

/// The largest configuration file accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// The deepest nesting accepted: the document's top node is at depth 1.
pub const MAX_DEPTH: usize = 64;

/// Bound on the per-line block-nesting estimate (see [`nesting_gate`]) above which a document is
/// refused before saphyr's recursive loader ever sees it.
const MAX_LINE_NESTING: usize = 1024;

/// Stack of the thread saphyr's recursive loader runs on. The deepest input that passes
/// [`nesting_gate`] (about 1000 block levels, plus saphyr's own cap of 255 nested flow collections
/// with an implicit mapping each) was measured to need under 4 MiB in a debug build; this is
/// address space, only the pages actually used are committed.
const PARSER_STACK_BYTES: usize = 32 * 1024 * 1024;

/// At most this many errors are reported.
const MAX_ERRORS: usize = 100;

/// At most this many deserialization passes are run (each visitor-detected error costs a pass or
/// a few).
const MAX_PASSES: usize = 64;

/// At most this many duplicate keys are reported before a duplicate key becomes a fatal error.
const MAX_DUPLICATE_KEYS: usize = 16;

/// Prefix given to a duplicate key while re-parsing, so that saphyr accepts the mapping; see
/// [`load`]. A sequence number and `__` follow, to keep renamed keys apart from each other.
const DUP_MARK: &str = "__portcullis_duplicate_key_";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One configuration error, rendered as `FILE:LINE: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name, as given to [`Doc::parse`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// Key path such as `routes[2].upstream`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// Builds an error.
    pub fn new(file: &str, line: usize, path: &str, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), line, path: path.to_owned(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(root)" } else { &self.path };
        write!(f, "{}:{}: {}: {}", self.file, self.line, path, self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// The owned, line-annotated tree
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Node {
    /// Unique within a document; identifies the node across deserialization passes.
    id: usize,
    /// 1-based line where the node starts.
    line: usize,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Null,
    /// Non-string scalars keep their source text, handed out when a string is asked for
    /// (`version: 1.0` into a `String` gives `"1.0"`).
    Bool(bool, Box<str>),
    Int(i64, Box<str>),
    Float(f64, Box<str>),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// A node already reported as a problem while parsing (alias, unknown tag, too deep...).
    Invalid,
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    key_line: usize,
    value: Node,
}

/// A parsed YAML document that remembers where every node came from.
#[derive(Debug, Clone)]
pub struct Doc {
    file: String,
    root: Node,
    /// No document at all (empty file, only comments, a bare `---`).
    empty: bool,
    problems: Vec<ConfigError>,
}

impl Doc {
    /// Parses `text` (the contents of `file`, which is only used in messages).
    ///
    /// Fails only on input that cannot be read as one YAML document: too large, nested too deeply
    /// for the parser, a syntax error, or several documents. Other problems (aliases, anchors,
    /// unsupported tags, duplicate or non-string keys, nesting deeper than [`MAX_DEPTH`]) are kept
    /// and reported by [`Doc::deserialize`] together with the deserialization errors; see
    /// [`Doc::problems`].
    pub fn parse(file: &str, text: &str) -> Result<Doc, Vec<ConfigError>> {
        if text.len() > MAX_INPUT_BYTES {
            return Err(vec![ConfigError::new(
                file,
                1,
                "",
                format!("file is too large: {} bytes (the limit is {MAX_INPUT_BYTES} bytes)", text.len()),
            )]);
        }
        if let Some(line) = nesting_gate(text) {
            return Err(vec![ConfigError::new(
                file,
                line,
                "",
                format!("indented or nested too deeply (nesting is limited to {MAX_DEPTH} levels)"),
            )]);
        }
        let loaded = on_parser_thread(|| load(file, text)).map_err(|m| vec![ConfigError::new(file, 1, "", m)])??;
        Ok(Doc { file: file.to_owned(), root: loaded.root, empty: loaded.empty, problems: loaded.problems })
    }

    /// The file name given to [`Doc::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Problems found while parsing (aliases, anchors, unsupported tags, duplicate or non-string
    /// keys, nesting too deep). [`Doc::deserialize`] reports them too.
    pub fn problems(&self) -> &[ConfigError] {
        &self.problems
    }

    /// Deserializes the whole document into `T`, collecting every error (see the module docs).
    ///
    /// Returns the value only if there is no error at all, parse problems included. Errors are
    /// sorted by line; at most 100 are returned.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, Vec<ConfigError>> {
        let mut errors = Errors::new(&self.problems);
        let mut poisoned: HashSet<usize> = HashSet::new();
        let mut exhausted = true;
        for _ in 0..MAX_PASSES {
            let ctx = Ctx {
                file: &self.file,
                poisoned: &poisoned,
                empty_root: self.empty,
                recorded: RefCell::new(Vec::new()),
                degraded: Cell::new(0),
            };
            let result = T::deserialize(De { node: &self.root, path: String::new(), ctx: &ctx });
            for e in ctx.recorded.into_inner() {
                errors.push(e);
            }
            let err = match result {
                Ok(value) if errors.is_empty() => return Ok(value),
                Ok(_) => {
                    exhausted = false;
                    break;
                }
                Err(err) => err,
            };
            let at = err.at.unwrap_or_else(|| At { node: self.root.id, line: self.root.line, path: String::new() });
            if let Some(message) = err.kind.message() {
                errors.push(ConfigError::new(&self.file, at.line, &at.path, message));
            }
            let progress = at.node != self.root.id && poisoned.insert(at.node);
            if !progress {
                if errors.is_empty() {
                    // Cannot happen (a silent error always follows a recorded one), but never
                    // return an empty error list.
                    errors.push(ConfigError::new(&self.file, at.line, &at.path, "invalid value"));
                }
                exhausted = false;
                break;
            }
            if errors.len() >= MAX_ERRORS {
                break;
            }
        }
        Err(errors.finish(&self.file, exhausted))
    }

    /// Line (1-based) of the node at a key path like `routes[2].upstream` or
    /// `upstreams.app.backends[0]`. For a mapping entry this is the line of its key. Falls back to
    /// the nearest existing ancestor's line (the document's first line for `""`).
    pub fn line_of(&self, path: &str) -> usize {
        let mut node = &self.root;
        let mut line = self.root.line;
        for seg in parse_path(path) {
            let next = match (&node.kind, seg) {
                (Kind::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|e| e.key == k).map(|e| (&e.value, e.key_line))
                }
                (Kind::Seq(items), Seg::Index(i)) => items.get(i).map(|n| (n, n.line)),
                _ => None,
            };
            match next {
                Some((n, l)) => {
                    node = n;
                    line = l;
                }
                None => break,
            }
        }
        line
    }

    /// Builds a [`ConfigError`] at `path` (whose line is [`Doc::line_of`]`(path)`).
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, self.line_of(path), path, message)
    }
}

/// [`Doc::parse`] then [`Doc::deserialize`].
pub fn from_str<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Vec<ConfigError>> {
    Doc::parse(file, text)?.deserialize()
}

/// The error list of [`Doc::deserialize`]: de-duplicated, in first-seen order until `finish`.
struct Errors {
    list: Vec<ConfigError>,
    seen: HashSet<(usize, String, String)>,
}

impl Errors {
    fn new(initial: &[ConfigError]) -> Self {
        let mut errors = Errors { list: Vec::new(), seen: HashSet::new() };
        for e in initial {
            errors.push(e.clone());
        }
        errors
    }

    fn push(&mut self, e: ConfigError) {
        if self.seen.insert((e.line, e.path.clone(), e.message.clone())) {
            self.list.push(e);
        }
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn finish(mut self, file: &str, exhausted: bool) -> Vec<ConfigError> {
        self.list.sort_by_key(|e| e.line);
        let total = self.list.len();
        if total > MAX_ERRORS || (exhausted && total >= MAX_ERRORS) {
            self.list.truncate(MAX_ERRORS);
            let line = self.list.last().map_or(1, |e| e.line);
            self.list.push(ConfigError::new(file, line, "", "too many errors; fix these and run again"));
        } else if exhausted {
            let line = self.list.last().map_or(1, |e| e.line);
            self.list.push(ConfigError::new(
                file,
                line,
                "",
                "stopped looking for more errors; fix these and run again",
            ));
        }
        self.list
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

/// Splits `a.b[2].c` into `a`, `b`, `[2]`, `c`. Anything unparsable ends the path.
fn parse_path(path: &str) -> Vec<Seg<'_>> {
    let mut segs = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else { break };
            let Ok(i) = after.get(..close).unwrap_or("").parse::<usize>() else { break };
            segs.push(Seg::Index(i));
            rest = after.get(close + 1..).unwrap_or("");
            rest = rest.strip_prefix('.').unwrap_or(rest);
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let (key, tail) = rest.split_at(end);
            if !key.is_empty() {
                segs.push(Seg::Key(key));
            }
            rest = tail.strip_prefix('.').unwrap_or(tail);
        }
    }
    segs
}

fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

// ---------------------------------------------------------------------------------------------
// Parsing: saphyr's marked tree -> Node
// ---------------------------------------------------------------------------------------------

/// A conservative upper bound on block nesting, checked line by line before parsing, because
/// saphyr's loader recurses once per nesting level (`- - - - …` is 2 bytes a level).
///
/// A block collection still open at a line started at a column no greater than the line's
/// indentation, with at most two collections per column (a mapping and an indentless sequence);
/// collections opened on the line itself each start with an indicator (`- `, `? `, `: `) in the
/// line's leading run, plus one implicit-key mapping. Flow collections need no bound here: saphyr
/// refuses more than 255 nested ones. Returns the first line whose bound exceeds
/// [`MAX_LINE_NESTING`].
fn nesting_gate(text: &str) -> Option<usize> {
    for (index, line) in lines(text).enumerate() {
        let content = line.trim_start_matches([' ', '\t']);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let mut run = 0usize;
        for token in content.split([' ', '\t']).filter(|t| !t.is_empty()) {
            if matches!(token, "-" | "?" | ":") {
                run += 1;
            } else if !(token.starts_with('&') || token.starts_with('!')) {
                break;
            }
        }
        let bound = indent.saturating_add(1).saturating_mul(2).saturating_add(run).saturating_add(1);
        if bound > MAX_LINE_NESTING {
            return Some(index + 1);
        }
    }
    None
}

/// Lines as YAML counts them: `\r\n`, `\n` and a lone `\r` each end a line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'))
}

/// Runs `f` on a thread with a [`PARSER_STACK_BYTES`] stack; `Err` if that is impossible or `f`
/// panicked.
fn on_parser_thread<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, String> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("portcullis-yaml".to_owned())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("cannot start the YAML parser thread: {e}"))?;
        handle.join().map_err(|_| "internal error: the YAML parser failed".to_owned())
    })
}

struct Loaded {
    root: Node,
    empty: bool,
    problems: Vec<ConfigError>,
}

/// Parses and converts (on the parser thread).
///
/// saphyr refuses duplicate keys with a fatal error. To report every duplicate with its key path
/// and keep going, each duplicate key is renamed in a private copy of the text (prefixed with
/// [`DUP_MARK`]; no newline is added, so lines stay the same) and the text is parsed again; the
/// conversion then reports and drops the renamed entries.
fn load(file: &str, text: &str) -> Result<Loaded, Vec<ConfigError>> {
    let mut work: Option<String> = None;
    // Duplicates renamed so far (without their key path), and where the last mark was inserted.
    let mut duplicates: Vec<ConfigError> = Vec::new();
    let mut last_mark: Option<(usize, usize)> = None;
    loop {
        let current = work.as_deref().unwrap_or(text);
        let chars = CharIndex::new(current);
        let docs = match MarkedYaml::load_from_str(current) {
            Ok(docs) => docs,
            Err(e) => {
                let error = scan_error(file, current, &chars, &e);
                let at = e.marker().index();
                if e.info() == "duplicated key in mapping" && duplicates.len() < MAX_DUPLICATE_KEYS {
                    let mark = format!("{DUP_MARK}{}__", duplicates.len());
                    if let Some(renamed) = chars.byte(at).and_then(|b| insert_at(current, b, &mark)) {
                        duplicates.push(error);
                        work = Some(renamed);
                        last_mark = Some((at, mark.len()));
                        continue;
                    }
                }
                // A syntax error right where a key was renamed is an artifact of the renaming
                // (a complex key in a flow mapping): the duplicate is the real error.
                let artifact = last_mark.is_some_and(|(m, len)| (m..=m + len).contains(&at));
                if !artifact {
                    duplicates.push(error);
                }
                duplicates.sort_by_key(|e| e.line);
                return Err(duplicates);
            }
        };
        let mut docs = docs.iter();
        let Some(first) = docs.next() else {
            return Ok(Loaded { root: Node { id: 0, line: 1, kind: Kind::Null }, empty: true, problems: Vec::new() });
        };
        if let Some(second) = docs.next() {
            return Err(vec![ConfigError::new(
                file,
                second.span.start.line().max(1),
                "",
                "a second YAML document (after `---`) is not supported: one file holds one document",
            )]);
        }
        let mut conv = Converter { file, text: current, chars, next_id: 0, problems: Vec::new() };
        // A document with nothing in it (a bare `---`, maybe `...`) loads as a null; a written
        // null (`~`, `null`) is not empty.
        let empty = matches!(first.data, YamlData::Value(Scalar::Null))
            && !matches!(&*conv.source_token(first, String::new), "~" | "null" | "Null" | "NULL");
        let mut root = conv.node(first, "", 1);
        if empty {
            root.line = 1;
        }
        return Ok(Loaded { root, empty, problems: conv.problems });
    }
}

fn insert_at(text: &str, at: usize, mark: &str) -> Option<String> {
    let (head, tail) = (text.get(..at)?, text.get(at..)?);
    Some(format!("{head}{mark}{tail}"))
}

/// The key as written, if `load` renamed it (see [`DUP_MARK`]).
fn renamed_duplicate(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(DUP_MARK)?;
    rest.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix("__")
}

fn scan_error(file: &str, text: &str, chars: &CharIndex<'_>, e: &ScanError) -> ConfigError {
    let marker = e.marker();
    let message = if e.info() == "duplicated key in mapping" {
        let key = chars.byte(marker.index()).and_then(|at| text.get(at..)).map(key_text).unwrap_or_default();
        format!("duplicate key `{}`", renamed_duplicate(&key).unwrap_or(&key))
    } else {
        format!("YAML syntax error: {}", e.info())
    };
    ConfigError::new(file, marker.line().max(1), "", message)
}

/// The key starting at the beginning of `rest`, for messages: up to `: `, without quotes.
fn key_text(rest: &str) -> String {
    let line = rest.split(['\n', '\r']).next().unwrap_or("");
    let end = line.find(": ").or_else(|| line.strip_suffix(':').map(str::len)).unwrap_or(line.len());
    let key = line.get(..end).unwrap_or(line).trim();
    truncate(unquote(key), 60)
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", s.get(..at).unwrap_or(s)),
        None => s.to_owned(),
    }
}

/// saphyr's markers count characters; this maps a character index to a byte offset.
struct CharIndex<'t> {
    text: &'t str,
    /// Byte offset of every [`CHAR_STRIDE`]-th character, or `None` for ASCII text.
    checkpoints: Option<Vec<usize>>,
    /// Number of characters.
    total: usize,
}

const CHAR_STRIDE: usize = 64;

/// Anchors and tags longer than this are cut short in messages.
const MAX_PROP_CHARS: usize = 256;

impl<'t> CharIndex<'t> {
    fn new(text: &'t str) -> Self {
        let checkpoints = (!text.is_ascii())
            .then(|| text.char_indices().step_by(CHAR_STRIDE).map(|(byte, _)| byte).collect::<Vec<_>>());
        let total = if checkpoints.is_some() { text.chars().count() } else { text.len() };
        CharIndex { text, checkpoints, total }
    }

    fn byte(&self, char_index: usize) -> Option<usize> {
        let Some(checkpoints) = &self.checkpoints else {
            return (char_index <= self.text.len()).then_some(char_index);
        };
        let base = match checkpoints.get(char_index / CHAR_STRIDE) {
            Some(&base) => base,
            None => return (char_index == self.total).then_some(self.text.len()),
        };
        let mut chars = self.text.get(base..)?.char_indices();
        for _ in 0..char_index % CHAR_STRIDE {
            chars.next()?;
        }
        Some(chars.next().map_or(self.text.len(), |(offset, _)| base + offset))
    }
}

/// Node properties written before a node: `&anchor`, `!tag`, or an alias `*name` instead.
#[derive(Debug, Default)]
struct Props {
    alias: bool,
    anchor: bool,
    tag: Option<String>,
}

impl Props {
    fn rejection(&self) -> Option<String> {
        if self.alias {
            Some("YAML aliases (`*name`) are not supported: write the value out".to_owned())
        } else if self.anchor {
            Some("YAML anchors (`&name`) are not supported".to_owned())
        } else {
            None
        }
    }

    /// Checks the tag (if any) against the core-schema tag `expected` of the node's actual type.
    fn check_tag(&self, expected: &str) -> Result<(), String> {
        let Some(tag) = &self.tag else { return Ok(()) };
        // saphyr resolves only the `!!` shorthand to the core schema (a verbatim
        // `!<tag:yaml.org,2002:str>` arrives as an unknown tag).
        match tag.strip_prefix("!!") {
            Some(name) if name == expected => Ok(()),
            Some(name) if ["str", "int", "float", "bool", "null", "map", "seq"].contains(&name) => {
                Err(format!("the value does not match its tag `{tag}`"))
            }
            _ => Err(format!("unsupported YAML tag `{tag}`")),
        }
    }
}

struct Converter<'t> {
    file: &'t str,
    text: &'t str,
    chars: CharIndex<'t>,
    next_id: usize,
    problems: Vec<ConfigError>,
}

impl Converter<'_> {
    fn problem(&mut self, line: usize, path: &str, message: impl Into<String>) {
        self.problems.push(ConfigError::new(self.file, line, path, message));
    }

    /// The properties at character index `start` (where saphyr starts a node's span).
    fn props(&self, start: usize) -> Props {
        let mut props = Props::default();
        let Some(mut rest) = self.chars.byte(start).and_then(|b| self.text.get(b..)) else { return props };
        if rest.starts_with('*') {
            props.alias = true;
            return props;
        }
        // A node has at most one anchor and one tag; the bound only guards against surprises.
        for _ in 0..4 {
            if !(rest.starts_with('&') || rest.starts_with('!')) {
                break;
            }
            // Bounded, so that a long line without spaces is not scanned once per node.
            let end = rest
                .char_indices()
                .take(MAX_PROP_CHARS)
                .find(|(_, c)| c.is_whitespace())
                .map_or_else(|| rest.char_indices().nth(MAX_PROP_CHARS).map_or(rest.len(), |(i, _)| i), |(i, _)| i);
            let token = rest.get(..end).unwrap_or("");
            if token.starts_with('&') {
                props.anchor = true;
            } else {
                props.tag = Some(token.trim_end_matches([',', ']', '}']).to_owned());
            }
            rest = rest.get(end..).unwrap_or("").trim_start();
            while rest.starts_with('#') {
                rest = rest.find('\n').and_then(|nl| rest.get(nl..)).unwrap_or("").trim_start();
            }
        }
        props
    }

    /// The source text of a plain scalar: the last whitespace-separated token of its span (which
    /// starts at its tag, if any).
    fn source_token(&self, y: &MarkedYaml<'_>, fallback: impl FnOnce() -> String) -> Box<str> {
        let (start, end) = (y.span.start.index(), y.span.end.index());
        self.chars
            .byte(start)
            .zip(self.chars.byte(end))
            .and_then(|(a, b)| self.text.get(a..b))
            .and_then(|t| t.split_whitespace().last())
            .map_or_else(|| fallback().into_boxed_str(), Box::from)
    }

    fn scalar(&self, s: &Scalar<'_>, y: &MarkedYaml<'_>, props: &Props) -> Result<Kind, String> {
        let (kind, tag) = match s {
            Scalar::Null => (Kind::Null, "null"),
            Scalar::Boolean(b) => (Kind::Bool(*b, self.source_token(y, || b.to_string())), "bool"),
            Scalar::Integer(i) => (Kind::Int(*i, self.source_token(y, || i.to_string())), "int"),
            Scalar::FloatingPoint(f) => (Kind::Float(f.0, self.source_token(y, || f.0.to_string())), "float"),
            Scalar::String(s) => (Kind::Str(s.to_string()), "str"),
        };
        props.check_tag(tag)?;
        Ok(kind)
    }

    /// Why saphyr could not build a value: a core tag it did not understand or that the text does
    /// not match (`!!binary x`, `!!int abc`).
    fn bad_value(props: &Props) -> String {
        match &props.tag {
            Some(tag) => match props.check_tag("") {
                Err(m) if m.starts_with("unsupported") => m,
                _ => format!("the value does not match its tag `{tag}`"),
            },
            None => "invalid value".to_owned(),
        }
    }

    fn node(&mut self, y: &MarkedYaml<'_>, path: &str, depth: usize) -> Node {
        let id = self.next_id;
        self.next_id += 1;
        let line = y.span.start.line().max(1);
        let invalid = Node { id, line, kind: Kind::Invalid };
        if depth > MAX_DEPTH {
            self.problem(line, path, format!("nested too deeply (the limit is {MAX_DEPTH} levels)"));
            return invalid;
        }
        // A block collection's span starts at its first child when it has no properties of its
        // own; then the properties found there belong to that child.
        let first_child = match &y.data {
            YamlData::Sequence(items) => items.first().map(|c| c.span.start.index()),
            YamlData::Mapping(map) => map.iter().next().map(|(k, _)| k.span.start.index()),
            _ => None,
        };
        let start = y.span.start.index();
        let props = if first_child == Some(start) || start == y.span.end.index() {
            Props::default()
        } else {
            self.props(start)
        };
        if let Some(message) = props.rejection() {
            self.problem(line, path, message);
            return invalid;
        }
        let kind = match &y.data {
            YamlData::Value(s) => self.scalar(s, y, &props),
            YamlData::Representation(s, _, _) => Ok(Kind::Str(s.to_string())),
            YamlData::Sequence(items) => props.check_tag("seq").map(|()| {
                Kind::Seq(
                    items.iter().enumerate().map(|(i, c)| self.node(c, &index_path(path, i), depth + 1)).collect(),
                )
            }),
            YamlData::Mapping(map) => props.check_tag("map").map(|()| {
                let mut entries = Vec::with_capacity(map.len());
                let mut seen: HashMap<String, usize> = HashMap::new();
                for (k, v) in map {
                    let Some((key, key_line)) = self.key(k, path) else { continue };
                    if let Some(original) = renamed_duplicate(&key) {
                        let original = unquote(original);
                        let child = key_path(path, original);
                        let message = match seen.get(original) {
                            Some(first) => format!("duplicate key `{original}` (first defined on line {first})"),
                            None => format!("duplicate key `{original}`"),
                        };
                        self.problem(key_line, &child, message);
                        continue;
                    }
                    let child = key_path(path, &key);
                    if let Some(first) = seen.get(&key) {
                        let message = format!("duplicate key `{key}` (first defined on line {first})");
                        self.problem(key_line, &child, message);
                        continue;
                    }
                    let value = self.node(v, &child, depth + 1);
                    seen.insert(key.clone(), key_line);
                    entries.push(Entry { key, key_line, value });
                }
                Kind::Map(entries)
            }),
            YamlData::Tagged(tag, _) => {
                Err(format!("unsupported YAML tag `{}`", props.tag.clone().unwrap_or_else(|| tag.to_string())))
            }
            YamlData::BadValue => Err(Self::bad_value(&props)),
            YamlData::Alias(_) => Err("YAML aliases (`*name`) are not supported: write the value out".to_owned()),
        };
        match kind {
            Ok(kind) => Node { id, line, kind },
            Err(message) => {
                self.problem(line, path, message);
                invalid
            }
        }
    }

    /// A mapping key as a string (scalars only, by their source text), or `None` after recording
    /// why not.
    fn key(&mut self, k: &MarkedYaml<'_>, parent: &str) -> Option<(String, usize)> {
        let line = k.span.start.line().max(1);
        let start = k.span.start.index();
        let props = if start == k.span.end.index() { Props::default() } else { self.props(start) };
        let result = match props.rejection() {
            Some(message) => Err(message),
            None => match &k.data {
                YamlData::Value(s) => match self.scalar(s, k, &props) {
                    Ok(Kind::Str(s)) => Ok(s),
                    Ok(Kind::Int(_, t) | Kind::Float(_, t) | Kind::Bool(_, t)) => Ok(t.into_string()),
                    Ok(_) => Err("a mapping key is empty or null".to_owned()),
                    Err(message) => Err(message),
                },
                YamlData::Representation(s, _, _) => Ok(s.to_string()),
                YamlData::Sequence(_) => Err("mapping keys must be strings, found a sequence".to_owned()),
                YamlData::Mapping(_) => Err("mapping keys must be strings, found a mapping".to_owned()),
                YamlData::Tagged(tag, _) => {
                    Err(format!("unsupported YAML tag `{}`", props.tag.clone().unwrap_or_else(|| tag.to_string())))
                }
                YamlData::BadValue => Err(Self::bad_value(&props)),
                YamlData::Alias(_) => Err("YAML aliases (`*name`) are not supported: write the value out".to_owned()),
            },
        };
        match result {
            Ok(key) => Some((key, line)),
            Err(message) => {
                self.problem(line, parent, message);
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization
// ---------------------------------------------------------------------------------------------

/// State shared by one deserialization pass.
struct Ctx<'d> {
    file: &'d str,
    /// Nodes found bad by earlier passes: left out of this one.
    poisoned: &'d HashSet<usize>,
    empty_root: bool,
    recorded: RefCell<Vec<ConfigError>>,
    /// Counts what makes a value untrustworthy: recorded errors, placeholders, skipped nodes. A
    /// visitor's error on a node whose subtree was degraded during the call is a follow-up error
    /// and is not reported.
    degraded: Cell<usize>,
}

impl Ctx<'_> {
    fn degrade(&self) {
        self.degraded.set(self.degraded.get().wrapping_add(1));
    }

    fn record(&self, line: usize, path: &str, message: String) {
        self.recorded.borrow_mut().push(ConfigError::new(self.file, line, path, message));
        self.degrade();
    }

    fn skips(&self, node: &Node) -> bool {
        matches!(node.kind, Kind::Invalid) || self.poisoned.contains(&node.id)
    }
}

/// Where an error belongs.
#[derive(Debug)]
struct At {
    node: usize,
    line: usize,
    path: String,
}

#[derive(Debug)]
enum ErrKind {
    /// Already reported (or a consequence of something reported): never shown.
    Silent,
    Missing(&'static str),
    Msg(String),
}

impl ErrKind {
    fn message(&self) -> Option<String> {
        match self {
            ErrKind::Silent => None,
            ErrKind::Missing(field) => Some(format!("missing field `{field}`")),
            ErrKind::Msg(m) => Some(m.clone()),
        }
    }
}

/// The deserializer's error: a message (or none) and, once known, the node it belongs to.
#[derive(Debug)]
struct DeError {
    kind: ErrKind,
    at: Option<At>,
}

impl DeError {
    fn silent() -> Self {
        DeError { kind: ErrKind::Silent, at: None }
    }

    /// Makes an error not yet placed silent (used where the value was a placeholder).
    fn silenced(mut self) -> Self {
        if self.at.is_none() {
            self.kind = ErrKind::Silent;
        }
        self
    }

    /// Places the error at `node` unless it already has a place; a plain message becomes silent
    /// if the node's value was degraded (`degraded`).
    fn place(mut self, node: &Node, path: &str, degraded: bool) -> Self {
        if self.at.is_none() {
            if degraded && matches!(self.kind, ErrKind::Msg(_)) {
                self.kind = ErrKind::Silent;
            }
            self.at = Some(At { node: node.id, line: node.line, path: path.to_owned() });
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind.message().unwrap_or_else(|| "error already reported".to_owned()))
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { kind: ErrKind::Msg(msg.to_string()), at: None }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError { kind: ErrKind::Missing(field), at: None }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::custom(unknown_message("field", field, expected))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::custom(unknown_message("variant", variant, expected))
    }
}

/// `unknown field `x`, expected one of `a`, `b` (did you mean `a`?)`.
fn unknown_message(what: &str, name: &str, expected: &[&str]) -> String {
    let name = truncate(name, 60);
    let mut message = if expected.is_empty() {
        format!("unknown {what} `{name}`, there are none here")
    } else {
        let list = expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ");
        format!("unknown {what} `{name}`, expected one of {list}")
    };
    if let Some(s) = did_you_mean(&name, expected) {
        message.push_str(&format!(" (did you mean `{s}`?)"));
    }
    message
}

/// The closest of `candidates` within edit distance 2 (case-insensitive), if any.
fn did_you_mean<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = name.to_lowercase();
    let len = lower.chars().count();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), *c))
        .filter(|&(d, _)| d <= 2 && d < len)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, capped at 3 (all we need to know is whether it is at most 2).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur.clear();
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev.get(j).copied().unwrap_or(usize::MAX).saturating_add(usize::from(ca != cb));
            let delete = prev.get(j + 1).copied().unwrap_or(usize::MAX).saturating_add(1);
            let insert = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            cur.push(substitute.min(delete).min(insert));
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0).min(3)
}

/// Deserializes `seed` from a child node, placing (and, after degradation, silencing) errors the
/// child's own deserializer did not place (e.g. from a `deserialize_with` function).
fn child<'de, T: DeserializeSeed<'de>>(seed: T, node: &Node, path: String, ctx: &Ctx<'_>) -> Result<T::Value, DeError> {
    let before = ctx.degraded.get();
    match seed.deserialize(De { node, path: path.clone(), ctx }) {
        Ok(v) => Ok(v),
        Err(e) => Err(e.place(node, &path, ctx.degraded.get() != before)),
    }
}

/// The deserializer for one node.
struct De<'a> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx<'a>,
}

impl<'a> De<'a> {
    /// Runs `f` for this node: refuses skipped nodes, places errors, silences follow-up errors.
    fn run<T>(self, f: impl FnOnce(&De<'a>) -> Result<T, DeError>) -> Result<T, DeError> {
        if self.ctx.skips(self.node) {
            // Reached only where a skipped node cannot be left out (the root, an enum's value):
            // the caller reports no progress or poisons the parent.
            return Err(DeError::silent().place(self.node, &self.path, false));
        }
        let before = self.ctx.degraded.get();
        f(&self).map_err(|e| e.place(self.node, &self.path, self.ctx.degraded.get() != before))
    }

    fn again(&self) -> De<'a> {
        De { node: self.node, path: self.path.clone(), ctx: self.ctx }
    }

    fn record(&self, message: String) {
        self.ctx.record(self.node.line, &self.path, message);
    }

    fn describe(&self) -> String {
        match &self.node.kind {
            Kind::Null if self.ctx.empty_root && self.node.id == 0 => "empty document".to_owned(),
            Kind::Null => "null".to_owned(),
            Kind::Bool(_, t) => format!("boolean `{t}`"),
            Kind::Int(_, t) => format!("integer `{t}`"),
            Kind::Float(_, t) => format!("floating point `{t}`"),
            Kind::Str(s) => format!("string {:?}", truncate(s, 60)),
            Kind::Seq(_) => "sequence".to_owned(),
            Kind::Map(_) => "mapping".to_owned(),
            Kind::Invalid => "invalid value".to_owned(),
        }
    }

    /// Records a type error and feeds the visitor a placeholder through `placeholder`.
    fn mismatch<'de, V: Visitor<'de>>(
        &self,
        visitor: V,
        placeholder: impl FnOnce(Placeholder, V) -> Result<V::Value, DeError>,
    ) -> Result<V::Value, DeError> {
        let expected: &dyn Expected = &visitor;
        self.record(format!("invalid type: {}, expected {expected}", self.describe()));
        placeholder(Placeholder::default(), visitor).map_err(DeError::silenced)
    }

    /// The scalar's text if the node is a scalar that reads as a string.
    fn text(&self) -> Option<&'a str> {
        match &self.node.kind {
            Kind::Str(s) => Some(s),
            Kind::Bool(_, t) | Kind::Int(_, t) | Kind::Float(_, t) => Some(t),
            _ => None,
        }
    }

    fn visit_seq<'de, V: Visitor<'de>>(&self, items: &'a [Node], visitor: V) -> Result<V::Value, DeError> {
        let mut access = SeqAcc { items: items.iter().enumerate(), path: &self.path, ctx: self.ctx };
        let value = visitor.visit_seq(&mut access)?;
        let left = access.items.filter(|(_, n)| !self.ctx.skips(n)).count();
        if left > 0 {
            self.record(format!("too many elements: {left} more than expected"));
        }
        Ok(value)
    }
}

macro_rules! de_int {
    ($($method:ident => $visit:ident($ty:ty),)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.run(move |d| match &d.node.kind {
                Kind::Int(i, _) => match <$ty>::try_from(*i) {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => {
                        d.record(format!("value {i} out of range for {}", stringify!($ty)));
                        visitor.$visit(0).map_err(DeError::silenced)
                    }
                },
                _ => d.mismatch(visitor, |p, v| p.$method(v)),
            })
        }
    )*};
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b, _) => visitor.visit_bool(*b),
            Kind::Int(i, _) => match u64::try_from(*i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(*i),
            },
            Kind::Float(f, _) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => d.visit_seq(items, visitor),
            Kind::Map(entries) => MapAcc::new(entries, &d.path, d.ctx).visit(visitor),
            Kind::Invalid => Err(DeError::silent()),
        })
    }

    de_int! {
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Bool(b, _) => visitor.visit_bool(*b),
            _ => d.mismatch(visitor, |p, v| p.deserialize_bool(v)),
        })
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Float(f, _) => visitor.visit_f64(*f),
            #[allow(clippy::cast_precision_loss)]
            Kind::Int(i, _) => visitor.visit_f64(*i as f64),
            _ => d.mismatch(visitor, |p, v| p.deserialize_f64(v)),
        })
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| {
            let mut chars = d.text().unwrap_or("").chars();
            match (chars.next(), chars.next(), d.text()) {
                (Some(c), None, Some(_)) => visitor.visit_char(c),
                _ => d.mismatch(visitor, |p, v| p.deserialize_char(v)),
            }
        })
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match d.text() {
            Some(s) => visitor.visit_str(s),
            None => d.mismatch(visitor, |p, v| p.deserialize_str(v)),
        })
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(d.again()),
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Null => visitor.visit_unit(),
            _ => d.mismatch(visitor, |p, v| p.deserialize_unit(v)),
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| visitor.visit_newtype_struct(d.again()))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Seq(items) => d.visit_seq(items, visitor),
            _ => d.mismatch(visitor, |p, v| p.deserialize_seq(v)),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Seq(items) => d.visit_seq(items, visitor),
            _ => d.mismatch(visitor, |p, v| p.deserialize_tuple(len, v)),
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Map(entries) => MapAcc::new(entries, &d.path, d.ctx).visit(visitor),
            _ => d.mismatch(visitor, |p, v| p.deserialize_map(v)),
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.run(move |d| {
            let Kind::Map(entries) = &d.node.kind else {
                return d.mismatch(visitor, |p, v| p.deserialize_struct(name, fields, v));
            };
            let mut known = Vec::with_capacity(entries.len());
            let mut skipped: Vec<&str> = Vec::new();
            let mut covered: Vec<&'static str> = Vec::new();
            for entry in entries {
                if fields.contains(&entry.key.as_str()) {
                    if d.ctx.skips(&entry.value) {
                        d.ctx.degrade();
                        skipped.push(&entry.key);
                    } else {
                        known.push(entry);
                    }
                    continue;
                }
                // Reported but, unlike other errors, not degrading: the struct's value does not
                // depend on a key it does not know.
                let path = key_path(&d.path, &entry.key);
                let message = unknown_message("field", &entry.key, fields);
                d.ctx.recorded.borrow_mut().push(ConfigError::new(d.ctx.file, entry.key_line, &path, message));
                // A typo of a field that is absent: hand that field a placeholder so that the
                // struct does not also complain it is missing.
                if let Some(meant) = did_you_mean(&entry.key, fields) {
                    if !covered.contains(&meant) && !entries.iter().any(|e| e.key == meant) {
                        covered.push(meant);
                    }
                }
            }
            let access = StructAcc {
                known: known.into_iter(),
                covered: covered.into_iter(),
                pending: Pending::Nothing,
                path: &d.path,
                ctx: d.ctx,
            };
            visitor.visit_map(access).map_err(|e| match e.kind {
                ErrKind::Missing(field) if e.at.is_none() && skipped.contains(&field) => DeError::silent(),
                _ => e,
            })
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.run(move |d| match &d.node.kind {
            Kind::Map(entries) if entries.len() == 1 => match entries.first() {
                Some(entry) if d.ctx.skips(&entry.value) => {
                    d.ctx.degrade();
                    Err(DeError::silent())
                }
                Some(entry) => {
                    visitor.visit_enum(MapVariant { entry, path: key_path(&d.path, &entry.key), ctx: d.ctx })
                }
                None => Err(DeError::silent()),
            },
            Kind::Null | Kind::Seq(_) | Kind::Map(_) | Kind::Invalid => {
                d.mismatch(visitor, |p, v| p.deserialize_enum(name, variants, v))
            }
            _ => visitor.visit_enum(NameVariant { de: d }),
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Sequence elements, skipping those found bad by an earlier pass.
struct SeqAcc<'p> {
    items: std::iter::Enumerate<std::slice::Iter<'p, Node>>,
    path: &'p str,
    ctx: &'p Ctx<'p>,
}

impl<'de> SeqAccess<'de> for SeqAcc<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        for (i, node) in self.items.by_ref() {
            if self.ctx.skips(node) {
                self.ctx.degrade();
                continue;
            }
            return child(seed, node, index_path(self.path, i), self.ctx).map(Some);
        }
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// Entries of a map (`BTreeMap`, `HashMap`, `serde_json::Value`…), skipping bad ones.
struct MapAcc<'p> {
    entries: std::slice::Iter<'p, Entry>,
    pending: Option<&'p Entry>,
    /// Keys of entries left out: the visitor may then say they are missing.
    skipped: Vec<&'p str>,
    path: &'p str,
    ctx: &'p Ctx<'p>,
}

impl<'p> MapAcc<'p> {
    fn new(entries: &'p [Entry], path: &'p str, ctx: &'p Ctx<'p>) -> Self {
        MapAcc { entries: entries.iter(), pending: None, skipped: Vec::new(), path, ctx }
    }

    /// Visits the map; a "missing field" error about an entry left out is a follow-up error.
    fn visit<'de, V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(&mut self).map_err(|e| match e.kind {
            ErrKind::Missing(field) if e.at.is_none() && self.skipped.contains(&field) => DeError::silent(),
            _ => e,
        })
    }
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for entry in self.entries.by_ref() {
            if self.ctx.skips(&entry.value) {
                self.ctx.degrade();
                self.skipped.push(&entry.key);
                continue;
            }
            self.pending = Some(entry);
            return seed.deserialize(KeyDe { key: &entry.key }).map(Some).map_err(|e| {
                // A bad key is placed at its line and poisons its entry.
                let path = key_path(self.path, &entry.key);
                DeError { at: Some(At { node: entry.value.id, line: entry.key_line, path }), ..e }
            });
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.pending.take() {
            Some(entry) => child(seed, &entry.value, key_path(self.path, &entry.key), self.ctx),
            None => Err(de::Error::custom("a map value was requested before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

enum Pending<'p> {
    Nothing,
    Entry(&'p Entry),
    Placeholder,
}

/// A struct's known fields, then placeholders for absent fields a typo'd key seems to mean.
struct StructAcc<'p> {
    known: std::vec::IntoIter<&'p Entry>,
    covered: std::vec::IntoIter<&'static str>,
    pending: Pending<'p>,
    path: &'p str,
    ctx: &'p Ctx<'p>,
}

impl<'de> MapAccess<'de> for StructAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        if let Some(entry) = self.known.next() {
            self.pending = Pending::Entry(entry);
            return seed.deserialize(KeyDe { key: &entry.key }).map(Some);
        }
        if let Some(field) = self.covered.next() {
            self.pending = Pending::Placeholder;
            return seed.deserialize(KeyDe { key: field }).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Entry(entry) => child(seed, &entry.value, key_path(self.path, &entry.key), self.ctx),
            Pending::Placeholder => {
                self.ctx.degrade();
                seed.deserialize(Placeholder::default()).map_err(DeError::silenced)
            }
            Pending::Nothing => Err(de::Error::custom("a struct field value was requested before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.known.len() + self.covered.len())
    }
}

/// An enum written as a scalar: a unit variant by name.
struct NameVariant<'d, 'a> {
    de: &'d De<'a>,
}

impl<'de, 'd, 'a> EnumAccess<'de> for NameVariant<'d, 'a> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        let name = self.de.text().unwrap_or("");
        Ok((seed.deserialize(KeyDe { key: name })?, self))
    }
}

impl<'de> VariantAccess<'de> for NameVariant<'_, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        self.needs_value();
        seed.deserialize(Placeholder::default()).map_err(DeError::silenced)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.needs_value();
        Placeholder::default().deserialize_tuple(len, visitor).map_err(DeError::silenced)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        self.needs_value();
        Placeholder::default().deserialize_struct("", fields, visitor).map_err(DeError::silenced)
    }
}

impl NameVariant<'_, '_> {
    fn needs_value(&self) {
        let name = self.de.text().unwrap_or("");
        self.de.record(format!("variant `{name}` needs a value: write it as `{name}: …`"));
    }
}

/// An enum written as a single-key mapping `variant: value`.
struct MapVariant<'p> {
    entry: &'p Entry,
    path: String,
    ctx: &'p Ctx<'p>,
}

impl<'de, 'p> EnumAccess<'de> for MapVariant<'p> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        Ok((seed.deserialize(KeyDe { key: &self.entry.key })?, self))
    }
}

impl<'de> VariantAccess<'de> for MapVariant<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        let value = De { node: &self.entry.value, path: self.path, ctx: self.ctx };
        if !matches!(value.node.kind, Kind::Null) {
            value.record(format!("variant `{}` takes no value, found {}", self.entry.key, value.describe()));
        }
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        child(seed, &self.entry.value, self.path, self.ctx)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        De { node: &self.entry.value, path: self.path, ctx: self.ctx }.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        De { node: &self.entry.value, path: self.path, ctx: self.ctx }.deserialize_struct("", fields, visitor)
    }
}

/// A mapping key (or an enum variant name): a string, parsed when a number or bool is wanted.
struct KeyDe<'k> {
    key: &'k str,
}

impl KeyDe<'_> {
    fn invalid(&self, expected: &dyn Expected) -> DeError {
        de::Error::custom(format!("invalid type: key {:?}, expected {expected}", truncate(self.key, 60)))
    }
}

macro_rules! key_parse {
    ($($method:ident => $visit:ident($ty:ty),)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.key.parse::<$ty>() {
                Ok(v) => visitor.$visit(v),
                Err(_) => Err(self.invalid(&visitor)),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.key)
    }

    key_parse! {
        deserialize_bool => visit_bool(bool),
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
        deserialize_f32 => visit_f32(f32),
        deserialize_f64 => visit_f64(f64),
        deserialize_char => visit_char(char),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(de::value::StrDeserializer::<DeError>::new(self.key))
    }

    serde::forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Hands out a placeholder of whatever type is asked for (zero, empty, `None`, first variant…),
/// so that a visitor whose value has an error already recorded can finish.
#[derive(Default)]
struct Placeholder {
    depth: usize,
}

impl Placeholder {
    fn deeper(&self) -> Result<Placeholder, DeError> {
        // Recursive types without an empty case (`struct A(Box<A>)`) would recurse forever.
        if self.depth >= 16 {
            return Err(DeError::silent());
        }
        Ok(Placeholder { depth: self.depth + 1 })
    }
}

macro_rules! placeholder {
    ($($method:ident => $visit:ident($value:expr),)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit($value)
        }
    )*};
}

impl<'de> Deserializer<'de> for Placeholder {
    type Error = DeError;

    placeholder! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i128(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u128(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char(' '),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_identifier => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self.deeper()?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(PlaceholderSeq { left: 0, inner: self.deeper()? })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(PlaceholderSeq { left: len, inner: self.deeper()? })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(PlaceholderMap { fields: [].iter(), inner: self.deeper()? })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_map(PlaceholderMap { fields: fields.iter(), inner: self.deeper()? })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let variant = variants.first().copied().ok_or_else(DeError::silent)?;
        visitor.visit_enum(PlaceholderEnum { variant, inner: self.deeper()? })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct PlaceholderSeq {
    left: usize,
    inner: Placeholder,
}

impl<'de> SeqAccess<'de> for PlaceholderSeq {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(Placeholder { depth: self.inner.depth }).map(Some)
    }
}

struct PlaceholderMap {
    fields: std::slice::Iter<'static, &'static str>,
    inner: Placeholder,
}

impl<'de> MapAccess<'de> for PlaceholderMap {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.fields.next() {
            Some(field) => seed.deserialize(KeyDe { key: field }).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        seed.deserialize(Placeholder { depth: self.inner.depth })
    }
}

struct PlaceholderEnum {
    variant: &'static str,
    inner: Placeholder,
}

impl<'de> EnumAccess<'de> for PlaceholderEnum {
    type Error = DeError;
    type Variant = Placeholder;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Placeholder), DeError> {
        Ok((seed.deserialize(KeyDe { key: self.variant })?, self.inner))
    }
}

impl<'de> VariantAccess<'de> for Placeholder {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
