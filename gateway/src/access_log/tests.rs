use super::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn line<'a>(path: &'a str, reason: &'a str, tenant: &'a str) -> Line<'a> {
    Line {
        success: false,
        duration_ns: 410_010,
        request_id: "01a23aba51894bbf1815072913e1221f",
        method: "GET",
        path,
        status: 403,
        body_bytes: 0,
        source_ip: Some("2001:db8::7".parse().unwrap()),
        route: "api",
        upstream: Some("127.0.0.1:45127".parse().unwrap()),
        deny_code: "forbidden",
        deny_reason: reason,
        webhook_secret_id: "",
        tenant_id: tenant,
        user_id: "user-9",
        session_id: "",
        error: "",
    }
}

/// What `tracing`'s JSON formatter (configured as `logging::init` configures it) wrote for the
/// access log before this module: the line must stay the same object, key for key, in order.
fn through_tracing(l: &Line<'_>) -> String {
    let sink = Sink::default();
    let out = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(move || out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // (Its `target` is this module's; the line's is checked on its own below.)
        tracing::info!(
            log.logger = "access",
            event.kind = "event",
            event.category = "web",
            event.action = "request",
            event.outcome = if l.success { "success" } else { "failure" },
            event.duration = l.duration_ns,
            http.request.id = %l.request_id,
            http.request.method = %l.method,
            url.path = %l.path,
            http.response.status_code = l.status,
            http.request.body.bytes = l.body_bytes,
            source.ip = l.source_ip.map(|i| i.to_string()).unwrap_or_default(),
            route = l.route,
            upstream.address = l.upstream.map(|b| b.to_string()).unwrap_or_default(),
            deny.code = l.deny_code,
            deny.reason = l.deny_reason,
            webhook.secret_id = l.webhook_secret_id,
            tenant.id = l.tenant_id,
            user.id = l.user_id,
            session.id = l.session_id,
            error.message = l.error,
            "request"
        );
    });
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn ours(l: &Line<'_>, now: SystemTime) -> String {
    let mut buf = Vec::new();
    render(&mut buf, l, now);
    String::from_utf8(buf).unwrap()
}

/// Keys in order with their values, the timestamp left out (the two were written at different
/// instants) and the target's value (the old line's was its call site, `portcullis::proxy::end`).
fn keyed(s: &str) -> Vec<(String, serde_json::Value)> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s).unwrap();
    v.into_iter()
        .filter(|(k, _)| k != "timestamp")
        .map(|(k, v)| if k == "target" { (k, serde_json::Value::Null) } else { (k, v) })
        .collect()
}

/// The keys as written, in order (a `{"` or `,"` opening a key cannot occur inside a string
/// value, where quotes are escaped).
fn key_order(s: &str) -> Vec<&str> {
    let mut keys = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(['{', ',']) {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('"') {
            if let Some(end) = after.find("\":") {
                if after[..end].bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_') {
                    keys.push(&after[..end]);
                }
            }
        }
    }
    keys
}

#[test]
fn the_line_is_the_object_tracing_wrote_key_for_key() {
    // Hostile and odd values too: quotes, backslashes, controls, non-ASCII, an empty field.
    for (path, reason, tenant) in [
        ("/api/x", "", "12"),
        ("/api/\"quoted\"\\back", "tenant_mismatch", ""),
        ("/caf\u{e9}/\u{1f600}", "line\nbreak\ttab\u{1}\u{7f}", "t\u{2028}x"),
        ("", "", ""),
    ] {
        let l = line(path, reason, tenant);
        let a = through_tracing(&l);
        let b = ours(&l, SystemTime::now());
        assert!(b.ends_with('\n') && !b[..b.len() - 1].contains('\n'), "one line: {b:?}");
        assert_eq!(keyed(&a), keyed(&b), "\ntracing: {a}\nours:    {b}");
        assert_eq!(key_order(&a), key_order(&b), "key order");
        assert_eq!(key_order(&b).len(), 25, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["target"], "portcullis::proxy::end");
    }
    let mut l = line("/x", "", "");
    (l.success, l.source_ip, l.upstream, l.status, l.body_bytes, l.duration_ns) = (true, None, None, 0, u64::MAX, 0);
    assert_eq!(keyed(&through_tracing(&l)), keyed(&ours(&l, SystemTime::now())));
}

#[test]
fn the_timestamp_is_rfc3339_utc_with_microseconds() {
    let l = line("/x", "", "");
    for (secs, micros, want) in [
        (0, 0, "1970-01-01T00:00:00.000000Z"),
        (1_796_281_618, 825_807, "2026-12-03T07:06:58.825807Z"),
        (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
        (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
    ] {
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        let v: serde_json::Value = serde_json::from_str(&ours(&l, t)).unwrap();
        assert_eq!(v["timestamp"], want);
        // chrono agrees.
        let c = chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        assert_eq!(c, want);
    }
    // The per-second cache: two lines in two seconds read their own second.
    let t0 = UNIX_EPOCH + Duration::from_secs(1_796_281_618);
    let mut buf = Vec::new();
    timestamp(&mut buf, t0);
    buf.clear();
    timestamp(&mut buf, t0 + Duration::from_millis(1500));
    assert_eq!(String::from_utf8(buf).unwrap(), "2026-12-03T07:06:59.500000Z");
}

#[test]
fn numbers_are_decimal() {
    for n in [0u64, 7, 10, 409_999, u64::MAX] {
        let mut buf = Vec::new();
        number(&mut buf, n);
        assert_eq!(String::from_utf8(buf).unwrap(), n.to_string());
    }
}
