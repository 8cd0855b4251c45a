//! Key material parsing: `identity::jwt::parse_jwks` (JWKS JSON), `VerifyingKey::from_pem` (PEM,
//! SPKI and PKCS#1 DER) and the DER reader (`identity::der`).
//!
//! Input: the first line picks what the rest is: `HS256`, `RS256` or `ES256` (a JWKS document for
//! that algorithm), `PEM RS256` or `PEM ES256` (a PEM key), `DER` (raw DER: SPKI, then PKCS#1);
//! any other first line: the whole input is tried as all of them.
//!
//! Properties: no panic; a parsed JWKS has 1 to 100 keys, all bound to the algorithm asked for;
//! a key from PEM is bound to its algorithm; HS256 never takes a PEM key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::first_line;
use portcullis_rules::identity::der;
use portcullis_rules::identity::jwt::{parse_jwks, Alg, VerifyingKey, MAX_JWKS_KEYS};

fn jwks(text: &str, alg: Alg) {
    if let Ok(keys) = parse_jwks(text, alg) {
        assert!(!keys.is_empty() && keys.len() <= MAX_JWKS_KEYS, "{} keys", keys.len());
        assert!(keys.iter().all(|k| k.alg() == alg), "a key of another algorithm");
    }
}

fn pem(text: &str, alg: Alg) {
    match VerifyingKey::from_pem(Some("k".into()), alg, text) {
        Ok(k) => {
            assert_eq!(k.alg(), alg);
            assert_ne!(alg, Alg::Hs256, "HS256 took a PEM key");
            assert_eq!(k.kid(), Some("k"));
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

fn der_parse(bytes: &[u8]) {
    if let Ok(spki) = der::parse_spki(bytes) {
        assert!(!spki.algorithm.is_empty());
        let _ = der::parse_rsa_public_key(spki.key);
    }
    if let Ok((n, e)) = der::parse_rsa_public_key(bytes) {
        assert!(n.first() != Some(&0) && e.first() != Some(&0), "leading zero kept");
        let _ = VerifyingKey::rsa(None, n, e);
    }
    let mut rest = bytes;
    while let Ok((_, contents, next)) = der::read_tlv(rest) {
        assert!(next.len() < rest.len(), "read_tlv made no progress");
        assert!(contents.len() < rest.len());
        rest = next;
    }
    let _ = VerifyingKey::ec_p256(None, bytes);
}

fuzz_target!(|data: &[u8]| {
    let (line, rest) = first_line(data);
    let text = std::str::from_utf8(rest).ok();
    match (line, text) {
        (b"HS256", Some(t)) => jwks(t, Alg::Hs256),
        (b"RS256", Some(t)) => jwks(t, Alg::Rs256),
        (b"ES256", Some(t)) => jwks(t, Alg::Es256),
        (b"PEM RS256", Some(t)) => pem(t, Alg::Rs256),
        (b"PEM ES256", Some(t)) => pem(t, Alg::Es256),
        (b"DER", _) => der_parse(rest),
        _ => {
            der_parse(data);
            if let Ok(t) = std::str::from_utf8(data) {
                for alg in [Alg::Hs256, Alg::Rs256, Alg::Es256] {
                    jwks(t, alg);
                    pem(t, alg);
                }
                if let Ok((_label, bytes)) = der::pem_decode(t) {
                    der_parse(&bytes);
                }
            }
        }
    }
});
