use super::*;

#[test]
fn names_compare_as_cgi_stacks_merge_them() {
    for (a, b) in [
        ("x-tenant-id", "X_Tenant_Id"),
        ("x-forwarded-for", "x_forwarded_for"),
        ("x-portcullis-tenant", "X_PORTCULLIS-tenant"),
        ("a", "A"),
    ] {
        assert!(same_name(a, b), "{a} {b}");
    }
    for (a, b) in
        [("x-tenant-id", "x.tenant.id"), ("x-tenant-id", "x~tenant|id"), ("x-forwarded-for", "x-forwarded.for")]
    {
        assert!(same_name(a, b), "{a} {b}");
    }
    for (a, b) in [("x-tenant-id", "x-tenant-i"), ("x-tenant-id", "xtenantid"), ("x-tenant-id", "x-tenant-ie")] {
        assert!(!same_name(a, b), "{a} {b}");
    }
    for name in ["x_tenant", "x.tenant", "x~tenant", "x!tenant", "x'tenant", "x*tenant", "x+tenant", "x|tenant"] {
        assert!(is_alternate_spelling(name), "{name}");
    }
    assert!(!is_alternate_spelling("x-tenant"));
    assert!(!is_alternate_spelling("X-Tenant-1"));
    // The lookup table agrees with the rule (a letter, a digit or `-`) on every character.
    for c in (0u8..0x80).map(char::from).chain(['é', 'ſ', '\u{212a}']) {
        let name = format!("x{c}tenant");
        assert_eq!(is_alternate_spelling(&name), !(c.is_ascii_alphanumeric() || c == '-'), "{name:?}");
    }
}

#[test]
fn rules_do_not_read_underscore_names() {
    assert_eq!(rule_header_refusal("x-tenant"), None);
    assert_eq!(
        rule_header_refusal("X_Tenant").as_deref(),
        Some(
            "`X_Tenant` holds `_`: applications read it as `X-Tenant`, which this rule would not see; write `x-tenant`"
        )
    );
    assert!(rule_header_refusal("x.tenant.id").is_some_and(|m| m.ends_with("write `x-tenant-id`")));
    assert_eq!(rule_header_refusal("x tenant"), None, "not a header name: the caller says so");
}

#[test]
fn always_stripped_in_every_spelling() {
    for h in ["x-original-url", "X_Original_URL", "x-rewrite-url", "X-Forwarded-Uri", "x_forwarded_for", "forwarded"] {
        assert!(is_always_stripped(h), "{h}");
    }
    assert!(!is_always_stripped("x-http-method-override"));
    assert!(!is_always_stripped("x-custom"));
    assert!(is_method_override("X-HTTP-Method-Override"));
    assert!(is_method_override("x-method-override"));
    assert!(!is_method_override("x_http_method_override"));
}

#[test]
fn a_name_set_holds_exactly_its_names() {
    let names = FORWARDING.iter().chain(URL_OVERRIDE).map(|h| http::HeaderName::from_static(h));
    let set: NameSet = names.clone().chain([http::header::FORWARDED, http::header::HOST]).collect();
    assert_eq!(set.iter().count(), FORWARDING.len() + URL_OVERRIDE.len() + 1, "duplicates kept once");
    for h in names.chain([http::header::HOST]) {
        assert!(set.contains(&h), "{h}");
    }
    for h in
        ["x-client-id", "authorization", "accept", "x-forwarded-fo", "x-forwarded-forr", "a", "", "x_forwarded_for"]
    {
        if let Ok(h) = http::HeaderName::from_bytes(h.as_bytes()) {
            assert!(!set.contains(&h), "{h}");
        }
    }
    assert!(!NameSet::default().contains(&http::header::HOST));
    let long = http::HeaderName::from_bytes("x".repeat(300).as_bytes()).unwrap();
    assert!(!set.contains(&long));
}

#[test]
fn method_overrides_are_one_known_method() {
    assert_eq!(method_override([]), Ok(None));
    assert_eq!(method_override([&b"DELETE"[..]]), Ok(Some("DELETE")));
    assert_eq!(method_override([&b" delete "[..]]), Ok(Some("DELETE")));
    assert_eq!(method_override([&b"patch"[..], b"PATCH"]), Ok(Some("PATCH")));
    assert_eq!(method_override([&b"PUT"[..], b"DELETE"]), Err("ambiguous_method_override"));
    for bad in [&b"CONNECT"[..], b"TRACE", b"DELETE, PUT", b"", b"DEL\0ETE", b"PROPFIND"] {
        assert_eq!(method_override([bad]), Err("bad_method_override"), "{bad:?}");
    }
}

#[test]
fn method_parameters_in_every_spelling() {
    for q in [
        "_method=DELETE",
        "a=1&_method=delete",
        "_METHOD=DELETE",
        "_method%00x=DELETE",
        "%5Fmethod=DELETE",
        "_%6Dethod=DELETE",
        ".method=DELETE",
        "_method[]=DELETE",
        "a=1;_method=PUT",
        "%zz=1",
    ] {
        assert!(query_overrides_method(q), "{q}");
    }
    for q in ["", "a=1", "method=DELETE", "x_method=1", "a=_method", "http_method=x", "%41=1", "a=%5Fmethod&b=%zz"] {
        assert!(!query_overrides_method(q), "{q}");
    }
}
