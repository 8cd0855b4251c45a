use super::*;
use portcullis_rules::verdict::{Action, EventType, Mode};
use std::io::Write;
use std::sync::Mutex;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

/// Logs `ev` under the same JSON layout as `logging::init` and returns the parsed line.
fn logged(ev: &SecurityEvent) -> serde_json::Value {
    let buf = Buf::default();
    let sub = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(buf.clone())
        .finish();
    tracing::subscriber::with_default(sub, || log_event(ev));
    let bytes = buf.0.lock().unwrap().clone();
    assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1, "one line per event");
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn log_line_is_ecs_shaped_with_levels_by_severity() {
    let mut ev = SecurityEvent::new(EventType::CrossTenantAttempt, Severity::Critical, Mode::Enforce, Action::Blocked);
    ev.client_ip = Some("203.0.113.1".into());
    ev.path = Some("/api/business/73/orders".into());
    ev.tenant = Some("12".into());
    ev.target_tenant = Some("73".into());
    ev.subject = Some("user-9".into());
    ev.rule_id = Some("tenant-in-path".into());
    ev.rules_version = Some("v1".into());
    ev.detail.insert("reason".into(), serde_json::Value::from("mismatch"));
    let v = logged(&ev);
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["target"], "portcullis::security");
    assert_eq!(v["event.kind"], "alert");
    assert_eq!(v["event.category"], "intrusion_detection");
    assert_eq!(v["event.action"], "cross_tenant_attempt");
    assert_eq!(v["event.id"], ev.id.as_str());
    assert_eq!(v["event.severity"], 3);
    assert_eq!(v["portcullis.severity"], "critical");
    assert_eq!(v["portcullis.mode"], "enforce");
    assert_eq!(v["portcullis.action"], "blocked");
    assert_eq!(v["rule.id"], "tenant-in-path");
    assert_eq!(v["rule.ruleset"], "v1");
    assert_eq!(v["source.ip"], "203.0.113.1");
    assert_eq!(v["url.path"], "/api/business/73/orders");
    assert_eq!(v["tenant"], "12");
    assert_eq!(v["target_tenant"], "73");
    assert_eq!(v["user.id"], "user-9");
    assert_eq!(v["portcullis.test"], false);
    assert_eq!(v["portcullis.detail"], r#"{"reason":"mismatch"}"#);
    // Absent facts are left out of the log line, not logged as empty strings.
    assert!(v.get("channel").is_none() && v.get("http.request.id").is_none(), "{v}");

    let info = SecurityEvent::safe_test(EventType::RateLimitHit, None, "ops");
    let v = logged(&info);
    assert_eq!((v["level"].as_str(), v["event.severity"].as_u64()), (Some("INFO"), Some(1)));
    assert_eq!(v["portcullis.test"], true);
    let warn = SecurityEvent::new(EventType::AuthFailure, Severity::Warning, Mode::Monitor, Action::Flagged);
    let v = logged(&warn);
    assert_eq!((v["level"].as_str(), v["event.severity"].as_u64()), (Some("WARN"), Some(2)));
    assert_eq!(v["portcullis.mode"], "monitor");
}
