use super::*;

fn h2_req(method: &str, authority: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, b"/api/x", None).unwrap();
    r.set_uri(format!("https://{authority}/api/x").parse::<http::Uri>().unwrap());
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

#[test]
fn h2_heads_get_the_http1_head_checks() {
    let limits = framing::HeaderLimits { max_count: 5, max_bytes: 300 };
    let reason = |r: &RequestHeader| h2_head(r, limits).err().map(|d| d.reason.to_string());
    assert_eq!(reason(&h2_req("GET", "a.test", &[])), None);
    assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "a.test")])), None);
    assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "A.test")])).as_deref(), Some("target_authority"));
    assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "u@a.test")])).as_deref(), Some("target_authority"));
    assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "b.test")])).as_deref(), Some("target_authority"));
    assert_eq!(reason(&h2_req("GET", "a.test", &[("host", "a.test:8443")])).as_deref(), Some("target_authority"));
    assert_eq!(
        reason(&h2_req("GET", "a.test", &[("host", "a.test"), ("host", "a.test")])).as_deref(),
        Some("duplicate_host")
    );
    let many: Vec<(&str, &str)> = ["a", "b", "c", "d", "e", "f"].iter().map(|k| (*k, "v")).collect();
    assert_eq!(reason(&h2_req("GET", "a.test", &many)).as_deref(), Some("too_many_headers"));
    let big = "v".repeat(400);
    assert_eq!(reason(&h2_req("GET", "a.test", &[("x", big.as_str())])).as_deref(), Some("headers_too_large"));
    assert_eq!(h2_head(&h2_req("CONNECT", "a.test", &[]), limits).unwrap_err().code, DenyCode::MethodNotAllowed);
}
