use super::*;
use crate::rulefile::{compile_with, Env, SourceFile};

fn compile_text(text: &str) -> Result<AutoBlocks, Vec<String>> {
    let env = Env { routes: None, assets: None, sinks: None };
    compile_with(&[SourceFile::new("a.yaml", text)], &env)
        .map(|s| s.auto_blocks)
        .map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

#[test]
fn a_rule_compiles_with_its_keys() {
    let a = compile_text(
        "version: 1\nauto_blocks:\n  - id: scanner\n    events: [firewall_block, SSRF_BLOCK]\n    above: 10\n    window: 1m\n    block: address\n    duration: 1h\n    exempt: [10.0.0.0/8, \"::1\"]\n",
    )
    .unwrap();
    let r = &a.rules()[0];
    assert_eq!((&*r.id, r.above, r.window_secs, r.duration_secs), ("scanner", 10, 60, 3600));
    assert_eq!(r.types, vec![EventType::FirewallBlock, EventType::SsrfBlock]);
    assert_eq!(r.key, BlockKey::Address);
    assert!(r.exempt.contains("10.1.2.3".parse().unwrap()) && !r.exempt.contains("11.0.0.1".parse().unwrap()));
    assert!(a.counts(EventType::SsrfBlock) && !a.counts(EventType::AuthFailure));
}

#[test]
fn bad_rules_name_every_error() {
    let e = compile_text(
        "version: 1\nauto_blocks:\n  - id: a\n    events: [switch_changed, nope, firewall_block, firewall_block]\n    above: 0\n    window: 2d\n    block: tenant\n    duration: 0s\n    exempt: [not-an-ip]\n",
    )
    .unwrap_err()
    .join("\n");
    // `block: tenant` is a type error for the whole rule; fix it and every other key is named.
    assert!(e.contains("block"), "{e}");
    let e = compile_text(
        "version: 1\nauto_blocks:\n  - id: a\n    events: [switch_changed, nope, firewall_block, firewall_block]\n    above: 0\n    window: 2d\n    block: subject\n    duration: 0s\n    exempt: [not-an-ip]\n",
    )
    .unwrap_err()
    .join("\n");
    for want in ["events[0]", "events[1]", "events[3]", "above", "window", "duration", "exempt[0]"] {
        assert!(e.contains(want), "{want} missing in {e}");
    }
    let e = compile_text("version: 1\nauto_blocks:\n  - id: a\n").unwrap_err().join("\n");
    for want in ["events", "above", "window", "block", "duration"] {
        assert!(e.contains(want), "{want} missing in {e}");
    }
}

#[test]
fn the_counter_slides_triggers_once_per_crossing_and_stays_bounded() {
    let mut c = Counter::default();
    // 3 in the window is not over 3; the 4th is.
    for t in 0..3 {
        assert!(!c.add("a", 1, 100 + t, 60, 3));
    }
    assert!(c.add("a", 1, 103, 60, 3));
    // Cleared: counting starts again.
    assert!(!c.add("a", 1, 104, 60, 3));
    // Old hits slide out of the window.
    let mut c = Counter::default();
    assert!(!c.add("b", 3, 100, 10, 3));
    assert!(!c.add("b", 3, 110, 10, 3), "the first 3 are out of a 10 s window at t=110");
    assert!(c.add("b", 1, 111, 10, 3));
    // An aggregated event counts its hits.
    assert!(Counter::default().add("c", 50, 1, 60, 10));
    // Bounded: a flood of new keys never holds more than MAX_KEYS.
    let mut c = Counter::default();
    for i in 0..(MAX_KEYS + 10) {
        c.add(&i.to_string(), 1, 5, 60, 100);
    }
    assert_eq!(c.len(), MAX_KEYS);
    c.sweep(1000, 60);
    assert!(c.is_empty());
}

#[test]
fn keys_are_canonical() {
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(key_of(BlockKey::Address, Some(mapped), None).as_deref(), Some("192.0.2.7"));
    assert_eq!(key_of(BlockKey::Address, None, Some("u")), None);
    assert_eq!(key_of(BlockKey::Subject, None, Some("u")).as_deref(), Some("u"));
    assert_eq!(key_of(BlockKey::Subject, None, Some("")), None);
}
