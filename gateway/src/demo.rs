//! `portcullis demo`: the gateway in front of a built-in sample multi-tenant application.
//!
//! The application is a real HTTP server on loopback (a Pingora app service in this process),
//! with tenant-scoped JSON endpoints, responses that carry realistic PII, a channel endpoint and
//! a webhook receiver, so every gateway feature has something real to act on.

use crate::config;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;

/// The environment variable the demo issuer's secret is passed in.
pub const DEMO_SECRET_ENV: &str = "PORTCULLIS_DEMO_JWT_SECRET";

/// The environment variable the demo's Stripe-style webhook signing secret is passed in.
pub const DEMO_WEBHOOK_SECRET_ENV: &str = "PORTCULLIS_DEMO_WEBHOOK_SECRET";

/// A demo caller's HS256 token: issuer `portcullis-demo`, a day long, session `<run>-<sub>` (a
/// fresh run id each start, so a session revoked in an earlier run does not stay revoked).
pub fn demo_token(secret: &str, run: &str, sub: &str, tenant: &str, roles: &[&str], now: u64) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let head = b64(json!({"alg": "HS256", "typ": "JWT", "kid": "demo-1"}).to_string().as_bytes());
    let claims = json!({
        "iss": "portcullis-demo", "aud": "portcullis-demo", "sub": sub, "tenant_id": tenant,
        "roles": roles, "sid": format!("{run}-{sub}"), "email": format!("{sub}@demo.example"),
        "iat": now, "exp": now + 86_400,
    });
    let body = b64(claims.to_string().as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(sig.as_ref()))
}

/// The sample application.
pub struct DemoApp;

fn respond(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

/// The demo data for one tenant. The PII is synthetic but checksum-valid (IBAN mod-97, Luhn,
/// TCKN), next to order and reference numbers that only look like identifiers.
pub fn orders(tenant: &str) -> serde_json::Value {
    json!({
        "tenant": tenant,
        "orders": [
            {"id": "ORD-2026-000184", "reference": "REF-55120093", "total": "129.90", "currency": "EUR",
             "customer": {"name": "Ayşe Yılmaz", "email": "ayse.yilmaz@example.com", "phone": "+90 532 123 45 67"},
             "payment": {"iban": "TR33 0006 1005 1978 6457 8413 26", "card": "4111 1111 1111 1111"}},
            {"id": "ORD-2026-000185", "reference": "SIP-77881234", "total": "42.00", "currency": "EUR",
             "customer": {"name": "Jonas Weber", "email": "jonas.weber@example.org", "phone": "+49 30 1234567"},
             "payment": {"iban": "DE89370400440532013000"}}
        ]
    })
}

#[async_trait]
impl ServeHttp for DemoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        let tenant_header =
            session.req_header().headers.get("x-tenant-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
            if body_len > 4 * 1024 * 1024 {
                return respond(413, json!({"error": "too large"}));
            }
        }
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method.as_str(), segs.as_slice()) {
            ("GET", []) => respond(
                200,
                json!({"app": "portcullis demo application", "try": ["/api/business/12/orders", "/api/business/12/customers", "/api/payments/12/payouts", "/api/payments/12/summary", "/api/crm/12/customers", "/api/whatsapp/messages", "/webhooks/stripe"]}),
            ),
            ("GET", ["api", "health"]) => respond(200, json!({"status": "ok"})),
            ("GET", ["api", "business", t, "orders"]) => respond(200, orders(t)),
            // The PII demo: payouts carry bank details (withheld whole by the gateway), the
            // summary only order and reference numbers (passes), customers identity numbers
            // (masked by the gateway).
            ("GET", ["api", "payments", t, "payouts"]) => respond(
                200,
                json!({"tenant": t, "payouts": [
                    {"order": "ORD-2026-000184", "reference": "REF-55120093", "amount": "129.90", "currency": "EUR",
                     "beneficiary": "Ayşe Yılmaz", "iban": "TR33 0006 1005 1978 6457 8413 26"}
                ]}),
            ),
            ("GET", ["api", "payments", t, "summary"]) => respond(
                200,
                json!({"tenant": t, "orders": ["ORD-2026-000184", "ORD-2026-000185"], "references": ["REF-55120093", "SIP-77881234"],
                       "ledger": "ORD-10000000146", "total": "171.90", "currency": "EUR"}),
            ),
            ("GET", ["api", "crm", t, "customers"]) | ("GET", ["api", "business", t, "customers"]) => respond(
                200,
                json!({"tenant": t, "customers": [
                    {"id": "CUST-1001", "name": "Mehmet Demir", "tckn": "10000000146", "email": "mehmet@example.com",
                     "phone": "+90 532 123 45 67"},
                    {"id": "CUST-1002", "name": "Jane Doe", "ssn": "123-45-6789", "email": "jane@example.net"}
                ]}),
            ),
            ("POST", ["api", "whatsapp", "messages"]) | ("POST", ["api", "email", "messages"]) => respond(
                202,
                json!({"queued": true, "channel": segs.get(1), "bytes": body_len, "tenant": tenant_header}),
            ),
            ("POST", ["webhooks", provider]) => {
                respond(200, json!({"received": true, "provider": provider, "bytes": body_len}))
            }
            _ => respond(404, json!({"error": "not found", "path": path})),
        }
    }
}

/// Runs the demo: binds the sample app on loopback, points `demo.yaml` at it, creates one-off
/// viewer, operator and admin tokens and a fresh state directory (so no earlier run's switches,
/// blocks or audit records carry over), prints the console's URL and what to try, and runs the
/// gateway (Pingora's own start-up lines held back to warnings, so the banner stays readable).
pub fn run(config_path: &Path) -> Result<(), String> {
    let (app_svc, app_addr) =
        crate::server::prebound_service("demo-app", DemoApp, SocketAddr::from(([127, 0, 0, 1], 0)), 1)
            .map_err(|e| format!("demo app listener: {e}"))?;
    let token = crate::tokens::random_token();
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let viewer = crate::tokens::random_token();
    let admin_token = crate::tokens::random_token();
    let sha = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    // The demo issuer's signing secret: fresh per run, handed to the rules through the
    // environment (read by the `secret_env` key of config/demo-rules/identity.yaml).
    let secret = crate::tokens::random_token();
    std::env::set_var(DEMO_SECRET_ENV, &secret);
    // And the webhook signing secret of config/demo-rules/webhooks.yaml, Stripe's format.
    let webhook_secret = format!("whsec_{}", crate::tokens::random_token());
    std::env::set_var(DEMO_WEBHOOK_SECRET_ENV, &webhook_secret);
    let now = crate::clock::now_unix();
    let run_id = format!("demo{}", hex::encode(rand::random::<[u8; 3]>()));
    let user12 = demo_token(&secret, &run_id, "user-9", "12", &[], now);
    let user73 = demo_token(&secret, &run_id, "user-40", "73", &[], now);
    let admin = demo_token(&secret, &run_id, "ops-1", "1", &["platform_admin"], now);
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let state = std::env::temp_dir().join(format!("portcullis-{run_id}"));
    if text.contains("{{DEMO_STATE_DIR}}") {
        std::fs::create_dir_all(&state).map_err(|e| format!("demo state directory {}: {e}", state.display()))?;
    }
    let text = text
        .replace("{{DEMO_APP}}", &app_addr)
        .replace("{{DEMO_OPERATOR_SHA256}}", &hash)
        .replace("{{DEMO_VIEWER_SHA256}}", &sha(&viewer))
        .replace("{{DEMO_ADMIN_SHA256}}", &sha(&admin_token))
        .replace("{{DEMO_STATE_DIR}}", &state.display().to_string());
    let base = config_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file = config_path.display().to_string();
    let mut cfg = config::parse(&file, &text, &base)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    cfg.path = config_path.to_path_buf();
    // Pingora's start-up lines (and its other info lines) stay out of the banner.
    crate::logging::init(&format!(
        "{},pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn",
        cfg.log_level
    ));
    let proxy = cfg.proxy_addr;
    let control = cfg.control_addr;
    eprintln!(
        "\nPortcullis demo\n\
         \n  console    http://{control}/   (open it in a browser; sign in with a control token below)\
         \n  gateway    http://{proxy}\n  control    http://{control}\n  sample app http://{app_addr} (behind the gateway)\
         \n  state      {state} (fresh for this run)\n\
         \n  control tokens (shown once):\
         \n    viewer    {viewer}\
         \n    operator  {token}\
         \n    admin     {admin_token}\n\
         \n  callers (bearer tokens for a day, from the demo issuer; export them to try the commands):\n\
         \n    export TOKEN_12={user12}\
         \n    export TOKEN_73={user73}\
         \n    export TOKEN_ADMIN={admin}\
         \n    export WEBHOOK_SECRET={webhook_secret}   # the demo Stripe endpoint's signing secret\n\
         \nTry:\n\
         \n  curl -i -H \"Authorization: Bearer $TOKEN_12\" http://{proxy}/api/business/12/orders\
         \n  curl -i -H \"Authorization: Bearer $TOKEN_12\" http://{proxy}/api/business/73/orders     # refused: 403 tenant_mismatch, critical event\
         \n  curl -i -H \"Authorization: Bearer $TOKEN_ADMIN\" http://{proxy}/api/business/73/orders  # platform_admin may cross tenants\
         \n  curl -i http://{proxy}/api/business/12/orders                                           # refused: 401 unauthenticated\
         \n  curl -i 'http://{proxy}/api/business/12%2Forders'          # refused: 400 bad_request (encoded slash)\
         \n  curl -i -X POST http://{proxy}/api/whatsapp/messages -d '{{\"to\":\"+905321234567\"}}'   # the 6th in 10 s: 429 rate_limited\
         \n  curl -s -X PUT -H 'Authorization: Bearer {token}' -d '{{\"enabled\":true}}' http://{control}/v1/flags/quota_enforcement\
         \n  for i in $(seq 11); do curl -s -o /dev/null -w '%{{http_code}} ' -H \"Authorization: Bearer $TOKEN_12\" http://{proxy}/api/business/12/orders; done   # ... 402 quota_exceeded\
         \n  curl -s -H 'Authorization: Bearer {token}' http://{control}/v1/quotas/12\
         \n  curl -i -A sqlmap/1.7 http://{proxy}/api/business/12/orders  # refused: 403 by the shipped firewall rule\
         \n\
         \n  # PII in responses (config/demo-rules/pii.yaml):\
         \n  curl -i http://{proxy}/api/payments/12/payouts    # an IBAN in the body: 502 response_blocked, nothing of the upstream's response\
         \n  curl -i http://{proxy}/api/payments/12/summary    # ORD-/REF-/SIP- numbers only: passes untouched\
         \n  curl -s http://{proxy}/api/crm/12/customers       # TCKN, SSN and phone masked (*******0146), e-mails reported\
         \n  curl -s -H 'Authorization: Bearer {token}' 'http://{control}/v1/events?type=pii_leak_block'\
         \n\
         \n  # a signed Stripe-style delivery, then a forged one (401 invalid_signature + event):\
         \n  BODY='{{\"id\":\"evt_demo_1\",\"type\":\"invoice.paid\"}}'; T=$(date +%s)\
         \n  SIG=$(printf '%s.%s' \"$T\" \"$BODY\" | openssl dgst -sha256 -hmac \"$WEBHOOK_SECRET\" | sed 's/^.* //')\
         \n  curl -i http://{proxy}/webhooks/stripe -H \"Stripe-Signature: t=$T,v1=$SIG\" --data-binary \"$BODY\"\
         \n  curl -i http://{proxy}/webhooks/stripe -H \"Stripe-Signature: t=$T,v1=$SIG\" --data-binary '{{\"id\":\"evt_forged\"}}'\
         \n  curl -s -H 'Authorization: Bearer {token}' 'http://{control}/v1/events?type=webhook_invalid_signature'\
         \n\
         \n  curl -s -H 'Authorization: Bearer {token}' 'http://{control}/v1/events?severity=critical'\
         \n  curl -s -X POST -H 'Authorization: Bearer {token}' http://{control}/v1/sessions/{run_id}-user-9/revoke  # then TOKEN_12 gets 401\
         \n  curl -s http://{control}/ready\
         \n  curl -s http://{control}/metrics | grep portcullis_requests_total\
         \n  curl -s -H 'Authorization: Bearer {token}' http://{control}/v1/rules\
         \n  curl -s -H 'Authorization: Bearer {token}' http://{control}/v1/summary\
         \n  PORTCULLIS_TOKEN={viewer} portcullis status --url http://{control}\
         \n",
        state = cfg.state_dir.display()
    );
    crate::server::run(cfg, false, vec![Box::new(app_svc)])
}
