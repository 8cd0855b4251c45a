//! What recording one request costs, on the registry's pre-resolved handles, against the
//! hand-rolled atomics it replaced (kept here, verbatim in behaviour, for the comparison), one
//! thread and two threads on the same route; and what a scrape of 50 routes costs.
//!
//! Decision it informs: whether the registry can sit on the request path (issue 22: no lock, no
//! allocation, no regression worth a line in the load benchmark).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis_metrics::{Def, Metrics, Scrape};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The recorder before issue 22: one atomic per class, cause and cumulative bucket.
mod before {
    use super::*;

    const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

    #[derive(Default)]
    struct RouteCounters {
        by_class: [AtomicU64; 5],
        buckets: [AtomicU64; BUCKETS.len()],
        count: AtomicU64,
        sum_micros: AtomicU64,
        by_cause: [AtomicU64; 2],
    }

    pub struct Metrics {
        n: usize,
        routes: Vec<RouteCounters>,
    }

    impl Metrics {
        pub fn new(n: usize) -> Self {
            Self { n, routes: (0..=n).map(|_| RouteCounters::default()).collect() }
        }

        pub fn observe_request(&self, route: Option<usize>, status: u16, failure: bool, elapsed: Duration) {
            let Some(c) = self.routes.get(route.unwrap_or(self.n)) else { return };
            let class = usize::from(status / 100).saturating_sub(1).min(4);
            if let Some(x) = c.by_class.get(class) {
                x.fetch_add(1, Relaxed);
            }
            if (500..600).contains(&status) {
                if let Some(x) = c.by_cause.get(usize::from(!failure)) {
                    x.fetch_add(1, Relaxed);
                }
            }
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    if let Some(x) = c.buckets.get(i) {
                        x.fetch_add(1, Relaxed);
                    }
                }
            }
            c.count.fetch_add(1, Relaxed);
            c.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
        }
    }
}

fn routes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("route-{i}")).collect()
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_one_request");
    // A typical proxied request: 2xx in 1.7 ms (7 of 12 buckets at or above it).
    let elapsed = Duration::from_micros(1700);
    let old = before::Metrics::new(8);
    g.bench_function("before_hand_rolled", |b| {
        b.iter(|| old.observe_request(black_box(Some(3)), black_box(200), false, black_box(elapsed)));
    });
    let Ok(new) = Metrics::new(routes(8), "v".into(), &[]) else { return };
    g.bench_function("after_registry", |b| {
        b.iter(|| new.observe_request(black_box(Some(3)), black_box(200), false, black_box(elapsed)));
    });
    // Two threads recording on the same route (the same cache lines), as two workers would.
    g.bench_function("before_hand_rolled_2_threads", |b| {
        b.iter_custom(|iters| contended(iters, |s| old.observe_request(Some(3), s, false, elapsed)));
    });
    g.bench_function("after_registry_2_threads", |b| {
        b.iter_custom(|iters| contended(iters, |s| new.observe_request(Some(3), s, false, elapsed)));
    });
    g.finish();
}

/// Time for `iters` recordings on this thread while another thread records as fast as it can.
fn contended(iters: u64, f: impl Fn(u16) + Sync) -> Duration {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Relaxed) {
                f(black_box(200));
            }
        });
        let t = std::time::Instant::now();
        for _ in 0..iters {
            f(black_box(200));
        }
        let spent = t.elapsed();
        stop.store(true, Relaxed);
        spent
    })
}

const READY: Def<0> = Def::gauge("portcullis_ready", "1 when /ready answers 200.", []);

fn scrape(c: &mut Criterion) {
    let Ok(m) = Metrics::new(routes(50), "v".into(), &[&READY]) else { return };
    c.bench_function("render_50_routes", |b| {
        b.iter(|| {
            let mut s = Scrape::new();
            s.family(&READY).sample([], true);
            black_box(m.render(s))
        });
    });
}

criterion_group!(benches, record, scrape);
criterion_main!(benches);
