//! End-to-end tests of `memlens diff` and `memlens summary` on recordings of a real program
//! made by the real collector: the head version has a 20 MiB bigger peak and an 8 MiB leak.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{damage_an_event_chunk, line_of, memlens, memlens_run, root, TempDir};

/// Records tests/scripts/diff_app.py as `variant` into `dir`.
fn record(dir: &Path, variant: &str) -> PathBuf {
    let out = dir.join(format!("{variant}.memlens"));
    let status = memlens()
        .args(["run", "-q", "-o"])
        .arg(&out)
        .arg(root().join("tests/scripts/diff_app.py"))
        .env("VARIANT", variant)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

struct Pair {
    dir: PathBuf,
    base: PathBuf,
    head: PathBuf,
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pair(name: &str) -> Pair {
    let dir = std::env::temp_dir().join(format!("memlens-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = record(&dir, "base");
    let head = record(&dir, "head");
    Pair { dir, base, head }
}

fn diff(p: &Pair, args: &[&str]) -> (i32, String, String) {
    let out = memlens().arg("diff").arg(&p.base).arg(&p.head).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn diff_finds_the_bigger_peak_and_the_leak_at_the_right_functions() {
    let p = pair("json");
    let (code, out, _) = diff(&p, &["--format", "json"]);
    assert_eq!(code, 0);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(d["warnings"].as_array().unwrap().is_empty(), "{d}");
    let metric = |name: &str| {
        d["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == name).unwrap().clone()
    };
    let mib = 1024.0 * 1024.0;
    let peak_change = metric("peak")["change"].as_f64().unwrap();
    assert!((peak_change - 20.0 * mib).abs() < 0.05 * 20.0 * mib, "peak change {peak_change}");
    let leak_change = metric("leaks")["change"].as_f64().unwrap();
    assert!((leak_change - 8.0 * mib).abs() < 0.05 * 8.0 * mib, "leak change {leak_change}");
    let top_peak = &d["peak_sites"][0];
    assert_eq!(top_peak["function"], "build_index");
    assert!(top_peak["file"].as_str().unwrap().ends_with("diff_app.py"));
    assert_eq!(top_peak["change_bytes"].as_i64().unwrap(), 20 * 1024 * 1024, "{top_peak}");
    let top_leak = &d["leak_sites"][0];
    assert_eq!(top_leak["function"], "remember_results");
    assert_eq!(top_leak["base_bytes"], 0);
    assert!(top_leak["head_bytes"].as_u64().unwrap() >= 8 * 1024 * 1024);
}

#[test]
fn thresholds_set_the_exit_code() {
    let p = pair("gate");
    let (code, out, err) = diff(&p, &["--fail-if", "peak>+10%", "--fail-if", "leaks>+100MiB"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAILED: peak>+10%"), "{out}");
    assert!(!out.contains("leaks>+100MiB"), "{out}");
    assert!(err.contains("threshold crossed: peak>+10%"), "{err}");
    let (code, _, _) = diff(&p, &["--fail-if", "peak>+60%,leaks>+9MiB"]);
    assert_eq!(code, 0);
    let (code, _, err) = diff(&p, &["--fail-if", "speed>1%"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown metric"), "{err}");
}

/// The markdown is a pull-request comment: pinned by a golden file, with the figures that vary
/// from run to run or with the checkout's path (RSS, interpreter allocations and the few KiB
/// the interpreter keeps at exit) masked. The call-site tables are exact.
#[test]
fn markdown_matches_the_golden_file() {
    let p = pair("markdown");
    let (code, out, _) = diff(&p, &["--format", "markdown", "--min-change", "65536"]);
    assert_eq!(code, 0);
    let masked: String = out
        .lines()
        .map(|l| {
            if ["| Peak RSS", "| Allocations", "| Left at exit"].iter().any(|p| l.starts_with(p)) {
                let name = l.split('|').nth(1).unwrap().trim();
                format!("| {name} | (varies) |")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let golden_path = root().join("tests/golden/diff.md");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &masked).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(masked, golden);
}

#[test]
fn summary_json_reports_peak_and_leak_sites() {
    let p = pair("summary");
    let out = memlens().args(["summary", "--json"]).arg(&p.head).output().unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["complete"], true);
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["top_at_peak"][0]["function"], "build_index");
    assert_eq!(s["top_leaks"][0]["function"], "remember_results");
    let text = memlens().arg("summary").arg(&p.head).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("Top call sites at the peak"), "{text}");
    assert!(text.contains("build_index"), "{text}");
}

/// Objects built by code a library generated with exec (a dataclass's `__init__`, a
/// namedtuple's `__new__`, file `<string>`) are the program's line that built them, with the
/// generated function beside it when that holds most of the line's memory.
#[test]
fn sites_in_generated_code_are_the_lines_that_called_it() {
    let dir = TempDir::new("generated");
    let file = dir.0.join("g.memlens");
    let out = memlens_run(&file, &[], &["-q"], "generated_init.py", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = memlens().args(["summary", "--json"]).arg(&file).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sites = s["top_at_peak"].as_array().unwrap();
    for (tag, generated) in [("POINTS_LINE", "__init__"), ("ROWS_LINE", "__new__")] {
        let line = line_of("generated_init.py", tag);
        let site = sites.iter().find(|x| x["line"] == line).unwrap_or_else(|| panic!("{s}"));
        assert!(site["file"].as_str().unwrap().ends_with("generated_init.py"), "{site}");
        assert!(site["bytes"].as_u64().unwrap() > 2 << 20, "{site}");
        let library = &site["library"];
        assert!(library.is_null() || library["function"] == generated, "{site}");
    }
    assert!(sites.iter().all(|x| x["file"] != "<string>"), "{s}");
}

#[test]
fn summary_rejects_files_that_are_not_recordings() {
    let dir = std::env::temp_dir().join(format!("memlens-notrec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    let out = memlens().arg("summary").arg(&f).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not a memlens recording"), "{err}");
}

#[test]
fn rss_only_and_watch_sample_memory_without_tracing() {
    let dir = std::env::temp_dir().join(format!("memlens-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("rss.memlens");
    // 80 MB touched and held for a moment: the sampled RSS must see it.
    let code = "b = bytearray(80_000_000); import time; time.sleep(0.3)";
    let status = memlens()
        .args(["run", "-q", "--rss-only", "-o"])
        .arg(&out)
        .args(["python3", "-c", code])
        .status()
        .unwrap();
    assert!(status.success());
    let json = memlens().args(["summary", "--json"]).arg(&out).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(s["rss_only"], true);
    assert_eq!(s["alloc_count"], 0);
    assert!(s["peak_rss_bytes"].as_u64().unwrap() > 80_000_000, "{s}");
    assert_eq!(s["exit_code"], 0);

    let mut sleeper = Command::new("sleep").arg("5").spawn().unwrap();
    let watched = dir.join("watch.memlens");
    let status = memlens()
        .args(["watch", "--duration", "0.3", "--pid", &sleeper.id().to_string(), "-o"])
        .arg(&watched)
        .status()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(status.success());
    let json = memlens().args(["summary", "--json"]).arg(&watched).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(s["command_line"], serde_json::json!(["sleep", "5"]));
    assert!(s["peak_rss_bytes"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/ci/memory-check.sh, the script the documented CI workflow runs, on two checkouts of a
/// program: it writes the markdown and the report and fails on the threshold.
#[test]
fn the_documented_ci_script_compares_two_checkouts() {
    let dir = std::env::temp_dir().join(format!("memlens-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, variant) in [("base", "base"), ("head", "head")] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        // Each checkout has its own version of the program, as two commits would.
        let text = std::fs::read_to_string(root().join("tests/scripts/diff_app.py")).unwrap();
        let fixed = text.replace(
            "HEAD = os.environ.get(\"VARIANT\") == \"head\"",
            &format!("HEAD = {}", if variant == "head" { "True" } else { "False" }),
        );
        assert_ne!(fixed, text, "diff_app.py changed: update this test");
        std::fs::write(d.join("app.py"), fixed).unwrap();
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_memlens"));
    memlens(); // builds the tracer next to the binary
    let out = Command::new(root().join("docs/ci/memory-check.sh"))
        .arg(dir.join("base"))
        .arg(dir.join("head"))
        .arg(dir.join("out"))
        .args(["--", "app.py"])
        .env("MEMLENS", &exe)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let has_viewer = exe.parent().is_some_and(|_| dir.join("out/report/index.html").exists());
    let _ = std::fs::remove_dir_all(&dir);
    // `memlens report` needs the viewer built into the binary; without it the script stops
    // there with a clear error, which is also what a user would see.
    if stderr.contains("built without the viewer") {
        eprintln!("skipped the report part: memlens was built before the viewer");
        return;
    }
    assert!(has_viewer, "{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("| `build_index` (`app.py`) | 40.0 MiB | 60.0 MiB | +20.0 MiB |"),
        "{stdout}"
    );
    assert!(stdout.contains("**Failed:** `peak>+10%`"), "{stdout}");
}

/// Thresholds that could never fire (`NaN`, `inf`) or that do not say their unit are refused
/// before anything is read, with exit code 2 and what to write instead.
#[test]
fn malformed_thresholds_are_refused() {
    let p = pair("malformed");
    for (threshold, says) in [
        ("peak>+NaN%", "`NaN` is not a finite number"),
        ("peak>+inf%", "`inf` is not a finite number"),
        ("peak>+10", "give a unit: `10%` for a percentage, or bytes as `10B`, `10KB`, `10MB`"),
        ("leaks>+1.5", "give a unit"),
        ("allocs>+2MiB", "allocs counts allocations"),
    ] {
        let (code, out, err) = diff(&p, &["--fail-if", threshold]);
        assert_eq!(code, 2, "{threshold}: {out}{err}");
        assert!(err.contains(says), "{threshold}: {err}");
        assert!(out.is_empty(), "{threshold}: {out}");
    }
    // What is allowed: a count for allocs, bytes with a unit, a percentage.
    let (code, out, err) = diff(&p, &["--fail-if", "allocs>+1000000000,peak>+1GiB,rss>+900%"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A gate cannot decide on a recording cut short (an OOM kill, a full disk) or of a run killed
/// by a signal: its figures stop early, so passing would let a regression through. With
/// `--fail-if` that is exit code 2 and a message; without, the comparison is still shown.
#[test]
fn a_gate_fails_closed_on_an_incomplete_recording() {
    let p = pair("incomplete");
    let bytes = std::fs::read(&p.head).unwrap();
    let cut = p.dir.join("cut.memlens");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let run = |head: &Path, args: &[&str]| {
        let out = memlens().arg("diff").arg(&p.base).arg(head).args(args).output().unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
    };
    // The threshold alone would pass (the cut head's peak is lower, if anything).
    let (code, out, err) = run(&cut, &["--fail-if", "peak>+1000%"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("the head recording") && err.contains("is incomplete"), "{err}");
    assert!(err.contains("--fail-if cannot decide on an incomplete recording"), "{err}");
    assert!(out.contains("warning: the head recording"), "{out}");
    let (code, _, err) = run(&cut, &[]);
    assert_eq!(code, 0, "{err}");
    let (_, json, _) = run(&cut, &["--format", "json"]);
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["incomplete"].as_array().unwrap().len(), 1, "{d}");

    // A run killed by a signal: complete file, incomplete run.
    let killed = p.dir.join("killed.memlens");
    let status = memlens()
        .args(["run", "-q", "-o"])
        .arg(&killed)
        .args([
            "-c",
            "import os, signal; x = bytearray(10**6); os.kill(os.getpid(), signal.SIGKILL)",
        ])
        .status()
        .unwrap();
    assert!(!status.success());
    let (code, _, err) = run(&killed, &["--fail-if", "peak>+1000%"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the program was killed by signal 9"), "{err}");

    // Unreadable: an error, exit code 2, whatever the thresholds.
    let junk = p.dir.join("junk.memlens");
    std::fs::write(&junk, b"not a recording at all, not even close to one").unwrap();
    let (code, _, err) = run(&junk, &["--fail-if", "peak>+1000%"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("memlens: error: cannot open"), "{err}");
}

/// A recording damaged in its middle (8 bytes of an event chunk overwritten) passed the gate
/// with exit code 0: the comparison reads the trailer and the aggregates, never that chunk,
/// so its checksum was never computed. Every chunk's checksum is now checked: the gate fails
/// closed (exit code 2), naming the file and the damaged chunk's byte offset; a plain diff
/// still compares, with the damage as a warning in the report and on stderr.
#[test]
fn a_gate_fails_closed_on_a_damaged_recording() {
    let dir = TempDir::new("diff-damaged");
    let record = |name: &str| {
        let file = dir.0.join(name);
        let out = memlens_run(&file, &[], &["-q"], "json_sampled.py", &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        file
    };
    let (base, head) = (record("base.memlens"), record("head.memlens"));
    let run = |head: &Path, args: &[&str]| {
        let out = memlens().arg("diff").arg(&base).arg(head).args(args).output().unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
    };
    // The two recordings, intact: the gate passes, and nothing is said.
    let (code, _, err) = run(&head, &["--fail-if", "peak>+1000%"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let (k, offset) = damage_an_event_chunk(&head);
    let says = format!("head.memlens is damaged: event chunk {k} at byte {offset}: chunk checksum");
    let (code, out, err) = run(&head, &["--fail-if", "peak>+1000%"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("memlens: the head recording {}", head.display())), "{err}");
    assert!(err.contains(&says), "{err}");
    assert!(err.contains("--fail-if cannot decide on a damaged recording"), "{err}");
    assert!(out.contains(&says), "{out}");
    let (code, out, err) = run(&head, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&says) && err.contains(&says), "{out}{err}");
    let (_, json, _) = run(&head, &["--format", "json"]);
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["incomplete"].as_array().unwrap().len(), 1, "{d}");
}

/// A call site with no Python frame has no file: the markdown showed `<no Python frame>` with
/// an empty `()` after it, and the text two trailing spaces.
#[test]
fn a_site_without_a_file_is_shown_without_one() {
    let p = pair("no-file");
    let all = ["--min-change", "0", "--top", "1000"];
    let (code, md, err) = diff(&p, &[&["--format", "markdown"][..], &all].concat());
    assert_eq!(code, 0, "{err}");
    let row = md.lines().find(|l| l.contains("<no Python frame>")).expect("a site with no frame");
    assert!(row.starts_with("| `<no Python frame>` |"), "{row}");
    assert!(!md.contains(" ()"), "{md}");
    let (_, text, _) = diff(&p, &all);
    let row = text.lines().find(|l| l.contains("<no Python frame>")).unwrap();
    assert!(row.ends_with("<no Python frame>"), "{row:?}");
}
