//! Decision this informs: the per-request work before any security rule runs — judging framing
//! on the raw head (a second `httparse` pass ahead of Pingora's own) and picking the route with a
//! linear scan — must stay well under a microsecond, or it needs a smarter structure (a second
//! parse shared with Pingora, a prefix trie for routes).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis_rules::framing::{check_head, HeaderLimits};
use portcullis_rules::routes::{Entry, HostMatch, RouteTable};

const HEAD: &[u8] = b"GET /api/business/42/orders?page=2 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\nAccept-Language: en-GB,en;q=0.9\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc\r\nCookie: session=0123456789abcdef\r\nX-Request-Id: 0193a8f2c1d24e7fa3b0c9d1e2f30411\r\n\r\n";

fn table(n: usize) -> RouteTable<usize> {
    let mut entries: Vec<Entry<usize>> =
        (0..n).map(|i| Entry { hosts: vec![HostMatch::Any], prefix: format!("/svc{i}/v1"), value: i }).collect();
    entries.push(Entry { hosts: vec![HostMatch::Any], prefix: "/api/business".into(), value: n });
    entries.push(Entry { hosts: vec![HostMatch::Any], prefix: "/".into(), value: n + 1 });
    RouteTable::new(entries)
}

fn bench(c: &mut Criterion) {
    let limits = HeaderLimits::default();
    c.bench_function("framing/check_head_typical_9_headers", |b| b.iter(|| check_head(black_box(HEAD), limits)));
    for n in [8usize, 64] {
        let t = table(n);
        c.bench_function(&format!("routes/find_{n}_routes"), |b| {
            b.iter(|| t.find(black_box(Some("app.example.com")), black_box("/api/business/42/orders")))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
