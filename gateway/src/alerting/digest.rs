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
mod tests {
    use super::*;

    fn cfg(time: (u8, u8), zone: &str) -> DigestConfig {
        DigestConfig {
            hour: time.0,
            minute: time.1,
            zone: jiff::tz::TimeZone::get(zone).unwrap(),
            zone_name: zone.into(),
            sinks: None,
        }
    }

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn the_next_digest_follows_the_zone_and_its_dst() {
        let la = cfg((9, 0), "America/Los_Angeles");
        // 2026-01-30 is winter (UTC−8): 09:00 LA is 17:00Z.
        assert_eq!(next_at(&la, ms("2026-01-30T16:59:00Z")), ms("2026-01-30T17:00:00Z"));
        assert_eq!(next_at(&la, ms("2026-01-30T17:00:00Z")), ms("2026-01-31T17:00:00Z"));
        // Summer (UTC−7): 16:00Z.
        assert_eq!(next_at(&la, ms("2026-07-01T12:00:00Z")), ms("2026-07-01T16:00:00Z"));
        // Across the spring change (2026-03-08): the day after is at the new offset.
        assert_eq!(next_at(&la, ms("2026-03-07T18:00:00Z")), ms("2026-03-08T16:00:00Z"));
        let utc = cfg((0, 30), "UTC");
        assert_eq!(next_at(&utc, ms("2026-01-30T23:00:00Z")), ms("2026-01-31T00:30:00Z"));
        assert_eq!(local_date(Some(&la), ms("2026-01-31T03:00:00Z")), "2026-01-30");
        assert_eq!(local_date(None, ms("2026-01-31T03:00:00Z")), "2026-01-31");
    }

    #[test]
    fn quotas_near_their_limit_are_listed_once_at_their_highest() {
        let ev = |tenant: &str, used: u64, limit: u64| {
            let mut e = SecurityEvent::new(
                EventType::QuotaExceeded,
                portcullis_rules::verdict::Severity::Warning,
                portcullis_rules::verdict::Mode::Monitor,
                portcullis_rules::verdict::Action::Flagged,
            );
            e.rule_id = Some("monthly".into());
            e.detail.insert("tenant".into(), json!(tenant));
            e.detail.insert("used".into(), json!(used));
            e.detail.insert("limit".into(), json!(limit));
            std::sync::Arc::new(e)
        };
        let list = quotas_near_limit(&[ev("73", 800, 1000), ev("73", 900, 1000), ev("12", 500, 1000), ev("9", 1, 0)]);
        assert_eq!(
            list,
            vec![json!({ "tenant": "73", "rule_id": "monthly", "used": 900, "limit": 1000, "percent": 90 })]
        );
    }
}
