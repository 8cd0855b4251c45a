//! The query decoders (`query::decode`, `percent_decode`, `decode_lenient`, `decode_prefix`) and
//! `query::values`: no panic, and the decoders agree with each other and with a naive reference.
//!
//! Input: the first line is the parameter name asked for, the rest the raw query string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::first_line;
use portcullis_rules::query::{decode, decode_lenient, decode_prefix, hex_val, percent_decode, values, BadEscape};

/// The naive reference: `%XX` is a byte, `+` a space (when `plus`), anything else itself; `None`
/// at the first `%` not followed by two hex digits.
fn reference(raw: &[u8], plus: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hi = hex_val(*raw.get(i + 1)?)?;
                let lo = hex_val(*raw.get(i + 2)?)?;
                out.push(hi * 16 + lo);
                i += 3;
            }
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
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let (name, query) = first_line(data);

    for raw in [name, query] {
        let strict = decode(raw);
        let want = reference(raw, true);
        assert_eq!(strict.as_deref().ok().map(<[u8]>::to_vec), want, "decode vs reference");
        let (prefix, broken) = decode_prefix(raw);
        assert_eq!(broken, strict.is_err());
        match &strict {
            Ok(d) => {
                assert_eq!(&prefix[..], &d[..]);
                // Lenient decoding equals strict decoding when every escape is valid.
                assert_eq!(decode_lenient(raw).unwrap_or_else(|| raw.to_vec()), d.to_vec());
            }
            Err(BadEscape) => {
                let lenient = decode_lenient(raw).expect("a bad escape means there was a '%'");
                assert!(lenient.starts_with(&prefix), "lenient does not extend the decoded prefix");
            }
        }
        let p = percent_decode(raw);
        assert_eq!(p.as_deref().ok().map(<[u8]>::to_vec), reference(raw, false), "percent_decode vs reference");
        if !raw.contains(&b'+') {
            assert_eq!(p.as_deref().ok(), strict.as_deref().ok());
        }
    }

    let (Ok(name), Ok(query)) = (std::str::from_utf8(name), std::str::from_utf8(query)) else { return };
    // `values` against a naive split: every pair whose decoded name is `name`, in order; an error
    // exactly when a pair's name does not decode, or a matching pair's value does not.
    let mut want: Result<Vec<Vec<u8>>, BadEscape> = Ok(Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match reference(k.as_bytes(), true) {
            None => {
                want = Err(BadEscape);
                break;
            }
            Some(k) if k == name.as_bytes() => match reference(v.as_bytes(), true) {
                Some(v) => want.as_mut().map(|w| w.push(v)).unwrap_or(()),
                None => {
                    want = Err(BadEscape);
                    break;
                }
            },
            Some(_) => {}
        }
    }
    let got = values(query, name).map(|v| v.into_iter().map(|c| c.into_owned()).collect::<Vec<_>>());
    assert_eq!(got, want, "values({query:?}, {name:?})");
});
