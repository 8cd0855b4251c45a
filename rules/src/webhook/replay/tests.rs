use super::*;

fn k(s: &str) -> Key {
    ReplayCache::key("rule", "id", s.as_bytes())
}

#[test]
fn claim_refuses_until_expiry_then_accepts() {
    let c = ReplayCache::new(10);
    assert!(c.claim(&[k("a")], 100, 0).is_ok());
    assert_eq!(c.claim(&[k("a")], 200, 50), Err(Replayed { until: 100 }));
    assert_eq!(c.claim(&[k("a")], 200, 99), Err(Replayed { until: 100 }));
    assert!(c.claim(&[k("a")], 200, 100).is_ok(), "expired at 100");
}

#[test]
fn any_key_held_refuses_and_nothing_is_claimed() {
    let c = ReplayCache::new(10);
    c.claim(&[k("sig1")], 100, 0).unwrap();
    assert!(c.claim(&[k("id1"), k("sig1")], 100, 1).is_err());
    assert!(c.claim(&[k("id1")], 100, 1).is_ok(), "the refused claim took nothing");
}

#[test]
fn release_frees_only_its_own_claim() {
    let c = ReplayCache::new(10);
    let first = c.claim(&[k("a")], 100, 0).unwrap();
    c.release(&first);
    let second = c.claim(&[k("a")], 150, 1).unwrap();
    c.release(&first); // stale: must not free the second
    assert!(c.claim(&[k("a")], 150, 2).is_err());
    c.release(&second);
    assert!(c.claim(&[k("a")], 150, 3).is_ok());
}

#[test]
fn keys_are_namespaced_by_rule_and_kind() {
    assert_ne!(ReplayCache::key("r1", "id", b"x"), ReplayCache::key("r2", "id", b"x"));
    assert_ne!(ReplayCache::key("r", "id", b"x"), ReplayCache::key("r", "signature", b"x"));
    // Length-prefixed: no ambiguity between parts.
    assert_ne!(ReplayCache::key("ab", "c", b""), ReplayCache::key("a", "bc", b""));
}

#[test]
fn bounded_expired_first_then_closest_to_expiry() {
    let c = ReplayCache::new(100);
    for i in 0..50 {
        c.claim(&[k(&format!("old{i}"))], 10, 0).unwrap();
    }
    for i in 0..50 {
        c.claim(&[k(&format!("live{i}"))], 1000 + i, 0).unwrap();
    }
    // Full: the 50 expired go first, nothing unexpired is evicted.
    for i in 0..50 {
        c.claim(&[k(&format!("new{i}"))], 2000, 20).unwrap();
    }
    assert_eq!(c.evicted(), 0);
    assert!(c.len() <= 100);
    // Still full of unexpired entries: the ones closest to expiry go, the rest stay.
    c.claim(&[k("one-more")], 3000, 20).unwrap();
    assert!(c.len() <= 100);
    assert!(c.evicted() >= 1);
    assert!(c.claim(&[k("live0")], 5000, 21).is_ok(), "closest to expiry was evicted");
    assert!(c.claim(&[k("new0")], 5000, 21).is_err(), "later expiries kept");
    for i in 0..10_000 {
        let _ = c.claim(&[k(&format!("flood{i}"))], 9000, 30);
    }
    assert!(c.len() <= 100);
}
