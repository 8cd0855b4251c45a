//! The real gateway as a child process, plus one-shot CLI runs.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{wait_until, TempDir};

/// How long [`Gateway::start`] waits for the `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`run_cli`] lets a command run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Placeholder replaced by the gateway's temp dir in configs and extra files.
pub const DIR_PLACEHOLDER: &str = "{{DIR}}";

/// Proxy listeners of running gateways started with `listen.h2c: true` by h2 mode: the
/// [`crate::Client`] speaks HTTP/2 to these.
static H2C_PROXIES: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Whether `addr` is the proxy listener of a gateway serving h2c for h2 mode.
pub(crate) fn is_h2c_proxy(addr: SocketAddr) -> bool {
    lock(&H2C_PROXIES).contains(&addr)
}

/// In h2 mode, `config_yaml` with `h2c: true` added under its top-level `listen:` block; `None`
/// when it cannot or must not get it (not h2 mode, `tls` configured, `h2c` already set, no block
/// `listen:` line): that gateway then stays HTTP/1.1 only.
fn with_h2c(config_yaml: &str) -> Option<String> {
    if !crate::h2_mode() || config_yaml.contains("h2c:") || config_yaml.lines().any(|l| l.starts_with("tls:")) {
        return None;
    }
    let mut out = String::with_capacity(config_yaml.len() + 16);
    let mut done = false;
    let mut lines = config_yaml.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        if !done && line.trim_end() == "listen:" {
            let indent = lines
                .peek()
                .map(|next| &next[..next.len() - next.trim_start_matches(' ').len()])
                .filter(|i| !i.is_empty())
                .unwrap_or("  ");
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{indent}h2c: true\n"));
            done = true;
        }
    }
    if !done {
        eprintln!("h2 mode: no block `listen:` line in this config: the gateway stays HTTP/1.1");
    }
    done.then_some(out)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which pipe a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// One line of gateway output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub pipe: Pipe,
    pub text: String,
}

#[derive(Default)]
struct LogBuf {
    lines: Mutex<Vec<LogLine>>,
    /// Number of pipes that reached EOF.
    eof: AtomicUsize,
}

impl LogBuf {
    fn render(&self) -> String {
        let lines = lock(&self.lines);
        let mut out = String::new();
        for l in lines.iter() {
            let tag = match l.pipe {
                Pipe::Stdout => "out",
                Pipe::Stderr => "err",
            };
            out.push_str(&format!("[{tag}] {}\n", l.text));
        }
        out
    }
}

fn spawn_line_reader(pipe: Pipe, reader: impl Read + Send + 'static, logs: Arc<LogBuf>) {
    let spawned = thread::Builder::new().name(format!("gateway-{pipe:?}")).spawn({
        let logs = Arc::clone(&logs);
        move || {
            let mut r = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
                        lock(&logs.lines).push(LogLine { pipe, text });
                    }
                }
            }
            logs.eof.fetch_add(1, Ordering::SeqCst);
        }
    });
    if spawned.is_err() {
        logs.eof.fetch_add(1, Ordering::SeqCst);
    }
}

/// `v[key]`, or `v["fields"][key]` (tracing-subscriber's JSON layout nests event fields).
pub fn json_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    v.get(key).or_else(|| v.get("fields").and_then(|f| f.get(key)))
}

/// `json_field(v, key)` as a string.
pub fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    json_field(v, key).and_then(serde_json::Value::as_str)
}

/// Parses a log line as a JSON object (tolerating a non-JSON prefix before the first `{`).
pub fn parse_json_line(line: &str) -> Option<serde_json::Value> {
    let t = line.trim();
    let candidate = match t.find('{') {
        Some(i) => &t[i..],
        None => return None,
    };
    serde_json::from_str::<serde_json::Value>(candidate).ok().filter(serde_json::Value::is_object)
}

/// Recognises the gateway's "listening" line: JSON with `message == "listening"` and string
/// `proxy_addr` / `control_addr` fields, at top level or under `fields`.
pub fn parse_listening_line(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let v = parse_json_line(line)?;
    if json_str(&v, "message")? != "listening" {
        return None;
    }
    let proxy = json_str(&v, "proxy_addr")?.parse().ok()?;
    let control = json_str(&v, "control_addr").and_then(|s| s.parse().ok());
    Some((proxy, control))
}

/// Why [`Gateway::try_start_with`] failed.
#[derive(Debug)]
pub struct StartError {
    /// Exit status if the process exited, `None` on timeout (the process was then killed).
    pub status: Option<ExitStatus>,
    /// All output, tagged `[out]` / `[err]`, in arrival order.
    pub output: String,
    pub lines: Vec<LogLine>,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "gateway exited ({s}) before printing the listening line")?,
            None => write!(f, "gateway printed no listening line within {}s (killed)", START_TIMEOUT.as_secs())?,
        }
        write!(f, "\n----- gateway output -----\n{}-----", self.output)
    }
}

/// The gateway running as a child process in a fresh temp dir. Dropping it SIGKILLs the
/// process and removes the dir (gateway output is dumped to stderr if the test is panicking).
pub struct Gateway {
    child: Mutex<Child>,
    pid: u32,
    logs: Arc<LogBuf>,
    proxy_addr: SocketAddr,
    control_addr: Option<SocketAddr>,
    config_path: PathBuf,
    /// Started with `listen.h2c: true` by h2 mode (rewrites of `gateway.yaml` keep it).
    h2c: bool,
    // Last field: dropped after the process is gone.
    dir: TempDir,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("pid", &self.pid)
            .field("proxy_addr", &self.proxy_addr)
            .field("control_addr", &self.control_addr)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Gateway {
    /// `bin run --config <tmp>/gateway.yaml`; waits for the listening line (30 s) or panics
    /// with all output.
    pub fn start(bin: impl AsRef<Path>, config_yaml: &str) -> Gateway {
        Gateway::start_with(bin, config_yaml, &[], &[])
    }

    /// [`Gateway::start`] with extra env vars and extra files (relative names such as
    /// `rules/base.yaml`, written before the gateway starts). `{{DIR}}` is replaced by the temp
    /// dir's absolute path in the config and in the extra files.
    pub fn start_with(
        bin: impl AsRef<Path>,
        config_yaml: &str,
        env: &[(&str, &str)],
        extra_files: &[(&str, &str)],
    ) -> Gateway {
        Gateway::try_start_with(bin, config_yaml, env, extra_files).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Gateway::start_with`] but returns the failure (exit status + output) instead of
    /// panicking: for "the gateway refuses this config" tests.
    pub fn try_start_with(
        bin: impl AsRef<Path>,
        config_yaml: &str,
        env: &[(&str, &str)],
        extra_files: &[(&str, &str)],
    ) -> Result<Gateway, StartError> {
        Gateway::try_start_subcommand(bin, "run", config_yaml, env, extra_files)
    }

    /// Like [`Gateway::try_start_with`] for another subcommand that takes `--config` and serves
    /// (e.g. `demo`, or `run --upgrade`: split on whitespace, placed before `--config`).
    pub fn try_start_subcommand(
        bin: impl AsRef<Path>,
        subcommand: &str,
        config_yaml: &str,
        env: &[(&str, &str)],
        extra_files: &[(&str, &str)],
    ) -> Result<Gateway, StartError> {
        let bin = bin.as_ref();
        let dir = TempDir::new("portcullis-e2e");
        let dir_str = dir.path().to_string_lossy().into_owned();
        for (name, contents) in extra_files {
            dir.write(name, contents.replace(DIR_PLACEHOLDER, &dir_str));
        }
        let h2c_yaml = with_h2c(config_yaml);
        let h2c = h2c_yaml.is_some();
        let config_yaml = h2c_yaml.as_deref().unwrap_or(config_yaml);
        let config_path = dir.write("gateway.yaml", config_yaml.replace(DIR_PLACEHOLDER, &dir_str));

        let mut child = Command::new(bin)
            .args(subcommand.split_whitespace())
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn gateway binary {}: {e}", bin.display()));
        let pid = child.id();
        let logs = Arc::new(LogBuf::default());
        let stdout: Option<ChildStdout> = child.stdout.take();
        let stderr: Option<ChildStderr> = child.stderr.take();
        match stdout {
            Some(p) => spawn_line_reader(Pipe::Stdout, p, Arc::clone(&logs)),
            None => {
                logs.eof.fetch_add(1, Ordering::SeqCst);
            }
        }
        match stderr {
            Some(p) => spawn_line_reader(Pipe::Stderr, p, Arc::clone(&logs)),
            None => {
                logs.eof.fetch_add(1, Ordering::SeqCst);
            }
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let mut scanned = 0;
        loop {
            let found = {
                let lines = lock(&logs.lines);
                let found = lines[scanned..].iter().find_map(|l| parse_listening_line(&l.text));
                scanned = lines.len();
                found
            };
            if let Some((proxy_addr, control_addr)) = found {
                if h2c {
                    lock(&H2C_PROXIES).push(proxy_addr);
                }
                return Ok(Gateway {
                    child: Mutex::new(child),
                    pid,
                    logs,
                    proxy_addr,
                    control_addr,
                    config_path,
                    h2c,
                    dir,
                });
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let status = match exited {
                    Some(s) => Some(s),
                    None => {
                        let _ = child.kill();
                        let _ = child.wait();
                        None
                    }
                };
                // Let the readers drain what the process wrote before dying.
                wait_until(Duration::from_secs(3), Duration::from_millis(10), || logs.eof.load(Ordering::SeqCst) >= 2);
                if status.is_some() {
                    // A late listening line still doesn't make a dead process usable.
                    let _ = child.wait();
                }
                return Err(StartError { status, output: logs.render(), lines: lock(&logs.lines).clone() });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Proxy listener address from the listening line.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Control listener address; panics if the listening line had no `control_addr`.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr.unwrap_or_else(|| panic!("gateway listening line had no control_addr"))
    }

    /// Control listener address, if the listening line had one.
    pub fn try_control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    /// `http://{proxy_addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy_addr, path)
    }

    /// `http://{control_addr}{path}`.
    pub fn control_url(&self, path: &str) -> String {
        format!("http://{}{}", self.control_addr(), path)
    }

    /// The temp dir (absolute) holding `gateway.yaml` and the extra files; also the process's
    /// working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/gateway.yaml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Writes (or overwrites) a file in the temp dir, replacing `{{DIR}}`; e.g. rewrite
    /// `gateway.yaml` then `signal("HUP")` to test reloads.
    pub fn write_file(&self, rel: &str, contents: &str) -> PathBuf {
        let dir_str = self.dir.path().to_string_lossy().into_owned();
        let h2c = if self.h2c && self.dir.path().join(rel) == self.config_path { with_h2c(contents) } else { None };
        let contents = h2c.as_deref().unwrap_or(contents);
        self.dir.write(rel, contents.replace(DIR_PLACEHOLDER, &dir_str))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All output lines (stdout and stderr) in arrival order.
    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs.lines).iter().map(|l| l.text.clone()).collect()
    }

    /// All output lines with the pipe they came from.
    pub fn log_lines(&self) -> Vec<LogLine> {
        lock(&self.logs.lines).clone()
    }

    /// All output as one string, lines tagged `[out]` / `[err]` (for assertion messages).
    pub fn output(&self) -> String {
        self.logs.render()
    }

    /// Output lines that parse as JSON objects.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        lock(&self.logs.lines).iter().filter_map(|l| parse_json_line(&l.text)).collect()
    }

    /// Number of lines so far: pass to `*_since` to only look at later output.
    pub fn log_mark(&self) -> usize {
        lock(&self.logs.lines).len()
    }

    /// Lines after `mark` (see [`Gateway::log_mark`]).
    pub fn logs_since(&self, mark: usize) -> Vec<String> {
        lock(&self.logs.lines).iter().skip(mark).map(|l| l.text.clone()).collect()
    }

    /// Waits until some line (any so far, or a new one) satisfies `pred`. `false` on timeout.
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        self.wait_for_log_since(0, pred, timeout)
    }

    /// Waits until some line after `mark` satisfies `pred`. `false` on timeout.
    pub fn wait_for_log_since(&self, mark: usize, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(10), || {
            lock(&self.logs.lines).iter().skip(mark).any(|l| pred(&l.text))
        })
    }

    /// Waits until a JSON line satisfies `pred` and returns it. `None` on timeout.
    pub fn wait_for_json_log(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let mut found = None;
        wait_until(timeout, Duration::from_millis(10), || {
            found = lock(&self.logs.lines).iter().filter_map(|l| parse_json_line(&l.text)).find(|v| pred(v));
            found.is_some()
        });
        found
    }

    /// Sends a signal with the `kill` command: `"TERM"`, `"HUP"`, `"QUIT"`, `"KILL"`, `"INT"`,
    /// … (a `SIG` prefix is accepted). `true` if `kill` succeeded.
    pub fn signal(&self, sig: &str) -> bool {
        let sig = sig.trim_start_matches("SIG");
        Command::new("kill")
            .arg("-s")
            .arg(sig)
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` for the process to exit. `None` if still running.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, Duration::from_millis(10), || {
            status = lock(&self.child).try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            // Let the readers collect the last lines.
            wait_until(Duration::from_secs(2), Duration::from_millis(10), || self.logs.eof.load(Ordering::SeqCst) >= 2);
        }
        status
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.h2c {
            lock(&H2C_PROXIES).retain(|a| *a != self.proxy_addr);
        }
        {
            let mut child = lock(&self.child);
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if thread::panicking() {
            wait_until(Duration::from_secs(1), Duration::from_millis(10), || self.logs.eof.load(Ordering::SeqCst) >= 2);
            let lines = lock(&self.logs.lines);
            let skip = lines.len().saturating_sub(300);
            eprintln!(
                "----- gateway (pid {}, dir {}) output, last {} lines -----",
                self.pid,
                self.dir.path().display(),
                lines.len() - skip
            );
            for l in lines.iter().skip(skip) {
                eprintln!("{}", l.text);
            }
            eprintln!("----- end of gateway output -----");
        }
    }
}

/// Exit code of a finished process; `128 + signal` if it was killed by a signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

fn spawn_collector(reader: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    // If the thread cannot be spawned, the receiver reports a disconnect: empty output.
    let _ = thread::Builder::new().name("cli-pipe".into()).spawn(move || {
        let mut r = reader;
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    rx
}

/// One-shot command (`validate --config x`, `token new`, …) with a 60 s timeout.
/// Returns `(exit code, stdout, stderr)`; the exit code is `128 + signal` if killed by a signal.
/// Panics (with the output so far) on timeout.
pub fn run_cli(bin: impl AsRef<Path>, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_cli_with(bin, args, env, None, None)
}

/// [`run_cli`] with a working directory and bytes for stdin.
pub fn run_cli_with(
    bin: impl AsRef<Path>,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&Path>,
    stdin: Option<&[u8]>,
) -> (i32, String, String) {
    let bin = bin.as_ref();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {} {args:?}: {e}", bin.display()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A writer thread, so a child that doesn't read stdin can't block us.
        let _ = thread::Builder::new().name("cli-stdin".into()).spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
        });
    }
    let out_rx = child.stdout.take().map(spawn_collector);
    let err_rx = child.stderr.take().map(spawn_collector);
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| -> String {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(5)).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut status = None;
    wait_until(CLI_TIMEOUT, Duration::from_millis(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let (out, err) = (collect(out_rx), collect(err_rx));
        panic!(
            "{} {args:?} did not finish within {}s (killed)\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            bin.display(),
            CLI_TIMEOUT.as_secs()
        );
    };
    (exit_code(status), collect(out_rx), collect(err_rx))
}
