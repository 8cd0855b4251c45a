//! The daily digest: the last 24 hours in one message — counts by type and severity, the top
//! client addresses, the health score and its trend, switch changes and who made them, quotas
//! near their limit, the alerts firing now. Sent at `alerting.digest.time` in
//! `alerting.digest.zone` (DST followed), or now with `POST /v1/safe-test/digest`.

use super::config::DigestConfig;
use super::Sources;
use crate::events::{EventQuery, SecurityEvent};
use portcullis_rules::verdict::EventType;
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

/// Unix ms of the first digest time strictly after `now_ms`.
pub fn next_at(d: &DigestConfig, now_ms: i64) -> i64 {
    let fallback = now_ms + DAY_MS;
    let Ok(now) = jiff::Timestamp::from_millisecond(now_ms) else { return fallback };
    let today = now.to_zoned(d.zone.clone()).date();
    let at = |date: jiff::civil::Date| {
        date.at(i8::try_from(d.hour).unwrap_or(0), i8::try_from(d.minute).unwrap_or(0), 0, 0)
            .to_zoned(d.zone.clone())
            .ok()
            .map(|z| z.timestamp())
    };
    match at(today) {
        Some(t) if t > now => t.as_millisecond(),
        _ => today.tomorrow().ok().and_then(at).map_or(fallback, |t| t.as_millisecond()),
    }
}

/// The local date of `now_ms` in the digest's zone (UTC without one), `YYYY-MM-DD`.
pub fn local_date(d: Option<&DigestConfig>, now_ms: i64) -> String {
    let zone = d.map_or(jiff::tz::TimeZone::UTC, |d| d.zone.clone());
    jiff::Timestamp::from_millisecond(now_ms).map(|t| t.to_zoned(zone).date().to_string()).unwrap_or_default()
}

/// How near its limit a quota must be to be listed (percent).
const QUOTA_NEAR_PERCENT: u64 = 80;

/// The digest body (JSON; the sinks render it).
pub fn build(shared: &dyn Sources, now_ms: i64, firing: Vec<Value>) -> Value {
    let summary = shared.events().summary(24, shared.requests());
    let threats = shared.events().top_threats(24, 10);
    // Health over the day in four 6-hour blocks, oldest first.
    let trend: Vec<u8> = (0..4)
        .rev()
        .map(|i| {
            let end = now_ms - i * 6 * 3_600_000;
            super::health(shared, end, 360)
        })
        .collect();
    let day = |kinds: Vec<EventType>| {
        let q = EventQuery { kinds, hours: 24, limit: crate::events::MAX_EVENTS_LIMIT, ..EventQuery::default() };
        shared.events().query(&q)
    };
    let switch_changes: Vec<Value> = day(vec![EventType::SwitchChanged])
        .iter()
        .rev()
        .filter(|e| !e.test)
        .map(|e| {
            let d = &e.detail;
            json!({
                "time": e.time,
                "change": format!("{}: {} → {}", d.get("target").and_then(Value::as_str).unwrap_or("?"), d.get("old").unwrap_or(&Value::Null), d.get("new").unwrap_or(&Value::Null)),
                "by": d.get("set_by").and_then(Value::as_str).unwrap_or("?"),
            })
        })
        .collect();
    let quotas = quotas_near_limit(&day(vec![EventType::QuotaExceeded]));
    json!({
        "since": summary["since"],
        "until": crate::events::format_time_ms(now_ms),
        "events": summary["events"],
        "requests": summary["requests"],
        "health": { "score": summary["health_score"], "status": summary["health_status"], "trend": trend },
        "top_client_ips": threats["client_ips"],
        "top_subjects": threats["subjects"],
        "switch_changes": switch_changes,
        "quotas_near_limit": quotas,
        "alerts_firing": firing,
    })
}

/// The highest use per (tenant, rule) reported by the day's quota events (threshold notices and
/// refusals), when at least [`QUOTA_NEAR_PERCENT`] of the limit.
fn quotas_near_limit(events: &[std::sync::Arc<SecurityEvent>]) -> Vec<Value> {
    let mut best: std::collections::BTreeMap<(String, String), (u64, u64)> = std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| !e.test) {
        let d = &e.detail;
        let (Some(tenant), Some(used), Some(limit)) = (
            d.get("tenant").and_then(Value::as_str),
            d.get("used").and_then(Value::as_u64),
            d.get("limit").and_then(Value::as_u64),
        ) else {
            continue;
        };
        let rule = e.rule_id.clone().unwrap_or_default();
        let slot = best.entry((tenant.to_owned(), rule)).or_insert((0, limit));
        if used >= slot.0 {
            *slot = (used, limit);
        }
    }
    best.into_iter()
        .filter_map(|((tenant, rule), (used, limit))| {
            let percent = used.saturating_mul(100).checked_div(limit)?;
            (percent >= QUOTA_NEAR_PERCENT)
                .then(|| json!({ "tenant": tenant, "rule_id": rule, "used": used, "limit": limit, "percent": percent }))
        })
        .collect()
}

#[cfg(test)]
mod tests;
