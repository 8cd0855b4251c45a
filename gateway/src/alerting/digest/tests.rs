use super::*;

fn cfg(time: (u8, u8), zone: &str) -> DigestConfig {
    DigestConfig {
        hour: time.0,
        minute: time.1,
        zone: jiff::tz::TimeZone::get(zone).unwrap(),
        zone_name: zone.into(),
        sinks: None,
    }
}

fn ms(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[test]
fn the_next_digest_follows_the_zone_and_its_dst() {
    let la = cfg((9, 0), "America/Los_Angeles");
    // 2026-01-30 is winter (UTC−8): 09:00 LA is 17:00Z.
    assert_eq!(next_at(&la, ms("2026-01-30T16:59:00Z")), ms("2026-01-30T17:00:00Z"));
    assert_eq!(next_at(&la, ms("2026-01-30T17:00:00Z")), ms("2026-01-31T17:00:00Z"));
    // Summer (UTC−7): 16:00Z.
    assert_eq!(next_at(&la, ms("2026-07-01T12:00:00Z")), ms("2026-07-01T16:00:00Z"));
    // Across the spring change (2026-03-08): the day after is at the new offset.
    assert_eq!(next_at(&la, ms("2026-03-07T18:00:00Z")), ms("2026-03-08T16:00:00Z"));
    let utc = cfg((0, 30), "UTC");
    assert_eq!(next_at(&utc, ms("2026-01-30T23:00:00Z")), ms("2026-01-31T00:30:00Z"));
    assert_eq!(local_date(Some(&la), ms("2026-01-31T03:00:00Z")), "2026-01-30");
    assert_eq!(local_date(None, ms("2026-01-31T03:00:00Z")), "2026-01-31");
}

#[test]
fn quotas_near_their_limit_are_listed_once_at_their_highest() {
    let ev = |tenant: &str, used: u64, limit: u64| {
        let mut e = SecurityEvent::new(
            EventType::QuotaExceeded,
            portcullis_rules::verdict::Severity::Warning,
            portcullis_rules::verdict::Mode::Monitor,
            portcullis_rules::verdict::Action::Flagged,
        );
        e.rule_id = Some("monthly".into());
        e.detail.insert("tenant".into(), json!(tenant));
        e.detail.insert("used".into(), json!(used));
        e.detail.insert("limit".into(), json!(limit));
        std::sync::Arc::new(e)
    };
    let list = quotas_near_limit(&[ev("73", 800, 1000), ev("73", 900, 1000), ev("12", 500, 1000), ev("9", 1, 0)]);
    assert_eq!(list, vec![json!({ "tenant": "73", "rule_id": "monthly", "used": 900, "limit": 1000, "percent": 90 })]);
}
