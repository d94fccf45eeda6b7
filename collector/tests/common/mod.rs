//! Shared by the collector's end-to-end tests: the repository root and a `memlens` command
//! whose tracer library is built.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The memlens binary under test, with its tracer library built beside it (unless
/// `MEMLENS_TRACER` names one).
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
    Command::new(exe)
}

/// A fresh temporary directory, removed on drop.
#[allow(dead_code)] // not every test file uses it
pub struct TempDir(pub PathBuf);

#[allow(dead_code)]
impl TempDir {
    pub fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("memlens-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `python3` imports `modules` (e.g. "numpy, scipy.linalg"); says it skips if not.
#[allow(dead_code)]
pub fn python_has(modules: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: {modules} not installed for python3 (./dev setup installs them)");
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
