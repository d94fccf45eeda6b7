//! `memlens run` follows the program's descendants (fork, spawn, forkserver, exec'd Pythons)
//! into one recording: each child's allocations at their lines, parents, ends, and the heap
//! of all together; and children that make following hard do not hang or break it.
mod common;

use common::*;
use memlens_analysis::{
    descendants, how_it_ended, not_recorded, outlived_the_program, python_without_site,
    ran_another_program, stack_totals, started_without_memlens, stopped_early, EventFilter,
    Process, Snapshot,
};
use memlens_format::{Recording, StackId};
use std::process::Output;

const MIB: u64 = 1024 * 1024;

fn run(name: &str, extra: &[&str], args: &[&str]) -> (Output, Recording, TempDir) {
    let dir = TempDir::new(name);
    let file = dir.0.join("out.memlens");
    let out = memlens_run(&file, &[], extra, name, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    (out, rec, dir)
}

/// (function, file name, line) of a stack's innermost frame.
fn top_frame(rec: &Recording, stack: StackId) -> Option<(String, String, u32)> {
    let f = rec.frame(rec.stack_frames(stack).next()?)?;
    let file = rec.string(f.file);
    let base = file.rsplit('/').next().unwrap_or(file).to_owned();
    Some((rec.string(f.function).to_owned(), base, f.line))
}

/// Bytes `rec` allocated (or held, for `snapshot`) at the innermost frame `(function, line)`.
fn bytes_at(rec: &Recording, snapshot: Snapshot, function: &str, line: u32) -> u64 {
    let totals = stack_totals(rec, snapshot, &EventFilter::default()).unwrap();
    totals
        .stacks
        .iter()
        .filter(|(s, _)| top_frame(rec, *s).is_some_and(|(f, _, l)| f == function && l == line))
        .map(|(_, t)| t.bytes)
        .sum()
}

fn command(p: &Process) -> String {
    p.rec.meta().command_line.join(" ")
}

#[test]
fn every_kind_of_child_is_recorded_at_its_line() {
    let (out, rec, dir) = run("family.py", &[], &[]);
    let root = rec.meta().pid;
    let child_line = line_of("family.py", "FAMILY_CHILD_LINE");
    let parent_line = line_of("family.py", "FAMILY_PARENT_LINE");
    assert!(bytes_at(&rec, Snapshot::AtEnd, "<module>", parent_line) >= 2 * MIB);
    let family = descendants(&rec);
    assert!(family.len() >= 8, "{} processes", family.len());
    for p in &family {
        assert!(p.rec.truncation().is_none(), "process {}: {:?}", p.number, p.rec.truncation());
        assert!(p.ppid().is_some(), "process {} has no parent", p.number);
    }
    let built = |p: &Process| bytes_at(&p.rec, Snapshot::TotalAllocated, "build", child_line);
    // Every pool ran build(4 MiB) twice: 8 MiB per pool, in its workers.
    // Its workers, forked from it, have its command line too.
    let forkserver = family
        .iter()
        .find(|p| command(p).contains("forkserver") && p.ppid() == Some(root))
        .map(|p| p.rec.meta().pid);
    type IsKind<'a> = &'a dyn Fn(&Process) -> bool;
    let kinds: [(&str, IsKind); 3] = [
        // (Forks of the program have its command line as the user gave it.)
        ("fork", &|p| {
            p.ppid() == Some(root) && p.rec.meta().command_line == rec.meta().command_line
        }),
        ("spawn", &|p| p.ppid() == Some(root) && command(p).contains("spawn_main")),
        ("forkserver", &|p| forkserver.is_some() && p.ppid() == forkserver),
    ];
    for (kind, is) in kinds {
        let total: u64 = family.iter().filter(|p| is(p)).map(built).sum();
        assert!(total >= 8 * MIB, "{kind} workers built {total} bytes at line {child_line}");
    }
    // The spawn pool and the ProcessPoolExecutor: 16 MiB in spawned workers.
    let spawned: u64 = family.iter().filter(|p| command(p).contains("spawn_main")).map(built).sum();
    assert!(spawned >= 16 * MIB, "{spawned}");
    // `python -c`: its allocation at line 1 of its code, held to its (clean) end.
    let exec = family.iter().find(|p| command(p).contains("FAMILY_EXEC_LINE")).expect("exec child");
    assert!(bytes_at(&exec.rec, Snapshot::AtEnd, "<module>", 1) >= 6 * MIB);
    assert_eq!(exec.end().unwrap().exit_code, Some(0));
    // The SIGKILLed child: its recording is readable and holds what it held.
    let killed_line = line_of("family.py", "FAMILY_KILLED_LINE");
    let killed = family
        .iter()
        .find(|p| bytes_at(&p.rec, Snapshot::AtEnd, "killed", killed_line) >= 5 * MIB)
        .expect("the killed child's allocation");
    let end = killed.end().expect("the killed child's end");
    assert_eq!(end.exit_code, None, "{end:?}");
    assert!(matches!(end.signal, Some(9) | None), "{end:?}");

    // `summary` lists every process and the heap of all together; --process picks one.
    let file = dir.0.join("out.memlens");
    let json = memlens().arg("summary").arg("--json").arg(&file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["processes"].as_array().unwrap().len(), family.len() + 1);
    assert_eq!(v["processes"][0]["pid"], root);
    let all = v["all_processes"]["peak_heap_bytes"].as_u64().unwrap();
    let most = family.iter().map(|p| p.rec.summary().peak_heap).max().unwrap();
    assert!(all >= most.max(rec.summary().peak_heap), "{all}");
    let pid = exec.rec.meta().pid.to_string();
    let one = memlens().args(["summary", "--process", &pid]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(text.contains(&format!("pid {pid}")) && text.contains("<string>:1"), "{text}");
    // `export --process` exports that process's memory: the `python -c` child's 6 MiB at
    // line 1 of its code, in collapsed stacks.
    let export = memlens()
        .args(["export", "--format", "collapsed", "--view", "leaks", "-o", "-", "--process", &pid])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&export.stdout);
    let at_line: u64 = text
        .lines()
        .filter(|l| l.rsplit_once(' ').unwrap().0.ends_with("<module> (<string>:1)"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert!(export.status.success() && at_line >= 6 * MIB, "{at_line}: {text}");
    // Its own census (at its exit) and spans (none) read the same way.
    let census = memlens().args(["census", "--json", "--process", &pid]).arg(&file).output();
    let v: serde_json::Value = serde_json::from_slice(&census.unwrap().stdout).unwrap();
    assert_eq!(v["censuses"].as_array().map(Vec::len), Some(1), "{v}");
    let spans = memlens().args(["spans", "--process", &pid]).arg(&file).output().unwrap();
    assert!(spans.status.success());
    let export_none: &[&str] = &["export", "--format", "collapsed", "-o", "-", "--process", "1"];
    for args in [&["summary", "--process", "1"][..], export_none, &["census", "--process", "1"]] {
        let none = memlens().args(args).arg(&file).output().unwrap();
        assert_eq!(none.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&none.stderr).contains("no process with pid 1"));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("child processes"), "{stderr}");

    // `check` reads every process's recording; a byte changed in a child's stream is found
    // there, and the other processes still read.
    let ok = memlens().arg("check").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && text.contains("other processes"), "{text}");
    // Its largest piece: events, past its metadata.
    let piece =
        *rec.pieces().iter().filter(|p| p.process == exec.number).max_by_key(|p| p.len).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[(piece.at + piece.len / 2) as usize] ^= 0x55;
    let damaged = dir.0.join("damaged.memlens");
    std::fs::write(&damaged, &bytes).unwrap();
    let bad = memlens().arg("check").arg(&damaged).output().unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("process {} (pid {pid})", exec.number)), "{text}");
    let summary = memlens().args(["summary", "--json"]).arg(&damaged).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(v["processes"].as_array().unwrap().len(), family.len() + 1);
    // A gate on a recording with a damaged process fails closed.
    let gate =
        memlens().arg("diff").arg(&file).arg(&damaged).args(["--fail-if", "total>+50%"]).output();
    assert_eq!(gate.unwrap().status.code(), Some(2));
}

#[test]
fn workers_terminated_as_they_exit_send_their_last_records() {
    // Each worker's exit races the SIGTERM of the pool's `terminate` while the recorder is
    // behind (a debug build's recorder, as `cargo test` runs, always is): the signal lands
    // in the exit that is sending the worker's last records, or in a worker whose drain
    // thread has them still to send. Both lost them (at random, most on CPython 3.15).
    let line = line_of("pool_terminated.py", "POOL_END_LINE");
    for method in ["fork", "forkserver"] {
        let (_, rec, _dir) = run("pool_terminated.py", &[], &[method]);
        let family = descendants(&rec);
        for p in &family {
            assert!(p.rec.truncation().is_none(), "{method}: process {}", p.number);
        }
        let built: u64 =
            family.iter().map(|p| bytes_at(&p.rec, Snapshot::TotalAllocated, "work", line)).sum();
        // Six tasks of 4 MiB.
        assert_eq!(built / MIB, 24, "{method}: {built} bytes at line {line}");
    }
}

#[test]
fn no_follow_records_the_program_alone() {
    let (_, rec, _dir) = run("family.py", &["--no-follow"], &["fork", "exec"]);
    assert!(rec.processes().is_empty());
}

#[test]
fn children_that_make_following_hard_do_not_hang_or_break_it() {
    let start = std::time::Instant::now();
    let (out, rec, _dir) = run("family_hostile.py", &[], &[]);
    assert!(start.elapsed().as_secs() < 60);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not python\ndone");
    assert!(rec.has_trailer());
    let parent = line_of("family_hostile.py", "HOSTILE_PARENT_LINE");
    assert!(bytes_at(&rec, Snapshot::AtEnd, "<module>", parent) >= 2 * MIB);
    let family = descendants(&rec);
    // The child in a session of its own is still followed.
    let setsid = line_of("family_hostile.py", "HOSTILE_SETSID_LINE");
    assert!(
        family
            .iter()
            .any(|p| bytes_at(&p.rec, Snapshot::TotalAllocated, "own_session", setsid) >= 3 * MIB),
        "{} processes",
        family.len()
    );
    // A program that is not Python and runs a while has its memory sampled; a short one
    // (`sh -c "echo ..."`) is not listed.
    let sleep = family.iter().find(|p| command(p) == "sleep 0.4").expect("the sleep");
    assert!(sleep.rec.meta().capture.rss_only && sleep.rec.summary().peak_rss > 0);
    assert_eq!(sleep.ppid(), Some(rec.meta().pid));
    assert!(family.iter().all(|p| !command(p).contains("echo")));
    // The summary line counts the processes listed, not those left out.
    let said = format!("and {} child processes", family.len());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&said), "{said}");
    // A Python given an empty environment, one run by `env -i` (which empties its own before
    // its exec) and one run after the program emptied its own are traced all the same (the
    // tracer adds its variables to the environment given, from the process's own or from
    // the copy it kept when following began).
    for (what, bytes) in
        [("3 * 10**7", 30_000_000), ("2 * 10**7", 20_000_000), ("15 * 10**6", 15_000_000)]
    {
        let p = family.iter().find(|p| command(p).contains(what)).expect(what);
        assert!(bytes_at(&p.rec, Snapshot::TotalAllocated, "<module>", 1) >= bytes, "{what}");
    }
    // Pythons run with -I (which skips the start-up that traces them), and one such Python's
    // child exec'd by the execve system call with an empty environment (which no exec
    // function of libc sees), are not traced: their memory is sampled, and their recordings
    // say why.
    let sampled = |p: &&Process| p.rec.meta().capture.rss_only;
    let isolated = |what: &str| {
        family
            .iter()
            .filter(sampled)
            .find(|p| command(p).contains(" -I -c ") && command(p).contains(what))
    };
    let launcher = isolated("syscall").expect("the -I launcher").rec.meta().pid;
    for (what, said, peak, parent, found) in [
        (
            "25 * 10**6",
            "started without memlens's environment",
            25 * MIB,
            launcher,
            started_without_memlens as fn(&Recording) -> bool,
        ),
        (
            "bytearray(10**7)",
            "a Python run with -E, -I or -S",
            10 * MIB,
            rec.meta().pid,
            python_without_site,
        ),
    ] {
        // (The launcher's command has the exec'd one's code too.)
        let p = family
            .iter()
            .filter(sampled)
            .find(|p| command(p).contains(what) && p.rec.meta().pid != launcher);
        let p = p.expect(what);
        assert!(found(&p.rec), "{what}");
        assert!(p.rec.summary().peak_rss >= peak, "{what}: {}", p.rec.summary().peak_rss);
        assert_eq!(p.ppid(), Some(parent), "{what}");
        assert!(how_it_ended(&p.rec).contains(said), "{}", how_it_ended(&p.rec));
    }
    // The child that outlives the program is recorded up to the program's end, and says so.
    let outliving = family.iter().find(|p| command(p).contains("4 << 20")).expect("outliving");
    assert!(outlived_the_program(&outliving.rec) && !stopped_early(&outliving.rec));
    assert!(outliving.rec.summary().peak_heap >= 4 * MIB);
    // The child that closed every file descriptor is traced on (its close did not take
    // memlens's own), to its end.
    let closed_line = line_of("family_hostile.py", "HOSTILE_CLOSED_LINE");
    let at =
        |p: &&Process| bytes_at(&p.rec, Snapshot::TotalAllocated, "close_everything", closed_line);
    let closed = family.iter().find(|p| at(p) >= 10 * MIB).expect("the child that closed");
    assert!(!stopped_early(&closed.rec));
    assert!(family.iter().all(|p| !stopped_early(&p.rec)));
    assert_eq!(closed.end().unwrap().exit_code, Some(0));
}

#[test]
fn forks_that_come_while_the_drain_writes_trace_on() {
    let start = std::time::Instant::now();
    let (out, rec, _dir) = run("forks_while_draining.py", &[], &[]);
    assert!(start.elapsed().as_secs() < 60);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let line = line_of("forks_while_draining.py", "FORKED_CHILD_LINE");
    let children = descendants(&rec);
    assert_eq!(children.len(), 40);
    let function = common::listcomp_function(&rec.meta().python_version, "<module>");
    for child in &children {
        assert!(bytes_at(&child.rec, Snapshot::TotalAllocated, &function, line) >= 100_000);
    }
}

/// Regression: a double-fork daemon whose first fork came as the program exited was not in
/// the recording at all: the recorder stopped accepting descendants at the program's end,
/// before the child (and then the daemon it forked) had connected.
#[test]
fn a_daemon_forked_as_the_program_exits_is_recorded() {
    let line = line_of("daemon_at_exit.py", "DAEMON_LINE");
    // A race with how fast the program exits: tried several times.
    for round in 0..5 {
        let (out, rec, _dir) = run("daemon_at_exit.py", &[], &[]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "parent exits");
        let family = descendants(&rec);
        let listed: Vec<String> = family.iter().map(|p| how_it_ended(&p.rec)).collect();
        let daemon = family
            .iter()
            .find(|p| bytes_at(&p.rec, Snapshot::TotalAllocated, "daemon", line) >= 10 * MIB)
            .unwrap_or_else(|| panic!("round {round}: no daemon among {listed:?}"));
        assert!(outlived_the_program(&daemon.rec), "round {round}: {listed:?}");
        // The child between the two forks too, which ended.
        assert_eq!(family.len(), 2, "round {round}: {listed:?}");
        assert_eq!(not_recorded(&rec), 0, "round {round}");
    }
}

#[test]
fn diff_pairs_the_processes_of_two_runs_and_gates_on_their_total() {
    let (_, _, a) = run("family.py", &[], &["fork", "exec"]);
    let (_, _, b) = run("family.py", &[], &["fork", "exec"]);
    // Children that hold 2 MiB, then 8 MiB, each, at the same moment.
    let (_, _, small) = run("family_total.py", &[], &["2"]);
    let (_, _, big) = run("family_total.py", &[], &["8"]);
    let file = |d: &TempDir| d.0.join("out.memlens");
    let diff = |x: &TempDir, y: &TempDir, args: &[&str]| {
        let out = memlens().arg("diff").arg(file(x)).arg(file(y)).args(args).output().unwrap();
        let v: serde_json::Value = match args.contains(&"json") {
            true => serde_json::from_slice(&out.stdout).unwrap(),
            false => serde_json::Value::Null,
        };
        (out.status.code(), v)
    };
    let (code, v) = diff(&a, &b, &["--format", "json"]);
    assert_eq!(code, Some(0));
    let processes = v["processes"].as_array().unwrap();
    // The program, two fork workers and the `python -c` child, each with its match.
    assert_eq!(processes.len(), 4, "{processes:#?}");
    assert!(
        processes.iter().all(|p| p["base_pid"].is_u64() && p["head_pid"].is_u64()),
        "{processes:#?}"
    );
    let total = v["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "total").unwrap();
    assert!(total["base"].as_u64().unwrap() >= 10 * MIB, "{total}");
    assert_eq!(diff(&a, &b, &["--fail-if", "total>+50%"]).0, Some(0));
    // The total grows by 12 MiB, the program's peak does not.
    assert_eq!(diff(&small, &big, &["--fail-if", "peak>+50%"]).0, Some(0));
    assert_eq!(diff(&small, &big, &["--fail-if", "total>+50%"]).0, Some(1));
}

/// Another CPython 3.9-3.15 than the one under test, from pyenv, if there is one.
fn other_python() -> Option<std::path::PathBuf> {
    let out = std::process::Command::new("pyenv").arg("root").output().ok()?;
    let root = std::path::PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let mine = python_minor(&String::from_utf8_lossy(
        &std::process::Command::new(python())
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
            .ok()?
            .stdout,
    ));
    let versions: Vec<std::path::PathBuf> =
        std::fs::read_dir(root.join("versions")).ok()?.flatten().map(|e| e.path()).collect();
    (9..=15).filter(|&m| m != mine).find_map(|m| {
        let prefix = format!("3.{m}.");
        versions
            .iter()
            .filter(|v| {
                v.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix))
            })
            .map(|v| v.join("bin/python3"))
            .find(|p| p.is_file())
    })
}

#[test]
fn a_child_running_another_python_is_recorded_as_that_python() {
    let Some(other) = other_python() else {
        assert!(std::env::var_os("CI").is_none(), "CI has pyenv's interpreters");
        eprintln!("no other CPython from pyenv: skipped");
        return;
    };
    let code = format!(
        "import subprocess; subprocess.run([{:?}, '-c', 'x = bytearray(3 * 1024 * 1024)'], check=True)",
        other.display().to_string()
    );
    let dir = TempDir::new("other-python");
    let file = dir.0.join("out.memlens");
    let out = memlens().arg("run").arg("-o").arg(&file).args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    let family = descendants(&rec);
    assert_eq!(family.len(), 1);
    let child = &family[0].rec;
    let version = String::from_utf8_lossy(
        &std::process::Command::new(&other)
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    assert_eq!(child.meta().python_version, version);
    assert_ne!(child.meta().python_version, rec.meta().python_version);
    assert!(bytes_at(child, Snapshot::AtEnd, "<module>", 1) >= 3 * MIB);
}

/// `summary`'s `all_processes.top_at_peak`: the call sites that make up the peak of all
/// processes together. Two forked children hold 8 MiB each at once: both are there, each in
/// its own process, at the line that allocated it (the pytest plugin's limit messages name
/// them; before, only the program's own sites could be read).
#[test]
fn summary_lists_the_call_sites_of_the_peak_of_all_processes() {
    let (_, _, dir) = run("family_total.py", &[], &["8"]);
    let out =
        memlens().args(["summary", "--json"]).arg(dir.0.join("out.memlens")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = &v["all_processes"];
    let line = line_of("family_total.py", "TOTAL_HOLD_LINE");
    let held: Vec<&serde_json::Value> = all["top_at_peak"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["function"] == "hold" && s["line"] == line)
        .collect();
    assert_eq!(held.len(), 2, "{all:#}");
    let children: Vec<(u64, u64)> = v["processes"].as_array().unwrap()[1..]
        .iter()
        .map(|p| (p["number"].as_u64().unwrap(), p["pid"].as_u64().unwrap()))
        .collect();
    for s in &held {
        assert!(s["bytes"].as_u64().unwrap() >= 8 * MIB, "{s}");
        let at = (s["process"].as_u64().unwrap(), s["pid"].as_u64().unwrap());
        assert!(children.contains(&at), "{s} in {children:?}");
    }
    assert_ne!(held[0]["pid"], held[1]["pid"]);
    let sum: u64 =
        all["top_at_peak"].as_array().unwrap().iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert!(sum <= all["peak_heap_bytes"].as_u64().unwrap(), "{all:#}");
}

/// `memlens run` of `name`, which exits with `code`; the recording read right after `memlens
/// run` returned (as a CI step's next command would).
fn run_exiting(name: &str, code: i32) -> (Output, Recording, TempDir) {
    let dir = TempDir::new(name);
    let file = dir.0.join("out.memlens");
    let out = memlens_run(&file, &[], &[], name, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(!stderr.contains("did not say goodbye"), "{stderr}");
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    assert!(rec.is_complete(), "{stderr}");
    (out, rec, dir)
}

/// The command line `rec` says its process exec'd, if it says it did.
fn exec_said(rec: &Recording) -> Option<String> {
    rec.markers().iter().find(|m| ran_another_program(&m.label)).map(|m| m.label.clone())
}

/// A program that replaces itself (`os.execv`, as re-launchers do) with another Python script:
/// what ran before the exec and the new program are both recorded, at their lines, the
/// first as the program, the second as a process of the recording with the same pid; the
/// exit status of the last is the one returned and recorded.
#[test]
fn a_program_that_execs_another_python_is_traced_on() {
    let (out, rec, dir) = run_exiting("exec_self.py", 7);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("before exec") && stdout.contains("ex2 ['arg1'] 10000"), "{stdout}");
    let version = rec.meta().python_version.clone();
    let before = line_of("exec_self.py", "EXEC_BEFORE_LINE");
    let held =
        bytes_at(&rec, Snapshot::TotalAllocated, &listcomp_function(&version, "<module>"), before);
    assert!(held >= 5_000_000, "{held} bytes at line {before}");
    assert_eq!(rec.end().unwrap().exit_code, Some(7));
    let said = exec_said(&rec).expect("the exec said");
    assert!(said.contains("exec_self_next.py arg1"), "{said}");
    let family = descendants(&rec);
    assert_eq!(family.len(), 1, "{:?}", family.iter().map(command).collect::<Vec<_>>());
    let next = &family[0];
    assert_eq!(next.rec.meta().pid, rec.meta().pid);
    assert!(command(next).contains("exec_self_next.py arg1"), "{}", command(next));
    let after = line_of("exec_self_next.py", "EXEC_AFTER_LINE");
    let built =
        bytes_at(&next.rec, Snapshot::TotalAllocated, &listcomp_function(&version, "build"), after);
    assert!(built >= 20_000_000, "{built} bytes at line {after}");
    assert!(next.rec.is_complete() && !stopped_early(&next.rec));
    assert_eq!(next.end().unwrap().exit_code, Some(7));
    assert_eq!(how_it_ended(&rec), "ran another program (exec), which exited with code 7");
    // `memlens run`'s last line says so; the program it ran is no child process.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("(ran another program (exec), then exit code 7); wrote"), "{stderr}");
    // The program's heap is gone at the exec: the peak of both is the new program's.
    let file = dir.0.join("out.memlens");
    let json = memlens().arg("summary").arg("--json").arg(&file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let all = v["all_processes"]["peak_heap_bytes"].as_u64().unwrap();
    assert!(all < next.rec.summary().peak_heap + 2 * MIB, "{all}");
}

/// A program that replaces itself with one that is not Python (a shell): `memlens run`
/// returns once the recording is complete, with the shell's exit status, which is recorded.
#[test]
fn a_program_that_execs_a_shell_ends_with_a_complete_recording() {
    let start = std::time::Instant::now();
    let (_, rec, _dir) = run_exiting("exec_shell.py", 4);
    // The shell's `sleep 0.3` is waited for.
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    let line = line_of("exec_shell.py", "EXEC_SHELL_LINE");
    assert!(bytes_at(&rec, Snapshot::TotalAllocated, "<module>", line) >= 10_000_000);
    let end = rec.end().unwrap();
    assert_eq!((end.exit_code, end.signal), (Some(4), None));
    let said = exec_said(&rec).expect("the exec said");
    assert!(said.ends_with(": sh -c sleep 0.3; exit 4"), "{said}");
}

/// Execs that fail (no such program, a file that is no program, a PATH lookup that finds
/// nothing) leave the program traced as it was: nothing lost, no exec said.
#[test]
fn an_exec_that_fails_leaves_the_program_traced() {
    let (out, rec, _dir) = run_exiting("exec_fails.py", 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exec of a non-program failed: 8"), "{stdout}");
    assert!(stdout.contains("done 8388608"), "{stdout}");
    let before = line_of("exec_fails.py", "EXEC_FAILS_BEFORE_LINE");
    let after = line_of("exec_fails.py", "EXEC_FAILS_AFTER_LINE");
    assert!(bytes_at(&rec, Snapshot::AtEnd, "<module>", before) >= 3 * MIB);
    assert!(bytes_at(&rec, Snapshot::AtEnd, "<module>", after) >= 5 * MIB);
    assert_eq!(exec_said(&rec), None);
    assert!(descendants(&rec).is_empty());
    assert_eq!(rec.end().unwrap().exit_code, Some(0));
}

/// A forked child that execs another Python: its recording says it ran that program (not that
/// it stopped being traced) under the program's command, and the program it ran is traced as
/// a process of its own.
#[test]
fn a_forked_child_that_execs_says_so() {
    let (_, rec, _dir) = run_exiting("exec_in_child.py", 0);
    let family = descendants(&rec);
    let forked = family.iter().find(|p| exec_said(&p.rec).is_some()).expect("the forked child");
    assert_eq!(forked.ppid(), Some(rec.meta().pid));
    // Under the program's command, though the recorder (held stopped by the program) took its
    // connection after the exec, when /proc had the new program's: it said its own.
    assert_eq!(command(forked), rec.meta().command_line.join(" "));
    assert!(!stopped_early(&forked.rec));
    assert_eq!(how_it_ended(&forked.rec), "ran another program (exec)");
    let line = line_of("exec_in_child.py", "EXEC_CHILD_LINE");
    assert!(bytes_at(&forked.rec, Snapshot::TotalAllocated, "child", line) >= 2 * MIB);
    let ran = family
        .iter()
        .find(|p| p.rec.meta().pid == forked.rec.meta().pid && p.number != forked.number)
        .expect("the program it ran");
    assert!(command(ran).contains("4 * 1024 * 1024"), "{}", command(ran));
    assert!(bytes_at(&ran.rec, Snapshot::AtEnd, "<module>", 1) >= 4 * MIB);
    assert_eq!(ran.end().unwrap().exit_code, Some(5));
}

/// Pythons started with `PYTHONPATH` dropped or replaced (venv's `ensurepip`, pip's build
/// environments) are traced as the others, and a `sitecustomize` of their own still runs.
#[test]
fn children_whose_pythonpath_was_changed_are_traced() {
    let (out, rec, _dir) = run("family_pythonpath.py", &[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["no site", "its own site ran"]);
    let family = descendants(&rec);
    assert_eq!(family.len(), 2, "{:?}", family.iter().map(command).collect::<Vec<_>>());
    for (mib, child) in [3, 5].into_iter().zip(&family) {
        let held = bytes_at(&child.rec, Snapshot::TotalAllocated, "<module>", 1);
        assert!(held >= mib * MIB, "{held} {}", command(child));
        assert!(!stopped_early(&child.rec) && child.end().unwrap().exit_code == Some(0));
    }
}

/// What `fork_warning.py` wrote on stderr, its pids taken out.
fn fork_warnings(out: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pid = |l: &str| l.split("(pid=").next().unwrap_or(l).to_owned();
    stderr.lines().filter(|l| l.contains("Warning")).map(pid).collect()
}

/// CPython 3.12+ warns at a fork of a process with more than one thread: memlens's own
/// (the tracer's drain) does not make a single-threaded program warn, and a program's own
/// thread still does, at its line, as without memlens.
#[test]
fn forks_warn_of_the_programs_threads_only() {
    let plain = std::process::Command::new(python()).arg(script("fork_warning.py")).output();
    let plain = fork_warnings(&plain.unwrap());
    let (out, _, _dir) = run("fork_warning.py", &[], &[]);
    assert_eq!(fork_warnings(&out), plain);
    if tested_python_minor() >= 12 {
        let line = line_of("fork_warning.py", "FORK_WARNED_LINE");
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(plain[0].contains(&format!("fork_warning.py:{line}: DeprecationWarning")));
    }
}

/// Children given an environment without memlens's variables (`subprocess.run(env=...)`,
/// `os.posix_spawn`, `os.execve` in a forked child) are followed all the same, and keep
/// the variables the program gave them. Before, they were missing from the recording, and
/// nothing said so.
#[test]
fn children_given_their_own_environment_are_followed() {
    let (out, rec, _dir) = run("scrubbed_env.py", &[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sizes = 6 << 20;
    for (how, only) in [("subprocess", 1), ("posix_spawn", 2), ("execve", 3)] {
        assert!(stdout.contains(&format!("{how} {only} {sizes}")), "{stdout}");
        let family = descendants(&rec);
        let child =
            family.iter().find(|p| command(p).contains(&format!("print('{how}'"))).unwrap_or_else(
                || panic!("{how}: {:?}", family.iter().map(command).collect::<Vec<_>>()),
            );
        assert!(bytes_at(&child.rec, Snapshot::TotalAllocated, "<module>", 1) >= sizes, "{how}");
        assert_eq!(child.end().unwrap().exit_code, Some(0), "{how}");
    }
}
