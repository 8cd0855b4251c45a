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
        .replace("/tmp/portcullis_demo.pid", "{{DIR}}/demo.pid")
        .replace("{{DEMO_STATE_DIR}}", "{{DIR}}/state");
    // The demo's rules directory (config/demo-rules: the shipped firewall through a link, plus
    // the demo identity and tenant rules), copied beside the config.
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(root.join("config/demo-rules")).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("demo-rules/{}", path.file_name().unwrap().to_string_lossy());
        files.push((name, std::fs::read_to_string(&path).unwrap()));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::try_start_subcommand(BIN, "demo", &yaml, &[], &refs).unwrap_or_else(|e| panic!("{e}"));
    let out = gw.output();
    let token_of = |name: &str| {
        let key = format!("{name}=");
        out.split_whitespace().find_map(|w| w.strip_prefix(key.as_str())).map(str::to_owned).expect(name)
    };
    let (t12, admin) = (format!("Bearer {}", token_of("TOKEN_12")), format!("Bearer {}", token_of("TOKEN_ADMIN")));
    let c = Client::new();
    let r = c.get(&gw.url("/api/business/12/orders"), &[("authorization", &t12)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tenant"], "12");
    // The tenant-scoped demo endpoint: a cross-tenant read is refused, an admin may cross.
    let r = c.get(&gw.url("/api/business/73/orders"), &[("authorization", &t12)]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "tenant_mismatch");
    assert_eq!(c.get(&gw.url("/api/business/73/orders"), &[("authorization", &admin)]).status, 200);
    // A case variant takes the same route, so the route-scoped identity and tenant rules apply.
    let r = c.get(&gw.url("/API/Business/73/orders"), &[("authorization", &t12)]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(c.get(&gw.url("/api/business/12/orders"), &[]).status, 401);
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
    // PII in responses: the payouts (an IBAN) are withheld whole, the summary (order and
    // reference numbers only) passes, the CRM's identity numbers are masked.
    let r = c.get(&gw.url("/api/payments/12/payouts"), &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("response_blocked")), "{}", r.text());
    assert!(!r.text().contains("Ayşe") && !r.text().contains("8413"));
    let r = c.get(&gw.url("/api/payments/12/summary"), &[]);
    assert_eq!((r.status, r.json()["ledger"].as_str()), (200, Some("ORD-10000000146")), "{}", r.text());
    let r = c.get(&gw.url("/api/crm/12/customers"), &[]);
    assert_eq!(r.status, 200);
    let crm = r.json();
    assert_eq!(crm["customers"][0]["tckn"], "*******0146", "{crm}");
    assert_eq!(crm["customers"][1]["ssn"], "***-**-6789", "{crm}");
    assert_eq!(crm["customers"][0]["phone"], "+** *** *** 45 67", "{crm}");
    assert_eq!(crm["customers"][0]["email"], "mehmet@example.com", "monitored, not masked");
    // The banner opens with the console, then one-off viewer, operator and admin tokens.
    let labelled = |label: &str| {
        out.lines()
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.windows(2).find(|p| p[0] == label && p[1].starts_with("pcx_")).map(|p| p[1])
            })
            .unwrap_or_else(|| panic!("the demo prints a {label} token: {out}"))
            .to_string()
    };
    let token = labelled("operator");
    let banner = out.find("Portcullis demo").expect("banner");
    assert!(out[banner..].lines().nth(2).is_some_and(|l| l.contains("console") && l.contains("http://")), "{out}");
    let (viewer, admin_token) = (labelled("viewer"), labelled("admin"));
    let whoami = |t: &str| c.get(&gw.control_url("/v1/whoami"), &[("authorization", &format!("Bearer {t}"))]).json();
    assert_eq!(whoami(&viewer)["role"], "viewer");
    assert_eq!(whoami(&admin_token)["role"], "admin");
    assert!(!out[banner..].contains("Bootstrap"), "Pingora's start-up lines stay out of the banner");
    let r = c.get(&gw.control_url("/v1/upstreams"), &[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["pools"][0]["backends"][0]["healthy"], true);
    // The demo's Stripe endpoint: a delivery signed with the printed secret is accepted, a forged
    // one refused with an event.
    let secret = token_of("WEBHOOK_SECRET");
    let body = r#"{"id":"evt_demo_1","type":"invoice.paid"}"#;
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = hex::encode(ring::hmac::sign(&key, format!("{t}.{body}").as_bytes()).as_ref());
    let header = format!("t={t},v1={sig}");
    let r = c.post(&gw.url("/webhooks/stripe"), &[("stripe-signature", &header)], body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["received"], true);
    let r = c.post(&gw.url("/webhooks/stripe"), &[("stripe-signature", &header)], r#"{"id":"evt_forged"}"#);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "invalid_signature");
    // The demo limits: the sixth WhatsApp message in 10 s gets 429; with quota enforcement
    // switched on, tenant 12's business API stops at its daily quota with 402.
    let sends: Vec<u16> = (0..6)
        .map(|_| c.post(&gw.url("/api/whatsapp/messages"), &[("content-type", "application/json")], "{}").status)
        .collect();
    assert_eq!(sends.last(), Some(&429), "{sends:?}");
    let operator = format!("Bearer {token}");
    let r = c.request(
        "PUT",
        &gw.control_url("/v1/flags/quota_enforcement"),
        &[("authorization", &operator), ("content-type", "application/json")],
        Some(br#"{"enabled":true,"reason":"demo"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let statuses: Vec<u16> =
        (0..12).map(|_| c.get(&gw.url("/api/business/12/orders"), &[("authorization", &t12)]).status).collect();
    assert_eq!(statuses.last(), Some(&402), "{statuses:?}");
    let usage = c.get(&gw.control_url("/v1/quotas/12"), &[("authorization", &operator)]).json();
    assert_eq!(usage["quotas"][0]["used"], 10, "{usage}");
    // The cross-tenant read is in the runbook's query.
    let auth = format!("Bearer {token}");
    assert!(portcullis_tests::wait_until(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(50),
        || {
            let ev = c.get(&gw.control_url("/v1/events?severity=critical"), &[("authorization", &auth)]).json();
            ev["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["type"] == "cross_tenant_attempt" && e["target_tenant"] == "73"))
        }
    ));
    let webhook_events =
        || c.get(&gw.control_url("/v1/events?type=webhook_invalid_signature"), &[("authorization", &auth)]).json();
    portcullis_tests::wait_until(std::time::Duration::from_secs(5), std::time::Duration::from_millis(50), || {
        webhook_events()["events"].as_array().is_some_and(|e| !e.is_empty())
    });
    let ev = webhook_events();
    assert_eq!(ev["events"][0]["detail"]["reason"], "bad_signature", "{ev}");
    assert!(!ev.to_string().contains(&secret));
}
