//! Webhook signature headers and verification (`webhook::Verifier::verify`) for GitHub, Stripe,
//! Standard Webhooks and two generic schemes, with the secrets of the public vectors
//! (/work/shared/vectors/webhooks.json, copied into the corpus).
//!
//! Input: the first line names the provider (`github`, `stripe`, `standard`, `generic-hex`,
//! `generic-b64`; anything else: all of them) and optionally the clock (`stripe 1700000000`);
//! then `name: value` header lines, an empty line, and the body.
//!
//! Properties: no panic; an accepted delivery names a configured secret and a timestamp within
//! the tolerance; a delivery signed correctly over the same body (and delivery id and clock)
//! verifies, and the same signature over a changed body does not.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{first_line, headers_and_body, hex, hmac_sha256, numbers};
use portcullis_rules::webhook::{
    sign_standard_webhooks, Encoding, GenericScheme, MacAlg, Provider, Secret, Verifier, WebhookError,
};
use std::sync::OnceLock;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STRIPE_SECRET: &str = "whsec_test_secret";
const STANDARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const GENERIC_SECRET: &str = "generic-secret-0123456789";
const TOLERANCE: u64 = 300;
const DEFAULT_NOW: u64 = 1_700_000_000;

struct Fixture {
    name: &'static str,
    verifier: Verifier,
}

fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let make = |name: &'static str, provider: Provider, secrets: &[&str]| {
            let secrets = secrets
                .iter()
                .enumerate()
                .map(|(i, s)| Secret::new(&provider, format!("s{i}"), s.as_bytes()).expect("fixture secret"))
                .collect();
            Fixture { name, verifier: Verifier::new(provider, secrets, TOLERANCE).expect("fixture verifier") }
        };
        vec![
            make("github", Provider::GitHub, &[GITHUB_SECRET]),
            make("stripe", Provider::Stripe, &["whsec_old_rotated_secret", STRIPE_SECRET]),
            make("standard", Provider::StandardWebhooks, &[STANDARD_SECRET]),
            make(
                "generic-hex",
                Provider::Generic(GenericScheme {
                    header: HeaderName::from_static("x-signature"),
                    algorithm: MacAlg::Sha256,
                    encoding: Encoding::Hex,
                    prefix: Some("sha256=".into()),
                    timestamp_header: Some(HeaderName::from_static("x-timestamp")),
                }),
                &[GENERIC_SECRET],
            ),
            make(
                "generic-b64",
                Provider::Generic(GenericScheme {
                    header: HeaderName::from_static("x-signature"),
                    algorithm: MacAlg::Sha512,
                    encoding: Encoding::Base64,
                    prefix: None,
                    timestamp_header: None,
                }),
                &[GENERIC_SECRET],
            ),
        ]
    })
}

/// A correctly signed delivery of `body` for `f`, at `now`, keeping the input's delivery id
/// when it is a valid one.
fn signed(f: &Fixture, headers: &HeaderMap, body: &[u8], now: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_str(&v).expect("ASCII"));
    };
    match f.name {
        "github" => {
            set("x-hub-signature-256", format!("sha256={}", hex(&hmac_sha256(GITHUB_SECRET.as_bytes(), &[body]))))
        }
        "stripe" => {
            let t = now.to_string();
            let sig = hmac_sha256(STRIPE_SECRET.as_bytes(), &[t.as_bytes(), b".", body]);
            set("stripe-signature", format!("t={t},v1={}", hex(&sig)));
        }
        "standard" => {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .filter(|id| !id.is_empty() && !id.contains('.') && id.len() <= 256)
                .unwrap_or("msg_fuzz");
            for (k, v) in sign_standard_webhooks(STANDARD_SECRET, id, now, body).expect("valid id signs") {
                set(k, v);
            }
        }
        "generic-hex" => {
            let t = now.to_string();
            let sig = hmac_sha256(GENERIC_SECRET.as_bytes(), &[t.as_bytes(), b".", body]);
            set("x-signature", format!("sha256={}", hex(&sig)));
            set("x-timestamp", t);
        }
        _ => {
            use base64::Engine as _;
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, GENERIC_SECRET.as_bytes());
            let sig = ring::hmac::sign(&key, body);
            set("x-signature", base64::engine::general_purpose::STANDARD.encode(sig.as_ref()));
        }
    }
    h
}

fn check(f: &Fixture, headers: &HeaderMap, body: &[u8], now: u64) {
    let v = &f.verifier;
    if let Ok(ok) = v.verify(headers, body, now) {
        assert!(v.secrets.iter().any(|s| s.id == ok.secret_id), "unknown secret id");
        if let Some(ts) = ok.timestamp {
            assert!(ts.abs_diff(now) <= TOLERANCE, "timestamp {ts} outside the tolerance at {now}");
        }
    }
    let good = signed(f, headers, body, now);
    match v.verify(&good, body, now) {
        Ok(ok) => {
            if f.name == "standard" {
                assert_eq!(ok.delivery_id.as_deref(), good.get("webhook-id").and_then(|v| v.to_str().ok()));
            }
        }
        Err(e) => panic!("{}: a correctly signed delivery was refused: {e:?}", f.name),
    }
    let mut changed = body.to_vec();
    changed.push(b'x');
    assert_eq!(
        v.verify(&good, &changed, now).err(),
        Some(WebhookError::BadSignature),
        "{}: changed body accepted",
        f.name
    );
}

fuzz_target!(|data: &[u8]| {
    let (line, rest) = first_line(data);
    let (headers, body) = headers_and_body(rest);
    let mut words = line.splitn(2, |&b| b == b' ');
    let name = words.next().unwrap_or_default();
    let now = words.next().and_then(|w| numbers(w).first().copied()).map_or(DEFAULT_NOW, |n| n as u64);
    for f in fixtures() {
        if name == f.name.as_bytes() || !fixtures().iter().any(|g| g.name.as_bytes() == name) {
            check(f, &headers, body, now);
        }
    }
});
