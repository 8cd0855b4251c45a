//! The JSONL store: an append-only writer with size-based rotation, and the loader that re-reads
//! it at start.
//!
//! Files: `<dir>/events.jsonl` (current), `events.jsonl.1` (newest rotated) … `events.jsonl.N`
//! (oldest kept, `N = max_files`).

use super::SecurityEvent;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the current file.
pub(crate) const CURRENT: &str = "events.jsonl";
/// Longest line the loader accepts; longer ones are skipped as corrupt.
const MAX_LINE: usize = 1024 * 1024;

/// Path of rotated file `n` (`n == 0` is the current file).
pub(crate) fn file_path(dir: &Path, n: usize) -> PathBuf {
    if n == 0 {
        dir.join(CURRENT)
    } else {
        dir.join(format!("{CURRENT}.{n}"))
    }
}

/// The append-only writer. Owned by the file sink's thread.
pub(crate) struct FileStore {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: usize,
    out: Option<BufWriter<File>>,
    /// Size of the current file including what is buffered.
    size: u64,
}

impl FileStore {
    /// A store that opens its file lazily, on the first write.
    pub fn new(dir: PathBuf, max_file_bytes: u64, max_files: usize) -> Self {
        Self { dir, max_file_bytes: max_file_bytes.max(1), max_files, out: None, size: 0 }
    }

    /// Opens the current file now when it is a regular file or missing, so that an unwritable
    /// directory fails at start. Anything else (a FIFO) is left to the sink thread, which may
    /// block on it without blocking start.
    pub fn open_if_regular(&mut self) -> io::Result<()> {
        match fs::metadata(file_path(&self.dir, 0)) {
            Ok(m) if !m.is_file() => Ok(()),
            Ok(_) => self.open(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.open(),
            Err(e) => Err(e),
        }
    }

    fn open(&mut self) -> io::Result<()> {
        let path = file_path(&self.dir, 0);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let meta = file.metadata()?;
        self.size = if meta.is_file() { meta.len() } else { 0 };
        // A line cut short by an earlier failure (disk full, crash) must not swallow the next one.
        if self.size > 0 && !ends_with_newline(&path)? {
            file.write_all(b"\n")?;
            self.size += 1;
        }
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    /// Appends one line (without its newline), rotating first when the line would push the file
    /// past `max_file_bytes`. On error the writer is discarded (its buffered lines are lost) and
    /// reopened on the next call.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.out.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + len > self.max_file_bytes {
            self.rotate()?;
        }
        let res = match self.out.as_mut() {
            Some(w) => w.write_all(line).and_then(|()| w.write_all(b"\n")),
            None => Err(io::Error::other("events file not open")),
        };
        match res {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Flushes buffered lines to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        let res = self.out.as_mut().map_or(Ok(()), Write::flush);
        if res.is_err() {
            self.discard();
        }
        res
    }

    /// Drops the writer without flushing (a failed writer must not retry a partial buffer).
    fn discard(&mut self) {
        if let Some(w) = self.out.take() {
            let _ = w.into_parts();
        }
        self.size = 0;
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut w) = self.out.take() {
            let res = w.flush();
            let _ = w.into_parts();
            res?;
        }
        self.size = 0;
        let dir = &self.dir;
        if self.max_files == 0 {
            remove_if_exists(&file_path(dir, 0))?;
        } else {
            remove_if_exists(&file_path(dir, self.max_files))?;
            for n in (1..self.max_files).rev() {
                rename_if_exists(&file_path(dir, n), &file_path(dir, n + 1))?;
            }
            rename_if_exists(&file_path(dir, 0), &file_path(dir, 1))?;
        }
        // Rotated files beyond `max_files` (left by a larger earlier setting) are deleted too.
        for (n, path) in rotated_files(dir) {
            if n > self.max_files {
                remove_if_exists(&path)?;
            }
        }
        self.open()
    }
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every `events.jsonl.<n>` in `dir`, with its number.
fn rotated_files(dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix(CURRENT)?.strip_prefix('.')?.parse::<usize>().ok()?;
            (n > 0).then(|| (n, e.path()))
        })
        .collect()
}

/// What the loader found.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// The newest `memory_events` events, oldest first.
    pub events: VecDeque<Arc<SecurityEvent>>,
    /// Events read in all (including those not kept in memory).
    pub read: u64,
    /// Lines that did not parse (or were too long).
    pub skipped_lines: u64,
    /// Paths that are not regular files (a FIFO, a directory) and were not read.
    pub skipped_files: u64,
}

/// Reads the store, rotated files oldest first then the current file, calling `each` for every
/// event and keeping the newest `keep` in memory. Never blocks on a non-regular file.
pub(crate) fn load(dir: &Path, keep: usize, mut each: impl FnMut(&SecurityEvent)) -> io::Result<Restored> {
    let mut files = rotated_files(dir);
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.push((0, file_path(dir, 0)));
    let mut out = Restored::default();
    for (_, path) in files {
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            out.skipped_files += 1;
            continue;
        }
        let mut r = BufReader::with_capacity(256 * 1024, File::open(&path)?);
        let mut line = Vec::with_capacity(1024);
        loop {
            line.clear();
            let n = (&mut r).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
                // Too long: skip to the end of this line.
                out.skipped_lines += 1;
                skip_line(&mut r)?;
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<SecurityEvent>(&line) {
                Ok(ev) => {
                    out.read += 1;
                    each(&ev);
                    if keep > 0 {
                        if out.events.len() >= keep {
                            out.events.pop_front();
                        }
                        out.events.push_back(Arc::new(ev));
                    }
                }
                Err(_) => out.skipped_lines += 1,
            }
        }
    }
    Ok(out)
}

fn skip_line(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let len = buf.len();
                r.consume(len);
            }
        }
    }
}
