//! Query strings as checks read them: parameters by name, percent-decoded, strictly.
//!
//! Strict means an invalid escape (`%zz`, a truncated `%4`) is an error, not a literal `%`: a
//! check that looks for a credential or a tenant id in the query must not guess what an
//! application's more lenient parser will make of it. (The firewall's regex matching is lenient on
//! purpose, [`decode_lenient`]: it matches the raw and the decoded form.) Every form is one
//! decoding loop.

use std::borrow::Cow;

/// An invalid percent escape in a parameter that could be the one asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape;

/// What a decoder does with an invalid escape (`%zz`, a truncated `%4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnBad {
    /// Stop there: the result is what was decoded before it.
    Stop,
    /// Keep the `%` as a literal byte and go on.
    Keep,
}

/// The one percent-decoding loop: `%XX` is a byte, `+` a space when `plus` is set. Returns the
/// decoded bytes and whether an invalid escape was met.
fn decode_core(raw: &[u8], plus: bool, on_bad: OnBad) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(raw.len());
    let mut bad = false;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' if plus => out.push(b' '),
            b'%' => match (raw.get(i + 1).and_then(|&c| hex_val(c)), raw.get(i + 2).and_then(|&c| hex_val(c))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => {
                    bad = true;
                    if on_bad == OnBad::Stop {
                        return (out, true);
                    }
                    out.push(b'%');
                }
            },
            other => out.push(other),
        }
        i += 1;
    }
    (out, bad)
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte.
/// Borrowed when there is nothing to decode.
pub fn decode(raw: &[u8]) -> Result<Cow<'_, [u8]>, BadEscape> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    match decode_core(raw, true, OnBad::Stop) {
        (_, true) => Err(BadEscape),
        (out, false) => Ok(Cow::Owned(out)),
    }
}

/// Decodes `%XX` escapes only (a path segment: `+` is a plus). Borrowed when there is nothing to
/// decode.
pub fn percent_decode(raw: &[u8]) -> Result<Cow<'_, [u8]>, BadEscape> {
    if !raw.contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    match decode_core(raw, false, OnBad::Stop) {
        (_, true) => Err(BadEscape),
        (out, false) => Ok(Cow::Owned(out)),
    }
}

/// Like [`decode`], but lenient: an invalid escape is kept as it is. `None` when there is
/// nothing to decode. (What the firewall's regexes match besides the raw query.)
pub fn decode_lenient(raw: &[u8]) -> Option<Vec<u8>> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return None;
    }
    Some(decode_core(raw, true, OnBad::Keep).0)
}

/// Like [`decode`], up to the first invalid escape: the decoded prefix, and whether one was met.
pub fn decode_prefix(raw: &[u8]) -> (Vec<u8>, bool) {
    decode_core(raw, true, OnBad::Stop)
}

/// The value of a hex digit.
pub fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A query the way applications read it: a parameter could not be read as plain values (a
/// broken escape in a name that could be the one asked for or in its value, or array/map syntax
/// on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// How a parameter's name relates to the name a rule reads (see [`fold_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// No common stack reads it as that parameter.
    Other,
    /// Some common stack reads it as that parameter.
    Same,
    /// Array or map syntax on that parameter (`tenant_id[]`, `tenant_id[0]`, `tenant_id[x]`):
    /// PHP, Rails and qs read an array or a map, not one value.
    Nested,
}

/// A decoded parameter name folded the way lenient stacks fold names, so that every name one of
/// them reads as `tenant_id` folds to `tenant_id` (the union of their rules):
///
/// * cut at the first NUL byte (PHP and other C-string stacks read `tenant_id%00x` as
///   `tenant_id`);
/// * leading spaces dropped (PHP);
/// * case ignored (ASP.NET): ASCII letters lowercased, and a non-ASCII character whose simple
///   upper or lower case is ASCII (`ı`, `ſ`, the Kelvin sign) is that ASCII letter;
/// * `.`, space and `[` are `_` (PHP's variable-name mangling: `tenant.id`, `tenant id`,
///   `tenant+id` once `+` is decoded, and an unclosed `tenant[id`).
///
/// Array syntax (`tenant_id[0]`) is told apart by [`name_matches`].
pub fn fold_name(decoded: &[u8]) -> Vec<u8> {
    let name = decoded.split(|&b| b == 0).next().unwrap_or_default();
    let start = name.iter().position(|&b| b != b' ').unwrap_or(name.len());
    let name = name.get(start..).unwrap_or_default();
    let ascii = |b: u8| match b {
        b'.' | b' ' | b'[' => b'_',
        other => other.to_ascii_lowercase(),
    };
    if name.is_ascii() {
        return name.iter().map(|&b| ascii(b)).collect();
    }
    let mut out = Vec::with_capacity(name.len());
    for c in String::from_utf8_lossy(name).chars() {
        if c.is_ascii() {
            out.push(ascii(u8::try_from(c).unwrap_or(b'_')));
            continue;
        }
        match ascii_case(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// The ASCII letter (lowercase) a character is under simple case mapping, if any: `ı` is `i`, `ſ`
/// is `s`, the Kelvin sign is `k` (the only three; `İ` lowercases to two characters, not `i`).
fn ascii_case(c: char) -> Option<u8> {
    fn one(mut it: impl Iterator<Item = char>) -> Option<u8> {
        match (it.next(), it.next()) {
            (Some(a), None) if a.is_ascii() => u8::try_from(a.to_ascii_lowercase()).ok(),
            _ => None,
        }
    }
    one(c.to_uppercase()).or_else(|| one(c.to_lowercase()))
}

/// Whether the decoded parameter name `decoded` is the parameter whose folded name is `want`
/// (see [`fold_name`]).
pub fn name_matches(decoded: &[u8], want: &[u8]) -> NameMatch {
    if fold_name(decoded) == want {
        return NameMatch::Same;
    }
    match decoded.iter().position(|&b| b == b'[') {
        Some(i) if fold_name(decoded.get(..i).unwrap_or_default()) == want => NameMatch::Nested,
        _ => NameMatch::Other,
    }
}

/// Every value of the parameter whose folded name is `want` ([`fold_name`]), percent-decoded
/// (`+` is a space), in order: what any common stack could read as that parameter. Parameters
/// are separated by `&`, and by `;` as well (Rack 2, older Python): a piece holding a `;` counts
/// whole and split. `Err` when a parameter that could be `want` cannot be read as one value: a
/// broken escape in its name (before it, the name could still become `want`) or in its value,
/// or array/map syntax on it.
pub fn lookup<'q>(query: &'q str, want: &[u8]) -> Result<Vec<Cow<'q, [u8]>>, Unreadable> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        lookup_piece(pair, want, &mut out)?;
        if pair.contains(';') {
            for piece in pair.split(';') {
                lookup_piece(piece, want, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn lookup_piece<'q>(piece: &'q str, want: &[u8], out: &mut Vec<Cow<'q, [u8]>>) -> Result<(), Unreadable> {
    if piece.is_empty() {
        return Ok(());
    }
    let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
    let (decoded, broken) = decode_prefix(name.as_bytes());
    if broken {
        // A lenient decoder could make anything of the rest: fail closed if the part before the
        // broken escape could begin the name.
        return if want.starts_with(&fold_name(&decoded)) { Err(Unreadable) } else { Ok(()) };
    }
    match name_matches(&decoded, want) {
        NameMatch::Other => Ok(()),
        NameMatch::Nested => Err(Unreadable),
        NameMatch::Same => {
            out.push(decode(value.as_bytes()).map_err(|_| Unreadable)?);
            Ok(())
        }
    }
}

/// The query with every parameter name decoded and folded ([`fold_name`]) and every value
/// decoded leniently (`&` and `=` kept as they were): a third form for the firewall's regexes,
/// so that a rule written for `debug=1` also sees `DEBUG=1`, `de.bug=1` or `debug%00x=1`.
/// `None` when it equals the raw query.
pub fn fold_names(raw: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, pair) in raw.as_bytes().split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i).unwrap_or_default(), Some(pair.get(i + 1..).unwrap_or_default())),
            None => (pair, None),
        };
        out.extend(fold_name(&decode_core(name, true, OnBad::Keep).0));
        if let Some(v) = value {
            out.push(b'=');
            out.extend(decode_core(v, true, OnBad::Keep).0);
        }
    }
    (out != raw.as_bytes()).then_some(out)
}

#[cfg(test)]
mod tests;
