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
use memlens_format::{ByteSource, DamagedChunk, Error, Recording};

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
        let mut buf = Vec::new();
        self.read_into(offset, len, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<(), Error> {
        // Only bytes past the buffer's current length are zeroed first: a buffer reused for
        // blocks of one size is overwritten in place.
        buf.resize(len, 0);
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
        Ok(())
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

/// The chunks of `rec`'s file that fail their checksum (see
/// [`Recording::verify_chunks`]: one pass over the file that decodes nothing). Opening a closed
/// file reads its trailer, tables and aggregates and no event chunk, so damage in the middle of
/// the file is found only this way. A file without a trailer was walked chunk by chunk, every
/// checksum checked, when it was opened (where it stops is its truncation), so it is not read
/// again. The damaged chunk where reading stopped, if any, is left out: the file's truncation
/// already says so.
pub fn damaged_chunks(path: &Path, rec: &Recording) -> Result<Vec<DamagedChunk>> {
    if !rec.has_trailer() {
        return Ok(Vec::new());
    }
    let verified = rec
        .verify_chunks()
        .with_context(|| format!("cannot check the chunks of {}", path.display()))?;
    let stopped = rec.truncation().map(|t| t.offset);
    Ok(verified.damaged.into_iter().filter(|d| Some(d.offset) != stopped).collect())
}

/// [`damaged_chunks`] of `rec` on a second thread while `work` runs on this one: the check
/// reads the whole file, the analyses a few parts of it, and the two overlap.
pub fn checking_chunks<T: Send>(
    path: &Path,
    rec: &Recording,
    work: impl FnOnce() -> T,
) -> (Result<Vec<DamagedChunk>>, T) {
    std::thread::scope(|s| {
        let check = s.spawn(|| damaged_chunks(path, rec));
        let done = work();
        (check.join().expect("checking the chunks panicked"), done)
    })
}

/// One line on the damage of a file: the first damaged chunk, its byte offset and what is wrong
/// with it, and how many more there are. `None` when there is none.
pub fn damage_line(path: &Path, damaged: &[DamagedChunk]) -> Option<String> {
    let first = damaged.first()?;
    let more = match damaged.len() {
        1 => String::new(),
        n => format!(" (and {} more damaged chunks)", n - 1),
    };
    Some(format!(
        "{} is damaged: {} at byte {}: {}{more}",
        path.display(),
        first.what(),
        first.offset,
        first.reason
    ))
}

/// Says on stderr that `path` is damaged, for the commands that inform (they go on with what
/// can be read).
pub fn warn_damaged(path: &Path, damaged: &[DamagedChunk]) {
    if let Some(line) = damage_line(path, damaged) {
        eprintln!(
            "memlens: warning: {}; `memlens check` lists the damage",
            crate::term::escape_line(&line)
        );
    }
}

/// For the commands that replay every event (`--replay`): a replay cannot go past a damaged
/// event chunk (the heap after it is unknown), so `rec` is read up to the first one, as if the
/// file were cut short there, and stderr says what is left out (`why`: who stops there).
/// False, with nothing changed, when no event chunk of `rec` is damaged.
pub fn replay_up_to_damage(
    path: &Path,
    rec: &mut Recording,
    damaged: &[DamagedChunk],
    why: &str,
) -> bool {
    let Some(first) = damaged.iter().find(|d| d.event_chunk.is_some()) else { return false };
    let total = rec.event_chunk_count();
    let Some(k) =
        (0..total).find(|&i| rec.event_chunk(i).is_some_and(|c| c.offset >= first.offset))
    else {
        return false;
    };
    let from = rec.event_chunk(k).map_or(0, |c| c.first_time_ns);
    let reason = format!("{} does not read ({})", first.what(), first.reason);
    rec.stop_before(first.offset, reason);
    eprintln!(
        "memlens: warning: {}: {why} at the damaged {} at byte {}: its events and those after \
         it ({} of {} event chunks, from {} on) are left out",
        crate::term::escape_line(&path.display().to_string()),
        first.what(),
        first.offset,
        total - k,
        total,
        memlens_analysis::format_duration_ns(from)
    );
    true
}

/// What [`replay_up_to_damage`] says of a replay (`--replay`).
pub const REPLAY_STOPS: &str = "the replay stops";

/// What [`replay_up_to_damage`] says when the figures read from the aggregates needed a
/// damaged event chunk (the events of the interval around a moment they are asked at).
pub const READING_STOPS: &str = "the figures need events from a damaged chunk: reading stops";

/// Whether `e` is the error of reading one of the `damaged` chunks: an analysis from the
/// aggregates needed the events of a chunk that fails its checksum. The command then reads the
/// file up to the damage ([`replay_up_to_damage`]) and tries again.
pub fn needed_damaged(e: &anyhow::Error, damaged: &[DamagedChunk]) -> bool {
    e.chain().any(|cause| match cause.downcast_ref::<Error>() {
        Some(Error::Corrupt { offset, .. }) => damaged.iter().any(|d| d.offset == *offset),
        _ => false,
    })
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
