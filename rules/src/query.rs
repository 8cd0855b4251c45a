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

/// Every decoded value of the parameter `name` (compared with each parameter's decoded name),
/// in order. A parameter without `=` has the empty value. `Err` when a parameter's name cannot be
/// decoded (it might be `name`) or the value of a parameter named `name` cannot.
pub fn values<'q>(query: &'q str, name: &str) -> Result<Vec<Cow<'q, [u8]>>, BadEscape> {
    let mut out = Vec::new();
    for pair in query.as_bytes().split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..).unwrap_or_default()),
            None => (pair, &b""[..]),
        };
        if decode(k)?.as_ref() == name.as_bytes() {
            out.push(decode(v)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(q: &str, n: &str) -> Result<Vec<String>, BadEscape> {
        values(q, n).map(|v| v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
    }

    #[test]
    fn finds_every_occurrence_decoded() {
        assert_eq!(vals("a=1&b=2&a=3", "a").unwrap(), ["1", "3"]);
        assert_eq!(vals("a%5Fb=x+y%21", "a_b").unwrap(), ["x y!"]);
        assert_eq!(vals("a&a=", "a").unwrap(), ["", ""]);
        assert_eq!(vals("&&b=1&", "a").unwrap(), Vec::<String>::new());
        assert_eq!(vals("k=%C5%9F", "k").unwrap(), ["ş"]);
    }

    #[test]
    fn invalid_escapes_fail_closed_only_where_they_matter() {
        assert_eq!(vals("a=%zz", "a"), Err(BadEscape));
        assert_eq!(vals("a=%4", "a"), Err(BadEscape));
        assert_eq!(vals("%zz=1&a=2", "a"), Err(BadEscape));
        // Another parameter's bad value is not our business.
        assert_eq!(vals("b=%zz&a=2", "a").unwrap(), ["2"]);
    }

    #[test]
    fn percent_decode_leaves_plus_alone() {
        assert_eq!(percent_decode(b"a+b%2Fc").unwrap().as_ref(), b"a+b/c");
        assert_eq!(percent_decode(b"%e2%82%ac").unwrap().as_ref(), "€".as_bytes());
        assert_eq!(percent_decode(b"x%2"), Err(BadEscape));
    }

    #[test]
    fn lenient_and_prefix_forms() {
        assert_eq!(decode_lenient(b"a=1&b=2"), None);
        assert_eq!(decode_lenient(b"a%41+%4"), Some(b"aA %4".to_vec()));
        assert_eq!(decode_prefix(b"ab%41c%zzd"), (b"abAc".to_vec(), true));
        assert_eq!(decode_prefix(b"a+b"), (b"a b".to_vec(), false));
    }

    #[test]
    fn decode_borrows_when_clean() {
        assert!(matches!(decode(b"abc"), Ok(Cow::Borrowed(_))));
        assert_eq!(decode(b"%41%62+").unwrap().as_ref(), b"Ab ");
    }
}
