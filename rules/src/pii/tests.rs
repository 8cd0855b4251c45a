#![allow(clippy::indexing_slicing)]

use super::*;
use crate::rulefile::{compile, compile_with, Env, Snapshot, SourceFile};
use proptest::prelude::*;

fn snap_of(text: &str) -> Snapshot {
    match compile(&[SourceFile::new("pii.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    }
}

/// A snapshot with one rule made of `body` (the keys after `id: r`, indented by 4).
fn one(body: &str) -> Snapshot {
    snap_of(&format!("version: 1\npii:\n  - id: r\n{body}"))
}

fn errors(rules: &str) -> Vec<String> {
    compile(&[SourceFile::new("pii.yaml", format!("version: 1\npii:\n{rules}"))])
        .unwrap_err()
        .iter()
        .map(|e| format!("{} {}: {}", e.line, e.path, e.message))
        .collect()
}

fn policy(s: &Snapshot) -> &PiiPolicy {
    &s.pii.policies()[0]
}

const TABLE_POLICY: &str = include_str!("../../testdata/pii/policy.yaml");

/// Kind names and spans of a scan, as text, for readable failures.
fn found(p: &PiiPolicy, body: &[u8], scan: &Scan) -> Vec<String> {
    scan.matches
        .iter()
        .map(|m| format!("{}:{}", p.kind_name(m.kind), String::from_utf8_lossy(&body[m.start..m.end])))
        .collect()
}

/// Whole-body scan and redaction (the oracle, shared with the `pii_stream` fuzz target).
fn whole(p: &PiiPolicy, body: &[u8]) -> (Scan, Vec<u8>) {
    p.scan_whole(body)
}

/// Streams `body` cut at `cuts` (sorted positions); returns the scan, the output, and whether
/// a push refused the rest.
fn streamed(p: &PiiPolicy, body: &[u8], cuts: &[usize]) -> (Scan, Vec<u8>, bool) {
    p.scan_chunked(body, cuts)
}

fn assert_stream_eq(p: &PiiPolicy, body: &[u8], cuts: &[usize]) {
    let (ws, wo) = whole(p, body);
    let (ss, so, _) = streamed(p, body, cuts);
    assert_eq!(ss, ws, "scan differs for cuts {cuts:?} of {:?}", String::from_utf8_lossy(body));
    assert!(so == wo, "output differs for cuts {cuts:?} of {:?}", String::from_utf8_lossy(body));
}

/// One table line: the body, the expected `kind:value` list, the expected excluded count.
fn parse_line(line: &str) -> (Vec<u8>, Vec<String>, Option<usize>) {
    let (excluded, text) = match line.strip_prefix("excluded=").and_then(|r| r.split_once('\t')) {
        Some((n, rest)) => (Some(n.parse().unwrap()), rest),
        None => (None, line),
    };
    let mut body = String::new();
    let mut expected = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('«') {
        body.push_str(&rest[..open]);
        let after = &rest[open + '«'.len_utf8()..];
        let close = after.find('»').expect("unclosed «");
        let (kind, value) = after[..close].split_once(':').expect("«kind:value»");
        body.push_str(value);
        expected.push(format!("{kind}:{value}"));
        rest = &after[close + '»'.len_utf8()..];
    }
    body.push_str(rest);
    (body.into_bytes(), expected, excluded)
}

fn run_table(name: &str, text: &str) {
    let snap = snap_of(TABLE_POLICY);
    let p = policy(&snap);
    let mut failures = Vec::new();
    let pad = "lorem ipsum dolor sit amet, ".repeat(30);
    let mut lines = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        lines += 1;
        let (body, expected, excluded) = parse_line(line);
        let scan = p.scan(&body);
        let got = found(p, &body, &scan);
        if got != expected {
            failures.push(format!("{name}:{}: expected {expected:?}, got {got:?}", n + 1));
        }
        if let Some(x) = excluded {
            if scan.excluded != x {
                failures.push(format!("{name}:{}: expected {x} excluded, got {}", n + 1, scan.excluded));
            }
        } else if scan.excluded != 0 {
            failures.push(format!("{name}:{}: {} unexpected exclusions", n + 1, scan.excluded));
        }
        // Every split of the body alone, and of the body padded so that the split falls with
        // plenty of stream behind and ahead of it.
        for k in 0..=body.len() {
            assert_stream_eq(p, &body, &[k]);
        }
        let mut padded = pad.clone().into_bytes();
        padded.extend_from_slice(&body);
        padded.extend_from_slice(pad.as_bytes());
        for k in (pad.len().saturating_sub(HOLDBACK + 8)..pad.len() + body.len() + 8).step_by(3) {
            assert_stream_eq(p, &padded, &[k]);
        }
        assert_stream_eq(p, &padded, &(1..padded.len()).step_by(7).collect::<Vec<_>>());
    }
    assert!(lines > 0);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn table_iban() {
    run_table("iban.txt", include_str!("../../testdata/pii/iban.txt"));
}

#[test]
fn table_card() {
    run_table("card.txt", include_str!("../../testdata/pii/card.txt"));
}

#[test]
fn table_tckn() {
    run_table("tckn.txt", include_str!("../../testdata/pii/tckn.txt"));
}

#[test]
fn table_vkn() {
    run_table("vkn.txt", include_str!("../../testdata/pii/vkn.txt"));
}

#[test]
fn table_ssn() {
    run_table("ssn.txt", include_str!("../../testdata/pii/ssn.txt"));
}

#[test]
fn table_email() {
    run_table("email.txt", include_str!("../../testdata/pii/email.txt"));
}

#[test]
fn table_phone() {
    run_table("phone.txt", include_str!("../../testdata/pii/phone.txt"));
}

#[test]
fn table_exclusions() {
    run_table("exclusions.txt", include_str!("../../testdata/pii/exclusions.txt"));
}

#[test]
fn table_traps() {
    run_table("traps.txt", include_str!("../../testdata/pii/traps.txt"));
}

#[test]
fn table_json() {
    run_table("json.txt", include_str!("../../testdata/pii/json.txt"));
}

// ---------------------------------------------------------------- redaction

#[test]
fn last4_keeps_punctuation_and_the_last_four() {
    let snap = snap_of(TABLE_POLICY);
    let p = policy(&snap);
    for (body, want) in [
        ("Kart: 4111 1111 1111 1111.", "Kart: **** **** **** 1111."),
        ("{\"t\":\"12345678950\"}", "{\"t\":\"*******8950\"}"),
        ("IBAN TR33 0006 1005 1978 6457 8413 26", "IBAN **** **** **** **** **** **13 26"),
        ("mail ahmet@firma.com.tr", "mail *****@*****.*om.tr"),
        ("tel +90 (532) 123 45 67", "tel +** (***) *** 45 67"),
        ("SSN 123-45-6789 x", "SSN ***-**-6789 x"),
        ("çağrı@şirket.com.tr", "********@*******.*om.tr"),
    ] {
        let (_, out) = whole(p, body.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), want, "{body}");
    }
}

#[test]
fn bare_json_numbers_are_redacted_as_strings() {
    let snap = snap_of(TABLE_POLICY);
    let p = policy(&snap);
    let body = br#"{"tckn":12345678950,"list":[10000000146, 98765432150],"s":"12345678950"}"#;
    let (scan, out) = whole(p, body);
    assert_eq!(scan.matches.len(), 4);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, r#"{"tckn":"*******8950","list":["*******0146", "*******2150"],"s":"*******8950"}"#);
    assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    // Not JSON: no quotes added.
    let (_, out) = whole(p, b"tckn 12345678950");
    assert_eq!(out, b"tckn *******8950");
    // Token mask.
    let snap = one("    detectors: {tckn: redact}\n    mask: token\n");
    let (_, out) = whole(policy(&snap), body);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"tckn":"[REDACTED]","list":["[REDACTED]", "[REDACTED]"],"s":"[REDACTED]"}"#
    );
}

#[test]
fn only_redact_matches_are_masked() {
    let snap = one("    detectors: {tckn: redact, card: block, email: monitor}\n");
    let p = policy(&snap);
    assert!(p.needs_buffering() && p.redacts());
    let blocks = one("    detectors: {card: block}\n");
    assert!(policy(&blocks).needs_buffering() && !policy(&blocks).redacts());
    let redacts = one("    detectors: {card: redact, email: monitor}\n");
    assert!(!policy(&redacts).needs_buffering() && policy(&redacts).redacts());
    let body = b"a@firma.com 12345678950 4111111111111111";
    let (scan, out) = whole(p, body);
    assert_eq!(scan.action, Some(PiiAction::Block));
    assert_eq!(
        scan.matches.iter().map(|m| (m.kind, m.action)).collect::<Vec<_>>(),
        [(Kind::Email, PiiAction::Monitor), (Kind::Tckn, PiiAction::Redact), (Kind::Card, PiiAction::Block)]
    );
    assert_eq!(out, b"a@firma.com *******8950 4111111111111111");
}

#[test]
fn monitor_mode_turns_every_action_into_monitor() {
    let snap = one("    mode: monitor\n    detectors: {tckn: redact, card: block}\n");
    let p = policy(&snap);
    assert!(!p.needs_buffering() && !p.redacts());
    let body = b"12345678950 4111111111111111";
    let (scan, out) = whole(p, body);
    assert_eq!(scan.action, Some(PiiAction::Monitor));
    assert_eq!(scan.matches.len(), 2);
    assert_eq!(out, body);
    // The stream still counts.
    let (ss, so, _) = streamed(p, body, &[5, 13]);
    assert_eq!((ss, so), (scan.clone(), body.to_vec()));
    let s = p.summary(&scan).unwrap();
    assert_eq!(s.action, Action::Flagged);
    assert_eq!(s.finding.mode, Mode::Monitor);
}

// ---------------------------------------------------------------- events

#[test]
fn summary_has_counts_and_one_masked_sample_never_a_value() {
    let snap = snap_of(TABLE_POLICY);
    let p = policy(&snap);
    let body = br#"{"a":"12345678950","b":"4111 1111 1111 1111","c":"10000000146","order_id":"98765432150"}"#;
    let scan = p.scan(body);
    let s = p.summary(&scan).unwrap();
    assert_eq!(s.action, Action::Redacted);
    assert_eq!(s.finding.event, EventType::PiiLeakBlock);
    assert_eq!(s.finding.severity, Severity::Warning);
    assert_eq!(s.finding.deny.code, DenyCode::ResponseBlocked);
    assert_eq!(&*s.finding.rule_id, "table-tests");
    let detail = serde_json::Value::Object(s.finding.detail.clone());
    assert_eq!(
        detail,
        serde_json::json!({
            "action": "redacted",
            "kinds": {"card": 1, "tckn": 2},
            "matches": 3,
            "excluded": 1,
            "scanned_bytes": body.len(),
            "sample": {"kind": "tckn", "masked": "*******8950"},
        })
    );
    let text = detail.to_string();
    for value in ["12345678950", "4111 1111 1111 1111", "10000000146", "98765432150", "1234567"] {
        assert!(!text.contains(value), "{text}");
    }
    assert!(p.summary(&p.scan(b"nothing here")).is_none());
}

#[test]
fn samples_are_bounded() {
    let snap = one("    custom:\n      - {name: long, regex: '\\bL[a-z0-9]{100}\\b', action: monitor}\n");
    let p = policy(&snap);
    let body = format!("L{}", "a1".repeat(50));
    let scan = p.scan(body.as_bytes());
    let s = scan.sample.unwrap();
    assert_eq!(s.masked.len(), MAX_SAMPLE_LEN);
    assert!(s.masked.ends_with("*a1a1"));
    assert_eq!(s.masked.bytes().filter(u8::is_ascii_alphanumeric).count(), 4);
}

// ---------------------------------------------------------------- caps

#[test]
fn over_cap_fail_closed_and_scan_prefix() {
    let big = format!("{}12345678950 {}", "x ".repeat(40), "y ".repeat(100));
    // Blocking, fail closed: block whatever is in the prefix.
    let snap = one("    detectors: {tckn: block}\n    max_body_bytes: 64\n");
    let p = policy(&snap);
    let scan = p.scan(big.as_bytes());
    assert!(scan.over_cap && scan.scanned == 64 && scan.matches.is_empty());
    assert_eq!(scan.action, Some(PiiAction::Block));
    assert!(p.cuts_at_cap(&scan));
    let s = p.summary(&scan).unwrap();
    assert_eq!((s.action, s.finding.deny.reason.as_ref()), (Action::Blocked, "over_cap"));
    assert_eq!(s.finding.detail["over_cap"], "fail_closed");

    // Redacting, fail closed: the stream stops at the cap, as `redact` does.
    let snap = one("    detectors: {tckn: redact}\n    max_body_bytes: 100\n");
    let p = policy(&snap);
    let (scan, out) = whole(p, big.as_bytes());
    assert_eq!(scan.action, Some(PiiAction::Redact));
    assert_eq!(out.len(), 100);
    assert_eq!(&out[80..100], b"*******8950 y y y y ");
    for cut in [0, 50, 99, 100, 101, 150] {
        let (ss, so, refused) = streamed(p, big.as_bytes(), &[cut]);
        assert!(refused);
        assert_eq!((&ss, &so), (&scan, &out), "{cut}");
    }
    // Exactly at the cap is not over it.
    let (ss, _, refused) = streamed(p, &big.as_bytes()[..100], &[40]);
    assert!(!refused && !ss.over_cap);

    // Scan prefix: the rest passes unscanned.
    let snap = one("    detectors: {tckn: redact}\n    max_body_bytes: 100\n    over_cap: scan_prefix\n");
    let p = policy(&snap);
    let tail = format!("{big}10000000146");
    let (scan, out) = whole(p, tail.as_bytes());
    assert!(scan.over_cap && !p.cuts_at_cap(&scan));
    assert_eq!(scan.matches.len(), 1);
    assert_eq!(out.len(), tail.len());
    assert!(out.ends_with(b"10000000146"));
    for cut in [0, 99, 100, 101, 200] {
        let (ss, so, refused) = streamed(p, tail.as_bytes(), &[cut]);
        assert!(!refused);
        assert_eq!((&ss, &so), (&scan, &out), "{cut}");
    }

    // Nothing in the prefix: still reported (flagged), the rest went out unscanned.
    let clean = format!("{}{}", "y ".repeat(60), "10000000146");
    let scan = p.scan(clean.as_bytes());
    assert!(scan.over_cap && scan.matches.is_empty() && scan.action.is_none());
    let s = p.summary(&scan).unwrap();
    assert_eq!((s.action, s.finding.deny.reason.as_ref()), (Action::Flagged, "over_cap"));
    assert_eq!(s.finding.detail["over_cap"], "scan_prefix");
    assert!(p.summary(&p.scan(b"y y")).is_none());

    // Monitor only: never refused, flagged.
    let snap = one("    detectors: {tckn: monitor}\n    max_body_bytes: 10\n");
    let p = policy(&snap);
    let (scan, out, refused) = streamed(p, big.as_bytes(), &[5]);
    assert!(!refused && scan.over_cap);
    assert_eq!(scan.action, Some(PiiAction::Monitor));
    assert_eq!(out, big.as_bytes());
}

#[test]
fn unscannable_bodies_are_withheld_where_a_value_would_have_been() {
    for (detectors, mode, withheld) in [
        ("{tckn: block}", "enforce", true),
        ("{tckn: redact, email: monitor}", "enforce", true),
        ("{email: monitor}", "enforce", false),
        ("{tckn: block}", "monitor", false),
    ] {
        let snap = one(&format!("    mode: {mode}\n    detectors: {detectors}\n"));
        let p = policy(&snap);
        assert_eq!(p.withholds_unscannable(), withheld, "{detectors} {mode}");
        let s = p.not_scanned("unsupported_encoding", Some(&"zstd".repeat(40)));
        assert_eq!(s.action, if withheld { Action::Blocked } else { Action::Flagged });
        assert_eq!(s.finding.deny.code, DenyCode::ResponseBlocked);
        assert_eq!(s.finding.deny.reason, "unsupported_encoding");
        assert_eq!(s.finding.detail["unscanned"], "unsupported_encoding");
        assert_eq!(s.finding.detail["content_encoding"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn policies_are_shared_and_streams_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<Pii>();
    send_sync::<PiiPolicy>();
    send::<StreamScanner>();
}

#[test]
fn stream_holds_back_at_most_the_window() {
    let snap = snap_of(TABLE_POLICY);
    let p = policy(&snap);
    let mut s = p.stream();
    let mut out = Vec::new();
    let chunk = "Müşteri kaydı güncellendi; ".repeat(200);
    for _ in 0..20 {
        s.push(chunk.as_bytes(), &mut out).unwrap();
        assert!(s.held() <= HOLDBACK, "{}", s.held());
    }
    let scan = s.finish(&mut out);
    assert!(scan.matches.is_empty());
    assert_eq!(out.len(), chunk.len() * 20);
}

#[test]
fn long_json_streams_like_a_whole_scan_across_compactions() {
    // Long enough to drop history several times (the JSON tracker walks what is dropped), with
    // excluded keys, values to mask and bare numbers (quoted when masked) all the way through.
    let snap = snap_of(TABLE_POLICY);
    let p = policy(&snap);
    let mut body = String::from("[");
    for i in 0..2500 {
        // Layouts and lengths vary, so a tracker that lost its place would not land in step.
        let pad = "x".repeat(i * 7 % 53);
        let obj = match i % 3 {
            0 => format!(
                r#"{{"order_id":"10000000146","tckn":"10000000146","n":{i},"vkn":1234567890,"note":"Müşteri {pad} aradı, e-posta ayse.yilmaz@ornek.com.tr","ref":"ORD-10000000146"}},"#
            ),
            1 => format!(
                r#"{{"items":[{{"trace_id":10000000146,"q":"a \"quoted\" {pad}"}}],"note":"e-posta ayse.yilmaz@ornek.com.tr","tckn":10000000146,"vkn":"1234567890","ref":"ORD-10000000146"}},"#
            ),
            _ => format!(
                r#"{{"meta":{{"order_id":["10000000146","{pad}"]}},"who":{{"tckn":"10000000146","vkn":1234567890}},"mail":"ayse.yilmaz@ornek.com.tr"}},"#
            ),
        };
        body.push_str(&obj);
    }
    body.push_str("{}]");
    let body = body.into_bytes();
    assert!(body.len() > 3 * super::scan::COMPACT_MIN);
    let (ws, wo) = whole(p, &body);
    assert_eq!(ws.matches.len(), 2500 * 3, "tckn, vkn and e-mail of each object");
    assert!(ws.excluded >= 2500, "the keyed and ORD- values are excluded: {}", ws.excluded);
    for piece in [1000, 4093, 16384, 65536, 100_000] {
        let cuts: Vec<usize> = (piece..body.len()).step_by(piece).collect();
        let (ss, so, _) = streamed(p, &body, &cuts);
        assert_eq!(ss, ws, "scan differs in pieces of {piece}");
        assert!(so == wo, "output differs in pieces of {piece}");
    }
    // A long stretch with no candidate: history is dropped in the middle of a string the
    // tracker has not walked yet. It must walk it first, or the key after it is misread.
    let body = format!(r#"{{"tckn":10000000146,"pad":"{}","order_id":"10000000146"}}"#, "a".repeat(200_000));
    let (ws, wo) = whole(p, body.as_bytes());
    assert_eq!((ws.matches.len(), ws.excluded), (1, 1));
    for piece in [4093, 16384, 65536] {
        let cuts: Vec<usize> = (piece..body.len()).step_by(piece).collect();
        let (ss, so, _) = streamed(p, body.as_bytes(), &cuts);
        assert_eq!(ss, ws, "scan differs in pieces of {piece}");
        assert!(so == wo, "output differs in pieces of {piece}");
    }
}

// ---------------------------------------------------------------- routes, content types

#[test]
fn first_matching_rule_applies() {
    let snap = snap_of(
        "version: 1\npii:\n  - id: api\n    routes: [api, admin]\n    detectors: {card: block}\n  - id: rest\n    detectors: {tckn: redact}\n",
    );
    assert_eq!(snap.pii.len(), 2);
    assert_eq!(&*snap.pii.for_route(Some("api")).unwrap().id, "api");
    assert_eq!(&*snap.pii.for_route(Some("admin")).unwrap().id, "api");
    assert_eq!(&*snap.pii.for_route(Some("web")).unwrap().id, "rest");
    assert_eq!(&*snap.pii.for_route(None).unwrap().id, "rest");
    let snap = snap_of("version: 1\npii:\n  - id: api\n    routes: [api]\n    detectors: {card: block}\n");
    assert!(snap.pii.for_route(Some("web")).is_none());
    assert!(snap.pii.for_route(None).is_none());
    assert!(Snapshot::empty().pii.is_empty());
    let info = snap.rule("api").unwrap();
    assert_eq!((info.kind, info.hash.as_str()), ("pii", policy(&snap).hash.as_str()));
}

#[test]
fn content_types() {
    let snap = one("    detectors: {card: block}\n");
    let p = policy(&snap);
    for (ct, yes) in [
        (Some("application/json"), true),
        (Some("Application/JSON; charset=utf-8"), true),
        (Some("APPLICATION/JSON;CHARSET=UTF-8"), true),
        (Some("application/json ; charset=\"utf-8\""), true),
        (Some("application/json;charset=\"a;b\\\"c\""), true),
        (Some(" application/json "), true),
        (Some("\tapplication/json\t;\tq=1"), true),
        (Some("application/json;"), true),
        (Some("application/problem+json"), true),
        (Some("application/vnd.api+json"), true),
        (Some("application/vnd.api+json; v=2"), true),
        (Some("text/html; charset=UTF-8"), true),
        (Some("text/csv"), true),
        (Some("text/plain"), true),
        (Some("text/event-stream"), true),
        (Some("application/xml"), true),
        (Some("application/atom+xml"), true),
        (Some("application/x-www-form-urlencoded"), true),
        (Some("application/x-ndjson"), true),
        (Some("application/ndjson"), true),
        (Some("application/javascript; charset=utf-8"), true),
        (Some("application/x-javascript"), true),
        (Some("application/yaml"), true),
        (None, true),
        // Not well-formed media types: nobody can say what a client makes of them; scanned.
        (Some("garbage"), true),
        (Some(""), true),
        (Some("   "), true),
        (Some("json"), true),
        (Some("text"), true),
        (Some("image/png, application/json"), true),
        (Some("image/png;"), false),
        (Some("image/png; charset"), true),
        (Some("image/png; a=\"unterminated"), true),
        (Some("image/png; a=b c"), true),
        (Some("image /png"), true),
        (Some("image/ png"), true),
        (Some("image/png\u{e9}"), true),
        (Some("/png"), true),
        (Some("image/"), true),
        // Well-formed and not listed: passed.
        (Some("image/png"), false),
        (Some("IMAGE/PNG; x=\"1\""), false),
        (Some("application/octet-stream"), false),
        (Some("application/pdf"), false),
        (Some("application/+json"), false),
        (Some("application/jsonx"), false),
    ] {
        assert_eq!(p.scans_content_type(ct), yes, "{ct:?}");
    }
    // Several fields: scanned whatever they say (`the first decides` is a bypass: a client may
    // believe the last).
    let two: [&[u8]; 2] = [b"image/png", b"application/json"];
    assert_eq!(p.body_kind(two), BodyKind::Body);
    let two: [&[u8]; 2] = [b"image/png", b"image/png"];
    assert_eq!(p.body_kind(two), BodyKind::Body);
    let none: [&[u8]; 0] = [];
    assert_eq!(p.body_kind(none), BodyKind::Body);
    assert_eq!(p.body_kind([&b"image/png\xff"[..]]), BodyKind::Body, "not ASCII: scanned");
    // Event streams, however written.
    for ct in ["text/event-stream", "Text/Event-Stream; charset=utf-8", " text/event-stream ;retry=1"] {
        assert_eq!(p.body_kind([ct.as_bytes()]), BodyKind::EventStream, "{ct}");
    }
    let sse_twice: [&[u8]; 2] = [b"text/event-stream", b"text/event-stream"];
    assert_eq!(p.body_kind(sse_twice), BodyKind::Body, "ambiguous: scanned as one body");

    let snap = one("    detectors: {card: block}\n    content_types: ['*/*']\n");
    for ct in ["image/png", "", "json", "text", "x"] {
        assert!(policy(&snap).scans_content_type(Some(ct)), "{ct:?} with */*");
    }
    let snap = one("    detectors: {card: block}\n    content_types: [text/plain]\n");
    assert!(!policy(&snap).scans_content_type(Some("text/html")));
    assert!(policy(&snap).scans_content_type(Some("text/plain;charset=utf-8")));
    assert!(policy(&snap).scans_content_type(Some("text")), "malformed: scanned even when not listed");
    assert_eq!(policy(&snap).body_kind([&b"text/event-stream"[..]]), BodyKind::Pass, "not listed");
    for t in DEFAULT_CONTENT_TYPES {
        assert!(p.scans_content_type(Some(t.replace('*', "x").as_str())), "{t}");
    }
}

#[test]
fn media_types_parse_strictly() {
    assert_eq!(media_type(b"Text/HTML; Charset=UTF-8"), Some(("text".into(), "html".into())));
    assert_eq!(media_type(b"a/b;;c=d;"), Some(("a".into(), "b".into())));
    for bad in [&b"a/b,c/d"[..], b"a/b c", b"a/b;c", b"a/b;c=", b"a/b;=d", b"a/b;c=\"d", b"a/b\x00", b"a/b;c=\"\x01\""]
    {
        assert_eq!(media_type(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn upgrades_and_tunnels_are_recognised_in_every_spelling() {
    let h = |pairs: &[(&str, &str)]| {
        let mut m = http::HeaderMap::new();
        for (k, v) in pairs {
            m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_str(v).unwrap());
        }
        m
    };
    for (method, headers, want) in [
        ("GET", h(&[("upgrade", "websocket"), ("connection", "Upgrade")]), Some("upgrade")),
        ("GET", h(&[("upgrade", "h2c"), ("connection", "Upgrade, HTTP2-Settings")]), Some("upgrade")),
        ("GET", h(&[("upgrade", "foo/1, bar")]), Some("upgrade")),
        ("GET", h(&[("upgrade", "")]), Some("upgrade")),
        ("GET", h(&[("connection", "UPGRADE")]), Some("connection_upgrade")),
        ("GET", h(&[("connection", "keep-alive ,  uPgRaDe ")]), Some("connection_upgrade")),
        ("GET", h(&[("connection", "keep-alive"), ("connection", "upgrade")]), Some("connection_upgrade")),
        ("CONNECT", h(&[]), Some("connect")),
        ("connect", h(&[]), Some("connect")),
        ("GET", h(&[("connection", "keep-alive, upgrades")]), None),
        ("GET", h(&[("connection", "close"), ("x-upgrade", "websocket")]), None),
        ("POST", h(&[]), None),
    ] {
        assert_eq!(upgrade_requested(method, &headers), want, "{method} {headers:?}");
    }
    let snap = one("    detectors: {email: monitor}\n");
    assert!(!policy(&snap).allow_upgrade, "refused unless the rule says so");
    let s = policy(&snap).upgrade_refused("upgrade");
    assert_eq!((s.action, s.finding.deny.code.status()), (Action::Blocked, 403));
    assert_eq!(s.finding.detail["unscanned"], "upgrade");
    let snap = one("    detectors: {email: monitor}\n    allow_upgrade: true\n");
    assert!(policy(&snap).allow_upgrade);
}

/// Feeds `body` in pieces of `step` bytes; returns what was written after each piece, then
/// after `finish`, and how it ended.
fn events_in(p: &PiiPolicy, body: &[u8], step: usize) -> (Vec<Vec<u8>>, Result<(), EventWithheld>, Scan) {
    let mut ev = p.events();
    let mut outs = Vec::new();
    for piece in body.chunks(step.max(1)) {
        let mut out = Vec::new();
        let r = ev.push(piece, &mut out);
        outs.push(out);
        if r.is_err() {
            return (outs, r, ev.into_scan());
        }
    }
    let mut out = Vec::new();
    let r = ev.finish(&mut out);
    outs.push(out);
    (outs, r, ev.into_scan())
}

#[test]
fn event_streams_are_scanned_per_event_and_flushed_at_each_boundary() {
    let snap = one("    detectors: {tckn: redact, iban: block, email: monitor}\n");
    let p = policy(&snap);
    // Every line ending: each event is written the moment its blank line is complete.
    for sep in ["\n", "\r\n", "\r"] {
        let e1 = format!("id: 1{sep}data: {{\"ok\":true}}{sep}{sep}");
        let e2 = format!("data: tckn 10000000146{sep}{sep}");
        let e3 = format!(": comment{sep}data: mail a.b@example.com.tr{sep}{sep}");
        let body = format!("{e1}{e2}{e3}");
        let (outs, r, scan) = events_in(p, body.as_bytes(), body.len());
        assert!(r.is_ok());
        let all: Vec<u8> = outs.concat();
        assert_eq!(String::from_utf8(all).unwrap(), body.replace("10000000146", "*******0146"), "{sep:?}");
        assert_eq!(scan.action, Some(PiiAction::Redact));
        assert_eq!(scan.matches.len(), 2);
        // Byte by byte: the first event comes out at its blank line, not later.
        let (outs, _, _) = events_in(p, body.as_bytes(), 1);
        let first = outs.iter().position(|o| !o.is_empty()).unwrap();
        // (A CRLF blank line is complete at its CR, which ends the line: its LF, when it comes
        // in a later read, goes out with the next event.)
        let at = if sep == "\r\n" { e1.len() - 1 } else { e1.len() };
        assert_eq!(first + 1, at, "{sep:?}: first output after byte {}", first + 1);
        assert_eq!(outs[first], e1.as_bytes()[..at].to_vec());
    }
    // A blocked value ends the stream before its event: the events before it went out whole.
    let body = "data: one\n\ndata: TR330006100519786457841326\n\ndata: three\n\n";
    for step in [1, 3, 7, body.len()] {
        let (outs, r, scan) = events_in(p, body.as_bytes(), step);
        assert_eq!(r, Err(EventWithheld), "step {step}");
        assert_eq!(outs.concat(), b"data: one\n\n", "step {step}");
        assert_eq!(scan.action, Some(PiiAction::Block));
        let mut ev = p.events();
        let mut out = Vec::new();
        let _ = ev.push(body.as_bytes(), &mut out);
        assert_eq!(ev.push(b"data: more\n\n", &mut out), Err(EventWithheld), "stays stopped");
        assert_eq!(ev.finish(&mut out), Err(EventWithheld));
    }
    // A value cannot span events: a number cut by a blank line is two numbers, neither matched.
    let (outs, r, scan) = events_in(p, b"data: 100000\n\ndata: 00146\n\n", 4);
    assert!(r.is_ok() && scan.matches.is_empty());
    assert_eq!(outs.concat(), b"data: 100000\n\ndata: 00146\n\n");
    // What is left at the end (no blank line) is scanned too.
    let (outs, r, _) = events_in(p, b"data: 10000000146", 5);
    assert!(r.is_ok());
    assert_eq!(outs.concat(), b"data: *******0146");
    let (outs, r, _) = events_in(p, b"data: x\n\ndata: TR330006100519786457841326", 5);
    assert_eq!((outs.concat(), r), (b"data: x\n\n".to_vec(), Err(EventWithheld)));
}

#[test]
fn event_stream_caps_apply_per_event() {
    // fail_closed on a redacting policy: an event over the cap ends the stream.
    let snap = one("    detectors: {tckn: redact}\n    max_body_bytes: 64\n");
    let p = policy(&snap);
    let small = "data: 10000000146\n\n";
    let body = format!("{small}{small}{small}{small}{small}");
    let (outs, r, scan) = events_in(p, body.as_bytes(), 5);
    assert!(r.is_ok(), "{} bytes in all, each event under the cap", body.len());
    assert_eq!(scan.matches.len(), 5);
    assert!(!scan.over_cap);
    assert_eq!(outs.concat(), body.replace("10000000146", "*******0146").into_bytes());
    let big = format!("data: {}\n\n", "x".repeat(100));
    let body = format!("{small}{big}{small}");
    let (outs, r, scan) = events_in(p, body.as_bytes(), 9);
    assert_eq!(r, Err(EventWithheld));
    assert_eq!(outs.concat(), small.replace("10000000146", "*******0146").into_bytes());
    assert!(scan.over_cap);
    // scan_prefix: the first 64 bytes of the long event scanned, the rest of it passes, the
    // next event is scanned again.
    let snap = one("    detectors: {tckn: redact}\n    max_body_bytes: 64\n    over_cap: scan_prefix\n");
    let p = policy(&snap);
    let big = format!("data: 10000000146 {} 10000000146\n\n", "x".repeat(80));
    let body = format!("{big}{small}");
    let (outs, r, scan) = events_in(p, body.as_bytes(), 9);
    assert!(r.is_ok());
    let want =
        format!("data: *******0146 {} 10000000146\n\n", "x".repeat(80)) + &small.replace("10000000146", "*******0146");
    assert_eq!(String::from_utf8(outs.concat()).unwrap(), want);
    assert!(scan.over_cap);
    assert_eq!(scan.matches.len(), 2);
}

// ---------------------------------------------------------------- validation

#[test]
fn every_rule_error_is_reported_at_its_key() {
    let e = errors(
        "  - id: r
    routes: []
    detectors: {}
    custom:
      - {name: Bad Name, regex: 'a+', action: redact}
      - {name: card, regex: '^x', action: redact}
      - {name: ok, regex: 'x*', action: redact}
      - {name: ok, regex: '(', action: redact}
      - {name: ctx, regex: 'x', action: redact, context: ['']}
    exclude:
      prefixes: ['']
      allow_regex: ['(']
      json_keys: ['']
    max_body_bytes: 0
    content_types: [json, 'text/plain; charset=utf-8']
",
    );
    let want = [
        "4 pii[0].routes: `routes` is empty",
        "5 pii[0].detectors: `detectors` lists no detector",
        "7 pii[0].custom[0].name: `Bad Name` is not a valid detector name",
        "7 pii[0].custom[0].regex: the pattern can match more than 128 bytes",
        "8 pii[0].custom[1].name: `card` is a built-in detector",
        "8 pii[0].custom[1].regex: `^`, `$`, `\\A` and `\\z` would anchor to the whole body",
        "9 pii[0].custom[2].regex: the pattern can match the empty string",
        "10 pii[0].custom[3].name: duplicate custom detector name `ok`",
        "10 pii[0].custom[3].regex: invalid regex",
        "11 pii[0].custom[4].context[0]: a context keyword is 1 to 32 bytes",
        "13 pii[0].exclude.prefixes[0]: a prefix is 1 to 32 bytes",
        "14 pii[0].exclude.allow_regex[0]: invalid regex",
        "15 pii[0].exclude.json_keys[0]: a JSON key is 1 to 128 bytes",
        "16 pii[0].max_body_bytes: `max_body_bytes` must be between 1 and 16777216",
        "17 pii[0].content_types[0]: `json` is not a media type pattern",
        "17 pii[0].content_types[1]: `text/plain; charset=utf-8` is not a media type pattern",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  should start with\n{want}");
    }
}

#[test]
fn shape_errors_have_did_you_mean() {
    let e = errors("  - id: r\n    detectors: {iabn: block}\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("4 pii[0].detectors.iabn: unknown field `iabn`"), "{e:?}");
    assert!(e[0].contains("did you mean `iban`"), "{e:?}");
    let e = errors("  - id: r\n    detectors: {iban: blok}\n");
    assert!(e[0].contains("unknown variant `blok`"), "{e:?}");
    let e = errors("  - id: r\n    detectors: {iban: block}\n    mask: last5\n");
    assert!(e[0].contains("unknown variant `last5`"), "{e:?}");
    let e = errors("  - id: r\n    detectors: {iban: block}\n    exclude: {prefix: [A]}\n");
    assert!(e[0].contains("did you mean `prefixes`"), "{e:?}");
    let e = errors("  - id: r\n    custom: [{name: x, regex: x, action: redact, validator: lunh}]\n");
    assert!(e[0].contains("unknown variant `lunh`"), "{e:?}");
}

#[test]
fn rules_that_detect_nothing_or_never_apply_are_refused() {
    let e = errors("  - id: r\n    routes: [api]\n");
    assert_eq!(e, ["3 pii[0]: a pii rule needs `detectors`, `custom`, or both: it would detect nothing"]);
    let e = errors("  - id: r\n    detectors: {card: block}\n    custom: []\n    exclude: {}\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("`custom` is empty"));
    assert!(e[1].contains("`exclude` lists nothing"));
    let e = errors(
        "  - id: all\n    detectors: {card: block}\n  - id: later\n    routes: [api]\n    detectors: {card: block}\n",
    );
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("5 pii[1]: this rule never applies: rule `all` before it has no `routes`"), "{e:?}");
    let e = errors(
        "  - id: a\n    routes: [api, web]\n    detectors: {card: block}\n  - id: b\n    routes: [web, api]\n    detectors: {card: block}\n",
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("every route it names is taken by an earlier pii rule (`web` by `a`, `api` by `a`)"),
        "{e:?}"
    );
    // Across files too.
    let a = "version: 1\npii:\n  - id: a\n    detectors: {card: block}\n";
    let b = "version: 1\npii:\n  - id: b\n    routes: [x]\n    detectors: {card: block}\n";
    let e = compile(&[SourceFile::new("a.yaml", a), SourceFile::new("b.yaml", b)]).unwrap_err();
    assert_eq!((e.len(), e[0].file.as_str()), (1, "b.yaml"));
    // Routes are checked against the gateway's.
    let routes = ["api"];
    let env = Env { routes: Some(&routes), assets: None, sinks: None };
    let e = compile_with(&[SourceFile::new("b.yaml", b)], &env).unwrap_err();
    assert!(e[0].message.contains("unknown route `x`"), "{e:?}");
}

#[test]
fn custom_regex_limits() {
    let ok = one("    custom:\n      - {name: x, regex: '(?m)^[A-Z]{2}[0-9]{1,126}$', action: redact}\n");
    assert_eq!(policy(&ok).kind_name(Kind::Custom(0)), "x");
    let e = errors("  - id: r\n    custom:\n      - {name: x, regex: '[0-9]{200}', action: redact}\n");
    assert!(e[0].contains("can match more than 128 bytes"), "{e:?}");
    let e = errors("  - id: r\n    custom:\n      - {name: x, regex: '(?u)\\w{3}', action: redact}\n");
    assert!(e[0].contains("Unicode mode"), "{e:?}");
    let e = errors("  - id: r\n    custom:\n      - {name: x, regex: '\\p{L}{3}', action: redact}\n");
    assert!(e[0].contains("Unicode classes"), "{e:?}");
    let many: String = (0..33).map(|i| format!("      - {{name: c{i}, regex: 'x{i}', action: redact}}\n")).collect();
    let e = errors(&format!("  - id: r\n    custom:\n{many}"));
    assert!(e[0].contains("the limit is 32"), "{e:?}");
}

#[test]
fn rule_hash_changes_with_content_only() {
    let a = one("    detectors: {card: block}\n");
    let b = snap_of("# other\nversion: 1\npii:\n- {detectors: {card: block}, id: r}\n");
    assert_eq!(policy(&a).hash, policy(&b).hash);
    let c = one("    detectors: {card: redact}\n");
    assert_ne!(policy(&a).hash, policy(&c).hash);
}

// ---------------------------------------------------------------- streaming properties

/// Pieces bodies are made of: PII, near misses, separators, JSON, non-ASCII, keywords.
const PIECES: &[&str] = &[
    "12345678950",
    "10000000146",
    "12345678951",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "5105 1051 0510 5100",
    "378282246310005",
    "TR33 0006 1005 1978 6457 8413 26",
    "TR330006100519786457841326",
    "DE89370400440532013000",
    "+90 532 123 45 67",
    "(0532) 123 45 67",
    "05321234567",
    "555-123-4567",
    "123-45-6789",
    "123456789",
    "1234567890",
    "4540536920",
    "ahmet.yilmaz@firma.com.tr",
    "çağrı@şirket.com.tr",
    "test@example.com",
    "@",
    "EMP-123456",
    "POL12345674",
    "vkn ",
    "vergi ",
    "ssn ",
    "poliçe ",
    "SIP-",
    "ORD-2024-",
    "REF",
    "\"order_id\":",
    "\"trace_id\":{",
    "\"tckn\":",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\n",
    "\\\"",
    " ",
    "  ",
    "\n",
    "-",
    ".",
    "+",
    "(",
    ")",
    "0",
    "7",
    "2024-01-15T10:30:00Z",
    "1700000000123",
    "Müşteri Çağrı Yılmaz ",
    "İstanbul ",
    "x",
    "TR",
    "GB29 NWBK 6016 1331 9268 19",
    // Longest local part and domain, around the window's edges.
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "@abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.com",
    "@abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.com",
];

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(PIECES).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..6),
            1 => prop::collection::vec(b'0'..=b'9', 1..24),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

/// Bodies long enough for the stream to move its buffer several times.
fn long_body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(PIECES).prop_map(|s| s.as_bytes().to_vec()), 400..1600)
        .prop_map(|parts| parts.concat())
}

fn cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..2048, 0..12).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

const PROP_POLICIES: &[&str] = &[
    // The table policy is added separately.
    "    detectors: {iban: redact, card: block, tckn: redact, vkn: monitor, ssn: redact, email: redact, phone: redact}\n    mask: token\n",
    "    detectors: {tckn: redact, card: redact}\n    exclude: {json_keys: [tckn, order_id]}\n",
    "    mode: monitor\n    detectors: {iban: block, card: block, tckn: block, email: block, phone: block}\n",
    "    detectors: {email: redact, phone: redact}\n    custom:\n      - {name: digits, regex: '[0-9]{4,9}', action: redact}\n      - {name: word, regex: '(?i)\\bm[a-z]{2,20}', validator: none, action: monitor}\n",
    "    detectors: {tckn: redact, iban: redact}\n    max_body_bytes: 300\n    over_cap: scan_prefix\n",
    "    detectors: {tckn: redact, card: redact}\n    max_body_bytes: 200\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Scanning a body in any chunking gives the same matches, counts and output as scanning it
    /// whole.
    #[test]
    fn any_chunking_equals_whole(body in body_strategy(), cuts in cuts_strategy(), which in 0..=PROP_POLICIES.len()) {
        let snap = match which.checked_sub(1).and_then(|i| PROP_POLICIES.get(i)) {
            Some(rule) => one(rule),
            None => snap_of(TABLE_POLICY),
        };
        let p = policy(&snap);
        let (ws, wo) = whole(p, &body);
        let (ss, so, _) = streamed(p, &body, &cuts);
        prop_assert_eq!(&ss, &ws);
        prop_assert!(so == wo, "output differs");
        // Matches never overlap and lie in the scanned part.
        for w in ws.matches.windows(2) {
            prop_assert!(w[0].end <= w[1].start);
        }
        prop_assert!(ws.matches.iter().all(|m| m.start < m.end && m.end <= ws.scanned));
        // Byte-at-a-time streaming too, for short bodies.
        if body.len() < 400 {
            let every: Vec<usize> = (1..body.len()).collect();
            let (bs, bo, _) = streamed(p, &body, &every);
            prop_assert_eq!(&bs, &ws);
            prop_assert!(bo == wo);
        }
    }

    /// The same over bodies of several buffers' worth, in chunks of every size.
    #[test]
    fn long_bodies_any_chunking(body in long_body_strategy(), chunk in 1usize..9000, which in 0..=PROP_POLICIES.len()) {
        let snap = match which.checked_sub(1).and_then(|i| PROP_POLICIES.get(i)) {
            Some(rule) => one(rule),
            None => snap_of(TABLE_POLICY),
        };
        let p = policy(&snap);
        let (ws, wo) = whole(p, &body);
        let cuts: Vec<usize> = (chunk..body.len()).step_by(chunk).collect();
        let (ss, so, _) = streamed(p, &body, &cuts);
        prop_assert_eq!(&ss, &ws);
        prop_assert!(so == wo, "output differs");
    }

    /// Whatever the body, the summary never carries a matched value.
    #[test]
    fn summaries_never_carry_values(body in body_strategy()) {
        let snap = snap_of(TABLE_POLICY);
        let p = policy(&snap);
        let scan = p.scan(&body);
        if let Some(s) = p.summary(&scan) {
            let text = serde_json::Value::Object(s.finding.detail).to_string();
            for m in &scan.matches {
                let digits: Vec<u8> = body[m.start..m.end].iter().copied().filter(u8::is_ascii_alphanumeric).collect();
                if digits.len() > 4 {
                    let v = String::from_utf8_lossy(&body[m.start..m.end]).into_owned();
                    prop_assert!(!text.contains(&v), "{} in {}", v, text);
                }
            }
            if let Some(sample) = &scan.sample {
                prop_assert!(sample.masked.bytes().filter(u8::is_ascii_alphanumeric).count() <= 4);
            }
        }
    }
}
