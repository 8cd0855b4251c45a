//! Issue 18 items 2, 3, 4 and 17 through the wire: what the application would act on is what the
//! rules saw. Override headers, `_` spellings of header names and query-parameter spellings
//! either never reach the upstream or are refused; an inbound `X-Request-Id` is kept only from
//! whom the config trusts with it. Every attack is followed by a clean request.
use crate::common::*;
use crate::identity::{self, auth, claims, rs256, start};
use portcullis_tests::{Client, RawResp, Upstream};
use std::time::Duration;

/// A raw HTTP/1.1 request (one connection): the headers exactly as written (over HTTP/2 in h2
/// mode: `portcullis_tests::exchange`).
fn raw(gw: &portcullis_tests::Gateway, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResp {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    portcullis_tests::exchange(gw.proxy_addr(), req.as_bytes(), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no response to {method} {target}"))
}

const NO_DELETE: &str = "version: 1\nfirewall:\n  - id: no-delete\n    match: {methods: [DELETE]}\n";

fn override_routes() -> &'static str {
    "  - id: legacy\n    path_prefix: /legacy\n    upstream: app\n    allow_headers: [X-HTTP-Method-Override, X_Legacy_Token]\n  - id: default\n    path_prefix: /\n    upstream: app\n"
}

/// Item 2: the override-header class. Stripped on every route, whatever their case or spelling;
/// a firewall rule refusing DELETE cannot be passed with any of them.
#[test]
fn override_headers_never_reach_the_upstream() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes(override_routes()).rule_file("fw.yaml", NO_DELETE).start();
    assert_eq!(raw(&gw, "DELETE", "/x", &[]).status, 403, "the rule refuses DELETE");
    assert_eq!(up.count(), 0);
    let overrides = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("x-http-method-override", "delete"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("X-Original-URL", "/admin"),
        ("X-Original-URI", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-Forwarded-Uri", "/admin"),
        ("X-Forwarded-Path", "/admin"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Envoy-Original-Path", "/admin"),
        ("Request-URI", "/admin"),
        ("X-Override-URL", "/admin"),
        ("X-Original-Host", "admin.internal"),
        ("X-Host", "admin.internal"),
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("Client-IP", "10.9.9.9"),
        ("X-Cluster-Client-IP", "10.9.9.9"),
        ("CF-Connecting-IP", "10.9.9.9"),
        ("X_Original_URL", "/admin"),
    ];
    for (name, value) in overrides {
        up.clear();
        let r = raw(&gw, "POST", "/x", &[(name, value)]);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let got = up.last().unwrap();
        assert_eq!(got.method, "POST", "{name}");
        assert_eq!(got.path, "/x", "{name}");
        assert_eq!(got.header(name), None, "{name} reached the upstream");
        assert!(got.headers.iter().all(|(k, _)| !k.contains("override") && !k.contains("original")), "{name}");
    }
    // All at once, on the route that allows only X-HTTP-Method-Override: the others are gone.
    up.clear();
    let all: Vec<(&str, &str)> =
        overrides.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("x-http-method-override")).copied().collect();
    let r = raw(&gw, "POST", "/legacy/x", &all);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    assert_eq!((got.method.as_str(), got.path.as_str()), ("POST", "/legacy/x"));
    for (name, _) in &all {
        assert_eq!(got.header(name), None, "{name} reached the upstream on the legacy route");
    }
}

/// Item 2: where a route allows a method-override header, the gateway applies it before any rule
/// runs: the firewall sees DELETE (and refuses it), the upstream gets the method the rules saw.
#[test]
fn an_allowed_method_override_is_what_the_rules_and_the_upstream_see() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes(override_routes()).rule_file("fw.yaml", NO_DELETE).start();
    for v in ["DELETE", "delete", " Delete "] {
        let r = raw(&gw, "POST", "/legacy/x", &[("X-HTTP-Method-Override", v)]);
        assert_eq!(r.status, 403, "{v}: {}", r.text());
        assert_eq!(r.json()["code"], "forbidden");
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    for v in ["CONNECT", "TRACE", "DELETE, GET", "PROPFIND", "DEL ETE"] {
        let r = raw(&gw, "POST", "/legacy/x", &[("X-HTTP-Method-Override", v)]);
        assert_eq!(r.status, 400, "{v}: {}", r.text());
        assert_eq!(r.json()["code"], "bad_request");
    }
    let r = raw(&gw, "POST", "/legacy/x", &[("X-HTTP-Method-Override", "PUT"), ("X-HTTP-Method-Override", "DELETE")]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    // A method the rules allow: applied, forwarded as that method.
    let r = raw(&gw, "POST", "/legacy/x", &[("X-HTTP-Method-Override", "patch")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().unwrap().method, "PATCH");
    // An override header this route does not allow is stripped, not applied.
    let r = raw(&gw, "POST", "/legacy/x", &[("X-HTTP-Method", "DELETE")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("x-http-method"), None);
    // Clean request.
    assert_eq!(raw(&gw, "GET", "/legacy/y", &[]).status, 200);
}

/// Item 2: `_method` in the query, in every spelling an application reads as `_method`: refused,
/// nothing forwarded.
#[test]
fn method_override_query_parameters_are_refused() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes(override_routes()).rule_file("fw.yaml", NO_DELETE).start();
    for q in [
        "_method=DELETE",
        "a=1&_method=DELETE",
        "_METHOD=DELETE",
        "%5Fmethod=DELETE",
        "_%6Dethod=DELETE",
        ".method=DELETE",
        "_method%00x=DELETE",
        "_method[]=DELETE",
        "a=1;_method=DELETE",
    ] {
        for route in ["/x", "/legacy/x"] {
            let r = raw(&gw, "POST", &format!("{route}?{q}"), &[]);
            assert_eq!(r.status, 400, "{route}?{q}: {}", r.text());
            assert_eq!(r.json()["code"], "bad_request");
        }
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    for q in ["method=DELETE", "x_method=1", "a=_method"] {
        assert_eq!(raw(&gw, "POST", &format!("/x?{q}"), &[]).status, 200, "{q}");
    }
}

/// Item 3: identity, forwarding and rule headers spelled with `_` (any case) never reach the
/// upstream, so a CGI/WSGI/PHP application cannot read a value the gateway did not set or a
/// rule did not see; the gateway's own values arrive once.
#[test]
fn underscore_spellings_never_reach_the_upstream() {
    let up = Upstream::start("app");
    let rules = "tenant_scope:\n  - id: tenant-header\n    routes: [api]\n    target: {header: x-tenant}\n";
    let gw = start(&identity::cfg(&up, rules));
    let token = auth(&rs256(claims("user-9", "12")));
    let spoofed = [
        ("X_Portcullis_Tenant", "73"),
        ("X_PORTCULLIS_SUBJECT", "admin"),
        ("x_portcullis_roles", "platform_admin"),
        ("X-Portcullis_Auth-Method", "trusted_header"),
        ("X_Forwarded_For", "10.9.9.9"),
        ("X_Real_IP", "10.9.9.9"),
        ("X_Forwarded_Host", "evil.example"),
        ("X_User_Id", "admin"),
        ("X_Tenant_Id", "73"),
        ("X_Tenant", "73"),
        ("X_Request_Id", "chosen-by-client-1"),
        ("Some_Other_Header", "x"),
        ("X.Portcullis.Tenant", "73"),
        ("X-Forwarded.For", "10.9.9.9"),
        ("X~User~Id", "admin"),
        ("X.Tenant", "73"),
    ];
    let mut headers = vec![("Authorization", token.as_str())];
    headers.extend(spoofed);
    let r = raw(&gw, "GET", "/api/orders", &headers);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    let names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
    let odd = |n: &str| !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    assert!(!names.iter().any(|n| odd(n)), "an alternate spelling reached the upstream: {names:?}");
    assert_eq!(got.header_all("x-portcullis-tenant"), ["12"]);
    assert_eq!(got.header_all("x-portcullis-subject"), ["user-9"]);
    assert_eq!(got.header_all("x-portcullis-roles"), ["member"]);
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header("x-tenant-id"), None);

    // The tenant rule reads `X-Tenant`: with both spellings the application sees only the one
    // the rule checked; with only the `_` one, it sees none.
    let r = raw(&gw, "GET", "/api/orders", &[("Authorization", &token), ("X-Tenant", "12"), ("X_Tenant", "73")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    assert_eq!(got.header_all("x-tenant"), ["12"]);
    assert_eq!(got.header("x_tenant"), None);
    let r = raw(&gw, "GET", "/api/orders", &[("Authorization", &token), ("x_TENANT", "73")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(up.last().unwrap().headers.iter().all(|(k, _)| !k.eq_ignore_ascii_case("x-tenant") && !odd(k)));
    let before = up.count();
    let r = raw(&gw, "GET", "/api/orders", &[("Authorization", &token), ("X-Tenant", "73"), ("X_Tenant", "12")]);
    assert_eq!(r.status, 403, "the rule reads the hyphenated header: {}", r.text());
    assert_eq!(up.count(), before);
}

/// Item 3: a route may forward an `_` header it lists, but never an `_` spelling of a header the
/// gateway strips.
#[test]
fn an_allowed_underscore_header_is_forwarded_on_its_route_only() {
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes(override_routes()).start();
    let r = raw(
        &gw,
        "GET",
        "/legacy/x",
        &[("X_Legacy_Token", "t1"), ("X_User_Id", "admin"), ("X.User.Id", "admin"), ("X_Other", "o")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    assert_eq!(got.header("x_legacy_token"), Some("t1"));
    assert_eq!(got.header("x_user_id"), None);
    assert_eq!(got.header("x.user.id"), None);
    assert_eq!(got.header("x_other"), None);
    let r = raw(&gw, "GET", "/x", &[("X_Legacy_Token", "t1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().unwrap().header("x_legacy_token"), None, "not allowed on this route");
}

/// Item 4: the tenant parameter in every spelling an application reads as `tenant_id`: refused
/// with nothing forwarded, alone or beside the caller's own tenant.
#[test]
fn tenant_parameter_spellings_are_checked() {
    let up = Upstream::start("app");
    let rules = "tenant_scope:\n  - id: tenant-in-query\n    target: {query: tenant_id}\n";
    let gw = start(&identity::cfg(&up, rules));
    let token = auth(&rs256(claims("user-9", "12")));
    let h = [("Authorization", token.as_str())];
    assert_eq!(raw(&gw, "GET", "/api/orders?tenant_id=12", &h).status, 200);
    let passed = up.count();
    for name in [
        "tenant_id",
        "tenant_id%00x",
        "tenant_id%00",
        "tenant.id",
        "tenant%2Eid",
        "tenant+id",
        "tenant%20id",
        "tenant[id",
        "tenant%5Bid",
        "TENANT_ID",
        "Tenant_Id",
        "tenant%5Fid",
        "%74enant_id",
        "+tenant_id",
        "tenant_%C4%B1d",
    ] {
        for q in [format!("{name}=73"), format!("tenant_id=12&{name}=73"), format!("{name}=73&tenant_id=12")] {
            let r = raw(&gw, "GET", &format!("/api/orders?{q}"), &h);
            assert_eq!(r.status, 403, "{q}: {}", r.text());
            assert_eq!(r.json()["code"], "tenant_mismatch");
        }
    }
    for q in ["tenant_id[]=12", "tenant_id[0]=12", "tenant_id[x]=12", "TENANT_ID%5B%5D=12", "tenant%zzid=12"] {
        let r = raw(&gw, "GET", &format!("/api/orders?{q}"), &h);
        assert_eq!(r.status, 403, "{q}: {}", r.text());
    }
    assert_eq!(up.count(), passed, "no refused request reached the upstream");
    // The caller's own tenant in another spelling passes; so does an unrelated name.
    for q in ["TENANT.ID=12", "tenant_id%00=12", "tenant[id]=73", "tenants_id=73"] {
        assert_eq!(raw(&gw, "GET", &format!("/api/orders?{q}"), &h).status, 200, "{q}");
    }
}

/// Item 17: an inbound `X-Request-Id` is kept only from a trusted proxy by default; `any` keeps
/// the old behaviour, `never` always generates.
#[test]
fn inbound_request_ids_are_kept_only_from_whom_the_config_trusts() {
    let id = "client-chosen-0001";
    let check = |extra: &str, kept: bool| {
        let up = Upstream::start("app");
        let gw = Cfg::new(&[up.addr()]).extra(extra).start();
        let c = Client::new();
        for path in ["/x", "/a%2Fb"] {
            let r = c.get(&gw.url(path), &[("x-request-id", id)]);
            let got = r.header("x-request-id").unwrap().to_string();
            assert_eq!(got == id, kept, "{extra:?} {path}: got {got}");
            if path == "/x" {
                assert_eq!(up.last().unwrap().header("x-request-id"), Some(got.as_str()), "{extra:?}");
            } else {
                assert_eq!(r.json()["request_id"], got.as_str());
            }
            assert_eq!(got.len() == 32, !kept);
        }
    };
    check("", false);
    check("request_id: {trust_inbound: trusted_proxies}\n", false);
    check("trusted_proxies: [\"127.0.0.1/32\"]\n", true);
    check("trusted_proxies: [\"127.0.0.1/32\"]\nrequest_id: {trust_inbound: never}\n", false);
    check("request_id: {trust_inbound: any}\n", true);
}
