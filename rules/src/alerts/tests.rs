use super::*;
use crate::rulefile::{compile, compile_with, Env, SourceFile};

const SHIPPED: &str = include_str!("../../../config/rules/alerts.yaml");

fn one_rule(body: &str) -> Result<AlertRule, Vec<String>> {
    let text = format!("version: 1\nalerts:\n{body}");
    compile(&[SourceFile::new("a.yaml", text)])
        .map(|s| s.alerts.rules().first().cloned().unwrap())
        .map_err(|e| e.iter().map(ToString::to_string).collect())
}

#[test]
fn the_shipped_defaults_are_the_runbook_table() {
    let s = compile(&[SourceFile::new("alerts.yaml", SHIPPED)]).unwrap();
    let rules = s.alerts.rules();
    let find = |id: &str| rules.iter().find(|r| &*r.id == id).unwrap();
    // Fourteen thresholds: 6 critical, 5 warning, 3 info.
    assert_eq!(rules.len(), 14);
    let count = |sev| rules.iter().filter(|r| r.severity == sev).count();
    assert_eq!((count(Severity::Critical), count(Severity::Warning), count(Severity::Info)), (6, 5, 3));
    let ev = |id: &str, t: EventType, above: f64, window: u64| {
        let r = find(id);
        assert_eq!(
            (r.metric, r.events.types.as_slice(), r.cmp, r.window_secs),
            (MetricKind::Events, &[t][..], Comparison::Above(above), window),
            "{id}"
        );
    };
    ev("cross-tenant-attempt", EventType::CrossTenantAttempt, 0.0, 900);
    ev("anomaly-red", EventType::AnomalyRed, 0.0, 900);
    ev("firewall-block-spike", EventType::FirewallBlock, 10.0, 3600);
    ev("pii-leak-block", EventType::PiiLeakBlock, 5.0, 3600);
    ev("webhook-invalid-signature", EventType::WebhookInvalidSignature, 10.0, 3600);
    ev("auth-failure", EventType::AuthFailure, 50.0, 3600);
    ev("rate-limit-hits", EventType::RateLimitHit, 100.0, 3600);
    ev("ssrf-block", EventType::SsrfBlock, 0.0, 3600);
    let all = find("security-events-daily");
    assert_eq!((all.events.types.len(), all.cmp, all.window_secs), (0, Comparison::Above(500.0), 86_400));
    for (id, below, sev, mode) in [
        ("health-page", 50.0, Severity::Critical, Mode::Enforce),
        ("health-investigate", 70.0, Severity::Warning, Mode::Enforce),
        ("health-watch", 85.0, Severity::Info, Mode::Monitor),
    ] {
        let r = find(id);
        assert_eq!(
            (r.metric, r.cmp, r.severity, r.mode),
            (MetricKind::HealthScore, Comparison::Below(below), sev, mode)
        );
    }
    assert_eq!(find("error-rate-5xx").cmp, Comparison::Above(5.0));
    assert_eq!(find("error-rate-5xx").metric, MetricKind::ErrorRate5xx);
    assert_eq!(
        (find("latency-p99").metric, find("latency-p99").cmp),
        (MetricKind::LatencyP99, Comparison::Above(5000.0))
    );
    // No shipped rule names a sink: they reach every sink the operator configures.
    assert!(rules.iter().all(|r| r.sinks.is_none() && r.resolve));
}

#[test]
fn every_key_compiles() {
    let r = one_rule(
        "  - id: a\n    description: d\n    severity: critical\n    mode: monitor\n    metric: events\n    events: { types: [AUTH-FAILURE, firewall_block], severities: [warning], tenants: ['73'], routes: [api] }\n    above: 3\n    window: 5m\n    for: 30s\n    cooldown: 2h\n    resolve: false\n    labels: { runbook: '3.1', team: sec }\n    sinks: [mail, hook]\n",
    )
    .unwrap();
    assert_eq!(r.events.types, vec![EventType::AuthFailure, EventType::FirewallBlock]);
    assert_eq!(r.events.severities, vec![Severity::Warning]);
    assert_eq!((r.window_secs, r.for_secs, r.cooldown_secs, r.resolve), (300, 30, 7200, false));
    assert_eq!(r.sinks.as_deref().map(<[Box<str>]>::len), Some(2));
    assert!(r.sends_to("mail") && !r.sends_to("pager"));
    assert_eq!(r.dedup_key(), "portcullis/a");
    assert_eq!(r.labels.get("runbook").map(String::as_str), Some("3.1"));
    assert!(!r.events.by_type_only());
    assert!(r.events.matches(EventType::AuthFailure, Severity::Warning, None, Some("73"), Some("api")));
    assert!(!r.events.matches(EventType::AuthFailure, Severity::Warning, Some("12"), None, Some("api")));
    assert!(!r.events.matches(EventType::AuthFailure, Severity::Info, Some("73"), None, Some("api")));
    assert!(!r.events.matches(EventType::SsrfBlock, Severity::Warning, Some("73"), None, Some("api")));
    assert!(!r.events.matches(EventType::AuthFailure, Severity::Warning, Some("73"), None, None));
    // Defaults.
    let r = one_rule("  - id: h\n    metric: health_score\n    below: 50\n    window: 1h\n").unwrap();
    assert_eq!(
        (r.severity, r.mode, r.for_secs, r.cooldown_secs, r.resolve, r.min_requests),
        (Severity::Warning, Mode::Enforce, 0, 900, true, 20)
    );
    assert!(r.sinks.is_none() && r.sends_to("anything"));
    // `events:` without `metric:` means events.
    assert_eq!(
        one_rule("  - id: e\n    events: {}\n    above: 1\n    window: 1m\n").unwrap().metric,
        MetricKind::Events
    );
}

#[test]
fn bad_rules_name_the_key() {
    let err = |body: &str| one_rule(body).unwrap_err().join("\n");
    let cases = [
        ("  - id: a\n    above: 1\n    window: 1h\n", "alerts[0].metric: a rule needs a `metric`"),
        ("  - id: a\n    metric: events\n    window: 1h\n", "a rule needs a threshold"),
        ("  - id: a\n    metric: events\n    above: 1\n    below: 2\n    window: 1h\n", "alerts[0].below: give `above` or `below`, not both"),
        ("  - id: a\n    metric: events\n    above: 1\n", "alerts[0].window: a rule needs a `window`"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 30s\n", "alerts[0].window: `30s` is out of range: 1m to 168h"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 169h\n", "out of range"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1d\n", "alerts[0].window: `1d` is not a duration"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    for: soon\n", "alerts[0].for: `soon` is not a duration"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    cooldown: 99999999999999999999h\n", "alerts[0].cooldown"),
        ("  - id: a\n    metric: health_score\n    below: 101\n    window: 1h\n", "alerts[0].below: the threshold of `health_score` must be between 0 and 100"),
        ("  - id: a\n    metric: error_rate_5xx\n    above: -1\n    window: 1h\n", "between 0 and 100"),
        ("  - id: a\n    metric: events\n    above: .nan\n    window: 1h\n", "alerts[0].above"),
        ("  - id: a\n    metric: health_score\n    events: {}\n    below: 1\n    window: 1h\n", "alerts[0].events: `events` filters only apply to `metric: events`"),
        ("  - id: a\n    metric: events\n    events: { types: [auth_failures] }\n    above: 1\n    window: 1h\n", "alerts[0].events.types[0]: unknown event type `auth_failures`"),
        ("  - id: a\n    metric: events\n    events: { types: [ssrf_block, SSRF-BLOCK] }\n    above: 1\n    window: 1h\n", "events.types[1]: `SSRF-BLOCK` is listed twice"),
        ("  - id: a\n    metric: events\n    events: { tenants: [''] }\n    above: 1\n    window: 1h\n", "events.tenants[0]"),
        ("  - id: a\n    metric: events\n    events: { routez: [api] }\n    above: 1\n    window: 1h\n", "routez"),
        ("  - id: a\n    metric: p95\n    above: 1\n    window: 1h\n", "alerts[0].metric"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    min_requests: 5\n", "`min_requests` only applies"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    sinks: []\n", "`sinks` is empty"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    sinks: [m, m]\n", "sinks[1]: `m` is listed twice"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    labels: { 'a b': x }\n", "a label name is"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    labels: { a: \"x\\ny\" }\n", "no control characters"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    sinks: null\n", "alerts[0].sinks"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    severity: high\n", "alerts[0].severity"),
        ("  - id: a\n    metric: events\n    above: 1\n    window: 1h\n    ttl: 1h\n", "ttl"),
    ];
    for (body, want) in cases {
        let e = err(body);
        assert!(e.contains(want), "{body}\nwanted {want:?}\ngot {e}");
    }
    // Every error of a rule at once.
    let e = err("  - id: a\n    metric: events\n    events: { types: [x] }\n    window: 2s\n    for: x\n");
    assert!(
        e.contains("unknown event type") && e.contains("threshold") && e.contains("window") && e.contains("for"),
        "{e}"
    );
    // Ids are shared with every other section.
    let text = "version: 1\nfirewall:\n  - id: a\n    match: { client_ips: [10.0.0.0/8] }\nalerts:\n  - id: a\n    metric: health_score\n    below: 1\n    window: 1h\n";
    let e = compile(&[SourceFile::new("a.yaml", text)]).unwrap_err();
    assert!(e.iter().any(|e| e.to_string().contains("duplicate rule id `a`")), "{e:?}");
}

#[test]
fn sinks_and_routes_are_checked_against_the_gateway_config() {
    let text = "version: 1\nalerts:\n  - id: a\n    metric: events\n    events: { routes: [api, nope] }\n    above: 1\n    window: 1h\n    sinks: [mail, pager]\n";
    let files = [SourceFile::new("a.yaml", text)];
    let e = compile_with(&files, &Env { routes: Some(&["api"]), assets: None, sinks: Some(&["mail"]) }).unwrap_err();
    let e: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert!(e.iter().any(|m| m.contains("alerts[0].events.routes[1]: unknown route `nope`")), "{e:?}");
    assert!(
        e.iter().any(|m| m.contains("alerts[0].sinks[1]: unknown sink `pager`; sinks in the gateway config: mail")),
        "{e:?}"
    );
    let e = compile_with(&files, &Env { routes: Some(&["api", "nope"]), assets: None, sinks: Some(&[]) }).unwrap_err();
    assert!(e.iter().any(|m| m.to_string().contains("sinks in the gateway config: (none)")), "{e:?}");
    let ok =
        compile_with(&files, &Env { routes: Some(&["api", "nope"]), assets: None, sinks: Some(&["pager", "mail"]) })
            .unwrap();
    assert_eq!(ok.alerts.sink_names().count(), 2);
}

fn rule(for_secs: u64, cooldown_secs: u64) -> AlertRule {
    let mut r = one_rule("  - id: r\n    metric: events\n    above: 10\n    window: 1h\n").unwrap();
    r.for_secs = for_secs;
    r.cooldown_secs = cooldown_secs;
    r
}

const S: i64 = 1000;

#[test]
fn fires_once_resolves_and_respects_for_and_cooldown() {
    let r = rule(0, 600);
    let mut st = AlertState::new(&r);
    assert_eq!(st.step(&r, Some(10.0), 0), None); // not above 10
    assert_eq!(st.step(&r, None, S), None); // no data never holds
    assert_eq!(st.step(&r, Some(11.0), 2 * S), Some(Transition::Fire { value: 11.0, since_ms: 2 * S }));
    assert!(st.firing());
    // Still holding: no second notification.
    for t in 3..100 {
        assert_eq!(st.step(&r, Some(50.0), t * S), None);
    }
    assert_eq!(st.step(&r, Some(3.0), 100 * S), Some(Transition::Resolve { value: Some(3.0), fired_ms: 2 * S }));
    assert!(!st.firing());
    // Again within the cooldown (600 s from the notification at 2 s): suppressed, and so is its resolve.
    assert_eq!(st.step(&r, Some(12.0), 200 * S), Some(Transition::Suppressed { value: 12.0 }));
    assert_eq!(st.step(&r, Some(12.0), 300 * S), None);
    assert_eq!(st.step(&r, Some(1.0), 400 * S), None);
    // After the cooldown: notified again.
    assert_eq!(st.step(&r, Some(13.0), 602 * S), Some(Transition::Fire { value: 13.0, since_ms: 602 * S }));
    // A resolve can be turned off.
    let mut quiet = r.clone();
    quiet.resolve = false;
    assert_eq!(st.step(&quiet, Some(0.0), 700 * S), None);
    assert!(!st.firing());

    // `for`: the condition must hold that long, uninterrupted.
    let r = rule(60, 0);
    let mut st = AlertState::new(&r);
    assert_eq!(st.step(&r, Some(20.0), 0), None);
    assert_eq!(st.step(&r, Some(20.0), 59 * S), None);
    assert_eq!(st.step(&r, Some(5.0), 59 * S + 1), None); // broken: restarts
    assert_eq!(st.step(&r, Some(20.0), 70 * S), None);
    assert_eq!(st.step(&r, Some(20.0), 129 * S), None);
    assert_eq!(st.step(&r, Some(20.0), 130 * S), Some(Transition::Fire { value: 20.0, since_ms: 70 * S }));
    // Below: health style.
    let mut h = rule(0, 0);
    h.cmp = Comparison::Below(50.0);
    let mut st = AlertState::new(&h);
    assert_eq!(st.step(&h, Some(50.0), 0), None);
    assert!(matches!(st.step(&h, Some(49.0), S), Some(Transition::Fire { .. })));
    assert_eq!(st.step(&h, None, 2 * S), Some(Transition::Resolve { value: None, fired_ms: S }));
}

#[test]
fn a_reload_keeps_the_state_of_unchanged_rules_and_the_cooldown_of_changed_ones() {
    let r = rule(30, 600);
    let mut st = AlertState::new(&r);
    assert_eq!(st.step(&r, Some(20.0), 0), None);
    // Unchanged rule: the pending `for` carries over.
    let same = st.carried_to(&r);
    assert_eq!(same, st);
    let mut st = same;
    assert!(matches!(st.step(&r, Some(20.0), 30 * S), Some(Transition::Fire { .. })));
    // A changed threshold (another hash): still firing, cooldown kept, so no second page...
    let mut changed = r.clone();
    changed.cmp = Comparison::Above(15.0);
    changed.hash = "other".into();
    let mut st2 = st.carried_to(&changed);
    assert_eq!((st2.firing(), st2.last_notified_ms, st2.hash.as_str()), (true, Some(30 * S), "other"));
    assert_eq!(st2.step(&changed, Some(20.0), 40 * S), None);
    // ...and its resolve still goes out when it clears.
    assert!(matches!(st2.step(&changed, Some(1.0), 50 * S), Some(Transition::Resolve { .. })));
    // Firing again within the cooldown that ran before the reload: suppressed.
    let mut changed_for = changed.clone();
    changed_for.for_secs = 0;
    assert!(matches!(st2.step(&changed_for, Some(20.0), 60 * S), Some(Transition::Suppressed { .. })));
    // A pending `for` restarts for a changed rule.
    let mut p = AlertState::new(&r);
    p.step(&r, Some(20.0), 0);
    assert_eq!(p.carried_to(&changed).pending_since_ms, None);
}

#[test]
fn rule_hashes_tell_changed_rules_apart() {
    let a = one_rule("  - id: r\n    metric: events\n    above: 10\n    window: 1h\n").unwrap();
    let b = one_rule("  - id: r\n    metric: events\n    window: 1h\n    above: 10\n").unwrap();
    let c = one_rule("  - id: r\n    metric: events\n    above: 11\n    window: 1h\n").unwrap();
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
}
