//! `memlens run --native-stacks` on real native code: a C extension built here with the
//! machine's compiler (tests/scripts/native_ext.c, Python's headers from `sysconfig`),
//! allocating through a static function and an inlined one, called from a known line of
//! tests/scripts/native_stacks.py; and numpy, whose array data is malloc'ed by its C code.
//! The recording's flame tree (`export --format collapsed`, the shared analysis's) and its
//! summary must name the C functions with file and line under the Python line; without the
//! flag the same allocations stay on the Python line, with no native frame. A Rust library
//! (tests/scripts/rust_lib, built here with cargo) called through ctypes shows its functions
//! the same way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{line_of, memlens, python, python_has, script, TempDir};
use memlens_format::Recording;

/// The line of tests/scripts/native_ext.c carrying the comment `// TAG`.
fn c_line(tag: &str) -> u32 {
    let text = std::fs::read_to_string(script("native_ext.c")).unwrap();
    let marker = format!("// {tag}");
    1 + text.lines().position(|l| l.trim_end().ends_with(&marker)).expect("tag in native_ext.c")
        as u32
}

/// Builds native_ext.c into `dir` for the Python under test (with debug information, -O2 so
/// that `fill_block` is inlined); returns `dir`.
fn build_extension(dir: &Path) -> PathBuf {
    let config = Command::new(python())
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include']); \
             print(sysconfig.get_config_var('EXT_SUFFIX'))",
        ])
        .output()
        .unwrap();
    assert!(config.status.success());
    let config = String::from_utf8(config.stdout).unwrap();
    let (include, suffix) = config.trim().split_once('\n').unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    // Debian's pyconfig.h includes its multiarch half as <x86_64-linux-gnu/python3.X/...>,
    // from the include directory's parent (/usr/include there; the unpacked CPython 3.14's
    // own, tests/debian_cpython.py): searched after the system's headers.
    let status = Command::new(cc)
        .args(["-O2", "-g", "-shared", "-fPIC", &format!("-I{include}")])
        .args(["-idirafter", &format!("{include}/..")])
        .arg(script("native_ext.c"))
        .arg("-o")
        .arg(dir.join(format!("native_ext{suffix}")))
        .status()
        .unwrap();
    assert!(status.success(), "cc failed to build tests/scripts/native_ext.c");
    dir.to_path_buf()
}

fn run(out: &Path, flags: &[&str], ext: &Path, extra: &[&str]) {
    run_script("native_stacks.py", out, flags, ext, extra);
}

/// `memlens run -q -o out FLAGS tests/scripts/NAME LIBRARY EXTRA`, which must succeed.
fn run_script(name: &str, out: &Path, flags: &[&str], library: &Path, extra: &[&str]) {
    let status = memlens()
        .args(["run", "-q", "-o"])
        .arg(out)
        .args(flags)
        .arg(script(name))
        .arg(library)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether `bytes` are those of `n` blocks of 1 MiB that were written whole: a block that
/// big is counted by its resident pages, which take in the page its allocator's header is on.
fn mib_blocks(n: u64, bytes: u64) -> bool {
    (n << 20..=(n << 20) + n * 16 * 1024).contains(&bytes)
}

/// The recording's peak flame tree as collapsed stacks: (frames, bytes).
fn collapsed(file: &Path) -> Vec<(String, u64)> {
    collapsed_view(file, "peak")
}

/// [`collapsed`] of another view (`--view leaks`: what was live at exit).
fn collapsed_view(file: &Path, view: &str) -> Vec<(String, u64)> {
    let out = memlens()
        .args(["export", "--format", "collapsed", "--view", view, "-o", "-"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, bytes) = l.rsplit_once(' ').unwrap();
            (stack.to_owned(), bytes.parse().unwrap())
        })
        .collect()
}

/// The collapsed stack of the extension's allocation made at the Python frame `python`: the
/// static function, and the inlined one with its own file and line.
fn under(python: &str) -> String {
    let c = script("native_ext.c");
    let at = |tag| format!("{}:{}", c.display(), c_line(tag));
    format!(
        "{python};allocate ({});make_buffer ({});fill_block ({})",
        at("ALLOCATE"),
        at("MAKE_BUFFER"),
        at("FILL_BLOCK")
    )
}

/// The recording is marked as having native stacks, and a stack ending with `want` holds
/// bytes that `bytes_ok` accepts.
fn assert_native_allocation(file: &Path, want: &str, bytes_ok: impl Fn(u64) -> bool) {
    let stacks = collapsed(file);
    assert!(stacks.iter().any(|(s, b)| s.ends_with(want) && bytes_ok(*b)), "{want}: {stacks:#?}");
    assert!(Recording::open(&std::fs::read(file).unwrap()).unwrap().meta().native_stacks());
}

fn summary_text(file: &Path) -> String {
    let out = memlens().args(["summary"]).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn c_functions_static_and_inlined_show_under_the_python_line() {
    let dir = TempDir::new("native-stacks");
    let ext = build_extension(&dir.0);
    let file = dir.0.join("native.memlens");
    run(&file, &["--native-stacks"], &ext, &[]);

    let py = script("native_stacks.py");
    let c = script("native_ext.c");
    let want = under(&format!("build ({}:{})", py.display(), line_of("native_stacks.py", "CALL")));
    let stacks = collapsed(&file);
    let bytes: u64 = stacks.iter().filter(|(s, _)| s.ends_with(&want)).map(|(_, b)| b).sum();
    assert!(mib_blocks(3, bytes), "{bytes}: no stack ends with {want}:\n{stacks:#?}");

    // The summary names the innermost C function, with its file and line, as the site.
    let text = summary_text(&file);
    let site = format!("fill_block  {}:{}", c.display(), c_line("FILL_BLOCK"));
    assert!(text.contains(&site), "{site} not in:\n{text}");

    // The recording says which frames are native, and keeps the module map: the
    // extension's file, with its build id.
    let rec = Recording::open(&std::fs::read(&file).unwrap()).unwrap();
    assert!(rec.meta().native_stacks());
    let kinds: Vec<(&str, bool)> = rec
        .frames()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (rec.string(f.function), rec.is_native_frame(memlens_format::FrameId(i as u32)))
        })
        .filter(|(name, _)| ["fill_block", "make_buffer", "allocate", "build"].contains(name))
        .collect();
    for (name, native) in &kinds {
        assert_eq!(*native, *name != "build", "{kinds:?}");
    }
    let module = rec
        .native_modules()
        .iter()
        .find(|m| m.path.contains("native_ext"))
        .unwrap_or_else(|| panic!("{:?}", rec.native_modules()));
    assert!(!module.build_id.is_empty() && module.start < module.end, "{module:?}");
}

/// The line of tests/scripts/rust_lib/lib.rs carrying the comment `// TAG`.
fn rust_line(tag: &str) -> u32 {
    let text = std::fs::read_to_string(script("rust_lib/lib.rs")).unwrap();
    let marker = format!("// {tag}");
    1 + text.lines().position(|l| l.trim_end().ends_with(&marker)).expect("tag in lib.rs") as u32
}

/// A Rust library (tests/scripts/rust_lib, built here with cargo, debug information on)
/// called through ctypes: its functions, the inlined one too, show with their files and
/// lines under the Python line, and the summary names the innermost of them, with Rust's
/// standard library (the allocator's inlined wrappers) beside it as the library frame.
#[test]
fn rust_functions_show_under_the_python_line() {
    let dir = TempDir::new("native-stacks-rust");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--offline", "--manifest-path"])
        .arg(script("rust_lib/Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.0.join("target"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo failed to build tests/scripts/rust_lib");
    let lib = dir.0.join("target/release/libmemlens_rust_lib.so");
    let file = dir.0.join("rust.memlens");
    run_script("rust_stacks.py", &file, &["--native-stacks"], &lib, &[]);

    let rs = script("rust_lib/lib.rs");
    let at = |tag| format!("{}:{}", rs.display(), rust_line(tag));
    let python = format!(
        "load ({}:{})",
        script("rust_stacks.py").display(),
        line_of("rust_stacks.py", "RUST_CALL")
    );
    let rust = format!(
        "memlens_rust_make_table ({});memlens_rust_lib::make_table ({});\
         memlens_rust_lib::fill_rows ({});",
        at("MAKE_TABLE_CALL"),
        at("FILL_ROWS_CALL"),
        at("ALLOCATE_ROW")
    );
    let stacks = collapsed(&file);
    // 64 rows of 64 KiB, from the Python line down through ctypes into the library.
    let rows: u64 = stacks
        .iter()
        .filter(|(s, _)| s.contains(&python) && s.contains(&rust))
        .map(|(_, b)| b)
        .sum();
    assert_eq!(rows, 64 * 64 * 1024, "no stack holds {python} ... {rust}:\n{stacks:#?}");
    let text = summary_text(&file);
    let site = format!("memlens_rust_lib::fill_rows  {}  (in alloc::", at("ALLOCATE_ROW"));
    assert!(text.contains(&site), "{site} not in:\n{text}");
}

#[test]
fn without_the_flag_the_python_line_keeps_the_allocations() {
    let dir = TempDir::new("native-stacks-off");
    let ext = build_extension(&dir.0);
    let file = dir.0.join("plain.memlens");
    run(&file, &[], &ext, &[]);
    let line = format!(
        "build ({}:{})",
        script("native_stacks.py").display(),
        line_of("native_stacks.py", "CALL")
    );
    let stacks = collapsed(&file);
    // The three blocks, and the capsules holding them.
    let bytes: u64 = stacks.iter().filter(|(s, _)| s.ends_with(&line)).map(|(_, b)| b).sum();
    assert!(mib_blocks(3, bytes), "{bytes}: {stacks:#?}");
    assert!(stacks.iter().all(|(s, _)| !s.contains("native_ext.c")), "{stacks:#?}");
    let rec = Recording::open(&std::fs::read(&file).unwrap()).unwrap();
    assert!(!rec.meta().native_stacks() && rec.native_modules().is_empty());
}

/// numpy's wheels carry no DWARF: its functions are named from the symbol table, with the
/// library as their file.
#[test]
fn numpy_arrays_show_numpys_c_functions() {
    if !python_has("numpy") {
        eprintln!("numpy is not installed for {}: skipped", python().display());
        return;
    }
    let dir = TempDir::new("native-stacks-numpy");
    let ext = build_extension(&dir.0);
    let file = dir.0.join("numpy.memlens");
    run(&file, &["--native-stacks"], &ext, &["numpy"]);
    let line = format!(
        "<module> ({}:{});ones (",
        script("native_stacks.py").display(),
        line_of("native_stacks.py", "NUMPY")
    );
    // At exit: the peak may come while numpy is imported (3.14), before the array.
    let stacks = collapsed_view(&file, "leaks");
    // The array's 2 MiB of data, malloc'ed by numpy's PyDataMem_UserNEW (numpy 1.22+)
    // called from the constructor of the array.
    let data = stacks
        .iter()
        .find(|(s, b)| s.starts_with(&line) && *b >= 2 << 20)
        .unwrap_or_else(|| panic!("no 2 MiB stack under {line}:\n{stacks:#?}"));
    assert!(data.0.contains("PyArray_NewFromDescr"), "{data:?}");
    assert!(data.0.contains("_multiarray_umath"), "{data:?}");
}

/// `memlens.record(path, native_stacks=True)` in a plain `python3` (the tracer loaded into the
/// running interpreter, native allocations hooked through the loaded objects' GOTs).
#[test]
fn memlens_record_takes_native_stacks_too() {
    let dir = TempDir::new("native-stacks-record");
    let ext = build_extension(&dir.0);
    let file = dir.0.join("block.memlens");
    let code = format!(
        "import sys, memlens\n\
         sys.path.insert(0, {ext:?})\n\
         import native_ext\n\
         with memlens.record({file:?}, native_stacks=True):\n\
         \x20   native_ext.allocate(1 << 20)\n",
        ext = ext.display().to_string(),
        file = file.display().to_string(),
    );
    let out = Command::new(python())
        .args(["-c", &code])
        .env("PYTHONPATH", common::root().join("collector/python"))
        .env("MEMLENS_BIN", memlens().get_program())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_native_allocation(&file, &under("<module> (<string>:5)"), |b| mib_blocks(1, b));
}

/// `memlens attach PID --native-stacks` on a program started plainly that keeps calling the
/// extension. Needs lldb, like attach_e2e.rs (skipped without it outside CI).
#[test]
fn attach_takes_native_stacks_too() {
    if Command::new("lldb").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "lldb is missing under CI");
        eprintln!("SKIPPED: lldb is not installed");
        return;
    }
    let dir = TempDir::new("native-stacks-attach");
    let ext = build_extension(&dir.0);
    let file = dir.0.join("attached.memlens");
    let code = format!(
        "import sys, time\n\
         sys.path.insert(0, {ext:?})\n\
         import native_ext\n\
         print('ready', flush=True)\n\
         for _ in range(400):\n\
         \x20   native_ext.allocate(4096)\n\
         \x20   time.sleep(0.01)\n",
        ext = ext.display().to_string(),
    );
    let mut program = Command::new(python())
        .args(["-c", &code])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(program.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    let out = memlens()
        .args(["attach", &program.id().to_string(), "--native-stacks", "--duration", "1", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(program.wait().unwrap().success());
    assert_native_allocation(&file, &under("<module> (<string>:6)"), |b| b >= 4096);
}

/// `memlens diff` of two `--native-stacks` recordings compares them by merged stack: the C
/// function that allocated more is the call site that grew.
#[test]
fn diff_names_the_c_function_that_grew() {
    let dir = TempDir::new("native-stacks-diff");
    let ext = build_extension(&dir.0);
    let record = |name: &str, blocks: &str| {
        let file = dir.0.join(name);
        let status = memlens()
            .env("BLOCKS", blocks)
            .args(["run", "-q", "--native-stacks", "-o"])
            .arg(&file)
            .arg(script("native_stacks.py"))
            .arg(&ext)
            .status()
            .unwrap();
        assert!(status.success());
        file
    };
    let (base, head) = (record("base.memlens", "3"), record("head.memlens", "5"));
    let out = memlens().args(["diff", "--format", "json"]).arg(&base).arg(&head).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = &diff["peak_sites"][0];
    assert_eq!(top["function"], "fill_block", "{diff:#}");
    assert!(top["file"].as_str().unwrap().ends_with("native_ext.c"), "{diff:#}");
    assert!(mib_blocks(2, top["change_bytes"].as_u64().unwrap()), "{diff:#}");
}
