//! Request ids: the gateway's own, time-ordered (the format is `portcullis_rules::request_id`'s).
//! A leaf module: it imports nothing of the crate.

use portcullis_rules::request_id;

/// Generates a time-ordered request id.
pub fn new_request_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    request_id::format_id(ms, rand::random::<u128>())
}
