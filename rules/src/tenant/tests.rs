use super::*;
use crate::rulefile::{compile, compile_with, Env, Snapshot, SourceFile};
use crate::verdict::Action;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

fn snap(rules: &str) -> Snapshot {
    let text = format!("version: 1\ntenant_scope:\n{rules}");
    match compile(&[SourceFile::new("tenant.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    }
}

/// One rule `r` with the given `target` (flow mapping) and extra keys.
fn one(target: &str, extra: &str) -> Snapshot {
    snap(&format!("  - id: r\n    target: {target}\n{extra}"))
}

fn errors(rules: &str) -> Vec<String> {
    let text = format!("version: 1\ntenant_scope:\n{rules}");
    compile(&[SourceFile::new("tenant.yaml", text)])
        .unwrap_err()
        .iter()
        .map(|e| format!("{} {}: {}", e.line, e.path, e.message))
        .collect()
}

/// The single error of a one-rule file with this `target` and extra keys.
fn err1(target: &str, extra: &str) -> String {
    let e = errors(&format!("  - id: r\n    target: {target}\n{extra}"));
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

struct Req {
    path: String,
    query: Option<String>,
    route: Option<&'static str>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    too_large: bool,
}

fn req(path: &str) -> Req {
    Req { path: path.into(), query: None, route: Some("api"), headers: HeaderMap::new(), body: None, too_large: false }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: "POST",
            path: &self.path,
            query: self.query.as_deref(),
            host: Some("app.example.com"),
            route: self.route,
            channel: None,
            client_ip: None,
            headers: &self.headers,
        }
    }
    fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.headers.append(name, HeaderValue::from_bytes(value).unwrap());
        self
    }
    fn body(mut self, b: &[u8]) -> Self {
        self.body = Some(b.to_vec());
        self
    }
    fn route(mut self, r: Option<&'static str>) -> Self {
        self.route = r;
        self
    }
    fn input(&self) -> BodyInput<'_> {
        match (&self.body, self.too_large) {
            (_, true) => BodyInput::TooLarge,
            (Some(b), false) => BodyInput::Bytes(b),
            (None, false) => BodyInput::NotBuffered,
        }
    }
}

const ACME: Principal<'static> = Principal { subject: Some("u-1"), tenant: Some("acme"), roles: &[] };

fn run_as(s: &Snapshot, r: &Req, who: Option<&Principal<'_>>) -> (ControlFlow<()>, Outcome) {
    let mut out = Outcome::default();
    let flow = s.tenant.check(&r.view(), who, r.input(), &mut out);
    (flow, out)
}

/// The reason of the single finding for `acme`, or `None` when clean.
fn reason(s: &Snapshot, r: &Req) -> Option<String> {
    reason_as(s, r, Some(&ACME))
}

fn reason_as(s: &Snapshot, r: &Req, who: Option<&Principal<'_>>) -> Option<String> {
    let (_, out) = run_as(s, r, who);
    let all: Vec<&Finding> = out.findings().collect();
    assert!(all.len() <= 1, "{all:?}");
    all.first().map(|f| f.detail["reason"].as_str().unwrap().to_string())
}

fn detail(s: &Snapshot, r: &Req, who: Option<&Principal<'_>>) -> Value {
    let (_, out) = run_as(s, r, who);
    let d = out.findings().next().expect("a finding").detail.clone();
    Value::Object(d)
}

fn path_rule() -> Snapshot {
    one("{path: '/api/business/{tenant}'}", "")
}

#[test]
fn mismatch_denies_with_tenant_mismatch() {
    let s = path_rule();
    let (flow, out) = run_as(&s, &req("/api/business/other/orders"), Some(&ACME));
    assert_eq!(flow, ControlFlow::Break(()));
    let f = out.deny.as_ref().unwrap();
    assert_eq!(&*f.rule_id, "r");
    assert_eq!(f.event, EventType::CrossTenantAttempt);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.action(), Action::Blocked);
    assert_eq!(
        (f.deny.code, f.deny.code.status(), f.deny.code.as_str()),
        (DenyCode::TenantMismatch, 403, "tenant_mismatch")
    );
    assert_eq!(f.deny.reason, "mismatch");
    assert_eq!(
        Value::Object(f.detail.clone()),
        json!({
            "reason": "mismatch", "target_tenant": "other", "sources": ["path"],
            "tenant": "acme", "subject": "u-1",
        })
    );
    assert!(out.flagged.is_empty());
}

#[test]
fn path_encoding_matrix() {
    let s = path_rule();
    for p in [
        "/api/business/other/x",
        "/API/business/other/x",
        "/api/BUSINESS/other",
        "/api/business/%6Fther",
        "/api/business/acme%2Fx",
        "/Api/Business/other/",
    ] {
        assert_eq!(reason(&s, &req(p)).as_deref(), Some("mismatch"), "{p}");
    }
    for p in ["/api/business/acme", "/api/business/acme/orders", "/api/business/acme/", "/API/Business/acme/x"] {
        assert_eq!(reason(&s, &req(p)), None, "{p}");
    }
    // The decoder is exercised (canonical form would already have decoded `%6F`).
    assert_eq!(detail(&s, &req("/api/business/%6Fther"), Some(&ACME))["target_tenant"], "other");
    assert_eq!(detail(&s, &req("/api/business/acme%2Fx"), Some(&ACME))["target_tenant"], "acme/x");
    assert_eq!(query::percent_decode(b"%6F%6f").unwrap().as_ref(), b"oo");
    assert_eq!(query::percent_decode(b"a+b").unwrap().as_ref(), b"a+b");
}

#[test]
fn path_outside_the_template_supplies_nothing() {
    let s = path_rule();
    for p in ["/api/business", "/api/business/", "/api/businesses/other", "/api/other", "/", "/x/api/business/other"] {
        assert_eq!(reason(&s, &req(p)), None, "{p}");
    }
    // Template segments after the tenant must match too.
    let s = one("{path: '/api/*/{tenant}/orders'}", "");
    assert_eq!(reason(&s, &req("/api/v1/other/orders/1")).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/api/v2/other/ORDERS")).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/api/v1/other/invoices")), None);
    assert_eq!(reason(&s, &req("/api/v1/other")), None);
    assert_eq!(reason(&s, &req("/api/v1/acme/orders")), None);
    // The tenant as the first segment.
    let s = one("{path: '/{tenant}'}", "");
    assert_eq!(reason(&s, &req("/other/x")).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/acme")), None);
    assert_eq!(reason(&s, &req("/")), None);
}

#[test]
fn path_unparsable_values() {
    let s = path_rule();
    for p in
        ["/api/business/%zz", "/api/business/%4", "/api/business/%FF%FE", "/api/business/a%09b", "/api/business/%7F"]
    {
        assert_eq!(reason(&s, &req(p)).as_deref(), Some("unparsable"), "{p}");
    }
    let long = format!("/api/business/{}", "a".repeat(257));
    assert_eq!(reason(&s, &req(&long)).as_deref(), Some("unparsable"));
    let ok = format!("/api/business/{}", "a".repeat(256));
    assert_eq!(reason(&s, &req(&ok)).as_deref(), Some("mismatch"));
    // Raw bytes are never in the detail: the source is named instead.
    let d = detail(&s, &req("/api/business/%FF"), Some(&ACME));
    assert_eq!(
        d,
        json!({"reason": "unparsable", "sources": ["path"], "source": "path", "tenant": "acme", "subject": "u-1"})
    );
}

#[test]
fn unicode_tenants_compare_byte_exactly() {
    let s = path_rule();
    let who = Principal { subject: None, tenant: Some("şirket"), roles: &[] };
    let canonical = canon::canonicalize("/api/business/şirket/x".as_bytes()).unwrap();
    assert_eq!(canonical, "/api/business/%C5%9Firket/x");
    assert_eq!(reason_as(&s, &req(&canonical), Some(&who)), None);
    // NFD (s + combining cedilla) is another tenant: fails closed.
    assert_eq!(reason_as(&s, &req("/api/business/s%CC%A7irket"), Some(&who)).as_deref(), Some("mismatch"));
    // And ASCII case matters in the tenant itself.
    assert_eq!(reason(&s, &req("/api/business/ACME")).as_deref(), Some("mismatch"));
}

fn query_rule() -> Snapshot {
    one("{query: tenant_id}", "")
}

#[test]
fn query_source() {
    let s = query_rule();
    for (q, want) in [
        ("tenant_id=other", Some("mismatch")),
        ("tenant%5Fid=other", Some("mismatch")),
        ("tenant%5fid=other", Some("mismatch")),
        ("x=1&tenant_id=other&y=2", Some("mismatch")),
        ("tenant_id=acme&tenant_id=other", Some("ambiguous")),
        ("tenant_id=acme&tenant_id=acme", None),
        ("tenant_id=%61cme", None),
        ("tenant_id=acme", None),
        ("tenant_idx=other", None),
        ("xtenant_id=other", None),
        ("other=tenant_id", None),
        ("tenant_id=%zz", Some("unparsable")),
        ("tenant_id=ac%4", Some("unparsable")),
        ("tenant_id=", Some("unparsable")),
        ("tenant_id", Some("unparsable")),
        ("tenant_id=%00", Some("unparsable")),
        ("tenant_id=%FF", Some("unparsable")),
        // A broken escape in a name that could be the parameter.
        ("tenant%zzid=other", Some("unparsable")),
        ("tenant%u005Fid=other", Some("unparsable")),
        ("%zz=1", Some("unparsable")),
        ("tenant_id%=1", Some("unparsable")),
        ("other%zz=1&tenant_id=acme", None),
        // `+` is a space, in values and names.
        ("tenant_id=ac+me", Some("mismatch")),
        ("tenant+id=other", Some("mismatch")),
        // Lenient frameworks: case, PHP's `.`/space/leading space, `;` separators, arrays.
        ("TENANT_ID=other", Some("mismatch")),
        ("tenant.id=other", Some("mismatch")),
        ("%20tenant_id=other", Some("mismatch")),
        ("x=1;tenant_id=other", Some("mismatch")),
        ("tenant_id=acme;x=1", Some("ambiguous")),
        ("tenant_id[]=other", Some("unparsable")),
        ("tenant_id[0]=acme", Some("unparsable")),
        ("tenant_id%5B%5D=acme", Some("unparsable")),
        // Issue 18 item 4: NUL truncation, PHP's unclosed `[`, Unicode case mapping to ASCII.
        ("tenant_id%00x=other", Some("mismatch")),
        ("tenant_id%00=other", Some("mismatch")),
        ("tenant[id=other", Some("mismatch")),
        ("tenant%5Bid=other", Some("mismatch")),
        ("tenant%2Eid=other", Some("mismatch")),
        ("%74enant_id=other", Some("mismatch")),
        ("tenant_%C4%B1d=other", Some("mismatch")),
        ("tenant_id=acme&tenant[id=other", Some("ambiguous")),
        ("tenant_id=acme&TENANT.ID%00=other", Some("ambiguous")),
        ("tenant[id]=other", None),
        ("", None),
        ("&&", None),
    ] {
        assert_eq!(reason(&s, &req("/x").query(q)).as_deref(), want, "{q}");
    }
    assert_eq!(reason(&s, &req("/x")), None);
    let d = detail(&s, &req("/x").query("tenant_id=acme&tenant_id=other&tenant_id=o%74her"), Some(&ACME));
    assert_eq!(d["target_tenants"], json!(["acme", "other"]));
    assert_eq!(d["sources"], json!(["query"]));
    assert!(d.get("target_tenant").is_none());
    let d = detail(&s, &req("/x").query("tenant_id=%zzsecret"), Some(&ACME));
    assert_eq!(d["source"], "query");
    assert!(!d.to_string().contains("secret"), "{d}");
}

#[test]
fn header_source() {
    let s = one("{header: X-Tenant-Id}", "");
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"other")).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"acme")), None);
    assert_eq!(reason(&s, &req("/x")), None);
    let r = req("/x").header("x-tenant-id", b"acme").header("x-tenant-id", b"other");
    assert_eq!(reason(&s, &r).as_deref(), Some("ambiguous"));
    let r = req("/x").header("x-tenant-id", b"acme").header("x-tenant-id", b"acme");
    assert_eq!(reason(&s, &r), None);
    // A comma list is one value, not the caller's tenant.
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"acme, other")).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"\xff\xfe")).as_deref(), Some("unparsable"));
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"a\tb")).as_deref(), Some("unparsable"));
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"")).as_deref(), Some("unparsable"));
    // Not percent-decoded.
    assert_eq!(reason(&s, &req("/x").header("x-tenant-id", b"%61cme")).as_deref(), Some("mismatch"));
    // UTF-8 values are fine.
    let who = Principal { subject: None, tenant: Some("şirket"), roles: &[] };
    assert_eq!(reason_as(&s, &req("/x").header("x-tenant-id", "şirket".as_bytes()), Some(&who)), None);
}

fn body_rule(pointer: &str) -> Snapshot {
    one(&format!("{{body: '{pointer}'}}"), "")
}

#[test]
fn body_source() {
    let s = body_rule("/tenant_id");
    for (b, want) in [
        (r#"{"tenant_id":"other"}"#, Some("mismatch")),
        (r#"{"tenant_id":"acme"}"#, None),
        (r#"{"x":1}"#, None),
        (r#"{"tenant_id":"mine","tenant_id":"other"}"#, Some("unparsable")),
        (r#"{"tenant_id":"acme","tenant\u005fid":"other"}"#, Some("unparsable")),
        (r#"{"a":{"b":1,"b":2},"tenant_id":"acme"}"#, Some("unparsable")),
        (r#"[{"k":1,"k":1}]"#, Some("unparsable")),
        (r#"{"tenant_id":73.0}"#, Some("unparsable")),
        (r#"{"tenant_id":1e2}"#, Some("unparsable")),
        (r#"{"tenant_id":null}"#, Some("unparsable")),
        (r#"{"tenant_id":true}"#, Some("unparsable")),
        (r#"{"tenant_id":["acme"]}"#, Some("unparsable")),
        (r#"{"tenant_id":{"id":"acme"}}"#, Some("unparsable")),
        (r#"{"tenant_id":""}"#, Some("unparsable")),
        (r#"{"tenant_id":"a\u0000"}"#, Some("unparsable")),
        (r#"{"tenant_id":"acme""#, Some("unparsable")),
        ("not json", Some("unparsable")),
        (r#"{"tenant_id":"acme"} x"#, Some("unparsable")),
        (" ", Some("unparsable")),
        // Case-insensitive members (Go's encoding/json).
        (r#"{"TENANT_ID":"other"}"#, Some("mismatch")),
        (r#"{"tenant_id":"acme","Tenant_Id":"acme"}"#, Some("unparsable")),
        ("[1]", None),
        (r#""acme""#, None),
    ] {
        assert_eq!(reason(&s, &req("/x").body(b.as_bytes())).as_deref(), want, "{b}");
    }
    // No body, not buffered: no body source.
    assert_eq!(reason(&s, &req("/x").body(b"")), None);
    assert_eq!(reason(&s, &req("/x")), None);
    let mut r = req("/x");
    r.too_large = true;
    assert_eq!(reason(&s, &r).as_deref(), Some("body_too_large"));
    assert_eq!(detail(&s, &r, Some(&ACME))["source"], "body");
    // Deep nesting beyond serde_json's limit is unparsable, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(reason(&s, &req("/x").body(deep.as_bytes())).as_deref(), Some("unparsable"));
}

#[test]
fn body_pointers() {
    let s = body_rule("/data/tenant");
    assert_eq!(reason(&s, &req("/x").body(br#"{"data":{"tenant":"other"}}"#)).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/x").body(br#"{"data":{"tenant":"acme"}}"#)), None);
    assert_eq!(reason(&s, &req("/x").body(br#"{"data":"acme"}"#)), None);
    // Numeric tenants read as their decimal text.
    let who = Principal { subject: None, tenant: Some("73"), roles: &[] };
    assert_eq!(reason_as(&s, &req("/x").body(br#"{"data":{"tenant":73}}"#), Some(&who)), None);
    assert_eq!(reason_as(&s, &req("/x").body(br#"{"data":{"tenant":"73"}}"#), Some(&who)), None);
    assert_eq!(reason_as(&s, &req("/x").body(br#"{"data":{"tenant":74}}"#), Some(&who)).as_deref(), Some("mismatch"));
    assert_eq!(detail(&s, &req("/x").body(br#"{"data":{"tenant":-5}}"#), Some(&who))["target_tenant"], "-5");
    // Array indices and escapes.
    let s = body_rule("/items/1/a~1b~0c");
    let b = br#"{"items":[{"a/b~c":"acme"},{"a/b~c":"other"}]}"#;
    assert_eq!(detail(&s, &req("/x").body(b), Some(&ACME))["target_tenant"], "other");
    let s = body_rule("/items/01/x");
    assert_eq!(reason(&s, &req("/x").body(br#"{"items":[{"x":"o"},{"x":"o"}]}"#)), None);
    let s = body_rule("/items/-");
    assert_eq!(reason(&s, &req("/x").body(br#"{"items":["other"]}"#)), None);
    // The whole body.
    let s = body_rule("");
    assert_eq!(reason(&s, &req("/x").body(br#""other""#)).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/x").body(b"42")).as_deref(), Some("mismatch"));
    assert_eq!(reason(&s, &req("/x").body(br#""acme""#)), None);
    // Unicode folding of member names: `ſ` folds with `s`.
    let s = body_rule("/tenant_is");
    assert_eq!(reason(&s, &req("/x").body("{\"tenant_iſ\":\"other\"}".as_bytes())).as_deref(), Some("mismatch"));
}

#[test]
fn sources_must_agree() {
    let s = one("{path: '/api/business/{tenant}', query: tenant_id, header: x-tenant-id, body: /tenant_id}", "");
    let all = |t: &str| {
        req(&format!("/api/business/{t}"))
            .query(&format!("tenant_id={t}"))
            .header("x-tenant-id", t.as_bytes())
            .body(format!(r#"{{"tenant_id":"{t}"}}"#).as_bytes())
    };
    assert_eq!(reason(&s, &all("acme")), None);
    let d = detail(&s, &all("other"), Some(&ACME));
    assert_eq!(d["reason"], "mismatch");
    assert_eq!(d["sources"], json!(["path", "query", "header", "body"]));
    let r = req("/api/business/acme").query("tenant_id=other");
    let d = detail(&s, &r, Some(&ACME));
    assert_eq!(d["reason"], "ambiguous");
    assert_eq!(d["target_tenants"], json!(["acme", "other"]));
    assert_eq!(d["sources"], json!(["path", "query"]));
    let r = req("/api/business/acme").header("x-tenant-id", b"acme").body(br#"{"tenant_id":"other"}"#);
    assert_eq!(reason(&s, &r).as_deref(), Some("ambiguous"));
    // Only some sources present, agreeing: fine.
    let r = req("/elsewhere").header("x-tenant-id", b"acme").body(br#"{"x":1}"#);
    assert_eq!(reason(&s, &r), None);
    // An unparsable source wins over agreement elsewhere.
    let r = req("/api/business/acme").query("tenant_id=%zz");
    let d = detail(&s, &r, Some(&ACME));
    assert_eq!((d["reason"].as_str(), d["source"].as_str()), (Some("unparsable"), Some("query")));
    assert_eq!(d["sources"], json!(["path", "query"]));
    // No source present: the rule does not apply, even anonymously.
    assert_eq!(reason_as(&s, &req("/elsewhere"), None), None);
}

#[test]
fn identities() {
    let s = path_rule();
    let r = req("/api/business/other");
    let d = detail(&s, &r, None);
    assert_eq!(
        d,
        json!({
            "reason": "no_identity", "target_tenant": "other", "sources": ["path"],
            "tenant": null, "subject": null,
        })
    );
    let no_tenant = Principal { subject: Some("svc"), tenant: None, roles: &[] };
    let d = detail(&s, &r, Some(&no_tenant));
    assert_eq!(d["reason"], "no_identity_tenant");
    assert_eq!((d["tenant"].clone(), d["subject"].clone()), (Value::Null, json!("svc")));
    // Even the identity's own (absent) tenant is no excuse for an anonymous caller.
    assert_eq!(reason_as(&s, &req("/api/business/acme"), None).as_deref(), Some("no_identity"));
    // Cross-tenant roles may target any tenant, with or without a tenant of their own.
    let s = one("{path: '/api/business/{tenant}'}", "    cross_tenant_roles: [platform_admin, support]\n");
    let roles = ["viewer".to_string(), "support".to_string()];
    let admin = Principal { subject: Some("a"), tenant: Some("acme"), roles: &roles };
    assert_eq!(reason_as(&s, &r, Some(&admin)), None);
    let admin = Principal { subject: Some("a"), tenant: None, roles: &roles };
    assert_eq!(reason_as(&s, &r, Some(&admin)), None);
    // Roles are compared exactly.
    let roles = ["Support".to_string()];
    let other = Principal { subject: Some("a"), tenant: Some("acme"), roles: &roles };
    assert_eq!(reason_as(&s, &r, Some(&other)).as_deref(), Some("mismatch"));
    // They do not excuse an ambiguous request.
    let roles = ["support".to_string()];
    let admin = Principal { subject: Some("a"), tenant: Some("acme"), roles: &roles };
    let s = one("{path: '/api/business/{tenant}', query: t}", "    cross_tenant_roles: [support]\n");
    assert_eq!(reason_as(&s, &req("/api/business/a").query("t=b"), Some(&admin)).as_deref(), Some("ambiguous"));
}

#[test]
fn detail_is_bounded() {
    let s = one("{header: x-t}", "");
    let long = "é".repeat(200); // 400 bytes
    let who = Principal { subject: Some(&long), tenant: Some(&long), roles: &[] };
    let d = detail(&s, &req("/x").header("x-t", b"other"), Some(&who));
    assert_eq!(d["tenant"].as_str().unwrap().len(), 256);
    assert_eq!(d["subject"].as_str().unwrap(), "é".repeat(128));
    assert_eq!(bounded("abc"), "abc");
    assert_eq!(bounded(&format!("a{}", "é".repeat(200))).len(), 255);
    // At most 8 distinct values listed.
    let s = one("{query: t}", "");
    let q: Vec<String> = (0..20).map(|i| format!("t=v{i}")).collect();
    let d = detail(&s, &req("/x").query(&q.join("&")), Some(&ACME));
    assert_eq!(d["target_tenants"].as_array().unwrap().len(), 8);
}

#[test]
fn monitor_flags_and_continues() {
    let s = snap(
        "  - id: watch\n    mode: monitor\n    severity: warning\n    target: {path: '/api/business/{tenant}'}\n\
             \x20 - id: block\n    target: {query: tenant_id}\n\
             \x20 - id: never-reached\n    mode: monitor\n    target: {query: tenant_id}\n",
    );
    let (flow, out) = run_as(&s, &req("/api/business/other"), Some(&ACME));
    assert_eq!(flow, ControlFlow::Continue(()));
    assert!(out.deny.is_none());
    assert_eq!(out.flagged.len(), 1);
    let f = &out.flagged[0];
    assert_eq!(
        (&*f.rule_id, f.mode, f.severity, f.action()),
        ("watch", Mode::Monitor, Severity::Warning, Action::Flagged)
    );
    assert_eq!(f.deny.code, DenyCode::TenantMismatch);
    let (flow, out) = run_as(&s, &req("/api/business/other").query("tenant_id=other"), Some(&ACME));
    assert_eq!(flow, ControlFlow::Break(()));
    assert_eq!(out.flagged.len(), 1);
    assert_eq!(&*out.deny.unwrap().rule_id, "block");
}

#[test]
fn routes_filter_and_body_needed() {
    let s = snap(
        "  - id: a\n    routes: [api]\n    target: {body: /t}\n    body_max_bytes: 1000\n\
             \x20 - id: b\n    routes: [admin]\n    target: {body: /t}\n    body_max_bytes: 5000\n\
             \x20 - id: c\n    target: {path: '/{tenant}'}\n\
             \x20 - id: d\n    target: {body: /t}\n",
    );
    assert_eq!(s.tenant.len(), 4);
    assert!(!s.tenant.is_empty());
    assert_eq!(s.tenant.body_needed(&req("/x").view()), Some(DEFAULT_BODY_MAX_BYTES));
    assert_eq!(s.tenant.body_needed(&req("/x").route(Some("admin")).view()), Some(DEFAULT_BODY_MAX_BYTES.max(5000)));
    let s = snap(
        "  - id: a\n    routes: [api]\n    target: {body: /t}\n    body_max_bytes: 1000\n\
             \x20 - id: b\n    routes: [admin]\n    target: {body: /t}\n    body_max_bytes: 5000\n\
             \x20 - id: c\n    target: {path: '/{tenant}'}\n",
    );
    assert_eq!(s.tenant.body_needed(&req("/x").view()), Some(1000));
    assert_eq!(s.tenant.body_needed(&req("/x").route(Some("admin")).view()), Some(5000));
    assert_eq!(s.tenant.body_needed(&req("/x").route(None).view()), None);
    assert_eq!(s.tenant.body_needed(&req("/x").route(Some("web")).view()), None);
    assert_eq!(Snapshot::empty().tenant.body_needed(&req("/x").view()), None);
    // A rule with `routes` never applies without a route, nor on another route.
    let r = req("/other").body(br#"{"t":"other"}"#);
    assert_eq!(reason(&s, &r).as_deref(), Some("mismatch"));
    let (_, out) = run_as(&s, &r, Some(&ACME));
    assert_eq!(&*out.deny.unwrap().rule_id, "a");
    let r = req("/acme").body(br#"{"t":"other"}"#).route(None);
    assert_eq!(reason(&s, &r), None);
    let r = req("/acme").body(br#"{"t":"other"}"#).route(Some("web"));
    assert_eq!(reason(&s, &r), None);
}

#[test]
fn containment() {
    let s = snap(
        "  - id: a\n    target: {query: t}\n    containment: {revoke_session: true, block_subject_seconds: 900, maintenance: true}\n\
             \x20 - id: b\n    target: {query: t}\n    containment: {block_subject_seconds: 2592000}\n\
             \x20 - id: c\n    target: {query: t}\n",
    );
    assert_eq!(
        s.tenant.containment("a"),
        Some(&Containment { revoke_session: true, block_subject_seconds: Some(900), maintenance: true })
    );
    assert_eq!(
        s.tenant.containment("b"),
        Some(&Containment { revoke_session: false, block_subject_seconds: Some(2_592_000), maintenance: false })
    );
    assert_eq!(s.tenant.containment("c"), None);
    assert_eq!(s.tenant.containment("nope"), None);
}

const FULL: &str = r#"version: 1
tenant_scope:
  - id: tenant-in-path
    description: "business API: the tenant in the path is the caller's"
    mode: enforce
    routes: [api]
    target:
      path: "/api/business/{tenant}"
      query: tenant_id
      header: x-tenant-id
      body: /tenant_id
    body_max_bytes: 65536
    cross_tenant_roles: [platform_admin]
    containment:
      revoke_session: true
      block_subject_seconds: 900
      maintenance: true
  - id: header-watch
    mode: monitor
    severity: warning
    target: {header: X-Org}
"#;

#[test]
fn full_file_compiles() {
    let routes = ["api", "web"];
    let s = compile_with(&[SourceFile::new("t.yaml", FULL)], &Env { routes: Some(&routes), assets: None, sinks: None })
        .unwrap();
    assert_eq!(s.tenant.len(), 2);
    assert_eq!(s.rule_count(), 2);
    let info = s.rule("tenant-in-path").unwrap();
    assert_eq!((info.kind, info.mode, info.line), (KIND, Mode::Enforce, 3));
    assert_eq!(s.rule("header-watch").unwrap().mode, Mode::Monitor);
    assert_eq!(s.tenant.body_needed(&req("/x").view()), Some(65536));
    assert!(s.tenant.containment("tenant-in-path").is_some_and(|c| c.maintenance));
    let r = req("/api/business/other").header("x-org", b"other");
    let (flow, out) = run_as(&s, &r, Some(&ACME));
    assert_eq!(flow, ControlFlow::Break(()));
    assert_eq!(&*out.deny.unwrap().rule_id, "tenant-in-path");
    assert!(out.flagged.is_empty());
    let r = req("/api/business/acme").header("x-org", b"other");
    let (flow, out) = run_as(&s, &r, Some(&ACME));
    assert_eq!(flow, ControlFlow::Continue(()));
    assert_eq!(&*out.flagged[0].rule_id, "header-watch");
    // Unknown routes are refused.
    let e =
        compile_with(&[SourceFile::new("t.yaml", FULL)], &Env { routes: Some(&["web"]), assets: None, sinks: None })
            .unwrap_err();
    assert_eq!((e.len(), e[0].path.as_str(), e[0].line), (1, "tenant_scope[0].routes[0]", 6));
    assert_eq!(e[0].message, "unknown route `api`; routes in the gateway config: web");
}

#[test]
fn rule_hash_skips_absent_keys() {
    let a = one("{query: t}", "");
    let b = snap("  - {target: {query: t}, id: r, mode: enforce}\n");
    assert_eq!(a.rules()[0].hash, b.rules()[0].hash);
    let c = one("{query: t}", "    cross_tenant_roles: [x]\n");
    assert_ne!(a.rules()[0].hash, c.rules()[0].hash);
    let raw = RawTenantRule {
        id: "r".into(),
        description: None,
        mode: Mode::Enforce,
        severity: None,
        routes: None,
        target: Some(RawTarget { query: Some("t".into()), ..RawTarget::default() }),
        body_max_bytes: None,
        cross_tenant_roles: None,
        containment: None,
    };
    assert_eq!(serde_json::to_string(&raw).unwrap(), r#"{"id":"r","mode":"enforce","target":{"query":"t"}}"#);
}

#[test]
fn template_errors() {
    let e = |t: &str| err1(&format!("{{path: '{t}'}}"), "");
    assert_eq!(e("api/{tenant}"), "4 tenant_scope[0].target.path: `api/{tenant}` must start with `/`");
    assert_eq!(
        e("/api/business"),
        "4 tenant_scope[0].target.path: `/api/business` must contain `{tenant}` exactly once as a whole segment (found 0)"
    );
    assert_eq!(
        e("/{tenant}/x/{tenant}"),
        "4 tenant_scope[0].target.path: `/{tenant}/x/{tenant}` must contain `{tenant}` exactly once as a whole segment (found 2)"
    );
    assert_eq!(
        e("/api/t-{tenant}"),
        "4 tenant_scope[0].target.path: `/api/t-{tenant}`: `t-{tenant}` is not a placeholder; the only one is `{tenant}`, as a whole segment"
    );
    assert_eq!(
        e("/api/{org}/{tenant}"),
        "4 tenant_scope[0].target.path: `/api/{org}/{tenant}`: `{org}` is not a placeholder; the only one is `{tenant}`, as a whole segment"
    );
    assert_eq!(
        e("/api//{tenant}"),
        "4 tenant_scope[0].target.path: `/api//{tenant}` has an empty segment (`//` or a trailing `/`)"
    );
    assert_eq!(
        e("/api/{tenant}/"),
        "4 tenant_scope[0].target.path: `/api/{tenant}/` has an empty segment (`//` or a trailing `/`)"
    );
    assert_eq!(e("/api/../{tenant}"), "4 tenant_scope[0].target.path: `/api/../{tenant}` has a `..` segment");
    assert_eq!(e("/./{tenant}"), "4 tenant_scope[0].target.path: `/./{tenant}` has a `.` segment");
    assert_eq!(
        e("/api/v*/{tenant}"),
        "4 tenant_scope[0].target.path: `/api/v*/{tenant}`: `*` stands for a whole segment, not part of `v*`"
    );
    assert_eq!(
        e("/%61pi/*/{tenant}/caf%c3%a9"),
        "4 tenant_scope[0].target.path: `/%61pi/*/{tenant}/caf%c3%a9` is not canonical; did you mean `/api/*/{tenant}/caf%C3%A9`?"
    );
    assert_eq!(
        e("/caf\u{e9}/{tenant}"),
        "4 tenant_scope[0].target.path: `/caf\u{e9}/{tenant}` is not canonical; did you mean `/caf%C3%A9/{tenant}`?"
    );
    assert!(e("/a%2Fb/{tenant}").starts_with("4 tenant_scope[0].target.path: `/a%2Fb/{tenant}` is not a valid path: "));
    assert!(e("/a;b/{tenant}").contains("is not a valid path"));
    // Valid forms.
    for t in ["/{tenant}", "/api/*/{tenant}/x", "/caf%C3%A9/{tenant}", "/a-b_c~d/{tenant}"] {
        assert_eq!(one(&format!("{{path: '{t}'}}"), "").tenant.len(), 1, "{t}");
    }
}

#[test]
fn validation_errors() {
    assert_eq!(
        errors("  - id: r\n    mode: monitor\n"),
        ["3 tenant_scope[0].target: a rule needs a `target` with at least one source (path, query, header, body)"]
    );
    assert_eq!(
        err1("{}", ""),
        "4 tenant_scope[0].target: `target` needs at least one source (path, query, header, body)"
    );
    let e = errors("  - id: r\n    target:\n      query:\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("5 tenant_scope[0].target.query: invalid type: null"), "{e:?}");
    assert_eq!(err1("{query: ''}", ""), "4 tenant_scope[0].target.query: the query parameter name cannot be empty");
    assert!(err1("{query: 'a=b'}", "")
        .starts_with("4 tenant_scope[0].target.query: `a=b` is not a valid query parameter name: '='"));
    assert!(err1("{query: 'tenant%5Fid'}", "").contains("write the name decoded"));
    assert!(err1("{query: 'a b'}", "").contains("is not a valid query parameter name"));
    assert_eq!(err1("{header: ''}", ""), "4 tenant_scope[0].target.header: the header name cannot be empty");
    assert_eq!(
        err1("{header: 'x tenant'}", ""),
        "4 tenant_scope[0].target.header: `x tenant` is not a valid header name"
    );
    assert_eq!(
        err1("{header: 'X_Tenant'}", ""),
        "4 tenant_scope[0].target.header: `X_Tenant` holds `_`: applications read it as `X-Tenant`, which this rule would not see; write `x-tenant`"
    );
    assert_eq!(
        err1("{body: 'tenant_id'}", ""),
        "4 tenant_scope[0].target.body: `tenant_id` is not a JSON pointer: it must be empty or start with `/` (like `/tenant_id`)"
    );
    assert_eq!(
        err1("{body: '/a~2'}", ""),
        "4 tenant_scope[0].target.body: `/a~2` is not a JSON pointer: `~` must be followed by `0` or `1`"
    );
    assert!(err1("{body: '/a~'}", "").ends_with("`~` must be followed by `0` or `1`"));
    assert_eq!(
        err1("{body: /t}", "    body_max_bytes: 0\n"),
        "5 tenant_scope[0].body_max_bytes: `body_max_bytes` must be between 1 and 65536, got 0"
    );
    assert_eq!(
        err1("{body: /t}", "    body_max_bytes: 1048577\n"),
        "5 tenant_scope[0].body_max_bytes: `body_max_bytes` must be between 1 and 65536, got 1048577"
    );
    assert_eq!(one("{body: /t}", "    body_max_bytes: 65536\n").tenant.len(), 1);
    assert_eq!(
        err1("{query: t}", "    body_max_bytes: 10\n"),
        "5 tenant_scope[0].body_max_bytes: `body_max_bytes` only applies to a `target.body` source: remove it"
    );
    assert_eq!(
        err1("{query: t}", "    cross_tenant_roles: [admin, '']\n"),
        "5 tenant_scope[0].cross_tenant_roles[1]: a role cannot be empty"
    );
    assert_eq!(
        err1("{query: t}", "    cross_tenant_roles: []\n"),
        "5 tenant_scope[0].cross_tenant_roles: `cross_tenant_roles` is empty: remove the key or list at least one role"
    );
    assert_eq!(
        err1("{query: t}", "    routes: []\n"),
        "5 tenant_scope[0].routes: `routes` is empty: remove the key or list at least one route"
    );
    assert_eq!(err1("{query: t}", "    routes: ['']\n"), "5 tenant_scope[0].routes[0]: a route id cannot be empty");
    assert_eq!(
        err1("{query: t}", "    containment:\n      block_subject_seconds: 0\n"),
        "6 tenant_scope[0].containment.block_subject_seconds: `block_subject_seconds` must be between 1 and 2592000 (30 days), got 0"
    );
    assert!(err1("{query: t}", "    containment: {block_subject_seconds: 2592001}\n").contains("got 2592001"));
    assert_eq!(
        err1("{query: t}", "    containment: {revoke_session: false, maintenance: false}\n"),
        "5 tenant_scope[0].containment: `containment` turns no action on: nothing to do; remove `containment`"
    );
    assert!(err1("{query: t}", "    containment: {}\n").ends_with("nothing to do; remove `containment`"));
    let e = err1("{query: t}", "    containment: {revoke: true}\n");
    assert!(e.starts_with("5 tenant_scope[0].containment.revoke: unknown field `revoke`"), "{e}");
    let e = err1("{querry: t}", "");
    assert!(e.starts_with("4 tenant_scope[0].target.querry: unknown field `querry`"), "{e}");
    assert!(e.contains("did you mean `query`"), "{e}");
    // Several errors in one rule are all reported.
    let e = errors("  - id: r\n    target: {path: 'x', header: 'a b', body: 'y'}\n    body_max_bytes: 0\n");
    let paths: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "4 tenant_scope[0].target.path",
            "4 tenant_scope[0].target.header",
            "4 tenant_scope[0].target.body",
            "5 tenant_scope[0].body_max_bytes"
        ]
    );
}

#[test]
fn strict_json() {
    assert_eq!(
        parse_strict(br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}]}"#),
        Some(json!({"a":[1,-2,3.5,"x",null,true,{"b":{}}]}))
    );
    assert_eq!(parse_strict(br#"{"a":1,"a":1}"#), None);
    assert_eq!(parse_strict(br#"{"a":{"b":1},"c":{"b":2}}"#), Some(json!({"a":{"b":1},"c":{"b":2}})));
    assert_eq!(parse_strict(b""), None);
    assert_eq!(parse_strict(b"\xef\xbb\xbf{}"), None);
}

#[test]
fn tenant_scope_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TenantScope>();
}

proptest::proptest! {
    /// Whatever the request, checking never panics, and a finding never carries more than
    /// 256 bytes in any detail string.
    #[test]
    fn check_never_panics(
        path in "/[a-zA-Z0-9/%._-]{0,40}",
        query in proptest::option::of("[ -~]{0,40}"),
        header in proptest::collection::vec(0u8..=255, 0..40),
        body in proptest::collection::vec(0u8..=255, 0..60),
    ) {
        let s = snap(
            "  - id: a\n    mode: monitor\n    target: {path: '/{tenant}', query: t, header: x-t, body: /t/0}\n",
        );
        let mut r = req(&path);
        r.query = query;
        if let Ok(v) = HeaderValue::from_bytes(&header) {
            r.headers.insert("x-t", v);
        }
        r.body = Some(body);
        let (_, out) = run_as(&s, &r, Some(&ACME));
        for f in out.findings() {
            for v in f.detail.values() {
                if let Some(s) = v.as_str() {
                    proptest::prop_assert!(s.len() <= MAX_TENANT_LEN);
                }
            }
        }
    }
}
