//! JWT verification: `identity::jwt::Verifier::verify` directly, and the whole bearer path
//! through a compiled identity rule (`Identities::authenticate`: header parsing, token cache,
//! claims to identity), with HS256, RS256 and ES256 issuers.
//!
//! Input: when it starts with `{`, the first line is a JWS header (JSON) and the rest the claims
//! (JSON); the target signs them with the HS256 fixture secret, so the fuzzer reaches every check
//! after the signature. Anything else is a raw token (and the raw `Authorization` value).
//!
//! Properties: no panic; a token is accepted only with `alg` equal to its issuer's pinned one, an
//! `iss` naming a configured issuer, an `exp` in the future, an allowed audience; changing one
//! character of the signature never keeps it accepted; the compiled path and the direct verifier
//! agree on acceptance (the compiled rule may still refuse the claims as an identity).
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{b64url, first_line, hmac_sha256};
use portcullis_rules::identity::jwt::{Alg, Issuer, Verifier, VerifyingKey};
use portcullis_rules::identity::{AuthInput, Authn, Identities};
use portcullis_rules::rulefile::{compile_with, AssetRef, Env, SourceFile};
use portcullis_rules::view::RequestView;
use serde_json::Value;
use std::sync::OnceLock;

const SECRET: &str = "0123456789abcdef0123456789abcdef-hs256-test-secret";
const RSA_PUB: &str = include_str!("../../tests/fixtures/jwt/rsa1.pub.pem");
const EC_PUB: &str = include_str!("../../tests/fixtures/jwt/ec1.pub.pem");
const NOW: u64 = 1_800_000_000;
const LEEWAY: u64 = 30;

const RULES: &str = r#"version: 1
identity:
  - id: api-auth
    routes: [api]
    jwt:
      leeway_seconds: 30
      claims: { subject: sub, tenant: tenant_id, roles: roles, session: sid, email: email }
      issuers:
        - issuer: https://hs.test/
          algorithm: HS256
          audiences: [portcullis]
          keys: [{ kid: h1, secret_env: JWT_SECRET }]
        - issuer: https://rs.test/
          algorithm: RS256
          keys: [{ kid: r1, pem_file: rsa1.pub.pem }]
        - issuer: https://es.test/
          algorithm: ES256
          keys: [{ pem_file: ec1.pub.pem }]
"#;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier {
        issuers: vec![
            Issuer {
                issuer: "https://hs.test/".into(),
                alg: Alg::Hs256,
                keys: vec![VerifyingKey::hmac(Some("h1".into()), SECRET.as_bytes()).expect("hmac key")],
                audiences: vec!["portcullis".into()],
                leeway: LEEWAY,
            },
            Issuer {
                issuer: "https://rs.test/".into(),
                alg: Alg::Rs256,
                keys: vec![VerifyingKey::from_pem(Some("r1".into()), Alg::Rs256, RSA_PUB).expect("rsa key")],
                audiences: vec![],
                leeway: LEEWAY,
            },
            Issuer {
                issuer: "https://es.test/".into(),
                alg: Alg::Es256,
                keys: vec![VerifyingKey::from_pem(None, Alg::Es256, EC_PUB).expect("ec key")],
                audiences: vec![],
                leeway: LEEWAY,
            },
        ],
    })
}

fn identities() -> &'static Identities {
    static I: OnceLock<Identities> = OnceLock::new();
    I.get_or_init(|| {
        let resolve = |r: &AssetRef| match r {
            AssetRef::Env(v) if v == "JWT_SECRET" => Ok(SECRET.as_bytes().to_vec()),
            AssetRef::File(f) if f == "rsa1.pub.pem" => Ok(RSA_PUB.as_bytes().to_vec()),
            AssetRef::File(f) if f == "ec1.pub.pem" => Ok(EC_PUB.as_bytes().to_vec()),
            other => Err(format!("{other} not found")),
        };
        let routes = ["api"];
        let env = Env { routes: Some(&routes), assets: Some(&resolve), sinks: None };
        match compile_with(&[SourceFile::new("identity.yaml", RULES)], &env) {
            Ok(s) => s.identity,
            Err(e) => panic!("fixture rules do not compile: {e:?}"),
        }
    })
}

/// The checks every accepted token must pass, on what it claims.
fn assert_acceptable(token: &str, claims: &serde_json::Map<String, Value>) {
    let header: Value = token
        .split('.')
        .next()
        .and_then(|h| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .expect("accepted token has a JSON header");
    let iss = claims.get("iss").and_then(Value::as_str).expect("accepted without iss");
    let issuer = verifier().issuers.iter().find(|i| i.issuer == iss).expect("accepted with an unknown iss");
    assert_eq!(header.get("alg").and_then(Value::as_str), Some(issuer.alg.as_str()), "alg is not the pinned one");
    let exp = claims.get("exp").and_then(Value::as_f64).expect("accepted without numeric exp");
    assert!((NOW as f64) < exp + LEEWAY as f64, "accepted an expired token");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("nbf not a number");
        assert!((NOW + LEEWAY) as f64 >= nbf, "accepted a token not yet valid");
    }
    if !issuer.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => issuer.audiences.contains(a),
            Some(Value::Array(a)) => {
                a.iter().any(|a| a.as_str().is_some_and(|a| issuer.audiences.iter().any(|w| w == a)))
            }
            _ => false,
        };
        assert!(ok, "accepted without an allowed audience");
    }
}

fn authenticate(auth: &[u8]) -> Option<bool> {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, HeaderValue::from_bytes(auth).ok()?);
    let view = RequestView {
        method: "GET",
        path: "/api/x",
        query: None,
        host: Some("api.test"),
        route: Some("api"),
        channel: None,
        client_ip: None,
        headers: &headers,
    };
    let no = |_: &str| false;
    let input = AuthInput { view: &view, peer_trusted: false, now_unix: NOW, revoked: &no, blocked: &no, allowlisted: &|_| None };
    match identities().authenticate(&input) {
        Authn::Verified(_) => Some(true),
        Authn::Failed(_) => Some(false),
        other => panic!("bearer token on a required rule gave {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let token = if data.first() == Some(&b'{') {
        let (header, claims) = first_line(data);
        let signing_input = format!("{}.{}", b64url(header), b64url(claims));
        let sig = hmac_sha256(SECRET.as_bytes(), &[signing_input.as_bytes()]);
        format!("{signing_input}.{}", b64url(&sig))
    } else {
        match std::str::from_utf8(data) {
            Ok(t) => t.to_owned(),
            Err(_) => {
                let _ = authenticate(data);
                return;
            }
        }
    };

    let direct = verifier().verify(&token, NOW);
    if let Ok(claims) = &direct {
        assert_acceptable(&token, claims);
        // One character of the signature changed: refused.
        let mut tampered = token.clone().into_bytes();
        if let Some(last) = tampered.last_mut() {
            *last = if *last == b'A' { b'Q' } else { b'A' };
            let tampered = String::from_utf8(tampered).expect("ASCII");
            assert!(verifier().verify(&tampered, NOW).is_err(), "tampered signature accepted");
        }
    }

    let bearer = format!("Bearer {token}");
    if let Some(accepted) = authenticate(bearer.as_bytes()) {
        // The bearer parser trims whitespace around the token (`Bearer \t <token>`).
        let trimmed = token.trim();
        let direct = if trimmed == token { direct.clone() } else { verifier().verify(trimmed, NOW) };
        if accepted {
            assert!(direct.is_ok(), "the compiled rule accepted a token the verifier refuses: {direct:?}");
        }
        // Twice: the second answer may come from the token cache, and must be the same, except
        // that the cache rounds a fractional `exp`/`nbf` inwards (to whole seconds, by design):
        // it may then refuse what the first full check accepted, never the reverse.
        let again = authenticate(bearer.as_bytes());
        let fractional = direct.as_ref().is_ok_and(|c| {
            ["exp", "nbf"].iter().any(|k| c.get(*k).and_then(Value::as_f64).is_some_and(|v| v.fract() != 0.0))
        });
        assert!(again == Some(accepted) || (fractional && accepted && again == Some(false)), "cached answer differs");
    }
    let _ = authenticate(&token.into_bytes());
});
