//! `canon::canonicalize` over any bytes: no panic, and every accepted path comes out canonical,
//! idempotent, and meaning what the input meant (same decoded segments after dot-segment removal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::canon::{canonicalize, MAX_PATH_LEN};
use portcullis_rules::query::percent_decode;
use std::borrow::Cow;

/// What a lenient upstream makes of a path: every segment percent-decoded, `.`/`..` resolved,
/// empty segments merged; `None` when `..` climbs above the root or an escape is invalid.
/// Returns the segments and whether the path ends in a slash.
fn meaning(path: &[u8]) -> Option<(Vec<Vec<u8>>, bool)> {
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut trailing = false;
    for seg in path.get(1..)?.split(|&b| b == b'/') {
        let d = percent_decode(seg).ok()?.into_owned();
        match d.as_slice() {
            b"" | b"." => trailing = true,
            b".." => {
                stack.pop()?;
                trailing = true;
            }
            _ => {
                stack.push(d);
                trailing = false;
            }
        }
    }
    let trailing = trailing && !stack.is_empty();
    Some((stack, trailing))
}

fuzz_target!(|data: &[u8]| {
    let Ok(out) = canonicalize(data) else { return };
    let s: &str = &out;
    let b = s.as_bytes();
    assert!(s.is_ascii(), "non-ASCII output {s:?}");
    assert!(s.starts_with('/'), "does not start with '/': {s:?}");
    assert!(b.len() <= MAX_PATH_LEN);
    assert!(!s.contains("//"), "empty segment in {s:?}");
    assert!(!b.iter().any(|&c| c == b';' || c == b'\\' || c < 0x21 || c == 0x7F), "raw ; \\ or control in {s:?}");
    for seg in s.split('/').skip(1) {
        assert!(seg != "." && seg != "..", "dot segment in {s:?}");
    }
    // Every escape is `%XX` in uppercase hex, never of an unreserved character, `/`, `\` or a
    // control; the decoded path is UTF-8.
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).expect("truncated escape in canonical output");
            assert!(
                hex.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
                "escape not uppercase hex in {s:?}"
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
            assert!(
                !(v.is_ascii_alphanumeric()
                    || matches!(v, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\')
                    || v < 0x20
                    || v == 0x7F),
                "needless or forbidden escape %{:02X} in {s:?}",
                v
            );
            i += 3;
        } else {
            i += 1;
        }
    }
    let decoded = percent_decode(b).expect("canonical output decodes");
    assert!(std::str::from_utf8(&decoded).is_ok(), "decoded output is not UTF-8: {s:?}");
    // Idempotent, and the canonical form is returned borrowed.
    match canonicalize(b) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, s, "not idempotent"),
        Ok(Cow::Owned(again)) => panic!("canonical input {s:?} was copied (to {again:?})"),
        Err(e) => panic!("canonical output {s:?} refused: {e:?}"),
    }
    // Already canonical input is borrowed, not copied.
    if data == b {
        assert!(matches!(out, Cow::Borrowed(_)), "canonical input copied");
    }
    // Same meaning to a lenient decoder as the input.
    let want = meaning(data);
    assert!(want.is_some(), "accepted a path a lenient decoder cannot resolve: {:?}", String::from_utf8_lossy(data));
    assert_eq!(meaning(b), want, "{:?} canonicalised to {s:?} changes its meaning", String::from_utf8_lossy(data));
});
