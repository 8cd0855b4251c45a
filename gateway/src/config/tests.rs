use super::*;

const GOOD: &str = r#"
version: 1
listen:
  proxy: 127.0.0.1:0
  control: 127.0.0.1:0
upstreams:
  app:
    backends: ["127.0.0.1:3000"]
routes:
  - id: api
    path_prefix: /api
    upstream: app
    channel: whatsapp
"#;

#[test]
fn the_response_head_cap_has_a_default_and_bounds() {
    let c = parse("g.yaml", GOOD, Path::new("/etc/p")).unwrap();
    assert_eq!(c.max_response_header_bytes, DEFAULT_MAX_RESPONSE_HEADER_BYTES);
    let with = |n: usize| GOOD.replace("upstreams:", &format!("limits:\n  max_response_header_bytes: {n}\nupstreams:"));
    assert_eq!(parse("g.yaml", &with(8192), Path::new("/")).unwrap().max_response_header_bytes, 8192);
    for bad in [0, 1023, MAX_RESPONSE_HEADER_BYTES + 1] {
        let errs = parse("g.yaml", &with(bad), Path::new("/")).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|t| t.contains("limits.max_response_header_bytes")), "{bad}: {text:?}");
    }
}

#[test]
fn body_timeout_has_a_default_a_global_and_a_per_route_value() {
    let c = parse("g.yaml", GOOD, Path::new("/")).unwrap();
    assert_eq!(c.routes.entries()[0].value.body_timeout, Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS));
    let global = GOOD.replace("upstreams:", "limits:\n  body_timeout_ms: 4000\nupstreams:");
    let c = parse("g.yaml", &global, Path::new("/")).unwrap();
    assert_eq!(c.routes.entries()[0].value.body_timeout, Duration::from_secs(4));
    let c = parse("g.yaml", &format!("{global}    body_timeout_ms: 1500\n"), Path::new("/")).unwrap();
    assert_eq!(c.routes.entries()[0].value.body_timeout, Duration::from_millis(1500));
    for bad in [
        format!("{GOOD}    body_timeout_ms: 0\n"),
        GOOD.replace("upstreams:", "limits:\n  body_timeout_ms: 0\nupstreams:"),
    ] {
        let text: Vec<String> =
            parse("g.yaml", &bad, Path::new("/")).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|t| t.contains("body_timeout_ms: must be greater than 0")), "{text:?}");
    }
}

#[test]
fn paths_can_be_overridden_from_the_environment_absolute_only() {
    let env = |k: &str| match k {
        "PORTCULLIS_STATE_DIR" => Some("/var/lib/portcullis".to_string()),
        "PORTCULLIS_PID_FILE" => Some("/run/portcullis/portcullis.pid".to_string()),
        "PORTCULLIS_UPGRADE_SOCK" => Some("/run/portcullis/upgrade.sock".to_string()),
        _ => None,
    };
    let c = parse_with_env("g.yaml", GOOD, Path::new("/etc/portcullis"), &env).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/portcullis"));
    assert_eq!(c.events.dir, PathBuf::from("/var/lib/portcullis/events"));
    assert_eq!(c.server.pid_file, "/run/portcullis/portcullis.pid");
    assert_eq!(c.server.upgrade_sock, "/run/portcullis/upgrade.sock");
    // Unset or empty: the file's values.
    let c = parse_with_env("g.yaml", GOOD, Path::new("/etc/p"), &|_| Some(String::new())).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/etc/p/var/state"));
    for var in ["PORTCULLIS_STATE_DIR", "PORTCULLIS_PID_FILE", "PORTCULLIS_UPGRADE_SOCK"] {
        let rel = |k: &str| (k == var).then(|| "var/state".to_string());
        let e = parse_with_env("g.yaml", GOOD, Path::new("/"), &rel).unwrap_err();
        assert!(e[0].to_string().contains(&format!("{var}=`var/state`")), "{}", e[0]);
    }
}

#[test]
fn control_tokens_never_travel_in_plain_http_on_a_network() {
    let tokens = "control:\n  tokens: [{name: a, role: admin, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"}]\n";
    let at = |addr: &str, more: &str| {
        let text = format!("{}{tokens}{more}", GOOD.replace("control: 127.0.0.1:0", &format!("control: \"{addr}\"")));
        parse("g.yaml", &text, Path::new("/"))
            .map(|_| ())
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
    };
    assert!(at("127.0.0.1:0", "").is_ok());
    assert!(at("[::1]:0", "").is_ok());
    for addr in ["0.0.0.0:9090", "10.0.0.5:9090", "[::]:9090", "192.0.2.1:0"] {
        let e = at(addr, "").unwrap_err();
        assert!(e.contains("g.yaml:5: listen.control") && e.contains("plain HTTP"), "{addr}: {e}");
        assert!(at(addr, "").is_err());
    }
    assert!(GOOD.contains("control: 127.0.0.1:0"));
    let allowed = tokens.replace("tokens:", "allow_plaintext_tokens: true\n  tokens:");
    let text = format!("{}{allowed}", GOOD.replace("control: 127.0.0.1:0", "control: 0.0.0.0:9090"));
    assert!(parse("g.yaml", &text, Path::new("/")).is_ok());
    // No tokens: nothing to protect (probes and metrics only).
    assert!(parse("g.yaml", &GOOD.replace("control: 127.0.0.1:0", "control: 0.0.0.0:9090"), Path::new("/")).is_ok());
}

#[test]
fn good_config_compiles() {
    let c = parse("g.yaml", GOOD, Path::new("/etc/p")).unwrap();
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.routes.entries().len(), 1);
    assert_eq!(c.state_dir, PathBuf::from("/etc/p/var/state"));
    assert!(c.strip_headers.contains(&http::HeaderName::from_static("x-tenant-id")));
    assert_eq!(c.request_id_trust, TrustInbound::TrustedProxies);
    assert!(c.routes.entries()[0].value.allow_headers.is_empty());
}

#[test]
fn request_id_trust_and_allowed_headers() {
    let more = "request_id: {trust_inbound: any}\n";
    let c = parse(
        "g.yaml",
        &format!("{GOOD}    allow_headers: [X-HTTP-Method-Override, X_Legacy]\n{more}"),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(c.request_id_trust, TrustInbound::Any);
    let r = &c.routes.entries()[0].value;
    assert_eq!(r.allow_headers, ["x-http-method-override", "x_legacy"]);
    assert_eq!(r.method_override, ["x-http-method-override"]);
    let never = parse("g.yaml", &format!("{GOOD}request_id: {{trust_inbound: never}}\n"), Path::new("/")).unwrap();
    assert_eq!(never.request_id_trust, TrustInbound::Never);
    let e = parse("g.yaml", &format!("{GOOD}request_id: {{trust_inbound: sometimes}}\n"), Path::new("/")).unwrap_err();
    assert!(e[0].to_string().contains("request_id.trust_inbound"), "{}", e[0]);

    for (h, why) in [
        ("X-Original-URL", "always stripped"),
        ("X_Forwarded_For", "always stripped"),
        ("x-forwarded-prefix", "always stripped"),
        ("X_User_Id", "spelling of `x-user-id`"),
        ("X.User.Id", "spelling of `x-user-id`"),
        ("X.Forwarded.For", "always stripped"),
        ("x-tenant-id", "spelling of `x-tenant-id`"),
        ("X-Custom", "not stripped by default"),
        ("bad header", "not a header name"),
    ] {
        let e = parse("g.yaml", &format!("{GOOD}    allow_headers: ['{h}']\n"), Path::new("/")).unwrap_err();
        let text = e[0].to_string();
        assert!(text.contains("routes[0].allow_headers[0]") && text.contains(why), "{h}: {text}");
    }
    let e = parse("g.yaml", &format!("{GOOD}    allow_headers: [X_A, x_a]\n"), Path::new("/")).unwrap_err();
    assert!(e[0].to_string().contains("listed twice"), "{}", e[0]);
}

#[test]
fn every_error_is_reported_with_line_and_path() {
    let bad = r#"
version: 1
listen:
  proxy: 127.0.0.1:0
  control: nowhere
upstreams:
  app:
    backends: ["127.0.0.1:3000", "not an addr"]
routes:
  - id: api
    path_prefix: /api/../x
    upstream: ap
  - id: api
    path_prefx: /
    upstream: app
"#;
    let errs = parse("g.yaml", bad, Path::new("/")).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let joined = text.join("\n");
    // Shape errors (unknown keys, types) come first, all of them; semantic checks (addresses,
    // references) run once the file has the right shape (see the next test).
    assert!(joined.contains("g.yaml:14: routes[1].path_prefx: unknown field"), "{joined}");
    assert!(joined.contains("did you mean `path_prefix`"), "{joined}");
}

#[test]
fn semantic_errors_point_at_their_lines() {
    let bad = r#"
version: 1
listen:
  proxy: 127.0.0.1:0
upstreams:
  app:
    backends: ["127.0.0.1:3000", "nope"]
routes:
  - id: api
    path_prefix: /api/../x
    upstream: ap
"#;
    let errs = parse("g.yaml", bad, Path::new("/")).unwrap_err();
    let joined: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let joined = joined.join("\n");
    assert!(joined.contains("g.yaml:7: upstreams.app.backends[1]:"), "{joined}");
    assert!(joined.contains("g.yaml:10: routes[0].path_prefix:"), "{joined}");
    assert!(joined.contains("g.yaml:11: routes[0].upstream: unknown upstream `ap`"), "{joined}");
}
