//! Path structure that application stacks decode but a naive gateway would not (issue 18 items
//! 1 and 6), through the real gateway: encoded delimiters (`..%3B`, `%3F`, `%23`, cookieless
//! sessions, …) against a killed channel, a JWT route, tenant scope, a webhook and a firewall
//! path are refused and the upstream receives nothing; and one case policy for every path match.
use crate::common::*;
use crate::identity::{auth, claims, rs256, ISS};
use portcullis_tests::jwt;
use portcullis_tests::{Client, Gateway, Upstream};
use std::time::Duration;

const GH: &str = "gh-current-secret-0123456789abcdef";

const ROUTES: &str = "  - id: whatsapp\n    path_prefix: /api/whatsapp\n    upstream: app\n    channel: whatsapp\n  - id: business\n    path_prefix: /api/business\n    upstream: app\n  - id: webhooks\n    path_prefix: /webhooks\n    upstream: app\n  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n";

fn rules() -> String {
    format!(
        r#"version: 1
identity:
  - id: business-auth
    routes: [business]
    jwt:
      claims: {{ tenant: tenant_id }}
      issuers:
        - issuer: "{ISS}"
          algorithm: RS256
          audiences: [portcullis]
          jwks_file: keys/jwks.json
tenant_scope:
  - id: tenant-in-path
    target:
      path: "/api/business/{{tenant}}"
webhooks:
  - id: github
    path_prefix: /webhooks/github
    provider: github
    secrets: [{{id: current, env: PC_GH}}]
firewall:
  - id: internal
    match:
      paths: [/api/internal]
  - id: export
    match:
      path_regex: '^/api/[^/]+/export$'
"#
    )
}

fn start(up: &Upstream) -> Gateway {
    Cfg::new(&[up.addr()])
        .routes(ROUTES)
        .rule_file("gate.yaml", &rules())
        .rule_file("keys/jwks.json", &jwt::jwks(&[jwt::jwk_rsa(jwt::RSA1_PUBLIC, "k1")]))
        .start_env(&[("PC_GH", GH)])
}

fn kill_whatsapp(gw: &Gateway) {
    let r = Client::new().request(
        "PUT",
        &gw.control_url("/v1/switches/channels/whatsapp"),
        &[("authorization", &bearer(OPERATOR)), ("content-type", "application/json")],
        Some(br#"{"enabled":false,"reason":"e2e"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Shapes that some stack resolves to `{from}/../{to}` or to `/{to}`: `{from}` is a path the
/// gateway would otherwise route somewhere harmless, `{to}` the protected one.
const SHAPES: &[&str] = &[
    "{from}/..%3B/{to}",
    "{from}/..%3b/{to}",
    "{from}/.%2E%3B/{to}",
    "{from}/%2e%2e%3Bjsessionid=1/{to}",
    "{from}/..%3B%3B/{to}",
    "{from}/x/..%3B/..%3B/{to}",
    "{from}/..%253B/{to}",
    "{from}/..%25%33%42/{to}",
    "{from}/..%3F/{to}",
    "{from}/..%3f/{to}",
    "{from}/..%23/{to}",
    "{from}/..;/{to}",
    "/(S(x))/{to}",
    "/%28S%28x%29%29/{to}",
    "/(A(x)F(y))/{to}",
];

/// One raw request; returns the status (None: no parsable answer).
fn send(gw: &Gateway, method: &str, target: &str, headers: &str) -> Option<u16> {
    let body = if method == "POST" { "Content-Length: 2\r\n\r\n{}" } else { "\r\n" };
    let req = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\n{headers}Connection: close\r\n{body}");
    portcullis_tests::exchange(gw.proxy_addr(), req.as_bytes(), Duration::from_secs(5)).map(|r| r.status)
}

#[test]
fn encoded_delimiters_never_reach_a_protected_path() {
    let up = Upstream::start("app");
    let gw = start(&up);
    kill_whatsapp(&gw);
    let mine = rs256(claims("user-9", "12"));
    let mine_h = format!("Authorization: {}\r\n", auth(&mine));
    // (what is protected, method, from, to, headers): each a different check.
    let targets: &[(&str, &str, &str, &str, &str)] = &[
        ("killed channel", "GET", "/public", "api/whatsapp/messages", ""),
        ("killed channel, same route prefix", "GET", "/api/x", "whatsapp/messages", ""),
        ("JWT route without a token", "GET", "/public", "api/business/12/orders", ""),
        ("another tenant with a valid token", "GET", "/api/business/12", "73/orders", mine_h.as_str()),
        ("unsigned webhook", "POST", "/public", "webhooks/github", ""),
        ("firewall path", "GET", "/public", "api/internal/users", ""),
        ("firewall path regex", "GET", "/public", "api/v1/export", ""),
    ];
    up.clear();
    let mut failures = Vec::new();
    for (what, method, from, to, headers) in targets {
        for shape in SHAPES {
            let target = shape.replace("{from}", from).replace("{to}", to);
            for t in [target.clone(), format!("http://app.test{target}")] {
                let status = send(&gw, method, &t, headers);
                let seen: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
                up.clear();
                if !matches!(status, Some(400 | 401 | 403 | 503)) || !seen.is_empty() {
                    failures.push(format!("{what}: {method} {t}: {status:?}, upstream saw {seen:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "reached past a check:\n{}", failures.join("\n"));
    // The `%3B` family is refused as malformed, before any rule.
    let r = Client::new().get(&gw.url("/public/..%3B/api/internal/users"), &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad_request")), "{}", r.text());

    // Clean requests still work, and the protected paths are protected by their own checks.
    let c = Client::new();
    assert_eq!(c.get(&gw.url("/public/x"), &[]).status, 200);
    assert_eq!(c.get(&gw.url("/api/orders"), &[]).status, 200);
    assert_eq!(c.get(&gw.url("/api/business/12/orders"), &[("authorization", &auth(&mine))]).status, 200);
    assert_eq!(c.get(&gw.url("/api/business/12/orders"), &[]).status, 401);
    assert_eq!(c.get(&gw.url("/api/business/73/orders"), &[("authorization", &auth(&mine))]).status, 403);
    assert_eq!(c.get(&gw.url("/api/whatsapp/messages"), &[]).status, 503);
    assert_eq!(c.post(&gw.url("/webhooks/github"), &[], "{}").status, 401);
    assert_eq!(c.get(&gw.url("/api/internal/users"), &[]).status, 403);
    assert_eq!(c.get(&gw.url("/api/v1/export"), &[]).status, 403);
    let seen: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(seen, ["/public/x", "/api/orders", "/api/business/12/orders"]);
}

#[test]
fn one_case_policy_for_every_path_match() {
    let up = Upstream::start("app");
    let gw = start(&up);
    kill_whatsapp(&gw);
    let mine = rs256(claims("user-9", "12"));
    let c = Client::new();
    up.clear();
    let refused: &[(&str, &str, u16)] = &[
        // Firewall `paths: [/api/internal]`.
        ("GET", "/API/Internal/x", 403),
        ("GET", "/api/INTERNAL", 403),
        ("GET", "/Api/internal/", 403),
        ("GET", "/%41PI/iNtErNaL/users", 403),
        ("GET", "/api/x/../INTERNAL/users", 403),
        // Firewall `path_regex: '^/api/[^/]+/export$'`.
        ("GET", "/API/v1/EXPORT", 403),
        ("GET", "/api/V1/Export", 403),
        // Channel switch, JWT route, webhook, tenant scope: already case-insensitive.
        ("GET", "/API/WhatsApp/messages", 503),
        ("GET", "/api/WHATSAPP", 503),
        ("GET", "/API/BUSINESS/12/orders", 401),
        ("POST", "/WEBHOOKS/GitHub", 401),
        ("POST", "/Webhooks/github/x", 401),
    ];
    let mut failures = Vec::new();
    for (method, path, want) in refused {
        let status = send(&gw, method, path, "");
        if status != Some(*want) {
            failures.push(format!("{method} {path}: {status:?}, want {want}"));
        }
    }
    let h = format!("Authorization: {}\r\n", auth(&mine));
    for path in ["/API/Business/73/orders", "/api/BUSINESS/73"] {
        let status = send(&gw, "GET", path, &h);
        if status != Some(403) {
            failures.push(format!("GET {path} (tenant 12): {status:?}, want 403"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(up.count(), 0, "{:?}", up.requests().iter().map(|r| r.target.clone()).collect::<Vec<_>>());
    // Segment boundaries still hold, and case variants of allowed paths pass with their case.
    for path in ["/api/internals", "/API/INTERNALS/x", "/api/v1/exports", "/API/Orders"] {
        assert_eq!(c.get(&gw.url(path), &[]).status, 200, "{path}");
    }
    assert_eq!(c.get(&gw.url("/API/Business/12/orders"), &[("authorization", &auth(&mine))]).status, 200);
    let seen: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        seen,
        ["/api/internals", "/API/INTERNALS/x", "/api/v1/exports", "/API/Orders", "/API/Business/12/orders"]
    );
}
