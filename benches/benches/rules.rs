//! Decision this informs: the request firewall runs on every request, before identity and tenant
//! scope. Is `Firewall::check` cheap enough for that on a clean request (the common case, which
//! must not allocate), how does its cost grow with the number of rules (1, 10, 100, 10k: the
//! prefilter by route, method, literal paths, IP set and regex sets must keep 10k rules within 2×
//! one rule, issue 25), and what does a match cost (building the finding)? Also: how long does compiling the shipped rule file take, i.e. what a reload costs.
//!
//! Run: `cargo bench -p portcullis-benches --bench rules` (add `-- --quick` for a smoke run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue};
use portcullis_rules::rulefile::{compile, Snapshot, SourceFile};
use portcullis_rules::verdict::Outcome;
use portcullis_rules::view::RequestView;
use std::hint::black_box;
use std::net::IpAddr;

const SHIPPED: &str = include_str!("../../config/rules/firewall.yaml");

/// `n` rules cycling through every criterion, none of which matches the clean request below.
fn rules(n: usize) -> String {
    let mut text = String::from("version: 1\nfirewall:\n");
    for i in 0..n {
        let m = match i % 7 {
            0 => format!("{{client_ips: [203.0.{}.0/24, '2001:db8:{i:x}::/48', 198.51.100.{}]}}", i % 256, i % 256),
            1 => format!("{{routes: [internal{i}], methods: [DELETE]}}"),
            2 => format!("{{methods: [PUT, PATCH], paths: [/admin{i}, /api/internal{i}]}}"),
            3 => format!("{{path_regex: '^/api/[^/]+/export{i}$'}}"),
            4 => format!("{{headers: {{user-agent: '(?i)\\b(?:sqlmap|nikto|masscan|zgrab)/|scanner{i}'}}}}"),
            5 => format!("{{query_regex: '(?i)union\\s+select|sleep\\({i}\\)'}}"),
            _ => format!("{{routes: [api], headers: {{x-debug{i}: '.'}}, paths: [/api/debug]}}"),
        };
        text.push_str(&format!("  - id: rule-{i}\n    match: {m}\n"));
    }
    text
}

// A bench whose fixture does not compile must stop loudly, not measure nothing.
#[allow(clippy::panic)]
fn snapshot(text: String) -> Snapshot {
    match compile(&[SourceFile::new("bench.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("bench rules do not compile: {e:?}"),
    }
}

fn headers(ua: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("app.example.com"));
    h.insert("user-agent", HeaderValue::from_static(ua));
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert("authorization", HeaderValue::from_static("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc"));
    h.insert("cookie", HeaderValue::from_static("session=0123456789abcdef"));
    h
}

fn view<'a>(h: &'a HeaderMap, query: Option<&'a str>, ip: IpAddr) -> RequestView<'a> {
    RequestView {
        method: "GET",
        path: "/api/business/42/orders",
        query,
        host: Some("app.example.com"),
        route: Some("api"),
        channel: None,
        client_ip: Some(ip),
        headers: h,
    }
}

fn bench(c: &mut Criterion) {
    let clean_headers = headers("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0");
    let ip: IpAddr = [192, 0, 2, 10].into();

    let mut group = c.benchmark_group("firewall_check");
    for n in [1usize, 10, 100, 10_000] {
        let s = snapshot(rules(n));
        let clean = view(&clean_headers, Some("page=2&sort=date"), ip);
        group.bench_with_input(BenchmarkId::new("clean", n), &clean, |b, v| {
            b.iter(|| {
                let mut out = Outcome::default();
                let flow = s.firewall.check(black_box(v), &mut out);
                black_box((flow, out.is_clean()))
            })
        });
        // A clean query that holds `%`: query_regex rules also try the decoded form (one
        // allocation per request).
        let encoded = view(&clean_headers, Some("q=caf%C3%A9+au+lait&page=2"), ip);
        group.bench_with_input(BenchmarkId::new("clean_encoded_query", n), &encoded, |b, v| {
            b.iter(|| {
                let mut out = Outcome::default();
                black_box(s.firewall.check(black_box(v), &mut out))
            })
        });
    }
    // A request the last of 100 rules matches (worst case for a match: every rule is tried).
    let mut text = rules(100);
    text.push_str("  - id: last\n    match: {client_ips: [192.0.2.0/24], methods: [GET]}\n");
    let s = snapshot(text);
    let v = view(&clean_headers, None, ip);
    group.bench_function("match_last_of_101", |b| {
        b.iter(|| {
            let mut out = Outcome::default();
            black_box(s.firewall.check(black_box(&v), &mut out))
        })
    });
    // The shipped rules against an attack tool.
    let s = snapshot(SHIPPED.to_string());
    let scanner = headers("sqlmap/1.8#stable (https://sqlmap.org)");
    let v = view(&scanner, None, ip);
    group.bench_function("shipped_match_sqlmap", |b| {
        b.iter(|| {
            let mut out = Outcome::default();
            black_box(s.firewall.check(black_box(&v), &mut out))
        })
    });
    let v = view(&clean_headers, None, ip);
    group.bench_function("shipped_clean", |b| {
        b.iter(|| {
            let mut out = Outcome::default();
            black_box(s.firewall.check(black_box(&v), &mut out))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("rules_compile");
    let shipped = [SourceFile::new("config/rules/firewall.yaml", SHIPPED)];
    group.bench_function("shipped_firewall_yaml", |b| b.iter(|| black_box(compile(black_box(&shipped)).is_ok())));
    let hundred = [SourceFile::new("bench.yaml", rules(100))];
    group.sample_size(20);
    group.bench_function("100_rules", |b| b.iter(|| black_box(compile(black_box(&hundred)).is_ok())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
