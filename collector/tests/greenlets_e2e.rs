//! Greenlets (greenlet, gevent): a switch swaps the thread's C stack and Python frames
//! without returning through memlens's hooks. Each allocation must still be charged to the
//! stack of the greenlet that made it, and the stack must be right again after every
//! switch (it used to stay wrong for the rest of the run: a greenlet's lines charged to
//! another's, `<module>` stacks carrying a finished greenlet's frames), with either stack
//! mode (the frame-evaluation hook, and the profile function of `MEMLENS_STACKS=profile`).
//! Run under each interpreter `./dev test` finds, which installs greenlet and gevent.

mod common;

use common::{line_of, memlens, memlens_run, python_has, TempDir};

/// One frame of a collapsed stack: `function (file:line)`, or a name alone.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    function: String,
    file: String,
    line: u32,
}

/// A recording's stacks at a view, outermost frame first, with their bytes.
struct Stacks(Vec<(Vec<Frame>, u64)>);

impl Stacks {
    /// `script` run under `memlens run` with `MEMLENS_STACKS` = `mode` (None: the default),
    /// exported as collapsed stacks at `view`.
    fn of(script: &str, mode: Option<&str>, view: &str) -> Stacks {
        let dir = TempDir::new("greenlets");
        let file = dir.0.join("out.memlens");
        let env: Vec<(&str, &str)> = mode.map(|m| ("MEMLENS_STACKS", m)).into_iter().collect();
        let out = memlens_run(&file, &env, &["-q"], script, &[]);
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        let out = memlens()
            .arg("export")
            .arg(&file)
            .args(["--format", "collapsed", "--view", view, "-o", "-"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        Stacks(text.lines().map(parse_line).collect())
    }

    /// The stacks whose innermost frame of `script` is at `line`, with only the frames of
    /// `script` (the interpreter's, gevent's and the import system's left out).
    fn at(&self, script: &str, line: u32) -> Vec<(Vec<Frame>, u64)> {
        self.0
            .iter()
            .map(|(frames, bytes)| (in_script(frames, script), *bytes))
            .filter(|(frames, _)| frames.last().is_some_and(|f| f.line == line))
            .collect()
    }

    /// Bytes of the stacks whose innermost frame of `script` is at `line`.
    fn bytes_at(&self, script: &str, line: u32) -> u64 {
        self.at(script, line).iter().map(|(_, b)| b).sum()
    }
}

fn parse_line(line: &str) -> (Vec<Frame>, u64) {
    let (stack, bytes) = line.rsplit_once(' ').expect("collapsed stack: frames then bytes");
    let frames = stack
        .split(';')
        .map(|f| match f.rsplit_once(" (") {
            Some((function, at)) => {
                let (file, line) = at.trim_end_matches(')').rsplit_once(':').unwrap_or((at, ""));
                let line = line.parse().unwrap_or(0);
                Frame { function: function.into(), file: file.into(), line }
            }
            // "<no Python frame>"
            None => Frame { function: f.into(), file: String::new(), line: 0 },
        })
        .collect();
    (frames, bytes.parse().unwrap())
}

fn in_script(frames: &[Frame], script: &str) -> Vec<Frame> {
    frames.iter().filter(|f| f.file.ends_with(&format!("/{script}"))).cloned().collect()
}

/// The functions and lines of `frames`, outermost first.
fn calls(frames: &[Frame]) -> Vec<(&str, u32)> {
    frames.iter().map(|f| (f.function.as_str(), f.line)).collect()
}

const MODES: [Option<&str>; 2] = [None, Some("profile")];

/// The reported program: a_side's 5,000 x 1 KB on a_side's line, b_side's 5,000 x 3 KB on
/// b_side's, each on a stack of its greenlet alone (a greenlet's stack starts at its run
/// function, as its tracebacks do), and the block allocated after the greenlets stopped
/// on `<module>` -> 51 x `deep`, with no greenlet's frame in between.
#[test]
fn greenlet_switches_charge_each_greenlet_its_own_stack() {
    if !python_has("greenlet") {
        return;
    }
    let s = "greenlets.py";
    let (a, b) = (line_of(s, "A_LINE"), line_of(s, "B_LINE"));
    for mode in MODES {
        let stacks = Stacks::of(s, mode, "peak");
        let (at_a, at_b) = (stacks.bytes_at(s, a), stacks.bytes_at(s, b));
        assert!((5_000_000..5_800_000).contains(&at_a), "{mode:?}: a_side's line has {at_a} B");
        assert!((15_000_000..16_000_000).contains(&at_b), "{mode:?}: b_side's line has {at_b} B");
        for (line, function) in [(a, "a_side"), (b, "b_side")] {
            for (frames, bytes) in stacks.at(s, line) {
                assert_eq!(calls(&frames), [(function, line)], "{mode:?}: {bytes} B");
            }
        }
        let deep = stacks.at(s, line_of(s, "DEEP_LINE"));
        assert_eq!(deep.len(), 1, "{mode:?}: {deep:?}");
        let (frames, bytes) = &deep[0];
        assert!(*bytes >= 10_000_000, "{mode:?}: {bytes} B");
        let mut want = vec![("<module>", line_of(s, "CALL_LINE"))];
        want.extend(std::iter::repeat_n(("deep", line_of(s, "DEEP_LINE") + 1), 50));
        want.push(("deep", line_of(s, "DEEP_LINE")));
        assert_eq!(calls(frames), want, "{mode:?}");
    }
}

/// The program's own greenlet trace function, set before and during the switches, keeps
/// being called (the script checks), is what `greenlet.gettrace()` and `settrace()` give
/// back, and does not take memlens's place; greenlets of another thread keep their stacks.
#[test]
fn greenlet_trace_functions_of_the_program_and_threads_of_greenlets() {
    if !python_has("greenlet") {
        return;
    }
    let s = "greenlet_trace.py";
    for mode in MODES {
        let stacks = Stacks::of(s, mode, "total");
        let at_a = stacks.at(s, line_of(s, "A_LINE"));
        assert!(stacks.bytes_at(s, line_of(s, "A_LINE")) >= 1_000_000, "{mode:?}: {at_a:?}");
        for (frames, _) in &at_a {
            assert_eq!(calls(frames), [("a_side", line_of(s, "A_LINE"))], "{mode:?}");
        }
        let b = line_of(s, "B_LINE");
        assert!(stacks.bytes_at(s, b) >= 2_000_000, "{mode:?}");
        let c = line_of(s, "C_LINE");
        assert!(stacks.bytes_at(s, c) >= 2_000_000, "{mode:?}");
        for (frames, _) in stacks.at(s, c) {
            assert_eq!(frames.len(), 1, "{mode:?}: {frames:?}");
            assert!(frames[0].function.ends_with("c_side"), "{mode:?}: {frames:?}");
        }
        let t = line_of(s, "THREAD_LINE");
        assert!(stacks.bytes_at(s, t) >= 4_000_000, "{mode:?}");
        for (frames, _) in stacks.at(s, t) {
            assert_eq!(calls(&frames), [("in_thread", t)], "{mode:?}");
        }
    }
}

/// gevent: fetchers and parsers that yield to the hub between allocations. Each block is on
/// its own worker's stack, with the calls it was made under, and the block allocated after
/// the workers finished is on `<module>`'s, without the hub's or a worker's frames.
#[test]
fn gevent_workers_keep_their_stacks_across_the_hub() {
    if !python_has("gevent") {
        return;
    }
    let s = "gevent_workers.py";
    let l = |tag| line_of(s, tag);
    for mode in MODES {
        let stacks = Stacks::of(s, mode, "total");
        let expected = [
            (l("GET_LINE"), vec![("fetcher", l("FETCH_CALL")), ("get", l("GET_LINE"))], 8_000_000),
            (l("FETCH_LINE"), vec![("fetcher", l("FETCH_LINE"))], 4_000_000),
            (
                l("PARSE_LINE"),
                vec![("parser", l("PARSER_CALL")), ("parse_one", l("PARSE_LINE"))],
                12_000_000,
            ),
            (l("PARSER_LINE"), vec![("parser", l("PARSER_LINE"))], 2_000_000),
        ];
        for (line, want, at_least) in expected {
            let here = stacks.at(s, line);
            let bytes: u64 = here.iter().map(|(_, b)| b).sum();
            assert!(bytes >= at_least, "{mode:?}: line {line}: {bytes} B");
            for (frames, _) in &here {
                assert_eq!(calls(frames), want, "{mode:?}");
            }
        }
        let after = stacks.at(s, l("AFTER_LINE"));
        assert_eq!(after.len(), 1, "{mode:?}: {after:?}");
        let mut want = vec![("<module>", l("AFTER_CALL"))];
        want.extend(std::iter::repeat_n(("after", l("AFTER_LINE") + 1), 10));
        want.push(("after", l("AFTER_LINE")));
        assert_eq!(calls(&after[0].0), want, "{mode:?}");
        // Nothing of the program's, anywhere, under a frame of another greenlet.
        for (frames, bytes) in &stacks.0 {
            let workers = frames.iter().filter(|f| matches!(&*f.function, "fetcher" | "parser"));
            let under_module = frames.first().is_some_and(|f| f.function == "<module>");
            assert!(
                workers.count() <= 1
                    && !(under_module && frames.iter().any(|f| f.function == "Hub.run")),
                "{mode:?}: {bytes} B on {frames:?}"
            );
        }
    }
}
