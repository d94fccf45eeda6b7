//! End-to-end tests of `memlens run`: the real binary, the real tracer library and a
//! real CPython run the scripts in tests/scripts/, and the recordings are checked with
//! the format crate's analyses.
//!
//! Needs `python3` (CPython 3.9-3.15; `MEMLENS_TEST_PYTHON` picks another, see common/) on
//! PATH and `libmemlens_tracer.so` built next to
//! the memlens binary (`cargo test` at the workspace root builds both). The numpy test
//! is skipped, saying so, when numpy is not installed.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use memlens_analysis::{spans, stack_totals, EventFilter, Snapshot};
use memlens_format::{Recording, StackId, ThreadId};

use common::{line_of, memlens, memlens_run, python_has, script, TempDir};

struct Run {
    out: Output,
    rec: Recording,
    _dir: TempDir,
}

fn run_script(name: &str, extra: &[&str], args: &[&str]) -> Run {
    run_script_env(name, &[], extra, args)
}

/// [`run_script`] with environment variables for memlens (and so the tracer).
fn run_script_env(name: &str, env: &[(&str, &str)], extra: &[&str], args: &[&str]) -> Run {
    let tag: String = env.iter().map(|(_, v)| format!("-{v}")).collect();
    let dir = TempDir::new(&format!("{name}{tag}"));
    let file = dir.0.join("out.memlens");
    let out = memlens_run(&file, env, extra, name, args);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        panic!("no recording for {name}: {e}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    let rec = Recording::from_vec(bytes).expect("recording opens");
    Run { out, rec, _dir: dir }
}

/// (function, file name, line) of each frame of `stack`, innermost first.
fn frames(rec: &Recording, stack: StackId) -> Vec<(String, String, u32)> {
    rec.stack_frames(stack)
        .map(|f| {
            let fr = rec.frame(f).unwrap();
            let file = rec.string(fr.file);
            let base = file.rsplit('/').next().unwrap_or(file).to_owned();
            (rec.string(fr.function).to_owned(), base, fr.line)
        })
        .collect()
}

fn top_stacks(rec: &Recording, snapshot: Snapshot, filter: &EventFilter) -> Vec<(StackId, u64)> {
    stack_totals(rec, snapshot, filter).unwrap().stacks.iter().map(|(s, t)| (*s, t.bytes)).collect()
}

const MIB: u64 = 1024 * 1024;

fn within_5_percent(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want
}

#[test]
fn peak_top_site_is_the_100mb_line() {
    let run = run_script("big_alloc.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(0));
    let line = line_of("big_alloc.py", "ALLOC_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtPeak, &EventFilter::default());
    let (stack, bytes) = top[0];
    let fr = frames(&run.rec, stack);
    assert_eq!(fr[0], ("allocate_big".into(), "big_alloc.py".into(), line), "{fr:?}");
    assert_eq!(fr.last().unwrap().0, "<module>", "root is the script, not the bootstrap: {fr:?}");
    assert!(within_5_percent(bytes, 100 * MIB), "{bytes}");
    assert!(within_5_percent(run.rec.summary().peak_heap, 100 * MIB));
}

/// `MEMLENS_STACKS=walk` (bench/stack_modes.py's comparison mode) walks frames at every
/// allocation instead of keeping shadow stacks, and `MEMLENS_STACKS=profile` keeps them
/// with a profile function (the way on Pythons without the frame-evaluation hook): both
/// must find the very same stacks as the default.
#[test]
fn every_stack_mode_finds_the_same_stacks() {
    for mode in ["walk", "profile"] {
        same_stacks_as_default(mode);
    }
}

fn same_stacks_as_default(mode: &str) {
    let shadow = run_script("recursion.py", &[], &[]);
    let walk = run_script_env("recursion.py", &[("MEMLENS_STACKS", mode)], &[], &[]);
    assert!(walk.out.status.success(), "{}", String::from_utf8_lossy(&walk.out.stderr));
    let walk = walk.rec;
    let top = |rec: &Recording| {
        let (stack, bytes) = top_stacks(rec, Snapshot::AtEnd, &EventFilter::default())[0];
        (frames(rec, stack), bytes)
    };
    let (shadow_frames, shadow_bytes) = top(&shadow.rec);
    let (walk_frames, walk_bytes) = top(&walk);
    // (Not assert_eq on the 602 frames: a failure would print them all.)
    let outer = |f: &[(String, String, u32)]| f.iter().rev().take(3).cloned().collect::<Vec<_>>();
    assert!(
        walk_frames == shadow_frames,
        "outermost frames: {mode} {:?} vs default {:?}",
        outer(&walk_frames),
        outer(&shadow_frames)
    );
    assert_eq!(walk_frames.iter().filter(|f| f.0 == "down").count(), 601);
    assert!(within_5_percent(walk_bytes, shadow_bytes), "{walk_bytes} vs {shadow_bytes}");
}

/// Frame walking may make frame objects, which must never happen inside pymalloc (it calls
/// the raw domain and mmap halfway through making an arena): with sampling, walks are rare,
/// frame objects are made at them, and a walk at such a raw allocation broke pymalloc's free
/// lists (a segfault in 4 to 7 runs of 10 of json round trips). Six runs must all pass.
#[test]
fn frame_walking_with_sampling_leaves_pymalloc_alone() {
    for _ in 0..6 {
        let env = [("MEMLENS_STACKS", "walk")];
        let run = run_script_env("json_sampled.py", &env, &["--sample", "512KiB"], &[]);
        assert!(run.out.status.success(), "{:?}", run.out.status);
        assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "ok");
    }
}

/// Records are stamped a stretch at a time, and a quiet thread's stretch can be a few ms
/// old; a big allocation gets a time of its own, so the peak it makes is placed after the
/// pause before it.
#[test]
fn a_big_allocation_after_a_pause_has_its_own_time() {
    // No census: its records, after the first marker, would give the thread a new stretch.
    let run = run_script("quiet_then_big.py", &["--no-census"], &[]);
    let marker = |label: &str| run.rec.markers().iter().find(|m| m.label == label).unwrap().time_ns;
    let (pause, allocated) = (marker("pause"), marker("allocated"));
    let heap_at = |t: u64| {
        stack_totals(&run.rec, Snapshot::AtTime(t), &EventFilter::default()).unwrap().total.bytes
    };
    // The 8 MB are not there before the pause is over, and are there by the next marker.
    assert!(heap_at(pause + 900_000) < 8 * MIB, "{}", heap_at(pause + 900_000));
    assert!(heap_at(allocated) >= 8 * MIB, "{}", heap_at(allocated));
}

#[test]
fn memory_kept_at_exit_is_attributed_to_the_line_that_kept_it() {
    let run = run_script("big_alloc.py", &[], &[]);
    let line = line_of("big_alloc.py", "KEEP_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    let (stack, bytes) = top[0];
    assert_eq!(frames(&run.rec, stack)[0], ("keep_some".into(), "big_alloc.py".into(), line));
    assert!(within_5_percent(bytes, 10 * MIB), "{bytes}");
}

#[test]
fn allocations_land_on_their_named_threads() {
    threads_with_stacks(&[]);
}

#[test]
fn allocations_land_on_their_named_threads_with_the_profile_function() {
    threads_with_stacks(&[("MEMLENS_STACKS", "profile")]);
}

/// Frame walking needs no profile function on new threads: threading's is taken off them
/// (it once stayed, called at every call and return of every thread).
#[test]
fn allocations_land_on_their_named_threads_when_frames_are_walked() {
    threads_with_stacks(&[("MEMLENS_STACKS", "walk")]);
}

fn threads_with_stacks(env: &[(&str, &str)]) {
    let run = run_script_env("threads.py", env, &[], &[]);
    assert_eq!(run.out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(!stderr.contains("Exception ignored"), "{stderr}");
    let line = line_of("threads.py", "THREAD_ALLOC_LINE");
    for i in 0..4u64 {
        let name = format!("worker-{i}");
        let t = run
            .rec
            .threads()
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no thread {name} in {:?}", run.rec.threads()));
        let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::thread(t.id));
        let (stack, bytes) = top[0];
        assert!(within_5_percent(bytes, (i + 1) * 4 * MIB), "{name}: {bytes}");
        let fr = frames(&run.rec, stack);
        assert_eq!(fr[0], ("work".into(), "threads.py".into(), line), "{name}: {fr:?}");
    }
    let main = run.rec.threads().iter().find(|t| t.name == "MainThread").expect("MainThread");
    assert_eq!(main.id, ThreadId(0));
}

#[test]
fn numpy_arrays_are_attributed_to_the_python_line() {
    if !python_has("numpy") {
        return;
    }
    let run = run_script("numpy_alloc.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.out.stderr));
    let line = line_of("numpy_alloc.py", "NUMPY_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    let (stack, bytes) = top[0];
    let fr = frames(&run.rec, stack);
    // numpy.ones is itself Python code (numeric.py) calling np.empty: the innermost
    // frame of the script is the line that created the array.
    let in_script = fr.iter().find(|f| f.1 == "numpy_alloc.py").unwrap();
    assert_eq!(*in_script, ("make".into(), "numpy_alloc.py".into(), line), "{fr:?}");
    assert!(within_5_percent(bytes, 80_000_000), "{bytes}");
}

#[test]
fn recursion_600_deep_keeps_the_whole_stack() {
    let run = run_script("recursion.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(0));
    let line = line_of("recursion.py", "DEEP_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    let (stack, bytes) = top[0];
    let fr = frames(&run.rec, stack);
    assert_eq!(fr[0], ("down".into(), "recursion.py".into(), line));
    assert_eq!(fr.iter().filter(|f| f.0 == "down").count(), 601);
    assert!(within_5_percent(bytes, 8 * MIB));
}

#[test]
fn sigkilled_program_leaves_a_readable_recording_ending_in_signal_9() {
    let run = run_script("sigkill.py", &[], &[]);
    // The program runs in the process memlens was started as: it dies of the signal itself.
    assert_eq!(run.out.status.signal(), Some(9));
    let end = run.rec.end().expect("process end recorded");
    assert_eq!((end.exit_code, end.signal), (None, Some(9)));
    let line = line_of("sigkill.py", "KILL_ALLOC_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    assert_eq!(frames(&run.rec, top[0].0)[0].2, line);
    assert!(within_5_percent(top[0].1, 50 * MIB));
    // It died inside its span, which stays open.
    let (closed, open) = spans(&run.rec);
    let open: Vec<&str> = open.iter().map(|o| o.name.as_str()).collect();
    assert!(closed.is_empty() && open == ["doomed"], "{closed:?} {open:?}");
}

#[test]
fn os_exit_leaves_a_complete_recording() {
    let run = run_script("os_exit.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(3));
    let end = run.rec.end().expect("process end recorded");
    assert_eq!((end.exit_code, end.signal), (Some(3), None));
    let line = line_of("os_exit.py", "EXIT_ALLOC_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    assert_eq!(frames(&run.rec, top[0].0)[0].2, line);
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn exit_code_and_arguments_pass_through() {
    let run = run_script("sys_exit.py", &[], &["a", "--flag", "b"]);
    assert_eq!(run.out.status.code(), Some(7));
    let stdout = String::from_utf8_lossy(&run.out.stdout);
    assert!(stdout.trim_end().ends_with("sys_exit.py a --flag b"), "{stdout}");
    assert_eq!(run.rec.end().unwrap().exit_code, Some(7));
}

/// Under `PYTHONDONTWRITEBYTECODE`, the first run compiles memlens's own package in its run
/// cache (not the program: the script gets no bytecode), so later runs do not.
#[test]
fn the_package_is_compiled_once_even_where_python_writes_no_bytecode() {
    let dir = TempDir::new("dont-write-bytecode");
    let cache = dir.0.join("cache");
    let program = dir.0.join("hello.py");
    std::fs::write(&program, "print('hello')\n").unwrap();
    for _ in 0..2 {
        let out = memlens()
            .args(["run", "-q", "-o"])
            .arg(dir.0.join("out.memlens"))
            .arg(&program)
            .env("XDG_CACHE_HOME", &cache)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    }
    let packages: Vec<_> = std::fs::read_dir(cache.join("memlens"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("memlens-py-"))
        .collect();
    assert_eq!(packages.len(), 1, "{packages:?}");
    let compiled = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d.join("__pycache__"))
            .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    let in_package = compiled(&packages[0].join("memlens"));
    assert!(in_package.iter().any(|n| n.starts_with("__init__.")), "{in_package:?}");
    assert!(in_package.iter().any(|n| n.starts_with("_census.")), "{in_package:?}");
    assert!(compiled(&packages[0]).iter().any(|n| n.starts_with("sitecustomize.")));
    assert!(compiled(&dir.0).is_empty(), "the program's own bytecode was written");
}

/// A program's own `sitecustomize` (on its PYTHONPATH) still runs, in the program and in a
/// Python it starts, after memlens's, which shadows it; both processes are recorded.
#[test]
fn the_programs_own_sitecustomize_still_runs() {
    let dir = TempDir::new("own-sitecustomize");
    let site = dir.0.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("sitecustomize.py"),
        "import os\nprint('own sitecustomize', os.getpid())\n",
    )
    .unwrap();
    let program = dir.0.join("spawns.py");
    std::fs::write(
        &program,
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'])\n",
    )
    .unwrap();
    let file = dir.0.join("out.memlens");
    let out = memlens()
        .args(["run", "-q", "-o"])
        .arg(&file)
        .arg(&program)
        .env("PYTHONPATH", &site)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("own sitecustomize").count(), 2, "{stdout}");
    let json = memlens().args(["summary", "--json"]).arg(&file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(2), "{}", v["processes"]);
}

#[test]
fn uncaught_exception_prints_a_plain_traceback_and_exits_1() {
    let run = run_script("raises.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(stderr.contains("ValueError: boom"), "{stderr}");
    assert!(!stderr.contains("_bootstrap"), "bootstrap frames leak into: {stderr}");
}

#[test]
fn no_native_still_traces_python_allocations() {
    let run = run_script("big_alloc.py", &["--no-native"], &[]);
    assert_eq!(run.out.status.code(), Some(0));
    assert!(!run.rec.meta().capture.native);
    assert!(within_5_percent(run.rec.summary().peak_heap, 100 * MIB));
}

#[test]
fn missing_script_is_a_clear_error() {
    let out = memlens().args(["run", "/nonexistent/nope.py"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("script not found: /nonexistent/nope.py"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_interpreter_may_lead_the_command_as_typed_without_memlens() {
    let dir = TempDir::new("interp-word");
    let file = dir.0.join("out.memlens");
    let argv = dir.0.join("argv.py");
    std::fs::write(&argv, "import sys; print(sys.argv[1:])").unwrap();
    let py = common::python();
    // `memlens run python3 script args`, `.../python -c CODE`, `python3 -mMODULE`: the
    // interpreter is the one named (its version is in the recording), and -m/-c are its.
    let version = |args: &[&std::ffi::OsStr]| {
        let out = memlens().args(["run", "-q", "-o"]).arg(&file).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let code = "import sys; print(sys.argv[1:], sys.version.split()[0])";
    let named = version(&[py.as_os_str(), "-c".as_ref(), code.as_ref(), "a".as_ref()]);
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(named, format!("['a'] {}", rec.meta().python_version));
    let on_path = version(&["python3".as_ref(), argv.as_os_str(), "-c".as_ref()]);
    assert_eq!(on_path, "['-c']");
    let module = version(&["python3".as_ref(), "-mplatform".as_ref(), "--terse".as_ref()]);
    assert!(!module.is_empty());
    // A command naming its interpreter on its `#!` line (a virtualenv's console script)
    // runs with it, by path or through env; a `.py` file runs with python3 all the same.
    let real = Command::new(&py).args(["-c", "import sys; print(sys.executable)"]).output();
    let real = String::from_utf8(real.unwrap().stdout).unwrap();
    let named = dir.0.join("python3.99");
    std::os::unix::fs::symlink(real.trim(), &named).unwrap();
    let show = "import sys; print(sys.executable)";
    for (name, shebang) in [
        ("tool", format!("#!{}", named.display())),
        ("tool-env", "#!/usr/bin/env -S python3.99 -u".to_owned()),
    ] {
        std::fs::write(dir.0.join(name), format!("{shebang}\n{show}\n")).unwrap();
        let path = std::env::join_paths(
            std::iter::once(dir.0.clone())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        let out = memlens()
            .env("PATH", path)
            .args(["run", "-q", "-o"])
            .arg(&file)
            .arg(dir.0.join(name))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), named.to_str().unwrap(), "{name}");
    }
    std::fs::write(dir.0.join("script.py"), format!("#!{}\n{show}\n", named.display())).unwrap();
    assert_ne!(version(&[dir.0.join("script.py").as_os_str()]), named.to_str().unwrap());
    // What cannot be honoured is refused in one line, before anything runs.
    let refused = |args: &[&str], says: &str| {
        let out = memlens().args(["run", "-o"]).arg(&file).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    };
    refused(&["python3", "-u", "x.py"], "PYTHONUNBUFFERED=1 for -u");
    refused(&["--python", "python3", "python3", "x.py"], "two interpreters");
    refused(&["python3"], "nothing to run after python3");
    refused(&["/bin/true"], "/bin/true is a compiled program, not a Python script");
}

#[test]
fn scripts_compile_and_fail_as_under_plain_python() {
    let dir = TempDir::new("as-plain");
    let file = dir.0.join("out.memlens");
    let cases: [(&str, &[u8]); 5] = [
        ("latin1.py", b"# -*- coding: latin-1 -*-\nprint('caf\xe9')\n"),
        ("bom.py", b"\xef\xbb\xbfprint('bom')\n"),
        // The future import must reach the compiler: annotations stay strings.
        ("future.py", b"from __future__ import annotations\ndef f(x: Nowhere): pass\nprint(f.__annotations__)\n"),
        ("syntax.py", b"x = 1\ny = )\n"),
        ("unicode.py", "print('\u{e9}t\u{e9}', __loader__.__class__.__name__)\n".as_bytes()),
    ];
    let plain_and_traced = |args: &[&std::ffi::OsStr]| {
        let plain = Command::new(common::python()).args(args).current_dir(&dir.0).output().unwrap();
        let traced = memlens()
            .args(["run", "-q", "-o"])
            .arg(&file)
            .args(args)
            .current_dir(&dir.0)
            .output()
            .unwrap();
        // memlens's own notes (an empty recording) are its, not the program's.
        let stderr = String::from_utf8_lossy(&traced.stderr)
            .lines()
            .filter(|l| !l.starts_with("memlens: "))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        assert_eq!(traced.status.code(), plain.status.code(), "{args:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&traced.stdout), String::from_utf8_lossy(&plain.stdout));
        assert_eq!(stderr, String::from_utf8_lossy(&plain.stderr), "{args:?}");
    };
    for (name, source) in cases {
        std::fs::write(dir.0.join(name), source).unwrap();
        plain_and_traced(&[name.as_ref()]);
    }
    plain_and_traced(&["-c".as_ref(), "print('\u{e9}t\u{e9}')".as_ref()]);
    plain_and_traced(&["-c".as_ref(), "x = (".as_ref()]);
}

#[test]
fn memlens_imports_no_module_a_plain_run_would_not() {
    // What the program finds imported: memlens's own modules and C modules built into the
    // interpreter at most (threading, functools, collections, importlib are 3-5 ms of every
    // traced start, and are imported when the program asks).
    let show = "import sys; print(' '.join(sorted(sys.modules)))";
    let plain = Command::new(common::python()).args(["-c", show]).output().unwrap();
    let dir = TempDir::new("modules");
    // The first run of an interpreter that writes no bytecode (PYTHONDONTWRITEBYTECODE)
    // compiles memlens's package once (py_compile and its imports).
    let warm = memlens()
        .args(["run", "-q", "-o"])
        .arg(dir.0.join("warm.memlens"))
        .args(["-c", "pass"])
        .output()
        .unwrap();
    assert!(warm.status.success());
    let traced = memlens()
        .args(["run", "-q", "-o"])
        .arg(dir.0.join("out.memlens"))
        .args(["-c", show])
        .output()
        .unwrap();
    assert!(traced.status.success(), "{}", String::from_utf8_lossy(&traced.stderr));
    let builtin = Command::new(common::python())
        .args(["-c", "import sys; print(' '.join(sys.builtin_module_names))"])
        .output()
        .unwrap();
    let words = |o: &[u8]| -> std::collections::BTreeSet<String> {
        String::from_utf8_lossy(o).split_whitespace().map(str::to_owned).collect()
    };
    let (plain, traced, builtin) =
        (words(&plain.stdout), words(&traced.stdout), words(&builtin.stdout));
    let extra: Vec<&String> = traced
        .difference(&plain)
        .filter(|m| !m.starts_with("memlens") && *m != "sitecustomize" && !builtin.contains(*m))
        .collect();
    assert!(extra.is_empty(), "imported for memlens: {extra:?}");
}

#[test]
fn a_program_that_closes_every_descriptor_keeps_its_files_and_its_recording() {
    let dir = TempDir::new("closes-fds");
    let files = dir.0.join("files");
    std::fs::create_dir(&files).unwrap();
    let run = run_script("closes_fds.py", &[], &[files.to_str().unwrap()]);
    assert_eq!(run.out.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.out.stderr));
    // The program's files hold what it wrote, and nothing of memlens's.
    for i in 0..4 {
        assert_eq!(std::fs::read(files.join(format!("log{i}.txt"))).unwrap(), b"hello\n");
    }
    assert_eq!(std::fs::read(files.join("dup.txt")).unwrap(), b"x");
    // Traced before, after the close and after the dup2s, to the end.
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(run.rec.has_trailer());
    assert_eq!(run.rec.end().unwrap().exit_code, Some(0));
    for (tag, kib) in [
        ("CLOSES_BEFORE_LINE", 5_000),
        ("CLOSES_AFTER_LINE", 30_000),
        ("CLOSES_LATER_LINE", 10_000),
    ] {
        let line = line_of("closes_fds.py", tag);
        let at = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default())
            .into_iter()
            .filter(|(stack, _)| frames(&run.rec, *stack).iter().any(|f| f.2 == line))
            .map(|(_, bytes)| bytes)
            .sum::<u64>();
        assert!(at >= kib * 1000, "{tag}: {at} bytes");
    }
}

#[test]
fn output_to_dev_null_is_a_run_without_a_file_and_to_stdout_is_refused() {
    let out = memlens().args(["run", "-o", "/dev/null", "-c", "x = [0] * 10**6"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let out = memlens().args(["run", "-o", "-", "-c", "pass"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("cannot go to standard output"), "{stderr}");
    assert!(out.stdout.is_empty() && !std::path::Path::new("-").exists());
}

#[test]
fn missing_python_is_a_clear_error() {
    let out = memlens()
        .args(["run", "--python", "/nonexistent/python9"])
        .arg(script("sys_exit.py"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn unwritable_output_is_a_clear_error() {
    let out = memlens()
        .args(["run", "-o", "/nonexistent-dir/x.memlens"])
        .arg(script("sys_exit.py"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write output file /nonexistent-dir/x.memlens"), "{stderr}");
}

#[test]
fn module_and_code_modes_work() {
    let dir = TempDir::new("modes");
    let file = dir.0.join("m.memlens");
    let out = memlens()
        .args(["run", "-q", "-o"])
        .arg(&file)
        .args([
            "-c",
            "import sys; x = bytearray(5 * 1024 * 1024); sys.exit(len(sys.argv))",
            "a",
            "b",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "-q prints nothing: {}", String::from_utf8_lossy(&out.stderr));
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    assert!(rec.summary().peak_heap >= 5 * MIB);

    let out = memlens()
        .args(["run", "-q", "-o"])
        .arg(&file)
        .args(["-m", "json.tool", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage:"));
}

#[test]
fn frees_on_other_threads_cancel_allocations_despite_address_reuse() {
    let run = run_script("cross_thread_free.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(0));
    let line = line_of("cross_thread_free.py", "PRODUCE_LINE");
    let end = stack_totals(&run.rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    // Only the bytearrays themselves: Queue.put's deque keeps a few blocks cached.
    let leaked: u64 = end
        .stacks
        .iter()
        .filter(|(s, _)| {
            let want = ("produce".to_owned(), "cross_thread_free.py".to_owned(), line);
            frames(&run.rec, *s).first() == Some(&want)
        })
        .map(|(_, t)| t.bytes)
        .sum();
    // 40,000 bytearrays of 1,000-1,049 bytes went through the queue and all were
    // freed. (They are made on a line of their own: the frames of the `Q.put` calls,
    // which CPython 3.9 and 3.10 keep on the code object and the frame free list, are
    // charged to the next line, as tracemalloc charges them.) 3.15 leaves one 56-byte
    // object of that line live at exit, none of the bytearrays' data.
    assert!(leaked < 1000, "{leaked} bytes from the produce() line still live at the end");
    let names: Vec<&str> = run.rec.threads().iter().map(|t| t.name.as_str()).collect();
    for n in ["producer-0", "producer-1", "consumer"] {
        assert!(names.contains(&n), "{names:?}");
    }
}

#[test]
fn subprocesses_and_forked_workers_do_not_disturb_the_recording() {
    let run = run_script("forks.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.out.stderr));
    assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "8000");
    let line = line_of("forks.py", "FORKS_KEEP_LINE");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    assert_eq!(frames(&run.rec, top[0].0)[0].2, line);
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn sigterm_to_memlens_reaches_the_program_and_is_recorded() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("sigterm");
    let file = dir.0.join("out.memlens");
    let mut child = memlens()
        .arg("run")
        .arg("-o")
        .arg(&file)
        .arg(script("sleeper.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Keep the script's stdin open (it exits at EOF) until memlens has ended.
    let stdin = child.stdin.take();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.signal(), Some(15), "{}", String::from_utf8_lossy(&out.stderr));
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(rec.end().unwrap().signal, Some(15));
    let top = top_stacks(&rec, Snapshot::AtEnd, &EventFilter::default());
    assert_eq!(frames(&rec, top[0].0)[0].2, line_of("sleeper.py", "SLEEP_ALLOC_LINE"));
}

#[test]
fn replacing_the_profiler_mid_call_does_not_crash() {
    let run = run_script("profiler_swap.py", &[], &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.out.stderr));
    assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "survived");
    assert!(run.rec.summary().peak_heap >= 5 * MIB);
}

/// With the profile function keeping the stacks, a program's own profilers (sys.setprofile
/// and its removal, a trace function, cProfile, threading.setprofile) once replaced or
/// removed memlens's, and allocations went to the line of `<module>` that was running. Each
/// must be charged to its function's line, and the program's profile function must get the
/// calls it gets without memlens.
#[test]
fn a_programs_own_profiler_leaves_the_profile_functions_stacks_right() {
    let run = run_script_env("own_profiler.py", &[("MEMLENS_STACKS", "profile")], &[], &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.out.stderr));
    let plain = Command::new(common::python()).arg(script("own_profiler.py")).output().unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert_eq!(
        String::from_utf8_lossy(&run.out.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "the program's profiler saw other calls under memlens"
    );
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::default());
    let innermost: Vec<_> =
        top.iter().filter_map(|&(s, b)| Some((frames(&run.rec, s).first()?.clone(), b))).collect();
    for (function, tag) in [
        ("alloc_a", "ALLOC_A"),
        ("alloc_b", "ALLOC_B"),
        ("alloc_c", "ALLOC_C"),
        ("alloc_d", "ALLOC_D"),
    ] {
        let want =
            (function.to_owned(), "own_profiler.py".to_owned(), line_of("own_profiler.py", tag));
        let bytes: u64 = innermost.iter().filter(|(f, _)| *f == want).map(|(_, b)| b).sum();
        assert!(bytes >= 5 * MIB, "{function}: {bytes} bytes; top stacks: {:?}", &innermost[..6]);
    }
    let module: u64 = innermost.iter().filter(|(f, _)| f.0 == "<module>").map(|(_, b)| b).sum();
    assert!(module < MIB, "{module} bytes charged to <module>: {:?}", &innermost[..6]);
    let worker = run.rec.threads().iter().find(|t| t.name == "worker").expect("the worker thread");
    let top = top_stacks(&run.rec, Snapshot::AtEnd, &EventFilter::thread(worker.id));
    assert_eq!(frames(&run.rec, top[0].0)[0].0, "alloc_d");
}
