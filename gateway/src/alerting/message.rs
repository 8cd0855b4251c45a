//! What a notification says, and how each sink shows it: Standard Webhooks JSON, Slack
//! incoming-webhook JSON, PagerDuty Events v2, e-mail. Pure: no I/O.
//!
//! A notification carries what the on-call needs — the rule, its description (the runbook's
//! action), the measured value and the threshold, the window, labels, and a `/v1/events` query —
//! and never a raw event: no client addresses, subjects, paths or PII, no secret.

use portcullis_rules::alerts::{AlertRule, MetricKind};
use portcullis_rules::verdict::Severity;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The condition held for `for`.
    Firing,
    /// A notified alert's condition cleared.
    Resolved,
}

impl Status {
    /// `firing` or `resolved`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Unique per notification (the `webhook-id`, the e-mail's reference).
    pub id: String,
    /// Firing or resolved.
    pub status: Status,
    /// A safe test's notification (`POST /v1/safe-test/...`): proves the path, is no incident.
    pub test: bool,
    /// The rule.
    pub rule_id: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's description (the runbook's action).
    pub description: Option<String>,
    /// What was measured.
    pub metric: MetricKind,
    /// `above` or `below`.
    pub comparison: &'static str,
    /// The threshold.
    pub threshold: f64,
    /// The measured value (`None`: no data, e.g. a resolve with no traffic left).
    pub value: Option<f64>,
    /// The window the value is measured over.
    pub window_secs: u64,
    /// When the condition started holding (RFC 3339).
    pub since: Option<String>,
    /// When this notification was made (RFC 3339).
    pub at: String,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// Stable per rule: PagerDuty's `dedup_key`.
    pub dedup_key: String,
    /// The `/v1/events` query that shows what fired (path and query).
    pub events_query: String,
    /// `links_base_url` + `events_query`, when a base is configured.
    pub events_url: Option<String>,
}

/// What goes to a sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// An alert.
    Alert(Alert),
    /// The daily digest (its JSON body; see `digest.rs`), and its one-line title.
    Digest {
        /// Unique per digest.
        id: String,
        /// e.g. `Portcullis daily digest 2026-01-30 (America/Los_Angeles)`.
        title: String,
        /// The digest.
        body: Value,
    },
}

impl Message {
    /// The message id (`webhook-id`).
    pub fn id(&self) -> &str {
        match self {
            Self::Alert(a) => &a.id,
            Self::Digest { id, .. } => id,
        }
    }

    /// The severity a sink's `min_severity` filters on (a digest always passes).
    pub fn severity(&self) -> Option<Severity> {
        match self {
            Self::Alert(a) => Some(a.severity),
            Self::Digest { .. } => None,
        }
    }

    /// Messages with the same key are delivered in order (a resolve never overtakes its fire).
    pub fn order_key(&self) -> &str {
        match self {
            Self::Alert(a) => &a.dedup_key,
            Self::Digest { id, .. } => id,
        }
    }

    /// For logs and events: the rule (or `digest`), never a value.
    pub fn what(&self) -> &str {
        match self {
            Self::Alert(a) => &a.rule_id,
            Self::Digest { .. } => "digest",
        }
    }
}

/// A value as people read it: integers without decimals, others with two.
pub fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// `1h`, `15m`, `90s`.
pub fn show_window(secs: u64) -> String {
    portcullis_rules::alerts::show_secs(secs)
}

/// The `/v1/events` query of a rule: its types (or severities), over its window in hours.
pub fn events_query(rule: &AlertRule) -> String {
    let hours = rule.window_secs.div_ceil(3600).max(1);
    let mut q = vec![format!("hours={hours}")];
    match rule.metric {
        MetricKind::Events => {
            if !rule.events.types.is_empty() {
                let t: Vec<&str> = rule.events.types.iter().map(|t| t.as_str()).collect();
                q.push(format!("type={}", t.join(",")));
            }
            if !rule.events.severities.is_empty() {
                let s: Vec<&str> = rule.events.severities.iter().map(|s| s.as_str()).collect();
                q.push(format!("severity={}", s.join(",")));
            }
            if let [tenant] = rule.events.tenants.as_slice() {
                q.push(format!("tenant={}", percent_encode(tenant)));
            }
        }
        // What lowers the score: the critical and warning events.
        MetricKind::HealthScore => q.push("severity=critical,warning".into()),
        MetricKind::ErrorRate5xx | MetricKind::LatencyP99 => {}
    }
    match rule.metric {
        MetricKind::ErrorRate5xx | MetricKind::LatencyP99 => format!("/v1/summary?{}", q.join("&")),
        _ => format!("/v1/events?{}", q.join("&")),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Alert {
    /// The one-line summary: `[TEST] [CRITICAL] firing: firewall-block-spike: 14 events above 10 over 1h`.
    pub fn title(&self) -> String {
        let test = if self.test { "[TEST] " } else { "" };
        let value = self.value.map_or_else(|| "no data".to_owned(), |v| format!("{} {}", show(v), self.metric.unit()));
        format!(
            "{test}[{}] {}: {}: {value} ({} {} {}) over {}",
            self.severity.as_str().to_ascii_uppercase(),
            self.status.as_str(),
            self.rule_id,
            self.metric.as_str(),
            self.comparison,
            show(self.threshold),
            show_window(self.window_secs),
        )
    }

    /// The JSON every sink's payload is built from.
    pub fn json(&self) -> Value {
        json!({
            "type": "alert",
            "id": self.id,
            "status": self.status.as_str(),
            "test": self.test,
            "rule_id": self.rule_id,
            "severity": self.severity.as_str(),
            "description": self.description,
            "metric": self.metric.as_str(),
            "unit": self.metric.unit(),
            "comparison": self.comparison,
            "threshold": self.threshold,
            "value": self.value,
            "window": show_window(self.window_secs),
            "window_secs": self.window_secs,
            "since": self.since,
            "at": self.at,
            "labels": self.labels,
            "dedup_key": self.dedup_key,
            "events_query": self.events_query,
            "events_url": self.events_url,
            "summary": self.title(),
        })
    }

    /// Plain-text body (e-mail, Slack).
    pub fn text(&self) -> String {
        let mut t = self.title();
        if let Some(d) = &self.description {
            t.push_str(&format!("\nAction: {d}"));
        }
        t.push_str(&format!(
            "\nValue: {} | threshold: {} {} | window: {}",
            self.value.map_or_else(|| "no data".to_owned(), show),
            self.comparison,
            show(self.threshold),
            show_window(self.window_secs)
        ));
        if let Some(s) = &self.since {
            t.push_str(&format!("\nSince: {s}"));
        }
        t.push_str(&format!("\nAt: {}", self.at));
        for (k, v) in &self.labels {
            t.push_str(&format!("\n{k}: {v}"));
        }
        t.push_str(&format!("\nEvents: {}", self.events_url.as_deref().unwrap_or(&self.events_query)));
        t.push_str(&format!("\nDedup key: {}", self.dedup_key));
        if self.test {
            t.push_str("\nThis is a test notification from POST /v1/safe-test: no action needed.");
        }
        t
    }
}

/// The body a generic webhook receives (signed with Standard Webhooks).
pub fn webhook_body(m: &Message) -> Vec<u8> {
    let v = match m {
        Message::Alert(a) => a.json(),
        Message::Digest { id, title, body } => json!({ "type": "digest", "id": id, "summary": title, "digest": body }),
    };
    v.to_string().into_bytes()
}

/// A Slack-compatible incoming-webhook body: `text` (mrkdwn), nothing Slack-only beyond it.
pub fn slack_body(m: &Message) -> Vec<u8> {
    let text = match m {
        Message::Alert(a) => {
            let icon = match (a.status, a.severity) {
                (Status::Resolved, _) => ":white_check_mark:",
                (_, Severity::Critical) => ":red_circle:",
                (_, Severity::Warning) => ":large_orange_circle:",
                (_, Severity::Info) => ":large_yellow_circle:",
            };
            let mut lines = a.text().lines().map(str::to_owned).collect::<Vec<_>>();
            if let Some(first) = lines.first_mut() {
                *first = format!("{icon} *{}*", slack_escape(first));
            }
            for l in lines.iter_mut().skip(1) {
                *l = slack_escape(l);
            }
            lines.join("\n")
        }
        Message::Digest { title, body, .. } => {
            format!("*{}*\n{}", slack_escape(title), slack_escape(&digest_text(body)))
        }
    };
    json!({ "text": text }).to_string().into_bytes()
}

/// Slack's three control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// PagerDuty Events v2 bodies for a message: `trigger` for a firing alert, `resolve` for a
/// resolved one, both for a test (the test incident is closed at once); none for a digest
/// (PagerDuty takes incidents only).
pub fn pagerduty_bodies(m: &Message, routing_key: &str) -> Vec<Vec<u8>> {
    let Message::Alert(a) = m else { return Vec::new() };
    let dedup = if a.test { format!("{}/test/{}", a.dedup_key, a.id) } else { a.dedup_key.clone() };
    let trigger = || {
        let mut details = a.json();
        if let Some(o) = details.as_object_mut() {
            o.remove("summary");
        }
        let mut body = json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup,
            "payload": {
                "summary": a.title().chars().take(1024).collect::<String>(),
                "source": "portcullis",
                "severity": a.severity.as_str(),
                "timestamp": a.at,
                "component": "gateway",
                "class": a.metric.as_str(),
                "custom_details": details,
            },
        });
        if let Some(url) = &a.events_url {
            body["links"] = json!([{ "href": url, "text": "Events (GET /v1/events)" }]);
        }
        body.to_string().into_bytes()
    };
    let resolve = || {
        json!({ "routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup }).to_string().into_bytes()
    };
    match (a.status, a.test) {
        (_, true) => vec![trigger(), resolve()],
        (Status::Firing, false) => vec![trigger()],
        (Status::Resolved, false) => vec![resolve()],
    }
}

/// The e-mail subject and plain-text body.
pub fn email_parts(m: &Message) -> (String, String) {
    match m {
        Message::Alert(a) => (format!("[Portcullis] {}", a.title()), a.text()),
        Message::Digest { title, body, .. } => (title.clone(), digest_text(body)),
    }
}

/// The digest as text (e-mail, Slack).
pub fn digest_text(d: &Value) -> String {
    let mut t = String::new();
    let get = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
    t.push_str(&format!(
        "Window: {} to {}\n",
        get("since").as_str().unwrap_or(""),
        get("until").as_str().unwrap_or("")
    ));
    let health = get("health");
    t.push_str(&format!(
        "Health score: {} ({}); trend per 6 h, oldest first: {}\n",
        health["score"],
        health["status"].as_str().unwrap_or(""),
        health["trend"]
            .as_array()
            .map(|a| a.iter().map(Value::to_string).collect::<Vec<_>>().join(" → "))
            .unwrap_or_default()
    ));
    let ev = get("events");
    t.push_str(&format!(
        "Events: {} (critical {}, warning {}, info {}); tests {}\n",
        ev["total"],
        ev["by_severity"]["critical"],
        ev["by_severity"]["warning"],
        ev["by_severity"]["info"],
        ev["test_events"]
    ));
    if let Some(by_type) = ev["by_type"].as_object() {
        for (k, v) in by_type.iter().filter(|(_, v)| v.as_u64().unwrap_or(0) > 0) {
            let hits = ev["hits_by_type"][k].as_u64().unwrap_or(0);
            t.push_str(&format!("  {k}: {v} events, {hits} hits\n"));
        }
    }
    let req = get("requests");
    t.push_str(&format!(
        "Requests: {}; 5xx failures {} ({:.2} %), deliberate 5xx answers {}; p99 {} ms\n",
        req["total"],
        req["errors_5xx"],
        req["error_rate_5xx"].as_f64().unwrap_or(0.0) * 100.0,
        req["gateway_answers_5xx"],
        req["p99_ms"]
    ));
    section(&mut t, "Top client addresses", &get("top_client_ips"), |v| {
        format!("{}: {} hits, {} events", v["ip"].as_str().unwrap_or(""), v["hits"], v["events"])
    });
    section(&mut t, "Switch changes", &get("switch_changes"), |v| {
        format!(
            "{} {} by {}{}",
            v["time"].as_str().unwrap_or(""),
            v["change"].as_str().unwrap_or(""),
            v["by"].as_str().unwrap_or("?"),
            v["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
        )
    });
    section(&mut t, "Quotas near their limit", &get("quotas_near_limit"), |v| {
        format!("{}: {} of {} ({}%)", v["tenant"].as_str().unwrap_or(""), v["used"], v["limit"], v["percent"])
    });
    section(&mut t, "Alerts firing now", &get("alerts_firing"), |v| {
        format!("{} ({})", v["rule_id"].as_str().unwrap_or(""), v["severity"].as_str().unwrap_or(""))
    });
    t
}

fn section(t: &mut String, title: &str, list: &Value, line: impl Fn(&Value) -> String) {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    t.push_str(&format!("{title}: {}\n", if items.is_empty() { "none" } else { "" }));
    for v in items {
        t.push_str(&format!("  {}\n", line(v)));
    }
}

/// The detail of an `alert_delivery_failed` event: the sink, what failed, why (a fixed reason:
/// never a URL, an address or a server's words that could carry one).
pub fn failure_detail(sink: &str, kind: &str, what: &str, attempts: u32, reason: &str) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("sink".into(), json!(sink));
    d.insert("sink_type".into(), json!(kind));
    d.insert("alert".into(), json!(what));
    d.insert("attempts".into(), json!(attempts));
    d.insert("reason".into(), json!(reason));
    d
}

#[cfg(test)]
mod tests;
