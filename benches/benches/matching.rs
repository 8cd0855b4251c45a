//! Decision this informs (issue 25): can client-address sets (threat feeds of up to 1M CIDRs) and
//! route tables (up to 10k routes) be matched on every request at near-constant cost? Targets: an
//! IP set lookup < 200 ns at 1M entries, a compile of 1M entries < 1 s (off the request path),
//! route lookup independent of the route count within a small factor.
//!
//! Run: `cargo bench -p portcullis-benches --bench matching` (add `-- --quick` for a smoke run).
//! The memory per entry is printed once (`ipset memory: …`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis_rules::ipset::{parse_list, IpSet};
use portcullis_rules::routes::{Entry, HostMatch, RouteTable};
use portcullis_rules::rulefile::{compile_with, AssetRef, Env, SourceFile};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// xorshift64*: a fixed, dependency-free sequence, so every run measures the same sets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A feed of `n` entries, 3/4 IPv4 (/16 to /32, mostly /24 and hosts, like DROP and FireHOL
/// level lists) and 1/4 IPv6 (/32 to /64 and hosts), with a Spamhaus-style comment on every
/// tenth line.
fn feed(n: usize, rng: &mut Rng) -> String {
    let mut text = String::with_capacity(n * 24);
    for i in 0..n {
        let r = rng.next();
        if i % 4 == 3 {
            let a = u128::from(r) << 64 | u128::from(rng.next());
            let len = [32u8, 48, 56, 64, 128][(r % 5) as usize];
            let net = Ipv6Addr::from(a & (!0u128 << (128 - u32::from(len))));
            text.push_str(&format!("{net}/{len}"));
        } else {
            let len = [16u8, 20, 24, 24, 24, 32, 32][(r % 7) as usize];
            let a = (r >> 32) as u32 & (!0u32 << (32 - u32::from(len)));
            text.push_str(&format!("{}/{len}", Ipv4Addr::from(a)));
        }
        if i % 10 == 0 {
            text.push_str(&format!(" ; SBL{i}"));
        }
        text.push('\n');
    }
    text
}

/// Addresses to look up: half IPv4, a quarter IPv6, a quarter IPv4-mapped IPv6.
fn probes(rng: &mut Rng) -> Vec<IpAddr> {
    (0..4096)
        .map(|i| {
            let r = rng.next();
            match i % 4 {
                0 | 1 => IpAddr::V4(Ipv4Addr::from((r >> 32) as u32)),
                2 => IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | u128::from(rng.next()))),
                _ => IpAddr::V6(Ipv4Addr::from((r >> 32) as u32).to_ipv6_mapped()),
            }
        })
        .collect()
}

// A bench whose fixture does not build must stop loudly, not measure nothing.
#[allow(clippy::panic)]
fn list(text: &str) -> (IpSet, usize) {
    match parse_list(text.as_bytes(), 20) {
        Ok(l) => (l.set, l.entries),
        Err(e) => panic!("bench feed does not parse: {e:?}"),
    }
}

fn ipsets(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let probes = probes(&mut rng);
    let mut group = c.benchmark_group("ipset_lookup");
    for n in [1usize, 1_000, 100_000, 1_000_000] {
        let text = feed(n, &mut rng);
        let (set, entries) = list(&text);
        if n == 1_000_000 {
            println!(
                "ipset memory: {entries} entries, {} ranges, {} bytes ({:.1} bytes per entry)",
                set.ranges(),
                set.heap_bytes(),
                set.heap_bytes() as f64 / entries as f64
            );
        }
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(set.contains(black_box(probes[i])))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("ipset_compile");
    group.sample_size(10);
    let text = feed(1_000_000, &mut rng);
    group.bench_function("parse_list_1M", |b| b.iter(|| black_box(list(black_box(&text)).1)));
    // What a reload of a rule naming a 1M-entry list compiles (the gateway adds reading the file
    // and hashing it for the version check).
    let rule =
        [SourceFile::new("feed.yaml", "version: 1\nfirewall:\n  - id: drop\n    match: {client_ips_file: drop.txt}\n")];
    let resolve = |_: &AssetRef| Ok(text.as_bytes().to_vec());
    let env = Env { routes: None, assets: Some(&resolve), sinks: None };
    group.bench_function("rules_compile_with_1M_list", |b| {
        b.iter(|| black_box(compile_with(black_box(&rule), &env).is_ok()))
    });
    group.finish();
}

/// `n` routes: one prefix per service (`/svc{i}/api`), a quarter on tenant hosts, a quarter on
/// wildcards, and a default.
fn table(n: usize) -> RouteTable<usize> {
    let mut entries = vec![Entry { hosts: vec![HostMatch::Any], prefix: "/".into(), value: 0 }];
    for i in 1..n {
        let hosts = match i % 4 {
            0 => vec![HostMatch::Exact(format!("t{i}.example.com"))],
            1 => vec![HostMatch::Suffix(format!(".r{i}.example.com"))],
            _ => vec![HostMatch::Any],
        };
        entries.push(Entry { hosts, prefix: format!("/svc{i}/api"), value: i });
    }
    RouteTable::new(entries)
}

fn routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_find");
    for n in [10usize, 1_000, 10_000] {
        let t = table(n);
        let last_any = (1..n).rev().find(|i| i % 4 >= 2).unwrap_or(0);
        let path = format!("/svc{last_any}/api/v1/orders/42");
        group.bench_with_input(BenchmarkId::new("last_route", n), &path, |b, p| {
            b.iter(|| black_box(t.find(black_box(Some("app.example.com")), black_box(p))))
        });
        group.bench_function(BenchmarkId::new("default_route", n), |b| {
            b.iter(|| black_box(t.find(black_box(Some("app.example.com")), black_box("/unknown/x/y"))))
        });
    }
    group.finish();
}

criterion_group!(benches, ipsets, routes);
criterion_main!(benches);
