use super::*;

#[test]
fn audit_queries_parse_and_refuse_what_they_do_not_know() {
    let (f, limit, fleet) = audit_query(Some(
        "actor=ops&action=address.*&target=tenant%3Aacme&since=2026-01-30T09:00:00Z&before=42&limit=5",
    ))
    .unwrap();
    assert_eq!(limit, 5);
    assert!(!fleet);
    assert!(audit_query(Some("scope=fleet&limit=3")).unwrap().2);
    assert!(!audit_query(Some("scope=instance")).unwrap().2);
    assert_eq!(f.actor.as_deref(), Some("ops"));
    assert_eq!(f.action.as_deref(), Some("address.*"));
    assert_eq!(f.target.as_deref(), Some("tenant:acme"));
    assert_eq!(f.before, Some(42));
    assert_eq!(f.since, Some(1_769_763_600_000));
    assert_eq!(audit_query(Some("until=60")).unwrap().0.until, Some(60_000));
    for bad in [
        "limit=0",
        "limit=1001",
        "nope=1",
        "since=yesterday",
        "before=-1",
        "actor=a&actor=b",
        "target=%FF",
        "until=99999999999999999",
        "scope=cluster",
        "scope=fleet&scope=instance",
    ] {
        assert!(audit_query(Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn texts_are_bounded() {
    assert!(check_text("abuse from the 3 a.m. scan").is_ok());
    assert!(check_text("a\nb").is_err());
    assert!(check_text(&"x".repeat(crate::switches::MAX_REASON_CHARS + 1)).is_err());
}
