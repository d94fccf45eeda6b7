//! `memlens sink` (hidden): the recording process of `memlens.record()`.
//!
//! `with memlens.record("out.memlens"):` traces a block of a running program: Python
//! starts this command with the read end of a pipe as stdin, waits for its `ready`
//! line (the output file exists and the tracer library's path follows), loads the
//! tracer and starts it on the pipe's write end. From then on this process is what
//! `memlens run`'s parent is to a traced program: it replays the tracer's records
//! into the recording, samples the program's memory (without its own) and flushes the
//! file every 100 ms, until the tracer says goodbye and closes the pipe at the end of
//! the block, or the program dies (the pipe closes without a goodbye; the recording is
//! complete up to then). It runs in its own session, so a Ctrl-C meant for the program
//! does not cut the recording short. Its last line on stdout gives the block's peak and
//! what it left allocated (`done peak=N left=N`, with ` sampled=BYTES` when these are
//! estimates of a sampled recording).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use memlens_analysis::{all_processes, descendants, not_recorded_label, tree_peak};
use memlens_format::{CaptureOptions, Meta, RecordingWriter, ThreadId, WriterOptions};
use memlens_wire::handshake;

use crate::child_memory::TreeMemory;
use crate::follow::{ChildJob, FollowDir, Followers};
use crate::host::monotonic_ns;
use crate::python_env::{find_tracer, PythonPackageDir};
use crate::record_loop::{os_error, record_loop, write_failed, PipeReader};
use crate::recorder::Recorder;

/// Arguments of `memlens sink`, all given by the `memlens` Python package.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// The recording to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The traced process.
    #[arg(long)]
    pub pid: u32,
    /// Milliseconds between memory samples.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Native allocations are traced too.
    #[arg(long)]
    pub native: bool,
    /// Object censuses are taken.
    #[arg(long)]
    pub census: bool,
    /// `platform.python_version()` of the traced interpreter.
    #[arg(long, default_value = "")]
    pub python_version: String,
    /// `platform.python_implementation()`.
    #[arg(long, default_value = "CPython")]
    pub python_implementation: String,
    /// Working directory of the traced program.
    #[arg(long, default_value = "")]
    pub cwd: String,
    /// Sample allocations, one every BYTES on average (as `memlens run --sample`).
    #[arg(long, value_name = "BYTES")]
    pub sample: Option<String>,
    /// Follow the Pythons the block starts (forked, spawned, exec'd) into the recording.
    #[arg(long)]
    pub follow: bool,
    /// Native stacks are recorded (as `memlens run --native-stacks`).
    #[arg(long)]
    pub native_stacks: bool,
    /// The traced program's command line (`sys.argv`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub argv: Vec<String>,
}

/// Runs the sink. On an error, its OS error number (if any) goes to stdout as `error errno=N`
/// before main prints the message, so that `memlens.record()` can raise the right `OSError`.
pub fn run(a: SinkArgs) -> Result<i32> {
    record(a).inspect_err(|e| {
        if let Some(n) = os_error(e) {
            println!("{}", handshake::error_line(n));
        }
    })
}

fn record(a: SinkArgs) -> Result<i32> {
    let sample = a.sample.as_deref().map(crate::sampling::parse_sample_bytes).transpose()?;
    let tracer = find_tracer()?;
    let file = File::create(&a.output).map_err(|e| write_failed(&a.output, e.into()))?;
    let capture = CaptureOptions {
        python_allocators: true,
        native: a.native,
        rss_only: false,
        sample_interval_us: a.interval * 1000,
    };
    let meta = Meta {
        python_version: a.python_version,
        python_implementation: a.python_implementation,
        extra: vec![
            ("census".to_owned(), if a.census { "on" } else { "off" }.to_owned()),
            ("mode".to_owned(), "memlens.record()".to_owned()),
        ]
        .into_iter()
        .chain(sample.map(|b| (memlens_format::META_SAMPLE_BYTES.to_owned(), b.to_string())))
        .chain(
            a.native_stacks.then(|| (memlens_format::META_NATIVE_STACKS.to_owned(), "on".into())),
        )
        .collect(),
        ..crate::host::meta(a.pid, a.argv, a.cwd, capture)
    };
    let writer = RecordingWriter::new(BufWriter::with_capacity(1 << 20, file), &meta)
        .map_err(|e| write_failed(&a.output, e.into()))?;
    let t0 = monotonic_ns();
    let interval = Duration::from_millis(a.interval);
    let recorder = Recorder::new(writer, t0).sampled(sample.unwrap_or(0));
    // SAFETY: fd 0 is our stdin, the pipe Python gave us; nothing else uses it.
    let pipe = File::from(unsafe { OwnedFd::from_raw_fd(0) });
    let pipe = PipeReader::new(pipe);
    // What the block's children need: the `memlens` package with the `sitecustomize` that
    // starts them, and the sockets they connect to.
    let follow = match a.follow {
        true => {
            let package = PythonPackageDir::create_in_run_dir()?;
            let dir = FollowDir::create(package.run_dir())?;
            let path = dir.path().to_string_lossy().into_owned();
            let options = WriterOptions::default();
            let job = ChildJob { meta: meta.clone(), t0, interval, options };
            Some((package, Followers::start(dir, job)?, path))
        }
        false => None,
    };
    {
        let mut out = std::io::stdout().lock();
        // The rate, for the tracer, which Python starts next.
        if let Some(b) = sample {
            writeln!(out, "{}", handshake::sample_line(b))?;
        }
        if let Some((_, _, dir)) = &follow {
            writeln!(out, "{}", handshake::follow_line(dir))?;
        }
        writeln!(out, "{}", handshake::ready_line(&tracer.to_string_lossy()))?;
        out.flush()?;
    }
    let mut memory = TreeMemory::new(a.pid, Some(std::process::id()));
    let carry = |r: &mut Recorder<_>| match &follow {
        Some((_, f, _)) => f.carry(r.writer_mut()),
        None => Ok(()),
    };
    let (mut recorder, mut feed_error) =
        record_loop(recorder, pipe, || memory.sample(), interval, || None, carry)
            .map_err(|e| write_failed(&a.output, e))?;
    let followed = match follow {
        Some((package, f, _)) => {
            let done =
                f.finish(recorder.writer_mut(), a.pid).map_err(|e| write_failed(&a.output, e))?;
            drop(package);
            if done.not_recorded > 0 {
                let at = recorder.rel(monotonic_ns());
                let label = not_recorded_label(done.not_recorded);
                recorder.writer_mut().marker(at, ThreadId(0), &label);
            }
            done.listed
        }
        None => 0,
    };
    // A write that failed while the tracer's data was read (a full disk) is the error.
    if let Some(e) = feed_error.take_if(|e| os_error(e).is_some()) {
        return Err(write_failed(&a.output, e));
    }
    let stopped = recorder.stopped();
    let (peak, left) = (recorder.summary().peak_heap, recorder.heap());
    let w = recorder.finish(monotonic_ns(), None, None).map_err(|e| write_failed(&a.output, e))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(crate::record_loop::sync_recording)
        .map_err(|e| write_failed(&a.output, e.into()))?;
    if let Some(e) = feed_error {
        eprintln!("memlens: warning: stopped reading the tracer's data early: {e:#}");
    }
    if !stopped {
        eprintln!("memlens: warning: the traced program ended inside memlens.record()");
    }
    // The block's figures, for `record.peak_bytes` / `leaked_bytes` (the pytest plugin's
    // limits) without reading the file back.
    // With `sampled=BYTES`, they are estimates.
    // With children, the peak of all processes together (read back from the file).
    let total = match followed {
        0 => None,
        _ => {
            let rec = crate::load::open_recording(&a.output)?;
            let family = descendants(&rec);
            Some(tree_peak(&all_processes(&rec, &family))?.0)
        }
    };
    println!("{}", handshake::done_line(peak, left, sample, total));
    Ok(0)
}
