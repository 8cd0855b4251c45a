//! Webhook signature verification through the real gateway: for each provider a valid delivery
//! forwarded byte for byte, and every failure (missing, malformed, bad, stale, future, replayed)
//! refused with 401 `invalid_signature`, a `webhook_invalid_signature` event, and nothing at the
//! upstream — not even the request head. Rotation (and rotation by reload), replay within and
//! after the window, a failed upstream releasing the delivery for the sender's retry, bodies over
//! the cap, large and chunked bodies, `Expect: 100-continue`, a wrong-route secret, monitor mode
//! and the runtime flag.
use crate::common::*;
use crate::identity::{now, wait_events};
use base64::Engine as _;
use portcullis_rules::webhook::sign_standard_webhooks;
use portcullis_tests::{parse_response, raw_exchange, Client, Gateway, RawConn, Reply, Resp, Upstream};
use ring::hmac;
use std::time::Duration;

pub(crate) const GH: &str = "gh-current-secret-0123456789abcdef";
const GH_OLD: &str = "gh-previous-secret-0123456789abcdef";
const GH_NEW: &str = "gh-next-secret-0123456789abcdef0123";
const STRIPE: &str = "whsec_e2eStripeSecret0123456789abcdef";
pub(crate) const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GENERIC: &str = "generic-secret-0123456789abcdef01";

const ROUTES: &str = "  - id: webhooks\n    path_prefix: /webhooks\n    upstream: app\n    max_body_bytes: 1048576\n  - id: default\n    path_prefix: /\n    upstream: app\n";

fn rules(gh_secrets: &str) -> String {
    format!(
        r#"version: 1
webhooks:
  - id: github
    path_prefix: /webhooks/github
    provider: github
    secrets: {gh_secrets}
    replay_window_seconds: 2
  - id: stripe
    routes: [webhooks]
    path_prefix: /webhooks/stripe
    provider: stripe
    secrets: [{{id: s-2026, env: PC_STRIPE}}]
    tolerance_seconds: 60
  - id: sw
    routes: [webhooks]
    path_prefix: /webhooks/sw
    provider: standard_webhooks
    secrets: [{{id: sw-1, env: PC_SW}}]
    max_body_bytes: 300000
  - id: generic
    routes: [webhooks]
    path_prefix: /webhooks/generic
    provider: generic
    generic: {{header: x-signature, algorithm: sha512, encoding: base64, prefix: "v1=", timestamp_header: x-timestamp}}
    secrets: [{{id: g-1, env: PC_GENERIC}}]
  - id: small
    routes: [webhooks]
    path_prefix: /webhooks/small
    provider: github
    secrets: [{{id: current, env: PC_GH}}]
    max_body_bytes: 1000
  - id: watch
    mode: monitor
    routes: [webhooks]
    path_prefix: /webhooks/watch
    provider: github
    secrets: [{{id: current, env: PC_GH}}]
"#
    )
}

const GH_TWO: &str = "[{id: current, env: PC_GH}, {id: previous, file: secrets/gh-previous.txt}]";

fn start(up: &Upstream) -> Gateway {
    Cfg::new(&[up.addr()])
        .routes(ROUTES)
        .rule_file("webhooks.yaml", &rules(GH_TWO))
        .rule_file("secrets/gh-previous.txt", &format!("{GH_OLD}\n"))
        .rule_file("secrets/gh-next.txt", &format!("{GH_NEW}\n"))
        .rules_opts("  debounce_ms: 50\n  poll_interval_ms: 300\n")
        .start_env(&[("PC_GH", GH), ("PC_STRIPE", STRIPE), ("PC_SW", SW), ("PC_GENERIC", GENERIC)])
}

fn mac(alg: hmac::Algorithm, key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(alg, key.as_bytes()));
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

pub(crate) fn github(secret: &str, body: &[u8], delivery: &str) -> Vec<(String, String)> {
    vec![
        ("x-hub-signature-256".into(), format!("sha256={}", hex::encode(mac(hmac::HMAC_SHA256, secret, &[body])))),
        ("x-github-delivery".into(), delivery.into()),
        ("x-github-event".into(), "push".into()),
    ]
}

fn stripe(secret: &str, body: &[u8], t: u64) -> Vec<(String, String)> {
    let t = t.to_string();
    let sig = hex::encode(mac(hmac::HMAC_SHA256, secret, &[t.as_bytes(), b".", body]));
    vec![("stripe-signature".into(), format!("t={t},v1={sig},v0=ignored"))]
}

pub(crate) fn standard(id: &str, body: &[u8], t: u64) -> Vec<(String, String)> {
    sign_standard_webhooks(SW, id, t, body).unwrap().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn generic(body: &[u8], t: u64) -> Vec<(String, String)> {
    let t = t.to_string();
    let sig =
        base64::engine::general_purpose::STANDARD.encode(mac(hmac::HMAC_SHA512, GENERIC, &[t.as_bytes(), b".", body]));
    vec![("x-signature".into(), format!("v1={sig}")), ("x-timestamp".into(), t)]
}

/// Headers as (name, value) pairs.
type Headers = Vec<(String, String)>;

pub(crate) fn post(gw: &Gateway, path: &str, headers: &[(String, String)], body: &[u8]) -> Resp {
    let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.push(("content-type", "application/json"));
    Client::new().post(&gw.url(path), &h, body)
}

pub(crate) fn with(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = headers.iter().filter(|(k, _)| k != name).cloned().collect();
    h.push((name.into(), value.into()));
    h
}

fn without(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
    headers.iter().filter(|(k, _)| k != name).cloned().collect()
}

fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.json()["code"], "invalid_signature", "{what}");
}

/// A body that is not valid UTF-8 and has CRLFs, NULs and high bytes: forwarded exactly or not at all.
fn awkward_body(tag: &str) -> Vec<u8> {
    let mut b = format!(r#"{{"id":"evt_{tag}","type":"charge.succeeded","note":"a\r\nb"}}"#).into_bytes();
    b.extend_from_slice(&[0, 0xff, 0xfe, b'\n', 0x80]);
    b
}

/// Valid JSON (Stripe's delivery id is the event `id` in the body), with non-ASCII text and spacing
/// a re-serialisation would change.
fn stripe_body(tag: &str) -> Vec<u8> {
    format!("{{ \"id\": \"evt_{tag}\",\n  \"type\":\"charge.succeeded\", \"name\": \"Şule Çağlar\" }}").into_bytes()
}

#[test]
fn each_provider_forwards_a_valid_delivery_byte_for_byte_and_refuses_every_failure_with_nothing_upstream() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let t = now();

    let cases: Vec<(&str, Vec<u8>, Headers)> = {
        let b1 = awkward_body("gh");
        let b2 = stripe_body("stripe");
        let b3 = awkward_body("sw");
        let b4 = awkward_body("generic");
        vec![
            ("/webhooks/github/push", b1.clone(), github(GH, &b1, "d-1")),
            ("/webhooks/stripe", b2.clone(), stripe(STRIPE, &b2, t)),
            ("/webhooks/sw", b3.clone(), standard("msg_1", &b3, t)),
            ("/webhooks/generic", b4.clone(), generic(&b4, t)),
        ]
    };
    for (path, body, headers) in &cases {
        let r = post(&gw, path, headers, body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let got = up.last().unwrap();
        assert_eq!(got.path, *path);
        assert_eq!(&got.body, body, "{path}: the exact bytes");
        assert_eq!(got.header("content-length"), Some(body.len().to_string().as_str()));
        for (k, v) in headers {
            assert_eq!(got.header(k), Some(v.as_str()), "{path}: {k} forwarded as sent");
        }
    }
    assert_eq!(up.count(), 4);

    // Every failure, per provider: 401, nothing upstream.
    let tampered = |b: &[u8]| {
        let mut b = b.to_vec();
        b[2] ^= 1;
        b
    };
    let (gh_path, gh_body, gh_h) = &cases[0];
    let (st_path, st_body, st_h) = &cases[1];
    let (sw_path, sw_body, sw_h) = &cases[2];
    let (ge_path, ge_body, ge_h) = &cases[3];
    let bad: Vec<(&str, Headers, Vec<u8>, &str)> = vec![
        (gh_path, without(gh_h, "x-hub-signature-256"), gh_body.clone(), "missing_signature"),
        (gh_path, with(gh_h, "x-hub-signature-256", "sha1=0123"), gh_body.clone(), "malformed_signature"),
        (gh_path, gh_h.clone(), tampered(gh_body), "bad_signature"),
        (gh_path, github(GH, gh_body, "d-1"), gh_body.clone(), "replayed"),
        (st_path, without(st_h, "stripe-signature"), st_body.clone(), "missing_signature"),
        (st_path, with(st_h, "stripe-signature", "v1=abc"), st_body.clone(), "malformed_signature"),
        (st_path, st_h.clone(), tampered(st_body), "bad_signature"),
        (st_path, stripe(STRIPE, st_body, t - 61), st_body.clone(), "stale_timestamp"),
        (st_path, stripe(STRIPE, st_body, t + 120), st_body.clone(), "future_timestamp"),
        (st_path, stripe(STRIPE, st_body, t - 1), st_body.clone(), "replayed"), // same event id, re-signed
        (sw_path, without(sw_h, "webhook-id"), sw_body.clone(), "missing_signature"),
        (sw_path, with(sw_h, "webhook-timestamp", "soon"), sw_body.clone(), "malformed_signature"),
        (sw_path, sw_h.clone(), tampered(sw_body), "bad_signature"),
        (sw_path, standard("msg_2", sw_body, t - 400), sw_body.clone(), "stale_timestamp"),
        (sw_path, standard("msg_3", sw_body, t + 400), sw_body.clone(), "future_timestamp"),
        (sw_path, sw_h.clone(), sw_body.clone(), "replayed"),
        (ge_path, without(ge_h, "x-timestamp"), ge_body.clone(), "missing_signature"),
        (ge_path, with(ge_h, "x-signature", "sha512=abc"), ge_body.clone(), "malformed_signature"),
        (ge_path, ge_h.clone(), tampered(ge_body), "bad_signature"),
        (ge_path, ge_h.clone(), ge_body.clone(), "replayed"),
    ];
    for (path, headers, body, why) in &bad {
        assert_refused(&post(&gw, path, headers, body), &format!("{path} {why}"));
    }
    assert_eq!(up.count(), 4, "no refused delivery reached the upstream");

    let ev = wait_events(&gw, "type=webhook_invalid_signature&limit=100", bad.len());
    assert_eq!(ev.len(), bad.len());
    let mut got: Vec<(String, String)> = ev
        .iter()
        .map(|e| (e["rule_id"].as_str().unwrap().to_owned(), e["detail"]["reason"].as_str().unwrap().to_owned()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = bad
        .iter()
        .map(|(p, _, _, why)| {
            (p.trim_start_matches("/webhooks/").split('/').next().unwrap().to_owned(), why.to_string())
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    for e in &ev {
        assert_eq!(e["severity"], "warning");
        assert_eq!(e["action"], "blocked");
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
        let text = e.to_string();
        for secret in [GH, GH_OLD, STRIPE, SW, GENERIC] {
            assert!(!text.contains(secret), "no secret in events");
        }
        assert!(!text.contains("sha256="), "no signature in events: {text}");
    }
    let replay = ev.iter().find(|e| e["rule_id"] == "stripe" && e["detail"]["reason"] == "replayed").unwrap();
    assert_eq!(replay["detail"]["delivery_id"], "evt_stripe");
    assert_eq!(replay["detail"]["secret_id"], "s-2026");
    assert_eq!(
        metric(&gw, r#"portcullis_webhook_deliveries_total{rule="sw",result="replayed",secret="sw-1"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&gw, r#"portcullis_webhook_deliveries_total{rule="github",result="accepted",secret="current"}"#),
        Some(1.0)
    );
}

#[test]
fn rotation_replay_windows_and_a_failed_upstream_releasing_the_delivery() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let body = br#"{"ref":"refs/heads/main"}"#;

    // Both secrets of the rotation pass; the metrics say which one signed.
    assert_eq!(post(&gw, "/webhooks/github", &github(GH, body, "r-1"), body).status, 200);
    assert_eq!(post(&gw, "/webhooks/github", &github(GH_OLD, b"{}", "r-2"), b"{}").status, 200);
    let series = |s: &str| {
        metric(&gw, &format!(r#"portcullis_webhook_deliveries_total{{rule="github",result="accepted",secret="{s}"}}"#))
    };
    assert_eq!((series("current"), series("previous")), (Some(1.0), Some(1.0)));
    // A secret not (yet) configured does not.
    assert_refused(
        &post(&gw, "/webhooks/github", &github(GH_NEW, b"{}", "r-3"), b"{}"),
        "next secret before the reload",
    );

    // Replays within the window: the same delivery, and the same signature under a new
    // (unsigned) delivery id. After the window (2 s) the delivery is accepted again.
    assert_refused(&post(&gw, "/webhooks/github", &github(GH, body, "r-1"), body), "replay");
    assert_refused(&post(&gw, "/webhooks/github", &github(GH, body, "r-1-renamed"), body), "renamed replay");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(post(&gw, "/webhooks/github", &github(GH, body, "r-1"), body).status, 200, "after the window");

    // Rotation by reload: add the next secret; every delivery in between is accepted by one of them.
    let mark = gw.log_mark();
    write_atomic(
        &gw.dir().join("rules/webhooks.yaml"),
        &rules("[{id: next, file: secrets/gh-next.txt}, {id: current, env: PC_GH}]"),
    );
    for i in 0..40 {
        let id = format!("during-{i}");
        assert_eq!(post(&gw, "/webhooks/github", &github(GH, id.as_bytes(), &id), id.as_bytes()).status, 200);
        if gw.logs_since(mark).iter().any(|l| l.contains("rules reloaded")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.wait_for_log_since(mark, |l| l.contains("rules reloaded"), Duration::from_secs(5)), "{}", gw.output());
    assert_eq!(post(&gw, "/webhooks/github", &github(GH_NEW, b"[1]", "n-1"), b"[1]").status, 200, "the next secret");
    assert_refused(&post(&gw, "/webhooks/github", &github(GH_OLD, b"[2]", "o-1"), b"[2]"), "the retired secret");
    // The reload kept the replay cache: a delivery accepted before it is still a replay.
    assert_refused(
        &post(&gw, "/webhooks/github", &github(GH, b"during-0", "during-0"), b"during-0"),
        "replay across a reload",
    );

    // The upstream fails the first attempt: the sender's retry of the same delivery is not a replay.
    let up2 = Upstream::with_fn("flaky", |r| {
        if r.header("x-attempt") == Some("1") {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    });
    drop(gw);
    let gw = Cfg::new(&[up2.addr()])
        .routes(ROUTES)
        .rule_file("webhooks.yaml", &rules(GH_TWO))
        .rule_file("secrets/gh-previous.txt", GH_OLD)
        .start_env(&[("PC_GH", GH), ("PC_STRIPE", STRIPE), ("PC_SW", SW), ("PC_GENERIC", GENERIC)]);
    let b = br#"{"id":"evt_retry"}"#;
    let h = standard("msg_retry", b, now());
    assert_eq!(post(&gw, "/webhooks/sw", &with(&h, "x-attempt", "1"), b).status, 503);
    assert_eq!(post(&gw, "/webhooks/sw", &with(&h, "x-attempt", "2"), b).status, 200, "retry after a failure");
    assert_refused(&post(&gw, "/webhooks/sw", &with(&h, "x-attempt", "3"), b), "a third copy after success");
    assert_eq!(up2.count(), 2);
}

#[test]
fn bodies_over_the_cap_large_bodies_chunked_bodies_and_expect_continue() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let t = now();

    // Over the rule's cap (1000 bytes): 413 before anything is read or forwarded.
    let big = vec![b'x'; 2000];
    let r = post(&gw, "/webhooks/small", &github(GH, &big, "big-1"), &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], "payload_too_large");
    let chunked_req = |path: &str, headers: &[(String, String)], body: &[u8]| {
        let mut req =
            format!("POST {path} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        for piece in body.chunks(7000) {
            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            bytes.extend_from_slice(piece);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        bytes
    };
    let raw = raw_exchange(
        gw.proxy_addr(),
        &chunked_req("/webhooks/small", &github(GH, &big, "big-2"), &big),
        Duration::from_secs(5),
    );
    assert_eq!(parse_response(&raw).unwrap().status, 413, "chunked over the cap");
    assert_eq!(up.count(), 0);

    // A large signed body (200 KB, over Pingora's 64 KiB replay buffer) within the cap: verified
    // whole, forwarded whole.
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = post(&gw, "/webhooks/sw", &standard("msg_large", &large, t), &large);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().unwrap().body, large);
    // The same size, tampered in its last byte: refused.
    let mut forged = large.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert_refused(&post(&gw, "/webhooks/sw", &standard("msg_large2", &large, t), &forged), "tampered tail");
    // Over the rule's 300000-byte cap though under the route's.
    // (Refused on the declared length alone: the client need not send a byte of the body.)
    let huge = "POST /webhooks/sw HTTP/1.1\r\nHost: app\r\nContent-Length: 300001\r\nwebhook-id: msg_huge\r\n\r\n";
    let raw = raw_exchange(gw.proxy_addr(), huge.as_bytes(), Duration::from_secs(5));
    assert_eq!(parse_response(&raw).unwrap().status, 413);
    assert_eq!(up.count(), 1);

    // Chunked: verified over the de-chunked bytes, forwarded byte for byte.
    let body = stripe_body("chunked");
    let raw = raw_exchange(
        gw.proxy_addr(),
        &chunked_req("/webhooks/stripe", &stripe(STRIPE, &body, t), &body),
        Duration::from_secs(5),
    );
    assert_eq!(parse_response(&raw).unwrap().status, 200, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(up.last().unwrap().body, body);
    let raw = raw_exchange(
        gw.proxy_addr(),
        &chunked_req("/webhooks/stripe", &stripe(STRIPE, b"{}", t), b"{\"x\":1}"),
        Duration::from_secs(5),
    );
    assert_eq!(parse_response(&raw).unwrap().status, 401, "chunked forgery");
    // Chunked over Pingora's 64 KiB replay buffer: verified, then sent by the gateway itself,
    // whole (with its length), never truncated.
    let body = vec![b'c'; 100_000];
    let raw = raw_exchange(
        gw.proxy_addr(),
        &chunked_req("/webhooks/sw", &standard("msg_chunked_big", &body, t), &body),
        Duration::from_secs(5),
    );
    assert_eq!(parse_response(&raw).unwrap().status, 200, "{:?}", String::from_utf8_lossy(&raw[..raw.len().min(300)]));
    assert_eq!(up.count(), 3);
    let got = up.last().unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.header("content-length"), Some("100000"));
    assert_eq!(got.header("transfer-encoding"), None);
    assert!(got.header("webhook-signature").is_some(), "the sender's headers go along");
    // The same, tampered: refused like any forgery.
    let mut forged = body.clone();
    forged[99_999] = b'd';
    let raw = raw_exchange(
        gw.proxy_addr(),
        &chunked_req("/webhooks/sw", &standard("msg_chunked_big2", &body, t), &forged),
        Duration::from_secs(5),
    );
    assert_eq!(parse_response(&raw).unwrap().status, 401);
    assert_eq!(up.count(), 3);

    // `Expect: 100-continue`: answered by the gateway, the body verified, the upstream never sees
    // the expectation.
    let body = br#"{"id":"evt_expect"}"#;
    let mut head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: app\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
        body.len()
    );
    for (k, v) in stripe(STRIPE, body, t) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = RawConn::connect(gw.proxy_addr());
    conn.send(head.as_bytes()).unwrap();
    let cont = conn.read_response(Duration::from_secs(5)).expect("100 Continue");
    assert_eq!(cont.status, 100);
    conn.send(body).unwrap();
    let r = conn.read_response(Duration::from_secs(5)).expect("final response");
    assert_eq!(r.status, 200);
    let got = up.last().unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.header("expect"), None);
}

#[test]
fn wrong_route_secrets_monitor_mode_and_the_runtime_flag() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let body = br#"{"id":"evt_x"}"#;

    // Stripe's secret signing a GitHub-style delivery, and a GitHub delivery sent to the Stripe
    // endpoint: each judged by its own route's rule.
    let cross = vec![(
        "x-hub-signature-256".to_string(),
        format!("sha256={}", hex::encode(mac(hmac::HMAC_SHA256, STRIPE, &[body]))),
    )];
    assert_refused(&post(&gw, "/webhooks/github", &cross, body), "stripe secret on the github route");
    assert_refused(&post(&gw, "/webhooks/stripe", &github(GH, body, "x"), body), "github delivery on the stripe route");
    // The path prefix is matched ignoring case: an unsigned request cannot slip past the rule.
    assert_refused(&post(&gw, "/WEBHOOKS/GitHub", &[], body), "case variant of the path");
    // Outside every rule's prefix on the route: no webhook rule applies.
    assert_eq!(post(&gw, "/webhooks/unknown", &[], body).status, 200);
    assert_eq!(up.count(), 1);

    // Monitor mode: flagged, forwarded.
    assert_eq!(post(&gw, "/webhooks/watch", &[], body).status, 200);
    assert_eq!(up.count(), 2);
    let ev = wait_events(&gw, "type=webhook_invalid_signature", 5);
    let watch: Vec<_> = ev.iter().filter(|e| e["rule_id"] == "watch").collect();
    assert_eq!(watch.len(), 1, "{ev:?}");
    assert_eq!(watch[0]["action"], "flagged");
    assert_eq!(watch[0]["detail"]["reason"], "missing_signature");

    // The runtime flag off: unsigned deliveries pass (the documented last resort), and on again.
    let flag = |on: bool| {
        let auth = bearer(OPERATOR);
        let body = format!(r#"{{"enabled":{on},"reason":"provider outage drill"}}"#);
        Client::new().request(
            "PUT",
            &gw.control_url("/v1/flags/webhook_verification"),
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    assert_eq!(flag(false).status, 200);
    assert_eq!(post(&gw, "/webhooks/github", &[], body).status, 200);
    assert_eq!(flag(true).status, 200);
    assert_refused(&post(&gw, "/webhooks/github", &[], body), "flag back on");
    assert_eq!(up.count(), 3);
}

/// Issue 18 item 8: the replay cache keys on what was verified (the signed content, and the
/// delivery id where it is signed), never on header text. Each provider's delivery is accepted
/// once; every re-spelling of it — still a valid signature — is refused, and the upstream received
/// exactly one copy.
#[test]
fn replays_are_refused_however_the_signature_header_is_respelled() {
    let up = Upstream::start("app");
    let gw = start(&up);
    let sends = |path: &str, first: &Headers, body: &[u8], variants: &[Headers]| {
        let before = up.count();
        assert_eq!(post(&gw, path, first, body).status, 200, "{path}: the first delivery");
        for (i, h) in variants.iter().enumerate() {
            assert_refused(&post(&gw, path, h, body), &format!("{path} variant {i}: {h:?}"));
        }
        assert_eq!(up.count(), before + 1, "{path}: one copy upstream");
    };

    // GitHub: hex case, new (unsigned) delivery ids, no delivery id, header-name case.
    let body = br#"{"ref":"refs/heads/respelled"}"#;
    let first = github(GH, body, "g-1");
    let sig = first[0].1.strip_prefix("sha256=").unwrap().to_owned();
    let mixed: String =
        sig.chars().enumerate().map(|(i, c)| if i % 3 == 0 { c.to_ascii_uppercase() } else { c }).collect();
    let old = hex::encode(mac(hmac::HMAC_SHA256, GH_OLD, &[body]));
    let variants = vec![
        with(
            &with(&first, "x-hub-signature-256", &format!("sha256={}", sig.to_uppercase())),
            "x-github-delivery",
            "g-2",
        ),
        with(&with(&first, "x-hub-signature-256", &format!("sha256={mixed}")), "x-github-delivery", "g-3"),
        with(&first, "x-github-delivery", "g-4"),
        without(&first, "x-github-delivery"),
        vec![
            ("X-Hub-Signature-256".into(), format!("sha256={}", sig.to_uppercase())),
            ("X-GitHub-Delivery".into(), "g-5".into()),
        ],
        with(&with(&first, "x-hub-signature-256", &format!("sha256={old}")), "x-github-delivery", "g-6"),
    ];
    sends("/webhooks/github", &first, body, &variants);

    // Stripe, a body without `id`: reordered entries, added v0 / v1 entries, hex case, duplicates.
    let body = br#"{"object":"event","type":"ping"}"#;
    let t = now().to_string();
    let v1 = hex::encode(mac(hmac::HMAC_SHA256, STRIPE, &[t.as_bytes(), b".", body]));
    let zero = "0".repeat(64);
    let first: Headers = vec![("stripe-signature".into(), format!("t={t},v1={v1}"))];
    let variants: Vec<Headers> = [
        format!("v1={v1},t={t}"),
        format!("t={t},v1={v1},v0={zero}"),
        format!("t={t},v0={v1},v1={v1}"),
        format!("t={t},v1={zero},v1={v1}"),
        format!("t={t},v1={v1},v1={zero}"),
        format!("t={t},v1={}", v1.to_uppercase()),
        format!("t={t},v1={v1},v1={v1}"),
        format!("t={t},v9=x,v1={v1}"),
    ]
    .into_iter()
    .map(|v| vec![("stripe-signature".to_string(), v)])
    .collect();
    sends("/webhooks/stripe", &first, body, &variants);

    // Standard Webhooks: a signature added (before or after), double spaces, an unpadded or
    // base64url copy beside the real one, another version's entry.
    let body = br#"{"type":"user.created"}"#;
    let first = standard("msg_respelled", body, now());
    let sig = first[2].1.clone();
    let b64 = sig.strip_prefix("v1,").unwrap().to_owned();
    let other = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    let url = b64.replace('+', "-").replace('/', "_");
    let variants: Vec<Headers> = [
        format!("{sig} {other}"),
        format!("{other} {sig}"),
        format!("{sig}  {other}"),
        format!("v1,{} {sig}", b64.trim_end_matches('=')),
        format!("v1,{url} {sig}"),
        format!("v1a,AAAA {sig}"),
    ]
    .into_iter()
    .map(|v| with(&first, "webhook-signature", &v))
    .collect();
    sends("/webhooks/sw", &first, body, &variants);

    // Generic (base64, timestamped): the same signature, header-name case.
    let body = br#"{"generic":"respelled"}"#;
    let first = generic(body, now());
    let variants = vec![
        first.clone(),
        first.iter().map(|(k, v)| (k.to_uppercase(), v.clone())).collect::<Headers>(),
        vec![first[1].clone(), first[0].clone()],
    ];
    sends("/webhooks/generic", &first, body, &variants);

    // A genuinely new delivery still passes.
    let body = br#"{"ref":"refs/heads/next"}"#;
    assert_eq!(post(&gw, "/webhooks/github", &github(GH, body, "g-new"), body).status, 200);
}
