//! Rule regexes: bytes, Unicode off, bounded in pattern length, program size and nesting. Every
//! rule kind that takes a regex compiles it here, so the limits and the one-line error messages
//! are the same everywhere.

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
