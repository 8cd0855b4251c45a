//! The PII scanner, streamed against its whole-body oracle: for any body and any chunking,
//! `PiiPolicy::scan_chunked` gives exactly the scan and the output of `PiiPolicy::scan_whole`
//! (the same comparison as the unit property test in rules/src/pii/tests.rs), matches never
//! overlap and lie in the scanned part, and the event summary never carries a matched value.
//!
//! Input: the first line holds numbers: the policy (index, modulo the list below) then the cut
//! positions; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{first_line, numbers};
use portcullis_rules::pii::{Kind, PiiPolicy};
use portcullis_rules::rulefile::{compile, Snapshot, SourceFile};
use std::sync::OnceLock;

/// The table tests' policy, then one rule body (the keys after `id: r`) per line below: every
/// detector and action, exclusions by JSON key, monitor mode, custom regexes, both over-cap modes.
const TABLE_POLICY: &str = include_str!("../../rules/testdata/pii/policy.yaml");
const RULES: &[&str] = &[
    "    detectors: {iban: redact, card: block, tckn: redact, vkn: monitor, ssn: redact, email: redact, phone: redact}\n    mask: token\n",
    "    detectors: {tckn: redact, card: redact}\n    exclude: {json_keys: [tckn, order_id]}\n",
    "    mode: monitor\n    detectors: {iban: block, card: block, tckn: block, email: block, phone: block}\n",
    "    detectors: {email: redact, phone: redact}\n    custom:\n      - {name: digits, regex: '[0-9]{4,9}', action: redact}\n      - {name: word, regex: '(?i)\\bm[a-z]{2,20}', validator: none, action: monitor}\n",
    "    detectors: {tckn: redact, iban: redact}\n    max_body_bytes: 300\n    over_cap: scan_prefix\n",
    "    detectors: {tckn: redact, card: redact}\n    max_body_bytes: 200\n",
];

fn snapshots() -> &'static [Snapshot] {
    static S: OnceLock<Vec<Snapshot>> = OnceLock::new();
    S.get_or_init(|| {
        std::iter::once(TABLE_POLICY.to_owned())
            .chain(RULES.iter().map(|r| format!("version: 1\npii:\n  - id: r\n{r}")))
            .map(|text| match compile(&[SourceFile::new("pii.yaml", text)]) {
                Ok(s) => s,
                Err(e) => panic!("fixture policy does not compile: {e:?}"),
            })
            .collect()
    })
}

fn policy(i: usize) -> &'static PiiPolicy {
    let snaps = snapshots();
    &snaps[i % snaps.len()].pii.policies()[0]
}

fuzz_target!(|data: &[u8]| {
    let (line, body) = first_line(data);
    let mut nums = numbers(line);
    let which = if nums.is_empty() { 0 } else { nums.remove(0) };
    let mut cuts = nums;
    cuts.sort_unstable();
    let p = policy(which);

    let (ws, wo) = p.scan_whole(body);
    let (ss, so, _) = p.scan_chunked(body, &cuts);
    assert_eq!(ss, ws, "scan differs for cuts {cuts:?}");
    assert!(so == wo, "output differs for cuts {cuts:?}");
    for w in ws.matches.windows(2) {
        assert!(w[0].end <= w[1].start, "overlapping matches");
    }
    assert!(ws.matches.iter().all(|m| m.start < m.end && m.end <= ws.scanned), "match outside the scanned part");
    if body.len() < 512 {
        let every: Vec<usize> = (1..body.len()).collect();
        let (bs, bo, _) = p.scan_chunked(body, &every);
        assert_eq!(bs, ws, "byte-at-a-time scan differs");
        assert!(bo == wo, "byte-at-a-time output differs");
    }
    // Whatever the body, the summary never carries a matched value.
    if let Some(s) = p.summary(&ws) {
        let text = serde_json::Value::Object(s.finding.detail).to_string();
        // (Custom detectors are left out: the fixture's `word` detector matches JSON key names
        // such as `matches`, which the summary holds as keys, not as values.)
        for m in ws.matches.iter().filter(|m| !matches!(m.kind, Kind::Custom(_))) {
            let value = &body[m.start..m.end];
            if value.iter().filter(|b| b.is_ascii_alphanumeric()).count() > 4 {
                let v = String::from_utf8_lossy(value);
                assert!(!text.contains(v.as_ref()), "{v} in the summary {text}");
            }
        }
        if let Some(sample) = &ws.sample {
            assert!(sample.masked.bytes().filter(u8::is_ascii_alphanumeric).count() <= 4, "sample shows more than 4");
        }
    }
});
