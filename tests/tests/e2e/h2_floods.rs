//! HTTP/2 connection-level protections through the wire, with a raw HTTP/2 client (the `h2`
//! crate over rustls, no certificate check): the advertised limits, and rapid reset
//! (CVE-2023-44487) ending in `GOAWAY` with the upstream seeing a bounded number of requests;
//! and, with a raw frame writer (below), what the `h2` crate would never send: CONTINUATION
//! floods, HPACK bombs, SETTINGS/PING/no-op frame floods, invalid SETTINGS and window updates,
//! stream-count abuse, streams the client makes the server reset ("MadeYouReset") and empty DATA
//! frames. After each attack: the gateway is up, its memory barely moved, a fresh client is
//! served 200, and the upstream saw only the legitimate requests.
use crate::common::*;
use crate::tls::localhost_tls;
use portcullis_tests::{Gateway, Reply, Upstream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

type H2 = (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>);

/// TLS to the gateway as `localhost`, ALPN `h2` only.
async fn tls_h2(gw: &Gateway) -> Tls {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.proxy_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

async fn connect(gw: &Gateway) -> H2 {
    let (send, conn) = h2::client::handshake(tls_h2(gw).await).await.unwrap();
    (send, tokio::spawn(conn))
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder().uri(format!("https://localhost{path}")).body(()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn advertised_limits() {
    let up = Upstream::start("app");
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    rt().block_on(async {
        let (send, _conn) = connect(&gw).await;
        let mut send = send.ready().await.unwrap();
        // One exchange so the server's SETTINGS have been applied.
        let (resp, _) = send.send_request(request("/api/x"), true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        assert_eq!(send.current_max_send_streams(), 100);
    });
}

#[test]
fn rapid_reset_ends_in_goaway() {
    // Over the budget of 20 streams reset before the gateway accepted them (with a budget of a
    // million, this connection stays open and the test fails; 5 resets are within budget).
    const RESETS: usize = 30;
    // A slow upstream: a stream reset right after its HEADERS must cost the gateway little.
    let up = Upstream::with_fn("app", |_| Reply::status(200).with_delay(Duration::from_millis(200)));
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let sent = rt().block_on(async {
        let (mut send, conn) = connect(&gw).await;
        let mut sent = 0;
        for _ in 0..RESETS {
            send = match send.ready().await {
                Ok(s) => s,
                Err(_) => break,
            };
            match send.send_request(request("/api/x"), false) {
                Ok((_, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    sent += 1;
                }
                Err(_) => break,
            }
        }
        // The server closes the connection: GOAWAY (ENHANCE_YOUR_CALM) or a plain close.
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(ended.is_ok(), "the connection outlived the rapid resets");
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let reached = up.requests_excluding("/health").len();
    eprintln!("rapid reset: sent {sent}, upstream saw {reached}");
    assert!(sent < RESETS || reached < 200, "sent {sent}, upstream saw {reached}");
    assert!(reached < 500, "upstream saw {reached} of {sent} reset requests");
    // The gateway still serves.
    assert_eq!(crate::tls::https(&gw, portcullis_tests::tls::Proto::H2, "/api/x", &[], &[]).status, 200);
}

// ---- A raw HTTP/2 frame client: floods and malformed frames the `h2` crate will not send ----

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
// Error codes (RFC 9113 section 7).
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix, the high bits of the first byte set to `flags`.
fn hpack_int(flags: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal field without indexing, new name (no Huffman).
fn hpack_literal(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value);
}

/// The header block of a request: `GET` or `POST` (static table), `https`, `:path` and
/// `:authority: localhost` (literals with indexed names).
fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut b = vec![if method == "POST" { 0x83 } else { 0x82 }, 0x87];
    b.push(0x04);
    hpack_int(0, 7, path.len(), &mut b);
    b.extend_from_slice(path.as_bytes());
    b.push(0x01);
    hpack_int(0, 7, "localhost".len(), &mut b);
    b.extend_from_slice(b"localhost");
    b
}

/// What the server said on a raw connection.
#[derive(Debug, Default)]
struct Seen {
    /// The error code of its `GOAWAY`.
    goaway: Option<u32>,
    /// `(stream, error code)` of its `RST_STREAM`s.
    resets: Vec<(u32, u32)>,
    /// Streams it answered with `HEADERS`.
    responses: Vec<u32>,
    /// It closed the connection (EOF or error).
    closed: bool,
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A connection to the gateway: TLS (ALPN `h2`) or plain TCP (h2c).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

struct Raw {
    io: Box<dyn Io>,
    rbuf: Vec<u8>,
    seen: Seen,
}

impl Raw {
    /// TLS with ALPN `h2`, the preface, empty SETTINGS, and the ACK of the server's SETTINGS.
    async fn open(gw: &Gateway) -> Raw {
        Raw::over(Box::new(tls_h2(gw).await)).await
    }

    /// The same by prior knowledge over plain TCP (`listen.h2c`).
    async fn open_h2c(gw: &Gateway) -> Raw {
        Raw::over(Box::new(tokio::net::TcpStream::connect(gw.proxy_addr()).await.unwrap())).await
    }

    async fn over(io: Box<dyn Io>) -> Raw {
        let mut raw = Raw { io, rbuf: Vec::new(), seen: Seen::default() };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        assert!(raw.send(&hello).await);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (kind, flags, _, _) = raw.read_frame(deadline).await.expect("server SETTINGS");
            if kind == SETTINGS && flags & ACK == 0 {
                break;
            }
        }
        assert!(raw.send(&frame(SETTINGS, ACK, 0, &[])).await);
        raw
    }

    /// Writes all of `bytes` (in 16 KiB pieces); `false` once the server stops reading for 2 s
    /// or the connection is gone.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        for chunk in bytes.chunks(16 * 1024) {
            match tokio::time::timeout(Duration::from_secs(2), self.io.write_all(chunk)).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
        matches!(tokio::time::timeout(Duration::from_secs(2), self.io.flush()).await, Ok(Ok(())))
    }

    /// The next frame from the server, recorded in `seen`; `None` on close or at `deadline`.
    async fn read_frame(&mut self, deadline: tokio::time::Instant) -> Option<(u8, u8, u32, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.rbuf.len() >= 9 {
                let len =
                    (usize::from(self.rbuf[0]) << 16) | (usize::from(self.rbuf[1]) << 8) | usize::from(self.rbuf[2]);
                if self.rbuf.len() >= 9 + len {
                    let (kind, flags) = (self.rbuf[3], self.rbuf[4]);
                    let stream =
                        u32::from_be_bytes([self.rbuf[5], self.rbuf[6], self.rbuf[7], self.rbuf[8]]) & 0x7fff_ffff;
                    let payload = self.rbuf[9..9 + len].to_vec();
                    self.rbuf.drain(..9 + len);
                    let code =
                        |p: &[u8], at: usize| p.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    match kind {
                        GOAWAY => self.seen.goaway = code(&payload, 4),
                        RST_STREAM => self.seen.resets.push((stream, code(&payload, 0).unwrap_or(0))),
                        HEADERS => self.seen.responses.push(stream),
                        _ => {}
                    }
                    return Some((kind, flags, stream, payload));
                }
            }
            let mut buf = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.seen.closed = true;
                    return None;
                }
                Ok(Ok(n)) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Reads (and drops) frames until the server closes or `within` passes; what it saw.
    async fn drain(&mut self, within: Duration) -> &Seen {
        let deadline = tokio::time::Instant::now() + within;
        while self.read_frame(deadline).await.is_some() {}
        &self.seen
    }
}

/// Resident memory of the gateway process, KiB.
fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// After an attack: the gateway is up, a fresh HTTP/2 client is served, its memory grew by
/// less than `max_growth_mib` over `base_kib`, and the upstream saw nothing but `/api/ok`.
fn still_serving(gw: &Gateway, up: &Upstream, what: &str, base_kib: u64, max_growth_mib: u64) {
    assert!(gw.is_running(), "{what}: the gateway died\n{}", gw.output());
    rt().block_on(async {
        let (send, _conn) = connect(gw).await;
        let mut send = send.ready().await.unwrap();
        let (resp, _) = send.send_request(request("/api/ok"), true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200, "{what}: a fresh client was not served");
    });
    let rss = rss_kib(gw);
    eprintln!("{what}: gateway RSS {base_kib} KiB -> {rss} KiB");
    assert!(rss < base_kib + max_growth_mib * 1024, "{what}: gateway RSS grew from {base_kib} to {rss} KiB");
    let odd: Vec<String> =
        up.requests_excluding("/health").into_iter().map(|r| r.target).filter(|t| t != "/api/ok").collect();
    assert!(odd.is_empty(), "{what}: the upstream saw {odd:?}");
}

fn tls_gateway(up: &Upstream) -> (portcullis_tests::tls::Pki, Gateway) {
    let (pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    (pki, gw)
}

/// A TLS gateway before one request to `/api/ok`, and its memory after it (KiB).
fn attacked() -> (Upstream, portcullis_tests::tls::Pki, Gateway, u64) {
    let up = Upstream::start("app");
    let (pki, gw) = tls_gateway(&up);
    still_serving(&gw, &up, "before", rss_kib(&gw), 64);
    let base = rss_kib(&gw);
    (up, pki, gw, base)
}

/// Sends `bytes` on a fresh connection; the server must answer nothing, send `GOAWAY` with one
/// of `codes` and close.
fn expect_goaway(gw: &Gateway, what: &str, bytes: &[u8], codes: &[u32]) {
    rt().block_on(async {
        let mut raw = Raw::open(gw).await;
        raw.send(bytes).await;
        let seen = raw.drain(Duration::from_secs(10)).await;
        assert!(seen.closed, "{what}: the connection stayed open: {seen:?}");
        assert!(seen.responses.is_empty(), "{what}: answered {seen:?}");
        let code = seen.goaway.unwrap_or_else(|| panic!("{what}: no GOAWAY: {seen:?}"));
        assert!(codes.contains(&code), "{what}: GOAWAY {code:#x}, wanted one of {codes:?}");
    });
}

#[test]
fn continuation_floods_end_in_goaway() {
    let (up, _pki, gw, base) = attacked();
    let block = request_block("GET", "/api/attack");
    // A header block that never ends, split several ways. The test config's header list limit
    // is 8 KiB (`limits.max_header_bytes`): at most 5 CONTINUATION frames per block.
    let mut attacks: Vec<(&str, Vec<u8>, &[u32])> = Vec::new();
    // Many empty CONTINUATION frames.
    let mut a = frame(HEADERS, END_STREAM, 1, &block);
    for _ in 0..10_000 {
        a.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    attacks.push(("empty CONTINUATION frames", a, &[ENHANCE_YOUR_CALM]));
    // Many small CONTINUATION frames, each one more header field.
    let mut a = frame(HEADERS, END_STREAM, 1, &block);
    for i in 0..10_000 {
        let mut f = Vec::new();
        hpack_literal(&format!("x-flood-{i}"), &[b'a'; 100], &mut f);
        a.extend(frame(CONTINUATION, 0, 1, &f));
    }
    attacks.push(("small CONTINUATION frames", a, &[ENHANCE_YOUR_CALM, PROTOCOL_ERROR]));
    // One header value of 16 MiB announced, sent in full-size CONTINUATION frames.
    let mut first = block.clone();
    first.push(0x00);
    hpack_int(0, 7, 7, &mut first);
    first.extend_from_slice(b"x-giant");
    hpack_int(0, 7, 16 << 20, &mut first);
    let mut a = frame(HEADERS, END_STREAM, 1, &first);
    for _ in 0..1_000 {
        a.extend(frame(CONTINUATION, 0, 1, &[b'g'; 16 * 1024]));
    }
    attacks.push(("one giant value over full CONTINUATION frames", a, &[ENHANCE_YOUR_CALM, PROTOCOL_ERROR]));
    // One HEADERS frame of 1 MiB (over the 16 KiB frame size).
    let mut big = block.clone();
    hpack_literal("x-big", &vec![b'b'; 1 << 20], &mut big);
    attacks.push(("a 1 MiB HEADERS frame", frame(HEADERS, END_STREAM | END_HEADERS, 1, &big), &[FRAME_SIZE_ERROR]));
    // Another frame inside an unfinished header block.
    let mut a = frame(HEADERS, END_STREAM, 1, &block);
    a.extend(frame(PING, 0, 0, &[0; 8]));
    a.extend(frame(CONTINUATION, END_HEADERS, 1, &[]));
    attacks.push(("a PING inside a header block", a, &[PROTOCOL_ERROR]));
    // CONTINUATION on another stream than its HEADERS.
    let mut a = frame(HEADERS, END_STREAM, 1, &block);
    a.extend(frame(CONTINUATION, END_HEADERS, 3, &[]));
    attacks.push(("CONTINUATION of another stream", a, &[PROTOCOL_ERROR]));
    // CONTINUATION without HEADERS.
    attacks.push(("CONTINUATION without HEADERS", frame(CONTINUATION, END_HEADERS, 1, &block), &[PROTOCOL_ERROR]));
    for (what, bytes, codes) in attacks {
        expect_goaway(&gw, what, &bytes, codes);
        still_serving(&gw, &up, what, base, 32);
    }
}

#[test]
fn hpack_bombs_are_refused() {
    let (up, _pki, gw, base) = attacked();
    // One 3000-byte field put into the dynamic table, then referenced by one byte each: a
    // 16 KiB block that decodes to 40 MB.
    let mut bomb = request_block("GET", "/api/attack");
    bomb.push(0x40);
    hpack_int(0, 7, 5, &mut bomb);
    bomb.extend_from_slice(b"x-bom");
    hpack_int(0, 7, 3000, &mut bomb);
    bomb.extend_from_slice(&[b'b'; 3000]);
    while bomb.len() < 16 * 1024 - 1 {
        bomb.push(0x80 | 62);
    }
    // Just over the limit: 9 KiB of fields in one block (a 431 or a reset, never proxied).
    let mut over = request_block("GET", "/api/attack-over");
    for i in 0..9 {
        hpack_literal(&format!("x-f{i}"), &[b'o'; 1000], &mut over);
    }
    // Over the 50-field count of `limits.max_header_count`, small fields.
    let mut many = request_block("GET", "/api/attack-many");
    for i in 0..200 {
        hpack_literal(&format!("x-m{i}"), b"1", &mut many);
    }
    for (what, block) in [("dynamic-table bomb", bomb), ("header list over the limit", over), ("too many fields", many)]
    {
        rt().block_on(async {
            let mut raw = Raw::open(&gw).await;
            raw.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)).await;
            let seen = raw.drain(Duration::from_secs(3)).await;
            eprintln!("{what}: {seen:?}");
            // Refused one way or another: GOAWAY, a reset, or a 4xx answer (checked upstream).
            assert!(seen.goaway.is_some() || !seen.resets.is_empty() || !seen.responses.is_empty(), "{what}: {seen:?}");
        });
        still_serving(&gw, &up, what, base, 32);
    }
}

#[test]
fn settings_ping_and_noop_floods_stay_bounded() {
    let (up, _pki, gw, base) = attacked();
    let mark = gw.log_mark();
    let repeat = |f: Vec<u8>, n: usize| f.repeat(n);
    // SETTINGS with many entries: unknown identifiers and the initial window toggled.
    let mut entries = Vec::new();
    for i in 0..2_700u32 {
        let (id, v): (u16, u32) = if i % 2 == 0 { (0x4, 65_535 + i) } else { (0x100 + i as u16, i) };
        entries.extend_from_slice(&id.to_be_bytes());
        entries.extend_from_slice(&v.to_be_bytes());
    }
    let mut window_ones = Vec::new();
    window_ones.extend_from_slice(&1u32.to_be_bytes());
    let mut prio = Vec::new();
    prio.extend_from_slice(&0u32.to_be_bytes());
    prio.push(16);
    let floods: Vec<(&str, Vec<u8>)> = vec![
        ("50000 empty SETTINGS", repeat(frame(SETTINGS, 0, 0, &[]), 50_000)),
        ("500 SETTINGS of 2700 entries", repeat(frame(SETTINGS, 0, 0, &entries), 500)),
        ("100000 PINGs", repeat(frame(PING, 0, 0, &[7; 8]), 100_000)),
        ("100000 unsolicited PING ACKs", repeat(frame(PING, ACK, 0, &[7; 8]), 100_000)),
        ("100000 WINDOW_UPDATEs of 1", repeat(frame(WINDOW_UPDATE, 0, 0, &window_ones), 100_000)),
        ("100000 PRIORITY frames", (0..100_000u32).flat_map(|i| frame(PRIORITY, 0, 2 * i + 1, &prio)).collect()),
    ];
    for (what, bytes) in floods {
        rt().block_on(async {
            let mut raw = Raw::open(&gw).await;
            // Written without reading a single ACK back: the server must stop reading (its
            // ACK queue full) or close, never buffer without bound.
            let all = raw.send(&bytes).await;
            // A fresh client is served while this connection is stalled.
            eprintln!("{what}: all written: {all}");
        });
        still_serving(&gw, &up, what, base, 32);
    }
    // None of this may turn into a log line per frame.
    let lines = gw.logs_since(mark);
    assert!(lines.len() < 100, "{} log lines, e.g. {:?}", lines.len(), lines.iter().rev().take(3).collect::<Vec<_>>());
}

#[test]
fn invalid_settings_and_window_updates_end_in_goaway() {
    let (up, _pki, gw, base) = attacked();
    let setting = |id: u16, v: u32| {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&v.to_be_bytes());
        frame(SETTINGS, 0, 0, &p)
    };
    let window = |stream: u32, inc: u32| frame(WINDOW_UPDATE, 0, stream, &inc.to_be_bytes());
    // (RFC 9113 asks FLOW_CONTROL_ERROR for an initial window over 2^31-1 and FRAME_SIZE_ERROR
    // for a frame of the wrong length; the h2 crate says PROTOCOL_ERROR. Either way it ends.)
    let cases: Vec<(&str, Vec<u8>, &[u32])> = vec![
        ("initial window over 2^31-1", setting(0x4, 1 << 31), &[FLOW_CONTROL_ERROR, PROTOCOL_ERROR]),
        ("ENABLE_PUSH 2", setting(0x2, 2), &[PROTOCOL_ERROR]),
        ("MAX_FRAME_SIZE 1", setting(0x5, 1), &[PROTOCOL_ERROR]),
        ("SETTINGS of 7 bytes", frame(SETTINGS, 0, 0, &[0; 7]), &[FRAME_SIZE_ERROR, PROTOCOL_ERROR]),
        ("SETTINGS on a stream", frame(SETTINGS, 0, 1, &[]), &[PROTOCOL_ERROR]),
        ("a SETTINGS ACK never asked for", frame(SETTINGS, ACK, 0, &[]), &[PROTOCOL_ERROR]),
        ("PING of 7 bytes", frame(PING, 0, 0, &[0; 7]), &[FRAME_SIZE_ERROR, PROTOCOL_ERROR]),
        ("zero WINDOW_UPDATE on the connection", window(0, 0), &[PROTOCOL_ERROR]),
        (
            "connection window over 2^31-1",
            [window(0, 0x7fff_ffff), window(0, 0x7fff_ffff)].concat(),
            &[FLOW_CONTROL_ERROR],
        ),
    ];
    for (what, bytes, codes) in cases {
        expect_goaway(&gw, what, &bytes, codes);
        still_serving(&gw, &up, what, base, 32);
    }
}

/// An upstream that answers `/api/slow…` after `delay`, the rest at once.
fn slow_upstream(delay: Duration) -> Upstream {
    Upstream::with_fn("app", move |r| {
        let reply = Reply::status(200);
        if r.target.starts_with("/api/slow") {
            reply.with_delay(delay)
        } else {
            reply
        }
    })
}

/// `n` requests to `/api/slow/<i>` on streams 1, 3, 5, … (stream `2i + 1` asks for `<i>`).
fn slow_streams(n: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &request_block("GET", &format!("/api/slow/{i}")))
        })
        .collect()
}

#[test]
fn stream_count_abuse_is_refused_and_others_served() {
    let up = slow_upstream(Duration::from_secs(2));
    let (_pki, gw) = tls_gateway(&up);
    let base = rss_kib(&gw);
    // 150 streams at once on one connection: 100 are served, the rest refused.
    let (refused, answered) = rt().block_on(async {
        let mut raw = Raw::open(&gw).await;
        let bytes = slow_streams(150);
        assert!(raw.send(&bytes).await);
        // Another client is served while the 100 are held.
        let r = crate::tls::https(&gw, portcullis_tests::tls::Proto::H2, "/api/ok", &[], &[]);
        assert_eq!(r.status, 200, "{r:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while raw.seen.responses.len() + raw.seen.resets.len() < 150 && raw.read_frame(deadline).await.is_some() {}
        (raw.seen.resets.clone(), raw.seen.responses.clone())
    });
    eprintln!("refused {}, answered {}", refused.len(), answered.len());
    assert!(refused.iter().all(|(_, c)| *c == REFUSED_STREAM), "{refused:?}");
    assert_eq!(answered.len(), 100, "{answered:?}");
    assert_eq!(refused.len(), 50, "{refused:?}");
    // No refused stream reached the upstream.
    let seen: Vec<String> = up.requests_to("/api/slow").into_iter().map(|r| r.target).collect();
    assert_eq!(seen.len(), 100);
    for (s, _) in &refused {
        let path = format!("/api/slow/{}", (s - 1) / 2);
        assert!(!seen.contains(&path), "refused stream {s} reached the upstream");
    }
    // Refusing without end: past 256 refusals on one connection, GOAWAY.
    up.clear();
    rt().block_on(async {
        let mut raw = Raw::open(&gw).await;
        let bytes = slow_streams(500);
        raw.send(&bytes).await;
        let seen = raw.drain(Duration::from_secs(10)).await;
        assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{:?}", seen.goaway);
        let refused = seen.resets.iter().filter(|(_, c)| *c == REFUSED_STREAM).count();
        assert!(refused <= 257, "{refused} refused before GOAWAY");
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert!(up.count_to("/api/slow") <= 100, "{}", up.count_to("/api/slow"));
    up.clear();
    still_serving(&gw, &up, "stream-count abuse", base, 64);
}

#[test]
fn streams_the_client_makes_the_server_reset_end_in_goaway() {
    // "MadeYouReset" (CVE-2025-8671) and empty frames (CVE-2019-9518): frames that make the
    // server reset streams or do work for nothing. Each is bounded per connection.
    let up = Upstream::with_fn("app", |_| Reply::status(200).with_delay(Duration::from_millis(300)));
    let (_pki, gw) = tls_gateway(&up);
    let base = rss_kib(&gw);
    let window = |stream: u32, inc: u32| frame(WINDOW_UPDATE, 0, stream, &inc.to_be_bytes());
    type Make = Box<dyn Fn(u32) -> Vec<u8>>;
    let open = |s: u32| frame(HEADERS, END_HEADERS, s, &request_block("POST", &format!("/api/attack/{s}")));
    let cases: Vec<(&str, Make)> = vec![
        ("zero WINDOW_UPDATE on a stream", Box::new(move |s| [open(s), window(s, 0)].concat())),
        (
            "stream window over 2^31-1",
            Box::new(move |s| [open(s), window(s, 0x7fff_ffff), window(s, 0x7fff_ffff)].concat()),
        ),
        (
            "PRIORITY on itself",
            Box::new(move |s| {
                [open(s), frame(PRIORITY, 0, s, &[(s >> 24) as u8, (s >> 16) as u8, (s >> 8) as u8, s as u8, 16])]
                    .concat()
            }),
        ),
        (
            "DATA past Content-Length",
            Box::new(move |s| {
                let mut b = request_block("POST", &format!("/api/attack/{s}"));
                hpack_literal("content-length", b"1", &mut b);
                [frame(HEADERS, END_HEADERS, s, &b), frame(DATA, END_STREAM, s, b"toolong")].concat()
            }),
        ),
        (
            "HEADERS with an unknown pseudo-header",
            Box::new(move |s| {
                let mut b = request_block("GET", &format!("/api/attack/{s}"));
                hpack_literal(":evil", b"1", &mut b);
                frame(HEADERS, END_STREAM | END_HEADERS, s, &b)
            }),
        ),
    ];
    for (what, make) in &cases {
        up.clear();
        rt().block_on(async {
            let mut raw = Raw::open(&gw).await;
            let bytes: Vec<u8> = (0..400u32).flat_map(|i| make(2 * i + 1)).collect();
            raw.send(&bytes).await;
            let seen = raw.drain(Duration::from_secs(10)).await;
            let resets = seen.resets.len();
            eprintln!("{what}: {resets} resets, GOAWAY {:?}", seen.goaway);
            assert!(seen.goaway.is_some(), "{what}: no GOAWAY after 400 ({resets} resets)");
            assert!(resets <= 300, "{what}: {resets} resets");
        });
        std::thread::sleep(Duration::from_millis(600));
        let reached = up.count_to("/api/attack");
        assert!(reached <= 300, "{what}: the upstream saw {reached}");
        up.clear();
        still_serving(&gw, &up, what, base, 32);
    }
    // Empty DATA frames on an open body: the h2 crate allows 100 per connection.
    rt().block_on(async {
        let mut raw = Raw::open(&gw).await;
        let mut bytes = frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/attack-empty"));
        bytes.extend(frame(DATA, 0, 1, &[]).repeat(10_000));
        raw.send(&bytes).await;
        let seen = raw.drain(Duration::from_secs(10)).await;
        assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    });
    up.clear();
    still_serving(&gw, &up, "empty DATA frames", base, 32);
}

#[test]
fn cleartext_h2_prior_knowledge_is_refused_unless_enabled() {
    // No `tls:`, no `listen.h2c`: the listener speaks HTTP/1.1 only. The HTTP/2 preface, alone
    // or followed by a request's frames, is answered 400 and nothing reaches the upstream.
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).start();
    let mut with_request = PREFACE.to_vec();
    with_request.extend(frame(SETTINGS, 0, 0, &[]));
    with_request.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &request_block("GET", "/api/h2c")));
    for bytes in [PREFACE.to_vec(), with_request] {
        assert_eq!(plain_answer(&gw, &[&bytes]).0, Some(400));
    }
    assert!(up.requests_excluding("/health").is_empty(), "{:?}", up.requests());
}

/// Sends `parts` on a plain connection (300 ms apart) and reads until close or 5 s: the
/// HTTP/1.1 status it got, if any, and whether the connection was closed.
fn plain_answer(gw: &Gateway, parts: &[&[u8]]) -> (Option<u16>, bool) {
    let mut conn = portcullis_tests::RawConn::connect(gw.proxy_addr());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        conn.send(p).unwrap();
    }
    let started = std::time::Instant::now();
    let raw = conn.read_until_close(Duration::from_secs(5));
    let closed = started.elapsed() < Duration::from_secs(5);
    let r = portcullis_tests::parse_response(&raw);
    if let Some(r) = &r {
        assert_eq!(r.json()["code"], "bad_request", "{}", String::from_utf8_lossy(&raw));
    }
    (r.map(|r| r.status), closed)
}

/// A gateway with `listen.h2c: true` (no TLS).
fn h2c_gateway(up: &Upstream) -> Gateway {
    let cfg = Cfg::new(&[up.addr()]);
    let yaml = cfg.yaml().replace("  control: 127.0.0.1:0\n", "  control: 127.0.0.1:0\n  h2c: true\n");
    Gateway::start_with(BIN, &yaml, &[], &cfg.files())
}

/// An HTTP/2 client by prior knowledge over plain TCP.
async fn connect_h2c(gw: &Gateway) -> H2 {
    let tcp = tokio::net::TcpStream::connect(gw.proxy_addr()).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(conn))
}

#[test]
fn h2c_by_prior_knowledge_when_enabled() {
    let up = slow_upstream(Duration::from_secs(1));
    let gw = h2c_gateway(&up);
    rt().block_on(async {
        let (send, _conn) = connect_h2c(&gw).await;
        let mut send = send.ready().await.unwrap();
        let mut get = |path: &str, extra: usize| {
            let mut b = http::Request::builder().uri(format!("http://localhost{path}"));
            for i in 0..extra {
                b = b.header(format!("x-h{i}"), "1");
            }
            send.send_request(b.body(()).unwrap(), true).unwrap().0
        };
        // The same proxy checks as on HTTP/1.1: canonical path, refused traversal, header count.
        let ok = get("/api//orders", 0);
        let traversal = get("/../admin", 0);
        let too_many = get("/api/many", 60);
        assert_eq!(ok.await.unwrap().status(), 200);
        assert_eq!(traversal.await.unwrap().status(), 400);
        assert_eq!(too_many.await.unwrap().status(), 400);
        // The limits of HTTP/2 over TLS apply.
        assert_eq!(send.current_max_send_streams(), 100);
    });
    let seen = up.requests_excluding("/health");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/api/orders");
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
    // HTTP/1.1 on the same listener, as before.
    assert_eq!(portcullis_tests::Client::new().get(&gw.url("/api/h1"), &[]).status, 200);
    // The preface in two pieces is still HTTP/2: the server's SETTINGS come back.
    let mut conn = portcullis_tests::RawConn::connect(gw.proxy_addr());
    conn.send(&PREFACE[..18]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    conn.send(&[&PREFACE[18..], &frame(SETTINGS, 0, 0, &[])[..]].concat()).unwrap();
    let raw = conn.read_until_close(Duration::from_millis(500));
    assert!(raw.len() >= 9 && raw[3] == SETTINGS, "{raw:?}");
    // Half a preface then silence: cut at the header deadline (1 s here), never held.
    let (status, closed) = plain_answer(&gw, &[&PREFACE[..18]]);
    assert!(closed, "a half preface held its connection");
    assert_eq!(status, Some(400));
    let (status, closed) = plain_answer(&gw, &[&PREFACE[..20]]);
    assert!(closed && status == Some(400), "{status:?}");
    // Not the preface after its first line: refused.
    assert_eq!(plain_answer(&gw, &[b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"]).0, Some(400));
    assert_eq!(up.requests_excluding("/health").len(), 2);
    // The HTTP/2 protections hold on h2c: a CONTINUATION flood, unsolicited PING ACKs, streams
    // over the concurrency limit.
    let mark = gw.log_mark();
    rt().block_on(async {
        let mut raw = Raw::open_h2c(&gw).await;
        let mut bytes = frame(PING, ACK, 0, &[7; 8]).repeat(10_000);
        bytes.extend(frame(HEADERS, END_STREAM, 1, &request_block("GET", "/api/attack")));
        bytes.extend(frame(CONTINUATION, 0, 1, &[]).repeat(1_000));
        raw.send(&bytes).await;
        assert_eq!(raw.drain(Duration::from_secs(10)).await.goaway, Some(ENHANCE_YOUR_CALM));
        assert!(gw.logs_since(mark).len() < 50, "{} log lines", gw.logs_since(mark).len());
        let mut raw = Raw::open_h2c(&gw).await;
        raw.send(&slow_streams(130)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while raw.seen.responses.len() + raw.seen.resets.len() < 130 && raw.read_frame(deadline).await.is_some() {}
        assert_eq!(raw.seen.resets.iter().filter(|(_, c)| *c == REFUSED_STREAM).count(), 30, "{:?}", raw.seen);
    });
    assert_eq!(up.count_to("/api/attack"), 0);
    // h2c with TLS is a configuration error.
    let (_pki, tls) = localhost_tls("");
    let cfg = Cfg::new(&[up.addr()]).extra(&tls);
    let yaml = cfg.yaml().replace("  control: 127.0.0.1:0\n", "  control: 127.0.0.1:0\n  h2c: true\n");
    let Err(err) = Gateway::try_start_with(BIN, &yaml, &[], &cfg.files()) else { panic!("h2c with tls started") };
    assert!(err.output.contains("listen.h2c"), "{}", err.output);
}
