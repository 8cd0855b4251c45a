//! Decision this informs: an SSRF rule reads every URL a request carries with a full WHATWG URL
//! parse (IDNA, IPv4 number forms) rather than a regex. Is that cheap enough per request? Measured
//! on a request with three URL parameters: all public (the common case, every value parsed and
//! passed), one an internal target (the refusal, building the finding), with an `allow_hosts`
//! list, and the same three URLs in a JSON body; plus `scan: all_urls` over that query and a
//! query with no URL at all (the cost of deciding a value is not URL-like).
//!
//! Run: `cargo bench -p portcullis-benches --bench ssrf` (add `-- --quick` for a smoke run).

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use portcullis_rules::rulefile::{compile, Snapshot, SourceFile};
use portcullis_rules::tenant::BodyInput;
use portcullis_rules::verdict::Outcome;
use portcullis_rules::view::RequestView;
use std::hint::black_box;

// A bench whose fixture does not compile must stop loudly, not measure nothing.
#[allow(clippy::panic)]
fn snapshot(rules: &str) -> Snapshot {
    match compile(&[SourceFile::new("bench.yaml", format!("version: 1\nssrf:\n{rules}"))]) {
        Ok(s) => s,
        Err(e) => panic!("bench rules do not compile: {e:?}"),
    }
}

fn view<'a>(h: &'a HeaderMap, query: Option<&'a str>) -> RequestView<'a> {
    RequestView {
        method: "POST",
        path: "/api/hooks",
        query,
        host: Some("app.example.com"),
        route: Some("api"),
        channel: None,
        client_ip: None,
        headers: h,
    }
}

const CLEAN: &str = "url=https%3A%2F%2Fhooks.example.com%2Fv1%2Fdeliver%3Fid%3D42&callback=https%3A%2F%2Fapi.partner.example%2Fcb&avatar=https%3A%2F%2Fcdn.example.com%2Fu%2F9.png";
const BAD: &str = "url=https%3A%2F%2Fhooks.example.com%2Fv1%2Fdeliver%3Fid%3D42&callback=http%3A%2F%2F0xa9fea9fe%2Flatest&avatar=https%3A%2F%2Fcdn.example.com%2Fu%2F9.png";
const JSON: &[u8] = br#"{"url": "https://hooks.example.com/v1/deliver?id=42", "callback": "https://api.partner.example/cb", "avatar": "https://cdn.example.com/u/9.png", "name": "x"}"#;

fn bench(c: &mut Criterion) {
    let h = HeaderMap::new();
    let params = snapshot("  - id: r\n    params: [url, callback, avatar]\n");
    let allow = snapshot(
        "  - id: r\n    params: [url, callback, avatar]\n    allow_hosts: [hooks.example.com, '*.partner.example', cdn.example.com]\n",
    );
    let fields = snapshot("  - id: r\n    fields: [url, callback, avatar]\n");
    let scan = snapshot("  - id: r\n    scan: all_urls\n");

    let mut g = c.benchmark_group("ssrf_check");
    let run = |s: &Snapshot, q: Option<&str>, body: BodyInput<'_>| {
        let mut out = Outcome::default();
        let flow = s.ssrf.check(black_box(&view(&h, q)), body, &mut out);
        black_box((flow, out))
    };
    g.bench_function("params_3_urls_clean", |b| b.iter(|| run(&params, Some(CLEAN), BodyInput::NotBuffered)));
    g.bench_function("params_3_urls_one_internal", |b| b.iter(|| run(&params, Some(BAD), BodyInput::NotBuffered)));
    g.bench_function("params_3_urls_allowlist", |b| b.iter(|| run(&allow, Some(CLEAN), BodyInput::NotBuffered)));
    g.bench_function("json_3_urls_clean", |b| b.iter(|| run(&fields, None, BodyInput::Bytes(JSON))));
    g.bench_function("scan_3_urls_clean", |b| b.iter(|| run(&scan, Some(CLEAN), BodyInput::NotBuffered)));
    g.bench_function("scan_no_urls", |b| {
        b.iter(|| run(&scan, Some("page=2&sort=date&q=red+shoes&id=2130706433"), BodyInput::NotBuffered))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
