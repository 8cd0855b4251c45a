use super::*;

fn vals(q: &str, n: &str) -> Result<Vec<String>, Unreadable> {
    lookup(q, &fold_name(n.as_bytes())).map(|v| v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
}

#[test]
fn finds_every_occurrence_decoded() {
    assert_eq!(vals("a=1&b=2&a=3", "a").unwrap(), ["1", "3"]);
    assert_eq!(vals("a%5Fb=x+y%21", "a_b").unwrap(), ["x y!"]);
    assert_eq!(vals("a&a=", "a").unwrap(), ["", ""]);
    assert_eq!(vals("&&b=1&", "a").unwrap(), Vec::<String>::new());
    assert_eq!(vals("k=%C5%9F", "k").unwrap(), ["ş"]);
}

#[test]
fn invalid_escapes_fail_closed_only_where_they_matter() {
    assert_eq!(vals("a=%zz", "a"), Err(Unreadable));
    assert_eq!(vals("a=%4", "a"), Err(Unreadable));
    assert_eq!(vals("%zz=1&a=2", "a"), Err(Unreadable));
    assert_eq!(vals("ten%zz=1", "tenant_id"), Err(Unreadable));
    // Another parameter's bad value or name is not our business.
    assert_eq!(vals("b=%zz&a=2", "a").unwrap(), ["2"]);
    assert_eq!(vals("x%zz=1&a=2", "a").unwrap(), ["2"]);
}

/// Issue 18 item 4: every spelling some stack reads as `tenant_id` is `tenant_id`.
#[test]
fn names_fold_the_way_applications_read_them() {
    for name in [
        "tenant_id",
        "tenant_id%00x",
        "tenant_id%00",
        "tenant.id",
        "tenant%2Eid",
        "tenant%2eid",
        "tenant id",
        "tenant+id",
        "tenant%20id",
        "tenant[id",
        "tenant%5Bid",
        "TENANT_ID",
        "Tenant_Id",
        "tenant%5Fid",
        "%74enant_id",
        "%54ENANT%5FID",
        "+tenant_id",
        "%20%20tenant_id",
        "tenant_%C4%B1d",
        "TENANT_ID%00",
    ] {
        assert_eq!(vals(&format!("{name}=73"), "tenant_id").unwrap(), ["73"], "{name}");
        assert_eq!(vals(&format!("tenant_id=12&{name}=73"), "tenant_id").unwrap(), ["12", "73"], "{name}");
    }
    // Unicode characters whose simple case mapping is ASCII (ASP.NET's OrdinalIgnoreCase).
    assert_eq!(fold_name("ſ\u{212a}ı".as_bytes()), b"ski");
    assert_eq!(fold_name("şé".as_bytes()), "şé".as_bytes());
    assert_eq!(fold_name(b"\xff\xfeA"), "\u{fffd}\u{fffd}a".as_bytes());
    // Semicolons separate too.
    assert_eq!(vals("a=1;tenant.id=73", "tenant_id").unwrap(), ["73"]);
    // Not the parameter.
    for name in ["tenant", "tenant_idx", "xtenant_id", "tenant-id", "tenant%5Fid%5D", "tenant[id]", "tenant__id"] {
        assert_eq!(vals(&format!("{name}=73"), "tenant_id").unwrap(), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn array_and_map_syntax_is_not_one_value() {
    for name in ["tenant_id[]", "tenant_id[0]", "tenant_id[x]", "tenant_id%5B%5D", "TENANT.ID[]", "tenant_id["] {
        assert_eq!(vals(&format!("{name}=73"), "tenant_id"), Err(Unreadable), "{name}");
    }
    assert_eq!(name_matches(b"tenant_id[0]", b"tenant_id"), NameMatch::Nested);
    assert_eq!(name_matches(b"tenant[id", b"tenant_id"), NameMatch::Same);
    assert_eq!(name_matches(b"other[id", b"tenant_id"), NameMatch::Other);
}

#[test]
fn fold_names_is_the_query_with_names_folded() {
    assert_eq!(fold_names("a=1&b=2"), None);
    assert_eq!(fold_names("DEBUG=1&de.bug=2&debug%00x=3"), Some(b"debug=1&de_bug=2&debug=3".to_vec()));
    assert_eq!(fold_names("x=%41+b&flag"), Some(b"x=A b&flag".to_vec()));
    assert_eq!(fold_names("%zz=%4"), None);
}

#[test]
fn percent_decode_leaves_plus_alone() {
    assert_eq!(percent_decode(b"a+b%2Fc").unwrap().as_ref(), b"a+b/c");
    assert_eq!(percent_decode(b"%e2%82%ac").unwrap().as_ref(), "€".as_bytes());
    assert_eq!(percent_decode(b"x%2"), Err(BadEscape));
}

#[test]
fn lenient_and_prefix_forms() {
    assert_eq!(decode_lenient(b"a=1&b=2"), None);
    assert_eq!(decode_lenient(b"a%41+%4"), Some(b"aA %4".to_vec()));
    assert_eq!(decode_prefix(b"ab%41c%zzd"), (b"abAc".to_vec(), true));
    assert_eq!(decode_prefix(b"a+b"), (b"a b".to_vec(), false));
}

#[test]
fn decode_borrows_when_clean() {
    assert!(matches!(decode(b"abc"), Ok(Cow::Borrowed(_))));
    assert_eq!(decode(b"%41%62+").unwrap().as_ref(), b"Ab ");
}
