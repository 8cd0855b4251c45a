//! Decision this informs: can the gateway verify every inbound webhook inline, before forwarding
//! it, with no queue or sampling? Verification is one HMAC-SHA256 pass over the raw body per
//! configured secret plus header parsing, so `verify` should run close to raw HMAC-SHA256 speed
//! (the `hmac_sha256_baseline` rows): at 1 KiB the parsing overhead shows, at 64 KiB the hash
//! dominates. Stripe also parses the JSON body for the event id after a valid signature, which is
//! the one cost on top of the hash that grows with the body.
//!
//! Run: `cargo bench -p portcullis-benches --bench webhook` (add `-- --quick` for a smoke run).

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_rules::webhook::{sign_standard_webhooks, Encoding, GenericScheme, MacAlg, Provider, Secret, Verifier};
use std::hint::black_box;

const NOW: u64 = 1_700_000_000;
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STRIPE_SECRET: &str = "whsec_test_secret_for_the_bench";
const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn mac(alg: ring::hmac::Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(alg, key), msg).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON body of about `size` bytes with a Stripe-like event id.
fn body(size: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_bench_0001","object":"event","data":{"pad":""#;
    let mut b = head.as_bytes().to_vec();
    b.resize(size.saturating_sub(3).max(head.len()), b'x');
    b.extend_from_slice(b"\"}}");
    b
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.append(k, v);
        }
    }
    h
}

/// A verifier and a valid delivery for it. Fixtures that do not build must stop the bench loudly.
#[allow(clippy::expect_used)]
fn case(provider: &str, body: &[u8]) -> (Verifier, HeaderMap) {
    let (p, secret, h) = match provider {
        "github" => {
            let sig = hex(&mac(ring::hmac::HMAC_SHA256, GITHUB_SECRET.as_bytes(), body));
            (
                Provider::GitHub,
                GITHUB_SECRET,
                headers(&[
                    ("x-hub-signature-256", format!("sha256={sig}")),
                    ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
                ]),
            )
        }
        "stripe" => {
            let mut msg = format!("{NOW}.").into_bytes();
            msg.extend_from_slice(body);
            let sig = hex(&mac(ring::hmac::HMAC_SHA256, STRIPE_SECRET.as_bytes(), &msg));
            (Provider::Stripe, STRIPE_SECRET, headers(&[("stripe-signature", format!("t={NOW},v1={sig}"))]))
        }
        "standard_webhooks" => {
            let signed = sign_standard_webhooks(SW_SECRET, "msg_bench", NOW, body).expect("sign");
            let pairs: Vec<(&str, String)> = signed.iter().map(|(k, v)| (*k, v.clone())).collect();
            (Provider::StandardWebhooks, SW_SECRET, headers(&pairs))
        }
        _ => {
            let scheme = GenericScheme {
                header: HeaderName::from_static("x-signature"),
                algorithm: MacAlg::Sha512,
                encoding: Encoding::Base64,
                prefix: Some("sha512=".into()),
                timestamp_header: Some(HeaderName::from_static("x-timestamp")),
            };
            let mut msg = format!("{NOW}.").into_bytes();
            msg.extend_from_slice(body);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac(
                ring::hmac::HMAC_SHA512,
                GITHUB_SECRET.as_bytes(),
                &msg,
            ));
            (
                Provider::Generic(scheme),
                GITHUB_SECRET,
                headers(&[("x-signature", format!("sha512={sig}")), ("x-timestamp", NOW.to_string())]),
            )
        }
    };
    let secret = Secret::new(&p, "bench", secret.as_bytes()).expect("secret");
    let v = Verifier::new(p, vec![secret], 300).expect("verifier");
    assert!(v.verify(&h, body, NOW).is_ok(), "{provider}: fixture delivery does not verify");
    (v, h)
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("webhook_verify");
    for size in [1024usize, 64 * 1024] {
        let b = body(size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, GITHUB_SECRET.as_bytes());
        g.bench_with_input(BenchmarkId::new("hmac_sha256_baseline", size), &b, |bn, b| {
            bn.iter(|| ring::hmac::sign(&key, black_box(b)))
        });
        for provider in ["github", "stripe", "standard_webhooks", "generic_sha512_b64_ts"] {
            let (v, h) = case(provider, &b);
            g.bench_with_input(BenchmarkId::new(provider, size), &b, |bn, b| {
                bn.iter(|| v.verify(black_box(&h), black_box(b), NOW))
            });
        }
        // A forged delivery costs the same hash pass (and no JSON parse): the floor an attacker gets.
        let (v, h) = case("stripe", &b);
        let mut forged = b.clone();
        forged.push(b' ');
        g.bench_with_input(BenchmarkId::new("stripe_bad_signature", size), &forged, |bn, f| {
            bn.iter(|| v.verify(black_box(&h), black_box(f), NOW))
        });
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
