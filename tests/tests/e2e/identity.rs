//! Caller identity through the real gateway: real signed JWTs (RS256 from a JWKS file, ES256 from
//! a PEM file, HS256 from an environment variable), API keys, trusted-proxy headers; every
//! refusal a 401/403 with an `auth_failure` event and nothing at the upstream; session
//! revocation persisted across a restart; the identity forwarded upstream after the client's
//! copies were stripped.
use crate::common::*;
use portcullis_tests::jwt::{self, SigningKey};
use portcullis_tests::{wait_until, Client, Gateway, Resp, TempDir, Upstream};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const HS_SECRET: &str = "e2e-hs256-secret-0123456789abcdef0123456789";
pub const API_KEY: &str = "pk_live_acme_0123456789";
pub const ISS: &str = "https://auth.test/";

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn routes() -> &'static str {
    "  - id: business\n    path_prefix: /api/business\n    upstream: app\n    max_body_bytes: 1048576\n  - id: api\n    path_prefix: /api\n    upstream: app\n  - id: default\n    path_prefix: /\n    upstream: app\n"
}

/// The identity rule every test here uses (plus whatever `more` adds to the file).
pub fn identity_rules(more: &str) -> String {
    format!(
        r#"version: 1
identity:
  - id: api-auth
    routes: [business, api]
    jwt:
      claims: {{ tenant: tenant_id }}
      issuers:
        - issuer: "{ISS}"
          algorithm: RS256
          audiences: [portcullis]
          jwks_file: keys/jwks.json
        - issuer: https://es.test/
          algorithm: ES256
          keys: [{{ kid: e1, pem_file: keys/ec1.pub.pem }}]
        - issuer: internal
          algorithm: HS256
          keys: [{{ secret_env: PC_TEST_HS_SECRET }}]
    api_keys:
      header: x-api-key
      keys:
        - {{ id: acme-batch, sha256: "{}", tenant: acme, subject: svc-acme-batch, roles: [service] }}
{more}"#,
        sha(API_KEY)
    )
}

pub fn cfg(up: &Upstream, more_rules: &str) -> Cfg {
    Cfg::new(&[up.addr()])
        .routes(routes())
        .rule_file("identity.yaml", &identity_rules(more_rules))
        .rule_file("keys/jwks.json", &jwt::jwks(&[jwt::jwk_rsa(jwt::RSA1_PUBLIC, "k1")]))
        .rule_file("keys/ec1.pub.pem", jwt::EC1_PUBLIC)
        .rules_opts("  debounce_ms: 50\n  poll_interval_ms: 300\n")
}

pub fn start(cfg: &Cfg) -> Gateway {
    cfg.start_env(&[("PC_TEST_HS_SECRET", HS_SECRET)])
}

/// Claims for user-9 of tenant 12, valid for a minute.
pub fn claims(sub: &str, tenant: &str) -> Value {
    json!({"iss": ISS, "aud": "portcullis", "sub": sub, "tenant_id": tenant, "roles": ["member"],
           "sid": format!("sess-{sub}"), "email": format!("{sub}@acme.example"), "exp": now() + 60})
}

pub fn rs256(claims: Value) -> String {
    jwt::sign("RS256", &SigningKey::Rsa(jwt::RSA1_PRIVATE), json!({"kid": "k1", "typ": "JWT"}), claims)
}

pub fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn get(gw: &Gateway, path: &str, token: &str) -> Resp {
    Client::new().get(&gw.url(path), &[("authorization", &auth(token))])
}

pub fn events(gw: &Gateway, query: &str) -> Vec<Value> {
    control_get(gw, &format!("/v1/events?{query}"), VIEWER).json()["events"].as_array().cloned().unwrap_or_default()
}

pub fn wait_events(gw: &Gateway, query: &str, n: usize) -> Vec<Value> {
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || events(gw, query).len() >= n);
    events(gw, query)
}

#[test]
fn rs256_es256_hs256_and_api_keys_pass_and_the_identity_is_forwarded_in_place_of_the_clients_copies() {
    let up = Upstream::start("app");
    let gw = start(&cfg(&up, ""));
    let c = Client::new();
    let r = c.get(
        &gw.url("/api/orders"),
        &[
            ("authorization", &auth(&rs256(claims("user-9", "12")))),
            ("x-portcullis-tenant", "73"),
            ("x-portcullis-roles", "platform_admin"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    assert_eq!(got.header("x-portcullis-subject"), Some("user-9"));
    assert_eq!(got.header_all("x-portcullis-tenant"), ["12"], "the client's copy was stripped");
    assert_eq!(got.header_all("x-portcullis-roles"), ["member"]);
    assert_eq!(got.header("x-portcullis-session"), Some("sess-user-9"));
    assert_eq!(got.header("x-portcullis-email"), Some("user-9@acme.example"));
    assert_eq!(got.header("x-portcullis-auth-method"), Some("jwt"));

    let es = jwt::sign(
        "ES256",
        &SigningKey::Ec(jwt::EC1_PRIVATE),
        json!({"kid": "e1"}),
        json!({"iss": "https://es.test/", "sub": "es-user", "tenant_id": "acme", "exp": now() + 60}),
    );
    assert_eq!(get(&gw, "/api/x", &es).status, 200);
    assert_eq!(up.last().unwrap().header("x-portcullis-subject"), Some("es-user"));

    let hs = jwt::sign(
        "HS256",
        &SigningKey::Hmac(HS_SECRET.as_bytes().to_vec()),
        json!({}),
        json!({"iss": "internal", "sub": "job-1", "exp": now() + 60}),
    );
    assert_eq!(get(&gw, "/api/x", &hs).status, 200);
    let got = up.last().unwrap();
    assert_eq!(got.header("x-portcullis-subject"), Some("job-1"));
    assert_eq!(got.header("x-portcullis-tenant"), None, "no tenant claim, no header");

    let r = c.get(&gw.url("/api/x"), &[("x-api-key", API_KEY)]);
    assert_eq!(r.status, 200);
    let got = up.last().unwrap();
    assert_eq!(got.header("x-portcullis-subject"), Some("svc-acme-batch"));
    assert_eq!(got.header("x-portcullis-tenant"), Some("acme"));
    assert_eq!(got.header("x-portcullis-auth-method"), Some("api_key"));

    // A route without an identity rule: anonymous, and still no spoofed identity headers.
    up.clear();
    assert_eq!(c.get(&gw.url("/public"), &[("x-portcullis-subject", "admin")]).status, 200);
    assert_eq!(up.last().unwrap().header("x-portcullis-subject"), None);
}

#[test]
fn every_bad_credential_is_a_401_with_a_reason_in_the_event_and_nothing_upstream() {
    let up = Upstream::start("app");
    let mut c = cfg(&up, "");
    c.limits = "  max_header_count: 50\n  max_header_bytes: 65536\n  header_timeout_ms: 1000\n".into();
    let gw = start(&c);
    let good = claims("user-9", "12");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let rsa = SigningKey::Rsa(jwt::RSA1_PRIVATE);
    let cases: Vec<(String, &str, &str)> = vec![
        (String::new(), "missing_credentials", "unauthenticated"),
        (rs256(with("exp", json!(now() - 120))), "expired", "session_expired"),
        (rs256(with("nbf", json!(now() + 3600))), "not_yet_valid", "unauthenticated"),
        (rs256(with("aud", json!("someone-else"))), "wrong_audience", "unauthenticated"),
        (rs256(with("iss", json!("https://evil.test/"))), "unknown_issuer", "unauthenticated"),
        (jwt::sign("RS256", &rsa, json!({"kid": "k9"}), good.clone()), "unknown_key", "unauthenticated"),
        // alg none, in any spelling, with or without a signature.
        (jwt::sign("none", &SigningKey::None, json!({}), good.clone()), "alg_none", "unauthenticated"),
        (jwt::sign("NoNe", &rsa, json!({"kid": "k1"}), good.clone()), "alg_none", "unauthenticated"),
        // Key confusion: HS256 "signed" with the issuer's RSA public key as the HMAC secret.
        (
            jwt::sign(
                "HS256",
                &SigningKey::Hmac(jwt::RSA1_PUBLIC.as_bytes().to_vec()),
                json!({"kid": "k1"}),
                good.clone(),
            ),
            "alg_not_allowed",
            "unauthenticated",
        ),
        // ES256 key signing an RS256-issuer token.
        (
            jwt::sign("RS256", &SigningKey::Ec(jwt::EC1_PRIVATE), json!({"kid": "k1"}), good.clone()),
            "bad_signature",
            "unauthenticated",
        ),
        // Signed by another RSA key under the right kid.
        (
            jwt::sign("RS256", &SigningKey::Rsa(jwt::RSA2_PRIVATE), json!({"kid": "k1"}), good.clone()),
            "bad_signature",
            "unauthenticated",
        ),
        ("not-a-jwt".into(), "malformed_token", "unauthenticated"),
        // Huge token: refused before any decoding.
        (format!("{}.{}.{}", "a".repeat(10_000), "b".repeat(10_000), "c"), "token_too_large", "unauthenticated"),
    ];
    // Tampered payload: swap in another tenant, keep the signature.
    let t = rs256(good.clone());
    let parts: Vec<&str> = t.split('.').collect();
    let evil = jwt::b64url(with("tenant_id", json!("73")).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    let mut cases = cases;
    cases.push((tampered, "bad_signature", "unauthenticated"));

    let client = Client::new();
    for (token, reason, code) in &cases {
        let headers: Vec<(&str, String)> = if token.is_empty() { vec![] } else { vec![("authorization", auth(token))] };
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = client.get(&gw.url("/api/orders"), &h);
        assert_eq!(r.status, 401, "{reason}: {}", r.text());
        assert_eq!(r.json()["code"], *code, "{reason}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{reason}");
        let body = r.json();
        assert_eq!(body.as_object().unwrap().len(), 3, "no explanation in the body: {body}");
    }
    assert_eq!(up.count(), 0, "no refused request reached the upstream");
    let evs = wait_events(&gw, "type=auth_failure&limit=100", cases.len());
    assert_eq!(evs.len(), cases.len());
    let mut reasons: Vec<&str> = evs.iter().map(|e| e["detail"]["reason"].as_str().unwrap()).collect();
    reasons.sort_unstable();
    let mut want: Vec<&str> = cases.iter().map(|(_, r, _)| *r).collect();
    want.sort_unstable();
    assert_eq!(reasons, want);
    let all = serde_json::to_string(&evs).unwrap();
    for (token, _, _) in &cases {
        if token.len() > 20 {
            let sig = token.rsplit('.').next().unwrap();
            assert!(sig.len() < 8 || !all.contains(sig), "an event leaks a token");
        }
    }
    assert!(evs.iter().all(|e| e["severity"] == "warning" && e["route"] == "api" && e["rule_id"] == "api-auth"));
}

#[test]
fn jwks_rotation_by_rule_reload_takes_the_new_key_and_drops_the_old() {
    let up = Upstream::start("app");
    let gw = start(&cfg(&up, ""));
    let k2 = jwt::sign("RS256", &SigningKey::Rsa(jwt::RSA2_PRIVATE), json!({"kid": "k2"}), claims("u", "12"));
    let k1 = rs256(claims("u", "12"));
    assert_eq!(get(&gw, "/api/x", &k1).status, 200);
    assert_eq!(get(&gw, "/api/x", &k2).status, 401);
    let before = control_get(&gw, "/v1/rules", VIEWER).json()["version"].clone();

    // Publish both keys: only the JWKS file changes, no rule file.
    let jwks = gw.dir().join("rules/keys/jwks.json");
    write_atomic(&jwks, &jwt::jwks(&[jwt::jwk_rsa(jwt::RSA1_PUBLIC, "k1"), jwt::jwk_rsa(jwt::RSA2_PUBLIC, "k2")]));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || get(&gw, "/api/x", &k2).status == 200),
        "the poll picked up the rotated JWKS file"
    );
    assert_ne!(control_get(&gw, "/v1/rules", VIEWER).json()["version"], before, "the key file is part of the version");
    assert_eq!(get(&gw, "/api/x", &k1).status, 200);

    // Retire k1, reload through the control API.
    write_atomic(&jwks, &jwt::jwks(&[jwt::jwk_rsa(jwt::RSA2_PUBLIC, "k2")]));
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&gw, "/api/x", &k1).status, 401);
    assert_eq!(get(&gw, "/api/x", &k2).status, 200);

    // A broken JWKS file keeps the running keys and says why.
    write_atomic(&jwks, "{\"keys\": [");
    let r = control_post(&gw, "/v1/rules/reload", OPERATOR);
    assert_eq!(r.status, 422);
    assert!(r.text().contains("jwks_file"), "{}", r.text());
    assert_eq!(get(&gw, "/api/x", &k2).status, 200);
}

#[test]
fn trusted_proxy_headers_are_believed_only_from_a_trusted_peer() {
    let rules = "version: 1\nidentity:\n  - id: proxy-auth\n    routes: [api]\n    trusted_header: { subject: x-auth-user, tenant: x-auth-tenant, roles: x-auth-roles }\n";
    let up = Upstream::start("app");
    let untrusted = Cfg::new(&[up.addr()]).rule_file("id.yaml", rules).start();
    let h = [("x-auth-user", "alice"), ("x-auth-tenant", "acme"), ("x-auth-roles", "platform_admin")];
    let r = Client::new().get(&untrusted.url("/api/x"), &h);
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 0);
    let ev = wait_events(&untrusted, "type=auth_failure", 1);
    assert_eq!(ev[0]["detail"]["reason"], "untrusted_identity_header");

    let trusted =
        Cfg::new(&[up.addr()]).rule_file("id.yaml", rules).extra("trusted_proxies: [\"127.0.0.1/32\"]\n").start();
    let r = Client::new().get(&trusted.url("/api/x"), &h);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last().unwrap();
    assert_eq!(got.header("x-portcullis-subject"), Some("alice"));
    assert_eq!(got.header("x-portcullis-tenant"), Some("acme"));
    assert_eq!(got.header("x-auth-user"), None, "the proxy's own headers are consumed, not forwarded");
    assert_eq!(got.header("x-portcullis-auth-method"), Some("trusted_header"));
}

#[test]
fn a_revoked_session_looks_exactly_like_an_expired_one_and_stays_revoked_across_a_restart() {
    let up = Upstream::start("app");
    let state = TempDir::new("sessions");
    let c = cfg(&up, "").state_dir(state.path());
    let gw = start(&c);
    let token = rs256(claims("user-9", "12"));
    assert_eq!(get(&gw, "/api/x", &token).status, 200);

    // Viewers cannot revoke; operators can.
    assert_eq!(control_post(&gw, "/v1/sessions/sess-user-9/revoke", VIEWER).status, 403);
    let r = Client::new().post(
        &gw.control_url("/v1/sessions/sess-user-9/revoke"),
        &[("authorization", &bearer(OPERATOR)), ("content-type", "application/json")],
        r#"{"reason":"stolen laptop"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], true);
    up.clear();
    let revoked = get(&gw, "/api/x", &token);
    let expired = get(
        &gw,
        "/api/x",
        &rs256({
            let mut c = claims("user-9", "12");
            c["exp"] = json!(now() - 100);
            c
        }),
    );
    assert_eq!(revoked.status, 401);
    assert_eq!(expired.status, 401);
    let strip = |r: &Resp| {
        let mut v = r.json();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(&revoked), strip(&expired), "the caller cannot tell a revocation from an expiry");
    assert_eq!(revoked.header("www-authenticate"), expired.header("www-authenticate"));
    assert_eq!(up.count(), 0);
    let ev = wait_events(&gw, "type=auth_failure", 2);
    assert!(ev.iter().any(|e| e["detail"]["reason"] == "session_revoked" && e["subject"] == "user-9"));
    let audit = control_get(&gw, "/v1/audit", ADMIN).json();
    let rec = audit["records"].as_array().unwrap().iter().find(|r| r["action"] == "session.revoke").cloned().unwrap();
    assert_eq!(
        (rec["target"].as_str(), rec["actor"].as_str(), rec["outcome"].as_str()),
        (Some("session:sess-user-9"), Some("o"), Some("ok"))
    );
    assert_eq!(rec["reason"], "stolen laptop");

    // kill -9 and start again on the same state: still revoked.
    drop(gw);
    let gw = start(&c);
    assert_eq!(get(&gw, "/api/x", &token).status, 401);
    let r = Client::new().request(
        "DELETE",
        &gw.control_url("/v1/sessions/sess-user-9/revoke"),
        &[("authorization", &bearer(OPERATOR))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&gw, "/api/x", &token).status, 200);
    // Bad ids are refused and audited.
    assert_eq!(control_post(&gw, "/v1/sessions/%zz/revoke", OPERATOR).status, 400);
    assert_eq!(control_post(&gw, &format!("/v1/sessions/{}/revoke", "x".repeat(300)), OPERATOR).status, 400);
    let long = format!("{{\"reason\":\"{}\"}}", "r".repeat(501));
    let r =
        Client::new().post(&gw.control_url("/v1/sessions/s2/revoke"), &[("authorization", &bearer(OPERATOR))], &long);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = Client::new().post(
        &gw.control_url("/v1/sessions/s2/revoke"),
        &[("authorization", &bearer(OPERATOR))],
        "{\"why\":1}",
    );
    assert_eq!(r.status, 400, "unknown body keys are refused");
    assert!(metric(&gw, "portcullis_sessions_revoked").is_some());
}

#[test]
fn the_email_allowlist_refuses_others_with_a_plain_403() {
    let rules = "version: 1\nidentity:\n  - id: portal\n    routes: [api]\n    trusted_header: { subject: x-auth-user, email: x-auth-email }\n    allow:\n      emails: [partner@other.example]\n      email_domains: [acme.example]\n";
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).rule_file("id.yaml", rules).extra("trusted_proxies: [\"127.0.0.1/32\"]\n").start();
    let c = Client::new();
    let as_ = |email: &str| c.get(&gw.url("/api/x"), &[("x-auth-user", "u1"), ("x-auth-email", email)]);
    assert_eq!(as_("someone@acme.example").status, 200);
    assert_eq!(as_("partner@other.example").status, 200);
    up.clear();
    for bad in ["x@evil-acme.example", "someone@acme.example.evil", "intruder@other.example"] {
        let r = as_(bad);
        assert_eq!(r.status, 403, "{bad}");
        let body = r.json();
        assert_eq!(body["code"], "forbidden");
        assert_eq!(body.as_object().unwrap().len(), 3, "nothing says why: {body}");
    }
    assert_eq!(up.count(), 0);
    let ev = wait_events(&gw, "type=auth_failure", 3);
    assert!(ev.iter().all(|e| e["detail"]["reason"] == "not_allowlisted"));
}

/// Issue 18 item 15: a token without `kid` is not tried against every key of a large JWKS (up to
/// 100 signature checks, before any rate limit); a refused token is not re-verified when sent again.
#[test]
fn a_token_without_kid_is_checked_against_at_most_three_keys_and_a_refusal_is_remembered() {
    let up = Upstream::start("app");
    let mut keys: Vec<Value> = (0..99).map(|i| jwt::jwk_rsa(jwt::RSA2_PUBLIC, &format!("r2-{i}"))).collect();
    keys.push(jwt::jwk_rsa(jwt::RSA1_PUBLIC, "k1"));
    let gw = start(&cfg(&up, "").rule_file("keys/jwks.json", &jwt::jwks(&keys)));
    let rsa1 = SigningKey::Rsa(jwt::RSA1_PRIVATE);
    let rsa2 = SigningKey::Rsa(jwt::RSA2_PRIVATE);
    let good = claims("user-9", "12");
    // Without kid, in several shapes: genuinely signed by the last key or by another listed key,
    // with other header members, forged.
    let no_kid = [
        jwt::sign("RS256", &rsa1, json!({}), good.clone()),
        jwt::sign("RS256", &rsa1, json!({"typ": "JWT"}), good.clone()),
        jwt::sign("RS256", &rsa2, json!({"typ": "at+jwt"}), good.clone()),
        jwt::sign("RS256", &rsa1, json!({"x5t": "abc", "cty": "JWT"}), claims("user-10", "12")),
        {
            let t = jwt::sign("RS256", &rsa1, json!({}), good.clone());
            let (head, _) = t.rsplit_once('.').unwrap();
            format!("{head}.{}", jwt::b64url(&[7u8; 256]))
        },
    ];
    for t in &no_kid {
        let r = get(&gw, "/api/x", t);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["code"], "unauthenticated");
    }
    assert_eq!(up.count(), 0, "nothing without a kid passed");
    let evs = wait_events(&gw, "type=auth_failure&limit=100", no_kid.len());
    assert!(evs.iter().all(|e| e["detail"]["reason"] == "kid_required"), "{evs:?}");

    // With its kid the same key verifies; the wrong key under a listed kid is a bad signature —
    // and stays one when sent again (answered from the refusal cache, same reason).
    assert_eq!(get(&gw, "/api/x", &jwt::sign("RS256", &rsa1, json!({"kid": "k1"}), good.clone())).status, 200);
    let wrong = jwt::sign("RS256", &rsa1, json!({"kid": "r2-7"}), good.clone());
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api/x", &wrong).status, 401);
    }
    let evs = wait_events(&gw, "type=auth_failure&limit=100", no_kid.len() + 3);
    let bad: Vec<_> = evs.iter().filter(|e| e["detail"]["reason"] == "bad_signature").collect();
    assert_eq!(bad.len(), 3, "{evs:?}");
    assert_eq!(up.count(), 1);

    // A small key set (at most 3 of the algorithm): a kid-less token is tried against each.
    write_atomic(
        &gw.dir().join("rules/keys/jwks.json"),
        &jwt::jwks(&[jwt::jwk_rsa(jwt::RSA2_PUBLIC, "a"), jwt::jwk_rsa(jwt::RSA1_PUBLIC, "b")]),
    );
    assert_eq!(control_post(&gw, "/v1/rules/reload", OPERATOR).status, 200);
    assert_eq!(get(&gw, "/api/x", &no_kid[0]).status, 200, "a reload forgets refusals; two keys are tried");
    assert_eq!(get(&gw, "/api/x", &no_kid[2]).status, 200);
    assert_eq!(get(&gw, "/api/x", &no_kid[4]).status, 401);
    assert_eq!(up.count(), 3);
}
