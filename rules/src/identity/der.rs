//! A minimal, bounds-checked DER reader and PEM decoder: just enough to read public keys.
//!
//! Supported: single-byte tags, definite lengths (short form, or long form of 1 to 4 bytes, minimally
//! encoded as DER requires). Indefinite lengths, high tag numbers and non-minimal lengths are refused.
//! Everything returns `Err(String)` on bad input; nothing here panics.

use base64::Engine as _;

/// DER tag: INTEGER.
pub const TAG_INTEGER: u8 = 0x02;
/// DER tag: BIT STRING.
pub const TAG_BIT_STRING: u8 = 0x03;
/// DER tag: NULL.
pub const TAG_NULL: u8 = 0x05;
/// DER tag: OBJECT IDENTIFIER.
pub const TAG_OID: u8 = 0x06;
/// DER tag: SEQUENCE (constructed).
pub const TAG_SEQUENCE: u8 = 0x30;

/// rsaEncryption, 1.2.840.113549.1.1.1 (OID content bytes).
pub const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1 (OID content bytes).
pub const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7 (OID content bytes).
pub const OID_PRIME256V1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Largest PEM text accepted, in bytes (a 16384-bit RSA public key is under 3 KiB).
pub const MAX_PEM_LEN: usize = 64 * 1024;

/// One TLV read off the front of `input`: `(tag, contents, rest)`.
pub fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("DER: truncated (no tag)")?;
    if tag & 0x1F == 0x1F {
        return Err("DER: high tag numbers are not supported".into());
    }
    let (&first, rest) = rest.split_first().ok_or("DER: truncated (no length)")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 {
            return Err("DER: indefinite length is not allowed".into());
        }
        if n > 4 {
            return Err("DER: length field longer than 4 bytes".into());
        }
        let bytes = rest.get(..n).ok_or("DER: truncated length")?;
        if bytes.first() == Some(&0) {
            return Err("DER: non-minimal length (leading zero)".into());
        }
        let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err("DER: non-minimal length (long form for a short length)".into());
        }
        (len, rest.get(n..).ok_or("DER: truncated length")?)
    };
    let contents = rest.get(..len).ok_or("DER: contents run past the end of the input")?;
    let rest = rest.get(len..).ok_or("DER: contents run past the end of the input")?;
    Ok((tag, contents, rest))
}

/// Reads one TLV that must carry `tag`: `(contents, rest)`.
pub fn expect_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (t, contents, rest) = read_tlv(input)?;
    if t != tag {
        return Err(format!("DER: expected tag 0x{tag:02x}, found 0x{t:02x}"));
    }
    Ok((contents, rest))
}

/// Reads exactly one TLV with `tag` covering all of `input` (no trailing bytes): its contents.
pub fn expect_only(input: &[u8], tag: u8) -> Result<&[u8], String> {
    let (contents, rest) = expect_tlv(input, tag)?;
    if !rest.is_empty() {
        return Err("DER: trailing bytes after the structure".into());
    }
    Ok(contents)
}

/// An INTEGER's contents as an unsigned big-endian magnitude with leading zero bytes stripped.
/// Negative and empty integers are refused; zero comes back as an empty slice.
pub fn unsigned_integer(contents: &[u8]) -> Result<&[u8], String> {
    match contents.first() {
        None => Err("DER: empty INTEGER".into()),
        Some(&b) if b & 0x80 != 0 => Err("DER: negative INTEGER".into()),
        Some(_) => {
            let start = contents.iter().position(|&b| b != 0).unwrap_or(contents.len());
            Ok(contents.get(start..).unwrap_or_default())
        }
    }
}

/// The parts of a SubjectPublicKeyInfo that key loading needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spki<'a> {
    /// The algorithm OID's content bytes (compare with [`OID_RSA_ENCRYPTION`], [`OID_EC_PUBLIC_KEY`]).
    pub algorithm: &'a [u8],
    /// The algorithm parameters when they are an OID (the named curve for EC keys); `None` when
    /// absent or NULL (RSA).
    pub param_oid: Option<&'a [u8]>,
    /// The BIT STRING's contents after the unused-bits byte (which must be 0): for RSA a DER
    /// `RSAPublicKey`, for EC the encoded point.
    pub key: &'a [u8],
}

/// Parses `SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { OID, params }, BIT STRING }` (whole input).
pub fn parse_spki(der: &[u8]) -> Result<Spki<'_>, String> {
    let spki = expect_only(der, TAG_SEQUENCE)?;
    let (alg_id, rest) = expect_tlv(spki, TAG_SEQUENCE)?;
    let bits = expect_only(rest, TAG_BIT_STRING)?;
    let (algorithm, params) = expect_tlv(alg_id, TAG_OID)?;
    if algorithm.is_empty() {
        return Err("DER: empty algorithm OID".into());
    }
    let param_oid = if params.is_empty() {
        None
    } else {
        let (tag, contents, rest) = read_tlv(params)?;
        if !rest.is_empty() {
            return Err("DER: trailing bytes after the algorithm parameters".into());
        }
        match tag {
            TAG_NULL if contents.is_empty() => None,
            TAG_OID if !contents.is_empty() => Some(contents),
            _ => return Err(format!("DER: unsupported algorithm parameters (tag 0x{tag:02x})")),
        }
    };
    let (&unused, key) = bits.split_first().ok_or("DER: empty BIT STRING")?;
    if unused != 0 {
        return Err("DER: BIT STRING with unused bits".into());
    }
    Ok(Spki { algorithm, param_oid, key })
}

/// Parses PKCS#1 `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }` (whole input): `(n, e)`
/// as big-endian magnitudes without leading zero bytes.
pub fn parse_rsa_public_key(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let seq = expect_only(der, TAG_SEQUENCE)?;
    let (n, rest) = expect_tlv(seq, TAG_INTEGER)?;
    let e = expect_only(rest, TAG_INTEGER)?;
    Ok((unsigned_integer(n)?, unsigned_integer(e)?))
}

/// Decodes the first PEM block in `text`: `(label, DER bytes)`.
///
/// Text before the `-----BEGIN <label>-----` line and after the matching END line is ignored
/// (RFC 7468 explanatory text). The END label must match the BEGIN label. The body is standard
/// base64 (with padding), split over lines; line breaks and surrounding spaces are stripped.
/// Encapsulated headers (`Proc-Type:` etc., i.e. encrypted legacy PEM) are refused.
pub fn pem_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    if text.len() > MAX_PEM_LEN {
        return Err(format!("PEM: longer than {MAX_PEM_LEN} bytes"));
    }
    let mut lines = text.lines().map(str::trim);
    let label = loop {
        let line = lines.next().ok_or("PEM: no -----BEGIN line")?;
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            break label;
        }
    };
    if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
        return Err("PEM: bad BEGIN line".into());
    }
    let mut body = String::new();
    loop {
        let line = lines.next().ok_or_else(|| format!("PEM: no -----END {label}----- line"))?;
        if let Some(end) = line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----")) {
            if end != label {
                return Err(format!("PEM: END label {end:?} does not match BEGIN label {label:?}"));
            }
            break;
        }
        if line.starts_with("-----") {
            return Err("PEM: unexpected boundary line inside the block".into());
        }
        if line.contains(':') {
            return Err("PEM: encapsulated headers (encrypted PEM) are not supported".into());
        }
        body.push_str(line);
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| format!("PEM: bad base64 body: {e}"))?;
    if der.is_empty() {
        return Err("PEM: empty body".into());
    }
    Ok((label.to_string(), der))
}

#[cfg(test)]
mod tests;
