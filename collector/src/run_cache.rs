//! What `memlens run` keeps from one run to the next, in the user's cache directory
//! (`$XDG_CACHE_HOME/memlens`, else `~/.cache/memlens`), so that the fixed cost of a run
//! is not paid again each time:
//!
//! - the `memlens` Python package the traced interpreter imports, in a folder named by a hash
//!   of its files (`memlens-py-<hash>`): Python compiles it once and keeps the bytecode there
//!   (written to a fresh folder each run, it was compiled each run: several ms of every
//!   traced program's start), the bootstrap writing it itself where Python writes none
//!   (`PYTHONDONTWRITEBYTECODE`, `-B`: `memlens._bootstrap._compile_once`);
//! - what an interpreter said when asked for its version (`probe/<hash>`), for an executable
//!   file that has not changed since (same path, inode, size and modification time): asking
//!   costs a start of Python, about 8 ms. Scripts (pyenv's shims) are asked every time, as
//!   their answer depends on where and how they are run.
//!
//! Everything here is an optimisation: a cache that cannot be read or written (no home, a
//! read-only disk, a damaged file) makes memlens do the work as if it were not there.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The cache directory, if the environment names one.
fn root() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("memlens"))
}

/// FNV-1a, 64 bits: names cache entries (stable across builds, unlike std's hasher).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A folder unique to this call, next to `target`.
fn scratch_next_to(target: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{nanos}", std::process::id()));
    target.with_file_name(name)
}

/// The cached folder holding `files` ((relative path, text)), written there first if it is
/// not yet; `None` when there is no usable cache directory.
pub fn package(files: &[(&str, &str)]) -> Option<PathBuf> {
    package_in(&root()?, files)
}

fn package_in(root: &Path, files: &[(&str, &str)]) -> Option<PathBuf> {
    let mut parts: Vec<&[u8]> = vec![env!("CARGO_PKG_VERSION").as_bytes()];
    for (name, text) in files {
        parts.push(name.as_bytes());
        parts.push(text.as_bytes());
    }
    let dir = root.join(format!("memlens-py-{:016x}", fnv(&parts)));
    // The marker is written last: a folder without it is one another run is still writing
    // (or gave up on), and is not used.
    const COMPLETE: &str = ".complete";
    // A folder whose files were changed since (edited, deleted) is not used: the run writes
    // its own.
    let intact = |dir: &Path| {
        dir.join(COMPLETE).is_file()
            && files.iter().all(|(name, text)| {
                std::fs::read(dir.join(name)).is_ok_and(|bytes| bytes == text.as_bytes())
            })
    };
    if intact(&dir) {
        return Some(dir);
    }
    let scratch = scratch_next_to(&dir);
    let written = (|| -> std::io::Result<()> {
        for (name, text) in files {
            let path = scratch.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(&scratch))?;
            std::fs::write(path, text)?;
        }
        std::fs::write(scratch.join(COMPLETE), b"")
    })();
    // Another run may have put the same folder in place meanwhile: theirs is as good.
    let placed = written.is_ok() && std::fs::rename(&scratch, &dir).is_ok();
    if !placed {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    intact(&dir).then_some(dir)
}

/// Where the answer of the interpreter `python` (a path, or a name looked up in `PATH`) to
/// the version probe is kept, with the key that must head it; `None` when it is not to be
/// kept (not found, or not an executable file of its own: a script).
pub fn probe_entry(python: &Path) -> Option<(PathBuf, String)> {
    probe_entry_in(&root()?, python)
}

fn probe_entry_in(root: &Path, python: &Path) -> Option<(PathBuf, String)> {
    let found = if python.components().count() > 1 {
        python.to_path_buf()
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(python))
            .find(|p| p.is_file())?
    };
    let real = std::fs::canonicalize(found).ok()?;
    let mut magic = [0u8; 4];
    std::fs::File::open(&real).ok()?.read_exact(&mut magic).ok()?;
    if magic != *b"\x7fELF" {
        return None;
    }
    let m = std::fs::metadata(&real).ok()?;
    let key = format!(
        "{}\t{}\t{}\t{}\t{}.{}",
        real.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    );
    let file = root.join("probe").join(format!("{:016x}", fnv(&[key.as_bytes()])));
    Some((file, key))
}

/// The answer kept at `entry`, if it is there and is for this very key.
pub fn read_probe((file, key): &(PathBuf, String)) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let (head, answer) = text.split_once('\n')?;
    (head == key).then(|| answer.to_owned())
}

/// Keeps `answer` at `entry` (best effort).
pub fn write_probe((file, key): &(PathBuf, String), answer: &str) {
    let Some(dir) = file.parent() else { return };
    let scratch = scratch_next_to(file);
    let ok = std::fs::create_dir_all(dir).is_ok()
        && std::fs::write(&scratch, format!("{key}\n{answer}")).is_ok()
        && std::fs::rename(&scratch, file).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache directory of the test's own.
    fn with_cache<R>(name: &str, f: impl FnOnce(&Path) -> R) -> R {
        let dir = std::env::temp_dir().join(format!("memlens-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = f(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn the_package_is_written_once_and_found_again() {
        with_cache("package", |cache| {
            let files = [("memlens/__init__.py", "x = 1\n"), ("sitecustomize.py", "")];
            let first = package_in(cache, &files).unwrap();
            assert!(first.starts_with(cache));
            assert_eq!(
                std::fs::read_to_string(first.join("memlens/__init__.py")).unwrap(),
                "x = 1\n"
            );
            // Compiled files Python leaves there stay for the next run.
            std::fs::write(first.join("memlens/kept.pyc"), b"").unwrap();
            assert_eq!(package_in(cache, &files).unwrap(), first);
            assert!(first.join("memlens/kept.pyc").is_file());
            // A changed file: not used.
            std::fs::write(first.join("sitecustomize.py"), "import os\n").unwrap();
            assert_eq!(package_in(cache, &files), None);
            std::fs::write(first.join("sitecustomize.py"), "").unwrap();
            // Other files, another folder.
            let other = package_in(cache, &[("memlens/__init__.py", "x = 2\n")]).unwrap();
            assert_ne!(other, first);
            // No scratch folder is left behind.
            let names: Vec<_> = std::fs::read_dir(cache).unwrap().collect();
            assert_eq!(names.len(), 2, "{names:?}");
        });
    }

    #[test]
    fn probes_of_executables_are_kept_and_checked_against_their_key() {
        with_cache("probe", |cache| {
            // This test's own binary stands for an interpreter: an ELF file.
            let exe = std::env::current_exe().unwrap();
            let entry = probe_entry_in(cache, &exe).unwrap();
            assert_eq!(read_probe(&entry), None);
            write_probe(&entry, "3 11 3.11.7 cpython \n");
            assert_eq!(read_probe(&entry).as_deref(), Some("3 11 3.11.7 cpython \n"));
            // A changed file (another key) does not read it.
            let stale = (entry.0.clone(), format!("{}x", entry.1));
            assert_eq!(read_probe(&stale), None);
            // A script is never kept.
            let script = std::env::temp_dir().join(format!("memlens-shim-{}", std::process::id()));
            std::fs::write(&script, "#!/bin/sh\nexec python3 \"$@\"\n").unwrap();
            assert_eq!(probe_entry_in(cache, &script), None);
            let _ = std::fs::remove_file(script);
        });
    }
}
