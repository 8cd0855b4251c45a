//! Alerts that reach people (issue 20): the rule files' `alerts:` evaluated against real
//! traffic, delivered to real receivers — an HTTP receiver for the webhook (Standard Webhooks
//! signature verified), Slack and PagerDuty shapes, and aiosmtpd for e-mail over STARTTLS + AUTH —
//! once per cooldown, resolved when cleared, retried when the receiver is down without touching
//! requests, and kept across a reload.
use crate::common::*;
use portcullis_rules::webhook::{Provider, Secret, Verifier};
use portcullis_tests::alerts::{HttpReceiver, Received, SmtpServer};
use portcullis_tests::tls::Pki;
use portcullis_tests::{free_dead_addr, wait_until, Client, TempDir, Upstream};
use std::time::{Duration, Instant};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PD_KEY: &str = "pd-routing-key-0123456789abcdef";
const SMTP_USER: &str = "alerts";
const SMTP_PASS: &str = "smtp-pass-never-logged-4711";
const T: Duration = Duration::from_secs(15);

/// Blocks user agents saying `evil`.
const FIREWALL: &str =
    "version: 1\nfirewall:\n  - id: evil-agent\n    match:\n      headers:\n        user-agent: evil\n";

fn alert_rules(body: &str) -> String {
    format!("version: 1\nalerts:\n{body}")
}

/// `alerting:` with a fast evaluator, quick retries, and the given sinks (YAML list items).
fn alerting(sinks: &str) -> String {
    format!("alerting:\n  evaluate_every_ms: 150\n  links_base_url: https://gw.example:9090\n  retry: {{ attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 400, timeout_ms: 2000 }}\n  sinks:\n{sinks}")
}

fn webhook_sink(name: &str, url: &str) -> String {
    format!("    - {{ name: {name}, type: webhook, url: \"{url}\", secret_env: ALERT_WHSEC }}\n")
}

/// Verifies a delivery with the Standard Webhooks scheme (the rules crate's verifier, checked
/// against the public vectors).
fn verify(r: &Received) {
    let v = Verifier::new(
        Provider::StandardWebhooks,
        vec![Secret::new(&Provider::StandardWebhooks, "s", WHSEC.as_bytes()).unwrap()],
        300,
    )
    .unwrap();
    let mut h = http::HeaderMap::new();
    for (k, val) in &r.headers {
        h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_str(val).unwrap());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    v.verify(&h, &r.body, now).unwrap_or_else(|e| panic!("signature does not verify: {e:?}: {:?}", r.headers));
    // Tampered bodies do not verify.
    let mut bad = r.body.clone();
    bad.push(b' ');
    assert!(v.verify(&h, &bad, now).is_err());
}

fn firing(got: &[Received], rule: &str) -> usize {
    got.iter().filter(|r| r.json()["rule_id"] == rule && r.json()["status"] == "firing").count()
}

fn resolved(got: &[Received], rule: &str) -> usize {
    got.iter().filter(|r| r.json()["rule_id"] == rule && r.json()["status"] == "resolved").count()
}

fn blocked(gw: &portcullis_tests::Gateway, n: usize) {
    let c = Client::new();
    for i in 0..n {
        assert_eq!(c.get(&gw.url(&format!("/api/x{i}")), &[("user-agent", "evil")]).status, 403);
    }
}

#[test]
fn every_sink_gets_exactly_one_alert_from_real_traffic() {
    let up = Upstream::start("app");
    let hooks = HttpReceiver::start();
    let pki = Pki::new();
    let (cert, key) = pki.leaf("smtp", &["localhost"], 30);
    let dir = TempDir::new("alerts-smtp");
    let smtp = SmtpServer::start(dir.path(), &cert, &key, SMTP_USER, SMTP_PASS);
    let sinks = format!(
        "{}    - {{ name: chat, type: slack, url_env: SLACK_URL }}\n    - {{ name: pager, type: pagerduty, url: \"{}\", routing_key_env: PD_KEY }}\n    - name: mail\n      type: email\n      ca_file: \"{}\"\n      from: portcullis@gw.example\n      to: [oncall@telyx.example]\n      smtp: {{ host: localhost, port: {}, tls: starttls, username: {SMTP_USER}, password_env: SMTP_PASS }}\n",
        webhook_sink("hook", &hooks.url("/hook")),
        hooks.url("/pd"),
        pki.ca().display(),
        smtp.port
    );
    let rules = alert_rules(
        "  - id: firewall-spike\n    description: \"block the range, investigate\"\n    severity: critical\n    metric: events\n    events: { types: [firewall_block] }\n    above: 3\n    window: 5m\n    cooldown: 10m\n    labels: { runbook: \"2\" }\n",
    );
    let gw = Cfg::new(&[up.addr()])
        .rule_file("fw.yaml", FIREWALL)
        .rule_file("alerts.yaml", &rules)
        .extra(&alerting(&sinks))
        .start_env(&[
            ("ALERT_WHSEC", WHSEC),
            ("SLACK_URL", &hooks.url("/slack")),
            ("PD_KEY", PD_KEY),
            ("SMTP_PASS", SMTP_PASS),
        ]);

    // Three blocks: at the threshold, not over it. Nothing is sent.
    blocked(&gw, 3);
    std::thread::sleep(Duration::from_millis(800));
    assert!(hooks.received().is_empty(), "{:?}", hooks.received());
    // Over it: one alert per sink, and still one after many more evaluations and blocks.
    blocked(&gw, 4);
    let got = hooks.wait("/hook", T, |g| !g.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
    hooks.wait("/slack", T, |g| !g.is_empty());
    hooks.wait("/pd", T, |g| !g.is_empty());
    let mail = smtp.wait(T, |m| !m.is_empty());
    blocked(&gw, 5);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(firing(&hooks.accepted("/hook"), "firewall-spike"), 1);
    assert_eq!(hooks.accepted("/slack").len(), 1);
    assert_eq!(hooks.accepted("/pd").len(), 1);
    assert_eq!(smtp.messages().len(), 1, "{mail:?}");

    // The webhook: signed (Standard Webhooks), and it says what fired, the value, the threshold,
    // the window and where to look.
    let hook = &hooks.accepted("/hook")[0];
    verify(hook);
    let a = hook.json();
    assert_eq!(hook.header("webhook-id"), a["id"].as_str());
    assert_eq!(
        (a["type"].as_str(), a["status"].as_str(), a["severity"].as_str()),
        (Some("alert"), Some("firing"), Some("critical"))
    );
    assert_eq!(
        (a["metric"].as_str(), a["threshold"].as_f64(), a["window"].as_str()),
        (Some("events"), Some(3.0), Some("5m"))
    );
    assert!(a["value"].as_f64().unwrap() > 3.0, "{a}");
    assert_eq!(a["test"], false);
    assert_eq!(a["labels"]["runbook"], "2");
    assert_eq!(a["dedup_key"], "portcullis/firewall-spike");
    assert_eq!(a["events_query"], "/v1/events?hours=1&type=firewall_block");
    assert_eq!(a["events_url"], "https://gw.example:9090/v1/events?hours=1&type=firewall_block");
    // Slack: a text message. PagerDuty: Events v2 trigger with the routing key and dedup key.
    let s = hooks.accepted("/slack")[0].json();
    assert!(s["text"].as_str().unwrap().contains("firing: firewall-spike"), "{s}");
    let p = hooks.accepted("/pd")[0].json();
    assert_eq!(
        (p["routing_key"].as_str(), p["event_action"].as_str(), p["dedup_key"].as_str()),
        (Some(PD_KEY), Some("trigger"), Some("portcullis/firewall-spike"))
    );
    assert_eq!(
        (p["payload"]["severity"].as_str(), p["payload"]["source"].as_str()),
        (Some("critical"), Some("portcullis"))
    );
    // E-mail: over STARTTLS, authenticated, to the on-call.
    let m = &smtp.messages()[0];
    assert_eq!((m["tls"].as_bool(), m["authenticated"].as_bool()), (Some(true), Some(true)), "{m}");
    assert_eq!(m["to"][0], "oncall@telyx.example");
    let data = m["data"].as_str().unwrap();
    assert!(data.contains("Subject: [Portcullis] [CRITICAL] firing: firewall-spike"), "{data}");
    assert!(data.contains("block the range, investigate"), "{data}");
    // No raw event data (the client's address) and no secret in any payload or log.
    for r in hooks.received() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("127.0.0.1") && !body.contains(WHSEC) && !body.contains("/api/x"), "{body}");
    }
    assert!(!data.contains("127.0.0.1") && !data.contains(SMTP_PASS));
    let out = gw.output();
    for secret in [WHSEC, PD_KEY, SMTP_PASS, "/slack"] {
        assert!(!out.contains(secret), "{secret} in the logs");
    }
    // Counted.
    assert_eq!(metric(&gw, "portcullis_alert_firing{rule=\"firewall-spike\",severity=\"critical\"}"), Some(1.0));
    for sink in [("hook", "webhook"), ("chat", "slack"), ("pager", "pagerduty"), ("mail", "email")] {
        let series = format!(
            "portcullis_alert_deliveries_total{{sink=\"{}\",type=\"{}\",result=\"delivered\"}}",
            sink.0, sink.1
        );
        assert_eq!(metric(&gw, &series), Some(1.0), "{series}");
    }
    // The upstream never saw the blocked requests.
    assert!(up.requests().iter().all(|r| !r.target.starts_with("/api/x")));
}

#[test]
fn the_5xx_alarm_counts_upstream_failures_not_the_gateways_own_answers_and_resolves() {
    let up = Upstream::start("app");
    let hooks = HttpReceiver::start();
    let dead = free_dead_addr();
    let rules = alert_rules(
        "  - id: error-rate-5xx\n    severity: critical\n    metric: error_rate_5xx\n    above: 5\n    window: 5m\n    min_requests: 20\n    cooldown: 10m\n  - id: health-page\n    severity: critical\n    metric: health_score\n    below: 50\n    window: 5m\n",
    );
    let gw = Cfg::new(&[up.addr()])
        .pool("gone", &[dead], "health_check: { kind: tcp, interval_ms: 200 }")
        .routes("  - id: down\n    path_prefix: /down\n    upstream: gone\n  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n")
        .rule_file("alerts.yaml", &rules)
        .extra(&alerting(&webhook_sink("hook", &hooks.url("/hook"))))
        .start_env(&[("ALERT_WHSEC", WHSEC)]);
    let c = Client::new();
    let op = [("authorization", bearer(OPERATOR))];
    let op: Vec<(&str, &str)> = op.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The operator's own switch flips and maintenance answers: 30 deliberate 503s, no failure.
    let on = c.request(
        "PUT",
        &gw.control_url("/v1/switches/maintenance"),
        &op,
        Some(br#"{"enabled":true,"reason":"drill"}"#),
    );
    assert_eq!(on.status, 200, "{}", on.text());
    for _ in 0..30 {
        assert_eq!(c.get(&gw.url("/api/a"), &[]).status, 503);
    }
    let off = c.request("PUT", &gw.control_url("/v1/switches/maintenance"), &op, Some(br#"{"enabled":false}"#));
    assert_eq!(off.status, 200);
    for _ in 0..10 {
        assert_eq!(c.get(&gw.url("/api/ok"), &[]).status, 200);
    }
    std::thread::sleep(Duration::from_millis(800));
    assert!(hooks.received().is_empty(), "deliberate answers paged: {:?}", hooks.received());
    let s = control_get(&gw, "/v1/summary?hours=1", VIEWER).json();
    assert_eq!(
        (s["requests"]["errors_5xx"].as_u64(), s["requests"]["responses_5xx"].as_u64()),
        (Some(0), Some(30)),
        "{s}"
    );
    assert_eq!(s["requests"]["gateway_answers_5xx"], 30);
    assert_eq!(
        (s["health_score"].as_u64(), s["events"]["by_type"]["switch_changed"].as_u64()),
        (Some(100), Some(2)),
        "{s}"
    );
    assert_eq!(metric(&gw, "portcullis_health_score{window=\"1h\"}"), Some(100.0));
    assert_eq!(metric(&gw, "portcullis_responses_5xx_total{route=\"api\",cause=\"gateway_decision\"}"), Some(30.0));

    // Real upstream failures: 10 of 50 requests (20 %) → one alert.
    for _ in 0..10 {
        assert_eq!(c.get(&gw.url("/down/x"), &[]).status, 502);
    }
    let got = hooks.wait("/hook", T, |g| firing(g, "error-rate-5xx") > 0);
    assert_eq!(firing(&got, "error-rate-5xx"), 1, "{got:?}");
    let a = got.iter().find(|r| r.json()["rule_id"] == "error-rate-5xx").unwrap().json();
    assert_eq!((a["metric"].as_str(), a["unit"].as_str()), (Some("error_rate_5xx"), Some("%")));
    assert!((a["value"].as_f64().unwrap() - 20.0).abs() < 0.01, "{a}");
    assert_eq!(metric(&gw, "portcullis_responses_5xx_total{route=\"down\",cause=\"failure\"}"), Some(10.0));
    // Cleared by real traffic: 10 of 250 is 4 % → one resolve.
    for _ in 0..200 {
        assert_eq!(c.get(&gw.url("/api/ok"), &[]).status, 200);
    }
    let got = hooks.wait("/hook", T, |g| resolved(g, "error-rate-5xx") > 0);
    assert_eq!((firing(&got, "error-rate-5xx"), resolved(&got, "error-rate-5xx")), (1, 1), "{got:?}");
    let r = got.iter().find(|r| r.json()["status"] == "resolved").unwrap();
    verify(r);
    assert!(r.json()["value"].as_f64().unwrap() < 5.0);
    // The health score never paged: 20 % failures cost 50 points at most… and it was 4 % at the
    // end; the rule's state is exported.
    assert_eq!(metric(&gw, "portcullis_alert_firing{rule=\"error-rate-5xx\",severity=\"critical\"}"), Some(0.0));
    assert_eq!(
        metric(&gw, "portcullis_alert_transitions_total{rule=\"error-rate-5xx\",transition=\"fired\"}"),
        Some(1.0)
    );
    assert!(up.requests().iter().filter(|r| r.target == "/api/ok").count() >= 210);
}

#[test]
fn a_sink_that_is_down_is_retried_counted_reported_and_never_slows_requests() {
    let up = Upstream::start("app");
    let flaky = HttpReceiver::start();
    flaky.fail_next(2); // 503, 503, then 200: delivered on the third try
    let dead = free_dead_addr();
    let sinks = format!(
        "{}{}",
        webhook_sink("dead", &format!("http://{dead}/hook?token=s3cr3t-in-url")),
        webhook_sink("flaky", &flaky.url("/hook"))
    );
    let rules = alert_rules(
        "  - id: spike\n    metric: events\n    events: { types: [firewall_block] }\n    above: 0\n    window: 5m\n",
    );
    let gw = Cfg::new(&[up.addr()])
        .rule_file("fw.yaml", FIREWALL)
        .rule_file("alerts.yaml", &rules)
        .extra(&alerting(&sinks))
        .start_env(&[("ALERT_WHSEC", WHSEC)]);
    // A baseline of request latency, then the same while the sinks fail and retry.
    let c = Client::new();
    let time = |n: usize| {
        let mut worst = Duration::ZERO;
        for _ in 0..n {
            let t = Instant::now();
            assert_eq!(c.get(&gw.url("/api/ok"), &[]).status, 200);
            worst = worst.max(t.elapsed());
        }
        worst
    };
    let before = time(50);
    blocked(&gw, 1);
    let during = time(50);
    assert!(during < before.max(Duration::from_millis(50)) * 4, "requests slowed: {before:?} → {during:?}");
    // The flaky receiver got it on the third try; the dead one was tried 3 times and given up.
    let got = flaky.wait("/hook", T, |g| !g.is_empty());
    assert_eq!(got.len(), 1);
    assert_eq!(flaky.received().len(), 3);
    verify(&got[0]);
    assert!(wait_until(T, Duration::from_millis(50), || {
        metric(&gw, "portcullis_alert_deliveries_total{sink=\"dead\",type=\"webhook\",result=\"failed\"}") == Some(1.0)
    }));
    assert_eq!(metric(&gw, "portcullis_alert_delivery_attempts_total{sink=\"dead\"}"), Some(3.0));
    assert_eq!(metric(&gw, "portcullis_alert_delivery_retries_total{sink=\"flaky\"}"), Some(2.0));
    assert_eq!(
        metric(&gw, "portcullis_alert_deliveries_total{sink=\"flaky\",type=\"webhook\",result=\"delivered\"}"),
        Some(1.0)
    );
    // Surfaced as an event, without the URL (it carries a token).
    let evs = control_get(&gw, "/v1/events?type=alert_delivery_failed", VIEWER).json();
    let ev = &evs["events"][0];
    assert_eq!(
        (ev["detail"]["sink"].as_str(), ev["detail"]["alert"].as_str(), ev["detail"]["attempts"].as_u64()),
        (Some("dead"), Some("spike"), Some(3)),
        "{evs}"
    );
    assert!(ev["detail"]["reason"].as_str().unwrap().starts_with("transport"), "{ev}");
    assert!(!evs.to_string().contains("s3cr3t") && !gw.output().contains("s3cr3t"));
    // The operator's alerting pipeline failing is counted, never a health penalty.
    let s = control_get(&gw, "/v1/summary?hours=1", VIEWER).json();
    assert_eq!(s["health_inputs"]["warning"], 1, "{s}"); // the firewall block only
}

#[test]
fn a_reload_that_changes_thresholds_keeps_the_cooldown_and_takes_effect() {
    let up = Upstream::start("app");
    let hooks = HttpReceiver::start();
    let rule = |above: u32| {
        alert_rules(&format!(
            "  - id: spike\n    metric: events\n    events: {{ types: [firewall_block] }}\n    above: {above}\n    window: 5m\n    cooldown: 10m\n  - id: watch\n    metric: events\n    events: {{ types: [firewall_block] }}\n    above: 100\n    window: 5m\n"
        ))
    };
    let gw = Cfg::new(&[up.addr()])
        .rule_file("fw.yaml", FIREWALL)
        .rule_file("alerts.yaml", &rule(1))
        .extra(&alerting(&webhook_sink("hook", &hooks.url("/hook"))))
        .start_env(&[("ALERT_WHSEC", WHSEC)]);
    blocked(&gw, 3);
    let got = hooks.wait("/hook", T, |g| firing(g, "spike") > 0);
    assert_eq!(firing(&got, "spike"), 1);
    // A new threshold (still crossed): no second page — the firing state and cooldown are kept.
    write_atomic(&gw.dir().join("rules/alerts.yaml"), &rule(2));
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!((r.status, r.json()["changed"].as_bool()), (200, Some(true)), "{}", r.text());
    blocked(&gw, 2);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(firing(&hooks.accepted("/hook"), "spike"), 1, "{:?}", hooks.accepted("/hook"));
    // A threshold no longer crossed takes effect at once: the alert resolves.
    write_atomic(&gw.dir().join("rules/alerts.yaml"), &rule(50));
    assert_eq!(control_post(&gw, "/v1/rules/reload", OPERATOR).status, 200);
    let got = hooks.wait("/hook", T, |g| resolved(g, "spike") > 0);
    assert_eq!((firing(&got, "spike"), resolved(&got, "spike")), (1, 1));
    // Crossed again within the cooldown of the first page: suppressed, and counted.
    write_atomic(&gw.dir().join("rules/alerts.yaml"), &rule(3));
    assert_eq!(control_post(&gw, "/v1/rules/reload", OPERATOR).status, 200);
    assert!(wait_until(T, Duration::from_millis(50), || {
        metric(&gw, "portcullis_alert_transitions_total{rule=\"spike\",transition=\"suppressed\"}") == Some(1.0)
    }));
    assert_eq!(firing(&hooks.accepted("/hook"), "spike"), 1);
    assert_eq!(firing(&hooks.accepted("/hook"), "watch"), 0);
    // A rule naming a sink the gateway does not have is refused; the running rules stay.
    write_atomic(
        &gw.dir().join("rules/alerts.yaml"),
        &alert_rules("  - id: spike\n    metric: events\n    above: 1\n    window: 5m\n    sinks: [nowhere]\n"),
    );
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("unknown sink `nowhere`; sinks in the gateway config: hook"), "{}", r.text());
}

#[test]
fn safe_tests_prove_each_sink_fire_the_runbook_alarms_and_send_the_digest() {
    let up = Upstream::start("app");
    let hooks = HttpReceiver::start();
    let pki = Pki::new();
    let (cert, key) = pki.leaf("smtp", &["localhost"], 30);
    let dir = TempDir::new("alerts-safe");
    let smtp = SmtpServer::start(dir.path(), &cert, &key, SMTP_USER, SMTP_PASS);
    let sinks = format!(
        "{}    - name: mail\n      type: email\n      ca_file: \"{}\"\n      from: portcullis@gw.example\n      to: [oncall@telyx.example]\n      smtp: {{ host: localhost, port: {}, username: {SMTP_USER}, password_env: SMTP_PASS }}\n  digest: {{ time: \"09:00\", zone: America/Los_Angeles }}\n",
        webhook_sink("hook", &hooks.url("/hook")),
        pki.ca().display(),
        smtp.port
    );
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rules/alerts.yaml")).unwrap();
    let gw = Cfg::new(&[up.addr()]).rule_file("alerts.yaml", &shipped).extra(&alerting(&sinks)).start_env(&[
        ("ALERT_WHSEC", WHSEC),
        ("SMTP_PASS", SMTP_PASS),
        ("SAFE_TEST_MODE", "true"),
    ]);

    // Each sink, end to end: the answer waits for the deliveries.
    let r = control_post(&gw, "/v1/safe-test/alert_sinks", OPERATOR);
    assert_eq!(r.status, 202, "{}", r.text());
    let b = r.json();
    assert_eq!(b["delivered"], true, "{b}");
    let sinks: Vec<&str> = b["deliveries"].as_array().unwrap().iter().map(|d| d["sink"].as_str().unwrap()).collect();
    assert_eq!(sinks, ["hook", "mail"]);
    let t = &hooks.accepted("/hook")[0];
    verify(t);
    assert_eq!((t.json()["test"].as_bool(), t.json()["labels"]["requested_by"].as_str()), (Some(true), Some("o")));
    assert!(smtp.messages()[0]["data"].as_str().unwrap().contains("[TEST]"));

    // The health, 5xx and p99 alarms of the runbook table (the shipped rules).
    for (test, rules) in [
        ("alert_health", vec!["health-page", "health-investigate"]),
        ("alert_5xx", vec!["error-rate-5xx"]),
        ("alert-p99", vec!["latency-p99"]),
    ] {
        let r = control_post(&gw, &format!("/v1/safe-test/{test}"), OPERATOR);
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.json()["delivered"], true, "{}", r.text());
        for rule in rules {
            let got = hooks.wait("/hook", T, |g| g.iter().any(|x| x.json()["rule_id"] == rule));
            let a = got.iter().find(|x| x.json()["rule_id"] == rule).unwrap().json();
            assert_eq!(a["test"], true, "{a}");
        }
    }
    // health-watch is the runbook's "dashboard only" (mode: monitor): never sent.
    assert!(hooks.received().iter().all(|r| r.json()["rule_id"] != "health-watch"));
    // An event-type safe test goes through the alerts that count it.
    let r = control_post(&gw, "/v1/safe-test/cross_tenant_attempt", OPERATOR);
    assert_eq!(r.status, 202);
    let alerts = r.json()["alerts"].clone();
    assert!(alerts.as_array().unwrap().iter().any(|a| a["rule_id"] == "cross-tenant-attempt"), "{alerts}");
    let got = hooks.wait("/hook", T, |g| g.iter().any(|x| x.json()["rule_id"] == "cross-tenant-attempt"));
    assert!(got.iter().any(|x| x.json()["rule_id"] == "cross-tenant-attempt" && x.json()["test"] == true));
    // The digest, now: counts, health and its trend, switch changes and who.
    let flip = Client::new().request(
        "PUT",
        &gw.control_url("/v1/switches/maintenance"),
        &[("authorization", &bearer(OPERATOR))],
        Some(br#"{"enabled":true,"reason":"drill"}"#),
    );
    assert_eq!(flip.status, 200);
    let r = control_post(&gw, "/v1/safe-test/digest", OPERATOR);
    assert_eq!((r.status, r.json()["delivered"].as_bool()), (202, Some(true)), "{}", r.text());
    let d = hooks.wait("/hook", T, |g| g.iter().any(|x| x.json()["type"] == "digest"));
    let d = d.iter().find(|x| x.json()["type"] == "digest").unwrap().json();
    assert!(d["summary"].as_str().unwrap().contains("daily digest"), "{d}");
    assert_eq!(d["digest"]["health"]["trend"].as_array().unwrap().len(), 4, "{d}");
    assert_eq!(d["digest"]["switch_changes"][0]["by"], "o", "{d}");
    assert!(d["digest"]["events"]["by_type"].is_object());
    let mail = smtp.wait(T, |m| m.iter().any(|x| x["data"].as_str().unwrap_or("").contains("daily digest")));
    assert!(mail.iter().any(|x| x["data"].as_str().unwrap().contains("Switch changes")));
    // Bad names are refused, and safe tests are audited.
    assert_eq!(control_post(&gw, "/v1/safe-test/alert_nothing", OPERATOR).status, 400);
    let audit = control_get(&gw, "/v1/audit?limit=100", ADMIN).text();
    assert!(audit.contains("alert:alert_sinks") && audit.contains("alert:digest"), "{audit}");
}

#[test]
fn bad_alerting_config_is_refused_with_every_error_and_no_secret() {
    let up = Upstream::start("app");
    let sinks = "    - { name: a, type: webhook, url: \"ftp://x\" }\n    - { name: a, type: slack }\n    - { name: p, type: pagerduty }\n    - { name: m, type: email, from: nope, to: [], smtp: { host: localhost, tls: none, username: u, password_env: PW } }\n    - { name: w, type: webhook, url_env: NOT_SET_ANYWHERE }\n    - { name: x, type: sms }\n  digest: { time: \"25:00\", zone: Mars/Olympus }\n";
    let cfg = Cfg::new(&[up.addr()]).extra(&alerting(sinks));
    let err = portcullis_tests::Gateway::try_start_with(BIN, &cfg.yaml(), &[("PW", "hunter2-secret")], &cfg.files())
        .unwrap_err();
    let out = err.to_string();
    for want in [
        "alerting.sinks[0].url: not an http:// or https:// URL",
        "alerting.sinks[1].name: duplicate sink name `a`",
        "alerting.sinks[1].url: a URL is needed",
        "alerting.sinks[2].routing_key_env: a routing key is needed",
        "alerting.sinks[3].from: `nope` is not an e-mail address",
        "alerting.sinks[3].to: at least one recipient",
        "alerting.sinks[3].smtp.tls: credentials are never sent without TLS",
        "alerting.sinks[4].url_env: the environment variable NOT_SET_ANYWHERE is not set",
        "alerting.sinks[5].type: unknown sink type `sms`",
        "alerting.digest.time",
        "alerting.digest.zone",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("hunter2"));
}

/// Alert states outlive the process: after a `kill -9` and a restart on the same state, an alert
/// already sent is not sent again while its condition still holds, and it still resolves (the
/// receiver's incident is closed, not left open forever). A corrupt state file does not stop the
/// start.
#[test]
fn a_restart_neither_pages_again_nor_forgets_to_resolve() {
    let up = Upstream::start("app");
    let hooks = HttpReceiver::start();
    let state = TempDir::new("alerts-restart");
    let rule = |above: u32| {
        alert_rules(&format!(
            "  - id: spike\n    metric: events\n    events: {{ types: [firewall_block] }}\n    above: {above}\n    window: 5m\n    cooldown: 10m\n"
        ))
    };
    let cfg = Cfg::new(&[up.addr()])
        .state_dir(state.path())
        .rule_file("fw.yaml", FIREWALL)
        .rule_file("alerts.yaml", &rule(1))
        .extra(&alerting(&webhook_sink("hook", &hooks.url("/hook"))));
    let env = [("ALERT_WHSEC", WHSEC)];
    let gw = cfg.start_env(&env);
    blocked(&gw, 3);
    let got = hooks.wait("/hook", T, |g| firing(g, "spike") > 0);
    assert_eq!(firing(&got, "spike"), 1);
    assert!(wait_until(T, Duration::from_millis(50), || state.path().join("alerts.json").exists()));

    // kill -9, start again: the events are still there (the condition holds), the page is not
    // sent again.
    assert!(gw.signal("KILL"));
    gw.wait_exit(Duration::from_secs(10));
    let gw = cfg.start_env(&env);
    assert!(wait_until(T, Duration::from_millis(50), || metric(
        &gw,
        "portcullis_alert_firing{rule=\"spike\",severity=\"warning\"}"
    ) == Some(1.0)));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(firing(&hooks.accepted("/hook"), "spike"), 1, "paged again after the restart");

    // The condition clears (a higher threshold): the episode from before the restart resolves.
    write_atomic(&gw.dir().join("rules/alerts.yaml"), &rule(100));
    assert_eq!(control_post(&gw, "/v1/rules/reload", OPERATOR).status, 200);
    let got = hooks.wait("/hook", T, |g| resolved(g, "spike") > 0);
    assert_eq!((firing(&got, "spike"), resolved(&got, "spike")), (1, 1));

    // A corrupt state file: the gateway starts anyway, without the old states.
    assert!(gw.signal("KILL"));
    gw.wait_exit(Duration::from_secs(10));
    std::fs::write(state.path().join("alerts.json"), b"{not json").unwrap();
    let gw = cfg.start_env(&env);
    assert_eq!(Client::new().get(&gw.control_url("/ready"), &[]).status, 200);
}
