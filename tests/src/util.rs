//! Small utilities: polling waits, dead addresses, temp dirs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Polls `f` every `poll_every` until it returns `true` (→ `true`) or `timeout` passes (→ `false`).
/// `f` is always evaluated at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, poll_every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(poll_every.min(deadline - now).max(Duration::from_millis(1)));
    }
}

/// An address on 127.0.0.1 where nothing listens (bind port 0, take the address, drop the
/// listener): connecting to it is refused. For "backend down" tests.
pub fn free_dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    drop(listener);
    addr
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under `std::env::temp_dir()`, named `<prefix>-<pid>-<counter>-<nanos>`,
/// removed (recursively) on drop. Set `PORTCULLIS_E2E_KEEP_DIRS=1` to keep it for debugging.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory; the returned path is absolute.
    pub fn new(prefix: &str) -> TempDir {
        let base = std::env::temp_dir();
        let base = base.canonicalize().unwrap_or(base);
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let path = base.join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `rel` (a relative path such as `rules/base.yaml`; parent directories
    /// are created) and returns the absolute path. Panics on absolute paths or `..`.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let rel_path = Path::new(rel);
        assert!(
            rel_path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
            "temp file name must be relative without `..`: {rel:?}"
        );
        let path = self.path.join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PORTCULLIS_E2E_KEEP_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Finds a binary of this workspace for tests that cannot use `env!("CARGO_BIN_EXE_<name>")`:
/// the runtime env var `CARGO_BIN_EXE_<name>` if set, else `<target>/<profile>/<name>` derived
/// from the running test executable (`<target>/<profile>/deps/<test>-<hash>`).
/// Prefer `env!("CARGO_BIN_EXE_portcullis-e2e")` in integration tests: it also makes cargo build
/// the binary.
pub fn locate_bin(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_true_and_false() {
        let start = Instant::now();
        assert!(wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
            start.elapsed() > Duration::from_millis(30)
        }));
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), Duration::from_millis(10), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn dead_addr_refuses() {
        let addr = free_dead_addr();
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    }

    #[test]
    fn temp_dir_write_and_cleanup() {
        let path;
        {
            let d = TempDir::new("harness-unit");
            path = d.path().to_path_buf();
            let f = d.write("a/b/c.txt", "hi");
            assert_eq!(std::fs::read_to_string(f).unwrap(), "hi");
            let d2 = TempDir::new("harness-unit");
            assert_ne!(d.path(), d2.path());
        }
        assert!(!path.exists());
    }
}
