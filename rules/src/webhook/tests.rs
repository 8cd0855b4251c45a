use super::*;
use http::HeaderValue;
use proptest::prelude::*;
use serde_json::Value;

const VECTORS: &str = include_str!("../../../tests/fixtures/webhooks.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key` from the vector entry, else from the group.
fn field(entry: &Value, group: &Value, key: &str) -> Value {
    entry.get(key).or_else(|| group.get(key)).cloned().unwrap_or(Value::Null)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn verifier(provider: Provider, secrets: &[(&str, &str)]) -> Verifier {
    let secrets = secrets.iter().map(|(id, t)| Secret::new(&provider, *id, t.as_bytes()).unwrap()).collect();
    Verifier::new(provider, secrets, 300).unwrap()
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
}

// Expected refusal for each invalid vector, by its `why`.
fn expected(why: &str) -> WebhookError {
    use WebhookError::*;
    match why {
        "body tampered" | "wrong secret" | "truncated" => BadSignature,
        "sha1 prefix / legacy header value" | "missing prefix" | "empty" => MalformedHeader,
        w if w.starts_with("uppercase hex") => MalformedHeader, // `SHA256=`: prefix is case-sensitive
        "only v0 scheme" | "malformed header" | "no t=" => MalformedHeader,
        w if w.starts_with("stale") => StaleTimestamp,
        w if w.starts_with("future beyond tolerance") => FutureTimestamp,
        w if w.starts_with("timestamp swapped") || w.starts_with("secret base64-decoded") => BadSignature,
        w if w.starts_with("v1a (asymmetric) only") => MalformedHeader, // no v1 entry at all
        "just 'v1,'" | "signature truncated" => BadSignature,
        "timestamp 301s before now" => StaleTimestamp,
        "timestamp 301s after now" => FutureTimestamp,
        w if w.starts_with("msg id with '.'") => MalformedHeader,
        "non-integer timestamp" => MalformedHeader,
        other => panic!("no expectation for vector {other:?}"),
    }
}

#[test]
fn github_vectors() {
    let all = vectors();
    let g = &all["github_x_hub_signature_256"];
    let v = verifier(Provider::GitHub, &[("gh", g["secret"].as_str().unwrap())]);
    for e in g["valid"].as_array().unwrap() {
        let h = headers(&[("x-hub-signature-256", &s(&e["header"]))]);
        let ok = v.verify(&h, s(&field(e, g, "body")).as_bytes(), 0).unwrap();
        assert_eq!((ok.secret_id.as_str(), ok.delivery_id, ok.timestamp), ("gh", None, None));
    }
    let invalid = g["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 7);
    for e in invalid {
        let why = e["why"].as_str().unwrap();
        let h = headers(&[("x-hub-signature-256", &s(&e["header"]))]);
        assert_eq!(v.verify(&h, s(&field(e, g, "body")).as_bytes(), 0), Err(expected(why)), "{why}");
    }
}

#[test]
fn stripe_vectors() {
    let all = vectors();
    let g = &all["stripe_signature"];
    let v = verifier(Provider::Stripe, &[("st", g["secret"].as_str().unwrap())]);
    assert_eq!(v.tolerance, g["tolerance_s"].as_u64().unwrap());
    let now = g["now"].as_u64().unwrap();
    let body = s(&g["body"]);
    for e in g["valid"].as_array().unwrap() {
        let header = s(&e["header"]);
        let h = headers(&[("stripe-signature", &header)]);
        let ok = v.verify(&h, body.as_bytes(), now).unwrap();
        assert_eq!(ok.secret_id, "st");
        assert_eq!(ok.delivery_id.as_deref(), Some("evt_test_webhook"));
        let t: u64 = header.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
        assert_eq!(ok.timestamp, Some(t));
    }
    let invalid = g["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 7);
    for e in invalid {
        let why = e["why"].as_str().unwrap();
        let h = headers(&[("stripe-signature", &s(&e["header"]))]);
        assert_eq!(v.verify(&h, body.as_bytes(), now), Err(expected(why)), "{why}");
    }
}

fn sw_headers(e: &Value, g: &Value) -> HeaderMap {
    headers(&[
        ("webhook-id", &s(&field(e, g, "webhook-id"))),
        ("webhook-timestamp", &s(&field(e, g, "webhook-timestamp"))),
        ("webhook-signature", &s(&field(e, g, "webhook-signature"))),
    ])
}

#[test]
fn standard_webhooks_vectors() {
    let all = vectors();
    let g = &all["standard_webhooks"];
    let check = |e: &Value| {
        let secret = s(&field(e, g, "secret"));
        let v = verifier(Provider::StandardWebhooks, &[("sw", &secret)]);
        let now = field(e, g, "now").as_u64().unwrap();
        v.verify(&sw_headers(e, g), s(&field(e, g, "body")).as_bytes(), now)
    };
    let valid = g["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 3);
    for e in valid {
        let ok = check(e).unwrap();
        assert_eq!(ok.secret_id, "sw");
        assert_eq!(ok.delivery_id, Some(s(&field(e, g, "webhook-id"))));
        assert_eq!(ok.timestamp, field(e, g, "webhook-timestamp").as_u64());
    }
    let invalid = g["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 7);
    for e in invalid {
        let why = e["why"].as_str().unwrap();
        assert_eq!(check(e), Err(expected(why)), "{why}");
    }
}

#[test]
fn github_hex_case_insensitive_prefix_exact() {
    let all = vectors();
    let g = &all["github_x_hub_signature_256"];
    let v = verifier(Provider::GitHub, &[("gh", g["secret"].as_str().unwrap())]);
    let upper = "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17";
    assert!(v.verify(&headers(&[("x-hub-signature-256", upper)]), b"Hello, World!", 0).is_ok());
    let prefix = "Sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let got = v.verify(&headers(&[("x-hub-signature-256", prefix)]), b"Hello, World!", 0);
    assert_eq!(got, Err(WebhookError::MalformedHeader));
}

#[test]
fn github_duplicate_header_missing_header_and_delivery_id() {
    let all = vectors();
    let g = &all["github_x_hub_signature_256"];
    let v = verifier(Provider::GitHub, &[("gh", g["secret"].as_str().unwrap())]);
    let good = s(&g["valid"][0]["header"]);
    let twice = headers(&[("x-hub-signature-256", &good), ("x-hub-signature-256", &good)]);
    assert_eq!(v.verify(&twice, b"Hello, World!", 0), Err(WebhookError::MalformedHeader));
    assert_eq!(v.verify(&HeaderMap::new(), b"Hello, World!", 0), Err(WebhookError::MissingHeader));
    let legacy = headers(&[("x-hub-signature", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")]);
    assert_eq!(v.verify(&legacy, b"Hello, World!", 0), Err(WebhookError::MissingHeader));
    let h = headers(&[("x-hub-signature-256", &good), ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")]);
    let ok = v.verify(&h, b"Hello, World!", 0).unwrap();
    assert_eq!(ok.delivery_id.as_deref(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
}

#[test]
fn stripe_duplicate_t_non_json_body_and_secret_is_whole_string() {
    let secret = "whsec_test_secret";
    let v = verifier(Provider::Stripe, &[("st", secret)]);
    let body = b"not json";
    let sig = hmac_hex(secret.as_bytes(), b"1700000000.not json");
    let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={sig}"))]);
    let ok = v.verify(&h, body, 1_700_000_000).unwrap();
    assert_eq!(ok.delivery_id, None);
    let h = headers(&[("stripe-signature", &format!("t=1700000000,t=1700000000,v1={sig}"))]);
    assert_eq!(v.verify(&h, body, 1_700_000_000), Err(WebhookError::MalformedHeader));
    let h = headers(&[("stripe-signature", &format!("t=+1700000000,v1={sig}"))]);
    assert_eq!(v.verify(&h, body, 1_700_000_000), Err(WebhookError::MalformedHeader));
    // `id` present but not a string: no delivery id.
    let body = br#"{"id": 12}"#;
    let sig = hmac_hex(secret.as_bytes(), b"1700000000.{\"id\": 12}");
    let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={sig}"))]);
    assert_eq!(v.verify(&h, body, 1_700_000_000).unwrap().delivery_id, None);
}

#[test]
fn standard_webhooks_missing_and_duplicate_headers() {
    let (id, ts, body) = ("msg_1", 1_700_000_000, b"{}");
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let v = verifier(Provider::StandardWebhooks, &[("sw", secret)]);
    let signed = sign_standard_webhooks(secret, id, ts, body).unwrap();
    for skip in 0..3 {
        let pairs: Vec<_> =
            signed.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, (k, v))| (*k, v.as_str())).collect();
        assert_eq!(v.verify(&headers(&pairs), body, ts), Err(WebhookError::MissingHeader));
    }
    let mut pairs: Vec<_> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(v.verify(&headers(&pairs), body, ts).is_ok());
    pairs.push(("webhook-id", "msg_2"));
    assert_eq!(v.verify(&headers(&pairs), body, ts), Err(WebhookError::MalformedHeader));
}

#[test]
fn rotation_reports_which_secret_matched() {
    let (old, new) = ("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let v = verifier(Provider::StandardWebhooks, &[("old", old), ("new", new)]);
    for (secret, want) in [(old, "old"), (new, "new")] {
        let signed = sign_standard_webhooks(secret, "msg_x", 100, b"body").unwrap();
        let pairs: Vec<_> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(v.verify(&headers(&pairs), b"body", 100).unwrap().secret_id, want);
    }
    // Stripe, both secrets' signatures in one header (as Stripe sends during a roll).
    let (a, b) = ("whsec_first_secret_0001", "whsec_second_secret_002");
    let v = verifier(Provider::Stripe, &[("a", a), ("b", b)]);
    let only_b = format!("t=5,v1={}", hmac_hex(b.as_bytes(), b"5.x"));
    assert_eq!(v.verify(&headers(&[("stripe-signature", &only_b)]), b"x", 5).unwrap().secret_id, "b");
    let both = format!("t=5,v1={},v1={}", hmac_hex(b.as_bytes(), b"5.x"), hmac_hex(a.as_bytes(), b"5.x"));
    assert_eq!(v.verify(&headers(&[("stripe-signature", &both)]), b"x", 5).unwrap().secret_id, "a");
    let neither = format!("t=5,v1={}", hmac_hex(b"whsec_third_secret_0003", b"5.x"));
    let got = v.verify(&headers(&[("stripe-signature", &neither)]), b"x", 5);
    assert_eq!(got, Err(WebhookError::BadSignature));
}

#[test]
fn tolerance_is_inclusive_both_ways_and_signature_comes_first() {
    let secret = "whsec_test_secret";
    let v = verifier(Provider::Stripe, &[("st", secret)]);
    let at = |t: u64, key: &str| {
        let h = headers(&[(
            "stripe-signature",
            &format!("t={t},v1={}", hmac_hex(key.as_bytes(), format!("{t}.b").as_bytes())),
        )]);
        v.verify(&h, b"b", 1_000_000)
    };
    assert!(at(1_000_000 - 300, secret).is_ok());
    assert!(at(1_000_000 + 300, secret).is_ok());
    assert_eq!(at(1_000_000 - 301, secret), Err(WebhookError::StaleTimestamp));
    assert_eq!(at(1_000_000 + 301, secret), Err(WebhookError::FutureTimestamp));
    // A forged signature is `bad_signature` whatever the time: the clock window is not probeable.
    assert_eq!(at(0, "whsec_someone_else_key"), Err(WebhookError::BadSignature));
    assert_eq!(at(u64::MAX, "whsec_someone_else_key"), Err(WebhookError::BadSignature));
    assert_eq!(at(u64::MAX, secret), Err(WebhookError::FutureTimestamp));
    assert_eq!(at(0, secret), Err(WebhookError::StaleTimestamp));
}

#[test]
fn work_is_bounded() {
    let secret = "whsec_test_secret";
    let v = verifier(Provider::Stripe, &[("st", secret)]);
    let good = hmac_hex(secret.as_bytes(), b"7.b");
    let with = |n: usize| {
        let mut header = String::from("t=7");
        for _ in 1..n {
            header.push_str(",v1=00");
        }
        header.push_str(&format!(",v1={good}"));
        v.verify(&headers(&[("stripe-signature", &header)]), b"b", 7)
    };
    assert!(with(MAX_SIGNATURES).is_ok());
    assert_eq!(with(MAX_SIGNATURES + 1), Err(WebhookError::MalformedHeader));
    // Other versions do not count, but the header size does.
    let padded = format!("t=7,{}v1={good}", "v0=0,".repeat(100));
    assert!(v.verify(&headers(&[("stripe-signature", &padded)]), b"b", 7).is_ok());
    let huge = format!("t=7,{}v1={good}", "v0=0,".repeat(1000));
    assert!(huge.len() > MAX_HEADER_BYTES);
    assert_eq!(v.verify(&headers(&[("stripe-signature", &huge)]), b"b", 7), Err(WebhookError::MalformedHeader));
    // Secrets: the constructor refuses more than MAX_SECRETS (and none).
    let s = Secret::new(&Provider::Stripe, "s", secret.as_bytes()).unwrap();
    assert!(Verifier::new(Provider::Stripe, vec![s.clone(); MAX_SECRETS], 300).is_ok());
    assert!(Verifier::new(Provider::Stripe, vec![s; MAX_SECRETS + 1], 300).is_err());
    assert!(Verifier::new(Provider::Stripe, Vec::new(), 300).is_err());
}

#[test]
fn no_secrets() {
    let v = Verifier { provider: Provider::GitHub, secrets: Vec::new(), tolerance: 300 };
    assert_eq!(v.verify(&HeaderMap::new(), b"", 0), Err(WebhookError::NoSecrets));
}

#[test]
fn secrets_are_checked_and_never_printed() {
    assert!(Secret::new(&Provider::GitHub, "short", b"fifteen bytes!!").is_err());
    assert!(Secret::new(&Provider::GitHub, "ok", b"sixteen bytes!!!").is_ok());
    // Standard Webhooks: base64 after `whsec_`, 16 decoded bytes at least.
    assert!(Secret::new(&Provider::StandardWebhooks, "bad", b"whsec_not base64!").is_err());
    assert!(Secret::new(&Provider::StandardWebhooks, "empty", b"whsec_").is_err());
    assert!(Secret::new(&Provider::StandardWebhooks, "short", b"whsec_MTIzNDU2Nzg5MDEyMzQ1").is_err()); // 15 bytes
    assert!(Secret::new(&Provider::StandardWebhooks, "ok", b"whsec_MTIzNDU2Nzg5MDEyMzQ1Ng==").is_ok()); // 16
    assert!(Secret::new(&Provider::StandardWebhooks, "bare", b"MTIzNDU2Nzg5MDEyMzQ1Ng==").is_ok());
    // Stripe: the `whsec_` string itself is the key, whatever it looks like.
    assert!(Secret::new(&Provider::Stripe, "st", b"whsec_test_secret").is_ok());
    let secret = Secret::new(&Provider::GitHub, "gh-1", b"super-secret-key-material").unwrap();
    let printed = format!("{secret:?}");
    assert!(printed.contains("gh-1") && !printed.contains("super-secret"), "{printed}");
}

#[test]
fn generic_schemes() {
    let key = "generic-secret-0123456789";
    let scheme = GenericScheme {
        header: HeaderName::from_static("x-signature"),
        algorithm: MacAlg::Sha512,
        encoding: Encoding::Base64,
        prefix: Some("v1=".into()),
        timestamp_header: Some(HeaderName::from_static("x-timestamp")),
    };
    let provider = Provider::Generic(scheme);
    let v = verifier(provider, &[("g", key)]);
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, key.as_bytes()), b"1000.payload");
    let sig = format!("v1={}", base64::engine::general_purpose::STANDARD.encode(mac.as_ref()));
    let ok = v.verify(&headers(&[("x-signature", &sig), ("x-timestamp", "1000")]), b"payload", 1000).unwrap();
    assert_eq!((ok.secret_id.as_str(), ok.delivery_id, ok.timestamp), ("g", None, Some(1000)));
    let got = v.verify(&headers(&[("x-signature", &sig)]), b"payload", 1000);
    assert_eq!(got, Err(WebhookError::MissingHeader));
    let got = v.verify(&headers(&[("x-signature", &sig), ("x-timestamp", "1000")]), b"payload", 2000);
    assert_eq!(got, Err(WebhookError::StaleTimestamp));
    let got = v.verify(&headers(&[("x-signature", &sig[3..]), ("x-timestamp", "1000")]), b"payload", 1000);
    assert_eq!(got, Err(WebhookError::MalformedHeader));
    // A SHA-256-sized MAC for a SHA-512 scheme is a wrong-length signature: bad, not malformed.
    let short = format!("v1={}", base64::engine::general_purpose::STANDARD.encode([0u8; 32]));
    let got = v.verify(&headers(&[("x-signature", &short), ("x-timestamp", "1000")]), b"payload", 1000);
    assert_eq!(got, Err(WebhookError::BadSignature));

    let scheme = GenericScheme {
        header: HeaderName::from_static("x-sig"),
        algorithm: MacAlg::Sha256,
        encoding: Encoding::Hex,
        prefix: None,
        timestamp_header: None,
    };
    let v = verifier(Provider::Generic(scheme), &[("g", key)]);
    let h = headers(&[("x-sig", &hmac_hex(key.as_bytes(), b"payload"))]);
    assert_eq!(v.verify(&h, b"payload", 0).unwrap().timestamp, None);
    assert_eq!(v.verify(&h, b"payload!", 0), Err(WebhookError::BadSignature));
}

#[test]
fn sign_standard_webhooks_matches_vectors_and_verifies() {
    let all = vectors();
    let g = &all["standard_webhooks"];
    for e in g["valid"].as_array().unwrap().iter().take(2) {
        let secret = s(&field(e, g, "secret"));
        let id = s(&field(e, g, "webhook-id"));
        let ts = field(e, g, "webhook-timestamp").as_u64().unwrap();
        let body = s(&field(e, g, "body"));
        let out = sign_standard_webhooks(&secret, &id, ts, body.as_bytes()).unwrap();
        assert_eq!(out[0], ("webhook-id", id.clone()));
        assert_eq!(out[1], ("webhook-timestamp", ts.to_string()));
        assert_eq!(out[2], ("webhook-signature", s(&e["webhook-signature"])));
        let pairs: Vec<_> = out.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let v = verifier(Provider::StandardWebhooks, &[("sw", &secret)]);
        assert!(v.verify(&headers(&pairs), body.as_bytes(), ts).is_ok());
    }
    assert!(sign_standard_webhooks("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "a.b", 1, b"").is_err());
    assert!(sign_standard_webhooks("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "", 1, b"").is_err());
    assert!(sign_standard_webhooks("whsec_short", "id", 1, b"").is_err());
}

#[test]
fn error_names_are_stable() {
    use WebhookError::*;
    let names: Vec<_> = [MissingHeader, MalformedHeader, BadSignature, StaleTimestamp, FutureTimestamp, NoSecrets]
        .map(WebhookError::as_str)
        .into();
    assert_eq!(
        names,
        [
            "missing_signature",
            "malformed_signature",
            "bad_signature",
            "stale_timestamp",
            "future_timestamp",
            "no_secrets"
        ]
    );
    assert_eq!(BadSignature.to_string(), "bad_signature");
}

fn all_verifiers() -> Vec<Verifier> {
    let generic = GenericScheme {
        header: HeaderName::from_static("x-sig"),
        algorithm: MacAlg::Sha512,
        encoding: Encoding::Base64,
        prefix: Some("sha512=".into()),
        timestamp_header: Some(HeaderName::from_static("x-ts")),
    };
    vec![
        verifier(Provider::GitHub, &[("a", "0123456789abcdef")]),
        verifier(Provider::Stripe, &[("a", "whsec_0123456789abcdef")]),
        verifier(Provider::StandardWebhooks, &[("a", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]),
        verifier(Provider::Generic(generic), &[("a", "0123456789abcdef")]),
    ]
}

proptest! {
    #[test]
    fn never_panics(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 6),
        shaped in "(t=[0-9+]{0,22}|v1=[0-9a-fA-F]{0,66}|v0=x|v1,[A-Za-z0-9+/=]{0,90}|v1a,x|sha(256|512)=[0-9a-zA-Z+/=]{0,130}|[ ,=.])*",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        now in any::<u64>(),
    ) {
        let names = ["x-hub-signature-256", "stripe-signature", "webhook-signature", "webhook-timestamp", "webhook-id", "x-sig"];
        let mut arbitrary = HeaderMap::new();
        let mut shaped_map = HeaderMap::new();
        for (name, value) in names.iter().zip(&values) {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                arbitrary.append(*name, value);
            }
            if let Ok(value) = HeaderValue::from_str(&shaped) {
                shaped_map.append(*name, value);
            }
        }
        shaped_map.insert("x-ts", HeaderValue::from_static("17"));
        for v in all_verifiers() {
            let _ = v.verify(&arbitrary, &body, now);
            let _ = v.verify(&shaped_map, &body, now);
        }
    }
}
