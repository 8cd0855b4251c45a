use super::*;

#[test]
fn keeps_reasonable_ids_and_refuses_injection() {
    assert!(is_well_formed(b"0192f1e2-aaaa-bbbb"));
    assert!(is_well_formed(b"req:abc.def_123"));
    assert!(!is_well_formed(b"short"));
    assert!(!is_well_formed(b"has space in it"));
    assert!(!is_well_formed(b"newline\r\ninjected"));
    assert!(!is_well_formed(b"quote\"inside\"x"));
    assert!(!is_well_formed(&[b'a'; 129]));
    assert!(!is_well_formed("ünïcode-ids".as_bytes()));
}

#[test]
fn generated_ids_sort_by_time_and_are_well_formed() {
    let a = format_id(1_700_000_000_000, u128::MAX);
    let b = format_id(1_700_000_000_001, 0);
    assert!(a < b);
    assert_eq!(a.len(), 32);
    assert!(is_well_formed(a.as_bytes()));
}

#[test]
fn generated_ids_are_the_time_then_the_random_bits_in_hex() {
    for (ms, rnd) in [(0, 0), (1_700_000_000_000, u128::MAX), (u64::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)] {
        let want = format!("{:012x}{:020x}", ms & 0xFFFF_FFFF_FFFF, rnd & ((1u128 << 80) - 1));
        assert_eq!(format_id(ms, rnd), want);
    }
}
