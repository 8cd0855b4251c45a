use super::*;
use proptest::prelude::*;

const SEC: u64 = NANOS_PER_SEC;

fn gcra(count: u64, period_secs: u64, burst: u64) -> Gcra {
    Gcra::new(count, period_secs * SEC, burst).unwrap()
}

#[test]
fn layout() {
    assert_eq!(std::mem::size_of::<Bucket>(), 128);
    assert_eq!(std::mem::size_of::<Shard>(), 64);
}

#[test]
fn burst_then_steady_rate() {
    let s = LimiterStore::new(gcra(100, 60, 100), 1000);
    let t0 = 5 * SEC;
    for i in 0..100 {
        let d = s.check(b"k", t0);
        assert!(d.allowed, "{i}");
        assert_eq!(d.remaining, 99 - i);
        assert_eq!(d.limit, 100);
        assert_eq!(d.retry_after_secs, 0);
    }
    let d = s.check(b"k", t0);
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after_secs, 1); // 0.6 s, rounded up
    assert_eq!(d.reset_after_secs, 60);
    // 0.6 s later one more is allowed, and only one.
    let t1 = t0 + 600 * 1_000_000;
    assert!(s.check(b"k", t1).allowed);
    assert!(!s.check(b"k", t1).allowed);
    // Other keys are independent.
    assert!(s.check(b"other", t1).allowed);
    // After a full period the whole burst is back.
    let t2 = t1 + 60 * SEC;
    let d = s.check(b"k", t2);
    assert!(d.allowed);
    assert_eq!(d.remaining, 99);
}

#[test]
fn small_burst() {
    let s = LimiterStore::new(gcra(10, 1, 2), 16);
    let t = SEC;
    assert!(s.check(b"a", t).allowed);
    assert!(s.check(b"a", t).allowed);
    let d = s.check(b"a", t);
    assert!(!d.allowed);
    assert_eq!(d.retry_after_secs, 1);
    assert!(s.check(b"a", t + SEC / 10).allowed);
}

#[test]
fn gcra_rejects_nonsense() {
    assert!(Gcra::new(0, SEC, 1).is_none());
    assert!(Gcra::new(1, SEC, 0).is_none());
    assert!(Gcra::new(1, 0, 1).is_none());
    assert!(Gcra::new(10, 5, 1).is_none()); // interval < 1 ns
    assert!(Gcra::new(1, 86_400 * SEC, u64::MAX).is_none());
    assert!(Gcra::new(1_000_000_000, SEC, 1).is_some());
}

#[test]
fn expired_keys_are_free_and_sweep_clears_them() {
    let s = LimiterStore::new(gcra(1, 1, 1), 1000);
    for i in 0u32..500 {
        assert!(s.check(&i.to_le_bytes(), SEC).allowed);
    }
    assert_eq!(s.len(), 500);
    // One second later every key is expired: all fresh again.
    for i in 0u32..500 {
        assert!(s.check(&i.to_le_bytes(), 2 * SEC).allowed);
    }
    assert!(s.len() <= 1000, "{}", s.len());
    let grown = s.approx_bytes();
    let held = s.len();
    assert_eq!(s.sweep(10 * SEC), held);
    assert_eq!(s.len(), 0);
    assert!(s.is_empty());
    assert!(s.approx_bytes() < grown, "shrunk: {} < {grown}", s.approx_bytes());
}

#[test]
fn refund_gives_back_one_request() {
    let s = LimiterStore::new(gcra(2, 60, 2), 16);
    let h = s.hash(b"k");
    assert!(s.check_hash(h, SEC).allowed);
    assert!(s.check_hash(h, SEC).allowed);
    assert!(!s.check_hash(h, SEC).allowed);
    s.refund(h, SEC);
    assert!(s.check_hash(h, SEC).allowed);
    assert!(!s.check_hash(h, SEC).allowed);
    // Refunding an unknown key does nothing.
    s.refund(s.hash(b"nope"), SEC);
    assert_eq!(s.len(), 1);
}

#[test]
fn flood_of_unique_keys_stays_under_the_cap() {
    let cap = 10_000;
    let s = LimiterStore::new(gcra(100, 60, 100), cap);
    let before = s.approx_bytes();
    let limit_bytes = before + s.capacity() * 16;
    // The attacker's own key, limited.
    let now = SEC;
    for _ in 0..100 {
        assert!(s.check(b"attacker", now).allowed);
    }
    assert!(!s.check(b"attacker", now).allowed);
    // 150k unique keys at the same instant (random source addresses).
    for i in 0u64..150_000 {
        s.check(&i.to_le_bytes(), now + i);
        if i % 10_000 == 0 {
            assert!(s.len() <= s.capacity());
            assert!(s.approx_bytes() <= limit_bytes);
        }
    }
    assert!(s.capacity() <= cap + 64 * 8, "{}", s.capacity());
    assert!(s.len() <= s.capacity());
    assert!(s.approx_bytes() <= limit_bytes, "{} > {limit_bytes}", s.approx_bytes());
    assert!(s.len() > cap * 8 / 10, "the cap is actually used: {}", s.len());
    // The limited key survived: every flood key has a smaller TAT.
    assert!(!s.check(b"attacker", now + 150_000).allowed);
}

#[test]
fn memory_per_key_is_small() {
    let s = LimiterStore::new(gcra(100, 60, 100), 1_000_000);
    let empty = s.approx_bytes();
    for i in 0u64..100_000 {
        s.check(&i.to_le_bytes(), SEC);
    }
    let per_key = (s.approx_bytes() - empty) as f64 / 100_000.0;
    assert!(per_key < 64.0, "{per_key} bytes per key");
    eprintln!("{per_key:.1} bytes per key");
    assert_eq!(s.len(), 100_000);
    // Under the cap no key was dropped: each one is on its second request.
    for i in (0u64..100_000).step_by(97) {
        assert_eq!(s.check(&i.to_le_bytes(), SEC).remaining, 98, "{i}");
    }
}

#[test]
fn the_cap_is_nearly_all_usable() {
    let s = LimiterStore::new(gcra(100, 60, 100), 100_000);
    let fill = s.capacity() as u64 * 9 / 10;
    for i in 0..fill {
        s.check(&i.to_le_bytes(), SEC);
    }
    assert!(s.len() as u64 >= fill * 99 / 100, "{} of {fill}", s.len());
    // Half full: nothing is lost.
    let s = LimiterStore::new(gcra(100, 60, 100), 1000);
    for i in 0u32..500 {
        s.check(&i.to_le_bytes(), SEC);
    }
    assert_eq!(s.len(), 500);
}

#[test]
fn tiny_caps_hold() {
    for cap in [1, 2, 7, 8, 9, 100, 255, 256, 257, 1000] {
        let s = LimiterStore::new(gcra(1, 60, 1), cap);
        for i in 0u32..5000 {
            s.check(&i.to_le_bytes(), SEC);
        }
        assert!(s.len() <= s.capacity(), "{cap}");
        assert!(s.capacity() <= cap + 64 * 8 && s.capacity() >= cap, "{cap}: {}", s.capacity());
    }
}

#[test]
fn concurrent_checks_count_exactly() {
    let s = std::sync::Arc::new(LimiterStore::new(gcra(1000, 60, 1000), 1000));
    let allowed: usize = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                scope.spawn(move || (0..500).filter(|_| s.check(b"shared", SEC).allowed).count())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(allowed, 1000);
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LimiterStore>();
}

proptest! {
    /// Over any window [a, b] of one key, allowed requests ≤ burst + ⌊(b − a) / T⌋.
    #[test]
    fn never_more_than_burst_plus_rate(
        count in 1u64..50,
        period_ms in 1u64..5_000,
        burst in 1u64..20,
        gaps in proptest::collection::vec(0u64..400_000_000, 1..300),
    ) {
        let Some(g) = Gcra::new(count, period_ms * 1_000_000, burst) else { return Ok(()) };
        let s = LimiterStore::new(g, 64);
        let mut now = SEC;
        let mut allowed = Vec::new();
        for gap in gaps {
            now += gap;
            if s.check(b"k", now).allowed {
                allowed.push(now);
            }
        }
        for (i, &a) in allowed.iter().enumerate() {
            for (j, &b) in allowed.iter().enumerate().skip(i) {
                let n = (j - i + 1) as u64;
                prop_assert!(n <= burst + (b - a) / g.interval_ns(), "{n} allowed in {} ns", b - a);
            }
        }
    }

    /// A key that keeps to the rate is never refused.
    #[test]
    fn conforming_traffic_is_never_refused(count in 1u64..100, period_s in 1u64..100, burst in 1u64..10) {
        let g = Gcra::new(count, period_s * SEC, burst).unwrap();
        let s = LimiterStore::new(g, 64);
        let mut now = SEC;
        for _ in 0..200 {
            prop_assert!(s.check(b"k", now).allowed);
            now += g.interval_ns();
        }
    }
}
