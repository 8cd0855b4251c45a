//! A pure JWT verifier: JWS compact serialisation, HS256 / RS256 / ES256 on `ring`.
//!
//! Each trusted issuer pins exactly one algorithm and its keys; the token's `iss` picks the issuer,
//! the header `alg` must equal the pinned one (which is what stops `alg: none` and key confusion),
//! and key material is typed, so a key can only ever verify with its own algorithm. The header's
//! `jwk`, `jku`, `x5u` and `x5c` members are never used: keys come from configuration only.
//!
//! Nothing here does I/O or reads the clock: `now_unix` is a parameter.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use ring::{hmac, signature};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::der;

/// Base64url as JWS wants it: URL-safe alphabet, no padding, canonical trailing bits.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Most keys one token's signature is checked against. A token with a `kid` is checked against
/// the issuer's keys with that kid (of the pinned algorithm; the first ones if several share
/// it); a token without `kid` against every key of the pinned algorithm, and refused as
/// `kid_required` without any signature check when the issuer has more such keys than this. A
/// forged token thus costs at most this many signature checks, however many keys the JWKS has.
pub const MAX_CANDIDATE_KEYS: usize = 3;
/// Smallest HS256 secret, in bytes (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (ring's limit for `RSA_PKCS1_2048_8192_SHA256`).
pub const MAX_RSA_BITS: usize = 8192;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Most keys a JWKS document may hold.
pub const MAX_JWKS_KEYS: usize = 100;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Pinned signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC with SHA-256 over a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256, fixed-width `r || s` signatures.
    Es256,
}

impl Alg {
    /// Parses a JWS `alg` name: exactly `"HS256"`, `"RS256"` or `"ES256"` (case-sensitive).
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "HS256" => Some(Alg::Hs256),
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    /// The JWS `alg` name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }

    /// The JWK `kty` of keys for this algorithm.
    pub const fn kty(self) -> &'static str {
        match self {
            Alg::Hs256 => "oct",
            Alg::Rs256 => "RSA",
            Alg::Es256 => "EC",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Typed key material: a key verifies with its own algorithm only.
#[derive(Clone)]
enum Material {
    Hmac(hmac::Key),
    /// Big-endian magnitudes, no leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point, `0x04 || x || y`.
    Ec(Vec<u8>),
}

/// One verification key bound to one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    material: Material,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("alg", &self.alg()).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// HS256 shared secret; at least 32 bytes (RFC 7518 §3.2) else Err.
    pub fn hmac(kid: Option<String>, secret: &[u8]) -> Result<VerifyingKey, String> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(format!(
                "HS256 secret is {} bytes; at least {MIN_HMAC_SECRET_LEN} are required (RFC 7518 section 3.2)",
                secret.len()
            ));
        }
        Ok(VerifyingKey { kid, material: Material::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret)) })
    }

    /// An RS256 key from its modulus and public exponent (big-endian; leading zero bytes are ignored).
    /// Refuses moduli under 2048 or over 8192 bits, even moduli, and exponents that are even, under 3
    /// or over 2^33 - 1.
    pub fn rsa(kid: Option<String>, n: &[u8], e: &[u8]) -> Result<VerifyingKey, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if bits < MIN_RSA_BITS {
            return Err(format!("RSA modulus is {bits} bits; at least {MIN_RSA_BITS} are required"));
        }
        if bits > MAX_RSA_BITS {
            return Err(format!("RSA modulus is {bits} bits; at most {MAX_RSA_BITS} are supported"));
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err("RSA modulus is even".into());
        }
        if e.len() > 5 {
            return Err("RSA public exponent is too large".into());
        }
        let e_value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if !(3..(1u64 << 33)).contains(&e_value) || e_value & 1 == 0 {
            return Err(format!("RSA public exponent {e_value} is not supported (odd, 3 to 2^33-1)"));
        }
        Ok(VerifyingKey { kid, material: Material::Rsa { n: n.to_vec(), e: e.to_vec() } })
    }

    /// An ES256 key from its uncompressed P-256 point (`0x04 || x || y`, 65 bytes).
    pub fn ec_p256(kid: Option<String>, point: &[u8]) -> Result<VerifyingKey, String> {
        if point.len() != 65 || point.first() != Some(&0x04) {
            return Err(format!(
                "EC public key must be an uncompressed P-256 point (65 bytes starting 0x04), got {} bytes",
                point.len()
            ));
        }
        Ok(VerifyingKey { kid, material: Material::Ec(point.to_vec()) })
    }

    /// A PEM public key for RS256 (`-----BEGIN PUBLIC KEY-----` SPKI with rsaEncryption OID, or
    /// `-----BEGIN RSA PUBLIC KEY-----` PKCS#1) or ES256 (SPKI with id-ecPublicKey + prime256v1 OID).
    /// Errors: wrong PEM label, key type not matching alg, RSA modulus < 2048 bits, EC point not 65
    /// bytes uncompressed, a private key, and HS256 (an HMAC key made from a public key is the
    /// key-confusion setup).
    pub fn from_pem(kid: Option<String>, alg: Alg, pem: &str) -> Result<VerifyingKey, String> {
        if alg == Alg::Hs256 {
            return Err("HS256 takes a shared secret, not a PEM key (an HMAC key made from a public key is the \
                        key-confusion attack)"
                .into());
        }
        let (label, der_bytes) = der::pem_decode(pem)?;
        if label.contains("PRIVATE KEY") {
            return Err("this is a private key; give the public key".into());
        }
        match label.as_str() {
            "PUBLIC KEY" => {
                let spki = der::parse_spki(&der_bytes)?;
                match (alg, spki.algorithm) {
                    (Alg::Rs256, der::OID_RSA_ENCRYPTION) => {
                        if spki.param_oid.is_some() {
                            return Err("rsaEncryption key with unexpected parameters".into());
                        }
                        let (n, e) = der::parse_rsa_public_key(spki.key)?;
                        VerifyingKey::rsa(kid, n, e)
                    }
                    (Alg::Es256, der::OID_EC_PUBLIC_KEY) => {
                        if spki.param_oid != Some(der::OID_PRIME256V1) {
                            return Err("EC key is not on P-256 (prime256v1), which ES256 requires".into());
                        }
                        VerifyingKey::ec_p256(kid, spki.key)
                    }
                    (_, der::OID_RSA_ENCRYPTION) => Err(format!("this is an RSA key; {alg} needs an EC P-256 key")),
                    (_, der::OID_EC_PUBLIC_KEY) => Err(format!("this is an EC key; {alg} needs an RSA key")),
                    _ => Err(format!("unsupported public key algorithm for {alg}")),
                }
            }
            "RSA PUBLIC KEY" => {
                if alg != Alg::Rs256 {
                    return Err(format!("this is an RSA key; {alg} needs an EC P-256 key"));
                }
                let (n, e) = der::parse_rsa_public_key(&der_bytes)?;
                VerifyingKey::rsa(kid, n, e)
            }
            "CERTIFICATE" => Err("this is a certificate; give its public key (openssl x509 -pubkey -noout)".into()),
            other => Err(format!("unexpected PEM label {other:?}; want PUBLIC KEY or RSA PUBLIC KEY")),
        }
    }

    /// The key id, matched against the token header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        match self.material {
            Material::Hmac(_) => Alg::Hs256,
            Material::Rsa { .. } => Alg::Rs256,
            Material::Ec(_) => Alg::Es256,
        }
    }

    /// Whether `sig` is a valid signature of `msg` under this key (constant time for HMAC).
    fn verifies(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(key) => hmac::verify(key, msg, sig).is_ok(),
            Material::Rsa { n, e } => signature::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            Material::Ec(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(msg, sig).is_ok()
            }
        }
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

/// Bit length of a big-endian magnitude without leading zero bytes.
fn bit_len(b: &[u8]) -> usize {
    match b.first() {
        None => 0,
        Some(&first) => (b.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// Parses a JWKS document (`{"keys":[...]}`) into the keys usable with `alg`: RSA keys (`kty: RSA`,
/// `n`, `e` base64url) for RS256, EC P-256 keys (`kty: EC`, `crv: P-256`, `x`, `y`, 32 bytes each)
/// for ES256, `kty: oct` (`k`) for HS256.
///
/// Skipped (not errors): keys with a `use` other than `sig`, with `key_ops` not containing `verify`,
/// with an `alg` member different from `alg`, of another `kty`, or EC keys on another curve.
/// Errors (naming the key's index and kid): a malformed document, a key of the right kty that is
/// malformed (bad base64url, wrong length, RSA < 2048 bits, non-string `kid`), an RSA or EC key
/// carrying private material (`d`), and zero usable keys. At most 256 KiB and 100 keys.
pub fn parse_jwks(json: &str, alg: Alg) -> Result<Vec<VerifyingKey>, String> {
    if json.len() > MAX_JWKS_LEN {
        return Err(format!("JWKS document is {} bytes; at most {MAX_JWKS_LEN} are accepted", json.len()));
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let keys = doc
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or("JWKS must be an object with a \"keys\" array")?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(format!("JWKS has {} keys; at most {MAX_JWKS_KEYS} are accepted", keys.len()));
    }
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let obj = key.as_object().ok_or_else(|| format!("JWKS key #{i} is not an object"))?;
        let name = || match obj.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("JWKS key #{i} (kid {kid:?})"),
            None => format!("JWKS key #{i}"),
        };
        if obj.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            continue;
        }
        if let Some(ops) = obj.get("key_ops") {
            let verify = ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
            if !verify {
                continue;
            }
        }
        if obj.get("alg").is_some_and(|a| a.as_str() != Some(alg.as_str())) {
            continue;
        }
        if obj.get("kty").and_then(Value::as_str) != Some(alg.kty()) {
            continue;
        }
        if alg == Alg::Es256 && obj.get("crv").and_then(Value::as_str) != Some("P-256") {
            continue;
        }
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(format!("{}: \"kid\" must be a string", name())),
        };
        let member = |m: &str| -> Result<Vec<u8>, String> {
            let s = obj.get(m).and_then(Value::as_str).ok_or_else(|| format!("{}: missing \"{m}\"", name()))?;
            B64URL.decode(s.as_bytes()).map_err(|_| format!("{}: \"{m}\" is not valid base64url", name()))
        };
        if alg != Alg::Hs256 && obj.contains_key("d") {
            return Err(format!("{}: contains private key material (\"d\"); publish the public key only", name()));
        }
        let parsed = match alg {
            Alg::Hs256 => VerifyingKey::hmac(kid, &member("k")?),
            Alg::Rs256 => VerifyingKey::rsa(kid, &member("n")?, &member("e")?),
            Alg::Es256 => {
                let (x, y) = (member("x")?, member("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(format!("{}: P-256 \"x\" and \"y\" must be 32 bytes each", name()));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerifyingKey::ec_p256(kid, &point)
            }
        };
        out.push(parsed.map_err(|e| format!("{}: {e}", name()))?);
    }
    if out.is_empty() {
        return Err(format!("JWKS has no usable {alg} signing keys"));
    }
    Ok(out)
}

/// One trusted issuer: the `iss` value, the one algorithm its tokens must use, its keys, audiences.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The exact `iss` claim value (byte-equal match).
    pub issuer: String,
    /// The one algorithm this issuer's tokens must use.
    pub alg: Alg,
    /// Verification keys; keys of another algorithm are never used.
    pub keys: Vec<VerifyingKey>,
    /// When non-empty, the token's `aud` (string or array of strings) must contain one of these.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway: u64,
}

/// The verifier for one identity rule. Immutable, Send + Sync.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The trusted issuers; a token's `iss` selects one.
    pub issuers: Vec<Issuer>,
}

/// Why a token was refused: stable snake_case names (they go into `auth_failure` events as
/// `reason`; never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLarge,
    /// Not three base64url parts, not JSON objects, bad member types, `crit`, duplicate members.
    Malformed,
    /// `alg: none` in any letter case.
    AlgNone,
    /// The header `alg` is not the issuer's pinned algorithm.
    AlgNotAllowed,
    /// No `iss` string, or no configured issuer with that value.
    UnknownIssuer,
    /// The header `kid` names no key of the issuer.
    UnknownKey,
    /// No header `kid`, and the issuer has more than [`MAX_CANDIDATE_KEYS`] keys of its algorithm.
    KidRequired,
    /// No candidate key verifies the signature.
    BadSignature,
    /// `now >= exp + leeway`.
    Expired,
    /// `now + leeway < nbf`.
    NotYetValid,
    /// `aud` absent or containing none of the issuer's audiences.
    WrongAudience,
    /// No `exp` claim.
    MissingExp,
}

impl JwtError {
    /// The stable snake_case reason name.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtError::TooLarge => "token_too_large",
            JwtError::Malformed => "malformed_token",
            JwtError::AlgNone => "alg_none",
            JwtError::AlgNotAllowed => "alg_not_allowed",
            JwtError::UnknownIssuer => "unknown_issuer",
            JwtError::UnknownKey => "unknown_key",
            JwtError::KidRequired => "kid_required",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingExp => "missing_exp",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for JwtError {}

/// A JSON object whose top-level member names are unique (RFC 7515 §5.2 / RFC 7519 §4 allow
/// rejecting duplicates; we do, so no two parsers can disagree on which `alg` or `iss` counts).
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut out = Map::new();
                while let Some(k) = access.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(A::Error::custom("duplicate member"));
                    }
                    let v: Value = access.next_value()?;
                    out.insert(k, v);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Base64url-decodes one part and parses it as a JSON object with unique member names.
fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = B64URL.decode(part.as_bytes()).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice::<UniqueObject>(&bytes).map(|o| o.0).map_err(|_| JwtError::Malformed)
}

/// A NumericDate, exact for integers.
#[derive(Clone, Copy)]
enum Time {
    Int(i128),
    Float(f64),
}

/// The named NumericDate claim: `Ok(None)` when absent, `Malformed` when not a finite number.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Time>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => number_time(n).map(Some).ok_or(JwtError::Malformed),
        Some(_) => Err(JwtError::Malformed),
    }
}

fn number_time(n: &Number) -> Option<Time> {
    if let Some(u) = n.as_u64() {
        Some(Time::Int(i128::from(u)))
    } else if let Some(i) = n.as_i64() {
        Some(Time::Int(i128::from(i)))
    } else {
        n.as_f64().filter(|f| f.is_finite()).map(Time::Float)
    }
}

impl Verifier {
    /// Verifies a compact JWS and returns its claims (the payload object).
    ///
    /// Order: size, structure and header (`alg: none` is refused here), then `iss` selects the
    /// issuer, the header `alg` must be the issuer's pinned one, `kid` selects candidate keys,
    /// the signature must verify with one of them, and only then are `exp`, `nbf` and `aud` checked.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Map<String, Value>, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(JwtError::Malformed);
        }

        let header = decode_object(header_b64)?;
        let alg = match header.get("alg") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(JwtError::Malformed),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::AlgNone);
        }
        if header.contains_key("crit") {
            return Err(JwtError::Malformed);
        }
        if header.get("typ").is_some_and(|t| !t.is_string()) {
            return Err(JwtError::Malformed);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(JwtError::Malformed),
        };
        if sig_b64.is_empty() {
            return Err(JwtError::Malformed);
        }
        let sig = B64URL.decode(sig_b64.as_bytes()).map_err(|_| JwtError::Malformed)?;
        let claims = decode_object(payload_b64)?;

        let iss = claims.get("iss").and_then(Value::as_str).ok_or(JwtError::UnknownIssuer)?;
        let issuer = self.issuers.iter().find(|i| i.issuer == iss).ok_or(JwtError::UnknownIssuer)?;
        if alg != issuer.alg.as_str() {
            return Err(JwtError::AlgNotAllowed);
        }

        // `header_b64 "." payload_b64` is a prefix of the token: no copy needed.
        let signed = token.get(..header_b64.len() + 1 + payload_b64.len()).ok_or(JwtError::Malformed)?;
        let of_alg = || issuer.keys.iter().filter(|k| k.alg() == issuer.alg);
        if kid.is_none() && of_alg().nth(MAX_CANDIDATE_KEYS).is_some() {
            return Err(JwtError::KidRequired);
        }
        let mut candidates = of_alg()
            .filter(|k| match kid {
                Some(kid) => k.kid() == Some(kid),
                None => true,
            })
            .take(MAX_CANDIDATE_KEYS);
        let mut any = false;
        let verified = candidates.any(|k| {
            any = true;
            k.verifies(signed.as_bytes(), &sig)
        });
        if !verified {
            return Err(if any || kid.is_none() { JwtError::BadSignature } else { JwtError::UnknownKey });
        }

        let leeway = issuer.leeway;
        let exp = time_claim(&claims, "exp")?.ok_or(JwtError::MissingExp)?;
        let expired = match exp {
            Time::Int(exp) => i128::from(now_unix) >= exp + i128::from(leeway),
            Time::Float(exp) => now_unix as f64 >= exp + leeway as f64,
        };
        if expired {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = time_claim(&claims, "nbf")? {
            let early = match nbf {
                Time::Int(nbf) => i128::from(now_unix) + i128::from(leeway) < nbf,
                Time::Float(nbf) => (now_unix as f64) + (leeway as f64) < nbf,
            };
            if early {
                return Err(JwtError::NotYetValid);
            }
        }
        if !issuer.audiences.is_empty() {
            let wanted = |a: &str| issuer.audiences.iter().any(|w| w == a);
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => wanted(a),
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str().is_some_and(wanted)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
