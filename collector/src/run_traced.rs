//! `memlens run` of a Python program under the tracer (Linux).
//!
//! The program runs in this very process: after the preparations (the interpreter's
//! version, the tracer library, the `memlens` package, the output file, a pipe and a
//! control socket), memlens forks its recorder ([`crate::run_recorder`]) and execs the
//! interpreter with `LD_PRELOAD=libmemlens_tracer.so` and the bootstrap. So the program
//! keeps the PID the user started, and `timeout`, supervisors, `kill PID`, job control,
//! Ctrl-C and exit statuses reach it and come from it exactly as without memlens (a
//! parent forwarding signals would deliver a signal sent to the whole process group
//! twice). The tracer tells the recorder how the process ends (see
//! [`crate::process_watch`]) and, when it exits, waits until the recording is complete.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use memlens_format::{CaptureOptions, Meta};
use memlens_wire::{handshake, EndReport};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, setsid, ForkResult};

use crate::cmd_run::RunArgs;
use crate::follow::FollowDir;
use crate::host::monotonic_ns;
use crate::python_env::{
    default_python, find_tracer, probe_python, PythonInfo, PythonPackageDir, BOOTSTRAP,
};
use crate::run_recorder::RecorderJob;

/// Which of the standard descriptors memlens was started without (bit 0: stdin, 1: stdout,
/// 2: stderr, closed as by `>&-`). Rust's runtime opens /dev/null on them before `main`, so
/// that no file memlens opens takes their numbers; the program gets them closed again, as
/// without memlens (Python then has `sys.stdout` None, say).
static STARTED_CLOSED: AtomicU8 = AtomicU8::new(0);

/// Runs before Rust's runtime (the executable's constructors run before `main`).
#[used]
#[link_section = ".init_array"]
static NOTE_STARTED_CLOSED: extern "C" fn() = note_started_closed;

extern "C" fn note_started_closed() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on a descriptor number only reads its flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            STARTED_CLOSED.fetch_or(1 << fd, Ordering::Relaxed);
        }
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
    /// Censuses of more live objects look at a sample of about this many.
    pub census_max_objects: u64,
    /// Write the aggregates only, no events.
    pub aggregate: bool,
    /// Sample allocations, one every this many bytes on average.
    pub sample: Option<u64>,
    /// Record native stacks.
    pub native_stacks: bool,
    /// Follow the Pythons the program starts.
    pub follow: bool,
    pub quiet: bool,
}

impl TryFrom<RunArgs> for RunOptions {
    type Error = anyhow::Error;

    fn try_from(a: RunArgs) -> Result<Self> {
        let mut args = a.args;
        if args.is_empty() {
            bail!("nothing to run: give a script, -m MODULE or -c CODE");
        }
        let mut first = args.remove(0);
        let (mut module, mut code, mut python) = (a.module, a.code, a.python);
        // `memlens run python3 app.py`: the command as typed without memlens.
        if !module && !code {
            if let Some(interpreter) = interpreter_word(&first) {
                if let Some(given) = &python {
                    bail!(
                        "two interpreters: --python {} and {}; give one",
                        given.display(),
                        first.to_string_lossy()
                    );
                }
                python = Some(interpreter);
                (module, code) = interpreter_options(&mut args)?;
                if args.is_empty() {
                    bail!(
                        "nothing to run after {}: give a script, -m MODULE or -c CODE",
                        first.to_string_lossy()
                    );
                }
                first = args.remove(0);
            }
        }
        let text = |what: &str| {
            first
                .clone()
                .into_string()
                .map_err(|_| anyhow::anyhow!("the {what} is not valid UTF-8"))
        };
        let target = if module {
            Target::Module(text("module name")?)
        } else if code {
            Target::Code(text("code")?)
        } else {
            Target::Script(PathBuf::from(first))
        };
        // A command that names its interpreter (a virtualenv's console script, such as
        // `.venv/bin/mypy`) runs with it, as it would when run itself; a `.py` file runs
        // as `python3 script.py` would.
        if let (None, Target::Script(script)) = (&python, &target) {
            if script.extension().is_none_or(|e| e != "py") {
                python = shebang_python(script);
            }
        }
        Ok(RunOptions {
            target,
            args,
            output: a.output,
            python: python.unwrap_or_else(default_python),
            native: !a.no_native,
            interval: Duration::from_millis(a.interval),
            census: !a.no_census,
            census_interval: a.census_interval,
            census_max_objects: a.census_max_objects.unwrap_or(if a.sample.is_some() {
                handshake::SAMPLED_CENSUS_MAX_OBJECTS
            } else {
                handshake::CENSUS_MAX_OBJECTS
            }),
            aggregate: a.aggregate,
            sample: a.sample,
            native_stacks: a.native_stacks,
            follow: !a.no_follow,
            quiet: a.quiet,
        })
    }
}

/// The interpreter `word` names, if it is one: `python`, `python3` or `python3.12`, as a path
/// to a file or a command on PATH (`memlens run python3 app.py`). A file of that name in the
/// current directory is a script, as `python python3` would take it.
fn interpreter_word(word: &OsStr) -> Option<PathBuf> {
    let path = Path::new(word);
    let name = path.file_name()?.to_str()?;
    let version = name.strip_prefix("python")?;
    if !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    if path.exists() {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The Python a script's `#!` line names (`#!/path/to/venv/bin/python3`, or
/// `#!/usr/bin/env python3` looked up on PATH), if it names one.
fn shebang_python(script: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 512];
    let n = File::open(script).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let mut interpreter = words.next()?;
    if Path::new(interpreter).file_name()? == "env" {
        interpreter = words.find(|w| !w.starts_with('-'))?;
    }
    interpreter_word(OsStr::new(interpreter))
}

/// The interpreter's own options at the front of `args` (after `python3`): `-m MODULE` and
/// `-c CODE` (also written `-mMODULE`, `-cCODE`), which are memlens's too; removes them and
/// returns (module, code), leaving the module, code or script first. Other options would be
/// dropped silently, so they are refused, with the environment variable that does the same.
fn interpreter_options(args: &mut Vec<OsString>) -> Result<(bool, bool)> {
    let Some(first) = args.first().and_then(|a| a.to_str()).map(str::to_owned) else {
        return Ok((false, false));
    };
    let mode = |flag: &str| match first.strip_prefix(flag) {
        Some("") => Some(None),
        Some(rest) => Some(Some(OsString::from(rest))),
        None => None,
    };
    let found = match (mode("-m"), mode("-c")) {
        (Some(m), _) => Some((m, (true, false))),
        (_, Some(c)) => Some((c, (false, true))),
        _ => None,
    };
    if let Some((attached, flags)) = found {
        match attached {
            Some(value) => args[0] = value,
            None => {
                args.remove(0);
            }
        }
        return Ok(flags);
    }
    if first.starts_with('-') && first != "-" {
        bail!(
            "memlens run passes no interpreter option but -m and -c ({first}); the environment \
             variables do the same (PYTHONUNBUFFERED=1 for -u, PYTHONWARNINGS for -W, \
             PYTHONOPTIMIZE for -O, PYTHONDEVMODE=1 for -X dev)"
        );
    }
    Ok((false, false))
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
    if path == Path::new("-") {
        bail!(
            "-o -: the recording cannot go to standard output, which is the program's; give a \
             file name (or -o /dev/null for none)"
        );
    }
    File::create(path).with_context(|| format!("cannot write output file {}", path.display()))
}

/// Lets the interpreter inherit `fd` across the exec.
fn inheritable(fd: &OwnedFd) -> Result<()> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
        .context("cannot pass a descriptor to the program")?;
    Ok(())
}

/// The pipe the tracer writes to: (recorder's read end, program's write end).
fn make_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    inheritable(&w)?;
    Ok((r, w))
}

/// The control socket on which the program says how it ends ([`EndReport`]):
/// (recorder's end, program's end).
fn make_control_socket() -> Result<(OwnedFd, OwnedFd)> {
    let (r, p) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .context("cannot create a socket pair")?;
    inheritable(&p)?;
    Ok((r, p))
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
            ("census_max_objects".to_owned(), opts.census_max_objects.to_string()),
        ]
        .into_iter()
        .chain(opts.sample.map(|b| (memlens_format::META_SAMPLE_BYTES.to_owned(), b.to_string())))
        .chain(
            opts.native_stacks
                .then(|| (memlens_format::META_NATIVE_STACKS.to_owned(), "on".to_owned())),
        )
        .collect(),
        ..crate::host::meta(pid, command_line, cwd, capture)
    }
}

/// Runs the Python program of `args` traced; returns the exit code memlens should exit with.
pub fn run(args: RunArgs) -> Result<i32> {
    run_with(RunOptions::try_from(args)?)
}

fn run_with(opts: RunOptions) -> Result<i32> {
    if let Target::Script(p) = &opts.target {
        if !p.exists() {
            bail!("script not found: {}", p.display());
        }
        if is_executable_binary(p) {
            bail!(
                "{0} is a compiled program, not a Python script: memlens run traces Python \
                 programs (`memlens run --rss-only {0} ...` samples any program's memory; \
                 another interpreter is given with --python)",
                p.display()
            );
        }
    }
    let py = probe_python(&opts.python)?;
    if let Some(why) = &py.unsupported {
        let what = if opts.native { "native allocations and RSS" } else { "RSS" };
        eprintln!("memlens: {why}: recording {what} only, without Python stacks");
    }
    let tracer = find_tracer()?;
    let package = PythonPackageDir::create()?;
    // The program will be this process.
    let pid = std::process::id();
    let output = opts.output.clone().unwrap_or_else(|| default_output(&opts.target, pid));
    let file = create_output(&output)?;
    let (pipe_r, pipe_w) = make_pipe()?;
    let (ctrl_recorder, ctrl_program) = make_control_socket()?;
    let traced = py.unsupported.is_none();
    let mut cmd = interpreter_command(&opts, traced, &tracer, &package, &pipe_w, &ctrl_program);
    let follow = match opts.follow && traced {
        true => Some(FollowDir::create(package.run_dir())?),
        false => None,
    };
    if let Some(dir) = &follow {
        cmd.env(handshake::ENV_FOLLOW_PENDING, dir.path())
            .env(handshake::ENV_FOLLOW_OPTIONS, follow_options(&opts))
            .env(handshake::ENV_PACKAGE, package.path());
    }
    let job = RecorderJob {
        pid,
        output,
        file,
        meta: meta(&opts, &py, pid),
        t0: monotonic_ns(),
        pipe: pipe_r,
        ctrl: ctrl_recorder,
        interval: opts.interval,
        aggregate: opts.aggregate,
        quiet: opts.quiet,
        // Nothing traced and no native allocations: no tracer to hear from.
        tracer_expected: traced || opts.native,
        package,
        follow,
    };
    spawn_recorder(job, &[&pipe_w, &ctrl_program])?;
    let err = cmd.exec();
    // Still here: the exec failed. The recorder removes the output file.
    let _ = nix::sys::socket::send(
        ctrl_program.as_raw_fd(),
        &EndReport::Aborted.encode(),
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    );
    Err(err).with_context(|| format!("cannot start {}", opts.python.display()))
}

/// An ELF file (what Python would report as "source code string cannot contain null bytes").
fn is_executable_binary(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"\x7fELF"
}

/// `python -c BOOTSTRAP TARGET ARGS...` with the tracer preloaded and told where to write;
/// for an interpreter memlens cannot trace (`traced` false), `python TARGET ARGS...`.
fn interpreter_command(
    opts: &RunOptions,
    traced: bool,
    tracer: &Path,
    package: &PythonPackageDir,
    pipe: &OwnedFd,
    ctrl: &OwnedFd,
) -> Command {
    let mut cmd = Command::new(&opts.python);
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
    let mut preload = tracer.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_PRELOAD") {
        if !old.is_empty() {
            preload.push(":");
            preload.push(old);
        }
    }
    // (Neither, when nothing is traced: the pipe then only tells when the program ended.)
    let fd_var = if traced { handshake::ENV_FD } else { handshake::ENV_NATIVE_FD };
    if traced || opts.native {
        cmd.env(fd_var, pipe.as_raw_fd().to_string());
    }
    cmd.env("LD_PRELOAD", preload)
        .env(handshake::ENV_TRACER, tracer)
        .env(handshake::ENV_CTRL_FD, ctrl.as_raw_fd().to_string())
        .env(handshake::ENV_MODE, mode)
        .env(handshake::ENV_NATIVE, if opts.native { "1" } else { "0" })
        .env(handshake::ENV_CENSUS, if opts.census { "1" } else { "0" })
        .env(handshake::ENV_CENSUS_INTERVAL, opts.census_interval.unwrap_or(0.0).to_string())
        .env(handshake::ENV_CENSUS_MAX_OBJECTS, opts.census_max_objects.to_string())
        .env(handshake::ENV_SAMPLE_BYTES, opts.sample.unwrap_or(0).to_string())
        .env(handshake::ENV_NATIVE_STACKS, if opts.native_stacks { "1" } else { "0" })
        .env("PYTHONPATH", package.pythonpath());
    let closed = STARTED_CLOSED.load(Ordering::Relaxed);
    if closed != 0 {
        // SAFETY: between fork and exec only `close`, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for fd in (0..3).filter(|fd| closed & 1 << fd != 0) {
                    libc::close(fd);
                }
                Ok(())
            });
        }
    }
    cmd
}

/// What a followed descendant traces ([`handshake::ENV_FOLLOW_OPTIONS`]): what the program does.
fn follow_options(opts: &RunOptions) -> String {
    format!(
        "native={};census={};census_interval={};census_max_objects={};sample_bytes={};\
         native_stacks={}",
        u8::from(opts.native),
        u8::from(opts.census),
        opts.census_interval.unwrap_or(0.0),
        opts.census_max_objects,
        opts.sample.unwrap_or(0),
        u8::from(opts.native_stacks)
    )
}

/// Starts the recorder: a grandchild in a session of its own, so that it is not a child
/// the program could reap or wait for, and no signal meant for the program's process
/// group (Ctrl-C, `timeout`, `kill -- -PGID`) reaches it. This process must be
/// single-threaded (it is: memlens starts no thread before this). `program_fds` are the
/// program's ends of the pipe and the socket, which the recorder must not hold.
fn spawn_recorder(job: RecorderJob, program_fds: &[&OwnedFd]) -> Result<()> {
    // SAFETY: single-threaded (see above), so the child may run any code.
    match unsafe { fork() }.context("cannot fork the recorder")? {
        ForkResult::Parent { child } => {
            // The intermediate child exits at once; reap it so that the program does not
            // inherit an unknown child.
            waitpid(child, None).context("cannot start the recorder")?;
            // The recorder owns the package directory now; this process becomes Python.
            std::mem::forget(job);
            Ok(())
        }
        ForkResult::Child => {
            let _ = setsid();
            // SAFETY: as above; this child is still single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    for fd in program_fds {
                        // SAFETY: closing this process's copies; their owners in this
                        // process are never used again (serve does not return).
                        unsafe { libc::close(fd.as_raw_fd()) };
                    }
                    crate::run_recorder::serve(job)
                }
                // SAFETY: leaving the intermediate child without running destructors (the
                // recorder owns what the job holds).
                _ => unsafe { libc::_exit(0) },
            }
        }
    }
}
