//! The query decoders (`query::decode`, `percent_decode`, `decode_lenient`, `decode_prefix`), the
//! name folding (`query::fold_name`, `name_matches`, `lookup`, `fold_names`) and
//! `overrides::query_overrides_method`: no panic, the decoders agree with each other and with a
//! naive reference, and the folding agrees with a naive reference written from its documentation
//! (docs/rules.md, "Sources", `query`).
//!
//! Input: the first line is the (decoded) parameter name asked for, the rest the raw query string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::first_line;
use portcullis_rules::overrides::query_overrides_method;
use portcullis_rules::query::{
    decode, decode_lenient, decode_prefix, fold_name, fold_names, hex_val, lookup, name_matches, percent_decode,
    BadEscape, NameMatch, Unreadable,
};

/// The naive reference: `%XX` is a byte, `+` a space (when `plus`), anything else itself;
/// `Err(what was decoded before it)` at the first `%` not followed by two hex digits.
fn reference(raw: &[u8], plus: bool) -> Result<Vec<u8>, Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => match (raw.get(i + 1).and_then(|&c| hex_val(c)), raw.get(i + 2).and_then(|&c| hex_val(c))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 3;
                }
                _ => return Err(out),
            },
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The lenient reference: an invalid escape is a literal `%`.
fn reference_lenient(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1).and_then(|&c| hex_val(c)), raw.get(i + 2).and_then(|&c| hex_val(c))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (b, ..) => out.push(b),
        }
        i += 1;
    }
    out
}

/// The folding as docs/rules.md states it: cut at a NUL byte, leading spaces dropped, ASCII case
/// ignored and `ı`, `ſ`, the Kelvin sign read as `i`, `s`, `k` (the only characters whose simple
/// upper or lower case is ASCII), `.`, space and `[` read as `_`. Bytes that are not UTF-8 are
/// U+FFFD.
fn reference_fold(decoded: &[u8]) -> Vec<u8> {
    let cut = decoded.iter().position(|&b| b == 0).map_or(decoded, |i| &decoded[..i]);
    let text = String::from_utf8_lossy(cut);
    let mut out = String::new();
    for c in text.trim_start_matches(' ').chars() {
        out.push(match c {
            '.' | ' ' | '[' => '_',
            '\u{131}' => 'i',
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        });
    }
    out.into_bytes()
}

/// `name_matches` by its documentation: the same name folded, or the part before the first `[`
/// folded (array or map syntax).
fn reference_match(decoded: &[u8], want: &[u8]) -> NameMatch {
    if reference_fold(decoded) == want {
        NameMatch::Same
    } else if decoded.iter().position(|&b| b == b'[').is_some_and(|i| reference_fold(&decoded[..i]) == want) {
        NameMatch::Nested
    } else {
        NameMatch::Other
    }
}

/// `lookup` by its documentation: pieces split at `&`, and a piece holding `;` counted whole and
/// split at `;`; a piece's name up to a broken escape that could begin `want` fails closed, as do
/// array syntax on it and a broken escape in the value of a piece that is it.
fn reference_lookup(query: &str, want: &[u8]) -> Result<Vec<Vec<u8>>, Unreadable> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        let mut pieces = vec![pair];
        if pair.contains(';') {
            pieces.extend(pair.split(';'));
        }
        for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            match reference(name.as_bytes(), true) {
                Err(prefix) if want.starts_with(&reference_fold(&prefix)) => return Err(Unreadable),
                Err(_) => {}
                Ok(decoded) => match reference_match(&decoded, want) {
                    NameMatch::Other => {}
                    NameMatch::Nested => return Err(Unreadable),
                    NameMatch::Same => out.push(reference(value.as_bytes(), true).map_err(|_| Unreadable)?),
                },
            }
        }
    }
    Ok(out)
}

/// Whether `part` occurs in `whole` in order (not necessarily next to each other).
fn is_subsequence(part: &[Vec<u8>], whole: &[Vec<u8>]) -> bool {
    let mut it = whole.iter();
    part.iter().all(|p| it.any(|w| w == p))
}

fuzz_target!(|data: &[u8]| {
    let (name, query) = first_line(data);

    for raw in [name, query] {
        let strict = decode(raw);
        let want = reference(raw, true);
        assert_eq!(strict.as_deref().ok().map(<[u8]>::to_vec), want.clone().ok(), "decode vs reference");
        let (prefix, broken) = decode_prefix(raw);
        assert_eq!(broken, strict.is_err());
        assert_eq!(prefix, want.unwrap_or_else(|p| p), "decode_prefix vs reference");
        match &strict {
            Ok(d) => {
                // Lenient decoding equals strict decoding when every escape is valid.
                assert_eq!(decode_lenient(raw).unwrap_or_else(|| raw.to_vec()), d.to_vec());
            }
            Err(BadEscape) => {
                let lenient = decode_lenient(raw).expect("a bad escape means there was a '%'");
                assert!(lenient.starts_with(&prefix), "lenient does not extend the decoded prefix");
            }
        }
        assert_eq!(decode_lenient(raw).unwrap_or_else(|| raw.to_vec()), reference_lenient(raw), "decode_lenient");
        let p = percent_decode(raw);
        assert_eq!(p.as_deref().ok().map(<[u8]>::to_vec), reference(raw, false).ok(), "percent_decode vs reference");
        if !raw.contains(&b'+') {
            assert_eq!(p.as_deref().ok(), strict.as_deref().ok());
        }

        // Folding a name: the documented folding; idempotent; never an ASCII uppercase letter,
        // `.`, space, `[` or NUL; always UTF-8.
        let folded = fold_name(raw);
        assert_eq!(folded, reference_fold(raw), "fold_name({raw:?}) vs reference");
        assert_eq!(fold_name(&folded), folded, "fold_name not idempotent on {raw:?}");
        assert!(!folded.iter().any(|b| b.is_ascii_uppercase() || b".[ \0".contains(b)), "{folded:?}");
        assert!(std::str::from_utf8(&folded).is_ok(), "fold_name({raw:?}) is not UTF-8");
        assert_eq!(name_matches(raw, &folded), NameMatch::Same);
    }

    let want = fold_name(name);
    let Ok(query) = std::str::from_utf8(query) else { return };

    // `name_matches` by its definition, against every name the query holds (so that `Nested`
    // and `Other` are reached, not only `Same`).
    for piece in query.split(['&', ';']).take(16) {
        let k = piece.split_once('=').map_or(piece, |(k, _)| k);
        let k = decode_prefix(k.as_bytes()).0;
        assert_eq!(name_matches(&k, &want), reference_match(&k, &want), "name_matches({k:?}, {want:?})");
        let other = fold_name(&k);
        assert_eq!(name_matches(name, &other), reference_match(name, &other), "name_matches({name:?}, {other:?})");
    }

    // `lookup` against the documented reference.
    let got = lookup(query, &want).map(|v| v.into_iter().map(|c| c.into_owned()).collect::<Vec<_>>());
    assert_eq!(got, reference_lookup(query, &want), "lookup({query:?}, {want:?})");

    // Folding only adds spellings: every value a naive exact-name parse (split at `&`, names
    // decoded and compared as they are) reads is among lookup's, in order; and a value the naive
    // parse cannot decode makes lookup fail too.
    let mut exact = Ok(Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if reference(k.as_bytes(), true).as_deref() == Ok(name) {
            match reference(v.as_bytes(), true) {
                Ok(v) => exact.iter_mut().for_each(|e: &mut Vec<Vec<u8>>| e.push(v.clone())),
                Err(_) => exact = Err(()),
            }
        }
    }
    match (&exact, &got) {
        (Ok(e), Ok(g)) => assert!(is_subsequence(e, g), "lookup lost a value: {e:?} not in {g:?}"),
        (Ok(_), Err(Unreadable)) => {}
        (Err(()), Ok(g)) => panic!("lookup read {g:?} where a value of {name:?} does not decode"),
        (Err(()), Err(Unreadable)) => {}
    }

    // `fold_names`: every `&`-separated name decoded (leniently) and folded, every value decoded
    // leniently; `None` exactly when that is the raw query.
    let mut folded = Vec::new();
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            folded.push(b'&');
        }
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        folded.extend(reference_fold(&reference_lenient(k.as_bytes())));
        if let Some(v) = v {
            folded.push(b'=');
            folded.extend(reference_lenient(v.as_bytes()));
        }
    }
    let expected = (folded != query.as_bytes()).then_some(folded);
    assert_eq!(fold_names(query), expected, "fold_names({query:?})");

    // The `_method` check's cheap pre-filter never changes the answer: it is exactly "some piece
    // is `_method` in some spelling, or cannot be read".
    let method = lookup(query, b"_method").map_or(true, |v| !v.is_empty());
    assert_eq!(query_overrides_method(query), method, "query_overrides_method({query:?})");
});
