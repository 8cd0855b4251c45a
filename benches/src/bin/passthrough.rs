//! S2b of the load benchmark: a bare Pingora passthrough, the framework's floor. A `ProxyHttp`
//! with no logic (unit context, one fixed upstream peer), Pingora's default `ServerConf` except
//! for one worker thread. Portcullis (S2) minus this is our own cost; this minus nginx (S1) is
//! Pingora's.
//!
//! Usage: `passthrough --listen 127.0.0.1:8081 --upstream 127.0.0.1:8000 [--no-work-stealing]`
//!
//! `--no-work-stealing` (diagnostics): Pingora's single-threaded runtime instead of a one-worker
//! work-stealing one, as Portcullis runs with one thread.

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{http_proxy_service, ProxyHttp, Session};
use std::net::SocketAddr;
use std::process::ExitCode;

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    work_stealing: bool,
}

const USAGE: &str = "usage: passthrough --listen IP:PORT --upstream IP:PORT [--no-work-stealing]";

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut work_stealing = true;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--no-work-stealing" => {
                work_stealing = false;
                continue;
            }
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        };
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let addr = value.parse::<SocketAddr>().map_err(|e| format!("{flag} {value}: {e}"))?;
        *slot = Some(addr);
    }
    Ok(Args {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        upstream: upstream.ok_or_else(|| format!("--upstream is required\n{USAGE}"))?,
        work_stealing,
    })
}

/// Also the entry point of `passthrough_mimalloc` (the same proxy with the gateway's allocator).
pub fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf { threads: 1, work_stealing: args.work_stealing, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Passthrough { upstream: args.upstream });
    svc.add_tcp(&args.listen.to_string());
    server.add_service(svc);
    println!("passthrough {} -> {}", args.listen, args.upstream);
    server.run_forever()
}
