//! Helpers shared by the fuzz targets: the input conventions (README.md) and the fixtures.

/// Splits `data` at its first `\n`: the line (without the newline) and the rest. No newline:
/// the whole input is the line and the rest is empty.
pub fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Decimal numbers in `line` separated by anything else (`"3 10,20"` → `[3, 10, 20]`); numbers
/// that do not fit a `usize` are skipped.
pub fn numbers(line: &[u8]) -> Vec<usize> {
    line.split(|b| !b.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .collect()
}

/// An HTTP-like block: `name: value` lines up to an empty line, then the rest (a body). Lines
/// without a `:` and names or values `http` refuses are skipped.
pub fn headers_and_body(data: &[u8]) -> (http::HeaderMap, &[u8]) {
    let mut headers = http::HeaderMap::new();
    let mut rest = data;
    loop {
        if rest.is_empty() {
            return (headers, rest);
        }
        let (line, after) = first_line(rest);
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return (headers, rest);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
}

/// Base64url without padding, as JWS writes it.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}
