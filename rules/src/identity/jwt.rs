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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;
    use std::time::{Duration, Instant};

    const RSA1_KEY: &str = include_str!("../../../tests/fixtures/jwt/rsa1.key.pem");
    const RSA1_PUB: &str = include_str!("../../../tests/fixtures/jwt/rsa1.pub.pem");
    const RSA2_KEY: &str = include_str!("../../../tests/fixtures/jwt/rsa2.key.pem");
    const RSA2_PUB: &str = include_str!("../../../tests/fixtures/jwt/rsa2.pub.pem");
    const EC1_KEY: &str = include_str!("../../../tests/fixtures/jwt/ec1.key.pem");
    const EC1_PUB: &str = include_str!("../../../tests/fixtures/jwt/ec1.pub.pem");
    const RSA1024_PUB: &str = include_str!("../../../tests/fixtures/jwt/rsa1024.pub.pem");

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
}
