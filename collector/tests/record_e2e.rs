//! End-to-end tests of `with memlens.record(path):` in a plain `python3` (no `memlens
//! run`, no LD_PRELOAD): the tracer is loaded into the running interpreter, native
//! allocations are hooked by patching the loaded objects' GOTs, and `memlens sink` writes
//! each block's recording. Runs tests/scripts/record_blocks.py and checks its recordings.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use memlens_analysis::{descendants, stack_totals, started_without_memlens, EventFilter, Snapshot};
use memlens_format::{Recording, StackId};

use common::{line_of, memlens, python_has, root, script, SmallDisk};

const MIB: u64 = 1024 * 1024;

fn python(dir: &Path, args: &[&str]) -> Output {
    python_with(&common::python(), dir, args)
}

fn python_with(interpreter: &Path, dir: &Path, args: &[&str]) -> Output {
    let exe = memlens().get_program().to_owned();
    Command::new(interpreter)
        .args(args)
        .current_dir(dir)
        .env("PYTHONPATH", root().join("collector/python"))
        .env("MEMLENS_BIN", exe)
        .output()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memlens-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open(path: &Path) -> Recording {
    Recording::from_vec(std::fs::read(path).unwrap()).expect("recording opens")
}

/// (function, line) of the innermost frame in record_blocks.py of each stack alive at the
/// end, with its bytes, largest first.
fn at_end(rec: &Recording, filter: &EventFilter) -> Vec<(StackId, u64)> {
    let t = stack_totals(rec, Snapshot::AtEnd, filter).unwrap();
    t.stacks.iter().map(|(s, t)| (*s, t.bytes)).collect()
}

fn script_frame(rec: &Recording, stack: StackId) -> (String, u32) {
    rec.stack_frames(stack)
        .map(|f| rec.frame(f).unwrap())
        .find(|f| rec.string(f.file).ends_with("record_blocks.py"))
        .map(|f| (rec.string(f.function).to_owned(), f.line))
        .unwrap_or_default()
}

fn near(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want
}

#[test]
fn record_blocks_trace_only_inside_and_follow_one_another() {
    let numpy = python_has("numpy");
    let dir = temp_dir("blocks");
    let s = script("record_blocks.py");
    let mut args = vec![s.to_str().unwrap(), dir.to_str().unwrap()];
    if numpy {
        args.push("numpy");
    }
    let out = python(&dir, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done False");

    // First block: its allocations, attributed to their lines with the script's
    // frames (seeded from the frame that entered the block), and its marker.
    let first = open(&dir.join("first.memlens"));
    let end = first.end().expect("the block's end is recorded");
    assert_eq!((end.exit_code, end.signal), (None, None));
    let top = at_end(&first, &EventFilter::default());
    assert_eq!(
        script_frame(&first, top[0].0),
        ("<module>".into(), line_of("record_blocks.py", "FIRST_BLOCK_LINE"))
    );
    assert!(near(top[0].1, 20 * MIB), "{}", top[0].1);
    // The strings the list comprehension made, under `fill` at its line.
    let fill_line = line_of("record_blocks.py", "FILL_LINE");
    let fill = top
        .iter()
        .find(|(s, _)| {
            first
                .stack_frames(*s)
                .map(|f| first.frame(f).unwrap())
                .any(|f| first.string(f.function) == "fill" && f.line == fill_line)
        })
        .expect("fill");
    assert!(fill.1 > 5 * MIB, "{}", fill.1);
    assert!(first.markers().iter().any(|m| m.label == "filled"));
    // Nothing from between the blocks.
    let outside = line_of("record_blocks.py", "OUTSIDE_LINE");
    for rec in [&first, &open(&dir.join("second.memlens"))] {
        assert!(at_end(rec, &EventFilter::default())
            .iter()
            .all(|(s, _)| script_frame(rec, *s).1 != outside));
        assert!(rec.summary().peak_heap < 28 * MIB, "{}", rec.summary().peak_heap);
    }

    // Second block: a thread started inside it, on its own named thread with its stack.
    let second = open(&dir.join("second.memlens"));
    let worker = second.threads().iter().find(|t| t.name == "block-worker").expect("worker thread");
    let top = at_end(&second, &EventFilter::thread(worker.id));
    assert_eq!(
        script_frame(&second, top[0].0),
        ("worker".into(), line_of("record_blocks.py", "WORKER_LINE"))
    );
    assert!(near(top[0].1, 6 * MIB), "{}", top[0].1);
    // A thread that was already running when the block started: traced with its name and
    // its stack (from its first profile event inside the block, seeded from its frames).
    let early = second.threads().iter().find(|t| t.name == "early-bird").expect("early thread");
    let top = at_end(&second, &EventFilter::thread(early.id));
    assert_eq!(
        script_frame(&second, top[0].0),
        ("early_work".into(), line_of("record_blocks.py", "EARLY_LINE"))
    );
    let callers: Vec<String> = second
        .stack_frames(top[0].0)
        .map(|f| second.string(second.frame(f).unwrap().function).to_owned())
        .collect();
    assert!(callers.iter().any(|f| f == "early"), "{callers:?}");
    assert!(near(top[0].1, 3 * MIB), "{}", top[0].1);

    // Third block, native on: numpy's array buffer (malloc from a C extension loaded
    // before the block) is attributed to the Python line.
    if numpy {
        let rec = open(&dir.join("numpy.memlens"));
        assert!(rec.meta().capture.native);
        let top = at_end(&rec, &EventFilter::default());
        assert_eq!(script_frame(&rec, top[0].0).1, line_of("record_blocks.py", "NUMPY_BLOCK_LINE"));
        assert!(near(top[0].1, 80_000_000), "{}", top[0].1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn record_errors_are_clear() {
    let dir = temp_dir("errors");
    let code = "import memlens\n\
        try:\n    memlens.record('/nonexistent-dir/x.memlens').start()\n\
        except OSError as e:\n    print('E1', e)\n\
        with memlens.record('ok.memlens'):\n\
        \x20   try:\n        memlens.record('nested.memlens').start()\n\
        \x20   except RuntimeError as e:\n        print('E2', e)\n";
    let out = python(&dir, &["-c", code]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("E1 [Errno 2] memlens.record('/nonexistent-dir/x.memlens'): cannot write the recording /nonexistent-dir/x.memlens: No such file or directory"), "{stdout}");
    assert!(stdout.contains("E2 memlens is already recording this process"), "{stdout}");
    open(&dir.join("ok.memlens"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn program_killed_inside_a_block_leaves_a_readable_recording() {
    let dir = temp_dir("killed");
    let code = "import memlens, os\n\
        memlens.record('k.memlens').start()\n\
        x = bytearray(8 << 20)\n\
        os._exit(3)\n";
    let out = python(&dir, &["-c", code]);
    assert_eq!(out.status.code(), Some(3));
    // The sink outlives the program briefly: wait for it to finish the file.
    let path = dir.join("k.memlens");
    let mut rec = None;
    for _ in 0..100 {
        if let Ok(r) = Recording::from_vec(std::fs::read(&path).unwrap_or_default()) {
            if r.end().is_some() {
                rec = Some(r);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let rec = rec.expect("a complete recording after os._exit");
    assert!(rec.summary().peak_heap >= 8 * MIB, "{}", rec.summary().peak_heap);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's /usr/bin/python3 is a non-PIE executable that takes `malloc`'s address: its
/// PLT stub is then `malloc` for the whole process, the dynamic linker included. Patching
/// the GOT entry behind it once sent the linker's allocation of our thread-local storage
/// into our own hook, recursively (a crash on the drain thread's start).
#[test]
fn record_works_in_a_non_pie_python() {
    let debian = Path::new("/usr/bin/python3");
    if !debian.exists() {
        eprintln!("SKIPPED: no /usr/bin/python3");
        return;
    }
    let dir = temp_dir("non-pie");
    let code = "import memlens, threading\n\
        with memlens.record('a.memlens') as r:\n\
        \x20   t = threading.Thread(target=lambda: bytearray(1 << 20)); t.start(); t.join()\n\
        \x20   x = bytearray(10 << 20)\n\
        print(r.peak_bytes)\n";
    let out = python_with(debian, &dir, &["-c", code]);
    assert!(out.status.success(), "{:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let peak: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(near(peak, 10 * MIB) || (peak > 10 * MIB && peak < 12 * MIB), "{peak}");
    assert_eq!(open(&dir.join("a.memlens")).summary().peak_heap, peak);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tracer keeps its thread-locals in the static TLS block: `dlopen`ed after numpy (whose
/// libraries take static TLS too) it must still load, and see the buffers of a C extension
/// that was loaded before it.
#[test]
fn record_loads_after_numpy() {
    if !python_has("numpy") {
        return;
    }
    let dir = temp_dir("after-numpy");
    let code = "import numpy, memlens\n\
        with memlens.record('a.memlens') as r:\n\
        \x20   a = numpy.ones(10 << 17)\n\
        print(r.peak_bytes)\n";
    let out = python(&dir, &["-c", code]);
    assert!(out.status.success(), "{:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let peak: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(near(peak, 10 * MIB), "{peak}");
    let rec = open(&dir.join("a.memlens"));
    let top = at_end(&rec, &EventFilter::default());
    let lines: Vec<u32> = rec
        .stack_frames(top[0].0)
        .map(|f| rec.frame(f).unwrap())
        .filter(|f| rec.string(f.file) == "<string>")
        .map(|f| f.line)
        .collect();
    assert_eq!(lines, [3]);
    assert!(near(top[0].1, 10 * MIB), "{}", top[0].1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tracer thread indices are process-wide, but each recording numbers its threads from 0:
/// a block recorded on the main thread after one on another thread (which took index 0)
/// was once written with its only thread as id 1, and read back as corrupt.
#[test]
fn each_block_numbers_its_own_threads() {
    let dir = temp_dir("thread-ids");
    let code = "import memlens, threading\n\
        def block(path):\n    with memlens.record(path):\n        x = bytearray(4 << 20)\n\
        t = threading.Thread(target=block, args=('first.memlens',), name='other'); t.start(); t.join()\n\
        block('second.memlens')\n";
    let out = python(&dir, &["-c", code]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (file, thread) in [("first.memlens", "other"), ("second.memlens", "MainThread")] {
        let rec = open(&dir.join(file));
        assert!(rec.truncation().is_none(), "{file}: {:?}", rec.truncation());
        let names: Vec<&str> = rec.threads().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, [thread], "{file}");
        assert_eq!(rec.threads()[0].id.index(), 0);
        assert!(near(rec.summary().peak_heap, 4 * MIB), "{file}: {}", rec.summary().peak_heap);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `memlens.record()` on a full disk raises an OSError with errno ENOSPC whose message says the
/// disk is full and names the file (not a bare "the recorder failed", and not "No space left
/// on device (os error 28): No space left on device (os error 28)"). On /dev/full, and on a
/// real small tmpfs that fills up while the block runs.
#[test]
fn record_on_a_full_disk_says_the_disk_is_full() {
    let dir = temp_dir("full");
    let disk = SmallDisk::mount("record", "16k");
    let mut targets = vec![PathBuf::from("/dev/full")];
    targets.extend(disk.as_ref().map(|d| d.0.join("block.memlens")));
    for target in targets {
        let code = format!(
            "import memlens\n\
             try:\n\
             \x20   with memlens.record({target:?}):\n\
             \x20       keep = [bytearray(i % 4096) for i in range(300_000)]\n\
             except OSError as e:\n\
             \x20   print('ERRNO', e.errno)\n\
             \x20   print('MESSAGE', e)\n\
             else:\n\
             \x20   print('NO ERROR')\n",
            target = target.display().to_string()
        );
        let out = python(&dir, &["-c", &code]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{target:?}: {stdout}{stderr}");
        assert!(stdout.contains("ERRNO 28\n"), "{target:?}: {stdout}{stderr}");
        let says =
            format!("the disk is full: no space left on the device holding {}", target.display());
        assert!(stdout.contains(&says), "{target:?}: {stdout}");
        assert!(!stdout.contains("os error 28): No space"), "{target:?}: {stdout}");
        assert!(!stderr.contains("Traceback"), "{target:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `memlens run -o` onto a disk that fills up: one clear error naming the file. On a disk full
/// from the start (/dev/full) the program still runs as without memlens (it is the process
/// memlens started: its output and exit status are its own).
#[test]
fn run_on_a_full_disk_says_the_disk_is_full_once() {
    let out = memlens()
        .args(["run", "-o", "/dev/full", "-c"])
        .arg("x = [bytearray(100) for _ in range(100_000)]; print('program done')")
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "program done\n", "{stderr}");
    assert!(
        stderr.contains(
            "memlens: error: the disk is full: no space left on the device holding /dev/full"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
    let Some(disk) = SmallDisk::mount("run", "16k") else { return };
    let file = disk.0.join("run.memlens");
    let out = memlens()
        .args(["run", "-o"])
        .arg(&file)
        .args(["-c", "keep = [bytearray(i % 4096) for i in range(300_000)]"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let says = format!(
        "memlens: error: the disk is full: no space left on the device holding {}",
        file.display()
    );
    assert!(stderr.contains(&says), "{stderr}");
    assert_eq!(stderr.matches("No space left").count(), 0, "{stderr}");
}

/// A block's children: a Python it spawns is followed once (the `sitecustomize` the block
/// puts first on its PYTHONPATH chains past other copies of itself, such as this source
/// tree's, instead of running them in turn), and one started with an empty environment is
/// listed as not traced.
#[test]
fn a_blocks_children_are_followed_once_or_said_not_to_be() {
    let dir = temp_dir("children");
    let code = "import subprocess, sys, memlens\n\
                with memlens.record('out.memlens'):\n\
                \x20   subprocess.run([sys.executable, '-c', 'x = bytearray(3 << 20)'], check=True)\n\
                \x20   quiet = 'import time; time.sleep(0.4)'\n\
                \x20   subprocess.run([sys.executable, '-c', quiet], env={}, check=True)\n";
    let out = python(&dir, &["-c", code]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("sitecustomize"), "{stderr}");
    let rec = open(&dir.join("out.memlens"));
    let family = descendants(&rec);
    assert_eq!(
        family.len(),
        2,
        "{:?}",
        family.iter().map(|p| p.rec.meta().pid).collect::<Vec<_>>()
    );
    assert!(!family[0].rec.meta().capture.rss_only);
    assert!(family[0].rec.summary().peak_heap >= 3 * MIB);
    assert!(started_without_memlens(&family[1].rec));
}
