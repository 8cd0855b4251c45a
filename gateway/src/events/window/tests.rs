use super::*;

const T0: i64 = 1_769_796_000_000; // 2026-01-30T18:00:00Z

/// A request with this status: every 5xx a failure, 1 ms.
fn st(status: u16) -> Finished {
    Finished { status, failure: status >= 500, elapsed_ms: 1 }
}

/// `(requests, failures)`.
fn rf(t: RequestTotals) -> (u64, u64) {
    (t.requests, t.failures)
}

#[test]
fn deliberate_5xx_are_not_failures_and_latency_is_bucketed() {
    let w = RequestWindow::new();
    // 15 deliberate 503/502 answers out of 276 requests, no upstream error: 0 % failures.
    for i in 0..276 {
        let status = if i < 15 { 503 } else { 200 };
        w.record_at(T0, Finished { status, failure: false, elapsed_ms: 3 });
    }
    let t = w.totals_at(T0, 1);
    assert_eq!((t.requests, t.responses_5xx, t.failures, t.deliberate_5xx()), (276, 15, 0, 15));
    assert_eq!(t.failure_percent(), 0.0);
    // Real upstream failures count.
    for _ in 0..24 {
        w.record_at(T0, Finished { status: 502, failure: true, elapsed_ms: 3 });
    }
    let t = w.totals_at(T0, 1);
    assert_eq!((t.requests, t.failures), (300, 24));
    assert_eq!(t.failure_percent(), 8.0);
    // p99: 300 requests at 3 ms; 3 slow ones do not move it, 4 do.
    assert_eq!(t.p99_ms(), Some(5));
    for _ in 0..3 {
        w.record_at(T0, Finished { status: 200, failure: false, elapsed_ms: 6_000 });
    }
    assert_eq!(w.totals_at(T0, 1).p99_ms(), Some(5));
    for _ in 0..2 {
        w.record_at(T0, Finished { status: 200, failure: false, elapsed_ms: 7_000 });
    }
    assert_eq!(w.totals_at(T0, 1).p99_ms(), Some(10_000));
    w.record_at(T0, Finished { status: 200, failure: false, elapsed_ms: u64::MAX });
    assert_eq!(RequestTotals::default().p99_ms(), None);
    // Minute windows: two minutes back is outside a 2-minute window.
    w.record_at(T0 - 2 * 60_000, st(500));
    assert_eq!(rf(w.totals_minutes_at(T0, 2)), (306, 24));
    assert_eq!(rf(w.totals_minutes_at(T0, 3)), (307, 25));
}

#[test]
fn counts_requests_and_5xx_per_window() {
    let w = RequestWindow::new();
    for status in [200, 404, 500, 503, 502, 0, 599, 600] {
        w.record_at(T0, st(status));
    }
    assert_eq!(rf(w.totals_at(T0, 1)), (8, 4));
    // Two hours earlier: in a 3-hour window, not in a 1-hour one.
    w.record_at(T0 - 2 * 3_600_000, st(500));
    assert_eq!(rf(w.totals_at(T0, 1)), (8, 4));
    assert_eq!(rf(w.totals_at(T0, 3)), (9, 5));
    // 59 minutes earlier is inside the hour, 60 minutes earlier is not.
    w.record_at(T0 - 59 * 60_000, st(200));
    w.record_at(T0 - 60 * 60_000, st(200));
    assert_eq!(rf(w.totals_at(T0, 1)), (9, 4));
}

#[test]
fn a_reused_slot_forgets_last_week_and_caps_at_seven_days() {
    let w = RequestWindow::new();
    let week = 7 * 24 * 3_600_000;
    w.record_at(T0 - week, st(500));
    assert_eq!(rf(w.totals_at(T0 - week, 1)), (1, 1));
    // Same slot, one week later: the old count is gone.
    w.record_at(T0, st(200));
    assert_eq!(rf(w.totals_at(T0, 1)), (1, 0));
    assert_eq!(rf(w.totals_at(T0, 10_000)), (1, 0));
    // A late record for the older minute does not disturb the newer one.
    w.record_at(T0 - week, st(500));
    assert_eq!(rf(w.totals_at(T0, 168)), (1, 0));
    // The oldest minute of a 168-hour window still counts.
    let w = RequestWindow::new();
    w.record_at(T0 - week + 60_000, st(200));
    assert_eq!(rf(w.totals_at(T0, 168)), (1, 0));
    assert_eq!(rf(w.totals_at(T0, 500)), (1, 0));
}

#[test]
fn concurrent_records_are_all_counted() {
    let w = std::sync::Arc::new(RequestWindow::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    w.record_at(T0, st(if i % 10 == 0 { 500 } else { 200 }));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(rf(w.totals_at(T0, 1)), (40_000, 4_000));
}

#[test]
fn event_window_counts_by_type_and_severity_and_tests_apart() {
    let w = EventWindow::new();
    w.record(T0, EventType::AuthFailure, Severity::Warning, false, 1);
    w.record(T0, EventType::AuthFailure, Severity::Critical, false, 1);
    w.record(T0 - 30 * 60_000, EventType::CrossTenantAttempt, Severity::Critical, false, 1);
    w.record(T0, EventType::CrossTenantAttempt, Severity::Critical, true, 1);
    w.record(T0 - 5 * 3_600_000, EventType::RateLimitHit, Severity::Info, false, 1);
    let c = w.counts_at(T0, 1);
    assert_eq!(c.total(), 3);
    assert_eq!(c.test, 1);
    assert_eq!(c.by_type(EventType::AuthFailure), 2);
    assert_eq!(c.by_type(EventType::CrossTenantAttempt), 1);
    assert_eq!(c.by_severity(Severity::Critical), 2);
    assert_eq!(c.by_severity(Severity::Info), 0);
    assert_eq!(w.counts_at(T0, 6).by_severity(Severity::Info), 1);
    // Hits: an aggregated summary counts the refusals it stands for; test events never.
    w.record(T0, EventType::RateLimitHit, Severity::Info, false, 144);
    w.record(T0, EventType::RateLimitHit, Severity::Info, true, 7);
    let c = w.counts_at(T0, 1);
    assert_eq!((c.by_type(EventType::RateLimitHit), c.hits(EventType::RateLimitHit)), (1, 144));
    assert_eq!(c.hits(EventType::AuthFailure), 2);
    assert_eq!(w.counts_minutes_at(T0, 29).hits(EventType::CrossTenantAttempt), 0);
    assert_eq!(w.counts_minutes_at(T0, 31).hits(EventType::CrossTenantAttempt), 1);
    // Switch flips are counted, never a health input.
    w.record(T0, EventType::SwitchChanged, Severity::Info, false, 1);
    let c = w.counts_at(T0, 1);
    assert_eq!((c.by_severity(Severity::Info), c.health_inputs(Severity::Info)), (2, 1));
}
