use super::*;

#[test]
fn health_score_formula_and_the_runbook_boundaries() {
    // Nothing happened.
    assert_eq!(health_score(0, 0, 0, 0, 0), 100);
    assert_eq!(health_score(0, 0, 0, 1_000_000, 0), 100);
    // One critical: investigate; two: page.
    assert_eq!(health_score(1, 0, 0, 0, 0), 65);
    assert_eq!(health_status(65), "investigate");
    assert_eq!(health_score(2, 0, 0, 0, 0), 30);
    assert_eq!(health_status(30), "page");
    assert_eq!(health_score(3, 0, 0, 0, 0), 0);
    assert_eq!(health_score(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX), 0);
    // Warnings: 10·log2(1+n), capped at 40.
    assert_eq!(health_score(0, 1, 0, 0, 0), 90);
    assert_eq!(health_score(0, 2, 0, 0, 0), 84); // 100 − 15.85
    assert_eq!(health_status(84), "watch");
    assert_eq!(health_score(0, 3, 0, 0, 0), 80);
    assert_eq!(health_score(0, 7, 0, 0, 0), 70);
    assert_eq!(health_status(70), "watch");
    assert_eq!(health_score(0, 8, 0, 0, 0), 68);
    assert_eq!(health_score(0, 15, 0, 0, 0), 60);
    assert_eq!(health_score(0, 1_000_000, 0, 0, 0), 60);
    // Info: 2·log2(1+n), capped at 10. Info alone never leaves "healthy"… until the cap.
    assert_eq!(health_score(0, 0, 1, 0, 0), 98);
    assert_eq!(health_score(0, 0, 31, 0, 0), 90);
    assert_eq!(health_score(0, 0, 1_000_000, 0, 0), 90);
    // 5xx: 6 per percent, capped at 50, only with ≥ 20 requests.
    assert_eq!(health_score(0, 0, 0, 100, 5), 70); // 5%: watch
    assert_eq!(health_score(0, 0, 0, 1000, 51), 69); // just over 5%: investigate
    assert_eq!(health_status(69), "investigate");
    assert_eq!(health_score(0, 0, 0, 100, 100), 50);
    assert_eq!(health_score(0, 0, 0, 100, 1), 94);
    assert_eq!(health_score(0, 0, 0, 19, 19), 100); // too few requests to judge
    assert_eq!(health_score(0, 0, 0, 20, 1), 70); // 1 of 20 is 5%
    assert_eq!(health_score(0, 0, 0, 10, 50), 100);
    assert_eq!(health_score(0, 0, 0, 20, 500), 50); // more errors than requests: still capped
                                                    // Combined: one warning and 2% 5xx → 100 − 10 − 12 = 78.
    assert_eq!(health_score(0, 1, 0, 100, 2), 78);
    // One critical with 5% 5xx pages.
    assert_eq!(health_score(1, 0, 0, 100, 5), 35);
    // Status bands.
    assert_eq!(health_status(100), "healthy");
    assert_eq!(health_status(85), "healthy");
    assert_eq!(health_status(50), "investigate");
    assert_eq!(health_status(49), "page");
    assert_eq!(health_status(0), "page");
}

#[test]
fn parses_every_parameter_and_spelling() {
    let q = EventQuery::parse(None).unwrap();
    assert_eq!(q, EventQuery::default());
    assert_eq!((q.hours, q.limit), (24, 100));
    let q = EventQuery::parse(Some(
        "type=auth-failure,CROSS_TENANT_ATTEMPT&type=ssrf_block&severity=critical%2Cwarning&hours=1&limit=10&tenant=73",
    ))
    .unwrap();
    assert_eq!(q.kinds, vec![EventType::AuthFailure, EventType::CrossTenantAttempt, EventType::SsrfBlock]);
    assert_eq!(q.severities, vec![Severity::Critical, Severity::Warning]);
    assert_eq!((q.hours, q.limit, q.tenant.as_deref()), (1, 10, Some("73")));
    // The contract's template with empty values means the defaults.
    assert_eq!(EventQuery::parse(Some("type=&severity=&hours=&limit=&tenant=")).unwrap(), EventQuery::default());
    assert_eq!(EventQuery::parse(Some("?&&limit=1000&hours=8760")).unwrap().limit, 1000);
    assert_eq!(EventQuery::parse(Some("tenant=acme+corp%2F1")).unwrap().tenant.as_deref(), Some("acme corp/1"));
    assert_eq!(SummaryQuery::parse(Some("hours=168")).unwrap().hours, 168);
    assert_eq!(SummaryQuery::parse(None).unwrap().hours, 24);
    assert_eq!(TopThreatsQuery::parse(None).unwrap(), TopThreatsQuery { hours: 24, limit: 10 });
    assert_eq!(TopThreatsQuery::parse(Some("limit=3&hours=2")).unwrap(), TopThreatsQuery { hours: 2, limit: 3 });
}

#[test]
fn parse_errors_name_the_parameter() {
    let err = |qs: &str| EventQuery::parse(Some(qs)).unwrap_err();
    assert!(err("type=auth_failures").starts_with("type: unknown event type"), "{}", err("type=auth_failures"));
    assert!(err("severity=high").starts_with("severity:"));
    assert!(err("foo=1").contains("unknown parameter \"foo\""));
    assert!(err("hours=0").starts_with("hours:"));
    assert!(err("hours=8761").starts_with("hours:"));
    assert!(err("hours=-1").starts_with("hours:"));
    assert!(err("hours=1.5").starts_with("hours:"));
    assert!(err("limit=5000").starts_with("limit:"));
    assert!(err("limit=0").starts_with("limit:"));
    assert!(err("limit=ten").starts_with("limit:"));
    assert!(err("tenant=%zz").starts_with("tenant: bad percent-encoding"));
    assert!(err("tenant=%4").starts_with("tenant: bad percent-encoding"));
    assert!(err("tenant=%ff").starts_with("tenant: not UTF-8"));
    assert!(err("ty%zzpe=x").starts_with("parameter name"));
    assert!(err("hours=1&hours=2").starts_with("hours: given more than once"));
    assert!(SummaryQuery::parse(Some("limit=1")).unwrap_err().contains("unknown parameter \"limit\""));
    assert!(SummaryQuery::parse(Some("hours=0")).unwrap_err().starts_with("hours:"));
    assert!(TopThreatsQuery::parse(Some("limit=101")).unwrap_err().starts_with("limit:"));
}
