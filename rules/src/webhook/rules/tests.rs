use super::*;
use crate::rulefile::{compile_with, Env, SourceFile};
use crate::webhook::sign_standard_webhooks;
use http::HeaderValue;
use ring::hmac;

const GH: &str = "github-secret-0123456789abcdef";
const GH_OLD: &str = "github-previous-0123456789abcdef";
const STRIPE: &str = "whsec_stripe0123456789abcdef0123";
const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STRIPE_OLD: &str = "whsec_stripe_previous_0123456789ab";
const NOW: u64 = 1_800_000_000;

fn resolver(r: &AssetRef) -> Result<Vec<u8>, String> {
    match r {
        AssetRef::Env(v) if v == "GH" => Ok(GH.as_bytes().to_vec()),
        AssetRef::File(f) if f == "gh-old.txt" => Ok(format!("{GH_OLD}\r\n").into_bytes()),
        AssetRef::Env(v) if v == "STRIPE" => Ok(STRIPE.as_bytes().to_vec()),
        AssetRef::Env(v) if v == "STRIPE_OLD" => Ok(STRIPE_OLD.as_bytes().to_vec()),
        AssetRef::Env(v) if v == "SW" => Ok(SW.as_bytes().to_vec()),
        AssetRef::Env(v) if v == "SHORT" => Ok(b"short".to_vec()),
        other => Err(format!("{other} is not set")),
    }
}

fn compile(rules: &str) -> Result<Webhooks, Vec<String>> {
    let routes = ["webhooks", "api"];
    let env = Env { routes: Some(&routes), assets: Some(&resolver), sinks: None };
    let text = format!("version: 1\nwebhooks:\n{rules}");
    compile_with(&[SourceFile::new("w.yaml", text)], &env)
        .map(|s| s.webhooks)
        .map_err(|e| e.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
}

fn one_error(rules: &str) -> String {
    let e = compile(rules).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
}

fn view<'a>(path: &'a str, route: Option<&'a str>, h: &'a HeaderMap) -> RequestView<'a> {
    RequestView { method: "POST", path, query: None, host: None, route, channel: None, client_ip: None, headers: h }
}

const RULES: &str = "  - id: gh
    routes: [webhooks]
    path_prefix: /webhooks/github
    provider: github
    secrets: [{id: current, env: GH}, {id: previous, file: gh-old.txt}]
  - id: stripe
    routes: [webhooks]
    path_prefix: /webhooks/stripe
    provider: stripe
    secrets: [{id: s1, env: STRIPE}]
    tolerance_seconds: 60
    max_body_bytes: 1000
  - id: sw
    routes: [webhooks]
    provider: standard_webhooks
    secrets: [{id: sw1, env: SW}]
";

fn refused_reason(c: Checked) -> String {
    match c {
        Checked::Refused(f) => f.detail["reason"].as_str().unwrap().to_owned(),
        Checked::Accepted { .. } => panic!("accepted"),
    }
}

#[test]
fn rules_are_found_by_route_and_prefix_ignoring_case() {
    let w = compile(RULES).unwrap();
    assert_eq!(w.len(), 3);
    let h = HeaderMap::new();
    let id = |p: &str, r: Option<&str>| w.for_request(&view(p, r, &h)).map(|r| r.id.to_string());
    assert_eq!(id("/webhooks/github", Some("webhooks")).as_deref(), Some("gh"));
    assert_eq!(id("/WebHooks/GitHub/x", Some("webhooks")).as_deref(), Some("gh"));
    assert_eq!(id("/webhooks/githubx", Some("webhooks")).as_deref(), Some("sw"), "segment boundary");
    assert_eq!(id("/webhooks/stripe", Some("webhooks")).as_deref(), Some("stripe"));
    assert_eq!(id("/webhooks/other", Some("webhooks")).as_deref(), Some("sw"), "the catch-all rule");
    assert_eq!(id("/webhooks/github", Some("api")), None);
    assert_eq!(id("/webhooks/github", None), None);
    let stripe = w.for_request(&view("/webhooks/stripe", Some("webhooks"), &h)).unwrap();
    assert_eq!(stripe.body_cap(262_144), 1000);
    assert_eq!(stripe.body_cap(500), 500);
    assert_eq!(stripe.provider(), "stripe");
}

#[test]
fn github_rotation_names_the_matching_secret_and_replays_are_refused() {
    let w = compile(RULES).unwrap();
    let cache = ReplayCache::default();
    let rule = &w.rules[0];
    let body = br#"{"action":"opened"}"#;
    for (secret, id, delivery, body) in
        [(GH, "current", "d-1", &body[..]), (GH_OLD, "previous", "d-2", br#"{"action":"closed"}"#)]
    {
        let sig = format!("sha256={}", hmac_hex(secret.as_bytes(), body));
        let h = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", delivery)]);
        match rule.check(&h, body, NOW, &cache) {
            Checked::Accepted { secret_id, .. } => assert_eq!(secret_id, id),
            Checked::Refused(f) => panic!("{f:?}"),
        }
    }
    // The same delivery again, and the same signature under a new (unsigned) delivery id.
    let sig = format!("sha256={}", hmac_hex(GH.as_bytes(), body));
    let again = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "d-1")]);
    assert_eq!(refused_reason(rule.check(&again, body, NOW + 10, &cache)), "replayed");
    let renamed = headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "d-999")]);
    assert_eq!(refused_reason(rule.check(&renamed, body, NOW + 10, &cache)), "replayed");
    // After the default window the delivery is accepted again.
    assert!(matches!(rule.check(&again, body, NOW + DEFAULT_REPLAY_WINDOW_SECONDS, &cache), Checked::Accepted { .. }));
}

/// Accepts `first`, then expects every variant to verify (so it is a genuine re-spelling of
/// the same signed delivery) and to be refused as `replayed`.
fn assert_respellings_are_replays(rule: &WebhookRule, body: &[u8], first: &HeaderMap, variants: &[HeaderMap]) {
    let cache = ReplayCache::default();
    assert!(matches!(rule.check(first, body, NOW, &cache), Checked::Accepted { .. }), "{first:?}");
    for (i, h) in variants.iter().enumerate() {
        assert!(rule.verifier.verify(h, body, NOW + 1).is_ok(), "variant {i} must verify: {h:?}");
        assert_eq!(refused_reason(rule.check(h, body, NOW + 1, &cache)), "replayed", "variant {i}: {h:?}");
    }
}

#[test]
fn replays_are_keyed_on_what_was_verified_not_on_header_spelling() {
    let w = compile(RULES).unwrap();
    // GitHub: hex case, a new (unsigned) delivery id, none at all, the old secret's MAC.
    let body = br#"{"action":"opened"}"#;
    let sig = hmac_hex(GH.as_bytes(), body);
    let first = headers(&[("x-hub-signature-256", &format!("sha256={sig}")), ("x-github-delivery", "d-1")]);
    let mixed: String =
        sig.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
    let old = hmac_hex(GH_OLD.as_bytes(), body);
    let variants = [
        headers(&[("x-hub-signature-256", &format!("sha256={}", sig.to_uppercase())), ("x-github-delivery", "d-2")]),
        headers(&[("X-Hub-Signature-256", &format!("sha256={mixed}")), ("X-GitHub-Delivery", "d-3")]),
        headers(&[("x-hub-signature-256", &format!("sha256={sig}")), ("x-github-delivery", "d-4")]),
        headers(&[("x-hub-signature-256", &format!("sha256={sig}"))]),
        headers(&[("x-hub-signature-256", &format!("sha256={old}")), ("x-github-delivery", "d-5")]),
    ];
    assert_respellings_are_replays(&w.rules[0], body, &first, &variants);

    // Stripe, a body without `id`: reordered entries, added v0 / v1 entries, hex case, one of
    // two rotation signatures dropped.
    let rules = RULES
        .replace("secrets: [{id: s1, env: STRIPE}]", "secrets: [{id: s1, env: STRIPE}, {id: s0, env: STRIPE_OLD}]");
    let w = compile(&rules).unwrap();
    let body = br#"{"object":"event","type":"ping"}"#;
    let t = NOW.to_string();
    let msg = format!("{t}.{}", std::str::from_utf8(body).unwrap());
    let v1 = hmac_hex(STRIPE.as_bytes(), msg.as_bytes());
    let v1_old = hmac_hex(STRIPE_OLD.as_bytes(), msg.as_bytes());
    let zero = "0".repeat(64);
    let first = headers(&[("stripe-signature", &format!("t={t},v1={v1},v1={v1_old}"))]);
    let variants: Vec<HeaderMap> = [
        format!("v1={v1},t={t}"),
        format!("t={t},v1={v1},v0={zero}"),
        format!("t={t},v1={zero},v1={v1}"),
        format!("t={t},v1={}", v1.to_uppercase()),
        format!("t={t},v1={v1_old}"),
        format!("t={t},v1={v1},v1={v1}"),
        format!("t={t},v2=x,v1={v1}"),
    ]
    .iter()
    .map(|v| headers(&[("stripe-signature", v)]))
    .collect();
    assert_respellings_are_replays(&w.rules[1], body, &first, &variants);

    // Standard Webhooks: one signature added, entries reordered, double spaces, an unpadded
    // or base64url copy beside the real one, a `v1a` entry.
    let w = compile(RULES).unwrap();
    let body = b"{}";
    let signed = sign_standard_webhooks(SW, "msg_1", NOW, body).unwrap();
    let sig = signed[2].1.clone();
    let b64 = sig.strip_prefix("v1,").unwrap().to_owned();
    let other = format!("v1,{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]));
    let with_sig = |value: &str| {
        headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", &signed[1].1), ("webhook-signature", value)])
    };
    let first = with_sig(&sig);
    let url = b64.replace('+', "-").replace('/', "_");
    let variants: Vec<HeaderMap> = [
        format!("{sig} {other}"),
        format!("{other} {sig}"),
        format!("{sig}  {other}"),
        format!("v1,{} {sig}", b64.trim_end_matches('=')),
        format!("v1,{url} {sig}"),
        format!("v1a,abc {sig}"),
    ]
    .iter()
    .map(|v| with_sig(v))
    .collect();
    assert_respellings_are_replays(&w.rules[2], body, &first, &variants);

    // A genuinely different delivery is not a replay: other body, other signed id or time.
    let cache = ReplayCache::default();
    assert!(matches!(w.rules[2].check(&first, body, NOW, &cache), Checked::Accepted { .. }));
    let next = sign_standard_webhooks(SW, "msg_2", NOW, body).unwrap();
    let h = headers(&next.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    assert!(matches!(w.rules[2].check(&h, body, NOW, &cache), Checked::Accepted { .. }));
    let later = sign_standard_webhooks(SW, "msg_3", NOW + 1, b"[]").unwrap();
    let h = headers(&later.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    assert!(matches!(w.rules[2].check(&h, b"[]", NOW + 1, &cache), Checked::Accepted { .. }));
}

#[test]
fn a_released_claim_lets_the_senders_retry_through() {
    let w = compile(RULES).unwrap();
    let cache = ReplayCache::default();
    let rule = &w.rules[2];
    let body = b"{}";
    let signed = sign_standard_webhooks(SW, "msg_1", NOW, body).unwrap();
    let h = headers(&signed.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let Checked::Accepted { claim, .. } = rule.check(&h, body, NOW, &cache) else { panic!() };
    assert_eq!(refused_reason(rule.check(&h, body, NOW + 1, &cache)), "replayed", "in flight");
    cache.release(&claim); // the upstream answered 503
    assert!(matches!(rule.check(&h, body, NOW + 2, &cache), Checked::Accepted { .. }));
}

#[test]
fn timestamped_claims_last_exactly_as_long_as_the_delivery_is_fresh() {
    let w = compile(RULES).unwrap();
    let cache = ReplayCache::default();
    let rule = &w.rules[1]; // stripe, tolerance 60
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let t = NOW.to_string();
    let sig = hmac_hex(STRIPE.as_bytes(), format!("{t}.{}", std::str::from_utf8(body).unwrap()).as_bytes());
    let h = headers(&[("stripe-signature", &format!("t={t},v1={sig}"))]);
    assert!(matches!(rule.check(&h, body, NOW + 60, &cache), Checked::Accepted { .. }), "fresh at +60");
    // A replay in the last fresh second is a replay, not a pass.
    assert_eq!(refused_reason(rule.check(&h, body, NOW + 60, &cache)), "replayed");
    assert_eq!(refused_reason(rule.check(&h, body, NOW + 61, &cache)), "stale_timestamp");
    // The detail names the secret and the (signed) event id, never a signature.
    let Checked::Refused(f) = rule.check(&h, body, NOW + 30, &cache) else { panic!() };
    assert_eq!(f.detail["secret_id"], "s1");
    assert_eq!(f.detail["delivery_id"], "evt_1");
    assert_eq!(f.detail["provider"], "stripe");
    assert_eq!(f.deny.code, DenyCode::InvalidSignature);
    assert!(!serde_json::to_string(&f.detail).unwrap().contains(&sig));
}

#[test]
fn every_failure_reason_is_a_finding() {
    let w = compile(RULES).unwrap();
    let cache = ReplayCache::default();
    let gh = &w.rules[0];
    let body = b"payload";
    let ok = format!("sha256={}", hmac_hex(GH.as_bytes(), body));
    let cases = [
        (headers(&[]), "missing_signature"),
        (headers(&[("x-hub-signature-256", "sha1=abc")]), "malformed_signature"),
        (headers(&[("x-hub-signature-256", &ok), ("x-hub-signature-256", &ok)]), "malformed_signature"),
        (headers(&[("x-hub-signature-256", &format!("sha256={}", "0".repeat(64)))]), "bad_signature"),
    ];
    for (h, want) in cases {
        assert_eq!(refused_reason(gh.check(&h, body, NOW, &cache)), want);
    }
    // A signature made for another rule's secret is a bad signature here.
    let sw = &w.rules[2];
    let other = format!("sha256={}", hmac_hex(STRIPE.as_bytes(), body));
    assert_eq!(
        refused_reason(gh.check(&headers(&[("x-hub-signature-256", &other)]), body, NOW, &cache)),
        "bad_signature"
    );
    let signed = sign_standard_webhooks(SW, "m", NOW + 301, body).unwrap();
    let h = headers(&signed.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    assert_eq!(refused_reason(sw.check(&h, body, NOW, &cache)), "future_timestamp");
    assert!(cache.is_empty(), "refusals claim nothing");
}

#[test]
fn configuration_errors_name_the_key() {
    let base = "  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: GH}]\n";
    assert!(compile(base).is_ok());
    let cases = [
        ("  - id: w\n    provider: github\n    secrets: [{id: a, env: GH}]\n", "webhooks[0]: a webhook rule needs `path_prefix` (recommended) or `routes`"),
        ("  - id: w\n    routes: [nope]\n    provider: github\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].routes[0]: unknown route `nope`"),
        ("  - id: w\n    routes: [webhooks]\n    provider: gitlab\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].provider: unknown provider `gitlab`"),
        ("  - id: w\n    routes: [webhooks]\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].provider: a webhook rule needs a `provider`"),
        (&format!("{base}    tolerance_seconds: 60\n"), "webhooks[0].tolerance_seconds: github deliveries carry no signed timestamp"),
        ("  - id: w\n    routes: [webhooks]\n    provider: stripe\n    secrets: [{id: a, env: STRIPE}]\n    replay_window_seconds: 60\n", "webhooks[0].replay_window_seconds: stripe deliveries are signed with a timestamp"),
        ("  - id: w\n    routes: [webhooks]\n    provider: stripe\n    secrets: [{id: a, env: STRIPE}]\n    tolerance_seconds: 0\n", "webhooks[0].tolerance_seconds: 0 is out of range"),
        (&format!("{base}    max_body_bytes: 0\n"), "webhooks[0].max_body_bytes: 0 is out of range"),
        ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: GH, file: x}]\n", "webhooks[0].secrets[0]: a secret needs exactly one of `env` or `file`"),
        ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: SHORT}]\n", "webhooks[0].secrets[0]: webhook secret \"a\": 5 key bytes, at least 16 required"),
        ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: MISSING}]\n", "webhooks[0].secrets[0]: cannot read environment variable MISSING"),
        ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, env: GH}, {id: a, env: GH}]\n", "webhooks[0].secrets[1].id: duplicate secret id `a`"),
        ("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: []\n", "webhooks[0].secrets: 0 secrets: 1 to 8"),
        ("  - id: w\n    routes: [webhooks]\n    provider: standard_webhooks\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].secrets[0]: webhook secret \"a\": not valid base64"),
        ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic: `provider: generic` needs a `generic:` mapping"),
        ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    generic: {header: 'bad header'}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic.header: `bad header` is not a header name"),
        ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    generic: {header: X_Sig}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic.header: `X_Sig` holds `_`: applications read it as `X-Sig`"),
        ("  - id: w\n    routes: [webhooks]\n    provider: generic\n    generic: {header: x-sig, algorithm: md5}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic.algorithm: unknown algorithm `md5`"),
        ("  - id: w\n    routes: [webhooks]\n    provider: github\n    generic: {header: x-sig}\n    secrets: [{id: a, env: GH}]\n", "webhooks[0].generic: `generic` only goes with `provider: generic`"),
        (&format!("{base}    path_prefix: /webhooks/../admin\n"), "webhooks[0].path_prefix: `/webhooks/../admin` must be a canonical path"),
    ];
    for (rules, want) in cases {
        let got = one_error(rules);
        assert!(got.starts_with(want), "{rules}\n got: {got}\nwant: {want}");
        assert!(!got.contains(GH) && !got.contains(STRIPE), "no secret in errors: {got}");
    }
    // An inline secret is not a key at all.
    let e = compile("  - id: w\n    routes: [webhooks]\n    provider: github\n    secrets: [{id: a, value: x}]\n")
        .unwrap_err();
    assert!(e[0].contains("unknown field `value`"), "{e:?}");
}

#[test]
fn generic_schemes_compile_and_verify() {
    let rules = "  - id: g\n    routes: [webhooks]\n    provider: generic\n    generic: {header: x-signature, algorithm: sha512, encoding: base64, prefix: 'v1=', timestamp_header: x-timestamp}\n    secrets: [{id: a, env: GH}]\n    tolerance_seconds: 30\n";
    let w = compile(rules).unwrap();
    let rule = &w.rules[0];
    let body = b"hello";
    let t = NOW.to_string();
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, GH.as_bytes()), format!("{t}.hello").as_bytes());
    use base64::Engine as _;
    let sig = format!("v1={}", base64::engine::general_purpose::STANDARD.encode(mac.as_ref()));
    let h = headers(&[("x-signature", &sig), ("x-timestamp", &t)]);
    let cache = ReplayCache::default();
    assert!(matches!(rule.check(&h, body, NOW, &cache), Checked::Accepted { .. }));
    assert_eq!(refused_reason(rule.check(&h, body, NOW, &cache)), "replayed", "the exact signature again");
    assert_eq!(refused_reason(rule.check(&h, body, NOW + 31, &cache)), "stale_timestamp");
}
