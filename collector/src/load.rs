//! Opening recordings from disk with errors a user can act on, reading only what each command
//! needs (the file is read at offsets, not loaded whole), with progress on a terminal for
//! anything that takes more than a second.

use std::fs::File;
use std::io::IsTerminal;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use memlens_analysis::format_bytes;
use memlens_format::{ByteSource, Error, Recording};

/// A recording file read at offsets, counting the bytes read (for progress).
pub struct FileSource {
    file: File,
    path: PathBuf,
    read: AtomicU64,
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        // A recording being written grows: ask each time.
        self.file.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; len];
        let mut done = 0;
        while done < len {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Read(format!("{}: {e}", self.path.display()))),
            }
        }
        buf.truncate(done);
        self.read.fetch_add(done as u64, Ordering::Relaxed);
        Ok(buf)
    }
}

/// An opened recording, with the progress line that follows reads of its file until the
/// command is done with it.
pub struct Opened {
    pub rec: Recording,
    pub progress: Progress,
}

/// Opens a recording. A truncated file opens with a warning on stderr naming how much could be
/// read; a file that is not a recording is an error that says so.
pub fn open_recording(path: &Path) -> Result<Recording> {
    Ok(open(path)?.rec)
}

/// Like [`open_recording`], with a progress line (on a terminal, after a second) that goes on
/// while the caller analyses the recording, until [`Opened::progress`] is dropped.
pub fn open(path: &Path) -> Result<Opened> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let source = Arc::new(FileSource { file, path: path.to_owned(), read: AtomicU64::new(0) });
    let len = source.len();
    let progress = Progress::start(&format!("reading {}", path.display()), &source);
    let rec = Recording::open_source(Arc::clone(&source) as Arc<dyn ByteSource>)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if let Some(t) = rec.truncation() {
        let left = len.saturating_sub(t.offset);
        eprintln!(
            "memlens: warning: {} is incomplete: {}; everything before it was read ({} of {})",
            path.display(),
            if rec.has_trailer() {
                format!("a damaged part at byte {} ({})", t.offset, t.reason)
            } else {
                format!("its last {} could not be read ({})", format_bytes(left), t.reason)
            },
            format_bytes(t.offset),
            format_bytes(len)
        );
    }
    if rec.unknown_chunks() > 0 {
        eprintln!(
            "memlens: note: {} has {} parts written by a newer memlens that this version skips",
            path.display(),
            rec.unknown_chunks()
        );
    }
    if let (Some(why), false) = (rec.aggregates_missing(), rec.meta().capture.rss_only) {
        if rec.format_version() >= 4 {
            eprintln!(
                "memlens: warning: {}: {why}; reading all of its events instead (slower)",
                path.display()
            );
        }
    }
    Ok(Opened { rec, progress })
}

/// A progress line on stderr for work on one file that lasts more than a second, when stderr
/// is a terminal: how much of the file has been read.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts watching `source` for `what`.
    pub fn start(what: &str, source: &Arc<FileSource>) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let quiet = !std::io::stderr().is_terminal() || std::env::var_os("MEMLENS_QUIET").is_some();
        let thread = (!quiet).then(|| {
            let (done, source, what) = (Arc::clone(&done), Arc::clone(source), what.to_owned());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut shown = false;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if started.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    let (read, len) = (source.read.load(Ordering::Relaxed), source.len().max(1));
                    let pct = (read.min(len) * 100 / len) as u32;
                    eprint!(
                        "\r\x1b[2Kmemlens: {what}: {pct}% ({} of {}, {:.0} s)",
                        format_bytes(read.min(len)),
                        format_bytes(len),
                        started.elapsed().as_secs_f64()
                    );
                    shown = true;
                }
                if shown {
                    eprint!("\r\x1b[2K");
                }
            })
        });
        Progress { done, thread }
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}
