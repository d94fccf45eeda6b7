//! `memlens attach PID` and `memlens detach PID`: trace a Python process that is already
//! running, without restarting it, through the same in-process path as `memlens.record()`.
//!
//! How, on CPython 3.14+: the process's own interpreter calls `sys.remote_exec`, and the
//! program's main thread starts a thread at its next Python instruction ([`remote_exec`]).
//! On 3.9-3.13 (and where that fails): lldb stops the process at the entry of one of
//! CPython's allocator functions or of `PyErr_CheckSignals` (no lock of libc's or of
//! Python's is held there), loads the tracer with `dlopen` and has it start a thread
//! (`memlens_inject`), then detaches at once. Either thread takes the GIL like any Python
//! thread and runs `memlens._attach.main`, which starts `memlens.record()` and talks to this
//! command through two named pipes in a session folder (`$XDG_RUNTIME_DIR` or the temporary
//! directory, `memlens-attach-PID`): `status` (the process reports) and `control` (this
//! command, or `memlens detach PID`, says `stop`). The recording also stops when this
//! command goes away, however it ends: the process reads EOF on `control` once no writer is
//! left.
//!
//! Why lldb and not gdb: Debian 12's gdb 13 cannot call a function in a process on CPUs
//! whose extended register state it does not know (it fails with "Couldn't write extended
//! state status: Bad address" and can leave the interrupted system call returning an error
//! to the program); lldb saves and restores what it needs.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::python_env::{find_tracer, probe_python, PythonPackageDir, SUPPORTED};

#[derive(Debug, Args)]
#[command(after_help = "EXAMPLES:
    memlens attach 4242                      # until Ctrl-C or `memlens detach 4242`
    memlens attach 4242 --duration 60 -o leak.memlens
    memlens attach 4242 --sample 512KiB       # a service in production: estimates, low cost
    memlens attach 4242 --native-stacks       # C/C++/Rust functions under the Python lines
    memlens detach 4242                      # from another shell

Needs the right to trace the process: the same user with /proc/sys/kernel/yama/ptrace_scope
at 0, or root (in a container: CAP_SYS_PTRACE); and, for CPython 3.9-3.13, lldb
(Debian/Ubuntu: apt install lldb). On 3.14 memlens uses sys.remote_exec instead.
See docs/attach.md.")]
pub struct AttachArgs {
    /// Process id of the running CPython 3.9-3.15 program.
    pub pid: u32,
    /// Output file [default: memlens-attach-<pid>.memlens in the current directory].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Stop after this many seconds (default: until Ctrl-C, `memlens detach PID`, or the
    /// program's end).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    pub duration: Option<f64>,
    /// Do not record native (malloc/mmap) allocations.
    #[arg(long)]
    pub no_native: bool,
    /// No object censuses at the start and end.
    #[arg(long)]
    pub no_census: bool,
    /// Sample allocations (one every BYTES allocated on average, e.g. 512KiB) instead of
    /// recording each: figures are estimates, at a fraction of the cost (see `memlens run
    /// --help`).
    #[arg(long, value_name = "BYTES", value_parser = crate::sampling::sample_arg)]
    pub sample: Option<u64>,
    /// Record native stacks too: the C, C++ or Rust functions under the Python lines (see
    /// `memlens run --help`).
    #[arg(long)]
    pub native_stacks: bool,
    /// Memory sampling interval in milliseconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub interval: u32,
    /// How long to wait for the program to reach a point where tracing can start (it must
    /// run Python code or allocate: a program blocked in one call is not interrupted).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
#[command(after_help = "EXAMPLES:
    memlens detach 4242      # stops `memlens attach 4242`, which finishes the recording")]
pub struct DetachArgs {
    /// Process id given to `memlens attach`.
    pub pid: u32,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// CPython functions at whose entry the process may be stopped to load the tracer: each is
/// called often by running Python code, and none is entered holding a lock or with live
/// floating-point arguments.
const SAFE_POINTS: &[&str] =
    &["PyErr_CheckSignals", "PyObject_Malloc", "PyObject_Free", "PyMem_Malloc", "PyMem_Free"];

pub fn attach(args: AttachArgs) -> Result<i32> {
    let target = Target::check(args.pid)?;
    // 3.14+ runs the start itself (`sys.remote_exec`); older ones need the debugger.
    let remote = target.interpreter.clone().filter(|(_, minor)| *minor >= 14);
    let lldb = if remote.is_some() { find_lldb().ok() } else { Some(find_lldb()?) };
    let tracer = fs::canonicalize(find_tracer()?).context("cannot resolve the tracer's path")?;
    let output = absolute(
        args.output
            .clone()
            .unwrap_or_else(|| format!("memlens-attach-{}.memlens", args.pid).into()),
    )?;
    let package = PythonPackageDir::create()?;
    let session = Session::create(args.pid, target.uid)?;
    let options = serde_json::json!({
        "output": output,
        "native": !args.no_native,
        "census": !args.no_census,
        "interval_ms": args.interval,
        "sample": args.sample,
        "native_stacks": args.native_stacks,
        "binary": std::env::current_exe().context("cannot find the memlens executable")?,
        "tracer": tracer,
    });
    session.write("options.json", &options.to_string())?;
    session.write(
        "bootstrap.py",
        &format!(
            "import sys\nsys.path.insert(0, {pkg})\ntry:\n    import memlens._attach as a\n\
             finally:\n    sys.path.remove({pkg})\na.main({dir})\n",
            pkg = py_str(package.path()),
            dir = py_str(&session.dir),
        ),
    )?;
    let mut status = Status::open(&session.dir.join("status"))?;
    // Read-write: opening never blocks, and the process sees EOF only when this end (and any
    // `memlens detach`'s) is closed.
    let mut control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(session.dir.join("control"))
        .context("cannot open the session's control pipe")?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    eprintln!("memlens: attaching to {} ({})", args.pid, target.describe());
    // The code the injected thread runs; nothing it does may print to the program's output.
    let code = format!(
        "try:\n exec(open({b}).read(), {{'__name__': '__memlens_attach__'}})\nexcept BaseException:\n pass",
        b = py_str(&session.dir.join("bootstrap.py"))
    );
    let timeout = Duration::from_secs_f64(args.timeout);
    let remote = match remote {
        Some((exe, _)) => match remote_exec(&exe, args.pid, &code, &session, target.uid) {
            Ok(()) => true,
            Err(why) if lldb.is_some() => {
                eprintln!(
                    "memlens: sys.remote_exec could not ask process {}: {why}; using lldb",
                    args.pid
                );
                false
            }
            Err(why) => bail!(
                "cannot attach to process {}: sys.remote_exec failed ({why}), and lldb, which \
                 could do it instead, is not installed (Debian/Ubuntu: apt install lldb)",
                args.pid
            ),
        },
        None => false,
    };
    if !remote {
        let lldb = lldb.as_deref().expect("found above where remote_exec is not used");
        inject(lldb, args.pid, &tracer, &code, timeout, &session, &stop)?;
    }

    let started = first_report(&mut status, args.pid, remote, timeout, &stop)?;
    match started.as_deref().and_then(|l| l.split_once(' ')) {
        Some(("started", mode)) => eprintln!(
            "memlens: recording {} to {} (stacks: {mode}); Ctrl-C or `memlens detach {}` stops",
            args.pid,
            output.display(),
            args.pid
        ),
        Some(("error", why)) => bail!("tracing could not start in process {}: {why}", args.pid),
        _ if !alive(args.pid) => bail!("process {} ended before tracing started", args.pid),
        _ if remote && stop.load(Ordering::Relaxed) => bail!(
            "interrupted before tracing started; process {} runs on untouched (the request \
             sys.remote_exec left it does nothing when it runs)",
            args.pid
        ),
        _ if remote => bail!(
            "process {} reached no point where tracing can start in {:.0} s (sys.remote_exec \
             starts it at the next Python instruction of the main thread; a program blocked in \
             one call is not interrupted); it runs on untouched, and the request left with it \
             does nothing when it runs (--timeout waits longer)",
            args.pid,
            timeout.as_secs_f64()
        ),
        _ => bail!(
            "process {} did not start tracing (the tracer was loaded; its Python thread never \
             reported: is the GIL held by a thread that never releases it?)",
            args.pid
        ),
    }

    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut ended = status
        .rest(|| stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d))?;
    if ended.is_none() {
        // The process may have ended already: then the write finds no reader, which is fine.
        let _ = control.write_all(b"stop\n");
        drop(control);
        let give_up = Instant::now() + Duration::from_secs(600);
        ended = status.rest(|| Instant::now() >= give_up)?;
    }
    match ended {
        Some(Ok(figures)) => {
            eprintln!("memlens: detached from {}; wrote {} ({figures})", args.pid, output.display())
        }
        Some(Err(why)) => bail!("the recording of process {} failed: {why}", args.pid),
        None => {
            wait_complete(&output, Duration::from_secs(30));
            eprintln!(
                "memlens: process {} ended while traced (or while memlens was detaching); \
                 wrote {} (up to its end)",
                args.pid,
                output.display()
            );
        }
    }
    Ok(0)
}

/// The process's first line on the status pipe. After lldb loaded the tracer, it comes
/// within 30 s; with `sys.remote_exec` (`remote`), when the process's main thread next runs
/// Python code: up to `timeout`, with a progress line after 2 s.
fn first_report(
    status: &mut Status,
    pid: u32,
    remote: bool,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<Option<String>> {
    if !remote {
        return status.line(Instant::now() + Duration::from_secs(30), stop);
    }
    let patience = Duration::from_secs(2);
    let soon = status.line(Instant::now() + timeout.min(patience), stop)?;
    if soon.is_some() || timeout <= patience || stop.load(Ordering::Relaxed) || !alive(pid) {
        return Ok(soon);
    }
    eprintln!(
        "memlens: waiting for process {pid} to run Python code in its main thread (up to {:.0} \
         s; Ctrl-C gives up and leaves it untouched)",
        timeout.as_secs_f64()
    );
    status.line(Instant::now() + timeout - patience, stop)
}

pub fn detach(args: DetachArgs) -> Result<i32> {
    let dir = session_dir(args.pid);
    let control = dir.join("control");
    let mut f = match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&control) {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => {
            bail!("memlens is not attached to process {}", args.pid)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", control.display())),
    };
    f.write_all(b"stop\n").with_context(|| format!("cannot write to {}", control.display()))?;
    eprintln!("memlens: told the recording of {} to stop (`memlens attach` finishes it)", args.pid);
    Ok(0)
}

/// A status line from the process: `Some(Ok(figures))` when it stopped, `Some(Err(why))`
/// when stopping failed; messages are shown and give `None`.
fn report(line: &str) -> Option<Result<String, String>> {
    let (kind, text) = line.split_once(' ').unwrap_or((line, ""));
    match kind {
        "stopped" => Some(Ok(text.split_whitespace().map(figure).collect::<Vec<_>>().join(", "))),
        "error" => Some(Err(text.to_owned())),
        _ => {
            eprintln!("{}", crate::term::escape_line(text));
            None
        }
    }
}

/// `peak=123` as "peak 123 B" in the units the rest of memlens uses.
fn figure(word: &str) -> String {
    match word.split_once('=') {
        Some((name, v)) => match v.parse::<u64>() {
            Ok(n) => format!("{} {}", name, memlens_analysis::format_bytes(n)),
            Err(_) => format!("{name} unknown"),
        },
        None => word.to_owned(),
    }
}

/// The running process to attach to.
struct Target {
    uid: u32,
    /// The interpreter's version when it could be asked ("3.12.1"), else the libpython
    /// found in its mappings.
    python: String,
    /// Its executable and minor version, where it is a python executable that was asked.
    interpreter: Option<(PathBuf, u32)>,
}

impl Target {
    fn check(pid: u32) -> Result<Target> {
        if pid == std::process::id() {
            bail!("memlens cannot attach to itself");
        }
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let meta = match fs::metadata(&proc) {
            Ok(m) => m,
            Err(_) => bail!("no process with PID {pid}"),
        };
        let uid = std::os::unix::fs::MetadataExt::uid(&meta);
        let maps = fs::read_to_string(proc.join("maps")).map_err(|e| {
            // SAFETY: geteuid has no preconditions.
            let why = match unsafe { libc::geteuid() } {
                // Root is refused by the kernel's ptrace rules themselves: a container
                // without CAP_SYS_PTRACE, Yama's ptrace_scope 3, another PID namespace.
                0 => format!(
                    "process {pid} cannot be traced even as root here: the container or the \
                     kernel's ptrace rules forbid it (CAP_SYS_PTRACE, kernel.yama.ptrace_scope: \
                     see docs/attach.md)"
                ),
                _ => format!(
                    "process {pid} is not yours to trace (run memlens attach as its user or as \
                     root; see docs/attach.md)"
                ),
            };
            anyhow::anyhow!("cannot read /proc/{pid}/maps ({e}): {why}")
        })?;
        let exe = fs::read_link(proc.join("exe")).ok();
        let libpython = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| {
                Path::new(p)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libpython3"))
            })
            .map(str::to_owned);
        let exe_is_python = exe
            .as_ref()
            .and_then(|e| e.file_name())
            .is_some_and(|n| n.to_string_lossy().starts_with("python"));
        let mut interpreter = None;
        let python = if exe_is_python {
            let exe = exe.expect("checked above");
            let info = probe_python(&exe)?;
            if let Some(why) = info.unsupported {
                bail!("cannot trace process {pid}: {why}");
            }
            let minor = info.version.split('.').nth(1).and_then(|m| m.parse().ok());
            interpreter = minor.map(|m| (exe, m));
            format!("{} {}", info.implementation, info.version)
        } else if let Some(lib) = libpython {
            let name = Path::new(&lib).file_name().map(|n| n.to_string_lossy().into_owned());
            let minor = name
                .as_deref()
                .and_then(|n| n.strip_prefix("libpython3."))
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|m| m.parse::<u32>().ok());
            match minor {
                Some(m) if (SUPPORTED.0..=SUPPORTED.1).contains(&m) => format!("Python 3.{m}"),
                _ => bail!(
                    "cannot trace process {pid}: it runs {lib}, and memlens traces CPython \
                     3.{}-3.{}",
                    SUPPORTED.0,
                    SUPPORTED.1
                ),
            }
        } else {
            let what = exe.map_or_else(|| "?".to_owned(), |e| e.display().to_string());
            bail!("process {pid} ({what}) is not a Python process (no python executable or libpython in it)");
        };
        Ok(Target { uid, python, interpreter })
    }

    fn describe(&self) -> &str {
        &self.python
    }
}

/// `$MEMLENS_LLDB`, else the first lldb on PATH.
fn find_lldb() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MEMLENS_LLDB") {
        return Ok(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let names = ["lldb".to_owned()].into_iter().chain((14..=22).rev().map(|v| format!("lldb-{v}")));
    for name in names {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "memlens attach needs lldb, which is not installed (Debian/Ubuntu: apt install lldb; or set \
         MEMLENS_LLDB=/path/to/lldb); see docs/attach.md"
    )
}

/// Has lldb stop the process at a safe point, load the tracer there and start the thread
/// that runs `code`, then detach. On `timeout` (or Ctrl-C) the process is sent SIGURG, which
/// lldb is told to stop at and not to deliver: lldb then removes its breakpoints and
/// detaches without loading anything, and the process runs on as before, with no signal
/// pending (killing lldb instead would leave its breakpoints in the program's code).
fn inject(
    lldb: &Path,
    pid: u32,
    tracer: &Path,
    code: &str,
    timeout: Duration,
    session: &Session,
    stop: &AtomicBool,
) -> Result<()> {
    let names: Vec<String> = SAFE_POINTS.iter().map(|n| format!("-n {n}")).collect();
    // The breakpoint's commands run only when one of the safe points is reached.
    let script = format!(
        "process handle SIGURG --pass false --stop true --notify true\n\
         breakpoint set -K false {names}\n\
         breakpoint command add 1\n\
         breakpoint disable\n\
         expr -- void *h = (void*)dlopen({lib}, 2); \
         h ? ((int(*)(const char*))dlsym(h, \"memlens_inject\"))({code}) : -2\n\
         process detach\n\
         DONE\n\
         process continue\n\
         breakpoint delete --force\n\
         process detach\n",
        names = names.join(" "),
        lib = c_str(&tracer.to_string_lossy()),
        code = c_str(code),
    );
    let script_path = session.write("lldb.cmds", &script)?;
    let mut child = Command::new(lldb)
        .args(["-b", "--no-lldbinit", "-p", &pid.to_string(), "-s"])
        .arg(&script_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", lldb.display()))?;
    let (mut out, mut err) =
        (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let deadline = started + timeout;
    let mut interrupted = None;
    let mut said_waiting = false;
    let status = loop {
        if let Some(s) = child.try_wait().context("cannot wait for lldb")? {
            break s;
        }
        if !said_waiting && started.elapsed() >= Duration::from_secs(2) {
            said_waiting = true;
            eprintln!(
                "memlens: waiting for process {pid} to run Python code or allocate (up to {:.0} s; \
                 Ctrl-C gives up and leaves it untouched)",
                timeout.as_secs_f64()
            );
        }
        let now_stop = stop.load(Ordering::Relaxed);
        if interrupted.is_none() && (now_stop || Instant::now() >= deadline) {
            interrupted = Some(now_stop);
            let target = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGURG);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let transcript = reader.join().unwrap_or_default();
    let rc = transcript
        .lines()
        .find_map(|l| l.trim().strip_prefix("(int) $0 = "))
        .and_then(|v| v.trim().parse::<i32>().ok());
    match (rc, interrupted) {
        (Some(0), _) => Ok(()),
        (Some(-2), _) => bail!("process {pid} could not load {}", tracer.display()),
        (Some(rc), _) => {
            bail!("the tracer could not start its thread in process {pid} (code {rc})")
        }
        (None, Some(true)) => {
            bail!("interrupted before tracing started; process {pid} runs on untouched")
        }
        (None, Some(false)) if transcript.contains("stop reason = signal SIGURG") => bail!(
            "process {pid} reached no point where tracing can start in {:.0} s (it must run \
             Python code or allocate; a program blocked in one call is not interrupted); it \
             runs on untouched (--timeout waits longer)",
            timeout.as_secs_f64()
        ),
        (None, _) => {
            let why = lldb_error(&transcript)
                .unwrap_or_else(|| format!("lldb exited with {status} and did not say why"));
            bail!("cannot attach to process {pid}: {why}")
        }
    }
}

/// The reason lldb gives for failing, with advice where it is about permissions.
fn lldb_error(transcript: &str) -> Option<String> {
    let line = transcript.lines().find(|l| l.trim_start().starts_with("error:"))?;
    let msg = line.trim_start().trim_start_matches("error:").trim().to_owned();
    if msg.contains("not permitted") || msg.contains("ptrace") {
        return Some(format!(
            "{msg} (tracing another process needs the same user with \
             /proc/sys/kernel/yama/ptrace_scope at 0, or root; in a container, CAP_SYS_PTRACE: \
             see docs/attach.md)"
        ));
    }
    Some(msg)
}

/// Has the process's main thread start the thread that runs `code`, through CPython 3.14's
/// `sys.remote_exec` (PEP 768), called by the process's own interpreter: the script it runs
/// at the main thread's next Python instruction starts a thread, and returns. The script is
/// kept outside the session folder and deletes itself when it runs, since CPython prints
/// to the program's stderr a script it cannot read; it starts nothing unless the session's
/// marker for it is still there (this attach is still waiting), so a request that runs
/// after this command gave up, or after another attach began, does nothing.
fn remote_exec(exe: &Path, pid: u32, code: &str, session: &Session, uid: u32) -> Result<()> {
    let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos());
    let nonce = format!("{}-{nanos}", std::process::id());
    let marker = session.write(&format!("pending-{nonce}"), "")?;
    let script = session.dir.with_file_name(format!("memlens-attach-{pid}-{nonce}.py"));
    let body = format!(
        "import os as _os\n\
         try:\n    _os.unlink({script})\nexcept OSError:\n    pass\n\
         try:\n    _os.unlink({marker})\nexcept OSError:\n    pass\nelse:\n\
         \x20   def _memlens_attach():\n{code}\n\
         \x20   import _thread\n\
         \x20   _thread.start_new_thread(_memlens_attach, ())\n",
        script = py_str(&script),
        marker = py_str(&marker),
        code = code.lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n"),
    );
    fs::write(&script, body).with_context(|| format!("cannot write {}", script.display()))?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644))?;
    if nix::unistd::Uid::effective().is_root() && uid != 0 {
        std::os::unix::fs::chown(&script, Some(uid), None)
            .with_context(|| format!("cannot hand {} to uid {uid}", script.display()))?;
    }
    let out = Command::new(exe)
        .args(["-I", "-S", "-c", "import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])"])
        .arg(pid.to_string())
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let _ = fs::remove_file(&script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The exception's last line: "PermissionError: [Errno 1] Operation not permitted".
    let why = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no reason given");
    bail!("{}", why.trim())
}

/// A C string literal for lldb's expression parser.
fn c_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Python string literal for a path.
fn py_str(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("a string serializes")
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(std::env::current_dir().context("cannot read the current directory")?.join(p))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (a bounded time) until the recorder has closed the recording: its trailer is there.
/// Each look opens it as every reader does (its trailer, or its chunk headers until the
/// trailer is there), without a copy of the whole file in memory.
fn wait_complete(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let done = crate::load::source(path)
            .ok()
            .and_then(|s| memlens_format::Recording::open_source(s).ok())
            .is_some_and(|r| r.has_trailer());
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn session_dir(pid: u32) -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("memlens-attach-{pid}"))
}

/// The session folder: options, the bootstrap, the lldb script and the two pipes. Removed
/// on drop.
struct Session {
    dir: PathBuf,
}

impl Session {
    fn create(pid: u32, uid: u32) -> Result<Session> {
        let dir = session_dir(pid);
        if dir.exists() {
            let live = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.join("control"))
                .is_ok();
            if live {
                bail!("memlens is already attached to process {pid} (`memlens detach {pid}` stops it)");
            }
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let session = Session { dir };
        fs::set_permissions(&session.dir, fs::Permissions::from_mode(0o700))?;
        for name in ["status", "control"] {
            let path = session.dir.join(name);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .with_context(|| format!("cannot make the pipe {}", path.display()))?;
        }
        // Root attaching to another user's process: that user's process opens the pipes.
        if nix::unistd::Uid::effective().is_root() && uid != 0 {
            for entry in std::iter::once(session.dir.clone())
                .chain(["status", "control"].map(|n| session.dir.join(n)))
            {
                std::os::unix::fs::chown(&entry, Some(uid), None)
                    .with_context(|| format!("cannot hand {} to uid {uid}", entry.display()))?;
            }
        }
        Ok(session)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        Ok(path)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

enum Poll {
    Line(String),
    Nothing,
    Closed,
}

/// The reading end of the `status` pipe, opened before the process opens its end.
struct Status {
    file: File,
    buf: Vec<u8>,
    /// The process has opened its end (until then, reading finds no writer, not an end).
    opened: bool,
}

impl Status {
    fn open(path: &Path) -> Result<Status> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Status { file, buf: Vec::new(), opened: false })
    }

    /// A whole line if one is there within `wait`.
    fn poll_line(&mut self, wait: Duration) -> Result<Poll> {
        let until = Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(Poll::Line(String::from_utf8_lossy(&line).trim_end().to_owned()));
            }
            let mut chunk = [0u8; 4096];
            match self.file.read(&mut chunk) {
                Ok(0) if self.opened => return Ok(Poll::Closed),
                Ok(0) => {}
                Ok(n) => {
                    self.opened = true;
                    self.buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.opened = true,
                Err(e) => return Err(e).context("cannot read the session's status pipe"),
            }
            if Instant::now() >= until {
                return Ok(Poll::Nothing);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first line, waiting until `deadline` (or a stop request); `None` if none came.
    fn line(&mut self, deadline: Instant, stop: &AtomicBool) -> Result<Option<String>> {
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            match self.poll_line(Duration::from_millis(100))? {
                Poll::Line(l) => return Ok(Some(l)),
                Poll::Closed => return Ok(None),
                Poll::Nothing => {}
            }
        }
        Ok(None)
    }

    /// Messages until the process says it stopped (`Some`), or its end closes or `give_up`
    /// holds (`None`).
    fn rest(&mut self, give_up: impl Fn() -> bool) -> Result<Option<Result<String, String>>> {
        while !give_up() {
            match self.poll_line(Duration::from_millis(100))? {
                Poll::Line(l) => {
                    if let Some(done) = report(&l) {
                        return Ok(Some(done));
                    }
                }
                Poll::Closed => return Ok(None),
                Poll::Nothing => {}
            }
        }
        Ok(None)
    }
}
