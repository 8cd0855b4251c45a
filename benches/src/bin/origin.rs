//! The load benchmark's origin: a small, fast HTTP/1.1 server (hand-written on tokio, one
//! thread, keep-alive, pipelining-safe) that answers every request with the same `200` and a
//! fixed JSON body of exactly `--body-bytes` bytes: a realistic order-list response (non-ASCII
//! names, `ORD-2024-000123` order numbers, no PII), so the S4 PII scan reads it all and redacts
//! nothing. It must cost as little CPU per request as
//! possible, because it shares a core with the load generator.
//!
//! Usage: `origin [--listen 127.0.0.1:0] [--body-bytes 256]`; prints `listening IP:PORT` on stdout
//! once it accepts connections (port 0 picks a free port).

use portcullis_benches::Lcg;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    listen: SocketAddr,
    body_bytes: usize,
}

const USAGE: &str = "usage: origin [--listen IP:PORT] [--body-bytes N]";
/// A request head larger than this is refused (the connection is closed).
const MAX_HEAD: usize = 64 * 1024;

fn parse_args() -> Result<Args, String> {
    let mut args = Args { listen: SocketAddr::from(([127, 0, 0, 1], 0)), body_bytes: 256 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => args.listen = value.parse().map_err(|e| format!("--listen {value}: {e}"))?,
            "--body-bytes" => args.body_bytes = value.parse().map_err(|e| format!("--body-bytes {value}: {e}"))?,
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(args)
}

const FIRST: &[&str] =
    &["Çağrı", "Şebnem", "Gülşen", "İsmail", "Özgür", "Ümit", "Ayşe", "Mehmet", "Elif", "Buğra", "José", "Zoë"];
const LAST: &[&str] =
    &["Yılmaz", "Öztürk", "Şahin", "Çelik", "Doğan", "Kılıç", "Aydın", "Güneş", "Erdoğan", "Koç", "Müller"];
const CITY: &[&str] = &["İstanbul", "Ankara", "İzmir", "Eskişehir", "Diyarbakır", "Muğla", "Çanakkale", "Şanlıurfa"];
const STATUS: &[&str] = &["delivered", "shipped", "processing", "cancelled"];
const NOTE: &[&str] = &[
    "Sipariş teslim edildi, teşekkürler.",
    "Kargo İstanbul aktarma merkezinde.",
    "Customer asked for gift wrapping.",
    "İade talebi onaylandı.",
];

/// One order record of a realistic API response: non-ASCII names and cities, an order number
/// like `ORD-2024-000123`, timestamps, amounts, short SKUs. No value is PII (no identity, tax,
/// card, bank or phone number, no e-mail address), so a PII scan reads every byte and redacts
/// nothing (asserted by a test against the S4 rule file).
fn record(rng: &mut Lcg, i: u64) -> String {
    let qty = 1 + rng.below(5);
    let cents = 990 + rng.below(99_000);
    format!(
        "{{\"order_id\":\"ORD-2024-{:06}\",\"customer\":{{\"name\":\"{} {}\",\"city\":\"{}\"}},\"status\":\"{}\",\"created_at\":\"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"items\":[{{\"sku\":\"SKU-{:05}\",\"qty\":{qty},\"price\":{}.{:02}}}],\"total\":{}.{:02},\"currency\":\"TRY\",\"note\":\"{}\"}}",
        100 + i,
        rng.pick(FIRST),
        rng.pick(LAST),
        rng.pick(CITY),
        rng.pick(STATUS),
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(100_000),
        cents / 100,
        cents % 100,
        cents * qty / 100,
        cents * qty % 100,
        rng.pick(NOTE),
    )
}

/// A JSON body of exactly `n` bytes: `{"orders":[…records…],"page":1,"pad":"…"}`, as many whole
/// records as fit, then padding. (Below 32 bytes it is just `x`s: no such JSON fits.)
fn body(n: usize) -> Vec<u8> {
    const HEAD: &str = "{\"orders\":[";
    const TAIL_OPEN: &str = "],\"page\":1,\"pad\":\"";
    const TAIL_CLOSE: &str = "\"}";
    let fixed = HEAD.len() + TAIL_OPEN.len() + TAIL_CLOSE.len();
    if n < fixed {
        return vec![b'x'; n];
    }
    let mut rng = Lcg(2024);
    let mut out = String::with_capacity(n);
    out.push_str(HEAD);
    let mut i = 0u64;
    loop {
        let rec = record(&mut rng, i);
        let sep = usize::from(i > 0);
        if out.len() + sep + rec.len() + TAIL_OPEN.len() + TAIL_CLOSE.len() > n {
            break;
        }
        if sep == 1 {
            out.push(',');
        }
        out.push_str(&rec);
        i += 1;
    }
    out.push_str(TAIL_OPEN);
    while out.len() + TAIL_CLOSE.len() < n {
        out.push('x');
    }
    out.push_str(TAIL_CLOSE);
    out.into_bytes()
}

fn response(body_bytes: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: origin\r\nContent-Type: application/json\r\nContent-Length: {body_bytes}\r\n\r\n"
    )
    .into_bytes();
    r.extend_from_slice(&body(body_bytes));
    r
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// What matters of a request head: its body length and whether the connection stays open.
/// `None`: malformed (the connection is closed).
fn parse_head(head: &[u8]) -> Option<(usize, bool)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut keep_alive = !request_line.ends_with("HTTP/1.0");
    let mut content_length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return None; // never sent by the benchmark's clients
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    Some((content_length, keep_alive))
}

async fn serve(mut stream: TcpStream, resp: Arc<Vec<u8>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(resp.len());
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        // Answer every complete request in the buffer (pipelining), in one write.
        let mut close = false;
        while let Some(end) = find_head_end(&buf) {
            let Some((body_len, keep_alive)) = parse_head(&buf[..end]) else {
                close = true;
                break;
            };
            if buf.len() < end + body_len {
                break; // body not all here yet
            }
            buf.drain(..end + body_len);
            out.extend_from_slice(&resp);
            if !keep_alive {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close || buf.len() > MAX_HEAD {
            return Ok(());
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let resp = Arc::new(response(args.body_bytes));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let resp = resp.clone();
        tokio::spawn(async move {
            let _ = serve(stream, resp).await;
        });
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_exact_length() {
        for n in [0, 1, 15, 16, 17, 64, 100, 256, 1024, 16 * 1024, 65536] {
            assert_eq!(body(n).len(), n, "n = {n}");
        }
    }

    #[test]
    fn body_is_json_without_pii() {
        let rules = include_str!("../../load/rules-s4/pii.yaml");
        let snapshot = match portcullis_rules::rulefile::compile(&[portcullis_rules::rulefile::SourceFile::new(
            "pii.yaml", rules,
        )]) {
            Ok(s) => s,
            Err(e) => panic!("rules-s4/pii.yaml does not compile: {e:?}"),
        };
        let policy = snapshot.pii.policies().first().expect("one pii policy");
        assert!(policy.redacts(), "the S4 policy must stream (redact), not block");
        assert!(!policy.needs_buffering(), "the S4 policy must stream (redact), not block");
        for n in [256, 1024, 16 * 1024, 65536] {
            let b = body(n);
            let text = std::str::from_utf8(&b).expect("UTF-8");
            assert!(text.starts_with("{\"orders\":[") && text.ends_with("\"}"), "n = {n}");
            assert!(n < 1024 || !text.is_ascii(), "non-ASCII names, n = {n}");
            let scan = policy.scan(&b);
            assert!(scan.matches.is_empty(), "n = {n}: {:?}", scan.matches);
            assert_eq!(scan.scanned, n);
            assert_eq!(scan.action, None);
        }
        assert!(std::str::from_utf8(&body(1024)).expect("UTF-8").contains("ORD-2024-000100"));
    }

    #[test]
    fn heads_are_parsed() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some((0, true)));
        assert_eq!(parse_head(b"GET / HTTP/1.0\r\n\r\n"), Some((0, false)));
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\ncontent-length: 5\r\nConnection: close\r\n\r\n"), Some((5, false)));
    }
}
