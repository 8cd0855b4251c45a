//! Decision this informs: identity and tenant scope run on every request of a protected route,
//! after the firewall. Is JWT verification cheap enough to do per request without a cache of
//! verified tokens (HS256, RS256 at 2048 bits, ES256 P-256: RS256 verification is the cheap
//! direction of RSA, ES256 the expensive one of ECDSA), what does the whole `authenticate`
//! (header lookup, verification, claim extraction, revocation lookup) add on top, and is the
//! tenant check (template match, percent-decoding, comparison) negligible beside it?
//!
//! Run: `cargo bench -p portcullis-benches --bench identity` (add `-- --quick` for a smoke run).

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use portcullis_rules::identity::der;
use portcullis_rules::identity::jwt::{Alg, Issuer, Verifier, VerifyingKey};
use portcullis_rules::identity::{AuthInput, Authn};
use portcullis_rules::rulefile::{compile_with, AssetRef, Env, Snapshot, SourceFile};
use portcullis_rules::tenant::{BodyInput, Principal};
use portcullis_rules::verdict::Outcome;
use portcullis_rules::view::RequestView;
use ring::signature::{self, KeyPair};
use std::hint::black_box;

const RSA_KEY: &str = include_str!("../../tests/fixtures/jwt/rsa1.key.pem");
const RSA_PUB: &str = include_str!("../../tests/fixtures/jwt/rsa1.pub.pem");
const EC_KEY: &str = include_str!("../../tests/fixtures/jwt/ec1.key.pem");
const EC_PUB: &str = include_str!("../../tests/fixtures/jwt/ec1.pub.pem");
const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret-0123";
const NOW: u64 = 1_800_000_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn claims(iss: &str) -> String {
    format!(
        r#"{{"iss":"{iss}","sub":"user-9","tenant":"12","roles":["member"],"sid":"s-1","email":"u@acme.example","exp":{}}}"#,
        NOW + 600
    )
}

// Fixtures that do not load must stop the bench loudly, not measure nothing.
#[allow(clippy::expect_used)]
fn token(alg: Alg, iss: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.as_str()).as_bytes()),
        b64(claims(iss).as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let sig = match alg {
        Alg::Hs256 => {
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET), input.as_bytes()).as_ref().to_vec()
        }
        Alg::Rs256 => {
            let (_, der) = der::pem_decode(RSA_KEY).expect("pem");
            let kp = signature::RsaKeyPair::from_pkcs8(&der).expect("rsa key");
            let mut sig = vec![0; kp.public().modulus_len()];
            kp.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).expect("sign");
            sig
        }
        Alg::Es256 => {
            let (_, der) = der::pem_decode(EC_KEY).expect("pem");
            let kp = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .expect("ec key");
            let _ = kp.public_key();
            kp.sign(&rng, input.as_bytes()).expect("sign").as_ref().to_vec()
        }
    };
    format!("{input}.{}", b64(&sig))
}

#[allow(clippy::expect_used)]
fn verifier() -> Verifier {
    let issuer = |name: &str, alg: Alg, key: VerifyingKey| Issuer {
        issuer: name.into(),
        alg,
        keys: vec![key],
        audiences: vec![],
        leeway: 30,
    };
    Verifier {
        issuers: vec![
            issuer("hs", Alg::Hs256, VerifyingKey::hmac(None, SECRET).expect("hmac")),
            issuer("rs", Alg::Rs256, VerifyingKey::from_pem(None, Alg::Rs256, RSA_PUB).expect("rsa")),
            issuer("es", Alg::Es256, VerifyingKey::from_pem(None, Alg::Es256, EC_PUB).expect("ec")),
        ],
    }
}

fn jwt(c: &mut Criterion) {
    let v = verifier();
    let mut g = c.benchmark_group("jwt_verify");
    for (name, alg, iss) in [("hs256", Alg::Hs256, "hs"), ("rs256", Alg::Rs256, "rs"), ("es256", Alg::Es256, "es")] {
        let t = token(alg, iss);
        assert!(v.verify(&t, NOW).is_ok(), "{name} fixture verifies");
        g.bench_function(name, |b| b.iter(|| v.verify(black_box(&t), NOW)));
    }
    let bad = format!("{}x", token(Alg::Rs256, "rs")); // not valid base64url: refused before any crypto
    g.bench_function("rs256_malformed", |b| b.iter(|| v.verify(black_box(&bad), NOW)));
    // Issue 18 item 15: a token without `kid` (signed by the last key, or forged) against an
    // issuer with 100 RS256 keys — the most a JWKS may hold. Before the bound every key was tried
    // (`--profile dev -- --quick`: 10.75 ms and 7.52 ms, 85x and 60x one rs256 verification of
    // the same run); now it is refused as `kid_required` before any signature check (8.6 us and
    // 8.0 us, cheaper than one verification): about 1000x less work per forged token.
    let many = many_keys_verifier();
    let last = token(Alg::Rs256, "many");
    let forged = {
        let (head, sig) = last.rsplit_once('.').unwrap_or((&last, ""));
        let mut sig = sig.as_bytes().to_vec();
        if let Some(c) = sig.get_mut(10) {
            *c = if *c == b'A' { b'B' } else { b'A' };
        }
        format!("{head}.{}", String::from_utf8_lossy(&sig))
    };
    g.bench_function("rs256_no_kid_100_keys", |b| b.iter(|| many.verify(black_box(&last), NOW)));
    g.bench_function("rs256_no_kid_100_keys_forged", |b| b.iter(|| many.verify(black_box(&forged), NOW)));
    g.finish();
}

/// One RS256 issuer `many` with 100 keys and no kids: 99 that do not match the fixture, then the
/// one that does.
#[allow(clippy::expect_used)]
fn many_keys_verifier() -> Verifier {
    let other = include_str!("../../tests/fixtures/jwt/rsa2.pub.pem");
    let mut keys: Vec<VerifyingKey> =
        (0..99).map(|_| VerifyingKey::from_pem(None, Alg::Rs256, other).expect("rsa2")).collect();
    keys.push(VerifyingKey::from_pem(None, Alg::Rs256, RSA_PUB).expect("rsa1"));
    Verifier { issuers: vec![Issuer { issuer: "many".into(), alg: Alg::Rs256, keys, audiences: vec![], leeway: 30 }] }
}

#[allow(clippy::expect_used, clippy::panic)]
fn snapshot() -> Snapshot {
    let text = r#"version: 1
identity:
  - id: api-auth
    routes: [business]
    jwt:
      issuers:
        - { issuer: hs, algorithm: HS256, keys: [{ secret_env: BENCH_SECRET }] }
        - { issuer: rs, algorithm: RS256, keys: [{ pem_file: rsa1.pub.pem }] }
tenant_scope:
  - id: tenant-in-path
    target: { path: "/api/business/{tenant}", query: tenant_id }
"#;
    let resolve = |r: &AssetRef| match r {
        AssetRef::Env(_) => Ok(SECRET.to_vec()),
        AssetRef::File(_) | AssetRef::List(_) => Ok(RSA_PUB.as_bytes().to_vec()),
    };
    let routes = ["business"];
    match compile_with(
        &[SourceFile::new("bench.yaml", text)],
        &Env { routes: Some(&routes), assets: Some(&resolve), sinks: None },
    ) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    }
}

#[allow(clippy::expect_used, clippy::panic)]
fn request(c: &mut Criterion) {
    let s = snapshot();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {}", token(Alg::Hs256, "hs"))).expect("hv"));
    headers.insert("user-agent", HeaderValue::from_static("Mozilla/5.0"));
    let view = RequestView {
        method: "GET",
        path: "/api/business/12/orders/4711",
        query: Some("page=2&tenant_id=12"),
        host: Some("app.example"),
        route: Some("business"),
        channel: None,
        client_ip: None,
        headers: &headers,
    };
    let revoked = |_: &str| false;
    let input = AuthInput {
        view: &view,
        peer_trusted: false,
        now_unix: NOW,
        revoked: &revoked,
        blocked: &revoked,
        allowlisted: &|_| None,
    };
    let who = match s.identity.authenticate(&input) {
        Authn::Verified(w) => w,
        other => panic!("{other:?}"),
    };
    let mut g = c.benchmark_group("request");
    g.bench_function("authenticate_hs256_cached", |b| b.iter(|| s.identity.authenticate(black_box(&input))));
    // RS256: the same token again (a cache hit after the first), and the uncached cost (the
    // verifier alone, as a fresh token would pay it).
    let mut rs_headers = HeaderMap::new();
    rs_headers
        .insert("authorization", HeaderValue::from_str(&format!("Bearer {}", token(Alg::Rs256, "rs"))).expect("hv"));
    let rs_view = RequestView { headers: &rs_headers, ..view };
    let rs_input = AuthInput { view: &rs_view, ..input };
    assert!(matches!(s.identity.authenticate(&rs_input), Authn::Verified(_)), "rs256 fixture authenticates");
    g.bench_function("authenticate_rs256_cached", |b| b.iter(|| s.identity.authenticate(black_box(&rs_input))));
    let p = Principal { subject: Some(&who.subject), tenant: who.tenant.as_deref(), roles: &who.roles };
    g.bench_function("tenant_check_path_and_query", |b| {
        b.iter(|| {
            let mut out = Outcome::default();
            let _ = s.tenant.check(black_box(&view), Some(&p), BodyInput::NotBuffered, &mut out);
            out
        })
    });
    g.finish();
}

criterion_group!(benches, jwt, request);
criterion_main!(benches);
