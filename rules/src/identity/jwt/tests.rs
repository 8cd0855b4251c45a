use super::*;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use std::time::{Duration, Instant};

const RSA1_KEY: &str = include_str!("../../../../tests/fixtures/jwt/rsa1.key.pem");
const RSA1_PUB: &str = include_str!("../../../../tests/fixtures/jwt/rsa1.pub.pem");
const RSA2_KEY: &str = include_str!("../../../../tests/fixtures/jwt/rsa2.key.pem");
const RSA2_PUB: &str = include_str!("../../../../tests/fixtures/jwt/rsa2.pub.pem");
const EC1_KEY: &str = include_str!("../../../../tests/fixtures/jwt/ec1.key.pem");
const EC1_PUB: &str = include_str!("../../../../tests/fixtures/jwt/ec1.pub.pem");
const RSA1024_PUB: &str = include_str!("../../../../tests/fixtures/jwt/rsa1024.pub.pem");

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256-test-secret";
const NOW: u64 = 1_700_000_000;
const RS: &str = "https://rs.example";
const ES: &str = "https://es.example";
const HS: &str = "https://hs.example";

enum Key {
    Hmac(&'static [u8]),
    Rsa(&'static str),
    Ec(&'static str),
    EcDer(&'static str),
}

fn b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

fn pkcs8(pem: &str) -> Vec<u8> {
    let (label, der) = der::pem_decode(pem).unwrap();
    assert_eq!(label, "PRIVATE KEY");
    der
}

fn sign_bytes(key: &Key, msg: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    match key {
        Key::Hmac(secret) => hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), msg).as_ref().to_vec(),
        Key::Rsa(pem) => {
            let kp = RsaKeyPair::from_pkcs8(&pkcs8(pem)).unwrap();
            let mut sig = vec![0; kp.public().modulus_len()];
            kp.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
            sig
        }
        Key::Ec(pem) | Key::EcDer(pem) => {
            let alg = if matches!(key, Key::Ec(_)) {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P256_SHA256_ASN1_SIGNING
            };
            let kp = EcdsaKeyPair::from_pkcs8(alg, &pkcs8(pem), &rng).unwrap();
            kp.sign(&rng, msg).unwrap().as_ref().to_vec()
        }
    }
}

fn sign_raw(key: &Key, header: &str, claims: &str) -> String {
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = sign_bytes(key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

fn sign(key: &Key, header: Value, claims: Value) -> String {
    sign_raw(key, &header.to_string(), &claims.to_string())
}

fn claims(iss: &str) -> Value {
    json!({"iss": iss, "sub": "alice", "exp": NOW + 600, "iat": NOW})
}

fn issuer(iss: &str, alg: Alg, keys: Vec<VerifyingKey>) -> Issuer {
    Issuer { issuer: iss.into(), alg, keys, audiences: vec![], leeway: 0 }
}

fn verifier() -> Verifier {
    Verifier {
        issuers: vec![
            issuer(RS, Alg::Rs256, vec![VerifyingKey::from_pem(Some("r1".into()), Alg::Rs256, RSA1_PUB).unwrap()]),
            issuer(ES, Alg::Es256, vec![VerifyingKey::from_pem(None, Alg::Es256, EC1_PUB).unwrap()]),
            issuer(HS, Alg::Hs256, vec![VerifyingKey::hmac(Some("h1".into()), SECRET).unwrap()]),
        ],
    }
}

fn rs(claims: Value) -> String {
    sign(&Key::Rsa(RSA1_KEY), json!({"alg": "RS256", "typ": "JWT", "kid": "r1"}), claims)
}

/// `{"kty":"RSA","n","e"}` for a SPKI PEM, computed with the der module.
fn jwk_rsa(pem: &str, kid: &str) -> Value {
    let (_, der_bytes) = der::pem_decode(pem).unwrap();
    let spki = der::parse_spki(&der_bytes).unwrap();
    let (n, e) = der::parse_rsa_public_key(spki.key).unwrap();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n), "e": b64(e)})
}

fn jwk_ec(pem: &str, kid: &str) -> Value {
    let (_, der_bytes) = der::pem_decode(pem).unwrap();
    let spki = der::parse_spki(&der_bytes).unwrap();
    let (x, y) = (spki.key.get(1..33).unwrap(), spki.key.get(33..65).unwrap());
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": b64(x), "y": b64(y)})
}

#[test]
fn names_are_stable() {
    assert_eq!(Alg::parse("RS256"), Some(Alg::Rs256));
    assert_eq!(Alg::parse("rs256"), None);
    for alg in [Alg::Hs256, Alg::Rs256, Alg::Es256] {
        assert_eq!(Alg::parse(alg.as_str()), Some(alg));
    }
    assert_eq!(JwtError::Malformed.as_str(), "malformed_token");
    assert_eq!(JwtError::TooLarge.to_string(), "token_too_large");
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Verifier>();
}

#[test]
fn valid_tokens_pass_and_return_claims() {
    let v = verifier();
    let got = v.verify(&rs(claims(RS)), NOW).unwrap();
    assert_eq!(got.get("sub"), Some(&json!("alice")));
    let es = sign(&Key::Ec(EC1_KEY), json!({"alg": "ES256"}), claims(ES));
    assert_eq!(v.verify(&es, NOW).unwrap().get("iss"), Some(&json!(ES)));
    let hs = sign(&Key::Hmac(SECRET), json!({"alg": "HS256", "kid": "h1", "typ": "at+jwt"}), claims(HS));
    assert_eq!(v.verify(&hs, NOW).unwrap().get("iat"), Some(&json!(NOW)));
    // No kid: every key of the issuer is a candidate.
    let hs = sign(&Key::Hmac(SECRET), json!({"alg": "HS256"}), claims(HS));
    assert!(v.verify(&hs, NOW).is_ok());
}

#[test]
fn rs256_via_jwks() {
    let doc = json!({"keys": [jwk_rsa(RSA1_PUB, "k1"), jwk_rsa(RSA2_PUB, "k2")]}).to_string();
    let keys = parse_jwks(&doc, Alg::Rs256).unwrap();
    assert_eq!(keys.iter().map(|k| k.kid()).collect::<Vec<_>>(), vec![Some("k1"), Some("k2")]);
    let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, keys)] };
    let t = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "kid": "k2"}), claims(RS));
    assert!(v.verify(&t, NOW).is_ok());
    // Signed by key 2 but claiming kid k1.
    let t = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "kid": "k1"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::BadSignature));

    let doc = json!({"keys": [jwk_ec(EC1_PUB, "e1")]}).to_string();
    let v = Verifier { issuers: vec![issuer(ES, Alg::Es256, parse_jwks(&doc, Alg::Es256).unwrap())] };
    let t = sign(&Key::Ec(EC1_KEY), json!({"alg": "ES256", "kid": "e1"}), claims(ES));
    assert!(v.verify(&t, NOW).is_ok());

    let doc = json!({"keys": [{"kty": "oct", "kid": "o", "k": b64(SECRET)}]}).to_string();
    let v = Verifier { issuers: vec![issuer(HS, Alg::Hs256, parse_jwks(&doc, Alg::Hs256).unwrap())] };
    let t = sign(&Key::Hmac(SECRET), json!({"alg": "HS256", "kid": "o"}), claims(HS));
    assert!(v.verify(&t, NOW).is_ok());
}

#[test]
fn pkcs1_pem_matches_spki() {
    let (_, der_bytes) = der::pem_decode(RSA1_PUB).unwrap();
    let spki = der::parse_spki(&der_bytes).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(spki.key);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n", lines.join("\n"));
    let key = VerifyingKey::from_pem(Some("r1".into()), Alg::Rs256, &pem).unwrap();
    let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, vec![key])] };
    assert!(v.verify(&rs(claims(RS)), NOW).is_ok());
    assert!(VerifyingKey::from_pem(None, Alg::Es256, &pem).unwrap_err().contains("RSA key"));
}

#[test]
fn time_boundaries() {
    let mut v = verifier();
    let exp = NOW + 100;
    let t = rs(json!({"iss": RS, "exp": exp}));
    assert!(v.verify(&t, exp - 1).is_ok());
    assert_eq!(v.verify(&t, exp), Err(JwtError::Expired), "exactly at exp is expired");
    assert_eq!(v.verify(&t, exp + 5), Err(JwtError::Expired));
    v.issuers.get_mut(0).unwrap().leeway = 10;
    assert!(v.verify(&t, exp + 9).is_ok());
    assert_eq!(v.verify(&t, exp + 10), Err(JwtError::Expired));

    let t = rs(json!({"iss": RS, "exp": NOW + 1000, "nbf": NOW}));
    assert!(v.verify(&t, NOW).is_ok());
    assert!(v.verify(&t, NOW - 10).is_ok(), "within leeway");
    assert_eq!(v.verify(&t, NOW - 11), Err(JwtError::NotYetValid));
    v.issuers.get_mut(0).unwrap().leeway = 0;
    assert_eq!(v.verify(&t, NOW - 1), Err(JwtError::NotYetValid));

    // Floats are NumericDates too.
    let t = rs(json!({"iss": RS, "exp": (NOW as f64) + 0.5}));
    assert!(v.verify(&t, NOW).is_ok());
    assert_eq!(v.verify(&t, NOW + 1), Err(JwtError::Expired));
    let t = rs(json!({"iss": RS, "exp": NOW + 10, "nbf": (NOW as f64) + 0.5}));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::NotYetValid));
    let t = rs(json!({"iss": RS, "exp": -5}));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::Expired));
    let t = rs(json!({"iss": RS, "exp": u64::MAX}));
    assert!(v.verify(&t, NOW).is_ok());

    assert_eq!(v.verify(&rs(json!({"iss": RS})), NOW), Err(JwtError::MissingExp));
    assert_eq!(v.verify(&rs(json!({"iss": RS, "exp": "1900000000"})), NOW), Err(JwtError::Malformed));
    assert_eq!(v.verify(&rs(json!({"iss": RS, "exp": null})), NOW), Err(JwtError::Malformed));
    assert_eq!(v.verify(&rs(json!({"iss": RS, "exp": NOW + 9, "nbf": "x"})), NOW), Err(JwtError::Malformed));
    let huge = sign_raw(&Key::Rsa(RSA1_KEY), r#"{"alg":"RS256"}"#, &format!(r#"{{"iss":"{RS}","exp":1e400}}"#));
    assert_eq!(v.verify(&huge, NOW), Err(JwtError::Malformed));
    // iat is ignored, even in the future or malformed.
    assert!(v.verify(&rs(json!({"iss": RS, "exp": NOW + 9, "iat": "later"})), NOW).is_ok());
}

#[test]
fn audiences() {
    let mut v = verifier();
    v.issuers.get_mut(0).unwrap().audiences = vec!["api".into(), "admin".into()];
    let with = |aud: Value| rs(json!({"iss": RS, "exp": NOW + 60, "aud": aud}));
    assert!(v.verify(&with(json!("api")), NOW).is_ok());
    assert!(v.verify(&with(json!(["other", "admin"])), NOW).is_ok());
    assert_eq!(v.verify(&with(json!("other")), NOW), Err(JwtError::WrongAudience));
    assert_eq!(v.verify(&with(json!(["other"])), NOW), Err(JwtError::WrongAudience));
    assert_eq!(v.verify(&with(json!([])), NOW), Err(JwtError::WrongAudience));
    assert_eq!(v.verify(&with(json!("API")), NOW), Err(JwtError::WrongAudience));
    assert_eq!(v.verify(&with(json!(7)), NOW), Err(JwtError::WrongAudience));
    assert_eq!(v.verify(&rs(claims(RS)), NOW), Err(JwtError::WrongAudience), "absent aud");
    // Without configured audiences, aud is not looked at.
    assert!(verifier().verify(&with(json!("whatever")), NOW).is_ok());
}

#[test]
fn unknown_issuer() {
    let v = verifier();
    assert_eq!(v.verify(&rs(claims("https://evil.example")), NOW), Err(JwtError::UnknownIssuer));
    assert_eq!(v.verify(&rs(claims("https://rs.example/")), NOW), Err(JwtError::UnknownIssuer));
    assert_eq!(v.verify(&rs(json!({"exp": NOW + 9})), NOW), Err(JwtError::UnknownIssuer));
    assert_eq!(v.verify(&rs(json!({"iss": 5, "exp": NOW + 9})), NOW), Err(JwtError::UnknownIssuer));
}

#[test]
fn alg_none() {
    let v = verifier();
    let body = b64(claims(RS).to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let head = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        assert_eq!(v.verify(&format!("{head}.{body}."), NOW), Err(JwtError::AlgNone), "{alg}");
        assert_eq!(v.verify(&format!("{head}.{body}.c2ln"), NOW), Err(JwtError::AlgNone), "{alg}");
        let signed = sign(&Key::Rsa(RSA1_KEY), json!({"alg": alg}), claims(RS));
        assert_eq!(v.verify(&signed, NOW), Err(JwtError::AlgNone));
    }
    // Empty signature with a real alg is malformed.
    let t = rs(claims(RS));
    let unsigned = t.get(..t.rfind('.').unwrap() + 1).unwrap();
    assert_eq!(v.verify(unsigned, NOW), Err(JwtError::Malformed));
    // An alg we do not know at all.
    let t = sign(&Key::Hmac(SECRET), json!({"alg": "HS512"}), claims(HS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNotAllowed));
}

#[test]
fn key_confusion() {
    let v = verifier();
    // HS256 "signed" with the RSA public key's PEM bytes as the HMAC secret.
    let t = sign(&Key::Hmac(RSA1_PUB.as_bytes()), json!({"alg": "HS256", "kid": "r1"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNotAllowed));
    let t = sign(&Key::Hmac(RSA1_PUB.as_bytes()), json!({"alg": "HS256"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNotAllowed));
    let err = VerifyingKey::from_pem(None, Alg::Hs256, RSA1_PUB).unwrap_err();
    assert!(err.contains("key-confusion"), "{err}");
    // Even a misconfigured issuer holding an HMAC key next to its RSA pin never uses it.
    let mut v = verifier();
    v.issuers.get_mut(0).unwrap().keys.push(VerifyingKey::hmac(None, RSA1_PUB.as_bytes()).unwrap());
    let t = sign(&Key::Hmac(RSA1_PUB.as_bytes()), json!({"alg": "RS256"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::BadSignature));
}

#[test]
fn alg_mismatch() {
    let v = verifier();
    let t = sign(&Key::Ec(EC1_KEY), json!({"alg": "ES256", "kid": "r1"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNotAllowed));
    let t = sign(&Key::Rsa(RSA1_KEY), json!({"alg": "RS256"}), claims(ES));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNotAllowed));
    // ES256 key but the header says RS256 on an ES256 issuer.
    let t = sign(&Key::Ec(EC1_KEY), json!({"alg": "RS256"}), claims(ES));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNotAllowed));
}

#[test]
fn kid_selection_and_rotation() {
    let k1 = VerifyingKey::from_pem(Some("one".into()), Alg::Rs256, RSA1_PUB).unwrap();
    let k2 = VerifyingKey::from_pem(Some("two".into()), Alg::Rs256, RSA2_PUB).unwrap();
    let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, vec![k1, k2])] };
    let t = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "kid": "two"}), claims(RS));
    assert!(v.verify(&t, NOW).is_ok());
    let t = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "kid": "three"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::UnknownKey));
    let t = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "kid": 2}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::Malformed));
    // Rotation without kids: either key verifies.
    let n1 = VerifyingKey::from_pem(None, Alg::Rs256, RSA1_PUB).unwrap();
    let n2 = VerifyingKey::from_pem(None, Alg::Rs256, RSA2_PUB).unwrap();
    let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, vec![n1, n2])] };
    for key in [RSA1_KEY, RSA2_KEY] {
        let t = sign(&Key::Rsa(key), json!({"alg": "RS256"}), claims(RS));
        assert!(v.verify(&t, NOW).is_ok());
    }
    // A kid in the token but no kids configured: no candidate.
    let t = sign(&Key::Rsa(RSA1_KEY), json!({"alg": "RS256", "kid": "one"}), claims(RS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::UnknownKey));
    // An issuer with no keys at all refuses with bad_signature.
    let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, vec![])] };
    assert_eq!(v.verify(&sign(&Key::Rsa(RSA1_KEY), json!({"alg": "RS256"}), claims(RS)), NOW), {
        Err(JwtError::BadSignature)
    });
}

/// Issue 18 item 15: a token without `kid` is checked against at most
/// [`MAX_CANDIDATE_KEYS`] keys; more candidates and it is refused before any signature check.
#[test]
fn keys_tried_per_token_are_bounded() {
    let other = |kid: Option<&str>| VerifyingKey::from_pem(kid.map(Into::into), Alg::Rs256, RSA2_PUB).unwrap();
    let right = |kid: Option<&str>| VerifyingKey::from_pem(kid.map(Into::into), Alg::Rs256, RSA1_PUB).unwrap();
    let no_kid = sign(&Key::Rsa(RSA1_KEY), json!({"alg": "RS256"}), claims(RS));
    let by_other = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "typ": "JWT"}), claims(RS));
    let with_kid = |kid: &str| sign(&Key::Rsa(RSA1_KEY), json!({"alg": "RS256", "kid": kid}), claims(RS));
    // Up to MAX_CANDIDATE_KEYS keys of the algorithm: each is tried (the right one last).
    for n in 1..=MAX_CANDIDATE_KEYS {
        let mut keys: Vec<_> = (1..n).map(|i| other(Some(&format!("o{i}")))).collect();
        keys.push(right(Some("r")));
        let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, keys)] };
        assert!(v.verify(&no_kid, NOW).is_ok(), "{n} keys");
        let want = if n == 1 { Err(JwtError::BadSignature) } else { Ok(()) };
        assert_eq!(v.verify(&by_other, NOW).map(|_| ()), want, "{n} keys");
    }
    // More (4, 10, the JWKS maximum): refused as kid_required, the genuine token too; keys of
    // another algorithm do not count; a kid still selects its key.
    for n in [MAX_CANDIDATE_KEYS + 1, 10, MAX_JWKS_KEYS] {
        let mut keys: Vec<_> = (1..n).map(|i| other(Some(&format!("o{i}")))).collect();
        keys.push(right(Some("r")));
        let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, keys)] };
        assert_eq!(v.verify(&no_kid, NOW), Err(JwtError::KidRequired), "{n} keys");
        assert_eq!(v.verify(&by_other, NOW), Err(JwtError::KidRequired), "{n} keys");
        assert!(v.verify(&with_kid("r"), NOW).is_ok());
        assert_eq!(v.verify(&with_kid("o1"), NOW), Err(JwtError::BadSignature));
        assert_eq!(v.verify(&with_kid("zz"), NOW), Err(JwtError::UnknownKey));
    }
    let mut keys: Vec<_> = (0..MAX_CANDIDATE_KEYS).map(|_| other(None)).collect();
    keys.push(VerifyingKey::hmac(None, SECRET).unwrap());
    keys.push(right(None));
    let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, keys)] };
    assert_eq!(v.verify(&no_kid, NOW), Err(JwtError::KidRequired), "4 RS256 keys and an HMAC one");
    // Many keys sharing one kid: only the first MAX_CANDIDATE_KEYS are tried.
    for (others, ok) in [(MAX_CANDIDATE_KEYS - 1, true), (MAX_CANDIDATE_KEYS, false), (50, false)] {
        let mut keys: Vec<_> = (0..others).map(|_| other(Some("same"))).collect();
        keys.push(right(Some("same")));
        let v = Verifier { issuers: vec![issuer(RS, Alg::Rs256, keys)] };
        assert_eq!(v.verify(&with_kid("same"), NOW).is_ok(), ok, "{others} others first");
    }
}

#[test]
fn tampering() {
    let v = verifier();
    let t = rs(claims(RS));
    let parts: Vec<&str> = t.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let forged = b64(json!({"iss": RS, "sub": "root", "exp": NOW + 600, "iat": NOW}).to_string().as_bytes());
    assert_eq!(v.verify(&format!("{h}.{forged}.{s}"), NOW), Err(JwtError::BadSignature));
    // Truncated signature (still canonical base64url: drop the final 2-char group, 1 byte).
    let short = s.get(..s.len() - 2).unwrap();
    assert_eq!(v.verify(&format!("{h}.{p}.{short}"), NOW), Err(JwtError::BadSignature));
    // Signature of another key.
    let other = sign(&Key::Rsa(RSA2_KEY), json!({"alg": "RS256", "kid": "r1"}), claims(RS));
    assert_eq!(v.verify(&other, NOW), Err(JwtError::BadSignature));
    // HS256 with a different secret.
    let t = sign(&Key::Hmac(b"another-secret-another-secret-xx"), json!({"alg": "HS256"}), claims(HS));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::BadSignature));
    // ES256 with a DER-encoded signature instead of r||s.
    let t = sign(&Key::EcDer(EC1_KEY), json!({"alg": "ES256"}), claims(ES));
    assert_eq!(v.verify(&t, NOW), Err(JwtError::BadSignature));
    // Signature bits not checked before claims: an expired token with a bad signature is bad_signature.
    let expired = rs(json!({"iss": RS, "exp": 1}));
    let mut bad = expired.clone();
    bad.push('A');
    bad.remove(expired.rfind('.').unwrap() + 1);
    assert_eq!(v.verify(&bad, NOW), Err(JwtError::BadSignature));
    assert_eq!(v.verify(&expired, NOW), Err(JwtError::Expired));
}

#[test]
fn structure() {
    let v = verifier();
    let t = rs(claims(RS));
    let parts: Vec<&str> = t.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    for bad in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}."),
        format!(".{p}.{s}"),
        format!("{h}..{s}"),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}=.{s}"),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}.{s} "),
        format!(" {h}.{p}.{s}"),
        format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/") + "+/"),
        String::new(),
        "..".into(),
        "a.b.c".into(),
    ] {
        assert_eq!(v.verify(&bad, NOW), Err(JwtError::Malformed), "{bad}");
    }
    // Non-canonical trailing bits: a 256-byte signature ends in a 2-char group whose last char
    // carries 4 unused bits (zero when canonical); setting the lowest one must be refused.
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(s.len() % 4, 2);
    let last = s.chars().last().unwrap();
    let idx = ALPHABET.find(last).unwrap();
    assert_eq!(idx & 0xF, 0);
    let flipped = ALPHABET.chars().nth(idx | 1).unwrap();
    let non_canonical = format!("{}{flipped}", s.get(..s.len() - 1).unwrap());
    assert_eq!(v.verify(&format!("{h}.{p}.{non_canonical}"), NOW), Err(JwtError::Malformed));

    let with = |header: &str, payload: &str| sign_raw(&Key::Rsa(RSA1_KEY), header, payload);
    let good = claims(RS).to_string();
    for (header, payload) in [
        (r#"["RS256"]"#, good.as_str()),
        (r#""RS256""#, good.as_str()),
        (r#"{"alg":"RS256","crit":["exp"]}"#, good.as_str()),
        (r#"{"alg":"RS256","crit":[]}"#, good.as_str()),
        (r#"{"alg":"RS256","typ":1}"#, good.as_str()),
        (r#"{"alg":7}"#, good.as_str()),
        (r#"{"typ":"JWT"}"#, good.as_str()),
        (r#"{"alg":"RS256","alg":"RS256"}"#, good.as_str()),
        (r#"{"alg":"RS256"} x"#, good.as_str()),
        ("not json", good.as_str()),
        (r#"{"alg":"RS256"}"#, r#"[{"iss":"https://rs.example"}]"#),
        (r#"{"alg":"RS256"}"#, r#""claims""#),
        (r#"{"alg":"RS256"}"#, &format!(r#"{{"iss":"https://x","iss":"{RS}","exp":{}}}"#, NOW + 60)),
    ] {
        assert_eq!(v.verify(&with(header, payload), NOW), Err(JwtError::Malformed), "{header} {payload}");
    }
    // Nested duplicates are left to serde_json (last wins); only top-level names matter here.
    let nested = format!(r#"{{"iss":"{RS}","exp":{},"x":{{"a":1,"a":2}}}}"#, NOW + 60);
    assert!(v.verify(&with(r#"{"alg":"RS256"}"#, &nested), NOW).is_ok());
}

#[test]
fn huge_token_is_refused_fast() {
    let v = verifier();
    let huge = format!("{}.{}.{}", "a".repeat(50_000), "b".repeat(50_000), "c".repeat(10));
    let start = Instant::now();
    assert_eq!(v.verify(&huge, NOW), Err(JwtError::TooLarge));
    assert!(start.elapsed() < Duration::from_millis(50));
    let just = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(v.verify(&just, NOW), Err(JwtError::TooLarge));
    assert_eq!(v.verify(&"a".repeat(MAX_TOKEN_LEN), NOW), Err(JwtError::Malformed));
}

#[test]
fn key_loading() {
    let err = VerifyingKey::from_pem(None, Alg::Rs256, RSA1024_PUB).unwrap_err();
    assert!(err.contains("1024 bits"), "{err}");
    for pem in [RSA1_KEY, EC1_KEY] {
        for alg in [Alg::Rs256, Alg::Es256] {
            let err = VerifyingKey::from_pem(None, alg, pem).unwrap_err();
            assert_eq!(err, "this is a private key; give the public key");
        }
    }
    assert!(VerifyingKey::from_pem(None, Alg::Es256, RSA1_PUB).unwrap_err().contains("RSA key"));
    assert!(VerifyingKey::from_pem(None, Alg::Rs256, EC1_PUB).unwrap_err().contains("EC key"));
    assert!(VerifyingKey::from_pem(None, Alg::Rs256, "nonsense").is_err());
    let cert = RSA1_PUB.replace("PUBLIC KEY", "CERTIFICATE");
    assert!(VerifyingKey::from_pem(None, Alg::Rs256, &cert).unwrap_err().contains("certificate"));
    let other = RSA1_PUB.replace("PUBLIC KEY", "SOMETHING");
    assert!(VerifyingKey::from_pem(None, Alg::Rs256, &other).unwrap_err().contains("label"));
    assert!(VerifyingKey::hmac(None, &[7; 31]).is_err());
    assert!(VerifyingKey::hmac(None, &[7; 32]).is_ok());
    assert!(VerifyingKey::ec_p256(None, &[4; 64]).is_err());
    let mut compressed = vec![0x02];
    compressed.extend([1; 32]);
    assert!(VerifyingKey::ec_p256(None, &compressed).is_err());
    assert!(VerifyingKey::ec_p256(None, &[5; 65]).is_err());
    // RSA components: leading zeros ignored, exponent checks.
    let (_, d) = der::pem_decode(RSA1_PUB).unwrap();
    let spki = der::parse_spki(&d).unwrap();
    let (n, _) = der::parse_rsa_public_key(spki.key).unwrap();
    let mut padded = vec![0, 0];
    padded.extend_from_slice(n);
    assert!(VerifyingKey::rsa(None, &padded, &[1, 0, 1]).is_ok());
    assert!(VerifyingKey::rsa(None, n, &[1]).is_err());
    assert!(VerifyingKey::rsa(None, n, &[2]).is_err());
    assert!(VerifyingKey::rsa(None, n, &[]).is_err());
    assert!(VerifyingKey::rsa(None, n, &[1, 0, 0, 0, 0, 1]).is_err());
    assert!(VerifyingKey::rsa(None, n.get(1..).unwrap(), &[3]).is_err());
    assert!(VerifyingKey::rsa(None, &[0xFF; 1025], &[3]).is_err());
    // Debug shows no material.
    let k = VerifyingKey::hmac(Some("kid-1".into()), b"super-secret-super-secret-super-secret").unwrap();
    let dbg = format!("{k:?}");
    assert!(dbg.contains("kid-1") && dbg.contains("Hs256") && !dbg.contains("super"), "{dbg}");
    let k = VerifyingKey::from_pem(None, Alg::Rs256, RSA1_PUB).unwrap();
    assert_eq!(k.alg(), Alg::Rs256);
    assert!(format!("{:?}", verifier()).len() < 1000, "no key bytes in Debug");
}

#[test]
fn jwks_parsing() {
    let r1 = jwk_rsa(RSA1_PUB, "r1");
    let e1 = jwk_ec(EC1_PUB, "e1");
    let mut enc = jwk_rsa(RSA2_PUB, "enc");
    enc["use"] = json!("enc");
    let mut wrong_alg = jwk_rsa(RSA2_PUB, "ps");
    wrong_alg["alg"] = json!("PS256");
    let mut no_verify = jwk_rsa(RSA2_PUB, "ops");
    no_verify.as_object_mut().unwrap().remove("use");
    no_verify["key_ops"] = json!(["encrypt"]);
    let p384 = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"});
    let doc = json!({"keys": [enc, wrong_alg, no_verify, e1, p384, okp, r1]}).to_string();
    let keys = parse_jwks(&doc, Alg::Rs256).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys.first().unwrap().kid(), Some("r1"));
    let keys = parse_jwks(&doc, Alg::Es256).unwrap();
    assert_eq!(keys.iter().map(|k| k.kid()).collect::<Vec<_>>(), vec![Some("e1")]);
    assert!(parse_jwks(&doc, Alg::Hs256).unwrap_err().contains("no usable"));

    // Malformed right-kty keys are errors naming the key.
    let mut bad = jwk_rsa(RSA1_PUB, "bad-n");
    bad["n"] = json!("!!!");
    let err = parse_jwks(&json!({"keys": [bad]}).to_string(), Alg::Rs256).unwrap_err();
    assert!(err.contains("#0") && err.contains("bad-n") && err.contains("base64url"), "{err}");
    let mut padded = jwk_rsa(RSA1_PUB, "pad");
    padded["e"] = json!("AQAB==");
    assert!(parse_jwks(&json!({"keys": [padded]}).to_string(), Alg::Rs256).is_err());
    let (_, d) = der::pem_decode(RSA1024_PUB).unwrap();
    let (n, e) = der::parse_rsa_public_key(der::parse_spki(&d).unwrap().key).unwrap();
    let small = json!({"kty": "RSA", "n": b64(n), "e": b64(e)});
    let err = parse_jwks(&json!({"keys": [jwk_rsa(RSA1_PUB, "r1"), small]}).to_string(), Alg::Rs256).unwrap_err();
    assert!(err.contains("#1") && err.contains("1024"), "{err}");
    let mut short_x = jwk_ec(EC1_PUB, "sx");
    short_x["x"] = json!("AAAA");
    assert!(parse_jwks(&json!({"keys": [short_x]}).to_string(), Alg::Es256).unwrap_err().contains("32 bytes"));
    let mut private = jwk_ec(EC1_PUB, "priv");
    private["d"] = json!("AAAA");
    assert!(parse_jwks(&json!({"keys": [private]}).to_string(), Alg::Es256).unwrap_err().contains("private"));
    let mut kid_num = jwk_rsa(RSA1_PUB, "x");
    kid_num["kid"] = json!(1);
    assert!(parse_jwks(&json!({"keys": [kid_num]}).to_string(), Alg::Rs256).is_err());
    let missing = json!({"kty": "RSA", "e": "AQAB"});
    assert!(parse_jwks(&json!({"keys": [missing]}).to_string(), Alg::Rs256).unwrap_err().contains("\"n\""));
    let short_k = json!({"kty": "oct", "k": b64(b"short")});
    assert!(parse_jwks(&json!({"keys": [short_k]}).to_string(), Alg::Hs256).is_err());

    // Document-level problems.
    for doc in ["", "[]", "{}", r#"{"keys":{}}"#, r#"{"keys":[1]}"#, "{\"keys\":[", r#"{"keys":[]}"#] {
        assert!(parse_jwks(doc, Alg::Rs256).is_err(), "{doc}");
    }
    let many: Vec<Value> = (0..101).map(|i| jwk_rsa(RSA1_PUB, &i.to_string())).collect();
    assert!(parse_jwks(&json!({"keys": many}).to_string(), Alg::Rs256).unwrap_err().contains("100"));
    let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(MAX_JWKS_LEN));
    assert!(parse_jwks(&big, Alg::Rs256).unwrap_err().contains("bytes"));
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = verifier_cached().verify(&s, NOW);
    }

    #[test]
    fn arbitrary_three_parts_never_panic(s in "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_=-]{0,120}") {
        prop_assert!(verifier_cached().verify(&s, NOW).is_err());
    }

    #[test]
    fn arbitrary_json_parts_never_panic(
        header in prop_oneof![
            Just(r#"{"alg":"RS256"}"#.to_string()),
            Just(r#"{"alg":"HS256","kid":"h1"}"#.to_string()),
            Just(r#"{"alg":"ES256"}"#.to_string()),
            "\\{\"alg\":\"[A-Za-z0-9]{0,6}\"(,\"kid\":\"[a-z0-9]{0,3}\")?\\}",
            any::<String>(),
        ],
        payload in prop_oneof![
            Just(format!(r#"{{"iss":"{HS}","exp":{}}}"#, NOW + 5)),
            Just(format!(r#"{{"iss":"{RS}","exp":1e308,"nbf":-1e308,"aud":[1,null,{{}}]}}"#)),
            "\\{\"iss\":\"https://(rs|es|hs)\\.example\",\"exp\":-?[0-9]{0,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?\\}",
            any::<String>(),
        ],
        sig in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let t = format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(&sig));
        prop_assert!(verifier_cached().verify(&t, NOW).is_err());
    }

    #[test]
    fn jwks_never_panics(s in any::<String>(), n in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_jwks(&s, Alg::Rs256);
        let doc = json!({"keys": [{"kty": "RSA", "n": b64(&n), "e": "AQAB"}, {"kty": "EC", "crv": "P-256", "x": b64(&n), "y": b64(&n)}]});
        for alg in [Alg::Rs256, Alg::Es256, Alg::Hs256] {
            let _ = parse_jwks(&doc.to_string(), alg);
        }
        let _ = der::pem_decode(&s);
        let _ = der::parse_spki(&n);
        let _ = der::parse_rsa_public_key(&n);
    }
}

fn verifier_cached() -> &'static Verifier {
    static V: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    V.get_or_init(verifier)
}
