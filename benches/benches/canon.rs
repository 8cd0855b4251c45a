//! Decision this informs: the canonicaliser runs once per request on the hot path; this tells
//! whether the borrowed fast path for already-canonical paths matters and what an attack-shaped
//! path costs (a rejected path must not be more expensive than a served one).
//!
//! Run: `cargo bench -p portcullis-benches --bench canon` (add `-- --quick` for a smoke run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use portcullis_rules::canon::canonicalize;
use std::borrow::Cow;
use std::hint::black_box;

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    // 2 KiB of ordinary, already-canonical segments.
    let mut long = Vec::with_capacity(2048);
    while long.len() < 2048 - 12 {
        long.extend_from_slice(b"/segment-123");
    }
    long.resize(2048, b'x');
    // The same length, but every segment needs decoding (and the result is owned).
    let mut long_decode = Vec::with_capacity(2048);
    while long_decode.len() < 2048 - 14 {
        long_decode.extend_from_slice(b"/%73egment//./");
    }
    long_decode.resize(2048, b'x');
    vec![
        ("canonical", b"/api/business/42/orders".to_vec()),
        ("needs_decoding", b"/api/%62usiness//42/./orders".to_vec()),
        ("long_2k_canonical", long),
        ("long_2k_decoding", long_decode),
        ("attack_rejected", b"/api/%2e%2e/%2E%2E/..;/%c0%ae%c0%ae/admin".to_vec()),
        ("attack_late_reject", b"/api/v1/users/42/orders/%2e%2e/%2e%2e/%252e%252e/admin".to_vec()),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonicalize");
    for (name, input) in inputs() {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| {
                let r = canonicalize(black_box(input));
                black_box(r.is_ok())
            })
        });
    }
    // The counterfactual for the borrowed fast path: the same canonical path, always allocating.
    let typical: &[u8] = b"/api/business/42/orders";
    group.throughput(Throughput::Bytes(typical.len() as u64));
    group.bench_function("canonical_if_always_owned", |b| {
        b.iter(|| black_box(canonicalize(black_box(typical)).map(Cow::into_owned)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
