//! End-to-end tests of `memlens attach PID` and `memlens detach PID` on a real running
//! Python program (tests/scripts/service_loop.py, started plainly, not by memlens): the
//! recording holds the program's allocations at their lines, and the program's output and
//! exit status are those of a run without memlens. Also what attach says, and leaves
//! untouched, when it cannot attach. Needs lldb (`./dev setup` installs it).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use memlens_analysis::{stack_totals, EventFilter, Snapshot};
use memlens_format::Recording;

use common::{line_of, memlens, python, script, tested_python_minor, TempDir};

/// Whether lldb is installed; says the test skips if not. Under CI (`CI` set), where
/// `./dev setup` installs it, its absence is a failure, so the tests cannot silently not run.
fn have_lldb() -> bool {
    let found = Command::new("lldb").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "lldb is missing under CI (./dev setup installs it)"
        );
        eprintln!("SKIPPED: lldb is not installed (apt install lldb)");
    }
    found
}

/// The service, started plainly; its stdout is read line by line.
struct Service {
    child: Child,
    out: BufReader<ChildStdout>,
    lines: Vec<String>,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        Service::start_with(args, Stdio::inherit())
    }

    /// [`Service::start`] with the program's stderr going to `stderr`.
    fn start_with(args: &[&str], stderr: Stdio) -> Service {
        let mut child = Command::new(python())
            .arg(script("service_loop.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Service { child, out, lines: Vec::new() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until one equals `line`.
    fn wait_for(&mut self, line: &str) {
        loop {
            let mut l = String::new();
            assert!(self.out.read_line(&mut l).unwrap() > 0, "the service ended before {line:?}");
            self.lines.push(l.trim_end().to_owned());
            if l.trim_end() == line {
                return;
            }
        }
    }

    /// Everything else it prints, and its exit code.
    fn finish(mut self) -> (Vec<String>, Option<i32>) {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        self.lines.extend(rest.lines().map(str::to_owned));
        let status = self.child.wait().unwrap();
        (self.lines, status.code())
    }
}

/// What the service prints when nothing disturbs it: its ticks, and that CPython's hooks are
/// those it started with (after `memlens attach` has detached, every hook is taken out).
fn ticks(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("tick {i}")).chain(["hooks as at start".to_owned()]).collect()
}

fn attach(pid: u32, extra: &[&str]) -> Command {
    let mut c = memlens();
    c.arg("attach").arg(pid.to_string()).args(extra);
    c
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn open(path: &Path) -> Recording {
    let rec = Recording::from_vec(std::fs::read(path).unwrap()).expect("the recording opens");
    assert!(rec.has_trailer(), "the recording is complete");
    rec
}

/// Bytes allocated at `line` of service_loop.py (innermost frame of the script) over the
/// recording, and those of them still live at its end.
fn at_line(rec: &Recording, line: u32) -> (u64, u64) {
    let sum = |snapshot| {
        let t = stack_totals(rec, snapshot, &EventFilter::default()).unwrap();
        t.stacks
            .iter()
            .filter(|(s, _)| {
                rec.stack_frames(*s)
                    .map(|f| rec.frame(f).unwrap())
                    .find(|f| rec.string(f.file).ends_with("service_loop.py"))
                    .is_some_and(|f| f.line == line)
            })
            .map(|(_, t)| t.bytes)
            .sum::<u64>()
    };
    (sum(Snapshot::TotalAllocated), sum(Snapshot::AtEnd))
}

#[test]
fn attach_records_a_running_program_at_its_lines_and_leaves_it_as_it_was() {
    if !have_lldb() {
        return;
    }
    let dir = TempDir::new("attach");
    let file = dir.0.join("svc.memlens");
    // Long enough that attaching and 1.5 s of tracing end well before it does, on a busy
    // machine too.
    let mut svc = Service::start(&["160"]);
    svc.wait_for("tick 3");
    let out = attach(svc.pid(), &["--duration", "1.5", "-o"]).arg(&file).output().unwrap();
    let stderr = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("detached from {}", svc.pid())), "{stderr}");
    let (lines, code) = svc.finish();
    assert_eq!(lines, ticks(160), "every tick printed once, in order");
    assert_eq!(code, Some(7), "the program's own exit status");

    let rec = open(&file);
    let end = rec.end().expect("the end is recorded");
    assert_eq!(end.exit_code, None, "tracing stopped, the program went on");
    let (scratch, _) = at_line(&rec, line_of("service_loop.py", "SCRATCH"));
    let (kept, kept_live) = at_line(&rec, line_of("service_loop.py", "KEEP"));
    // ~1.5 s at ~20 ticks a second: 64 x 4 KiB and 16 KiB a tick.
    assert!(scratch >= 5 * 64 * 4096, "scratch allocations at their line: {scratch} B");
    // The blocks kept are live at the end (the list holding them reallocates on that line too).
    assert!(kept_live >= 5 * 16384 && kept_live * 10 >= kept * 9, "kept: {kept_live}/{kept} B");
    // A thread that was already running, in one function that calls no other: its stack is
    // known all the same.
    let (looping, _) = at_line(&rec, line_of("service_loop.py", "THREAD"));
    assert!(looping >= 20 * 1000, "the spinning thread's allocations at their line: {looping} B");
    let frames: Vec<String> = rec.frames().iter().map(|f| rec.string(f.file).to_owned()).collect();
    assert!(
        !frames.iter().any(|f| f.contains("_attach.py") || f.contains("bootstrap.py")),
        "memlens's own attach code is not in the recording: {frames:?}"
    );
}

#[test]
fn detach_and_ctrl_c_stop_the_recording_and_the_program_runs_on() {
    if !have_lldb() {
        return;
    }
    for how in ["detach", "SIGINT"] {
        let dir = TempDir::new("detach");
        let file = dir.0.join("svc.memlens");
        let mut svc = Service::start(&["120"]);
        svc.wait_for("tick 2");
        // One of the two samples (every block on average: rate 1 byte), the other is exact.
        let extra: &[&str] = if how == "detach" { &["--sample", "1", "-o"] } else { &["-o"] };
        let mut cmd = attach(svc.pid(), extra);
        let mut attached = cmd.arg(&file).stderr(Stdio::piped()).spawn().unwrap();
        let mut err = BufReader::new(attached.stderr.take().unwrap());
        let mut said = String::new();
        while !said.contains("recording") {
            assert!(err.read_line(&mut said).unwrap() > 0, "{how}: attach ended early: {said}");
        }
        std::thread::sleep(Duration::from_millis(500));
        if how == "detach" {
            let out = memlens().arg("detach").arg(svc.pid().to_string()).output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
        } else {
            let pid = nix::unistd::Pid::from_raw(attached.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        }
        let status = attached.wait().unwrap();
        err.read_to_string(&mut said).unwrap();
        assert!(status.success(), "{how}: {said}");
        assert!(said.contains("detached from"), "{how}: {said}");
        let rec = open(&file);
        let (kept, _) = at_line(&rec, line_of("service_loop.py", "KEEP"));
        assert!(kept > 0, "{how}: the program's allocations are recorded");
        let sampled = rec.meta().sample_bytes();
        assert_eq!(
            sampled,
            (how == "detach").then_some(1),
            "{how}: the recording says how it sampled"
        );
        let (lines, code) = svc.finish();
        assert_eq!((lines, code), (ticks(120), Some(7)), "{how}: the program ran on untouched");
        let again = memlens().arg("detach").arg(svc_pid_gone()).output().unwrap();
        assert_eq!(again.status.code(), Some(2));
    }
}

/// A PID no process has (a child that has been reaped).
fn svc_pid_gone() -> String {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c.id().to_string()
}

#[test]
fn a_program_that_ends_while_attached_leaves_a_complete_recording() {
    if !have_lldb() {
        return;
    }
    let dir = TempDir::new("attach-end");
    let file = dir.0.join("svc.memlens");
    let mut svc = Service::start(&["60"]);
    svc.wait_for("tick 1");
    let out = attach(svc.pid(), &["-o"]).arg(&file).output().unwrap();
    let stderr = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ended while traced"), "{stderr}");
    let (lines, code) = svc.finish();
    // It ended traced: memlens's hooks were in place at its last line.
    let mut want = ticks(60);
    *want.last_mut().unwrap() = "hooks changed".to_owned();
    assert_eq!((lines, code), (want, Some(7)));
    let rec = open(&file);
    assert!(rec.end().is_some(), "the recording has its end");
    assert!(at_line(&rec, line_of("service_loop.py", "KEEP")).0 > 0);
}

#[test]
fn attach_refuses_clearly_and_leaves_the_process_untouched() {
    if !have_lldb() {
        return;
    }
    // A PID that is gone.
    let out = attach(svc_pid_gone().parse().unwrap(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no process with PID"), "{}", text(&out));

    // Not a Python process: it runs on and ends as it would have.
    let mut sleeper = Command::new("sleep").arg("2").spawn().unwrap();
    let out = attach(sleeper.id(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is not a Python process"), "{}", text(&out));
    assert!(sleeper.wait().unwrap().success());

    // A Python process that never reaches a safe point (blocked in one call) within the
    // timeout: nothing is loaded, no signal is left pending, it ends with its own status.
    let mut idle = Service::start(&["4", "idle"]);
    idle.wait_for("waiting");
    let t0 = Instant::now();
    let out = attach(idle.pid(), &["--timeout", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("reached no point where tracing can start"), "{}", text(&out));
    assert!(!text(&out).contains("waiting for process"), "no progress line within 2 s");
    assert!(t0.elapsed() < Duration::from_secs(4), "the timeout is kept");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", idle.pid())).unwrap();
    assert!(!maps.contains("libmemlens_tracer"), "the tracer was not loaded");
    let status = std::fs::read_to_string(format!("/proc/{}/status", idle.pid())).unwrap();
    for pending in ["SigPnd", "ShdPnd"] {
        let line = status.lines().find(|l| l.starts_with(pending)).unwrap();
        assert!(line.ends_with("0000000000000000"), "no signal left pending: {line}");
    }
    idle.wait_for("woke");
    let (lines, code) = idle.finish();
    assert_eq!(lines.last().map(String::as_str), Some("hooks as at start"));
    assert_eq!(code, Some(7));

    // A process that is not ours to trace: memlens run as another user (nobody) against
    // this test's own (root's) Python. Only where the test runs as root and can switch.
    let mut svc = Service::start(&["100"]);
    svc.wait_for("tick 1");
    let exe = memlens().get_program().to_owned();
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["attach", &svc.pid().to_string(), "-o", "/tmp/never.memlens"])
        .output();
    match as_nobody {
        Ok(out) if out.status.code() == Some(2) => {
            assert!(text(&out).contains("not yours to trace"), "{}", text(&out))
        }
        other => eprintln!("SKIPPED (not ours to trace): cannot run as nobody here: {other:?}"),
    }
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();

    // A Python memlens cannot trace (Debian's debug build), when the machine has one.
    if let Ok(mut dbg) = Command::new("python3.11-dbg")
        .args(["-c", "import time; print('up', flush=True); time.sleep(20)"])
        .stdout(Stdio::piped())
        .spawn()
    {
        let mut up = String::new();
        BufReader::new(dbg.stdout.take().unwrap()).read_line(&mut up).unwrap();
        let out = attach(dbg.id(), &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("debug builds are not supported"), "{}", text(&out));
        dbg.kill().unwrap();
        dbg.wait().unwrap();
    }

    // Bad options.
    for bad in [["--duration", "0"], ["--duration", "-3"], ["--timeout", "nan"]] {
        let out = attach(1, &bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// CPython 3.14+: `sys.remote_exec` starts tracing, with no debugger installed (lldb is off
/// the PATH here). A program whose main thread is blocked past `--timeout` is left as it
/// was: when it wakes and runs the request memlens left, the request does nothing and
/// prints nothing to the program's stderr; a second attach then records it.
#[test]
fn on_3_14_attach_needs_no_debugger() {
    if tested_python_minor() < 14 {
        eprintln!("SKIPPED: sys.remote_exec is CPython 3.14's");
        return;
    }
    let no_lldb = |pid: u32, extra: &[&str]| {
        let mut c = attach(pid, extra);
        c.env("PATH", "/nonexistent").env_remove("MEMLENS_LLDB");
        c.output().unwrap()
    };
    let dir = TempDir::new("attach-remote-exec");
    let file = dir.0.join("svc.memlens");
    let mut idle = Service::start_with(&["3", "idle", "60"], Stdio::piped());
    let mut stderr = idle.child.stderr.take().unwrap();
    idle.wait_for("waiting");
    let blocked = no_lldb(idle.pid(), &["--timeout", "1"]);
    assert_eq!(blocked.status.code(), Some(2), "{}", text(&blocked));
    assert!(
        text(&blocked).contains("reached no point where tracing can start"),
        "{}",
        text(&blocked)
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", idle.pid())).unwrap();
    assert!(!maps.contains("libmemlens_tracer"), "the tracer was not loaded");
    idle.wait_for("tick 3");
    let traced = no_lldb(idle.pid(), &["--duration", "1", "-o", file.to_str().unwrap()]);
    assert!(traced.status.success(), "{}", text(&traced));
    let (lines, code) = idle.finish();
    let mut said = String::new();
    stderr.read_to_string(&mut said).unwrap();
    assert_eq!(said, "", "nothing printed to the program's stderr");
    assert_eq!((lines.last().map(String::as_str), code), (Some("hooks as at start"), Some(7)));
    let rec = open(&file);
    assert!(at_line(&rec, line_of("service_loop.py", "KEEP")).0 > 0);
}
