//! The control endpoint: its own listener, `/health`, `/ready`, `/metrics` without a token, and
//! `/v1/*` behind bearer tokens stored as SHA-256 hashes with roles.
//!
//! Order of answers for `/v1`: no or unknown token → 401; unknown path → 404; wrong method →
//! 405 (with `Allow`); role too weak → 403. Every refusal is logged with the caller's token name
//! (never the token).

use crate::config::Role;
use crate::events::{events_body, EventQuery, SecurityEvent, SummaryQuery, TopThreatsQuery};
use crate::proxy::new_request_id;
use crate::reload::{Reloaded, Trigger};
use crate::state::{dir_writable, Shared};
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use portcullis_rules::deny::{render, Deny, DenyCode};
use portcullis_rules::verdict::EventType;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Largest control request body read.
const MAX_BODY: usize = 64 * 1024;

/// What a `/v1` endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Rules,
    RulesReload,
    Events,
    Summary,
    TopThreats,
    SafeTest,
    Upstreams,
    Tokens,
    /// In the contract, arriving with a later feature.
    Planned,
}

/// The `/v1` routing table: (method, path pattern, role, handler). `{}` matches one segment.
const ENDPOINTS: &[(&str, &str, Role, Handler)] = &[
    ("GET", "/v1/rules", Role::Viewer, Handler::Rules),
    ("GET", "/v1/upstreams", Role::Viewer, Handler::Upstreams),
    ("GET", "/v1/tokens", Role::Admin, Handler::Tokens),
    ("POST", "/v1/rules/reload", Role::Operator, Handler::RulesReload),
    ("GET", "/v1/switches", Role::Viewer, Handler::Planned),
    ("PUT", "/v1/switches/maintenance", Role::Operator, Handler::Planned),
    ("PUT", "/v1/switches/channels/{}", Role::Operator, Handler::Planned),
    ("PUT", "/v1/flags/{}", Role::Operator, Handler::Planned),
    ("GET", "/v1/events", Role::Viewer, Handler::Events),
    ("GET", "/v1/summary", Role::Viewer, Handler::Summary),
    ("GET", "/v1/top-threats", Role::Viewer, Handler::TopThreats),
    ("POST", "/v1/safe-test/{}", Role::Operator, Handler::SafeTest),
    ("POST", "/v1/sessions/{}/revoke", Role::Operator, Handler::Planned),
    ("DELETE", "/v1/sessions/{}/revoke", Role::Operator, Handler::Planned),
    ("POST", "/v1/quotas/{}/reset", Role::Operator, Handler::Planned),
    ("GET", "/v1/audit", Role::Admin, Handler::Planned),
];

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("{}"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The control application.
pub struct ControlApp {
    shared: Arc<Shared>,
}

impl ControlApp {
    /// Over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The token's holder, comparing against every configured hash in constant time.
    fn authenticate(&self, header: Option<&[u8]>) -> Option<(&str, Role)> {
        let token = header?.strip_prefix(b"Bearer ")?;
        let token = token.trim_ascii();
        if token.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for t in &self.shared.config.tokens {
            if bool::from(t.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some((t.name.as_str(), t.role));
            }
        }
        found
    }

    fn ready(&self) -> (bool, Value) {
        let upstreams = self.shared.upstreams_ready();
        let state = dir_writable(&self.shared.config.state_dir);
        // Rules are always loaded (the gateway does not start without them); a failed reload
        // keeps the running snapshot and does not make the instance unready.
        let checks = json!({ "rules": true, "upstreams": upstreams, "state": state, "audit": state });
        (upstreams && state, checks)
    }

    fn metrics(&self) -> String {
        let mut extra = String::new();
        let _ = writeln!(extra, "# HELP portcullis_backend_healthy 1 when the backend passes its health check.");
        let _ = writeln!(extra, "# TYPE portcullis_backend_healthy gauge");
        for (pool, backend, healthy) in self.shared.backend_health() {
            let _ = writeln!(
                extra,
                "portcullis_backend_healthy{{pool=\"{pool}\",backend=\"{backend}\"}} {}",
                u8::from(healthy)
            );
        }
        let (ready, _) = self.ready();
        let _ = writeln!(extra, "# HELP portcullis_ready 1 when /ready answers 200.");
        let _ = writeln!(extra, "# TYPE portcullis_ready gauge");
        let _ = writeln!(extra, "portcullis_ready {}", u8::from(ready));
        self.shared.rules.render_metrics(&mut extra);
        self.shared.events.render_metrics(&mut extra);
        self.shared.metrics.render(&extra)
    }

    /// Runs an authorised `/v1` request. `Err` is a deny rendered by the one renderer.
    async fn handle(&self, h: Handler, call: &Call<'_>) -> Result<(u16, Value), Deny> {
        let cfg = &self.shared.config;
        match h {
            Handler::Rules => Ok((200, self.shared.rules.describe())),
            Handler::RulesReload => {
                let rules = self.shared.rules.clone();
                let done = tokio::task::spawn_blocking(move || rules.reload(Trigger::Api))
                    .await
                    .map_err(|_| Deny::new(DenyCode::Internal, "reload_task"))?;
                tracing::info!(event.action = "control_mutation", action = "rules_reload", user.name = call.who, http.request.id = call.request_id, result = ?done, "rules reload requested");
                match done {
                    Reloaded::Applied { version, previous } => Ok((
                        200,
                        json!({ "changed": version != previous, "version": version, "previous": previous, "loaded_at": rfc3339(self.shared.rules.current().loaded_at) }),
                    )),
                    Reloaded::Unchanged { version } => Ok((200, json!({ "changed": false, "version": version }))),
                    Reloaded::Failed { errors, .. } => {
                        Err(Deny::new(DenyCode::InvalidRules, "reload_failed").with_details(errors))
                    }
                }
            }
            Handler::Events => {
                let q = EventQuery::parse(call.query).map_err(bad_query)?;
                Ok((200, events_body(&self.shared.events.query(&q))))
            }
            Handler::Summary => {
                let q = SummaryQuery::parse(call.query).map_err(bad_query)?;
                Ok((200, self.shared.events.summary(q.hours, &self.shared.requests)))
            }
            Handler::TopThreats => {
                let q = TopThreatsQuery::parse(call.query).map_err(bad_query)?;
                Ok((200, self.shared.events.top_threats(q.hours, q.limit)))
            }
            Handler::SafeTest => {
                let name = call.path.rsplit('/').next().unwrap_or("");
                let Some(kind) = EventType::parse(name) else {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    return Err(Deny::new(DenyCode::BadRequest, "safe_test_type")
                        .with_details(vec![format!("unknown event type `{name}`; known: {}", known.join(", "))]));
                };
                if !self.shared.flags.safe_test_mode.load(Relaxed) {
                    return Err(Deny::new(DenyCode::Conflict, "safe_test_mode_off").with_details(vec![
                        "safe_test_mode is off: start the gateway with SAFE_TEST_MODE=true".into(),
                    ]));
                }
                let version = self.shared.rules.current().snapshot.version.clone();
                let event = SecurityEvent::safe_test(kind, Some(&version), call.who);
                let id = event.id.clone();
                let body = json!({ "emitted": true, "event": &event });
                self.shared.events.emit(event);
                // Answer once the event is in every sink, so the operator's next query sees it.
                let events = self.shared.events.clone();
                let flushed =
                    tokio::task::spawn_blocking(move || events.flush(Duration::from_secs(2))).await.unwrap_or(false);
                tracing::info!(event.action = "control_mutation", action = "safe_test", user.name = call.who, http.request.id = call.request_id, event.id = %id, event.type = kind.as_str(), flushed, "safe test event emitted");
                Ok((202, body))
            }
            Handler::Upstreams => {
                let pools: Vec<Value> = cfg
                    .pools
                    .iter()
                    .map(|p| {
                        let backends: Vec<Value> = self
                            .shared
                            .backend_health()
                            .into_iter()
                            .filter(|(pool, _, _)| *pool == p.name)
                            .map(|(_, b, healthy)| json!({ "address": b, "healthy": healthy }))
                            .collect();
                        json!({ "name": p.name, "backends": backends })
                    })
                    .collect();
                Ok((200, json!({ "pools": pools })))
            }
            Handler::Tokens => {
                let tokens: Vec<Value> =
                    cfg.tokens.iter().map(|t| json!({ "name": t.name, "role": t.role.as_str() })).collect();
                Ok((200, json!({ "tokens": tokens })))
            }
            Handler::Planned => Err(Deny::new(DenyCode::NotImplemented, "planned")),
        }
    }
}

/// An authorised control request.
struct Call<'a> {
    path: &'a str,
    query: Option<&'a str>,
    who: &'a str,
    request_id: &'a str,
}

fn bad_query(msg: String) -> Deny {
    Deny::new(DenyCode::BadRequest, "query").with_details(vec![msg])
}

/// RFC 3339 UTC timestamp with seconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Builds a control response. A header the builder refuses (it cannot happen with our static
/// names and ASCII values) fails closed as a bare 500, never as an empty 200.
fn response(status: u16, headers: &[(&str, &str)], body: Vec<u8>, request_id: &str) -> Response<Vec<u8>> {
    let mut b = Response::builder().status(status).header("x-request-id", request_id);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.header("content-length", body.len()).body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn json_response(status: u16, body: &Value, request_id: &str) -> Response<Vec<u8>> {
    let headers = [("content-type", "application/json"), ("cache-control", "no-store")];
    response(status, &headers, body.to_string().into_bytes(), request_id)
}

fn deny_response(deny: &Deny, request_id: &str) -> Response<Vec<u8>> {
    let r = render(deny, request_id);
    // The renderer already sets content-length; `response` sets it from the body itself.
    let headers: Vec<(&str, &str)> =
        r.headers.iter().filter(|(k, _)| *k != "content-length").map(|(k, v)| (*k, v.as_str())).collect();
    response(r.status, &headers, r.body, request_id)
}

#[async_trait]
impl ServeHttp for ControlApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request_id = new_request_id();
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_owned);
        let auth = req.headers.get("authorization").map(|v| v.as_bytes().to_vec());

        // Drain (bounded) so the connection can be reused; mutations will parse it.
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
            if body_len > MAX_BODY {
                session.set_keepalive(None);
                return deny_response(&Deny::new(DenyCode::PayloadTooLarge, "control_body"), &request_id);
            }
        }

        match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/health") => {
                return json_response(
                    200,
                    &json!({ "status": "ok", "timestamp": rfc3339(std::time::SystemTime::now()) }),
                    &request_id,
                )
            }
            ("GET" | "HEAD", "/ready") => {
                let (ok, checks) = self.ready();
                return json_response(
                    if ok { 200 } else { 503 },
                    &json!({ "ready": ok, "checks": checks }),
                    &request_id,
                );
            }
            ("GET" | "HEAD", "/metrics") => {
                let body = self.metrics().into_bytes();
                return response(200, &[("content-type", "text/plain; version=0.0.4")], body, &request_id);
            }
            (_, "/health" | "/ready" | "/metrics") => {
                return deny_response(
                    &Deny::new(DenyCode::MethodNotAllowed, "method").with_header("allow", "GET, HEAD"),
                    &request_id,
                )
            }
            _ => {}
        }
        if !path.starts_with("/v1/") {
            return deny_response(&Deny::new(DenyCode::NotFound, "control_path"), &request_id);
        }

        let Some((who, role)) = self.authenticate(auth.as_deref()) else {
            tracing::warn!(event.action = "control_denied", reason = "unauthenticated", http.request.method = %method, url.path = %path, http.request.id = %request_id, "control request refused");
            return deny_response(
                &Deny::new(DenyCode::Unauthenticated, "control_token")
                    .with_header("www-authenticate", "Bearer realm=\"portcullis\""),
                &request_id,
            );
        };
        let candidates: Vec<_> = ENDPOINTS.iter().filter(|(_, p, _, _)| pattern_matches(p, &path)).collect();
        if candidates.is_empty() {
            return deny_response(&Deny::new(DenyCode::NotFound, "control_path"), &request_id);
        }
        let Some(&&(_, _, needed, handler)) = candidates.iter().find(|(m, _, _, _)| *m == method) else {
            let allow: Vec<&str> = candidates.iter().map(|(m, _, _, _)| *m).collect();
            tracing::warn!(event.action = "control_denied", reason = "method", user.name = who, http.request.method = %method, url.path = %path, http.request.id = %request_id, "control request refused");
            return deny_response(
                &Deny::new(DenyCode::MethodNotAllowed, "method").with_header("allow", allow.join(", ")),
                &request_id,
            );
        };
        if role < needed {
            tracing::warn!(event.action = "control_denied", reason = "role", user.name = who, user.roles = role.as_str(), needed = needed.as_str(), http.request.method = %method, url.path = %path, http.request.id = %request_id, "control request refused");
            return deny_response(&Deny::new(DenyCode::Forbidden, "role"), &request_id);
        }
        let call = Call { path: &path, query: query.as_deref(), who, request_id: &request_id };
        match self.handle(handler, &call).await {
            Ok((status, body)) => json_response(status, &body, &request_id),
            Err(deny) => deny_response(&deny, &request_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("/v1/flags/{}", "/v1/flags/rate_limit"));
        assert!(!pattern_matches("/v1/flags/{}", "/v1/flags/"));
        assert!(!pattern_matches("/v1/flags/{}", "/v1/flags/a/b"));
        assert!(pattern_matches("/v1/sessions/{}/revoke", "/v1/sessions/s1/revoke"));
        assert!(!pattern_matches("/v1/rules", "/v1/rules/"));
    }
}
