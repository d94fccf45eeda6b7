//! Shared by the collector's end-to-end tests: the repository root, a `memlens` command
//! whose tracer library is built, and the Python interpreter the tests run.
//!
//! The interpreter is `python3` from PATH, or `MEMLENS_TEST_PYTHON` when set: `./dev test`
//! runs the Python-dependent test binaries once more for each CPython it finds (pyenv's
//! 3.9 to 3.15), with that variable set. `memlens run` then finds it as `python3` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod pprof;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A script under tests/scripts.
pub fn script(name: &str) -> PathBuf {
    root().join("tests/scripts").join(name)
}

/// The line of tests/scripts/`name` carrying the comment `# TAG`.
#[allow(dead_code)] // not every test file uses it
pub fn line_of(name: &str, tag: &str) -> u32 {
    let text = std::fs::read_to_string(script(name)).unwrap();
    let marker = format!("# {tag}");
    1 + text.lines().position(|l| l.trim_end().ends_with(&marker)).expect("tag in script") as u32
}

/// `cargo test` does not build cdylib targets, so build the tracer next to the memlens
/// binary once per test run (a no-op when it is up to date).
fn build_tracer(exe: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "memlens-tracer"]);
        if exe.parent().and_then(|d| d.file_name()) == Some("release".as_ref()) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo to build the tracer");
        assert!(status.success(), "cargo build -p memlens-tracer failed");
    });
}

/// The interpreter under test: `MEMLENS_TEST_PYTHON`, else `python3` from PATH.
#[allow(dead_code)] // not every test file uses it
pub fn python() -> PathBuf {
    std::env::var_os("MEMLENS_TEST_PYTHON").map_or_else(|| "python3".into(), PathBuf::from)
}

/// PATH with a directory holding `python3` -> `MEMLENS_TEST_PYTHON` first, so that
/// `memlens run` (which runs `python3` from PATH) and the scripts' own subprocesses use
/// the interpreter under test. `None` when the variable is not set.
fn test_python_path() -> Option<std::ffi::OsString> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let python = std::fs::canonicalize(std::env::var_os("MEMLENS_TEST_PYTHON")?)
            .expect("MEMLENS_TEST_PYTHON names an existing interpreter");
        // One directory per interpreter, shared by test binaries running at once.
        let name: String =
            python.to_string_lossy().chars().filter(char::is_ascii_alphanumeric).collect();
        let dir = std::env::temp_dir().join(format!("memlens-test-python-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        match std::os::unix::fs::symlink(&python, dir.join("python3")) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("{e}"),
            _ => Some(dir),
        }
    });
    let dir = dir.as_ref()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    Some(
        std::env::join_paths(std::iter::once(dir.clone()).chain(std::env::split_paths(&path)))
            .unwrap(),
    )
}

/// The memlens binary under test, with its tracer library built beside it (unless
/// `MEMLENS_TRACER` names one), running the interpreter under test ([`python`]).
pub fn memlens() -> Command {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_memlens"));
    let tracer = exe.parent().unwrap().join("libmemlens_tracer.so");
    if std::env::var_os("MEMLENS_TRACER").is_none() {
        build_tracer(&exe);
    }
    assert!(
        tracer.is_file() || std::env::var_os("MEMLENS_TRACER").is_some(),
        "{} is missing: build the tracer first (`cargo build -p memlens-tracer`)",
        tracer.display()
    );
    let mut cmd = Command::new(exe);
    if let Some(path) = test_python_path() {
        cmd.env("PATH", path);
    }
    cmd
}

/// `memlens run -o FILE EXTRA... SCRIPT ARGS...` on a script of tests/scripts, with `env`
/// for memlens (and so the tracer).
#[allow(dead_code)]
pub fn memlens_run(
    file: &std::path::Path,
    env: &[(&str, &str)],
    extra: &[&str],
    name: &str,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = memlens();
    cmd.envs(env.iter().copied()).arg("run").arg("-o").arg(file).args(extra).arg(script(name));
    output_within(cmd.args(args), RUN_LIMIT)
}

/// What a test's `memlens run` may take at most: minutes more than any takes, so that a
/// hang fails its test (with what it printed so far) instead of holding the suite.
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `cmd.output()`, or a panic once it has run `limit` (its process group killed first:
/// memlens, the program and the program's children).
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> std::process::Output {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            // SAFETY: signalling the process group the child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("{cmd:?} still ran after {limit:?} (killed); its stderr:\n{stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// The minor version of the Python under test ([`python`]).
#[allow(dead_code)]
pub fn tested_python_minor() -> u32 {
    let out = Command::new(python())
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a minor version")
}

/// The minor version of Python 3 in a recording's `python_version` ("3.12.1" -> 12).
#[allow(dead_code)]
pub fn python_minor(version: &str) -> u32 {
    version.split('.').nth(1).and_then(|m| m.parse().ok()).expect("a 3.X version")
}

/// The function a list comprehension's allocations are charged to: its own frame's before
/// 3.12 (`<listcomp>`; on 3.11, which has qualified names, `ENCLOSING.<locals>.<listcomp>`
/// in a function), the enclosing function's since comprehensions are inlined (PEP 709).
#[allow(dead_code)]
pub fn listcomp_function(version: &str, enclosing: &str) -> String {
    match python_minor(version) {
        12.. => enclosing.to_owned(),
        11 if enclosing != "<module>" => format!("{enclosing}.<locals>.<listcomp>"),
        _ => "<listcomp>".to_owned(),
    }
}

/// A fresh temporary directory, removed on drop.
#[allow(dead_code)] // not every test file uses it
pub struct TempDir(pub PathBuf);

#[allow(dead_code)]
impl TempDir {
    /// A fresh directory: unique per call, since tests running the same script at once
    /// (in parallel threads) must not share one.
    pub fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let d = std::env::temp_dir().join(format!("memlens-test-{name}-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    /// Removes the directory, but for a test that failed: kept, and said where, so that the
    /// recording it failed on can be looked at.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} (the test failed)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether the interpreter under test ([`python`]) imports `modules` (e.g. "numpy,
/// scipy.linalg"); says it skips if not.
#[allow(dead_code)]
pub fn python_has(modules: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: {modules} not installed for {} (./dev setup installs them)",
            python().display()
        );
    }
    ok
}

/// A small file system of its own (a tmpfs of `size`, e.g. "64k"), to fill up: mounted on a
/// fresh directory, unmounted on drop. `None` when this machine does not let the test mount
/// one (not root): then the caller says it skipped; under CI (`CI` set), where the tests run
/// as root, that is a failure instead, so that the full-disk tests cannot silently not run.
#[allow(dead_code)]
pub struct SmallDisk(pub PathBuf);

#[allow(dead_code)]
impl SmallDisk {
    pub fn mount(name: &str, size: &str) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("memlens-disk-{name}-{}", std::process::id()));
        let _ = Command::new("umount").arg(&dir).output();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=1777"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk(dir)),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                let _ = std::fs::remove_dir_all(&dir);
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot mount a small tmpfs for the full-disk test under CI: {why}"
                );
                eprintln!("SKIPPED (full-disk part): cannot mount a small tmpfs here: {why}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Damages the recording `file` as a bad disk block or a botched copy does: 8 bytes in the
/// middle of its middle event chunk overwritten with 0xff (a chunk that opening the closed
/// file never reads). Returns the chunk's number and the byte offset of its header.
#[allow(dead_code)]
pub fn damage_an_event_chunk(file: &Path) -> (usize, u64) {
    damage_event_chunk(file, |rec| {
        assert!(rec.event_chunk_count() >= 3, "too few event chunks to damage a middle one");
        rec.event_chunk_count() / 2
    })
}

/// Like [`damage_an_event_chunk`], the event chunk `pick` chooses.
#[allow(dead_code)]
pub fn damage_event_chunk(
    file: &Path,
    pick: impl FnOnce(&memlens_format::Recording) -> usize,
) -> (usize, u64) {
    let mut bytes = std::fs::read(file).unwrap();
    let rec = memlens_format::Recording::open(&bytes).unwrap();
    let k = pick(&rec);
    let n = rec.event_chunk_count();
    assert!(k < n, "event chunk {k} of {n}");
    let chunk = *rec.event_chunk(k).unwrap();
    let at = (chunk.offset + chunk.len / 2) as usize;
    bytes[at..at + 8].copy_from_slice(&[0xff; 8]);
    std::fs::write(file, bytes).unwrap();
    (k, chunk.offset)
}
