//! The `portcullis` command line (see the contract: run, validate, demo, audit verify, token new).

use crate::config;
use crate::tokens::random_token;
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "A reverse-proxy security gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Gateway config file.
        #[arg(long, default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Take the listening sockets over from a running instance (graceful upgrade: start the
        /// new binary with --upgrade, then send SIGQUIT to the old one).
        #[arg(long)]
        upgrade: bool,
        /// Start the gateway in the background and exit 0 once it serves (its PID in
        /// `server.pid_file`), or with its exit code if it fails to start: for service managers
        /// that follow a PID file (systemd `Type=forking`, `PIDFile=`).
        #[arg(long)]
        daemon: bool,
    },
    /// Check the gateway config (and every rule file it names) without running.
    Validate {
        /// Gateway config file.
        #[arg(long, default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Run the gateway in front of a built-in sample multi-tenant application.
    Demo {
        /// Demo config file.
        #[arg(long, default_value = "config/demo.yaml")]
        config: PathBuf,
    },
    /// Control-endpoint tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Health, switches, upstreams and the last critical events of a running gateway, from its
    /// control listener (a viewer token in PORTCULLIS_TOKEN).
    Status {
        /// The control listener.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        url: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the audit log's hash chain; exit 0, or 1 naming the first broken record.
    Verify {
        /// Audit log file (default: `<state_dir>/audit/audit.jsonl` from the config).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Gateway config file (for its state_dir; ignored with --file).
        #[arg(long, default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random token once, and the config entry to paste.
    New {
        /// viewer, operator or admin.
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Who holds it (shown in logs and the audit log).
        #[arg(long)]
        name: String,
    },
}

/// How long `run --daemon` waits for the gateway to serve (an upgrade waits for the old
/// process's sockets first).
const DAEMON_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `run --daemon`: the same binary runs the gateway as a child (its output goes where ours goes:
/// the journal); we exit 0 once the PID file names that child, i.e. it serves, or with the
/// child's code if it stops first. No `fork` of a threaded process: a fresh exec.
fn run_daemon(config: &std::path::Path, upgrade: bool, pid_file: &str) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("portcullis: cannot find its own executable: {e}");
            return ExitCode::from(1);
        }
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run").arg("--config").arg(config).stdin(std::process::Stdio::null());
    if upgrade {
        cmd.arg("--upgrade");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: cannot start the gateway: {e}");
            return ExitCode::from(1);
        }
    };
    let want = child.id().to_string();
    let started = std::time::Instant::now();
    while started.elapsed() < DAEMON_START_TIMEOUT {
        match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!("portcullis: the gateway exited before serving: {status}");
                return ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1).max(1));
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("portcullis: {e}");
                return ExitCode::from(1);
            }
        }
        if std::fs::read_to_string(pid_file).is_ok_and(|p| p.trim() == want) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("portcullis: the gateway did not write {pid_file} within {DAEMON_START_TIMEOUT:?}; stopping it");
    let _ = child.kill();
    ExitCode::from(1)
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        // Exactly the validation a rule reload runs (`reload::load_dir`), after the config's own.
        Command::Validate { config } => match config::load(&config).and_then(|c| {
            let routes: Vec<String> = c.routes.entries().iter().map(|e| e.value.id.clone()).collect();
            crate::reload::load_dir(&c.rules.dir, &routes, &c.alerting.sink_names()).map(|s| (c, s))
        }) {
            Ok((c, rules)) => {
                println!(
                    "ok: {} rules, version {} ({} rule files in {}; config version {}, {} routes)",
                    rules.rule_count(),
                    rules.version,
                    rules.files.len(),
                    c.rules.dir.display(),
                    c.version,
                    c.routes.entries().len()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in errs {
                    println!("{e}");
                }
                ExitCode::from(1)
            }
        },
        Command::Run { config, upgrade, daemon } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    for e in errs {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(1);
                }
            };
            if daemon {
                return run_daemon(&config, upgrade, &cfg.server.pid_file);
            }
            crate::logging::init(&cfg.log_level);
            match crate::server::run(cfg, upgrade, Vec::new()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    eprintln!("portcullis: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo { config } => match crate::demo::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis demo: {e}");
                ExitCode::from(1)
            }
        },
        Command::Token { command: TokenCommand::New { role, name } } => {
            let token = random_token();
            let hash = hex::encode(Sha256::digest(token.as_bytes()));
            println!("token (shown once, store it now): {token}");
            println!();
            println!("add to gateway.yaml under control.tokens:");
            println!("  - name: {name:?}");
            println!("    role: {role}");
            println!("    sha256: \"{hash}\"");
            ExitCode::SUCCESS
        }
        Command::Audit { command: AuditCommand::Verify { file, config } } => audit_verify(file, &config),
        Command::Status { url } => {
            let token = std::env::var("PORTCULLIS_TOKEN").ok().filter(|t| !t.is_empty());
            match crate::status::render(&url, token.as_deref()) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis status: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `portcullis audit verify`: prints `ok: N records, chain intact, last hash <hex16>` (exit 0),
/// `broken: line N (seq S): reason` (exit 1), or why the log cannot be read (exit 1).
fn audit_verify(file: Option<PathBuf>, config: &std::path::Path) -> ExitCode {
    let path = match file {
        Some(p) => p,
        None => match config::load(config) {
            Ok(c) => crate::audit::dir_for(&c.state_dir).join(crate::audit::FILE_NAME),
            Err(errs) => {
                for e in errs {
                    println!("{e}");
                }
                return ExitCode::from(1);
            }
        },
    };
    match crate::audit::verify_report(&path) {
        Ok(s) if s.records == 0 => {
            println!("ok: 0 records ({} is empty)", path.display());
            ExitCode::SUCCESS
        }
        Ok(s) => {
            println!(
                "ok: {} records, chain intact, last hash {}",
                s.records,
                s.last_hash.get(..16).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) if e.line == 0 => {
            println!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("broken: {e}");
            ExitCode::from(1)
        }
    }
}
