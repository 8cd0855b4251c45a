//! Decision this informs: the keyed rate limiter runs on every request of every limited route,
//! and its key space is chosen by clients (a flood of random source addresses is one unique key
//! per request). Is our own keyed GCRA (`portcullis_rules::limits::LimiterStore`: 64-bit keyed
//! hashes in two-choice 8-way buckets, sharded behind `parking_lot` mutexes, bounded with
//! eviction) at least as fast as `governor`'s keyed limiter (`DashMap<K, AtomicU64>`, the usual
//! Rust choice, unbounded: it only shrinks when `retain_recent` scans it) — under 100 ns per
//! check with 1, 10k and 1M keys, single-threaded and with 2 threads contending — and does it
//! hold a key in under 200 bytes? If governor won on both speed and bytes per key we would use
//! it and add the bound around it.
//!
//! Both limiters get the same keys (8 bytes; governor keyed by the `u64`, hashed by DashMap's
//! SipHash like ours) and the same time: a fake clock, advanced by 1 ms every 1024 checks, so
//! neither pays for reading a clock (the gateway reads one per request for all its rules; one
//! `governor/default-clock` line shows governor with its own quanta clock). The runbook rate,
//! 100 per 60 s per key with a burst of 100.
//!
//! Bytes per key are measured in a child process each (resident memory before and after
//! inserting the keys), and for ours also from `approx_bytes` (exact table sizes). A last child
//! run floods each limiter with 3M never-seen keys (random source addresses): time per check and
//! memory at the end, ours at its default bound, governor without one.
//!
//! Run: `cargo bench -p portcullis-benches --bench ratelimit` (add `-- --quick` for a smoke run).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use portcullis_rules::limits::gcra::DEFAULT_MAX_KEYS;
use portcullis_rules::limits::{Gcra, LimiterStore};

const SEC: u64 = 1_000_000_000;
/// Keys are `i × K` (a bijection on u64): consecutive checks hit unrelated keys.
const K: u64 = 0x9e37_79b9_7f4a_7c15;
const SIZES: [(u64, &str); 3] = [(1, "1"), (10_000, "10k"), (1_000_000, "1M")];
/// Time advances 1 ms per this many checks.
const TICK: u64 = 1024;

fn ours(max_keys: usize) -> Option<LimiterStore> {
    Some(LimiterStore::new(Gcra::new(100, 60 * SEC, 100)?, max_keys))
}

type Governor = RateLimiter<
    u64,
    governor::state::keyed::DashMapStateStore<u64>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

fn quota() -> Option<Quota> {
    let n = NonZeroU32::new(100)?;
    Some(Quota::per_minute(n).allow_burst(n))
}

fn theirs() -> Option<(Governor, FakeRelativeClock)> {
    let clock = FakeRelativeClock::default();
    Some((RateLimiter::dashmap_with_clock(quota()?, clock.clone()), clock))
}

/// Checks `iters` keys `start, start + step, …` (mod `n`) on ours; returns the elapsed time.
fn run_ours(s: &LimiterStore, n: u64, start: u64, step: u64, iters: u64, t0: u64) -> Duration {
    let begin = Instant::now();
    let mut now = t0;
    let mut i = start;
    for j in 0..iters {
        if j % TICK == 0 {
            now += 1_000_000;
        }
        let key = (i % n).wrapping_mul(K);
        black_box(s.check(&key.to_le_bytes(), now));
        i += step;
    }
    begin.elapsed()
}

fn run_theirs(g: &Governor, clock: &FakeRelativeClock, n: u64, start: u64, step: u64, iters: u64) -> Duration {
    let begin = Instant::now();
    let mut i = start;
    for j in 0..iters {
        if j % TICK == 0 {
            clock.advance(Duration::from_millis(1));
        }
        let key = (i % n).wrapping_mul(K);
        let _ = black_box(g.check_key(&key));
        i += step;
    }
    begin.elapsed()
}

fn single(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/single");
    group.throughput(Throughput::Elements(1));
    for (n, name) in SIZES {
        if let Some(s) = ours(2_000_000) {
            run_ours(&s, n, 0, 1, n, SEC); // every key present
            let mut t = SEC;
            group.bench_function(BenchmarkId::new("portcullis", name), |b| {
                b.iter_custom(|iters| {
                    t += 3600 * SEC; // a fresh hour: the same mix of allowed and refused each sample
                    run_ours(&s, n, 0, 1, iters, t)
                })
            });
        }
        if let Some((g, clock)) = theirs() {
            run_theirs(&g, &clock, n, 0, 1, n);
            group.bench_function(BenchmarkId::new("governor", name), |b| {
                b.iter_custom(|iters| {
                    clock.advance(Duration::from_secs(3600));
                    run_theirs(&g, &clock, n, 0, 1, iters)
                })
            });
        }
    }
    if let Some(q) = quota() {
        let g = RateLimiter::<u64, _, _>::dashmap(q);
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("governor/default-clock", "10k"), |b| {
            b.iter(|| {
                i += 1;
                g.check_key(&((i % 10_000).wrapping_mul(K))).is_ok()
            })
        });
    }
    group.finish();
}

/// Two threads checking at once: on disjoint halves of the keys, and all on one key (the worst
/// case: one lock, or one atomic, for both). The time is per check per thread.
fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/contended-2-threads");
    group.throughput(Throughput::Elements(1));
    let sizes = [(1u64, "1 shared key"), (10_000, "10k"), (1_000_000, "1M")];
    for (n, name) in sizes {
        let step = if n == 1 { 1 } else { 2 };
        if let Some(s) = ours(2_000_000).map(Arc::new) {
            run_ours(&s, n, 0, 1, n, SEC);
            let mut t = SEC;
            group.bench_function(BenchmarkId::new("portcullis", name), |b| {
                b.iter_custom(|iters| {
                    t += 3600 * SEC;
                    let t0 = t;
                    std::thread::scope(|scope| {
                        let hs: Vec<_> = (0..2u64)
                            .map(|th| {
                                let s = &s;
                                scope.spawn(move || run_ours(s, n, th, step, iters, t0))
                            })
                            .collect();
                        hs.into_iter().filter_map(|h| h.join().ok()).max().unwrap_or_default()
                    })
                })
            });
        }
        if let Some((g, clock)) = theirs() {
            run_theirs(&g, &clock, n, 0, 1, n);
            group.bench_function(BenchmarkId::new("governor", name), |b| {
                b.iter_custom(|iters| {
                    clock.advance(Duration::from_secs(3600));
                    std::thread::scope(|scope| {
                        let hs: Vec<_> = (0..2u64)
                            .map(|th| {
                                let (g, clock) = (&g, &clock);
                                scope.spawn(move || run_theirs(g, clock, n, th, step, iters))
                            })
                            .collect();
                        hs.into_iter().filter_map(|h| h.join().ok()).max().unwrap_or_default()
                    })
                })
            });
        }
    }
    group.finish();
}

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

const CHILD: &str = "PORTCULLIS_RATELIMIT_CHILD";

/// In a child process: `fill` inserts `n` keys into a limiter big enough for all of them;
/// `flood` sends `n` never-seen keys to a limiter as the gateway would configure it (ours: the
/// default `max_keys`, 100000). Prints `<resident bytes added> <approx_bytes added> <ns per check>`.
fn child(which: &str, mode: &str, n: u64) {
    let before = rss();
    let max_keys = if mode == "flood" { DEFAULT_MAX_KEYS } else { 2_000_000 };
    match which {
        "portcullis" => {
            if let Some(s) = ours(max_keys) {
                let empty = s.approx_bytes() as u64;
                let took = run_ours(&s, n, 0, 1, n, SEC);
                let exact = s.approx_bytes() as u64 - empty;
                println!("{} {exact} {}", rss().saturating_sub(before), took.as_nanos() as u64 / n);
                black_box(&s);
            }
        }
        _ => {
            if let Some((g, clock)) = theirs() {
                let took = run_theirs(&g, &clock, n, 0, 1, n);
                println!("{} 0 {}", rss().saturating_sub(before), took.as_nanos() as u64 / n);
                black_box(&g);
            }
        }
    }
}

/// Runs [`child`] in a fresh process: `(resident bytes, exact bytes, ns per check)`.
fn in_child(which: &str, mode: &str, n: u64) -> Option<(f64, f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe).env(CHILD, format!("{which} {mode} {n}")).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let nums: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match nums[..] {
        [rss, exact, ns] => Some((rss, exact, ns)),
        _ => None,
    }
}

fn memory_report() {
    println!(
        "\nbytes per key, n keys inserted (resident memory of a child process; ours also exact from approx_bytes):"
    );
    for (n, name) in [(10_000u64, "10k"), (1_000_000, "1M")] {
        for which in ["portcullis", "governor"] {
            if let Some((rss, exact, _)) = in_child(which, "fill", n) {
                let exact = if exact > 0.0 { format!(", exact {:.1}", exact / n as f64) } else { String::new() };
                println!("  {which:>10} {name:>3} keys: {:.1} B/key resident{exact}", rss / n as f64);
            }
        }
    }
    let n = 3_000_000u64;
    println!("flood of {n} never-seen keys (ours at the default max_keys {DEFAULT_MAX_KEYS}; governor unbounded):");
    for which in ["portcullis", "governor"] {
        if let Some((rss, _, ns)) = in_child(which, "flood", n) {
            println!("  {which:>10}: {ns:.0} ns per check, {:.1} MB resident at the end", rss / 1e6);
        }
    }
    if let Some(s) = ours(DEFAULT_MAX_KEYS) {
        println!(
            "  portcullis, empty store (default max_keys): {} bytes; holds at most {} keys",
            s.approx_bytes(),
            s.capacity()
        );
    }
    println!();
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let mut it = spec.split_whitespace();
        if let (Some(which), Some(mode), Some(n)) = (it.next(), it.next(), it.next().and_then(|n| n.parse().ok())) {
            child(which, mode, n);
        }
        return;
    }
    memory_report();
    let mut c = Criterion::default().configure_from_args();
    single(&mut c);
    contended(&mut c);
    c.final_summary();
}
