use super::*;

#[test]
fn civil_dates_round_trip_and_count_days() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2026, 1, 30), 20_483);
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    let month_len = |y: i64, m: u32| match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let mut day = days_from_civil(1899, 1, 1);
    for y in 1899..2201 {
        for m in 1..=12 {
            for d in 1..=month_len(y, m) {
                assert_eq!(days_from_civil(y, m, d), day, "{y}-{m}-{d}");
                assert_eq!(civil_from_days(day), (y, m, d));
                day += 1;
            }
        }
    }
}

fn at(y: i64, m: u32, d: u32, hh: i64, mm: i64) -> i64 {
    days_from_civil(y, m, d) * DAY + hh * 3600 + mm * 60
}

#[test]
fn month_boundaries() {
    let b = |now: i64, off: i64| Period::Month.bounds(now, off);
    // Mid-month, UTC.
    assert_eq!(b(at(2026, 1, 30, 18, 0), 0), (at(2026, 1, 1, 0, 0), at(2026, 2, 1, 0, 0)));
    // Year rollover.
    assert_eq!(b(at(2025, 12, 31, 23, 59), 0), (at(2025, 12, 1, 0, 0), at(2026, 1, 1, 0, 0)));
    assert_eq!(b(at(2026, 1, 1, 0, 0), 0), (at(2026, 1, 1, 0, 0), at(2026, 2, 1, 0, 0)));
    // Leap February, and not.
    assert_eq!(b(at(2024, 2, 29, 12, 0), 0), (at(2024, 2, 1, 0, 0), at(2024, 3, 1, 0, 0)));
    assert_eq!(b(at(2024, 2, 29, 12, 0), 0).1 - b(at(2024, 2, 29, 12, 0), 0).0, 29 * DAY);
    assert_eq!(b(at(2100, 2, 10, 0, 0), 0).1 - b(at(2100, 2, 10, 0, 0), 0).0, 28 * DAY);
    assert_eq!(b(at(2000, 2, 10, 0, 0), 0).1 - b(at(2000, 2, 10, 0, 0), 0).0, 29 * DAY);
    // +03:00: the month starts at 21:00 UTC the day before.
    let plus3 = 3 * 3600;
    assert_eq!(b(at(2026, 1, 31, 21, 0), plus3), (at(2026, 1, 31, 21, 0), at(2026, 2, 28, 21, 0)));
    assert_eq!(b(at(2026, 1, 31, 20, 59), plus3), (at(2025, 12, 31, 21, 0), at(2026, 1, 31, 21, 0)));
    // -08:00 (the runbook's Los Angeles reset, without daylight saving): 08:00 UTC on the 1st.
    let minus8 = -8 * 3600;
    assert_eq!(b(at(2026, 3, 1, 7, 59), minus8), (at(2026, 2, 1, 8, 0), at(2026, 3, 1, 8, 0)));
    assert_eq!(b(at(2026, 3, 1, 8, 0), minus8), (at(2026, 3, 1, 8, 0), at(2026, 4, 1, 8, 0)));
    // Before 1970 too (negative day numbers).
    assert_eq!(b(at(1969, 12, 15, 0, 0), 0), (at(1969, 12, 1, 0, 0), at(1970, 1, 1, 0, 0)));
}

#[test]
fn day_and_hour_boundaries() {
    let now = at(2026, 1, 30, 23, 30);
    assert_eq!(Period::Day.bounds(now, 0), (at(2026, 1, 30, 0, 0), at(2026, 1, 31, 0, 0)));
    assert_eq!(Period::Day.bounds(now, 3600), (at(2026, 1, 30, 23, 0), at(2026, 1, 31, 23, 0)));
    assert_eq!(Period::Hour.bounds(now, 0), (at(2026, 1, 30, 23, 0), at(2026, 1, 31, 0, 0)));
    // +05:30: hours start at :30 UTC.
    assert_eq!(Period::Hour.bounds(now, 5 * 3600 + 1800), (at(2026, 1, 30, 23, 30), at(2026, 1, 31, 0, 30)));
    // +05:45 (Nepal)
    assert_eq!(Period::Hour.bounds(now, 5 * 3600 + 2700).0, at(2026, 1, 30, 23, 15));
    for p in [Period::Month, Period::Day, Period::Hour] {
        for off in [-12 * 3600, -9000, 0, 3600, 14 * 3600] {
            for now in [0, 1, 1_700_000_000, at(2024, 2, 29, 23, 59) + 59] {
                let (s, e) = p.bounds(now, off);
                assert!(s <= now && now < e, "{p:?} {off} {now}");
            }
        }
    }
}

#[test]
fn offsets_parse() {
    for (s, v) in [
        ("Z", 0),
        ("UTC", 0),
        ("utc", 0),
        ("+00:00", 0),
        ("+03:00", 10_800),
        ("-05:30", -19_800),
        ("+0545", 20_700),
        ("+14:00", 50_400),
        ("-12:00", -43_200),
        ("+03", 10_800),
    ] {
        assert_eq!(parse_offset(s), Ok(v), "{s}");
    }
    for s in
        ["", "3", "+3:00", "+03:60", "+14:30", "-13:00", "03:00", "+03:00:00", "Europe/Istanbul", "+٣:00", "+aé0", "+é"]
    {
        assert!(parse_offset(s).is_err(), "{s}");
    }
    assert_eq!(offset_string(-19_800), "-05:30");
    assert_eq!(offset_string(0), "+00:00");
    assert_eq!(rfc3339(at(2026, 2, 1, 8, 0)), "2026-02-01T08:00:00Z");
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
}

#[test]
fn counter_keys_are_unambiguous() {
    let cases = [("r", "ab", None), ("r", "a", Some("b")), ("ra", "b", None), ("r", "a:b", Some("")), ("", "", None)];
    let keys: Vec<String> = cases.iter().map(|(r, t, s)| counter_key(r, t, *s)).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(parse_key(k), Some(cases[i]));
        for (j, other) in keys.iter().enumerate() {
            assert_eq!(i == j, k == other);
        }
    }
    assert_eq!(parse_key("3:ab"), None);
    assert_eq!(parse_key("1:a1:bx"), None);
}
