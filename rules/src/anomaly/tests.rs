use super::*;
use crate::rulefile::{compile_with, Env, SourceFile};

fn compile_text(text: &str) -> Result<Anomalies, Vec<String>> {
    let env = Env { routes: None, assets: None, sinks: None };
    compile_with(&[SourceFile::new("a.yaml", text)], &env)
        .map(|s| s.anomaly)
        .map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

fn feats(text: &str) -> Features {
    let a =
        compile_text(&format!("version: 1\nanomaly:\n  - id: r\n    amber: 1\n    red: 100\n    features:\n{text}"))
            .unwrap();
    a.rules()[0].features.clone()
}

#[test]
fn a_rule_compiles_with_its_keys() {
    let a = compile_text(
        "version: 1\nanomaly:\n  - id: enum\n    key: subject\n    features:\n      velocity: { weight: 1, window: 10s, max_requests: 50 }\n      sequential: { weight: 3, window: 1m, min_run: 5 }\n    amber: 3\n    red: 4\n    exempt: { cidrs: [10.0.0.0/8], subjects: [svc] }\n",
    )
    .unwrap();
    let r = &a.rules()[0];
    assert_eq!((r.key, r.amber, r.red, r.amber_delay_ms), (KeyKind::Subject, 3, 4, DEFAULT_DELAY_MS));
    assert!(r.exempt(Some("10.1.1.1".parse().unwrap()), None) && r.exempt(None, Some("svc")));
    assert!(!r.exempt(Some("11.1.1.1".parse().unwrap()), Some("bob")));
    assert_eq!((r.zone(2), r.zone(3), r.zone(4)), (Zone::Green, Zone::Amber, Zone::Red));
    assert!(r.applies(None) && r.features.breadth.is_none());
}

#[test]
fn bad_rules_name_every_error_at_its_line() {
    let e = compile_text(
        "version: 1\nanomaly:\n  - id: a\n    features:\n      velocity: { weight: 0, window: 2h, max_requests: 0 }\n      timing: { weight: 1, intervals: 8, max_cv: 3, window: 1s }\n    amber: 5\n    red: 5\n    amber_delay_ms: 60000\n    exempt: { cidrs: [nope] }\n",
    )
    .unwrap_err()
    .join("\n");
    for want in [
        "a.yaml:5",
        "velocity.weight",
        "velocity.window",
        "velocity.max_requests",
        "timing.max_cv",
        "timing.window",
        "red",
        "amber_delay_ms",
        "exempt.cidrs[0]",
    ] {
        assert!(e.contains(want), "{want} missing in {e}");
    }
    let e = compile_text("version: 1\nanomaly:\n  - id: a\n").unwrap_err().join("\n");
    for want in ["features", "amber", "red"] {
        assert!(e.contains(want), "{want} missing in {e}");
    }
    let e =
        compile_text("version: 1\nanomaly:\n  - id: a\n    key: cookie\n    features: {}\n    amber: 1\n    red: 2\n")
            .unwrap_err()
            .join("\n");
    assert!(e.contains("a.yaml:"), "{e}");
}

#[test]
fn velocity_fires_over_its_max_and_not_at_it() {
    let f = feats("      velocity: { weight: 2, window: 10s, max_requests: 5 }\n");
    let mut s = Scorer::default();
    for i in 0..5 {
        assert_eq!(s.observe(&f, "k", 1000 + i * 100, "/a", None).total, 0);
    }
    let sc = s.observe(&f, "k", 1600, "/a", None);
    assert_eq!((sc.total, sc.fired().next()), (2, Some(("velocity", 6.0))));
    // Spread over more than the window: never.
    let mut s = Scorer::default();
    for i in 0..20 {
        assert_eq!(s.observe(&f, "k", i * 2500, "/a", None).total, 0);
    }
}

#[test]
fn sequential_fires_on_a_walk_and_not_on_a_near_miss() {
    let f = feats("      sequential: { weight: 3, window: 1m, min_run: 4 }\n");
    let mut s = Scorer::default();
    let walk: Vec<u32> = (1001..=1005).map(|id| s.observe(&f, "k", 0, &format!("/api/rto/{id}"), None).total).collect();
    assert_eq!(walk, vec![0, 0, 0, 0, 3]);
    // Downwards too, with unrelated requests in between.
    let mut s = Scorer::default();
    let mut last = 0;
    for id in (10..15).rev() {
        s.observe(&f, "d", 0, "/api/profile", None);
        last = s.observe(&f, "d", 0, &format!("/api/rto/{id}/"), None).total;
    }
    assert_eq!(last, 3);
    // Near misses: 3 steps only; a gap of 2; a direction change; another prefix; too slow.
    let near: [&[(&str, u64)]; 5] = [
        &[("/x/1", 0), ("/x/2", 0), ("/x/3", 0), ("/x/4", 0)],
        &[("/x/1", 0), ("/x/2", 0), ("/x/4", 0), ("/x/5", 0), ("/x/6", 0)],
        &[("/x/1", 0), ("/x/2", 0), ("/x/3", 0), ("/x/2", 0), ("/x/3", 0)],
        &[("/x/1", 0), ("/x/2", 0), ("/y/3", 0), ("/x/4", 0), ("/x/5", 0)],
        &[("/x/1", 0), ("/x/2", 20_000), ("/x/3", 40_000), ("/x/4", 61_000), ("/x/5", 62_000)],
    ];
    for (n, seq) in near.iter().enumerate() {
        let mut s = Scorer::default();
        let fired = seq.iter().any(|(p, t)| s.observe(&f, "k", *t, p, None).total > 0);
        assert!(!fired, "near miss {n} fired");
    }
}

#[test]
fn breadth_counts_endpoint_groups_in_the_window() {
    let f = feats("      breadth: { weight: 1, window: 1m, max_groups: 3 }\n");
    let mut s = Scorer::default();
    for p in ["/a/1/x", "/a/1/y", "/b/2", "/c/3", "/a/1"] {
        assert_eq!(s.observe(&f, "k", 0, p, None).total, 0, "{p}");
    }
    assert_eq!(s.observe(&f, "k", 0, "/d/4", None).total, 1);
    // The same groups a minute later: only what is in the window counts.
    assert_eq!(s.observe(&f, "k", 70_000, "/e/5", None).total, 0);
    assert_eq!((group("/a/b/c"), group("/a"), group("/"), group("a/b/c")), ("/a/b", "/a", "/", "a/b"));
}

#[test]
fn timing_fires_on_regular_sub_second_gaps_only() {
    let f = feats("      timing: { weight: 2, intervals: 4, max_cv: 0.1 }\n");
    let run = |times: &[u64]| {
        let mut s = Scorer::default();
        times.iter().map(|t| s.observe(&f, "k", *t, "/a", None).total).last().unwrap_or(0)
    };
    assert_eq!(run(&[0, 200, 400, 600, 800]), 2);
    assert_eq!(run(&[0, 200, 401, 600, 799]), 2, "a little jitter is still a machine");
    assert_eq!(run(&[0, 200, 400, 600]), 0, "3 intervals are not 4");
    assert_eq!(run(&[0, 100, 400, 500, 900]), 0, "a human's jitter");
    assert_eq!(run(&[0, 1000, 2000, 3000, 4000]), 0, "1 s gaps are not sub-second");
}

#[test]
fn auth_failures_count_a_streak() {
    let f = feats("      auth_failures: { weight: 4, streak: 3 }\n");
    let mut s = Scorer::default();
    s.status("k", 401);
    s.status("k", 403);
    assert_eq!(s.observe(&f, "k", 0, "/a", None).total, 0);
    s.status("k", 401);
    assert_eq!(s.observe(&f, "k", 0, "/a", None).total, 4);
    s.status("k", 200);
    assert_eq!(s.observe(&f, "k", 0, "/a", Some(401)).total, 0, "a 200 ends the streak");
}

#[test]
fn features_add_up_and_memory_stays_bounded() {
    let f = feats("      velocity: { weight: 1, window: 10s, max_requests: 2 }\n      breadth: { weight: 2, window: 10s, max_groups: 1 }\n");
    let mut s = Scorer::default();
    s.observe(&f, "k", 0, "/a", None);
    s.observe(&f, "k", 1, "/b", None);
    let sc = s.observe(&f, "k", 2, "/c", None);
    assert_eq!((sc.total, sc.fired().count()), (3, 2));
    s.forget("k");
    assert!(s.is_empty());
    for i in 0..(MAX_KEYS + 100) {
        s.observe(&f, &i.to_string(), 0, "/a", None);
    }
    assert_eq!(s.len(), MAX_KEYS);
    assert_eq!(s.order.len(), MAX_KEYS);
    let mut s = Scorer::with_capacity(3);
    for i in 0..10 {
        s.observe(&f, &i.to_string(), 0, "/a", None);
    }
    assert_eq!(s.len(), 3);
    assert!(s.keys.contains_key("9") && !s.keys.contains_key("6"), "the oldest are forgotten");
}

#[test]
fn keys_are_what_the_rule_names() {
    let ip: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    let k = |kind| key_of(kind, Some("s1"), Some("u"), None, Some(ip)).map(|c| c.into_owned());
    assert_eq!(k(KeyKind::Session).as_deref(), Some("s1"));
    assert_eq!(k(KeyKind::Subject).as_deref(), Some("u"));
    assert_eq!(k(KeyKind::Tenant), None);
    assert_eq!(k(KeyKind::Address).as_deref(), Some("192.0.2.7"));
    assert_eq!(key_of(KeyKind::Session, Some(""), None, None, None), None);
    assert_eq!(trailing_id("/api/rto/99999999999999999999"), None);
}
