use super::*;

#[test]
fn find2_finds_the_first_of_either() {
    let mut s = vec![b'x'; 200];
    for at in [0usize, 1, 7, 8, 9, 63, 64, 65, 150, 199] {
        s[at] = b'"';
        assert_eq!(find2(&s, b'"', b'\\'), Some(at), "{at}");
        s[at] = b'\\';
        assert_eq!(find2(&s, b'"', b'\\'), Some(at), "{at}");
        if at + 1 < s.len() {
            s[at + 1] = b'"';
            assert_eq!(find2(&s, b'"', b'\\'), Some(at));
            s[at + 1] = b'x';
        }
        s[at] = b'x';
    }
    assert_eq!(find2(&s, b'"', b'\\'), None);
    // Bytes just around the searched values, and non-ASCII.
    let t: Vec<u8> = (0..=255u8).filter(|&b| b != b'"' && b != b'\\').collect();
    assert_eq!(find2(&t, b'"', b'\\'), None);
}

/// The tracker's rules written plainly, one byte at a time: the state before each byte.
fn reference(body: &[u8], keys: &[&str]) -> Vec<(bool, bool)> {
    let (mut json, mut known) = (false, false);
    let (mut in_str, mut esc, mut last, mut key, mut capturing) = (false, false, 0u8, Vec::new(), false);
    let (mut after_key, mut pending, mut skip, mut depth) = (false, false, Skip::None, 0u32);
    let mut out = Vec::new();
    for &b in body {
        out.push((json && in_str, json && (pending || skip != Skip::None)));
        if !known {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0xEF | 0xBB | 0xBF) {
                continue;
            }
            known = true;
            json = matches!(b, b'{' | b'[');
        }
        if !json {
            continue;
        }
        if in_str {
            if esc || b == b'\\' {
                esc = !esc;
                key.push(b);
            } else if b == b'"' {
                in_str = false;
                last = b'"';
                if skip == Skip::Str {
                    skip = Skip::None;
                } else if capturing {
                    after_key = keys.iter().any(|k| k.as_bytes() == key.as_slice());
                }
            } else {
                key.push(b);
            }
            continue;
        }
        if is_ws(b) {
            if skip == Skip::Scalar {
                skip = Skip::None;
            }
            continue;
        }
        let was_key = std::mem::replace(&mut after_key, false);
        let prev = std::mem::replace(&mut last, b);
        match b {
            b'"' => {
                in_str = true;
                key.clear();
                capturing = skip == Skip::None && matches!(prev, b'{' | b',');
                if pending {
                    pending = false;
                    skip = Skip::Str;
                }
            }
            b'{' | b'[' => {
                if pending {
                    pending = false;
                    skip = Skip::Container;
                    depth = 0;
                }
                if skip == Skip::Container {
                    depth += 1;
                }
            }
            b'}' | b']' => match skip {
                Skip::Container => {
                    depth -= 1;
                    if depth == 0 {
                        skip = Skip::None;
                    }
                }
                Skip::Scalar => skip = Skip::None,
                _ => pending = false,
            },
            b':' => pending = was_key && skip == Skip::None,
            b',' => match skip {
                Skip::Scalar => skip = Skip::None,
                Skip::None => pending = false,
                _ => {}
            },
            _ => {
                if pending {
                    pending = false;
                    skip = Skip::Scalar;
                }
            }
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

    /// The word-at-a-time paths agree with the plain rules at every byte, in any chunking.
    #[test]
    fn fast_paths_agree_with_the_plain_rules(
        parts in proptest::collection::vec(proptest::sample::select(&[
            "{", "}", "[", "]", ":", ",", "\"", "\\", "\\\"", " ", "\n", "\"k\"", "\"key\"", "\"kk\"",
            "\"k\":", "\"key\": ", "\"key\":{", "12", "true", "abcdefgh", "é", "0123456789abcdef",
        ][..]), 0..80),
        step in 1usize..40,
    ) {
        let body = parts.concat().into_bytes();
        let want = reference(&body, &["k", "key"]);
        let keys = JsonKeys::new(["k", "key"].iter().map(|k| Box::from(k.as_bytes())).collect());
        let mut t = JsonTracker::new(true);
        // Advance in steps of `step`, checking the state at each stop.
        let mut p = 0;
        while p < body.len() {
            t.advance(&body, 0, p, &keys);
            proptest::prop_assert_eq!((t.in_string(), t.skipping()), want[p], "at {}", p);
            p += step;
        }
    }
}

fn states(body: &[u8], keys: &[&str]) -> Vec<(bool, bool)> {
    let keys = JsonKeys::new(keys.iter().map(|k| Box::from(k.as_bytes())).collect());
    let mut t = JsonTracker::new(true);
    (0..body.len())
        .map(|p| {
            t.advance(body, 0, p, &keys);
            (t.in_string(), t.skipping())
        })
        .collect()
}

#[test]
fn strings_keys_and_skipped_values() {
    let body = br#"{"a":"x\"y","k":{"b":[1,"}"]},"c":7,"k":12 ,"d":"k"}"#;
    let s = states(body, &["k"]);
    assert_eq!(s, reference(body, &["k"]));
    let text = std::str::from_utf8(body).unwrap();
    let skipped: String = text.char_indices().map(|(i, c)| if s[i].1 { c } else { '.' }).collect::<String>();
    assert_eq!(skipped, r#"................{"b":[1,"}"]}...........12 ........."#);
    let in_str: String = text.char_indices().map(|(i, c)| if s[i].0 { c } else { '.' }).collect();
    // The state before each byte: a closing quote is still inside its string.
    assert_eq!(in_str, r#"..a"..x\"y"..k"...b".....}"....c"....k"......d"..k"."#);
}
