//! `memlens watch --pid` and `memlens run --rss-only`: sample a process tree's memory into a
//! recording with no tracing at all, for non-Python programs or processes already running.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use memlens_analysis::format_bytes;
use memlens_format::{CaptureOptions, MemorySample, Meta, ProcessEnd, RecordingWriter};

use crate::child_memory::{self, TreeMemory};
use crate::host::monotonic_ns;

/// Arguments of `memlens watch`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens watch --pid 4242                    # until the process exits or Ctrl-C
    memlens watch --pid 4242 --duration 60 -o server.memlens")]
pub struct WatchArgs {
    /// The process to watch (its descendants are included).
    #[arg(long)]
    pub pid: u32,
    /// Output file [default: memlens-watch-<pid>.memlens].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Milliseconds between samples.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
}

/// Metadata for a process: its command line and working directory, as the system says.
fn meta_for(pid: u32, command_line: Vec<String>, cwd: String, interval: Duration) -> Meta {
    let capture = CaptureOptions {
        python_allocators: false,
        native: false,
        rss_only: true,
        sample_interval_us: interval.as_micros() as u64,
    };
    crate::host::meta(pid, command_line, cwd, capture)
}

/// The command line and working directory of a process we did not start.
fn command_and_cwd(pid: u32) -> (Vec<String>, String) {
    // A process caught right after fork shows an empty command line until it has exec'd:
    // give it a moment.
    let mut found = (Vec::new(), String::new());
    for _ in 0..20 {
        match child_memory::command_and_cwd(pid) {
            Some(c) if c.0.is_empty() => found = c,
            Some(c) => return c,
            None => break,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    found
}

/// Samples `pid`'s tree every `interval` until `done()` says so or the process is gone,
/// flushing every 100 ms. Returns the writer and the time of the last sample.
fn sample_until(
    mut w: RecordingWriter<BufWriter<File>>,
    pid: u32,
    interval: Duration,
    t0: u64,
    done: impl Fn() -> bool,
) -> Result<(RecordingWriter<BufWriter<File>>, u64)> {
    let mut next_flush = Instant::now() + Duration::from_millis(100);
    let mut last = 0;
    let mut memory = TreeMemory::new(pid, None);
    while !done() {
        let Some((rss, vms)) = memory.sample() else { break };
        last = monotonic_ns().saturating_sub(t0);
        w.memory_sample(MemorySample { time_ns: last, rss, vms, heap: 0 })?;
        if Instant::now() >= next_flush {
            w.flush()?;
            next_flush = Instant::now() + Duration::from_millis(100);
        }
        std::thread::sleep(interval);
    }
    Ok((w, last))
}

fn create(path: &Path, meta: &Meta) -> Result<RecordingWriter<BufWriter<File>>> {
    let file = File::create(path)
        .with_context(|| format!("cannot write output file {}", path.display()))?;
    Ok(RecordingWriter::new(BufWriter::new(file), meta)?)
}

fn report(path: &Path, w: &RecordingWriter<BufWriter<File>>) {
    let s = w.summary();
    eprintln!(
        "memlens: peak RSS {} at {:.2} s; wrote {}",
        format_bytes(s.peak_rss),
        s.peak_rss_time_ns as f64 / 1e9,
        path.display()
    );
}

pub fn run(args: WatchArgs) -> Result<i32> {
    let interval = Duration::from_millis(args.interval);
    if TreeMemory::new(args.pid, None).sample().is_none() {
        bail!("no process with pid {} (or it cannot be read)", args.pid);
    }
    let output =
        args.output.unwrap_or_else(|| format!("memlens-watch-{}.memlens", args.pid).into());
    let (command_line, cwd) = command_and_cwd(args.pid);
    let w = create(&output, &meta_for(args.pid, command_line, cwd, interval))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let t0 = monotonic_ns();
    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let done = || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d);
    let (w, last) = sample_until(w, args.pid, interval, t0, done)?;
    report(&output, &w);
    // We did not start the process, so its exit status is unknown: the end records only when
    // watching stopped.
    w.finish(ProcessEnd { time_ns: last, exit_code: None, signal: None })?;
    Ok(0)
}

/// `memlens run --rss-only`: runs `command` untraced and samples its memory.
pub fn run_rss_only(
    command: &[std::ffi::OsString],
    output: Option<PathBuf>,
    interval: Duration,
    quiet: bool,
) -> Result<i32> {
    let (program, args) = command.split_first().context("nothing to run")?;
    let t0 = monotonic_ns();
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let pid = child.id();
    let output = output.unwrap_or_else(|| format!("memlens-rss-{pid}.memlens").into());
    let cmdline = command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let cwd = child_memory::command_and_cwd(pid).map(|c| c.1).unwrap_or_default();
    let w = match create(&output, &meta_for(pid, cmdline, cwd, interval)) {
        Ok(w) => w,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let exited = Arc::new(AtomicBool::new(false));
    let sampler = {
        let exited = Arc::clone(&exited);
        std::thread::spawn(move || {
            sample_until(w, pid, interval, t0, || exited.load(Ordering::Relaxed))
        })
    };
    let status = child.wait().context("cannot wait for the program")?;
    let end = monotonic_ns().saturating_sub(t0);
    exited.store(true, Ordering::Relaxed);
    let (w, _) = sampler.join().map_err(|_| anyhow::anyhow!("the sampler thread panicked"))??;
    if !quiet {
        report(&output, &w);
    }
    let signal = killed_by(status);
    w.finish(ProcessEnd { time_ns: end, exit_code: status.code(), signal })?;
    Ok(match (status.code(), signal) {
        (Some(c), _) => c,
        (_, Some(s)) => 128 + s,
        _ => 1,
    })
}

/// The signal that ended a program.
#[cfg(unix)]
fn killed_by(status: std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

/// Programs end only with a code here.
#[cfg(not(unix))]
fn killed_by(_: std::process::ExitStatus) -> Option<i32> {
    None
}
