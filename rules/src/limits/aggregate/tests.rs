use super::*;

const SEC: u64 = NANOS_PER_SEC;

fn origin(id: &str) -> Arc<Origin> {
    Arc::new(Origin {
        rule_id: Arc::from(id),
        event: EventType::RateLimitHit,
        mode: Mode::Enforce,
        severity: Severity::Info,
    })
}

#[test]
fn a_flood_from_one_address_keeps_it_in_the_summary() {
    let a = Aggregator::new(60, 100);
    let r = origin("r");
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let other: IpAddr = "198.51.100.2".parse().unwrap();
    assert_eq!(a.hit_from(&r, 1, Some(ip), SEC, || "client_ip=203.0.113.9".into()), Emit::First);
    for i in 0..144 {
        assert_eq!(a.hit_from(&r, 1, Some(ip), SEC + i, || unreachable!()), Emit::Suppressed);
    }
    // A key shared by several addresses (a tenant's) names none.
    a.hit_from(&r, 2, Some(ip), SEC, || "tenant=t".into());
    a.hit_from(&r, 2, Some(ip), SEC, || unreachable!());
    a.hit_from(&r, 2, Some(other), SEC, || unreachable!());
    a.hit_from(&r, 2, Some(ip), SEC, || unreachable!());
    // Unknown addresses name none.
    a.hit(&r, 3, SEC, || "k3".into());
    a.hit(&r, 3, SEC, || unreachable!());
    let mut s = a.drain(61 * SEC);
    s.sort_by_key(|s| s.count);
    let got: Vec<(u64, Option<IpAddr>)> = s.iter().map(|s| (s.count, s.client_ip)).collect();
    assert_eq!(got, vec![(1, None), (3, None), (144, Some(ip))]);
    // A new window starts unnamed.
    a.hit_from(&r, 1, Some(ip), 70 * SEC, || "again".into());
    a.hit_from(&r, 1, Some(other), 71 * SEC, || unreachable!());
    assert_eq!(a.drain(200 * SEC)[0].client_ip, Some(other));
}

#[test]
fn one_event_per_key_per_window_then_a_summary() {
    let a = Aggregator::new(60, 100);
    let r = origin("r");
    assert_eq!(a.hit(&r, 1, SEC, || "client_ip=203.0.113.9".into()), Emit::First);
    for i in 0..999 {
        assert_eq!(a.hit(&r, 1, SEC + i, || unreachable!()), Emit::Suppressed);
    }
    // Another key and another rule are separate.
    assert_eq!(a.hit(&r, 2, SEC, || "k2".into()), Emit::First);
    assert_eq!(a.hit(&origin("s"), 1, SEC, || "k1".into()), Emit::First);
    assert!(a.drain(30 * SEC).is_empty(), "window still open");
    assert_eq!(a.len(), 3);
    let s = a.drain(61 * SEC);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].key_label.as_str(), s[0].count, s[0].window_secs), ("client_ip=203.0.113.9", 999, 60));
    assert_eq!(s[0].window_start, SEC);
    let f = s[0].finding();
    assert_eq!((&*f.rule_id, f.event, f.mode), ("r", EventType::RateLimitHit, Mode::Enforce));
    assert_eq!(f.detail["count"], 999);
    assert_eq!(f.deny.code, DenyCode::RateLimited);
    assert!(a.is_empty(), "closed windows are forgotten");
    // The next hit opens a new window.
    assert_eq!(a.hit(&r, 1, 62 * SEC, || "again".into()), Emit::First);
}

#[test]
fn a_window_closed_without_drain_keeps_its_summary() {
    let a = Aggregator::new(10, 100);
    let r = origin("r");
    assert_eq!(a.hit(&r, 7, 0, || "k".into()), Emit::First);
    assert_eq!(a.hit(&r, 7, SEC, || "k".into()), Emit::Suppressed);
    assert_eq!(a.hit(&r, 7, 11 * SEC, || "k".into()), Emit::First);
    assert_eq!(a.hit(&r, 7, 12 * SEC, || "k".into()), Emit::Suppressed);
    let s = a.drain(100 * SEC);
    assert_eq!(s.iter().map(|s| (s.window_start, s.count)).collect::<Vec<_>>(), [(0, 1), (11 * SEC, 1)]);
}

#[test]
fn bounded_under_a_flood_of_unique_keys() {
    let a = Aggregator::new(60, 1000);
    let r = origin("r");
    let mut first = 0;
    for k in 0..100_000u64 {
        if a.hit(&r, k, SEC, || format!("k{k}")) == Emit::First {
            first += 1;
        }
    }
    assert!(a.len() <= 1000 + SHARDS, "{}", a.len());
    // At most one event per tracked key plus one overflow event per shard.
    assert!(first <= 1000 + SHARDS, "{first}");
    let s = a.drain(61 * SEC);
    let overflow: u64 = s.iter().filter(|s| s.key_label == OVERFLOW_LABEL).map(|s| s.count).sum();
    assert_eq!(overflow + first as u64, 100_000);
}

#[test]
fn labels_are_truncated() {
    let a = Aggregator::new(1, 10);
    let r = origin("r");
    a.hit(&r, 1, 0, || "é".repeat(300));
    a.hit(&r, 1, 1, String::new);
    let s = a.drain(10 * SEC);
    assert!(s[0].key_label.len() <= MAX_LABEL_LEN + '…'.len_utf8());
    assert!(s[0].key_label.ends_with('…'));
    assert_ne!(a.label_hash(b"x"), a.label_hash(b"y"));
    assert_eq!(a.label_hash(b"x"), a.label_hash(b"x"));
}
