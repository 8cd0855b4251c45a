use super::*;

#[test]
fn findings_render_stable_codes() {
    let f = address_blocked("203.0.113.0/24");
    assert_eq!((f.deny.code.as_str(), f.deny.code.status()), ("ip_blocked", 403));
    assert_eq!(f.detail["block"], "203.0.113.0/24");
    let f = tenant_suspended("acme", "target");
    assert_eq!((f.deny.code.as_str(), f.deny.code.status()), ("tenant_suspended", 403));
    assert_eq!(f.detail["matched"], "target");
    assert_eq!(f.mode, Mode::Enforce);
}

#[test]
fn suspension_matches_the_identity_first_then_any_target() {
    let s = |t: &str| t == "acme";
    assert_eq!(first_suspended(Some("acme"), &[], &s), Some(("acme", "identity")));
    let targets = vec!["globex".to_string(), "acme".to_string()];
    assert_eq!(first_suspended(Some("globex"), &targets, &s), Some(("acme", "target")));
    assert_eq!(first_suspended(None, &["globex".to_string()], &s), None);
    assert_eq!(first_suspended(Some("ACME"), &[], &s), None, "tenants are exact, as tenant scope compares them");
}

#[test]
fn allowlist_keys_are_validated_and_lower_case() {
    assert_eq!(allowlist_key("email", " Ops@Acme.Example ").unwrap(), "email:ops@acme.example");
    assert_eq!(allowlist_key("domain", "Acme.Example").unwrap(), "domain:acme.example");
    for (kind, bad) in [
        ("email", "no-at"),
        ("email", "@acme.example"),
        ("email", "a@"),
        ("email", "a@b@c"),
        ("email", "a b@c"),
        ("email", "a\u{0}@c"),
        ("domain", "x@acme.example"),
        ("domain", ".acme"),
        ("domain", ""),
        ("user", "x"),
    ] {
        assert!(allowlist_key(kind, bad).is_err(), "{kind} {bad:?}");
    }
    assert!(allowlist_key("domain", &"a".repeat(MAX_ALLOW_VALUE + 1)).is_err());
}
