//! Decision this informs: can the gateway scan every textual upstream response for PII inline —
//! buffered and scanned whole when a detector blocks, streamed and redacted otherwise — at a cost
//! small next to the proxying itself, with the built-in detectors as one hand-written byte pass
//! (digit runs and `@` as anchors, validators only on candidates) instead of a regex set? Targets
//! (MB/s per core, whole-body scan): >= 500 on typical JSON, >= 150 on digit-heavy JSON, non-ASCII
//! text within 2x of ASCII, a 16 KiB body in well under 50 us. The `stream` rows show what
//! streaming redaction adds (copying out, the overlap window, the JSON tracker); the `custom` rows
//! what two custom regex detectors (one more lazy-DFA pass) add. The `adversarial` rows (a body
//! of nothing but anchors and near misses, a validated candidate every 50 bytes) bound the worst
//! case: slow in absolute terms, but linear (no input makes the cost grow faster than the body;
//! what drops from 16 KiB to 256 KiB is the cache, flat from there).
//!
//! Bodies are generated deterministically (a fixed-seed LCG): typical API JSON (user records with
//! Turkish names, addresses, timestamps, UUIDs; about one record in four carries a TCKN, an IBAN,
//! a card, a phone or an email), the same records with ASCII-only names, digit-heavy JSON
//! (ids, millisecond timestamps, amounts, coordinates, arrays of numbers, 10- and 11-digit ids
//! that are not PII), and Turkish/English prose with occasional PII; at 1 KiB, 16 KiB, 256 KiB.
//!
//! Run: `cargo bench -p portcullis-benches --bench pii` (add `-- --quick` for a smoke run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use portcullis_benches::Lcg;
use portcullis_rules::pii::PiiPolicy;
use portcullis_rules::rulefile::{compile, Snapshot, SourceFile};
use std::hint::black_box;

/// The runbook's policy: bank and card numbers block, identity numbers and phones are redacted,
/// emails monitored, the known false positives excluded.
const POLICY: &str = "version: 1
pii:
  - id: no-pii-leaks
    detectors: {iban: block, card: block, tckn: redact, vkn: redact, ssn: redact, email: monitor, phone: redact}
    exclude:
      prefixes: [SIP-, REF-, ORD-]
      json_keys: [order_id, trace_id]
";

/// The same, all redacting (what the streaming rows run).
const REDACT: &str = "version: 1
pii:
  - id: redact-all
    detectors: {iban: redact, card: redact, tckn: redact, vkn: redact, ssn: redact, email: redact, phone: redact}
    exclude:
      prefixes: [SIP-, REF-, ORD-]
      json_keys: [order_id, trace_id]
";

const CUSTOM: &str = "version: 1
pii:
  - id: with-custom
    detectors: {iban: block, card: block, tckn: redact, vkn: redact, ssn: redact, email: monitor, phone: redact}
    custom:
      - {name: employee-id, regex: '\\bEMP-[0-9]{6}\\b', action: redact}
      - {name: policy-no, regex: '\\bPOL[0-9]{8}\\b', validator: luhn, context: [policy, poliçe], action: redact}
    exclude:
      prefixes: [SIP-, REF-, ORD-]
      json_keys: [order_id, trace_id]
";

// A bench whose fixture does not compile must stop loudly, not measure nothing.
#[allow(clippy::panic)]
fn snapshot(text: &str) -> Snapshot {
    match compile(&[SourceFile::new("bench.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("bench rules do not compile: {e:?}"),
    }
}

#[allow(clippy::expect_used)]
fn policy(s: &Snapshot) -> &PiiPolicy {
    s.pii.policies().first().expect("one policy")
}

const FIRST: &[&str] = &["Çağrı", "Şebnem", "Gülşen", "İsmail", "Özgür", "Ümit", "Ayşe", "Mehmet", "Elif", "Buğra"];
const LAST: &[&str] = &["Yılmaz", "Öztürk", "Şahin", "Çelik", "Doğan", "Kılıç", "Aydın", "Güneş", "Erdoğan", "Koç"];
const FIRST_ASCII: &[&str] =
    &["Cagri", "Sebnem", "Gulsen", "Ismail", "Ozgur", "Umit", "Ayse", "Mehmet", "Elif", "Bugra"];
const LAST_ASCII: &[&str] =
    &["Yilmaz", "Ozturk", "Sahin", "Celik", "Dogan", "Kilic", "Aydin", "Gunes", "Erdogan", "Koc"];
const CITY: &[&str] = &["İstanbul", "Ankara", "İzmir", "Eskişehir", "Diyarbakır", "Muğla", "Çanakkale", "Şanlıurfa"];
const CITY_ASCII: &[&str] =
    &["Istanbul", "Ankara", "Izmir", "Eskisehir", "Diyarbakir", "Mugla", "Canakkale", "Sanliurfa"];
const STREET: &[&str] = &["Atatürk Cad.", "Cumhuriyet Mah.", "Gül Sok.", "İnönü Bulvarı", "Bağdat Cad."];
const STREET_ASCII: &[&str] = &["Ataturk Cad.", "Cumhuriyet Mah.", "Gul Sok.", "Inonu Bulvari", "Bagdat Cad."];
/// Valid values (the PII some records carry).
const PII: &[&str] = &[
    "\"tckn\":\"10000000146\"",
    "\"iban\":\"TR33 0006 1005 1978 6457 8413 26\"",
    "\"card\":\"4111 1111 1111 1111\"",
    "\"phone\":\"+90 532 123 45 67\"",
    "\"email\":\"cagri.yilmaz@firma.com.tr\"",
    "\"vkn\":\"4540536920\"",
];

fn typical(rng: &mut Lcg, ascii: bool, i: usize) -> String {
    let (first, last, city, street) =
        if ascii { (FIRST_ASCII, LAST_ASCII, CITY_ASCII, STREET_ASCII) } else { (FIRST, LAST, CITY, STREET) };
    let pii = if rng.below(4) == 0 { format!(",{}", rng.pick(PII)) } else { String::new() };
    format!(
        "{{\"id\":{i},\"uuid\":\"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}\",\"name\":\"{} {}\",\"address\":{{\"street\":\"{} No: {}\",\"city\":\"{}\",\"zip\":\"{}\"}},\"created_at\":\"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"status\":\"active\",\"balance\":{}.{:02},\"tags\":[\"müşteri\",\"premium\"],\"note\":\"Sipariş teslim edildi, teşekkürler.\"{pii}}}",
        rng.next_u64(),
        rng.below(1 << 16),
        rng.below(1 << 12),
        rng.below(1 << 12),
        rng.next_u64() << 16 | rng.below(1 << 16),
        rng.pick(first),
        rng.pick(last),
        rng.pick(street),
        rng.below(200),
        rng.pick(city),
        rng.digits(5),
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(100_000),
        rng.below(100),
    )
}

fn digit_heavy(rng: &mut Lcg, i: usize) -> String {
    format!(
        "{{\"id\":{},\"order_no\":{},\"ts\":{},\"amount\":{}.{:02},\"qty\":{},\"lat\":41.{},\"lon\":28.{},\"sku\":{},\"ref\":{},\"prices\":[{},{},{},{},{}],\"ids\":[{},{},{}]}}",
        1_000_000 + i,
        rng.digits(11),
        1_700_000_000_000 + rng.below(100_000_000),
        rng.below(100_000),
        rng.below(100),
        rng.below(100),
        rng.digits(7),
        rng.digits(7),
        rng.digits(8),
        rng.digits(10),
        rng.below(10_000),
        rng.below(10_000),
        rng.below(10_000),
        rng.below(10_000),
        rng.below(10_000),
        rng.digits(9),
        rng.digits(12),
        rng.digits(6),
    )
}

const SENTENCES: &[&str] = &[
    "Müşterimiz siparişini dün akşam teslim aldı ve ürünün kalitesinden çok memnun kaldığını belirtti.",
    "The customer called about a delayed shipment and asked for an update on the delivery window.",
    "Kargo şirketi paketin İstanbul aktarma merkezinde beklediğini, yarın dağıtıma çıkacağını bildirdi.",
    "Please find the invoice attached; the payment is due within thirty days of the issue date.",
    "Görüşme sırasında müşteri adres değişikliği talep etti, yeni adres sisteme işlendi.",
    "Refund request 2024-118 was approved after the returned item passed inspection on 15.01.2024.",
];
const PROSE_PII: &[&str] = &[
    "Kimlik numarası 10000000146 olarak doğrulandı.",
    "IBAN: TR33 0006 1005 1978 6457 8413 26 hesabına iade yapıldı.",
    "Contact: cagri.yilmaz@firma.com.tr or +90 532 123 45 67.",
    "Firma VKN 4540536920 ile kayıtlı.",
];

/// Worst case for the scanner: nothing but anchors and near misses (digit groups that join,
/// `+`, `(`, `@`, country-code look-alikes, keywords next to 9- and 10-digit numbers).
const ADVERSARIAL: &[&str] = &[
    "1 ",
    "12 ",
    "0532 ",
    "4111 ",
    "-",
    "+9",
    "(",
    ")",
    "@",
    "a.",
    "TR33",
    "ssn ",
    "vkn ",
    "123456789,",
    "1234567890 ",
    "0 ",
    "555-",
    "9.",
    "x@y.",
    "DE89 ",
];

fn adversarial(rng: &mut Lcg) -> String {
    rng.pick(ADVERSARIAL).to_owned()
}

fn prose(rng: &mut Lcg) -> String {
    if rng.below(6) == 0 {
        rng.pick(PROSE_PII).to_owned()
    } else {
        rng.pick(SENTENCES).to_owned()
    }
}

/// Records from `gen` until `size` bytes, cut there.
fn body(size: usize, seed: u64, mut gen: impl FnMut(&mut Lcg, usize) -> String, sep: &str) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&gen(&mut rng, i));
        i += 1;
    }
    let mut b = out.into_bytes();
    b.truncate(size);
    b
}

fn bodies() -> Vec<(&'static str, usize, Vec<u8>)> {
    let mut v = Vec::new();
    for size in [1024, 16 * 1024, 256 * 1024] {
        v.push(("typical_json", size, body(size, 1, |r, i| typical(r, false, i), ",")));
        v.push(("typical_json_ascii", size, body(size, 1, |r, i| typical(r, true, i), ",")));
        v.push(("digit_heavy_json", size, body(size, 2, digit_heavy, ",")));
        v.push(("prose", size, body(size, 3, |r, _| prose(r), " ")));
        v.push(("adversarial", size, body(size, 4, |r, _| adversarial(r), "")));
    }
    v
}

fn size_label(n: usize) -> String {
    if n >= 1024 {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

fn bench(c: &mut Criterion) {
    let block = snapshot(POLICY);
    let redact = snapshot(REDACT);
    let custom = snapshot(CUSTOM);
    let (pb, pr, pc) = (policy(&block), policy(&redact), policy(&custom));
    let all = bodies();

    let mut g = c.benchmark_group("pii/scan");
    for (kind, size, b) in &all {
        g.throughput(Throughput::Bytes(*size as u64));
        g.bench_with_input(BenchmarkId::new(*kind, size_label(*size)), b, |bench, b| {
            bench.iter(|| black_box(pb.scan(black_box(b))))
        });
    }
    g.finish();

    // Streaming redaction in 16 KiB chunks (what a proxy typically hands over), output reused.
    let mut g = c.benchmark_group("pii/stream_redact");
    for (kind, size, b) in all.iter().filter(|(_, s, _)| *s >= 16 * 1024) {
        g.throughput(Throughput::Bytes(*size as u64));
        let mut out = Vec::with_capacity(b.len() + 64);
        g.bench_with_input(BenchmarkId::new(*kind, size_label(*size)), b, |bench, b| {
            bench.iter(|| {
                out.clear();
                let mut s = pr.stream();
                for chunk in b.chunks(16 * 1024) {
                    let _ = s.push(chunk, &mut out);
                }
                black_box(s.finish(&mut out))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pii/scan_with_custom");
    for (kind, size, b) in all.iter().filter(|(_, s, _)| *s == 16 * 1024) {
        g.throughput(Throughput::Bytes(*size as u64));
        g.bench_with_input(BenchmarkId::new(*kind, size_label(*size)), b, |bench, b| {
            bench.iter(|| black_box(pc.scan(black_box(b))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
