//! The recorder of `memlens run`: a helper process beside the traced program.
//!
//! `memlens run` forks this helper (twice, so that it is not a child of the program and
//! in a session of its own, out of reach of the terminal's and the program's process
//! group signals), then execs the interpreter in its own process. The helper
//! - replays the tracer's raw records from the pipe into the recording ([`Recorder`]),
//!   samples the program's memory every `--interval` ms and flushes the file every 100 ms,
//!   so a killed program still leaves a readable recording,
//! - learns how the program ends from the tracer, or from /proc ([`EndWatch`]),
//! - writes that end and the trailer, syncs the file, prints the summary line, removes
//!   the temporary `memlens` package and closes the control socket, on which a program
//!   that is exiting waits for it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use memlens_analysis::{execed_label, format_bytes, not_recorded_label, not_recorded_note};
use memlens_format::{Meta, RecordingWriter, ThreadId, WriterOptions};

use crate::child_memory::TreeMemory;
use crate::follow::{ChildJob, FollowDir, Followers};
use crate::process_watch::{EndWatch, Ended, Ending};
use crate::python_env::PythonPackageDir;
use crate::record_loop::{os_error, record_loop, write_failed, PipeReader, StreamEnd};
use crate::recorder::Recorder;

/// Everything the helper needs, prepared by `memlens run` before it forks.
pub struct RecorderJob {
    /// The traced program's process (memlens's own, before the exec).
    pub pid: u32,
    pub output: PathBuf,
    pub file: File,
    pub meta: Meta,
    /// CLOCK_MONOTONIC ns taken as the recording's start.
    pub t0: u64,
    /// The read end of the tracer's pipe.
    pub pipe: OwnedFd,
    /// The recorder's end of the control socket (see [`crate::process_watch`]).
    pub ctrl: OwnedFd,
    pub interval: Duration,
    /// Write the aggregates only, no events (`--aggregate`).
    pub aggregate: bool,
    pub quiet: bool,
    /// Whether a tracer will write to the pipe (not when an interpreter memlens cannot trace
    /// runs without native allocations recorded: then the recording holds RSS only).
    pub tracer_expected: bool,
    /// The `memlens` package the program imports; removed once it has ended.
    pub package: PythonPackageDir,
    /// The sockets the program's descendants connect to, when they are followed.
    pub follow: Option<FollowDir>,
}

/// Runs the helper to the end and exits the process.
pub fn serve(job: RecorderJob) -> ! {
    // stdin and stdout are the program's; keeping them open would make a reader of the
    // program's output wait for us. stderr stays, for the summary line.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
    let code = match record(job) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "memlens: error: {e:#}");
            2
        }
    };
    std::process::exit(code)
}

fn record(job: RecorderJob) -> Result<()> {
    let RecorderJob {
        pid,
        output,
        file,
        meta,
        t0,
        pipe,
        ctrl,
        interval,
        aggregate,
        quiet,
        tracer_expected,
        package,
        follow,
    } = job;
    let watch = EndWatch::spawn(pid, ctrl).context("cannot watch the traced program")?;
    let options = WriterOptions { events: !aggregate, ..WriterOptions::default() };
    let sample_bytes = meta.sample_bytes().unwrap_or(0);
    let out = BufWriter::with_capacity(1 << 20, file);
    let mut pipe = File::from(pipe);
    let writer = match RecordingWriter::with_options(out, &meta, options) {
        Ok(w) => w,
        Err(e) => {
            // A disk full from the start: the program still runs as without memlens (its
            // tracer's pipe is read to the end, and the `memlens` package it imports stays),
            // and the error is said once it has ended.
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            watch.wait_ended();
            drop(package);
            watch.release();
            return Err(write_failed(&output, e.into()));
        }
    };
    let recorder = Recorder::new(writer, t0).sampled(sample_bytes);
    let pipe = PipeReader::new(pipe);
    let mut memory = TreeMemory::new(pid, None);
    let followers = match follow {
        Some(dir) => {
            let job = ChildJob { meta: meta.clone(), t0, interval, options };
            Some(Followers::start(dir, job)?)
        }
        None => None,
    };
    let carry = |r: &mut Recorder<_>| match &followers {
        Some(f) => f.carry(r.writer_mut()),
        None => Ok(()),
    };
    let (mut recorder, mut feed_error) = record_loop(
        recorder,
        pipe,
        || memory.sample(),
        interval,
        || watch.ended().map(|_| StreamEnd::Ended),
        carry,
    )
    .map_err(|e| write_failed(&output, e))?;
    // The pipe can close before the end: the program ran another in its place (an exec,
    // which it announced: said where it happened; the new program, if it is followed, has a
    // stream of its own and reports the end), or closed file descriptors it did not open.
    // The end is still to come; the followed processes' streams are carried meanwhile.
    let mut execed = false;
    let ended = loop {
        let ended = watch.wait_ended_for(Duration::from_millis(100));
        if let (false, Some((at, command))) = (execed, watch.exec()) {
            let at = recorder.rel(at);
            recorder.writer_mut().marker(at, ThreadId(0), &execed_label(&command));
            execed = true;
        }
        if let Some(ended) = ended {
            break ended;
        }
        if feed_error.is_none() {
            if let Err(e) = carry(&mut recorder).and_then(|()| recorder.flush()) {
                feed_error = Some(e);
            }
        }
    };
    if ended.aborted {
        // `memlens run` could not start the program and said so itself.
        let _ = std::fs::remove_file(&output);
        watch.release();
        return Ok(());
    }
    let Ended { at_ns, ending, .. } = ended;
    // A write that failed while the tracer's data was read (a full disk) is the error.
    let feed_error = match feed_error {
        Some(e) if os_error(&e).is_some() => return Err(write_failed(&output, e)),
        other => other,
    };
    // (A program the program ran in its place, a process of the recording with its pid,
    // is not a child: the summary says it ran another program.)
    let (followed, not_recorded) = match followers {
        Some(f) => {
            let done =
                f.finish(recorder.writer_mut(), pid).map_err(|e| write_failed(&output, e))?;
            (done.listed - done.execed, done.not_recorded)
        }
        None => (0, 0),
    };
    if not_recorded > 0 {
        let at = recorder.rel(at_ns);
        recorder.writer_mut().marker(at, ThreadId(0), &not_recorded_label(not_recorded));
    }
    let hello = recorder.hello().is_some();
    let stopped = recorder.stopped();
    let peak = recorder.summary().peak_heap;
    let end_heap = recorder.heap();
    let (code, signal) = ending.code_and_signal();
    let w = recorder.finish(at_ns, code, signal).map_err(|e| write_failed(&output, e))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(crate::record_loop::sync_recording)
        .map_err(|e| write_failed(&output, e.into()))?;

    let mut err = std::io::stderr().lock();
    if let Some(e) = feed_error {
        let _ = writeln!(err, "memlens: warning: stopped reading the tracer's data early: {e:#}");
    }
    if !tracer_expected {
        // Nothing traced: no tracer to hear from.
    } else if !hello {
        let _ = writeln!(
            err,
            "memlens: warning: the program ended before tracing started; the recording is empty"
        );
    } else if !stopped && !execed && matches!(ending, Ending::Exited(_)) {
        let _ = writeln!(
            err,
            "memlens: warning: the tracer did not say goodbye; the last few ms may be missing"
        );
    }
    if !quiet {
        let how = match ending {
            Ending::Signaled(s) => format!("killed by signal {s}"),
            Ending::Exited(c) => format!("exit code {c}"),
            Ending::Unknown => "ended without saying how: killed?".to_owned(),
        };
        let how = if execed { format!("ran another program (exec), then {how}") } else { how };
        let estimated = match sample_bytes {
            0 => String::new(),
            b => format!(" ({})", memlens_analysis::notice_for(b)),
        };
        let mut children = match followed {
            0 => String::new(),
            1 => "; and 1 child process".to_owned(),
            n => format!("; and {n} child processes"),
        };
        if not_recorded > 0 {
            children += &format!("; {}", not_recorded_note(not_recorded as u64));
        }
        let _ = writeln!(
            err,
            "memlens: peak heap {}, {} still allocated at exit ({how}){estimated}{children}; \
             wrote {}",
            format_bytes(peak),
            format_bytes(end_heap),
            output.display()
        );
    }
    drop(err);
    drop(package);
    watch.release();
    Ok(())
}
