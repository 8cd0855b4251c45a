use super::*;

fn alert(status: Status, test: bool) -> Alert {
    Alert {
        id: "0123".into(),
        status,
        test,
        rule_id: "firewall-block-spike".into(),
        severity: Severity::Critical,
        description: Some("block <the> range & investigate".into()),
        metric: MetricKind::Events,
        comparison: "above",
        threshold: 10.0,
        value: Some(14.0),
        window_secs: 3600,
        since: Some("2026-01-30T18:00:00.000Z".into()),
        at: "2026-01-30T18:00:05.000Z".into(),
        labels: [("runbook".to_owned(), "2".to_owned())].into(),
        dedup_key: "portcullis/firewall-block-spike".into(),
        events_query: "/v1/events?hours=1&type=firewall_block".into(),
        events_url: Some("https://gw.example:9090/v1/events?hours=1&type=firewall_block".into()),
    }
}

#[test]
fn every_sink_shape_says_what_fired() {
    let a = alert(Status::Firing, false);
    assert_eq!(a.title(), "[CRITICAL] firing: firewall-block-spike: 14 events (events above 10) over 1h");
    let m = Message::Alert(a.clone());
    let w: Value = serde_json::from_slice(&webhook_body(&m)).unwrap();
    assert_eq!(
        (w["status"].as_str(), w["value"].as_f64(), w["threshold"].as_f64(), w["window"].as_str()),
        (Some("firing"), Some(14.0), Some(10.0), Some("1h"))
    );
    assert_eq!(w["events_query"], "/v1/events?hours=1&type=firewall_block");
    let s: Value = serde_json::from_slice(&slack_body(&m)).unwrap();
    let text = s["text"].as_str().unwrap();
    assert!(text.starts_with(":red_circle: *[CRITICAL] firing"), "{text}");
    assert!(text.contains("block &lt;the&gt; range &amp; investigate"), "{text}");
    let pd = pagerduty_bodies(&m, "KEY");
    assert_eq!(pd.len(), 1);
    let p: Value = serde_json::from_slice(&pd[0]).unwrap();
    assert_eq!(
        (p["event_action"].as_str(), p["dedup_key"].as_str(), p["payload"]["severity"].as_str()),
        (Some("trigger"), Some("portcullis/firewall-block-spike"), Some("critical"))
    );
    assert_eq!(p["links"][0]["href"], "https://gw.example:9090/v1/events?hours=1&type=firewall_block");
    let r = pagerduty_bodies(&Message::Alert(alert(Status::Resolved, false)), "KEY");
    let r: Value = serde_json::from_slice(&r[0]).unwrap();
    assert_eq!(
        (r["event_action"].as_str(), r["dedup_key"].as_str()),
        (Some("resolve"), Some("portcullis/firewall-block-spike"))
    );
    // A test opens and closes its own incident, never the rule's.
    let t = pagerduty_bodies(&Message::Alert(alert(Status::Firing, true)), "KEY");
    let keys: Vec<Value> = t.iter().map(|b| serde_json::from_slice::<Value>(b).unwrap()).collect();
    assert_eq!(
        (keys[0]["event_action"].as_str(), keys[1]["event_action"].as_str()),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(keys[0]["dedup_key"], "portcullis/firewall-block-spike/test/0123");
    assert!(pagerduty_bodies(&Message::Digest { id: "d".into(), title: "t".into(), body: json!({}) }, "K").is_empty());
    let (subject, body) = email_parts(&m);
    assert_eq!(subject, "[Portcullis] [CRITICAL] firing: firewall-block-spike: 14 events (events above 10) over 1h");
    assert!(body.contains("Events: https://gw.example:9090/v1/events?hours=1&type=firewall_block"), "{body}");
    assert!(email_parts(&Message::Alert(alert(Status::Firing, true))).0.contains("[TEST]"));
}

#[test]
fn values_and_windows_read_well() {
    assert_eq!((show(14.0), show(5.4321), show(0.0)), ("14".to_owned(), "5.43".to_owned(), "0".to_owned()));
    assert_eq!(
        (show_window(3600), show_window(900), show_window(90), show_window(86_400)),
        ("1h".into(), "15m".into(), "90s".into(), "24h".into())
    );
    assert_eq!(percent_encode("acme corp/1"), "acme%20corp%2F1");
}
