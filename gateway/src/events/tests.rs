//! Tests of the whole pipeline: the event type, the bus and its sinks, the store, the endpoints'
//! logic.

use super::store::file_path;
use super::*;
use portcullis_rules::deny::{Deny, DenyCode};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "portcullis-events-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cfg(dir: &Path) -> EventsConfig {
    EventsConfig { dir: dir.to_path_buf(), ..EventsConfig::default() }
}

fn finding(kind: EventType, mode: Mode) -> Finding {
    let mut detail = Map::new();
    detail.insert("reason".into(), Value::from("tenant in path differs"));
    Finding {
        rule_id: Arc::from("tenant-in-path"),
        mode,
        event: kind,
        severity: kind.default_severity(),
        deny: Deny::new(DenyCode::TenantMismatch, "tenant"),
        detail,
    }
}

fn facts<'a>(path: &'a str, ip: &str, tenant: Option<&'a str>, target: Option<&'a str>) -> RequestFacts<'a> {
    RequestFacts {
        request_id: "0192f1e2aaaabbbbccccddddeeeeffff",
        client_ip: Some(ip.parse().unwrap()),
        method: "GET",
        path,
        route: Some("api"),
        channel: None,
        tenant,
        target_tenant: target,
        subject: Some("user-9"),
    }
}

/// An event at `ago_ms` before now, with a client IP, subject and tenant.
fn ev_at(ago_ms: i64, kind: EventType, ip: Option<&str>, subject: Option<&str>, tenant: Option<&str>) -> SecurityEvent {
    let mut e = SecurityEvent::at(now_ms() - ago_ms, kind, kind.default_severity(), Mode::Enforce, Action::Blocked);
    e.client_ip = ip.map(str::to_owned);
    e.subject = subject.map(str::to_owned);
    e.tenant = tenant.map(str::to_owned);
    e
}

/// The keys of the contract's example event.
const CONTRACT_KEYS: [&str; 19] = [
    "id",
    "time",
    "type",
    "severity",
    "mode",
    "action",
    "request_id",
    "client_ip",
    "method",
    "path",
    "route",
    "channel",
    "tenant",
    "target_tenant",
    "subject",
    "rule_id",
    "rules_version",
    "test",
    "detail",
];

#[test]
fn event_json_has_exactly_the_contract_fields_with_nulls_and_round_trips() {
    let f = finding(EventType::CrossTenantAttempt, Mode::Enforce);
    let ev =
        SecurityEvent::from_finding(&f, &facts("/api/business/73/orders", "203.0.113.1", Some("12"), Some("73")), "v1");
    let v = serde_json::to_value(&ev).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = CONTRACT_KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(obj.len(), 19);
    assert_eq!(v["type"], "cross_tenant_attempt");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["action"], "blocked");
    assert_eq!(v["client_ip"], "203.0.113.1");
    assert_eq!(v["path"], "/api/business/73/orders");
    assert_eq!(v["channel"], Value::Null);
    assert_eq!(v["tenant"], "12");
    assert_eq!(v["target_tenant"], "73");
    assert_eq!(v["subject"], "user-9");
    assert_eq!(v["rule_id"], "tenant-in-path");
    assert_eq!(v["rules_version"], "v1");
    assert_eq!(v["test"], false);
    assert_eq!(v["detail"]["reason"], "tenant in path differs");
    assert_eq!(ev.id.len(), 32);
    assert!(portcullis_rules::request_id::is_well_formed(ev.id.as_bytes()));
    // RFC 3339 UTC with milliseconds.
    let t = ev.time.as_bytes();
    assert_eq!((t.len(), t[10], t[19], t[23]), (24, b'T', b'.', b'Z'), "{}", ev.time);
    assert_eq!(parse_time_ms(&ev.time), Some(ev.unix_ms()));

    let back: SecurityEvent = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
    assert_eq!(back, ev);

    // A system event: every request field present and null.
    let sys = SecurityEvent::system(EventType::RulesReloadFailed, Action::Rejected, None, Map::new());
    let v = serde_json::to_value(&sys).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 19);
    for k in ["request_id", "client_ip", "method", "path", "route", "tenant", "subject", "rule_id", "rules_version"] {
        assert_eq!(v[k], Value::Null, "{k}");
    }
    assert_eq!((v["severity"].as_str(), v["mode"].as_str()), (Some("warning"), Some("enforce")));

    // The contract's own example parses (time without milliseconds too).
    let example = r#"{"id":"x","time":"2026-01-30T18:00:00Z","type":"cross_tenant_attempt","severity":"critical",
 "mode":"enforce","action":"blocked","request_id":"r","client_ip":"203.0.113.1",
 "method":"GET","path":"/api/business/73/orders","route":"api","channel":null,
 "tenant":"12","target_tenant":"73","subject":"user-9","rule_id":"tenant-in-path",
 "rules_version":"v","test":false,"detail":{}}"#;
    let e: SecurityEvent = serde_json::from_str(example).unwrap();
    assert_eq!(e.unix_ms(), 1_769_796_000_000);
    assert_eq!(e.kind, EventType::CrossTenantAttempt);
    // A bad time does not parse.
    assert!(serde_json::from_str::<SecurityEvent>(&example.replace("2026-01-30T18:00:00Z", "yesterday")).is_err());
}

#[test]
fn safe_test_and_monitor_events() {
    let ev = SecurityEvent::safe_test(EventType::AuthFailure, Some("v9"), "ops-alice");
    assert!(ev.test);
    assert_eq!(ev.rule_id.as_deref(), Some("safe-test"));
    assert_eq!(ev.severity, Severity::Warning);
    assert_eq!(ev.action, Action::Blocked);
    assert_eq!(ev.detail["requested_by"], "ops-alice");
    assert_eq!(ev.detail["note"], SAFE_TEST_NOTE);
    assert_eq!(SecurityEvent::safe_test(EventType::SwitchChanged, None, "x").action, Action::Changed);
    let f = finding(EventType::CrossTenantAttempt, Mode::Monitor);
    let ev = SecurityEvent::from_finding(&f, &RequestFacts::default(), "v1");
    assert_eq!((ev.mode, ev.action), (Mode::Monitor, Action::Flagged));
    assert_eq!((ev.request_id.as_deref(), ev.path.as_deref(), ev.method.as_deref()), (None, None, None));
}

#[test]
fn events_never_carry_the_query_string() {
    // Built the way the proxy builds facts: the URI's path, canonicalised; never the query.
    let uri: http::Uri = "/api/business/73/orders?token=secret&apikey=secret".parse().unwrap();
    let path = portcullis_rules::canon::canonicalize(uri.path().as_bytes()).unwrap();
    let f = finding(EventType::CrossTenantAttempt, Mode::Enforce);
    let ev = SecurityEvent::from_finding(&f, &facts(&path, "203.0.113.1", Some("12"), Some("73")), "v1");
    let json = serde_json::to_string(&ev).unwrap();
    assert!(!json.contains("secret"), "{json}");
    assert!(!json.contains("token"), "{json}");
    assert_eq!(ev.path.as_deref(), Some("/api/business/73/orders"));
    // Defence in depth: a caller passing the raw target still does not leak the query.
    let ev = SecurityEvent::from_finding(&f, &facts(uri.to_string().as_str(), "203.0.113.1", None, None), "v1");
    assert!(!serde_json::to_string(&ev).unwrap().contains("secret"));
    assert_eq!(ev.path.as_deref(), Some("/api/business/73/orders"));
}

#[test]
fn emit_flush_and_query_by_every_filter_newest_first() {
    let dir = TempDir::new("query");
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let h = 3_600_000;
    // Oldest first.
    bus.emit(ev_at(30 * h, EventType::AuthFailure, Some("198.51.100.1"), None, Some("12")));
    bus.emit(ev_at(2 * h, EventType::CrossTenantAttempt, Some("198.51.100.2"), None, Some("12")));
    let mut target = ev_at(h / 2, EventType::CrossTenantAttempt, Some("198.51.100.3"), None, Some("12"));
    target.target_tenant = Some("73".into());
    bus.emit(target);
    bus.emit(ev_at(1000, EventType::RateLimitHit, Some("198.51.100.4"), None, Some("73")));
    bus.emit(ev_at(0, EventType::AuthFailure, Some("198.51.100.5"), None, None));
    assert!(bus.flush(WAIT));

    let ips = |q: &str| -> Vec<String> {
        bus.query(&EventQuery::parse(Some(q)).unwrap()).iter().map(|e| e.client_ip.clone().unwrap()).collect()
    };
    let n = |i: u8| format!("198.51.100.{i}");
    // Default: last 24 hours, newest first.
    assert_eq!(ips(""), [n(5), n(4), n(3), n(2)]);
    assert_eq!(ips("hours=48"), [n(5), n(4), n(3), n(2), n(1)]);
    assert_eq!(ips("hours=1"), [n(5), n(4), n(3)]);
    assert_eq!(ips("type=cross-tenant-attempt"), [n(3), n(2)]);
    assert_eq!(ips("type=AUTH_FAILURE&hours=48"), [n(5), n(1)]);
    assert_eq!(ips("type=auth_failure,rate_limit_hit"), [n(5), n(4)]);
    assert_eq!(ips("severity=critical"), [n(3), n(2)]);
    assert_eq!(ips("severity=info"), [n(4)]);
    assert_eq!(ips("severity=warning,info&hours=48"), [n(5), n(4), n(1)]);
    assert_eq!(ips("limit=2"), [n(5), n(4)]);
    assert_eq!(ips("limit=1&hours=48&type=auth_failure"), [n(5)]);
    // A tenant matches the caller's tenant or the target tenant.
    assert_eq!(ips("tenant=73"), [n(4), n(3)]);
    assert_eq!(ips("tenant=12&hours=48"), [n(3), n(2), n(1)]);
    assert_eq!(ips("tenant=99"), Vec::<String>::new());

    let body = events_body(&bus.query(&EventQuery::parse(Some("limit=1")).unwrap()));
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(body["events"][0]["client_ip"], n(5));
    assert_eq!(bus.dropped_total("index"), Some(0));
    assert_eq!(bus.written_total("file"), Some(5));
    assert_eq!(bus.written_total("index"), Some(5));
    assert_eq!(bus.written_total("log"), Some(5));
    assert_eq!(bus.written_total("nope"), None);
    bus.shutdown(WAIT);
}

#[test]
fn events_persist_across_a_restart() {
    let dir = TempDir::new("persist");
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let mut emitted = Vec::new();
    for i in 0..50 {
        let mut e = ev_at(0, EventType::ALL[i % EventType::ALL.len()], Some("192.0.2.1"), Some("user-1"), Some("t1"));
        e.detail.insert("n".into(), Value::from(i));
        emitted.push(e.clone());
        bus.emit(e);
    }
    bus.shutdown(WAIT);
    // Emits after shutdown are dropped and counted, on every sink.
    bus.emit(ev_at(0, EventType::AuthFailure, None, None, None));
    assert_eq!(bus.dropped_total("file"), Some(1));
    assert_eq!(bus.dropped_total("index"), Some(1));
    assert_eq!(bus.written_total("file"), Some(50));
    drop(bus);

    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    assert_eq!(bus.load_report().read, 50);
    assert_eq!(bus.load_report().skipped_lines, 0);
    let got = bus.query(&EventQuery { limit: 1000, ..EventQuery::default() });
    let got: Vec<SecurityEvent> = got.iter().rev().map(|e| (**e).clone()).collect();
    assert_eq!(got, emitted);
    // The summary window was refilled from the store.
    let s = bus.summary(24, &RequestWindow::new());
    assert_eq!(s["events"]["total"], 50);
    // Appending after the restart continues the same file.
    bus.emit(ev_at(0, EventType::SsrfBlock, None, None, None));
    assert!(bus.flush(WAIT));
    drop(bus);
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    assert_eq!(bus.load_report().read, 51);
    bus.shutdown(WAIT);
}

fn store_files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn rotation_keeps_max_files_and_the_newest_events_survive_a_restart() {
    let dir = TempDir::new("rotate");
    let c = EventsConfig { max_file_bytes: 4096, max_files: 2, ..cfg(&dir.0) };
    let bus = EventBus::start(c.clone()).unwrap();
    let mut last_id = String::new();
    let mut first_id = String::new();
    for i in 0..200 {
        let e = ev_at(0, EventType::FirewallBlock, Some("203.0.113.9"), None, None);
        if i == 0 {
            first_id = e.id.clone();
        }
        last_id = e.id.clone();
        bus.emit(e);
        if i % 10 == 0 {
            assert!(bus.flush(WAIT));
            let files = store_files(&dir.0);
            assert!(files.len() <= c.max_files + 1, "{files:?}");
            assert!(files.iter().all(|(_, len)| *len <= c.max_file_bytes), "{files:?}");
        }
    }
    bus.shutdown(WAIT);
    let files = store_files(&dir.0);
    assert_eq!(
        files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    );
    assert!(files.iter().all(|(_, len)| *len <= c.max_file_bytes), "{files:?}");
    assert_eq!(bus.written_total("file"), Some(200));
    drop(bus);

    let bus = EventBus::start(c).unwrap();
    let report = bus.load_report();
    assert!(report.read > 0 && report.read < 200, "{report:?}");
    assert_eq!(report.skipped_lines, 0);
    let got = bus.query(&EventQuery { limit: 1000, ..EventQuery::default() });
    assert_eq!(got.len() as u64, report.read);
    assert_eq!(got[0].id, last_id);
    assert!(got.iter().all(|e| e.id != first_id));
    // Oldest rotated file first, then the current: ids (time-ordered) come back in order.
    assert!(got.windows(2).all(|w| w[0].unix_ms() >= w[1].unix_ms()));
    bus.shutdown(WAIT);
}

#[test]
fn a_smaller_index_keeps_the_newest_events() {
    let dir = TempDir::new("index");
    let bus = EventBus::start(EventsConfig { memory_events: 10, ..cfg(&dir.0) }).unwrap();
    for i in 0..25 {
        let mut e = ev_at(0, EventType::RateLimitHit, None, None, None);
        e.detail.insert("n".into(), Value::from(i));
        bus.emit(e);
    }
    assert!(bus.flush(WAIT));
    let got = bus.query(&EventQuery::default());
    assert_eq!(got.len(), 10);
    assert_eq!(got[0].detail["n"], 24);
    assert_eq!(got[9].detail["n"], 15);
    // The summary counts all of them: it does not depend on the index.
    assert_eq!(bus.summary(1, &RequestWindow::new())["events"]["total"], 25);
    drop(bus);
    let bus = EventBus::start(EventsConfig { memory_events: 10, ..cfg(&dir.0) }).unwrap();
    assert_eq!((bus.load_report().read, bus.load_report().kept), (25, 10));
    assert_eq!(bus.query(&EventQuery::default())[0].detail["n"], 24);
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn corrupt_lines_and_a_fifo_do_not_stop_start() {
    let dir = TempDir::new("corrupt");
    let good = serde_json::to_string(&ev_at(0, EventType::SsrfBlock, Some("192.0.2.7"), None, None)).unwrap();
    let mut content = Vec::new();
    content.extend_from_slice(b"{not json\n");
    content.extend_from_slice(good.as_bytes());
    content.extend_from_slice(b"\n\n   \n");
    content.extend_from_slice(&[0xff, 0xfe, b'{', b'\n']);
    content.extend_from_slice(br#"{"id":"x","time":"not a time","type":"auth_failure"}"#);
    content.push(b'\n');
    content.extend_from_slice(&vec![b'x'; 2 * 1024 * 1024]); // an over-long line
    content.push(b'\n');
    content.extend_from_slice(&good.as_bytes()[..good.len() / 2]); // cut short by a crash
    std::fs::write(file_path(&dir.0, 0), &content).unwrap();
    mkfifo(&file_path(&dir.0, 1));
    std::fs::create_dir(file_path(&dir.0, 2)).unwrap();

    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let r = bus.load_report();
    assert_eq!((r.read, r.skipped_lines, r.skipped_files), (1, 5, 2), "{r:?}");
    let got = bus.query(&EventQuery::default());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].client_ip.as_deref(), Some("192.0.2.7"));
    let mut scrape = crate::metrics::Scrape::new();
    bus.render_metrics(&mut scrape);
    let metrics = scrape.render();
    assert!(metrics.contains("portcullis_events_store_skipped_lines 5\n"), "{metrics}");

    // The next event starts on a line of its own, after the partial one.
    bus.emit(ev_at(0, EventType::AuthFailure, Some("192.0.2.8"), None, None));
    bus.shutdown(WAIT);
    drop(bus);
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let r = bus.load_report();
    assert_eq!((r.read, r.skipped_lines), (2, 5), "{r:?}");
    assert_eq!(bus.query(&EventQuery::default())[0].client_ip.as_deref(), Some("192.0.2.8"));
}

#[test]
fn a_stuck_sink_never_blocks_emit_and_counts_its_drops() {
    let dir = TempDir::new("stuck");
    let fifo = file_path(&dir.0, 0);
    mkfifo(&fifo);
    // No reader: the file sink blocks opening the FIFO for writing.
    let bus = EventBus::start(EventsConfig { queue_capacity: 16, ..cfg(&dir.0) }).unwrap();
    for _ in 0..10_000 {
        bus.emit(ev_at(0, EventType::RateLimitHit, Some("192.0.2.1"), None, None));
    }
    assert!(bus.dropped_total("file").unwrap() > 0);
    // The index sink kept going: wait until it has seen every event (handled or dropped).
    let deadline = Instant::now() + WAIT;
    while bus.written_total("index").unwrap() + bus.dropped_total("index").unwrap() < 10_000 {
        assert!(Instant::now() < deadline, "the index sink stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(bus.written_total("index").unwrap() > 0);
    assert!(!bus.query(&EventQuery::default()).is_empty());
    // The summary counters never depend on a sink.
    assert_eq!(bus.summary(1, &RequestWindow::new())["events"]["by_type"]["rate_limit_hit"], 10_000);
    // Flush cannot complete while the file sink is stuck.
    assert!(!bus.flush(Duration::from_millis(50)));
    let mut scrape = crate::metrics::Scrape::new();
    bus.render_metrics(&mut scrape);
    let metrics = scrape.render();
    assert!(metrics.contains("portcullis_events_dropped_total{sink=\"file\"} "), "{metrics}");
    assert!(!metrics.contains("portcullis_events_dropped_total{sink=\"file\"} 0\n"), "{metrics}");

    // Unblock it: a reader drains the FIFO; shutdown then completes and the writer closes.
    let reader = std::thread::spawn(move || std::fs::read(&fifo).unwrap());
    bus.shutdown(WAIT);
    let data = reader.join().unwrap();
    let lines = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    assert_eq!(lines, bus.written_total("file").unwrap());
    assert_eq!(lines + bus.dropped_total("file").unwrap(), 10_000);
}

#[test]
fn summary_counts_types_severities_requests_and_the_health_score() {
    let dir = TempDir::new("summary");
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let h = 3_600_000;
    let requests = RequestWindow::new();
    for i in 0..100 {
        // Two upstream failures, and three deliberate 503 maintenance answers that never count.
        let (status, failure) = match i {
            0 | 1 => (502, true),
            2..=4 => (503, false),
            _ => (200, false),
        };
        requests.record(Finished { status, failure, elapsed_ms: 2 });
    }
    let empty = bus.summary(1, &RequestWindow::new());
    assert_eq!((empty["health_score"].as_u64(), empty["health_status"].as_str()), (Some(100), Some("healthy")));
    assert_eq!(empty["events"]["by_type"].as_object().unwrap().len(), EventType::ALL.len());
    assert_eq!(empty["requests"]["error_rate_5xx"], 0.0);

    bus.emit(ev_at(0, EventType::CrossTenantAttempt, None, None, None));
    bus.emit(ev_at(0, EventType::AuthFailure, None, None, None));
    bus.emit(ev_at(10 * 60_000, EventType::PiiLeakBlock, None, None, None));
    for _ in 0..3 {
        bus.emit(ev_at(0, EventType::RateLimitHit, None, None, None));
    }
    bus.emit(SecurityEvent::safe_test(EventType::CrossTenantAttempt, None, "ops"));
    bus.emit(ev_at(3 * h, EventType::SwitchChanged, None, None, None));
    // No flush needed: the summary's counters are updated inline by emit.
    let s = bus.summary(1, &requests);
    assert_eq!(s["window_hours"], 1);
    assert_eq!(s["events"]["total"], 6);
    assert_eq!(s["events"]["test_events"], 1);
    assert_eq!(s["events"]["by_type"]["cross_tenant_attempt"], 1);
    assert_eq!(s["events"]["by_type"]["auth_failure"], 1);
    assert_eq!(s["events"]["by_type"]["pii_leak_block"], 1);
    assert_eq!(s["events"]["by_type"]["rate_limit_hit"], 3);
    assert_eq!(s["events"]["by_type"]["switch_changed"], 0);
    assert_eq!(s["events"]["by_severity"]["critical"], 1);
    assert_eq!(s["events"]["by_severity"]["warning"], 2);
    assert_eq!(s["events"]["by_severity"]["info"], 3);
    assert_eq!(s["requests"]["total"], 100);
    assert_eq!(s["requests"]["errors_5xx"], 2);
    assert_eq!(s["requests"]["error_rate_5xx"], 0.02);
    assert_eq!(s["requests"]["responses_5xx"], 5);
    assert_eq!(s["requests"]["gateway_answers_5xx"], 3);
    assert_eq!(s["requests"]["p99_ms"], 5);
    assert_eq!(s["requests"]["window_hours_covered"], 1);
    assert_eq!(s["health_inputs"]["errors_5xx"], 2);
    assert_eq!(s["health_inputs"]["excluded_types"], serde_json::json!(["switch_changed", "alert_delivery_failed"]));
    // The test critical does not count: 100 − 35 − 10·log2(3) − 2·log2(4) − 12 = 33.15.
    assert_eq!(s["health_score"], health_score(1, 2, 3, 100, 2));
    assert_eq!(s["health_score"], 33);
    assert_eq!(s["health_status"], "page");
    assert!(parse_time_ms(s["since"].as_str().unwrap()).is_some());

    let s = bus.summary(4, &requests);
    assert_eq!(s["events"]["by_type"]["switch_changed"], 1);
    assert_eq!(s["events"]["by_severity"]["info"], 4);
    // The operator's switch flip is counted but costs the score nothing.
    assert_eq!(s["health_inputs"]["info"], 3);
    assert_eq!(s["health_score"], 33);
    let s = bus.summary(8760, &requests);
    assert_eq!(s["window_hours"], 8760);
    assert_eq!(s["requests"]["window_hours_covered"], 168);
    assert_eq!(s["events"]["window_hours_covered"], 168);

    // A safe test alone leaves the score at 100.
    let dir2 = TempDir::new("summary-test-only");
    let bus2 = EventBus::start(cfg(&dir2.0)).unwrap();
    bus2.emit(SecurityEvent::safe_test(EventType::CrossTenantAttempt, None, "ops"));
    let s = bus2.summary(1, &RequestWindow::new());
    assert_eq!((s["health_score"].as_u64(), s["events"]["test_events"].as_u64()), (Some(100), Some(1)));
}

#[test]
fn the_operators_own_actions_and_deliberate_answers_never_drop_the_health_score() {
    let dir = TempDir::new("honest");
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let requests = RequestWindow::new();
    // Maintenance on, channels off and back, flags flipped: 40 switch changes...
    for _ in 0..40 {
        bus.emit(SecurityEvent::system(EventType::SwitchChanged, Action::Changed, None, serde_json::Map::new()));
    }
    // ...the alerting pipeline reporting a sink down...
    bus.emit(SecurityEvent::system(EventType::AlertDeliveryFailed, Action::Flagged, None, serde_json::Map::new()));
    // ...and 276 answers of which 15 are the gateway's deliberate 502/503 (response_blocked,
    // maintenance, channel_disabled): zero upstream errors.
    for i in 0..276 {
        let status = match i % 3 {
            0 if i < 45 => 503,
            _ if i < 45 => 502,
            _ => 200,
        };
        requests.record(Finished { status, failure: false, elapsed_ms: 1 });
    }
    let s = bus.summary(1, &requests);
    assert_eq!(s["requests"]["responses_5xx"], 45, "{s}");
    assert_eq!(s["requests"]["errors_5xx"], 0);
    assert_eq!(s["requests"]["error_rate_5xx"], 0.0);
    assert_eq!(s["events"]["by_type"]["switch_changed"], 40);
    assert_eq!((s["health_score"].as_u64(), s["health_status"].as_str()), (Some(100), Some("healthy")), "{s}");
    // Real upstream failures still cost: 6 % of 300.
    for _ in 0..24 {
        requests.record(Finished { status: 504, failure: true, elapsed_ms: 1 });
    }
    let s = bus.summary(1, &requests);
    assert_eq!(s["requests"]["errors_5xx"], 24);
    assert_eq!(s["health_score"], health_score(0, 0, 0, 300, 24));
    assert_eq!(s["health_score"], 52);
}

#[test]
fn rate_limit_floods_count_their_hits_and_keep_the_client_address() {
    let dir = TempDir::new("flood");
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let ip = Some("203.0.113.7");
    // The first refusal of the window, then the window's summary for the other 144.
    bus.emit(ev_at(0, EventType::RateLimitHit, ip, None, None));
    let mut summary = ev_at(0, EventType::RateLimitHit, ip, None, None);
    summary.detail.insert("aggregated".into(), serde_json::json!(true));
    summary.detail.insert("count".into(), serde_json::json!(144));
    bus.emit(summary);
    // Another client with more events but fewer hits.
    for _ in 0..3 {
        bus.emit(ev_at(0, EventType::AuthFailure, Some("198.51.100.1"), None, None));
    }
    assert!(bus.flush(Duration::from_secs(5)));
    let t = bus.top_threats(1, 10);
    let first = &t["client_ips"][0];
    assert_eq!(
        (first["ip"].as_str(), first["events"].as_u64(), first["hits"].as_u64()),
        (ip, Some(2), Some(145)),
        "{t}"
    );
    assert_eq!(t["client_ips"][1]["hits"], 3);
    let s = bus.summary(1, &RequestWindow::new());
    assert_eq!(
        (s["events"]["by_type"]["rate_limit_hit"].as_u64(), s["events"]["hits_by_type"]["rate_limit_hit"].as_u64()),
        (Some(2), Some(145))
    );
}

#[test]
fn top_threats_rank_by_count_then_recency_and_skip_tests() {
    let dir = TempDir::new("threats");
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    let m = 60_000;
    let a = Some("198.51.100.10");
    let b = Some("198.51.100.20");
    let c = Some("198.51.100.30");
    bus.emit(ev_at(50 * m, EventType::AuthFailure, a, Some("user-a"), None));
    bus.emit(ev_at(40 * m, EventType::AuthFailure, a, Some("user-a"), None));
    bus.emit(ev_at(30 * m, EventType::FirewallBlock, a, None, None));
    bus.emit(ev_at(20 * m, EventType::WebhookInvalidSignature, b, None, None));
    bus.emit(ev_at(10 * m, EventType::WebhookInvalidSignature, b, Some("user-b"), None));
    bus.emit(ev_at(5 * m, EventType::WebhookInvalidSignature, b, None, None));
    bus.emit(ev_at(m, EventType::SsrfBlock, c, Some("user-b"), None));
    bus.emit(ev_at(26 * 60 * m, EventType::AuthFailure, c, None, None)); // outside 24 h
    let mut t = SecurityEvent::safe_test(EventType::AuthFailure, None, "ops");
    t.client_ip = Some("192.0.2.99".into());
    for _ in 0..5 {
        bus.emit(t.clone());
    }
    assert!(bus.flush(WAIT));

    let top = bus.top_threats(24, 10);
    let ips: Vec<&str> = top["client_ips"].as_array().unwrap().iter().map(|x| x["ip"].as_str().unwrap()).collect();
    // a and b both have 3; b was seen last. c has 1 in the window. The test IP is absent.
    assert_eq!(ips, ["198.51.100.20", "198.51.100.10", "198.51.100.30"]);
    assert_eq!(top["client_ips"][0]["events"], 3);
    assert_eq!(top["client_ips"][0]["types"], serde_json::json!({"webhook_invalid_signature": 3}));
    assert_eq!(top["client_ips"][1]["types"], serde_json::json!({"auth_failure": 2, "firewall_block": 1}));
    let b_last = &bus.query(&EventQuery::parse(Some("type=webhook_invalid_signature&limit=1")).unwrap())[0];
    assert_eq!(top["client_ips"][0]["last_seen"], b_last.time.as_str());
    let subjects: Vec<(&str, u64)> = top["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["subject"].as_str().unwrap(), x["events"].as_u64().unwrap()))
        .collect();
    assert_eq!(subjects, [("user-b", 2), ("user-a", 2)]);
    assert_eq!(top["complete"], true);

    let top = bus.top_threats(24, 1);
    assert_eq!(top["client_ips"].as_array().unwrap().len(), 1);
    let top = bus.top_threats(48, 10);
    assert_eq!(top["client_ips"][2]["events"], 2);
    assert_eq!(top["window_hours"], 48);
}

#[test]
fn metrics_show_every_type_and_count_by_severity_and_mode() {
    let dir = TempDir::new("metrics");
    let bus = EventBus::start(EventsConfig { log: false, ..cfg(&dir.0) }).unwrap();
    let f = finding(EventType::CrossTenantAttempt, Mode::Monitor);
    bus.emit(SecurityEvent::from_finding(&f, &RequestFacts::default(), "v"));
    let mut high = ev_at(0, EventType::RateLimitHit, None, None, None);
    high.severity = Severity::Critical;
    bus.emit(high);
    bus.emit(SecurityEvent::safe_test(EventType::AuthFailure, None, "ops"));
    assert!(bus.flush(WAIT));
    let mut scrape = crate::metrics::Scrape::new();
    bus.render_metrics(&mut scrape);
    let out = scrape.render();
    for t in EventType::ALL {
        let line = format!(
            "portcullis_security_events_total{{type=\"{}\",severity=\"{}\",mode=\"enforce\"}} ",
            t.as_str(),
            t.default_severity().as_str()
        );
        assert!(out.contains(&line), "{line} missing in\n{out}");
    }
    assert!(out.contains(
        "portcullis_security_events_total{type=\"cross_tenant_attempt\",severity=\"critical\",mode=\"monitor\"} 1\n"
    ));
    assert!(out.contains(
        "portcullis_security_events_total{type=\"cross_tenant_attempt\",severity=\"critical\",mode=\"enforce\"} 0\n"
    ));
    assert!(out.contains(
        "portcullis_security_events_total{type=\"rate_limit_hit\",severity=\"critical\",mode=\"enforce\"} 1\n"
    ));
    assert!(out
        .contains("portcullis_security_events_total{type=\"auth_failure\",severity=\"warning\",mode=\"enforce\"} 1\n"));
    assert!(out.contains("portcullis_security_test_events_total{type=\"auth_failure\"} 1\n"));
    assert!(!out.contains("severity=\"info\",mode=\"monitor\""));
    assert!(out.contains("# TYPE portcullis_security_events_total counter\n"));
    assert!(out.contains("portcullis_events_written_total{sink=\"file\"} 3\n"));
    assert!(out.contains("portcullis_events_written_total{sink=\"index\"} 3\n"));
    assert!(out.contains("portcullis_events_written_total{sink=\"log\"} 0\n")); // disabled
    assert!(out.contains("portcullis_events_dropped_total{sink=\"log\"} 0\n"));
    // Every sample line belongs to a declared family.
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(out.contains(&format!("# TYPE {name} ")), "{line}");
    }
}

#[test]
fn many_threads_emit_concurrently_without_loss_when_queues_have_room() {
    let dir = TempDir::new("concurrent");
    let bus = EventBus::start(EventsConfig { queue_capacity: 100_000, ..cfg(&dir.0) }).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let mut e = ev_at(0, EventType::AuthFailure, Some("192.0.2.1"), None, None);
                    e.detail.insert("k".into(), Value::from(t * 1000 + i));
                    bus.emit(e);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(bus.flush(WAIT));
    assert_eq!(bus.written_total("file"), Some(4000));
    assert_eq!(bus.written_total("index"), Some(4000));
    assert_eq!(bus.dropped_total("file"), Some(0));
    bus.shutdown(WAIT);
    bus.shutdown(WAIT); // idempotent
    drop(bus);
    let bus = EventBus::start(cfg(&dir.0)).unwrap();
    assert_eq!(bus.load_report().read, 4000);
}
