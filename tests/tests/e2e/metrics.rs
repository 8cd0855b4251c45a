//! `/metrics` as Prometheus reads it: parsed by a real text-format parser (the Python client's,
//! `prometheus_client`, installed by `.ci/run`), every family with HELP and TYPE, no series twice,
//! label values that carry quotes, backslashes and newlines escaped and read back intact; and a
//! request that got only an interim `100 Continue` counted as 499 (`4xx`), never as `1xx`.
use crate::common::*;
use portcullis_tests::{wait_until, Client, Gateway, RawConn, Upstream};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Reads the text with `prometheus_client.parser` and prints each family as JSON:
/// `{name, type, help, samples: [[name, {labels}, value]]}` (values as text: NaN/Inf are not JSON).
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [[s.name, s.labels, repr(s.value)] for s in f.samples]})
print(json.dumps(out))
"#;

/// The families `/metrics` serves, as the parser read them (it fails the test on malformed text).
fn parse(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client: python3 -m pip install prometheus_client; .ci/run does)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus text parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn scrape(gw: &Gateway) -> String {
    let r = Client::new().get(&gw.control_url("/metrics"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    r.text()
}

/// Label values with every character the text format must escape (`"`, `\`, newline).
const POOL: &str = "pool \"quoted\" \\ back\nslash";
const LIST: &str = "lists/q\"uote\\back.txt";

#[test]
fn metrics_parse_with_a_real_prometheus_parser_and_escape_label_values() {
    let up = Upstream::start("app");
    // A pool whose name needs every escape, serving a route; a list file named with a quote and
    // a backslash (the pool is free-form config, the list a file name: both become labels).
    let yaml_pool = POOL.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let yaml_list = LIST.replace('\\', "\\\\").replace('"', "\\\"");
    let gw = Cfg::new(&[up.addr()])
        .pool(&format!("\"{yaml_pool}\""), &[up.addr()], "health_check: { kind: tcp, interval_ms: 200 }")
        .routes(&format!(
            "  - id: odd\n    path_prefix: /odd\n    upstream: \"{yaml_pool}\"\n  - id: default\n    path_prefix: /\n    upstream: app\n"
        ))
        .rule_file(
            "feed.yaml",
            &format!("version: 1\nfirewall:\n  - id: feed\n    match:\n      client_ips_file: \"{yaml_list}\"\n"),
        )
        .rule_file(LIST, "192.0.2.0/24\n")
        .start();
    let client = Client::new();
    assert_eq!(client.get(&gw.url("/odd/x"), &[]).status, 200);
    assert_eq!(client.get(&gw.url("/x"), &[]).status, 200);
    assert_eq!(client.get(&gw.url("/x"), &[("authorization", "Bearer nope")]).status, 200);
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(100), || scrape(&gw)
        .contains("portcullis_requests_total{route=\"default\",status_class=\"2xx\"} 2")));

    let text = scrape(&gw);
    let families = parse(&text);
    assert!(families.len() > 30, "{text}");
    let mut series = BTreeSet::new();
    let mut names = BTreeSet::new();
    for f in &families {
        let name = f["name"].as_str().unwrap();
        assert!(names.insert(name.to_string()), "family {name} twice in\n{text}");
        // A sample without HELP/TYPE ahead of it is read as its own `unknown` family.
        assert!(!matches!(f["type"].as_str(), Some("unknown" | "untyped")), "{name}: no TYPE in\n{text}");
        assert!(!f["help"].as_str().unwrap().is_empty(), "{name}: no HELP in\n{text}");
        assert!(!f["samples"].as_array().unwrap().is_empty(), "{name}: no samples");
        for s in f["samples"].as_array().unwrap() {
            let key = format!("{}{}", s[0].as_str().unwrap(), s[1]);
            assert!(series.insert(key.clone()), "series {key} twice in\n{text}");
        }
    }
    let family = |name: &str| families.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}: {text}"));
    // Types as documented (the parser names a counter family without its `_total`).
    for (name, kind) in [
        ("portcullis_requests", "counter"),
        ("portcullis_responses_5xx", "counter"),
        ("portcullis_request_duration_seconds", "histogram"),
        ("portcullis_upstream_errors", "counter"),
        ("portcullis_build_info", "gauge"),
        ("portcullis_security_events", "counter"),
        ("portcullis_rules_list_entries", "gauge"),
        ("portcullis_upstream_healthy", "gauge"),
        ("portcullis_backend_healthy", "gauge"),
    ] {
        assert_eq!(family(name)["type"], kind, "{name}");
    }
    // The odd names come back exactly, through the escapes.
    let labels = |name: &str, key: &str| -> Vec<String> {
        family(name)["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[1][key].as_str().map(String::from))
            .collect()
    };
    assert!(labels("portcullis_upstream_healthy", "upstream").contains(&POOL.to_string()), "{text}");
    assert!(labels("portcullis_backend_healthy", "pool").contains(&POOL.to_string()), "{text}");
    assert!(labels("portcullis_rules_list_entries", "list").contains(&LIST.to_string()), "{text}");
    assert!(text.contains("upstream=\"pool \\\"quoted\\\" \\\\ back\\nslash\""), "{text}");
    // Every route's request series exist from the start, requests or not.
    let routes = labels("portcullis_requests", "route");
    for r in ["odd", "default", "none"] {
        assert_eq!(routes.iter().filter(|x| *x == r).count(), 5, "{r}: {routes:?}");
    }
    // What the upstream saw: the requests, served.
    assert_eq!(up.count(), 3);
}

const GH_SECRET: &str = "gh-metrics-secret-0123456789abcdef";

#[test]
fn a_request_answered_only_with_100_continue_counts_as_499_not_1xx() {
    let up = Upstream::start("app");
    // A webhook rule reads the body before anything is forwarded, answering `Expect:
    // 100-continue` itself.
    let gw = Cfg::new(&[up.addr()])
        .routes("  - id: hooks\n    path_prefix: /hooks\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n")
        .rule_file(
            "hooks.yaml",
            "version: 1\nwebhooks:\n  - id: gh\n    routes: [hooks]\n    path_prefix: /hooks\n    provider: github\n    secrets: [{id: current, env: PC_GH}]\n",
        )
        .start_env(&[("PC_GH", GH_SECRET)]);
    let head = |len: usize| {
        format!("POST /hooks/x HTTP/1.1\r\nHost: app\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n")
    };
    // The client leaves after the 100 Continue: without its body, then with half of it.
    for partial in [&b""[..], &b"{\"id\":"[..]] {
        let mut conn = RawConn::connect(gw.proxy_addr());
        conn.send(head(40).as_bytes()).unwrap();
        let cont = conn.read_response(Duration::from_secs(5)).expect("100 Continue");
        assert_eq!(cont.status, 100);
        if !partial.is_empty() {
            conn.send(partial).unwrap();
        }
        drop(conn);
    }
    let series = |class: &str| format!("portcullis_requests_total{{route=\"hooks\",status_class=\"{class}\"}}");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || metric(&gw, &series("4xx")) == Some(2.0)),
        "{}",
        scrape(&gw)
    );
    assert_eq!(metric(&gw, &series("1xx")), Some(0.0), "{}", scrape(&gw));
    assert_eq!(metric(&gw, &series("5xx")), Some(0.0));
    // Nothing was forwarded.
    assert_eq!(up.count(), 0);
    // The access log agrees with the metrics: 499, not 100.
    let statuses: Vec<i64> = gw
        .json_logs()
        .iter()
        .filter(|l| l["log.logger"] == "access" && l["url.path"] == "/hooks/x")
        .filter_map(|l| l["http.response.status_code"].as_i64())
        .collect();
    assert_eq!(statuses, [499, 499]);
}
