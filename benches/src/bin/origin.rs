//! The load benchmark's origin: a small, fast HTTP/1.1 server (hand-written on tokio, one
//! thread, keep-alive, pipelining-safe) that answers every request with the same `200` and a
//! fixed JSON body of exactly `--body-bytes` bytes. It must cost as little CPU per request as
//! possible, because it shares a core with the load generator.
//!
//! Usage: `origin [--listen 127.0.0.1:0] [--body-bytes 256]`; prints `listening IP:PORT` on stdout
//! once it accepts connections (port 0 picks a free port).

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

/// JSON-ish filler of exactly `n` bytes: an array of small records, then a padding string.
/// (Below 16 bytes it is just `x`s: no valid JSON fits.)
fn body(n: usize) -> Vec<u8> {
    const HEAD: &str = "{\"data\":[";
    const TAIL_OPEN: &str = "],\"pad\":\"";
    const TAIL_CLOSE: &str = "\"}";
    let fixed = HEAD.len() + TAIL_OPEN.len() + TAIL_CLOSE.len();
    if n < fixed {
        return vec![b'x'; n];
    }
    let mut out = String::with_capacity(n);
    out.push_str(HEAD);
    let mut i = 0usize;
    loop {
        let sep = if i == 0 { "" } else { "," };
        let rec = format!(
            "{sep}{{\"id\":{i},\"name\":\"item-{i:05}\",\"status\":\"active\",\"note\":\"lorem ipsum dolor sit amet\"}}"
        );
        if out.len() + rec.len() + TAIL_OPEN.len() + TAIL_CLOSE.len() > n {
            break;
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
    fn heads_are_parsed() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some((0, true)));
        assert_eq!(parse_head(b"GET / HTTP/1.0\r\n\r\n"), Some((0, false)));
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\ncontent-length: 5\r\nConnection: close\r\n\r\n"), Some((5, false)));
    }
}
