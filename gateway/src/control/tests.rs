use super::*;

#[test]
fn every_metric_family_registers_once() {
    let all = metric_families();
    assert!(all.len() > 40, "{}", all.len());
    let m = crate::metrics::Metrics::new(vec!["api".into()], "v".into(), &all);
    assert!(m.is_ok(), "{:?}", m.err());
}

#[test]
fn unauthenticated_refusals_are_audited_once_per_source_and_minute() {
    let r = Refusals::default();
    assert_eq!(r.admit("10.0.0.1", 5), Some(0));
    for _ in 0..1000 {
        assert_eq!(r.admit("10.0.0.1", 5), None);
    }
    assert_eq!(r.admit("10.0.0.2", 5), Some(0), "another source is audited on its own");
    assert_eq!(r.admit("10.0.0.1", 6), Some(1000), "the next minute reports what was suppressed");
    assert_eq!(r.admit("10.0.0.1", 6), None);
    // Many sources: bounded; the overflow shares one entry.
    for i in 0..(MAX_REFUSAL_SOURCES + 50) {
        r.admit(&format!("s{i}"), 7);
    }
    assert!(r.by_source.lock().len() <= MAX_REFUSAL_SOURCES + 1);
}

#[test]
fn the_control_rate_limit_is_per_source_and_second() {
    let t = Throttle::default();
    for _ in 0..50 {
        assert!(t.allow("a", 10, 50));
    }
    assert!(!t.allow("a", 10, 50));
    assert!(!t.allow("a", 10, 50));
    assert!(t.allow("b", 10, 50), "another source has its own budget");
    assert!(t.allow("a", 11, 50), "the next second starts again");
    assert_eq!(t.limited.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn refusal_targets_are_capped() {
    assert_eq!(cap_chars("GET /v1/x", 128), "GET /v1/x");
    let long = format!("GET /v1/{}", "é".repeat(5000));
    let c = cap_chars(&long, MAX_REFUSAL_TARGET_CHARS);
    assert_eq!(c.chars().count(), MAX_REFUSAL_TARGET_CHARS + 1);
    assert!(c.ends_with('…'));
}

#[test]
fn patterns() {
    assert!(pattern_matches("/v1/flags/{}", "/v1/flags/rate_limit"));
    assert!(!pattern_matches("/v1/flags/{}", "/v1/flags/"));
    assert!(!pattern_matches("/v1/flags/{}", "/v1/flags/a/b"));
    assert!(pattern_matches("/v1/sessions/{}/revoke", "/v1/sessions/s1/revoke"));
    assert!(!pattern_matches("/v1/rules", "/v1/rules/"));
}
