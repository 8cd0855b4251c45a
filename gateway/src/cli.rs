//! The `portcullis` command line (see the contract: run, validate, demo, audit verify, token new).

use crate::config;
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

/// 32 random bytes, hex, with a recognisable prefix (so leaked tokens are easy to grep for).
pub fn random_token() -> String {
    format!("pcx_{}", hex::encode(rand::random::<[u8; 32]>()))
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
            crate::reload::load_dir(&c.rules.dir, &routes).map(|s| (c, s))
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
        Command::Run { config, upgrade } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    for e in errs {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(1);
                }
            };
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
