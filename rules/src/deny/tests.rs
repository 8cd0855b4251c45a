use super::*;

#[test]
fn maintenance_matches_contract_shape() {
    let r = render(&Deny::new(DenyCode::Maintenance, "on").retry_after(3600), "rid-1");
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "Scheduled maintenance");
    assert_eq!(v["code"], "maintenance");
    assert_eq!(v["request_id"], "rid-1");
    assert_eq!(v["retryAfter"], 3600);
    assert!(r.headers.contains(&("retry-after", "3600".into())));
    assert!(r.headers.contains(&("content-type", "application/json".into())));
}

#[test]
fn no_retry_after_unless_set_and_request_id_is_escaped() {
    let r = render(&Deny::new(DenyCode::BadRequest, "x"), "a\"b");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v.get("retryAfter").is_none());
    assert_eq!(v["request_id"], "a\"b");
    assert!(!r.headers.iter().any(|(k, _)| *k == "retry-after"));
}

#[test]
fn details_render_as_errors_only_when_set() {
    let r = render(&Deny::new(DenyCode::InvalidRules, "x").with_details(vec!["f.yaml:3: id: bad".into()]), "r");
    assert_eq!(r.status, 422);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], "invalid_rules");
    assert_eq!(v["errors"][0], "f.yaml:3: id: bad");
    let r = render(&Deny::new(DenyCode::Conflict, "x"), "r");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r.status, 409);
    assert!(v.get("errors").is_none());
}

#[test]
fn statuses_match_contract_table() {
    for (code, status, s) in [
        (DenyCode::Maintenance, 503, "maintenance"),
        (DenyCode::ChannelDisabled, 503, "channel_disabled"),
        (DenyCode::BadRequest, 400, "bad_request"),
        (DenyCode::PayloadTooLarge, 413, "payload_too_large"),
        (DenyCode::Unauthenticated, 401, "unauthenticated"),
        (DenyCode::SessionExpired, 401, "session_expired"),
        (DenyCode::TenantMismatch, 403, "tenant_mismatch"),
        (DenyCode::IpBlocked, 403, "ip_blocked"),
        (DenyCode::TenantSuspended, 403, "tenant_suspended"),
        (DenyCode::SsrfBlocked, 403, "ssrf_blocked"),
        (DenyCode::InvalidSignature, 401, "invalid_signature"),
        (DenyCode::RateLimited, 429, "rate_limited"),
        (DenyCode::QuotaExceeded, 402, "quota_exceeded"),
        (DenyCode::ResponseBlocked, 502, "response_blocked"),
        (DenyCode::UpstreamUnavailable, 502, "upstream_unavailable"),
        (DenyCode::UpstreamTimeout, 504, "upstream_timeout"),
        (DenyCode::StoreUnavailable, 503, "store_unavailable"),
    ] {
        assert_eq!(code.status(), status);
        assert_eq!(code.as_str(), s);
    }
}
