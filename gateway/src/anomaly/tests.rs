use super::*;
use portcullis_rules::identity::AuthMethod;
use portcullis_rules::rulefile::{compile, SourceFile};

fn rules(min_run: u32, mode: &str) -> Vec<AnomalyRule> {
    let text = format!(
        "version: 1\nanomaly:\n  - id: walk\n    mode: {mode}\n    features:\n      sequential: {{ weight: 2, window: 1m, min_run: {min_run} }}\n    amber: 2\n    red: 100\n    amber_delay_ms: 250\n    exempt: {{ subjects: [svc] }}\n"
    );
    compile(&[SourceFile::new("a.yaml", text)]).unwrap().anomaly.rules().to_vec()
}

fn who(subject: &str, session: Option<&str>) -> Identity {
    Identity {
        rule_id: Arc::from("id"),
        method: AuthMethod::Jwt,
        subject: subject.into(),
        tenant: None,
        roles: Vec::new(),
        session: session.map(str::to_string),
        email: None,
        credential: None,
    }
}

fn walk(st: &AnomalyState, rules: &[AnomalyRule], who: &Identity, ids: std::ops::Range<u64>) -> Verdict {
    let mut last = Verdict::default();
    for id in ids {
        last = st.score(rules, None, &format!("/api/rto/{id}"), Some(who), None, id);
    }
    last
}

#[test]
fn amber_asks_for_the_delay_and_scores_survive_a_reload_of_an_unchanged_rule_only() {
    let st = AnomalyState::default();
    let alice = who("alice", Some("s1"));
    let v = walk(&st, &rules(3, "enforce"), &alice, 1..3);
    assert!(v.delay.is_none() && v.flagged.is_empty());
    // A reload with the same rule: the run goes on, the third step is amber.
    let v = walk(&st, &rules(3, "enforce"), &alice, 3..5);
    assert_eq!(v.delay, Some(Duration::from_millis(250)));
    assert_eq!(v.flagged[0].detail["delay_ms"], 250);
    // A changed rule starts from nothing.
    let v = walk(&st, &rules(4, "enforce"), &alice, 5..7);
    assert!(v.flagged.is_empty(), "a changed rule kept the old scores");
    assert_eq!(st.scorers.read().len(), 1, "the old rule's scores are dropped");
    // Monitor: flagged, never delayed.
    let st = AnomalyState::default();
    let v = walk(&st, &rules(3, "monitor"), &alice, 1..5);
    assert_eq!((v.delay, v.flagged.len(), v.flagged[0].detail["delay_ms"].as_u64()), (None, 1, Some(0)));
}

#[test]
fn exempt_subjects_and_requests_without_the_key_are_not_scored() {
    let st = AnomalyState::default();
    let r = rules(2, "enforce");
    assert!(walk(&st, &r, &who("svc", Some("s2")), 1..10).flagged.is_empty());
    assert!(walk(&st, &r, &who("bob", None), 1..10).flagged.is_empty());
    assert!(st.scorers.read().values().all(|s| s.iter().all(|m| m.lock().is_empty())));
}

#[test]
fn delays_are_capped() {
    let st = AnomalyState::default();
    let held: Vec<Slot<'_>> = (0..MAX_DELAYED).filter_map(|_| st.slot()).collect();
    assert_eq!(held.len(), MAX_DELAYED);
    assert!(st.slot().is_none(), "over the cap: no delay");
    assert_eq!(st.skipped.load(Ordering::Relaxed), 1);
    drop(held);
    assert!(st.slot().is_some());
    assert_eq!(st.delayed.load(Ordering::Relaxed), 0, "every slot given back");
}
