//! The operator console and the control listener's index, `GET /`: the console (HTML) for a
//! browser (`Accept: text/html`), a JSON index of every endpoint and its role for anything else.
//!
//! The console is three static files compiled into the binary (no build step). It signs in with
//! a control token kept in the tab's `sessionStorage` and sent as an `Authorization` header —
//! never a cookie, so a cross-site request carries no credential — and runs under a strict CSP:
//! scripts, styles and fetches from this origin only, no inline script or style, no framing.
//! The files hold nothing secret; every datum comes from the `/v1` API with the token's role.

use super::{json_response, response, Role, ENDPOINTS};
use http::Response;
use serde_json::{json, Value};

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`, `/console.js`, `/console.css`; `None` for any other path.
pub(super) fn serve(method: &str, path: &str, accept: Option<&str>, request_id: &str) -> Option<Response<Vec<u8>>> {
    let (kind, body) = match path {
        "/" if wants_html(accept) => ("text/html; charset=utf-8", INDEX_HTML),
        "/" => return Some(index(method, request_id)),
        "/console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "/console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        _ => return None,
    };
    if !matches!(method, "GET" | "HEAD") {
        return Some(not_allowed(request_id));
    }
    let headers = [
        ("content-type", kind),
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-cache"),
    ];
    Some(response(200, &headers, body.as_bytes().to_vec(), request_id))
}

/// True when the client prefers HTML (a browser navigating to the page).
fn wants_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.split(',').any(|t| t.trim().to_ascii_lowercase().starts_with("text/html")))
}

fn not_allowed(request_id: &str) -> Response<Vec<u8>> {
    use portcullis_rules::deny::{Deny, DenyCode};
    super::control_deny(&Deny::new(DenyCode::MethodNotAllowed, "method").with_header("allow", "GET, HEAD"), request_id)
}

/// The JSON index: every endpoint, its method and the role it needs.
fn index(method: &str, request_id: &str) -> Response<Vec<u8>> {
    if !matches!(method, "GET" | "HEAD") {
        return not_allowed(request_id);
    }
    let endpoints: Vec<Value> = ENDPOINTS
        .iter()
        .map(|(m, p, role, _)| json!({ "method": m, "path": p.replace("{}", "{id}"), "role": role.as_str() }))
        .collect();
    let open = ["/health", "/ready", "/metrics"]
        .iter()
        .map(|p| json!({ "method": "GET", "path": p, "role": Value::Null }))
        .collect::<Vec<_>>();
    let roles: Vec<&str> = [Role::Viewer, Role::Operator, Role::Admin].iter().map(|r| r.as_str()).collect();
    json_response(
        200,
        &json!({
            "service": "portcullis-control",
            "console": "/ (Accept: text/html)",
            "auth": "Authorization: Bearer <control token>",
            "roles": roles,
            "endpoints": endpoints,
            "unauthenticated": open,
        }),
        request_id,
    )
}

#[cfg(test)]
mod tests;
