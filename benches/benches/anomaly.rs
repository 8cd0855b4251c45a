//! Decision this informs: anomaly zones score every request that passed the checks, on the
//! request path, under a shard lock. Is one score cheap enough (< 1 µs)? Measured: one
//! `Scorer::observe` with all five features on (a rule like the documented example), for a key
//! with a full history (a session browsing many endpoints; an enumeration walking ids), and for a
//! flood of new keys (each request a new session: the insert and forgetting the oldest).
//!
//! Run: `cargo bench -p portcullis-benches --bench anomaly` (add `-- --quick` for a smoke run).

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_rules::anomaly::{Features, Scorer};
use portcullis_rules::rulefile::{compile, SourceFile};
use std::hint::black_box;

const RULE: &str = "version: 1\nanomaly:\n  - id: r\n    key: session\n    features:\n      velocity: { weight: 1, window: 10s, max_requests: 50 }\n      sequential: { weight: 3, window: 1m, min_run: 5 }\n      breadth: { weight: 1, window: 1m, max_groups: 20 }\n      timing: { weight: 2, intervals: 8, max_cv: 0.1 }\n      auth_failures: { weight: 3, streak: 5 }\n    amber: 3\n    red: 6\n";

// A bench whose fixture does not compile must stop loudly, not measure nothing.
#[allow(clippy::panic)]
fn features() -> Features {
    match compile(&[SourceFile::new("bench.yaml", RULE)]) {
        Ok(s) => match s.anomaly.rules().first() {
            Some(r) => r.features.clone(),
            None => panic!("no anomaly rule"),
        },
        Err(e) => panic!("bench rules do not compile: {e:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let f = features();
    let paths: Vec<String> = (0..40).map(|i| format!("/api/group{i}/items")).collect();
    let mut g = c.benchmark_group("anomaly_observe");
    g.bench_function("browsing_40_groups", |b| {
        let mut s = Scorer::default();
        let (mut t, mut i) = (0u64, 0usize);
        b.iter(|| {
            t += 137;
            i = (i + 1) % paths.len();
            black_box(s.observe(&f, black_box("sess-4f2a"), t, &paths[i], None))
        })
    });
    let ids: Vec<String> = (0..10_000).map(|i| format!("/api/rto/{}", 100_000 + i)).collect();
    g.bench_function("enumerating_ids", |b| {
        let mut s = Scorer::default();
        let (mut t, mut i) = (0u64, 0usize);
        b.iter(|| {
            t += 200;
            i = (i + 1) % ids.len();
            black_box(s.observe(&f, black_box("sess-4f2a"), t, &ids[i], None))
        })
    });
    let keys: Vec<String> = (0..200_000).map(|i| format!("sess-{i:08x}")).collect();
    g.bench_function("new_key_flood", |b| {
        let mut s = Scorer::with_capacity(3125);
        let (mut t, mut i) = (0u64, 0usize);
        b.iter(|| {
            t += 1;
            i = (i + 1) % keys.len();
            black_box(s.observe(&f, &keys[i], t, "/api/orders", None))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
