//! The recording loop shared by `memlens run`'s recorder and `memlens sink`: the tracer's
//! pipe in, a recording out, memory samples and periodic flushes in between.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::host::monotonic_ns;
use crate::recorder::Recorder;

/// How often the recording is made durable on disk: bounds what a crash of memlens
/// itself (or a SIGKILL of the program) can lose beyond the tracer's 5 ms drain period.
const FLUSH_PERIOD: Duration = Duration::from_millis(100);

/// How a recorded process's stream comes to its end, once it does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StreamEnd {
    /// The process ended, or said how it is ending: its tracer still sends what its rings
    /// hold, then says goodbye (its drain thread does, for a fatal signal's handler that
    /// waits for us meanwhile) or its pipe closes as it exits.
    Ended,
    /// The recording stops following the process, which goes on (the program has ended).
    Cut,
}

/// Once a process has ended, the recording ends when the pipe has been quiet this long
/// without a goodbye: a drain thread that cannot finish (one waiting on a thread a fatal
/// signal interrupted in the middle of a record), however busy the machine (a starved
/// drain thread can be silent for tens of ms: a recording ended then lost the records
/// still in the process's rings)...
const ENDED_QUIET: Duration = Duration::from_millis(500);

/// ...or this long after the end, whatever comes: enough to take the records a process
/// left behind the recorder however far behind it fell (a pipe and a ring per thread, some
/// MiB each), bounded for a recorder that stopped decoding (a write error) and a tracer
/// that cannot tell it is done. The tracer waits as long for the recording.
const ENDED_LIMIT: Duration = Duration::from_secs(30);

/// A process followed no further is read until its pipe has been quiet this long (it sends
/// at least every drain period, 5 ms, while it records)...
const CUT_QUIET: Duration = Duration::from_millis(20);

/// ...or this long, whatever comes.
const CUT_LIMIT: Duration = Duration::from_secs(2);

/// The tracer's pipe, read by the recorder thread itself: the bytes arrive in the cache of
/// the core that decodes them (a reader thread of its own handed every chunk across
/// cores), and the pipe's own buffer, enlarged by the tracer, absorbs bursts meanwhile.
pub(crate) struct PipeReader {
    pipe: File,
    buf: Vec<u8>,
}

/// Bytes per read: 256 KiB, a few ms of the busiest traced program.
const READ_SIZE: usize = 256 * 1024;

/// Why [`PipeReader::feed_next`] fed nothing.
pub(crate) enum NoData {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The tracer closed the pipe (or it failed).
    Closed,
}

impl PipeReader {
    pub(crate) fn new(pipe: File) -> PipeReader {
        PipeReader { pipe, buf: vec![0u8; READ_SIZE] }
    }

    /// Feeds what the pipe holds (waiting up to `timeout` for something) to `recorder`,
    /// keeping the first error.
    fn feed_next<W: Write>(
        &mut self,
        recorder: &mut Recorder<W>,
        timeout: Duration,
        error: &mut Option<anyhow::Error>,
    ) -> Result<(), NoData> {
        // Rounded up: a wait of less than a millisecond, rounded down to none, made the loop
        // spin until the next memory sample (a tenth of a core per recorded process, idle or
        // not: each process a pool's workers added cost that much more).
        let ms = u16::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Err(NoData::Timeout),
            Ok(_) => {}
            // Back to the loop, which polls again: a read now would block until the tracer
            // writes or closes the pipe, which a process that has reported its end and waits
            // for us to finish does not do.
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(_) => return Err(NoData::Closed),
        }
        let n = match self.pipe.read(&mut self.buf) {
            Ok(0) => return Err(NoData::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(_) => return Err(NoData::Closed),
        };
        if error.is_none() {
            if let Err(e) = recorder.feed(&self.buf[..n]) {
                *error = Some(e);
            }
        }
        Ok(())
    }
}

pub(crate) type RecordResult<W> = Result<(Recorder<W>, Option<anyhow::Error>)>;

/// Replays what arrives on `pipe` into `recorder` until the tracer closes it, or, once
/// `ended()` says how the stream ends ([`StreamEnd`]), until the tracer said goodbye and
/// the pipe is empty, or the pipe is quiet, or a limit is reached; takes a `memory()`
/// sample (RSS, VMS) every `interval` and flushes the file every [`FLUSH_PERIOD`], after
/// `before_flush` (which carries the recordings of the program's descendants into the
/// file, see [`crate::follow`]).
pub(crate) fn record_loop<W: Write>(
    mut recorder: Recorder<W>,
    mut pipe: PipeReader,
    mut memory: impl FnMut() -> Option<(u64, u64)>,
    interval: Duration,
    ended: impl Fn() -> Option<StreamEnd>,
    mut before_flush: impl FnMut(&mut Recorder<W>) -> Result<()>,
) -> RecordResult<W> {
    let mut next_sample = Instant::now();
    let mut next_flush = Instant::now() + FLUSH_PERIOD;
    let mut feed_error = None;
    // How the stream ends, its quiet time and its limit, once known.
    let mut end: Option<(Duration, Instant)> = None;
    loop {
        let now = Instant::now();
        let timeout = match end {
            Some(_) if recorder.stopped() => Duration::ZERO,
            Some((quiet, _)) => quiet,
            None => next_sample.saturating_duration_since(now),
        };
        match pipe.feed_next(&mut recorder, timeout, &mut feed_error) {
            Ok(()) => {}
            Err(NoData::Timeout) if end.is_some() => break,
            Err(NoData::Timeout) => {}
            Err(NoData::Closed) => break,
        }
        let now = Instant::now();
        // A write that fails (a full disk) stops the recording, not the reading: the pipe is
        // drained to the end so that the program never waits on a full pipe, and the error is
        // the caller's once the program has ended (see `write_failed`).
        if now >= next_sample {
            if end.is_none() && feed_error.is_none() {
                if let Some((rss, vms)) = memory() {
                    if let Err(e) = recorder.sample(monotonic_ns(), rss, vms) {
                        feed_error = Some(e);
                    }
                }
            }
            next_sample = now + interval;
        }
        if now >= next_flush {
            if feed_error.is_none() {
                if let Err(e) = before_flush(&mut recorder).and_then(|()| recorder.flush()) {
                    feed_error = Some(e);
                }
            }
            next_flush = now + FLUSH_PERIOD;
        }
        if end.is_none() {
            end = ended().map(|e| match e {
                StreamEnd::Ended => (ENDED_QUIET, now + ENDED_LIMIT),
                StreamEnd::Cut => (CUT_QUIET, now + CUT_LIMIT),
            });
        }
        if end.is_some_and(|(_, limit)| now >= limit) {
            break;
        }
    }
    Ok((recorder, feed_error))
}

/// The OS error number behind `e`, if an I/O error caused it.
pub(crate) fn os_error(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|c| {
        if let Some(full) = c.downcast_ref::<DiskFull>() {
            return Some(full.errno);
        }
        c.downcast_ref::<std::io::Error>()
            .or_else(|| match c.downcast_ref::<memlens_format::Error>() {
                Some(memlens_format::Error::Io(io)) => Some(io),
                _ => None,
            })
            .and_then(std::io::Error::raw_os_error)
    })
}

/// A recording that could not be written because its disk is full (or over quota): said in
/// those words, with the file, and with the OS error number kept for [`os_error`].
#[derive(Debug)]
pub(crate) struct DiskFull {
    errno: i32,
    message: String,
}

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DiskFull {}

/// Puts the finished recording on disk (`fsync`, which also reports what a delayed write
/// met, such as a full disk). Only a regular file: `-o /dev/null` (a run whose recording is
/// not wanted) cannot be synced, and need not be.
pub(crate) fn sync_recording(f: std::fs::File) -> std::io::Result<()> {
    match f.metadata()?.is_file() {
        true => f.sync_all(),
        false => Ok(()),
    }
}

/// An error met while writing the recording `path`, said so that the user can act on it: a
/// full disk (or quota) is named as such, with the file; anything else gets the file as context.
pub(crate) fn write_failed(path: &Path, e: anyhow::Error) -> anyhow::Error {
    let path = path.display();
    let message = match os_error(&e) {
        Some(libc::ENOSPC) => format!(
            "the disk is full: no space left on the device holding {path} (the recording stops \
             where the disk filled up)"
        ),
        Some(libc::EDQUOT) => format!(
            "the disk quota is exceeded: cannot write {path} (the recording stops where the \
             quota was reached)"
        ),
        _ => return e.context(format!("cannot write the recording {path}")),
    };
    let errno = os_error(&e).unwrap_or_default();
    if e.downcast_ref::<DiskFull>().is_some() {
        return e;
    }
    DiskFull { errno, message }.into()
}
