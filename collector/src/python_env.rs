//! What `memlens run` needs around the traced interpreter: which Python it is, where
//! the tracer library is, and the `memlens` Python package (embedded in the binary and
//! written to the user's cache, or else a temporary directory, so the binary works outside
//! the source tree).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Oldest and newest supported Python 3 minor versions (the tracer's python_api.rs
/// knows these versions' APIs).
pub const SUPPORTED: (u32, u32) = (9, 15);

/// The Python package the traced interpreter imports, embedded at build time.
const PY_FILES: &[(&str, &str)] = &[
    ("memlens/__init__.py", include_str!("../python/memlens/__init__.py")),
    ("memlens/_bootstrap.py", include_str!("../python/memlens/_bootstrap.py")),
    ("memlens/_protocol.py", include_str!("../python/memlens/_protocol.py")),
    // The rest of the package, so that `import memlens.pytest_plugin` in the traced program
    // finds the same (shadowing, already started) `memlens` package as the bootstrap.
    ("memlens/__main__.py", include_str!("../python/memlens/__main__.py")),
    ("memlens/_cli.py", include_str!("../python/memlens/_cli.py")),
    ("memlens/pytest_plugin.py", include_str!("../python/memlens/pytest_plugin.py")),
    ("memlens/ipython.py", include_str!("../python/memlens/ipython.py")),
    ("memlens/_census.py", include_str!("../python/memlens/_census.py")),
    ("memlens/_layout.py", include_str!("../python/memlens/_layout.py")),
    ("memlens/_attach.py", include_str!("../python/memlens/_attach.py")),
    ("memlens/_follow.py", include_str!("../python/memlens/_follow.py")),
    ("memlens/_greenlets.py", include_str!("../python/memlens/_greenlets.py")),
    ("memlens/_fork.py", include_str!("../python/memlens/_fork.py")),
    // Python's start-up imports it: a Python the program starts is followed from there.
    ("sitecustomize.py", include_str!("../python/sitecustomize.py")),
];

/// The one-liner given to `python -c`; everything else is in `_bootstrap.py`.
pub const BOOTSTRAP: &str = "import memlens._bootstrap as b; b.main()";

/// Facts about the interpreter that will run the program.
#[derive(Debug, Clone)]
pub struct PythonInfo {
    pub version: String,
    pub implementation: String,
    /// Why the tracer cannot follow this interpreter's Python code (one line), if it
    /// cannot: then only native allocations and RSS are recorded.
    pub unsupported: Option<String>,
}

/// Runs the interpreter once to learn its version and build (and to fail early and
/// clearly if it is missing or does not work); an executable that answered before and has
/// not changed since is not asked again ([`crate::run_cache`]).
pub fn probe_python(python: &Path) -> Result<PythonInfo> {
    let entry = crate::run_cache::probe_entry(python);
    let text = match entry.as_ref().and_then(crate::run_cache::read_probe) {
        Some(text) => text,
        None => {
            let text = ask_version(python)?;
            if let Some(entry) = &entry {
                crate::run_cache::write_probe(entry, &text);
            }
            text
        }
    };
    parse_probe(python, &text)
}

/// Runs the interpreter to ask its version and build; its answer.
fn ask_version(python: &Path) -> Result<String> {
    // -S, and no `platform` module: without `site` (its .pth files can take tens of ms)
    // and with `sys` alone, the answer is the same in a fraction of the time.
    let out = Command::new(python)
        .args([
            "-S",
            "-c",
            // Python 2 too, so that it gets a clear "not supported" below. ABI flags: 'd'
            // a debug build, 't' a free-threaded one (3.13+).
            "import sys; sys.stdout.write('%d %d %s %s %s%s\\n' % (sys.version_info[0], \
             sys.version_info[1], sys.version.split()[0], \
             getattr(getattr(sys, 'implementation', None), 'name', 'cpython'), \
             getattr(sys, 'abiflags', ''), 'd' * hasattr(sys, 'gettotalrefcount')))",
        ])
        .env_remove("LD_PRELOAD")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "Python interpreter `{}` not found; install Python 3.{}-3.{} or pass --python PATH",
            python.display(),
            SUPPORTED.0,
            SUPPORTED.1
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run `{}`", python.display())),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(not_python(
            python,
            match stderr.trim() {
                "" => format!("failed ({}) and said nothing", out.status),
                _ => format!("failed ({}): {}", out.status, first_line(&stderr)),
            },
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first line of `text`, short and printable.
fn first_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").chars().take(200).collect::<String>();
    crate::term::escape_line(&line).into_owned()
}

fn not_python(python: &Path, what: String) -> anyhow::Error {
    anyhow::anyhow!(
        "`{}` is not a Python interpreter: asked for its version (with -S -c), it {what}; \
         pass --python with the path of a CPython 3.{}-3.{}",
        python.display(),
        SUPPORTED.0,
        SUPPORTED.1
    )
}

/// What the interpreter's answer `text` says about it.
fn parse_probe(python: &Path, text: &str) -> Result<PythonInfo> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let parsed = match parts[..] {
        [major, minor, version, implementation] => {
            Some((major, minor, version, implementation, ""))
        }
        [major, minor, version, implementation, flags] => {
            Some((major, minor, version, implementation, flags))
        }
        _ => None,
    }
    .and_then(|(major, minor, version, implementation, flags)| {
        let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
        Some((major, minor, version, implementation, flags))
    });
    let Some((major, minor, version, implementation, abiflags)) = parsed else {
        return Err(not_python(
            python,
            if text.trim().is_empty() {
                "did not answer (it printed nothing)".to_owned()
            } else {
                format!("answered `{}`", first_line(text))
            },
        ));
    };
    // What `platform.python_implementation()` calls it.
    let implementation = if implementation == "cpython" { "CPython" } else { implementation };
    let (first, last) = SUPPORTED;
    let unsupported = if implementation != "CPython" {
        Some(format!("{implementation} {version} is not supported (memlens traces CPython)"))
    } else if major != 3 || !(first..=last).contains(&minor) {
        Some(format!(
            "Python {version} is not supported (memlens traces CPython 3.{first} to 3.{last})"
        ))
    } else if abiflags.contains('t') {
        Some(format!(
            "free-threaded Python {version} is not supported (memlens traces builds with the GIL)"
        ))
    } else if abiflags.contains('d') {
        Some(format!(
            "Python {version} debug builds are not supported (memlens traces release builds)"
        ))
    } else {
        None
    };
    let (version, implementation) = (version.to_owned(), implementation.to_owned());
    Ok(PythonInfo { version, implementation, unsupported })
}

/// The interpreter `memlens run` uses without `--python`: the `python3` next to the memlens
/// executable when there is one (memlens pip-installed into a virtualenv, whose packages the
/// user expects to see even when the venv is not activated), else `python3` from PATH.
pub fn default_python() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("python3")))
        .filter(|p| p.is_file());
    beside.unwrap_or_else(|| PathBuf::from("python3"))
}

/// `libmemlens_tracer.so`: `$MEMLENS_TRACER`; next to the memlens executable (where cargo puts
/// both: target/<profile>/); or inside the installed `memlens` Python package when memlens was
/// installed from the wheel (the executable in `<prefix>/bin`, the library in
/// `<prefix>/lib/python3.X/{site,dist}-packages/memlens/`: venvs, `--user` and system installs).
pub fn find_tracer() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MEMLENS_TRACER") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("MEMLENS_TRACER={} is not a file", p.display());
        }
        return Ok(std::fs::canonicalize(&p)?);
    }
    let exe = std::env::current_exe().context("cannot locate the memlens executable")?;
    let dir = exe.parent().context("the memlens executable has no directory")?;
    let mut candidates =
        vec![dir.join("libmemlens_tracer.so"), dir.join("../libmemlens_tracer.so")];
    candidates.extend(installed_package_tracers(&dir.join("../lib")));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(std::fs::canonicalize(&candidate)?);
        }
    }
    bail!(
        "libmemlens_tracer.so not found next to {} (build it with `cargo build -p \
         memlens-tracer`, or set MEMLENS_TRACER=/path/to/libmemlens_tracer.so)",
        exe.display()
    )
}

/// `<lib>/python3.*/{site,dist}-packages/memlens/libmemlens_tracer.so`, newest Python first.
fn installed_package_tracers(lib: &Path) -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let minor = name.strip_prefix("python3.")?.parse().ok()?;
            Some((minor, e.path()))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions
        .into_iter()
        .flat_map(|(_, d)| {
            ["site-packages", "dist-packages"]
                .map(|s| d.join(s).join("memlens").join("libmemlens_tracer.so"))
        })
        .collect()
}

/// The `memlens` Python package for a run (kept in the user's cache, else written to the
/// run's folder), and a temporary folder of the run's own, removed on drop.
pub struct PythonPackageDir {
    /// The folder holding the package: the cached one ([`crate::run_cache::package`]), else
    /// `run` itself.
    dir: PathBuf,
    /// A folder of this run's own (for its sockets), removed at the end.
    run: PathBuf,
}

impl PythonPackageDir {
    /// The package from the user's cache ([`crate::run_cache::package`]) when there is one,
    /// else written to the run's folder.
    pub fn create() -> Result<Self> {
        Self::make(true)
    }

    /// The package written to the run's folder, next to its sockets: `memlens sink`'s, whose
    /// `follow DIR` line tells the block's children to find the package in DIR's parent.
    pub fn create_in_run_dir() -> Result<Self> {
        Self::make(false)
    }

    fn make(cached: bool) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let run = std::env::temp_dir().join(format!("memlens-py-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&run)
            .with_context(|| format!("cannot create {}", run.display()))?;
        let dir = match cached.then(|| crate::run_cache::package(PY_FILES)).flatten() {
            Some(cached) => cached,
            None => {
                for (name, text) in PY_FILES {
                    let path = run.join(name);
                    std::fs::create_dir_all(path.parent().unwrap_or(&run))
                        .and_then(|()| std::fs::write(&path, text))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                run.clone()
            }
        };
        Ok(PythonPackageDir { dir, run })
    }

    /// The directory that holds the `memlens` package.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A directory of this run's own, removed when it ends.
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// `PYTHONPATH` for the child: our package first, then the user's.
    pub fn pythonpath(&self) -> OsString {
        let mut v = self.dir.clone().into_os_string();
        if let Some(old) = std::env::var_os("PYTHONPATH") {
            if !old.is_empty() {
                v.push(":");
                v.push(old);
            }
        }
        v
    }
}

impl Drop for PythonPackageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_of_the_package_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/memlens");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = format!("memlens/{}", entry.unwrap().file_name().to_string_lossy());
            if name.ends_with(".py") {
                assert!(PY_FILES.iter().any(|(f, _)| *f == name), "{name} is not in PY_FILES");
            }
        }
    }
}
