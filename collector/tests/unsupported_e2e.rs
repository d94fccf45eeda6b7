//! Interpreters memlens cannot trace: other versions (2.7, 3.8; 3.16 and later, faked
//! here), debug and free-threaded builds. `memlens run` says so in one line and still
//! records native allocations and RSS, and the program runs as it would without memlens;
//! `memlens.record()` does the same from inside such a program.
//!
//! Uses pyenv's 2.7 and 3.8 and Debian's python3.11-dbg where they are installed (a test
//! says SKIPPED otherwise); the fake interpreters answer memlens's probe with another
//! version or build, then run the program with the real `python3` under test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use memlens_analysis::{stack_totals, EventFilter, Snapshot};
use memlens_format::{Recording, StackId};

use common::{memlens, root};

/// A program that needs no Python 3: 50 MB from the interpreter's allocator (a native
/// allocation when the interpreter is not traced), and its own exit code.
const PROGRAM: &str = "import sys, time\nb = bytearray(50 * 1000 * 1000)\nprint(len(b))\ntime.sleep(0.2)\nsys.exit(3)\n";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memlens-unsupported-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An interpreter that tells memlens's probe it is `answer` (version_info major, minor,
/// version, implementation, ABI flags), then runs the program with the real one.
fn fake_python(dir: &Path, answer: &str) -> PathBuf {
    let real = std::fs::canonicalize(which_python()).unwrap();
    let path = dir.join("python-fake");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in *sys.version_info*) echo '{answer}'; exit 0;; esac\nexec '{}' \"$@\"\n",
        real.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn which_python() -> PathBuf {
    let python = common::python();
    if python.is_absolute() {
        return python;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(&python)).find(|p| p.is_file()).unwrap()
}

/// `memlens run --python PYTHON -c PROGRAM`: its output, and the recording.
fn run(python: &Path, tag: &str, extra: &[&str]) -> (Output, Recording) {
    let dir = temp_dir(tag);
    let file = dir.join("out.memlens");
    let out = memlens()
        .args(["run", "-o"])
        .arg(&file)
        .arg("--python")
        .arg(python)
        .args(extra)
        .args(["-c", PROGRAM])
        .output()
        .unwrap();
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        panic!("{}: {e}: {}", python.display(), String::from_utf8_lossy(&out.stderr))
    });
    (out, Recording::from_vec(bytes).unwrap())
}

/// The run ended as the program did, stderr's first line says why only `what` was
/// recorded, and the recording has the 50 MB as a native allocation without a stack.
fn assert_native_only(out: &Output, rec: &Recording, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "50000000");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("memlens: ") && first.contains(why), "{stderr}");
    assert!(
        first.ends_with("recording native allocations and RSS only, without Python stacks"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(!rec.meta().capture.python_allocators);
    assert_eq!(rec.end().unwrap().exit_code, Some(3));
    let peak = stack_totals(rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
    assert!(peak.total.bytes >= 50_000_000, "{}", peak.total.bytes);
    assert!(peak.stacks.iter().all(|(s, _)| *s == StackId::ROOT));
    assert!(rec.samples().iter().any(|s| s.rss >= 50_000_000));
}

#[test]
fn other_versions_and_builds_record_native_allocations_and_rss() {
    let dir = temp_dir("fakes");
    for (answer, why) in [
        (
            "3 16 3.16.0 cpython ",
            "Python 3.16.0 is not supported (memlens traces CPython 3.9 to 3.15)",
        ),
        ("3 17 3.17.0a1 cpython ", "Python 3.17.0a1 is not supported"),
        ("3 13 3.13.0 cpython t", "free-threaded Python 3.13.0 is not supported"),
        ("3 14 3.14.0 cpython t", "free-threaded Python 3.14.0 is not supported"),
        ("3 12 3.12.1 cpython d", "Python 3.12.1 debug builds are not supported"),
        ("3 10 7.3.17 pypy ", "pypy 7.3.17 is not supported (memlens traces CPython)"),
    ] {
        let python = fake_python(&dir, answer);
        let (out, rec) = run(&python, "fake", &[]);
        assert_native_only(&out, &rec, why);
    }
    // Without native hooks there is only RSS to record, and memlens says that.
    let python = fake_python(&dir, "3 16 3.16.0 cpython ");
    let (out, rec) = run(&python, "rss", &["--no-native"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.lines().next().unwrap().ends_with("recording RSS only, without Python stacks"));
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(rec.summary().alloc_count, 0);
    assert!(rec.samples().iter().any(|s| s.rss >= 50_000_000));
}

/// pyenv's own old interpreters and Debian's debug build, where installed.
#[test]
fn python_2_7_3_8_and_a_debug_build_record_native_allocations_and_rss() {
    let pyenv = Path::new("/root/.pyenv/versions");
    for (python, why) in [
        (pyenv.join("2.7.18/bin/python"), "Python 2.7.18 is not supported"),
        (pyenv.join("3.8.18/bin/python3"), "Python 3.8.18 is not supported"),
        (PathBuf::from("/usr/bin/python3.11-dbg"), "debug builds are not supported"),
    ] {
        if !python.is_file() {
            eprintln!("SKIPPED: {} is not installed", python.display());
            continue;
        }
        let (out, rec) = run(&python, "real", &[]);
        assert_native_only(&out, &rec, why);
    }
}

/// `memlens.record()` in an interpreter the tracer refuses: one line, native allocations
/// recorded, and the program goes on. (Python 3.8 runs the `memlens` package.)
#[test]
fn record_in_an_unsupported_interpreter_records_native_allocations() {
    let python = Path::new("/root/.pyenv/versions/3.8.18/bin/python3");
    if !python.is_file() {
        eprintln!("SKIPPED: {} is not installed", python.display());
        return;
    }
    let dir = temp_dir("record");
    let code = "import memlens\nwith memlens.record('a.memlens') as r:\n    b = bytearray(30_000_000)\nprint(r.peak_bytes)\n";
    let out = std::process::Command::new(python)
        .args(["-c", code])
        .current_dir(&dir)
        .env("PYTHONPATH", root().join("collector/python"))
        .env("MEMLENS_BIN", memlens().get_program())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.trim(), "memlens: Python 3.8 is not supported (memlens traces CPython 3.9 to 3.15): recording native allocations and RSS only, without Python stacks");
    let peak: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!((30_000_000..31_000_000).contains(&peak), "{peak}");
    let rec = Recording::from_vec(std::fs::read(dir.join("a.memlens")).unwrap()).unwrap();
    assert_eq!(rec.summary().peak_heap, peak);
}
