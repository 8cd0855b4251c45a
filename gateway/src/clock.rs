//! The wall clock as the gateway reads and writes it: seconds since the epoch, and RFC 3339 UTC
//! timestamps with seconds. A leaf module: it imports nothing of the crate.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::SystemTime;

/// Seconds since the epoch (the clock every switch lookup and change uses).
pub fn now_unix() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// RFC 3339 UTC timestamp with seconds, e.g. `2026-01-31T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// [`rfc3339`] of a time in seconds since the epoch (the epoch itself when out of range).
pub fn rfc3339_unix(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)
}
