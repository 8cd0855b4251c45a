//! JWT helpers for end-to-end tests: the fixture keys under `tests/fixtures/jwt/`, token signing
//! with `ring`, and JWK / JWKS documents built from the fixture public keys.
//!
//! ```ignore
//! use portcullis_tests::jwt::{self, SigningKey};
//! use serde_json::json;
//!
//! let token = jwt::sign("RS256", &SigningKey::Rsa(jwt::RSA1_PRIVATE), json!({"kid": "r1"}),
//!                       json!({"iss": "https://idp.example", "exp": 4_000_000_000u64}));
//! let jwks = jwt::jwks(&[jwt::jwk_rsa(jwt::RSA1_PUBLIC, "r1")]);
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_rules::identity::der;
use ring::rand::SystemRandom;
use ring::{hmac, signature};
use serde_json::{json, Value};

/// RSA 2048 private key, PKCS#8 PEM (test-only).
pub const RSA1_PRIVATE: &str = include_str!("../fixtures/jwt/rsa1.key.pem");
/// RSA 2048 public key of [`RSA1_PRIVATE`], SPKI PEM.
pub const RSA1_PUBLIC: &str = include_str!("../fixtures/jwt/rsa1.pub.pem");
/// A second RSA 2048 private key (rotation), PKCS#8 PEM (test-only).
pub const RSA2_PRIVATE: &str = include_str!("../fixtures/jwt/rsa2.key.pem");
/// RSA 2048 public key of [`RSA2_PRIVATE`], SPKI PEM.
pub const RSA2_PUBLIC: &str = include_str!("../fixtures/jwt/rsa2.pub.pem");
/// EC P-256 private key, PKCS#8 PEM (test-only).
pub const EC1_PRIVATE: &str = include_str!("../fixtures/jwt/ec1.key.pem");
/// EC P-256 public key of [`EC1_PRIVATE`], SPKI PEM.
pub const EC1_PUBLIC: &str = include_str!("../fixtures/jwt/ec1.pub.pem");
/// An RSA 1024 public key, SPKI PEM: too small, must be refused.
pub const RSA1024_PUBLIC: &str = include_str!("../fixtures/jwt/rsa1024.pub.pem");

/// How a token is signed. The key type decides the signature; the header says whatever the test wants.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// HMAC-SHA256 with this secret (HS256).
    Hmac(Vec<u8>),
    /// RSASSA-PKCS1-v1_5 SHA-256 (RS256) with a PKCS#8 PEM private key.
    Rsa(&'static str),
    /// ECDSA P-256 SHA-256 (ES256), fixed-width `r || s` signature, with a PKCS#8 PEM private key.
    Ec(&'static str),
    /// ECDSA P-256 SHA-256 with an ASN.1 DER signature: wrong for JWS, for negative tests.
    EcAsn1(&'static str),
    /// No signature: the token ends with an empty third part.
    None,
}

/// Base64url without padding, as JWS uses.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs a compact JWS. `header` is given whole (so tests can craft `alg: none`, `kid`, `crit`);
/// when it is an object without an `alg` member, `alg` is added to it. The signature comes from
/// `key` regardless of what the header says.
pub fn sign(alg: &str, key: &SigningKey, header: Value, claims: Value) -> String {
    let mut header = header;
    if let Some(obj) = header.as_object_mut() {
        obj.entry("alg").or_insert_with(|| Value::String(alg.to_string()));
    }
    sign_raw(key, &header.to_string(), &claims.to_string())
}

/// Signs a compact JWS over exact header and claims texts (for duplicate members, odd spacing…).
pub fn sign_raw(key: &SigningKey, header_json: &str, claims_json: &str) -> String {
    let signing_input = format!("{}.{}", b64url(header_json.as_bytes()), b64url(claims_json.as_bytes()));
    let sig = signature_bytes(key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig))
}

/// The raw signature of `msg` under `key` (empty for [`SigningKey::None`]).
pub fn signature_bytes(key: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    match key {
        SigningKey::Hmac(secret) => hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), msg).as_ref().to_vec(),
        SigningKey::Rsa(pem) => {
            let kp = signature::RsaKeyPair::from_pkcs8(&private_der(pem)).expect("RSA PKCS#8 key");
            let mut sig = vec![0; kp.public().modulus_len()];
            kp.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).expect("RSA sign");
            sig
        }
        SigningKey::Ec(pem) | SigningKey::EcAsn1(pem) => {
            let alg = match key {
                SigningKey::Ec(_) => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                _ => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            };
            let kp = signature::EcdsaKeyPair::from_pkcs8(alg, &private_der(pem), &rng).expect("EC PKCS#8 key");
            kp.sign(&rng, msg).expect("EC sign").as_ref().to_vec()
        }
        SigningKey::None => Vec::new(),
    }
}

fn private_der(pem: &str) -> Vec<u8> {
    let (label, der_bytes) = der::pem_decode(pem).expect("PEM");
    assert_eq!(label, "PRIVATE KEY", "signing keys are PKCS#8 PEM");
    der_bytes
}

fn spki_key(public_pem: &str) -> Vec<u8> {
    let (label, der_bytes) = der::pem_decode(public_pem).expect("PEM");
    assert_eq!(label, "PUBLIC KEY", "want an SPKI public key PEM");
    der::parse_spki(&der_bytes).expect("SPKI").key.to_vec()
}

/// `{"kty":"RSA","kid":..,"use":"sig","alg":"RS256","n":..,"e":..}` for an SPKI RSA public key PEM.
pub fn jwk_rsa(public_pem: &str, kid: &str) -> Value {
    let key = spki_key(public_pem);
    let (n, e) = der::parse_rsa_public_key(&key).expect("PKCS#1 RSAPublicKey");
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(n), "e": b64url(e)})
}

/// `{"kty":"EC","crv":"P-256","kid":..,"use":"sig","alg":"ES256","x":..,"y":..}` for an SPKI P-256
/// public key PEM.
pub fn jwk_ec(public_pem: &str, kid: &str) -> Value {
    let point = spki_key(public_pem);
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let (x, y) = (&point[1..33], &point[33..65]);
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": b64url(x), "y": b64url(y)})
}

/// A JWKS document `{"keys":[...]}`.
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_rules::identity::jwt::{parse_jwks, Alg, Issuer, JwtError, Verifier, VerifyingKey};

    const NOW: u64 = 1_700_000_000;

    fn issuer(iss: &str, alg: Alg, keys: Vec<VerifyingKey>) -> Issuer {
        Issuer { issuer: iss.into(), alg, keys, audiences: vec!["api".into()], leeway: 0 }
    }

    #[test]
    fn helpers_make_tokens_the_verifier_accepts() {
        let secret = b"e2e-hs256-secret-e2e-hs256-secret".to_vec();
        let v = Verifier {
            issuers: vec![
                issuer(
                    "rs",
                    Alg::Rs256,
                    parse_jwks(&jwks(&[jwk_rsa(RSA1_PUBLIC, "r1"), jwk_rsa(RSA2_PUBLIC, "r2")]), Alg::Rs256).unwrap(),
                ),
                issuer("es", Alg::Es256, parse_jwks(&jwks(&[jwk_ec(EC1_PUBLIC, "e1")]), Alg::Es256).unwrap()),
                issuer("hs", Alg::Hs256, vec![VerifyingKey::hmac(None, &secret).unwrap()]),
            ],
        };
        let claims = |iss: &str| json!({"iss": iss, "aud": "api", "exp": NOW + 60});
        let rs = sign("RS256", &SigningKey::Rsa(RSA2_PRIVATE), json!({"kid": "r2"}), claims("rs"));
        assert_eq!(v.verify(&rs, NOW).unwrap()["iss"], "rs");
        let es = sign("ES256", &SigningKey::Ec(EC1_PRIVATE), json!({"typ": "JWT"}), claims("es"));
        assert!(v.verify(&es, NOW).is_ok());
        let hs = sign("HS256", &SigningKey::Hmac(secret), json!({}), claims("hs"));
        assert!(v.verify(&hs, NOW).is_ok());
        let der_sig = sign("ES256", &SigningKey::EcAsn1(EC1_PRIVATE), json!({}), claims("es"));
        assert_eq!(v.verify(&der_sig, NOW), Err(JwtError::BadSignature));
        let none = sign("none", &SigningKey::None, json!({}), claims("rs"));
        assert!(none.ends_with('.'));
        assert_eq!(v.verify(&none, NOW), Err(JwtError::AlgNone));
        let confused = sign("HS256", &SigningKey::Hmac(RSA1_PUBLIC.as_bytes().to_vec()), json!({}), claims("rs"));
        assert_eq!(v.verify(&confused, NOW), Err(JwtError::AlgNotAllowed));
        // A header's own alg wins over the `alg` argument.
        let t = sign("RS256", &SigningKey::Rsa(RSA1_PRIVATE), json!({"alg": "NONE"}), claims("rs"));
        assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgNone));
        assert!(VerifyingKey::from_pem(None, Alg::Rs256, RSA1024_PUBLIC).is_err());
    }
}
