use super::*;
use crate::deny::DenyCode;

fn finding(mode: Mode) -> Finding {
    Finding {
        rule_id: Arc::from("r1"),
        mode,
        event: EventType::FirewallBlock,
        severity: Severity::Warning,
        deny: Deny::new(DenyCode::IpBlocked, "client_ip"),
        detail: serde_json::Map::new(),
    }
}

#[test]
fn monitor_flags_and_continues_enforce_stops() {
    let mut o = Outcome::default();
    assert_eq!(o.add(finding(Mode::Monitor)), ControlFlow::Continue(()));
    assert!(o.deny.is_none());
    assert_eq!(o.add(finding(Mode::Enforce)), ControlFlow::Break(()));
    assert_eq!(o.flagged.len(), 1);
    assert_eq!(o.deny.as_ref().map(Finding::action), Some(Action::Blocked));
    assert_eq!(o.flagged[0].action(), Action::Flagged);
    assert_eq!(o.findings().count(), 2);
}

#[test]
fn scores_are_reported_never_denied_and_the_longest_delay_wins() {
    let mut o = Outcome::default();
    o.score(finding(Mode::Enforce));
    o.delay_by(Duration::from_millis(300));
    o.delay_by(Duration::from_millis(100));
    assert!(o.deny.is_none() && !o.is_clean());
    assert_eq!(o.delay, Some(Duration::from_millis(300)));
    assert_eq!(o.add(finding(Mode::Monitor)), ControlFlow::Continue(()));
    let order: Vec<_> = o.findings().map(|f| f.mode).collect();
    assert_eq!(order, [Mode::Enforce, Mode::Monitor]);
}

#[test]
fn event_type_names_parse_in_every_spelling() {
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(t));
        assert_eq!(EventType::parse(&t.as_str().to_ascii_uppercase()), Some(t));
        assert_eq!(EventType::parse(&t.as_str().replace('_', "-")), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.as_str()));
        assert_eq!(EventType::ALL[t.index()], t);
    }
    assert_eq!(EventType::parse("auth_failures"), None);
    assert_eq!(EventType::parse(""), None);
    assert_eq!(EventType::parse("auth_failur"), None);
}

#[test]
fn severities_follow_the_contract() {
    assert_eq!(EventType::CrossTenantAttempt.default_severity(), Severity::Critical);
    assert_eq!(EventType::AnomalyRed.default_severity(), Severity::Critical);
    assert_eq!(EventType::RateLimitHit.default_severity(), Severity::Info);
    assert_eq!(EventType::SwitchChanged.default_severity(), Severity::Info);
    assert_eq!(EventType::RulesReloadFailed.default_severity(), Severity::Warning);
    assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    assert_eq!(Severity::parse("CRITICAL"), Some(Severity::Critical));
    assert_eq!(Severity::parse("high"), None);
}
