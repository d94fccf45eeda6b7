//! `memlens run`: runs a Python program under the tracer and writes a recording.
//!
//! The parent (this process) creates a pipe, starts Python with
//! `LD_PRELOAD=libmemlens_tracer.so` and the bootstrap, and then:
//! - the recorder thread reads the tracer's raw records from the pipe and replays them
//!   into the recording ([`Recorder`]), samples the
//!   child's memory every `--interval` ms and flushes the file every 100 ms, so a
//!   killed child still leaves a readable recording,
//! - a signal thread forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to memlens,
//! - the main thread waits for the child, then writes how it ended.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use memlens_format::{format_bytes, CaptureOptions, Meta, RecordingWriter};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::child_memory::tree_memory;
use crate::host::monotonic_ns;
use crate::python_env::{
    default_python, find_tracer, probe_python, PythonInfo, PythonPackageDir, BOOTSTRAP,
};
use crate::recorder::Recorder;

/// How often the recording is made durable on disk: bounds what a crash of memlens
/// itself (or a SIGKILL of the child) can lose beyond the tracer's 5 ms drain period.
const FLUSH_PERIOD: Duration = Duration::from_millis(100);

/// After the child exits, how long to wait for the pipe's end. Only a grandchild that
/// inherited the pipe (which the tracer prevents) can hold it open longer.
const EOF_GRACE: Duration = Duration::from_secs(2);

/// Arguments of `memlens run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens run script.py --its-own-flag       # writes memlens-script-<pid>.memlens
    memlens run -o out.memlens -m http.server 8000
    memlens run --no-native -c 'x = [0] * 10**7'
    memlens run --python ~/.venvs/app/bin/python app.py")]
pub struct RunArgs {
    /// Output file [default: memlens-<script>-<pid>.memlens in the current directory].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Python interpreter to run (CPython 3.9 to 3.13) [default: the `python3` next to the
    /// memlens executable when there is one (memlens installed in a virtualenv), else
    /// `python3` from PATH].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Also trace native allocations (malloc, calloc, realloc, mmap, ...). On by default.
    #[arg(long, overrides_with = "no_native")]
    pub native: bool,
    /// Trace only Python's allocators.
    #[arg(long, overrides_with = "native")]
    pub no_native: bool,
    /// Milliseconds between samples of the process's resident memory.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Run a library module as a script, like `python -m`: the first argument is
    /// the module name.
    #[arg(short = 'm', conflicts_with = "code")]
    pub module: bool,
    /// Run a program passed as a string, like `python -c`: the first argument is
    /// the code.
    #[arg(short = 'c')]
    pub code: bool,
    /// Only sample the process's memory (RSS/VMS of it and its children): no tracing, works
    /// for any program. The arguments are the whole command, e.g. `--rss-only ./server -p 80`.
    #[arg(long)]
    pub rss_only: bool,
    /// Also take an object census (live objects by type) every SECONDS. Censuses are always
    /// taken at start, at each `memlens.mark()` and at exit; each holds the program for
    /// about 1-1.5 µs per live gc-tracked object (bench/census_cost.py).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub census_interval: Option<f64>,
    /// Take no object censuses at all.
    #[arg(long, conflicts_with = "census_interval")]
    pub no_census: bool,
    /// Do not print the summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// The script (or with -m the module, with -c the code), then its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "SCRIPT [ARGS]")]
    pub args: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Target {
    Script(PathBuf),
    Module(String),
    Code(String),
}

/// Everything `memlens run` needs, independent of the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: Target,
    pub args: Vec<OsString>,
    pub output: Option<PathBuf>,
    pub python: PathBuf,
    pub native: bool,
    pub interval: Duration,
    /// Take object censuses (start, marks, exit).
    pub census: bool,
    /// Seconds between extra censuses, if any.
    pub census_interval: Option<f64>,
    pub quiet: bool,
}

impl TryFrom<RunArgs> for RunOptions {
    type Error = anyhow::Error;

    fn try_from(a: RunArgs) -> Result<Self> {
        let mut args = a.args;
        if args.is_empty() {
            bail!("nothing to run: give a script, -m MODULE or -c CODE");
        }
        let first = args.remove(0);
        let text = |what: &str| {
            first
                .clone()
                .into_string()
                .map_err(|_| anyhow::anyhow!("the {what} is not valid UTF-8"))
        };
        let target = if a.module {
            Target::Module(text("module name")?)
        } else if a.code {
            Target::Code(text("code")?)
        } else {
            Target::Script(PathBuf::from(first))
        };
        Ok(RunOptions {
            target,
            args,
            output: a.output,
            python: a.python.unwrap_or_else(default_python),
            native: !a.no_native,
            interval: Duration::from_millis(a.interval),
            census: !a.no_census,
            census_interval: a.census_interval,
            quiet: a.quiet,
        })
    }
}

fn default_output(target: &Target, pid: u32) -> PathBuf {
    let stem = match target {
        Target::Script(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()),
        Target::Module(m) => Some(m.clone()),
        Target::Code(_) => Some("c".to_owned()),
    };
    PathBuf::from(format!("memlens-{}-{pid}.memlens", stem.unwrap_or_else(|| "python".into())))
}

fn create_output(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("cannot write output file {}", path.display()))
}

/// The pipe the tracer writes to: the read end stays here (close-on-exec), the write
/// end is inherited by the child.
fn make_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
        .context("cannot make the pipe inheritable")?;
    Ok((r, w))
}

fn meta(opts: &RunOptions, py: &PythonInfo, pid: u32) -> Meta {
    let mut command_line = vec![opts.python.to_string_lossy().into_owned()];
    match &opts.target {
        Target::Script(p) => command_line.push(p.to_string_lossy().into_owned()),
        Target::Module(m) => command_line.extend(["-m".to_owned(), m.clone()]),
        Target::Code(c) => command_line.extend(["-c".to_owned(), c.clone()]),
    }
    command_line.extend(opts.args.iter().map(|a| a.to_string_lossy().into_owned()));
    let cwd = std::env::current_dir().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    let capture = CaptureOptions {
        python_allocators: py.unsupported.is_none(),
        native: opts.native,
        rss_only: false,
        sample_interval_us: opts.interval.as_micros() as u64,
    };
    Meta {
        python_version: py.version.clone(),
        python_implementation: py.implementation.clone(),
        extra: vec![
            ("census".to_owned(), if opts.census { "on" } else { "off" }.to_owned()),
            (
                "census_interval_s".to_owned(),
                opts.census_interval.map_or_else(String::new, |s| s.to_string()),
            ),
        ],
        ..crate::host::meta(pid, command_line, cwd, capture)
    }
}

/// Runs the program; returns the exit code memlens should exit with.
pub fn run(args: RunArgs) -> Result<i32> {
    if args.rss_only {
        if args.module || args.code {
            bail!("--rss-only runs a whole command; -m and -c do not apply");
        }
        let interval = Duration::from_millis(args.interval);
        return crate::cmd_watch::run_rss_only(&args.args, args.output, interval, args.quiet);
    }
    run_with(RunOptions::try_from(args)?)
}

pub fn run_with(opts: RunOptions) -> Result<i32> {
    if let Target::Script(p) = &opts.target {
        if !p.exists() {
            bail!("script not found: {}", p.display());
        }
    }
    let py = probe_python(&opts.python)?;
    if let Some(why) = &py.unsupported {
        let what = if opts.native { "native allocations and RSS" } else { "RSS" };
        eprintln!("memlens: {why}: recording {what} only, without Python stacks");
    }
    let tracer = find_tracer()?;
    let pkg = PythonPackageDir::create()?;
    let mut out_file = opts.output.as_deref().map(create_output).transpose()?;

    let (pipe_r, pipe_w) = make_pipe()?;
    let t0 = monotonic_ns();
    let mut cmd = Command::new(&opts.python);
    let traced = py.unsupported.is_none();
    if traced {
        cmd.arg("-c").arg(BOOTSTRAP);
    }
    // An interpreter we cannot trace runs the program as `python ARGS` would, with the
    // tracer recording native allocations from its start (MEMLENS_NATIVE_FD).
    let mode = match &opts.target {
        Target::Script(p) => {
            cmd.arg(p);
            "script"
        }
        Target::Module(m) => {
            cmd.args((!traced).then_some("-m")).arg(m);
            "module"
        }
        Target::Code(c) => {
            cmd.args((!traced).then_some("-c")).arg(c);
            "code"
        }
    };
    cmd.args(&opts.args);
    let mut preload = tracer.clone().into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD") {
        if !old.is_empty() {
            preload.push(":");
            preload.push(old);
        }
    }
    // (Neither, when nothing is traced: the pipe then only tells when the program ended.)
    let fd_var = if traced { "MEMLENS_FD" } else { "MEMLENS_NATIVE_FD" };
    if traced || opts.native {
        cmd.env(fd_var, pipe_w.as_raw_fd().to_string());
    }
    cmd.env("LD_PRELOAD", preload)
        .env("MEMLENS_TRACER", &tracer)
        .env("MEMLENS_MODE", mode)
        .env("MEMLENS_NATIVE", if opts.native { "1" } else { "0" })
        .env("MEMLENS_CENSUS", if opts.census { "1" } else { "0" })
        .env("MEMLENS_CENSUS_INTERVAL", opts.census_interval.unwrap_or(0.0).to_string())
        .env("PYTHONPATH", pkg.pythonpath());
    let mut child =
        cmd.spawn().with_context(|| format!("cannot start {}", opts.python.display()))?;
    drop(pipe_w);
    let pid = child.id();

    let output = opts.output.clone().unwrap_or_else(|| default_output(&opts.target, pid));
    let file = match out_file.take() {
        Some(f) => f,
        None => match create_output(&output) {
            Ok(f) => f,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        },
    };
    let writer =
        RecordingWriter::new(BufWriter::with_capacity(1 << 20, file), &meta(&opts, &py, pid))
            .with_context(|| format!("cannot write output file {}", output.display()))?;
    let recorder = Recorder::new(writer, t0);

    let signals = forward_signals(pid)?;
    let pipe = PipeReader::new(File::from(pipe_r));
    let exited_at = Arc::new(AtomicU64::new(0));
    let rec_thread = {
        let exited_at = exited_at.clone();
        let interval = opts.interval;
        thread::Builder::new()
            .name("memlens-recorder".into())
            .spawn(move || record_loop(recorder, pipe, || tree_memory(pid), interval, exited_at))?
    };

    let status = child.wait().context("cannot wait for the traced program")?;
    let end_ns = monotonic_ns();
    exited_at.store(end_ns.max(1), Ordering::Release);
    signals.close();
    let (recorder, feed_error) =
        rec_thread.join().map_err(|_| anyhow::anyhow!("the recorder thread panicked"))??;

    let code = status.code();
    let signal = status.signal();
    let hello = recorder.hello().is_some();
    let stopped = recorder.stopped();
    let summary = recorder.summary();
    let end_heap = recorder.heap();
    let w = recorder.finish(end_ns, code, signal)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write output file {}", output.display()))?;

    if let Some(e) = feed_error {
        eprintln!("memlens: warning: stopped reading the tracer's data early: {e:#}");
    }
    if !traced && !opts.native {
        // Nothing traced: no tracer to hear from.
    } else if !hello {
        eprintln!(
            "memlens: warning: the program ended before tracing started; the recording is empty"
        );
    } else if !stopped && signal.is_none() {
        eprintln!(
            "memlens: warning: the tracer did not say goodbye; the last few ms may be missing"
        );
    }
    if !opts.quiet {
        let how = match (code, signal) {
            (_, Some(s)) => format!("killed by signal {s}"),
            (Some(c), _) => format!("exit code {c}"),
            _ => "ended".to_owned(),
        };
        eprintln!(
            "memlens: peak heap {}, {} still allocated at exit ({how}); wrote {}",
            format_bytes(summary.peak_heap),
            format_bytes(end_heap),
            output.display()
        );
    }
    Ok(match (code, signal) {
        (Some(c), _) => c,
        (_, Some(s)) => 128 + s,
        _ => 1,
    })
}

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
    fn feed_next(
        &mut self,
        recorder: &mut Recorder<BufWriter<File>>,
        timeout: Duration,
        error: &mut Option<anyhow::Error>,
    ) -> Result<(), NoData> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Err(NoData::Timeout),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
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

pub(crate) type RecordResult = Result<(Recorder<BufWriter<File>>, Option<anyhow::Error>)>;

/// Replays what arrives on `rx` into `recorder` until the tracer's pipe closes (or,
/// once the program exited as `exited_at` says, until the tracer's goodbye), taking a
/// `memory()` sample (RSS, VMS) every `interval` and flushing the file every
/// [`FLUSH_PERIOD`].
pub(crate) fn record_loop(
    mut recorder: Recorder<BufWriter<File>>,
    mut pipe: PipeReader,
    mut memory: impl FnMut() -> Option<(u64, u64)>,
    interval: Duration,
    exited_at: Arc<AtomicU64>,
) -> RecordResult {
    let mut next_sample = Instant::now();
    let mut next_flush = Instant::now() + FLUSH_PERIOD;
    let mut feed_error = None;
    let mut exit_seen: Option<Instant> = None;
    loop {
        let timeout = next_sample.saturating_duration_since(Instant::now());
        match pipe.feed_next(&mut recorder, timeout, &mut feed_error) {
            Ok(()) | Err(NoData::Timeout) => {}
            Err(NoData::Closed) => break,
        }
        let now = Instant::now();
        if now >= next_sample {
            if exited_at.load(Ordering::Acquire) == 0 {
                if let Some((rss, vms)) = memory() {
                    recorder.sample(monotonic_ns(), rss, vms)?;
                }
            }
            next_sample = now + interval;
        }
        if now >= next_flush {
            recorder.flush()?;
            next_flush = now + FLUSH_PERIOD;
        }
        if exited_at.load(Ordering::Acquire) != 0 {
            let since = *exit_seen.get_or_insert(now);
            if recorder.stopped() || now.duration_since(since) > EOF_GRACE {
                // Take what is already queued, then stop waiting for EOF.
                while pipe.feed_next(&mut recorder, Duration::ZERO, &mut feed_error).is_ok() {}
                break;
            }
        }
    }
    Ok((recorder, feed_error))
}

/// Forwards termination signals sent to memlens (e.g. `kill`, a service manager) to the
/// child. A Ctrl-C from the terminal already reaches the child through the process
/// group, so kernel-generated SIGINT/SIGQUIT are not sent a second time.
fn forward_signals(pid: u32) -> Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::low_level::siginfo::Cause;

    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .context("cannot install signal handlers")?;
    let handle = signals.handle();
    thread::Builder::new().name("memlens-signals".into()).spawn(move || {
        for origin in signals.forever() {
            let from_terminal = matches!(origin.cause, Cause::Kernel);
            if from_terminal && (origin.signal == SIGINT || origin.signal == SIGQUIT) {
                continue;
            }
            if let Ok(sig) = Signal::try_from(origin.signal) {
                let _ = kill(Pid::from_raw(pid as i32), sig);
            }
        }
    })?;
    Ok(handle)
}
