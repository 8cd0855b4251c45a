//! `portcullis demo`: the gateway in front of the built-in sample application.
use crate::common::*;
use portcullis_tests::{Client, Gateway};

#[test]
fn demo_serves_the_sample_app_through_the_gateway() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let yaml = std::fs::read_to_string(root.join("config/demo.yaml")).unwrap();
    let yaml = yaml
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("/tmp/portcullis_demo_upgrade.sock", "{{DIR}}/upgrade.sock")
        .replace("/tmp/portcullis_demo.pid", "{{DIR}}/demo.pid");
    let shipped = std::fs::read_to_string(root.join("config/rules/firewall.yaml")).unwrap();
    let gw = Gateway::try_start_subcommand(BIN, "demo", &yaml, &[], &[("rules/firewall.yaml", &shipped)])
        .unwrap_or_else(|e| panic!("{e}"));
    let c = Client::new();
    let r = c.get(&gw.url("/api/business/12/orders"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tenant"], "12");
    let r = c.post(
        &gw.url("/api/whatsapp/messages"),
        &[("content-type", "application/json")],
        "{\"to\":\"+905321234567\"}",
    );
    assert_eq!(r.status, 202);
    let r = c.get(&gw.url("/api/business/12%2Forders"), &[]);
    assert_eq!(r.status, 400);
    // The shipped firewall rule refuses a known attack tool.
    let r = c.get(&gw.url("/api/business/12/orders"), &[("user-agent", "sqlmap/1.7#stable (https://sqlmap.org)")]);
    assert_eq!(r.status, 403, "{}", r.text());
    let out = gw.output();
    let token = out.split_whitespace().find(|w| w.starts_with("pcx_")).expect("the demo prints an operator token");
    let r = c.get(&gw.control_url("/v1/upstreams"), &[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["pools"][0]["backends"][0]["healthy"], true);
}
