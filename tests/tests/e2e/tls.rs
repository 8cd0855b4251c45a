//! TLS termination through the wire: certificates generated here (a throwaway CA), the real
//! gateway terminating TLS, `curl`/`openssl s_client` as clients, the recording upstream.
use crate::common::*;
use portcullis_tests::tls::{curl, negotiated, served_cn, CurlResp, Pki, Proto};
use portcullis_tests::{run_cli, wait_until, Gateway, TempDir, Upstream};
use std::path::Path;
use std::time::Duration;

/// A `tls:` section (top-level YAML) for these (cert, key) pairs.
pub fn tls_section(pairs: &[(&Path, &Path)], more: &str) -> String {
    let mut s = String::from("tls:\n  certificates:\n");
    for (c, k) in pairs {
        s.push_str(&format!("    - {{ cert: \"{}\", key: \"{}\" }}\n", c.display(), k.display()));
    }
    s.push_str(more);
    s
}

/// A PKI with a `localhost` certificate (the default) and its `tls:` section.
pub fn localhost_tls(more: &str) -> (Pki, String) {
    let pki = Pki::new();
    let (c, k) = pki.leaf("localhost", &["localhost"], 2);
    let s = tls_section(&[(&c, &k)], more);
    (pki, s)
}

/// A request to a TLS gateway on `localhost`.
pub fn https(gw: &Gateway, proto: Proto, path: &str, headers: &[(&str, &str)], extra: &[&str]) -> CurlResp {
    curl(proto, gw.proxy_addr(), "localhost", path, headers, extra)
}

#[test]
fn https_on_h1_and_h2_says_https_upstream() {
    let up = Upstream::start("app");
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    for proto in [Proto::H1, Proto::H2] {
        up.clear();
        // A client's own claim of the scheme is never believed; the listener's is.
        let r =
            https(&gw, proto, "/api/orders?x=1", &[("x-forwarded-proto", "http"), ("forwarded", "proto=http")], &[]);
        assert_eq!(r.status, 200, "{proto:?}: {r:?}");
        assert_eq!(r.http_version, if proto == Proto::H2 { "2" } else { "1.1" });
        assert!(r.header("x-request-id").is_some());
        let rec = up.last_excluding("/health").unwrap();
        assert_eq!(rec.target, "/api/orders?x=1");
        assert_eq!(rec.header("x-forwarded-proto"), Some("https"), "{proto:?}");
        assert_eq!(rec.header_all("forwarded"), vec!["for=127.0.0.1;proto=https;host=\"localhost\""]);
        assert_eq!(rec.header("x-forwarded-host"), Some("localhost"));
        // h2's `:authority` (curl sends no `Host` field on h2) is the upstream's `Host`, never empty.
        let host = format!("localhost:{}", gw.proxy_addr().port());
        assert_eq!(rec.header_all("host"), vec![host.as_str()], "{proto:?}");
        // POST with a body over both protocols, byte for byte.
        let r = https(&gw, proto, "/api/p", &[("content-type", "text/plain")], &["--data-binary", "hello tls"]);
        assert_eq!(r.status, 200);
        assert_eq!(up.last_excluding("/health").unwrap().body, b"hello tls");
    }
    // Plain HTTP is not served on a TLS listener.
    let plain = portcullis_tests::Client::new().try_request("GET", &gw.url("/api/orders"), &[], None);
    assert!(plain.map(|r| r.status >= 400).unwrap_or(true));
}

#[test]
fn plain_listener_says_http_unless_a_trusted_proxy_says_https() {
    let up = Upstream::start("app");
    let c = portcullis_tests::Client::new();
    let gw = Cfg::new(&[up.addr()]).start();
    c.get(&gw.url("/api/a"), &[("x-forwarded-proto", "https")]);
    let rec = up.last_excluding("/health").unwrap();
    assert_eq!(rec.header("x-forwarded-proto"), Some("http"));
    let fwd = rec.header_all("forwarded");
    assert_eq!(fwd.len(), 1, "the client's Forwarded never passes: {fwd:?}");
    assert!(fwd[0].starts_with("for=127.0.0.1;proto=http;host="), "{fwd:?}");
    drop(gw);
    let gw = Cfg::new(&[up.addr()]).extra("trusted_proxies: [127.0.0.1]\n").start();
    for (said, seen) in
        [("https", "https"), ("HTTPS", "https"), ("http", "http"), ("gopher", "http"), ("https, http", "http")]
    {
        up.clear();
        c.get(&gw.url("/api/a"), &[("x-forwarded-proto", said)]);
        let rec = up.last_excluding("/health").unwrap();
        assert_eq!(rec.header("x-forwarded-proto"), Some(seen), "{said}");
        assert!(rec.header("forwarded").unwrap().contains(&format!("proto={seen}")));
    }
}

#[test]
fn sni_chooses_the_certificate_with_a_default() {
    let pki = Pki::new();
    let (dc, dk) = pki.leaf("default", &["localhost"], 2);
    let (ac, ak) = pki.leaf("alpha", &["a.test", "alpha.test"], 2);
    let (wc, wk) = pki.leaf("wild", &["*.w.test"], 2);
    let (xc, xk) = pki.leaf("exact", &["x.w.test"], 2);
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).extra(&tls_section(&[(&dc, &dk), (&ac, &ak), (&wc, &wk), (&xc, &xk)], "")).start();
    let addr = gw.proxy_addr();
    assert_eq!(served_cn(addr, Some("a.test")).as_deref(), Some("alpha"));
    assert_eq!(served_cn(addr, Some("ALPHA.test")).as_deref(), Some("alpha"));
    assert_eq!(served_cn(addr, Some("y.w.test")).as_deref(), Some("wild"));
    // The exact name wins over the wildcard, whatever the order.
    assert_eq!(served_cn(addr, Some("x.w.test")).as_deref(), Some("exact"));
    // A wildcard covers one label only; unknown names and no SNI get the default.
    assert_eq!(served_cn(addr, Some("a.b.w.test")).as_deref(), Some("default"));
    assert_eq!(served_cn(addr, Some("unknown.test")).as_deref(), Some("default"));
    assert_eq!(served_cn(addr, None).as_deref(), Some("default"));
    // Verified end to end with the CA (no -k): the name and the chain check out.
    let ca = pki.ca().display().to_string();
    let r = curl(Proto::H2, addr, "y.w.test", "/api/x", &[], &["--cacert", &ca]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn only_tls_1_2_and_1_3_with_alpn() {
    let up = Upstream::start("app");
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let addr = gw.proxy_addr();
    assert_eq!(negotiated(addr, "-tls1_3").as_deref(), Some("TLSv1.3"));
    assert_eq!(negotiated(addr, "-tls1_2").as_deref(), Some("TLSv1.2"));
    assert_eq!(negotiated(addr, "-tls1_1"), None);
    assert_eq!(negotiated(addr, "-tls1"), None);
    // h2 off: ALPN offers http/1.1 only and `--http2` falls back to 1.1.
    drop(gw);
    let (_pki, tls) = localhost_tls("  h2: false\n");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let r = curl(Proto::H1, gw.proxy_addr(), "localhost", "/api/x", &[], &["--http2"]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "1.1"));
}

#[test]
fn client_certificates_when_configured() {
    let pki = Pki::new();
    let (c, k) = pki.leaf("localhost", &["localhost"], 2);
    let (cc, ck) = pki.leaf("client-1", &["client-1.test"], 2);
    let other = Pki::new();
    let (oc, ok) = other.leaf("stranger", &["stranger.test"], 2);
    let up = Upstream::start("app");
    let more = format!("  client_ca: \"{}\"\n", pki.ca().display());
    let gw = Cfg::new(&[up.addr()]).extra(&tls_section(&[(&c, &k)], &more)).start();
    for proto in [Proto::H1, Proto::H2] {
        up.clear();
        // No certificate, or one from another CA: no handshake, nothing upstream.
        let r = https(&gw, proto, "/api/x", &[], &[]);
        assert_eq!(r.status, 0, "{r:?}");
        let (ocs, oks) = (oc.display().to_string(), ok.display().to_string());
        let r = https(&gw, proto, "/api/x", &[], &["--cert", &ocs, "--key", &oks]);
        assert_eq!(r.status, 0, "{r:?}");
        assert_eq!(up.requests_excluding("/health").len(), 0);
        let (ccs, cks) = (cc.display().to_string(), ck.display().to_string());
        let r = https(&gw, proto, "/api/x", &[], &["--cert", &ccs, "--key", &cks]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(up.requests_excluding("/health").len(), 1);
    }
}

#[test]
fn the_client_ca_reloads_and_a_broken_bundle_keeps_the_old() {
    let pki = Pki::new();
    let (c, k) = pki.leaf("localhost", &["localhost"], 2);
    let (ac, ak) = pki.leaf("client-a", &["client-a.test"], 2);
    let other = Pki::new();
    let (bc, bk) = other.leaf("client-b", &["client-b.test"], 2);
    let up = Upstream::start("app");
    // The gateway trusts a copy of the first CA we can overwrite.
    let dir = TempDir::new("pcx-ca");
    let live = dir.path().join("clients-ca.pem");
    std::fs::copy(pki.ca(), &live).unwrap();
    let more = format!("  client_ca: \"{}\"\n  watch_interval_ms: 200\n", live.display());
    let gw = Cfg::new(&[up.addr()]).extra(&tls_section(&[(&c, &k)], &more)).start();
    let ok = std::cell::Cell::new(0);
    let with = |cert: &Path, key: &Path, proto: Proto| {
        let (cs, ks) = (cert.display().to_string(), key.display().to_string());
        let status = https(&gw, proto, "/api/x", &[], &["--cert", &cs, "--key", &ks]).status;
        ok.set(ok.get() + usize::from(status == 200));
        status
    };
    let served =
        |a: u16, b: u16| [Proto::H1, Proto::H2].iter().all(|p| with(&ac, &ak, *p) == a && with(&bc, &bk, *p) == b);
    assert!(served(200, 0));

    // The other CA on disk: picked up by the watch, the first one's clients are out.
    std::fs::copy(other.ca(), &live).unwrap();
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(100), || served(0, 200)));

    // Broken bundles: each keeps the second CA in service and is reported.
    let text = std::fs::read_to_string(other.ca()).unwrap();
    let key_only = std::fs::read_to_string(&bk).unwrap();
    let broken: [(&str, &str); 4] = [
        ("", "no CA certificate"),
        ("not a PEM file at all\n", "no CA certificate"),
        (&key_only, "no CA certificate"),
        (&text[..text.len() / 2], "not PEM"),
    ];
    let failed = |why: &str| {
        events(&gw, "tls_reload_failed")
            .into_iter()
            .filter(|e| e["detail"]["error"].as_str().is_some_and(|s| s.contains(why)))
            .count()
    };
    for (i, (bytes, why)) in broken.iter().enumerate() {
        let before = events(&gw, "tls_reload_failed").len();
        // Different bytes each time, so the watch sees a change.
        std::fs::write(&live, format!("{bytes}{}", "\n".repeat(i))).unwrap();
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(100), || events(&gw, "tls_reload_failed").len()
                > before),
            "no event for {why:?}"
        );
        assert!(failed(why) > 0, "{why}: {:?}", events(&gw, "tls_reload_failed"));
        let ev = &events(&gw, "tls_reload_failed")[0];
        assert_eq!(ev["detail"]["client_ca"], live.display().to_string());
        assert_eq!(ev["detail"]["trigger"], "watch");
        assert_eq!(ev["action"], "rejected");
        assert!(served(0, 200), "{why}: the CA in service changed");
    }
    // SIGHUP re-reads the bundle even unchanged: still broken, one more event, by signal.
    let before = events(&gw, "tls_reload_failed").len();
    assert!(gw.signal("HUP"));
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(100), || events(&gw, "tls_reload_failed")
        .iter()
        .any(|e| e["detail"]["trigger"] == "signal" && e["detail"]["client_ca"].is_string())));
    assert!(events(&gw, "tls_reload_failed").len() > before);
    // Both CAs in one bundle: both clients in.
    std::fs::write(&live, format!("{}{text}", std::fs::read_to_string(pki.ca()).unwrap())).unwrap();
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(100), || served(200, 200)));
    // The upstream saw the requests that were served, nothing of a refused handshake.
    assert_eq!(up.requests_excluding("/health").len(), ok.get());
    let m = portcullis_tests::Client::new().get(&gw.control_url("/metrics"), &[]).text();
    assert!(m.lines().any(|l| l.starts_with("portcullis_tls_reloads_total{result=\"failed\"}") && !l.ends_with(" 0")));
}

fn events(gw: &Gateway, kind: &str) -> Vec<serde_json::Value> {
    control_get(gw, &format!("/v1/events?type={kind}"), VIEWER).json()["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn certificates_reload_on_change_and_sighup_and_a_broken_pair_keeps_the_old() {
    let pki = Pki::new();
    let (c, k) = pki.leaf("first", &["localhost"], 2);
    let (c2, k2) = pki.leaf("second", &["localhost"], 2);
    let (c3, k3) = pki.leaf("third", &["localhost"], 2);
    let (_, wrong_key) = pki.leaf("unrelated", &["localhost"], 2);
    let (expired, expired_key) = pki.leaf("expired", &["localhost"], -1);
    let (elsewhere, elsewhere_key) = pki.leaf("elsewhere", &["other.test"], 2);
    let empty = pki.dir().join("empty.key");
    std::fs::write(&empty, "").unwrap();
    let up = Upstream::start("app");
    // Serve from copies we can overwrite; `names` pins what this pair must cover.
    let dir = TempDir::new("pcx-live");
    let (lc, lk) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    let copy = |from_c: &Path, from_k: &Path| {
        // Key first then cert: a watcher may read in between; it must refuse, then recover.
        std::fs::copy(from_k, &lk).unwrap();
        std::fs::copy(from_c, &lc).unwrap();
    };
    copy(&c, &k);
    let more = "  watch_interval_ms: 200\n";
    let tls = format!(
        "tls:\n  certificates:\n    - {{ cert: \"{}\", key: \"{}\", names: [localhost] }}\n{more}",
        lc.display(),
        lk.display()
    );
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let addr = gw.proxy_addr();
    let cn = || served_cn(addr, Some("localhost"));
    assert_eq!(cn().as_deref(), Some("first"));

    // A good new pair on disk: picked up by the watch.
    copy(&c2, &k2);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(100), || cn().as_deref() == Some("second")));
    let failed_before = events(&gw, "tls_reload_failed").len();

    // Broken pairs: each keeps "second" in service and is reported.
    let broken: [(&Path, &Path, &str); 4] = [
        (&c3, &wrong_key, "does not match"),
        (&expired, &expired_key, "expired"),
        (&elsewhere, &elsewhere_key, "do not cover localhost"),
        (&c3, &empty, "no private key"),
    ];
    for (i, (bc, bk, why)) in broken.iter().enumerate() {
        std::fs::copy(bk, &lk).unwrap();
        std::fs::copy(bc, &lc).unwrap();
        let want = failed_before + i + 1;
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(100), || events(&gw, "tls_reload_failed")
                .iter()
                .any(|e| e["detail"]["error"].as_str().is_some_and(|s| s.contains(why)))),
            "no event for {why}: {:?}",
            events(&gw, "tls_reload_failed")
        );
        assert!(events(&gw, "tls_reload_failed").len() >= want);
        assert_eq!(cn().as_deref(), Some("second"), "{why}");
        assert_eq!(https(&gw, Proto::H2, "/api/x", &[], &[]).status, 200);
    }
    let ev = events(&gw, "tls_reload_failed");
    assert_eq!(ev[0]["severity"], "warning");
    assert_eq!(ev[0]["action"], "rejected");

    // SIGHUP re-reads every pair: a good one goes into service.
    copy(&c3, &k3);
    assert!(gw.signal("HUP"));
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(100), || cn().as_deref() == Some("third")));

    // Metrics: the expiry of what is in service, and the reload counts.
    let m = portcullis_tests::Client::new().get(&gw.control_url("/metrics"), &[]).text();
    let line = m.lines().find(|l| l.starts_with("portcullis_tls_certificate_not_after_seconds{")).unwrap();
    let not_after: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(not_after > now && not_after < now + 3 * 86_400, "{line}");
    assert!(m.contains("portcullis_tls_reloads_total{result=\"failed\"}"));
}

#[test]
fn a_certificate_near_its_expiry_is_an_event() {
    let up = Upstream::start("app");
    // Valid two days, warned 21 days ahead by default.
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(100), || !events(
        &gw,
        "tls_certificate_expiring"
    )
    .is_empty()));
    let ev = events(&gw, "tls_certificate_expiring");
    assert_eq!(ev.len(), 1, "once, not on every poll");
    let days = ev[0]["detail"]["days_left"].as_i64().unwrap();
    assert!((1..=2).contains(&days), "{days}");
    // A window that does not reach it: no event.
    let (_pki, tls) = localhost_tls("  expiry_warning_days: 1\n");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    std::thread::sleep(Duration::from_millis(500));
    assert!(events(&gw, "tls_certificate_expiring").is_empty());
}

#[test]
fn validate_checks_certificates_with_file_and_line() {
    let pki = Pki::new();
    let (c, k) = pki.leaf("good", &["localhost", "*.svc.test"], 2);
    let (_, other_key) = pki.leaf("other", &["localhost"], 2);
    let (expired, expired_key) = pki.leaf("expired", &["localhost"], -1);
    let up = Upstream::start("app");
    let dir = TempDir::new("pcx-validate");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("base.yaml"), EMPTY_RULES).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (format!("    - {{ cert: \"{}\", key: \"{}\" }}\n", c.display(), other_key.display()), "does not match"),
        (format!("    - {{ cert: \"{}\", key: \"{}\" }}\n", expired.display(), expired_key.display()), "expired"),
        (
            format!("    - {{ cert: \"{}\", key: \"{}\", names: [api.example] }}\n", c.display(), k.display()),
            "do not cover api.example",
        ),
        (
            format!("    - {{ cert: \"{}\", key: \"{}\", names: [a.b.svc.test] }}\n", c.display(), k.display()),
            "do not cover a.b.svc.test",
        ),
        (format!("    - {{ cert: \"/nonexistent/c.pem\", key: \"{}\" }}\n", k.display()), "cannot read"),
        (format!("    - {{ cert: \"{}\", key: \"{}\" }}\n", k.display(), k.display()), "no certificate"),
    ];
    for (entry, why) in &cases {
        let yaml = Cfg::new(&[up.addr()])
            .rules_dir(&rules)
            .state_dir(dir.path())
            .extra(&format!("tls:\n  certificates:\n{entry}"))
            .yaml();
        let cfg_path = dir.path().join("g.yaml");
        std::fs::write(&cfg_path, &yaml).unwrap();
        let line = yaml.lines().position(|l| l.starts_with("    - { cert:")).unwrap() + 1;
        let (code, out, _) = run_cli(BIN, &["validate", "--config", cfg_path.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{why}: {out}");
        assert!(out.contains(&format!("g.yaml:{line}")), "{why}: {out}");
        assert!(out.contains(why), "{why}: {out}");
    }
    // The good pair, its wildcard covering a configured name: ok.
    let yaml = Cfg::new(&[up.addr()])
        .rules_dir(&rules)
        .state_dir(dir.path())
        .extra(&format!(
            "tls:\n  certificates:\n    - {{ cert: \"{}\", key: \"{}\", names: [localhost, x.svc.test] }}\n",
            c.display(),
            k.display()
        ))
        .yaml();
    let cfg_path = dir.path().join("g.yaml");
    std::fs::write(&cfg_path, &yaml).unwrap();
    let (code, out, _) = run_cli(BIN, &["validate", "--config", cfg_path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
}

/// The shipped `config/gateway.yaml` with its commented `tls:` section switched on (and test
/// addresses), a certificate beside it: `curl --http2 https://…` works.
#[test]
fn the_shipped_config_serves_h2_with_a_certificate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = std::fs::read_to_string(root.join("config/gateway.yaml")).unwrap();
    let up = Upstream::start("app");
    let mut yaml = String::new();
    let mut in_tls = false;
    for line in shipped.lines() {
        in_tls = line == "# tls:" || (in_tls && line.starts_with("#   "));
        yaml.push_str(if in_tls { &line[2..] } else { line });
        yaml.push('\n');
    }
    assert!(yaml.contains("\ntls:\n  certificates:\n    - { cert: tls/gateway.pem"), "{yaml}");
    let yaml = yaml
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("127.0.0.1:3000", &up.addr().to_string())
        .replace("../var/state", "{{DIR}}/state")
        .replace("/tmp/portcullis_upgrade.sock", "{{DIR}}/upgrade.sock")
        .replace("/tmp/portcullis.pid", "{{DIR}}/portcullis.pid");
    let pki = Pki::new();
    let (c, k) = pki.leaf("gateway", &["localhost"], 2);
    let (cert, key) = (std::fs::read_to_string(c).unwrap(), std::fs::read_to_string(k).unwrap());
    let mut files = vec![("tls/gateway.pem".to_string(), cert), ("tls/gateway.key".to_string(), key)];
    for f in std::fs::read_dir(root.join("config/rules")).unwrap() {
        let f = f.unwrap();
        files.push((format!("rules/{}", f.file_name().to_string_lossy()), std::fs::read_to_string(f.path()).unwrap()));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let gw = Gateway::start_with(BIN, &yaml, &[], &files);
    let ca = pki.ca().display().to_string();
    let r = curl(Proto::H2, gw.proxy_addr(), "localhost", "/api/orders", &[], &["--cacert", &ca]);
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"), "{r:?}");
    assert_eq!(up.last_excluding("/health").unwrap().header("x-forwarded-proto"), Some("https"));
}

#[test]
fn the_control_listener_can_terminate_tls_too() {
    let up = Upstream::start("app");
    let (_pki, tls) = localhost_tls("  control: true\n");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let auth = bearer(VIEWER);
    let r = curl(Proto::H1, gw.control_addr(), "localhost", "/v1/switches", &[("authorization", &auth)], &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["maintenance"].is_object() || r.json().is_object());
    // Plain HTTP on it gets no answer from the control app (a token would have travelled in clear).
    let plain = portcullis_tests::Client::new().try_request(
        "GET",
        &gw.control_url("/v1/switches"),
        &[("authorization", &auth)],
        None,
    );
    assert!(plain.map(|r| r.status != 200).unwrap_or(true));
    // The proxy listener still serves h2.
    assert_eq!(https(&gw, Proto::H2, "/api/x", &[], &[]).status, 200);
}

#[test]
fn hsts_per_route_over_https_only() {
    let up = Upstream::with_fn("app", |_| {
        portcullis_tests::Reply::text(200, "ok").with_header("strict-transport-security", "max-age=1")
    });
    let routes = "  - id: api\n    path_prefix: /api\n    upstream: app\n    hsts: \"max-age=31536000; includeSubDomains\"\n  - id: default\n    path_prefix: /\n    upstream: app\n";
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).routes(routes).extra(&tls).start();
    for proto in [Proto::H1, Proto::H2] {
        let r = https(&gw, proto, "/api/x", &[], &[]);
        assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000; includeSubDomains"), "{proto:?}");
        // A route without `hsts` passes the upstream's answer as it is.
        let r = https(&gw, proto, "/other", &[], &[]);
        assert_eq!(r.header("strict-transport-security"), Some("max-age=1"));
    }
    drop(gw);
    // Over plain HTTP the route's value is not added (browsers ignore it there anyway).
    let gw = Cfg::new(&[up.addr()]).routes(routes).start();
    let r = portcullis_tests::Client::new().get(&gw.url("/api/x"), &[]);
    assert_eq!(r.header("strict-transport-security"), Some("max-age=1"));
    // A value that is not HSTS is a config error.
    let bad = routes.replace("max-age=31536000; includeSubDomains", "includeSubDomains");
    let err = Gateway::try_start_with(
        BIN,
        &Cfg::new(&[up.addr()]).routes(&bad).yaml(),
        &[],
        &[("rules/base.yaml", EMPTY_RULES)],
    )
    .err()
    .unwrap();
    assert!(err.output.contains("routes[0].hsts"), "{}", err.output);
}

#[test]
fn sessions_resume() {
    let up = Upstream::start("app");
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let dir = TempDir::new("pcx-sess");
    let sess = dir.path().join("s.pem").display().to_string();
    let run = |io: &str| {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &gw.proxy_addr().to_string(),
                "-servername",
                "localhost",
                "-tls1_2",
                io,
                &sess,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run("-sess_out");
    assert!(first.lines().any(|l| l.starts_with("New, TLSv1.2")), "{first}");
    let second = run("-sess_in");
    assert!(second.lines().any(|l| l.starts_with("Reused, TLSv1.2")), "{second}");
}
