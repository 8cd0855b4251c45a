use super::*;
use proptest::prelude::*;

proptest! {
    /// The memoised keyword search answers exactly as the plain one, for windows moving
    /// forward by any steps.
    #[test]
    fn keyword_scan_agrees_with_near_keyword(
        parts in prop::collection::vec(prop::sample::select(&[
            "vkn", "VKN", "vergi", "Tax", "syntax", "ssn", "social security", "x", " ", "1234567890", "é", ":",
        ][..]), 0..120),
        steps in prop::collection::vec((0usize..40, 9usize..12), 1..40),
    ) {
        let hay = parts.concat().into_bytes();
        let mut scan = KeywordScan::new(VKN_KEYWORDS);
        let mut start = 0;
        for (gap, len) in steps {
            start += gap;
            let end = start + len;
            prop_assert_eq!(scan.near(&hay, start, end), near_keyword(&hay, start, end, VKN_KEYWORDS), "{}..{}", start, end);
        }
    }
}

/// What `builtins` must find: every anchor looked at, byte by byte (no word-at-a-time search),
/// with a plain digit-run end.
fn builtins_every_anchor(engine: &Engine, hay: &[u8]) -> Vec<Cand> {
    let mut out = Vec::new();
    let mut ctx = Contexts { vkn: KeywordScan::new(VKN_KEYWORDS), ssn: KeywordScan::new(SSN_KEYWORDS) };
    for i in 0..hay.len() {
        let b = hay[i];
        if b == b'@' && engine.interesting[usize::from(b'@')] {
            engine.email(hay, 0, i, &mut out);
        } else if b.is_ascii_digit() && engine.interesting[usize::from(b)] && !before(hay, i, 1).is_ascii_digit() {
            let end = i + hay[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            engine.digit_group(hay, 0, i, end, &mut ctx, &mut out);
        }
    }
    out
}

fn table_snapshot() -> crate::rulefile::Snapshot {
    let text = include_str!("../../../testdata/pii/policy.yaml");
    match crate::rulefile::compile(&[crate::rulefile::SourceFile::new("pii.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The anchor search (eight bytes at a time) and the SWAR digit-run end find exactly the
    /// candidates of a byte-by-byte walk: bodies of words mixing letters and digits
    /// (`3f2a9c01`, `02T03`, `ab12cd34`), escapes, IBAN-like capitals, separators, long digit
    /// runs and valid identifiers.
    #[test]
    fn anchor_skipping_finds_what_every_anchor_finds(
        parts in prop::collection::vec(prop::sample::select(&[
            "3f2a9c01", "02T03", "ab12cd34", "a1", "1a", "_7", "x9y8z7", "TR33", "TR330006100519786457841326",
            "TR33 0006 1005 1978 6457 8413 26", "\\n10000000146", "\\t4111111111111111", "n10000000146",
            "10000000146", "4111 1111 1111 1111", "4111111111111111", "+90 532 123 45 67", "0532 123 45 67",
            "(532) 123 45 67", "123-45-6789", "ssn 123 45 6789", "vkn 4540536920", "4540536920",
            "a@b.co", "x.y@firma.com.tr", "@", "0", "12345678", "123456789012", "2024-01-02T03:04:05Z",
            " ", "-", ".", ",", "\"", ":", "{", "}", "ü", "ş", "é1", "AB12", "Ab1", "_", "9.5",
        ][..]), 0..60),
    ) {
        let snap = table_snapshot();
        let engine = &snap.pii.policies()[0].shared.engine;
        let hay = parts.concat().into_bytes();
        let mut fast = Vec::new();
        engine.builtins(&hay, 0, 0, hay.len(), &mut fast);
        let mut slow = builtins_every_anchor(engine, &hay);
        fast.sort_unstable_by_key(Cand::order);
        slow.sort_unstable_by_key(Cand::order);
        prop_assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&hay));
    }

    /// The SWAR digit-run end agrees with the plain one from every position.
    #[test]
    fn digit_run_end_agrees(hay in prop::collection::vec(prop::sample::select(&[b'0', b'5', b'9', b'/', b':', b'a', b' ', 0x80, 0xB9, 0x39, 0x30, 0x3A, 0x2F, 0x70, 0xF9][..]), 0..40)) {
        for i in 0..=hay.len() {
            let plain = i + hay[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            prop_assert_eq!(digit_run_end(&hay, i), plain);
        }
    }
}
