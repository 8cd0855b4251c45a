use super::*;
use crate::rulefile::{compile_with, Env, SourceFile};
use base64::Engine as _;
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123456789abcdef-hs256-test-secret";
const NOW: u64 = 1_800_000_000;

fn resolver(r: &AssetRef) -> Result<Vec<u8>, String> {
    match r {
        AssetRef::Env(v) if v == "JWT_SECRET" => Ok(SECRET.as_bytes().to_vec()),
        AssetRef::File(f) if f == "secret.txt" => Ok(format!("{SECRET}\n").into_bytes()),
        other => Err(format!("{other} not found")),
    }
}

fn compile_rules(yaml: &str) -> Result<crate::rulefile::Snapshot, Vec<String>> {
    let routes = ["api", "admin", "public"];
    let env = Env { routes: Some(&routes), assets: Some(&resolver), sinks: None };
    compile_with(&[SourceFile::new("id.yaml", yaml)], &env).map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn ids(yaml: &str) -> Identities {
    match compile_rules(yaml) {
        Ok(s) => s.identity,
        Err(e) => panic!("{e:?}"),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hs256(claims: &serde_json::Value) -> String {
    let head = b64(json!({"alg":"HS256","typ":"JWT"}).to_string().as_bytes());
    let body = b64(claims.to_string().as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(sig.as_ref()))
}

const API: &str = r#"version: 1
identity:
  - id: api-auth
    routes: [api]
    jwt:
      claims: { tenant: tenant_id }
      issuers:
        - issuer: https://auth.test/
          algorithm: HS256
          audiences: [portcullis]
          keys: [{ kid: h1, secret_env: JWT_SECRET }]
    api_keys:
      header: x-api-key
      query: api_key
      keys:
        - { id: acme-batch, sha256: "SHA", tenant: acme, subject: svc-acme, roles: [service] }
    trusted_header:
      subject: x-auth-user
      tenant: x-auth-tenant
      roles: x-auth-roles
"#;

fn api() -> Identities {
    let sha = hex::encode(Sha256::digest(b"key-acme-1"));
    ids(&API.replace("SHA", &sha))
}

struct Req {
    headers: http::HeaderMap,
    query: Option<String>,
    route: &'static str,
}

impl Req {
    fn new(route: &'static str) -> Self {
        Req { headers: http::HeaderMap::new(), query: None, route }
    }
    fn h(mut self, k: &'static str, v: &str) -> Self {
        self.headers.append(k, HeaderValue::from_str(v).unwrap());
        self
    }
    fn q(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
}

fn run_with(ids: &Identities, r: &Req, trusted: bool, revoked: &dyn Fn(&str) -> bool) -> Authn {
    run_at(ids, r, trusted, revoked, NOW)
}

fn run_at(ids: &Identities, r: &Req, trusted: bool, revoked: &dyn Fn(&str) -> bool, now: u64) -> Authn {
    let view = RequestView {
        method: "GET",
        path: "/api/x",
        query: r.query.as_deref(),
        host: None,
        route: Some(r.route),
        channel: None,
        client_ip: None,
        headers: &r.headers,
    };
    let blocked = |s: &str| s == "blocked-user";
    // The operator's allowlist entries (see `operator_allowlist_entries_...`).
    let allowlisted = |k: &str| match k {
        "email:added@elsewhere.example" | "domain:added.example" => Some(true),
        "email:gone@acme.example" | "domain:gone.example" => Some(false),
        _ => None,
    };
    ids.authenticate(&AuthInput {
        view: &view,
        peer_trusted: trusted,
        now_unix: now,
        revoked,
        blocked: &blocked,
        allowlisted: &allowlisted,
    })
}

fn run(ids: &Identities, r: &Req) -> Authn {
    run_with(ids, r, false, &|_| false)
}

fn verified(a: Authn) -> Identity {
    match a {
        Authn::Verified(i) => i,
        other => panic!("expected an identity, got {other:?}"),
    }
}

fn failed(a: Authn) -> (String, u16) {
    match a {
        Authn::Failed(f) => (f.detail["reason"].as_str().unwrap().to_owned(), f.deny.code.status()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn claims() -> serde_json::Value {
    json!({"iss":"https://auth.test/","aud":"portcullis","sub":"user-9","tenant_id":12,"roles":["member"],"sid":"s-1","email":"u@acme.example","exp":NOW + 60})
}

#[test]
fn jwt_identity_with_configured_claim_names_and_numeric_tenant() {
    let who = verified(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&claims())))));
    assert_eq!(who.method, AuthMethod::Jwt);
    assert_eq!(who.subject, "user-9");
    assert_eq!(who.tenant.as_deref(), Some("12"));
    assert_eq!(who.roles, ["member"]);
    assert_eq!(who.session.as_deref(), Some("s-1"));
    assert_eq!(who.email.as_deref(), Some("u@acme.example"));
    assert_eq!(who.credential.as_deref(), Some("https://auth.test/"));
    // Scheme is case-insensitive.
    let a = run(&api(), &Req::new("api").h("authorization", &format!("bearer   {}", hs256(&claims()))));
    assert!(matches!(a, Authn::Verified(_)));
}

#[test]
fn jwt_failures_have_reasons_and_expiry_looks_like_revocation() {
    let mut c = claims();
    c["exp"] = json!(NOW - 100);
    assert_eq!(
        failed(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c))))),
        ("expired".into(), 401)
    );
    let revoked = |s: &str| s == "s-1";
    let r = Req::new("api").h("authorization", &format!("Bearer {}", hs256(&claims())));
    let a = run_with(&api(), &r, false, &revoked);
    let Authn::Failed(f) = a else { panic!() };
    assert_eq!(f.deny.code, DenyCode::SessionExpired);
    assert_eq!(f.detail["reason"], "session_revoked");
    assert_eq!(f.detail["subject"], "user-9");
    assert_eq!(f.detail["session"], "s-1");
    // The same answer (code, headers) as an expired token.
    let mut e = claims();
    e["exp"] = json!(NOW - 100);
    let Authn::Failed(g) = run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&e)))) else {
        panic!()
    };
    assert_eq!((f.deny.code, &f.deny.headers), (g.deny.code, &g.deny.headers));

    for (bad, reason) in [
        ("Basic dXNlcjpwdw==", "malformed_credentials"),
        ("Bearer", "malformed_credentials"),
        ("Bearer a.b", "malformed_token"),
        ("Bearer a b", "malformed_credentials"),
    ] {
        assert_eq!(failed(run(&api(), &Req::new("api").h("authorization", bad))).0, reason, "{bad}");
    }
    let mut c = claims();
    c["sub"] = json!("evil\u{7}");
    assert_eq!(
        failed(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c))))).0,
        "invalid_claims"
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        failed(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c))))).0,
        "missing_subject"
    );
    let mut c = claims();
    c["roles"] = json!(["a,b"]);
    assert_eq!(
        failed(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c))))).0,
        "invalid_claims"
    );
    let mut c = claims();
    c["tenant_id"] = json!({"id": 1});
    assert_eq!(
        failed(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c))))).0,
        "invalid_claims"
    );
    // Roles as an OAuth scope string.
    let mut c = claims();
    c["roles"] = json!("read write");
    let who = verified(run(&api(), &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c)))));
    assert_eq!(who.roles, ["read", "write"]);
}

#[test]
fn missing_ambiguous_and_duplicated_credentials() {
    assert_eq!(failed(run(&api(), &Req::new("api"))), ("missing_credentials".into(), 401));
    let tok = format!("Bearer {}", hs256(&claims()));
    let both = Req::new("api").h("authorization", &tok).h("x-api-key", "key-acme-1");
    assert_eq!(failed(run(&api(), &both)).0, "ambiguous_credentials");
    let twice = Req::new("api").h("authorization", &tok).h("authorization", &tok);
    assert_eq!(failed(run(&api(), &twice)).0, "ambiguous_credentials");
    let hq = Req::new("api").h("x-api-key", "key-acme-1").q("api_key=key-acme-1");
    assert_eq!(failed(run(&api(), &hq)).0, "ambiguous_credentials");
    let qq = Req::new("api").q("api_key=key-acme-1&api_key=key-acme-1");
    assert_eq!(failed(run(&api(), &qq)).0, "ambiguous_credentials");
    assert_eq!(failed(run(&api(), &Req::new("api").q("api_key=%zz"))).0, "malformed_credentials");
    // The 401 carries a challenge.
    let Authn::Failed(f) = run(&api(), &Req::new("api")) else { panic!() };
    assert!(f.deny.headers.contains(&("www-authenticate", "Bearer".into())));
    assert_eq!(f.event, EventType::AuthFailure);
}

#[test]
fn api_keys_by_header_and_query_never_echo_the_key() {
    let who = verified(run(&api(), &Req::new("api").h("x-api-key", "key-acme-1")));
    assert_eq!((who.subject.as_str(), who.tenant.as_deref()), ("svc-acme", Some("acme")));
    assert_eq!(who.credential.as_deref(), Some("acme-batch"));
    assert_eq!(who.roles, ["service"]);
    let who = verified(run(&api(), &Req::new("api").q("x=1&api%5Fkey=key%2Dacme%2D1")));
    assert_eq!(who.subject, "svc-acme");
    let Authn::Failed(f) = run(&api(), &Req::new("api").h("x-api-key", "key-acme-2")) else { panic!() };
    assert_eq!(f.detail["reason"], "unknown_api_key");
    assert!(!serde_json::Value::Object(f.detail.clone()).to_string().contains("key-acme"));
    let huge = "k".repeat(MAX_API_KEY_LEN + 1);
    assert_eq!(failed(run(&api(), &Req::new("api").h("x-api-key", &huge))).0, "unknown_api_key");
}

/// Issue 18 item 4: the key parameter's name as applications read it. A second spelling of it is
/// a second key (ambiguous), array syntax is malformed: the key the rule checked is the only one
/// the application can read.
#[test]
fn api_key_query_names_fold_as_applications_read_them() {
    for name in ["API_KEY", "api.key", "api+key", "api[key", "api_key%00x", "%61pi_key", "Api%5FKey"] {
        let who = verified(run(&api(), &Req::new("api").q(&format!("{name}=key-acme-1"))));
        assert_eq!(who.subject, "svc-acme", "{name}");
        let r = Req::new("api").q(&format!("api_key=key-acme-1&{name}=other"));
        assert_eq!(failed(run(&api(), &r)).0, "ambiguous_credentials", "{name}");
    }
    for name in ["api_key[]", "api_key[0]", "API_KEY[x]"] {
        let r = Req::new("api").q(&format!("{name}=key-acme-1"));
        assert_eq!(failed(run(&api(), &r)).0, "malformed_credentials", "{name}");
    }
}

#[test]
fn trusted_headers_only_from_trusted_peers() {
    let r = Req::new("api").h("x-auth-user", "alice").h("x-auth-tenant", "acme").h("x-auth-roles", "admin, ops");
    assert_eq!(failed(run(&api(), &r)), ("untrusted_identity_header".into(), 401));
    let who = verified(run_with(&api(), &r, true, &|_| false));
    assert_eq!((who.subject.as_str(), who.tenant.as_deref()), ("alice", Some("acme")));
    assert_eq!(who.roles, ["admin", "ops"]);
    assert_eq!(who.method, AuthMethod::TrustedHeader);
    // From a trusted proxy, its headers win over a bearer token passed along.
    let r2 = Req::new("api").h("x-auth-user", "alice").h("authorization", "Bearer junk");
    assert_eq!(verified(run_with(&api(), &r2, true, &|_| false)).subject, "alice");
    let r3 = Req::new("api").h("x-auth-user", "alice").h("x-auth-user", "bob");
    assert_eq!(failed(run_with(&api(), &r3, true, &|_| false)).0, "ambiguous_credentials");
}

#[test]
fn blocked_subjects_and_routes_without_rules() {
    let r = Req::new("api").h("x-auth-user", "blocked-user");
    assert_eq!(failed(run_with(&api(), &r, true, &|_| false)), ("subject_blocked".into(), 401));
    assert!(matches!(run(&api(), &Req::new("public")), Authn::NotConfigured));
}

#[test]
fn allowlist_by_email_and_domain_answers_403() {
    let yaml = r#"version: 1
identity:
  - id: portal
    routes: [api]
    optional: true
    trusted_header: { subject: x-auth-user, email: x-auth-email }
    allow:
      emails: [Ops@Partner.example]
      email_domains: ["@acme.example"]
"#;
    let idents = ids(yaml);
    let with = |email: &str| Req::new("api").h("x-auth-user", "u").h("x-auth-email", email);
    for ok in ["ops@partner.example", "a@acme.example", "a@ACME.example"] {
        assert!(matches!(run_with(&idents, &with(ok), true, &|_| false), Authn::Verified(_)), "{ok}");
    }
    for bad in ["a@evil-acme.example", "a@sub.acme.example", "acme.example", "@acme.example", "x@partner.example"] {
        assert_eq!(failed(run_with(&idents, &with(bad), true, &|_| false)), ("not_allowlisted".into(), 403), "{bad}");
    }
    let no_email = Req::new("api").h("x-auth-user", "u");
    assert_eq!(failed(run_with(&idents, &no_email, true, &|_| false)).0, "not_allowlisted");
    // Optional: no credentials is anonymous.
    assert!(matches!(run(&idents, &Req::new("api")), Authn::Anonymous));
}

#[test]
fn operator_allowlist_entries_add_and_deactivate_the_more_specific_first() {
    let yaml = r#"version: 1
identity:
  - id: portal
    routes: [api]
    trusted_header: { subject: x-auth-user, email: x-auth-email }
    allow:
      emails: [kept@gone.example, gone@acme.example]
      email_domains: [partner.example, gone.example]
"#;
    let idents = ids(yaml);
    let with = |email: &str| Req::new("api").h("x-auth-user", "u").h("x-auth-email", email);
    // Added at runtime: an address, a whole domain (any case).
    for ok in ["added@elsewhere.example", "Added@ElseWhere.example", "a@added.example", "kept@gone.example"] {
        assert!(matches!(run_with(&idents, &with(ok), true, &|_| false), Authn::Verified(_)), "{ok}");
    }
    // Deactivated at runtime: an address listed in the file, a domain (its other addresses).
    for bad in ["gone@acme.example", "GONE@acme.example", "other@gone.example", "a@sub.added.example"] {
        assert_eq!(failed(run_with(&idents, &with(bad), true, &|_| false)), ("not_allowlisted".into(), 403), "{bad}");
    }
    // The file's own lists still count where the operator said nothing.
    assert!(matches!(run_with(&idents, &with("x@partner.example"), true, &|_| false), Authn::Verified(_)));
}

#[test]
fn monitor_mode_findings_say_so() {
    let yaml = API.replace("routes: [api]", "routes: [api]\n    mode: monitor").replace("SHA", &"0".repeat(64));
    let Authn::Failed(f) = run(&ids(&yaml), &Req::new("api")) else { panic!() };
    assert_eq!(f.mode, Mode::Monitor);
}

#[test]
fn forward_headers_and_strip_list() {
    let yaml = API
        .replace("SHA", &"0".repeat(64))
        .replace("    trusted_header:", "    forward: { tenant: x-tenant-id }\n    trusted_header:");
    let idents = ids(&yaml);
    let r = Req::new("api").h("x-auth-user", "alice").h("x-auth-tenant", "şirket").h("x-auth-roles", "a,b");
    let mut r = r;
    r.headers.insert("x-auth-tenant", HeaderValue::from_bytes("şirket".as_bytes()).unwrap());
    let who = verified(run_with(&idents, &r, true, &|_| false));
    let rule = idents.for_route(Some("api")).unwrap();
    let fwd: Vec<(String, Vec<u8>)> =
        rule.forward_headers(&who).into_iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    assert!(fwd.contains(&("x-tenant-id".into(), "şirket".as_bytes().to_vec())), "{fwd:?}");
    assert!(fwd.contains(&("x-portcullis-subject".into(), b"alice".to_vec())));
    assert!(fwd.contains(&("x-portcullis-roles".into(), b"a,b".to_vec())));
    assert!(fwd.contains(&("x-portcullis-auth-method".into(), b"trusted_header".to_vec())));
    assert!(!fwd.iter().any(|(k, _)| k == "x-portcullis-session"));
    let strip: Vec<&str> = idents.strip_headers().iter().map(HeaderName::as_str).collect();
    for h in [
        "x-portcullis-tenant",
        "x-tenant-id",
        "x-auth-user",
        "x-auth-tenant",
        "x-auth-roles",
        "x-portcullis-auth-method",
    ] {
        assert!(strip.contains(&h), "{h} in {strip:?}");
    }
    // With no identity rules, the defaults are still stripped.
    let none = Identities::default();
    assert!(none.strip_headers().is_empty());
    let empty = ids("version: 1\n");
    assert_eq!(empty.strip_headers().len(), FORWARD_DEFAULTS.len());
}

#[test]
fn secrets_from_files_and_assets_enter_the_version() {
    let yaml = API.replace("secret_env: JWT_SECRET", "secret_file: secret.txt").replace("SHA", &"0".repeat(64));
    let s = compile_rules(&yaml).unwrap();
    assert_eq!(s.assets, [AssetRef::File("secret.txt".into())]);
    let who = verified(run(&s.identity, &Req::new("api").h("authorization", &format!("Bearer {}", hs256(&claims())))));
    assert_eq!(who.subject, "user-9");
    // The version covers the asset: the same files with another secret give another version.
    let files = [SourceFile::new("id.yaml", yaml.as_str())];
    assert_eq!(crate::rulefile::assets_version(&files, &s.assets, &resolver), s.version);
    let other = |_: &AssetRef| Ok(b"another-secret-another-secret-another".to_vec());
    assert_ne!(crate::rulefile::assets_version(&files, &s.assets, &other), s.version);
}

#[test]
fn compile_errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n",
            "id.yaml:3: identity[0]: an identity rule needs at least one of `jwt`, `api_keys`, `trusted_header`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [nope]\n    trusted_header: { subject: x-u }\n",
            "id.yaml:4: identity[0].routes[0]: unknown route `nope`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: x-u }\n  - id: b\n    routes: [api]\n    trusted_header: { subject: x-u }\n",
            "id.yaml:7: identity[1].routes[0]: route `api` already has identity rule `a`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    jwt:\n      issuers:\n        - { issuer: x, algorithm: none, keys: [] }\n",
            "identity[0].jwt.issuers[0].algorithm: unknown algorithm `none`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    jwt:\n      issuers:\n        - { issuer: x, algorithm: HS256, keys: [{ secret_env: MISSING }] }\n",
            "identity[0].jwt.issuers[0].keys[0].secret_env: cannot read environment variable MISSING",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    jwt:\n      issuers:\n        - { issuer: x, algorithm: RS256, keys: [{ secret_env: JWT_SECRET }] }\n",
            "RS256 verifies with a public key",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    api_keys: { header: x-k, keys: [{ id: k, sha256: abc, subject: s }] }\n",
            "identity[0].api_keys.keys[0].sha256: not hex",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: x-u }\n    allow: {}\n",
            "identity[0].allow: list `emails` and/or `email_domains`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: 'bad header' }\n",
            "identity[0].trusted_header.subject: `bad header` is not a valid header name",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: X_Auth_User }\n",
            "identity[0].trusted_header.subject: `X_Auth_User` holds `_`: applications read it as `X-Auth-User`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    api_keys: { header: x_api_key, keys: [{ id: k, sha256: abc, subject: s }] }\n",
            "identity[0].api_keys.header: `x_api_key` holds `_`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: x-u }\n    forward: { tenantt: x-t }\n",
            "identity[0].forward.tenantt: unknown field `tenantt`",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: x-u }\n    forward: { tenant: Host }\n",
            "identity[0].forward.tenant: `host` is set by the gateway",
        ),
        (
            "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    trusted_header: { subject: x-u }\n    forward: { tenant: x-portcullis-subject }\n",
            "identity[0].forward.tenant: `x-portcullis-subject` already carries another field",
        ),
    ];
    for (yaml, want) in cases {
        let e = compile_rules(yaml).unwrap_err();
        assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
    }
    // Without a resolver, a secret reference is an error, not a silent empty key.
    let e = crate::rulefile::compile(&[SourceFile::new(
        "a.yaml",
        "version: 1\nidentity:\n  - id: a\n    routes: [api]\n    jwt:\n      issuers:\n        - { issuer: x, algorithm: HS256, keys: [{ secret_env: JWT_SECRET }] }\n",
    )])
    .unwrap_err();
    assert!(e[0].message.contains("no resolver"), "{e:?}");
}

#[test]
fn rule_hash_is_stable_and_kind_is_identity() {
    let s = compile_rules(&API.replace("SHA", &"0".repeat(64))).unwrap();
    let r = s.rule("api-auth").unwrap();
    assert_eq!(r.kind, "identity");
    let again = compile_rules(&format!("# comment\n{}", API.replace("SHA", &"0".repeat(64)))).unwrap();
    assert_eq!(again.rule("api-auth").unwrap().hash, r.hash);
}

#[test]
fn cached_tokens_still_expire_and_wait_for_nbf() {
    let ids = api();
    let mut c = claims();
    c["exp"] = json!(NOW + 100);
    c["nbf"] = json!(NOW + 50);
    let tok = format!("Bearer {}", hs256(&c));
    let r = Req::new("api").h("authorization", &tok);
    let at = |now: u64| run_at(&ids, &r, false, &|_| false, now);
    // Not yet valid (leeway 30): not cached.
    assert_eq!(failed(at(NOW + 19)).0, "not_yet_valid");
    // Valid: verified and cached; the cache answers the same within the window.
    assert!(matches!(at(NOW + 20), Authn::Verified(_)));
    assert!(matches!(at(NOW + 20), Authn::Verified(_)));
    assert!(matches!(at(NOW + 129), Authn::Verified(_)));
    // A hit is still refused outside the window, with the same reasons as a fresh verification.
    assert_eq!(failed(at(NOW + 130)).0, "expired");
    assert_eq!(failed(at(NOW + 19)).0, "not_yet_valid");
    // A revoked session is refused even when its token is cached.
    let a = run_at(&ids, &r, false, &|s: &str| s == "s-1", NOW + 60);
    assert_eq!(failed(a).0, "session_revoked");
}

#[test]
fn the_token_cache_stays_bounded() {
    let ids = api();
    for i in 0..(CACHE_SHARDS * CACHE_SHARD_ENTRIES + 500) {
        let mut c = claims();
        c["jti"] = json!(i);
        let r = Req::new("api").h("authorization", &format!("Bearer {}", hs256(&c)));
        assert!(matches!(run(&ids, &r), Authn::Verified(_)));
    }
    let rule = ids.for_route(Some("api")).unwrap();
    let cache = &rule.jwt.as_ref().unwrap().cache;
    let total: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
    assert!(total <= CACHE_SHARDS * CACHE_SHARD_ENTRIES, "{total}");
}

/// Issue 18 item 15: a refused token is answered from a bounded cache of refusals the second time
/// (same reason, no signature check), kept apart from the verified tokens.
#[test]
fn refused_tokens_are_remembered_apart_and_bounded() {
    let ids = api();
    let rule = ids.for_route(Some("api")).unwrap();
    let cache = &rule.jwt.as_ref().unwrap().cache;
    let failed_len = || cache.failed.iter().map(|s| s.lock().unwrap().len()).sum::<usize>();
    let good_len = || cache.shards.iter().map(|s| s.lock().unwrap().len()).sum::<usize>();
    let tok = |c: &serde_json::Value| format!("Bearer {}", hs256(c));
    let good = Req::new("api").h("authorization", &tok(&claims()));
    assert!(matches!(run(&ids, &good), Authn::Verified(_)));
    // Several members: a forged signature, wrong audience, a claim that cannot be forwarded,
    // missing exp, an expired token: each refused the same way twice, remembered once.
    let forged = {
        let t = hs256(&claims());
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("Bearer {head}.{}", b64(&[1u8; 32]))
    };
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("other");
    let mut bad_claim = claims();
    bad_claim["sub"] = json!("a\u{7}b");
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut expired = claims();
    expired["exp"] = json!(NOW - 100);
    let cases = [
        (forged, "bad_signature"),
        (tok(&wrong_aud), "wrong_audience"),
        (tok(&bad_claim), "invalid_claims"),
        (tok(&no_exp), "missing_exp"),
        (tok(&expired), "expired"),
    ];
    for (i, (t, reason)) in cases.iter().enumerate() {
        let r = Req::new("api").h("authorization", t);
        assert_eq!(failed(run(&ids, &r)).0, *reason);
        assert_eq!(failed_len(), i + 1, "{reason} remembered");
        assert_eq!(failed(run(&ids, &r)).0, *reason, "{reason} again, from the cache");
        assert_eq!(failed_len(), i + 1);
    }
    // Not yet valid can change: not remembered, and valid later.
    let mut early = claims();
    early["nbf"] = json!(NOW + 100);
    early["exp"] = json!(NOW + 600);
    let r = Req::new("api").h("authorization", &tok(&early));
    assert_eq!(failed(run(&ids, &r)).0, "not_yet_valid");
    assert_eq!(failed_len(), cases.len());
    assert!(matches!(run_at(&ids, &r, false, &|_| false, NOW + 90), Authn::Verified(_)));
    // A flood of distinct bad tokens stays bounded and never evicts a verified one.
    let before = good_len();
    for i in 0..(CACHE_SHARDS * FAILED_SHARD_ENTRIES + 300) {
        let mut c = claims();
        c["aud"] = json!(format!("other-{i}"));
        assert_eq!(failed(run(&ids, &Req::new("api").h("authorization", &tok(&c)))).0, "wrong_audience");
    }
    assert!(failed_len() <= CACHE_SHARDS * FAILED_SHARD_ENTRIES, "{}", failed_len());
    assert_eq!(good_len(), before);
    assert!(matches!(run(&ids, &good), Authn::Verified(_)));
}
