//! Deep recursion under memlens, run under each interpreter `./dev test` finds
//! (`MEMLENS_TEST_PYTHON`, see common/): the frame-evaluation hook makes every Python call a
//! C call, so a program must recurse as deep as without memlens while the thread's C stack
//! has room, and get a `RecursionError` (never a crash) when it has not
//! (collector/tracer/src/c_stack.rs).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Output;

use memlens_analysis::{stack_totals, EventFilter, Snapshot};
use memlens_format::Recording;

use common::{line_of, memlens_run, python, script, tested_python_minor};

struct Run {
    out: Output,
    rec: Recording,
}

fn run(tag: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!("memlens-recursion-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out.memlens");
    let out = memlens_run(&file, env, &["-q"], "deep_recursion.py", args);
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).expect("recording opens");
    let _ = std::fs::remove_dir_all(&dir);
    Run { out, rec }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The script succeeds (under memlens and without), and the 1 MiB allocated at the bottom
/// is charged as [`assert_charged_under`] says.
fn assert_as_deep_as_plain(run: &Run, depth: usize, args: &[&str]) {
    let plain = std::process::Command::new(python())
        .arg(script("deep_recursion.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(plain.status.success(), "without memlens: {}", text(&plain));
    assert!(run.out.status.success(), "{}", text(&run.out));
    assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), format!("ok {depth}"));
    assert_charged_under(run, depth);
}

/// The 1 MiB allocated at the bottom is charged to `rec` at its line, under `depth` more
/// `rec` frames.
fn assert_charged_under(run: &Run, depth: usize) {
    let end = stack_totals(&run.rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    let (stack, total) = end.stacks.iter().max_by_key(|(_, t)| t.bytes).unwrap();
    assert!(total.bytes >= 1024 * 1024, "{}", total.bytes);
    let frames: Vec<(String, u32)> = run
        .rec
        .stack_frames(*stack)
        .map(|f| run.rec.frame(f).unwrap())
        .map(|f| (run.rec.string(f.function).to_owned(), f.line))
        .collect();
    assert_eq!(frames[0], ("rec".into(), line_of("deep_recursion.py", "DEEP_LINE")));
    assert_eq!(frames.iter().filter(|f| f.0 == "rec").count(), depth + 1);
}

/// The program raised RecursionError, uncaught: exit status 1, a traceback, no signal.
fn assert_recursion_error(out: &Output) {
    assert_eq!((out.status.code(), out.status.signal()), (Some(1), None), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Traceback") && stderr.contains("RecursionError"), "{stderr}");
}

/// 3.12.1 raised RecursionError at ~745 frames under memlens: each hooked call cost two
/// units of the C recursion counter (1,500), which plain Python does not spend.
#[test]
fn recursion_980_deep_under_the_default_limit() {
    let args = ["980", "--default-limit"];
    assert_as_deep_as_plain(&run("980", &[], &args), 980, &args);
}

/// 10,000 frames with a raised limit, on the main thread's 8 MiB stack: RecursionError at
/// 3,000-5,000 frames on 3.13.0 and ~745 on 3.12.1 before, and at ~6,900-7,800 on Debian's
/// 3.14 and 3.15, whose evaluation function takes 720 bytes of stack where pyenv's 3.13
/// takes 376 (docs/python-versions.md).
#[test]
fn recursion_10000_deep_with_a_raised_limit() {
    let args = ["10000"];
    assert_as_deep_as_plain(&run(args[0], &[], &args), 10000, &args);
}

#[test]
fn deepcopy_of_a_list_nested_400_deep() {
    let run = run("deepcopy", &[], &["deepcopy"]);
    assert!(run.out.status.success(), "{}", text(&run.out));
    assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "ok deepcopy");
}

/// 3.11.7 crashed with SIGSEGV at ~18,000 frames (and 3.9, 3.10 at ~16,000-18,000, where
/// plain Python reaches 20,000-23,000), then stopped with memlens's RecursionError at
/// ~14,000-16,000 (~7,000 on 3.14 and 3.15) where plain 3.11+ goes on to its recursion
/// limit. Now 100,000 frames run on fresh stack segments, on the main thread and on a
/// thread with a 512 KiB stack (3.9 and 3.10 deeper than without memlens, which crash).
#[test]
fn recursion_past_the_c_stack_goes_on_in_fresh_segments() {
    for args in [&["100000"][..], &["100000", "--thread-stack", "524288"]] {
        let run = run(&args.join("-"), &[], args);
        assert!(run.out.status.success(), "{}", text(&run.out));
        assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "ok 100000");
        assert_charged_under(&run, 100000);
    }
}

/// Resuming a chain of generators (`yield from`) through the hook cost 3.12 and 3.13 the
/// C recursion units the hook could not give back near the end of the stack, so CPython's
/// RecursionError came before the stack's end: 15,000 generators ran, 16,000 did not. Now
/// such a call runs on a fresh segment too (3.11 plain crashes at this depth).
#[test]
fn a_chain_of_50000_generators_resumes_across_segments() {
    let run = run("yield-from", &[], &["yield-from", "50000"]);
    assert!(run.out.status.success(), "{}", text(&run.out));
    assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "ok yield-from 50000 bottom");
}

/// C code recursing at the bottom of a recursion 40,000 deep (on a segment) meets CPython's
/// own RecursionError, as it does without memlens: on 3.12 and 3.13 its counter, on 3.14+
/// its check of the stack's address, told where the segment is. (3.9-3.11 count C recursion
/// against the raised Python limit and crash, with memlens or without.)
#[test]
fn c_recursion_on_a_segment_meets_cpythons_recursion_error() {
    if tested_python_minor() <= 11 {
        return;
    }
    let run = run("nested-repr", &[], &["nested-repr", "40000"]);
    assert!(run.out.status.success(), "{}", text(&run.out));
    assert_eq!(String::from_utf8_lossy(&run.out.stdout).trim(), "nested-repr RecursionError");
}

/// A greenlet switch copies the C stack between two addresses, which a segment elsewhere
/// would make a crash: with greenlet imported, the recursion stays on the thread's stack and
/// ends in a RecursionError.
#[test]
fn with_greenlet_imported_recursion_past_the_c_stack_is_a_recursion_error() {
    let run = run("greenlet-1e5", &[], &["100000", "--greenlet"]);
    assert_recursion_error(&run.out);
    assert!(String::from_utf8_lossy(&run.out.stderr).contains("C stack"), "{}", text(&run.out));
}

/// Where the thread state's layout does not check out (3.12, 3.13), the counter is not
/// credited, silently: a deep recursion ends in CPython's own RecursionError
/// (each hooked call costing it two units), never a crash. (It changes nothing on the
/// versions without the counter, which recurse on.)
#[test]
fn an_unchecked_thread_state_still_ends_in_a_recursion_error() {
    let env = [("MEMLENS_TEST_SKEW_TSTATE", "1")];
    let ok = run("skew-500", &env, &["500"]);
    assert!(ok.out.status.success(), "{}", text(&ok.out));
    assert!(!String::from_utf8_lossy(&ok.out.stderr).contains("memlens"), "{}", text(&ok.out));
    let deep = run("skew-1e5", &env, &["100000"]);
    if matches!(tested_python_minor(), 12 | 13) {
        assert_recursion_error(&deep.out);
    } else {
        assert!(deep.out.status.success(), "{}", text(&deep.out));
    }
}
