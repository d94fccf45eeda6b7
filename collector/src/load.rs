//! Opening recordings from disk with errors a user can act on, reading only what each command
//! needs (the file is read at offsets, not loaded whole), with progress on a terminal for
//! anything that takes more than a second.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use memlens_analysis::{descendants, format_bytes, Process};
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
            match read_at(&self.file, &mut buf[done..], offset + done as u64) {
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

/// Reads at `offset` (on Windows this also moves the file's cursor, which nothing here uses).
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// An opened recording, with the progress line that follows reads of its file until the
/// command is done with it.
pub struct Opened {
    pub rec: Recording,
    pub progress: Progress,
}

/// `--process PID`, of the commands that read one process of a recording.
#[derive(Debug, clap::Args)]
pub struct ProcessArg {
    /// Read this process of the recording (its pid, as `memlens summary` lists them): the
    /// program or one of the processes it started. Default: the program.
    #[arg(long = "process", value_name = "PID")]
    pub pid: Option<u32>,
}

/// The process of recording `file` (`rec`, whose descendants are `family`) whose pid is `pid`
/// (`--process PID`): (its number, its recording). None: the program.
pub fn process_by_pid<'a>(
    file: &Path,
    rec: &'a Recording,
    family: &'a [Process],
    pid: Option<u32>,
) -> Result<(u32, &'a Recording)> {
    let all = || std::iter::once((0, rec)).chain(family.iter().map(|p| (p.number, &p.rec)));
    let Some(pid) = pid else { return Ok((0, rec)) };
    match all().find(|(_, r)| r.meta().pid == pid) {
        Some(found) => Ok(found),
        None => {
            let pids: Vec<String> = all().map(|(_, r)| r.meta().pid.to_string()).collect();
            let file = file.display();
            bail!("{file} holds no process with pid {pid}; its processes: {}", pids.join(", "))
        }
    }
}

/// For the commands that read one process: the descendant of `rec` (recording `file`) whose
/// pid is `pid`, opened; `None` for the program (no `--process`, or the program's pid). The
/// other processes' streams are opened only to find it.
pub fn pick_process(file: &Path, rec: &Recording, pid: Option<u32>) -> Result<Option<Process>> {
    if pid.is_none() {
        return Ok(None);
    }
    let family = descendants(rec);
    let (number, _) = process_by_pid(file, rec, &family, pid)?;
    Ok(family.into_iter().find(|p| number != 0 && p.number == number))
}

/// Opens a recording. A truncated file opens with a warning on stderr naming how much could be
/// read; a file that is not a recording is an error that says so.
pub fn open_recording(path: &Path) -> Result<Recording> {
    Ok(open(path)?.rec)
}

/// Like [`open_recording`], with a progress line (on a terminal, after a second) that goes on
/// while the caller analyses the recording, until [`Opened::progress`] is dropped.
pub fn open(path: &Path) -> Result<Opened> {
    let source = source(path)?;
    let progress = Progress::start(&[(path, &source)]);
    let rec = open_source(path, &source)?;
    progress.phase("analysing");
    Ok(Opened { rec, progress })
}

/// The file of a recording, to open with [`open_source`] (for commands that read several
/// under one [`Progress`]).
pub fn source(path: &Path) -> Result<Arc<FileSource>> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Arc::new(FileSource { file, path: path.to_owned(), read: AtomicU64::new(0) }))
}

/// Opens the recording in `source` (the file at `path`), saying on stderr what is off with it.
pub fn open_source(path: &Path, source: &Arc<FileSource>) -> Result<Recording> {
    let len = source.len();
    let rec = Recording::open_source(Arc::clone(source) as Arc<dyn ByteSource>)
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
    Ok(rec)
}

/// A progress line on stderr for work that lasts more than a second, when stderr is a
/// terminal (and `MEMLENS_QUIET` is unset): how much of the files has been read, then what is
/// being computed, with the time so far. Erased when dropped, so the output that follows
/// starts on a clean line. `MEMLENS_PROGRESS_AFTER_MS` changes the second (tests show it at
/// once).
pub struct Progress {
    done: Arc<AtomicBool>,
    phase: Arc<Mutex<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts watching reads of `files` (name, source).
    pub fn start(files: &[(&Path, &Arc<FileSource>)]) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        let phase = Arc::new(Mutex::new(format!("reading {}", names.join(" and "))));
        let quiet =
            !crate::term::stderr_is_terminal() || std::env::var_os("MEMLENS_QUIET").is_some();
        let after = std::env::var("MEMLENS_PROGRESS_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        let sources: Vec<Arc<FileSource>> = files.iter().map(|(_, s)| Arc::clone(s)).collect();
        let render = move |sources: &[Arc<FileSource>], what: &str, secs: f64| {
            let read: u64 = sources.iter().map(|s| s.read.load(Ordering::Relaxed)).sum();
            let len: u64 = sources.iter().map(|s| s.len()).sum::<u64>().max(1);
            let pct = read.min(len) * 100 / len;
            let line = format!("{what} ({pct}% of {} read, {secs:.0} s)", format_bytes(len));
            format!("memlens: {}", crate::term::escape_line(&line))
        };
        // Erasing the line: an escape sequence where the terminal takes them, else spaces.
        let escapes = crate::term::stderr_takes_escapes();
        let erase = move |last: usize| {
            if escapes {
                "\r\x1b[2K".to_owned()
            } else {
                format!("\r{:last$}\r", "")
            }
        };
        // MEMLENS_PROGRESS_AFTER_MS=0: the first line is out before any work starts, so that
        // even a quick command shows one (the tests rely on that, not on timing).
        let mut first = 0;
        if !quiet && after.is_zero() {
            let line = render(&sources, &phase.lock().map(|p| p.clone()).unwrap_or_default(), 0.0);
            eprint!("{line}");
            first = line.chars().count();
        }
        let thread = (!quiet).then(|| {
            let (done, phase) = (Arc::clone(&done), Arc::clone(&phase));
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut last = first;
                let tick = Duration::from_millis(100).min(after.max(Duration::from_millis(10)));
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    if started.elapsed() >= after && !done.load(Ordering::Relaxed) {
                        let what = phase.lock().map(|p| p.clone()).unwrap_or_default();
                        let line = render(&sources, &what, started.elapsed().as_secs_f64());
                        eprint!("{}{line}", erase(last));
                        last = line.chars().count();
                    }
                }
                if last > 0 {
                    eprint!("{}", erase(last));
                }
            })
        });
        Progress { done, phase, thread }
    }

    /// Says what is being done now.
    pub fn phase(&self, what: &str) {
        if let Ok(mut p) = self.phase.lock() {
            what.clone_into(&mut p);
        }
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
