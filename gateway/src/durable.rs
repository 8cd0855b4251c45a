//! Durable writes of small state files: the one place that knows how a file is replaced so that a
//! crash at any instant leaves either the old or the new content, and how the temporary files a
//! crash can leave behind are recognised and removed. A leaf module: std only.

use std::path::Path;

/// Writes `name` in `dir` durably: temp file `.<name>.<pid>.tmp`, fsync, rename into place, fsync
/// of the directory. `Err((message, renamed))`: `renamed` when the new file is in place but the
/// directory fsync failed (the new content is what a reader sees; it may not survive a power cut).
pub fn write_durably(dir: &Path, name: &str, body: &[u8]) -> Result<(), (String, bool)> {
    use std::io::Write as _;
    let ctx = |what: &str, e: std::io::Error| format!("{what} in {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| (ctx("creating the state directory", e), false))?;
    let tmp = dir.join(tmp_name(name, std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err((ctx(&format!("writing the temporary {name}"), e), false));
    }
    if let Err(e) = std::fs::rename(&tmp, dir.join(name)) {
        let _ = std::fs::remove_file(&tmp);
        return Err((ctx(&format!("renaming {name} into place"), e), false));
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| (ctx("syncing the state directory", e), true))
}

/// The temporary file [`write_durably`] writes `name` through, for process `pid`.
fn tmp_name(name: &str, pid: u32) -> String {
    format!(".{name}.{pid}.tmp")
}

/// The pid in a temporary file name of [`write_durably`] (`.<name>.<pid>.tmp`), if it is one.
fn tmp_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, pid) = rest.rsplit_once('.')?;
    pid.parse().ok()
}

/// True while a process with this pid exists (Linux: `/proc/<pid>`). Where `/proc` is absent,
/// every process counts as alive: a temp file is never removed under a writer's feet.
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the temporary files a crash (`kill -9` between write and rename) left in `dir`: those
/// of this process's pid (a previous process that had the same pid is dead) and those of pids no
/// longer running. A live process's temp file (the old process during a graceful upgrade) is
/// left alone. Returns the names removed.
pub fn clean_stray_tmp(dir: &Path) -> Vec<String> {
    let me = std::process::id();
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = tmp_pid(&name) else { continue };
        if (pid == me || !alive(pid))
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::warn!(file = %e.path().display(), "removed a temporary state file a crash left behind");
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests;
