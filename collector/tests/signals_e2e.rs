//! End-to-end tests of `memlens run` under signals, against the same program run plainly.
//!
//! The program runs in the process the user started (memlens execs the interpreter and
//! records from a helper process beside it), so a signal sent to its PID or to its process
//! group reaches it exactly once, from the real `timeout`, `kill` or a group kill alike,
//! and its exit status and output are those of a plain run. Each test runs
//! tests/scripts/interrupted.py (a KeyboardInterrupt cleanup that counts extra SIGINTs)
//! both ways and compares; the recording must say how the program ended.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use memlens_analysis::{stack_totals, EventFilter, Snapshot};
use memlens_format::{Recording, StackId};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use common::{line_of, memlens, script, TempDir};

/// The program, plainly (`python3 SCRIPT`) or under `memlens run -o FILE`.
fn program(name: &str, recording: Option<&Path>) -> Command {
    match recording {
        None => {
            let mut c = Command::new("python3");
            c.arg(script(name));
            c
        }
        Some(file) => {
            let mut c = memlens();
            c.arg("run").arg("-q").arg("-o").arg(file).arg(script(name));
            c
        }
    }
}

/// How a run ended and what it printed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<String>,
}

fn outcome(status: ExitStatus, stdout: &str) -> Outcome {
    Outcome {
        code: status.code(),
        signal: status.signal(),
        // The pid differs from run to run.
        stdout: stdout
            .lines()
            .map(|l| if l.starts_with("started ") { "started" } else { l }.to_owned())
            .collect(),
    }
}

/// Runs the program in a process group of its own, signals it with `send(pid)` once it
/// has started, and checks that its pid is the one we started.
fn signal_when_started(mut cmd: Command, send: impl Fn(Pid)) -> Outcome {
    let mut child = cmd.process_group(0).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let pid: u32 = first.trim().strip_prefix("started ").expect(&first).parse().unwrap();
    assert_eq!(pid, child.id(), "the program runs in the process that was started");
    send(Pid::from_raw(pid as i32));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    outcome(child.wait().unwrap(), &(first + &rest))
}

/// Runs `timeout --preserve-status -s SIGNAL 4 <program>`: long enough for the program to
/// be in its `try` block even on a busy machine.
fn under_timeout(signal: &str, cmd: &Command) -> Outcome {
    let out = Command::new("timeout")
        .args(["--preserve-status", "-s", signal, "4"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .expect("the `timeout` command (coreutils)");
    outcome(out.status, &String::from_utf8_lossy(&out.stdout))
}

/// The recording's end (exit code, signal), checking that the held memory is there. A
/// program that was not killed waits until its recording is complete before it exits; after
/// a SIGKILL, the recorder finishes the file a moment after the program is gone.
fn recorded_end(file: &Path) -> (Option<i32>, Option<i32>) {
    let mut rec = Recording::from_vec(std::fs::read(file).unwrap()).unwrap();
    for _ in 0..100 {
        if rec.has_trailer() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        rec = Recording::from_vec(std::fs::read(file).unwrap()).unwrap();
    }
    let end = rec.end().copied().expect("the end is recorded");
    let top = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
    let line = line_of("interrupted.py", "INTERRUPTED_ALLOC_LINE");
    let lines: Vec<u32> = top
        .stacks
        .iter()
        .filter(|(_, t)| t.bytes >= 12 << 20)
        .filter_map(|(s, _)| rec.stack(*s).and_then(|n| rec.frame(n.frame)).map(|f| f.line))
        .collect();
    assert_eq!(lines, [line], "the 12 MiB are at the script's line");
    (end.exit_code, end.signal)
}

const CLEANUP: [&str; 4] =
    ["started", "cleanup begins", "cleanup done", "SIGINT received 1 time(s)"];

/// Runs `scenario` on the plain program and under memlens: both outcomes, and the end the
/// recording says.
fn plain_and_traced(
    name: &str,
    scenario: impl Fn(Command) -> Outcome,
) -> (Outcome, Outcome, (Option<i32>, Option<i32>)) {
    let dir = TempDir::new(&format!("signals-{name}"));
    let file = dir.0.join("out.memlens");
    let plain = scenario(program("interrupted.py", None));
    let traced = scenario(program("interrupted.py", Some(&file)));
    let end = recorded_end(&file);
    (plain, traced, end)
}

fn exited_after_cleanup() -> Outcome {
    Outcome { code: Some(3), signal: None, stdout: CLEANUP.map(String::from).into() }
}

/// Sent to the PID, as `kill` does, or to the process group, as a terminal's Ctrl-C does.
#[test]
fn sigint_to_the_pid_or_its_process_group_is_delivered_once() {
    let to_pid = |pid| kill(pid, Signal::SIGINT).unwrap();
    let to_group = |pid| killpg(pid, Signal::SIGINT).unwrap();
    for (name, send) in [("kill-int", &to_pid as &dyn Fn(Pid)), ("group-int", &to_group)] {
        let (plain, traced, end) = plain_and_traced(name, |c| signal_when_started(c, send));
        assert_eq!(plain, exited_after_cleanup(), "{name}");
        assert_eq!(traced, plain, "{name}");
        assert_eq!(end, (Some(3), None), "{name}");
    }
}

#[test]
fn sigterm_to_the_pid_kills_the_program_and_is_recorded() {
    let send = |pid| kill(pid, Signal::SIGTERM).unwrap();
    let (plain, traced, end) = plain_and_traced("kill-term", |c| signal_when_started(c, send));
    assert_eq!(plain, Outcome { code: None, signal: Some(15), stdout: vec!["started".into()] });
    assert_eq!(traced, plain);
    assert_eq!(end, (None, Some(15)));
}

/// GNU `timeout` sends its signal to the program and then to its whole process group, so
/// even a plain run may see SIGINT twice (when the first was handled before the second
/// was sent); a wrapper that forwarded signals would add a third. The program's cleanup
/// completes and it exits with its own code either way.
#[test]
fn timeout_with_sigint_ends_the_program_as_it_ends_a_plain_run() {
    let (plain, traced, end) = plain_and_traced("timeout-int", |c| under_timeout("INT", &c));
    for o in [&plain, &traced] {
        assert_eq!((o.code, o.signal), (Some(3), None), "{o:?}");
        assert_eq!(o.stdout[..3], CLEANUP[..3], "{o:?}");
        let count = &o.stdout[3];
        assert!(count.ends_with(" 1 time(s)") || count.ends_with(" 2 time(s)"), "{o:?}");
    }
    assert_eq!(end, (Some(3), None));
}

#[test]
fn timeout_with_sigterm_kills_the_program_as_it_kills_a_plain_run() {
    let (plain, traced, end) = plain_and_traced("timeout-term", |c| under_timeout("TERM", &c));
    // `timeout --preserve-status` exits with 128 + the signal its command died of.
    let killed = Outcome { code: Some(128 + 15), signal: None, stdout: vec!["started".into()] };
    assert_eq!(plain, killed);
    assert_eq!(traced, plain);
    assert_eq!(end, (None, Some(15)));
}

/// A SIGKILL from outside cannot be seen from inside the program: the recorder reads the
/// status from /proc before the process is reaped, or says that it does not know. Either
/// way the recording is complete up to the kill.
#[test]
fn sigkill_from_outside_leaves_a_readable_recording() {
    let dir = TempDir::new("signals-kill-9");
    let file = dir.0.join("out.memlens");
    let send = |pid| kill(pid, Signal::SIGKILL).unwrap();
    let traced = signal_when_started(program("interrupted.py", Some(&file)), send);
    assert_eq!((traced.code, traced.signal), (None, Some(9)));
    let end = recorded_end(&file);
    assert!(end == (None, Some(9)) || end == (None, None), "{end:?}");
    eprintln!("recorded end after an outside SIGKILL: {end:?}");
}

/// `cmd` run by `sh` with stdin and stdout closed (`<&- >&-`); what it wrote on stderr.
fn with_stdio_closed(cmd: &Command) -> (Option<i32>, String) {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(r#"exec "$0" "$@" <&- >&-"#).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A program started with standard descriptors closed finds them closed (Python then has no
/// `sys.stdin`, `sys.stdout`), as without memlens: memlens's runtime put /dev/null there
/// for itself, not for the program.
#[test]
fn standard_descriptors_closed_at_the_start_stay_closed_for_the_program() {
    let dir = TempDir::new("closed_stdio");
    let file = dir.0.join("out.memlens");
    let plain = with_stdio_closed(&program("closed_stdio.py", None));
    assert_eq!(plain, (Some(0), "stdin None, stdout None\n".into()));
    assert_eq!(with_stdio_closed(&program("closed_stdio.py", Some(&file))), plain);
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    let line = line_of("closed_stdio.py", "CLOSED_STDIO_LINE");
    let (_, at_line) = allocated_at_line(&rec, line);
    assert!(at_line >= 1_000_000, "{at_line}");
}

/// How many blocks, and bytes, the recording says were allocated at `line` (by the innermost
/// frame) over the whole run.
fn allocated_at_line(rec: &Recording, line: u32) -> (u64, u64) {
    let totals = stack_totals(rec, Snapshot::TotalAllocated, &EventFilter::default()).unwrap();
    let at_line = |s: StackId| rec.stack(s).and_then(|n| rec.frame(n.frame)).map(|f| f.line);
    totals
        .stacks
        .iter()
        .filter(|(s, _)| at_line(*s) == Some(line))
        .fold((0, 0), |(count, bytes), (_, t)| (count + t.count, bytes + t.bytes))
}

/// `memlens run -q -o FILE rounds.py ARGS`, stdout piped, in a process group of its own,
/// and the pid it said it has.
fn start_rounds(file: &Path, args: &[&str]) -> (std::process::Child, Lines, i32) {
    let mut child = program("rounds.py", Some(file))
        .args(args)
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let said = lines.next(Duration::from_secs(60)).expect("rounds.py says its pid");
    let pid = said.strip_prefix("started ").expect(&said).parse().unwrap();
    assert_eq!(pid, child.id() as i32, "the program runs in the process that was started");
    (child, lines, pid)
}

/// The lines a program prints, read on a thread of their own.
struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    fn of(out: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line, if one comes within `wait` (`None` too once the program closed its
    /// output).
    fn next(&self, wait: Duration) -> Option<String> {
        self.0.recv_timeout(wait).ok()
    }
}

/// A fatal signal that interrupts the program's thread in the middle of a record (the
/// tracer's hooks run nearly all the time here) ends the recording with every record made
/// before it: the interrupted record is dropped, not waited for (the drain waited, the
/// recorder gave up on it after half a second of silence, and the records still in the
/// thread's ring, up to some MiB on a busy machine, were lost). Several runs: where the
/// signal lands is up to chance.
#[test]
fn sigterm_in_the_middle_of_a_record_loses_none_before_it() {
    let line = line_of("rounds.py", "ROUNDS_MARKER_LINE");
    for run in 0..10 {
        let dir = TempDir::new("signals-rounds");
        let file = dir.0.join("out.memlens");
        let (mut child, lines, pid) = start_rounds(&file, &[]);
        // Rounds it finished, as it said: 20 before the signal.
        let mut finished = 0u64;
        while finished < 20 {
            finished = lines.next(Duration::from_secs(60)).unwrap().parse().unwrap();
        }
        kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(15), "run {run}");
        let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(rec.end().map(|e| e.signal), Some(Some(15)), "run {run}");
        let (markers, _) = allocated_at_line(&rec, line);
        assert!(markers >= finished, "run {run}: {markers} markers of {finished} rounds");
    }
}

/// The recorder stops reading (stopped, here) until the program's ring is full and the
/// program waits for space, then dies: the program goes on to its end, untraced, with its
/// output and exit status (it waited forever for a drain that had stopped with the pipe).
#[test]
fn a_program_whose_recorder_dies_while_it_waits_on_a_full_ring_runs_to_its_end() {
    let dir = TempDir::new("signals-recorder-dies");
    let file = dir.0.join("out.memlens");
    let (mut child, lines, pid) = start_rounds(&file, &["3000"]);
    let recorder = recorder_of(&file, pid);
    kill(recorder, Signal::SIGSTOP).unwrap();
    // Once the pipe and the ring are full, the program waits for space: it says no more.
    let mut said = 0;
    while let Some(line) = lines.next(Duration::from_secs(1)) {
        said = line.parse().expect("the program is still in its rounds");
    }
    kill(recorder, Signal::SIGKILL).unwrap();
    let mut last = String::new();
    while let Some(line) = lines.next(Duration::from_secs(120)) {
        last = line;
    }
    if last != "done" {
        // (Not left waiting behind the test.)
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_eq!(last, "done", "after round {said}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A recorder that is stuck (stopped here) when the program ends costs the program at most the
/// tracer's 30 s wait for its recording, said on stderr, and not its exit status; the recorder,
/// once it goes on, still writes the whole recording.
#[test]
fn a_program_whose_recorder_is_stuck_at_its_end_exits_after_30_s_and_says_why() {
    let dir = TempDir::new("signals-recorder-stuck");
    let file = dir.0.join("out.memlens");
    let mut child = program("exits_on_a_line.py", Some(&file))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let said = lines.next(Duration::from_secs(60)).expect("the program says its pid");
    let pid: i32 = said.strip_prefix("started ").expect(&said).parse().unwrap();
    let recorder = recorder_of(&file, pid);
    kill(recorder, Signal::SIGSTOP).unwrap();
    let stopped_at = std::time::Instant::now();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    let waited = stopped_at.elapsed();
    kill(recorder, Signal::SIGCONT).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert_eq!(lines.next(Duration::from_secs(5)).as_deref(), Some("exiting"));
    assert!(waited >= Duration::from_secs(29) && waited < Duration::from_secs(60), "{waited:?}");
    let expected = format!("memlens: process {pid} ended without its recording being confirmed");
    assert!(stderr.contains(&expected), "{stderr}");
    // The recorder goes on and ends the file, with the marker and how the program ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while kill(recorder, None).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(rec.end().map(|e| e.exit_code), Some(Some(7)));
    let line = line_of("exits_on_a_line.py", "EXITS_MARKER_LINE");
    let (_, marker) = allocated_at_line(&rec, line);
    assert!(marker >= 100_000, "{marker} bytes at the marker's line");
}

/// The recorder of the `memlens run` writing `file` for the program `pid`: the process
/// beside it with the same command line.
fn recorder_of(file: &Path, pid: i32) -> Pid {
    let file = file.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(other) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let is_ours = cmdline.split(|&b| b == 0).any(|a| a == file.as_bytes());
        if other != pid && is_ours {
            return Pid::from_raw(other);
        }
    }
    panic!("no recorder writes {file}");
}
